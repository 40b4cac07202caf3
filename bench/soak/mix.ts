// Runs in: the soak and fault tests (pure).
//
// The soak's traffic as data: a seeded generator of message plans (who
// receives the message, what each recipient's filter does with it, how big
// it is), the verdict each plan must end with, and the message bytes. One
// filter script serves every soak user; it reads its own instruction from the
// message's X-Soak-Plan header, so the expected outcome is known before the
// message is sent and can be checked at the mailboxes afterwards.

/** What a user's filter does with one message. */
export type Act =
  | 'a' // accept (exit 0)
  | 'r' // reject (exit 1 with a 5.7.1 text)
  | 't' // tempfail the first time it sees this message, accept when it is sent again
  | 'o' // outlive filter.timeout (outcome timeout: filter.onError)
  | 'c' // crash (SIGSEGV: outcome error: filter.onError)
  | 'f' // flood standard output far beyond filter.limits.outputBytes, then accept
  | 'k'; // leave background children behind (they must be ended), then accept

export interface Plan {
  index: number;
  /** Unique per run: the Message-ID's local part and the X-Soak-Id value. */
  id: string;
  /** Recipients as user short names (u0 ... u9); u9 never has a filter. */
  to: string[];
  /** What each recipient's filter does (users without a filter are absent). */
  acts: Record<string, Act>;
  /** Approximate size of the whole message in bytes. */
  size: number;
  /** Hostile-input variants ride along with some messages. */
  odd: Odd | null;
}

/** Malformed but deliverable messages (the filters must see them byte for byte as the MTA passed them on). */
export type Odd = 'manyHeaders' | 'longHeader' | 'brokenMime' | 'nulBytes' | 'bareCr' | 'eightBit';

/** Soak users: u0..u8 carry the soak filter, u9 has none (outcome nofilter, an accept vote). */
export const SOAK_USERS = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7', 'u8', 'u9'] as const;
export const NO_FILTER_USER = 'u9';

/** Small, fast, seedable PRNG (mulberry32): the same seed gives the same run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(rnd: () => number, weighted: readonly (readonly [T, number])[]): T {
  const total = weighted.reduce((s, [, w]) => s + w, 0);
  let x = rnd() * total;
  for (const [v, w] of weighted) {
    x -= w;
    if (x < 0) return v;
  }
  return weighted[weighted.length - 1]![0];
}

export interface MixOptions {
  seed: number;
  /** Share of messages every recipient of which rejects (default 0.2). */
  spamShare?: number;
  /** Largest message (default 2 MiB). */
  maxSize?: number;
  /** Include the hostile-input variants (default true). */
  odd?: boolean;
  /** Filter behaviours to leave out (e.g. the fault tests keep filters quick: ['o', 'k']). */
  without?: readonly Act[];
  /** Recipients come from these users only (default all of SOAK_USERS). */
  users?: readonly string[];
}

const ACT_WEIGHTS: readonly (readonly [Act, number])[] = [
  ['a', 70],
  ['r', 12],
  ['t', 8],
  ['c', 3],
  ['f', 3],
  ['k', 3],
  ['o', 1],
];

/** The plans of a run, generated lazily and reproducibly from the seed. */
export class Mix {
  private readonly rnd: () => number;
  private readonly weights: readonly (readonly [Act, number])[];

  constructor(private readonly o: MixOptions) {
    this.rnd = prng(o.seed);
    const without = new Set(o.without ?? []);
    this.weights = ACT_WEIGHTS.filter(([a]) => !without.has(a));
  }

  plan(index: number): Plan {
    const rnd = this.rnd;
    const n = pick(rnd, [
      [1, 50],
      [2, 15],
      [3, 10],
      [4, 5],
      [5, 5],
      [6, 4],
      [7, 3],
      [8, 3],
      [9, 2.5],
      [10, 2.5],
    ] as const);
    const spam = rnd() < (this.o.spamShare ?? 0.2);
    const all = this.o.users ?? SOAK_USERS;
    const filtered = all.filter((u) => u !== NO_FILTER_USER);
    const pool = n >= all.length || (!spam && rnd() < 0.1) ? [...all] : [...filtered];
    const to: string[] = [];
    while (to.length < n && pool.length > 0) to.push(pool.splice(Math.floor(rnd() * pool.length), 1)[0]!);
    const acts: Record<string, Act> = {};
    for (const u of to) {
      if (u === NO_FILTER_USER) continue;
      // a spam message: everyone rejects, now and then one asks for a second try first
      acts[u] = spam ? (rnd() < 0.05 ? 't' : 'r') : pick(rnd, this.weights);
    }
    const maxSize = this.o.maxSize ?? 2 * 1024 * 1024;
    const band = pick(rnd, [
      [[4096, 32768], 80],
      [[32768, 262144], 15],
      [[262144, maxSize], 5],
    ] as const);
    const lo = Math.min(band[0], maxSize);
    const hi = Math.min(band[1], maxSize);
    const size = Math.floor(lo * Math.pow(hi / lo, rnd()));
    let odd: Odd | null = null;
    if (this.o.odd !== false && rnd() < 0.03) {
      odd = pick(rnd, [
        ['manyHeaders', 1],
        ['longHeader', 1],
        ['brokenMime', 1],
        ['nulBytes', 1],
        ['bareCr', 1],
        ['eightBit', 1],
      ] as const);
    }
    return { index, id: `soak-${this.o.seed}-${index}`, to, acts, size, odd };
  }
}

/**
 * The verdict the plan must end with once the client has re-sent every
 * deferred attempt: rejected exactly when every local recipient rejects.
 * 't' accepts on the second try; 'o', 'c' count as filter.onError=accept;
 * a user without a filter is an accept vote (docs/reference.md §5).
 */
export function expectedFinal(p: Plan): 'accept' | 'reject' {
  const votes = p.to.map((u) => p.acts[u] ?? 'a');
  return votes.length > 0 && votes.every((v) => v === 'r') ? 'reject' : 'accept';
}

/**
 * The filter every soak user runs. It reads the whole message (as real
 * filters do), finds its own word in X-Soak-Plan and acts on it. Only one
 * helper process (awk) per run, so the soak measures the milter, not the shell.
 */
export function soakFilterScript(): string {
  return `#!/bin/sh
# per-user-milter soak filter: does what X-Soak-Plan says for this user
plan=$(awk 'h == 0 && /^X-Soak-Plan:/ { sub(/\\r$/, ""); print } h == 0 && /^\\r?$/ { h = 1 }')
me=\${USER##*-}
act=a
id=
for w in $plan; do
  case $w in
    id=*) id=\${w#id=} ;;
    "$me="*) act=\${w#*=} ;;
  esac
done
case $act in
  a) exit 0 ;;
  r) echo "5.7.1 soak: $me rejects"; exit 1 ;;
  t)
    mkdir -p "$HOME/seen"
    [ -e "$HOME/seen/$id" ] && exit 0
    : > "$HOME/seen/$id"
    echo "4.7.1 soak: $me wants a second try"; exit 75 ;;
  o) sleep 3600; exit 0 ;;
  c) kill -SEGV $$ ;;
  f) yes 'soak flood soak flood soak flood soak flood soak flood' | head -c 4000000; exit 0 ;;
  k) (sleep 3600 &) ; (sleep 3600 &) ; sleep 3600 & exit 0 ;;
esac
exit 0
`;
}

// ---- message bytes -------------------------------------------------------------

const LINE = 76;
let block: string | null = null;

/** A 256 KiB block of printable text lines (no '.', no "From " at a line start), from a fixed seed. */
function textBlock(): string {
  if (block) return block;
  const rnd = prng(0x50a4);
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/ ';
  const lines: string[] = [];
  let total = 0;
  while (total < 256 * 1024) {
    let l = 'x';
    while (l.length < LINE) l += alphabet[Math.floor(rnd() * alphabet.length)];
    lines.push(l);
    total += l.length + 2;
  }
  block = lines.join('\r\n') + '\r\n';
  return block;
}

/** The header fields that mark a soak message (the id is also in the Message-ID). */
export function soakHeaders(p: Plan, sender: string): string[] {
  const plan = ['id=' + p.id, ...Object.entries(p.acts).map(([u, a]) => `${u}=${a}`)].join(' ');
  return [
    `From: Soak Sender <${sender}>`,
    'To: undisclosed-recipients:;',
    `Subject: soak ${p.id}`,
    `Message-ID: <${p.id}@soak.client.test>`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    `X-Soak-Id: ${p.id}`,
    `X-Soak-Plan: ${plan}`,
  ];
}

/**
 * The message as sent on the wire (CRLF line ends, not yet dot-stuffed):
 * the soak headers, the plan's odd part if any, and a body of about p.size bytes.
 */
export function renderMessage(p: Plan, sender: string): Buffer {
  const head = soakHeaders(p, sender);
  const parts: Buffer[] = [];
  let mime = ['MIME-Version: 1.0', 'Content-Type: text/plain; charset=us-ascii'];
  let bodyPrefix = '';
  switch (p.odd) {
    case 'manyHeaders':
      for (let i = 0; i < 1000; i++) head.push(`X-Soak-Filler-${i}: header line ${i} of 1000`);
      break;
    case 'longHeader':
      // 64 KiB in one field, folded so that no line exceeds SMTP's 1000 octets
      head.push('X-Soak-Long:' + Array.from({ length: 1024 }, (_, i) => ` ${String(i).padStart(4, '0')}${'y'.repeat(58)}`).join('\r\n'));
      break;
    case 'brokenMime':
      mime = ['MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="never-closed', 'Content-Transfer-Encoding: base64'];
      bodyPrefix = '--never-closed\r\nContent-Type: text/plain\r\n\r\n!!! not base64 ===\r\n--other-boundary--\r\n';
      break;
    case 'nulBytes':
      bodyPrefix = 'nul:\0:nul\r\n\0\0\0\r\n';
      break;
    case 'bareCr':
      bodyPrefix = 'bare CR here:\ralone\r\nbare LF here:\nalone\r\n';
      break;
    case 'eightBit':
      mime = ['MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit'];
      head.push('X-Soak-Utf8: Grüße aus Köln, ☃');
      bodyPrefix = 'Grüße, naïve café, 日本語, \xff\xfe latin1 bytes\r\n';
      break;
    default:
      break;
  }
  parts.push(Buffer.from([...head, ...mime, '', ''].join('\r\n'), 'latin1'));
  if (bodyPrefix) parts.push(Buffer.from(bodyPrefix, p.odd === 'eightBit' ? 'utf8' : 'latin1'));
  const text = textBlock();
  let need = Math.max(0, p.size - parts.reduce((s, b) => s + b.length, 0));
  let off = (p.index * 7919 * (LINE + 2)) % text.length;
  off -= off % (LINE + 2); // start on a line boundary
  while (need > 0) {
    const take = Math.min(need, text.length - off);
    let chunk = text.slice(off, off + take);
    if (!chunk.endsWith('\r\n')) chunk = chunk.slice(0, chunk.lastIndexOf('\r\n') + 2) || 'x\r\n';
    parts.push(Buffer.from(chunk, 'latin1'));
    need -= Math.max(chunk.length, 1);
    off = 0;
  }
  return Buffer.concat(parts);
}
