// Runs in: every process (pure).
//
// per-user-milter's own failures (docs/reference.md §5.6): one class, one
// stable code per kind of failure. A code survives every boundary as plain
// data ({ code, message }: worker thread -> runner process -> milter
// process), names the `reason` label of `internal_errors_total`, and maps to
// exactly one `451 4.3.x` reply. None of them is ever a user's outcome, and
// none ever turns into accept or reject: the MTA keeps the mail and retries.

/** The `reason` label of per_user_milter_internal_errors_total. */
export type InternalReason = 'spool' | 'launcher' | 'runner' | 'lookup' | 'pool_full' | 'other';

export const INTERNAL_REASONS: readonly InternalReason[] = ['spool', 'launcher', 'runner', 'lookup', 'pool_full', 'other'];

/** A 4xx SMTP reply: three-digit code and text (which starts with the enhanced status code). */
export interface TempfailReply {
  readonly code: '451';
  readonly text: string;
}

const LOCAL_PROBLEM: TempfailReply = { code: '451', text: '4.3.0 Temporary local problem in per-recipient filtering, try again later' };
const STORAGE_FULL: TempfailReply = { code: '451', text: '4.3.1 Mail system full, try again later' };
const BUSY: TempfailReply = { code: '451', text: '4.3.2 Per-recipient filters busy, try again later' };

/** Every code, what it means, its metric reason and its reply. */
export const ERROR_CODES = {
  /** The spool file could not be created or written (disk full, I/O error). */
  PUM_ERR_SPOOL_WRITE: { reason: 'spool', reply: STORAGE_FULL },
  /** The spooled message could not be opened or read back for a filter run. */
  PUM_ERR_SPOOL_UNREADABLE: { reason: 'spool', reply: LOCAL_PROBLEM },
  /** The launcher could not start a filter (set-up failed), refused the request, or is gone. */
  PUM_ERR_LAUNCHER: { reason: 'launcher', reply: LOCAL_PROBLEM },
  /** The filter runner process ended, or gave no answer in time, while it held the run. */
  PUM_ERR_RUNNER_GONE: { reason: 'runner', reply: LOCAL_PROBLEM },
  /** Too many filter runs are waiting: a new message is deferred (pool.maxQueue). */
  PUM_ERR_POOL_FULL: { reason: 'pool_full', reply: BUSY },
  /** The user directory (NSS, passwd file) failed with an error rather than "no such user". */
  PUM_ERR_USER_LOOKUP: { reason: 'lookup', reply: LOCAL_PROBLEM },
  /** A recipient or alias table failed to answer (postmap, a file that does not parse). */
  PUM_ERR_TABLE: { reason: 'lookup', reply: LOCAL_PROBLEM },
  /** Anything else: a bug, an unexpected exception. */
  PUM_ERR_INTERNAL: { reason: 'other', reply: LOCAL_PROBLEM },
} as const satisfies Record<string, { reason: InternalReason; reply: TempfailReply }>;

export type PumErrorCode = keyof typeof ERROR_CODES;

export function isPumErrorCode(v: unknown): v is PumErrorCode {
  return typeof v === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, v);
}

/** One of our own failures. `message` is for the log, never for the SMTP client. */
export class PumError extends Error {
  override readonly name = 'PumError';
  constructor(
    readonly code: PumErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get reason(): InternalReason {
    return ERROR_CODES[this.code].reason;
  }

  /** As plain data, for a boundary (JSON line, structured clone). */
  toJSON(): SerializedError {
    return { code: this.code, message: this.message };
  }
}

/** What crosses a process or thread boundary. */
export interface SerializedError {
  code: PumErrorCode;
  message: string;
}

/**
 * Any thrown value as a PumError: PumErrors as they are, anything else
 * (a bug, a library's exception) as PUM_ERR_INTERNAL with its message.
 */
export function toPumError(err: unknown): PumError {
  if (err instanceof PumError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new PumError('PUM_ERR_INTERNAL', message, { cause: err });
}

/** Back from plain data; an unknown or missing code becomes PUM_ERR_INTERNAL. */
export function fromSerialized(v: unknown): PumError {
  const o = (typeof v === 'object' && v !== null ? v : {}) as { code?: unknown; message?: unknown };
  const message = typeof o.message === 'string' ? o.message : 'unknown error';
  return new PumError(isPumErrorCode(o.code) ? o.code : 'PUM_ERR_INTERNAL', message);
}

/** The one reply for a code: always `451 4.3.x`. */
export function errorReply(code: PumErrorCode): TempfailReply {
  return ERROR_CODES[code].reply;
}

/** `451 4.3.0 text` as one string (logs, docs). */
export function errorReplyLine(code: PumErrorCode): string {
  const r = errorReply(code);
  return `${r.code} ${r.text}`;
}
