// Runs in: a piscina worker thread of the runner process.
//
// The piscina entry: a FilterJob in, runFilter, a FilterResult out. It sees
// nothing of the milter, the server or the configuration loader.
import { PumError } from '../src/errors.js';
import { runFilter } from '../src/filter/run.js';
import type { FilterJob, WorkerAnswer } from '../src/filter/job.js';

export default async function filterWorker(job: FilterJob): Promise<WorkerAnswer> {
  try {
    return await runFilter(job);
  } catch (err) {
    // Our own failure (src/errors.ts): its code goes back to the milter as data; never a filter outcome.
    if (err instanceof PumError) return { error: err.toJSON() };
    // runFilter maps every expected failure itself; this is a bug, reported as an error outcome.
    return {
      outcome: 'error',
      exitCode: null,
      signal: null,
      durationMs: 0,
      replyText: '',
      log: `internal error in filter worker: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
    };
  }
}
