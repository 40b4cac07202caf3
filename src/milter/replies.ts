// Runs in: the milter process and the in-repo client (pure).
//
// SMFIR_* responses (milter -> MTA): encoded by the server, decoded by the
// in-repo client. Also the SMTP reply text rules for SMFIR_REPLYCODE.
import {
  MILTER_CHUNK_SIZE,
  MILTER_OPTLEN,
  REPLY_NAMES,
  SMFIR_ACCEPT,
  SMFIR_ADDHEADER,
  SMFIR_ADDRCPT,
  SMFIR_ADDRCPT_PAR,
  SMFIR_CHGFROM,
  SMFIR_CHGHEADER,
  SMFIR_CONN_FAIL,
  SMFIR_CONTINUE,
  SMFIR_DELRCPT,
  SMFIR_DISCARD,
  SMFIR_INSHEADER,
  SMFIR_OPTNEG,
  SMFIR_PROGRESS,
  SMFIR_QUARANTINE,
  SMFIR_REJECT,
  SMFIR_REPLBODY,
  SMFIR_REPLYCODE,
  SMFIR_SHUTDOWN,
  SMFIR_SKIP,
  SMFIR_TEMPFAIL,
} from './constants.js';
import { MilterProtocolError, MilterReplyError } from './errors.js';
import { cString, encodeFrame, splitCStrings, type Frame } from './frame.js';

/** One macro list in the OPTNEG reply: an SMFIM_* stage and space-separated names. */
export interface MacroList {
  readonly stage: number;
  readonly names: string;
}

export type Reply =
  | { readonly type: 'optneg'; readonly version: number; readonly actions: number; readonly protocol: number; readonly macroLists: readonly MacroList[] }
  | { readonly type: 'continue' }
  | { readonly type: 'accept' }
  | { readonly type: 'reject' }
  | { readonly type: 'tempfail' }
  | { readonly type: 'discard' }
  | { readonly type: 'skip' }
  | { readonly type: 'progress' }
  | { readonly type: 'shutdown' }
  | { readonly type: 'conn_fail' }
  /** SMFIR_REPLYCODE; `text` is the whole SMTP reply ('550 5.7.1 No'), as built by formatSmtpReply. */
  | { readonly type: 'replycode'; readonly text: string }
  | { readonly type: 'addheader'; readonly name: string; readonly value: Buffer }
  | { readonly type: 'insheader'; readonly index: number; readonly name: string; readonly value: Buffer }
  | { readonly type: 'chgheader'; readonly index: number; readonly name: string; readonly value: Buffer }
  | { readonly type: 'addrcpt'; readonly recipient: Buffer }
  | { readonly type: 'addrcpt_par'; readonly recipient: Buffer; readonly args: Buffer | null }
  | { readonly type: 'delrcpt'; readonly recipient: Buffer }
  | { readonly type: 'quarantine'; readonly reason: string }
  | { readonly type: 'chgfrom'; readonly sender: Buffer; readonly args: Buffer | null }
  | { readonly type: 'replbody'; readonly chunk: Buffer };

export type ReplyType = Reply['type'];

/** Replies that end the MTA's wait for one command. The rest (modifications, progress) come before one of these. */
const FINAL: ReadonlySet<ReplyType> = new Set<ReplyType>(['continue', 'accept', 'reject', 'tempfail', 'discard', 'skip', 'replycode', 'shutdown', 'conn_fail']);

export function isFinalReply(reply: Reply): boolean {
  return FINAL.has(reply.type);
}

/** The canonical no-data packets, built once: CONTINUE is `00 00 00 01 63`. */
const SIMPLE_PACKETS = {
  continue: encodeFrame(SMFIR_CONTINUE),
  accept: encodeFrame(SMFIR_ACCEPT),
  reject: encodeFrame(SMFIR_REJECT),
  tempfail: encodeFrame(SMFIR_TEMPFAIL),
  discard: encodeFrame(SMFIR_DISCARD),
  skip: encodeFrame(SMFIR_SKIP),
  progress: encodeFrame(SMFIR_PROGRESS),
  shutdown: encodeFrame(SMFIR_SHUTDOWN),
  conn_fail: encodeFrame(SMFIR_CONN_FAIL),
} as const;

function u32(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(value >>> 0, 0);
  return b;
}

function checkIndex(index: number): void {
  if (!Number.isInteger(index) || index < 0 || index > 0xffffffff) throw new MilterReplyError(`header index must be a uint32, got ${index}`);
}

function checkNoNul(what: string, value: Buffer | string): void {
  if ((typeof value === 'string' ? value.indexOf('\0') : value.indexOf(0)) >= 0) {
    throw new MilterReplyError(`${what} must not contain NUL`);
  }
}

/**
 * Encodes one reply as one packet. The caller chunks REPLBODY (replyBodyChunks);
 * a string with a NUL inside would cut the C string short, so it is refused.
 */
export function encodeReply(reply: Reply): Buffer {
  switch (reply.type) {
    case 'continue':
    case 'accept':
    case 'reject':
    case 'tempfail':
    case 'discard':
    case 'skip':
    case 'progress':
    case 'shutdown':
    case 'conn_fail':
      return SIMPLE_PACKETS[reply.type];
    case 'optneg': {
      const parts = [u32(reply.version), u32(reply.actions), u32(reply.protocol)];
      for (const list of reply.macroLists) {
        checkNoNul('macro list', list.names);
        parts.push(u32(list.stage), cString(list.names));
      }
      return encodeFrame(SMFIR_OPTNEG, ...parts);
    }
    case 'replycode':
      checkNoNul('reply text', reply.text);
      return encodeFrame(SMFIR_REPLYCODE, cString(reply.text));
    case 'addheader':
      checkNoNul('header name', reply.name);
      checkNoNul('header value', reply.value);
      return encodeFrame(SMFIR_ADDHEADER, cString(reply.name), cString(reply.value));
    case 'insheader':
    case 'chgheader':
      checkIndex(reply.index);
      checkNoNul('header name', reply.name);
      checkNoNul('header value', reply.value);
      return encodeFrame(reply.type === 'insheader' ? SMFIR_INSHEADER : SMFIR_CHGHEADER, u32(reply.index), cString(reply.name), cString(reply.value));
    case 'addrcpt':
      checkNoNul('recipient', reply.recipient);
      return encodeFrame(SMFIR_ADDRCPT, cString(reply.recipient));
    case 'addrcpt_par':
      checkNoNul('recipient', reply.recipient);
      if (reply.args) checkNoNul('recipient arguments', reply.args);
      return reply.args
        ? encodeFrame(SMFIR_ADDRCPT_PAR, cString(reply.recipient), cString(reply.args))
        : encodeFrame(SMFIR_ADDRCPT_PAR, cString(reply.recipient));
    case 'delrcpt':
      checkNoNul('recipient', reply.recipient);
      return encodeFrame(SMFIR_DELRCPT, cString(reply.recipient));
    case 'quarantine':
      checkNoNul('quarantine reason', reply.reason);
      if (reply.reason.length === 0) throw new MilterReplyError('quarantine reason must not be empty');
      return encodeFrame(SMFIR_QUARANTINE, cString(reply.reason));
    case 'chgfrom':
      checkNoNul('sender', reply.sender);
      if (reply.args) checkNoNul('sender arguments', reply.args);
      return reply.args ? encodeFrame(SMFIR_CHGFROM, cString(reply.sender), cString(reply.args)) : encodeFrame(SMFIR_CHGFROM, cString(reply.sender));
    case 'replbody':
      if (reply.chunk.length > MILTER_CHUNK_SIZE) throw new MilterReplyError(`REPLBODY chunk of ${reply.chunk.length} bytes exceeds ${MILTER_CHUNK_SIZE}`);
      return encodeFrame(SMFIR_REPLBODY, reply.chunk);
    default: {
      const never: never = reply;
      throw new Error(`unhandled reply ${JSON.stringify(never)}`);
    }
  }
}

/** A whole new body as REPLBODY replies of at most MILTER_CHUNK_SIZE bytes each (at least one, even for an empty body). */
export function replyBodyChunks(body: Buffer): Reply[] {
  const out: Reply[] = [];
  for (let at = 0; at < body.length; at += MILTER_CHUNK_SIZE) out.push({ type: 'replbody', chunk: body.subarray(at, at + MILTER_CHUNK_SIZE) });
  if (out.length === 0) out.push({ type: 'replbody', chunk: body });
  return out;
}

function badReply(code: number, what: string): MilterProtocolError {
  return new MilterProtocolError('bad-payload', `${REPLY_NAMES[code] ?? `0x${code.toString(16)}`}: ${what}`);
}

function replyStrings(frame: Frame, min: number, max: number): Buffer[] {
  const parts = splitCStrings(frame.data);
  if (!parts) throw badReply(frame.code, 'string not NUL-terminated');
  if (parts.length < min || parts.length > max) throw badReply(frame.code, `expected ${min}..${max} strings, got ${parts.length}`);
  return parts;
}

function indexed(frame: Frame): { index: number; name: string; value: Buffer } {
  if (frame.data.length < 4) throw badReply(frame.code, 'no header index');
  const parts = splitCStrings(frame.data.subarray(4));
  if (!parts || parts.length !== 2) throw badReply(frame.code, 'expected name and value');
  return { index: frame.data.readUInt32BE(0), name: (parts[0] as Buffer).toString('latin1'), value: parts[1] as Buffer };
}

/** Decodes one reply from a milter (client side). Throws MilterProtocolError. */
export function decodeReply(frame: Frame): Reply {
  const { code, data } = frame;
  switch (code) {
    case SMFIR_OPTNEG: {
      if (data.length < MILTER_OPTLEN) throw badReply(code, `expected at least ${MILTER_OPTLEN} data bytes, got ${data.length}`);
      const macroLists: MacroList[] = [];
      let at = MILTER_OPTLEN;
      while (at < data.length) {
        if (data.length - at < 5) throw badReply(code, 'truncated macro list');
        const stage = data.readUInt32BE(at);
        const nul = data.indexOf(0, at + 4);
        if (nul < 0) throw badReply(code, 'macro list not NUL-terminated');
        macroLists.push({ stage, names: data.toString('latin1', at + 4, nul) });
        at = nul + 1;
      }
      return { type: 'optneg', version: data.readUInt32BE(0), actions: data.readUInt32BE(4), protocol: data.readUInt32BE(8), macroLists };
    }
    case SMFIR_CONTINUE:
      return { type: 'continue' };
    case SMFIR_ACCEPT:
      return { type: 'accept' };
    case SMFIR_REJECT:
      return { type: 'reject' };
    case SMFIR_TEMPFAIL:
      return { type: 'tempfail' };
    case SMFIR_DISCARD:
      return { type: 'discard' };
    case SMFIR_SKIP:
      return { type: 'skip' };
    case SMFIR_PROGRESS:
      return { type: 'progress' };
    case SMFIR_SHUTDOWN:
      return { type: 'shutdown' };
    case SMFIR_CONN_FAIL:
      return { type: 'conn_fail' };
    case SMFIR_REPLYCODE:
      return { type: 'replycode', text: (replyStrings(frame, 1, 1)[0] as Buffer).toString('latin1') };
    case SMFIR_ADDHEADER: {
      const [name, value] = replyStrings(frame, 2, 2) as [Buffer, Buffer];
      return { type: 'addheader', name: name.toString('latin1'), value };
    }
    case SMFIR_INSHEADER:
      return { type: 'insheader', ...indexed(frame) };
    case SMFIR_CHGHEADER:
      return { type: 'chgheader', ...indexed(frame) };
    case SMFIR_ADDRCPT:
      return { type: 'addrcpt', recipient: replyStrings(frame, 1, 1)[0] as Buffer };
    case SMFIR_ADDRCPT_PAR: {
      const parts = replyStrings(frame, 1, 2);
      return { type: 'addrcpt_par', recipient: parts[0] as Buffer, args: parts[1] ?? null };
    }
    case SMFIR_DELRCPT:
      return { type: 'delrcpt', recipient: replyStrings(frame, 1, 1)[0] as Buffer };
    case SMFIR_QUARANTINE:
      return { type: 'quarantine', reason: (replyStrings(frame, 1, 1)[0] as Buffer).toString('latin1') };
    case SMFIR_CHGFROM: {
      const parts = replyStrings(frame, 1, 2);
      return { type: 'chgfrom', sender: parts[0] as Buffer, args: parts[1] ?? null };
    }
    case SMFIR_REPLBODY:
      return { type: 'replbody', chunk: data };
    default:
      throw new MilterProtocolError('unknown-command', `unknown reply byte 0x${code.toString(16).padStart(2, '0')}`);
  }
}

// ---- SMTP reply text (SMFIR_REPLYCODE) ----------------------------------------

/** libmilter's limits (smfi.c): text bytes per line and lines per reply. */
export const MAX_REPLY_LINE = 980;
export const MAX_REPLY_LINES = 32;

/** An RFC 3463 enhanced status code at the start of a line (`5.7.1`, then a space or the end), and its class digit. */
export function leadingEnhancedCode(line: string): { readonly code: string; readonly klass: string } | undefined {
  const m = /^([245])\.\d{1,3}\.\d{1,3}(?= |$)/.exec(line);
  return m ? { code: m[0], klass: m[1] as string } : undefined;
}

/**
 * Builds the SMFIR_REPLYCODE string from a 3-digit 4xx/5xx code and one or
 * more lines, like smfi_setmlreply: `550-5.7.1 a\r\n550 5.7.1 b`.
 * - Every '%' is doubled: Sendmail uses the text as a format string (a lone
 *   '%' makes it drop our text) and Postfix turns '%%' back into '%'. So the
 *   application writes plain text and never escapes itself.
 * - CR, LF and NUL inside a line are refused, as are lines above 980 bytes
 *   and more than 32 lines (libmilter's limits).
 * - An enhanced status code must have the class of the reply code (Postfix
 *   calls `550 4.x.x` malformed). When the first line has one and a later
 *   line has none, the later line gets the same (libmilter repeats xcode).
 * - No text at all gives `<code> <class>.0.0`.
 * Throws MilterReplyError.
 */
export function formatSmtpReply(code: string, text?: string | readonly string[]): string {
  if (!/^[45]\d\d$/.test(code)) throw new MilterReplyError(`SMTP reply code must be 4xx or 5xx, got ${JSON.stringify(code)}`);
  const klass = code[0] as string;
  const lines = text === undefined ? [] : typeof text === 'string' ? [text] : [...text];
  if (lines.length === 0) lines.push(`${klass}.0.0`);
  if (lines.length > MAX_REPLY_LINES) throw new MilterReplyError(`reply has ${lines.length} lines, at most ${MAX_REPLY_LINES} allowed`);
  let firstEnhanced: string | undefined;
  const out: string[] = [];
  lines.forEach((raw, i) => {
    if (/[\r\n\0]/.test(raw)) throw new MilterReplyError('reply line must not contain CR, LF or NUL');
    let line = raw;
    const enhanced = leadingEnhancedCode(line);
    if (enhanced) {
      if (enhanced.klass !== klass) throw new MilterReplyError(`enhanced status ${enhanced.code} does not match reply code ${code}`);
      if (i === 0) firstEnhanced = enhanced.code;
    } else if (i > 0 && firstEnhanced) {
      line = line.length > 0 ? `${firstEnhanced} ${line}` : firstEnhanced;
    }
    line = line.replace(/%/g, '%%');
    if (Buffer.byteLength(line, 'latin1') > MAX_REPLY_LINE) throw new MilterReplyError(`reply line longer than ${MAX_REPLY_LINE} bytes`);
    const separator = i === lines.length - 1 ? ' ' : '-';
    out.push(`${code}${separator}${line}`);
  });
  return out.join('\r\n');
}
