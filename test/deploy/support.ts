// Helpers for the deploy/ tests: paths, optional npm packages, ports,
// temporary users, waiting, and starting `per-user-milter serve`.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { inCI } from '../support/require.js';

/** The repository root (this file is dist/test/deploy/support.js once built). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const DEPLOY = path.join(ROOT, 'deploy');
/** The executable under test; PUMOPS_MAIN_JS points the tests at another build (e.g. a patched copy). */
export const MAIN_JS = process.env.PUMOPS_MAIN_JS ?? path.join(ROOT, 'dist/src/main.js');

export function readDeploy(rel: string): string {
  return fs.readFileSync(path.join(DEPLOY, rel), 'utf8');
}

function missing(t: TestContext, what: string): void {
  if (inCI) throw new Error(`CI requirement missing: ${what}`);
  t.skip(`needs ${what}`);
}

/**
 * Imports an npm package the deploy tests need but the product does not
 * (yaml, kubernetes-models). A dynamic import with a computed name keeps
 * `tsc` independent of the package being installed. Missing: skip locally,
 * fail in CI (package.json devDependencies must list it).
 */
export async function optionalImport<T = any>(t: TestContext, name: string): Promise<T | null> {
  try {
    return (await import(name)) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    missing(t, `npm package ${name} (package.json devDependencies)`);
    return null;
  }
}

/** `serve` is there when the build has src/main.js and it knows the subcommand. */
export function lacksServe(t: TestContext): boolean {
  // main.js imports cli/serve.js lazily: both must be built.
  let ok = fs.existsSync(MAIN_JS) && fs.existsSync(path.join(path.dirname(MAIN_JS), 'cli/serve.js'));
  if (ok) {
    try {
      const help = execFileSync(process.execPath, [MAIN_JS, '--help'], { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'pipe'] });
      ok = /\bserve\b/.test(help);
    } catch {
      ok = false;
    }
  }
  if (ok) return false;
  missing(t, `a built 'per-user-milter serve' (${MAIN_JS})`);
  return true;
}

/** The repository's files as a clean clone has them (tracked, plus new files not ignored), copied to `dir`. */
export function cleanCopy(dir: string): void {
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' })
    .split('\0').filter((f) => f !== '' && fs.existsSync(path.join(ROOT, f)));
  for (const f of files) {
    fs.mkdirSync(path.join(dir, path.dirname(f)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), path.join(dir, f));
    fs.chmodSync(path.join(dir, f), fs.statSync(path.join(ROOT, f)).mode & 0o777);
  }
}

/** A fresh temporary directory, removed when test `t` ends. */
export function tmpDir(t: TestContext, prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `pumops-${prefix}-`));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns a value that is not undefined, or throws after `ms`. */
export async function waitFor<T>(what: string, ms: number, check: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const until = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    }
    await sleep(200);
  }
}

/** A free TCP port on 127.0.0.1 in this team's range 25400-25499, starting at `from`. */
export async function freePort(from: number, to = 25499): Promise<number> {
  for (let p = from; p <= to; p++) {
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(p, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return p;
  }
  throw new Error(`no free port in ${from}-${to}`);
}

export function httpGet(url: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timeout`)));
    req.on('error', reject);
  });
}

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

function getent(db: string, key: string): string[] | null {
  try {
    return execFileSync('getent', [db, key], { encoding: 'utf8' }).trim().split(':');
  } catch {
    return null;
  }
}

/**
 * Creates (or reuses) a local test user `pumops-…` with a 0700 home, the way
 * current Debian makes homes, so that the milter needs CAP_DAC_READ_SEARCH
 * to look inside. Returns its passwd entry. A user this call created is
 * removed (with its home and any process left) when test `t` ends.
 */
export function ensureUser(t: TestContext, name: string, opts: { system?: boolean } = {}): TestUser {
  if (!name.startsWith('pumops-')) throw new Error('test users are named pumops-*');
  if (getent('passwd', name) === null) {
    const args = opts.system
      ? ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', name]
      : ['--create-home', '--user-group', '--shell', '/bin/sh', name];
    execFileSync('useradd', args, { stdio: 'pipe' });
    t.after(() => {
      spawnSync('pkill', ['-KILL', '-u', name], { stdio: 'ignore' });
      spawnSync('userdel', ['--force', '--remove', name], { stdio: 'ignore' });
      spawnSync('groupdel', [name], { stdio: 'ignore' }); // only if userdel left the user's group
    });
  }
  const pw = getent('passwd', name);
  if (pw === null) throw new Error(`useradd ${name} did not create it`);
  const user = { name, uid: Number(pw[2]), gid: Number(pw[3]), home: pw[5] ?? '' };
  if (!opts.system) fs.chmodSync(user.home, 0o700);
  return user;
}

/** Writes an executable `~/.user-milter` owned by the user, mode 0755. */
export function writeFilter(user: TestUser, script: string): string {
  const p = path.join(user.home, '.user-milter');
  fs.writeFileSync(p, script, { mode: 0o755 });
  fs.chmodSync(p, 0o755);
  fs.chownSync(p, user.uid, user.gid);
  return p;
}

export interface Serve {
  child: ChildProcess;
  output: () => string;
  stop: () => Promise<number | null>;
}

/**
 * Starts `node dist/src/main.js serve ARGS` (or `command serve ARGS`, e.g.
 * an installed per-user-milter; optionally behind a launcher such as
 * setpriv), collects its output, and resolves once `ready` says so.
 */
export async function startServe(
  t: TestContext,
  args: string[],
  opts: { launcher?: string[]; command?: string[]; ready: () => Promise<boolean>; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<Serve> {
  const argv = [...(opts.launcher ?? []), ...(opts.command ?? [process.execPath, MAIN_JS]), 'serve', ...args];
  const [file, ...rest] = argv as [string, ...string[]];
  const child = spawn(file, rest, { cwd: ROOT, env: opts.env ?? { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (out += c));
  let exited: number | null | undefined;
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code, sig) => {
    exited = code ?? (sig ? -1 : null);
    resolve(exited);
  }));
  const stop = async (): Promise<number | null> => {
    if (exited !== undefined) return exited;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const code = await exit;
    clearTimeout(timer);
    return code;
  };
  t.after(async () => {
    await stop();
  });
  try {
    await waitFor('serve to be ready', opts.timeoutMs ?? 30_000, async () => {
      if (exited !== undefined) throw new Error(`serve exited with ${exited}:\n${out}`);
      return (await opts.ready()) ? true : undefined;
    });
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n--- serve output ---\n${out}`);
  }
  return { child, output: () => out, stop };
}

/** True when something accepts TCP connections on host:port. */
export function canConnect(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Parses Prometheus text format into `name{labels}` -> value (labels as written). */
export function parseMetrics(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

/** Sum of all samples of `name` whose label set contains every `labels` pair. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const [key, value] of parseMetrics(text)) {
    const brace = key.indexOf('{');
    const n = brace < 0 ? key : key.slice(0, brace);
    if (n !== name) continue;
    const ls = brace < 0 ? '' : key.slice(brace);
    if (Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) sum += value;
  }
  return sum;
}

export interface Delivery {
  /** The reply that decided the message: accept, reject, tempfail, replycode (with text), continue... */
  type: string;
  text?: string;
  /** The step that gave it. */
  step: string;
}

/**
 * Drives one message through the milter at `spec` like Postfix would, with
 * the in-repo MTA-side client (src/milter/client.ts): every recipient sent
 * with `{rcpt_mailer}=local`. Returns the first final reply other than
 * `continue`, or the end-of-message reply.
 */
export async function deliver(
  spec: string,
  msg: { from: string; to: string[]; headers: Array<[string, string]>; body: string; queueId: string },
): Promise<Delivery> {
  const { MilterClient } = await import('../../src/milter/client.js');
  const { SMFIP_HDR_LEADSPC } = await import('../../src/milter/constants.js');
  const client = await MilterClient.connect(spec, { timeout: 30_000 });
  const decided = (step: string, r: { type: string; text?: string } | null): Delivery | null =>
    r === null || r.type === 'continue' ? null : { step, type: r.type, ...(r.text !== undefined ? { text: r.text } : {}) };
  try {
    await client.negotiate();
    client.macro('C', { j: 'mx.pumops.test', '{daemon_name}': 'smtpd', _: 'client.pumops.test [127.0.0.1]' });
    let d = decided('connect', await client.connect('client.pumops.test', 'inet', 40000, '127.0.0.1'));
    if (d) return d;
    client.macro('H', {});
    d = decided('helo', await client.helo('client.pumops.test'));
    if (d) return d;
    client.macro('M', { i: msg.queueId, '{mail_addr}': msg.from });
    d = decided('mail', await client.mail(`<${msg.from}>`));
    if (d) return d;
    for (const to of msg.to) {
      client.macro('R', { i: msg.queueId, '{rcpt_mailer}': 'local', '{rcpt_addr}': to, '{rcpt_host}': '' });
      d = decided('rcpt', await client.rcpt(`<${to}>`));
      if (d) return d;
    }
    client.macro('T', { i: msg.queueId });
    d = decided('data', await client.data());
    if (d) return d;
    // With SMFIP_HDR_LEADSPC negotiated the MTA sends the space after the colon.
    const lead = ((client.negotiated?.protocol ?? 0) & SMFIP_HDR_LEADSPC) !== 0 ? ' ' : '';
    for (const [name, value] of msg.headers) {
      d = decided('header', await client.header(name, lead + value));
      if (d) return d;
    }
    d = decided('eoh', await client.eoh());
    if (d) return d;
    d = decided('body', await client.body(msg.body.replace(/\r?\n/g, '\r\n')));
    if (d) return d;
    client.macro('E', { i: msg.queueId });
    const eom = await client.eom();
    return decided('eom', eom.final as { type: string; text?: string }) ?? { step: 'eom', type: 'continue' };
  } finally {
    await client.quit().catch(() => client.destroy());
  }
}
