// Runs in: every process (pure).
//
// Envelope address parsing: the RCPT argument as the MTA sent it
// (`<Alice+lists@Example.ORG>`), and the user name part of `{rcpt_addr}`.
// Pure: no I/O.

export interface ParsedAddress {
  /** The address without angle brackets or source route, case kept: `Alice+lists@Example.ORG`. */
  address: string;
  /** Everything left of the rightmost `@` (the whole address if there is none), case kept. */
  localPart: string;
  /** Right of the rightmost `@`, without a trailing dot; '' if none. Case kept. */
  domain: string;
}

/** `<a@b>` -> `a@b`; the null sender `<>` -> ''. White space around (and inside the brackets) is dropped. */
export function stripBrackets(arg: string): string {
  const a = arg.trim();
  return a.startsWith('<') && a.endsWith('>') ? a.slice(1, -1).trim() : a;
}

/**
 * Parses a RCPT argument: strips `<…>`, an RFC 5321 source route
 * (`<@relay:user@dom>`) and surrounding white space.
 */
export function parseAddress(arg: string): ParsedAddress {
  let a = stripBrackets(arg);
  if (a.startsWith('@')) {
    const colon = a.indexOf(':');
    if (colon >= 0) a = a.slice(colon + 1);
  }
  const at = a.lastIndexOf('@');
  if (at < 0) return { address: a, localPart: a, domain: '' };
  return { address: a, localPart: a.slice(0, at), domain: a.slice(at + 1).replace(/\.$/, '') };
}

/**
 * Splits a local part at the first of the delimiter characters (like
 * Postfix's recipient_delimiter with several characters): `alice+lists` ->
 * `alice`, `lists`. An empty delimiter never splits; a leading delimiter
 * does not split either (`+foo` is a name, not an empty user).
 */
export function splitExtension(localPart: string, delimiter: string): { base: string; extension: string } {
  if (delimiter === '') return { base: localPart, extension: '' };
  for (let i = 1; i < localPart.length; i++) {
    if (delimiter.includes(localPart[i] as string)) {
      return { base: localPart.slice(0, i), extension: localPart.slice(i + 1) };
    }
  }
  return { base: localPart, extension: '' };
}

/**
 * The user part of a `{rcpt_addr}` macro: Postfix sends `user@domain`,
 * Sendmail the bare local user after aliasing (maybe with a leading `\`,
 * its "do not alias again" mark). `@domain` is stripped only if present.
 */
export function rcptAddrUser(rcptAddr: string): string {
  const { localPart } = parseAddress(rcptAddr);
  return localPart.startsWith('\\') ? localPart.slice(1) : localPart;
}

/**
 * Lower case for ASCII letters only. Envelope values are byte strings (one
 * character per byte, as the milter wire gives them; src/filter/environment.ts
 * turns them into text): String#toLowerCase would also change bytes
 * 0xC0-0xDE and so break a UTF-8 address (`José`).
 */
export function asciiLower(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}
