// Runs in: a piscina worker thread of the runner process.
//
// The piscina entry: a FilterJob in, runFilter, a FilterResult out. It sees
// nothing of the milter, the server or the configuration loader.
import { PumError, toPumError } from '../src/errors.js';
import { runFilter } from '../src/filter/run.js';
import type { FilterJob, WorkerAnswer } from '../src/filter/job.js';

export default async function filterWorker(job: FilterJob): Promise<WorkerAnswer> {
  try {
    return await runFilter(job);
  } catch (err) {
    // Our own failure (src/errors.ts): its code goes back to the milter as
    // data; never a filter outcome. Anything else is a bug: PUM_ERR_INTERNAL,
    // still a 451, never the user's vote.
    return { error: (err instanceof PumError ? err : toPumError(err)).toJSON() };
  }
}
