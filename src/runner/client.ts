// Runs in: the milter process.
//
// The milter's side of the filter runner process (workers/runner-process.ts):
// a FilterRunner that sends each job to the piscina pool living in that
// small process (why: docs/design.md §6). Queue limits are enforced here,
// where every job passes: a full queue rejects at once with PoolFullError.
// If the runner process dies or stops answering, the jobs it held fail (the
// messages are tempfailed: our fault, never the filter's) and the next job
// starts a new one.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RUNNER_ANSWER_SLACK_MS } from '../timeouts.js';
import { jobBoundMs, type FilterJob, type FilterResult } from '../filter/job.js';
import { PoolFullError, type PoolStats } from './pool.js';
import { encodeLine, isReady, LineSplitter, parseAnswer } from './wire.js';

export interface RunnerClientOptions {
  /** Worker threads of the runner's pool (config pool.threads). */
  threads: number;
  /** Filter runs allowed to wait beyond the running ones (config pool.maxQueue); 0 = none. */
  maxQueue: number;
  /** Filter runs one thread keeps in flight; default 4 (as FilterPool). */
  concurrency?: number;
  /** The compiled runner entry; default dist/workers/runner-process.js. */
  entry?: string;
  /** Told when the runner process ends unexpectedly (the milter logs it). */
  onUnexpectedExit?: (how: string, failedJobs: number) => void;
  /** Told about lines on the runner's stdout that are not answers. */
  onStrayOutput?: (line: string) => void;
  /** Slack on top of a job's bound before the runner counts as stuck; default 10 s. */
  answerSlackMs?: number;
}

/** The runner process ended (or could not start) while it held this job: code PUM_ERR_RUNNER. */
export class RunnerGoneError extends Error {
  readonly code = 'PUM_ERR_RUNNER';
  constructor(how: string) {
    super(`filter runner process ${how}`);
    this.name = 'RunnerGoneError';
  }
}

export function defaultRunnerEntry(): string {
  // dist/src/runner/client.js -> dist/workers/runner-process.js
  return fileURLToPath(new URL('../../workers/runner-process.js', import.meta.url));
}

interface Pending {
  resolve(result: FilterResult): void;
  reject(error: Error): void;
  /** The job's promise, as run() returned it. */
  settled: Promise<FilterResult>;
}


export class RunnerClient {
  readonly #options: Required<Pick<RunnerClientOptions, 'threads' | 'maxQueue' | 'concurrency' | 'entry'>> & RunnerClientOptions;
  readonly #pending = new Map<number, Pending>();
  #child: ChildProcess | null = null;
  #exited: Promise<void> | null = null;
  #nextId = 1;
  #closed = false;
  /** Settled by the current runner's first line (ready) or its end. */
  #ready!: Promise<void>;
  #markReady: () => void = () => undefined;

  constructor(options: RunnerClientOptions) {
    if (!Number.isInteger(options.threads) || options.threads < 1) throw new RangeError('RunnerClient: threads must be a positive integer');
    if (!Number.isInteger(options.maxQueue) || options.maxQueue < 0) throw new RangeError('RunnerClient: maxQueue must be an integer >= 0');
    const concurrency = options.concurrency ?? 4;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('RunnerClient: concurrency must be a positive integer');
    this.#options = { ...options, concurrency, entry: options.entry ?? defaultRunnerEntry() };
    this.#start();
  }

  /** Resolves when the current runner's pool is up; rejects with RunnerGoneError if it ended first. */
  ready(): Promise<void> {
    return this.#ready;
  }

  /** The runner's pid (for tests and `ps`); null between a crash and the next job. */
  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  #capacity(): number {
    return this.#options.threads * this.#options.concurrency;
  }

  #start(): ChildProcess {
    const { threads, maxQueue, concurrency, entry } = this.#options;
    // The runner reads jobs on stdin and answers on stdout; its stderr is ours (warnings reach our log stream).
    const child = spawn(process.execPath, [entry, JSON.stringify({ threads, maxQueue, concurrency })], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.#child = child;
    let failStart: (e: Error) => void = () => undefined;
    this.#ready = new Promise<void>((resolve, reject) => {
      this.#markReady = resolve;
      failStart = reject;
    });
    this.#ready.catch(() => undefined);
    const lines = new LineSplitter();
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      for (const line of lines.push(chunk)) this.#onLine(line);
    });
    // A write after the runner died: the 'exit' handler below fails the jobs.
    child.stdin?.on('error', () => undefined);
    this.#exited = new Promise<void>((resolve) => {
      let done = false;
      const gone = (how: string): void => {
        if (done) return;
        done = true;
        if (this.#child === child) this.#child = null;
        const failed = this.#pending.size;
        for (const p of this.#pending.values()) p.reject(new RunnerGoneError(how));
        this.#pending.clear();
        failStart(new RunnerGoneError(how));
        if (!this.#closed) this.#options.onUnexpectedExit?.(how, failed);
        resolve();
      };
      child.on('error', (err) => gone(`could not start: ${err.message}`));
      child.on('exit', (code, signal) => gone(signal ? `killed by ${signal}` : `exited with status ${code}`));
    });
    return child;
  }

  #onLine(line: string): void {
    if (isReady(line)) return this.#markReady();
    const answer = parseAnswer(line);
    if (!answer) {
      this.#options.onStrayOutput?.(line);
      return;
    }
    const p = this.#pending.get(answer.id);
    if (!p) return;
    this.#pending.delete(answer.id);
    if ('result' in answer) p.resolve(answer.result);
    else if (answer.error.code === 'PUM_ERR_POOL_FULL') p.reject(new PoolFullError(this.#options.maxQueue));
    else p.reject(new Error(`filter runner: ${answer.error.message}`));
  }

  /** Runs one job in the runner process. Rejects with PoolFullError at once when the queue is at its limit. */
  run(job: FilterJob): Promise<FilterResult> {
    if (this.#closed) return Promise.reject(new Error('RunnerClient is closed'));
    if (this.#pending.size >= this.#capacity() + this.#options.maxQueue) return Promise.reject(new PoolFullError(this.#options.maxQueue));
    const child = this.#child ?? this.#start();
    const id = this.#nextId++;
    // Every job ends within its bound once it runs, and waits at most one
    // bound per full round of run slots ahead of it. No answer by then means
    // the runner is stuck: the job fails (tempfail) and the runner is
    // replaced, so a message can never hang on it.
    const rounds = 1 + Math.floor(this.#pending.size / this.#capacity());
    const limitMs = rounds * jobBoundMs(job.settings.timeout) + (this.#options.answerSlackMs ?? RUNNER_ANSWER_SLACK_MS);
    let entry!: Omit<Pending, 'settled'>;
    const settled = new Promise<FilterResult>((resolve, reject) => {
      const timer = setTimeout(() => this.#noAnswer(id, child, limitMs), limitMs);
      timer.unref();
      entry = {
        resolve: (r) => (clearTimeout(timer), resolve(r)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
    });
    this.#pending.set(id, { ...entry, settled });
    child.stdin?.write(encodeLine({ id, job }));
    return settled;
  }

  #noAnswer(id: number, child: ChildProcess, limitMs: number): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    p.reject(new RunnerGoneError(`gave no answer within ${limitMs} ms`));
    // Its 'exit' fails the other jobs it holds and reports it; the next job starts a new runner.
    if (this.#child === child) child.kill('SIGKILL');
  }

  /**
   * Live figures: every job passes here, so they are exact. `utilization` is
   * the busy share of the pool's run slots (threads × concurrency) right now,
   * which is what an autoscaler wants (deploy/kubernetes scales on it).
   */
  stats(): PoolStats {
    const inFlight = this.#pending.size;
    const capacity = this.#capacity();
    const running = Math.min(inFlight, capacity);
    return {
      queueSize: Math.max(0, inFlight - capacity),
      utilization: running / capacity,
      threads: this.#child ? this.#options.threads : 0,
      running,
    };
  }

  /**
   * Waits for the jobs in flight (each bounded by its filter's timeout), then
   * ends the runner's input: it exits, killing anything still running.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#pending.values()].map((p) => p.settled));
    await this.destroy();
  }

  /** Ends the runner now (tests, a failed start): its running filters are killed, pending jobs fail. */
  async destroy(): Promise<void> {
    this.#closed = true;
    this.#child?.stdin?.end();
    await this.#exited;
  }
}
