// Runs in: every process (pure: no I/O).
//
// The frames between a client (a worker thread, the milter process) and the
// native launcher (native/README.md has the table):
//   u32 BE length of the rest | u8 type | fields,  field = u8 tag | u32 BE length | bytes.
// Numbers travel as ASCII decimal. The launcher parses strictly and closes a
// connection on anything malformed; this side encodes only what it means to
// send and decodes the answers just as strictly.

export const MSG = { RUN: 1, STAT: 2, DONE: 0x81, NOTRUN: 0x82, FAILED: 0x83, CHECKED: 0x84 } as const;

export const TAG = {
  id: 1, program: 2, user: 4, uid: 5, spool: 9, env: 10,
  what: 32, exit: 33, signal: 34, timedOut: 35, killed: 36, wallMs: 37, stdout: 38, stderr: 39,
  dropped: 40, kind: 41, reason: 42, path: 43, mode: 44, owner: 45, errno: 46, stage: 47, text: 48,
} as const;

/** The launcher closes a connection that sends a frame above this. */
export const MAX_FRAME = 1 << 20;

export type Program = 'filter' | 'rcpt';

/**
 * Who the program is for: a uid, and the name we know it by as a
 * cross-check. The launcher looks the account up itself (home, groups,
 * shell); the sandbox, limits and timeouts are its start-up arguments.
 */
export interface Subject {
  program: Program;
  user: string;
  uid: number;
}

export interface RunRequest extends Subject {
  /** A spool file *name* (msg-…) in the launcher's --spool; absent for `rcpt` (stdin is /dev/null). */
  spool?: string;
  /** NAME=VALUE, the envelope names of docs/reference.md §4 only (the launcher sets HOME, USER, LOGNAME, SHELL, PATH). */
  env: string[];
}

export type Answer =
  | {
      type: 'done';
      id: number;
      what: 'own' | 'default';
      exitCode: number | null;
      signal: number | null;
      timedOut: boolean;
      /** Other processes of the run ended at its end. */
      killed: number;
      wallMs: number;
      stdout: Buffer;
      stderr: Buffer;
      dropped: number;
    }
  | { type: 'notrun'; id: number; kind: 'missing' | 'unsafe' | 'exec'; reason: string; path: string; mode: number; owner: number; errno: number }
  | { type: 'failed'; id: number | null; stage: string; errno: number; text: string }
  | { type: 'checked'; id: number; what: 'own' | 'default' | 'none' | 'unsafe'; reason: string; path: string };

type Field = [tag: number, value: string | number | Buffer];

/** One frame from raw fields (also used by tests to build malformed ones). */
export function frame(type: number, fields: Field[]): Buffer {
  const parts: Buffer[] = [Buffer.alloc(5)];
  for (const [tag, value] of fields) {
    const bytes = Buffer.isBuffer(value) ? value : Buffer.from(String(value), 'utf8');
    const head = Buffer.alloc(5);
    head.writeUInt8(tag, 0);
    head.writeUInt32BE(bytes.length, 1);
    parts.push(head, bytes);
  }
  const out = Buffer.concat(parts);
  out.writeUInt32BE(out.length - 4, 0);
  out.writeUInt8(type, 4);
  return out;
}

function subjectFields(id: number, s: Subject): Field[] {
  return [[TAG.id, id], [TAG.program, s.program], [TAG.user, s.user], [TAG.uid, s.uid]];
}

export function encodeRun(id: number, r: RunRequest): Buffer {
  const fields = subjectFields(id, r);
  if (r.spool !== undefined) fields.push([TAG.spool, r.spool]);
  for (const kv of r.env) fields.push([TAG.env, kv]);
  return frame(MSG.RUN, fields);
}

export function encodeStat(id: number, s: Subject): Buffer {
  return frame(MSG.STAT, subjectFields(id, s));
}

/** Splits a byte stream into frame bodies (type byte + fields). */
export class FrameSplitter {
  #buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: Buffer[] = [];
    while (this.#buf.length >= 4) {
      const len = this.#buf.readUInt32BE(0);
      if (len === 0) throw new Error('launcher protocol: empty frame');
      if (this.#buf.length < 4 + len) break;
      out.push(this.#buf.subarray(4, 4 + len));
      this.#buf = this.#buf.subarray(4 + len);
    }
    return out;
  }
}

function fieldsOf(body: Buffer): Map<number, Buffer> {
  const m = new Map<number, Buffer>();
  for (let at = 1; at < body.length; ) {
    if (body.length - at < 5) throw new Error('launcher protocol: truncated field');
    const tag = body.readUInt8(at);
    const len = body.readUInt32BE(at + 1);
    if (at + 5 + len > body.length) throw new Error('launcher protocol: field past the frame');
    if (m.has(tag)) throw new Error(`launcher protocol: repeated field ${tag}`);
    m.set(tag, body.subarray(at + 5, at + 5 + len));
    at += 5 + len;
  }
  return m;
}

/** Decodes one answer body; throws on anything the launcher never sends. */
export function decodeAnswer(body: Buffer): Answer {
  const f = fieldsOf(body);
  const str = (tag: number): string => {
    const v = f.get(tag);
    if (v === undefined) throw new Error(`launcher protocol: missing field ${tag}`);
    return v.toString('utf8');
  };
  const num = (tag: number): number => {
    const s = str(tag);
    if (!/^(0|[1-9]\d{0,15})$/.test(s)) throw new Error(`launcher protocol: field ${tag} is not a number`);
    return Number(s);
  };
  const opt = (tag: number): number | null => (f.has(tag) ? num(tag) : null);
  switch (body.readUInt8(0)) {
    case MSG.DONE: {
      const what = str(TAG.what);
      if (what !== 'own' && what !== 'default') throw new Error('launcher protocol: bad what');
      return {
        type: 'done', id: num(TAG.id), what, exitCode: opt(TAG.exit), signal: opt(TAG.signal), timedOut: num(TAG.timedOut) === 1,
        killed: num(TAG.killed), wallMs: num(TAG.wallMs), stdout: f.get(TAG.stdout) ?? Buffer.alloc(0),
        stderr: f.get(TAG.stderr) ?? Buffer.alloc(0), dropped: num(TAG.dropped),
      };
    }
    case MSG.NOTRUN: {
      const kind = str(TAG.kind);
      if (kind !== 'missing' && kind !== 'unsafe' && kind !== 'exec') throw new Error('launcher protocol: bad kind');
      return { type: 'notrun', id: num(TAG.id), kind, reason: str(TAG.reason), path: str(TAG.path), mode: num(TAG.mode), owner: num(TAG.owner), errno: num(TAG.errno) };
    }
    case MSG.FAILED:
      return { type: 'failed', id: opt(TAG.id), stage: str(TAG.stage), errno: num(TAG.errno), text: str(TAG.text) };
    case MSG.CHECKED: {
      const what = str(TAG.what);
      if (what !== 'own' && what !== 'default' && what !== 'none' && what !== 'unsafe') throw new Error('launcher protocol: bad what');
      return { type: 'checked', id: num(TAG.id), what, reason: f.has(TAG.reason) ? str(TAG.reason) : '', path: f.has(TAG.path) ? str(TAG.path) : '' };
    }
    default:
      throw new Error(`launcher protocol: unknown answer type ${body.readUInt8(0)}`);
  }
}
