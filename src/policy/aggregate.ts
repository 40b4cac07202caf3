// Runs in: every process (pure).
//
// The verdict of one message (docs/reference.md §5): the local users' filter outcomes
// and the non-local recipients vote; the message is rejected or tempfailed
// only when nobody votes accept. Pure: no I/O.
import type { Outcome } from '../filter/job.js';
import type { Config } from '../config/schema.js';
import { withExtension } from './extension.js';
import { combinedReply, OVERSIZE_REPLY, type ReplyValue } from './reply.js';

export type Action = 'accept' | 'reject' | 'tempfail';
export type Vote = 'accept' | 'reject' | 'tempfail';

/** The policy-relevant configuration (`policy.*` and `filter.onError`). */
export type PolicySettings = Pick<Config['policy'], 'mixed' | 'nonLocal' | 'dryRun' | 'oversize' | 'rejectReply' | 'tempfailReply'> &
  Pick<Config['filter'], 'onError'> &
  Partial<Pick<Config['policy'], 'rejectExtension'>> & { delimiter?: string };

/** One local user's say in the message. */
export interface UserVerdict {
  user: string;
  outcome: Outcome;
  /** The filter's reply text ('' if none): used only for reject and tempfail outcomes. */
  replyText: string;
  /** Every RCPT argument that reached this user, exactly as the MTA sent it (for SMFIR_DELRCPT). */
  rcpts: readonly string[];
}

export interface Verdict {
  action: Action;
  /** The SMTP reply for reject and tempfail. */
  reply?: ReplyValue;
  /** RCPT arguments to remove with SMFIR_DELRCPT (policy.mixed = drop-rejecters, extension). */
  dropRcpts?: string[];
  /** RCPTs to add with SMFIR_ADDRCPT (policy.mixed = extension: the dropped ones at user+EXT@domain). */
  addRcpts?: string[];
}

/** What the MTA is told; with `policy.dryRun` also what it would have been told. */
export interface Decision extends Verdict {
  dryRunWouldBe?: Verdict;
}

/** How one filter outcome votes (docs/reference.md §5.1). */
export function voteOf(outcome: Outcome, onError: PolicySettings['onError']): Vote {
  switch (outcome) {
    case 'accept':
    case 'nofilter':
      return 'accept';
    case 'reject':
      return 'reject';
    case 'tempfail':
      return 'tempfail';
    case 'unsafe':
    case 'error':
    case 'timeout':
      return onError;
    default: {
      const never: never = outcome;
      throw new Error(`unknown outcome ${String(never)}`);
    }
  }
}

/**
 * The RCPTs drop-rejecters removes: each RCPT whose every user rejected
 * (an alias RCPT reaching an accepting user stays), except those in `kept`
 * (aliases that also lead to non-local targets).
 */
export function rcptsToDrop(users: readonly UserVerdict[], kept: ReadonlySet<string> = new Set()): string[] {
  const all = new Map<string, boolean>();
  for (const u of users) {
    for (const rcpt of u.rcpts) all.set(rcpt, (all.get(rcpt) ?? true) && u.outcome === 'reject');
  }
  return [...all].filter(([rcpt, everyoneRejected]) => everyoneRejected && !kept.has(rcpt)).map(([rcpt]) => rcpt);
}

/** The verdict itself, ignoring dry-run. `kept`: RCPTs never dropped (see rcptsToDrop). */
export function verdictOf(users: readonly UserVerdict[], nonLocalCount: number, settings: PolicySettings, kept?: ReadonlySet<string>): Verdict {
  const votes = users.map((u) => voteOf(u.outcome, settings.onError));
  const acceptLike = votes.includes('accept') || (settings.nonLocal === 'accept' && nonLocalCount > 0);
  if (!acceptLike) {
    // A filter that only failed (onError = tempfail) votes tempfail but has no
    // text to offer; it still counts when comparing texts, so its '' makes
    // the texts differ and the configured reply is used.
    const tempfailers = users.filter((_, i) => votes[i] === 'tempfail');
    if (tempfailers.length > 0) {
      const texts = tempfailers.map((u) => (u.outcome === 'tempfail' ? u.replyText : ''));
      return { action: 'tempfail', reply: combinedReply('tempfail', texts, settings.tempfailReply) };
    }
    const rejecters = users.filter((u) => u.outcome === 'reject');
    if (rejecters.length > 0) {
      return { action: 'reject', reply: combinedReply('reject', rejecters.map((u) => u.replyText), settings.rejectReply) };
    }
    return { action: 'accept' };
  }
  if (settings.mixed === 'drop-rejecters') {
    const dropRcpts = rcptsToDrop(users, kept);
    if (dropRcpts.length > 0) return { action: 'accept', dropRcpts };
  }
  if (settings.mixed === 'extension') {
    // The same RCPTs drop-rejecters would remove come back at user+EXT@domain.
    const dropRcpts = rcptsToDrop(users, kept);
    const ext = settings.rejectExtension ?? 'spam';
    if (dropRcpts.length > 0) return { action: 'accept', dropRcpts, addRcpts: dropRcpts.map((r) => withExtension(r, ext, settings.delimiter ?? '+')) };
  }
  return { action: 'accept' };
}

/**
 * The decision for a filtered message (docs/reference.md §5): `users` are the local
 * users asked (each once), `nonLocalCount` the non-local recipients. Under
 * `policy.dryRun` the action is always accept, with the real verdict in
 * `dryRunWouldBe` for logs and metrics.
 */
export function decide(users: readonly UserVerdict[], nonLocalCount: number, settings: PolicySettings, kept?: ReadonlySet<string>): Decision {
  const verdict = verdictOf(users, nonLocalCount, settings, kept);
  if (settings.dryRun) return { action: 'accept', dryRunWouldBe: verdict };
  return verdict;
}

/**
 * The decision for a message above `milter.maxMessageSize`, which is not
 * filtered: accept it unfiltered, or reject it with 552 5.3.4.
 */
export function decideOversize(settings: Pick<PolicySettings, 'oversize' | 'dryRun'>): Decision {
  const verdict: Verdict = settings.oversize === 'reject' ? { action: 'reject', reply: OVERSIZE_REPLY } : { action: 'accept' };
  if (settings.dryRun && verdict.action !== 'accept') return { action: 'accept', dryRunWouldBe: verdict };
  return verdict;
}

/** Picks the policy settings out of the whole configuration. */
export function policySettings(config: {
  policy: Omit<PolicySettings, 'onError' | 'delimiter'>;
  filter: { onError: PolicySettings['onError'] };
  recipients?: { delimiter: string };
}): PolicySettings {
  const p = config.policy;
  return {
    rejectExtension: p.rejectExtension ?? 'spam',
    delimiter: config.recipients?.delimiter ?? '+',
    mixed: p.mixed,
    nonLocal: p.nonLocal,
    dryRun: p.dryRun,
    oversize: p.oversize,
    rejectReply: p.rejectReply,
    tempfailReply: p.tempfailReply,
    onError: config.filter.onError,
  };
}
