// Runs in: the milter process (`serve`, `try`).
//
// Starts the native launcher (native/, built by `npm ci`) with execa: its
// standard input is our control pipe (its end makes the launcher kill every
// run and exit), its standard output carries one "ready" line and nothing
// else, its standard error is a stream of diagnostics for our log. The
// arguments come from the configuration and are fixed for the launcher's
// life: a compromised milter process cannot name another program, sandbox,
// limit or timeout, nor tell it who a user is.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { PumError } from '../errors.js';
import { LAUNCHER_READY_MS } from '../timeouts.js';

export interface LauncherSettings {
  /** The unix socket it listens on (in the spool directory). */
  socket: string;
  /** The spool directory: 0700, owned by `clientUid`. */
  spool: string;
  /** The only uid whose connections it accepts (the milter's account), and that account's gid (its spool files). */
  clientUid: number;
  clientGid: number;
  minUid: number;
  maxUid: number;
  /** filter.path, filter.rcptPath ('' = none), filter.default ('' = none). */
  filterPath: string;
  rcptPath: string;
  defaultPath: string;
  /** filter.cgroup: auto, none, or a cgroup v2 directory. */
  cgroup: string;
  /** bwrap's path, for filter.sandbox=bwrap; '' = not available. */
  bwrap: string;
  /** filter.sandbox (none is setpriv: unprivileged only, see privilegeProblems). */
  sandbox: 'setpriv' | 'bwrap';
  /** users.passwdFile ('' = NSS): where the launcher looks accounts up by uid. */
  passwdFile: string;
  /** filter.timeout and filter.rcptTimeout, ms, from the fork on. */
  timeoutMs: number;
  rcptTimeoutMs: number;
  /** filter.limits: rlimits (cpu s, address space, processes, file size), output bytes kept; the run cgroup's memory.max and pids.max (0 = none). */
  cpu: number;
  as: number;
  nproc: number;
  fsize: number;
  output: number;
  memory: number;
  pids: number;
}

export interface LauncherReady {
  /** /proc hides other users' processes from the filters. */
  procHidden: boolean;
  /** The parent of the run cgroups, or null. */
  cgroup: string | null;
  /** It runs as root and switches users. */
  privileged: boolean;
}

export interface RunningLauncher {
  readonly pid: number;
  readonly ready: LauncherReady;
  /** Settles when it has exited, with how ("exited with status 1", "killed by SIGKILL"). */
  readonly exited: Promise<string>;
  /** Ends its input: it kills every run and exits. */
  stop(): Promise<string>;
}

/** The binary: PER_USER_MILTER_LAUNCHER, else native/per-user-milter-launcher in this package. */
export function launcherBinary(env: NodeJS.ProcessEnv = process.env): string {
  const override = env.PER_USER_MILTER_LAUNCHER;
  if (override) return override;
  // dist/src/launcher/start.js -> native/per-user-milter-launcher
  return fileURLToPath(new URL('../../../native/per-user-milter-launcher', import.meta.url));
}

export function launcherArgs(s: LauncherSettings): string[] {
  const args = [
    '--socket', s.socket, '--spool', s.spool, '--client-uid', String(s.clientUid), '--client-gid', String(s.clientGid),
    '--min-uid', String(s.minUid), '--max-uid', String(s.maxUid), '--filter-path', s.filterPath, '--cgroup', s.cgroup,
    '--sandbox', s.sandbox, '--timeout-ms', String(s.timeoutMs), '--rcpt-timeout-ms', String(s.rcptTimeoutMs),
    '--cpu', String(s.cpu), '--as', String(s.as), '--nproc', String(s.nproc), '--fsize', String(s.fsize),
    '--output', String(s.output), '--memory', String(s.memory), '--pids', String(s.pids),
  ];
  if (s.passwdFile) args.push('--passwd-file', s.passwdFile);
  if (s.rcptPath) args.push('--rcpt-path', s.rcptPath);
  if (s.defaultPath) args.push('--default-path', s.defaultPath);
  if (s.bwrap) args.push('--bwrap', s.bwrap);
  return args;
}

/** The absolute path of a system tool (never from a user's PATH), or its bare name when it is not installed. */
export function findTool(name: string): string {
  for (const dir of ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin']) {
    try {
      fs.accessSync(`${dir}/${name}`, fs.constants.X_OK);
      return `${dir}/${name}`;
    } catch {
      // next
    }
  }
  return name;
}

/** The absolute path of bwrap, or '' when it is not installed. */
export function findBwrap(): string {
  const p = findTool('bwrap');
  return p.startsWith('/') ? p : '';
}

export function parseReady(line: string): LauncherReady | null {
  const m = /^ready proc=(hidden|visible) cgroup=(\S+) privileged=(yes|no)$/.exec(line);
  if (!m) return null;
  return { procHidden: m[1] === 'hidden', cgroup: m[2] === 'none' ? null : (m[2] as string), privileged: m[3] === 'yes' };
}

/**
 * Starts the launcher and waits for its ready line. Rejects with
 * PUM_ERR_LAUNCHER when it cannot start, exits first or says nothing in time.
 */
export async function startLauncher(
  s: LauncherSettings,
  opts: { binary?: string; onStderr?: (line: string) => void } = {},
): Promise<RunningLauncher> {
  const binary = opts.binary ?? launcherBinary();
  const onStderr = opts.onStderr ?? ((line: string) => process.stderr.write(line + '\n'));
  const child: ResultPromise = execa(binary, launcherArgs(s), {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
    reject: false,
    // Its lifecycle is its standard input: no signal from us on exit.
    cleanup: false,
    extendEnv: false,
    env: { PATH: '/usr/bin:/bin' },
  });
  const lines = (stream: NodeJS.ReadableStream | null, each: (line: string) => void): void => {
    let tail = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      const parts = (tail + chunk).split('\n');
      tail = parts.pop() ?? '';
      for (const p of parts) each(p);
    });
  };
  const stderrSeen: string[] = [];
  lines(child.stderr, (line) => {
    if (stderrSeen.length < 5) stderrSeen.push(line);
    onStderr(line);
  });
  const exited: Promise<string> = child.then(
    (r) => (r.signal ? `killed by ${r.signal}` : r.exitCode === undefined ? `could not start: ${r.shortMessage ?? ''}` : `exited with status ${r.exitCode}`),
    (err: Error) => `could not start: ${err.message}`,
  );
  const ready = await new Promise<LauncherReady>((resolve, reject) => {
    let got: LauncherReady | null = null;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new PumError('PUM_ERR_LAUNCHER', `the launcher (${binary}) did not say ready within ${LAUNCHER_READY_MS} ms`));
    }, LAUNCHER_READY_MS);
    lines(child.stdout, (line) => {
      if (got) {
        onStderr(`launcher printed on its standard output after ready: ${line.slice(0, 200)}`);
        return;
      }
      got = parseReady(line);
      clearTimeout(timer);
      if (got) resolve(got);
      else reject(new PumError('PUM_ERR_LAUNCHER', `the launcher (${binary}) printed ${JSON.stringify(line.slice(0, 200))} instead of its ready line`));
    });
    void exited.then((how) => {
      if (got) return;
      clearTimeout(timer);
      reject(new PumError('PUM_ERR_LAUNCHER', `the launcher (${binary}) ${how} before it was ready${stderrSeen.length ? `: ${stderrSeen.join(' / ')}` : ''}`));
    });
  });
  child.stdin?.on('error', () => undefined);
  return {
    pid: child.pid ?? 0,
    ready,
    exited,
    stop: () => {
      child.stdin?.end();
      return exited;
    },
  };
}
