// Runs in: the milter process (the contract between engine and application: types only).
//
// The contract between the milter engine (src/milter, src/server) and an
// application such as per-user-milter's src/app. The engine owns the wire:
// framing, negotiation, macros, state, replies, PROGRESS, timeouts. The
// application only sees one handler per MTA connection with one method per
// SMTP stage, and answers with a StepResult.
//
// Strings at this boundary are *byte strings*: each character is one byte
// (latin1). Header values, MAIL/RCPT arguments and body chunks are Buffers so
// 8-bit data survives untouched; where we give or take a string, it is
// converted with 'latin1', never UTF-8. Pass a Buffer when in doubt.
import type { ProtocolErrorReason } from './errors.js';

// ---- declaration (drives option negotiation) ------------------------------------

/**
 * The SMTP steps the MTA reports, by the name of the handler method. In this
 * engine "step" means only that: one event a handler method answers
 * (`HandlerStep` adds end of message). The session moves with advance().
 */
export type Step = 'connect' | 'helo' | 'mail' | 'rcpt' | 'data' | 'header' | 'eoh' | 'body' | 'unknown';

/** Stages for which an application may ask the MTA to send a macro list (SMFIM_*). */
export type MacroStage = 'connect' | 'helo' | 'mail' | 'rcpt' | 'data' | 'eoh' | 'eom';

export interface MilterDeclaration {
  /**
   * SMFIF_* bits the application cannot work without (e.g. SMFIF_DELRCPT |
   * SMFIF_ADDHDRS). If the MTA does not offer one of them, negotiation fails
   * and the connection is closed, as libmilter does: the MTA then applies its
   * default action instead of silently losing the feature.
   */
  readonly actions: number;
  /**
   * SMFIF_* bits used when offered, dropped otherwise. SMFIF_SETSYMLIST
   * belongs here: an MTA that does not take macro lists just sends its own.
   */
  readonly optionalActions?: number;
  /** Steps the MTA need not send at all (SMFIP_NO* bits), e.g. ['unknown']. */
  readonly skipSteps?: readonly Step[];
  /**
   * Steps the application promises never to answer (SMFIP_NR_* bits); their
   * handler results are then ignored except errors, which are logged. Leave
   * empty over inet: a milter that does not answer every step makes Postfix
   * stall ~40 ms per message on TCP (Nagle / delayed ACK).
   */
  readonly noReplySteps?: readonly Step[];
  /** Ask for SMFIP_HDR_LEADSPC: header values keep all whitespace after the colon. */
  readonly headerLeadingSpace?: boolean;
  /** Ask for SMFIP_RCPT_REJ: also see recipients the MTA itself rejected ({rcpt_mailer} = error). */
  readonly rejectedRecipients?: boolean;
  /**
   * Macro names wanted per stage, sent in the OPTNEG reply (needs
   * SMFIF_SETSYMLIST). Names as the MTA spells them: 'j', '_', '{daemon_name}'.
   * A stage left out keeps the MTA's configured list.
   */
  readonly macros?: Readonly<Partial<Record<MacroStage, readonly string[]>>>;
}

// ---- results ----------------------------------------------------------------

/**
 * A reply with our own SMTP text: SMFIR_REPLYCODE. `code` is the three-digit
 * 4xx/5xx code; `text` usually starts with an enhanced status code of the same
 * class ('4.5.3 Try again later'). Several lines give a multi-line reply. The
 * engine escapes '%' and refuses CR/LF inside a line (like smfi_setmlreply).
 */
export interface CustomReply {
  readonly code: string;
  readonly text?: string | readonly string[];
}

/**
 * What a stage handler answers. `undefined` (a handler returning nothing) is
 * 'continue'. 'skip' is only meaningful for body chunks when the MTA offered
 * SMFIP_SKIP; elsewhere the engine sends 'continue' instead.
 */
export type StepResult = 'continue' | 'accept' | 'reject' | 'tempfail' | 'discard' | 'skip' | CustomReply;

/** A string or raw bytes; strings are sent as latin1 (one byte per character). */
export type Bytes = string | Buffer;

/** Message changes requested at end of message; sent in order before the final reply. */
export type Modification =
  /** SMFIR_ADDHEADER (needs SMFIF_ADDHDRS): append at the end of the header. */
  | { readonly kind: 'addHeader'; readonly name: string; readonly value: Bytes }
  /** SMFIR_INSHEADER (needs SMFIF_ADDHDRS): insert at 0-based index, 0 = top. */
  | { readonly kind: 'insertHeader'; readonly index: number; readonly name: string; readonly value: Bytes }
  /** SMFIR_CHGHEADER (needs SMFIF_CHGHDRS): the index-th (1-based) `name` header; empty value deletes it. */
  | { readonly kind: 'changeHeader'; readonly index: number; readonly name: string; readonly value: Bytes }
  /** SMFIR_ADDRCPT, or SMFIR_ADDRCPT_PAR when `args` is given (needs SMFIF_ADDRCPT / _PAR). */
  | { readonly kind: 'addRecipient'; readonly recipient: Bytes; readonly args?: Bytes }
  /** SMFIR_DELRCPT (needs SMFIF_DELRCPT): send back the RCPT argv[0] byte for byte. */
  | { readonly kind: 'deleteRecipient'; readonly recipient: Bytes }
  /** SMFIR_QUARANTINE (needs SMFIF_QUARANTINE): non-empty reason. */
  | { readonly kind: 'quarantine'; readonly reason: string }
  /** SMFIR_CHGFROM (needs SMFIF_CHGFROM). */
  | { readonly kind: 'changeSender'; readonly sender: Bytes; readonly args?: Bytes }
  /** SMFIR_REPLBODY (needs SMFIF_CHGBODY): the whole new body, CRLF line ends; the engine splits it into chunks. */
  | { readonly kind: 'replaceBody'; readonly body: Buffer };

/** End of message: a final reply plus the modifications to send before it. */
export interface EomResult {
  readonly reply: StepResult;
  readonly modifications?: readonly Modification[];
}

/** A value or a promise of it: handlers may be sync or async. */
export type MaybePromise<T> = T | Promise<T>;

// ---- per-connection handler -------------------------------------------------

/** Address family of the SMTP client, from SMFIC_CONNECT (SMFIA_*). */
export type ConnectFamily = 'unknown' | 'unix' | 'inet' | 'inet6';

/**
 * One MTA connection's handler. Every method is optional; a missing one
 * answers 'continue'. The engine calls at most one method at a time per
 * connection and waits for it (one command in flight), so a handler needs no
 * locking. A method that throws or rejects makes the engine answer TEMPFAIL
 * (`451 4.3.0 …`), never a reject, and log the error.
 */
export interface MilterHandler {
  /** SMFIC_CONNECT. `address` is '' and `port` 0 for family 'unknown'. IPv6 may come as 'IPv6:…' (Sendmail). */
  connect?(hostname: string, family: ConnectFamily, port: number, address: string): MaybePromise<StepResult | void>;
  /** SMFIC_HELO, for every HELO/EHLO (again after STARTTLS). An open transaction was aborted first. */
  helo?(name: string): MaybePromise<StepResult | void>;
  /** SMFIC_MAIL. args[0] is the sender exactly as the MTA sent it (brackets included), then ESMTP args. */
  mail?(args: readonly Buffer[]): MaybePromise<StepResult | void>;
  /** SMFIC_RCPT. args[0] is the recipient exactly as sent: keep it for DELRCPT. */
  rcpt?(args: readonly Buffer[]): MaybePromise<StepResult | void>;
  /** SMFIC_DATA. */
  data?(): MaybePromise<StepResult | void>;
  /** SMFIC_HEADER: name without the colon; folded lines joined by LF + whitespace. */
  header?(name: string, value: Buffer): MaybePromise<StepResult | void>;
  /** SMFIC_EOH. */
  eoh?(): MaybePromise<StepResult | void>;
  /** SMFIC_BODY: one chunk (≤ 64 KiB, arbitrary boundaries, CRLF line ends). */
  body?(chunk: Buffer): MaybePromise<StepResult | void>;
  /**
   * SMFIC_BODYEOB: the decision. The engine sends SMFIR_PROGRESS every
   * `progressInterval` ms while this runs. `context.signal` aborts if the
   * connection goes away meanwhile.
   */
  eom?(): MaybePromise<EomResult | StepResult | void>;
  /** SMFIC_UNKNOWN: an SMTP command the MTA did not know (Postfix: only the verb). */
  unknown?(command: Buffer): MaybePromise<StepResult | void>;
  /**
   * The current transaction is over without (or after) an end of message:
   * SMFIC_ABORT, a new MAIL without ABORT, HELO mid-transaction, QUIT_NC.
   * Free per-message resources (spool file). May be called when no
   * transaction is open; must be idempotent. Errors are logged only. Not
   * called for a transaction whose eom() was called: that transaction ends
   * with eom() (also when the connection drops while it runs), so eom()
   * cleans up after itself.
   */
  abort?(): MaybePromise<void>;
  /** The connection is over (QUIT, EOF, error, shutdown). Called once, last. Errors are logged only. */
  close?(): MaybePromise<void>;
}

/** Every step a handler answers: the SMTP steps plus end of message. */
export type HandlerStep = Step | 'eom';

/** One handler method call as data: which method, with which arguments (built by the session, made by the connection). */
export type HandlerCall = {
  readonly [S in HandlerStep]: { readonly step: S; readonly args: Parameters<NonNullable<MilterHandler[S]>> };
}[HandlerStep];

/** Current macros, with libmilter's scoping: the latest stage wins, later stages are cleared by earlier commands. */
export interface MacroReader {
  /** 'i' and '{i}' name the same macro. Value as a byte string, or undefined when the MTA did not send it. */
  get(name: string): string | undefined;
  /** Every visible macro, names without braces for one-letter names as sent. For logs. */
  snapshot(): Record<string, string>;
}

/** What was agreed in OPTNEG. */
export interface NegotiatedOptions {
  readonly version: number;
  /** SMFIF_* bits the milter may use. */
  readonly actions: number;
  /** SMFIP_* bits in force (our no-send/no-reply choices plus capabilities like SKIP). */
  readonly protocol: number;
}

/** Given to the factory: one per MTA connection. */
export interface ConnectionContext {
  /** Server-unique connection number, for logs. */
  readonly id: number;
  /** The MTA's end of the socket ('127.0.0.1:41234' or the unix socket path). */
  readonly peer: string;
  readonly macros: MacroReader;
  readonly negotiated: NegotiatedOptions;
  /** Logger with the connection id bound. */
  readonly log: MilterLogger;
  /** Aborted when the connection ends or the server gives up on it (shutdown grace expired). */
  readonly signal: AbortSignal;
}

export interface MilterApplication {
  readonly declaration: MilterDeclaration;
  /** Called once per connection, after OPTNEG succeeded. */
  createHandler(context: ConnectionContext): MilterHandler;
}

// ---- observability (no metrics library here; the caller wires these) ---------------

/** pino-compatible subset. */
export interface MilterLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child?(bindings: Record<string, unknown>): MilterLogger;
}

/** Why a connection ended. */
export type CloseReason = 'quit' | 'eof' | 'protocol-error' | 'idle-timeout' | 'shutdown' | 'refused' | 'socket-error';

/** Callbacks for metrics; each optional, each must not throw (errors are swallowed and logged). */
export interface MilterEvents {
  connectionOpened?(info: { id: number; peer: string }): void;
  /** Also called for connections refused because of maxConnections (reason 'refused'). */
  connectionClosed?(info: { id: number; peer: string; reason: CloseReason; durationMs: number }): void;
  protocolError?(info: { id: number; reason: ProtocolErrorReason; message: string }): void;
  /** A handler method threw or rejected; the engine answered TEMPFAIL. */
  handlerError?(info: { id: number; step: HandlerStep | 'abort' | 'close'; error: unknown }): void;
  /** One SMFIR_PROGRESS was sent while eom() ran. */
  progressSent?(info: { id: number }): void;
}
