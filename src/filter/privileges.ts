// What the milter's own process may do on a filter's behalf. Root can do
// everything. A dedicated user with capabilities (deploy/systemd) can switch
// users when CAP_SETUID and CAP_SETGID are in its *ambient* set: only ambient
// capabilities survive the exec of prlimit and setpriv, which do the switch.
// It cannot raise rlimits above its own hard limits (no CAP_SYS_RESOURCE) nor
// drop the bounding set (no CAP_SETPCAP); neither is needed for a non-root
// filter, whose capabilities are all gone once setpriv clears the inheritable
// (and with it the ambient) set under no_new_privs.
import fs from 'node:fs';

const CAP_SETGID = 6n;
const CAP_SETUID = 7n;

export interface Privileges {
  /** The filter can run as its user (root, or ambient CAP_SETUID + CAP_SETGID). */
  switchUsers: boolean;
  /** euid 0: may raise rlimits and drop the capability bounding set. */
  root: boolean;
}

function capSet(status: string, name: string): bigint {
  const hex = new RegExp(`^${name}:\\s*([0-9a-f]+)$`, 'm').exec(status)?.[1];
  return hex === undefined ? 0n : BigInt(`0x${hex}`);
}

/** From /proc/self/status text (a parameter for tests). */
export function privilegesFrom(euid: number, status: string): Privileges {
  if (euid === 0) return { switchUsers: true, root: true };
  const ambient = capSet(status, 'CapAmb');
  const has = (bit: bigint): boolean => ((ambient >> bit) & 1n) === 1n;
  return { switchUsers: has(CAP_SETUID) && has(CAP_SETGID), root: false };
}

let cached: Privileges | null = null;

/** The current process's privileges; read once (capabilities do not change while we run). */
export function ownPrivileges(): Privileges {
  if (cached) return cached;
  let status = '';
  try {
    status = fs.readFileSync('/proc/self/status', 'utf8');
  } catch {
    // No /proc: only root counts as privileged.
  }
  cached = privilegesFrom(process.geteuid?.() ?? -1, status);
  return cached;
}
