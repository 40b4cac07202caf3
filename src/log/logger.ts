// Runs in: the milter process (and `try`).
//
// The process logger: pino, either as JSON lines (`log.format = json`, for
// log pipelines) or as one plain text line per event (`text`, the default,
// like other milters' syslog lines). Both write synchronously (sonic-boom in
// sync mode), so the last lines before an exit or a crash are not lost; the
// cost is a write(2) per event, which is small next to running a filter.
//
// Under journald, as systemd documents for services (systemd.exec(5),
// JOURNAL_STREAM): when our output descriptor is the very stream the journal
// gave us (same device and inode), each line starts with its syslog priority
// `<N>` (SyslogLevelPrefix) and carries no time of its own. The unit's
// SyslogFacility=mail then puts the lines in mail.log beside Postfix's, and
// `journalctl -p warning` finds our warnings.
import fs from 'node:fs';
import pino, { type DestinationStream, type Logger } from 'pino';
import { SYSLOG_PRIORITY, formatTextLine } from './text.js';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
export type LogFormat = 'text' | 'json';

export interface LoggerOptions {
  level: LogLevel;
  format: LogFormat;
  /**
   * Where lines go: a file descriptor (default 2, standard error, so that
   * command output on standard output stays clean) or any object with a
   * synchronous `write(line)` (tests).
   */
  destination?: number | { write(line: string): unknown };
  /** Write for journald (see above). Default: detected for a descriptor destination. */
  journal?: boolean;
}

/** True when descriptor `fd` is the journal stream systemd named in JOURNAL_STREAM (`DEVICE:INODE`). */
export function isJournalStream(fd: number, env: NodeJS.ProcessEnv = process.env): boolean {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '');
  if (!m) return false;
  try {
    const st = fs.fstatSync(fd, { bigint: true });
    return st.dev === BigInt(m[1] ?? '') && st.ino === BigInt(m[2] ?? '');
  } catch {
    return false;
  }
}

export type { Logger };

export function createLogger(options: LoggerOptions): Logger {
  const dest = options.destination ?? 2;
  const sink: { write(line: string): unknown } = typeof dest === 'number' ? pino.destination({ dest, sync: true }) : dest;
  const journal = options.journal ?? (typeof dest === 'number' && isJournalStream(dest));
  let stream: DestinationStream;
  if (options.format === 'json') {
    // JSON keeps its own time (pipelines read it); the prefix only sets the priority, journald strips it.
    stream = journal
      ? { write: (line: string) => sink.write(`<${SYSLOG_PRIORITY[Number(/"level":(\d+)/.exec(line)?.[1])] ?? 6}>${line}`) }
      : sink;
  } else {
    stream = {
      write(line: string) {
        let record: Record<string, unknown>;
        try {
          record = JSON.parse(line) as Record<string, unknown>;
        } catch {
          sink.write(line);
          return;
        }
        sink.write(formatTextLine(record, { journal }));
      },
    };
  }
  return pino(
    {
      level: options.level,
      base: { pid: process.pid },
      timestamp: options.format === 'json' ? pino.stdTimeFunctions.isoTime : pino.stdTimeFunctions.epochTime,
      // An Error under `err` keeps its message and stack in JSON.
      serializers: { err: pino.stdSerializers.err },
    },
    stream,
  );
}

/** A logger that drops everything (tests, library use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
