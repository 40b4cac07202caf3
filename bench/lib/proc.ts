// CPU and memory of a process (and its descendants) read from /proc, so the
// figures are the kernel's own accounting, not the load generator's guess.
import { readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

let clockTicks: number | null = null;
function ticksPerSecond(): number {
  if (clockTicks === null) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

interface StatLine {
  pid: number;
  ppid: number;
  /** utime + stime + cutime + cstime, in clock ticks. */
  ticks: number;
}

function readStat(pid: number): StatLine | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const close = text.lastIndexOf(')');
  const fields = text.slice(close + 2).split(' ');
  // fields[0] is field 3 (state); utime is field 14 => fields[11].
  const num = (i: number): number => Number(fields[i] ?? 0);
  return { pid, ppid: num(1), ticks: num(11) + num(12) + num(13) + num(14) };
}

function allStats(): StatLine[] {
  const out: StatLine[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (s) out.push(s);
  }
  return out;
}

/**
 * CPU seconds used so far by the given processes and all their live
 * descendants, including children they have already reaped (cutime/cstime).
 * Short-lived filter processes show up in their parent's cutime once waited for.
 */
export function treeCpuSeconds(rootPids: readonly number[]): number {
  const stats = allStats();
  const children = new Map<number, StatLine[]>();
  for (const s of stats) {
    const list = children.get(s.ppid) ?? [];
    list.push(s);
    children.set(s.ppid, list);
  }
  const byPid = new Map(stats.map((s) => [s.pid, s]));
  let ticks = 0;
  const seen = new Set<number>();
  const stack = [...rootPids];
  while (stack.length > 0) {
    const pid = stack.pop() as number;
    if (seen.has(pid)) continue;
    seen.add(pid);
    const s = byPid.get(pid);
    if (s) ticks += s.ticks;
    for (const c of children.get(pid) ?? []) stack.push(c.pid);
  }
  return ticks / ticksPerSecond();
}

/** Whole-machine busy CPU seconds (all cores) from /proc/stat. */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice
  const busy = (v[0] ?? 0) + (v[1] ?? 0) + (v[2] ?? 0) + (v[5] ?? 0) + (v[6] ?? 0) + (v[7] ?? 0);
  return busy / ticksPerSecond();
}

/** Resident set size in bytes (VmRSS), or null if the process is gone. */
export function rssBytes(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Peak RSS since start or since the last resetPeakRss (VmHWM), in bytes. */
export function peakRssBytes(pid: number): number | null {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Resets VmHWM to the current RSS (Linux >= 4.0, needs the right to write clear_refs). */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

function exeOf(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return null;
  }
}

/**
 * The process and its direct children running the same program: for
 * per-user-milter, the milter and its filter runner process (both node; the
 * filters are the runner's children and short-lived). Their memory together
 * is the milter's.
 */
export function sameProgramFamily(pid: number): number[] {
  const exe = exeOf(pid);
  if (exe === null) return [pid];
  return [pid, ...allStats().filter((s) => s.ppid === pid && exeOf(s.pid) === exe).map((s) => s.pid)];
}

function sum(values: Array<number | null>): number | null {
  const known = values.filter((v): v is number => v !== null);
  return known.length === 0 ? null : known.reduce((a, b) => a + b, 0);
}

/**
 * Watches one process while a scenario runs: CPU of its tree, RSS at start,
 * and the peak RSS (VmHWM after a reset, cross-checked with 50 ms samples).
 * RSS is summed over the process and its same-program children
 * (sameProgramFamily); the summed VmHWM is an upper bound of the joint peak.
 */
export class ProcessMeter {
  private readonly cpu0: number;
  private readonly machine0: number;
  private readonly rss0: number | null;
  private maxSampled: number;
  private readonly timer: NodeJS.Timeout;
  private readonly hwmReset: boolean;
  private readonly family: number[];

  constructor(
    pid: number,
    private readonly treeRoots: readonly number[] = [pid],
  ) {
    this.family = sameProgramFamily(pid);
    this.hwmReset = this.family.map((p) => resetPeakRss(p)).every(Boolean);
    this.rss0 = sum(this.family.map(rssBytes));
    this.maxSampled = this.rss0 ?? 0;
    this.cpu0 = treeCpuSeconds(treeRoots);
    this.machine0 = machineBusySeconds();
    this.timer = setInterval(() => {
      const r = sum(this.family.map(rssBytes));
      if (r !== null && r > this.maxSampled) this.maxSampled = r;
    }, 50);
    this.timer.unref();
  }

  stop(): { cpuSeconds: number; machineCpuSeconds: number; rssStartBytes: number | null; rssPeakBytes: number | null } {
    clearInterval(this.timer);
    const cpu = treeCpuSeconds(this.treeRoots) - this.cpu0;
    const machine = machineBusySeconds() - this.machine0;
    const hwm = this.hwmReset ? sum(this.family.map(peakRssBytes)) : null;
    const peak = Math.max(hwm ?? 0, this.maxSampled) || null;
    return { cpuSeconds: cpu, machineCpuSeconds: machine, rssStartBytes: this.rss0, rssPeakBytes: peak };
  }
}

/**
 * Waits until the process tree has stopped working: less than `threshold` CPU
 * seconds over each of two consecutive `windowMs` windows (filters left over
 * from a scenario cut short by its time bound must not run into the next one).
 * Returns the seconds waited; gives up after `timeoutMs`.
 */
export async function waitQuiescent(roots: readonly number[], timeoutMs = 30_000, windowMs = 300, threshold = 0.03): Promise<number> {
  const t0 = Date.now();
  let calm = 0;
  let last = treeCpuSeconds(roots);
  while (Date.now() - t0 < timeoutMs) {
    await new Promise((r) => setTimeout(r, windowMs));
    const now = treeCpuSeconds(roots);
    calm = now - last < threshold ? calm + 1 : 0;
    last = now;
    if (calm >= 2) break;
  }
  return (Date.now() - t0) / 1000;
}
