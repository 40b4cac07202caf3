// Runs in: the milter process.
//
// The listening side: one net.Server on an inet/inet6/unix socket, one
// MilterConnection per accepted socket, a cap on concurrent connections and
// a graceful close for SIGTERM.
import { chmod } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import type { CustomReply, MilterApplication, MilterEvents, MilterLogger } from '../milter/application.js';
import { DEFAULT_MAX_FRAME_LENGTH } from '../milter/constants.js';
import { formatSocketSpec, parseSocketSpec, type SocketSpec } from '../milter/socket-spec.js';
import { MilterConnection, type ConnectionSettings } from './connection.js';
import { refusal } from './refusal.js';
import { prepareUnixSocketPath, removeUnixSocket } from './unix-socket.js';
import { CONNECTION_IDLE_MS, IDLE_BETWEEN_TRANSACTIONS_MS, REFUSED_IDLE_MS } from '../timeouts.js';

export interface MilterServerOptions {
  /** Where to listen: `inet:PORT@HOST`, `inet6:PORT@HOST`, `unix:PATH`, `local:PATH` (port 0 = ephemeral). */
  readonly listen: string | SocketSpec;
  readonly application: MilterApplication;
  /** Permissions of a unix socket. Default 0o660 (e.g. group postfix). */
  readonly socketMode?: number;
  /** Concurrent connections served; further ones get `refuseReply` and are closed. Default 256. */
  readonly maxConnections?: number;
  /** ms between SMFIR_PROGRESS packets while eom() runs; under Sendmail's 10 s read timeout. Default 5000. */
  readonly progressInterval?: number;
  /**
   * ms without any traffic (and no handler running) before a connection is
   * closed. Default 600000: above Postfix's 300 s smtpd timeout, so an SMTP
   * session that is merely slow keeps its milter connection.
   */
  readonly idleTimeout?: number;
  /**
   * ms a connection may stay without an open transaction, whatever it sends
   * meanwhile; 0 = no limit. Default 300000 (src/timeouts.ts
   * IDLE_BETWEEN_TRANSACTIONS_MS says why).
   */
  readonly idleBetweenTransactions?: number;
  /** Largest accepted packet (length word). Default 1 MiB: Postfix sends headers above 64 KiB in one packet. */
  readonly maxFrameLength?: number;
  readonly logger?: MilterLogger;
  readonly events?: MilterEvents;
  /** Answer when a handler throws. Default `451 4.3.0 …`: a tempfail, never a reject. */
  readonly errorReply?: CustomReply;
  /** Answer to the first step of a connection over maxConnections; must be a 421. Default `421 4.3.2 …`: the MTA closes the SMTP session. */
  readonly refuseReply?: CustomReply;
  /** Answer to a still-open transaction during shutdown. Default `451 4.3.2 …`. */
  readonly shutdownReply?: CustomReply;
}

export interface CloseOptions {
  /** How long in-flight commands (end of message) may still take. Default 10000 ms. */
  readonly graceMs?: number;
}

const silentLogger: MilterLogger = { debug() {}, info() {}, warn() {}, error() {} };


export class MilterServer {
  private readonly connections = new Set<MilterConnection>();
  private readonly refused = new Set<MilterConnection>();
  private closing: Promise<void> | undefined;
  private unixPath: string | undefined;

  private constructor(
    private readonly server: Server,
    private readonly settings: ConnectionSettings,
    /** The settings of a connection over maxConnections: the refusal as its application, a short idle limit. */
    private readonly refusedSettings: ConnectionSettings,
    private readonly maxConnections: number,
    private readonly log: MilterLogger,
    private readonly events: MilterEvents,
    readonly spec: SocketSpec,
  ) {}

  /** Starts listening; resolves once the socket accepts connections. */
  static async start(options: MilterServerOptions): Promise<MilterServer> {
    const spec = typeof options.listen === 'string' ? parseSocketSpec(options.listen) : options.listen;
    const log = options.logger ?? silentLogger;
    const events = options.events ?? {};
    const maxConnections = options.maxConnections ?? 256;
    const settings: ConnectionSettings = {
      application: options.application,
      log,
      events,
      maxFrameLength: options.maxFrameLength ?? DEFAULT_MAX_FRAME_LENGTH,
      progressInterval: options.progressInterval ?? 5000,
      idleTimeout: options.idleTimeout ?? CONNECTION_IDLE_MS,
      idleBetweenTransactions: options.idleBetweenTransactions ?? IDLE_BETWEEN_TRANSACTIONS_MS,
      errorReply: options.errorReply ?? { code: '451', text: '4.3.0 Temporary failure in the mail filter, try again later' },
      shutdownReply: options.shutdownReply ?? { code: '451', text: '4.3.2 Mail filter shutting down, try again later' },
    };
    const counts = { maxConnections, progressInterval: settings.progressInterval, idleTimeout: settings.idleTimeout, idleBetweenTransactions: settings.idleBetweenTransactions };
    for (const [name, value] of Object.entries(counts)) {
      if (!Number.isInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
    }
    const refuseReply = options.refuseReply ?? { code: '421', text: '4.3.2 Too many connections to the mail filter, try again later' };
    const refusedSettings: ConnectionSettings = {
      ...settings,
      application: refusal(options.application.declaration, refuseReply),
      idleTimeout: Math.min(settings.idleTimeout || REFUSED_IDLE_MS, REFUSED_IDLE_MS),
    };

    const server = createServer({ pauseOnConnect: true });
    const instance = new MilterServer(server, settings, refusedSettings, maxConnections, log, events, spec);
    server.on('connection', (socket) => instance.accept(socket));
    server.on('error', (error) => log.error({ err: error }, 'listener error'));

    if (spec.kind === 'unix') {
      await prepareUnixSocketPath(spec.path);
      await listen(server, { path: spec.path });
      instance.unixPath = spec.path;
      await chmod(spec.path, options.socketMode ?? 0o660);
    } else {
      const host = spec.host ?? (spec.family === 6 ? '::' : '0.0.0.0');
      await listen(server, { port: spec.port, host, ipv6Only: spec.family === 6 && spec.host === undefined ? false : undefined });
    }
    log.info({ listen: instance.address }, 'milter listening');
    return instance;
  }

  /** The bound address as a socket spec (with the real port when 0 was asked for). */
  get address(): string {
    if (this.spec.kind === 'unix') return formatSocketSpec(this.spec);
    const bound = this.server.address();
    const port = bound && typeof bound === 'object' ? bound.port : this.spec.port;
    return formatSocketSpec({ ...this.spec, port });
  }

  /** Connections being served (refused ones not counted). */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Every open socket, refused ones included. */
  get socketCount(): number {
    return this.connections.size + this.refused.size;
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const over = this.connections.size >= this.maxConnections;
    const connection = new MilterConnection(socket, over ? this.refusedSettings : this.settings);
    const registry = over ? this.refused : this.connections;
    registry.add(connection);
    if (over) {
      this.log.warn({ conn: connection.id, peer: connection.peer, maxConnections: this.maxConnections }, 'too many connections; refusing');
    } else {
      this.log.debug({ conn: connection.id, peer: connection.peer }, 'connection opened');
      try {
        this.events.connectionOpened?.({ id: connection.id, peer: connection.peer });
      } catch (error) {
        this.log.warn({ err: error }, 'connectionOpened callback threw');
      }
    }
    void connection.closed.then(() => registry.delete(connection));
    connection.start();
    socket.resume();
  }

  /**
   * Graceful stop: no new connections; connections between transactions are
   * closed now; a command in flight (end of message) may finish within
   * graceMs; an open transaction's next command gets a tempfail. After graceMs
   * whatever is left is answered with a tempfail and closed. Resolves when
   * every connection (and its handler's abort/close) is done.
   */
  close(options: CloseOptions = {}): Promise<void> {
    this.closing ??= this.shutdown(options.graceMs ?? 10_000);
    return this.closing;
  }

  private async shutdown(graceMs: number): Promise<void> {
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const all = (): MilterConnection[] => [...this.connections, ...this.refused];
    for (const connection of all()) connection.drain();
    const settled = Promise.all(all().map((c) => c.closed));
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), graceMs)));
    const first = await Promise.race([settled.then(() => 'done' as const), graceOver]);
    if (timer) clearTimeout(timer);
    if (first === 'timeout') {
      this.log.warn({ open: this.socketCount }, 'shutdown grace period over; tempfailing what is left');
      for (const connection of all()) connection.forceClose();
    }
    // Handlers whose eom ignores the abort signal could hold us forever: bound the wait.
    await Promise.race([Promise.all(all().map((c) => c.closed)), delay(Math.max(graceMs, 1000))]);
    await stopped;
    if (this.unixPath) await removeUnixSocket(this.unixPath);
    this.log.info({}, 'milter stopped');
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function listen(server: Server, options: { path?: string; port?: number; host?: string; ipv6Only?: boolean | undefined }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => reject(error);
    server.once('error', onError);
    server.listen(options, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
