// Runs in: every process (pure).
//
// The `text` log format: one line per event, like other milters' syslog
// lines, with the queue id in front:
//
//   2026-11-25T10:00:00Z info 4Xb1Yz0abc: from=<s@x> rcpts=2 alice=reject(1,12ms) bob=accept(0,8ms) action=reject reply="550 5.7.1 no"
//
// Under journald (./logger.ts) the line starts with its syslog priority and
// has no time of its own, the journal stamps it; warnings and worse say so
// in words, as Postfix does:
//
//   <6>4Xb1Yz0abc: from=<s@x> rcpts=2 alice=reject(1,12ms) action=reject reply="550 5.7.1 no"
//   <4>warning: filter runner printed something that is not an answer line="..."
//
// Values that come from the network (sender, queue id, reply texts, filter
// output) never leave a line or start a field of their own: anything but
// plain printable words is double-quoted, with quotes, backslashes and
// control characters escaped. Input is the record pino produced; the output
// is plain text.

/** pino's numeric levels. */
const LEVEL_NAMES: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

/** One local user's part of a message summary. */
export interface UserSummary {
  user: string;
  outcome: string;
  /** Exit code, signal name, or null (no process: nofilter, unsafe). */
  exit?: number | string | null;
  /** Filter run time in milliseconds. */
  ms?: number;
}

/** The per-message event (docs/reference.md §5: "one log line per message"). */
export interface MessageSummary {
  queueId?: string;
  from: string;
  rcpts?: number;
  users: readonly UserSummary[];
  action: string;
  /** For a failure of ours: what failed (the error's message, for the administrator). */
  error?: string;
  /** Users whose filter run never gave an outcome because of that failure. */
  failed?: readonly string[];
  reply?: string;
  /** Why the message took a path of its own (early accept, oversize). */
  note?: string;
  dryRunWouldBe?: string;
  dropped?: readonly string[];
  /** Whole message handling time in milliseconds. */
  ms?: number;
  /** Our own failure that decided the action (internal_errors_total's reason: spool, launcher, runner, lookup, pool_full, other). */
  reason?: string;
  /** Its PUM_ERR_ code. */
  code?: string;
}

/** Keys that are part of the line's frame, not its fields. */
const FRAME_KEYS = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'queueId', 'qid', 'v']);

/** Characters that end a line or fool a terminal or a log parser: C0, DEL, C1, and Unicode's line and paragraph separators. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
const ESCAPES: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeControl(c: string): string {
  return ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/** One word that reads back as itself: no space, quote, equals sign, backslash or control character. */
const PLAIN = /^[^\s"=\\\u0000-\u001f\u007f-\u009f\u2028\u2029]+$/;

/** A value as one field: plain words as they are, anything else double-quoted with `"`, `\` and control characters escaped. */
export function quote(value: string): string {
  if (PLAIN.test(value)) return value;
  return `"${value.replace(/["\\]/g, '\\$&').replace(CONTROL, escapeControl)}"`;
}

function renderValue(value: unknown): string {
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  if (typeof value === 'object' && value !== null && 'message' in value && typeof value.message === 'string') {
    return quote(value.message); // a serialized Error
  }
  // Arrays and objects as JSON, with what JSON leaves raw (DEL, C1, U+2028) escaped too.
  return (JSON.stringify(value) ?? 'undefined').replace(CONTROL, escapeControl);
}

/** Always in quotes (reply texts: they have spaces), escaped like quote(). */
function quoted(value: string): string {
  const q = quote(value);
  return q.startsWith('"') ? q : `"${q}"`;
}

/** `alice=reject(1,12ms)`; `carol=nofilter` when there was no process. */
function userPart(u: UserSummary): string {
  const ran = u.exit !== undefined && u.exit !== null;
  const exit = typeof u.exit === 'number' ? String(u.exit) : quote(String(u.exit));
  const detail = ran ? `(${exit},${Math.round(u.ms ?? 0)}ms)` : u.ms !== undefined && u.ms > 0 ? `(-,${Math.round(u.ms)}ms)` : '';
  return `${quote(String(u.user))}=${quote(String(u.outcome))}${detail}`;
}

/** The body of the per-message line (without time, level and queue id). */
export function formatMessageSummary(s: MessageSummary): string {
  const parts = [`from=${quote(`<${String(s.from).replace(/^<(.*)>$/s, '$1')}>`)}`];
  if (s.rcpts !== undefined) parts.push(`rcpts=${renderValue(s.rcpts)}`);
  for (const u of s.users) parts.push(userPart(u));
  parts.push(`action=${quote(String(s.action))}`);
  if (s.reason) parts.push(`reason=${quote(s.reason)}`);
  if (s.code) parts.push(`code=${quote(s.code)}`);
  if (s.failed && s.failed.length > 0) parts.push(`failed=${quote(s.failed.join(','))}`);
  if (s.error) parts.push(`error=${quoted(s.error)}`);
  if (s.reply) parts.push(`reply=${quoted(s.reply)}`);
  if (s.note) parts.push(`note=${quoted(s.note)}`);
  if (s.dryRunWouldBe) parts.push(`dry_run_would_be=${quote(s.dryRunWouldBe)}`);
  if (s.dropped && s.dropped.length > 0) parts.push(`dropped=${quote(s.dropped.join(','))}`);
  if (s.ms !== undefined) parts.push(`ms=${Math.round(s.ms)}`);
  return parts.join(' ');
}

/** `2026-11-25T10:00:00Z`: second precision, like syslog. */
function isoSeconds(time: unknown): string {
  const d = typeof time === 'number' || typeof time === 'string' ? new Date(time) : new Date();
  return Number.isNaN(d.getTime()) ? String(time) : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function isMessageSummary(o: Record<string, unknown>): boolean {
  return o.event === 'message' && Array.isArray(o.users) && typeof o.action === 'string' && typeof o.from === 'string';
}

/** syslog(3) priorities for pino's levels: what journald reads from a `<N>` prefix. */
export const SYSLOG_PRIORITY: Readonly<Record<number, number>> = { 10: 7, 20: 7, 30: 6, 40: 4, 50: 3, 60: 2 };

/** Postfix's words for lines worse than info. */
const JOURNAL_WORDS: Readonly<Record<number, string>> = { 40: 'warning: ', 50: 'error: ', 60: 'fatal: ' };

export interface TextLineOptions {
  /** Under journald: `<N>` priority prefix, no time of our own, level in words only from warning up. */
  journal?: boolean;
}

/** One pino JSON record -> one text line (with trailing newline). */
export function formatTextLine(record: Record<string, unknown>, options: TextLineOptions = {}): string {
  const levelNumber = record.level as number;
  const level = LEVEL_NAMES[levelNumber] ?? String(record.level);
  const qid = record.queueId ?? record.qid;
  const queue = typeof qid === 'string' && qid !== '' ? `${quote(qid)}: ` : '';
  const prefix = options.journal
    ? `<${SYSLOG_PRIORITY[levelNumber] ?? 6}>${JOURNAL_WORDS[levelNumber] ?? ''}${queue}`
    : `${isoSeconds(record.time)} ${level} ${queue}`;
  let body: string;
  if (isMessageSummary(record)) {
    body = formatMessageSummary(record as unknown as MessageSummary);
  } else {
    const fields = Object.entries(record)
      .filter(([k, v]) => !FRAME_KEYS.has(k) && v !== undefined)
      .map(([k, v]) => `${k}=${renderValue(v)}`);
    body = [typeof record.msg === 'string' ? record.msg : '', ...fields].filter(Boolean).join(' ');
  }
  // One event, one line, whatever a message text carried (filter output, stacks).
  return prefix + body.replace(CONTROL, escapeControl) + '\n';
}
