import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FrameDecoder, cString, encodeFrame, splitCStrings } from '../../../src/milter/frame.js';
import { MilterProtocolError } from '../../../src/milter/errors.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function decodeAll(decoder: FrameDecoder): Array<{ code: number; data: string }> {
  const out: Array<{ code: number; data: string }> = [];
  for (let f = decoder.next(); f; f = decoder.next()) out.push({ code: f.code, data: f.data.toString('hex') });
  return out;
}

describe('encodeFrame', () => {
  it('builds CONTINUE as 00 00 00 01 63', () => {
    assert.deepEqual(encodeFrame(0x63), hex('00000001 63'));
  });

  it('counts the command byte plus all data parts in the length word', () => {
    assert.deepEqual(encodeFrame(0x48, Buffer.from('mx\0')), hex('00000004 48 6d7800'));
    assert.deepEqual(encodeFrame(0x4c, Buffer.from('a\0'), Buffer.from('b\0')), hex('00000005 4c 6100 6200'));
  });

  it('returns one Buffer for the whole packet', () => {
    const packet = encodeFrame(0x42, Buffer.alloc(70000, 0x61));
    assert.equal(packet.length, 4 + 1 + 70000);
    assert.equal(packet.readUInt32BE(0), 70001);
  });
});

describe('FrameDecoder', () => {
  const worked = hex('0000000D 4F 00000006 000001FF 001FFFFF'); // Postfix 3.7 OPTNEG offer

  it('decodes the worked OPTNEG example', () => {
    const d = new FrameDecoder();
    d.push(worked);
    assert.deepEqual(decodeAll(d), [{ code: 0x4f, data: '00000006000001ff001fffff' }]);
    assert.equal(d.bufferedBytes, 0);
  });

  it('decodes the same bytes split at every offset', () => {
    const stream = Buffer.concat([worked, encodeFrame(0x43, Buffer.from('localhost\0'), hex('34 eb78'), Buffer.from('127.0.0.1\0')), encodeFrame(0x41)]);
    const whole = new FrameDecoder();
    whole.push(stream);
    const expected = decodeAll(whole);
    assert.equal(expected.length, 3);
    for (let i = 0; i <= stream.length; i++) {
      for (let j = i; j <= stream.length; j++) {
        const d = new FrameDecoder();
        const got: ReturnType<typeof decodeAll> = [];
        d.push(stream.subarray(0, i));
        got.push(...decodeAll(d));
        d.push(stream.subarray(i, j));
        got.push(...decodeAll(d));
        d.push(stream.subarray(j));
        got.push(...decodeAll(d));
        assert.deepEqual(got, expected, `split at ${i}/${j}`);
      }
    }
  });

  it('decodes byte by byte', () => {
    const d = new FrameDecoder();
    const got: ReturnType<typeof decodeAll> = [];
    for (const byte of worked) {
      d.push(Buffer.of(byte));
      got.push(...decodeAll(d));
    }
    assert.equal(got.length, 1);
  });

  it('rejects length 0 before touching any other byte', () => {
    const d = new FrameDecoder();
    d.push(hex('00000000'));
    assert.throws(() => d.next(), (e: unknown) => e instanceof MilterProtocolError && e.reason === 'frame-length-zero');
    // Poisoned: the stream cannot be trusted any more.
    assert.throws(() => d.next(), MilterProtocolError);
  });

  it('rejects a length above the maximum as soon as the length word is in', () => {
    const d = new FrameDecoder({ maxFrameLength: 100 });
    d.push(hex('00000065')); // 101, no payload yet
    assert.throws(() => d.next(), (e: unknown) => e instanceof MilterProtocolError && e.reason === 'frame-too-large');
  });

  it('accepts exactly the maximum, and a 1 MiB default that lets > 64 KiB headers through', () => {
    const d = new FrameDecoder({ maxFrameLength: 5 });
    d.push(encodeFrame(0x42, Buffer.from('abcd')));
    assert.equal(d.next()?.data.toString(), 'abcd');
    const big = new FrameDecoder();
    assert.equal(big.maxFrameLength, 1024 * 1024);
    const header = encodeFrame(0x4c, cString('X-Big'), cString('v'.repeat(100_000)));
    big.push(header);
    assert.equal(big.next()?.data.length, 6 + 100_001);
  });

  it('rejects 0xFFFFFFFF', () => {
    const d = new FrameDecoder();
    d.push(hex('ffffffff 41'));
    assert.throws(() => d.next(), /exceeds/);
  });

  it('end() reports a packet cut short', () => {
    const d = new FrameDecoder();
    d.push(hex('00000005 42 61'));
    assert.equal(d.next(), undefined);
    assert.throws(() => d.end(), (e: unknown) => e instanceof MilterProtocolError && e.reason === 'truncated-frame');
    const clean = new FrameDecoder();
    clean.push(encodeFrame(0x41));
    clean.next();
    assert.doesNotThrow(() => clean.end());
  });

  it('property: any chunking of any frame sequence decodes to the same frames', () => {
    const frameArb = fc.record({ code: fc.integer({ min: 0, max: 255 }), data: fc.uint8Array({ maxLength: 300 }) });
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 20 }), (frames, cuts) => {
        const stream = Buffer.concat(frames.map((f) => encodeFrame(f.code, Buffer.from(f.data))));
        const d = new FrameDecoder();
        const got: Array<{ code: number; data: string }> = [];
        let at = 0;
        let i = 0;
        while (at < stream.length) {
          const n = cuts[i++ % cuts.length] as number;
          d.push(stream.subarray(at, at + n));
          at += n;
          got.push(...decodeAll(d));
        }
        assert.deepEqual(
          got,
          frames.map((f) => ({ code: f.code, data: Buffer.from(f.data).toString('hex') })),
        );
      }),
      { numRuns: 300 },
    );
  });
});

describe('C strings', () => {
  it('splits NUL-terminated lists and refuses an unterminated one', () => {
    assert.deepEqual(splitCStrings(Buffer.from('a\0bc\0\0'))?.map(String), ['a', 'bc', '']);
    assert.deepEqual(splitCStrings(Buffer.alloc(0)), []);
    assert.equal(splitCStrings(Buffer.from('a\0b')), undefined);
  });

  it('keeps 8-bit bytes as they are', () => {
    assert.deepEqual(cString(Buffer.from([0xe9, 0xff])), Buffer.from([0xe9, 0xff, 0]));
    assert.deepEqual(cString('\u00e9'), Buffer.from([0xe9, 0]));
  });
});
