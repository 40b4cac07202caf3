// Runs in: every process (pure).
//
// SMTP reply texts (docs/reference.md §5.2): how a filter's first output line
// becomes the reply the MTA hands to the client, and the fixed replies of
// policy. Our own failures have theirs in src/errors.ts (errorReply). Pure:
// no I/O.

/** The verdicts that carry a reply. */
export type ReplyKind = 'reject' | 'tempfail';

/** `policy.oversize = reject`: the message was not filtered because of its size. */
export const OVERSIZE_REPLY = '552 5.3.4 Message too big for per-recipient filtering';
/** `policy.mixed = split`: a further filtered recipient must come in its own transaction. */
export const SPLIT_REPLY = '452 4.5.3 Try again in a separate transaction';

const BASIC_CODE: Record<ReplyKind, string> = { reject: '550', tempfail: '451' };
const DEFAULT_ENHANCED: Record<ReplyKind, string> = { reject: '5.7.1', tempfail: '4.7.1' };
const CLASS_DIGIT: Record<ReplyKind, string> = { reject: '5', tempfail: '4' };

/** An RFC 3463 enhanced status code at the start of a text, followed by a space or the end. */
const LEADING_ENHANCED = /^([245])\.\d{1,3}\.\d{1,3}(?= |$)/;

/**
 * Turns one filter's reply text into a full SMTP reply for `kind`, or null
 * when the filter gave no usable text: empty, or an enhanced code whose class
 * contradicts the verdict (`4.x.y` on a reject). Example: reject +
 * `5.7.1 u1 says no` -> `550 5.7.1 u1 says no`; reject + `no spam` ->
 * `550 5.7.1 no spam`.
 */
export function filterReply(kind: ReplyKind, text: string): string | null {
  const t = text.trim();
  if (t === '') return null;
  const code = LEADING_ENHANCED.exec(t);
  if (code) {
    if (code[1] !== CLASS_DIGIT[kind]) return null;
    return `${BASIC_CODE[kind]} ${t}`;
  }
  return `${BASIC_CODE[kind]} ${DEFAULT_ENHANCED[kind]} ${t}`;
}

/**
 * The reply for a verdict voted by several filters: the filters' text when
 * every one of them gave the same usable text, else `fallback` (the
 * configured `policy.rejectReply` / `policy.tempfailReply`).
 */
export function combinedReply(kind: ReplyKind, texts: readonly string[], fallback: string): string {
  const replies = texts.map((t) => filterReply(kind, t));
  const first = replies[0];
  if (first === undefined || first === null) return fallback;
  return replies.every((r) => r === first) ? first : fallback;
}
