// Pure mapping from exit facts to outcomes, and the reply text rules.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { cleanReplyLine, outcomeOf, replyTextOf, REPLY_TEXT_MAX, type ExitFacts } from '../../../src/filter/outcome.js';

const codes = { reject: [1], tempfail: [75] };
const facts = (f: Partial<ExitFacts>): ExitFacts => ({ exitCode: null, signal: null, timedOut: false, launchError: null, ...f });

test('exit codes, signals, timeouts and launch errors map to outcomes', () => {
  const table: Array<[Partial<ExitFacts>, string]> = [
    [{ exitCode: 0 }, 'accept'],
    [{ exitCode: 1 }, 'reject'],
    [{ exitCode: 75 }, 'tempfail'],
    [{ exitCode: 2 }, 'error'],
    [{ exitCode: 126 }, 'error'],
    [{ exitCode: 255 }, 'error'],
    [{ signal: 'SIGSEGV' }, 'error'],
    [{}, 'error'],
    [{ exitCode: 1, timedOut: true }, 'timeout'],
    [{ signal: 'SIGKILL', timedOut: true }, 'timeout'],
    [{ exitCode: 1, launchError: 'prlimit: failed' }, 'error'],
  ];
  for (const [f, want] of table) assert.equal(outcomeOf(facts(f), codes), want, JSON.stringify(f));
});

test('configured exit codes are honoured', () => {
  const custom = { reject: [1, 20], tempfail: [75, 111] };
  assert.equal(outcomeOf(facts({ exitCode: 20 }), custom), 'reject');
  assert.equal(outcomeOf(facts({ exitCode: 111 }), custom), 'tempfail');
  assert.equal(outcomeOf(facts({ exitCode: 2 }), custom), 'error');
  assert.equal(outcomeOf(facts({ exitCode: 1 }), { reject: [], tempfail: [] }), 'error');
});

test('reply text: first non-empty line, printable ASCII, at most 200 characters', () => {
  assert.equal(replyTextOf(''), '');
  assert.equal(replyTextOf('\n   \n\t\n5.7.1 go away\nsecond\n'), '5.7.1 go away');
  assert.equal(replyTextOf('\r\n5.7.1 crlf\r\n'), '5.7.1 crlf');
  assert.equal(replyTextOf('\x1b[31mred\x1b[0m'), '[31mred[0m');
  assert.equal(replyTextOf('caf\u00e9\tlatte'), 'caf latte');
  assert.equal(replyTextOf(Buffer.from([0xff, 0x41, 0x00, 0x42])), 'AB');
  assert.equal(replyTextOf('x'.repeat(500)).length, 200);
  assert.equal(replyTextOf('\u00e9\u00e9\n ok'), 'ok');
});

test('property: any output gives printable ASCII of at most 200 characters, no leading or trailing space', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 600 }), fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a))), (out) => {
      const t = replyTextOf(out);
      assert.ok(t.length <= REPLY_TEXT_MAX);
      assert.match(t, /^([\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?)?$/);
    }),
    { numRuns: 500 },
  );
  fc.assert(fc.property(fc.string(), (s) => cleanReplyLine(cleanReplyLine(s)) === cleanReplyLine(s)));
});
