// Runs in: the milter process.
//
// End of message: run every local user's filter in parallel through the
// runner, aggregate their outcomes per docs/reference.md §5, and turn the
// decision into the milter reply. Our own failures (the message refused for
// pool.maxQueue, the runner gone, the spool unreadable, the launcher) become
// `451 4.3.x` through ourFailure(): the MTA keeps the mail, nothing is
// rejected or accepted unfiltered by our fault, and no user's outcome is
// made up.
import type { ConnectionContext, EomResult, Modification } from '../milter/application.js';
import type { Config } from '../config/schema.js';
import { errorReply } from '../errors.js';
import { SMFIF_ADDRCPT } from '../milter/constants.js';
import type { EnvelopeFacts, FilterJob, FilterResult } from '../filter/job.js';
import type { LocalRecipient, RecipientsOfUser, TransactionRecipients } from '../recipients/index.js';
import type { SpoolFile } from '../spool/index.js';
import { decide, policySettings, type UserVerdict } from '../policy/index.js';
import { answered, customReply, ourFailure } from './answer.js';
import type { AppContext } from './context.js';

/** One MAIL .. EOM/ABORT. */
export interface Transaction {
  /** The configuration in force when MAIL came: a reload does not change a message half-way. */
  config: Config;
  /** Envelope sender without brackets ('' for the null sender). */
  sender: string;
  /** Who the message is for: each local user with their filter state, the non-local recipients. */
  recipients: TransactionRecipients;
  /** RCPTs policy.mixed=split would have deferred, had policy.dryRun not been set. */
  dryRunDeferred: string[];
  file: SpoolFile | null;
  queueId: string;
  started: number;
  client: { address: string; hostname: string; helo: string; protocol: string; saslMethod: string; saslUsername: string };
}

/** The filter environment's envelope part for one user's recipient address (docs/reference.md §4): theirs only. */
export function envelopeOf(tx: Transaction, r: LocalRecipient): EnvelopeFacts {
  return {
    SENDER: tx.sender,
    RECIPIENT: r.address,
    LOCAL: r.localPart,
    EXTENSION: r.extension,
    DOMAIN: r.domain,
    CLIENT_ADDRESS: tx.client.address,
    CLIENT_HOSTNAME: tx.client.hostname,
    CLIENT_HELO: tx.client.helo,
    CLIENT_PROTOCOL: tx.client.protocol,
    QUEUE_ID: tx.queueId,
    SASL_METHOD: tx.client.saslMethod,
    SASL_USERNAME: tx.client.saslUsername,
  };
}

function envelopeFor(tx: Transaction, r: RecipientsOfUser): EnvelopeFacts {
  return envelopeOf(tx, r.first);
}

const NO_FILTER: FilterResult = { outcome: 'nofilter', exitCode: null, signal: null, durationMs: 0, replyText: '', log: '' };

/** `since`: performance.now() at end of message (message_duration_seconds starts there). */
export async function askFilters(app: AppContext, conn: ConnectionContext, tx: Transaction, spoolPath: string, since: number): Promise<EomResult> {
  const config = tx.config;
  const settings = {
    path: config.filter.path,
    timeout: config.filter.timeout,
    sandbox: config.filter.sandbox,
    limits: config.filter.limits,
    exitCodes: config.filter.exitCodes,
  };
  const locals = tx.recipients.localUsers();
  // No filter at RCPT time: no say, and no run.
  const asked = locals.filter((r) => r.hasFilter);
  const jobs = asked.map((r): FilterJob => ({ spoolPath, user: r.user, envelope: envelopeFor(tx, r), settings }));
  let runs: Array<Promise<FilterResult>>;
  try {
    runs = app.runner.runMessage(jobs);
  } catch (err) {
    // Refused as a whole (pool.maxQueue): nothing ran.
    return { reply: ourFailure(app, conn, tx, err, since, { failed: asked.map((r) => r.user.name) }) };
  }
  // Wait for every run, even after a failure: the spool file must outlive them all.
  const settled = await Promise.allSettled(runs);
  const byUser = new Map<string, PromiseSettledResult<FilterResult>>(asked.map((r, i) => [r.user.name, settled[i] as PromiseSettledResult<FilterResult>]));

  const results: Array<{ user: string; result: FilterResult }> = [];
  const users: UserVerdict[] = [];
  const failed: string[] = [];
  let failure: unknown;
  for (const r of locals) {
    const s = byUser.get(r.user.name) ?? { status: 'fulfilled', value: NO_FILTER };
    if (s.status === 'rejected') {
      failed.push(r.user.name);
      failure ??= s.reason;
      continue;
    }
    const result = s.value;
    results.push({ user: r.user.name, result });
    users.push({ user: r.user.name, outcome: result.outcome, replyText: result.replyText, rcpts: r.rcpts });
    app.metrics.filterRun(result.outcome, result.durationMs, r.user.name);
    if (result.log !== '' && result.outcome !== 'accept') {
      conn.log.info({ queueId: tx.queueId, user: r.user.name, outcome: result.outcome, output: result.log }, 'filter output');
    }
  }
  if (failed.length > 0) return { reply: ourFailure(app, conn, tx, failure, since, { results, failed }) };

  const decision = decide(users, tx.recipients.nonLocalCount, policySettings(config), tx.recipients.keptRcpts);
  answered(app, conn, tx, {
    action: decision.action,
    since,
    results,
    reply: decision.reply,
    dryRunWouldBe: decision.dryRunWouldBe?.action,
    dropped: decision.dropRcpts,
    ...(decision.addRcpts ? { added: decision.addRcpts } : {}),
  });
  switch (decision.action) {
    case 'accept': {
      if (decision.addRcpts && decision.addRcpts.length > 0 && (conn.negotiated.actions & SMFIF_ADDRCPT) === 0) {
        // policy.mixed=extension needs SMFIR_ADDRCPT, which this MTA did not offer: deliver unchanged rather than lose the copies.
        conn.log.warn({ queueId: tx.queueId, rcpts: decision.dropRcpts }, 'policy.mixed=extension: the MTA does not allow adding recipients (SMFIF_ADDRCPT); delivering unchanged');
        return { reply: 'accept', modifications: [] };
      }
      const modifications: Modification[] = [
        ...(decision.dropRcpts ?? []).map((rcpt): Modification => ({ kind: 'deleteRecipient', recipient: Buffer.from(rcpt, 'latin1') })),
        ...(decision.addRcpts ?? []).map((rcpt): Modification => ({ kind: 'addRecipient', recipient: Buffer.from(rcpt, 'latin1') })),
      ];
      return { reply: 'accept', modifications };
    }
    case 'reject':
    case 'tempfail':
      // decide() always gives these a reply; the fallback is only for the type.
      return { reply: decision.reply ? customReply(decision.reply) : errorReply('PUM_ERR_INTERNAL') };
  }
}
