// Runs in: the milter process (`serve` start-up, before anything touches the network).
//
// The privilege split (docs/sandbox.md, docs/design.md §6): started as root,
// serve makes the spool directory and hands it to milter.user, starts the
// launcher (which keeps root: it alone switches users), and then drops to
// milter.user for good, checked in every thread. Started as anyone else, it
// must hold no capability, and the launcher runs only programs owned by our
// own uid. Either way the runner process is started only afterwards, so it
// inherits nothing.
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/schema.js';
import { dropPrivileges, heldCapabilities, lookupAccount, privilegeProblems, type Account } from '../filter/privileges.js';
import { findBwrap, startLauncher, type LauncherSettings, type RunningLauncher } from '../launcher/start.js';

/** Start-up refused: one line each, for the log; serve exits 1. */
export class StartRefused extends Error {
  constructor(readonly lines: string[]) {
    super(lines.join('; '));
    this.name = 'StartRefused';
  }
}

export interface PrivilegeSplit {
  /** Started as root (and now running as `account`). */
  privileged: boolean;
  account: Account | null;
  settings: LauncherSettings;
  launcher: RunningLauncher;
}

/** The launcher's socket lives in the spool directory (0700, the milter's account). */
export function launcherSocket(spoolDir: string): string {
  return path.join(spoolDir, 'launcher.sock');
}

/**
 * The launcher's whole policy, from the configuration: fixed for its life
 * (these keys take effect at a restart). filter.sandbox=none (allowed only
 * unprivileged, privilegeProblems) runs as setpriv: the launcher has no
 * weaker mode.
 */
export function launcherSettings(config: Config, spoolDir: string, clientUid: number, clientGid: number): LauncherSettings {
  const l = config.filter.limits;
  return {
    socket: launcherSocket(spoolDir),
    spool: spoolDir,
    clientUid,
    clientGid,
    minUid: config.users.minUid,
    maxUid: config.users.maxUid,
    filterPath: config.filter.path,
    rcptPath: config.filter.rcptPath,
    defaultPath: config.filter.default,
    cgroup: config.filter.cgroup,
    bwrap: config.filter.sandbox === 'bwrap' ? findBwrap() : '',
    sandbox: config.filter.sandbox === 'bwrap' ? 'bwrap' : 'setpriv',
    passwdFile: config.users.passwdFile,
    timeoutMs: config.filter.timeout,
    rcptTimeoutMs: config.filter.rcptTimeout,
    cpu: l.cpuSeconds,
    as: l.memoryBytes,
    nproc: l.processes,
    fsize: l.fileSizeBytes,
    output: l.outputBytes,
    // The whole run's cgroup gets what one process may address, and as many tasks as processes.
    memory: l.memoryBytes,
    pids: l.processes,
  };
}

/** As root: the spool directory exists, is a real directory, 0700, and belongs to `account`. */
function handOverSpool(dir: string, account: Account): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) throw new StartRefused([`spool.dir ${dir} is not a directory`]);
  // Mode first, while root owns it: without CAP_FOWNER (the unit's set) root
  // cannot change the mode of a directory it gave away.
  if ((st.mode & 0o7777) !== 0o700) {
    if (st.uid !== 0) throw new StartRefused([`spool.dir ${dir} has mode ${(st.mode & 0o7777).toString(8)}, not 0700`]);
    fs.chmodSync(dir, 0o700);
  }
  if (st.uid !== account.uid || st.gid !== account.gid) fs.chownSync(dir, account.uid, account.gid);
}

export async function startPrivilegeSplit(config: Config, spoolDir: string, onLauncherStderr: (line: string) => void): Promise<PrivilegeSplit> {
  const euid = process.geteuid?.() ?? -1;
  const problems = privilegeProblems(config, euid);
  if (problems.length > 0) throw new StartRefused(problems);
  if (euid !== 0) {
    const held = heldCapabilities(fs.readFileSync('/proc/self/status', 'utf8'));
    if (held) throw new StartRefused([held]);
    fs.mkdirSync(spoolDir, { recursive: true, mode: 0o700 });
    const settings = launcherSettings(config, spoolDir, process.getuid?.() ?? euid, process.getgid?.() ?? 0);
    const launcher = await startLauncher(settings, { onStderr: onLauncherStderr });
    return { privileged: false, account: null, settings, launcher };
  }
  const account = await lookupAccount(config.milter.user);
  if (!account) {
    throw new StartRefused([
      `milter.user: no account ${JSON.stringify(config.milter.user)}: create it (deploy/systemd/sysusers.d/per-user-milter.conf, or useradd --system) or set milter.user`,
    ]);
  }
  if (account.uid === 0 || account.gid === 0) throw new StartRefused([`milter.user: ${account.name} is root: the milter must run as an unprivileged account`]);
  handOverSpool(spoolDir, account);
  const settings = launcherSettings(config, spoolDir, account.uid, account.gid);
  const launcher = await startLauncher(settings, { onStderr: onLauncherStderr });
  try {
    dropPrivileges(account);
  } catch (err) {
    await launcher.stop();
    throw new StartRefused([(err as Error).message]);
  }
  return { privileged: true, account, settings, launcher };
}
