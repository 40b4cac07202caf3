// Runs in: a piscina worker thread of the runner process (and the main
// thread of `try`).
//
// One user's filter run: the request goes to the native launcher over this
// thread's own connection, and its answer becomes a FilterResult. Checks,
// the user switch, the sandbox, the timeout and the clean-up all happen in
// the launcher (native/README.md); this file only translates. Our own
// failures (the launcher gone or refusing, the spool file unreadable) throw
// a PumError: never a filter outcome.
import os from 'node:os';
import path from 'node:path';
import { PumError } from '../errors.js';
import { LauncherConnection, type RunAnswer } from '../launcher/client.js';
import type { RunRequest } from '../launcher/protocol.js';
import { envelopeEnvironment } from './environment.js';
import type { FilterJob, FilterResult, Outcome } from './job.js';
import { notRunOutcome, notRunText, outcomeOf, replyTextOf } from './outcome.js';

/**
 * Where the launcher listens. `serve` and `try` set it in their own
 * environment before the runner process and its threads exist, so every
 * thread finds it; it never reaches a filter (the launcher builds the
 * filter's environment from the request alone).
 */
export const LAUNCHER_SOCKET_ENV = 'PER_USER_MILTER_LAUNCHER_SOCKET';

let connection: Promise<LauncherConnection> | null = null;

function connect(fresh: boolean): Promise<LauncherConnection> {
  const socket = process.env[LAUNCHER_SOCKET_ENV];
  if (!socket) return Promise.reject(new PumError('PUM_ERR_LAUNCHER', `${LAUNCHER_SOCKET_ENV} is not set: no launcher to run filters with`));
  if (fresh || connection === null) {
    connection = LauncherConnection.connect(socket);
    connection.catch(() => (connection = null));
  }
  return connection;
}

/** Closes this thread's launcher connection (its runs are killed). */
export function closeLauncherConnection(): void {
  void connection?.then((c) => c.close(), () => undefined);
  connection = null;
}

/** What the launcher is asked: a uid (the name as a cross-check), the program kind, the spool file, the envelope. */
export function runRequest(job: FilterJob): RunRequest {
  const program = job.program ?? 'filter';
  return {
    program,
    user: job.user.name,
    uid: job.user.uid,
    ...(program === 'filter' ? { spool: path.basename(job.spoolPath) } : {}),
    env: envelopeEnvironment(job.envelope),
  };
}

function signalName(n: number): string {
  return Object.entries(os.constants.signals).find(([, v]) => v === n)?.[0] ?? `signal ${n}`;
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 1000) / 1000;
}

export function resultOf(job: FilterJob, a: RunAnswer, started: number): FilterResult {
  if (a.type === 'notrun') {
    const log = notRunText(a, job.user.name, process.getuid?.() ?? -1, os.constants.errno);
    return { outcome: notRunOutcome(a.kind), exitCode: null, signal: null, durationMs: elapsed(started), replyText: '', log };
  }
  const signal = a.signal === null ? null : signalName(a.signal);
  const outcome: Outcome = outcomeOf({ exitCode: a.exitCode, signal, timedOut: a.timedOut, launchError: null }, job.settings.exitCodes);
  const log: string[] = [];
  if (a.timedOut) log.push(`timed out after ${job.settings.timeout} ms; every process of the run ended`);
  if (a.killed > 0) log.push(`killed ${a.killed} leftover process(es)`);
  if (a.stdout.length > 0) log.push(`stdout: ${a.stdout.toString('utf8')}`);
  if (a.stderr.length > 0) log.push(`stderr: ${a.stderr.toString('utf8')}`);
  if (a.dropped > 0) log.push(`(${a.dropped} more bytes of output dropped)`);
  return { outcome, exitCode: a.exitCode, signal, durationMs: elapsed(started), replyText: replyTextOf(a.stdout), log: log.join('\n') };
}

export async function runFilter(job: FilterJob): Promise<FilterResult> {
  const started = performance.now();
  const { user } = job;
  // The launcher refuses these too; saying so here keeps them the user's outcome, not a failed request.
  if (user.uid === 0 || user.gid === 0 || user.groups.includes(0)) {
    return { outcome: 'unsafe', exitCode: null, signal: null, durationMs: 0, replyText: '', log: 'refusing to run a filter as root or with group 0' };
  }
  const request = runRequest(job);
  let answer: RunAnswer;
  try {
    // A connection found broken before the request is sent: a fresh one.
    // Once sent, never again: the launcher may have started the filter, and
    // a filter must not run twice for one message (a lost answer is 451).
    let conn = await connect(false);
    if (conn.closed) conn = await connect(true);
    answer = await conn.run(request);
  } catch (err) {
    if (err instanceof PumError && err.code === 'PUM_ERR_SPOOL_UNREADABLE') {
      throw new PumError(err.code, `cannot open spool file ${job.spoolPath}: ${err.message}`, { cause: err });
    }
    throw err;
  }
  return resultOf(job, answer, started);
}
