// Test users for the filter scenarios: real accounts (useradd) named
// pumbench-u1 ... pumbench-uN, each with a ~/.user-milter that the scenario
// rewrites (trivial or slow). Removed at the end (userdel -r).
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, writeFileSync } from 'node:fs';

export const USER_PREFIX = 'pumbench-u';

export interface BenchUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  filterPath: string;
}

/** The filter programs the scenarios use. */
export const FILTERS = {
  /** Reads the message and accepts: the cost is the spawn and the sandbox. */
  trivial: '#!/bin/sh\ncat >/dev/null; exit 0\n',
  /** Takes 200 ms of wall time but no CPU: the pool's concurrency is what matters. */
  slow: '#!/bin/sh\ncat >/dev/null; sleep 0.2; exit 0\n',
} as const;
export type FilterKind = keyof typeof FILTERS;

function lookup(name: string): BenchUser | null {
  const r = spawnSync('getent', ['passwd', name], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  const f = r.stdout.trim().split(':');
  const home = f[5] ?? `/home/${name}`;
  return { name, uid: Number(f[2]), gid: Number(f[3]), home, filterPath: `${home}/.user-milter` };
}

/** Creates (or reuses) pumbench-u1..count. */
export function createUsers(count: number): BenchUser[] {
  const users: BenchUser[] = [];
  for (let i = 1; i <= count; i++) {
    const name = `${USER_PREFIX}${i}`;
    let u = lookup(name);
    if (!u) {
      execFileSync('useradd', ['-m', '-s', '/bin/sh', '-K', 'UID_MIN=20000', '-K', 'UID_MAX=29999', name], { stdio: 'pipe' });
      u = lookup(name);
      if (!u) throw new Error(`useradd ${name} did not create the user`);
    }
    // Filters must sit in a directory writable by nobody but root and the user (docs/reference.md §4).
    chmodSync(u.home, 0o755);
    users.push(u);
  }
  return users;
}

/** Installs `kind` as every given user's ~/.user-milter (owned by the user, mode 0755), or removes it. */
export function setFilters(users: readonly BenchUser[], kind: FilterKind | null): void {
  for (const u of users) {
    if (kind === null) {
      if (existsSync(u.filterPath)) writeFileSync(u.filterPath, '');
      spawnSync('rm', ['-f', u.filterPath]);
      continue;
    }
    writeFileSync(u.filterPath, FILTERS[kind], { mode: 0o755 });
    chmodSync(u.filterPath, 0o755);
    chownSync(u.filterPath, u.uid, u.gid);
  }
}

/** Removes every pumbench-u* account (also ones an interrupted earlier run left behind). */
export function removeUsers(): string[] {
  const all = spawnSync('getent', ['passwd'], { encoding: 'utf8' }).stdout ?? '';
  const removed: string[] = [];
  for (const line of all.split('\n')) {
    const name = line.split(':')[0] ?? '';
    if (!name.startsWith(USER_PREFIX)) continue;
    const r = spawnSync('userdel', ['-r', name], { encoding: 'utf8' });
    if (r.status === 0 || r.status === 12 /* home not removed: still gone from passwd */) removed.push(name);
    else process.stderr.write(`bench: userdel -r ${name} failed: ${r.stderr}`);
  }
  return removed;
}

/**
 * smtp-source's -r N sends to the -t address, then "2<address>", "3<address>", ...
 * The local parts recipient k of a message gets, for a given first user.
 */
export function smtpSourceLocalParts(first: string, count: number): string[] {
  const out = [first];
  for (let k = 2; k <= count; k++) out.push(`${k}${first}`);
  return out;
}
