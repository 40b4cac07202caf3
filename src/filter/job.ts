// Runs in: every process (types and pure helpers).
//
// The filter-run contract: one job is one user's filter on one spooled
// message, and what came of it. Plain data: it crosses the milter -> runner
// pipe as JSON and is cloned into a piscina worker thread.
import type { SerializedError } from '../errors.js';
import { ABANDON_MS, KILL_GRACE_MS } from '../timeouts.js';
import type { Config } from '../config/schema.js';
import type { UserAccount } from '../users/user.js';

export { ABANDON_MS, KILL_GRACE_MS };

/** What one user's filter run came to (docs/reference.md §4, §5). */
export type Outcome = 'accept' | 'reject' | 'tempfail' | 'nofilter' | 'unsafe' | 'error' | 'timeout';

export const OUTCOMES: readonly Outcome[] = ['accept', 'reject', 'tempfail', 'nofilter', 'unsafe', 'error', 'timeout'];


/** The longest a job takes once it runs: the filter's timeout, the kill grace, the abandon delay. */
export function jobBoundMs(timeoutMs: number): number {
  return timeoutMs + KILL_GRACE_MS + ABANDON_MS;
}

/** The filter environment (docs/reference.md §4), Postfix local(8)/pipe(8) names. HOME USER LOGNAME SHELL PATH come from the user. */
export interface EnvelopeFacts {
  SENDER: string;
  /** This user's own envelope address only (Bcc privacy). */
  RECIPIENT: string;
  LOCAL: string;
  EXTENSION: string;
  DOMAIN: string;
  CLIENT_ADDRESS: string;
  CLIENT_HOSTNAME: string;
  CLIENT_HELO: string;
  CLIENT_PROTOCOL: string;
  QUEUE_ID: string;
  SASL_METHOD: string;
  SASL_USERNAME: string;
}

/** The filter settings of the configuration (config `filter.*`) a run needs, as plain data. */
export type FilterSettings = Pick<Config['filter'], 'path' | 'timeout' | 'sandbox' | 'limits' | 'exitCodes'>;

export interface FilterJob {
  /** The spooled message, already in the filter's message form; the launcher opens it (by its name, in its spool directory). */
  spoolPath: string;
  /** The user's message filter (default), or the RCPT-stage program (no message: stdin is empty). */
  program?: 'filter' | 'rcpt';
  user: UserAccount;
  envelope: EnvelopeFacts;
  settings: FilterSettings;
}

export interface FilterResult {
  outcome: Outcome;
  exitCode: number | null;
  signal: string | null;
  durationMs: number;
  /** First non-empty stdout line, printable ASCII, at most 200 characters; '' if none. */
  replyText: string;
  /** Captured output (capped) and, for unsafe/error, the reason: for the log, never for the SMTP client. */
  log: string;
}

/**
 * What a worker thread hands back for one job: the filter's result, or one of
 * our own failures (src/errors.ts) as plain data, so that its code reaches the
 * milter intact (a thrown Error loses its code crossing the thread boundary).
 */
export type WorkerAnswer = FilterResult | { error: SerializedError };

export function isWorkerError(a: WorkerAnswer): a is { error: SerializedError } {
  return typeof (a as { error?: unknown }).error === 'object' && (a as { error?: unknown }).error !== null;
}
