// End of message: run every local user's filter in parallel through the
// pool, aggregate their outcomes per docs/reference.md §5, and turn the decision into
// the milter reply. Our own failures (pool full, a worker that throws) become
// a 451 tempfail: the MTA keeps the mail, nothing is rejected by our fault.
import type { ConnectionContext, CustomReply, EomResult, Modification } from '../milter/application.js';
import type { Config } from '../config/schema.js';
import type { EnvelopeFacts, FilterJob, FilterResult } from '../filter/job.js';
import { PoolFullError } from '../runner/pool.js';
import type { RecipientsOfUser, TransactionRecipients } from '../recipients/index.js';
import type { SpoolFile } from '../spool/index.js';
import { BUSY_REPLY, decide, INTERNAL_FAILURE_REPLY, policySettings, type Action, type UserVerdict } from '../policy/index.js';
import type { AppContext } from './context.js';

/** One MAIL .. EOM/ABORT. */
export interface Transaction {
  /** The configuration in force when MAIL came: a reload does not change a message half-way. */
  config: Config;
  /** Envelope sender without brackets ('' for the null sender). */
  sender: string;
  recipients: TransactionRecipients;
  /** Users (by name) with a filter among the recipients. */
  filtered: Set<string>;
  file: SpoolFile | null;
  queueId: string;
  started: number;
  client: { address: string; hostname: string; helo: string; protocol: string; saslMethod: string; saslUsername: string };
}

/** `550 5.7.1 text` -> SMFIR_REPLYCODE. */
export function customReply(reply: string): CustomReply {
  return { code: reply.slice(0, 3), text: reply.slice(4) };
}

function envelopeFor(tx: Transaction, r: RecipientsOfUser): EnvelopeFacts {
  return {
    SENDER: tx.sender,
    RECIPIENT: r.first.address,
    LOCAL: r.first.localPart,
    EXTENSION: r.first.extension,
    DOMAIN: r.first.domain,
    CLIENT_ADDRESS: tx.client.address,
    CLIENT_HOSTNAME: tx.client.hostname,
    CLIENT_HELO: tx.client.helo,
    CLIENT_PROTOCOL: tx.client.protocol,
    QUEUE_ID: tx.queueId,
    SASL_METHOD: tx.client.saslMethod,
    SASL_USERNAME: tx.client.saslUsername,
  };
}

interface Asked {
  users: UserVerdict[];
  results: Array<{ user: string; result: FilterResult }>;
}

export async function askFilters(app: AppContext, conn: ConnectionContext, tx: Transaction, spoolPath: string): Promise<EomResult> {
  const config = tx.config;
  const settings = {
    path: config.filter.path,
    timeout: config.filter.timeout,
    sandbox: config.filter.sandbox,
    limits: config.filter.limits,
    exitCodes: config.filter.exitCodes,
  };
  const locals = tx.recipients.localUsers();
  const runs = locals.map((r) => {
    if (!tx.filtered.has(r.user.name)) {
      // No filter at RCPT time: no say, and no run.
      return Promise.resolve<FilterResult>({ outcome: 'nofilter', exitCode: null, signal: null, durationMs: 0, replyText: '', log: '' });
    }
    const job: FilterJob = { spoolPath, user: r.user, envelope: envelopeFor(tx, r), settings };
    return app.runner.run(job);
  });
  // Wait for every run, even after a failure: the spool file must outlive them all.
  const settled = await Promise.allSettled(runs);
  const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failure) {
    const busy = failure.reason instanceof PoolFullError;
    const reply = busy ? BUSY_REPLY : INTERNAL_FAILURE_REPLY;
    conn.log.error({ err: failure.reason, queueId: tx.queueId }, busy ? 'filter pool full' : 'filter run failed');
    logMessage(conn, tx, [], 'tempfail', { reply, note: busy ? 'filter pool full' : 'internal error' });
    app.metrics.message('tempfail');
    return { reply: customReply(reply) };
  }

  const asked: Asked = { users: [], results: [] };
  settled.forEach((s, i) => {
    const r = locals[i] as RecipientsOfUser;
    const result = (s as PromiseFulfilledResult<FilterResult>).value;
    asked.results.push({ user: r.user.name, result });
    asked.users.push({ user: r.user.name, outcome: result.outcome, replyText: result.replyText, rcpts: r.rcpts });
    app.metrics.filterRun(result.outcome, result.durationMs, r.user.name);
    if (result.log !== '' && result.outcome !== 'accept') {
      conn.log.info({ queueId: tx.queueId, user: r.user.name, outcome: result.outcome, output: result.log }, 'filter output');
    }
  });

  const decision = decide(asked.users, tx.recipients.nonLocalCount, policySettings(config));
  logMessage(conn, tx, asked.results, decision.action, {
    reply: decision.reply,
    dryRunWouldBe: decision.dryRunWouldBe?.action,
    dropped: decision.dropRcpts,
  });
  app.metrics.message(decision.action);
  switch (decision.action) {
    case 'accept': {
      const modifications: Modification[] = (decision.dropRcpts ?? []).map((rcpt) => ({ kind: 'deleteRecipient', recipient: Buffer.from(rcpt, 'latin1') }));
      return { reply: 'accept', modifications };
    }
    case 'reject':
    case 'tempfail':
      return { reply: customReply(decision.reply ?? INTERNAL_FAILURE_REPLY) };
  }
}

/** The one line per message of docs/reference.md §5: queue id, sender, per-user outcomes, action. */
export function logMessage(
  conn: ConnectionContext,
  tx: Transaction,
  results: ReadonlyArray<{ user: string; result: FilterResult }>,
  action: Action,
  extra: { reply?: string | undefined; note?: string; dryRunWouldBe?: Action | undefined; dropped?: readonly string[] | undefined } = {},
): void {
  const users = results.map(({ user, result }) => ({
    user,
    outcome: result.outcome,
    exit: result.exitCode ?? result.signal ?? null,
    ms: Math.round(result.durationMs),
  }));
  conn.log.info(
    {
      event: 'message',
      queueId: tx.queueId || 'NOQUEUE',
      from: tx.sender,
      rcpts: tx.recipients.localUserCount + tx.recipients.nonLocalCount,
      users,
      action,
      ...(extra.reply ? { reply: extra.reply } : {}),
      ...(extra.note ? { note: extra.note } : {}),
      ...(extra.dryRunWouldBe ? { dryRunWouldBe: extra.dryRunWouldBe } : {}),
      ...(extra.dropped && extra.dropped.length > 0 ? { dropped: extra.dropped } : {}),
      ms: Math.round(performance.now() - tx.started),
    },
    'message',
  );
}
