import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MilterProtocolError, MilterReplyError } from '../../../src/milter/errors.js';
import { FrameDecoder } from '../../../src/milter/frame.js';
import { decodeReply, encodeReply, formatSmtpReply, isFinalReply, replyBodyChunks, type Reply } from '../../../src/milter/replies.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ascii = (s: string): string => Buffer.from(s, 'latin1').toString('hex');

function decodeBytes(bytes: Buffer): Reply {
  const d = new FrameDecoder();
  d.push(bytes);
  const frame = d.next();
  assert.ok(frame);
  assert.equal(d.bufferedBytes, 0);
  return decodeReply(frame);
}

const TABLE: Array<{ name: string; bytes: Buffer; reply: Reply }> = [
  {
    name: 'OPTNEG reply without macro lists (worked example)',
    bytes: hex('0000000D 4F 00000006 000001FF 00000000'),
    reply: { type: 'optneg', version: 6, actions: 0x1ff, protocol: 0, macroLists: [] },
  },
  {
    name: 'OPTNEG reply with a macro list',
    bytes: hex(`0000002B 4F 00000006 00000109 00000400 00000003 ${ascii('{rcpt_addr} {rcpt_mailer}\0')}`),
    reply: { type: 'optneg', version: 6, actions: 0x109, protocol: 0x400, macroLists: [{ stage: 3, names: '{rcpt_addr} {rcpt_mailer}' }] },
  },
  { name: 'CONTINUE', bytes: hex('00000001 63'), reply: { type: 'continue' } },
  { name: 'ACCEPT', bytes: hex('00000001 61'), reply: { type: 'accept' } },
  { name: 'REJECT', bytes: hex('00000001 72'), reply: { type: 'reject' } },
  { name: 'TEMPFAIL', bytes: hex('00000001 74'), reply: { type: 'tempfail' } },
  { name: 'DISCARD', bytes: hex('00000001 64'), reply: { type: 'discard' } },
  { name: 'SKIP', bytes: hex('00000001 73'), reply: { type: 'skip' } },
  { name: 'PROGRESS', bytes: hex('00000001 70'), reply: { type: 'progress' } },
  { name: 'SHUTDOWN', bytes: hex('00000001 34'), reply: { type: 'shutdown' } },
  { name: 'CONN_FAIL', bytes: hex('00000001 66'), reply: { type: 'conn_fail' } },
  {
    name: 'REPLYCODE (two lines, escaped %, from the doc)',
    bytes: hex(`00000033 79 ${ascii('550-5.7.1 first line\r\n550 5.7.1 second 100%% sure\0')}`),
    reply: { type: 'replycode', text: '550-5.7.1 first line\r\n550 5.7.1 second 100%% sure' },
  },
  { name: 'ADDHEADER', bytes: hex(`00000007 68 ${ascii('X-A\0b\0')}`), reply: { type: 'addheader', name: 'X-A', value: Buffer.from('b') } },
  {
    name: 'INSHEADER at 0',
    bytes: hex(`0000000B 69 00000000 ${ascii('X-A\0b\0')}`),
    reply: { type: 'insheader', index: 0, name: 'X-A', value: Buffer.from('b') },
  },
  {
    name: 'CHGHEADER delete (empty value)',
    bytes: hex(`0000000A 6D 00000002 ${ascii('X-A\0\0')}`),
    reply: { type: 'chgheader', index: 2, name: 'X-A', value: Buffer.alloc(0) },
  },
  { name: 'ADDRCPT', bytes: hex(`00000005 2B ${ascii('<a>\0')}`), reply: { type: 'addrcpt', recipient: Buffer.from('<a>') } },
  {
    name: 'ADDRCPT_PAR with args',
    bytes: hex(`00000012 32 ${ascii('<a>\0NOTIFY=NEVER\0')}`),
    reply: { type: 'addrcpt_par', recipient: Buffer.from('<a>'), args: Buffer.from('NOTIFY=NEVER') },
  },
  {
    name: 'ADDRCPT_PAR without args',
    bytes: hex(`00000005 32 ${ascii('<a>\0')}`),
    reply: { type: 'addrcpt_par', recipient: Buffer.from('<a>'), args: null },
  },
  {
    name: 'DELRCPT keeps the RCPT spelling',
    bytes: hex(`00000013 2D ${ascii('<Bob@Example.ORG>\0')}`),
    reply: { type: 'delrcpt', recipient: Buffer.from('<Bob@Example.ORG>') },
  },
  { name: 'QUARANTINE', bytes: hex(`00000006 71 ${ascii('spam\0')}`), reply: { type: 'quarantine', reason: 'spam' } },
  { name: 'CHGFROM', bytes: hex(`00000005 65 ${ascii('<s>\0')}`), reply: { type: 'chgfrom', sender: Buffer.from('<s>'), args: null } },
  {
    name: 'CHGFROM with args',
    bytes: hex(`0000000E 65 ${ascii('<s>\0RET=HDRS\0')}`),
    reply: { type: 'chgfrom', sender: Buffer.from('<s>'), args: Buffer.from('RET=HDRS') },
  },
  { name: 'REPLBODY (no NUL added)', bytes: hex(`00000004 62 ${ascii('x\r\n')}`), reply: { type: 'replbody', chunk: Buffer.from('x\r\n') } },
];

describe('replies: byte-exact layouts', () => {
  for (const { name, bytes, reply } of TABLE) {
    it(`encodes ${name}`, () => assert.equal(encodeReply(reply).toString('hex'), bytes.toString('hex')));
    it(`decodes ${name}`, () => assert.deepEqual(decodeReply({ code: bytes[4] as number, data: bytes.subarray(5) }), reply));
  }

  it('tells final replies from modifications and progress', () => {
    const finals = TABLE.filter((t) => isFinalReply(t.reply)).map((t) => t.reply.type);
    assert.deepEqual(new Set(finals), new Set(['continue', 'accept', 'reject', 'tempfail', 'discard', 'skip', 'shutdown', 'conn_fail', 'replycode']));
  });

  it('refuses to encode a NUL inside a string, an empty quarantine reason, an oversized REPLBODY', () => {
    assert.throws(() => encodeReply({ type: 'addheader', name: 'X', value: Buffer.from('a\0b') }), MilterReplyError);
    assert.throws(() => encodeReply({ type: 'quarantine', reason: '' }), MilterReplyError);
    assert.throws(() => encodeReply({ type: 'replbody', chunk: Buffer.alloc(65536) }), MilterReplyError);
    assert.throws(() => encodeReply({ type: 'insheader', index: -1, name: 'X', value: Buffer.alloc(0) }), MilterReplyError);
  });

  it('splits a new body into 65535-byte REPLBODY chunks', () => {
    const body = Buffer.alloc(65535 * 2 + 10, 0x61);
    const chunks = replyBodyChunks(body);
    assert.deepEqual(chunks.map((c) => (c.type === 'replbody' ? c.chunk.length : -1)), [65535, 65535, 10]);
    assert.equal(replyBodyChunks(Buffer.alloc(0)).length, 1, 'an empty new body is still one REPLBODY');
  });

  it('refuses unknown reply bytes and malformed payloads', () => {
    assert.throws(() => decodeBytes(hex('00000001 7A')), (e: unknown) => e instanceof MilterProtocolError && e.reason === 'unknown-command');
    assert.throws(() => decodeBytes(hex(`00000003 68 ${ascii('X\0')}`)), MilterProtocolError);
    assert.throws(() => decodeBytes(hex('00000005 4F 00000006')), MilterProtocolError);
    assert.throws(() => decodeBytes(hex(`00000004 79 ${ascii('550')}`)), MilterProtocolError);
  });

  it('property: decode(encode(r)) = r for modification replies', () => {
    const bytes = fc.uint8Array({ maxLength: 50 }).map((a) => Buffer.from(a.map((b) => (b === 0 ? 0x20 : b))));
    const name = fc.stringMatching(/^[A-Za-z-]{1,20}$/);
    const arb: fc.Arbitrary<Reply> = fc.oneof(
      fc.record({ type: fc.constant('addheader' as const), name, value: bytes }),
      fc.record({ type: fc.constant('insheader' as const), index: fc.nat(), name, value: bytes }),
      fc.record({ type: fc.constant('chgheader' as const), index: fc.nat(), name, value: bytes }),
      fc.record({ type: fc.constant('delrcpt' as const), recipient: bytes }),
      fc.record({ type: fc.constant('replbody' as const), chunk: fc.uint8Array({ maxLength: 80 }).map((a) => Buffer.from(a)) }),
    );
    fc.assert(
      fc.property(arb, (reply) => {
        assert.deepEqual(JSON.parse(JSON.stringify(decodeBytes(encodeReply(reply)))), JSON.parse(JSON.stringify(reply)));
      }),
    );
  });
});

describe('formatSmtpReply', () => {
  const ok: Array<[string, string | string[] | undefined, string]> = [
    ['550', '5.7.1 No thanks', '550 5.7.1 No thanks'],
    ['452', '4.5.3 Try again in a separate transaction', '452 4.5.3 Try again in a separate transaction'],
    ['451', undefined, '451 4.0.0'],
    ['550', '100% sure', '550 100%% sure'],
    ['550', ['5.7.1 first line', 'second 100% sure'], '550-5.7.1 first line\r\n550 5.7.1 second 100%% sure'],
    ['421', ['4.3.2 a', '4.3.2 b', 'c'], '421-4.3.2 a\r\n421-4.3.2 b\r\n421 4.3.2 c'],
    ['550', 'no enhanced code', '550 no enhanced code'],
    ['550', '', '550 '],
  ];
  for (const [code, text, expected] of ok) {
    it(`${code} ${JSON.stringify(text)} -> ${JSON.stringify(expected)}`, () => assert.equal(formatSmtpReply(code, text), expected));
  }

  const bad: Array<[string, string | string[] | undefined, RegExp]> = [
    ['250', 'ok', /4xx or 5xx/],
    ['55', 'x', /4xx or 5xx/],
    ['5500', 'x', /4xx or 5xx/],
    ['550', '4.7.1 wrong class', /does not match/],
    ['451', '5.7.1 wrong class', /does not match/],
    ['550', 'a\r\nb', /CR, LF or NUL/],
    ['550', 'a\0b', /CR, LF or NUL/],
    ['550', 'x'.repeat(981), /longer than 980/],
    ['550', Array.from({ length: 33 }, () => 'x'), /at most 32/],
  ];
  for (const [code, text, message] of bad) {
    it(`refuses ${code} ${JSON.stringify(text).slice(0, 40)}`, () => assert.throws(() => formatSmtpReply(code, text), message));
  }
});
