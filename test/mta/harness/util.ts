// Small process, file and polling helpers shared by the real-MTA harness.
// Nothing here knows about a particular MTA.
import { spawn, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file is dist/test/mta/harness/util.js or test/mta/harness/util.ts). */
export const repoRoot: string = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('cannot find the repository root above ' + fileURLToPath(import.meta.url));
})();

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function randomTag(bytes = 3): string {
  return randomBytes(bytes).toString('hex');
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (no shell), collecting its output. Never throws for a non-zero exit. */
export function run(
  command: string,
  args: readonly string[],
  opts: SpawnOptions & { input?: string | Buffer; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...opts, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs) {
      timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    }
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(opts.input ?? '');
  });
}

/** Like run(), but throws with the command's output when it does not exit 0. */
export async function runOk(command: string, args: readonly string[], opts: SpawnOptions & { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  const r = await run(command, args, opts);
  if (r.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${r.code ?? r.signal}\n${r.stdout}${r.stderr}`);
  }
  return r;
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes; throws naming `what`. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 10_000, everyMs = 100): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    }
    await sleep(everyMs);
  }
}

/** Resolves true when something accepts a connection at the TCP port or unix socket path. */
export function canConnect(target: { port: number; host?: string } | { path: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const s = 'path' in target ? net.connect(target.path) : net.connect(target.port, target.host ?? '127.0.0.1');
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

const handedOut = new Set<number>();

/**
 * A free loopback TCP port in [from, to] (the ranges this suite may use:
 * 25200-25299 SMTP, 25300-25399 milter/metrics/sinks). Random start so that
 * parallel test files rarely collide; never the same port twice per process.
 */
export async function freePort(from: number, to: number): Promise<number> {
  const span = to - from + 1;
  const start = Math.floor(Math.random() * span);
  for (let i = 0; i < span; i++) {
    const p = from + ((start + i) % span);
    if (handedOut.has(p)) continue;
    if (await portFree(p)) {
      handedOut.add(p);
      return p;
    }
  }
  throw new Error(`no free port in ${from}-${to}`);
}
export const smtpPort = (): Promise<number> => freePort(25200, 25299);
export const auxPort = (): Promise<number> => freePort(25300, 25399);

/** Opaque position in one or more logs (byte offsets). */
export type LogMark = readonly number[];

/**
 * A growing log file read by offset: mark() before a step, since(mark) for
 * what the step wrote. Used to print only the lines of a failing case.
 */
export class LogFile {
  constructor(readonly file: string) {}
  size(): number {
    if (!existsSync(this.file)) return 0;
    const fd = openSync(this.file, 'r');
    try {
      return fstatSync(fd).size;
    } finally {
      closeSync(fd);
    }
  }
  mark(): number {
    return this.size();
  }
  since(mark = 0, maxBytes = 64 * 1024): string {
    if (!existsSync(this.file)) return `(${this.file} does not exist)`;
    const fd = openSync(this.file, 'r');
    try {
      const size = fstatSync(fd).size;
      let from = Math.min(mark, size);
      let prefix = '';
      if (size - from > maxBytes) {
        prefix = `[... ${size - from - maxBytes} bytes skipped ...]\n`;
        from = size - maxBytes;
      }
      const buf = Buffer.alloc(size - from);
      readSync(fd, buf, 0, buf.length, from);
      return prefix + buf.toString('utf8');
    } finally {
      closeSync(fd);
    }
  }
}

/** Reads /proc/PID/status fields such as VmRSS and VmHWM, in bytes. */
export async function procMemory(pid: number): Promise<{ rss: number; hwm: number }> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    if (!m?.[1]) throw new Error(`no ${field} in /proc/${pid}/status`);
    return Number(m[1]) * 1024;
  };
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** PIDs of the processes whose real uid is `uid` (from /proc). */
export async function processesOf(uid: number): Promise<number[]> {
  const { readdir, readFile } = await import('node:fs/promises');
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = await readFile(`/proc/${name}/status`, 'utf8');
      const m = /^Uid:\s+(\d+)/m.exec(status);
      if (m && Number(m[1]) === uid) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}
