// Runs in: the milter process (`serve` start-up, `check-config`).
//
// The privilege split (docs/sandbox.md): only the native launcher may switch
// users. Started as root, `serve` starts the launcher and then becomes
// `milter.user` for good, with no capability left in any thread; started as
// anyone else it must hold no capability at all (it could not drop them, and
// the Node side must hold none). Pure parts take /proc text as parameters.
import fs from 'node:fs';
import type { LauncherReady } from '../launcher/start.js';

export interface Account {
  name: string;
  uid: number;
  gid: number;
}

/** CapPrm, CapEff, CapAmb of one /proc/PID/status text. */
export function capabilitySets(status: string): { CapPrm: bigint; CapEff: bigint; CapAmb: bigint } {
  const read = (name: string): bigint => {
    const hex = new RegExp(`^${name}:\\s*([0-9a-f]+)$`, 'm').exec(status)?.[1];
    return hex === undefined ? 0n : BigInt(`0x${hex}`);
  };
  return { CapPrm: read('CapPrm'), CapEff: read('CapEff'), CapAmb: read('CapAmb') };
}

/** Real, effective, saved and file-system ids of one status text. */
function ids(status: string, name: 'Uid' | 'Gid'): number[] {
  return (new RegExp(`^${name}:\\s*(.+)$`, 'm').exec(status)?.[1] ?? '').trim().split(/\s+/).map(Number);
}

/**
 * Why this status text is not an unprivileged process of `account` (one
 * line), or null. Checked for every thread: a thread that kept root would
 * be root.
 */
export function notDropped(status: string, account: Account): string | null {
  const caps = capabilitySets(status);
  for (const [set, v] of Object.entries(caps)) if (v !== 0n) return `${set} is ${v.toString(16)}, not 0`;
  if (ids(status, 'Uid').some((u) => u !== account.uid)) return `uids are ${ids(status, 'Uid').join(' ')}, not ${account.uid}`;
  if (ids(status, 'Gid').some((g) => g !== account.gid)) return `gids are ${ids(status, 'Gid').join(' ')}, not ${account.gid}`;
  const groups = (/^Groups:\s*(.*)$/m.exec(status)?.[1] ?? '').trim();
  if (groups !== '' && groups !== String(account.gid)) return `supplementary groups are ${groups}, not ${account.gid}`;
  return null;
}

/** Started as a plain user: the capabilities we hold, as a one-line problem, or null. */
export function heldCapabilities(status: string): string | null {
  const caps = capabilitySets(status);
  const held = Object.entries(caps).filter(([, v]) => v !== 0n);
  if (held.length === 0) return null;
  return `started as a non-root user with capabilities (${held.map(([k, v]) => `${k}=${v.toString(16)}`).join(', ')}): ` +
    'it cannot drop them, and no Node process may hold any; start it as root (it drops to milter.user) or without capabilities';
}

/** Becomes `account` for good: groups, gid, uid; then checks every thread. Throws with one line when anything is left. */
export function dropPrivileges(account: Account): void {
  if (!process.setgroups || !process.setgid || !process.setuid) throw new Error('cannot drop privileges on this platform');
  process.setgroups([account.gid]);
  process.setgid(account.gid);
  process.setuid(account.uid);
  for (const tid of fs.readdirSync('/proc/self/task')) {
    let status: string;
    try {
      status = fs.readFileSync(`/proc/self/task/${tid}/status`, 'utf8');
    } catch {
      continue; // the thread ended meanwhile
    }
    const why = notDropped(status, account);
    if (why) throw new Error(`after dropping privileges to ${account.name}, thread ${tid} still differs: ${why}`);
  }
}

/** Only root can switch users (through the launcher); read once. */
export function ownPrivileges(): { switchUsers: boolean; root: boolean } {
  const root = process.geteuid?.() === 0;
  return { switchUsers: root, root };
}

/** Configuration the privileges forbid (also checked by check-config). */
export function privilegeProblems(config: { filter: { sandbox: string } }, euid: number): string[] {
  if (euid === 0 && config.filter.sandbox === 'none') {
    return ['filter.sandbox=none is refused when the milter can switch users (started as root): the launcher runs every filter sandboxed as its user; use setpriv or bwrap'];
  }
  return [];
}

/** The start-up lines that say which mode is in force (logged by serve, printed by try). */
export function launcherReport(ready: LauncherReady, ownUid: number): { info: string[]; warn: string[] } {
  const info: string[] = [];
  const warn: string[] = [];
  if (ready.privileged) info.push('privileged: the launcher runs each filter as its user; no Node process holds a capability');
  else warn.push(`unprivileged: the launcher cannot switch users, so only programs owned by uid ${ownUid} run; every other user's filter is unsafe`);
  if (ready.procHidden) info.push('/proc hides other users\' processes from filters');
  else warn.push('/proc does not hide other users\' processes: a filter can see which other users\' filters run (mount /proc with hidepid=invisible, or systemd ProtectProc=invisible)');
  info.push(ready.cgroup ? `each run gets a cgroup under ${ready.cgroup}` : 'no cgroup per run (filter.cgroup=none, or no delegated cgroup v2 subtree): runs are contained by process group and subreaper');
  return { info, warn };
}

/** The passwd entry of `name` (NSS, through getent), or null. */
export async function lookupAccount(name: string): Promise<Account | null> {
  const { execa } = await import('execa');
  const r = await execa('getent', ['passwd', name], { reject: false, timeout: 10_000 });
  if (r.exitCode !== 0) return null;
  const f = String(r.stdout).trim().split(':');
  const uid = Number(f[2]);
  const gid = Number(f[3]);
  return Number.isInteger(uid) && Number.isInteger(gid) ? { name, uid, gid } : null;
}
