// Runs in: a piscina worker thread (one connection per thread, for RUN), and
// the milter process (one connection, for STAT at RCPT).
//
// One unix-socket connection to the launcher, requests multiplexed by id.
// The launcher's own failures (FAILED, the connection gone) reject with a
// PumError: PUM_ERR_SPOOL_UNREADABLE when it could not open the spool file,
// PUM_ERR_LAUNCHER otherwise. Closing the connection makes the launcher kill
// every run this connection started.
import net from 'node:net';
import os from 'node:os';
import { PumError } from '../errors.js';
import { decodeAnswer, encodeRun, encodeStat, FrameSplitter, type Answer, type RunRequest, type Subject } from './protocol.js';

export type RunAnswer = Extract<Answer, { type: 'done' | 'notrun' }>;
export type StatAnswer = Extract<Answer, { type: 'checked' }>;

interface Pending {
  resolve(a: Answer): void;
  reject(e: PumError): void;
}

export function failureOf(a: Extract<Answer, { type: 'failed' }>): PumError {
  const code = a.stage === 'spool' ? 'PUM_ERR_SPOOL_UNREADABLE' : 'PUM_ERR_LAUNCHER';
  const name = Object.entries(os.constants.errno).find(([, v]) => v === a.errno)?.[0] ?? `errno ${a.errno}`;
  return new PumError(code, `launcher: ${a.stage}: ${a.text}${a.errno ? ` (${name})` : ''}`);
}

export class LauncherConnection {
  readonly #socket: net.Socket;
  readonly #pending = new Map<number, Pending>();
  readonly #frames = new FrameSplitter();
  #nextId = 1;
  #gone: PumError | null = null;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.unref();
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => this.#fail(`launcher connection: ${err.message}`));
    socket.on('close', () => this.#fail('launcher connection closed'));
  }

  /** Connects to the launcher's socket; rejects with PUM_ERR_LAUNCHER. */
  static connect(socketPath: string): Promise<LauncherConnection> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(socketPath);
      s.once('connect', () => {
        s.removeAllListeners('error');
        resolve(new LauncherConnection(s));
      });
      s.once('error', (err) => reject(new PumError('PUM_ERR_LAUNCHER', `cannot connect to the launcher at ${socketPath}: ${err.message}`, { cause: err })));
    });
  }

  /** Closed, by us or by the launcher: make a new one. */
  get closed(): boolean {
    return this.#gone !== null;
  }

  run(r: RunRequest): Promise<RunAnswer> {
    return this.#ask((id) => encodeRun(id, r)) as Promise<RunAnswer>;
  }

  stat(s: Subject): Promise<StatAnswer> {
    return this.#ask((id) => encodeStat(id, s)) as Promise<StatAnswer>;
  }

  close(): void {
    this.#socket.destroy();
    this.#fail('launcher connection closed by us');
  }

  #ask(encode: (id: number) => Buffer): Promise<Answer> {
    if (this.#gone) return Promise.reject(this.#gone);
    const id = this.#nextId++;
    return new Promise<Answer>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      // Only a connection with a question in flight keeps the process alive.
      this.#socket.ref();
      this.#socket.write(encode(id));
    });
  }

  #onData(chunk: Buffer): void {
    let answers: Answer[];
    try {
      answers = this.#frames.push(chunk).map(decodeAnswer);
    } catch (err) {
      this.#socket.destroy();
      this.#fail((err as Error).message);
      return;
    }
    for (const a of answers) {
      const p = a.id === null ? undefined : this.#pending.get(a.id);
      if (a.type === 'failed' && !p) {
        // A FAILED without a known id ends the connection (the launcher closes it).
        this.#fail(failureOf(a).message);
        continue;
      }
      if (!p || a.id === null) continue;
      this.#pending.delete(a.id);
      if (a.type === 'failed') p.reject(failureOf(a));
      else p.resolve(a);
    }
    if (this.#pending.size === 0) this.#socket.unref();
  }

  #fail(why: string): void {
    this.#gone ??= new PumError('PUM_ERR_LAUNCHER', why);
    for (const p of this.#pending.values()) p.reject(this.#gone);
    this.#pending.clear();
  }
}
