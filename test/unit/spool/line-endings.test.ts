import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LineEndingConverter, type LineEndings } from '../../../src/spool/line-endings.js';

function convertWhole(target: LineEndings, input: Buffer): Buffer {
  const c = new LineEndingConverter(target);
  return Buffer.concat([c.push(input), c.end()]);
}

function convertChunks(target: LineEndings, chunks: Buffer[]): Buffer {
  const c = new LineEndingConverter(target);
  return Buffer.concat([...chunks.map((ch) => c.push(ch)), c.end()]);
}

test('conversion table', () => {
  const table: Array<[LineEndings, string, string]> = [
    ['lf', 'a\r\nb\r\n', 'a\nb\n'],
    ['lf', 'a\rb\r\n', 'a\rb\n'], // a lone CR stays
    ['lf', 'a\nb', 'a\nb'], // a bare LF stays
    ['lf', '\r\n\r\n', '\n\n'],
    ['lf', 'end\r', 'end\r'],
    ['lf', '\r\r\n', '\r\n'],
    ['lf', '', ''],
    ['crlf', 'a\r\nb\r\n', 'a\r\nb\r\n'],
    ['crlf', 'a\nb\n', 'a\r\nb\r\n'],
    ['crlf', '\n\n', '\r\n\r\n'],
    ['crlf', 'a\rb', 'a\rb'],
    ['crlf', 'end\r', 'end\r'],
    ['crlf', '\r\r\n', '\r\r\n'],
  ];
  for (const [target, input, want] of table) {
    assert.equal(convertWhole(target, Buffer.from(input, 'latin1')).toString('latin1'), want, `${target} ${JSON.stringify(input)}`);
  }
});

test('a CRLF split between chunks, at every offset', () => {
  const input = Buffer.from('Line one\r\nLine two\r\n\r\n.dot\r\nlone\rcr\r\n', 'latin1');
  for (const target of ['lf', 'crlf'] as const) {
    const whole = convertWhole(target, input);
    for (let i = 0; i <= input.length; i++) {
      const got = convertChunks(target, [input.subarray(0, i), input.subarray(i)]);
      assert.deepEqual(got, whole, `${target} split at ${i}`);
    }
  }
  assert.equal(convertWhole('lf', input).toString('latin1'), 'Line one\nLine two\n\n.dot\nlone\rcr\n');
});

test('property: any chunking gives the same bytes as one chunk', () => {
  const bytes = fc.array(fc.constantFrom(0x0d, 0x0a, 0x41, 0x20), { maxLength: 60 });
  fc.assert(
    fc.property(bytes, fc.array(fc.nat(60), { maxLength: 6 }), fc.constantFrom<LineEndings>('lf', 'crlf'), (arr, cuts, target) => {
      const input = Buffer.from(arr);
      const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
      const chunks: Buffer[] = [];
      let prev = 0;
      for (const p of points) {
        chunks.push(input.subarray(prev, p));
        prev = p;
      }
      chunks.push(input.subarray(prev));
      const got = convertChunks(target, chunks);
      assert.deepEqual(got, convertWhole(target, input));
      // lf: one LF out per LF in (CRLF -> LF); crlf: every LF preceded by CR.
      const lfs = (b: Buffer) => b.filter((x) => x === 0x0a).length;
      assert.equal(lfs(got), lfs(input));
      if (target === 'lf') assert.equal(got.length, input.length - (input.toString('latin1').match(/\r\n/g) ?? []).length);
      else for (let i = 0; i < got.length; i++) if (got[i] === 0x0a) assert.equal(got[i - 1], 0x0d);
    }),
    { numRuns: 2000 },
  );
});
