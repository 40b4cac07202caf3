// Runs in: the milter process.
//
// Every answer a message gets, made visible in one place: the one log line
// per message (docs/reference.md §5) and the counters (§6: messages_total,
// message_duration_seconds, and internal_errors_total for our own failures).
// Whatever path a message takes (accepted at DATA, oversize, filtered, or
// tempfailed because something of ours failed), it goes through answered()
// or ourFailure() exactly once, so messages_total and the duration histogram
// always agree.
import type { ConnectionContext, CustomReply } from '../milter/application.js';
import { errorReply, errorReplyLine, toPumError, type PumError } from '../errors.js';
import { replyLine, type ReplyValue } from '../policy/index.js';
import type { FilterResult } from '../filter/job.js';
import type { Action } from '../policy/index.js';
import type { AppContext } from './context.js';
import type { Transaction } from './verdict.js';

/** A reply value -> SMFIR_REPLYCODE (the engine writes code and text). */
export function customReply(reply: ReplyValue): CustomReply {
  return { code: reply.code, text: reply.text === '' ? reply.enhanced : `${reply.enhanced} ${reply.text}` };
}

export interface AnswerFacts {
  action: Action;
  /** performance.now() when the command that gets this answer arrived: end of message, or DATA/BODY for an early answer. */
  since: number;
  /** The users asked and what came of it (empty when no filter ran). */
  results?: ReadonlyArray<{ user: string; result: FilterResult }>;
  reply?: ReplyValue | undefined;
  note?: string | undefined;
  dryRunWouldBe?: Action | undefined;
  dropped?: readonly string[] | undefined;
  /** RCPTs added (policy.mixed=extension: the rejecters' copies at user+EXT@domain). */
  added?: readonly string[] | undefined;
}

/** One message answered: its log line and its counters. */
export function answered(app: AppContext, conn: ConnectionContext, tx: Transaction, facts: AnswerFacts): void {
  logMessage(conn, tx, facts.results ?? [], facts.action, {
    reply: facts.reply ? replyLine(facts.reply) : undefined,
    note: facts.note,
    dryRunWouldBe: facts.dryRunWouldBe,
    dropped: facts.dropped,
    added: facts.added,
  });
  count(app, facts.action, facts.since);
}

/**
 * One of our own failures ends the message: `451 4.3.x` (errorReply of its
 * code), the message's log line at error level with `reason` (the code) and
 * `error` (what failed), internal_errors_total{reason}, and the message
 * counted as tempfail. Users whose runs finished are in the line (and their
 * runs were counted); `failed` names those whose run never gave an outcome:
 * a failure of ours is never a user's outcome.
 */
export function ourFailure(
  app: AppContext,
  conn: ConnectionContext,
  tx: Transaction,
  error: unknown,
  since: number,
  more: { results?: ReadonlyArray<{ user: string; result: FilterResult }>; failed?: readonly string[] } = {},
): CustomReply {
  const err = toPumError(error);
  const reply = errorReplyLine(err.code);
  // A bug has a stack worth keeping; the other codes say all in their message.
  if (err.code === 'PUM_ERR_INTERNAL') conn.log.error({ err: (err.cause as Error | undefined) ?? err, queueId: tx.queueId }, 'internal error');
  app.metrics.internalError(err.reason);
  logMessage(conn, tx, more.results ?? [], 'tempfail', { reply, reason: err, failed: more.failed });
  count(app, 'tempfail', since);
  return errorReply(err.code);
}

/**
 * A failure of ours while classifying one recipient (user lookup, a table):
 * that recipient alone is tempfailed `451 4.3.x` at RCPT, as Postfix does
 * when its own lookups fail; the transaction goes on with the others. Never
 * "not local": that would let the message through unfiltered.
 */
export function recipientFailure(app: AppContext, conn: ConnectionContext, tx: Transaction, rcpt: string, error: unknown): CustomReply {
  const err = toPumError(error);
  const reply = errorReplyLine(err.code);
  if (err.code === 'PUM_ERR_INTERNAL') conn.log.error({ err: (err.cause as Error | undefined) ?? err, queueId: tx.queueId }, 'internal error');
  app.metrics.internalError(err.reason);
  conn.log.error(
    {
      event: 'recipient',
      queueId: tx.queueId || 'NOQUEUE',
      from: tx.sender,
      rcpt,
      action: 'tempfail',
      reason: err.reason,
      code: err.code,
      error: err.message,
      reply,
    },
    'recipient tempfailed',
  );
  return errorReply(err.code);
}

function count(app: AppContext, action: Action, since: number): void {
  app.metrics.message(action);
  app.metrics.messageAnswered(action, (performance.now() - since) / 1000);
}

/** The one line per message of docs/reference.md §5: queue id, sender, per-user outcomes, action (and, for our failures, why). */
export function logMessage(
  conn: ConnectionContext,
  tx: Transaction,
  results: ReadonlyArray<{ user: string; result: FilterResult }>,
  action: Action,
  extra: {
    reply?: string | undefined;
    note?: string | undefined;
    dryRunWouldBe?: Action | undefined;
    dropped?: readonly string[] | undefined;
    added?: readonly string[] | undefined;
    reason?: PumError | undefined;
    failed?: readonly string[] | undefined;
  } = {},
): void {
  const users = results.map(({ user, result }) => ({
    user,
    outcome: result.outcome,
    exit: result.exitCode ?? result.signal ?? null,
    ms: Math.round(result.durationMs),
  }));
  const line = {
    event: 'message',
    queueId: tx.queueId || 'NOQUEUE',
    from: tx.sender,
    rcpts: tx.recipients.localUserCount + tx.recipients.nonLocalCount,
    users,
    action,
    ...(extra.reason ? { reason: extra.reason.reason, code: extra.reason.code, error: extra.reason.message } : {}),
    ...(extra.failed && extra.failed.length > 0 ? { failed: extra.failed } : {}),
    ...(extra.reply ? { reply: extra.reply } : {}),
    ...(extra.note ? { note: extra.note } : {}),
    ...(extra.dryRunWouldBe ? { dryRunWouldBe: extra.dryRunWouldBe } : {}),
    ...(extra.dropped && extra.dropped.length > 0 ? { dropped: extra.dropped } : {}),
    ...(extra.added && extra.added.length > 0 ? { added: extra.added } : {}),
    ...(tx.dryRunDeferred.length > 0 ? { dryRunDeferred: tx.dryRunDeferred } : {}),
    ms: Math.round(performance.now() - tx.started),
  };
  if (extra.reason) conn.log.error(line, 'message');
  else conn.log.info(line, 'message');
}
