// Runs in: the milter process and the in-repo client (pure).
//
// Framing: `len:u32 BE | cmd:u8 | data`, where len counts cmd + data.
// Pure: no sockets, no timers. The decoder accepts any chunking (a stream
// 'data' event may hold part of a packet or several) and checks the length
// word before it looks at any other byte.
import { DEFAULT_MAX_FRAME_LENGTH, MILTER_LEN_BYTES } from './constants.js';
import { toBuffer } from './bytes.js';
import { MilterProtocolError } from './errors.js';

/** One packet: its command (or reply) byte and the data after it. */
export interface Frame {
  readonly code: number;
  readonly data: Buffer;
}

export interface FrameDecoderOptions {
  /** Largest accepted length word (command byte + data). Default 1 MiB. */
  readonly maxFrameLength?: number;
}

/**
 * Incremental frame reader. push() bytes as they arrive, then call next()
 * until it returns undefined. Keeps received chunks in a list and joins them
 * only when one frame spans several, so a big frame arriving in small pieces
 * costs one copy, not one per piece.
 */
export class FrameDecoder {
  readonly maxFrameLength: number;
  private chunks: Buffer[] = [];
  /** Read position inside chunks[0]. */
  private offset = 0;
  private available = 0;
  /** Once the stream is broken nothing after it can be trusted. */
  private failure: MilterProtocolError | undefined;

  constructor(options: FrameDecoderOptions = {}) {
    this.maxFrameLength = options.maxFrameLength ?? DEFAULT_MAX_FRAME_LENGTH;
    if (!Number.isInteger(this.maxFrameLength) || this.maxFrameLength < 1) {
      throw new RangeError(`maxFrameLength must be a positive integer, got ${this.maxFrameLength}`);
    }
  }

  /** Bytes received but not yet returned as frames. */
  get bufferedBytes(): number {
    return this.available;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.available += chunk.length;
  }

  /** The next complete frame, or undefined if more bytes are needed. Throws MilterProtocolError on a bad length. */
  next(): Frame | undefined {
    if (this.failure) throw this.failure;
    if (this.available < MILTER_LEN_BYTES) return undefined;
    const length = this.peekLength();
    if (length === 0) {
      this.failure = new MilterProtocolError('frame-length-zero', 'packet length 0: no command byte');
      throw this.failure;
    }
    if (length > this.maxFrameLength) {
      this.failure = new MilterProtocolError('frame-too-large', `packet length ${length} exceeds the maximum of ${this.maxFrameLength}`);
      throw this.failure;
    }
    if (this.available < MILTER_LEN_BYTES + length) return undefined;
    this.skip(MILTER_LEN_BYTES);
    const body = this.take(length);
    // length >= 1 was checked above, so body[0] exists.
    const code = body[0] as number;
    return { code, data: body.subarray(1) };
  }

  /**
   * Call at end of stream: throws if a partial frame is left over (the peer
   * hung up mid-packet), so the caller can tell a clean EOF from a cut one.
   */
  end(): void {
    if (this.failure) throw this.failure;
    if (this.available > 0) {
      throw new MilterProtocolError('truncated-frame', `connection ended inside a packet (${this.available} bytes pending)`);
    }
  }

  private peekLength(): number {
    const first = this.chunks[0];
    if (first && first.length - this.offset >= MILTER_LEN_BYTES) return first.readUInt32BE(this.offset);
    // The length word itself is split across chunks: gather its four bytes.
    const word = Buffer.allocUnsafe(MILTER_LEN_BYTES);
    let filled = 0;
    let pos = this.offset;
    for (const chunk of this.chunks) {
      while (pos < chunk.length && filled < MILTER_LEN_BYTES) word[filled++] = chunk[pos++] as number;
      if (filled === MILTER_LEN_BYTES) break;
      pos = 0;
    }
    return word.readUInt32BE(0);
  }

  private skip(n: number): void {
    this.take(n);
  }

  /** Removes n bytes (n <= available). A slice when they sit in one chunk, else one copy. */
  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length - this.offset >= n) {
      const out = first.subarray(this.offset, this.offset + n);
      this.offset += n;
      this.available -= n;
      if (this.offset === first.length) {
        this.chunks.shift();
        this.offset = 0;
      }
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0];
      if (!chunk) throw new Error('FrameDecoder: take() past available bytes');
      const count = Math.min(n - filled, chunk.length - this.offset);
      chunk.copy(out, filled, this.offset, this.offset + count);
      filled += count;
      this.offset += count;
      if (this.offset === chunk.length) {
        this.chunks.shift();
        this.offset = 0;
      }
    }
    this.available -= n;
    return out;
  }
}

/**
 * Builds one packet as ONE Buffer (length word, code, data parts), so the
 * socket gets it in a single write: miltertest reads the 5-byte header with
 * one read() and fails when it arrives in pieces.
 */
export function encodeFrame(code: number, ...parts: readonly Buffer[]): Buffer {
  let dataLength = 0;
  for (const part of parts) dataLength += part.length;
  const packet = Buffer.allocUnsafe(MILTER_LEN_BYTES + 1 + dataLength);
  packet.writeUInt32BE(1 + dataLength, 0);
  packet[MILTER_LEN_BYTES] = code;
  let pos = MILTER_LEN_BYTES + 1;
  for (const part of parts) pos += part.copy(packet, pos);
  return packet;
}

/** A NUL-terminated copy of a byte string (a C string on the wire). */
export function cString(value: string | Buffer): Buffer {
  const bytes = toBuffer(value);
  const out = Buffer.allocUnsafe(bytes.length + 1);
  bytes.copy(out, 0);
  out[bytes.length] = 0;
  return out;
}

/**
 * Splits data made of NUL-terminated strings (`a\0b\0`). Returns undefined
 * when the data does not end with a NUL (an unterminated string). Empty data
 * gives an empty list. The parts are views into `data`, not copies.
 */
export function splitCStrings(data: Buffer): Buffer[] | undefined {
  if (data.length === 0) return [];
  if (data[data.length - 1] !== 0) return undefined;
  const parts: Buffer[] = [];
  let start = 0;
  for (;;) {
    const nul = data.indexOf(0, start);
    if (nul < 0) break;
    parts.push(data.subarray(start, nul));
    start = nul + 1;
    if (start >= data.length) break;
  }
  return parts;
}
