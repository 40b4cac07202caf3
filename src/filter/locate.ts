// Where a user's filter lives (config `filter.path`): `~` is the user's home,
// `%u` the user name.
import fs from 'node:fs';
import path from 'node:path';
import type { UserAccount } from '../users/user.js';

export function filterPathFor(user: UserAccount, pattern: string): string {
  let p = pattern.replace(/%u/g, user.name);
  if (p === '~') p = user.home;
  else if (p.startsWith('~/')) p = path.join(user.home, p.slice(2));
  return path.normalize(p);
}

/**
 * Cheap check used by the main thread to skip spooling when nobody has a
 * filter. True when anything exists at the path (even a dangling or unsafe
 * link): the runner then reports `unsafe` or `nofilter` with a reason.
 */
export async function hasFilter(user: UserAccount, pattern: string): Promise<boolean> {
  try {
    await fs.promises.lstat(filterPathFor(user, pattern));
    return true;
  } catch {
    return false;
  }
}
