// Runs in: every process (pure).
//
// Pure: how a finished filter process maps to an Outcome (docs/reference.md §4) and
// what its SMTP reply text is.
import type { Outcome } from './job.js';

export interface ExitFacts {
  exitCode: number | null;
  signal: string | null;
  /** The filter.timeout fired before the filter was done. */
  timedOut: boolean;
  /** It could not be started, or the launcher chain itself failed (not the filter). */
  launchError: string | null;
}

export interface ExitCodes {
  reject: number[];
  tempfail: number[];
}

export function outcomeOf(facts: ExitFacts, codes: ExitCodes): Outcome {
  if (facts.timedOut) return 'timeout';
  if (facts.launchError !== null) return 'error';
  if (facts.signal !== null || facts.exitCode === null) return 'error';
  if (codes.reject.includes(facts.exitCode)) return 'reject';
  if (codes.tempfail.includes(facts.exitCode)) return 'tempfail';
  if (facts.exitCode === 0) return 'accept';
  return 'error';
}

export const REPLY_TEXT_MAX = 200;

/** One line -> printable ASCII (tabs become spaces, other control and non-ASCII bytes go), trimmed, at most 200 characters. */
export function cleanReplyLine(line: string): string {
  return line
    .replace(/\t/g, ' ')
    .replace(/[^\x20-\x7e]/g, '')
    .trim()
    .slice(0, REPLY_TEXT_MAX)
    .trimEnd();
}

/** The first line of stdout that is non-empty once cleaned; '' if none. */
export function replyTextOf(stdout: string | Buffer): string {
  const text = typeof stdout === 'string' ? stdout : stdout.toString('latin1');
  for (const line of text.split(/\r?\n|\r/)) {
    const clean = cleanReplyLine(line);
    if (clean !== '') return clean;
  }
  return '';
}
