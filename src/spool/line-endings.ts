// Runs in: every process (pure).
//
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

  /** CRLF -> LF; lone CRs and LFs stay as they are. One output buffer per chunk, segments copied in. */
  private toLf(chunk: Buffer): Buffer {
    const out = Buffer.allocUnsafe(chunk.length + 1);
    let pos = 0;
    let start = 0;
    if (this.pendingCR) {
      this.pendingCR = false;
      // A CR held back from the previous chunk: part of CRLF (drop it) or alone (keep it).
      if (chunk[0] !== LF) out[pos++] = CR;
    }
    for (;;) {
      const cr = chunk.indexOf(CR, start);
      if (cr < 0) {
        pos += chunk.copy(out, pos, start);
        break;
      }
      if (cr === chunk.length - 1) {
        pos += chunk.copy(out, pos, start, cr);
        this.pendingCR = true;
        break;
      }
      // Copy up to the CR; keep the CR itself only when no LF follows.
      pos += chunk.copy(out, pos, start, chunk[cr + 1] === LF ? cr : cr + 1);
      start = cr + 1;
    }
    return out.subarray(0, pos);
  }

  /** Bare LF -> CRLF; CRLF and lone CRs stay. Input that is already CRLF passes through uncopied. */
  private toCrlf(chunk: Buffer): Buffer {
    const heldCR = this.pendingCR;
    this.pendingCR = false;
    if (chunk.length === 0) {
      this.pendingCR = heldCR;
      return chunk;
    }
    // Count bare LFs: an LF not preceded by CR (in this chunk, or held back from the last one).
    let bare = 0;
    for (let lf = chunk.indexOf(LF); lf >= 0; lf = chunk.indexOf(LF, lf + 1)) {
      if (lf === 0 ? !heldCR : chunk[lf - 1] !== CR) bare++;
    }
    // Hold a trailing CR back so that an LF starting the next chunk is not doubled.
    const holdBack = chunk[chunk.length - 1] === CR ? 1 : 0;
    this.pendingCR = holdBack === 1;
    const body = holdBack ? chunk.subarray(0, chunk.length - 1) : chunk;
    if (bare === 0 && !heldCR) return body;
    const out = Buffer.allocUnsafe(body.length + bare + (heldCR ? 1 : 0));
    let pos = 0;
    if (heldCR) out[pos++] = CR;
    let start = 0;
    for (let lf = body.indexOf(LF); lf >= 0; lf = body.indexOf(LF, lf + 1)) {
      const isBare = lf === 0 ? !heldCR : body[lf - 1] !== CR;
      if (!isBare) continue;
      pos += body.copy(out, pos, start, lf);
      out[pos++] = CR;
      start = lf; // the LF is copied with the next segment
    }
    pos += body.copy(out, pos, start);
    return out.subarray(0, pos);
  }
}

/** The line terminator for a setting. */
export function eolOf(lineEndings: LineEndings): string {
  return lineEndings === 'lf' ? '\n' : '\r\n';
}
