// A throw-away world for the runner tests: test users pumrun-* with unused
// uids 61001.. (one range per test file; users of a passwd file and a group
// file of this world, which the launcher reads with --passwd-file: no system
// account needed), their 0700 homes under a fresh
// root-owned base directory (not under /tmp: a world-writable directory on
// the path makes every filter unsafe), a 0700 root spool directory with
// messages, a native launcher serving this test process (root), and cleanup
// that kills whatever still runs under the test uids.
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EnvelopeFacts, FilterJob, FilterResult, FilterSettings } from '../../../src/filter/job.js';
import { closeLauncherConnection, LAUNCHER_SOCKET_ENV, runFilter } from '../../../src/filter/run.js';
import { findBwrap, launcherBinary, startLauncher, type LauncherSettings, type RunningLauncher } from '../../../src/launcher/start.js';
import type { UserAccount } from '../../../src/users/user.js';

export const FIXTURES = fileURLToPath(new URL('../../../../test/fixtures/filters/', import.meta.url));

export interface World {
  base: string;
  spoolDir: string;
  users: Record<'a' | 'b' | 'bomb', UserAccount>;
  /** Writes a message into the spool (0600 root) and returns its path. */
  message(headers?: Record<string, string>, body?: string): string;
  /** Installs fixture `name` as `user`'s ~/.user-milter (owner user, mode 0755 unless given). */
  install(user: UserAccount, name: string, opts?: { mode?: number; owner?: number; at?: string }): string;
  job(user: UserAccount, spoolPath: string, settings?: Partial<FilterSettings>, envelope?: Partial<EnvelopeFacts>): FilterJob;
  /** Live (non-zombie, unless asked) processes of a uid: "pid stat comm" lines. */
  processesOf(uid: number, withZombies?: boolean): string[];
  /** (Re)starts this world's launcher with these settings over the defaults; runFilter then uses it. */
  launch(over?: Partial<LauncherSettings>): Promise<RunningLauncher>;
  /** The launcher for jobs with these filter settings (sandbox, timeout, limits are its arguments): restarted only when they differ. */
  launchFor(settings?: Partial<FilterSettings>, over?: Partial<LauncherSettings>): Promise<RunningLauncher>;
  /** runFilter(job), with the launcher restarted first when the job's sandbox, timeout or limits are not its arguments. */
  run(job: FilterJob): Promise<FilterResult>;
  /** The passwd file the launcher reads (its group file beside it). */
  passwdFile: string;
  /** Launcher diagnostics seen so far. */
  launcherLog: string[];
  cleanup(): Promise<void>;
}

/** The native launcher is built (npm ci runs make -C native). */
export function launcherBuilt(): boolean {
  return fs.existsSync(launcherBinary());
}

export const SUPP_GID = 61100;

export function defaultSettings(over: Partial<FilterSettings> = {}): FilterSettings {
  return {
    path: '~/.user-milter',
    timeout: 10_000,
    sandbox: 'setpriv',
    limits: { cpuSeconds: 10, memoryBytes: 512 * 1024 * 1024, processes: 64, fileSizeBytes: 10 * 1024 * 1024, outputBytes: 65536 },
    exitCodes: { reject: [1], tempfail: [75] },
    ...over,
  };
}

/** The launcher's arguments for jobs with these filter settings. */
export function launcherPolicy(settings: FilterSettings): Pick<LauncherSettings, 'sandbox' | 'timeoutMs' | 'rcptTimeoutMs' | 'cpu' | 'as' | 'nproc' | 'fsize' | 'output' | 'memory' | 'pids'> {
  const l = settings.limits;
  return {
    sandbox: settings.sandbox === 'bwrap' ? 'bwrap' : 'setpriv', timeoutMs: settings.timeout, rcptTimeoutMs: settings.timeout,
    cpu: l.cpuSeconds, as: l.memoryBytes, nproc: l.processes, fsize: l.fileSizeBytes, output: l.outputBytes, memory: l.memoryBytes, pids: l.processes,
  };
}

/** A whole launcher configuration for tests: these over the defaults. */
export function testLauncherSettings(over: Partial<LauncherSettings> & Pick<LauncherSettings, 'socket' | 'spool' | 'clientUid' | 'minUid' | 'maxUid'>): LauncherSettings {
  return {
    clientGid: 0, filterPath: '~/.user-milter', rcptPath: '', defaultPath: '', cgroup: 'none', bwrap: findBwrap(), passwdFile: '',
    ...launcherPolicy(defaultSettings()), ...over,
  };
}

export function envelopeFor(user: UserAccount, over: Partial<EnvelopeFacts> = {}): EnvelopeFacts {
  return {
    SENDER: 'sender@example.org',
    RECIPIENT: `${user.name}@example.com`,
    LOCAL: user.name,
    EXTENSION: '',
    DOMAIN: 'example.com',
    CLIENT_ADDRESS: '192.0.2.7',
    CLIENT_HOSTNAME: 'client.example.org',
    CLIENT_HELO: 'client.example.org',
    CLIENT_PROTOCOL: 'ESMTP',
    QUEUE_ID: '4ABCDEF123',
    SASL_METHOD: '',
    SASL_USERNAME: '',
    ...over,
  };
}

export function killUid(uid: number): void {
  try {
    execFileSync('pkill', ['-KILL', '-U', String(uid)], { stdio: 'ignore' });
  } catch {
    // nothing to kill
  }
}

/**
 * `uidBase`: each test file gets its own uids (node --test runs files in
 * parallel, and cleanup kills by uid): run 61001, limits 61011, pool 61021,
 * unprivileged 61031 (bench/runner.ts uses 61090).
 */
export function makeWorld(tag: string, uidBase: number): World {
  const base = fs.mkdtempSync(`/var/lib/pumrun-${tag}-`);
  fs.chmodSync(base, 0o755);
  const home = (n: string) => path.join(base, 'home', n);
  fs.mkdirSync(path.join(base, 'home'), { mode: 0o755 });
  const mk = (name: string, uid: number, groups: number[]): UserAccount => ({
    name,
    uid,
    gid: uid,
    groups: [uid, ...groups],
    home: home(name),
    shell: '/bin/sh',
  });
  const users = {
    a: mk('pumrun-a', uidBase, [SUPP_GID]),
    b: mk('pumrun-b', uidBase + 1, []),
    bomb: mk('pumrun-bomb', uidBase + 2, []),
  };
  for (const u of Object.values(users)) {
    fs.mkdirSync(u.home, { mode: 0o700 });
    fs.chownSync(u.home, u.uid, u.gid);
    fs.chmodSync(u.home, 0o700);
  }
  const spoolDir = path.join(base, 'spool');
  fs.mkdirSync(spoolDir, { mode: 0o700 });
  // The accounts, for the launcher (by uid) as for Node's resolver (by name).
  fs.mkdirSync(path.join(base, 'etc'), { mode: 0o755 });
  const passwdFile = path.join(base, 'etc', 'passwd');
  fs.writeFileSync(passwdFile, Object.values(users).map((u) => `${u.name}:x:${u.uid}:${u.gid}::${u.home}:${u.shell}\n`).join(''), { mode: 0o644 });
  fs.writeFileSync(path.join(base, 'etc', 'group'), Object.values(users).map((u) => `${u.name}:x:${u.gid}:\n`).join('') +
    `pumrun-supp:x:${SUPP_GID}:${users.a.name}\n`, { mode: 0o644 });
  let launcher: RunningLauncher | null = null;
  let current = '';
  let currentOver: Partial<LauncherSettings> = {};
  const launcherLog: string[] = [];

  const world: World = {
    launcherLog,
    async launch(over = {}) {
      closeLauncherConnection();
      if (launcher) await launcher.stop();
      const socket = path.join(spoolDir, 'launcher.sock');
      const settings = testLauncherSettings({ socket, spool: spoolDir, clientUid: 0, minUid: uidBase, maxUid: uidBase + 99, passwdFile, ...over });
      launcher = await startLauncher(settings, { onStderr: (line) => launcherLog.push(line) });
      current = JSON.stringify(settings);
      currentOver = over;
      process.env[LAUNCHER_SOCKET_ENV] = socket;
      return launcher;
    },
    async launchFor(settings = {}, over = {}) {
      // The last launch's own choices (a filterPath, a cgroup) stay; the policy follows the job.
      const want = { ...currentOver, ...launcherPolicy(defaultSettings(settings)), ...over };
      const socket = path.join(spoolDir, 'launcher.sock');
      const full = testLauncherSettings({ socket, spool: spoolDir, clientUid: 0, minUid: uidBase, maxUid: uidBase + 99, passwdFile, ...want });
      if (launcher && JSON.stringify(full) === current) return launcher;
      return world.launch(want);
    },
    passwdFile,
    async run(job) {
      await world.launchFor(job.settings);
      return runFilter(job);
    },
    base,
    spoolDir,
    users,
    message(headers = {}, body = 'Hello.\n') {
      const lines = ['Return-Path: <sender@example.org>', 'From: sender@example.org', 'Subject: test'];
      for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
      const p = path.join(spoolDir, `msg-${crypto.randomBytes(12).toString('hex')}`);
      fs.writeFileSync(p, lines.join('\n') + '\n\n' + body, { mode: 0o600 });
      return p;
    },
    install(user, name, opts = {}) {
      const at = opts.at ?? path.join(user.home, '.user-milter');
      fs.mkdirSync(path.dirname(at), { recursive: true });
      fs.rmSync(at, { force: true });
      fs.copyFileSync(path.join(FIXTURES, name), at);
      const owner = opts.owner ?? user.uid;
      fs.chownSync(at, owner, owner === 0 ? 0 : owner);
      fs.chmodSync(at, opts.mode ?? 0o755);
      return at;
    },
    job(user, spoolPath, settings = {}, envelope = {}) {
      return { spoolPath, user, envelope: envelopeFor(user, envelope), settings: defaultSettings(settings) };
    },
    processesOf(uid, withZombies = false) {
      let out = '';
      try {
        out = execFileSync('ps', ['-u', String(uid), '-o', 'pid=,stat=,comm='], { encoding: 'utf8' });
      } catch {
        return []; // ps exits 1 when there is none
      }
      return out
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '' && (withZombies || !/^\d+\s+Z/.test(l)));
    },
    async cleanup() {
      closeLauncherConnection();
      if (launcher) await launcher.stop();
      for (const u of Object.values(users)) killUid(u.uid);
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
  return world;
}

/** Waits until `uid` has no live process, up to `ms`; returns what is left. */
export async function settle(world: World, uid: number, ms = 1500, withZombies = false): Promise<string[]> {
  const until = Date.now() + ms;
  let left = world.processesOf(uid, withZombies);
  while (left.length > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    left = world.processesOf(uid, withZombies);
  }
  return left;
}
