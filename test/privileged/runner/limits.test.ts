// Timeouts, containment and resource limits, for real: nothing a filter
// does may hold a run past timeout + ~3 s, leave a process behind (setsid,
// double fork, a detached loop, a TERM-ignoring child), or grow the milter.
// The escapes run twice: with a cgroup per run (a test cgroup of our own
// under the machine's cgroup2 tree, removed afterwards) and with none.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { lacksCommand, lacksRoot } from '../../support/require.js';
import { launcherBuilt, makeWorld, settle, type World } from './world.js';

const isRoot = process.getuid?.() === 0;
let w: World;
/** A cgroup2 directory of this test file's own, or null where there is no cgroup2 tree. */
let cgroupDir: string | null = null;

function cgroup2Root(): string | null {
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[f.indexOf('-') + 1] === 'cgroup2') return f[4] ?? null;
  }
  return null;
}

before(async () => {
  if (!isRoot || !launcherBuilt()) return;
  w = makeWorld('limits', 61011);
  const root = cgroup2Root();
  if (root) {
    cgroupDir = path.join(root, `pumrun-limits-${process.pid}`);
    fs.mkdirSync(cgroupDir);
  }
  await w.launch();
});
after(async () => {
  await w?.cleanup();
  if (cgroupDir) fs.rmdirSync(cgroupDir);
});

function needs(t: TestContext, sandbox: string): boolean {
  if (lacksRoot(t) || lacksCommand(t, 'ps', 'procps')) return true;
  if (!launcherBuilt()) {
    lacksCommand(t, 'per-user-milter-launcher-is-not-built', 'gcc make (npm ci builds native/)');
    return true;
  }
  return sandbox === 'bwrap' && lacksCommand(t, 'bwrap', 'bubblewrap');
}

/** Each way out of a run a filter might try; none may leave a process of the user behind. */
const ESCAPES: Record<string, string> = {
  'setsid after exit': 'cat >/dev/null\nsetsid sleep 97 &\nexit 0\n',
  'double fork': 'cat >/dev/null\n( sh -c \'sleep 98 & exit 0\' & )\nexit 0\n',
  'a detached loop': "cat >/dev/null\nsetsid sh -c 'while :; do sleep 5; done' </dev/null >/dev/null 2>&1 &\nexit 0\n",
  'a TERM-ignoring child at the timeout': "cat >/dev/null\n( trap '' TERM; setsid sleep 99 & sleep 99 ) &\nexec sleep 99\n",
};

for (const mode of ['cgroup', 'none'] as const) {
  describe(`containment with cgroup ${mode}`, () => {
    for (const [name, script] of Object.entries(ESCAPES)) {
      test(`${name}: no process of the user survives the run`, async (t) => {
        if (needs(t, 'setpriv')) return;
        if (mode === 'cgroup' && !cgroupDir) {
          lacksCommand(t, 'a-cgroup2-mount', 'a kernel with cgroup2');
          return;
        }
        await w.launch({ cgroup: mode === 'cgroup' ? (cgroupDir as string) : 'none' });
        const u = w.users.a;
        const f = w.install(u, 'trivial');
        fs.writeFileSync(f, `#!/bin/sh\n${script}`);
        const r = await w.run(w.job(u, w.message(), { timeout: 1500 }));
        assert.equal(r.outcome, name.includes('TERM') ? 'timeout' : 'accept', r.log);
        // With a cgroup the count is exact; without one, members killed with the process group are not counted.
        if (mode === 'cgroup' && !name.includes('TERM')) assert.match(r.log, /killed [1-9]\d* leftover process/, 'the escapee was found and ended');
        assert.deepEqual(await settle(w, u.uid, 3000), [], 'nothing of the user left running');
        if (cgroupDir) assert.deepEqual(fs.readdirSync(cgroupDir).filter((n) => n.startsWith('run-')), [], 'run cgroups removed');
      });
    }
  });
}

const TIMEOUT = 1500;

for (const sandbox of ['setpriv', 'bwrap'] as const) {
  describe(`timeouts with ${sandbox}`, () => {
    test('a filter that sleeps forever, with a TERM-ignoring background child holding stdout: timeout, nothing survives', async (t) => {
      if (needs(t, sandbox)) return;
      await w.launch();
      const u = w.users.a;
      w.install(u, 'sleeper');
      const t0 = Date.now();
      const r = await w.run(w.job(u, w.message(), { sandbox, timeout: TIMEOUT }));
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
      const r = await w.run(w.job(u, w.message(), { sandbox, timeout: TIMEOUT }));
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
    const r = await w.run(
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
    const run = w.run(
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
    const r = await w.run(w.job(u, w.message(), { limits: { cpuSeconds: 10, memoryBytes: 256 << 20, processes: 64, fileSizeBytes: 1 << 20, outputBytes: 4096 } }));
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
    const r = await w.run(w.job(u, w.message(), { timeout: 60_000 }));
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
    const r = await w.run(w.job(u, w.message(), { timeout: 20_000, limits: { cpuSeconds: 1, memoryBytes: 256 << 20, processes: 64, fileSizeBytes: 1 << 20, outputBytes: 4096 } }));
    assert.equal(r.outcome, 'error', r.log);
    // soft = hard: the kernel sends SIGXCPU and SIGKILL at the same tick.
    assert.ok(r.signal === 'SIGKILL' || r.signal === 'SIGXCPU', String(r.signal));
    assert.ok(r.durationMs < 10_000, `took ${r.durationMs} ms`);
  });
});
