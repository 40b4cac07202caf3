// The plain-data contract between the main thread and the filter worker:
// one job is one user's filter on one spooled message. Everything here must
// survive structured cloning into a piscina worker thread.
import type { UserAccount } from '../users/user.js';

/** What one user's filter run came to (contract §4, §5). */
export type Outcome = 'accept' | 'reject' | 'tempfail' | 'nofilter' | 'unsafe' | 'error' | 'timeout';

export const OUTCOMES: readonly Outcome[] = ['accept', 'reject', 'tempfail', 'nofilter', 'unsafe', 'error', 'timeout'];

/** After SIGTERM to the filter's process group, SIGKILL this much later (contract §3 filter.timeout). */
export const KILL_GRACE_MS = 2000;
/** After SIGKILL, stop waiting for output and exit status this much later, whatever holds them. */
export const ABANDON_MS = 500;

/** The longest a job takes once it runs: the filter's timeout, the kill grace, the abandon delay. */
export function jobBoundMs(timeoutMs: number): number {
  return timeoutMs + KILL_GRACE_MS + ABANDON_MS;
}

/** The filter environment (contract §4), Postfix local(8)/pipe(8) names. HOME USER LOGNAME SHELL PATH come from the user. */
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

/** The filter settings of the configuration (config `filter.*`), as plain data. */
export interface FilterSettings {
  path: string;
  timeout: number;
  sandbox: 'setpriv' | 'bwrap' | 'none';
  limits: { cpuSeconds: number; memoryBytes: number; processes: number; fileSizeBytes: number; outputBytes: number };
  exitCodes: { reject: number[]; tempfail: number[] };
}

export interface FilterJob {
  /** The spooled message, already in the filter's message form; the worker opens it read-only. */
  spoolPath: string;
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
