// The `text` log format: one line per event, like other milters' syslog
// lines, with the queue id in front:
//
//   2026-11-25T10:00:00Z info 4Xb1Yz0abc: from=<s@x> rcpts=2 alice=reject(1,12ms) bob=accept(0,8ms) action=reject reply="550 5.7.1 no"
//
// Input is the JSON line pino produced; the output is plain text. Pure.

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
  reply?: string;
  /** Why the message took a path of its own (early accept, oversize, pool full). */
  note?: string;
  dryRunWouldBe?: string;
  dropped?: readonly string[];
  /** Whole message handling time in milliseconds. */
  ms?: number;
}

/** Keys that are part of the line's frame, not its fields. */
const FRAME_KEYS = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'queueId', 'qid', 'v']);

/** Quotes a value when it would not read back as one word. */
export function quote(value: string): string {
  return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
}

function renderValue(value: unknown): string {
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  if (typeof value === 'object' && value !== null && 'message' in value && typeof value.message === 'string') {
    return quote(value.message); // a serialized Error
  }
  return JSON.stringify(value) ?? 'undefined';
}

/** `alice=reject(1,12ms)`; `carol=nofilter` when there was no process. */
function userPart(u: UserSummary): string {
  const ran = u.exit !== undefined && u.exit !== null;
  const detail = ran ? `(${u.exit},${Math.round(u.ms ?? 0)}ms)` : u.ms !== undefined && u.ms > 0 ? `(-,${Math.round(u.ms)}ms)` : '';
  return `${quote(u.user)}=${u.outcome}${detail}`;
}

/** The body of the per-message line (without time, level and queue id). */
export function formatMessageSummary(s: MessageSummary): string {
  const parts = [`from=<${s.from.replace(/^<(.*)>$/, '$1')}>`];
  if (s.rcpts !== undefined) parts.push(`rcpts=${s.rcpts}`);
  for (const u of s.users) parts.push(userPart(u));
  parts.push(`action=${s.action}`);
  if (s.reply) parts.push(`reply=${JSON.stringify(s.reply)}`);
  if (s.note) parts.push(`note=${JSON.stringify(s.note)}`);
  if (s.dryRunWouldBe) parts.push(`dry_run_would_be=${s.dryRunWouldBe}`);
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

/** One pino JSON record -> one text line (with trailing newline). */
export function formatTextLine(record: Record<string, unknown>): string {
  const level = LEVEL_NAMES[record.level as number] ?? String(record.level);
  const qid = record.queueId ?? record.qid;
  const prefix = `${isoSeconds(record.time)} ${level} ${typeof qid === 'string' && qid !== '' ? `${qid}: ` : ''}`;
  let body: string;
  if (isMessageSummary(record)) {
    body = formatMessageSummary(record as unknown as MessageSummary);
  } else {
    const fields = Object.entries(record)
      .filter(([k, v]) => !FRAME_KEYS.has(k) && v !== undefined)
      .map(([k, v]) => `${k}=${renderValue(v)}`);
    body = [typeof record.msg === 'string' ? record.msg : '', ...fields].filter(Boolean).join(' ');
  }
  // One event, one line: embedded newlines (filter output, stacks) are escaped.
  return prefix + body.replace(/\r?\n/g, '\\n') + '\n';
}
