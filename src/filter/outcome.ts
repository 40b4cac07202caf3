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

/** What the launcher said about a program it did not run (native/README.md lists the reasons). */
export interface NotRun {
  kind: 'missing' | 'unsafe' | 'exec';
  reason: string;
  path: string;
  mode: number;
  owner: number;
  errno: number;
}

function errnoName(n: number, names: Record<string, number>): string {
  return Object.entries(names).find(([, v]) => v === n)?.[0] ?? `errno ${n}`;
}

/**
 * The log text for a program that did not run. `selfUid` is ours (the
 * launcher's when it cannot switch users); `errnos` is os.constants.errno.
 */
export function notRunText(n: NotRun, user: string, selfUid: number, errnos: Record<string, number>): string {
  const mode = (n.mode & 0o7777).toString(8).padStart(4, '0');
  const texts: Record<string, string> = {
    missing: `no filter at ${n.path}`,
    'dir-owner': `directory ${n.path} is owned by uid ${n.owner}, not by ${user} or root`,
    'dir-world-writable': `directory ${n.path} is world-writable (mode ${mode})`,
    'dir-group-writable': `directory ${n.path} is group-writable (mode ${mode})`,
    'dir-not-searchable': `directory ${n.path} is not searchable by ${user} (mode ${mode})`,
    'not-regular': `${n.path} is not a regular file`,
    'not-own-uid': `cannot switch users: only programs owned by uid ${selfUid} run (${n.path} is owned by uid ${n.owner})`,
    owner: `${n.path} is owned by uid ${n.owner}, not by ${user} or root`,
    'world-writable': `${n.path} is world-writable (mode ${mode})`,
    'group-writable': `${n.path} is group-writable (mode ${mode})`,
    setid: `${n.path} has the setuid or setgid bit (mode ${mode})`,
    'not-executable': `${n.path} is not executable by ${user} (mode ${mode})`,
    'file-capabilities': `${n.path} has file capabilities`,
    'too-many-links': `too many symbolic links resolving ${n.path}`,
    'bad-path': `the configured path gives no absolute path for ${user}`,
    chdir: `cannot enter the home directory ${n.path}: ${errnoName(n.errno, errnos)}`,
    exec: `cannot execute ${n.path}: ${errnoName(n.errno, errnos)}`,
  };
  return texts[n.reason] ?? `cannot check ${n.path}: ${errnoName(n.errno, errnos)}`;
}

/** A launcher NOTRUN answer as an outcome: no program is no say; anything else is the user's broken filter. */
export function notRunOutcome(kind: NotRun['kind']): Outcome {
  return kind === 'missing' ? 'nofilter' : kind === 'unsafe' ? 'unsafe' : 'error';
}
