// The per-message text line of a message tempfailed by a failure of ours
// carries its reason (the internal_errors_total label) and code (the
// PumError code), the users whose run failed, and
// what failed, quoted so a value cannot forge fields.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatMessageSummary, formatTextLine } from '../../../src/log/index.js';

test('reason, failed users and error follow the action', () => {
  assert.equal(
    formatMessageSummary({
      from: 's@x',
      rcpts: 2,
      users: [{ user: 'alice', outcome: 'reject', exit: 1, ms: 12 }],
      action: 'tempfail',
      reason: 'spool',
      code: 'PUM_ERR_SPOOL_UNREADABLE',
      failed: ['bob'],
      error: 'cannot open spool file /s/msg-1: ENOENT',
      reply: '451 4.3.0 Temporary local problem in per-recipient filtering, try again later',
    }),
    'from=<s@x> rcpts=2 alice=reject(1,12ms) action=tempfail reason=spool code=PUM_ERR_SPOOL_UNREADABLE failed=bob error="cannot open spool file /s/msg-1: ENOENT" reply="451 4.3.0 Temporary local problem in per-recipient filtering, try again later"',
  );
});

test('a pool-full refusal: no user ran, all named as failed, one line', () => {
  const line = formatTextLine({
    level: 50,
    time: Date.parse('2026-12-02T10:00:00Z'),
    event: 'message',
    queueId: 'Q9',
    from: 'a@b',
    users: [],
    action: 'tempfail',
    reason: 'pool_full',
    code: 'PUM_ERR_POOL_FULL',
    failed: ['alice', 'bob'],
    error: '3 filter runs already waiting (pool.maxQueue 0)\nx=forged',
    msg: 'message',
  });
  assert.equal(line.split('\n').length, 2, 'one line');
  assert.match(line, /^2026-12-02T10:00:00Z error Q9: from=<a@b> action=tempfail reason=pool_full code=PUM_ERR_POOL_FULL failed=alice,bob error="3 filter runs already waiting \(pool\.maxQueue 0\)\\nx=forged"\n$/);
});
