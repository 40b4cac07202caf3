// Runs in: the milter process and the in-repo client (pure).
//
// Socket specifications in the Sendmail/libmilter syntax, shared by the
// server (where to listen) and the client (where to connect):
//   inet:PORT@HOST   inet6:PORT@HOST   inet:PORT (listen on all addresses)
//   unix:PATH        local:PATH        /abs/path (bare path = local)
// Postfix spells TCP the other way round (inet:HOST:PORT); that form is
// refused with a message saying so, since a silent guess could bind the
// wrong thing.

export type SocketSpec =
  | { readonly kind: 'inet'; readonly family: 4 | 6; readonly port: number; readonly host: string | undefined }
  | { readonly kind: 'unix'; readonly path: string };

export class SocketSpecError extends Error {
  override readonly name = 'SocketSpecError';
}

function parsePort(text: string, spec: string): number {
  if (!/^\d{1,5}$/.test(text)) throw new SocketSpecError(`${JSON.stringify(spec)}: port ${JSON.stringify(text)} is not a number`);
  const port = Number(text);
  // Port 0 is allowed: a listener then gets an ephemeral port (tests use it).
  if (port > 65535) throw new SocketSpecError(`${JSON.stringify(spec)}: port ${port} out of range 0..65535`);
  return port;
}

export function parseSocketSpec(spec: string): SocketSpec {
  const trimmed = spec.trim();
  if (trimmed.startsWith('/')) return { kind: 'unix', path: trimmed };
  const colon = trimmed.indexOf(':');
  if (colon < 0) throw new SocketSpecError(`${JSON.stringify(spec)}: expected inet:PORT@HOST, inet6:PORT@HOST, unix:PATH or local:PATH`);
  const scheme = trimmed.slice(0, colon).toLowerCase();
  const rest = trimmed.slice(colon + 1);
  switch (scheme) {
    case 'unix':
    case 'local': {
      if (rest.length === 0) throw new SocketSpecError(`${JSON.stringify(spec)}: empty socket path`);
      if (rest.includes('\0')) throw new SocketSpecError(`${JSON.stringify(spec)}: NUL in socket path`);
      return { kind: 'unix', path: rest };
    }
    case 'inet':
    case 'inet6': {
      const family = scheme === 'inet6' ? 6 : 4;
      const at = rest.indexOf('@');
      if (at < 0) {
        if (rest.includes(':') && family === 4) {
          throw new SocketSpecError(`${JSON.stringify(spec)}: looks like Postfix syntax (inet:HOST:PORT); write inet:PORT@HOST`);
        }
        return { kind: 'inet', family, port: parsePort(rest, spec), host: undefined };
      }
      const port = parsePort(rest.slice(0, at), spec);
      let host = rest.slice(at + 1);
      if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
      if (host.length === 0) throw new SocketSpecError(`${JSON.stringify(spec)}: empty host after '@'`);
      return { kind: 'inet', family, port, host };
    }
    default:
      throw new SocketSpecError(`${JSON.stringify(spec)}: unknown socket type ${JSON.stringify(scheme)} (use inet, inet6, unix or local)`);
  }
}

/** Back to text, in the canonical form (unix: for local sockets). */
export function formatSocketSpec(spec: SocketSpec): string {
  if (spec.kind === 'unix') return `unix:${spec.path}`;
  const scheme = spec.family === 6 ? 'inet6' : 'inet';
  return spec.host === undefined ? `${scheme}:${spec.port}` : `${scheme}:${spec.port}@${spec.host}`;
}
