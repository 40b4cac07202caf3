// The error family (src/errors.ts): one 451 4.3.x reply per code, one metric
// reason per code, and a code that survives being turned into data and back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ERROR_CODES, errorReply, errorReplyLine, fromSerialized, INTERNAL_REASONS, PumError, toPumError, type PumErrorCode } from '../../src/errors.js';

const EXPECTED: Record<PumErrorCode, [reply: string, reason: string]> = {
  PUM_ERR_SPOOL_WRITE: ['451 4.3.1 Mail system full, try again later', 'spool'],
  PUM_ERR_SPOOL_UNREADABLE: ['451 4.3.0 Temporary local problem in per-recipient filtering, try again later', 'spool'],
  PUM_ERR_LAUNCHER: ['451 4.3.0 Temporary local problem in per-recipient filtering, try again later', 'launcher'],
  PUM_ERR_RUNNER_GONE: ['451 4.3.0 Temporary local problem in per-recipient filtering, try again later', 'runner'],
  PUM_ERR_POOL_FULL: ['451 4.3.2 Per-recipient filters busy, try again later', 'pool_full'],
  PUM_ERR_USER_LOOKUP: ['451 4.3.0 Temporary local problem in per-recipient filtering, try again later', 'lookup'],
  PUM_ERR_TABLE: ['451 4.3.0 Temporary local problem in per-recipient filtering, try again later', 'lookup'],
  PUM_ERR_INTERNAL: ['451 4.3.0 Temporary local problem in per-recipient filtering, try again later', 'other'],
};

test('errorReply: every code has exactly its 451 4.3.x reply and its reason', () => {
  assert.deepEqual(Object.keys(ERROR_CODES).sort(), Object.keys(EXPECTED).sort());
  for (const [code, [line, reason]] of Object.entries(EXPECTED) as Array<[PumErrorCode, [string, string]]>) {
    const r = errorReply(code);
    assert.equal(r.code, '451', code);
    assert.match(r.text, /^4\.3\.\d /, code);
    assert.equal(errorReplyLine(code), line, code);
    assert.equal(new PumError(code, 'x').reason, reason, code);
    assert.ok(INTERNAL_REASONS.includes(new PumError(code, 'x').reason), `${code}: a declared metric reason`);
  }
});

test('toPumError: a PumError as it is, anything else PUM_ERR_INTERNAL with its message and cause', () => {
  const own = new PumError('PUM_ERR_LAUNCHER', 'launcher gone');
  assert.equal(toPumError(own), own);
  const bug = new TypeError('x is undefined');
  const wrapped = toPumError(bug);
  assert.equal(wrapped.code, 'PUM_ERR_INTERNAL');
  assert.equal(wrapped.message, 'x is undefined');
  assert.equal(wrapped.cause, bug);
  assert.equal(toPumError('a string').message, 'a string');
});

test('toJSON/fromSerialized round trip, also through a structured clone (the worker thread boundary)', () => {
  for (const code of Object.keys(ERROR_CODES) as PumErrorCode[]) {
    const e = new PumError(code, `failed: ${code}`);
    for (const data of [JSON.parse(JSON.stringify(e)), structuredClone(e.toJSON())]) {
      const back = fromSerialized(data);
      assert.equal(back.code, code);
      assert.equal(back.message, e.message);
    }
  }
  assert.equal(fromSerialized(null).code, 'PUM_ERR_INTERNAL');
  assert.equal(fromSerialized({ code: 'toString', message: 'm' }).code, 'PUM_ERR_INTERNAL', 'no prototype keys taken for codes');
});
