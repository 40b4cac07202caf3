// The privilege split's pure parts: what counts as dropped, what a non-root
// start may not hold, what the configuration may not ask for; and the texts
// for programs the launcher did not run.
import assert from 'node:assert/strict';
import os from 'node:os';
import { test } from 'node:test';
import { filterEnvironment } from '../../../src/filter/environment.js';
import { notRunOutcome, notRunText } from '../../../src/filter/outcome.js';
import { heldCapabilities, notDropped, privilegeProblems } from '../../../src/filter/privileges.js';

const status = (over: Record<string, string> = {}): string =>
  Object.entries({ Uid: '110\t110\t110\t110', Gid: '120\t120\t120\t120', Groups: '120 ', CapPrm: '0000000000000000', CapEff: '0000000000000000', CapAmb: '0000000000000000', ...over })
    .map(([k, v]) => `${k}:\t${v}`)
    .join('\n');
const account = { name: 'per-user-milter', uid: 110, gid: 120 };

test('notDropped: any capability, any id, any extra group left is named', () => {
  assert.equal(notDropped(status(), account), null);
  assert.match(notDropped(status({ CapEff: '00000000000000c0' }), account) ?? '', /CapEff/);
  assert.match(notDropped(status({ CapAmb: '0000000000000001' }), account) ?? '', /CapAmb/);
  assert.match(notDropped(status({ Uid: '110\t0\t110\t110' }), account) ?? '', /uids/);
  assert.match(notDropped(status({ Gid: '120\t120\t0\t120' }), account) ?? '', /gids/);
  assert.match(notDropped(status({ Groups: '0 120' }), account) ?? '', /supplementary/);
});

test('heldCapabilities: a non-root start with capabilities is refused; privilegeProblems: sandbox none as root', () => {
  assert.equal(heldCapabilities(status()), null);
  assert.match(heldCapabilities(status({ CapPrm: '00000000000000c0', CapEff: '00000000000000c0' })) ?? '', /non-root user with capabilities .*CapPrm=c0/);
  assert.deepEqual(privilegeProblems({ filter: { sandbox: 'none' } }, 1000), []);
  assert.match(privilegeProblems({ filter: { sandbox: 'none' } }, 0)[0] ?? '', /filter.sandbox=none is refused/);
  assert.deepEqual(privilegeProblems({ filter: { sandbox: 'setpriv' } }, 0), []);
});

test('not run: missing is no filter, unsafe and exec failures are the user\'s, each with its text', () => {
  assert.equal(notRunOutcome('missing'), 'nofilter');
  assert.equal(notRunOutcome('unsafe'), 'unsafe');
  assert.equal(notRunOutcome('exec'), 'error');
  const n = { kind: 'unsafe' as const, path: '/home/a/.user-milter', mode: 0o4755, owner: 0, errno: 0 };
  assert.equal(notRunText({ ...n, reason: 'setid' }, 'a', 110, os.constants.errno), '/home/a/.user-milter has the setuid or setgid bit (mode 4755)');
  assert.equal(notRunText({ ...n, reason: 'not-own-uid', owner: 1001 }, 'a', 110, os.constants.errno), 'cannot switch users: only programs owned by uid 110 run (/home/a/.user-milter is owned by uid 1001)');
  assert.equal(notRunText({ ...n, kind: 'exec', reason: 'exec', errno: os.constants.errno.ENOEXEC }, 'a', 110, os.constants.errno), 'cannot execute /home/a/.user-milter: ENOEXEC');
});

test('the filter environment: exactly the 17 names, control characters removed, entries within the launcher\'s 4096 bytes', () => {
  const user = { name: 'a', uid: 1001, gid: 1001, groups: [1001], home: '/home/a', shell: '' };
  const e = { SENDER: 's\r\n@x\u0000', RECIPIENT: 'a@x', LOCAL: 'a', EXTENSION: '', DOMAIN: 'x', CLIENT_ADDRESS: '', CLIENT_HOSTNAME: 'h\u0085', CLIENT_HELO: 'x'.repeat(5000), CLIENT_PROTOCOL: '', QUEUE_ID: '', SASL_METHOD: '', SASL_USERNAME: Buffer.from('caf\u00e9', 'utf8').toString('latin1') };
  const env = filterEnvironment(user, e);
  assert.equal(Object.keys(env).length, 17);
  assert.equal(env.SENDER, 's@x');
  assert.equal(env.CLIENT_HOSTNAME, 'h');
  assert.equal(env.SASL_USERNAME, 'caf\u00e9', 'UTF-8 (as bytes from the wire) kept, not double-encoded');
  assert.equal(env.SHELL, '/bin/sh');
  assert.equal(Buffer.byteLength(`CLIENT_HELO=${env.CLIENT_HELO}`), 4096);
});
