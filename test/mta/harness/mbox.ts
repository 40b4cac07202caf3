// Reading the mbox files both MTAs write (Postfix local(8) and the Sendmail
// test mailer both produce "From sender date" separators, then the header,
// a blank line and the body, then one blank line).
import { existsSync, readFileSync } from 'node:fs';

export interface MboxMessage {
  /** The `From ` separator line. */
  fromLine: string;
  /** The header block as written (with the MTA's added Return-Path, Received, ...). */
  header: string;
  /** The body exactly as stored, without the blank line that ends the mbox entry. */
  body: Buffer;
  /** First value of a header field (case-insensitive), unfolded; undefined if absent. */
  get(name: string): string | undefined;
  /** All values of a header field, unfolded. */
  getAll(name: string): string[];
}

function headerValues(header: string, name: string): string[] {
  const unfolded = header.replace(/\n[ \t]+/g, ' ');
  const out: string[] = [];
  const want = name.toLowerCase() + ':';
  for (const line of unfolded.split('\n')) {
    if (line.toLowerCase().startsWith(want)) out.push(line.slice(want.length).trim());
  }
  return out;
}

/** Splits an mbox file into messages; [] if the file does not exist. */
export function readMbox(file: string): MboxMessage[] {
  if (!existsSync(file)) return [];
  const buf = readFileSync(file);
  // Message starts: "From " at the start of the file or after "\n\n".
  const starts: number[] = [];
  if (buf.subarray(0, 5).toString('latin1') === 'From ') starts.push(0);
  let i = 0;
  for (;;) {
    const j = buf.indexOf('\n\nFrom ', i, 'latin1');
    if (j < 0) break;
    starts.push(j + 2);
    i = j + 2;
  }
  const msgs: MboxMessage[] = [];
  for (let k = 0; k < starts.length; k++) {
    const s = starts[k]!;
    const e = k + 1 < starts.length ? starts[k + 1]! : buf.length;
    const chunk = buf.subarray(s, e);
    const nl = chunk.indexOf('\n');
    const fromLine = chunk.subarray(0, nl).toString('latin1');
    const sep = chunk.indexOf('\n\n', nl);
    const headerEnd = sep < 0 ? chunk.length : sep;
    const header = chunk.subarray(nl + 1, headerEnd).toString('latin1');
    let body = sep < 0 ? Buffer.alloc(0) : chunk.subarray(sep + 2);
    // the mbox entry ends with one extra empty line
    if (body.length > 0 && body[body.length - 1] === 0x0a) body = body.subarray(0, body.length - 1);
    msgs.push({
      fromLine,
      header,
      body,
      get: (name) => headerValues(header, name)[0],
      getAll: (name) => headerValues(header, name),
    });
  }
  return msgs;
}
