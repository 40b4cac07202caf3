// The benchmark: every scenario and baseline in one run, on loopback only,
// bounded in message count and in time per scenario. bench/run.ts is the
// command line; test/bench/smoke.test.ts runs the smoke set.
//
// Layers:
//   milter  the in-repo client drives the milter directly (protocol cost);
//   smtp    smtp-source through a private Postfix into discard: (end to end);
//   spawn   the plain sandbox-spawn loop of bench/runner.ts (per-recipient floor).
// Systems: per-user-milter, the C null milter (protocol floor), Postfix with
// no milter, MIMEDefang doing the same per-user work (the peer).
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildNullMilter, Daemon, inetSocket, repoRoot, startNullMilter, startPerUserMilter, unixSocket, type SocketSpec } from './lib/daemons.js';
import { installSudoers, removeSudoers, startMimeDefang, type MimeDefangPeer } from './lib/mimedefang.js';
import { runMilterLoad, type MilterRecipient } from './lib/milter-load.js';
import { ProcessMeter, waitQuiescent } from './lib/proc.js';
import type { BenchRun, FilterKindOrNone, ScenarioResult, System, TargetCheck } from './lib/results.js';
import { runSpawnBaseline } from './lib/spawn-baseline.js';
import { DISCARD_DOMAIN, LOCAL_DOMAIN, runSmtpLoad, startBenchPostfix, type BenchPostfix } from './lib/smtp.js';
import { fmt, ratio } from './lib/stats.js';
import { createUsers, removeUsers, setFilters, USER_PREFIX, type BenchUser, type FilterKind } from './lib/users.js';

export interface BenchOptions {
  /** Where results.json, report.md, chart.svg and the work files go. */
  outDir: string;
  /** Tiny counts: milter-protocol load on the null milter and per-user-milter pass-through, one Postfix pass-through. */
  smoke: boolean;
  /** Only scenarios whose id matches (baselines they are compared with still run). */
  only: RegExp | null;
  /** Multiplies every message count. */
  scale: number;
  /** Upper bound on one scenario's load phase, seconds. */
  maxSeconds: number;
  /** Run bench/setup.sh (apt-get install what is missing) first. */
  setup: boolean;
  /** Include MIMEDefang. */
  peer: boolean;
  /** Parallel connections / SMTP sessions. */
  concurrency: number;
  /** pool.threads for per-user-milter (default: its own default, the CPU count). */
  threads: number;
  /** First port of the range the bench may use (25500-25599). */
  portBase: number;
  log: (line: string) => void;
}

export const DEFAULT_OPTIONS: BenchOptions = {
  outDir: path.join(repoRoot, 'bench', 'results'),
  smoke: false,
  only: null,
  scale: 1,
  maxSeconds: 12,
  setup: true,
  peer: true,
  concurrency: 10,
  threads: os.availableParallelism(),
  portBase: 25500,
  log: (line) => process.stderr.write(line + '\n'),
};

const KB4 = 4096;
const KB100 = 100 * 1024;
const MB10 = 10 * 1024 * 1024;
const RECIPIENT_COUNTS = [1, 3, 10];
/** Warm-up per shape of load (pass-through, one local recipient): at most this many messages or seconds. */
const WARM_MESSAGES = 2000;
const WARM_SECONDS = 2.5;

function sizeTag(size: number): string {
  return size >= 1024 * 1024 ? `${size / (1024 * 1024)}m` : `${size / 1024}k`;
}

function machineInfo(): Record<string, string> {
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  const version = (cmd: string, args: string[], re: RegExp): string => {
    try {
      const r = spawnSync(cmd, args, { encoding: 'utf8' });
      return re.exec(`${r.stdout}${r.stderr}`)?.[1] ?? 'unknown';
    } catch {
      return 'unknown';
    }
  };
  const dpkg = (p: string): string => version('dpkg-query', ['-W', '-f=${Version}', p], /^(\S+)/);
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    // not a git checkout
  }
  let osName = 'unknown';
  try {
    osName = /PRETTY_NAME="([^"]+)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? osName;
  } catch {
    // no os-release
  }
  return {
    cpu: `${cpu} × ${os.availableParallelism()}`,
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    os: `${osName}, Linux ${os.release()}`,
    node: process.version,
    postfix: dpkg('postfix'),
    mimedefang: dpkg('mimedefang'),
    libmilter: dpkg('libmilter1.0.1'),
    commit,
    'load average at start': os.loadavg().map((v) => v.toFixed(2)).join(' '),
  };
}

function emptyLatency(): ScenarioResult['latencyMs'] {
  return { count: 0, p50: Number.NaN, p95: Number.NaN, p99: Number.NaN, max: Number.NaN, mean: Number.NaN };
}

interface ScenarioBase {
  id: string;
  title: string;
  system: System;
  sandbox: ScenarioResult['sandbox'];
  recipients: number;
  local: boolean;
  filter: FilterKindOrNone;
  size: number;
}

/** How many messages a scenario gets: cheap ones more, expensive ones fewer; always bounded by maxSeconds too. */
function messageCount(o: BenchOptions, base: { size: number; recipients: number; filter: FilterKindOrNone; system: System }): number {
  if (o.smoke) return 30;
  let n: number;
  if (base.size >= MB10) n = 30;
  else if (base.size >= KB100) n = 200;
  else if (base.filter === 'none') n = 3000;
  else if (base.filter === 'slow') n = 100;
  else n = base.recipients >= 10 ? 150 : 300;
  return Math.max(5, Math.round(n * o.scale));
}

/** What must be undone (Postfix stop, users, sudoers rule), newest last; see emergencyCleanup(). */
const pendingCleanups: Array<() => Promise<void> | void> = [];
/** Daemons currently running, stopped by PID on an interrupt. */
const liveDaemons = new Set<{ stop(): Promise<void> }>();

/** For a SIGINT/SIGTERM in the middle of a run: stop what we started, undo users and sudoers. */
export async function emergencyCleanup(): Promise<void> {
  for (const d of [...liveDaemons]) await d.stop().catch(() => undefined);
  liveDaemons.clear();
  for (const c of pendingCleanups.splice(0).reverse()) {
    try {
      await c();
    } catch {
      // best effort
    }
  }
}

function track<T extends { stop(): Promise<void> }>(d: T): T {
  liveDaemons.add(d);
  const stop = d.stop.bind(d);
  d.stop = async () => {
    liveDaemons.delete(d);
    await stop();
  };
  return d;
}

// ---- the plans: what the benchmark runs, as data ---------------------------------

/** What a plan's scenarios run against: started once per plan, warmed up, measured item by item, stopped. */
export type SystemUnderTest =
  | { readonly kind: 'spawn-loop'; readonly sandbox: 'fork-exec' | 'setpriv' | 'bwrap'; readonly concurrency: number }
  | { readonly kind: 'null-milter' }
  | { readonly kind: 'per-user-milter'; readonly sandbox: 'setpriv' | 'bwrap'; readonly threads?: number; readonly tcp?: boolean }
  | { readonly kind: 'mimedefang' }
  | { readonly kind: 'postfix-only' };

export interface Plan {
  readonly layer: 'spawn' | 'milter' | 'smtp';
  readonly system: SystemUnderTest;
  readonly items: readonly ScenarioBase[];
  /** Items measured besides the wanted ones (with --only): the baselines a wanted scenario is compared with. */
  readonly companion?: (s: ScenarioBase, wanted: (id: string) => boolean) => boolean;
  /**
   * When the plan runs: 'wanted' when one of its items is wanted (the
   * default), 'kept' when any item is wanted or a companion, 'always'.
   */
  readonly runs?: 'wanted' | 'kept' | 'always';
}

const pum = (id: string, title: string, sandbox: 'setpriv' | 'bwrap', recipients: number, local: boolean, filter: FilterKindOrNone, size: number): ScenarioBase => ({
  id,
  title,
  system: 'per-user-milter',
  sandbox,
  recipients,
  local,
  filter,
  size,
});
const plain = (id: string, title: string, system: System, recipients: number, local: boolean, size = KB4): ScenarioBase => ({
  id,
  title,
  system,
  sandbox: null,
  recipients,
  local,
  filter: 'none',
  size,
});
/** The pass-through of a per-user-milter daemon goes with any of its scenarios: the ratios are taken against it. */
const passThroughOfThisDaemon: Plan['companion'] = (s) => s.filter === 'none';

/** Every scenario of a run, plan by plan, in the order they run. */
export function benchPlans(o: Pick<BenchOptions, 'smoke' | 'threads' | 'peer'>): Plan[] {
  const milterPass = pum('milter/pum-setpriv/r1/4k/pass', 'per-user-milter, no local recipient (pass-through)', 'setpriv', 1, false, 'none', KB4);
  const smtpPass = pum('smtp/pum-setpriv/r1/4k/pass', 'Postfix + per-user-milter, no local recipient', 'setpriv', 1, false, 'none', KB4);
  const nullMilter: Plan = {
    layer: 'milter',
    system: { kind: 'null-milter' },
    items: [plain('milter/null-c/r1/4k/pass', 'C null milter (libmilter), protocol floor', 'null-milter', 1, false)],
    runs: 'always',
  };
  if (o.smoke) {
    return [
      nullMilter,
      { layer: 'milter', system: { kind: 'per-user-milter', sandbox: 'setpriv' }, items: [milterPass], companion: passThroughOfThisDaemon },
      { layer: 'smtp', system: { kind: 'per-user-milter', sandbox: 'setpriv' }, items: [smtpPass], companion: passThroughOfThisDaemon },
    ];
  }

  // Sequential (the floor), and with as many runs in flight as per-user-milter's
  // pool allows (pool.threads x 4): like for like with the milter's filter scenarios.
  const inFlight = o.threads * 4;
  const spawn = (['fork-exec', 'setpriv', 'bwrap'] as const).flatMap((sandbox) =>
    [1, inFlight].map((concurrency): Plan => ({
      layer: 'spawn',
      system: { kind: 'spawn-loop', sandbox, concurrency },
      items: [
        {
          id: concurrency === 1 ? `spawn/${sandbox}/4k/trivial` : `spawn/${sandbox}-c${concurrency}/4k/trivial`,
          title: sandbox === 'fork-exec' ? `plain fork+exec loop (C, trivial filter, ${concurrency} in flight)` : `0.1 sandbox-spawn chain (${sandbox}, trivial filter, ${concurrency} in flight)`,
          system: 'spawn-loop',
          sandbox,
          recipients: 1,
          local: true,
          filter: 'trivial',
          size: KB4,
        },
      ],
      // the per-recipient cost of every per-user-milter scenario is compared with it
      companion: (_s, wanted) => wanted('milter/pum-'),
      runs: 'kept',
    })),
  );

  const slowThreads = 4 * o.threads;
  const milter: Plan[] = [
    nullMilter,
    {
      layer: 'milter',
      system: { kind: 'per-user-milter', sandbox: 'setpriv' },
      items: [
        milterPass,
        ...RECIPIENT_COUNTS.map((n) => pum(`milter/pum-setpriv/r${n}/4k/trivial`, `per-user-milter, ${n} local recipient(s), trivial filters`, 'setpriv', n, true, 'trivial', KB4)),
        pum('milter/pum-setpriv/r1/100k/trivial', 'per-user-milter, 100 KB message, trivial filter', 'setpriv', 1, true, 'trivial', KB100),
        pum('milter/pum-setpriv/r1/10m/trivial', 'per-user-milter, 10 MB message, trivial filter', 'setpriv', 1, true, 'trivial', MB10),
        pum('milter/pum-setpriv/r3/4k/slow', 'per-user-milter, 3 local recipients, filters taking 200 ms', 'setpriv', 3, true, 'slow', KB4),
      ],
      companion: passThroughOfThisDaemon,
    },
    {
      layer: 'milter',
      system: { kind: 'per-user-milter', sandbox: 'bwrap' },
      items: [pum('milter/pum-bwrap/r3/4k/trivial', 'per-user-milter (bwrap), 3 local recipients, trivial filters', 'bwrap', 3, true, 'trivial', KB4)],
      companion: passThroughOfThisDaemon,
    },
    {
      // the tuning knob for slow (sleeping, waiting) filters: more pool threads, more runs in flight
      layer: 'milter',
      system: { kind: 'per-user-milter', sandbox: 'setpriv', threads: slowThreads },
      items: [pum(`milter/pum-setpriv-t${slowThreads}/r3/4k/slow`, `per-user-milter with pool.threads=${slowThreads}, 3 local recipients, filters taking 200 ms`, 'setpriv', 3, true, 'slow', KB4)],
    },
  ];

  const postfixOnly: Plan = {
    layer: 'smtp',
    system: { kind: 'postfix-only' },
    items: [
      plain('smtp/postfix-only/r1/4k/pass', 'Postfix, no milter', 'postfix-only', 1, false),
      ...RECIPIENT_COUNTS.map((n) => plain(`smtp/postfix-only/r${n}/4k/local`, `Postfix, no milter, ${n} local recipient(s)`, 'postfix-only', n, true)),
      plain('smtp/postfix-only/r1/10m/pass', 'Postfix, no milter, 10 MB', 'postfix-only', 1, false, MB10),
    ],
    // with --only, a baseline runs when something compared with it runs
    companion: (s, wanted) =>
      s.id === 'smtp/postfix-only/r1/4k/pass' ||
      (s.size === MB10
        ? wanted('smtp/pum-setpriv/r1/10m/trivial')
        : s.local && ['pum-setpriv', 'pum-bwrap', 'mimedefang'].some((sys) => ['trivial', 'slow'].some((f) => wanted(`smtp/${sys}/r${s.recipients}/4k/${f}`)))),
    runs: 'kept',
  };
  const smtp: Plan[] = [
    postfixOnly,
    { layer: 'smtp', system: { kind: 'null-milter' }, items: [plain('smtp/null-c/r1/4k/pass', 'Postfix + C null milter', 'null-milter', 1, false)], runs: 'always' },
    {
      layer: 'smtp',
      system: { kind: 'per-user-milter', sandbox: 'setpriv' },
      items: [
        smtpPass,
        ...RECIPIENT_COUNTS.map((n) => pum(`smtp/pum-setpriv/r${n}/4k/trivial`, `Postfix + per-user-milter, ${n} local recipient(s), trivial filters`, 'setpriv', n, true, 'trivial', KB4)),
        pum('smtp/pum-setpriv/r3/4k/slow', 'Postfix + per-user-milter, 3 recipients, filters taking 200 ms', 'setpriv', 3, true, 'slow', KB4),
        pum('smtp/pum-setpriv/r1/10m/trivial', 'Postfix + per-user-milter, 10 MB, trivial filter', 'setpriv', 1, true, 'trivial', MB10),
      ],
      companion: passThroughOfThisDaemon,
    },
    {
      layer: 'smtp',
      system: { kind: 'per-user-milter', sandbox: 'bwrap' },
      items: [pum('smtp/pum-bwrap/r3/4k/trivial', 'Postfix + per-user-milter (bwrap), 3 recipients, trivial filters', 'bwrap', 3, true, 'trivial', KB4)],
      companion: passThroughOfThisDaemon,
    },
    {
      // docs/testing-with-real-mtas.md §6: Postfix + a milter over TCP loopback can stall ~40 ms per message; this catches it.
      layer: 'smtp',
      system: { kind: 'per-user-milter', sandbox: 'setpriv', tcp: true },
      items: [pum('smtp/pum-setpriv-tcp/r1/4k/pass', 'Postfix + per-user-milter over TCP loopback, no local recipient (stall check, docs/testing-with-real-mtas.md §6)', 'setpriv', 1, false, 'none', KB4)],
    },
  ];
  if (o.peer) {
    smtp.push({
      layer: 'smtp',
      system: { kind: 'mimedefang' },
      items: [
        ...RECIPIENT_COUNTS.map((n): ScenarioBase => ({ id: `smtp/mimedefang/r${n}/4k/trivial`, title: `Postfix + MIMEDefang (sudo per user), ${n} recipient(s), trivial filters`, system: 'mimedefang', sandbox: 'sudo', recipients: n, local: true, filter: 'trivial', size: KB4 })),
        { id: 'smtp/mimedefang/r3/4k/slow', title: 'Postfix + MIMEDefang, 3 recipients, filters taking 200 ms', system: 'mimedefang', sandbox: 'sudo', recipients: 3, local: true, filter: 'slow', size: KB4 },
      ],
      // the peer of every per-user-milter SMTP scenario
      companion: (_s, wanted) => wanted('smtp/pum-'),
      runs: 'kept',
    });
  }
  return [...spawn, ...milter, ...smtp];
}

/** The plans that run under `only`, each with the items it measures. */
export function selectPlans(plans: readonly Plan[], only: RegExp | null): Array<{ plan: Plan; items: ScenarioBase[] }> {
  const wanted = (id: string): boolean => !only || only.test(id);
  const out: Array<{ plan: Plan; items: ScenarioBase[] }> = [];
  for (const plan of plans) {
    const runs = plan.runs ?? 'wanted';
    const items = runs === 'always' ? [...plan.items] : plan.items.filter((s) => wanted(s.id) || (plan.companion?.(s, wanted) ?? false));
    const go = runs === 'always' || (runs === 'kept' ? items.length > 0 : items.some((s) => wanted(s.id)));
    if (go) out.push({ plan, items });
  }
  return out;
}

// ---- the one loop ---------------------------------------------------------------------

export async function runBench(partial: Partial<BenchOptions> = {}): Promise<BenchRun> {
  const o: BenchOptions = { ...DEFAULT_OPTIONS, ...partial };
  const log = o.log;
  const started = new Date();
  const work = path.join(o.outDir, 'work');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  // Postfix's daemons (user postfix) and the filter users must be able to traverse it.
  chmodSync(o.outDir, 0o755);
  chmodSync(work, 0o755);
  const scenarios: ScenarioResult[] = [];
  const skipped: string[] = [];
  const cleanups = pendingCleanups;
  cleanups.length = 0;

  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (test users, setuid filters, a private Postfix)');
  if (o.setup) {
    const r = spawnSync('bash', [path.join(repoRoot, 'bench', 'setup.sh')], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
    log(r.stdout.trim());
    if (r.status !== 0) throw new Error(`bench/setup.sh failed: ${r.stderr}`);
  }
  const machine = machineInfo();
  log(`bench: ${machine.cpu}, node ${machine.node}, postfix ${machine.postfix}, mimedefang ${machine.mimedefang}`);

  const maxRcpt = o.smoke ? 1 : Math.max(...RECIPIENT_COUNTS);
  const recipientMap = path.join(work, 'recipients.map');
  const numbered: Record<string, string> = {};
  for (let k = 2; k <= maxRcpt; k++) numbered[`${k}${USER_PREFIX}1`] = `${USER_PREFIX}${k}`;
  writeFileSync(recipientMap, Object.entries(numbered).map(([a, u]) => `${a} ${u}`).join('\n') + '\n');

  try {
    let users: BenchUser[] = [];
    if (!o.smoke) {
      removeUsers(); // leftovers of an interrupted run
      users = createUsers(maxRcpt);
      cleanups.push(() => {
        const gone = removeUsers();
        log(`bench: removed users ${gone.join(' ')}`);
      });
    }
    const ctx: RunContext = { o, work, users, recipientMap, numbered, nullBin: buildNullMilter(work), postfix: null, skipped };
    for (const { plan, items } of selectPlans(benchPlans(o), o.only)) {
      scenarios.push(...(await runPlan(ctx, plan, items)));
    }
  } finally {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch (e) {
        log(`bench: cleanup failed: ${(e as Error).message}`);
      }
    }
  }

  const finished = new Date();
  machine['load average at end'] = os.loadavg().map((v) => v.toFixed(2)).join(' ');
  const run: BenchRun = {
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationSeconds: (finished.getTime() - started.getTime()) / 1000,
    machine,
    settings: {
      concurrency: o.concurrency,
      poolThreads: o.threads,
      maxSecondsPerScenario: o.maxSeconds,
      scale: o.scale,
      smoke: o.smoke,
      only: o.only?.source ?? null,
      milterTransport: 'unix sockets for every milter (docs/testing-with-real-mtas.md §6)',
      smtp: 'smtp-source, one connection per message, into discard: (local users via local_transport = discard:)',
      mimedefangWorkers: `-m 2 -x ${o.concurrency}`,
    },
    scenarios,
    targets: [],
    skipped,
  };
  addRatios(run);
  run.targets = checkTargets(run);
  return run;
}

interface RunContext {
  readonly o: BenchOptions;
  readonly work: string;
  readonly users: BenchUser[];
  readonly recipientMap: string;
  readonly numbered: Record<string, string>;
  readonly nullBin: string;
  /** The private Postfix, started before the first SMTP plan. */
  postfix: BenchPostfix | null;
  readonly skipped: string[];
}

/** A running system under test: its warm-up, how to measure one item against it, and how to stop it. */
interface Running {
  /**
   * A few seconds of the load it is about to see (not in smoke runs), so
   * that what is measured is the steady state of a long-running daemon (V8
   * has compiled its hot paths, Perl workers are forked, caches are warm),
   * not its first second. Every system gets the same.
   */
  warm(): Promise<void>;
  measure(s: ScenarioBase): Promise<ScenarioResult>;
  stop(): Promise<void>;
}

/** Starts the plan's system, warms it up, measures each item, stops it. */
async function runPlan(ctx: RunContext, plan: Plan, items: readonly ScenarioBase[]): Promise<ScenarioResult[]> {
  const out: ScenarioResult[] = [];
  let running: Running;
  try {
    running = plan.layer === 'spawn' ? spawnLoop(ctx, plan.system) : plan.layer === 'milter' ? await milterSystem(ctx, plan.system) : await smtpSystem(ctx, plan.system);
  } catch (e) {
    // Only the peer may be missing (its packages are optional); anything else is the bench's own failure.
    if (plan.system.kind !== 'mimedefang') throw e;
    ctx.skipped.push(`MIMEDefang: ${(e as Error).message}`);
    return out;
  }
  try {
    if (!ctx.o.smoke) await running.warm();
    for (const s of items) {
      ctx.o.log(`bench: ${s.id}`);
      try {
        out.push(await running.measure(s));
      } catch (e) {
        // A spawn-loop run that fails is reported and the next one tried.
        if (plan.layer !== 'spawn') throw e;
        ctx.skipped.push(`${s.id}: ${(e as Error).message}`);
      }
    }
  } catch (e) {
    if (plan.system.kind !== 'mimedefang') throw e;
    ctx.skipped.push(`MIMEDefang: ${(e as Error).message}`);
  } finally {
    await running.stop();
  }
  return out;
}

const localRcpts = (ctx: RunContext, n: number): MilterRecipient[] => ctx.users.slice(0, n).map((u) => ({ address: `${u.name}@${LOCAL_DOMAIN}`, mailer: 'local' }));
const passRcpts = (n: number): MilterRecipient[] => Array.from({ length: n }, (_, i) => ({ address: `rcpt${i + 1}@${DISCARD_DOMAIN}`, mailer: 'smtp' }));
const useFilter = (ctx: RunContext, kind: FilterKindOrNone): void => {
  if (ctx.users.length > 0) setFilters(ctx.users, kind === 'none' ? null : (kind as FilterKind));
};

/** The plain sandbox-spawn loop: no daemon; each item is one run of bench/runner.ts's loop. */
function spawnLoop(ctx: RunContext, system: SystemUnderTest): Running {
  if (system.kind !== 'spawn-loop') throw new Error(`spawn layer with ${system.kind}`);
  const { sandbox, concurrency } = system;
  return {
    async measure(s) {
      useFilter(ctx, 'trivial');
      const u = ctx.users[0] as BenchUser;
      const r = await runSpawnBaseline({ user: u, sandbox, size: s.size, runs: Math.round(200 * ctx.o.scale), concurrency, maxSeconds: ctx.o.maxSeconds, workDir: path.join(ctx.work, `spawn-${sandbox}`) });
      return {
        ...s,
        title: `${s.title}, ${r.source}`,
        layer: 'spawn',
        concurrency,
        messages: r.runs,
        elapsedSeconds: r.elapsedSeconds,
        messagesPerSecond: r.runs / r.elapsedSeconds,
        latencyMs: r.latencyMs,
        cpuSecondsPerMessage: r.cpuSecondsPerRun,
        machineCpuSecondsPerMessage: r.machineCpuSecondsPerRun,
        rssStartBytes: null,
        rssPeakBytes: null,
        rssGrowthBytes: null,
        rejects: 0,
        tempfails: 0,
        errors: r.errors,
        timedOut: r.timedOut,
        ratios: {},
        notes: r.notes,
      };
    },
    warm: async () => undefined,
    stop: async () => undefined,
  };
}

/** The milter layer: the in-repo client drives the system directly. */
async function milterSystem(ctx: RunContext, system: SystemUnderTest): Promise<Running> {
  const { o, work } = ctx;
  let d: Daemon;
  let socket: SocketSpec;
  let shapes: MilterRecipient[][];
  if (system.kind === 'null-milter') {
    socket = unixSocket(path.join(work, 'null-milter.sock'));
    d = track(await startNullMilter(ctx.nullBin, socket, path.join(work, 'null-milter.log')));
    shapes = [passRcpts(1)];
  } else if (system.kind === 'per-user-milter') {
    const tag = `${system.sandbox}${system.threads ? `-t${system.threads}` : ''}`;
    socket = unixSocket(path.join(work, `pum-${tag}.sock`));
    d = track(await startPerUserMilter(path.join(work, `pum-${tag}`), socket, { sandbox: system.sandbox, threads: system.threads ?? o.threads, recipientMap: ctx.recipientMap }, path.join(work, `pum-${tag}.log`)));
    useFilter(ctx, 'trivial');
    shapes = ctx.users.length > 0 ? [passRcpts(1), localRcpts(ctx, 1)] : [passRcpts(1)];
  } else {
    throw new Error(`milter layer with ${system.kind}`);
  }
  return {
    async warm() {
      for (const rcpts of shapes) {
        await runMilterLoad({ socket: socket.spec, connections: o.concurrency, messages: WARM_MESSAGES, maxSeconds: WARM_SECONDS, recipients: rcpts, size: KB4 });
      }
    },
    async measure(base) {
      useFilter(ctx, base.filter);
      const rcpts = base.local ? localRcpts(ctx, base.recipients) : passRcpts(base.recipients);
      const meter = new ProcessMeter(d.pid);
      const r = await runMilterLoad({ socket: socket.spec, connections: o.concurrency, messages: messageCount(o, base), maxSeconds: o.maxSeconds, recipients: rcpts, size: base.size });
      const m = meter.stop();
      if (r.timedOut) await waitQuiescent([d.pid]);
      const verdictErrors = Object.entries(r.verdicts).filter(([k]) => k !== 'accept').map(([k, v]) => `${v} × verdict ${k}`);
      return {
        ...base,
        layer: 'milter',
        concurrency: o.concurrency,
        messages: r.completed,
        elapsedSeconds: r.elapsedSeconds,
        messagesPerSecond: r.messagesPerSecond,
        latencyMs: r.verdictLatencyMs,
        transactionLatencyMs: r.transactionLatencyMs,
        cpuSecondsPerMessage: r.completed > 0 ? m.cpuSeconds / r.completed : null,
        machineCpuSecondsPerMessage: r.completed > 0 ? m.machineCpuSeconds / r.completed : null,
        rssStartBytes: m.rssStartBytes,
        rssPeakBytes: m.rssPeakBytes,
        rssGrowthBytes: m.rssPeakBytes !== null && m.rssStartBytes !== null ? m.rssPeakBytes - m.rssStartBytes : null,
        rejects: r.verdicts.reject ?? 0,
        tempfails: r.verdicts.tempfail ?? 0,
        errors: [...r.errors, ...(r.verdicts.error ? [] : verdictErrors.filter((e) => !/reject|tempfail/.test(e)))],
        timedOut: r.timedOut,
        ratios: {},
        notes: r.earlyVerdicts > 0 ? [`verdict given at: ${Object.entries(r.verdictSteps).map(([k, v]) => `${k} ${v}×`).join(', ')} (latency is that step's reply)`] : [],
      };
    },
    async stop() {
      await d.stop();
      if (system.kind === 'per-user-milter' && d.child.exitCode !== 0 && d.child.exitCode !== null) {
        ctx.skipped.push(`per-user-milter (${system.sandbox}) exited ${d.child.exitCode} at stop: ${d.tail(500)}`);
      }
    },
  };
}

/** The SMTP layer: smtp-source through the private Postfix into discard:, the system as its milter. */
async function smtpSystem(ctx: RunContext, system: SystemUnderTest): Promise<Running> {
  const { o, work } = ctx;
  if (!ctx.postfix) {
    o.log('bench: starting the private Postfix');
    const started = await startBenchPostfix(o.portBase, work, ctx.numbered);
    pendingCleanups.push(() => started.stop());
    ctx.postfix = started;
  }
  const bp = ctx.postfix;
  /** The processes whose CPU and memory count; null: Postfix alone, nothing to meter. */
  let sut: { pid: number; roots: number[] } | null = null;
  let stopSystem = async (): Promise<void> => undefined;
  let local = false;
  if (system.kind === 'postfix-only') {
    await bp.useMilter(null);
  } else if (system.kind === 'null-milter') {
    const socket = unixSocket(path.join(work, 'null-milter-smtp.sock'));
    const d = track(await startNullMilter(ctx.nullBin, socket, path.join(work, 'null-milter.log')));
    stopSystem = () => d.stop();
    await bp.useMilter(socket.spec);
    sut = { pid: d.pid, roots: [d.pid] };
  } else if (system.kind === 'per-user-milter') {
    const tag = `${system.sandbox}${system.tcp ? '-tcp' : ''}`;
    const socket = system.tcp ? inetSocket(o.portBase + 1) : unixSocket(path.join(work, `pum-smtp-${tag}.sock`));
    const d = track(await startPerUserMilter(path.join(work, `pum-smtp-${tag}`), socket, { sandbox: system.sandbox, threads: o.threads, recipientMap: ctx.recipientMap }, path.join(work, `pum-smtp-${tag}.log`)));
    stopSystem = () => d.stop();
    await bp.useMilter(socket.spec);
    useFilter(ctx, 'trivial');
    sut = { pid: d.pid, roots: [d.pid] };
    local = ctx.users.length > 0;
  } else if (system.kind === 'mimedefang') {
    installSudoers(ctx.users);
    pendingCleanups.push(() => removeSudoers());
    let md: MimeDefangPeer | null = null;
    stopSystem = async () => {
      await md?.stop();
      removeSudoers();
    };
    try {
      md = track(await startMimeDefang(path.join(work, 'mimedefang'), { minWorkers: 2, maxWorkers: o.concurrency }));
      await bp.useMilter(md.socket.spec);
    } catch (e) {
      await bp.useMilter(null);
      await stopSystem();
      throw e;
    }
    useFilter(ctx, 'trivial');
    sut = { pid: md.milter.pid, roots: md.pids };
    local = true;
  } else {
    throw new Error(`smtp layer with ${system.kind}`);
  }
  return {
    async warm() {
      for (const toLocal of local ? [false, true] : [false]) {
        await runSmtpLoad(bp, { messages: WARM_MESSAGES, sessions: o.concurrency, recipients: 1, size: KB4, to: toLocal ? `${USER_PREFIX}1@${LOCAL_DOMAIN}` : `rcpt@${DISCARD_DOMAIN}`, maxSeconds: WARM_SECONDS, fitToTime: true });
      }
    },
    async measure(base) {
      useFilter(ctx, base.filter);
      let meter: ProcessMeter | null = null;
      let m: ReturnType<ProcessMeter['stop']> | null = null;
      const r = await runSmtpLoad(
        bp,
        {
          messages: messageCount(o, base),
          sessions: o.concurrency,
          recipients: base.recipients,
          size: base.size,
          to: base.local ? `${USER_PREFIX}1@${LOCAL_DOMAIN}` : `rcpt@${DISCARD_DOMAIN}`,
          maxSeconds: o.maxSeconds,
          fitToTime: !o.smoke,
        },
        {
          before: () => {
            if (sut) meter = new ProcessMeter(sut.pid, sut.roots);
          },
          after: () => {
            m = (meter as ProcessMeter | null)?.stop() ?? null;
          },
        },
      );
      m = m as ReturnType<ProcessMeter['stop']> | null;
      // Cut short by the time bound: filters of aborted transactions may still run; let them finish first.
      if (sut && r.timedOut) await waitQuiescent(sut.roots);
      return {
        ...base,
        layer: 'smtp',
        concurrency: o.concurrency,
        messages: r.sent,
        elapsedSeconds: r.elapsedSeconds,
        messagesPerSecond: r.messagesPerSecond,
        latencyMs: r.latencyMs,
        cpuSecondsPerMessage: m && r.sent > 0 ? m.cpuSeconds / r.sent : null,
        machineCpuSecondsPerMessage: m && r.sent > 0 ? m.machineCpuSeconds / r.sent : null,
        postfixCpuSecondsPerMessage: r.postfixCpuPerMessage,
        notes: r.planned < messageCount(o, base) ? [`count fitted to the time bound by a probe: ${r.planned} planned`] : [],
        rssStartBytes: m?.rssStartBytes ?? null,
        rssPeakBytes: m?.rssPeakBytes ?? null,
        rssGrowthBytes: m && m.rssPeakBytes !== null && m.rssStartBytes !== null ? m.rssPeakBytes - m.rssStartBytes : null,
        rejects: r.rejects,
        tempfails: r.tempfails,
        errors: r.errors,
        timedOut: r.timedOut,
        ratios: {},
      };
    },
    async stop() {
      if (system.kind !== 'postfix-only') await bp.useMilter(null);
      await stopSystem();
    },
  };
}

// ---- ratios and targets -----------------------------------------------------------

function find(run: BenchRun, id: string): ScenarioResult | undefined {
  return run.scenarios.find((s) => s.id === id);
}

/** Marginal CPU per extra local recipient, from the r1 and r10 (or r3) trivial scenarios of one layer/system. */
export function perRecipientCpu(run: BenchRun, prefix: string): number | null {
  const r1 = find(run, `${prefix}/r1/4k/trivial`);
  const rN = find(run, `${prefix}/r10/4k/trivial`) ?? find(run, `${prefix}/r3/4k/trivial`);
  if (!r1 || !rN || r1.cpuSecondsPerMessage == null || rN.cpuSecondsPerMessage == null || rN.recipients === r1.recipients) return null;
  return (rN.cpuSecondsPerMessage - r1.cpuSecondsPerMessage) / (rN.recipients - r1.recipients);
}

function addRatios(run: BenchRun): void {
  const set = (s: ScenarioResult, name: string, v: number | null): void => {
    s.ratios[name] = v;
  };
  const nullMilter = find(run, 'milter/null-c/r1/4k/pass');
  const nullSmtp = find(run, 'smtp/null-c/r1/4k/pass');
  const postfixOnly = find(run, 'smtp/postfix-only/r1/4k/pass');
  const spawn = find(run, 'spawn/setpriv/4k/trivial');
  for (const s of run.scenarios) {
    if (s.layer === 'milter' && s.system === 'per-user-milter' && s.size === KB4) {
      if (s.filter === 'none') set(s, 'of null-milter msg/s', ratio(s.messagesPerSecond, nullMilter?.messagesPerSecond));
      else set(s, 'of pass-through msg/s', ratio(s.messagesPerSecond, find(run, 'milter/pum-setpriv/r1/4k/pass')?.messagesPerSecond));
      if (/^milter\/pum-setpriv-t\d+\/r3\/4k\/slow$/.test(s.id)) set(s, 'of default-threads msg/s', ratio(s.messagesPerSecond, find(run, 'milter/pum-setpriv/r3/4k/slow')?.messagesPerSecond));
    }
    if (s.layer === 'milter' && s.system === 'per-user-milter' && s.filter === 'trivial' && s.size === KB4 && s.recipients > 0 && spawn?.cpuSecondsPerMessage) {
      const pass = find(run, 'milter/pum-setpriv/r1/4k/pass')?.cpuSecondsPerMessage ?? 0;
      const seq = find(run, `spawn/${s.sandbox}/4k/trivial`) ?? spawn;
      const par = run.scenarios.find((x) => x.layer === 'spawn' && x.sandbox === s.sandbox && x.concurrency > 1);
      set(s, `CPU per rcpt vs ${seq.sandbox} spawn loop`, ratio((s.cpuSecondsPerMessage ?? 0) - pass, (seq.cpuSecondsPerMessage ?? 0) * s.recipients));
      if (par) set(s, `vs ${par.concurrency}-in-flight loop`, ratio((s.cpuSecondsPerMessage ?? 0) - pass, (par.cpuSecondsPerMessage ?? 0) * s.recipients));
      const floor = run.scenarios.find((x) => x.layer === 'spawn' && x.sandbox === 'fork-exec' && x.concurrency > 1);
      if (floor) set(s, `vs ${floor.concurrency}-in-flight fork+exec (C)`, ratio((s.cpuSecondsPerMessage ?? 0) - pass, (floor.cpuSecondsPerMessage ?? 0) * s.recipients));
    }
    if (s.layer === 'smtp') {
      if (s.system !== 'postfix-only') {
        const same = find(run, `smtp/postfix-only/r${s.recipients}/${sizeTag(s.size)}/${s.local ? 'local' : 'pass'}`) ?? (s.size === MB10 ? find(run, 'smtp/postfix-only/r1/10m/pass') : postfixOnly);
        set(s, 'of Postfix-alone msg/s', ratio(s.messagesPerSecond, same?.messagesPerSecond));
      }
      if (s.system === 'per-user-milter' && s.filter === 'none') set(s, 'of null-milter msg/s', ratio(s.messagesPerSecond, nullSmtp?.messagesPerSecond));
      if (s.id === 'smtp/pum-setpriv-tcp/r1/4k/pass') {
        const unix = find(run, 'smtp/pum-setpriv/r1/4k/pass');
        set(s, 'of unix-socket msg/s', ratio(s.messagesPerSecond, unix?.messagesPerSecond));
        set(s, 'of unix-socket p50', ratio(s.latencyMs.p50, unix?.latencyMs.p50));
      }
      if (s.system === 'null-milter') set(s, 'of Postfix-alone msg/s', ratio(s.messagesPerSecond, postfixOnly?.messagesPerSecond));
      if (s.system === 'per-user-milter' && s.filter !== 'none') {
        const peer = find(run, `smtp/mimedefang/r${s.recipients}/${sizeTag(s.size)}/${s.filter}`);
        if (peer) {
          set(s, 'of MIMEDefang msg/s', ratio(s.messagesPerSecond, peer.messagesPerSecond));
          set(s, 'of MIMEDefang p99', ratio(s.latencyMs.p99, peer.latencyMs.p99));
        }
      }
    }
  }
}

function checkTargets(run: BenchRun): TargetCheck[] {
  const out: TargetCheck[] = [];
  const pass = find(run, 'smtp/pum-setpriv/r1/4k/pass');
  const nullSmtp = find(run, 'smtp/null-c/r1/4k/pass');
  const r = ratio(pass?.messagesPerSecond, nullSmtp?.messagesPerSecond);
  out.push({
    name: 'pass-through vs C null milter, through Postfix (msg/s)',
    target: '≥ 0.90×',
    measured: r === null ? 'not measured' : `${r.toFixed(2)}× (${fmt(pass?.messagesPerSecond)} vs ${fmt(nullSmtp?.messagesPerSecond)} msg/s)`,
    met: r === null ? null : r >= 0.9,
  });
  const p3 = find(run, 'smtp/pum-setpriv/r3/4k/trivial');
  const m3 = find(run, 'smtp/mimedefang/r3/4k/trivial');
  const rt = ratio(p3?.messagesPerSecond, m3?.messagesPerSecond);
  out.push({
    name: '3 recipients, trivial filters: vs MIMEDefang (msg/s, p99)',
    target: '≥ 2× msg/s and lower p99',
    measured: rt === null ? 'not measured' : `${rt.toFixed(2)}× msg/s (${fmt(p3?.messagesPerSecond)} vs ${fmt(m3?.messagesPerSecond)}); p99 ${fmt(p3?.latencyMs.p99)} vs ${fmt(m3?.latencyMs.p99)} ms`,
    met: rt === null ? null : rt >= 2 && (p3?.latencyMs.p99 ?? Infinity) < (m3?.latencyMs.p99 ?? -Infinity),
  });
  const spawn = find(run, 'spawn/fork-exec/4k/trivial');
  const spawnPar = run.scenarios.find((x) => x.layer === 'spawn' && x.sandbox === 'fork-exec' && x.concurrency > 1);
  const chainPar = run.scenarios.find((x) => x.layer === 'spawn' && x.sandbox === 'setpriv' && x.concurrency > 1);
  const per = perRecipientCpu(run, 'milter/pum-setpriv');
  const rs = ratio(per, spawnPar?.cpuSecondsPerMessage);
  const rseq = ratio(per, spawn?.cpuSecondsPerMessage);
  const rchain = ratio(per, chainPar?.cpuSecondsPerMessage);
  out.push({
    name: `per-recipient cost vs a plain fork+exec loop in C (CPU per extra recipient, default sandbox, same ${spawnPar?.concurrency ?? '?'} runs in flight)`,
    target: '≤ 1.3×',
    measured:
      rs === null
        ? 'not measured'
        : `${rs.toFixed(2)}× (${fmt((per ?? 0) * 1000)} vs ${fmt((spawnPar?.cpuSecondsPerMessage ?? 0) * 1000)} CPU ms); vs the sequential loop ${rseq === null ? '-' : `${rseq.toFixed(2)}×`}; the 0.1 prlimit+setpriv chain from Node costs ${rchain === null ? '-' : `${fmt((chainPar?.cpuSecondsPerMessage ?? 0) * 1000)} CPU ms (our run ${rchain.toFixed(2)}× of it)`}`,
    met: rs === null ? null : rs <= 1.3,
  });
  const big = [find(run, 'milter/pum-setpriv/r1/10m/trivial'), find(run, 'smtp/pum-setpriv/r1/10m/trivial')].filter((s): s is ScenarioResult => !!s && s.rssGrowthBytes !== null);
  const growth = big.length > 0 ? Math.max(...big.map((s) => s.rssGrowthBytes ?? 0)) : null;
  out.push({
    name: '10 MB messages: milter RSS growth',
    target: '< 32 MB',
    measured: growth === null ? 'not measured' : big.map((s) => `${s.layer}: +${((s.rssGrowthBytes ?? 0) / 2 ** 20).toFixed(1)} MB (peak ${((s.rssPeakBytes ?? 0) / 2 ** 20).toFixed(1)} MB)`).join('; '),
    met: growth === null ? null : growth < 32 * 2 ** 20,
  });
  const ours = run.scenarios.filter((s) => s.system === 'per-user-milter');
  const bad = ours.filter((s) => s.errors.length > 0 || s.tempfails > 0 || s.rejects > 0);
  out.push({
    name: 'no errors / tempfails (per-user-milter scenarios)',
    target: '0',
    measured: ours.length === 0 ? 'not measured' : bad.length === 0 ? `0 in ${ours.length} scenarios` : bad.map((s) => `${s.id}: ${s.rejects} rej, ${s.tempfails} tmp, ${s.errors.length} err`).join('; '),
    met: ours.length === 0 ? null : bad.length === 0,
  });
  return out;
}

export { Daemon };
