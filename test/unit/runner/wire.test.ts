// The runner process's line protocol: one message per line whatever the
// job holds, lines reassembled across arbitrary chunk boundaries, and
// anything that is not a well-formed message ignored rather than trusted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ERROR_CODES, errorReply, fromSerialized, PumError, type PumErrorCode } from '../../../src/errors.js';
import type { FilterJob, FilterResult } from '../../../src/filter/job.js';
import { encodeLine, LineSplitter, parseAnswer, parseRequest } from '../../../src/runner/wire.js';

const job: FilterJob = {
  spoolPath: '/var/spool/per-user-milter/m1',
  user: { name: 'alice', uid: 1001, gid: 1001, groups: [1001, 100], home: '/home/alice', shell: '/bin/sh' },
  envelope: {
    SENDER: 'a\nb@x', RECIPIENT: 'alice@example.com', LOCAL: 'alice', EXTENSION: '', DOMAIN: 'example.com',
    CLIENT_ADDRESS: '192.0.2.1', CLIENT_HOSTNAME: 'h', CLIENT_HELO: 'h\r\n', CLIENT_PROTOCOL: 'ESMTP', QUEUE_ID: 'Q', SASL_METHOD: '', SASL_USERNAME: '',
  },
  settings: { path: '~/.user-milter', timeout: 30000, sandbox: 'setpriv', limits: { cpuSeconds: 1, memoryBytes: 2, processes: 3, fileSizeBytes: 4, outputBytes: 5 }, exitCodes: { reject: [1], tempfail: [75] } },
};
const result: FilterResult = { outcome: 'reject', exitCode: 1, signal: null, durationMs: 3.5, replyText: '5.7.1 no', log: 'stdout: line one\nline two\n' };

test('a request with newlines in its strings is one line and comes back equal', () => {
  const line = encodeLine({ id: 7, job });
  assert.equal(line.indexOf('\n'), line.length - 1);
  assert.deepEqual(parseRequest(line.slice(0, -1)), { id: 7, job });
});

test('answers: a result or an error', () => {
  assert.deepEqual(parseAnswer(encodeLine({ id: 1, result }).trim()), { id: 1, result });
  const err = { id: 2, error: { message: 'cannot open spool file /s/m1: ENOENT', code: 'PUM_ERR_SPOOL_UNREADABLE' as const } };
  assert.deepEqual(parseAnswer(encodeLine(err).trim()), err);
});

test('every error code survives the line protocol: PumError -> JSON line -> PumError, same code, message and reply', () => {
  for (const code of Object.keys(ERROR_CODES) as PumErrorCode[]) {
    const sent = new PumError(code, `what failed: ${code}\nsecond line`);
    const line = encodeLine({ id: 9, error: sent.toJSON() });
    assert.equal(line.indexOf('\n'), line.length - 1, 'one line');
    const answer = parseAnswer(line.trim());
    assert.ok(answer && 'error' in answer, code);
    const back = fromSerialized(answer.error);
    assert.ok(back instanceof PumError);
    assert.equal(back.code, code);
    assert.equal(back.message, sent.message);
    assert.equal(back.reason, sent.reason);
    assert.deepEqual(errorReply(back.code), errorReply(code));
  }
});

test('an answer with an unknown or missing code is read as PUM_ERR_INTERNAL, never dropped', () => {
  for (const error of [{ message: 'x', code: 'PUM_ERR_NEW_KIND' }, { message: 'x' }]) {
    const answer = parseAnswer(JSON.stringify({ id: 3, error }));
    assert.ok(answer && 'error' in answer);
    assert.equal(fromSerialized(answer.error).code, 'PUM_ERR_INTERNAL');
  }
});

test('anything else is not an answer or a request: stray output, partial or foreign JSON', () => {
  for (const line of ['hello', '{', '[]', 'null', '{"id":1}', '{"id":"1","result":{"outcome":"accept"}}', '{"id":1,"result":{}}', '{"id":1,"error":{}}']) {
    assert.equal(parseAnswer(line), null, line);
  }
  for (const line of ['', '{"id":1}', '{"id":1,"job":{}}', '{"id":1,"job":{"spoolPath":3}}']) {
    assert.equal(parseRequest(line), null, line);
  }
});

test('LineSplitter: the same lines whatever the chunk boundaries', () => {
  fc.assert(
    fc.property(fc.array(fc.string({ minLength: 1 }).map((s) => s.replace(/\n/g, ' ')), { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 10 }), (lines, cuts) => {
      const text = lines.map((l) => l + '\n').join('');
      const points = [...new Set(cuts.map((c) => (text.length === 0 ? 0 : c % text.length)))].sort((a, b) => a - b);
      const splitter = new LineSplitter();
      const out: string[] = [];
      let from = 0;
      for (const p of [...points, text.length]) {
        out.push(...splitter.push(text.slice(from, p)));
        from = p;
      }
      assert.deepEqual(out, lines);
      assert.equal(splitter.rest, '');
    }),
  );
});
