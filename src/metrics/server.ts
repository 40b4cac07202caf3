// Runs in: the milter process.
//
// The /metrics endpoint on `metrics.listen` (`HOST:PORT`, `[::1]:PORT`;
// empty disables it). Loopback by default: metrics tell who gets mail.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { METRICS_REQUEST_TIMEOUT_MS } from '../timeouts.js';
import { parseMetricsListen, type ListenAddress } from './listen.js';

export { parseMetricsListen, type ListenAddress } from './listen.js';

export class MetricsServer {
  private server: http.Server | null = null;

  /** `listen` as in the configuration; `registry` is what /metrics serves. */
  constructor(
    private readonly listen: string,
    private readonly registry: Registry,
  ) {}

  /** Starts listening; resolves to the bound address, or null when disabled. */
  async start(): Promise<ListenAddress | null> {
    const address = parseMetricsListen(this.listen);
    if (address === null) return null;
    const server = http.createServer((req, res) => void this.handle(req, res));
    // A scraper that stalls must not hold a socket forever.
    server.requestTimeout = METRICS_REQUEST_TIMEOUT_MS;
    server.headersTimeout = METRICS_REQUEST_TIMEOUT_MS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(address.port, address.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    const bound = server.address() as AddressInfo;
    return { host: bound.address, port: bound.port };
  }

  /** Stops listening and closes idle keep-alive connections. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server === null) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found; try /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return;
    }
    try {
      const body = await this.registry.metrics();
      res.writeHead(200, { 'content-type': this.registry.contentType });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`metrics collection failed: ${(err as Error).message}\n`);
    }
  }
}
