// Runs in: its own process (`per-user-milter try`).
//
// Spools a whole RFC 5322 message (a file or standard input, for `try`) into
// exactly the form the milter produces from HEADER/BODY packets, so a filter
// sees the same bytes either way. The header is split into (name, value)
// pairs the way the MTA does and written through the same SpoolFile methods;
// the body streams through. Saved mail often starts with an mbox `From ` line
// and a `Return-Path:` added at delivery: both are dropped, since the
// milter's form starts with its own Return-Path.
import type { Spool } from './spool.js';
import type { SpoolFile } from './file.js';
import type { LineEndings } from './line-endings.js';

export interface RawSpoolOptions {
  /** Envelope sender; when undefined, the message's own Return-Path (else the null sender ''). */
  sender?: string | undefined;
  lineEndings: LineEndings;
  maxMessageBytes: number;
}

export interface RawSpoolResult {
  /** Closed, ready for the filter; the caller removes it. */
  file: SpoolFile;
  /** The sender written in the Return-Path line. */
  sender: string;
}

interface Header {
  name: string;
  /** Everything after the colon, continuation lines joined by LF (as the MTA passes them). */
  value: string;
}

const HEADER_START = /^([\x21-\x39\x3b-\x7e]+):/;

export async function spoolRawMessage(spool: Spool, input: AsyncIterable<Buffer | string>, opts: RawSpoolOptions): Promise<RawSpoolResult> {
  const reader = new LineReader(input[Symbol.asyncIterator]());
  const headers: Header[] = [];
  /** A line that ended the header without being blank: it starts the body. */
  let firstBodyLine: Buffer | null = null;
  let first = true;
  for (;;) {
    const line = await reader.line();
    if (line === null) break;
    const text = line.toString('latin1').replace(/\r?\n$/, '');
    if (first && text.startsWith('From ')) {
      first = false;
      continue; // mbox separator
    }
    first = false;
    if (text === '') break;
    const last = headers[headers.length - 1];
    if ((text.startsWith(' ') || text.startsWith('\t')) && last) {
      last.value += '\n' + text;
      continue;
    }
    const m = HEADER_START.exec(text);
    if (!m) {
      firstBodyLine = line;
      break;
    }
    headers.push({ name: m[1] as string, value: text.slice((m[0] as string).length) });
  }

  const returnPaths = headers.filter((h) => h.name.toLowerCase() === 'return-path');
  const sender = opts.sender ?? returnPaths[0]?.value.trim().replace(/^<(.*)>$/, '$1') ?? '';
  const file = await spool.create(sender, {
    lineEndings: opts.lineEndings,
    headerLeadingSpace: true, // values above keep all their white space after the colon
    maxMessageBytes: opts.maxMessageBytes,
  });
  try {
    for (const h of headers) {
      if (h.name.toLowerCase() !== 'return-path') await file.header(h.name, h.value);
    }
    await file.endHeaders();
    if (firstBodyLine) await file.write(firstBodyLine);
    for await (const chunk of reader.rest()) await file.write(chunk);
    await file.close();
  } catch (err) {
    await file.remove().catch(() => {});
    throw err;
  }
  return { file, sender };
}

/** Reads lines (with their terminator) from chunks, then hands over the rest unsplit. */
class LineReader {
  private buf: Buffer = Buffer.alloc(0);
  private done = false;

  constructor(private readonly it: AsyncIterator<Buffer | string>) {}

  /** The next line including its LF, the unterminated last line, or null at the end. */
  async line(): Promise<Buffer | null> {
    for (;;) {
      const nl = this.buf.indexOf(0x0a);
      if (nl >= 0) {
        const line = this.buf.subarray(0, nl + 1);
        this.buf = this.buf.subarray(nl + 1);
        return line;
      }
      if (this.done) {
        if (this.buf.length === 0) return null;
        const line = this.buf;
        this.buf = Buffer.alloc(0);
        return line;
      }
      const next = await this.it.next();
      if (next.done) this.done = true;
      else this.buf = Buffer.concat([this.buf, toBuf(next.value)]);
    }
  }

  async *rest(): AsyncGenerator<Buffer> {
    if (this.buf.length > 0) yield this.buf;
    this.buf = Buffer.alloc(0);
    while (!this.done) {
      const next = await this.it.next();
      if (next.done) this.done = true;
      else yield toBuf(next.value);
    }
  }
}

function toBuf(chunk: Buffer | string): Buffer {
  return typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk;
}
