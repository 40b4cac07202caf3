import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MacroStore, macroKey } from '../../../src/milter/macros.js';

const C = 0x43;
const H = 0x48;
const M = 0x4d;
const R = 0x52;
const T = 0x54;
const L = 0x4c;
const E = 0x45;
const U = 0x55;

describe('MacroStore (libmilter scoping)', () => {
  it('treats x and {x} as the same name', () => {
    const m = new MacroStore();
    m.define(C, [['j', 'mx'], ['{daemon_name}', 'd']]);
    assert.equal(m.get('{j}'), 'mx');
    assert.equal(m.get('daemon_name'), 'd');
    assert.equal(macroKey('{i}'), 'i');
    assert.equal(macroKey('{}'), '{}');
  });

  it('looks up from the latest stage back to CONNECT', () => {
    const m = new MacroStore();
    m.define(C, [['i', 'conn']]);
    m.define(M, [['i', 'mail']]);
    assert.equal(m.get('i'), 'mail');
    m.define(T, [['i', 'data']]);
    assert.equal(m.get('i'), 'data');
  });

  it('MAIL clears rcpt, data, eoh and eom macros but keeps connect/helo/mail', () => {
    const m = new MacroStore();
    m.define(C, [['j', 'mx']]);
    m.define(H, [['{tls_version}', 'TLSv1.3']]);
    m.define(M, [['{mail_addr}', 's@x']]);
    m.define(R, [['{rcpt_addr}', 'a@x']]);
    m.define(T, [['i', 'Q1']]);
    m.define(E, [['{msg_id}', 'id']]);
    m.onCommand('mail');
    assert.equal(m.get('j'), 'mx');
    assert.equal(m.get('tls_version'), 'TLSv1.3');
    assert.equal(m.get('mail_addr'), 's@x');
    assert.equal(m.get('rcpt_addr'), undefined);
    assert.equal(m.get('i'), undefined);
    assert.equal(m.get('msg_id'), undefined);
  });

  it('RCPT macros describe only the latest recipient; DATA macros survive to EOM', () => {
    const m = new MacroStore();
    m.define(R, [['{rcpt_addr}', 'a@x'], ['{rcpt_mailer}', 'local']]);
    m.onCommand('rcpt');
    m.define(R, [['{rcpt_addr}', 'b@x']]);
    m.onCommand('rcpt');
    assert.equal(m.get('rcpt_addr'), 'b@x');
    assert.equal(m.get('rcpt_mailer'), undefined, 'a new D packet replaces its stage table');
    m.define(T, [['i', 'Q1']]);
    m.onCommand('data');
    m.define(L, [['i', 'Q1']]);
    m.onCommand('header');
    m.onCommand('eoh');
    assert.equal(m.get('i'), 'Q1');
  });

  it('CONNECT and HELO clear every later stage', () => {
    const m = new MacroStore();
    m.define(C, [['j', 'mx']]);
    m.define(H, [['h', '1']]);
    m.define(M, [['m', '1']]);
    m.onCommand('helo');
    assert.equal(m.get('h'), '1');
    assert.equal(m.get('m'), undefined);
    m.onCommand('connect');
    assert.equal(m.get('h'), undefined);
    assert.equal(m.get('j'), 'mx');
  });

  it('ABORT drops transaction macros only; QUIT_NC drops everything', () => {
    const m = new MacroStore();
    m.define(C, [['j', 'mx']]);
    m.define(M, [['m', '1']]);
    m.onCommand('abort');
    assert.equal(m.get('j'), 'mx');
    assert.equal(m.get('m'), undefined);
    m.onCommand('quit_nc');
    assert.equal(m.get('j'), undefined);
  });

  it('ignores stage letters it does not know, and empty packets', () => {
    const m = new MacroStore();
    assert.equal(m.define(U, [['x', '1']]), false);
    assert.equal(m.define(null, []), false);
    assert.equal(m.get('x'), undefined);
    assert.equal(m.define(H, []), true);
  });

  it('snapshot lists what is visible, braces on long names', () => {
    const m = new MacroStore();
    m.define(C, [['j', 'mx'], ['{daemon_name}', 'd']]);
    m.define(M, [['i', 'Q']]);
    assert.deepEqual(m.snapshot(), { j: 'mx', '{daemon_name}': 'd', i: 'Q' });
  });
});
