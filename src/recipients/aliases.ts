// Runs in: the milter process (and check-config).
//
// recipients.aliasMaps (docs/reference.md §3): the tables that expand an
// address to the addresses behind it, so that `info@` or `team@` reaches the
// filters of the users behind it. The MTA hands the milter the address
// before its own alias and virtual expansion (Postfix always; Sendmail sets
// {rcpt_addr} before it reads /etc/mail/aliases).
//
// Two kinds of table:
//   * `TYPE:NAME`, a Postfix lookup table of any type Postfix supports,
//     queried with Postfix's own `postmap -q - TYPE:NAME` (a message's keys
//     on standard input, one process per table and round). postmap and
//     postalias read through the same dictionary layer, which on reading
//     tries each key with and without the terminating null byte, so postmap
//     answers alias databases built by postalias too (hash:/etc/aliases);
//     postalias would only add its `key:` output form.
//   * `aliases:PATH`, an aliases(5) text file (Sendmail's /etc/mail/aliases)
//     read directly, and read again when it changes.
//
// Which keys are asked, in this order (the first one found wins, per table,
// and the tables in the order configured), combining what local(8) does with
// aliases (the local part only, `user+ext` then `user`) and what virtual(5)
// does with virtual_alias_maps (`user+ext@domain`, `user@domain`, then
// `@domain`): the whole address with and without its extension; then, only
// when the address is local anyway (its mailer or domain), the local part
// with and without its extension; then `@domain`.
//
// Expansion is recursive, at most MAX_ALIAS_DEPTH levels; an address met a
// second time in one expansion is not expanded again (so `alice: alice,
// archive` delivers to alice, and loops end); `\user` is not expanded either,
// as in local(8) and sendmail. `|command`, `/file` and
// `:include:` targets are not users and are skipped. A table that cannot
// answer (postmap's fatal error, a timeout, a missing file) is our failure:
// PumError PUM_ERR_TABLE, never "not an alias". Answers are cached for
// ALIAS_CACHE_TTL_MS.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { PumError } from '../errors.js';
import { asciiLower } from './address.js';
import { ALIAS_CACHE_TTL_MS, ALIAS_LOOKUP_TIMEOUT_MS } from '../timeouts.js';

/** local(8) and sendmail both stop at this depth; so do we. */
export const MAX_ALIAS_DEPTH = 10;

/** One table of recipients.aliasMaps. */
export interface AliasTable {
  /** As configured: `hash:/etc/aliases`, `aliases:/etc/mail/aliases`. */
  readonly name: string;
  /** The values found for the keys asked (missing keys: not in the table). Throws PumError PUM_ERR_TABLE. */
  lookup(keys: readonly string[]): Promise<Map<string, string>>;
}

// ---- aliases(5) text ---------------------------------------------------------

/**
 * Splits an alias value into its targets: comma-separated, each maybe
 * "quoted" (quotes kept off), white space around them dropped. Postfix
 * virtual tables separate with white space too; both are accepted.
 */
export function splitTargets(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  const flush = (): void => {
    const t = cur.trim();
    if (t !== '') out.push(t);
    cur = '';
  };
  for (const ch of value) {
    if (ch === '"') {
      quoted = !quoted;
      cur += ch;
    } else if (!quoted && (ch === ',' || ch === ' ' || ch === '\t')) {
      // `:include: /file` has a space after the colon in some files: keep it whole.
      if (ch !== ',' && asciiLower(cur.trim()) === ':include:') continue;
      flush();
    } else cur += ch;
  }
  flush();
  return out.map(unquote);
}

function unquote(s: string): string {
  // "odd name"@x.test and "|cmd arg": the quotes protect, they are not part of it.
  return s.replace(/"([^"]*)"/g, '$1');
}

/**
 * Parses aliases(5) text: `name: target, target`, `#` comment lines, a line
 * starting with white space continues the one before, a quoted name may
 * hold spaces or a colon. Names are compared in lower case. A line without
 * a colon is ignored, as newaliases does (with a warning we have no place
 * for).
 */
export function parseAliases(text: string): Map<string, string> {
  const logical: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    if (/^\s*#/.test(raw)) continue;
    if (/^\s/.test(raw)) {
      if (raw.trim() === '') continue;
      if (logical.length > 0) logical[logical.length - 1] += ' ' + raw.trim();
      continue;
    }
    if (raw.trim() !== '') logical.push(raw);
  }
  const out = new Map<string, string>();
  for (const line of logical) {
    let name: string;
    let rest: string;
    const q = /^"([^"]*)"\s*:(.*)$/.exec(line);
    if (q) {
      name = q[1] as string;
      rest = q[2] as string;
    } else {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      name = line.slice(0, colon).trim();
      rest = line.slice(colon + 1);
    }
    const key = asciiLower(name);
    // The first definition counts, as in sendmail and postalias (which warn about duplicates).
    if (!out.has(key)) out.set(key, rest.trim());
  }
  return out;
}

/** An aliases(5) file read directly; read again when its size or mtime changes. */
class AliasesFile implements AliasTable {
  private entries: Map<string, string> | null = null;
  private stamp = '';

  constructor(
    readonly name: string,
    private readonly file: string,
  ) {}

  async lookup(keys: readonly string[]): Promise<Map<string, string>> {
    const entries = await this.load();
    const out = new Map<string, string>();
    for (const k of keys) {
      const v = entries.get(asciiLower(k));
      if (v !== undefined) out.set(k, v);
    }
    return out;
  }

  private async load(): Promise<Map<string, string>> {
    let st: fs.Stats;
    try {
      st = await fs.promises.stat(this.file);
    } catch (err) {
      throw new PumError('PUM_ERR_TABLE', `${this.name}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
    const stamp = `${st.size}:${st.mtimeMs}:${st.ino}`;
    if (this.entries && stamp === this.stamp) return this.entries;
    let text: string;
    try {
      text = await fs.promises.readFile(this.file, 'latin1');
    } catch (err) {
      throw new PumError('PUM_ERR_TABLE', `${this.name}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
    this.entries = parseAliases(text);
    this.stamp = stamp;
    return this.entries;
  }
}

// ---- Postfix tables through postmap ------------------------------------------

let postfixConfigDir: string | null = null;

/**
 * The directory postmap reads main.cf from: Postfix's own when it has one
 * (its settings, e.g. for ldap: and mysql: tables, apply), else an empty
 * main.cf of ours. Tables are always named with their type, so nothing of
 * main.cf is needed to open them.
 */
function postfixConfig(): string {
  if (postfixConfigDir !== null) return postfixConfigDir;
  const own = process.env.MAIL_CONFIG ?? '/etc/postfix';
  if (fs.existsSync(path.join(own, 'main.cf'))) postfixConfigDir = own;
  else {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'per-user-milter-postfix-'));
    fs.writeFileSync(path.join(dir, 'main.cf'), '# empty: per-user-milter queries tables named with their type\n', { mode: 0o644 });
    // Made before serve drops to milter.user (its start-up check asks every table): readable by that account too.
    fs.chmodSync(dir, 0o755);
    postfixConfigDir = dir;
  }
  return postfixConfigDir;
}

/** A key postmap can be given on its standard input: one line, no tab (its output separates key and value with one). */
function askable(key: string): boolean {
  // eslint-disable-next-line no-control-regex
  return key !== '' && !/[\u0000-\u001f\u007f]/.test(key);
}

class PostfixTable implements AliasTable {
  constructor(readonly name: string) {}

  async lookup(keys: readonly string[]): Promise<Map<string, string>> {
    const asked = [...new Set(keys.filter(askable))];
    const out = new Map<string, string>();
    if (asked.length === 0) return out;
    let r;
    try {
      r = await execa('postmap', ['-c', postfixConfig(), '-q', '-', this.name], {
        // Keys and answers are byte strings, like every envelope value (src/filter/environment.ts makes text of them).
        input: Buffer.from(asked.join('\n') + '\n', 'latin1'),
        encoding: 'latin1',
        reject: false,
        timeout: ALIAS_LOOKUP_TIMEOUT_MS,
        env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
        extendEnv: false,
        stripFinalNewline: false,
        maxBuffer: 4 << 20,
      });
    } catch (err) {
      throw new PumError('PUM_ERR_TABLE', `${this.name}: postmap did not run: ${(err as Error).message}`, { cause: err });
    }
    // Found: exit 0. Nothing found: exit 1 and silence. A fatal error (no
    // such file, unknown type, unreachable server) is exit 1 too, with
    // `postmap: fatal: …` on standard error: only that tells them apart.
    const stderr = String(r.stderr ?? '');
    const fatal = /(fatal|error|panic):/.test(stderr);
    if (r.timedOut || r.signal || fatal || (r.exitCode !== 0 && r.exitCode !== 1)) {
      const why = r.timedOut ? `timed out after ${ALIAS_LOOKUP_TIMEOUT_MS} ms` : r.signal ? `killed by ${r.signal}` : `exit ${r.exitCode}`;
      throw new PumError('PUM_ERR_TABLE', `${this.name}: postmap ${why}: ${stderr.trim().split('\n')[0] ?? ''}`.trim());
    }
    for (const line of String(r.stdout ?? '').split('\n')) {
      const tab = line.indexOf('\t');
      if (tab <= 0) continue;
      const key = line.slice(0, tab);
      if (!out.has(key)) out.set(key, line.slice(tab + 1).trim());
    }
    return out;
  }
}

/** One table of recipients.aliasMaps by its configured name. */
export function openAliasTable(spec: string): AliasTable {
  if (spec.startsWith('aliases:')) return new AliasesFile(spec, spec.slice('aliases:'.length));
  return new PostfixTable(spec);
}

/** `TYPE:NAME` or `aliases:/absolute/path`; '' when fine, else what is wrong. */
export function aliasSpecProblem(spec: string): string {
  const m = /^([a-z0-9_]+):(.+)$/.exec(spec);
  if (!m) return `${JSON.stringify(spec)}: expected TYPE:NAME (a Postfix table such as hash:/etc/aliases) or aliases:/path`;
  if (m[1] === 'aliases' && !path.isAbsolute(m[2] as string)) return `${JSON.stringify(spec)}: the aliases file must be an absolute path`;
  return '';
}

// ---- the cache and the expansion ---------------------------------------------

/** Caches each table's answers (found and not found) for a short time. */
export class CachedTables {
  private readonly cache = new Map<string, { until: number; value: string | null }>();

  constructor(
    readonly tables: readonly AliasTable[],
    private readonly ttlMs = ALIAS_CACHE_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** For each table in order, the values of those `keys` it has (one postmap per table for what is not cached). */
  async lookup(table: AliasTable, keys: readonly string[]): Promise<Map<string, string>> {
    const t = this.now();
    const out = new Map<string, string>();
    const missing: string[] = [];
    for (const k of keys) {
      const hit = this.cache.get(`${table.name}\u0000${k}`);
      if (hit && hit.until > t) {
        if (hit.value !== null) out.set(k, hit.value);
      } else missing.push(k);
    }
    if (missing.length > 0) {
      const found = await table.lookup(missing);
      for (const k of missing) {
        const v = found.get(k) ?? null;
        this.cache.set(`${table.name}\u0000${k}`, { until: t + this.ttlMs, value: v });
        if (v !== null) out.set(k, v);
      }
      if (this.cache.size > 50_000) for (const [k, v] of this.cache) if (v.until <= t) this.cache.delete(k);
    }
    return out;
  }
}

/** Where one alias target leads once no table expands it further. */
export interface AliasLeaf {
  /** The address or bare name as the table gave it (quotes removed). */
  target: string;
}

export interface Expansion {
  /** Whether any table knew the address (false: not an alias, classify it as usual). */
  expanded: boolean;
  /** The addresses and names nothing expands further, each once, in order. */
  leaves: AliasLeaf[];
  /** Targets skipped: programs, files, :include: (they are not users). */
  skipped: string[];
}

/** `|cmd`, `/file`, `:include:…`: delivered by the MTA, never a user. */
export function isDeliveryTarget(t: string): boolean {
  return t.startsWith('|') || t.startsWith('/') || asciiLower(t).startsWith(':include:');
}

/**
 * The keys one address is looked up with, most specific first (see the
 * header comment). `localByRoute`: the address is local anyway, so bare
 * local-part keys (aliases(5)) apply to it.
 */
export function aliasKeys(address: { localPart: string; base: string; domain: string }, localByRoute: boolean): string[] {
  const lp = asciiLower(address.localPart);
  const base = asciiLower(address.base);
  const domain = asciiLower(address.domain);
  const keys: string[] = [];
  if (domain !== '') keys.push(`${lp}@${domain}`, `${base}@${domain}`);
  if (localByRoute || domain === '') keys.push(lp, base);
  if (domain !== '') keys.push(`@${domain}`);
  return [...new Set(keys)];
}

/**
 * Expands one address through the tables, recursively. `keysOf` gives the
 * keys for an address (the classifier knows the delimiter and what is local).
 */
export async function expandAlias(tables: CachedTables, start: string, keysOf: (address: string) => string[]): Promise<Expansion> {
  const seen = new Set<string>([asciiLower(start)]);
  const leaves: AliasLeaf[] = [];
  const skipped: string[] = [];
  let expanded = false;
  const leafSeen = new Set<string>();
  const addLeaf = (target: string): void => {
    if (leafSeen.has(asciiLower(target))) return;
    leafSeen.add(asciiLower(target));
    leaves.push({ target });
  };

  let level: string[] = [start];
  for (let depth = 0; level.length > 0; depth++) {
    const next: string[] = [];
    for (const address of level) {
      const targets = await lookupOnce(tables, keysOf(address));
      if (targets === null || depth >= MAX_ALIAS_DEPTH) {
        // Not an alias (or too deep to follow): it is where mail goes.
        if (address !== start || expanded) addLeaf(address);
        continue;
      }
      if (address === start) expanded = true;
      for (const t of targets) {
        if (isDeliveryTarget(t)) skipped.push(t);
        else if (t.startsWith('\\')) addLeaf(t.slice(1)); // `\alice`: deliver to alice, do not expand again
        else if (seen.has(asciiLower(t))) addLeaf(t); // `alice: alice, archive`, or a loop
        else {
          seen.add(asciiLower(t));
          next.push(t);
        }
      }
    }
    level = next;
  }
  return { expanded, leaves, skipped };
}

/** The first table (in order) that knows one of the keys (in order): its targets; null if none does. */
async function lookupOnce(tables: CachedTables, keys: readonly string[]): Promise<string[] | null> {
  for (const table of tables.tables) {
    const found = await tables.lookup(table, keys);
    for (const k of keys) {
      const v = found.get(k);
      if (v !== undefined) return splitTargets(v);
    }
  }
  return null;
}
