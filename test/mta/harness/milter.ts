// Starts the built per-user-milter (`node dist/src/main.js serve`) in the
// foreground with configuration keys given as --dotted.key arguments, waits
// until its milter socket accepts connections, and stops it by PID.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { canConnect, LogFile, type LogMark, procMemory, repoRoot, sleep, waitFor } from './util.js';
import { SERVICE_ACCOUNT } from '../../support/require.js';

export const MILTER_MAIN = path.join(repoRoot, 'dist/src/main.js');

export interface MilterOptions {
  /** milter.listen in the milter's own syntax: 'inet:PORT@127.0.0.1' or 'unix:/abs/path'. */
  listen: string;
  /** Further configuration keys, e.g. { 'policy.mixed': 'split', 'filter.timeout': 3000 }. */
  config?: Record<string, string | number | boolean>;
  /** Extra environment (PER_USER_MILTER_* variables). */
  env?: Record<string, string>;
  /** How long to wait for the socket (default 20 s). */
  startTimeoutMs?: number;
  /** --config FILE; without it serve reads /etc/per-user-milter/config.json when that exists. */
  configFile?: string;
  /** A program that execs the milter in place (same pid), e.g. ['unshare', '-m', '--propagation', 'private', '--'] for a private mount namespace. */
  wrap?: readonly string[];
}

export interface Milter {
  readonly pid: number;
  readonly listen: string;
  /** Everything the milter printed (stdout and stderr). */
  log(): string;
  logMark(): LogMark;
  logSince(mark: LogMark): string;
  /** Waits until the log (from `mark`) matches. */
  waitForLog(re: RegExp, mark?: LogMark, timeoutMs?: number): Promise<string>;
  /** Resident set size and its high-water mark, bytes (/proc/PID/status). */
  memory(): Promise<{ rss: number; hwm: number }>;
  /** True while the process has not exited. */
  alive(): boolean;
  /** Sends a signal (e.g. SIGKILL) without waiting. */
  kill(signal: NodeJS.Signals): void;
  /** Resolves with the exit code (or signal name) once the process is gone. */
  exited(): Promise<number | string>;
  /** SIGTERM, waits (SIGKILL after 15 s), removes the spool and log directory. Returns the exit code or signal. */
  stop(): Promise<number | string>;
}

/** Postfix wants inet:HOST:PORT where the milter (and Sendmail) say inet:PORT@HOST. */
export function postfixMilterAddress(listen: string): string {
  const m = /^inet:(\d+)@(.+)$/.exec(listen);
  if (m) return `inet:${m[2]}:${m[1]}`;
  return listen.replace(/^local:/, 'unix:');
}

function target(listen: string): { port: number; host: string } | { path: string } {
  const m = /^inet:(\d+)@(.+)$/.exec(listen);
  if (m) return { port: Number(m[1]), host: m[2]! };
  const u = /^(?:unix|local):(.+)$/.exec(listen);
  if (u) return { path: u[1]! };
  throw new Error(`unsupported listen spec ${listen}`);
}

export async function startMilter(o: MilterOptions): Promise<Milter> {
  if (!existsSync(MILTER_MAIN)) throw new Error(`${MILTER_MAIN} missing: run npm run build`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pumtest-milter-'));
  const logFile = path.join(dir, 'milter.log');
  // Started as root, serve drops to milter.user (its default, the
  // per-user-milter account, which .ci/run creates), which must reach its
  // spool directory; test users live in uids above the default users.maxUid.
  chmodSync(dir, 0o755);
  // ... and creates its unix socket after the drop: the socket's directory (the test's own) must be the account's.
  const sock = /^(?:unix|local):(.+)$/.exec(o.listen)?.[1];
  if (sock && process.getuid?.() === 0 && !o.config?.['milter.user']) {
    const [uid, gid] = ['-u', '-g'].map((f) => Number(execFileSync('id', [f, SERVICE_ACCOUNT], { encoding: 'utf8' })));
    chownSync(path.dirname(sock), uid as number, gid as number);
  }
  const config: Record<string, string | number | boolean> = {
    'metrics.listen': '',
    'spool.dir': path.join(dir, 'spool'),
    'milter.socketMode': '0666',
    'users.maxUid': 64999,
    ...o.config,
    'milter.listen': o.listen,
  };
  const args = [MILTER_MAIN, 'serve', ...(o.configFile ? ['--config', o.configFile] : [])];
  for (const [k, v] of Object.entries(config)) args.push(`--${k}`, String(v));
  const fd = openSync(logFile, 'a');
  const [command, ...argv] = [...(o.wrap ?? []), process.execPath, ...args];
  const child: ChildProcess = spawn(command!, argv, {
    stdio: ['ignore', fd, fd],
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...o.env },
    cwd: repoRoot,
  });
  closeSync(fd);
  const log = new LogFile(logFile);
  let status: number | string | undefined;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      status = code ?? signal ?? -1;
      resolve(status);
    });
  });
  let cleaned = false;
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    if (process.env.PUMTEST_KEEP !== '1') rmSync(dir, { recursive: true, force: true });
  };
  const stop = async (): Promise<number | string> => {
    if (status === undefined) {
      child.kill('SIGTERM');
      const done = await Promise.race([exited, sleep(15_000).then(() => undefined)]);
      if (done === undefined) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    cleanup();
    return status ?? -1;
  };
  try {
    const t = target(o.listen);
    const died = exited.then((s) => {
      throw new Error(`per-user-milter exited ${s} before listening on ${o.listen}`);
    });
    died.catch(() => undefined);
    await Promise.race([waitFor(`per-user-milter listening on ${o.listen}`, () => status !== undefined || canConnect(t), o.startTimeoutMs ?? 20_000), died]);
  } catch (e) {
    const out = log.since(0);
    await stop();
    throw new Error(`${String(e)}\n--- milter output (${args.slice(1).join(' ')}) ---\n${out}`);
  }
  return {
    pid: child.pid!,
    listen: o.listen,
    log: () => log.since(0, 1 << 30),
    logMark: () => [log.mark()],
    logSince: (m) => log.since(m[0] ?? 0),
    waitForLog: (re, m = [0], timeoutMs = 10_000) =>
      waitFor(`milter log to match ${re}`, () => {
        const s = log.since(m[0] ?? 0, 1 << 30);
        return re.test(s) ? s : '';
      }, timeoutMs),
    memory: () => procMemory(child.pid!),
    alive: () => status === undefined,
    kill: (sig) => {
      if (status === undefined) child.kill(sig);
    },
    exited: () => exited,
    stop,
  };
}
