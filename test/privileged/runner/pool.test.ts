// FilterPool for real: jobs cross into piscina worker threads and back, our
// own failures come back as PumErrors with their code, the pool never
// refuses a job (admission is the milter's), stats() reflects the load.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test, type TestContext } from 'node:test';
import { PumError } from '../../../src/errors.js';
import { FilterPool } from '../../../src/runner/pool.js';
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
    const pool = new FilterPool({ threads: 2 });
    try {
      w.install(w.users.a, 'exit-code');
      w.install(w.users.b, 'environ');
      // The sandbox is the launcher's argument: one launcher per mode, the pool's threads reconnect.
      await w.launchFor({ sandbox: 'setpriv' });
      const [r1, r4] = await Promise.all([
        pool.run(w.job(w.users.a, w.message({ 'X-Exit': '1', 'X-Text': '5.7.1 a says no' }), { sandbox: 'setpriv' })),
        pool.run(w.job(w.users.b, w.message(), { sandbox: 'setpriv' })),
      ]);
      await w.launchFor({ sandbox: 'bwrap' });
      const [r2, r3] = await Promise.all([
        pool.run(w.job(w.users.a, w.message({ 'X-Exit': '75', 'X-Text': '4.7.1 a says later' }), { sandbox: 'bwrap' })),
        pool.run(w.job(w.users.b, w.message(), { sandbox: 'bwrap' })),
      ]);
      await w.launchFor({});
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

  test('more jobs than run slots wait in the pool, none is refused; stats() shows running and queued', async (t) => {
    if (needs(t)) return;
    const pool = new FilterPool({ threads: 1, concurrency: 1 });
    try {
      w.install(w.users.a, 'nap');
      const job = () => w.job(w.users.a, w.message());
      const runs = [pool.run(job()), pool.run(job()), pool.run(job())];
      // Let the first reach its worker (thread start-up can take a while on a busy machine).
      for (let i = 0; i < 100 && pool.stats().running < 1; i++) await new Promise((r) => setTimeout(r, 50));
      const s = pool.stats();
      assert.equal(s.threads, 1);
      assert.equal(s.running, 1);
      assert.equal(s.queueSize, 2);
      assert.deepEqual((await Promise.all(runs)).map((r) => r.outcome), ['accept', 'accept', 'accept']);
      const after = pool.stats();
      assert.equal(after.running, 0);
      assert.equal(after.queueSize, 0);
      assert.ok(after.utilization > 0 && after.utilization <= 1, `utilization ${after.utilization}`);
      assert.deepEqual(await settle(w, w.users.a.uid), []);
    } finally {
      await pool.close();
    }
  });

  test('our own failure in the worker thread comes back as a PumError with its code, not as an outcome', async (t) => {
    if (needs(t)) return;
    const pool = new FilterPool({ threads: 1 });
    try {
      w.install(w.users.b, 'trivial');
      const gone = w.message();
      fs.rmSync(gone);
      await assert.rejects(pool.run(w.job(w.users.b, gone)), (err: unknown) => err instanceof PumError && err.code === 'PUM_ERR_SPOOL_UNREADABLE' && /ENOENT/.test(err.message));
    } finally {
      await pool.close();
    }
  });

  test('bad options are refused with the option named', () => {
    assert.throws(() => new FilterPool({ threads: 0 }), /threads/);
    assert.throws(() => new FilterPool({ threads: 1, concurrency: 0 }), /concurrency/);
  });
});
