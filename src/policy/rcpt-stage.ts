// Runs in: every process (pure).
//
// The RCPT-stage program's answer (docs/reference.md §4b): exact for that
// one recipient, before DATA. 0 (and no program) continue; 1 refuses the
// recipient with 550 and the program's first output line (§4 rules, default
// 5.7.1); 75 defers it with 450 (default 4.7.1); anything else, a signal,
// the timeout or an unsafe program count as filter.onError: continue, or
// 450 4.7.1. Pure: no I/O.
import type { Outcome } from '../filter/job.js';
import { filterReply, replyValue, type ReplyValue } from './reply.js';

export const RCPT_REJECT_REPLY: ReplyValue = replyValue('550 5.7.1 Recipient rejected by its owner');
export const RCPT_TEMPFAIL_REPLY: ReplyValue = replyValue('450 4.7.1 Recipient deferred by its owner');

/** The reply for this recipient, or null to let it through. */
export function rcptStageReply(outcome: Outcome, replyText: string, onError: 'accept' | 'tempfail'): ReplyValue | null {
  switch (outcome) {
    case 'accept':
    case 'nofilter':
      return null;
    case 'reject':
      return filterReply('reject', replyText) ?? RCPT_REJECT_REPLY;
    case 'tempfail': {
      // A per-recipient tempfail is 450 (RFC 5321: mailbox unavailable), not the message's 451.
      const r = filterReply('tempfail', replyText);
      return r === null ? RCPT_TEMPFAIL_REPLY : { ...r, code: '450' };
    }
    case 'unsafe':
    case 'error':
    case 'timeout':
      return onError === 'accept' ? null : RCPT_TEMPFAIL_REPLY;
  }
}
