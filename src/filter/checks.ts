// StrictModes-style safety checks before a filter runs (docs/reference.md §4), in the
// spirit of OpenSSH's secure_filename() and procmail: a filter that someone
// other than its user (or root) could have changed is not run.
import fs from 'node:fs';
import path from 'node:path';
import type { UserAccount } from '../users/user.js';

export type CheckResult =
  | { ok: true; realPath: string }
  /** `missing`: there is no filter at all (outcome `nofilter`); otherwise the outcome is `unsafe`. */
  | { ok: false; reason: string; missing: boolean };

const S_IWGRP = 0o020;
const S_IWOTH = 0o002;

function fmtMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/** The directories from / down to (not including) `p`: '/', '/home', '/home/u'. */
export function ancestors(p: string): string[] {
  const out: string[] = [];
  let dir = path.dirname(p);
  for (;;) {
    out.unshift(dir);
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return out;
}

function permBit(st: fs.Stats, user: UserAccount, ownerBit: number): number {
  if (st.uid === user.uid) return ownerBit;
  if (st.gid === user.gid || user.groups.includes(st.gid)) return ownerBit >> 3;
  return ownerBit >> 6;
}

/**
 * Is `st` a directory that only root and `user` can write to, and that the
 * user can pass through? (The checks run as root: without the last rule a
 * symlink could lead the sandbox to a file the user cannot reach, and bwrap
 * would bind it in.) Returns the reason it is not, or null.
 */
export function unsafeDirReason(dir: string, st: fs.Stats, user: UserAccount): string | null {
  if (st.uid !== 0 && st.uid !== user.uid) return `directory ${dir} is owned by uid ${st.uid}, not by ${user.name} or root`;
  if (st.mode & S_IWOTH) return `directory ${dir} is world-writable (mode ${fmtMode(st.mode)})`;
  if (st.mode & S_IWGRP) return `directory ${dir} is group-writable (mode ${fmtMode(st.mode)})`;
  if (!(st.mode & permBit(st, user, 0o100))) return `directory ${dir} is not searchable by ${user.name} (mode ${fmtMode(st.mode)})`;
  return null;
}

/** The file itself: regular, executable by the user, owned by the user or root, not group/world-writable. */
export function unsafeFileReason(file: string, st: fs.Stats, user: UserAccount): string | null {
  if (!st.isFile()) return `${file} is not a regular file`;
  if (st.uid !== 0 && st.uid !== user.uid) return `${file} is owned by uid ${st.uid}, not by ${user.name} or root`;
  if (st.mode & S_IWOTH) return `${file} is world-writable (mode ${fmtMode(st.mode)})`;
  if (st.mode & S_IWGRP) return `${file} is group-writable (mode ${fmtMode(st.mode)})`;
  if (!(st.mode & permBit(st, user, 0o100))) return `${file} is not executable by ${user.name} (mode ${fmtMode(st.mode)})`;
  return null;
}

function checkDirs(p: string, user: UserAccount): string | null {
  for (const dir of ancestors(p)) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(dir);
    } catch (err) {
      return `cannot stat ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
    }
    // A symlinked directory cannot itself be changed, only replaced through
    // its parent (checked here); where it leads is checked on the resolved path.
    if (st.isSymbolicLink()) continue;
    const why = unsafeDirReason(dir, st, user);
    if (why) return why;
  }
  return null;
}

/**
 * Checks the filter at `filterPath` (absolute) for `user`: every directory on
 * the way from / on both the path as configured and the path after resolving
 * symlinks, then the file itself. The stat calls are synchronous on purpose:
 * this runs on a worker thread, where a dozen cached stat(2)s take
 * microseconds, while a dozen thread-pool round trips cost milliseconds on a
 * busy machine.
 */
export async function checkFilter(user: UserAccount, filterPath: string): Promise<CheckResult> {
  if (!path.isAbsolute(filterPath)) return { ok: false, reason: `filter path ${filterPath} is not absolute`, missing: false };
  try {
    fs.lstatSync(filterPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { ok: false, reason: `no filter at ${filterPath}`, missing: true };
    return { ok: false, reason: `cannot stat ${filterPath}: ${code ?? String(err)}`, missing: false };
  }
  let realPath: string;
  try {
    realPath = fs.realpathSync.native(filterPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // A dangling symlink is "no filter", like a missing file.
    if (code === 'ENOENT') return { ok: false, reason: `${filterPath} is a symlink to nothing`, missing: true };
    return { ok: false, reason: `cannot resolve ${filterPath}: ${code ?? String(err)}`, missing: false };
  }
  const linkDirs = checkDirs(filterPath, user);
  if (linkDirs) return { ok: false, reason: linkDirs, missing: false };
  if (realPath !== filterPath) {
    const realDirs = checkDirs(realPath, user);
    if (realDirs) return { ok: false, reason: `${realDirs} (resolving ${filterPath})`, missing: false };
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(realPath);
  } catch (err) {
    return { ok: false, reason: `cannot stat ${realPath}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, missing: false };
  }
  const why = unsafeFileReason(realPath, st, user);
  if (why) return { ok: false, reason: realPath === filterPath ? why : `${why} (link ${filterPath})`, missing: false };
  return { ok: true, realPath };
}
