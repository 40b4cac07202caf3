// RunnerClient for real: the piscina pool in a runner process of its own.
// Jobs go there and back as JSON lines, filters are the launcher's children
// (neither the milter's nor the runner's), a message is refused at once when runs already wait
// beyond pool.maxQueue, one user's runs are held to maxPerUser while others
// go ahead, a dead runner fails only the jobs it held (PUM_ERR_RUNNER_GONE)
// and is replaced, our own failures in the worker keep their code, and when
// the milter dies the runner exits and the launcher kills what it still ran.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, before, describe, test, type TestContext } from 'node:test';
import { PumError, type PumErrorCode } from '../../../src/errors.js';
import { RunnerClient } from '../../../src/runner/client.js';
import { lacksCommand, lacksRoot } from '../../support/require.js';
import { isAlive, waitUntil } from '../../support/wait.js';
import { launcherBuilt, makeWorld, settle, type World } from './world.js';

const isRoot = process.getuid?.() === 0;
const RUNNER_FIXTURES = fileURLToPath(new URL('../../../../test/fixtures/runner/', import.meta.url));
let w: World;

before(async () => {
  if (isRoot && launcherBuilt()) {
    w = makeWorld('runnerproc', 61041);
    await w.launch();
  }
});
after(async () => {
  await w?.cleanup();
});

function isPumError(code: PumErrorCode, message?: RegExp): (err: unknown) => boolean {
  return (err: unknown) => err instanceof PumError && err.code === code && (message === undefined || message.test(err.message));
}

function needs(t: TestContext): boolean {
  return lacksRoot(t) || (!launcherBuilt() && lacksCommand(t, 'per-user-milter-launcher-is-not-built', 'gcc make (npm ci builds native/)'));
}

describe('RunnerClient', () => {
  test('runs filters as children of the launcher, not of the milter or the runner, each job with its own RECIPIENT', async (t) => {
    if (needs(t)) return;
    const launcher = await w.launch();
    const runner = new RunnerClient({ threads: 2, maxQueue: 10 });
    try {
      w.install(w.users.a, 'parent');
      w.install(w.users.b, 'environ');
      const [a, b, c] = await Promise.all([
        runner.run(w.job(w.users.a, w.message())),
        runner.run(w.job(w.users.b, w.message())),
        runner.run(w.job(w.users.b, w.message(), { sandbox: 'setpriv' }, { RECIPIENT: 'other@example.com' })),
      ]);
      assert.ok(runner.pid !== null && runner.pid !== process.pid);
      assert.equal(a?.outcome, 'accept', a?.log);
      assert.equal(a?.replyText, `ppid=${launcher.pid}`);
      assert.match(b?.log ?? '', /RECIPIENT=pumrun-b@example\.com\0/);
      assert.match(c?.log ?? '', /RECIPIENT=other@example\.com\0/);
      assert.doesNotMatch(c?.log ?? '', /pumrun-b@example\.com/);
      assert.deepEqual(runner.stats(), { queueSize: 0, running: 0, threads: 2, utilization: 0 });
      // Nothing of the runner's reaches the filter: not its job channel (its own
      // stdin/stdout), nor anything else. `exec ls /proc/self/fd` shows 0 1 2 and ls's own handle.
      w.install(w.users.a, 'ident');
      const ident = await runner.run(w.job(w.users.a, w.message()));
      assert.equal(ident.outcome, 'accept', ident.log);
      const fds = ident.log.split('\n').filter((l) => /^\d+$/.test(l.trim())).map(Number).sort((x, y) => x - y);
      assert.deepEqual(fds, [0, 1, 2, 3]);
      assert.match(ident.log, new RegExp(`uid=${w.users.a.uid} `));
    } finally {
      await runner.close();
    }
  });

  test('pool.maxQueue admits whole messages: refused at once (PUM_ERR_POOL_FULL) while runs wait beyond it, never for its own many runs', async (t) => {
    if (needs(t)) return;
    const runner = new RunnerClient({ threads: 1, maxQueue: 0, concurrency: 1 });
    try {
      w.install(w.users.a, 'sleeper');
      w.install(w.users.b, 'trivial');
      await w.launchFor({ timeout: 1000 });
      const job = () => w.job(w.users.a, w.message(), { timeout: 1000 });
      const first = runner.run(job());
      // Nothing waits yet: the second message is admitted, and waits for the one slot.
      const second = runner.run(job());
      assert.deepEqual(runner.stats(), { queueSize: 1, running: 1, threads: 1, utilization: 1 });
      const t0 = performance.now();
      await assert.rejects(runner.run(w.job(w.users.b, w.message())), isPumError('PUM_ERR_POOL_FULL', /1 filter runs already waiting \(pool\.maxQueue 0\)/));
      assert.throws(() => runner.runMessage([w.job(w.users.b, w.message()), w.job(w.users.b, w.message())]), isPumError('PUM_ERR_POOL_FULL'));
      assert.ok(performance.now() - t0 < 100, 'refused immediately');
      assert.equal(runner.stats().queueSize, 1, 'a refused message queues nothing');
      const [a, b] = await Promise.all([first, second]);
      assert.equal(a.outcome, 'timeout');
      assert.equal(b.outcome, 'timeout');
      // Nothing waits now: a message with five runs (five times the slots) is admitted whole and answered.
      const many = runner.runMessage(Array.from({ length: 5 }, () => w.job(w.users.b, w.message())));
      assert.equal(runner.stats().queueSize, 4);
      assert.deepEqual((await Promise.all(many)).map((r) => r.outcome), ['accept', 'accept', 'accept', 'accept', 'accept']);
      assert.equal(runner.stats().queueSize, 0);
      assert.deepEqual(await settle(w, w.users.a.uid), []);
    } finally {
      await runner.close();
    }
  });

  test('maxPerUser: a user at the limit waits in order while another user goes ahead', async (t) => {
    if (needs(t)) return;
    const runner = new RunnerClient({ threads: 1, maxQueue: 10, concurrency: 2, maxPerUser: 1 });
    try {
      w.install(w.users.a, 'nap');
      w.install(w.users.b, 'nap');
      const done: string[] = [];
      const track = (name: string, p: Promise<unknown>) => p.then(() => void done.push(name));
      const a1 = track('a1', runner.run(w.job(w.users.a, w.message())));
      const a2 = track('a2', runner.run(w.job(w.users.a, w.message())));
      const b1 = track('b1', runner.run(w.job(w.users.b, w.message())));
      // a1 and b1 hold the two slots; a2 waits for a's turn although b came later.
      assert.deepEqual(runner.stats(), { queueSize: 1, running: 2, threads: 1, utilization: 1 });
      await Promise.all([a1, a2, b1]);
      assert.equal(done[2], 'a2', `a's second run ends last: ${done.join(' ')}`);
    } finally {
      await runner.close();
    }
  });

  test('our own failure inside the worker crosses both boundaries with its code: the spool file gone -> PUM_ERR_SPOOL_UNREADABLE', async (t) => {
    if (needs(t)) return;
    const runner = new RunnerClient({ threads: 1, maxQueue: 1 });
    try {
      w.install(w.users.a, 'trivial');
      const gone = w.message();
      fs.rmSync(gone);
      await assert.rejects(runner.run(w.job(w.users.a, gone)), isPumError('PUM_ERR_SPOOL_UNREADABLE', /ENOENT/));
      // The runner is fine afterwards.
      assert.equal((await runner.run(w.job(w.users.a, w.message()))).outcome, 'accept');
    } finally {
      await runner.close();
    }
  });

  test('a runner that dies fails only the jobs it held (PUM_ERR_RUNNER_GONE), says so, and the next job starts a new one', async (t) => {
    if (needs(t)) return;
    const exits: Array<[string, number]> = [];
    const runner = new RunnerClient({ threads: 1, maxQueue: 5, onUnexpectedExit: (how, n) => exits.push([how, n]) });
    try {
      w.install(w.users.b, 'sleeper');
      await w.launchFor({ timeout: 20_000 });
      const held = runner.run(w.job(w.users.b, w.message(), { timeout: 20_000 }));
      const firstPid = runner.pid as number;
      await waitUntil('the filter to start', () => w.processesOf(w.users.b.uid).length > 0);
      process.kill(firstPid, 'SIGKILL');
      await assert.rejects(held, isPumError('PUM_ERR_RUNNER_GONE', /killed by SIGKILL/));
      assert.deepEqual(exits, [['killed by SIGKILL', 1]]);
      // The dead runner's connections closed: the launcher ended its run, background child and all.
      assert.deepEqual(await settle(w, w.users.b.uid, 3000), []);
      w.install(w.users.a, 'trivial');
      const next = await runner.run(w.job(w.users.a, w.message()));
      assert.equal(next.outcome, 'accept', next.log);
      assert.notEqual(runner.pid, firstPid);
    } finally {
      await runner.close();
    }
  });

  test('when the milter process is killed, the runner exits and the launcher kills the filters still running (whole process group)', async (t) => {
    if (needs(t)) return;
    w.install(w.users.b, 'sleeper');
    // A stand-in for the milter: a process that owns a RunnerClient with a job in flight.
    const dir = fs.mkdtempSync(path.join(w.base, 'milter-'));
    const script = path.join(dir, 'milter.mjs');
    const moduleUrl = pathToFileURL(path.resolve('dist/src/runner/client.js')).href;
    await w.launchFor({ timeout: 60_000 });
    const job = w.job(w.users.b, w.message(), { timeout: 60_000 });
    fs.writeFileSync(
      script,
      `import { RunnerClient } from ${JSON.stringify(moduleUrl)};\n` +
        `const r = new RunnerClient({ threads: 1, maxQueue: 1 });\n` +
        `console.log(String(r.pid));\n` +
        `r.run(${JSON.stringify(job)}).catch(() => undefined);\n` +
        `setInterval(() => undefined, 1000);\n`,
    );
    const milter = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const runnerPid = await new Promise<number>((resolve, reject) => {
      milter.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      milter.once('exit', () => reject(new Error('stand-in milter exited early')));
    });
    try {
      // The sleeper and its TERM-ignoring background child, both in the filter's process group.
      await waitUntil('the filter and its background child', () => w.processesOf(w.users.b.uid).length >= 2);
      milter.kill('SIGKILL');
      await waitUntil('the runner to exit', () => !isAlive(runnerPid));
      assert.deepEqual(await settle(w, w.users.b.uid, 3000), []);
    } finally {
      if (isAlive(runnerPid)) process.kill(runnerPid, 'SIGKILL');
      w.processesOf(w.users.b.uid).forEach((l) => process.kill(Number(l.split(/\s+/)[0]), 'SIGKILL'));
    }
  });

  test('close() waits for the jobs in flight, then the runner exits; afterwards run() refuses', async (t) => {
    if (needs(t)) return;
    const runner = new RunnerClient({ threads: 1, maxQueue: 1 });
    w.install(w.users.a, 'parent');
    const pid = runner.pid as number;
    const job = runner.run(w.job(w.users.a, w.message()));
    await runner.close();
    assert.equal((await job).outcome, 'accept');
    assert.equal(isAlive(pid), false);
    await assert.rejects(runner.run(w.job(w.users.a, w.message())), isPumError('PUM_ERR_RUNNER_GONE', /closed/));
  });

  test('ready() resolves once the pool is up; a runner that ends first rejects it', async () => {
    const good = new RunnerClient({ threads: 1, maxQueue: 1 });
    try {
      await good.ready();
    } finally {
      await good.close();
    }
    const exits: string[] = [];
    const bad = new RunnerClient({ threads: 1, maxQueue: 1, entry: path.join(RUNNER_FIXTURES, 'exits.mjs'), onUnexpectedExit: (how) => exits.push(how) });
    await assert.rejects(bad.ready(), isPumError('PUM_ERR_RUNNER_GONE', /exited with status 3/));
    assert.deepEqual(exits, ['exited with status 3']);
    await bad.destroy();
  });

  test('a runner that stops answering: the job fails after its bound, never hangs, and the runner is replaced', async () => {
    const exits: string[] = [];
    const runner = new RunnerClient({ threads: 1, maxQueue: 1, entry: path.join(RUNNER_FIXTURES, 'silent.mjs'), answerSlackMs: 200, onUnexpectedExit: (how) => exits.push(how) });
    try {
      await runner.ready();
      const first = runner.pid;
      const job = { spoolPath: '/nonexistent', user: { name: 'x', uid: 61049, gid: 61049, groups: [], home: '/nonexistent', shell: '/bin/sh' }, envelope: {} as never, settings: { path: '~/.user-milter', timeout: 100, sandbox: 'setpriv' as const, limits: { cpuSeconds: 1, memoryBytes: 1 << 20, processes: 1, fileSizeBytes: 1, outputBytes: 1 }, exitCodes: { reject: [1], tempfail: [75] } } };
      const t0 = performance.now();
      // Bound: timeout 100 + kill grace 2000 + abandon 500 + slack 200 ms.
      await assert.rejects(runner.run(job), isPumError('PUM_ERR_RUNNER_GONE', /gave no answer within 2800 ms/));
      assert.ok(performance.now() - t0 >= 2700, 'not before the bound');
      await waitUntil('the stuck runner to be killed', () => exits.length === 1);
      assert.deepEqual(exits, ['killed by SIGKILL']);
      void runner.run(job).catch(() => undefined);
      assert.ok(runner.pid !== null && runner.pid !== first, 'a new runner for the next job');
    } finally {
      await runner.destroy();
    }
  });

  test('bad options are refused with the option named', () => {
    assert.throws(() => new RunnerClient({ threads: 0, maxQueue: 1 }), /threads/);
    assert.throws(() => new RunnerClient({ threads: 1, maxQueue: -1 }), /maxQueue/);
    assert.throws(() => new RunnerClient({ threads: 1, maxQueue: 1, maxPerUser: 0 }), /maxPerUser/);
  });
});
