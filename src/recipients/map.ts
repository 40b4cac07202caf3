// Runs in: the milter process.
//
// The optional recipient map (`recipients.map`): `address-or-localpart
// username` per line, `#` comments, blank lines ignored. Keys are compared
// case-insensitively. Loaded at start and on reload; a bad line or an
// unreadable file is PUM_ERR_TABLE naming the file and line, so a reload can
// keep the previous map.
import fs from 'node:fs/promises';
import { PumError } from '../errors.js';

export class RecipientMap {
  private constructor(private readonly entries: ReadonlyMap<string, string>) {}

  static readonly empty = new RecipientMap(new Map());

  /** Parses map text; `source` names it in error messages. */
  static parse(text: string, source = 'recipient map'): RecipientMap {
    const entries = new Map<string, string>();
    const lines = text.split(/\r?\n/);
    for (const [i, raw] of lines.entries()) {
      const line = raw.replace(/#.*$/, '').trim();
      if (line === '') continue;
      const fields = line.split(/\s+/);
      if (fields.length !== 2) {
        throw new PumError('PUM_ERR_TABLE', `${source}:${i + 1}: expected "address-or-localpart username", got ${JSON.stringify(raw)}`);
      }
      const [key = '', user = ''] = fields;
      entries.set(key.toLowerCase(), user);
    }
    return new RecipientMap(entries);
  }

  /** Reads the map file; an empty path means no map. */
  static async load(file: string): Promise<RecipientMap> {
    if (file === '') return RecipientMap.empty;
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      throw new PumError('PUM_ERR_TABLE', `${file}: ${(err as Error).message}`, { cause: err });
    }
    return RecipientMap.parse(text, file);
  }

  get size(): number {
    return this.entries.size;
  }

  /** The user for the first key found, in the order given (most specific first). */
  lookup(keys: readonly string[]): string | undefined {
    for (const key of keys) {
      const user = this.entries.get(key.toLowerCase());
      if (user !== undefined) return user;
    }
    return undefined;
  }
}
