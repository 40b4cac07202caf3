// Runs in: the milter process.
//
// One MTA connection: the socket, and the loop that feeds it through the
// engine: bytes -> FrameDecoder -> decodeCommand -> advance() -> effects. A
// 'call' effect names a handler method and its arguments; what the method
// answers becomes packets in answerPackets() (src/milter/result.ts), and this
// file only writes them. What is left here is the socket's own business:
// pause and resume, drain, PROGRESS, idle limits, shutdown and close.
//
// Backpressure by construction: one command in flight. While a handler's
// answer is pending the socket is paused, so the kernel buffer fills and the
// MTA waits; nothing is buffered without bound. Every packet is one Buffer
// written with one socket.write() (miltertest reads the 5-byte header with
// a single read() and fails when it arrives in pieces).
import type { Socket } from 'node:net';
import type { CloseReason, CustomReply, HandlerCall, MilterApplication, MilterEvents, MilterLogger, NegotiatedOptions } from '../milter/application.js';
import { decodeCommand, type Command } from '../milter/commands.js';
import { MilterProtocolError } from '../milter/errors.js';
import { FrameDecoder } from '../milter/frame.js';
import { MacroStore } from '../milter/macros.js';
import { encodeReply } from '../milter/replies.js';
import { ownReplyPacket, PROGRESS_PACKET } from '../milter/result.js';
import { advance, inTransaction, initialState, type Effect, type SessionState } from '../milter/session.js';
import { HandlerCalls, safely, type Answer } from './calls.js';

export interface ConnectionSettings {
  readonly application: MilterApplication;
  readonly log: MilterLogger;
  readonly events: MilterEvents;
  readonly maxFrameLength: number;
  readonly progressInterval: number;
  /** ms without traffic (and no handler running) before the connection is closed. */
  readonly idleTimeout: number;
  /** ms a connection may stay without an open transaction, whatever it sends meanwhile; 0 = no limit. */
  readonly idleBetweenTransactions: number;
  /** Answer when a handler throws: a tempfail, never a reject. */
  readonly errorReply: CustomReply;
  /** Answer to the next command of an open transaction during shutdown. */
  readonly shutdownReply: CustomReply;
}

let nextId = 1;

export class MilterConnection {
  readonly id = nextId++;
  readonly peer: string;
  private readonly openedAt = Date.now();
  /** Resolves when the connection is closed and the handler's abort/close have run. */
  readonly closed: Promise<void>;

  private readonly log: MilterLogger;
  private readonly decoder: FrameDecoder;
  private readonly macros = new MacroStore();
  /** The session, negotiated options included (the one copy of them). */
  private state: SessionState;
  private readonly calls: HandlerCalls;
  private running = false;
  /** A handler call (or abort notification) is in progress. */
  private inFlight: Promise<unknown> | undefined;
  /** The in-flight call still owes the MTA a final reply. */
  private replyOwed = false;
  /** A handler call of the current command failed: its further calls are not made, their answer is the error reply. */
  private commandFailed = false;
  private draining = false;
  /** Sends SMFIR_PROGRESS while eom() runs. */
  private progressTimer: NodeJS.Timeout | undefined;
  /** Runs while no transaction is open (settings.idleBetweenTransactions). */
  private betweenTimer: NodeJS.Timeout | undefined;
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
    this.calls = new HandlerCalls(this.id, { ...settings, log: this.log });
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** Whether a handler is working on a command right now. */
  private get busy(): boolean {
    return this.inFlight !== undefined;
  }

  /** What OPTNEG agreed: kept in the session state, read only once it succeeded (a call or the handler's making). */
  private get negotiated(): NegotiatedOptions {
    const negotiated = this.state.negotiated;
    if (!negotiated) throw new Error('not negotiated yet');
    return negotiated;
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
    this.armBetweenTransactions();
  }

  /** Graceful shutdown: finish the command in flight, close between transactions, tempfail open ones. */
  drain(): void {
    this.draining = true;
    if (!this.busy && !inTransaction(this.state.phase)) this.close('shutdown');
  }

  /** Grace period over: answer what is still owed with a tempfail and hang up. */
  forceClose(): void {
    if (this.isClosed) return;
    if (this.replyOwed) this.write(ownReplyPacket(this.settings.shutdownReply));
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

  /** One command: advance the session and perform its effects. A promise while a handler works. */
  private handle(command: Command): Promise<void> | void {
    this.log.debug({ command: command.type }, 'command');
    const wasOpen = inTransaction(this.state.phase);
    const { state, effects } = advance(this.state, command);
    this.state = state;
    this.commandFailed = false;
    if (wasOpen !== inTransaction(state.phase)) {
      if (wasOpen) this.armBetweenTransactions();
      else this.disarmBetweenTransactions();
    }
    if (this.draining) {
      const calls = effects.filter((e): e is Extract<Effect, { kind: 'call' }> => e.kind === 'call');
      if (calls.length > 0) {
        // Shutting down: no new work. Answer a tempfail where an answer is due and hang up;
        // finish() tells the handler about the open transaction.
        if (calls.some((c) => c.reply)) this.write(ownReplyPacket(this.settings.shutdownReply));
        return this.close('shutdown');
      }
    }
    return this.perform(effects, 0);
  }

  private perform(effects: readonly Effect[], from: number): Promise<void> | void {
    for (let i = from; i < effects.length; i++) {
      if (this.isClosed) return;
      const pending = this.apply(effects[i] as Effect);
      if (pending) return pending.then(() => this.perform(effects, i + 1));
    }
  }

  private apply(effect: Effect): Promise<void> | void {
    switch (effect.kind) {
      case 'send':
        this.write(encodeReply(effect.reply));
        return;
      case 'negotiated':
        this.calls.create({ peer: this.peer, macros: this.macros, negotiated: this.negotiated, log: this.log });
        return;
      case 'macros':
        this.macros.define(effect.stage, effect.macros);
        return;
      case 'macro-scope':
        this.macros.onCommand(effect.command);
        return;
      case 'abort':
        return this.calls.abort();
      case 'quit':
        this.close('quit');
        return;
      case 'call':
        return this.call(effect.call, effect.reply);
    }
  }

  // ---- handler calls ----------------------------------------------------------

  /** One handler call; PROGRESS goes out while eom() works. */
  private async call(call: HandlerCall, reply: boolean): Promise<void> {
    if (this.commandFailed) return this.deliver(this.calls.skipped(reply), reply);
    this.replyOwed = reply;
    if (call.step === 'eom' && this.settings.progressInterval > 0) {
      this.progressTimer = setInterval(() => this.sendProgress(), this.settings.progressInterval);
    }
    const answer = await this.calls.run(call, reply, this.negotiated);
    this.stopProgress();
    this.deliver(answer, reply);
  }

  private deliver(answer: Answer, reply: boolean): void {
    // After close (EOF, shutdown grace over) a late answer has nowhere to go.
    if (this.isClosed) return;
    if (answer.failed) this.commandFailed = true;
    for (const packet of answer.packets) this.write(packet);
    if (reply) this.replyOwed = false;
    if (answer.closes) this.close('refused');
  }

  private stopProgress(): void {
    if (this.progressTimer) clearInterval(this.progressTimer);
    this.progressTimer = undefined;
  }

  private sendProgress(): void {
    if (this.isClosed || !this.replyOwed) return;
    this.write(PROGRESS_PACKET);
    safely(this.log, 'progressSent', () => this.settings.events.progressSent?.({ id: this.id }));
  }

  // ---- idle limit between transactions ----------------------------------------

  private armBetweenTransactions(): void {
    this.disarmBetweenTransactions();
    const limit = this.settings.idleBetweenTransactions;
    if (limit <= 0) return;
    const expire = (): void => {
      // A handler still working (a slow helo) is not idleness: look again later.
      if (this.busy) this.betweenTimer = setTimeout(expire, limit);
      else this.close('idle-timeout');
    };
    this.betweenTimer = setTimeout(expire, limit);
  }

  private disarmBetweenTransactions(): void {
    if (this.betweenTimer) clearTimeout(this.betweenTimer);
    this.betweenTimer = undefined;
  }

  // ---- output and teardown --------------------------------------------------

  private write(packet: Buffer): void {
    // The MTA may have half-closed (Node then ends our side too): nothing can go out any more.
    if (this.isClosed || this.socket.destroyed || this.socket.writableEnded) return;
    this.socket.write(packet);
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
    this.disarmBetweenTransactions();
    this.calls.cancel();
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
    if (wasOpen) await this.calls.abort();
    await this.calls.close();
    this.log.debug({ reason }, 'connection closed');
    safely(this.log, 'connectionClosed', () =>
      this.settings.events.connectionClosed?.({ id: this.id, peer: this.peer, reason, durationMs: Date.now() - this.openedAt }),
    );
    this.resolveClosed();
  }
}
