// One user's filter run, in the current thread: locate, check, open the spool
// file, spawn the sandbox chain with execa (no shell), collect capped output,
// enforce the timeout on the whole process group, map to an Outcome.
import fs from 'node:fs';
import { ownPrivileges } from './privileges.js';
import { isMainThread } from 'node:worker_threads';
import { execa } from 'execa';
import { PumError } from '../errors.js';
import { ABANDON_MS, KILL_GRACE_MS, type FilterJob, type FilterResult, type Outcome } from './job.js';

export { KILL_GRACE_MS };
import { checkFilter } from './checks.js';
import { closeStrayDescriptors } from './fds.js';
import { killSurvivors, marksOf, type Marks } from './hunt.js';
import { filterPathFor } from './locate.js';
import { outcomeOf, replyTextOf } from './outcome.js';
import { buildLaunch, filterEnvironment, sandboxWarnings, type LaunchInput } from './sandbox.js';



let hardLimitsCache: LaunchInput['hardLimits'] | null = null;
/** Our own hard limits, from /proc/self/limits: an unprivileged prlimit cannot go above them. */
export function ownHardLimits(): NonNullable<LaunchInput['hardLimits']> {
  if (hardLimitsCache) return hardLimitsCache;
  const out: NonNullable<LaunchInput['hardLimits']> = {};
  try {
    const text = fs.readFileSync('/proc/self/limits', 'utf8');
    const rows: Array<[RegExp, 'cpu' | 'as' | 'nproc' | 'fsize']> = [
      [/^Max cpu time\s+\S+\s+(\S+)/m, 'cpu'],
      [/^Max address space\s+\S+\s+(\S+)/m, 'as'],
      [/^Max processes\s+\S+\s+(\S+)/m, 'nproc'],
      [/^Max file size\s+\S+\s+(\S+)/m, 'fsize'],
    ];
    for (const [re, key] of rows) {
      const v = re.exec(text)?.[1];
      if (v !== undefined && /^\d+$/.test(v)) out[key] = Number(v);
    }
  } catch {
    // not Linux: no clamping
  }
  hardLimitsCache = out;
  return out;
}

function umaskIs077(): boolean {
  // Reading the umask is allowed in worker threads (setting it is not).
  return process.umask() === 0o077;
}

let straysClosed = false;
/** Once per thread (cheap; the descriptor table is shared, so the first thread does the work). */
function closeStraysOnce(): void {
  if (straysClosed) return;
  straysClosed = true;
  closeStrayDescriptors();
}

let warned = false;
function warnOnce(job: FilterJob, privileged: boolean): void {
  // Worker threads leave this to the application (it logs sandboxWarnings() at start).
  if (warned || !isMainThread) return;
  warned = true;
  for (const w of sandboxWarnings(job.settings.sandbox, privileged)) process.emitWarning(w, { code: 'PUM_SANDBOX' });
}

function result(outcome: Outcome, started: number, log: string, extra: Partial<FilterResult> = {}): FilterResult {
  return {
    outcome,
    exitCode: null,
    signal: null,
    durationMs: Math.round((performance.now() - started) * 1000) / 1000,
    replyText: '',
    log,
    ...extra,
  };
}

/** Output kept up to a byte budget shared by stdout and stderr; the rest is read and dropped. */
class Capture {
  readonly stdout: Buffer[] = [];
  readonly stderr: Buffer[] = [];
  kept = 0;
  dropped = 0;
  constructor(private readonly budget: number) {}
  take(into: Buffer[], chunk: Buffer): void {
    const room = this.budget - this.kept;
    if (room <= 0) {
      this.dropped += chunk.length;
      return;
    }
    const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
    // Copy a slice so the (64 KB) pipe buffer behind it can be freed.
    into.push(part === chunk ? chunk : Buffer.from(part));
    this.kept += part.length;
    this.dropped += chunk.length - part.length;
  }
}

const LAUNCHER_FAILURE = /^(prlimit|setpriv|bwrap): /;

export async function runFilter(job: FilterJob): Promise<FilterResult> {
  const started = performance.now();
  const { user, settings } = job;
  // Root, or the ambient CAP_SETUID/CAP_SETGID of deploy/systemd: a milter
  // that can switch users must never skip the switch.
  const privileges = ownPrivileges();
  const privileged = privileges.switchUsers;
  warnOnce(job, privileged);
  closeStraysOnce();

  if (user.uid === 0) return result('unsafe', started, 'refusing to run a filter as root');
  const where = filterPathFor(user, settings.path);
  const check = await checkFilter(user, where);
  if (!check.ok) return result(check.missing ? 'nofilter' : 'unsafe', started, check.reason);

  let spool: number;
  try {
    spool = fs.openSync(job.spoolPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (err) {
    // Our failure, not the filter's: the job fails, and the message is tempfailed (451 4.3.0).
    const e = err as NodeJS.ErrnoException;
    throw new PumError('PUM_ERR_SPOOL_UNREADABLE', `cannot open spool file ${job.spoolPath}: ${e.code ?? e.message}`, { cause: err });
  }

  try {
    const plan = buildLaunch({
      sandbox: settings.sandbox,
      user,
      filterPath: check.realPath,
      limits: settings.limits,
      env: filterEnvironment(user, job.envelope),
      privileged,
      root: privileges.root,
      umaskShim: !umaskIs077(),
      ...(privileges.root ? {} : { hardLimits: ownHardLimits() }),
    });
    const st = fs.fstatSync(spool);
    const runUid = privileged ? user.uid : (process.getuid?.() ?? -1);
    return await spawnAndWait(job, plan, spool, started, runUid, { dev: st.dev, ino: st.ino });
  } finally {
    fs.closeSync(spool);
  }
}

async function spawnAndWait(
  job: FilterJob,
  plan: ReturnType<typeof buildLaunch>,
  stdinFd: number,
  started: number,
  runUid: number,
  spoolId: { dev: number; ino: number },
): Promise<FilterResult> {
  const { settings } = job;
  const cap = new Capture(settings.limits.outputBytes);
  let timedOut = false;
  let exitCode: number | null = null;
  let signal: string | null = null;
  let exited = false;

  const child = execa(plan.file, plan.args, {
    // Any open descriptor works at run time (passed to spawn as is); the typings only list 0 and 3-9.
    stdin: stdinFd as unknown as 0,
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
    // Raw Buffer chunks: no decoding transform per chunk (cheaper; the capture decodes once).
    encoding: 'buffer',
    stripFinalNewline: false,
    env: plan.env,
    extendEnv: false,
    cwd: plan.cwd,
    // Own session and process group: the timeout kills the whole group.
    detached: true,
    reject: false,
    cleanup: false,
    forceKillAfterDelay: false,
    ...(plan.uid !== undefined ? { uid: plan.uid } : {}),
    ...(plan.gid !== undefined ? { gid: plan.gid } : {}),
  });
  const pid = child.pid;
  // What the filter holds, to recognise its processes after a timeout even if
  // they left the group. Taken only when the timeout fires (reading
  // /proc/PID/fd of a process that is still exec'ing blocks this thread).
  let marks: Marks | null = null;
  let survivors: number[] = [];

  child.stdout?.on('data', (c: Buffer) => cap.take(cap.stdout, c));
  child.stderr?.on('data', (c: Buffer) => cap.take(cap.stderr, c));
  child.on('exit', (code, sig) => {
    exited = true;
    exitCode = code;
    signal = sig;
  });

  const killGroup = (sig: NodeJS.Signals): void => {
    if (pid === undefined) return;
    try {
      process.kill(-pid, sig);
    } catch {
      // ESRCH: nobody left in the group
    }
  };

  const timers: NodeJS.Timeout[] = [];
  let abandon: (() => void) | null = null;
  const abandoned = new Promise<void>((resolve) => {
    abandon = resolve;
  });

  timers.push(
    setTimeout(() => {
      timedOut = true;
      marks = exited || pid === undefined ? { uid: runUid, links: new Set(), file: spoolId } : marksOf(pid, runUid, spoolId);
      killGroup('SIGTERM');
      timers.push(
        setTimeout(() => {
          killGroup('SIGKILL');
          if (marks) survivors = killSurvivors(marks);
          // A process that left the group (setsid) may still hold our pipes:
          // stop reading, so the result comes back now.
          child.stdout?.destroy();
          child.stderr?.destroy();
          timers.push(setTimeout(() => abandon?.(), ABANDON_MS));
        }, KILL_GRACE_MS),
      );
    }, settings.timeout),
  );

  let spawnError: string | null = null;
  try {
    const r = await Promise.race([child, abandoned]);
    if (r && typeof r === 'object' && 'failed' in r && r.failed && !exited && !timedOut) {
      const cause = (r as { cause?: unknown }).cause;
      spawnError = cause instanceof Error ? cause.message : String((r as { shortMessage?: string }).shortMessage ?? 'spawn failed');
    }
  } catch (err) {
    if (!exited && !timedOut) spawnError = err instanceof Error ? err.message : String(err);
  } finally {
    for (const t of timers) clearTimeout(t);
    // Whatever the filter left behind in its process group (a background
    // child, a daemon that did not setsid) goes too. The group's pid cannot
    // have been reused yet: pids are handed out cyclically.
    killGroup('SIGKILL');
    if (timedOut && marks) survivors.push(...killSurvivors(marks));
    child.stdout?.destroy();
    child.stderr?.destroy();
  }

  const stdout = Buffer.concat(cap.stdout);
  const stderr = Buffer.concat(cap.stderr);
  const stderrText = stderr.toString('utf8');
  let launchError = spawnError;
  if (launchError === null && !timedOut && exitCode !== null && exitCode !== 0 && LAUNCHER_FAILURE.test(stderrText)) {
    launchError = `launcher failed: ${stderrText.split('\n')[0] ?? ''}`;
  }
  const outcome = outcomeOf({ exitCode, signal, timedOut, launchError }, settings.exitCodes);
  const logParts: string[] = [];
  if (launchError !== null) logParts.push(launchError);
  if (timedOut) {
    logParts.push(
      `timed out after ${settings.timeout} ms; process group killed` +
        (survivors.length > 0 ? `, and ${survivors.length} process(es) that had left it` : ''),
    );
  }
  if (stdout.length > 0) logParts.push(`stdout: ${stdout.toString('utf8')}`);
  if (stderr.length > 0) logParts.push(`stderr: ${stderrText}`);
  if (cap.dropped > 0) logParts.push(`(${cap.dropped} more bytes of output dropped)`);
  return result(outcome, started, logParts.join('\n'), {
    exitCode,
    signal,
    replyText: replyTextOf(stdout),
  });
}
