// The scheduler's pure part (src/runner/fair-queue.ts): run slots, the per-user
// limit, first come first served across users skipping those at their limit,
// each user's runs in order; checked by examples and against a plain model.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FairQueue } from '../../../src/runner/fair-queue.js';

/** Takes every item that may start now. */
function startAll<K, T>(q: FairQueue<K, T>): T[] {
  const out: T[] = [];
  for (let n = q.next(); n !== undefined; n = q.next()) out.push(n.item);
  return out;
}

test('four runs of one slow user take two slots; another user goes ahead of the waiting two', () => {
  const q = new FairQueue<string, string>({ slots: 4, perKey: 2 });
  for (const id of ['a1', 'a2', 'a3', 'a4']) q.push('alice', id);
  assert.deepEqual(startAll(q), ['a1', 'a2']);
  assert.equal(q.waiting, 2);
  q.push('bob', 'b1');
  assert.deepEqual(startAll(q), ['b1'], 'bob starts although alice came first');
  assert.deepEqual([q.running, q.runningOf('alice'), q.runningOf('bob')], [3, 2, 1]);
  q.finished('alice');
  assert.deepEqual(startAll(q), ['a3'], "alice's runs in order");
  q.finished('bob');
  q.finished('alice');
  assert.deepEqual(startAll(q), ['a4']);
  q.finished('alice');
  q.finished('alice');
  assert.deepEqual([q.running, q.waiting], [0, 0]);
});

test('first come first served across users when slots are the limit', () => {
  const q = new FairQueue<string, string>({ slots: 1, perKey: 2 });
  q.push('a', 'a1');
  q.push('b', 'b1');
  q.push('a', 'a2');
  q.push('c', 'c1');
  const order: string[] = [];
  for (;;) {
    const n = q.next();
    if (!n) break;
    order.push(n.item);
    assert.equal(q.next(), undefined, 'one slot');
    q.finished(n.key);
  }
  assert.deepEqual(order, ['a1', 'b1', 'a2', 'c1']);
});

test('a lowered per-user limit holds new starts until running ones finish; a raised one starts more at once', () => {
  const q = new FairQueue<string, number>({ slots: 10, perKey: 3 });
  for (let i = 0; i < 6; i++) q.push('u', i);
  assert.deepEqual(startAll(q), [0, 1, 2]);
  q.setPerKey(1);
  q.finished('u');
  assert.deepEqual(startAll(q), [], 'still two running, limit 1');
  q.finished('u');
  q.finished('u');
  assert.deepEqual(startAll(q), [3]);
  q.setPerKey(4);
  assert.deepEqual(startAll(q), [4, 5]);
});

test('drain() hands back every waiting item, oldest first, and leaves running ones counted', () => {
  const q = new FairQueue<string, string>({ slots: 1, perKey: 1 });
  q.push('a', 'a1');
  q.push('a', 'a2');
  q.push('b', 'b1');
  assert.deepEqual(startAll(q), ['a1']);
  assert.deepEqual(q.drain(), ['a2', 'b1']);
  assert.deepEqual([q.waiting, q.running], [0, 1]);
  q.finished('a');
  assert.equal(q.running, 0);
  assert.throws(() => q.finished('a'), /without a running item/);
});

test('bad limits are refused', () => {
  assert.throws(() => new FairQueue({ slots: 0, perKey: 1 }), /slots/);
  assert.throws(() => new FairQueue({ slots: 1, perKey: 0.5 }), /perKey/);
});

test('against a model: never above the limits, never idle when something may start, the oldest eligible first', () => {
  // Operations: push a run for user k, or finish a running run of user k.
  const op = fc.oneof(
    fc.record({ kind: fc.constant('push' as const), key: fc.integer({ min: 0, max: 4 }) }),
    fc.record({ kind: fc.constant('finish' as const), key: fc.integer({ min: 0, max: 4 }) }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 3 }), fc.array(op, { maxLength: 80 }), (slots, perKey, ops) => {
      const q = new FairQueue<number, number>({ slots, perKey });
      const waiting: Array<{ key: number; seq: number }> = [];
      const running = new Map<number, number>();
      let seq = 0;
      let total = 0;
      const runningOf = (k: number) => running.get(k) ?? 0;
      const pump = () => {
        for (;;) {
          // The model: the oldest waiting run whose user is below perKey, if a slot is free.
          const i = total < slots ? waiting.findIndex((w) => runningOf(w.key) < perKey) : -1;
          const got = q.next();
          if (i < 0) {
            assert.equal(got, undefined);
            return;
          }
          const want = waiting.splice(i, 1)[0]!;
          assert.deepEqual(got, { key: want.key, item: want.seq });
          running.set(want.key, runningOf(want.key) + 1);
          total++;
        }
      };
      for (const o of ops) {
        if (o.kind === 'push') {
          q.push(o.key, seq);
          waiting.push({ key: o.key, seq: seq++ });
        } else if (runningOf(o.key) > 0) {
          q.finished(o.key);
          running.set(o.key, runningOf(o.key) - 1);
          total--;
        }
        pump();
        assert.equal(q.running, total);
        assert.equal(q.waiting, waiting.length);
        for (const [k, n] of running) {
          assert.ok(n <= perKey);
          assert.equal(q.runningOf(k), n);
        }
      }
    }),
  );
});
