// Runs in: the milter process.
//
// One spooled message: a 0600 file with a random name, created with O_EXCL,
// written as the filter's message form (docs/reference.md §4) while the MTA
// sends the message, never held in memory. Writes wait for the file stream to
// drain, so a slow disk slows the milter connection instead of growing the
// heap. A write that fails (ENOSPC, EIO, EDQUOT) is PUM_ERR_SPOOL_WRITE: the
// message is tempfailed 451 4.3.1 and the MTA keeps it.
import { once } from 'node:events';
import fs from 'node:fs/promises';
import { constants as C } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import { PumError } from '../errors.js';
import { eolOf, LineEndingConverter, type LineEndings } from './line-endings.js';
import { headerLine, returnPathLine, toBuffer, type Bytes } from './header.js';

export interface SpoolFileOptions {
  lineEndings: LineEndings;
  /** SMFIP_HDR_LEADSPC was negotiated (see HeaderForm). */
  headerLeadingSpace: boolean;
  /** `milter.maxMessageSize`: past this many message bytes the file is flagged oversize and writing stops. */
  maxMessageBytes: number;
}

/** Called once with the file when it is removed (the spool's registry). */
type OnRemoved = (file: SpoolFile) => void;

export class SpoolFile {
  private readonly converter: LineEndingConverter;
  private stream: WriteStream | null;
  private streamError: Error | null = null;
  private removal: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private inHeaders = true;
  private _bytesWritten = 0;
  private _messageBytes = 0;
  private _oversize = false;

  /** Use `Spool.create`. */
  constructor(
    readonly path: string,
    handle: fs.FileHandle,
    private readonly options: SpoolFileOptions,
    private readonly onRemoved: OnRemoved = () => {},
  ) {
    this.converter = new LineEndingConverter(options.lineEndings);
    this.stream = handle.createWriteStream();
    this.stream.on('error', (err) => {
      this.streamError ??= spoolWriteError(path, err);
    });
  }

  /** Bytes written to the file (the filter's message form): for `spool_bytes_total`. */
  get bytesWritten(): number {
    return this._bytesWritten;
  }

  /** Size of the message as the MTA sent it (CRLF lines, headers + body): compared with `milter.maxMessageSize`. */
  get messageBytes(): number {
    return this._messageBytes;
  }

  /** True once the message passed `maxMessageBytes`; the file is then incomplete and must not be filtered. */
  get oversize(): boolean {
    return this._oversize;
  }

  /** The first line. Called by `Spool.create`. */
  async writeReturnPath(sender: string): Promise<void> {
    await this.put(returnPathLine(sender, this.options.lineEndings), 0);
  }

  /** One header from a milter HEADER packet (name without colon, value as sent). */
  async header(name: string, value: Bytes): Promise<void> {
    if (!this.inHeaders) throw new PumError('PUM_ERR_INTERNAL', 'spool: header after end of headers');
    const raw = toBuffer(value);
    // As the MTA counts it: name, colon, space (unless already there), value, CRLF.
    const size = name.length + 1 + (this.options.headerLeadingSpace ? 0 : 1) + raw.length + 2;
    await this.put(headerLine(name, raw, { lineEndings: this.options.lineEndings, leadingSpace: this.options.headerLeadingSpace }), size);
  }

  /** The blank line between header and body (EOH). */
  async endHeaders(): Promise<void> {
    if (!this.inHeaders) return;
    this.inHeaders = false;
    await this.put(Buffer.from(eolOf(this.options.lineEndings), 'latin1'), 2);
  }

  /** A BODY chunk as sent (CRLF), converted to the configured line endings. */
  async write(chunk: Buffer): Promise<void> {
    if (this.inHeaders) await this.endHeaders();
    await this.put(this.converter.push(chunk), chunk.length);
  }

  /** Flushes and closes the file (it stays on disk for the filters until `remove()`). */
  close(): Promise<void> {
    this.closing ??= this.finish();
    return this.closing;
  }

  /** Closes if needed and deletes the file. Safe to call any number of times, also concurrently. */
  remove(): Promise<void> {
    this.removal ??= this.unlink();
    return this.removal;
  }

  private async finish(): Promise<void> {
    if (this.inHeaders) await this.endHeaders();
    await this.put(this.converter.end(), 0);
    const stream = this.stream;
    if (stream === null) return;
    stream.end();
    try {
      await finished(stream);
    } catch (err) {
      // remove() cut the stream short on purpose (shutdown): not a failure.
      if (this.removal) return;
      throw this.streamError ?? spoolWriteError(this.path, err);
    }
    this.stream = null;
    if (this.streamError) throw this.streamError;
  }

  private async unlink(): Promise<void> {
    const stream = this.stream;
    this.stream = null;
    if (stream !== null && !stream.destroyed) {
      stream.destroy();
      await once(stream, 'close').catch(() => {});
    }
    try {
      await fs.unlink(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    } finally {
      this.onRemoved(this);
    }
  }

  /** Counts `messageSize` toward the limit, then writes `data` unless the message is already oversize. */
  private async put(data: Buffer, messageSize: number): Promise<void> {
    if (this.streamError) throw this.streamError;
    if (this.removal) throw new PumError('PUM_ERR_INTERNAL', `spool: ${this.path} already removed`);
    this._messageBytes += messageSize;
    if (this._messageBytes > this.options.maxMessageBytes) this._oversize = true;
    if (this._oversize || data.length === 0) return;
    const stream = this.stream;
    if (stream === null) throw new PumError('PUM_ERR_INTERNAL', `spool: ${this.path} already closed`);
    this._bytesWritten += data.length;
    if (!stream.write(data)) {
      await drainOrClose(stream);
      if (this.streamError) throw this.streamError;
    }
  }
}

/** A failed create, write or close of a spool file: our failure, the message is tempfailed (451 4.3.1). */
export function spoolWriteError(file: string, err: unknown): PumError {
  const e = err as NodeJS.ErrnoException;
  return new PumError('PUM_ERR_SPOOL_WRITE', `cannot write spool file ${file}: ${e?.code ?? e?.message ?? String(err)}`, { cause: err });
}

/** Waits for 'drain', or for the stream to close (error, removal), leaving no listeners behind. */
function drainOrClose(stream: WriteStream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}

/** open(2) flags for a new spool file: never follow a planted link, never reuse a file. */
export const SPOOL_OPEN_FLAGS = C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW;
