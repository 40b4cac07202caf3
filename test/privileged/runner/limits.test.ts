// Timeouts and resource limits, for real: nothing a filter does may hold a
// task past timeout + ~3 s, leave a process behind, or grow the milter.
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';
import { runFilter } from '../../../src/filter/run.js';
import { lacksCommand, lacksRoot } from '../../support/require.js';
import { makeWorld, settle, type World } from './world.js';

const isRoot = process.getuid?.() === 0;
let w: World;

before(() => {
  if (isRoot) w = makeWorld('limits', 61011);
});
after(() => {
  w?.cleanup();
});

function needs(t: TestContext, sandbox: string): boolean {
  if (lacksRoot(t)) return true;
  if (lacksCommand(t, 'setpriv', 'util-linux') || lacksCommand(t, 'prlimit', 'util-linux') || lacksCommand(t, 'ps', 'procps')) return true;
  return sandbox === 'bwrap' && lacksCommand(t, 'bwrap', 'bubblewrap');
}

const TIMEOUT = 1500;

for (const sandbox of ['setpriv', 'bwrap'] as const) {
  describe(`timeouts with ${sandbox}`, () => {
    test('a filter that sleeps forever, with a TERM-ignoring background child holding stdout: timeout, nothing survives', async (t) => {
      if (needs(t, sandbox)) return;
      const u = w.users.a;
      w.install(u, 'sleeper');
      const t0 = Date.now();
      const r = await runFilter(w.job(u, w.message(), { sandbox, timeout: TIMEOUT }));
      const took = Date.now() - t0;
      assert.equal(r.outcome, 'timeout', r.log);
      assert.ok(took >= TIMEOUT, `took ${took} ms`);
      assert.ok(took < TIMEOUT + 3000, `took ${took} ms, more than timeout + 3 s`);
      assert.doesNotMatch(r.log, /late/);
      assert.deepEqual(await settle(w, u.uid), []);
    });

    test('a filter whose child leaves the process group (setsid) keeping stdout: timeout in time, the escapee is killed too', async (t) => {
      if (needs(t, sandbox)) return;
      const u = w.users.a;
      w.install(u, 'escaper');
      const t0 = Date.now();
      const r = await runFilter(w.job(u, w.message(), { sandbox, timeout: TIMEOUT }));
      const took = Date.now() - t0;
      assert.equal(r.outcome, 'timeout', r.log);
      assert.ok(took < TIMEOUT + 3000, `took ${took} ms, more than timeout + 3 s`);
      assert.deepEqual(await settle(w, u.uid), []);
    });
  });
}

describe('resource limits', () => {
  test('a fork bomb is held by RLIMIT_NPROC and ends with the timeout; nothing survives', async (t) => {
    if (needs(t, 'setpriv')) return;
    const u = w.users.bomb;
    w.install(u, 'forkbomb');
    const r = await runFilter(
      w.job(u, w.message(), {
        timeout: 1500,
        limits: { cpuSeconds: 5, memoryBytes: 256 << 20, processes: 20, fileSizeBytes: 1 << 20, outputBytes: 4096 },
      }),
    );
    assert.equal(r.outcome, 'timeout', r.log.slice(0, 300));
    assert.match(r.log, /Cannot fork/, 'the limit was hit');
    assert.ok(r.durationMs < 1500 + 3000, `took ${r.durationMs} ms`);
    assert.deepEqual(await settle(w, u.uid, 3000), []);
    // Orphaned zombies still count against RLIMIT_NPROC until init reaps them: let them go before the next test.
    await settle(w, u.uid, 5000, true);
  });

  test('the process limit really applies: more than `processes` concurrent children fail to fork', async (t) => {
    if (needs(t, 'setpriv')) return;
    const u = w.users.bomb;
    w.install(u, 'forkbomb');
    // Watch the bomb while it runs: the uid never has more than the limit (+1 for a fork in flight).
    const run = runFilter(
      w.job(u, w.message(), {
        timeout: 1500,
        limits: { cpuSeconds: 5, memoryBytes: 256 << 20, processes: 12, fileSizeBytes: 1 << 20, outputBytes: 4096 },
      }),
    );
    let peak = 0;
    const watch = setInterval(() => {
      peak = Math.max(peak, w.processesOf(u.uid).length);
    }, 100);
    const r = await run;
    clearInterval(watch);
    assert.equal(r.outcome, 'timeout', r.log.slice(0, 300));
    assert.ok(peak > 1, `the bomb did run (peak ${peak})`);
    assert.ok(peak <= 13, `peak ${peak} processes with RLIMIT_NPROC 12`);
    assert.deepEqual(await settle(w, u.uid, 3000), []);
  });

  test('a memory hog is stopped by RLIMIT_AS', async (t) => {
    if (needs(t, 'setpriv') || lacksCommand(t, 'perl', 'perl-base')) return;
    const u = w.users.a;
    w.install(u, 'memhog');
    const r = await runFilter(w.job(u, w.message(), { limits: { cpuSeconds: 10, memoryBytes: 256 << 20, processes: 64, fileSizeBytes: 1 << 20, outputBytes: 4096 } }));
    assert.equal(r.outcome, 'accept', r.log);
    assert.doesNotMatch(r.log, /survived/);
    assert.match(r.replyText, /^perl exit [1-9]\d*$/);
  });

  test('a 1 GB writer to stdout is read and dropped: output capped, reply text kept, our memory flat', async (t) => {
    if (needs(t, 'setpriv')) return;
    const u = w.users.a;
    w.install(u, 'gigabyte');
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const watch = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 20);
    const r = await runFilter(w.job(u, w.message(), { timeout: 60_000 }));
    clearInterval(watch);
    assert.equal(r.outcome, 'reject', r.log.slice(0, 200));
    assert.equal(r.replyText, '5.7.1 big talker');
    assert.ok(r.log.length < 65536 + 200, `log is ${r.log.length} characters`);
    assert.match(r.log, /\((99\d{7}|1000000\d{3}) more bytes of output dropped\)/);
    const grew = (peak - before) / (1024 * 1024);
    assert.ok(grew < 64, `rss grew by ${grew.toFixed(1)} MB while 1 GB went through`);
  });

  test('RLIMIT_CPU ends a busy loop', async (t) => {
    if (needs(t, 'setpriv')) return;
    const u = w.users.a;
    const f = w.install(u, 'trivial');
    (await import('node:fs')).writeFileSync(f, '#!/bin/sh\ncat >/dev/null\nwhile :; do :; done\n');
    const r = await runFilter(w.job(u, w.message(), { timeout: 20_000, limits: { cpuSeconds: 1, memoryBytes: 256 << 20, processes: 64, fileSizeBytes: 1 << 20, outputBytes: 4096 } }));
    assert.equal(r.outcome, 'error', r.log);
    // soft = hard: the kernel sends SIGXCPU and SIGKILL at the same tick.
    assert.ok(r.signal === 'SIGKILL' || r.signal === 'SIGXCPU', String(r.signal));
    assert.ok(r.durationMs < 10_000, `took ${r.durationMs} ms`);
  });
});
