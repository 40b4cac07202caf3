// Runs in: the milter process.
//
// The Prometheus metrics of docs/reference.md §6, all prefixed
// `per_user_milter_`, in a registry of their own (plus prom-client's default
// process metrics, which describe the milter process only). Label values are
// pre-initialised so every series exists at 0 from the first scrape: rate()
// and alerts then work before the first event. Pool gauges and the helper
// processes' memory and CPU are read at scrape time, never polled or pushed.
// A `user` label (metrics.perUserLabels) goes on counters only: on a
// histogram it would cost a dozen series per user and outcome.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { readFileSync } from 'node:fs';
import { readProcessUsage } from './proc.js';
import { INTERNAL_REASONS, type InternalReason } from '../errors.js';
import { OUTCOMES, type Outcome } from '../filter/job.js';

export const METRIC_PREFIX = 'per_user_milter_';

export type MessageAction = 'accept' | 'reject' | 'tempfail';
export const MESSAGE_ACTIONS: readonly MessageAction[] = ['accept', 'reject', 'tempfail'];
export type RecipientKind = 'local' | 'nonlocal';
export type LookupResult = 'found' | 'unknown' | 'error';
export const LOOKUP_RESULTS: readonly LookupResult[] = ['found', 'unknown', 'error'];
export type SkipReason = 'trusted' | 'authenticated';
export const SKIP_REASONS: readonly SkipReason[] = ['trusted', 'authenticated'];

/** End of message to the reply, pool wait included: from a few ms to the MTA's content timeout (seconds). */
export const MESSAGE_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300];

/** This package's version, for build_info. */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Filter run times from a 5 ms `exit 0` to the 60 s end of a long timeout (seconds). */
export const FILTER_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60];

/** What the pool reports (RunnerClient.stats() and FilterPool.stats() have these fields). */
export interface PoolGaugeSource {
  queueSize: number;
  /** 0..1 */
  utilization: number;
}

/** Outcomes of runs that started a process: the only ones whose duration means anything. */
export const TIMED_OUTCOMES: readonly Outcome[] = OUTCOMES.filter((o) => o !== 'nofilter' && o !== 'unsafe');

/** A process of ours whose memory and CPU are exported, by role: milter, runner, launcher. */
export interface WatchedProcess {
  process: string;
  /** null while it is not running (e.g. between a runner crash and the next job). */
  pid: number | null;
}

export interface MetricsOptions {
  /** `metrics.perUserLabels`: add a `user` label to the filter run counters. */
  perUserLabels: boolean;
  /** Read at every scrape; absent: the pool gauges stay 0. */
  poolStats?: () => PoolGaugeSource;
  /** `milter.maxConnections`, exported as connections_max so alerts can say "near the limit". */
  maxConnections?: number;
  /** Read at every scrape: the processes whose RSS and CPU time are exported with a `process` label. */
  processes?: () => readonly WatchedProcess[];
  /** prom-client's default process metrics (default true). */
  processMetrics?: boolean;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly perUser: boolean;
  private poolStats: (() => PoolGaugeSource) | undefined;

  private readonly messages: Counter<'action'>;
  private readonly filterRuns: Counter<'outcome' | 'user'>;
  private readonly filterDuration: Histogram<'outcome'>;
  private readonly recipients: Counter<'kind'>;
  private readonly connections: Gauge;
  private readonly spool: Counter;
  private readonly protocolErrors: Counter;
  private readonly messageDuration: Histogram<'action'>;
  private readonly internalErrors: Counter<'reason'>;
  private readonly rcptFilterRuns: Counter<'outcome' | 'user'>;
  private readonly userLookups: Counter<'result'>;
  private readonly skipped: Counter<'reason'>;
  private readonly unmatchedMailer: Counter<'mailer'>;

  constructor(options: MetricsOptions) {
    this.perUser = options.perUserLabels;
    this.poolStats = options.poolStats;
    const registers = [this.registry];
    const filterLabels = this.perUser ? (['outcome', 'user'] as const) : (['outcome'] as const);

    this.messages = new Counter({
      name: `${METRIC_PREFIX}messages_total`,
      help: 'Messages by the action taken (accept, reject, tempfail)',
      labelNames: ['action'],
      registers,
    });
    this.filterRuns = new Counter({
      name: `${METRIC_PREFIX}filter_runs_total`,
      help: 'Per-user filter runs by outcome',
      labelNames: [...filterLabels],
      registers,
    });
    this.filterDuration = new Histogram({
      name: `${METRIC_PREFIX}filter_duration_seconds`,
      help: 'Per-user filter run time in seconds (from start to exit), by outcome; only runs that started a process (no nofilter, unsafe)',
      labelNames: ['outcome'],
      buckets: FILTER_DURATION_BUCKETS,
      registers,
    });
    this.recipients = new Counter({
      name: `${METRIC_PREFIX}recipients_total`,
      help: 'Envelope recipients by kind (local user or not)',
      labelNames: ['kind'],
      registers,
    });
    this.connections = new Gauge({
      name: `${METRIC_PREFIX}connections_active`,
      help: 'Open milter connections',
      registers,
    });
    const maxConnections = new Gauge({
      name: `${METRIC_PREFIX}connections_max`,
      help: 'milter.maxConnections: further connections are tempfailed and closed',
      registers,
    });
    if (options.maxConnections !== undefined) maxConnections.set(options.maxConnections);
    const self = this;
    new Gauge({
      name: `${METRIC_PREFIX}pool_queue_size`,
      help: 'Filter runs waiting to start: for a run slot, or for their user\'s turn (filter.maxPerUser)',
      registers,
      collect() {
        this.set(self.poolStats?.().queueSize ?? 0);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}pool_utilization`,
      help: 'Busy fraction of the filter pool run slots (pool.threads x 4) at this moment (0..1)',
      registers,
      collect() {
        this.set(self.poolStats?.().utilization ?? 0);
      },
    });
    this.spool = new Counter({
      name: `${METRIC_PREFIX}spool_bytes_total`,
      help: 'Bytes written to spool files',
      registers,
    });
    this.protocolErrors = new Counter({
      name: `${METRIC_PREFIX}protocol_errors_total`,
      help: 'Milter connections closed because of a protocol error',
      registers,
    });

    this.messageDuration = new Histogram({
      name: `${METRIC_PREFIX}message_duration_seconds`,
      help: 'End of message to the reply, in seconds, by the action taken (filter pool wait included)',
      labelNames: ['action'],
      buckets: MESSAGE_DURATION_BUCKETS,
      registers,
    });
    this.internalErrors = new Counter({
      name: `${METRIC_PREFIX}internal_errors_total`,
      help: "per-user-milter's own failures (each answered 451 4.3.x), by reason",
      labelNames: ['reason'],
      registers,
    });
    this.rcptFilterRuns = new Counter({
      name: `${METRIC_PREFIX}rcpt_filter_runs_total`,
      help: 'RCPT-stage program runs by outcome',
      labelNames: [...filterLabels],
      registers,
    });
    this.userLookups = new Counter({
      name: `${METRIC_PREFIX}user_lookups_total`,
      help: 'User directory lookups (NSS or passwd file) by result: found, unknown, error',
      labelNames: ['result'],
      registers,
    });
    this.skipped = new Counter({
      name: `${METRIC_PREFIX}skipped_total`,
      help: 'Messages accepted without running filters, by reason (trusted network, authenticated client)',
      labelNames: ['reason'],
      registers,
    });
    this.unmatchedMailer = new Counter({
      name: `${METRIC_PREFIX}recipients_unmatched_mailer_total`,
      help: 'Recipients that name a local user but came with a {rcpt_mailer} not in recipients.localMailers (so no filter ran), by mailer',
      labelNames: ['mailer'],
      registers,
    });
    // Each series reads /proc once per scrape; a process that is gone has no series (not a stale value).
    const usages = () =>
      (options.processes?.() ?? []).flatMap((p) => {
        const usage = p.pid === null ? null : readProcessUsage(p.pid);
        return usage ? [{ labels: { process: p.process }, ...usage }] : [];
      });
    new Gauge({
      name: `${METRIC_PREFIX}process_resident_memory_bytes`,
      help: "Resident memory of per-user-milter's own processes (milter, runner, launcher), from /proc at scrape time",
      labelNames: ['process'],
      registers,
      collect() {
        this.reset();
        for (const u of usages()) this.set(u.labels, u.residentBytes);
      },
    });
    new Counter({
      name: `${METRIC_PREFIX}process_cpu_seconds_total`,
      help: "User and system CPU time of per-user-milter's own processes (milter, runner, launcher), from /proc at scrape time; a restarted process starts again at 0",
      labelNames: ['process'],
      registers,
      collect() {
        this.reset();
        for (const u of usages()) this.inc(u.labels, u.cpuSeconds);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}build_info`,
      help: 'Always 1; the labels say which per-user-milter and which Node.js run',
      labelNames: ['version', 'node'],
      registers,
    }).set({ version: packageVersion(), node: process.version }, 1);

    for (const action of MESSAGE_ACTIONS) {
      this.messages.labels(action).inc(0);
      this.messageDuration.zero({ action });
    }
    for (const reason of INTERNAL_REASONS) this.internalErrors.labels(reason).inc(0);
    for (const result of LOOKUP_RESULTS) this.userLookups.labels(result).inc(0);
    for (const reason of SKIP_REASONS) this.skipped.labels(reason).inc(0);
    for (const kind of ['local', 'nonlocal'] as const) this.recipients.labels(kind).inc(0);
    // With per-user labels the user values are unknown until a filter runs.
    if (!this.perUser) {
      for (const outcome of OUTCOMES) {
        this.filterRuns.labels(outcome).inc(0);
        this.rcptFilterRuns.labels(outcome).inc(0);
      }
    }
    for (const outcome of TIMED_OUTCOMES) this.filterDuration.zero({ outcome });
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  message(action: MessageAction): void {
    this.messages.labels(action).inc();
  }

  /** One user's filter run. Its duration is observed only when it started a process: a `nofilter` or `unsafe` at 0 s would pull every quantile down. */
  filterRun(outcome: Outcome, durationMs: number, user = ''): void {
    this.filterRuns.inc(this.perUser ? { outcome, user } : { outcome });
    if (TIMED_OUTCOMES.includes(outcome)) this.filterDuration.observe({ outcome }, Math.max(0, durationMs) / 1000);
  }

  /** One message answered: its action and the time from end of message to the reply. */
  messageAnswered(action: MessageAction, seconds: number): void {
    this.messageDuration.observe({ action }, Math.max(0, seconds));
  }

  /** One of our own failures (src/errors.ts), answered 451 4.3.x. */
  internalError(reason: InternalReason): void {
    this.internalErrors.labels(reason).inc();
  }

  rcptFilterRun(outcome: Outcome, user = ''): void {
    this.rcptFilterRuns.inc(this.perUser ? { outcome, user } : { outcome });
  }

  userLookup(result: LookupResult): void {
    this.userLookups.labels(result).inc();
  }

  skip(reason: SkipReason): void {
    this.skipped.labels(reason).inc();
  }

  /**
   * A recipient that names a user came with a mailer outside
   * recipients.localMailers. Mailer values come from the MTA's own
   * configuration (transport names: few), not from the network; still only
   * a sane token becomes a label value.
   */
  recipientUnmatchedMailer(mailer: string): void {
    const value = /^[A-Za-z0-9._:-]{1,64}$/.test(mailer) ? mailer : 'other';
    this.unmatchedMailer.labels(value).inc();
  }

  recipient(kind: RecipientKind): void {
    this.recipients.labels(kind).inc();
  }

  connectionOpened(): void {
    this.connections.inc();
  }

  connectionClosed(): void {
    this.connections.dec();
  }

  spoolBytes(bytes: number): void {
    if (bytes > 0) this.spool.inc(bytes);
  }

  protocolError(): void {
    this.protocolErrors.inc();
  }

  /**
   * Callbacks for the milter server's events (structurally its MilterEvents).
   * A connection refused for maxConnections is reported closed (reason
   * 'refused') without having been reported opened, so it does not move the
   * gauge. A handler step that failed past the application's own handling
   * was answered with the engine's 451 4.3.0: one of our failures, reason
   * `other` (an abort() or close() that failed answered nobody).
   */
  milterEvents(): {
    connectionOpened(): void;
    connectionClosed(info: { reason: string }): void;
    protocolError(): void;
    handlerError(info: { step: string }): void;
  } {
    return {
      connectionOpened: () => this.connectionOpened(),
      connectionClosed: (info) => {
        if (info.reason !== 'refused') this.connectionClosed();
      },
      protocolError: () => this.protocolError(),
      handlerError: (info) => {
        if (info.step !== 'abort' && info.step !== 'close') this.internalError('other');
      },
    };
  }
}

export function createMetrics(options: MetricsOptions): Metrics {
  return new Metrics(options);
}
