// One MTA connection: bytes in -> frames -> commands -> session.step() ->
// effects (handler calls, replies) -> bytes out.
//
// Backpressure by construction: one command in flight. While a handler's
// answer is pending the socket is paused, so the kernel buffer fills and the
// MTA waits; nothing is buffered without bound. Every reply packet is one
// Buffer written with one socket.write() (miltertest reads the 5-byte header
// with a single read() and fails when it arrives in pieces).
import type { Socket } from 'node:net';
import type {
  ConnectionContext,
  CustomReply,
  EomResult,
  MilterApplication,
  MilterEvents,
  MilterHandler,
  MilterLogger,
  Modification,
  NegotiatedOptions,
  CloseReason,
  StepResult,
} from '../milter/application.js';
import { decodeCommand, type Command } from '../milter/commands.js';
import {
  SMFIF_ADDHDRS,
  SMFIF_ADDRCPT,
  SMFIF_ADDRCPT_PAR,
  SMFIF_CHGBODY,
  SMFIF_CHGFROM,
  SMFIF_CHGHDRS,
  SMFIF_DELRCPT,
  SMFIF_QUARANTINE,
  SMFIP_SKIP,
} from '../milter/constants.js';
import { MilterProtocolError, MilterReplyError } from '../milter/errors.js';
import { FrameDecoder } from '../milter/frame.js';
import { MacroStore } from '../milter/macros.js';
import { encodeReply, formatSmtpReply, replyBodyChunks, type Reply } from '../milter/replies.js';
import { inTransaction, initialState, step, type Effect, type HandlerStep, type SessionState } from '../milter/session.js';
import { toBuffer } from '../milter/bytes.js';

export interface ConnectionSettings {
  readonly application: MilterApplication;
  readonly log: MilterLogger;
  readonly events: MilterEvents;
  readonly maxFrameLength: number;
  readonly progressInterval: number;
  readonly idleTimeout: number;
  /** Answer when a handler throws: a tempfail, never a reject. */
  readonly errorReply: CustomReply;
  /** Answer to the next command of an open transaction during shutdown. */
  readonly shutdownReply: CustomReply;
  /** Set for connections beyond maxConnections: negotiate, answer the first step with this, close. */
  readonly refuseReply?: CustomReply;
}

type MaybePromise<T> = T | Promise<T>;

function isThenable<T>(value: unknown): value is PromiseLike<T> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** Keeps an observer's exception from breaking the connection. */
function safely(log: MilterLogger, what: string, fn: () => void): void {
  try {
    fn();
  } catch (error) {
    log.warn({ err: error }, `${what} callback threw`);
  }
}

/** The action flag each modification needs (libmilter refuses to send without it). */
function requiredAction(mod: Modification): number {
  switch (mod.kind) {
    case 'addHeader':
    case 'insertHeader':
      return SMFIF_ADDHDRS;
    case 'changeHeader':
      return SMFIF_CHGHDRS;
    case 'addRecipient':
      return mod.args === undefined ? SMFIF_ADDRCPT : SMFIF_ADDRCPT_PAR;
    case 'deleteRecipient':
      return SMFIF_DELRCPT;
    case 'quarantine':
      return SMFIF_QUARANTINE;
    case 'changeSender':
      return SMFIF_CHGFROM;
    case 'replaceBody':
      return SMFIF_CHGBODY;
    default: {
      const never: never = mod;
      throw new MilterReplyError(`unknown modification ${JSON.stringify(never)}`);
    }
  }
}

/** Modification -> wire replies. Throws MilterReplyError if it was not negotiated or is malformed. */
export function modificationReplies(mod: Modification, negotiated: NegotiatedOptions): Reply[] {
  const needed = requiredAction(mod);
  if ((negotiated.actions & needed) === 0) {
    throw new MilterReplyError(`modification ${mod.kind} needs action 0x${needed.toString(16)}, not negotiated`);
  }
  switch (mod.kind) {
    case 'addHeader':
      return [{ type: 'addheader', name: mod.name, value: toBuffer(mod.value) }];
    case 'insertHeader':
      return [{ type: 'insheader', index: mod.index, name: mod.name, value: toBuffer(mod.value) }];
    case 'changeHeader':
      return [{ type: 'chgheader', index: mod.index, name: mod.name, value: toBuffer(mod.value) }];
    case 'addRecipient':
      return mod.args === undefined
        ? [{ type: 'addrcpt', recipient: toBuffer(mod.recipient) }]
        : [{ type: 'addrcpt_par', recipient: toBuffer(mod.recipient), args: toBuffer(mod.args) }];
    case 'deleteRecipient':
      return [{ type: 'delrcpt', recipient: toBuffer(mod.recipient) }];
    case 'quarantine':
      return [{ type: 'quarantine', reason: mod.reason }];
    case 'changeSender':
      return [{ type: 'chgfrom', sender: toBuffer(mod.sender), args: mod.args === undefined ? null : toBuffer(mod.args) }];
    case 'replaceBody':
      return replyBodyChunks(mod.body);
  }
}

/** StepResult -> the final reply for one step. Throws MilterReplyError for a bad custom reply. */
export function finalReply(result: StepResult | void, stepName: HandlerStep, negotiated: NegotiatedOptions): Reply {
  if (result === undefined || result === 'continue') return { type: 'continue' };
  if (typeof result === 'object') return { type: 'replycode', text: formatSmtpReply(result.code, result.text) };
  switch (result) {
    case 'accept':
    case 'reject':
    case 'tempfail':
    case 'discard':
      return { type: result };
    case 'skip':
      // SKIP only means something for body chunks, and only if the MTA offered it.
      return stepName === 'body' && (negotiated.protocol & SMFIP_SKIP) !== 0 ? { type: 'skip' } : { type: 'continue' };
    default:
      throw new MilterReplyError(`unknown step result ${JSON.stringify(result)}`);
  }
}

function isEomResult(value: unknown): value is EomResult {
  return typeof value === 'object' && value !== null && 'reply' in value;
}

let nextId = 1;

export class MilterConnection {
  readonly id = nextId++;
  readonly peer: string;
  readonly openedAt = Date.now();
  /** Resolves when the connection is closed and the handler's abort/close have run. */
  readonly closed: Promise<void>;

  private readonly log: MilterLogger;
  private readonly decoder: FrameDecoder;
  private readonly macros = new MacroStore();
  /** Made on first use of `context.signal`: most handlers never look, and an abort() costs a DOMException with a stack trace. */
  private abortController: AbortController | undefined;
  private state: SessionState;
  private handler: MilterHandler = {};
  private handlerFailure: unknown = undefined;
  private negotiatedOptions: NegotiatedOptions = { version: 0, actions: 0, protocol: 0 };
  private running = false;
  /** A handler call (or abort notification) is in progress. */
  private inFlight: Promise<unknown> | undefined;
  /** The in-flight call still owes the MTA a final reply. */
  private replyOwed = false;
  private draining = false;
  /** Sends SMFIR_PROGRESS while eom() runs. */
  private progressTimer: NodeJS.Timeout | undefined;
  private isClosed = false;
  private resolveClosed!: () => void;

  constructor(
    private readonly socket: Socket,
    private readonly settings: ConnectionSettings,
  ) {
    this.peer = socket.remoteAddress !== undefined ? `${socket.remoteAddress}:${socket.remotePort}` : socket.localAddress ?? 'unix';
    this.log = settings.log.child ? settings.log.child({ conn: this.id }) : settings.log;
    this.decoder = new FrameDecoder({ maxFrameLength: settings.maxFrameLength });
    this.state = initialState(settings.application.declaration);
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** Whether a handler is working on a command right now. */
  get busy(): boolean {
    return this.inFlight !== undefined;
  }

  get phase(): SessionState['phase'] {
    return this.state.phase;
  }

  start(): void {
    const { socket } = this;
    socket.setNoDelay(true);
    socket.setTimeout(this.settings.idleTimeout);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('timeout', () => {
      // A slow handler is not idleness: eom sends PROGRESS, other steps are bounded by the MTA.
      if (!this.busy) this.close('idle-timeout');
    });
    socket.on('error', (error) => {
      this.log.debug({ err: error }, 'socket error');
      this.close('socket-error');
    });
    socket.on('close', () => this.close('eof'));
  }

  /** Graceful shutdown: finish the command in flight, close between transactions, tempfail open ones. */
  drain(): void {
    this.draining = true;
    if (!this.busy && !inTransaction(this.state.phase)) this.close('shutdown');
  }

  /** Grace period over: answer what is still owed with a tempfail and hang up. */
  forceClose(): void {
    if (this.isClosed) return;
    if (this.replyOwed) this.writeReply(this.tempfail(this.settings.shutdownReply));
    this.replyOwed = false;
    this.close('shutdown');
  }

  // ---- input loop ---------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.isClosed) return;
    this.decoder.push(chunk);
    if (!this.running) void this.run();
  }

  private onEnd(): void {
    if (this.isClosed) return;
    try {
      this.decoder.end();
    } catch (error) {
      if (!this.running) return this.protocolFailure(error);
    }
    // Commands still queued behind a running handler are moot: the MTA is gone.
    if (!this.running) this.close('eof');
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      for (;;) {
        if (this.isClosed) return;
        const frame = this.decoder.next();
        if (!frame) break;
        const pending = this.handle(decodeCommand(frame));
        if (pending) {
          this.socket.pause();
          this.inFlight = pending;
          try {
            await pending;
          } finally {
            this.inFlight = undefined;
          }
          if (this.isClosed) return;
          this.socket.resume();
        }
        if (this.socket.writableNeedDrain) await this.writable();
        if (this.draining && !inTransaction(this.state.phase)) return this.close('shutdown');
      }
    } catch (error) {
      this.protocolFailure(error);
    } finally {
      this.running = false;
    }
    if (this.socket.readableEnded && !this.isClosed) this.close('eof');
  }

  private writable(): Promise<void> {
    this.socket.pause();
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        if (!this.isClosed) this.socket.resume();
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  private handle(command: Command): MaybePromise<void> {
    this.log.debug({ command: command.type }, 'command');
    const outcome = step(this.state, command);
    this.state = outcome.state;
    if (this.draining) {
      const call = outcome.effects.find((e): e is Extract<Effect, { kind: 'call' }> => e.kind === 'call');
      if (call) {
        // Shutting down: no new work. Answer a tempfail where an answer is due, tell the handler, hang up.
        // finish() tells the handler about the open transaction.
        if (call.reply) this.writeReply(this.tempfail(this.settings.shutdownReply));
        return this.close('shutdown');
      }
    }
    return this.perform(outcome.effects, 0);
  }

  private perform(effects: readonly Effect[], from: number): MaybePromise<void> {
    for (let i = from; i < effects.length; i++) {
      if (this.isClosed) return;
      const pending = this.apply(effects[i] as Effect);
      if (pending) return pending.then(() => this.perform(effects, i + 1));
    }
  }

  private apply(effect: Effect): Promise<void> | void {
    switch (effect.kind) {
      case 'send':
        this.writeReply(effect.reply);
        return;
      case 'negotiated':
        this.negotiatedOptions = effect.options;
        // A refused connection never reaches the application.
        if (!this.settings.refuseReply) this.createHandler(effect.options);
        return;
      case 'macros':
        this.macros.define(effect.stage, effect.macros);
        return;
      case 'macro-scope':
        this.macros.onCommand(effect.command);
        return;
      case 'abort':
        return this.notifyAbort();
      case 'quit':
        this.close('quit');
        return;
      case 'call':
        return this.call(effect);
    }
  }

  // ---- handler calls ----------------------------------------------------------

  private createHandler(negotiated: NegotiatedOptions): void {
    const lazySignal = (): AbortSignal => {
      this.abortController ??= new AbortController();
      // Asked for after the close: hand out a signal that has already fired.
      if (this.isClosed && !this.abortController.signal.aborted) this.abortController.abort();
      return this.abortController.signal;
    };
    const context: ConnectionContext = {
      id: this.id,
      peer: this.peer,
      macros: this.macros,
      negotiated,
      log: this.log,
      get signal() {
        return lazySignal();
      },
    };
    try {
      this.handler = this.settings.application.createHandler(context);
    } catch (error) {
      // Every step will be answered with a tempfail: the MTA then defers the mail.
      this.handlerFailure = error ?? new Error('createHandler failed');
      this.log.error({ err: error }, 'application could not create a handler');
    }
  }

  /** Invokes the handler method for one step, without awaiting a plain value. */
  private invoke(stepName: HandlerStep, command: Command): unknown {
    if (this.handlerFailure !== undefined) throw this.handlerFailure;
    const h = this.handler;
    switch (command.type) {
      case 'connect':
        return h.connect?.(command.hostname, command.family, command.port, command.address);
      case 'helo':
        return h.helo?.(command.name);
      case 'mail':
        return h.mail?.(command.args);
      case 'rcpt':
        return h.rcpt?.(command.args);
      case 'data':
        return h.data?.();
      case 'header':
        return h.header?.(command.name, command.value);
      case 'eoh':
        return h.eoh?.();
      case 'body':
        return h.body?.(command.chunk);
      case 'unknown':
        return h.unknown?.(command.command);
      case 'eom':
        // libmilter treats data in BODYEOB as a last body chunk; no MTA sends any.
        if (command.chunk.length > 0 && h.body) {
          const last = h.body(command.chunk);
          if (isThenable(last)) return Promise.resolve(last).then(() => h.eom?.());
        }
        return h.eom?.();
      default:
        throw new Error(`no handler method for step ${stepName}`);
    }
  }

  private call(effect: Extract<Effect, { kind: 'call' }>): Promise<void> | void {
    const { step: stepName, command, reply } = effect;
    if (this.settings.refuseReply) {
      // Over maxConnections: the first step gets the refusal, then we hang up.
      if (reply) this.writeReply(this.tempfail(this.settings.refuseReply));
      this.close('refused');
      return;
    }
    let result: unknown;
    try {
      result = this.invoke(stepName, command);
    } catch (error) {
      this.answerError(stepName, reply, error);
      return;
    }
    if (!isThenable(result)) {
      this.answer(stepName, reply, result);
      return;
    }
    this.replyOwed = reply;
    if (stepName === 'eom' && this.settings.progressInterval > 0) {
      this.progressTimer = setInterval(() => this.sendProgress(), this.settings.progressInterval);
    }
    return Promise.resolve(result).then(
      (value) => {
        this.stopProgress();
        this.answer(stepName, reply, value);
      },
      (error: unknown) => {
        this.stopProgress();
        this.answerError(stepName, reply, error);
      },
    );
  }

  private stopProgress(): void {
    if (this.progressTimer) clearInterval(this.progressTimer);
    this.progressTimer = undefined;
  }

  private sendProgress(): void {
    if (this.isClosed || !this.replyOwed) return;
    this.writeReply({ type: 'progress' });
    safely(this.log, 'progressSent', () => this.settings.events.progressSent?.({ id: this.id }));
  }

  private answer(stepName: HandlerStep, reply: boolean, value: unknown): void {
    // After close (EOF, shutdown grace over) a late answer has nowhere to go.
    if (this.isClosed || !reply) return;
    let packets: Reply[];
    try {
      packets = this.repliesFor(stepName, value);
    } catch (error) {
      return this.answerError(stepName, reply, error);
    }
    for (const packet of packets) this.writeReply(packet);
    this.replyOwed = false;
  }

  /** Builds every packet first, so a bad modification cannot leave half an answer on the wire. */
  private repliesFor(stepName: HandlerStep, value: unknown): Reply[] {
    if (stepName !== 'eom') return [finalReply(value as StepResult | void, stepName, this.negotiatedOptions)];
    const result: EomResult = isEomResult(value) ? value : { reply: value as StepResult };
    const packets: Reply[] = [];
    for (const mod of result.modifications ?? []) packets.push(...modificationReplies(mod, this.negotiatedOptions));
    packets.push(finalReply(result.reply, stepName, this.negotiatedOptions));
    for (const packet of packets) encodeReply(packet); // throws MilterReplyError for NUL inside, empty reason...
    return packets;
  }

  private answerError(stepName: HandlerStep, reply: boolean, error: unknown): void {
    this.log.error({ err: error, step: stepName }, 'handler failed; answering tempfail');
    safely(this.log, 'handlerError', () => this.settings.events.handlerError?.({ id: this.id, step: stepName, error }));
    if (this.isClosed || !reply) return;
    this.writeReply(this.tempfail(this.settings.errorReply));
    this.replyOwed = false;
  }

  private tempfail(custom: CustomReply): Reply {
    try {
      return { type: 'replycode', text: formatSmtpReply(custom.code, custom.text) };
    } catch {
      return { type: 'tempfail' };
    }
  }

  /** Tells the handler the transaction ended without end of message. Errors are logged only. */
  private notifyAbort(): Promise<void> | void {
    const h = this.handler;
    if (!h.abort || this.handlerFailure !== undefined) return;
    try {
      const result = h.abort();
      if (isThenable(result)) {
        return Promise.resolve(result).then(
          () => undefined,
          (error: unknown) => this.abortFailed(error),
        );
      }
    } catch (error) {
      this.abortFailed(error);
    }
  }

  private abortFailed(error: unknown): void {
    this.log.warn({ err: error }, 'handler abort() failed');
    safely(this.log, 'handlerError', () => this.settings.events.handlerError?.({ id: this.id, step: 'abort', error }));
  }

  // ---- output and teardown --------------------------------------------------

  private writeReply(reply: Reply): void {
    // The MTA may have half-closed (Node then ends our side too): nothing can go out any more.
    if (this.isClosed || this.socket.destroyed || this.socket.writableEnded) return;
    // One Buffer, one write() per packet.
    this.socket.write(encodeReply(reply));
  }

  private protocolFailure(error: unknown): void {
    if (this.isClosed) return;
    if (error instanceof MilterProtocolError) {
      this.log.warn({ reason: error.reason, peer: this.peer }, `protocol error, closing connection: ${error.message}`);
      safely(this.log, 'protocolError', () => this.settings.events.protocolError?.({ id: this.id, reason: error.reason, message: error.message }));
    } else {
      this.log.error({ err: error, peer: this.peer }, 'internal error, closing connection');
    }
    this.close('protocol-error');
  }

  close(reason: CloseReason): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.stopProgress();
    this.abortController?.abort();
    if (reason === 'quit' || reason === 'shutdown' || reason === 'refused' || reason === 'idle-timeout') this.socket.end();
    else this.socket.destroy();
    // Make sure the socket goes away even if the MTA never reads our FIN.
    if (!this.socket.destroyed) setTimeout(() => this.socket.destroy(), 2000).unref();
    void this.finish(reason);
  }

  private async finish(reason: CloseReason): Promise<void> {
    const wasOpen = inTransaction(this.state.phase);
    // One call at a time: let a running handler settle (its signal is aborted) before abort/close.
    if (this.inFlight) await this.inFlight.then(undefined, () => undefined);
    if (wasOpen) await this.notifyAbort();
    if (this.handler.close && this.handlerFailure === undefined) {
      try {
        await this.handler.close();
      } catch (error) {
        this.log.warn({ err: error }, 'handler close() failed');
        safely(this.log, 'handlerError', () => this.settings.events.handlerError?.({ id: this.id, step: 'close', error }));
      }
    }
    this.log.debug({ reason }, 'connection closed');
    safely(this.log, 'connectionClosed', () =>
      this.settings.events.connectionClosed?.({ id: this.id, peer: this.peer, reason, durationMs: Date.now() - this.openedAt }),
    );
    this.resolveClosed();
  }
}
