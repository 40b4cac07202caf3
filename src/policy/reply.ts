// Runs in: every process (pure).
//
// SMTP reply texts (docs/reference.md §5.2): how a filter's first output line
// becomes the reply the MTA hands to the client, and the fixed replies of
// policy. Our own failures have theirs in src/errors.ts (errorReply). Pure:
// no I/O.
import { leadingEnhancedCode } from '../milter/replies.js';

/** The verdicts that carry a reply. */
export type ReplyKind = 'reject' | 'tempfail';

/**
 * An SMTP reply as a value: the basic code, the enhanced status code and the
 * text, kept apart so that nothing downstream slices a string at fixed
 * offsets. `550 5.7.1 no` is `{ code: '550', enhanced: '5.7.1', text: 'no' }`.
 */
export interface ReplyValue {
  readonly code: string;
  readonly enhanced: string;
  readonly text: string;
}

/** `550 5.7.1 text` (as configured: policy.rejectReply, policy.tempfailReply) -> its value. */
export function replyValue(line: string): ReplyValue {
  const m = /^(\d{3}) ([245]\.\d{1,3}\.\d{1,3})(?: (.*))?$/.exec(line);
  if (!m) throw new Error(`not an SMTP reply with an enhanced status code: ${JSON.stringify(line)}`);
  return { code: m[1] as string, enhanced: m[2] as string, text: m[3] ?? '' };
}

/** The value as one line, for logs and people: `550 5.7.1 text`. */
export function replyLine(r: ReplyValue): string {
  return r.text === '' ? `${r.code} ${r.enhanced}` : `${r.code} ${r.enhanced} ${r.text}`;
}

/** `policy.oversize = reject`: the message was not filtered because of its size. */
export const OVERSIZE_REPLY: ReplyValue = replyValue('552 5.3.4 Message too big for per-recipient filtering');
/** `policy.mixed = split`: a further filtered recipient must come in its own transaction. */
export const SPLIT_REPLY: ReplyValue = replyValue('452 4.5.3 Try again in a separate transaction');

const BASIC_CODE: Record<ReplyKind, string> = { reject: '550', tempfail: '451' };
const DEFAULT_ENHANCED: Record<ReplyKind, string> = { reject: '5.7.1', tempfail: '4.7.1' };
const CLASS_DIGIT: Record<ReplyKind, string> = { reject: '5', tempfail: '4' };

/**
 * Turns one filter's reply text into a full SMTP reply for `kind`, or null
 * when the filter gave no usable text: empty, or an enhanced code whose class
 * contradicts the verdict (`4.x.y` on a reject). Example: reject +
 * `5.7.1 u1 says no` -> `550 5.7.1 u1 says no`; reject + `no spam` ->
 * `550 5.7.1 no spam`.
 */
export function filterReply(kind: ReplyKind, text: string): ReplyValue | null {
  const t = text.trim();
  if (t === '') return null;
  const enhanced = leadingEnhancedCode(t);
  if (enhanced) {
    if (enhanced.klass !== CLASS_DIGIT[kind]) return null;
    return { code: BASIC_CODE[kind], enhanced: enhanced.code, text: t.slice(enhanced.code.length).trim() };
  }
  return { code: BASIC_CODE[kind], enhanced: DEFAULT_ENHANCED[kind], text: t };
}

const same = (a: ReplyValue, b: ReplyValue): boolean => a.code === b.code && a.enhanced === b.enhanced && a.text === b.text;

/**
 * The reply for a verdict voted by several filters: the filters' text when
 * every one of them gave the same usable text, else `fallback` (the
 * configured `policy.rejectReply` / `policy.tempfailReply`).
 */
export function combinedReply(kind: ReplyKind, texts: readonly string[], fallback: string): ReplyValue {
  const replies = texts.map((t) => filterReply(kind, t));
  const first = replies[0];
  if (first === undefined || first === null) return replyValue(fallback);
  return replies.every((r) => r !== null && same(r, first)) ? first : replyValue(fallback);
}
