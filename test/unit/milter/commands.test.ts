import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeCommand, encodeCommand, type Command } from '../../../src/milter/commands.js';
import { MilterProtocolError } from '../../../src/milter/errors.js';
import { FrameDecoder } from '../../../src/milter/frame.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ascii = (s: string): string => Buffer.from(s, 'latin1').toString('hex');

function decodeBytes(bytes: Buffer): Command {
  const d = new FrameDecoder();
  d.push(bytes);
  const frame = d.next();
  assert.ok(frame, 'one complete frame');
  assert.equal(d.bufferedBytes, 0, 'nothing left over');
  return decodeCommand(frame);
}

/** Byte-exact layouts of each command, as libmilter and both MTAs frame them. */
const TABLE: Array<{ name: string; bytes: Buffer; command: Command }> = [
  {
    name: 'OPTNEG (Postfix 3.7 offer)',
    bytes: hex('0000000D 4F 00000006 000001FF 001FFFFF'),
    command: { type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff },
  },
  {
    name: 'CONNECT inet (Postfix, port 60280)',
    bytes: hex(`00000018 43 ${ascii('localhost\0')} 34 EB78 ${ascii('127.0.0.1\0')}`),
    command: { type: 'connect', hostname: 'localhost', family: 'inet', port: 60280, address: '127.0.0.1' },
  },
  {
    name: 'CONNECT inet6',
    bytes: hex(`00000016 43 ${ascii('[::1]\0')} 36 3039 ${ascii('2001:db8::1\0')}`),
    command: { type: 'connect', hostname: '[::1]', family: 'inet6', port: 12345, address: '2001:db8::1' },
  },
  {
    name: 'CONNECT unix',
    bytes: hex(`0000000D 43 ${ascii('local\0')} 4C 0000 ${ascii('/s\0')}`),
    command: { type: 'connect', hostname: 'local', family: 'unix', port: 0, address: '/s' },
  },
  {
    name: 'CONNECT unknown family: no port, no address',
    bytes: hex(`00000008 43 ${ascii('[x.y]\0')} 55`),
    command: { type: 'connect', hostname: '[x.y]', family: 'unknown', port: 0, address: '' },
  },
  {
    name: 'MACRO for RCPT',
    bytes: hex(`00000020 44 52 ${ascii('{rcpt_addr}\0alice@example.org\0')}`),
    command: { type: 'macro', stage: 0x52, macros: [['{rcpt_addr}', 'alice@example.org']] },
  },
  {
    name: 'MACRO empty (Postfix: bare stage byte)',
    bytes: hex('00000002 44 48'),
    command: { type: 'macro', stage: 0x48, macros: [] },
  },
  { name: 'HELO', bytes: hex(`00000004 48 ${ascii('mx\0')}`), command: { type: 'helo', name: 'mx' } },
  {
    name: 'MAIL with ESMTP args, brackets kept',
    bytes: hex(`00000028 4D ${ascii('<s@example.net>\0SIZE=200\0BODY=8BITMIME\0')}`),
    command: { type: 'mail', args: [Buffer.from('<s@example.net>'), Buffer.from('SIZE=200'), Buffer.from('BODY=8BITMIME')] },
  },
  {
    name: 'RCPT keeps the client spelling',
    bytes: hex(`00000013 52 ${ascii('<Bob@Example.ORG>\0')}`),
    command: { type: 'rcpt', args: [Buffer.from('<Bob@Example.ORG>')] },
  },
  {
    name: 'HEADER with folded value (LF + tab)',
    bytes: hex(`00000017 4C ${ascii('Subject\0first\n\tsecond\0')}`),
    command: { type: 'header', name: 'Subject', value: Buffer.from('first\n\tsecond') },
  },
  { name: 'BODY raw bytes', bytes: hex('00000005 42 0d0a00ff'), command: { type: 'body', chunk: hex('0d0a00ff') } },
  { name: 'BODYEOB', bytes: hex('00000001 45'), command: { type: 'eom', chunk: Buffer.alloc(0) } },
  { name: 'DATA', bytes: hex('00000001 54'), command: { type: 'data' } },
  { name: 'EOH', bytes: hex('00000001 4E'), command: { type: 'eoh' } },
  { name: 'UNKNOWN (Postfix: verb only)', bytes: hex(`00000005 55 ${ascii('FOO\0')}`), command: { type: 'unknown', command: Buffer.from('FOO') } },
  { name: 'ABORT', bytes: hex('00000001 41'), command: { type: 'abort' } },
  { name: 'QUIT', bytes: hex('00000001 51'), command: { type: 'quit' } },
  { name: 'QUIT_NC', bytes: hex('00000001 4B'), command: { type: 'quit_nc' } },
];

describe('commands: byte-exact layouts', () => {
  for (const { name, bytes, command } of TABLE) {
    it(`decodes ${name}`, () => assert.deepEqual(decodeBytes(bytes), command));
    it(`encodes ${name}`, () => assert.equal(encodeCommand(command).toString('hex'), bytes.toString('hex')));
  }

  it('keeps 8-bit header values byte for byte', () => {
    const value = Buffer.from([0x3d, 0xc3, 0xa9, 0xff]);
    const cmd = decodeBytes(encodeCommand({ type: 'header', name: 'X', value }));
    assert.ok(cmd.type === 'header');
    assert.deepEqual(cmd.value, value);
  });
});

describe('commands: malformed payloads', () => {
  const bad: Array<[string, Buffer, string]> = [
    ['unknown command byte', hex('00000001 5A'), 'unknown-command'],
    ['OPTNEG too short', hex('00000009 4F 00000006 000001FF'), 'bad-payload'],
    ['CONNECT without NUL', hex(`00000004 43 ${ascii('abc')}`), 'bad-payload'],
    ['CONNECT without family', hex(`00000003 43 ${ascii('a\0')}`), 'bad-payload'],
    ['CONNECT with a bad family', hex(`00000004 43 ${ascii('a\0')} 58`), 'bad-payload'],
    ['CONNECT inet without port', hex(`00000005 43 ${ascii('a\0')} 34 00`), 'bad-payload'],
    ['CONNECT address unterminated', hex(`00000007 43 ${ascii('a\0')} 34 0019 ${ascii('1')}`), 'bad-payload'],
    ['HELO unterminated', hex(`00000003 48 ${ascii('mx')}`), 'bad-payload'],
    ['HELO empty', hex('00000001 48'), 'bad-payload'],
    ['MAIL empty', hex('00000001 4D'), 'bad-payload'],
    ['HEADER with one string', hex(`00000003 4C ${ascii('a\0')}`), 'bad-payload'],
    ['HEADER with three strings', hex(`00000007 4C ${ascii('a\0b\0c\0')}`), 'bad-payload'],
    ['MACRO unterminated', hex(`00000004 44 43 ${ascii('jx')}`), 'bad-payload'],
  ];
  for (const [name, bytes, reason] of bad) {
    it(`refuses ${name}`, () => {
      assert.throws(() => decodeBytes(bytes), (e: unknown) => e instanceof MilterProtocolError && e.reason === reason);
    });
  }

  it('accepts a macro packet with no data at all, and a dangling macro name', () => {
    assert.deepEqual(decodeBytes(hex('00000001 44')), { type: 'macro', stage: null, macros: [] });
    assert.deepEqual(decodeBytes(hex(`00000006 44 43 ${ascii('j\0x\0')}`)), { type: 'macro', stage: 0x43, macros: [['j', 'x']] });
    assert.deepEqual(decodeBytes(hex(`00000004 44 43 ${ascii('j\0')}`)), { type: 'macro', stage: 0x43, macros: [] });
  });

  it('property: decodeCommand never throws anything but MilterProtocolError', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 64 }), (code, data) => {
        try {
          decodeCommand({ code, data: Buffer.from(data) });
        } catch (error) {
          assert.ok(error instanceof MilterProtocolError, String(error));
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('commands: round trips', () => {
  const nonNul = fc.uint8Array({ minLength: 1, maxLength: 40 }).map((a) => Buffer.from(a.map((b) => (b === 0 ? 1 : b))));
  const name = fc.string({ minLength: 1, maxLength: 20 }).filter((s) => !s.includes('\0'));
  const commandArb: fc.Arbitrary<Command> = fc.oneof(
    fc.record({ type: fc.constant('optneg' as const), version: fc.nat(), actions: fc.nat(), protocol: fc.nat() }),
    fc.record({ type: fc.constant('helo' as const), name }),
    fc.record({ type: fc.constant('mail' as const), args: fc.array(nonNul, { minLength: 1, maxLength: 4 }) }),
    fc.record({ type: fc.constant('rcpt' as const), args: fc.array(nonNul, { minLength: 1, maxLength: 4 }) }),
    fc.record({ type: fc.constant('header' as const), name, value: nonNul }),
    fc.record({ type: fc.constant('body' as const), chunk: fc.uint8Array({ maxLength: 100 }).map((a) => Buffer.from(a)) }),
    fc.record({
      type: fc.constant('connect' as const),
      hostname: name,
      family: fc.constantFrom('inet' as const, 'inet6' as const, 'unix' as const),
      port: fc.integer({ min: 0, max: 65535 }),
      address: name,
    }),
    fc.record({ type: fc.constant('macro' as const), stage: fc.integer({ min: 1, max: 255 }), macros: fc.array(fc.tuple(name, name), { maxLength: 4 }) }),
  );
  it('property: decode(encode(c)) = c', () => {
    fc.assert(
      fc.property(commandArb, (command) => {
        const normalized = command.type === 'helo' || command.type === 'header' || command.type === 'connect' || command.type === 'macro'
          ? JSON.parse(JSON.stringify(command, (_k, v: unknown) => (typeof v === 'string' ? Buffer.from(v, 'latin1').toString('latin1') : v)))
          : command;
        const decoded = decodeBytes(encodeCommand(command));
        // Via JSON: fast-check builds null-prototype records, and Buffers compare as byte arrays.
        assert.deepEqual(JSON.parse(JSON.stringify(decoded)), JSON.parse(JSON.stringify(normalized)));
      }),
      { numRuns: 500 },
    );
  });
});
