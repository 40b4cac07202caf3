// The benchmark's plans are data (bench/harness.ts benchPlans) run by one
// loop; which scenarios a run measures is a pure function of the options.
// These are the selections the harness made before it became data.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { benchPlans, selectPlans } from '../../../bench/harness.js';

const ids = (options: { smoke: boolean; peer: boolean }, only: RegExp | null): string[] =>
  selectPlans(benchPlans({ ...options, threads: 2 }), only).flatMap(({ items }) => items.map((s) => s.id));

describe('bench plans', () => {
  it('a full run: every layer and system, in order', () => {
    assert.deepEqual(ids({ smoke: false, peer: true }, null), [
      'spawn/fork-exec/4k/trivial',
      'spawn/fork-exec-c8/4k/trivial',
      'spawn/setpriv/4k/trivial',
      'spawn/setpriv-c8/4k/trivial',
      'spawn/bwrap/4k/trivial',
      'spawn/bwrap-c8/4k/trivial',
      'milter/null-c/r1/4k/pass',
      'milter/pum-setpriv/r1/4k/pass',
      'milter/pum-setpriv/r1/4k/trivial',
      'milter/pum-setpriv/r3/4k/trivial',
      'milter/pum-setpriv/r10/4k/trivial',
      'milter/pum-setpriv/r1/100k/trivial',
      'milter/pum-setpriv/r1/10m/trivial',
      'milter/pum-setpriv/r3/4k/slow',
      'milter/pum-bwrap/r3/4k/trivial',
      'milter/pum-setpriv-t8/r3/4k/slow',
      'smtp/postfix-only/r1/4k/pass',
      'smtp/postfix-only/r1/4k/local',
      'smtp/postfix-only/r3/4k/local',
      'smtp/postfix-only/r10/4k/local',
      'smtp/postfix-only/r1/10m/pass',
      'smtp/null-c/r1/4k/pass',
      'smtp/pum-setpriv/r1/4k/pass',
      'smtp/pum-setpriv/r1/4k/trivial',
      'smtp/pum-setpriv/r3/4k/trivial',
      'smtp/pum-setpriv/r10/4k/trivial',
      'smtp/pum-setpriv/r3/4k/slow',
      'smtp/pum-setpriv/r1/10m/trivial',
      'smtp/pum-bwrap/r3/4k/trivial',
      'smtp/pum-setpriv-tcp/r1/4k/pass',
      'smtp/mimedefang/r1/4k/trivial',
      'smtp/mimedefang/r3/4k/trivial',
      'smtp/mimedefang/r10/4k/trivial',
      'smtp/mimedefang/r3/4k/slow',
    ]);
    assert.ok(!ids({ smoke: false, peer: false }, null).some((id) => id.includes('mimedefang')), '--no-peer');
  });

  it('the smoke set', () => {
    assert.deepEqual(ids({ smoke: true, peer: true }, null), ['milter/null-c/r1/4k/pass', 'milter/pum-setpriv/r1/4k/pass', 'smtp/pum-setpriv/r1/4k/pass']);
  });

  it('--only keeps the baselines a wanted scenario is compared with', () => {
    assert.deepEqual(ids({ smoke: false, peer: true }, /smtp\/pum-setpriv\/r3\/4k\/trivial/), [
      'milter/null-c/r1/4k/pass',
      'smtp/postfix-only/r1/4k/pass',
      'smtp/postfix-only/r3/4k/local',
      'smtp/null-c/r1/4k/pass',
      'smtp/pum-setpriv/r1/4k/pass',
      'smtp/pum-setpriv/r3/4k/trivial',
    ]);
    assert.deepEqual(ids({ smoke: false, peer: true }, /milter\/pum-bwrap/), [
      'milter/null-c/r1/4k/pass',
      'milter/pum-bwrap/r3/4k/trivial',
      'smtp/postfix-only/r1/4k/pass',
      'smtp/null-c/r1/4k/pass',
    ]);
    const pum = ids({ smoke: false, peer: true }, /^(milter|smtp)\/pum-/);
    assert.ok(pum.includes('spawn/fork-exec-c8/4k/trivial') && pum.includes('spawn/setpriv/4k/trivial') && pum.includes('smtp/mimedefang/r3/4k/trivial'), 'the spawn loops and the peer go with per-user-milter');
  });
});
