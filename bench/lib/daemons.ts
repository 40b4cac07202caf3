// The milters under test as child processes the harness owns: started with a
// PID we keep, waited for until their socket accepts, stopped by that PID.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root: this file is bench/lib/daemons.ts or dist/bench/lib/daemons.js. */
export const repoRoot: string = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('cannot find the repository root');
})();

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A milter socket in the MTA's syntax plus what net.connect needs. */
export interface SocketSpec {
  /** `unix:/abs/path` or `inet:PORT@127.0.0.1` (Postfix and libmilter syntax). */
  spec: string;
  connect: { path: string } | { port: number; host: string };
}

export function unixSocket(file: string): SocketSpec {
  return { spec: `unix:${file}`, connect: { path: file } };
}
export function inetSocket(port: number): SocketSpec {
  return { spec: `inet:${port}@127.0.0.1`, connect: { port, host: '127.0.0.1' } };
}

export function canConnect(target: SocketSpec['connect']): Promise<boolean> {
  return new Promise((resolve) => {
    const s = 'path' in target ? net.connect(target.path) : net.connect(target.port, target.host);
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}

export async function waitForSocket(what: string, target: SocketSpec['connect'], child: ChildProcess | null, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child && child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode}) before it listened`);
    if (await canConnect(target)) return;
    await sleep(50);
  }
  throw new Error(`${what} did not listen within ${timeoutMs} ms`);
}

/** A process we started, with its output in a log file. */
export class Daemon {
  private exited: Promise<void>;
  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly logFile: string,
  ) {
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.name} has no pid`);
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  static start(name: string, command: string, args: readonly string[], logFile: string, env?: NodeJS.ProcessEnv): Daemon {
    mkdirSync(path.dirname(logFile), { recursive: true });
    const fd = openSync(logFile, 'a');
    const child = spawn(command, args, { stdio: ['ignore', fd, fd], env: env ?? process.env });
    closeSync(fd);
    child.on('error', () => undefined);
    return new Daemon(name, child, logFile);
  }

  /** SIGTERM by PID, SIGKILL after graceMs. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const killed = await Promise.race([this.exited.then(() => true), sleep(graceMs).then(() => false)]);
    if (!killed) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }

  tail(bytes = 2000): string {
    try {
      const t = readFileSync(this.logFile, 'utf8');
      return t.slice(-bytes);
    } catch {
      return '';
    }
  }
}

/** Builds bench/baselines/null-milter.c into `outDir` (skipped when up to date). */
export function buildNullMilter(outDir: string): string {
  const src = path.join(repoRoot, 'bench', 'baselines', 'null-milter.c');
  const bin = path.join(outDir, 'null-milter');
  if (existsSync(bin) && statSync(bin).mtimeMs >= statSync(src).mtimeMs) return bin;
  mkdirSync(outDir, { recursive: true });
  const r = spawnSync('gcc', ['-O2', '-Wall', '-o', bin, src, '-lmilter', '-pthread'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`building the null milter failed (need gcc and libmilter-dev):\n${r.stderr}`);
  return bin;
}

export async function startNullMilter(bin: string, socket: SocketSpec, logFile: string): Promise<Daemon> {
  const d = Daemon.start('null-milter', bin, [socket.spec], logFile);
  await waitForSocket('null-milter', socket.connect, d.child);
  return d;
}

/** The per-user-milter settings a scenario varies; everything else is fixed below. */
export interface PumSettings {
  sandbox: 'setpriv' | 'bwrap' | 'none';
  threads: number;
  /** File for recipients.map ('' for none). */
  recipientMap: string;
  maxMessageSize?: number;
}

/** The account serve drops to when the bench runs it as root. */
const MILTER_USER = 'per-user-milter';   /* milter.user's default; .ci/run creates it */

/**
 * Started as root, serve drops to MILTER_USER before it opens its socket and
 * spool: the bench's own directories must let it through, and the socket's
 * directory must be its. Only directories under the OS temp dir or this
 * repository are touched (the bench's own work directories).
 */
function reachableByMilterUser(workDir: string, socketDir: string | null): void {
  const pw = execFileSync('getent', ['passwd', MILTER_USER], { encoding: 'utf8' }).split(':');
  const ours = (d: string) => d.startsWith(os.tmpdir() + '/') || d.startsWith(repoRoot + '/');
  for (let d = workDir; ours(d); d = path.dirname(d)) chmodSync(d, statSync(d).mode | 0o011);
  if (socketDir && ours(socketDir)) chownSync(socketDir, Number(pw[2]), Number(pw[3]));
}

/** Writes a config file and starts `node dist/src/main.js serve --config FILE`. */
export async function startPerUserMilter(workDir: string, socket: SocketSpec, s: PumSettings, logFile: string): Promise<Daemon> {
  mkdirSync(workDir, { recursive: true });
  const asRoot = process.geteuid?.() === 0;
  if (asRoot) reachableByMilterUser(workDir, 'path' in socket.connect ? path.dirname(socket.connect.path) : null);
  const config = {
    milter: {
      // Started as root, serve starts the launcher and drops to this account.
      ...(asRoot ? { user: MILTER_USER } : {}),
      listen: socket.spec,
      // Postfix's smtpd runs as user postfix and must reach the socket.
      socketMode: '0666',
      maxConnections: 512,
      maxMessageSize: s.maxMessageSize ?? 52428800,
    },
    spool: { dir: path.join(workDir, 'spool') },
    // The SMTP scenarios deliver local users to discard:, so {rcpt_mailer}
    // is "discard"; the domain is what makes them local here.
    recipients: { localDomains: ['example.test'], map: s.recipientMap },
    filter: { sandbox: s.sandbox },
    pool: { threads: s.threads, maxQueue: 10000 },
    metrics: { listen: '' },
    log: { level: 'warn' },
  };
  const configFile = path.join(workDir, 'config.json');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const main = path.join(repoRoot, 'dist', 'src', 'main.js');
  if (!existsSync(main)) throw new Error(`${main} is missing: run the build first`);
  const d = Daemon.start('per-user-milter', process.execPath, [main, 'serve', '--config', configFile], logFile);
  try {
    await waitForSocket('per-user-milter', socket.connect, d.child);
  } catch (e) {
    await d.stop();
    throw new Error(`${(e as Error).message}\n${d.tail()}`);
  }
  return d;
}
