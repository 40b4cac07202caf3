// Runs in: every process (pure).
//
// `metrics.listen`: `HOST:PORT`, `[IPv6]:PORT`, `:PORT` (loopback), or empty
// (disabled). The configuration validator and the endpoint use this one parser.

export interface ListenAddress {
  host: string;
  port: number;
}

/** Parses `metrics.listen`; null when empty (disabled). Throws on a malformed value, with a hint for the usual mix-ups. */
export function parseMetricsListen(spec: string): ListenAddress | null {
  if (spec === '') return null;
  if (/^(inet6?|unix|local):/i.test(spec)) {
    throw new Error(`metrics.listen: ${JSON.stringify(spec)} is a milter socket spec; metrics.listen is HOST:PORT, e.g. 127.0.0.1:9464`);
  }
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(spec);
  const port = Number(m?.[3]);
  if (!m || port > 65535) {
    const bareV6 = /^[0-9a-f:]+:\d+$/i.test(spec) && spec.split(':').length > 2;
    throw new Error(`metrics.listen: expected HOST:PORT or [IPv6]:PORT, got ${JSON.stringify(spec)}${bareV6 ? ' (write an IPv6 address in brackets: [::1]:9464)' : ''}`);
  }
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '127.0.0.1' : host, port };
}
