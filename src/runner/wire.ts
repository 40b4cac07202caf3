// Runs in: the milter process and the runner process (pure).
//
// The line protocol between the milter process and its filter runner process
// (src/runner/client.ts, workers/runner-process.ts): one JSON object per
// line over the runner's standard input and output. Pure: no I/O.
import type { SerializedError } from '../errors.js';
import type { FilterJob, FilterResult } from '../filter/job.js';

/** Milter -> runner. */
export type Request = { id: number; job: FilterJob };

/**
 * Runner -> milter: the result of job `id`, or the failure of ours that
 * stopped it (src/errors.ts: the code survives, fromSerialized() reads it).
 */
export type Answer = { id: number; result: FilterResult } | { id: number; error: SerializedError };

/** Runner -> milter, once, when its pool is up. */
export type Ready = { ready: true };

export function encodeLine(message: Request | Answer | Ready): string {
  // JSON.stringify escapes every newline inside strings: one message, one line.
  return JSON.stringify(message) + '\n';
}

/** Splits a byte stream into lines; keeps the unfinished tail for the next chunk. */
export class LineSplitter {
  #tail = '';

  push(chunk: string): string[] {
    const text = this.#tail + chunk;
    const lines = text.split('\n');
    this.#tail = lines.pop() ?? '';
    return lines.filter((l) => l !== '');
  }

  /** What is left without a newline at the end of the stream. */
  get rest(): string {
    return this.#tail;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseObject(line: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(line);
    return isObject(v) ? v : null;
  } catch {
    return null;
  }
}

/** An answer line, or null for anything else (a stray line on the runner's stdout). */
export function parseAnswer(line: string): Answer | null {
  const v = parseObject(line);
  if (!v || typeof v.id !== 'number') return null;
  if (isObject(v.result) && typeof v.result.outcome === 'string') return v as unknown as Answer;
  if (isObject(v.error) && typeof v.error.message === 'string') return v as unknown as Answer;
  return null;
}

/** A request line, or null. */
export function parseRequest(line: string): Request | null {
  const v = parseObject(line);
  if (!v || typeof v.id !== 'number' || !isObject(v.job) || typeof v.job.spoolPath !== 'string') return null;
  return v as unknown as Request;
}

/** The runner's first line. */
export function isReady(line: string): boolean {
  return parseObject(line)?.ready === true;
}
