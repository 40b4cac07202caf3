// Runs in: the milter process (and `try`).
//
// The process logger: pino, either as JSON lines (`log.format = json`, for
// log pipelines) or as one plain text line per event (`text`, the default,
// like other milters' syslog lines). Both write synchronously (sonic-boom in
// sync mode), so the last lines before an exit or a crash are not lost; the
// cost is a write(2) per event, which is small next to running a filter.
import pino, { type DestinationStream, type Logger } from 'pino';
import { formatTextLine } from './text.js';

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
}

export type { Logger };

export function createLogger(options: LoggerOptions): Logger {
  const dest = options.destination ?? 2;
  const sink: { write(line: string): unknown } = typeof dest === 'number' ? pino.destination({ dest, sync: true }) : dest;
  const stream: DestinationStream =
    options.format === 'json'
      ? sink
      : {
          write(line: string) {
            let record: Record<string, unknown>;
            try {
              record = JSON.parse(line) as Record<string, unknown>;
            } catch {
              sink.write(line);
              return;
            }
            sink.write(formatTextLine(record));
          },
        };
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
