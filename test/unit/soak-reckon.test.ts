// The soak's arithmetic (bench/soak/engine.ts reckon, bench/soak/mix.ts):
// each kind of mistake at the mailboxes shows up in its own sum, and the
// expected verdict follows docs/reference.md §5 (rejected only when every
// local recipient rejects).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { reckon, type MessageRecord } from '../../bench/soak/engine.js';
import { expectedFinal, Mix, renderMessage, type Plan } from '../../bench/soak/mix.js';
import { dotStuff } from '../../bench/soak/smtp-client.js';

function rec(id: string, to: string[], acts: Plan['acts'], final: MessageRecord['final']): MessageRecord {
  return { plan: { index: 0, id, to, acts, size: 4096, odd: null }, attempts: 1, replies: [], final, ambiguous: 0, firstAt: 0, finalAt: 0 };
}
const copies = (entries: Record<string, Record<string, number>>) => ({
  copies: new Map(Object.entries(entries).map(([id, m]) => [id, new Map(Object.entries(m))])),
});

describe('soak reckoning', () => {
  it('expected verdict: reject only when every recipient rejects; t, o, c and no filter are accept votes in the end', () => {
    const p = (to: string[], acts: Plan['acts']): Plan => ({ index: 0, id: 'x', to, acts, size: 1, odd: null });
    assert.equal(expectedFinal(p(['u0', 'u1'], { u0: 'r', u1: 'r' })), 'reject');
    assert.equal(expectedFinal(p(['u0', 'u1'], { u0: 'r', u1: 't' })), 'accept');
    assert.equal(expectedFinal(p(['u0', 'u9'], { u0: 'r' })), 'accept');
    assert.equal(expectedFinal(p(['u0'], { u0: 'c' })), 'accept');
    assert.equal(expectedFinal(p(['u0'], { u0: 'o' })), 'accept');
  });

  it('a clean run sums to zero', () => {
    const s = reckon([rec('a', ['u0', 'u1'], { u0: 'a', u1: 'r' }, 'accepted'), rec('b', ['u2'], { u2: 'r' }, 'rejected')], copies({ a: { u0: 1, u1: 1 } }), 1);
    assert.deepEqual([s.lost, s.duplicated, s.wronglyRejected, s.wronglyAccepted, s.strays], [0, 0, 0, 0, 0]);
    assert.equal(s.accepted, 1);
    assert.equal(s.rejected, 1);
  });

  it('each mistake is counted where it belongs', () => {
    const s = reckon(
      [
        rec('lost', ['u0', 'u1'], { u0: 'a', u1: 'a' }, 'accepted'),
        rec('dup', ['u0'], { u0: 'a' }, 'accepted'),
        rec('wrej', ['u0'], { u0: 'a' }, 'rejected'),
        rec('wacc', ['u0'], { u0: 'r' }, 'accepted'),
        rec('gave', ['u0', 'u1', 'u2'], { u0: 'a' }, 'gave-up'),
      ],
      copies({ lost: { u0: 1 }, dup: { u0: 2 }, wacc: { u0: 1 }, other: { u3: 1 } }),
      1,
    );
    assert.equal(s.lost, 1 + 3);
    assert.equal(s.duplicated, 1);
    assert.equal(s.wronglyRejected, 1);
    assert.equal(s.wronglyAccepted, 1);
    assert.equal(s.gaveUp, 1);
    assert.equal(s.strays, 1);
    assert.ok(s.problems.some((l) => l.startsWith('lost for u1: lost ')), s.problems.join('\n'));
  });

  it('the mix is reproducible from its seed and covers 1-10 recipients and every behaviour', () => {
    const a = new Mix({ seed: 7 });
    const b = new Mix({ seed: 7 });
    const plans = Array.from({ length: 3000 }, (_, i) => a.plan(i));
    assert.deepEqual(plans.slice(0, 50), Array.from({ length: 50 }, (_, i) => b.plan(i)));
    const counts = new Set(plans.map((p) => p.to.length));
    for (let n = 1; n <= 10; n++) assert.ok(counts.has(n), `no message with ${n} recipients`);
    const acts = new Set(plans.flatMap((p) => Object.values(p.acts)));
    assert.deepEqual([...acts].sort(), ['a', 'c', 'f', 'k', 'o', 'r', 't']);
    assert.ok(plans.some((p) => p.size > 1024 * 1024) && plans.every((p) => p.size >= 4096 && p.size <= 2 * 1024 * 1024));
    assert.ok(plans.some((p) => p.odd !== null));
  });

  it('messages are about their planned size, carry their id, and dot-stuffing guards leading dots', () => {
    const mix = new Mix({ seed: 3 });
    for (let i = 0; i < 200; i++) {
      const p = mix.plan(i);
      const m = renderMessage(p, 's@x');
      assert.ok(m.includes(`X-Soak-Id: ${p.id}\r\n`));
      if (p.odd !== 'manyHeaders' && p.odd !== 'longHeader') assert.ok(Math.abs(m.length - p.size) < 200 || m.length < 4096, `${m.length} vs ${p.size}`);
    }
    assert.equal(dotStuff(Buffer.from('.a\r\nb\r\n.c\r\n')).toString(), '..a\r\nb\r\n..c\r\n');
  });
});
