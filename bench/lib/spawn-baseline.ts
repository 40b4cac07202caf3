// The per-recipient floor: the plain sandbox-spawn loop — the same launcher
// chain the milter uses (src/filter/sandbox.ts buildLaunch: prlimit + setpriv,
// or prlimit + bwrap + setpriv), spawned one after another with the message
// file on stdin, with no milter, no pool, no spool. The loop itself is
// runSpawnLoop of bench/runner.ts (the filter-runner bench), so both benches
// agree on what "the plain spawn loop" is.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runSpawnLoop } from '../runner.js';
import type { UserAccount } from '../../src/users/user.js';
import { makeBody } from './milter-load.js';
import { machineBusySeconds, treeCpuSeconds } from './proc.js';
import { summarize, type LatencySummary } from './stats.js';
import type { BenchUser } from './users.js';

export interface SpawnBaselineSpec {
  user: BenchUser;
  sandbox: 'setpriv' | 'bwrap';
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
    r = await runSpawnLoop({ user, sandbox: spec.sandbox, messageFile, runs: spec.runs, concurrency: spec.concurrency, filterPath: spec.user.filterPath, maxSeconds: spec.maxSeconds });
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
