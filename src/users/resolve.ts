// Runs in: the milter process (and `try`).
//
// User lookup: NSS (`getent passwd`, `getent initgroups`, so LDAP/sssd users
// work) or a passwd(5)-format file. Results, negative ones too, are cached for
// a short time: a message to ten recipients must not cost twenty execs.
//
// "No such user" and "the directory failed" are kept apart: getent's exit 2
// is the first, any other failure (getent broken or timed out, the passwd
// file unreadable) is PUM_ERR_USER_LOOKUP, which tempfails the recipient
// (451 4.3.0) instead of treating a real user as not local. Failures are not
// cached: the MTA's retry asks again.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PumError } from '../errors.js';
import { USER_CACHE_TTL_MS, USER_LOOKUP_TIMEOUT_MS } from '../timeouts.js';
import type { UserAccount } from './user.js';

export interface UserResolver {
  /**
   * The account, or null: no such user, root, uid outside minUid..maxUid, or a name we
   * refuse to look up. Rejects with PumError PUM_ERR_USER_LOOKUP when the
   * directory fails.
   */
  lookup(name: string): Promise<UserAccount | null>;
}

/** What one directory lookup came to (user_lookups_total{result}). */
export type LookupResult = 'found' | 'unknown' | 'error';

export interface UserResolverOptions {
  /** '' = NSS through getent; else a passwd(5)-format file (groups from a group(5) file named `group` beside it, if present). */
  passwdFile: string;
  minUid: number;
  /** Accounts above this uid (nobody, 65534) are never local; default: no upper bound. */
  maxUid?: number;
  /** Cache lifetime for positive and negative answers; default 60 s. */
  ttlMs?: number;
  /** For tests: the clock. */
  now?: () => number;
  /** Told the result of every lookup that reached the directory (cache hits are not lookups). */
  onLookup?: (result: LookupResult) => void;
}

export const DEFAULT_USER_TTL_MS = USER_CACHE_TTL_MS;

/**
 * Whether a name may be looked up as a user at all: what we pass to getent
 * or compare with a file, and what recipient classification accepts from an
 * address. Refused: purely numeric names (`getent passwd 1000` would look up
 * a uid), a leading '-' (an option), `.` and `..`, anything with white
 * space, control characters, '/', '|' or ':' (file and program deliveries,
 * `:include:`), and names above 64 bytes. A trailing '$' (Samba machine
 * accounts) is allowed.
 */
export function isPlausibleUserName(name: string): boolean {
  return (
    name.length > 0 && name.length <= 64 && /^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?$/.test(name) && !/^\d+$/.test(name) && name !== '.' && name !== '..'
  );
}

/** One passwd(5) line -> account (groups: the primary group only), or null if malformed. */
export function parsePasswdLine(line: string): UserAccount | null {
  const f = line.split(':');
  if (f.length < 7) return null;
  const [name, , uidS, gidS, , home, shell] = f as [string, string, string, string, string, string, string];
  if (!/^\d+$/.test(uidS) || !/^\d+$/.test(gidS) || name === '' || !home.startsWith('/')) return null;
  const gid = Number(gidS);
  return { name, uid: Number(uidS), gid, groups: [gid], home, shell: shell === '' ? '/bin/sh' : shell };
}

/** group(5) text -> the gids whose member list names `user`. */
export function groupsFromGroupFile(text: string, user: string): number[] {
  const out: number[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || !/^\d+$/.test(f[2] ?? '')) continue;
    const members = (f[3] ?? '').split(',').map((s) => s.trim());
    if (members.includes(user)) out.push(Number(f[2]));
  }
  return out;
}

function uniq(ids: number[]): number[] {
  return [...new Set(ids)];
}

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: USER_LOOKUP_TIMEOUT_MS, maxBuffer: 1 << 20, env: { PATH: '/usr/bin:/bin' } }, (err, stdout) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, stdout: String(stdout) });
    });
  });
}

async function nssLookup(name: string): Promise<UserAccount | null> {
  const pw = await run('getent', ['passwd', name]);
  if (pw.code === 2) return null; // not found
  if (pw.code !== 0) {
    throw new PumError('PUM_ERR_USER_LOOKUP', pw.code === -1 ? `getent passwd ${name} failed to run or timed out` : `getent passwd ${name} failed (exit ${pw.code})`);
  }
  const acct = parsePasswdLine(pw.stdout.split('\n')[0] ?? '');
  if (!acct || acct.name !== name) return null;
  // `getent initgroups NAME` prints "NAME  gid gid ..." (the supplementary
  // groups; the primary one is added here, as initgroups(3) does).
  const ig = await run('getent', ['initgroups', name]);
  const extra = ig.code === 0 ? ig.stdout.trim().split(/\s+/).slice(1).filter((s) => /^\d+$/.test(s)).map(Number) : [];
  return { ...acct, groups: uniq([acct.gid, ...extra]) };
}

interface FileDb {
  mtimeMs: number;
  groupMtimeMs: number;
  users: Map<string, UserAccount>;
}

function mtimeOf(p: string): number {
  try {
    return fs.statSync(p).mtimeMs;
  } catch {
    return -1;
  }
}

export function createUserResolver(opts: UserResolverOptions): UserResolver {
  const ttl = opts.ttlMs ?? DEFAULT_USER_TTL_MS;
  const now = opts.now ?? Date.now;
  const cache = new Map<string, { until: number; value: Promise<UserAccount | null> }>();
  let db: FileDb | null = null;
  const groupFile = opts.passwdFile === '' ? '' : path.join(path.dirname(opts.passwdFile), 'group');

  async function fileLookup(name: string): Promise<UserAccount | null> {
    const m = mtimeOf(opts.passwdFile);
    const gm = mtimeOf(groupFile);
    if (!db || db.mtimeMs !== m || db.groupMtimeMs !== gm) {
      let text: string;
      try {
        text = await fs.promises.readFile(opts.passwdFile, 'utf8');
      } catch (err) {
        throw new PumError('PUM_ERR_USER_LOOKUP', `cannot read users.passwdFile ${opts.passwdFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
      }
      let groupText = '';
      try {
        groupText = await fs.promises.readFile(groupFile, 'utf8');
      } catch {
        groupText = '';
      }
      const users = new Map<string, UserAccount>();
      for (const line of text.split('\n')) {
        const a = parsePasswdLine(line);
        if (a && !users.has(a.name)) {
          users.set(a.name, { ...a, groups: uniq([a.gid, ...groupsFromGroupFile(groupText, a.name)]) });
        }
      }
      db = { mtimeMs: m, groupMtimeMs: gm, users };
    }
    return db.users.get(name) ?? null;
  }

  async function uncached(name: string): Promise<UserAccount | null> {
    let acct: UserAccount | null;
    try {
      acct = opts.passwdFile === '' ? await nssLookup(name) : await fileLookup(name);
    } catch (err) {
      opts.onLookup?.('error');
      throw err instanceof PumError ? err : new PumError('PUM_ERR_USER_LOOKUP', `looking up ${name}: ${(err as Error).message}`, { cause: err });
    }
    opts.onLookup?.(acct ? 'found' : 'unknown');
    if (!acct || acct.uid === 0 || acct.uid < opts.minUid || acct.uid > (opts.maxUid ?? Number.MAX_SAFE_INTEGER)) return null;
    return acct;
  }

  return {
    lookup(name: string): Promise<UserAccount | null> {
      if (!isPlausibleUserName(name)) return Promise.resolve(null);
      const t = now();
      const hit = cache.get(name);
      if (hit && hit.until > t) return hit.value;
      const value = uncached(name);
      cache.set(name, { until: t + ttl, value });
      // A failed lookup (getent broken, file unreadable) is not cached: the caller tempfails and the next try asks again.
      value.catch(() => cache.delete(name));
      if (cache.size > 10_000) {
        for (const [k, v] of cache) if (v.until <= t) cache.delete(k);
      }
      return value;
    },
  };
}
