// Shared pieces of the fault-injection tests: the soak rig (bench/soak/),
// a supervisor loop standing in for systemd's Restart=on-failure, and the
// assertion that the sums at the mailboxes are exact.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { execFileSync } from 'node:child_process';
import { processesOfUids, type MessageRecord, type SoakRig, type Sums } from '../../bench/soak/engine.js';
import type { Attempt } from '../../bench/soak/smtp-client.js';
import { sleep } from '../mta/harness/util.js';
import { lacksCommand, lacksRoot } from '../support/require.js';

export function cannotRun(t: TestContext): boolean {
  return lacksRoot(t) || lacksCommand(t, 'postconf', 'postfix') || lacksCommand(t, 'useradd', 'passwd') || lacksCommand(t, 'mount', 'mount');
}

export function quietlyRunnable(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('sh', ['-c', 'command -v postconf && command -v useradd'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Every message answered, nothing lost, duplicated, wrongly rejected or wrongly accepted. */
export function assertExact(s: Sums, what: string): void {
  const view = { lost: s.lost, duplicated: s.duplicated, wronglyRejected: s.wronglyRejected, wronglyAccepted: s.wronglyAccepted, gaveUp: s.gaveUp, strays: s.strays };
  assert.deepEqual(view, { lost: 0, duplicated: 0, wronglyRejected: 0, wronglyAccepted: 0, gaveUp: 0, strays: 0 }, `${what}:\n${s.problems.join('\n')}`);
  assert.equal(s.finished, s.messages, `${what}: not every message was answered`);
}

/** The attempts seen, with when, for checking the replies while a fault lasted. */
export class AttemptLog {
  readonly all: { rec: MessageRecord; a: Attempt; at: number }[] = [];
  add = (rec: MessageRecord, a: Attempt, at: number): void => {
    this.all.push({ rec, a, at });
  };
  deferred(from = 0, to = Infinity): { text: string; stage: string }[] {
    return this.all
      .filter((x) => x.at >= from && x.at <= to && x.a.kind === 'deferred')
      .map((x) => ({ text: x.a.kind === 'deferred' ? x.a.reply.text : '', stage: x.a.kind === 'deferred' ? x.a.at : '' }));
  }
  broken(): number {
    return this.all.filter((x) => x.a.kind === 'broken').length;
  }
}

/**
 * Restarts the milter whenever it exits, as systemd's Restart=on-failure
 * would (deploy/systemd), until stopped. Counts the exits and their status.
 */
export class Supervisor {
  readonly exits: (number | string)[] = [];
  private stopped = false;
  private loop: Promise<void>;

  constructor(private readonly rig: SoakRig, extra: Record<string, string | number | boolean> = {}) {
    this.loop = (async () => {
      while (!this.stopped) {
        const m = this.rig.milter;
        if (!m) {
          await sleep(100);
          continue;
        }
        const how = await m.exited();
        if (this.stopped) break;
        this.exits.push(how);
        await m.stop(); // removes its log directory; the process is gone already
        for (;;) {
          try {
            await this.rig.startMilter(extra);
            break;
          } catch {
            if (this.stopped) return;
            await sleep(200);
          }
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    // wake the loop: it waits on the current milter's exit
    await Promise.race([this.loop, sleep(200)]);
  }
}

/** Waits until the soak users run nothing any more; returns what is left after `ms` (`ps` lines), '' when nothing. */
export async function userProcessesAfter(rig: SoakRig, ms: number): Promise<string> {
  const until = Date.now() + ms;
  let n = await rig.userProcesses();
  while (n > 0 && Date.now() < until) {
    await sleep(200);
    n = await rig.userProcesses();
  }
  if (n === 0) return '';
  const pids = processesOfUids(new Set(rig.uids()));
  try {
    return execFileSync('ps', ['-o', 'pid,ppid,pgid,sid,user:24,etimes,args', '-p', pids.join(',')], { encoding: 'utf8' });
  } catch {
    return `${pids.length} processes (${pids.join(', ')})`;
  }
}

/** The distinct replies of deferred attempts (filter names blurred), with counts. */
export function deferralTexts(log: AttemptLog): string {
  const m = new Map<string, number>();
  for (const d of log.deferred()) {
    const k = `${d.stage}: ${d.text.replace(/soak: u\d/, 'soak: uN').replace(/[0-9A-F]{10,}/g, 'QID')}`;
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return [...m].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n}x ${k}`).join(' | ');
}
