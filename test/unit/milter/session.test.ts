import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MilterDeclaration } from '../../../src/milter/application.js';
import type { Command } from '../../../src/milter/commands.js';
import { SMFIF_DELRCPT, SMFIP_NR_HDR, SMFI_CURR_ACTS, SMFI_CURR_PROT } from '../../../src/milter/constants.js';
import { MilterProtocolError } from '../../../src/milter/errors.js';
import { TRANSITIONS, advance, initialState, inTransaction, type Effect, type Phase, type SessionState } from '../../../src/milter/session.js';

const declaration: MilterDeclaration = { actions: SMFIF_DELRCPT };
const b = (s: string): Buffer => Buffer.from(s);

const CMD = {
  optneg: { type: 'optneg', version: 6, actions: SMFI_CURR_ACTS, protocol: SMFI_CURR_PROT },
  connect: { type: 'connect', hostname: 'h', family: 'inet', port: 25, address: '192.0.2.1' },
  helo: { type: 'helo', name: 'h' },
  mail: { type: 'mail', args: [b('<s@x>')] },
  rcpt: { type: 'rcpt', args: [b('<r@x>')] },
  data: { type: 'data' },
  header: { type: 'header', name: 'Subject', value: b('x') },
  eoh: { type: 'eoh' },
  body: { type: 'body', chunk: b('x\r\n') },
  eom: { type: 'eom', chunk: Buffer.alloc(0) },
  unknown: { type: 'unknown', command: b('FOO') },
  abort: { type: 'abort' },
  quit: { type: 'quit' },
  quit_nc: { type: 'quit_nc' },
  macro: { type: 'macro', stage: 0x44, macros: [] },
  empty_macro: { type: 'macro', stage: null, macros: [] },
} as const satisfies Record<string, Command>;
type Name = keyof typeof CMD;

function run(names: Name[], decl: MilterDeclaration = declaration, offer: Partial<Command & { type: 'optneg' }> = {}): { state: SessionState; effects: Effect[][] } {
  let state = initialState(decl);
  const effects: Effect[][] = [];
  for (const name of names) {
    const command: Command = name === 'optneg' ? { ...CMD.optneg, ...offer } : CMD[name];
    const out = advance(state, command);
    state = out.state;
    effects.push([...out.effects]);
  }
  return { state, effects };
}

const kinds = (effects: Effect[]): string[] => effects.map((e) => (e.kind === 'call' ? `call:${e.call.step}${e.reply ? '' : '(noreply)'}` : e.kind));

describe('session state machine', () => {
  const accepted: Array<[string, Name[], Phase]> = [
    ['a Postfix session with two transactions and its ABORTs', ['optneg', 'macro', 'connect', 'empty_macro', 'helo', 'mail', 'rcpt', 'rcpt', 'data', 'header', 'header', 'eoh', 'body', 'body', 'eom', 'abort', 'mail', 'rcpt', 'abort', 'abort', 'quit'], 'closed'],
    ['Sendmail: a new MAIL after EOM without ABORT', ['optneg', 'connect', 'helo', 'mail', 'rcpt', 'data', 'eoh', 'eom', 'mail', 'rcpt'], 'rcpt'],
    ['a MAIL mid-transaction starts a new one', ['optneg', 'connect', 'helo', 'mail', 'rcpt', 'header', 'mail'], 'mail'],
    ['HELO mid-transaction aborts it', ['optneg', 'connect', 'helo', 'mail', 'rcpt', 'helo'], 'session'],
    ['ABORT right after OPTNEG and CONNECT', ['optneg', 'abort', 'connect', 'abort'], 'session'],
    ['QUIT_NC, then a new CONNECT without OPTNEG', ['optneg', 'connect', 'helo', 'mail', 'quit_nc', 'connect', 'helo'], 'session'],
    ['QUIT_NC, then UNKNOWN', ['optneg', 'connect', 'quit_nc', 'unknown'], 'connect'],
    ['no DATA, no headers, no body (v2 peer, empty message)', ['optneg', 'connect', 'mail', 'rcpt', 'eom'], 'session'],
    ['UNKNOWN between recipients', ['optneg', 'connect', 'helo', 'mail', 'rcpt', 'unknown', 'rcpt', 'data'], 'data'],
    ['macros anywhere after OPTNEG', ['optneg', 'macro', 'connect', 'macro', 'helo', 'macro', 'mail', 'macro', 'rcpt', 'macro', 'data', 'macro', 'header', 'macro', 'eoh', 'macro', 'body', 'macro', 'eom'], 'session'],
    ['QUIT inside a transaction', ['optneg', 'connect', 'mail', 'rcpt', 'quit'], 'closed'],
  ];
  for (const [name, names, phase] of accepted) {
    it(`accepts ${name}`, () => assert.equal(run(names).state.phase, phase));
  }

  const refused: Array<[string, Name[]]> = [
    ['anything before OPTNEG', ['connect']],
    ['ABORT before OPTNEG', ['abort']],
    ['a second OPTNEG', ['optneg', 'optneg']],
    ['HELO before CONNECT', ['optneg', 'helo']],
    ['a second CONNECT without QUIT_NC', ['optneg', 'connect', 'connect']],
    ['RCPT without MAIL', ['optneg', 'connect', 'rcpt']],
    ['DATA before RCPT', ['optneg', 'connect', 'mail', 'data']],
    ['EOM without a transaction', ['optneg', 'connect', 'eom']],
    ['a header after the body', ['optneg', 'connect', 'mail', 'rcpt', 'body', 'header']],
    ['RCPT after DATA', ['optneg', 'connect', 'mail', 'rcpt', 'data', 'rcpt']],
    ['two EOH', ['optneg', 'connect', 'mail', 'rcpt', 'eoh', 'eoh']],
    ['UNKNOWN inside the message content', ['optneg', 'connect', 'mail', 'rcpt', 'header', 'unknown']],
    ['anything after QUIT', ['optneg', 'quit', 'abort']],
  ];
  for (const [name, names] of refused) {
    it(`refuses ${name} as bad-order`, () => {
      assert.throws(() => run(names), (e: unknown) => e instanceof MilterProtocolError && e.reason === 'bad-order');
    });
  }

  it('answers OPTNEG and then asks for the handler', () => {
    const { effects } = run(['optneg']);
    assert.deepEqual(kinds(effects[0] as Effect[]), ['send', 'negotiated']);
  });

  it('fails negotiation as a protocol error, not an application error', () => {
    assert.throws(
      () => run(['optneg'], declaration, { actions: 0x01 }),
      (e: unknown) => e instanceof MilterProtocolError && e.reason === 'negotiation-failed',
    );
  });

  it('notifies abort only when a transaction is open; an ABORT after EOM is a no-op', () => {
    const { effects } = run(['optneg', 'connect', 'mail', 'rcpt', 'abort', 'abort', 'mail', 'rcpt', 'eom', 'abort']);
    assert.deepEqual(kinds(effects[4] as Effect[]), ['abort', 'macro-scope']);
    assert.deepEqual(kinds(effects[5] as Effect[]), ['macro-scope']);
    assert.deepEqual(kinds(effects[8] as Effect[]), ['call:eom']);
    assert.deepEqual(kinds(effects[9] as Effect[]), ['macro-scope']);
  });

  it('turns a MAIL or HELO inside a transaction into abort + call', () => {
    const { effects } = run(['optneg', 'connect', 'mail', 'rcpt', 'mail', 'helo']);
    assert.deepEqual(kinds(effects[4] as Effect[]), ['abort', 'macro-scope', 'call:mail']);
    assert.deepEqual(kinds(effects[5] as Effect[]), ['abort', 'macro-scope', 'call:helo']);
  });

  it('QUIT_NC aborts an open transaction and keeps the negotiation', () => {
    const { state, effects } = run(['optneg', 'connect', 'mail', 'quit_nc']);
    assert.deepEqual(kinds(effects[3] as Effect[]), ['abort', 'macro-scope']);
    assert.ok(state.negotiated);
  });

  it('marks no-reply steps, never EOM', () => {
    const decl: MilterDeclaration = { actions: 0, noReplySteps: ['header'] };
    const { state, effects } = run(['optneg', 'connect', 'mail', 'rcpt', 'header', 'eom'], decl);
    assert.equal((state.negotiated?.protocol ?? 0) & SMFIP_NR_HDR, SMFIP_NR_HDR);
    assert.deepEqual(kinds(effects[4] as Effect[]), ['macro-scope', 'call:header(noreply)']);
    assert.deepEqual(kinds(effects[5] as Effect[]), ['call:eom']);
  });

  it('lets steps negotiated away be absent (NOCONNECT, NOMAIL, NORCPT)', () => {
    const decl: MilterDeclaration = { actions: 0, skipSteps: ['connect', 'mail', 'rcpt'] };
    assert.equal(run(['optneg', 'helo'], decl).state.phase, 'session');
    assert.equal(run(['optneg', 'rcpt'], decl).state.phase, 'rcpt');
    assert.equal(run(['optneg', 'header', 'eom'], decl).state.phase, 'session');
    // Without those bits the same orders are refused.
    assert.throws(() => run(['optneg', 'rcpt']), MilterProtocolError);
  });

  it('the table knows every phase, and the transaction phases are exactly mail..body', () => {
    assert.deepEqual(Object.keys(TRANSITIONS).sort(), ['body', 'closed', 'connect', 'data', 'eoh', 'header', 'mail', 'negotiate', 'rcpt', 'session']);
    const open = (Object.keys(TRANSITIONS) as Phase[]).filter(inTransaction).sort();
    assert.deepEqual(open, ['body', 'data', 'eoh', 'header', 'mail', 'rcpt']);
  });

  it('a call effect names the handler method and carries its arguments', () => {
    const { effects } = run(['optneg', 'connect', 'helo', 'mail', 'rcpt', 'header', 'body', 'eom']);
    const calls = effects.flat().filter((e): e is Extract<Effect, { kind: 'call' }> => e.kind === 'call').map((e) => e.call);
    assert.deepEqual(calls, [
      { step: 'connect', args: ['h', 'inet', 25, '192.0.2.1'] },
      { step: 'helo', args: ['h'] },
      { step: 'mail', args: [[b('<s@x>')]] },
      { step: 'rcpt', args: [[b('<r@x>')]] },
      { step: 'header', args: ['Subject', b('x')] },
      { step: 'body', args: [b('x\r\n')] },
      { step: 'eom', args: [] },
    ]);
  });

  it('data inside BODYEOB is a last body chunk (unanswered), then end of message', () => {
    const s = run(['optneg', 'connect', 'mail', 'rcpt']).state;
    const { effects } = advance(s, { type: 'eom', chunk: b('tail') });
    assert.deepEqual(effects, [
      { kind: 'call', call: { step: 'body', args: [b('tail')] }, reply: false },
      { kind: 'call', call: { step: 'eom', args: [] }, reply: true },
    ]);
  });

  it('is pure: the same state and command give the same outcome, the old state is unchanged', () => {
    const s0 = run(['optneg', 'connect']).state;
    const a = advance(s0, CMD.mail);
    const b2 = advance(s0, CMD.mail);
    assert.deepEqual(a, b2);
    assert.equal(s0.phase, 'session');
  });
});
