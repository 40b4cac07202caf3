// Runs in: the bench only.
//
// The launcher chain per-user-milter used before the native launcher
// (prlimit -> setpriv, or prlimit -> bwrap -> env -> setpriv, spawned from
// Node), kept here as a reference point for bench/runner.ts: the "plain
// spawn loop" the earlier recorded runs compare against.
import fs from 'node:fs';
import path from 'node:path';
import type { EnvelopeFacts, FilterSettings } from '../../src/filter/job.js';
import type { UserAccount } from '../../src/users/user.js';

export type SandboxKind = FilterSettings['sandbox'];
export type Limits = FilterSettings['limits'];

/** What to spawn: argv, exact environment, working directory (and, only for `none` as root, node's uid/gid switch). */
export interface LaunchPlan {
  file: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  uid?: number;
  gid?: number;
}

export interface Tools {
  sh: string;
  env: string;
  prlimit: string;
  setpriv: string;
  bwrap: string;
}

/** How the system directories look, for bwrap's read-only binds: a real directory is bound, a symlink (usrmerge /bin -> usr/bin) recreated. */
export type SystemLayout = Array<{ path: string; symlinkTo: string | null }>;

export interface LaunchInput {
  sandbox: SandboxKind;
  user: UserAccount;
  /** The checked, resolved filter path. */
  filterPath: string;
  limits: Limits;
  /** The filter's whole environment (see filterEnvironment). */
  env: Record<string, string>;
  /** The milter can switch users (root, or ambient CAP_SETUID/CAP_SETGID: src/filter/privileges.ts). */
  privileged: boolean;
  /** The milter runs as root: it can also drop the bounding set (CAP_SETPCAP). Default: same as privileged. */
  root?: boolean;
  /** The process umask is not 077 (it cannot be changed from a worker thread): prepend `sh -c 'umask 077 && unset PWD && exec "$@"'`. */
  umaskShim: boolean;
  /** When unprivileged: the current hard limits, so that prlimit does not fail asking for more. */
  hardLimits?: Partial<Record<'cpu' | 'as' | 'nproc' | 'fsize', number>>;
  layout?: SystemLayout;
  tools?: Tools;
}

export const FILTER_PATH = '/usr/local/bin:/usr/bin:/bin';

/** The environment variables a filter gets, in this order, and nothing else (docs/reference.md §4). */
export const FILTER_ENV_NAMES = [
  'HOME', 'USER', 'LOGNAME', 'SHELL', 'PATH',
  'SENDER', 'RECIPIENT', 'LOCAL', 'EXTENSION', 'DOMAIN',
  'CLIENT_ADDRESS', 'CLIENT_HOSTNAME', 'CLIENT_HELO', 'CLIENT_PROTOCOL',
  'QUEUE_ID', 'SASL_METHOD', 'SASL_USERNAME',
] as const;

function envValue(v: unknown): string {
  // A NUL cannot be passed in an environment; other bytes are the MTA's business.
  return String(v ?? '').replace(/\0/g, '');
}

export function filterEnvironment(user: UserAccount, envelope: EnvelopeFacts): Record<string, string> {
  return {
    HOME: user.home,
    USER: user.name,
    LOGNAME: user.name,
    SHELL: user.shell || '/bin/sh',
    PATH: FILTER_PATH,
    SENDER: envValue(envelope.SENDER),
    RECIPIENT: envValue(envelope.RECIPIENT),
    LOCAL: envValue(envelope.LOCAL),
    EXTENSION: envValue(envelope.EXTENSION),
    DOMAIN: envValue(envelope.DOMAIN),
    CLIENT_ADDRESS: envValue(envelope.CLIENT_ADDRESS),
    CLIENT_HOSTNAME: envValue(envelope.CLIENT_HOSTNAME),
    CLIENT_HELO: envValue(envelope.CLIENT_HELO),
    CLIENT_PROTOCOL: envValue(envelope.CLIENT_PROTOCOL),
    QUEUE_ID: envValue(envelope.QUEUE_ID),
    SASL_METHOD: envValue(envelope.SASL_METHOD),
    SASL_USERNAME: envValue(envelope.SASL_USERNAME),
  };
}

const TOOL_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin'];

/** Absolute path of a tool (the filter environment's PATH must not decide which launcher runs). */
export function findTool(name: string): string {
  for (const dir of TOOL_DIRS) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return name;
}

let toolsCache: Tools | null = null;
export function defaultTools(): Tools {
  toolsCache ??= { sh: findTool('sh'), env: findTool('env'), prlimit: findTool('prlimit'), setpriv: findTool('setpriv'), bwrap: findTool('bwrap') };
  return toolsCache;
}

/** System directories bound read-only into a bwrap sandbox. /home and the rest stay out: only the user's own home is bound. */
export const SYSTEM_DIRS = ['/usr', '/etc', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/opt', '/var'];

let layoutCache: SystemLayout | null = null;
export function systemLayout(): SystemLayout {
  if (layoutCache) return layoutCache;
  const out: SystemLayout = [];
  for (const p of SYSTEM_DIRS) {
    try {
      const st = fs.lstatSync(p);
      if (st.isSymbolicLink()) out.push({ path: p, symlinkTo: fs.readlinkSync(p) });
      else if (st.isDirectory()) out.push({ path: p, symlinkTo: null });
    } catch {
      // absent on this system
    }
  }
  layoutCache = out;
  return out;
}

function clamp(want: number, hard: number | undefined): number {
  return hard === undefined ? want : Math.min(want, hard);
}

/** prlimit options: soft = hard, so the filter cannot raise them; no core files in the user's home. */
export function prlimitArgs(limits: Limits, hard?: LaunchInput['hardLimits']): string[] {
  return [
    `--cpu=${clamp(limits.cpuSeconds, hard?.cpu)}`,
    `--as=${clamp(limits.memoryBytes, hard?.as)}`,
    `--nproc=${clamp(limits.processes, hard?.nproc)}`,
    `--fsize=${clamp(limits.fileSizeBytes, hard?.fsize)}`,
    '--core=0',
  ];
}

/**
 * An id for setpriv that can only be read as a number. setpriv looks every
 * --reuid/--regid/--groups value up as a *name* first (getpwnam, getgrnam)
 * and parses it as a number only when no such name exists: `--reuid=1001`
 * would switch to the account *named* "1001" (numeric logins exist, e.g.
 * employee numbers in LDAP), whatever its uid. strtol reads "+1001" as 1001,
 * and no valid user or group name starts with "+".
 */
export function numericId(id: number): string {
  return `+${id}`;
}

/**
 * setpriv options. Privileged: real+effective uid and gid, the supplementary
 * groups given numerically (works for passwd-file users that NSS does not
 * know, and inside bwrap without NSS), no_new_privs, no inheritable or
 * bounding capabilities, SIGKILL when the parent dies. Unprivileged: the same
 * minus the user switch and the bounding set (which needs CAP_SETPCAP).
 */
export function setprivArgs(user: UserAccount, privileged: boolean, dropBoundingSet = privileged): string[] {
  const common = ['--no-new-privs', '--inh-caps=-all', '--pdeathsig=KILL'];
  if (!privileged) return common;
  const groups = [...new Set(user.groups)];
  return [
    `--reuid=${numericId(user.uid)}`,
    `--regid=${numericId(user.gid)}`,
    ...(groups.length > 0 ? [`--groups=${groups.map(numericId).join(',')}`] : ['--clear-groups']),
    ...common,
    ...(dropBoundingSet ? ['--bounding-set=-all'] : []),
  ];
}

function under(p: string, dir: string): boolean {
  const rel = path.relative(dir, p);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/**
 * bwrap options: own pid/ipc/uts namespaces (a filter's processes all die with
 * the namespace), killed with its parent, a new session (no TIOCSTI into a
 * terminal), the system read-only, a private /tmp, only the user's home
 * writable (other homes are not there at all). Network stays shared: spamc
 * and DNS blocklists need it. As root, bwrap drops all capabilities unless
 * told otherwise: setpriv inside needs SETUID/SETGID/SETPCAP to switch.
 */
export function bwrapArgs(user: UserAccount, filterPath: string, privileged: boolean, layout: SystemLayout): string[] {
  const a = ['--die-with-parent', '--new-session', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try'];
  for (const d of layout) {
    if (d.symlinkTo !== null) a.push('--symlink', d.symlinkTo, d.path);
    else a.push('--ro-bind', d.path, d.path);
  }
  a.push('--ro-bind-try', '/run/systemd/resolve', '/run/systemd/resolve');
  a.push('--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp');
  // bwrap would create missing parents of a mount point with mode 0700 (root
  // only): the user could not reach its own home. Create them 0755 first.
  const made = new Set<string>(['/']);
  const parents = (p: string): void => {
    const chain: string[] = [];
    for (let d = path.dirname(p); !made.has(d) && !layout.some((l) => l.path === d || under(d, l.path)); d = path.dirname(d)) chain.unshift(d);
    for (const d of chain) {
      a.push('--dir', d);
      made.add(d);
    }
  };
  parents(user.home);
  a.push('--bind', user.home, user.home);
  if (!under(filterPath, user.home) && !layout.some((d) => under(filterPath, d.path))) {
    parents(filterPath);
    a.push('--ro-bind', filterPath, filterPath);
  }
  a.push('--chdir', user.home);
  if (privileged) a.push('--cap-add', 'CAP_SETUID', '--cap-add', 'CAP_SETGID', '--cap-add', 'CAP_SETPCAP');
  return a;
}

export function buildLaunch(input: LaunchInput): LaunchPlan {
  const tools = input.tools ?? defaultTools();
  const { user, filterPath, env } = input;
  let argv: string[];
  let uid: number | undefined;
  let gid: number | undefined;
  switch (input.sandbox) {
    case 'none':
      argv = [filterPath];
      if (input.privileged) {
        // Never as root: node switches uid/gid itself (primary group only).
        uid = user.uid;
        gid = user.gid;
      }
      break;
    case 'setpriv':
      argv = [tools.prlimit, ...prlimitArgs(input.limits, input.hardLimits), '--', tools.setpriv, ...setprivArgs(user, input.privileged, input.root ?? input.privileged), '--', filterPath];
      break;
    case 'bwrap':
      argv = [
        tools.prlimit, ...prlimitArgs(input.limits, input.hardLimits), '--',
        tools.bwrap, ...bwrapArgs(user, filterPath, input.privileged, input.layout ?? systemLayout()), '--',
        // bwrap always exports PWD (even with --unsetenv): one more exec to keep the environment exact.
        tools.env, '-u', 'PWD', '--',
        tools.setpriv, ...setprivArgs(user, input.privileged, input.root ?? input.privileged), '--', filterPath,
      ];
      break;
    default: {
      const never: never = input.sandbox;
      throw new Error(`unknown sandbox ${String(never)}`);
    }
  }
  if (input.umaskShim) argv = [tools.sh, '-c', 'umask 077 && unset PWD && exec "$@"', 'sh', ...argv];
  const [file, ...args] = argv as [string, ...string[]];
  const plan: LaunchPlan = { file, args, env, cwd: user.home };
  if (uid !== undefined) plan.uid = uid;
  if (gid !== undefined) plan.gid = gid;
  return plan;
}

/** Warnings the application should log once at start (and `try` prints). */
export function sandboxWarnings(sandbox: SandboxKind, privileged: boolean, ownUid: number = process.getuid?.() ?? -1): string[] {
  const w: string[] = [];
  if (!privileged) {
    w.push(`per-user-milter cannot switch users (not root, no ambient CAP_SETUID/CAP_SETGID): every filter runs as uid ${ownUid} (the milter's own user), not as its user`);
  }
  if (sandbox === 'none') {
    w.push('filter.sandbox is "none": filters run without rlimits, no_new_privs or supplementary groups (tests and unprivileged runs only)');
  }
  return w;
}

export function filterPathFor(user: UserAccount, pattern: string): string {
  let p = pattern.replace(/%u/g, user.name);
  if (p === '~') p = user.home;
  else if (p.startsWith('~/')) p = path.join(user.home, p.slice(2));
  return path.normalize(p);
}
