// Runs in: tests, the bench and diagnostics (the MTA side of the protocol).
//
// MTA side of the protocol: connects to a milter, negotiates like Postfix
// (v6, all actions, all protocol bits offered by default), sends macros and
// commands, and reads replies. For the component tests, the benchmark
// harness and diagnostics. Honours what was negotiated: steps the milter
// declined (SMFIP_NO*) are not sent, steps it will not answer (SMFIP_NR_*)
// are not waited for. Every packet is one Buffer in one write().
import { connect as netConnect, type Socket } from 'node:net';
import type { ConnectFamily, Step } from './application.js';
import { encodeCommand, type Command } from './commands.js';
import { SMFIC_BODY, SMFIC_BODYEOB, SMFIC_CONNECT, SMFIC_DATA, SMFIC_EOH, SMFIC_HEADER, SMFIC_HELO, SMFIC_MAIL, SMFIC_RCPT, SMFIC_UNKNOWN, SMFI_CURR_ACTS, SMFI_CURR_PROT, SMFI_PROT_VERSION } from './constants.js';
import { MilterProtocolError } from './errors.js';
import { FrameDecoder } from './frame.js';
import { mtaSends, milterReplies, type OptnegReply } from './negotiate.js';
import { decodeReply, isFinalReply, type Reply } from './replies.js';
import { parseSocketSpec, type SocketSpec } from './socket-spec.js';
import { toBuffer } from './bytes.js';

export interface MilterClientOptions {
  /** OPTNEG offer; defaults are Postfix 3.7's: 6, 0x1FF, 0x1FFFFF. */
  readonly version?: number;
  readonly actions?: number;
  readonly protocol?: number;
  /** ms to wait for connect and for each reply packet. Default 10000. */
  readonly timeout?: number;
  /** Largest reply packet accepted. Default 1 MiB. */
  readonly maxFrameLength?: number;
  /**
   * TCP_NODELAY on our side. Default true. Postfix leaves Nagle on; set false
   * to reproduce its write pattern (load tests for the delayed-ACK stall).
   */
  readonly noDelay?: boolean;
  /**
   * Send macro packets in the same write() as the command that follows them,
   * as Postfix's buffered stream does (default true). With false every packet
   * is its own write, like miltertest; with Nagle on that costs a delayed ACK
   * (~40 ms) per macro packet, whatever the milter does.
   */
  readonly coalesceMacros?: boolean;
}

/** What came back for end of message: modifications in order, how many PROGRESS, and the final reply. */
export interface EomReplies {
  readonly modifications: readonly Reply[];
  readonly progress: number;
  readonly final: Reply;
}

/** Stage letter or byte for a macro packet: 'C', 'H', 'M', 'R', 'T', 'L', 'N', 'B', 'E', 'U'… */
export type MacroStageArg = string | number;

export class MilterClientError extends Error {
  override readonly name = 'MilterClientError';
}

const STEP_CODE: Readonly<Record<Step | 'eom', number>> = {
  connect: SMFIC_CONNECT,
  helo: SMFIC_HELO,
  mail: SMFIC_MAIL,
  rcpt: SMFIC_RCPT,
  data: SMFIC_DATA,
  header: SMFIC_HEADER,
  eoh: SMFIC_EOH,
  body: SMFIC_BODY,
  unknown: SMFIC_UNKNOWN,
  eom: SMFIC_BODYEOB,
};

export class MilterClient {
  /** Set after negotiate(): the milter's OPTNEG reply. */
  negotiated: OptnegReply | undefined;

  private readonly decoder: FrameDecoder;
  private readonly inbox: Reply[] = [];
  private readonly pendingMacros: Buffer[] = [];
  private waiter: { resolve: (r: Reply) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private readonly closedPromise: Promise<void>;

  private constructor(
    private readonly socket: Socket,
    private readonly options: MilterClientOptions,
  ) {
    this.decoder = new FrameDecoder({ maxFrameLength: options.maxFrameLength });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.closedPromise = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', (error) => this.fail(error));
    socket.on('close', () => this.fail(new MilterClientError('connection closed by the milter')));
  }

  /** Opens a connection to `spec` (inet:PORT@HOST, inet6:…, unix:PATH). Does not negotiate yet. */
  static connect(spec: string | SocketSpec, options: MilterClientOptions = {}): Promise<MilterClient> {
    const target = typeof spec === 'string' ? parseSocketSpec(spec) : spec;
    const timeout = options.timeout ?? 10_000;
    return new Promise((resolve, reject) => {
      const socket =
        target.kind === 'unix' ? netConnect({ path: target.path }) : netConnect({ port: target.port, host: target.host ?? (target.family === 6 ? '::1' : '127.0.0.1') });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new MilterClientError(`connect timed out after ${timeout} ms`));
      }, timeout);
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.setNoDelay(options.noDelay ?? true);
        resolve(new MilterClient(socket, options));
      });
    });
  }

  /** Resolves when the socket is closed (by either side). */
  get closed(): Promise<void> {
    return this.closedPromise;
  }

  // ---- raw access (tests) ---------------------------------------------------

  /** Writes bytes as they are: for fuzzing and malformed-input tests. */
  sendRaw(bytes: Buffer): void {
    this.socket.write(this.withPendingMacros(bytes));
  }

  /** Sends one command packet without waiting for anything. */
  send(command: Command): void {
    if (this.failure) throw this.failure;
    const packet = encodeCommand(command);
    if (command.type === 'macro' && (this.options.coalesceMacros ?? true)) {
      this.pendingMacros.push(packet);
      return;
    }
    this.socket.write(this.withPendingMacros(packet));
  }

  /** Whole packets only, so one write() never carries part of a packet. */
  private withPendingMacros(packet: Buffer): Buffer {
    if (this.pendingMacros.length === 0) return packet;
    const joined = Buffer.concat([...this.pendingMacros, packet]);
    this.pendingMacros.length = 0;
    return joined;
  }

  /** The next reply packet from the milter. */
  readReply(timeout = this.options.timeout ?? 10_000): Promise<Reply> {
    const queued = this.inbox.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    if (this.waiter) return Promise.reject(new MilterClientError('readReply() already waiting'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new MilterClientError(`no reply within ${timeout} ms`));
      }, timeout);
      this.waiter = {
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
    });
  }

  // ---- protocol -----------------------------------------------------------------

  async negotiate(): Promise<OptnegReply> {
    this.send({
      type: 'optneg',
      version: this.options.version ?? SMFI_PROT_VERSION,
      actions: this.options.actions ?? SMFI_CURR_ACTS,
      protocol: this.options.protocol ?? SMFI_CURR_PROT,
    });
    const reply = await this.readReply();
    if (reply.type !== 'optneg') throw new MilterProtocolError('unexpected-reply', `expected OPTNEG reply, got ${reply.type}`);
    this.negotiated = reply;
    return reply;
  }

  /** One SMFIC_MACRO packet (no reply). Stage as a letter ('C', 'R', 'T', …) or byte. */
  macro(stage: MacroStageArg, macros: Record<string, string> | ReadonlyArray<readonly [string, string]>): void {
    const stageByte = typeof stage === 'number' ? stage : stage.charCodeAt(0);
    const pairs = Array.isArray(macros) ? (macros as ReadonlyArray<readonly [string, string]>) : Object.entries(macros);
    this.send({ type: 'macro', stage: stageByte, macros: pairs });
  }

  connect(hostname: string, family: ConnectFamily = 'inet', port = 0, address = ''): Promise<Reply | null> {
    return this.stepCommand('connect', { type: 'connect', hostname, family, port, address });
  }

  helo(name: string): Promise<Reply | null> {
    return this.stepCommand('helo', { type: 'helo', name });
  }

  mail(...args: Array<string | Buffer>): Promise<Reply | null> {
    return this.stepCommand('mail', { type: 'mail', args: args.map(toBuffer) });
  }

  rcpt(...args: Array<string | Buffer>): Promise<Reply | null> {
    return this.stepCommand('rcpt', { type: 'rcpt', args: args.map(toBuffer) });
  }

  data(): Promise<Reply | null> {
    return this.stepCommand('data', { type: 'data' });
  }

  header(name: string, value: string | Buffer): Promise<Reply | null> {
    return this.stepCommand('header', { type: 'header', name, value: toBuffer(value) });
  }

  eoh(): Promise<Reply | null> {
    return this.stepCommand('eoh', { type: 'eoh' });
  }

  body(chunk: string | Buffer): Promise<Reply | null> {
    return this.stepCommand('body', { type: 'body', chunk: toBuffer(chunk) });
  }

  unknown(command: string | Buffer): Promise<Reply | null> {
    return this.stepCommand('unknown', { type: 'unknown', command: toBuffer(command) });
  }

  /** SMFIC_BODYEOB; collects modifications and PROGRESS until the final reply. */
  async eom(chunk: string | Buffer = Buffer.alloc(0)): Promise<EomReplies> {
    this.send({ type: 'eom', chunk: toBuffer(chunk) });
    const modifications: Reply[] = [];
    let progress = 0;
    for (;;) {
      const reply = await this.readReply();
      if (reply.type === 'progress') progress++;
      else if (isFinalReply(reply)) return { modifications, progress, final: reply };
      else if (reply.type === 'optneg') throw new MilterProtocolError('unexpected-reply', 'OPTNEG reply at end of message');
      else modifications.push(reply);
    }
  }

  /** SMFIC_ABORT: no reply. */
  abort(): void {
    this.send({ type: 'abort' });
  }

  /** Writes macro packets still held back for the next command. */
  flush(): void {
    if (this.pendingMacros.length > 0) this.socket.write(this.withPendingMacros(Buffer.alloc(0)));
  }

  /** SMFIC_QUIT, then waits for the milter to close (bounded by the timeout). */
  async quit(): Promise<void> {
    if (!this.failure) this.send({ type: 'quit' });
    this.socket.end();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.closedPromise, new Promise<void>((resolve) => (timer = setTimeout(resolve, this.options.timeout ?? 10_000)))]);
    if (timer) clearTimeout(timer);
    this.socket.destroy();
  }

  /** SMFIC_QUIT_NC: the session ends, the connection stays; send connect() next, no new OPTNEG. */
  quitNc(): void {
    this.send({ type: 'quit_nc' });
  }

  /** Drops the connection without QUIT (like Postfix after a connect-time verdict). */
  destroy(): void {
    this.socket.destroy();
  }

  // ---- internals --------------------------------------------------------------

  /** Sends a step unless negotiated away; waits for its reply unless it is a no-reply step. */
  private async stepCommand(step: Step, command: Command): Promise<Reply | null> {
    const options = this.negotiated;
    if (options && !mtaSends(options, step)) return null;
    this.send(command);
    if (options && !milterReplies(options, step)) return null;
    for (;;) {
      const reply = await this.readReply();
      // Postfix accepts PROGRESS after any event; skip it here.
      if (reply.type === 'progress') continue;
      if (!isFinalReply(reply)) {
        throw new MilterProtocolError('unexpected-reply', `${reply.type} is only allowed at end of message, got it for ${step} (0x${STEP_CODE[step].toString(16)})`);
      }
      return reply;
    }
  }

  private onData(chunk: Buffer): void {
    this.decoder.push(chunk);
    try {
      for (let frame = this.decoder.next(); frame; frame = this.decoder.next()) this.deliver(decodeReply(frame));
    } catch (error) {
      this.fail(error as Error);
      this.socket.destroy();
    }
  }

  private deliver(reply: Reply): void {
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = undefined;
      waiter.resolve(reply);
    } else {
      this.inbox.push(reply);
    }
  }

  private fail(error: Error): void {
    this.failure ??= error;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(this.failure);
  }
}
