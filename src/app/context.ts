// Runs in: the milter process.
//
// What the application needs from the rest of the process. The composition
// root (src/cli/serve.ts) builds one AppContext; a SIGHUP reload swaps the
// settings inside it, so every new message sees the new configuration while
// messages in flight finish under the old one.
import type { Config } from '../config/schema.js';
import type { InternalReason } from '../errors.js';
import type { FilterJob, FilterResult, Outcome } from '../filter/job.js';
import type { UserAccount } from '../users/user.js';
import type { Recipient, RcptInput } from '../recipients/index.js';
import type { Spool } from '../spool/index.js';
import type { Action, SkipReason } from '../policy/index.js';
import type { MilterLogger } from '../milter/application.js';

/** Runs filter jobs (src/runner/client.ts in production: the runner process and its pool). */
export interface FilterRunner {
  /**
   * Admits one message's jobs as a whole and runs them all. Throws a PumError
   * (PUM_ERR_POOL_FULL) at once, running none, when the message is refused;
   * a job that fails for a reason of ours rejects with a PumError.
   */
  runMessage(jobs: readonly FilterJob[]): Array<Promise<FilterResult>>;
}

/** The counters the application moves (src/metrics implements them with prom-client). */
export interface AppMetrics {
  message(action: Action): void;
  /** End of message to the reply (docs/reference.md §6 message_duration_seconds). */
  messageAnswered(action: Action, seconds: number): void;
  /** One of our own failures, answered 451 4.3.x (src/errors.ts). */
  internalError(reason: InternalReason): void;
  filterRun(outcome: Outcome, durationMs: number, user: string): void;
  recipient(kind: 'local' | 'nonlocal'): void;
  /** One RCPT-stage program run (docs/reference.md §4b, rcpt_filter_runs_total). */
  rcptFilterRun(outcome: Outcome, user: string): void;
  /** A message accepted without filters by a skip rule (docs/reference.md §5.7). */
  skip(reason: SkipReason): void;
  spoolBytes(bytes: number): void;
}

export interface AppContext {
  /** The configuration in force for new messages. */
  config(): Config;
  classify(input: RcptInput): Promise<Recipient>;
  /** Whether the user has a program of this kind (default: the message filter, own or filter.default); asked of the launcher, as the user. */
  hasFilter(user: UserAccount, program?: 'filter' | 'rcpt'): Promise<boolean>;
  spool: Spool;
  runner: FilterRunner;
  metrics: AppMetrics;
  log: MilterLogger;
}
