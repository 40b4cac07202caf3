// Runs in: the milter process.
//
// Is this RCPT a local user, and which one? (docs/reference.md §3 `recipients.*`, §5)
//
// Order: the recipient map first; then local if `{rcpt_mailer}` is one of
// `recipients.localMailers` or the domain is one of `recipients.localDomains`.
// The user name comes from `{rcpt_addr}` when the MTA sent it (Postfix:
// `user@domain` as given; Sendmail: the bare local user after its aliasing),
// else from the RCPT argument; the extension is cut at the delimiter and the
// name lower-cased. A name that does not resolve to an account at or above
// `users.minUid` (never root) makes the recipient non-local; a lookup that
// fails with an error (PUM_ERR_USER_LOOKUP from the resolver) is thrown on,
// never taken for "no such user".
import type { Config } from '../config/schema.js';
import type { UserAccount } from '../users/user.js';
import { isPlausibleUserName } from '../users/resolve.js';
import { asciiLower, parseAddress, rcptAddrUser, splitExtension } from './address.js';
import { aliasKeys, CachedTables, expandAlias, openAliasTable } from './aliases.js';
import { RecipientMap } from './map.js';

/** `recipients.*` of the configuration (aliasMaps optional: none). */
export type RecipientSettings = Pick<Config['recipients'], 'localMailers' | 'localDomains' | 'delimiter' | 'map'> &
  Partial<Pick<Config['recipients'], 'aliasMaps'>>;

/** What the classifier needs from the user resolver (src/users/resolve.ts). */
export interface UserLookup {
  /** The account, or null: no such user, root, or below users.minUid (src/users/resolve.ts). */
  lookup(name: string): Promise<UserAccount | null>;
}

/** One RCPT as the milter saw it. */
export interface RcptInput {
  /** argv[0] of SMFIC_RCPT exactly as sent, e.g. `<Alice+lists@Example.ORG>`. */
  rcpt: string;
  /** The `{rcpt_mailer}` macro, if sent. */
  rcptMailer?: string | undefined;
  /** The `{rcpt_addr}` macro, if sent. */
  rcptAddr?: string | undefined;
}

export interface LocalRecipient {
  kind: 'local';
  user: UserAccount;
  /** argv[0] exactly as the MTA sent it (what SMFIR_DELRCPT needs). */
  rcpt: string;
  /** The envelope address without brackets, case kept: the filter's RECIPIENT. */
  address: string;
  /** The whole local part, extension included, lower-cased (Postfix local(8) LOCAL). */
  localPart: string;
  /** The address extension, lower-cased; '' if none (EXTENSION). */
  extension: string;
  /** The domain, lower-cased; '' if none (DOMAIN). */
  domain: string;
}

export interface NonLocalRecipient {
  kind: 'nonlocal';
  rcpt: string;
  /** Why, for the debug log: `mailer smtp`, `no such user bob`, … */
  reason: string;
}

/**
 * A RCPT that recipients.aliasMaps expanded: the local users behind it
 * (each once, with the address the alias led to as their RECIPIENT) and how
 * many targets behind it are not local users. SMFIR_DELRCPT removes `rcpt`
 * only when every user behind it rejected and nothing else is behind it.
 */
export interface AliasRecipient {
  kind: 'alias';
  rcpt: string;
  /** The users behind the alias; `rcpt` of each is the alias RCPT as sent. */
  locals: LocalRecipient[];
  /** Targets that are not local users (remote addresses, unknown names); programs and files are not counted. */
  nonLocalTargets: number;
}

export type Recipient = LocalRecipient | NonLocalRecipient | AliasRecipient;

/** The local users a classified RCPT reaches (none for a non-local one). */
export function localsOf(r: Recipient): LocalRecipient[] {
  return r.kind === 'local' ? [r] : r.kind === 'alias' ? r.locals : [];
}

export interface ClassifierOptions {
  recipients: RecipientSettings;
  /** Answers null for root and accounts outside users.minUid..maxUid, so they are never local. */
  users: UserLookup;
  /**
   * Told when a recipient names a user but came with a `{rcpt_mailer}` that
   * is not in `recipients.localMailers` (and is not one of the MTAs' relay
   * mailers): most likely a local transport the administrator has not listed
   * (a `dovecot` pipe, `lmtp-private`), so that user's filter never runs.
   */
  onUnmatchedMailer?: (mailer: string, user: string) => void;
}

/**
 * The MTAs' own mailers for mail that leaves the host (Postfix's smtp and
 * relay transports, Sendmail's esmtp family): a recipient routed through one
 * of them is remote even when its local part happens to name a local user,
 * so it is not reported as an unmatched local mailer.
 */
export const RELAY_MAILERS: readonly string[] = ['smtp', 'relay', 'esmtp', 'smtp8', 'dsmtp', 'error', 'discard'];

export class RecipientClassifier {
  private opts: ClassifierOptions;
  private map: RecipientMap;
  private aliases: CachedTables;

  private constructor(opts: ClassifierOptions, map: RecipientMap) {
    this.opts = opts;
    this.map = map;
    this.aliases = new CachedTables((opts.recipients.aliasMaps ?? []).map(openAliasTable));
  }

  /** Builds a classifier, reading `recipients.map` if set (throws PumError PUM_ERR_TABLE). */
  static async create(opts: ClassifierOptions): Promise<RecipientClassifier> {
    return new RecipientClassifier(opts, await RecipientMap.load(opts.recipients.map));
  }

  /**
   * Re-reads the map and takes the new settings (SIGHUP). On error (throws
   * PumError PUM_ERR_TABLE) the previous map and settings stay in force.
   */
  async reload(opts: ClassifierOptions): Promise<void> {
    this.map = await RecipientMap.load(opts.recipients.map);
    this.opts = opts;
    this.aliases = new CachedTables((opts.recipients.aliasMaps ?? []).map(openAliasTable));
  }

  async classify(input: RcptInput): Promise<Recipient> {
    const { rcpt } = input;
    const { recipients: settings, users } = this.opts;
    const parsed = parseAddress(rcpt);
    if (parsed.address === '') return nonLocal(rcpt, 'empty address');
    const domain = asciiLower(parsed.domain);
    const argSplit = splitExtension(parsed.localPart, settings.delimiter);

    const mailer = input.rcptMailer;
    const byMailer = mailer !== undefined && mailer !== '' && settings.localMailers.includes(mailer);
    const byDomain = domain !== '' && settings.localDomains.some((d) => asciiLower(d) === domain);
    const localByRoute = byMailer || byDomain || domain === '';

    // Whole-address keys always apply; bare local-part keys only to an
    // address that is local anyway (else `bob` would catch bob@elsewhere).
    const keys = domain !== '' ? [`${parsed.localPart}@${domain}`, `${argSplit.base}@${domain}`] : [];
    if (localByRoute) {
      keys.push(parsed.localPart, argSplit.base);
      if (input.rcptAddr) keys.push(rcptAddrUser(input.rcptAddr));
    }
    const mapped = this.map.lookup(keys);

    if (mapped === undefined && this.aliases.tables.length > 0) {
      const alias = await this.expand(rcpt, parsed.localPart, domain, localByRoute);
      if (alias !== null) return alias;
    }

    let name: string;
    let extension: string;
    if (mapped !== undefined) {
      name = mapped;
      extension = argSplit.extension;
    } else {
      if (!byMailer && !byDomain) {
        if (mailer) await this.noteUnmatchedMailer(mailer, input.rcptAddr ? rcptAddrUser(input.rcptAddr) : parsed.localPart);
        return nonLocal(rcpt, mailer ? `mailer ${mailer} not local` : `domain ${domain || '(none)'} not local`);
      }
      const source = input.rcptAddr ? rcptAddrUser(input.rcptAddr) : parsed.localPart;
      const split = splitExtension(source, settings.delimiter);
      name = asciiLower(split.base);
      // Sendmail's {rcpt_addr} may have lost the extension; take the RCPT's
      // when it names the same user.
      extension = split.extension !== '' ? split.extension : asciiLower(argSplit.base) === name ? argSplit.extension : '';
    }

    if (!isPlausibleUserName(name)) return nonLocal(rcpt, `not a user name: ${JSON.stringify(name)}`);
    const user = await users.lookup(name);
    if (user === null) return nonLocal(rcpt, `no such user ${name} (or root, or outside users.minUid..maxUid)`);
    return {
      kind: 'local',
      user,
      rcpt,
      address: parsed.address,
      localPart: asciiLower(parsed.localPart),
      extension: asciiLower(extension),
      domain,
    };
  }

  /**
   * recipients.aliasMaps: the users behind `rcpt` when a table knows it,
   * else null. A leaf with a domain is local when the domain is in
   * recipients.localDomains, or is the RCPT's own domain and the RCPT was
   * local anyway; a leaf without one is a local name. Table failures throw
   * (PUM_ERR_TABLE): the RCPT is tempfailed, never taken for "not an alias".
   */
  private async expand(rcpt: string, localPart: string, domain: string, localByRoute: boolean): Promise<Recipient | null> {
    const settings = this.opts.recipients;
    const localDomains = settings.localDomains.map((d) => asciiLower(d));
    const keysOf = (address: string): string[] => {
      const p = parseAddress(address);
      const d = asciiLower(p.domain);
      const local = d === '' || localDomains.includes(d) || (localByRoute && d === domain);
      return aliasKeys({ localPart: p.localPart, base: splitExtension(p.localPart, settings.delimiter).base, domain: d }, local);
    };
    const start = domain === '' ? localPart : `${localPart}@${domain}`;
    const expansion = await expandAlias(this.aliases, start, keysOf);
    if (!expansion.expanded) return null;
    const locals: LocalRecipient[] = [];
    let nonLocalTargets = 0;
    for (const leaf of expansion.leaves) {
      const p = parseAddress(leaf.target);
      const d = asciiLower(p.domain);
      const local = d === '' || localDomains.includes(d) || (localByRoute && d === domain);
      const split = splitExtension(p.localPart, settings.delimiter);
      const name = asciiLower(split.base);
      const user = local && isPlausibleUserName(name) ? await this.opts.users.lookup(name) : null;
      if (user === null) {
        nonLocalTargets++;
        continue;
      }
      if (locals.some((l) => l.user.name === user.name)) continue;
      const leafDomain = d !== '' ? d : domain;
      locals.push({
        kind: 'local',
        user,
        rcpt,
        address: leafDomain !== '' ? `${p.localPart}@${leafDomain}` : p.localPart,
        localPart: asciiLower(p.localPart),
        extension: asciiLower(split.extension),
        domain: leafDomain,
      });
    }
    if (locals.length === 0) {
      return nonLocal(rcpt, `alias of ${expansion.leaves.length} address(es), none a local user`);
    }
    return { kind: 'alias', rcpt, locals, nonLocalTargets };
  }

  /**
   * A recipient that is not local by its mailer: does it name a user all the
   * same? Then the mailer is probably a local transport missing from
   * recipients.localMailers. A failed lookup is not worth a 451 here (the
   * recipient is not local either way): it is simply not reported.
   */
  private async noteUnmatchedMailer(mailer: string, source: string): Promise<void> {
    const report = this.opts.onUnmatchedMailer;
    if (report === undefined || RELAY_MAILERS.includes(asciiLower(mailer))) return;
    const name = asciiLower(splitExtension(source, this.opts.recipients.delimiter).base);
    if (!isPlausibleUserName(name)) return;
    const user = await this.opts.users.lookup(name).catch(() => null);
    if (user !== null) report(mailer, user.name);
  }
}

/** Convenience wrapper for `RecipientClassifier.create`. */
export function createRecipientClassifier(opts: ClassifierOptions): Promise<RecipientClassifier> {
  return RecipientClassifier.create(opts);
}

function nonLocal(rcpt: string, reason: string): NonLocalRecipient {
  return { kind: 'nonlocal', rcpt, reason };
}

/**
 * The local recipient `rcpt` would be for `user` when the user is already
 * known (the `try` command): the same address fields the classifier gives,
 * so the filter sees the same RECIPIENT LOCAL EXTENSION DOMAIN.
 */
export function localRecipientFor(user: UserAccount, rcpt: string, delimiter: string): LocalRecipient {
  const parsed = parseAddress(rcpt);
  const localPart = asciiLower(parsed.localPart);
  return {
    kind: 'local',
    user,
    rcpt,
    address: parsed.address,
    localPart,
    extension: splitExtension(localPart, delimiter).extension,
    domain: asciiLower(parsed.domain),
  };
}
