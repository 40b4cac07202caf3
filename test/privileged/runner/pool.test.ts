// FilterPool for real: jobs cross into piscina worker threads and back, a
// full queue rejects at once with PoolFullError, stats() reflects the load.
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';
import { FilterPool, PoolFullError } from '../../../src/runner/pool.js';
import { lacksCommand, lacksRoot } from '../../support/require.js';
import { launcherBuilt, makeWorld, settle, type World } from './world.js';

const isRoot = process.getuid?.() === 0;
let w: World;

before(async () => {
  if (isRoot && launcherBuilt()) {
    w = makeWorld('pool', 61021);
    await w.launch();
  }
});
after(async () => {
  await w?.cleanup();
});

function needs(t: TestContext): boolean {
  return lacksRoot(t) || (!launcherBuilt() && lacksCommand(t, 'per-user-milter-launcher-is-not-built', 'gcc make (npm ci builds native/)')) || lacksCommand(t, 'bwrap', 'bubblewrap');
}

describe('FilterPool', () => {
  test('runs filters on worker threads, setpriv and bwrap, each with its own RECIPIENT', async (t) => {
    if (needs(t)) return;
    const pool = new FilterPool({ threads: 2, maxQueue: 10 });
    try {
      w.install(w.users.a, 'exit-code');
      w.install(w.users.b, 'environ');
      const jobs = [
        pool.run(w.job(w.users.a, w.message({ 'X-Exit': '1', 'X-Text': '5.7.1 a says no' }), { sandbox: 'setpriv' })),
        pool.run(w.job(w.users.a, w.message({ 'X-Exit': '75', 'X-Text': '4.7.1 a says later' }), { sandbox: 'bwrap' })),
        pool.run(w.job(w.users.b, w.message(), { sandbox: 'bwrap' })),
        pool.run(w.job(w.users.b, w.message(), { sandbox: 'setpriv' })),
      ];
      const [r1, r2, r3, r4] = await Promise.all(jobs);
      assert.equal(r1?.outcome, 'reject');
      assert.equal(r1?.replyText, '5.7.1 a says no');
      assert.equal(r2?.outcome, 'tempfail');
      assert.equal(r2?.replyText, '4.7.1 a says later');
      for (const r of [r3, r4]) {
        assert.equal(r?.outcome, 'accept', r?.log);
        assert.match(r?.log ?? '', /RECIPIENT=pumrun-b@example\.com\0/);
        assert.doesNotMatch(r?.log ?? '', /pumrun-a@/);
      }
      assert.ok((r1?.durationMs ?? 0) > 0);
    } finally {
      await pool.close();
    }
  });

  test('a full queue rejects at once with PoolFullError; stats() shows running and queued', async (t) => {
    if (needs(t)) return;
    const pool = new FilterPool({ threads: 1, maxQueue: 1, concurrency: 1 });
    try {
      w.install(w.users.a, 'sleeper');
      const job = () => w.job(w.users.a, w.message(), { timeout: 1000 });
      const first = pool.run(job());
      const second = pool.run(job());
      // Let the first reach its worker (thread start-up can take a while on a busy machine).
      for (let i = 0; i < 100 && pool.stats().running < 1; i++) await new Promise((r) => setTimeout(r, 50));
      const s = pool.stats();
      assert.equal(s.threads, 1);
      assert.equal(s.running, 1);
      assert.equal(s.queueSize, 1);
      const t0 = performance.now();
      await assert.rejects(pool.run(job()), (err: unknown) => err instanceof PoolFullError && (err as PoolFullError).code === 'PUM_ERR_POOL_FULL');
      assert.ok(performance.now() - t0 < 100, 'rejected immediately');
      const [a, b] = await Promise.all([first, second]);
      assert.equal(a.outcome, 'timeout');
      assert.equal(b.outcome, 'timeout');
      const after = pool.stats();
      assert.equal(after.running, 0);
      assert.equal(after.queueSize, 0);
      assert.ok(after.utilization > 0 && after.utilization <= 1, `utilization ${after.utilization}`);
      assert.deepEqual(await settle(w, w.users.a.uid), []);
    } finally {
      await pool.close();
    }
  });

  test('maxQueue 0: only as many runs as the threads can take', async (t) => {
    if (needs(t)) return;
    const pool = new FilterPool({ threads: 1, maxQueue: 0, concurrency: 2 });
    try {
      w.install(w.users.b, 'sleeper');
      const job = () => w.job(w.users.b, w.message(), { timeout: 800 });
      const runs = [pool.run(job()), pool.run(job())];
      for (let i = 0; i < 100 && pool.stats().running < 2; i++) await new Promise((r) => setTimeout(r, 50));
      await assert.rejects(pool.run(job()), PoolFullError);
      const rs = await Promise.all(runs);
      assert.deepEqual(rs.map((r) => r.outcome), ['timeout', 'timeout']);
    } finally {
      await pool.close();
    }
  });

  test('bad options are refused with the option named', () => {
    assert.throws(() => new FilterPool({ threads: 0, maxQueue: 1 }), /threads/);
    assert.throws(() => new FilterPool({ threads: 1, maxQueue: -1 }), /maxQueue/);
  });
});
