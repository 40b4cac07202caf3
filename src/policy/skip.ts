// Runs in: every process (pure).
//
// Skip rules (docs/reference.md §5.7): mail from policy.trustedNetworks, or
// from an SMTP-AUTH authenticated client under policy.skipAuthenticated, is
// accepted at MAIL without running any filter (spamass-milter's -i and -I).
// The client address comes as the MTA sends it in {client_addr}: Sendmail
// writes IPv6 addresses as `IPv6:2001:db8::1`, and an IPv4 client on a dual
// stack socket may arrive as `::ffff:192.0.2.1`; both are taken for the
// address they name. Pure: no I/O, no node:net (the CIDR arithmetic is
// small enough to own).

export type SkipReason = 'trusted' | 'authenticated';

/** An address as 16 bytes (IPv4 as IPv4-mapped IPv6), or null if it is not one. */
export function addressBytes(text: string): Uint8Array | null {
  let s = text.trim();
  if (/^ipv6:/i.test(s)) s = s.slice(5);
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const v4 = ipv4(s);
  if (v4) return mapped(v4);
  return ipv6(s);
}

function ipv4(s: string): number[] | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  return parts.every((p) => p <= 255) ? parts : null;
}

function mapped(v4: number[]): Uint8Array {
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(v4, 12);
  return out;
}

function ipv6(s: string): Uint8Array | null {
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (!/^[0-9a-fA-F:.]+$/.test(s) || !s.includes(':')) return null;
  // A trailing dotted quad (::ffff:192.0.2.1) is the last two groups.
  let tail: number[] = [];
  const lastColon = s.lastIndexOf(':');
  if (s.slice(lastColon + 1).includes('.')) {
    const v4 = ipv4(s.slice(lastColon + 1));
    if (!v4) return null;
    tail = v4;
    s = s.slice(0, lastColon + 1) + '0:0';
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const group = (h: string): number[] | null => {
    if (h === '') return [];
    const gs = h.split(':');
    if (gs.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return null;
    return gs.map((g) => parseInt(g, 16));
  };
  const head = group(halves[0] as string);
  const rest = halves.length === 2 ? group(halves[1] as string) : [];
  if (!head || !rest) return null;
  const missing = 8 - head.length - rest.length;
  if ((halves.length === 1 && missing !== 0) || (halves.length === 2 && missing < 1)) return null;
  const groups = [...head, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...rest];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  if (tail.length === 4) out.set(tail, 12);
  return out;
}

export interface Cidr {
  /** As configured, for the log line. */
  text: string;
  bytes: Uint8Array;
  /** Prefix length over the 128 bits (an IPv4 /24 is a /120 of its mapped form). */
  bits: number;
}

/** `192.0.2.0/24`, `2001:db8::/32`, or a bare address; null if malformed (the configuration check refuses those). */
export function parseCidr(text: string): Cidr | null {
  const [addr = '', len, ...more] = text.trim().split('/');
  if (more.length > 0) return null;
  const bytes = addressBytes(addr);
  if (!bytes) return null;
  const v4 = ipv4(addr.trim()) !== null;
  const max = v4 ? 32 : 128;
  if (len !== undefined && !/^\d{1,3}$/.test(len)) return null;
  const n = len === undefined ? max : Number(len);
  if (n > max) return null;
  return { text, bytes, bits: v4 ? 96 + n : n };
}

/** Whether the address lies in the block. */
export function inCidr(address: Uint8Array, cidr: Cidr): boolean {
  let bits = cidr.bits;
  for (let i = 0; i < 16 && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((address[i] as number) & mask) !== ((cidr.bytes[i] as number) & mask)) return false;
  }
  return true;
}

export interface SkipFacts {
  /** {client_addr} (or the connect address) as the MTA sent it. */
  clientAddress: string;
  /** {auth_authen}: the SASL login name; '' when the client did not authenticate. */
  authenticatedAs: string;
}

export interface SkipSettings {
  trustedNetworks: readonly string[];
  skipAuthenticated: boolean;
}

/** Why this message needs no filter run (and the text for its log line), or null. Trusted networks are looked at first. */
export function skipReason(facts: SkipFacts, settings: SkipSettings): { reason: SkipReason; note: string } | null {
  const address = addressBytes(facts.clientAddress);
  if (address) {
    for (const text of settings.trustedNetworks) {
      const cidr = parseCidr(text);
      if (cidr && inCidr(address, cidr)) return { reason: 'trusted', note: `skipped: client ${facts.clientAddress} in policy.trustedNetworks ${text}` };
    }
  }
  if (settings.skipAuthenticated && facts.authenticatedAs !== '') {
    return { reason: 'authenticated', note: 'skipped: SMTP-AUTH authenticated client (policy.skipAuthenticated)' };
  }
  return null;
}
