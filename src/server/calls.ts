// Runs in: the milter process.
//
// The application's side of one connection: its handler, made once
// negotiation succeeded; each call the session asks for; and what comes back
// turned into the packets to write (src/milter/result.ts). Whatever the
// application throws stays here: a failed call answers the error reply (a
// tempfail, never a reject) and leaves a log line and a handlerError event;
// a failed abort() or close() leaves the log line and the event only.
import type {
  ConnectionContext,
  CustomReply,
  HandlerCall,
  HandlerStep,
  MilterApplication,
  MilterEvents,
  MilterHandler,
  MilterLogger,
  NegotiatedOptions,
} from '../milter/application.js';
import { answerPackets, closesSession, ownReplyPacket } from '../milter/result.js';

/** What one call came to. */
export interface Answer {
  /** The packets to write, in order; none when no reply is owed. */
  readonly packets: readonly Buffer[];
  /** The handler threw or answered something that cannot be sent. */
  readonly failed: boolean;
  /** The answer ends the SMTP session (a 421): hang up after writing it. */
  readonly closes: boolean;
}

export interface CallSettings {
  readonly application: MilterApplication;
  readonly log: MilterLogger;
  readonly events: MilterEvents;
  /** Answer when a handler throws: a tempfail, never a reject. */
  readonly errorReply: CustomReply;
}

/** Keeps an observer's exception from breaking the connection. */
export function safely(log: MilterLogger, what: string, fn: () => void): void {
  try {
    fn();
  } catch (error) {
    log.warn({ err: error }, `${what} callback threw`);
  }
}

export class HandlerCalls {
  /** Undefined before negotiation, and for good when the application could not make one. */
  private handler: MilterHandler | undefined;
  /** Made on first use of `context.signal`: most handlers never look, and an abort() costs a DOMException with a stack trace. */
  private abortController: AbortController | undefined;
  private cancelled = false;

  constructor(
    private readonly id: number,
    private readonly settings: CallSettings,
  ) {}

  /** Asks the application for this connection's handler. Without one every step is answered with the error reply. */
  create(context: Omit<ConnectionContext, 'id' | 'signal'>): void {
    const signal = (): AbortSignal => this.signal();
    try {
      this.handler = this.settings.application.createHandler({
        ...context,
        id: this.id,
        get signal() {
          return signal();
        },
      });
    } catch (error) {
      this.settings.log.error({ err: error }, 'application could not create a handler');
    }
  }

  /** The connection is gone (or given up on): the handler's signal fires. */
  cancel(): void {
    this.cancelled = true;
    this.abortController?.abort();
  }

  /** Makes one call and answers it; never rejects. */
  async run(call: HandlerCall, reply: boolean, negotiated: NegotiatedOptions): Promise<Answer> {
    try {
      const value: unknown = await this.invoke(call);
      const packets = reply ? answerPackets(call.step, value, negotiated) : [];
      return { packets, failed: false, closes: closesSession(call.step, value) };
    } catch (error) {
      return this.failed(call.step, reply, error);
    }
  }

  /** The answer for a call not made because an earlier call of the same command failed. */
  skipped(reply: boolean): Answer {
    return { packets: reply ? [ownReplyPacket(this.settings.errorReply)] : [], failed: true, closes: false };
  }

  /** The transaction ended without end of message. */
  abort(): Promise<void> {
    return this.notify('abort');
  }

  /** The connection is over: called once, last. */
  close(): Promise<void> {
    return this.notify('close');
  }

  /** abort() and close() answer nothing: a failure is logged and reported only. */
  private async notify(method: 'abort' | 'close'): Promise<void> {
    const handler = this.handler;
    if (!handler?.[method]) return;
    try {
      await handler[method]();
    } catch (error) {
      this.settings.log.warn({ err: error }, `handler ${method}() failed`);
      safely(this.settings.log, 'handlerError', () => this.settings.events.handlerError?.({ id: this.id, step: method, error }));
    }
  }

  private signal(): AbortSignal {
    this.abortController ??= new AbortController();
    // Asked for after the end: hand out a signal that has already fired.
    if (this.cancelled && !this.abortController.signal.aborted) this.abortController.abort();
    return this.abortController.signal;
  }

  private invoke(call: HandlerCall): unknown {
    const handler = this.handler;
    if (!handler) throw new Error('no handler: the application failed to create one');
    const method = handler[call.step] as ((...args: readonly unknown[]) => unknown) | undefined;
    return method?.apply(handler, call.args);
  }

  private failed(step: HandlerStep, reply: boolean, error: unknown): Answer {
    this.settings.log.error({ err: error, step }, 'handler failed; answering tempfail');
    safely(this.settings.log, 'handlerError', () => this.settings.events.handlerError?.({ id: this.id, step, error }));
    return this.skipped(reply);
  }
}
