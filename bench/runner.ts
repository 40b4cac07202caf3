// The filter-runner bench: how many trivial filter runs per second go through
// FilterPool (worker threads + runFilter: checks, spool open, execa, output
// capture, outcome), next to the very same launcher chain spawned in a plain
// loop in the same process and run. The ratio is the cost of the pool.
//
//   node dist/bench/runner.js [--runs N] [--sandbox setpriv|bwrap] [--concurrency N] [--threads N]
//   node dist/bench/runner.js --links      (what each link of the chain costs)
//
// As root it runs as a throw-away user pumrun-bench (uid 61090, no system
// account needed); otherwise as the current user (unprivileged mode).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { filterPathFor } from './lib/chain.js';
import { buildLaunch, bwrapArgs, defaultTools, filterEnvironment, prlimitArgs, setprivArgs, systemLayout, type SandboxKind } from './lib/chain.js';
import type { EnvelopeFacts, FilterJob, FilterSettings } from '../src/filter/job.js';
import { LAUNCHER_SOCKET_ENV } from '../src/filter/run.js';
import { findBwrap, startLauncher, type RunningLauncher } from '../src/launcher/start.js';
import { FilterPool } from '../src/runner/pool.js';
import type { UserAccount } from '../src/users/user.js';

const TRIVIAL = '#!/bin/sh\ncat >/dev/null; exit 0\n';
const BENCH_UID = 61090;

export interface SpawnLoopSpec {
  user: UserAccount;
  sandbox: 'setpriv' | 'bwrap';
  /** The message, given to each run on stdin through its own descriptor. */
  messageFile: string;
  runs: number;
  /** Runs in flight at once; default 1. */
  concurrency?: number;
  /** Default: filter.path `~/.user-milter` of the user. */
  filterPath?: string;
  /** Stop early after this long; default 20 s. */
  maxSeconds?: number;
}

export interface LoopResult {
  runs: number;
  failures: number;
  elapsedMs: number;
  durationsMs: number[];
  perSecond: number;
}

const LIMITS: FilterSettings['limits'] = { cpuSeconds: 20, memoryBytes: 1073741824, processes: 64, fileSizeBytes: 104857600, outputBytes: 65536 };

function envelope(user: UserAccount): EnvelopeFacts {
  return {
    SENDER: 'sender@client.test', RECIPIENT: `${user.name}@example.test`, LOCAL: user.name, EXTENSION: '', DOMAIN: 'example.test',
    CLIENT_ADDRESS: '127.0.0.1', CLIENT_HOSTNAME: 'localhost', CLIENT_HELO: 'client.test', CLIENT_PROTOCOL: 'ESMTP',
    QUEUE_ID: 'BENCH', SASL_METHOD: '', SASL_USERNAME: '',
  };
}

async function loop(runs: number, concurrency: number, maxSeconds: number, one: () => Promise<boolean>): Promise<LoopResult> {
  const durationsMs: number[] = [];
  let failures = 0;
  let issued = 0;
  const t0 = performance.now();
  const deadline = t0 + maxSeconds * 1000;
  const lane = async (): Promise<void> => {
    while (issued < runs && performance.now() < deadline) {
      issued++;
      const s = performance.now();
      if (!(await one())) failures++;
      durationsMs.push(performance.now() - s);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, () => lane()));
  const elapsedMs = performance.now() - t0;
  return { runs: durationsMs.length, failures, elapsedMs, durationsMs, perSecond: (durationsMs.length * 1000) / elapsedMs };
}

/**
 * The plain loop: the launcher chain of src/filter/sandbox.ts (the same argv
 * runFilter builds), spawned with child_process.spawn, message on stdin,
 * output ignored. No pool, no checks, no capture. bench/lib/spawn-baseline.ts uses it.
 */
export async function runSpawnLoop(spec: SpawnLoopSpec): Promise<LoopResult> {
  const privileged = process.geteuid?.() === 0;
  const plan = buildLaunch({
    sandbox: spec.sandbox,
    user: spec.user,
    filterPath: spec.filterPath ?? filterPathFor(spec.user, '~/.user-milter'),
    limits: LIMITS,
    env: filterEnvironment(spec.user, envelope(spec.user)),
    privileged,
    umaskShim: process.umask() !== 0o077,
  });
  const one = () =>
    new Promise<boolean>((resolve) => {
      const fd = fs.openSync(spec.messageFile, 'r');
      const child = spawn(plan.file, plan.args, { env: plan.env, cwd: plan.cwd, stdio: [fd, 'ignore', 'ignore'], detached: true });
      fs.closeSync(fd);
      child.on('error', () => resolve(false));
      child.on('close', (code) => resolve(code === 0));
    });
  return loop(spec.runs, spec.concurrency ?? 1, spec.maxSeconds ?? 20, one);
}

/** The same runs through a FilterPool (runFilter in worker threads). */
export async function runPoolLoop(pool: FilterPool, job: FilterJob, runs: number, concurrency: number, maxSeconds = 20): Promise<LoopResult> {
  return loop(runs, concurrency, maxSeconds, async () => (await pool.run(job)).outcome === 'accept');
}

export interface RunnerBenchOptions {
  runs?: number;
  sandbox?: SandboxKind;
  /** In-flight runs for the concurrent pass; default 2 x CPUs. */
  concurrency?: number;
  threads?: number;
  /** Upper bound per pass, seconds. */
  maxSeconds?: number;
  log?: (line: string) => void;
}

export interface RunnerBenchResult {
  sandbox: SandboxKind;
  privileged: boolean;
  messageBytes: number;
  sequential: { plain: LoopResult; pool: LoopResult; poolCostPercent: number };
  concurrent: { concurrency: number; plain: LoopResult; pool: LoopResult; poolCostPercent: number };
}

function merge(parts: LoopResult[]): LoopResult {
  const runs = parts.reduce((n, p) => n + p.runs, 0);
  const elapsedMs = parts.reduce((n, p) => n + p.elapsedMs, 0);
  return {
    runs,
    failures: parts.reduce((n, p) => n + p.failures, 0),
    elapsedMs,
    durationsMs: parts.flatMap((p) => p.durationsMs),
    perSecond: elapsedMs > 0 ? (runs * 1000) / elapsedMs : 0,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : (s[Math.floor(s.length / 2)] ?? NaN);
}

/** Sets up a user, a trivial filter and a 4 KB message, measures, cleans up. */
export async function benchRunner(opts: RunnerBenchOptions = {}): Promise<RunnerBenchResult> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const runs = opts.runs ?? 300;
  const sandbox = opts.sandbox ?? 'setpriv';
  if (sandbox === 'none') throw new Error('bench the setpriv or bwrap chain');
  const cpus = os.availableParallelism();
  const concurrency = opts.concurrency ?? 2 * cpus;
  const maxSeconds = opts.maxSeconds ?? 8;
  const privileged = process.geteuid?.() === 0;

  // Not under /tmp: a world-writable directory on the path makes the filter unsafe.
  const baseParent = privileged ? '/var/lib' : os.homedir();
  const base = fs.mkdtempSync(path.join(baseParent, privileged ? 'pumrun-bench-' : '.pumrun-bench-'));
  fs.chmodSync(base, 0o755);
  const home = path.join(base, 'home');
  const user: UserAccount = privileged
    ? { name: 'pumrun-bench', uid: BENCH_UID, gid: BENCH_UID, groups: [BENCH_UID], home, shell: '/bin/sh' }
    : { name: os.userInfo().username, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, groups: [process.getgid?.() ?? 0], home, shell: '/bin/sh' };
  let pool: FilterPool | null = null;
  let launcher: RunningLauncher | null = null;
  try {
    fs.mkdirSync(home, { mode: 0o700 });
    const filter = path.join(home, '.user-milter');
    fs.writeFileSync(filter, TRIVIAL, { mode: 0o700 });
    if (privileged) {
      fs.chownSync(home, user.uid, user.gid);
      fs.chownSync(filter, user.uid, user.gid);
    }
    const spool = path.join(base, 'spool');
    fs.mkdirSync(spool, { mode: 0o700 });
    // The launcher looks the account up by uid: from this passwd file.
    const benchPasswdFile = path.join(base, 'passwd');
    fs.writeFileSync(benchPasswdFile, `${user.name}:x:${user.uid}:${user.gid}::${home}:/bin/sh\n`, { mode: 0o644 });
    // The launcher's spool names are msg- and 24 hex digits.
    const messageFile = path.join(spool, 'msg-00000000000000000000bebe');
    const head = 'Return-Path: <sender@client.test>\nFrom: sender@client.test\nTo: bench@example.test\nSubject: bench\n\n';
    const line = 'The quick brown fox jumps over the lazy dog, again and again and again.\n';
    const body = line.repeat(Math.ceil((4096 - head.length) / line.length)).slice(0, 4096 - head.length);
    fs.writeFileSync(messageFile, head + body, { mode: 0o600 });
    const settings: FilterSettings = { path: '~/.user-milter', timeout: 30_000, sandbox, limits: LIMITS, exitCodes: { reject: [1], tempfail: [75] } };
    // The pool runs filters through the native launcher (the plain loop is the old chain, bench/lib/chain.ts).
    launcher = await startLauncher({
      socket: path.join(spool, 'launcher.sock'), spool, clientUid: process.getuid?.() ?? 0, clientGid: process.getgid?.() ?? 0,
      minUid: Math.min(user.uid, BENCH_UID), maxUid: Math.max(user.uid, BENCH_UID),
      filterPath: '~/.user-milter', rcptPath: '', defaultPath: '', cgroup: 'none', bwrap: findBwrap(), passwdFile: benchPasswdFile,
      sandbox: sandbox === 'bwrap' ? 'bwrap' : 'setpriv', timeoutMs: settings.timeout, rcptTimeoutMs: settings.timeout,
      cpu: LIMITS.cpuSeconds, as: LIMITS.memoryBytes, nproc: LIMITS.processes, fsize: LIMITS.fileSizeBytes, output: LIMITS.outputBytes,
      memory: LIMITS.memoryBytes, pids: LIMITS.processes,
    });
    // Before the pool: worker threads take a copy of the environment when they start.
    process.env[LAUNCHER_SOCKET_ENV] = path.join(spool, 'launcher.sock');
    const thePool = new FilterPool({ threads: opts.threads ?? cpus });
    pool = thePool;
    const job: FilterJob = { spoolPath: messageFile, user, envelope: envelope(user), settings };
    const spec: SpawnLoopSpec = { user, sandbox, messageFile, runs, maxSeconds };

    log(`filter runner bench: sandbox ${sandbox}, ${privileged ? 'as root, filter as uid ' + user.uid : 'unprivileged'}, 4096-byte message, trivial filter, ${cpus} CPUs, ${opts.threads ?? cpus} pool threads`);
    // Warm up: worker threads loaded, page cache hot.
    await runPoolLoop(thePool, job, 20, cpus, maxSeconds);
    await runSpawnLoop({ ...spec, runs: 20 });

    // Plain and pool alternate in rounds, so that both see the same machine
    // (other load on a shared box drifts over seconds).
    const ROUNDS = 5;
    const per = Math.max(1, Math.ceil(runs / ROUNDS));
    const slice = maxSeconds / ROUNDS;
    const interleaved = async (conc: number): Promise<[LoopResult, LoopResult]> => {
      const plain: LoopResult[] = [];
      const viaPool: LoopResult[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        plain.push(await runSpawnLoop({ ...spec, runs: per, concurrency: conc, maxSeconds: slice }));
        viaPool.push(await runPoolLoop(thePool, job, per, conc, slice));
      }
      return [merge(plain), merge(viaPool)];
    };
    const [seqPlain, seqPool] = await interleaved(1);
    const [conPlain, conPool] = await interleaved(concurrency);
    const cost = (plain: LoopResult, viaPool: LoopResult) => Math.round((plain.perSecond / viaPool.perSecond - 1) * 1000) / 10;
    const result: RunnerBenchResult = {
      sandbox,
      privileged,
      messageBytes: 4096,
      sequential: { plain: seqPlain, pool: seqPool, poolCostPercent: cost(seqPlain, seqPool) },
      concurrent: { concurrency, plain: conPlain, pool: conPool, poolCostPercent: cost(conPlain, conPool) },
    };
    const row = (name: string, r: LoopResult) =>
      `  ${name.padEnd(28)} ${String(r.runs).padStart(5)} runs  ${r.perSecond.toFixed(1).padStart(7)}/s  median ${median(r.durationsMs).toFixed(2).padStart(7)} ms${r.failures ? `  ${r.failures} FAILED` : ''}`;
    log('sequential (one run at a time):');
    log(row('plain spawn loop', seqPlain));
    log(row('FilterPool', seqPool));
    log(`  pool cost: ${result.sequential.poolCostPercent}% (plain/pool = ${(seqPlain.perSecond / seqPool.perSecond).toFixed(2)}; target <= 1.30)`);
    log(`concurrent (${concurrency} in flight):`);
    log(row('plain spawn loop', conPlain));
    log(row('FilterPool', conPool));
    log(`  pool cost: ${result.concurrent.poolCostPercent}% (plain/pool = ${(conPlain.perSecond / conPool.perSecond).toFixed(2)}; target <= 1.30)`);
    return result;
  } finally {
    await pool?.close();
    await launcher?.stop();
    fs.rmSync(base, { recursive: true, force: true });
  }
}

/**
 * What each link of the chain costs: the same trivial filter behind longer
 * and longer chains, interleaved rounds, median wall time (docs/sandbox.md).
 */
export async function measureLinks(opts: { rounds?: number; log?: (line: string) => void } = {}): Promise<Record<string, number>> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const rounds = opts.rounds ?? 30;
  if (process.geteuid?.() !== 0) throw new Error('--links needs root (it switches to a test uid)');
  const base = fs.mkdtempSync('/var/lib/pumrun-links-');
  try {
    fs.chmodSync(base, 0o755);
    const home = path.join(base, 'home');
    fs.mkdirSync(home, { mode: 0o700 });
    const user: UserAccount = { name: 'pumrun-bench', uid: BENCH_UID, gid: BENCH_UID, groups: [BENCH_UID], home, shell: '/bin/sh' };
    const filter = path.join(home, '.user-milter');
    fs.writeFileSync(filter, TRIVIAL, { mode: 0o755 });
    fs.chownSync(home, user.uid, user.gid);
    const msg = path.join(base, 'message');
    fs.writeFileSync(msg, 'Return-Path: <s@x>\nSubject: bench\n\n' + 'x'.repeat(4000) + '\n', { mode: 0o600 });
    const t = defaultTools();
    const pr = [t.prlimit, ...prlimitArgs(LIMITS), '--'];
    const sp = [t.setpriv, ...setprivArgs(user, true), '--'];
    const bw = [t.bwrap, ...bwrapArgs(user, filter, true, systemLayout()), '--'];
    const envu = [t.env, '-u', 'PWD', '--'];
    const sh = [t.sh, '-c', 'umask 077 && unset PWD && exec "$@"', 'sh'];
    const variants: Record<string, string[]> = {
      'filter alone (root, no switch)': [filter],
      setpriv: [...sp, filter],
      'prlimit + setpriv (setpriv mode)': [...pr, ...sp, filter],
      'sh shim + prlimit + setpriv': [...sh, ...pr, ...sp, filter],
      'bwrap + env + setpriv': [...bw, ...envu, ...sp, filter],
      'prlimit + bwrap + env + setpriv (bwrap mode)': [...pr, ...bw, ...envu, ...sp, filter],
    };
    const env = filterEnvironment(user, envelope(user));
    const one = (argv: string[]) =>
      new Promise<void>((resolve, reject) => {
        const fd = fs.openSync(msg, 'r');
        const c = spawn(argv[0] ?? '', argv.slice(1), { env, cwd: home, stdio: [fd, 'ignore', 'ignore'], detached: true });
        fs.closeSync(fd);
        c.on('error', reject);
        c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${argv[0]} exited ${code}`))));
      });
    const times: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
    for (let r = 0; r < rounds; r++) {
      for (const [k, argv] of Object.entries(variants)) {
        const s = performance.now();
        await one(argv);
        times[k]?.push(performance.now() - s);
      }
    }
    const out: Record<string, number> = {};
    const alone = median(times['filter alone (root, no switch)'] ?? []);
    log(`launcher chain cost, ${rounds} interleaved rounds, median wall time per run (load average ${os.loadavg()[0]?.toFixed(1)}):`);
    for (const [k, v] of Object.entries(times)) {
      out[k] = median(v);
      log(`  ${k.padEnd(46)} ${median(v).toFixed(1).padStart(7)} ms  x${(median(v) / alone).toFixed(1)}`);
    }
    return out;
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && process.argv.includes('--links')) {
  measureLinks().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 2;
  });
} else if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const opts: RunnerBenchOptions = {};
  const runs = argValue('--runs');
  const sandbox = argValue('--sandbox');
  const conc = argValue('--concurrency');
  const threads = argValue('--threads');
  if (runs) opts.runs = Number(runs);
  if (sandbox === 'setpriv' || sandbox === 'bwrap') opts.sandbox = sandbox;
  if (conc) opts.concurrency = Number(conc);
  if (threads) opts.threads = Number(threads);
  benchRunner(opts).then(
    (r) => {
      const failed = r.sequential.plain.failures + r.sequential.pool.failures + r.concurrent.plain.failures + r.concurrent.pool.failures;
      process.exitCode = failed > 0 ? 1 : 0;
    },
    (err: unknown) => {
      console.error(err);
      process.exitCode = 2;
    },
  );
}
