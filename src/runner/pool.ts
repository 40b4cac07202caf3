// Runs in: the runner process (main thread).
//
// The filter pool: piscina 5 worker threads, each running filters through
// workers/filter-worker.js. A full queue rejects at once (PoolFullError), so
// the message is tempfailed ("4.3.2 busy") instead of hanging.
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { fromSerialized } from '../errors.js';
import { isWorkerError, type FilterJob, type FilterResult, type WorkerAnswer } from '../filter/job.js';

/** The queue already holds `maxQueue` filter runs. Code PUM_ERR_POOL_FULL. */
export class PoolFullError extends Error {
  readonly code = 'PUM_ERR_POOL_FULL';
  constructor(readonly maxQueue: number) {
    super(`filter pool queue is full (${maxQueue} waiting)`);
    this.name = 'PoolFullError';
  }
}

export interface FilterPoolOptions {
  /** Worker threads (config pool.threads). */
  threads: number;
  /** Filter runs allowed to wait beyond the running ones (config pool.maxQueue); 0 = none. */
  maxQueue: number;
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

export function defaultWorkerFile(): string {
  // dist/src/runner/pool.js -> dist/workers/filter-worker.js
  return fileURLToPath(new URL('../../workers/filter-worker.js', import.meta.url));
}

export class FilterPool {
  readonly #piscina: Piscina<FilterJob, WorkerAnswer>;
  readonly #maxQueue: number;
  #inFlight = 0;
  #closed = false;

  constructor(opts: FilterPoolOptions) {
    if (!Number.isInteger(opts.threads) || opts.threads < 1) throw new RangeError('FilterPool: threads must be a positive integer');
    if (!Number.isInteger(opts.maxQueue) || opts.maxQueue < 0) throw new RangeError('FilterPool: maxQueue must be an integer >= 0');
    const concurrency = opts.concurrency ?? 4;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('FilterPool: concurrency must be a positive integer');
    if (opts.setUmask !== false) process.umask(0o077);
    this.#maxQueue = opts.maxQueue;
    this.#piscina = new Piscina<FilterJob, WorkerAnswer>({
      filename: opts.workerFile ?? defaultWorkerFile(),
      name: 'default',
      minThreads: opts.threads,
      maxThreads: opts.threads,
      maxQueue: opts.maxQueue,
      concurrentTasksPerWorker: concurrency,
      // Tasks are asynchronous (they wait for a child process): the worker's
      // event loop must keep running between messages.
      atomics: 'disabled',
      idleTimeout: 60_000,
    });
  }

  /** Runs one job on a worker thread. Rejects with PoolFullError at once when the queue is at its limit. */
  async run(job: FilterJob): Promise<FilterResult> {
    if (this.#closed) throw new Error('FilterPool is closed');
    if (this.#piscina.queueSize >= this.#maxQueue && this.#running() >= this.#capacity()) {
      throw new PoolFullError(this.#maxQueue);
    }
    this.#inFlight++;
    try {
      const answer = await this.#piscina.run(job);
      if (isWorkerError(answer)) throw fromSerialized(answer.error);
      return answer;
    } catch (err) {
      if (err instanceof Error && /queue is at limit/i.test(err.message)) throw new PoolFullError(this.#maxQueue);
      throw err;
    } finally {
      this.#inFlight--;
    }
  }

  #capacity(): number {
    return this.#piscina.maxThreads * this.#piscina.options.concurrentTasksPerWorker;
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
