// Runs in: the milter process.
//
// Memory and CPU of one of our processes, read from /proc at scrape time:
// the runner (and the launcher) are children of the milter, and prom-client's
// process metrics only describe the process that serves /metrics.

import fs from 'node:fs';

export interface ProcessUsage {
  residentBytes: number;
  cpuSeconds: number;
}

/**
 * USER_HZ, the unit of utime and stime in /proc/PID/stat: 100 on every Linux
 * architecture Node.js runs on (the kernel fixes it for user space).
 */
const CLOCK_TICKS = 100;

/** From the text of /proc/PID/status and /proc/PID/stat; null if either is malformed. */
export function parseProcessUsage(status: string, stat: string): ProcessUsage | null {
  const rss = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)?.[1];
  // The command name (field 2) is in parentheses and may itself contain ") ": fields start after the last one.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (rss === undefined || !Number.isFinite(utime) || !Number.isFinite(stime) || rest.length < 13) return null;
  return { residentBytes: Number(rss) * 1024, cpuSeconds: (utime + stime) / CLOCK_TICKS };
}

/** The process's usage now, or null when it is gone (or not readable). */
export function readProcessUsage(pid: number): ProcessUsage | null {
  try {
    return parseProcessUsage(fs.readFileSync(`/proc/${pid}/status`, 'utf8'), fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}
