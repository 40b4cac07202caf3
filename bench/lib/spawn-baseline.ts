// The per-recipient floors, with the message file on stdin and no milter, no
// pool, no spool:
// - `fork-exec`: a plain fork+exec loop of the filter from a small C program
//   (bench/baselines/fork-exec.c), the floor the launcher is measured against;
// - `setpriv`, `bwrap`: the 0.1 launcher chain (prlimit + setpriv, or prlimit
//   + bwrap + setpriv, bench/lib/chain.ts) spawned from Node: what each run
//   cost before the native launcher. The loop is runSpawnLoop of
//   bench/runner.ts (the filter-runner bench), so both benches agree on it.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { runSpawnLoop } from '../runner.js';
import type { UserAccount } from '../../src/users/user.js';
import { makeBody } from './milter-load.js';
import { machineBusySeconds, treeCpuSeconds } from './proc.js';
import { summarize, type LatencySummary } from './stats.js';
import type { BenchUser } from './users.js';

export interface SpawnBaselineSpec {
  user: BenchUser;
  sandbox: 'setpriv' | 'bwrap' | 'fork-exec';
  size: number;
  runs: number;
  concurrency: number;
  maxSeconds: number;
  workDir: string;
}

export interface SpawnBaselineResult {
  runs: number;
  elapsedSeconds: number;
  latencyMs: LatencySummary;
  /** CPU of this process and the reaped filter chains, per run. */
  cpuSecondsPerRun: number | null;
  machineCpuSecondsPerRun: number | null;
  errors: string[];
  timedOut: boolean;
  /** Which implementation ran. */
  source: string;
  notes: string[];
}

function account(u: BenchUser): UserAccount {
  return { name: u.name, uid: u.uid, gid: u.gid, groups: [u.gid], home: u.home, shell: '/bin/sh' };
}

export async function runSpawnBaseline(spec: SpawnBaselineSpec): Promise<SpawnBaselineResult> {
  mkdirSync(spec.workDir, { recursive: true });
  const messageFile = path.join(spec.workDir, 'message.eml');
  writeFileSync(messageFile, Buffer.concat([Buffer.from('Return-Path: <sender@client.test>\nFrom: sender@client.test\nSubject: bench\n\n'), makeBody(spec.size)]), { mode: 0o644 });
  if (spec.sandbox === 'fork-exec') return forkExecLoop(spec, messageFile);
  const user = account(spec.user);
  const notes: string[] = [];
  const cpu0 = treeCpuSeconds([process.pid]);
  const m0 = machineBusySeconds();
  const t0 = performance.now();
  const durations: number[] = [];
  const errors: string[] = [];
  let timedOut: boolean;
  const source = 'runSpawnLoop of bench/runner.ts';

  // per-user-milter runs with umask 077 (its pool sets it), so its chain needs no
  // umask shim; give the loop the same condition, or it pays an extra sh exec.
  const oldUmask = process.umask(0o077);
  let r: Awaited<ReturnType<typeof runSpawnLoop>>;
  try {
    r = await runSpawnLoop({ user, sandbox: spec.sandbox as 'setpriv' | 'bwrap', messageFile, runs: spec.runs, concurrency: spec.concurrency, filterPath: spec.user.filterPath, maxSeconds: spec.maxSeconds });
  } finally {
    process.umask(oldUmask);
  }
  durations.push(...r.durationsMs);
  if (r.failures > 0) errors.push(`${r.failures} filter chains failed (non-zero exit or spawn error)`);
  timedOut = r.runs < spec.runs;
  const elapsedSeconds = (performance.now() - t0) / 1000;
  const cpu = treeCpuSeconds([process.pid]) - cpu0;
  const machine = machineBusySeconds() - m0;
  const runs = durations.length;
  notes.push(`CPU counts the spawning node process and the reaped launcher chains (${source})`);
  return {
    runs,
    elapsedSeconds,
    latencyMs: summarize(durations),
    cpuSecondsPerRun: runs > 0 ? cpu / runs : null,
    machineCpuSecondsPerRun: runs > 0 ? machine / runs : null,
    errors,
    timedOut,
    source,
    notes,
  };
}

const FORK_EXEC_SRC = fileURLToPath(new URL('../../../bench/baselines/fork-exec.c', import.meta.url));

/** The C loop: its own CPU and its reaped children's (getrusage), its wall time per run; no per-run latency. */
function forkExecLoop(spec: SpawnBaselineSpec, messageFile: string): SpawnBaselineResult {
  const bin = path.join(spec.workDir, 'fork-exec');
  if (!existsSync(bin)) execFileSync('gcc', ['-O2', '-Wall', '-o', bin, FORK_EXEC_SRC]);
  const u = spec.user;
  const m0 = machineBusySeconds();
  const t0 = performance.now();
  const errors: string[] = [];
  let out = '';
  try {
    out = execFileSync(bin, [String(spec.runs), u.filterPath, messageFile, String(u.uid), String(u.gid), String(spec.concurrency)], { encoding: 'utf8', timeout: spec.maxSeconds * 4000 });
  } catch (e) {
    out = String((e as { stdout?: string }).stdout ?? '');
    errors.push(`fork-exec: ${(e as Error).message.split('\n')[0]}`);
  }
  const elapsedSeconds = (performance.now() - t0) / 1000;
  const machine = machineBusySeconds() - m0;
  const m = /runs=(\d+) failures=(\d+) cpu_ms_per_run=([\d.]+) wall_ms_per_run=([\d.]+)/.exec(out);
  const runs = Number(m?.[1] ?? 0);
  if (Number(m?.[2] ?? 0) > 0) errors.push(`${m?.[2]} runs failed (non-zero exit)`);
  return {
    runs,
    elapsedSeconds,
    latencyMs: summarize([]),
    cpuSecondsPerRun: m ? Number(m[3]) / 1000 : null,
    machineCpuSecondsPerRun: runs > 0 ? machine / runs : null,
    errors,
    timedOut: false,
    source: 'bench/baselines/fork-exec.c',
    notes: [`CPU counts the C loop and its reaped filters (getrusage); ${spec.concurrency} in flight; wall ${m?.[4] ?? '?'} ms per run`],
  };
}
