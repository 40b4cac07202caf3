// Streaming line-ending conversion for message bodies. The MTA sends the body
// with CRLF, cut into chunks at arbitrary places (even between CR and LF);
// the filter gets `filter.lineEndings`. Only a CR that ends a chunk is held
// back, so memory stays bounded by the chunk size.

export type LineEndings = 'lf' | 'crlf';

const CR = 0x0d;
const LF = 0x0a;

export class LineEndingConverter {
  private pendingCR = false;

  constructor(private readonly target: LineEndings) {}

  /** Converts one chunk; may hold back a trailing CR until the next chunk or `end()`. */
  push(chunk: Buffer): Buffer {
    return this.target === 'lf' ? this.toLf(chunk) : this.toCrlf(chunk);
  }

  /** Whatever was held back (a lone CR at the very end). */
  end(): Buffer {
    const tail = this.pendingCR ? Buffer.from([CR]) : Buffer.alloc(0);
    this.pendingCR = false;
    return tail;
  }

  /** CRLF -> LF; lone CRs and LFs stay as they are. */
  private toLf(chunk: Buffer): Buffer {
    const parts: Buffer[] = [];
    let start = 0;
    if (this.pendingCR) {
      this.pendingCR = false;
      // A CR held back from the previous chunk: part of CRLF (drop it) or alone (keep it).
      if (chunk[0] !== LF) parts.push(Buffer.from([CR]));
    }
    for (;;) {
      const cr = chunk.indexOf(CR, start);
      if (cr < 0) {
        parts.push(chunk.subarray(start));
        break;
      }
      if (cr === chunk.length - 1) {
        parts.push(chunk.subarray(start, cr));
        this.pendingCR = true;
        break;
      }
      if (chunk[cr + 1] === LF) {
        parts.push(chunk.subarray(start, cr));
        start = cr + 1; // the LF starts the next part
      } else {
        parts.push(chunk.subarray(start, cr + 1));
        start = cr + 1;
      }
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }

  /** Bare LF -> CRLF; CRLF and lone CRs stay. */
  private toCrlf(chunk: Buffer): Buffer {
    const parts: Buffer[] = [];
    let start = 0;
    let prevCR = this.pendingCR;
    if (this.pendingCR) {
      this.pendingCR = false;
      parts.push(Buffer.from([CR]));
    }
    for (;;) {
      const lf = chunk.indexOf(LF, start);
      if (lf < 0) {
        const rest = chunk.subarray(start);
        // Hold a trailing CR back so a following LF is not doubled; it is
        // always written, so only the bookkeeping is deferred.
        if (rest.length > 0 && rest[rest.length - 1] === CR) {
          parts.push(rest.subarray(0, rest.length - 1));
          this.pendingCR = true;
        } else {
          parts.push(rest);
        }
        break;
      }
      const before = lf > start ? chunk[lf - 1] === CR : lf === 0 && prevCR;
      parts.push(chunk.subarray(start, lf));
      parts.push(before ? LF_ONLY : CRLF_BYTES);
      start = lf + 1;
      prevCR = false;
    }
    return Buffer.concat(parts);
  }
}

const LF_ONLY = Buffer.from([LF]);
const CRLF_BYTES = Buffer.from([CR, LF]);

/** The line terminator for a setting. */
export function eolOf(lineEndings: LineEndings): string {
  return lineEndings === 'lf' ? '\n' : '\r\n';
}
