// Runs in: a piscina worker thread of the runner process.
//
// The piscina entry: a FilterJob in, runFilter, a FilterResult out. It sees
// nothing of the milter, the server or the configuration loader.
import { runFilter } from '../src/filter/run.js';
import type { FilterJob, FilterResult } from '../src/filter/job.js';

export default async function filterWorker(job: FilterJob): Promise<FilterResult> {
  try {
    return await runFilter(job);
  } catch (err) {
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
