// The per-recipient floor: the plain sandbox-spawn loop — the same launcher
// chain the milter uses (src/filter/sandbox.ts buildLaunch: prlimit + setpriv,
// or prlimit + bwrap + setpriv), spawned one after another with the message
// file on stdin, with no milter, no pool, no spool. When bench/runner.ts
// (the filter-runner bench) exports its loop, that one is used instead, so
// both benches agree on what "the plain spawn loop" is.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { buildLaunch, filterEnvironment } from '../../src/filter/sandbox.js';
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

/** What bench/runner.ts may export; looked up at run time so this file builds without it. */
type ExternalLoop = (spec: { user: UserAccount; sandbox: 'setpriv' | 'bwrap'; messageFile: string; runs: number; concurrency?: number }) => Promise<{ runs?: number; durationsMs?: number[]; elapsedMs?: number; elapsedSeconds?: number }>;

async function externalLoop(): Promise<ExternalLoop | null> {
  try {
    const mod = (await import(new URL('../runner.js', import.meta.url).href)) as Record<string, unknown>;
    for (const name of ['runSpawnLoop', 'spawnLoop', 'plainSpawnLoop']) {
      if (typeof mod[name] === 'function') return mod[name] as ExternalLoop;
    }
  } catch {
    // bench/runner.ts not there (yet)
  }
  return null;
}

function account(u: BenchUser): UserAccount {
  return { name: u.name, uid: u.uid, gid: u.gid, groups: [u.gid], home: u.home, shell: '/bin/sh' };
}

function runOnce(file: string, args: string[], env: Record<string, string>, cwd: string, messageFile: string): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const fd = openSync(messageFile, 'r');
    const child = spawn(file, args, { env, cwd, stdio: [fd, 'ignore', 'ignore'], detached: true });
    closeSync(fd);
    child.on('error', reject);
    child.on('close', (code) => resolve(code));
  });
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
  let timedOut = false;
  let source: string;

  const external = await externalLoop();
  if (external) {
    source = 'bench/runner.ts';
    const r = await external({ user, sandbox: spec.sandbox, messageFile, runs: spec.runs, concurrency: spec.concurrency });
    durations.push(...(r.durationsMs ?? []));
  } else {
    source = 'buildLaunch + child_process.spawn';
    const plan = buildLaunch({
      sandbox: spec.sandbox,
      user,
      filterPath: spec.user.filterPath,
      limits: { cpuSeconds: 20, memoryBytes: 1073741824, processes: 64, fileSizeBytes: 104857600, outputBytes: 65536 },
      env: filterEnvironment(user, { SENDER: 'sender@client.test', RECIPIENT: `${user.name}@example.test`, LOCAL: user.name, EXTENSION: '', DOMAIN: 'example.test', CLIENT_ADDRESS: '127.0.0.1', CLIENT_HOSTNAME: 'localhost', CLIENT_HELO: 'client.test', CLIENT_PROTOCOL: 'ESMTP', QUEUE_ID: 'BENCH', SASL_METHOD: '', SASL_USERNAME: '' }),
      privileged: true,
      umaskShim: false,
    });
    const deadline = t0 + spec.maxSeconds * 1000;
    let issued = 0;
    const worker = async (): Promise<void> => {
      while (issued < spec.runs) {
        if (performance.now() > deadline) {
          timedOut = true;
          return;
        }
        issued++;
        const s = performance.now();
        try {
          const code = await runOnce(plan.file, plan.args, plan.env, plan.cwd, messageFile);
          if (code !== 0 && errors.length < 5) errors.push(`filter chain exited ${code}`);
          durations.push(performance.now() - s);
        } catch (e) {
          if (errors.length < 5) errors.push((e as Error).message);
        }
      }
    };
    await Promise.all(Array.from({ length: spec.concurrency }, () => worker()));
  }
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
