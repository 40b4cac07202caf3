// Runs in: every process (pure).
//
// policy.mixed = extension (docs/reference.md §3, §5.4): a user whose filter
// rejected a message that is delivered anyway (someone else accepted) gets
// their copy at `user+EXT@domain` instead, so their own delivery rules
// (Sieve, procmail, maildrop, a Dovecot plus-folder) can file it as junk;
// the other recipients never learn of it (nothing in the headers, which
// everyone shares). The MTA is told SMFIR_DELRCPT for the RCPT as it came
// and SMFIR_ADDRCPT for the new one. Pure: no I/O.
import { parseAddress, splitExtension } from '../recipients/address.js';

/**
 * `<alice@x>` -> `<alice+spam@x>`; an existing extension is replaced
 * (`<alice+lists@x>` -> `<alice+spam@x>`), the domain and the brackets are
 * kept, a source route is dropped. `delimiter`: recipients.delimiter (its
 * first character is the one written).
 */
export function withExtension(rcpt: string, extension: string, delimiter: string): string {
  const parsed = parseAddress(rcpt);
  const { base } = splitExtension(parsed.localPart, delimiter);
  const sep = delimiter === '' ? '+' : (delimiter[0] as string);
  const local = `${base}${sep}${extension}`;
  const address = parsed.domain !== '' ? `${local}@${parsed.domain}` : local;
  return rcpt.trim().startsWith('<') ? `<${address}>` : address;
}
