// Runs in: the runner process (main thread).
//
// The filter pool: piscina 5 worker threads, each running filters through
// workers/filter-worker.js. It neither queues on purpose nor refuses: the
// milter's RunnerClient (src/runner/client.ts) decides what runs when, and
// never hands over more jobs than the pool has run slots (threads x
// concurrency).
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { fromSerialized, PumError } from '../errors.js';
import { isWorkerError, type FilterJob, type FilterResult, type WorkerAnswer } from '../filter/job.js';

export interface FilterPoolOptions {
  /** Worker threads (config pool.threads). */
  threads: number;
  /** The compiled worker; default dist/workers/filter-worker.js beside this file's tree. */
  workerFile?: string;
  /**
   * Filter runs one thread keeps in flight. A run is mostly waiting for a
   * child process, so a thread can drive several; default 4.
   */
  concurrency?: number;
  /**
   * Set the process umask to 077 (default true). Filters must start with
   * umask 077 and worker threads cannot change it; when the process umask is
   * something else every run pays an extra `sh` exec to set it.
   */
  setUmask?: boolean;
}

export interface PoolStats {
  queueSize: number;
  utilization: number;
  threads: number;
  running: number;
}

/** Filter runs one worker thread keeps in flight unless told otherwise. */
export const DEFAULT_CONCURRENCY = 4;

export function defaultWorkerFile(): string {
  // dist/src/runner/pool.js -> dist/workers/filter-worker.js
  return fileURLToPath(new URL('../../workers/filter-worker.js', import.meta.url));
}

export class FilterPool {
  readonly #piscina: Piscina<FilterJob, WorkerAnswer>;
  #inFlight = 0;
  #closed = false;

  constructor(opts: FilterPoolOptions) {
    if (!Number.isInteger(opts.threads) || opts.threads < 1) throw new RangeError('FilterPool: threads must be a positive integer');
    const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('FilterPool: concurrency must be a positive integer');
    if (opts.setUmask !== false) process.umask(0o077);
    this.#piscina = new Piscina<FilterJob, WorkerAnswer>({
      filename: opts.workerFile ?? defaultWorkerFile(),
      name: 'default',
      minThreads: opts.threads,
      maxThreads: opts.threads,
      // Unbounded: admission is the milter's (pool.maxQueue, per message). A
      // job waits here only while a thread is still starting.
      maxQueue: Infinity,
      concurrentTasksPerWorker: concurrency,
      // Tasks are asynchronous (they wait for a child process): the worker's
      // event loop must keep running between messages.
      atomics: 'disabled',
      idleTimeout: 60_000,
    });
  }

  /**
   * Runs one job on a worker thread. Our own failures reject with a PumError
   * whose code came across the thread boundary intact (spool unreadable,
   * launcher); a worker that crashed rejects with whatever piscina gives.
   */
  async run(job: FilterJob): Promise<FilterResult> {
    if (this.#closed) throw new PumError('PUM_ERR_RUNNER_GONE', 'filter pool is closed');
    this.#inFlight++;
    try {
      const answer = await this.#piscina.run(job);
      if (isWorkerError(answer)) throw fromSerialized(answer.error);
      return answer;
    } finally {
      this.#inFlight--;
    }
  }

  #running(): number {
    return Math.max(0, this.#inFlight - this.#piscina.queueSize);
  }

  stats(): PoolStats {
    return {
      queueSize: this.#piscina.queueSize,
      utilization: this.#piscina.utilization,
      threads: this.#piscina.threads.length,
      running: this.#running(),
    };
  }

  /** Waits for running filters (each bounded by its own timeout), then stops the threads. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#piscina.close();
  }
}
