// Runs in: every process (pure).
//
// One header line of the message form (contract §4), from a milter HEADER
// packet: the name (without colon) and the value. Folded headers arrive with
// their lines joined by LF (or CRLF) + white space and are written back
// folded, with the chosen line ending.
import { eolOf, type LineEndings } from './line-endings.js';

export interface HeaderForm {
  lineEndings: LineEndings;
  /**
   * True when SMFIP_HDR_LEADSPC was negotiated: the value then holds all the
   * white space after the colon, and goes right after it. Otherwise the MTA
   * has removed the one space after the colon, and we put it back.
   */
  leadingSpace: boolean;
}

/** Values arrive as raw bytes; strings are taken as latin1 (one byte per character), like the milter codec. */
export type Bytes = Buffer | string;

export function toBuffer(b: Bytes): Buffer {
  return typeof b === 'string' ? Buffer.from(b, 'latin1') : b;
}

/** `name: value` + line ending, folding kept. */
export function headerLine(name: string, value: Bytes, form: HeaderForm): Buffer {
  const eol = eolOf(form.lineEndings);
  const text = toBuffer(value).toString('latin1').replace(/\r?\n/g, eol);
  const sep = form.leadingSpace ? ':' : ': ';
  return Buffer.from(`${name}${sep}${text}${eol}`, 'latin1');
}

/** The first line of the message form. `sender` is the envelope sender, '' for the null sender. */
export function returnPathLine(sender: string, lineEndings: LineEndings): Buffer {
  const s = sender.trim().replace(/^<(.*)>$/, '$1');
  return Buffer.from(`Return-Path: <${s}>${eolOf(lineEndings)}`, 'latin1');
}
