// A handler's answer -> the packets on the wire (src/milter/result.ts), as
// tables, without a socket.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HandlerStep, Modification, NegotiatedOptions } from '../../../src/milter/application.js';
import {
  SMFIF_ADDHDRS,
  SMFIF_ADDRCPT,
  SMFIF_ADDRCPT_PAR,
  SMFIF_CHGBODY,
  SMFIF_CHGFROM,
  SMFIF_CHGHDRS,
  SMFIF_DELRCPT,
  SMFIF_QUARANTINE,
  SMFI_CURR_ACTS,
  SMFI_CURR_PROT,
  SMFIP_SKIP,
} from '../../../src/milter/constants.js';
import { MilterReplyError } from '../../../src/milter/errors.js';
import { FrameDecoder } from '../../../src/milter/frame.js';
import { decodeReply, type Reply } from '../../../src/milter/replies.js';
import { answerPackets, closesSession, ownReplyPacket, PROGRESS_PACKET, requiredAction } from '../../../src/milter/result.js';

const ALL: NegotiatedOptions = { version: 6, actions: SMFI_CURR_ACTS, protocol: SMFI_CURR_PROT };
const NO_SKIP: NegotiatedOptions = { ...ALL, protocol: SMFI_CURR_PROT & ~SMFIP_SKIP };

/** Each packet decoded back, as the MTA would read it; every packet must be exactly one frame. */
function decoded(packets: Buffer[]): Reply[] {
  return packets.map((packet) => {
    const decoder = new FrameDecoder();
    decoder.push(packet);
    const frame = decoder.next();
    assert.ok(frame, 'a whole packet');
    assert.equal(decoder.bufferedBytes, 0, 'exactly one packet');
    return decodeReply(frame);
  });
}

const text = (replies: Reply[]): string[] =>
  replies.map((r) => JSON.stringify(r, (_k, v: unknown) => (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' ? Buffer.from((v as { data: number[] }).data).toString('latin1') : v)));

describe('answerPackets: final replies', () => {
  const rows: Array<[string, HandlerStep, unknown, NegotiatedOptions, Reply]> = [
    ['nothing is continue', 'rcpt', undefined, ALL, { type: 'continue' }],
    ["'continue'", 'connect', 'continue', ALL, { type: 'continue' }],
    ["'accept'", 'data', 'accept', ALL, { type: 'accept' }],
    ["'reject'", 'mail', 'reject', ALL, { type: 'reject' }],
    ["'tempfail'", 'rcpt', 'tempfail', ALL, { type: 'tempfail' }],
    ["'discard'", 'eoh', 'discard', ALL, { type: 'discard' }],
    ["'skip' for a body chunk, offered", 'body', 'skip', ALL, { type: 'skip' }],
    ["'skip' for a body chunk, not offered: continue", 'body', 'skip', NO_SKIP, { type: 'continue' }],
    ["'skip' elsewhere: continue", 'header', 'skip', ALL, { type: 'continue' }],
    ['a custom reply, % escaped', 'rcpt', { code: '452', text: '4.5.3 100% busy' }, ALL, { type: 'replycode', text: '452 4.5.3 100%% busy' }],
    ['a custom reply without text', 'eom', { code: '550' }, ALL, { type: 'replycode', text: '550 5.0.0' }],
    ['a multi-line reply', 'eom', { code: '550', text: ['5.7.1 a', 'b'] }, ALL, { type: 'replycode', text: '550-5.7.1 a\r\n550 5.7.1 b' }],
    ['eom: an EomResult without modifications', 'eom', { reply: 'accept' }, ALL, { type: 'accept' }],
  ];
  for (const [name, step, value, negotiated, want] of rows) {
    it(name, () => assert.deepEqual(decoded(answerPackets(step, value, negotiated)), [want]));
  }
});

describe('answerPackets: modifications at end of message', () => {
  const mods: Array<[Modification, number, Reply[]]> = [
    [{ kind: 'addHeader', name: 'X-A', value: 'v' }, SMFIF_ADDHDRS, [{ type: 'addheader', name: 'X-A', value: Buffer.from('v') }]],
    [{ kind: 'insertHeader', index: 0, name: 'X-B', value: Buffer.from([0xe9]) }, SMFIF_ADDHDRS, [{ type: 'insheader', index: 0, name: 'X-B', value: Buffer.from([0xe9]) }]],
    [{ kind: 'changeHeader', index: 2, name: 'Subject', value: '' }, SMFIF_CHGHDRS, [{ type: 'chgheader', index: 2, name: 'Subject', value: Buffer.alloc(0) }]],
    [{ kind: 'addRecipient', recipient: '<n@x>' }, SMFIF_ADDRCPT, [{ type: 'addrcpt', recipient: Buffer.from('<n@x>') }]],
    [{ kind: 'addRecipient', recipient: '<n@x>', args: 'NOTIFY=NEVER' }, SMFIF_ADDRCPT_PAR, [{ type: 'addrcpt_par', recipient: Buffer.from('<n@x>'), args: Buffer.from('NOTIFY=NEVER') }]],
    [{ kind: 'deleteRecipient', recipient: '<Bob@x>' }, SMFIF_DELRCPT, [{ type: 'delrcpt', recipient: Buffer.from('<Bob@x>') }]],
    [{ kind: 'quarantine', reason: 'looks odd' }, SMFIF_QUARANTINE, [{ type: 'quarantine', reason: 'looks odd' }]],
    [{ kind: 'changeSender', sender: '<s@x>' }, SMFIF_CHGFROM, [{ type: 'chgfrom', sender: Buffer.from('<s@x>'), args: null }]],
    [{ kind: 'replaceBody', body: Buffer.from('new\r\n') }, SMFIF_CHGBODY, [{ type: 'replbody', chunk: Buffer.from('new\r\n') }]],
  ];
  for (const [mod, action, want] of mods) {
    it(`${mod.kind}${'args' in mod && mod.args !== undefined ? ' with args' : ''}: needs 0x${action.toString(16)}, comes before the final reply`, () => {
      assert.equal(requiredAction(mod), action);
      const out = decoded(answerPackets('eom', { reply: 'accept', modifications: [mod] }, ALL));
      assert.deepEqual(text(out), text([...want, { type: 'accept' }]));
      assert.throws(() => answerPackets('eom', { reply: 'accept', modifications: [mod] }, { ...ALL, actions: SMFI_CURR_ACTS & ~action }), MilterReplyError);
    });
  }

  it('keeps the order of several modifications, and splits a big body into 65535-byte chunks', () => {
    const body = Buffer.alloc(65535 * 2 + 1, 0x61);
    const out = decoded(
      answerPackets('eom', { reply: { code: '550', text: '5.7.1 no' }, modifications: [{ kind: 'addHeader', name: 'X-1', value: 'a' }, { kind: 'replaceBody', body }, { kind: 'deleteRecipient', recipient: '<r@x>' }] }, ALL),
    );
    assert.deepEqual(out.map((r) => r.type), ['addheader', 'replbody', 'replbody', 'replbody', 'delrcpt', 'replycode']);
    assert.deepEqual(out.filter((r) => r.type === 'replbody').map((r) => (r as { chunk: Buffer }).chunk.length), [65535, 65535, 1]);
  });

  it('modifications are an end-of-message thing: elsewhere an EomResult is not a step result', () => {
    assert.throws(() => answerPackets('rcpt', { reply: 'accept', modifications: [{ kind: 'addHeader', name: 'X', value: 'y' }] }, ALL), MilterReplyError);
  });
});

describe('answerPackets: refused answers (the connection answers a tempfail instead)', () => {
  const rows: Array<[string, HandlerStep, unknown]> = [
    ['a 2xx custom reply', 'eom', { code: '250', text: 'not allowed' }],
    ['an enhanced code of the wrong class', 'eom', { code: '550', text: '4.7.1 mixed up' }],
    ['CR or LF inside a line', 'rcpt', { code: '550', text: '5.7.1 a\r\nb' }],
    ['an unknown result', 'mail', 'maybe'],
    ['a NUL inside a header value', 'eom', { reply: 'accept', modifications: [{ kind: 'addHeader', name: 'X', value: 'a\0b' }] }],
    ['an empty quarantine reason', 'eom', { reply: 'accept', modifications: [{ kind: 'quarantine', reason: '' }] }],
  ];
  for (const [name, step, value] of rows) {
    it(name, () => assert.throws(() => answerPackets(step, value, ALL), MilterReplyError));
  }
});

describe('closesSession', () => {
  it('is true for a 421 only, also inside an EomResult', () => {
    assert.equal(closesSession('connect', { code: '421', text: '4.3.2 busy' }), true);
    assert.equal(closesSession('eom', { reply: { code: '421' } }), true);
    for (const value of [undefined, 'reject', 'tempfail', { code: '451', text: '4.3.2 busy' }, { reply: 'accept' }]) {
      assert.equal(closesSession('eom', value), false, JSON.stringify(value));
    }
  });
});

describe("the engine's own packets", () => {
  it('ownReplyPacket: a REPLYCODE, or a bare TEMPFAIL when the text cannot be sent', () => {
    assert.deepEqual(decoded([ownReplyPacket({ code: '451', text: '4.3.0 try later' })]), [{ type: 'replycode', text: '451 4.3.0 try later' }]);
    assert.deepEqual(decoded([ownReplyPacket({ code: '451', text: '4.3.0 bad\nline' })]), [{ type: 'tempfail' }]);
  });

  it('PROGRESS_PACKET is SMFIR_PROGRESS', () => {
    assert.deepEqual(PROGRESS_PACKET, Buffer.from('0000000170', 'hex'));
  });
});
