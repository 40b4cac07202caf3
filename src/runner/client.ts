// Runs in: the milter process.
//
// The milter's end of the filter runner process (workers/runner-process.ts),
// and the one scheduler of filter runs: every job passes here, so the limits
// are enforced here (docs/reference.md §3).
//
// - Admission, once per message (pool.maxQueue): a new message is refused
//   (PUM_ERR_POOL_FULL, 451 4.3.2) when more than maxQueue runs already wait;
//   an admitted message's runs are all queued, however many recipients it has.
// - Fairness (filter.maxPerUser): at most that many runs of one user in
//   flight; the next run to start is the oldest one whose user is below the
//   limit (./fair-queue.ts), so one user's slow filter holds only that user.
// - Run slots: at most threads x concurrency jobs are in the runner at once,
//   so its piscina pool never queues or refuses on its own.
//
// A job's answer bound starts when it is handed to the runner, not while it
// waits here. If the runner dies or gives no answer within the bound, the jobs
// it held fail with PUM_ERR_RUNNER_GONE (the messages are tempfailed: our
// fault, never the filter's); waiting jobs go to a new runner.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { fromSerialized, PumError } from '../errors.js';
import { RUNNER_ANSWER_SLACK_MS } from '../timeouts.js';
import { jobBoundMs, type FilterJob, type FilterResult } from '../filter/job.js';
import { FairQueue } from './fair-queue.js';
import { DEFAULT_CONCURRENCY, type PoolStats } from './pool.js';
import { encodeLine, isReady, LineSplitter, parseAnswer } from './wire.js';

export interface RunnerClientOptions {
  /** Worker threads of the runner's pool (config pool.threads). */
  threads: number;
  /** A new message is refused when more than this many runs already wait (config pool.maxQueue); 0 = refuse while any waits. */
  maxQueue: number;
  /** Runs of one user in flight at once (config filter.maxPerUser); default 2. */
  maxPerUser?: number;
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

export const DEFAULT_MAX_PER_USER = 2;

export function defaultRunnerEntry(): string {
  // dist/src/runner/client.js -> dist/workers/runner-process.js
  return fileURLToPath(new URL('../../workers/runner-process.js', import.meta.url));
}

/** One job, from run() until it settles. */
interface Entry {
  job: FilterJob;
  resolve(result: FilterResult): void;
  reject(error: PumError): void;
  /** The job's promise, as run() returned it. */
  settled: Promise<FilterResult>;
  /** Set while the job is in a runner: which one, under which id, and its answer timer. */
  inRunner?: { id: number; child: ChildProcess; timer: NodeJS.Timeout };
}

function runnerGone(how: string): PumError {
  return new PumError('PUM_ERR_RUNNER_GONE', `filter runner process ${how}`);
}

export class RunnerClient {
  readonly #options: Required<Pick<RunnerClientOptions, 'threads' | 'maxQueue' | 'concurrency' | 'entry'>> & RunnerClientOptions;
  /** Jobs waiting for a run slot, and the count of those in the runner (by user). */
  readonly #queue: FairQueue<number, Entry>;
  /** Jobs in a runner, by id. */
  readonly #inRunner = new Map<number, Entry>();
  #child: ChildProcess | null = null;
  #exited: Promise<void> | null = null;
  #nextId = 1;
  /** No new messages (close() or destroy() was called). */
  #closing = false;
  /** Nothing more goes to a runner (destroy()). */
  #destroyed = false;
  /** Settled by the current runner's first line (ready) or its end. */
  #ready!: Promise<void>;
  #markReady: () => void = () => undefined;

  constructor(options: RunnerClientOptions) {
    if (!Number.isInteger(options.threads) || options.threads < 1) throw new RangeError('RunnerClient: threads must be a positive integer');
    if (!Number.isInteger(options.maxQueue) || options.maxQueue < 0) throw new RangeError('RunnerClient: maxQueue must be an integer >= 0');
    const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('RunnerClient: concurrency must be a positive integer');
    const maxPerUser = options.maxPerUser ?? DEFAULT_MAX_PER_USER;
    if (!Number.isInteger(maxPerUser) || maxPerUser < 1) throw new RangeError('RunnerClient: maxPerUser must be a positive integer');
    this.#options = { ...options, concurrency, entry: options.entry ?? defaultRunnerEntry() };
    this.#queue = new FairQueue({ slots: options.threads * concurrency, perKey: maxPerUser });
    this.#start();
  }

  /** Resolves when the current runner's pool is up; rejects with PUM_ERR_RUNNER_GONE if it ended first. */
  ready(): Promise<void> {
    return this.#ready;
  }

  /** The runner's pid (for tests and `ps`); null between a crash and the next job. */
  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  /** filter.maxPerUser after a configuration reload: applies to the runs that start from now on. */
  setMaxPerUser(n: number): void {
    this.#queue.setPerKey(n);
    this.#dispatch();
  }

  #capacity(): number {
    return this.#options.threads * this.#options.concurrency;
  }

  #start(): ChildProcess {
    const { threads, concurrency, entry } = this.#options;
    // The runner reads jobs on stdin and answers on stdout; its stderr is ours (warnings reach our log stream).
    const child = spawn(process.execPath, [entry, JSON.stringify({ threads, concurrency })], {
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
        const held = [...this.#inRunner.values()].filter((e) => e.inRunner?.child === child);
        for (const e of held) this.#settle(e, { error: runnerGone(how) });
        failStart(runnerGone(how));
        if (!this.#closing) this.#options.onUnexpectedExit?.(how, held.length);
        resolve();
        // Jobs still waiting go to a new runner.
        this.#dispatch();
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
    const e = this.#inRunner.get(answer.id);
    if (!e) return;
    this.#settle(e, 'result' in answer ? { result: answer.result } : { error: fromSerialized(answer.error) });
  }

  /**
   * Admits one message's runs as a whole and queues them all; each promise
   * settles with that job's result, or rejects with a PumError (runner gone,
   * spool unreadable, launcher). Throws PUM_ERR_POOL_FULL at once, queueing
   * none, when more than pool.maxQueue runs already wait.
   */
  runMessage(jobs: readonly FilterJob[]): Array<Promise<FilterResult>> {
    if (this.#closing) throw runnerGone('is closed');
    const waiting = this.#queue.waiting;
    if (jobs.length > 0 && waiting > this.#options.maxQueue) {
      throw new PumError('PUM_ERR_POOL_FULL', `${waiting} filter runs already waiting (pool.maxQueue ${this.#options.maxQueue})`);
    }
    const runs = jobs.map((job) => {
      const entry = { job } as Entry;
      entry.settled = new Promise<FilterResult>((resolve, reject) => {
        entry.resolve = resolve;
        entry.reject = reject;
      });
      this.#queue.push(job.user.uid, entry);
      return entry.settled;
    });
    this.#dispatch();
    return runs;
  }

  /** One job as a message of its own (`try`, tests, benches). */
  run(job: FilterJob): Promise<FilterResult> {
    try {
      return this.runMessage([job])[0] as Promise<FilterResult>;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Hands every job that may start now to the runner. */
  #dispatch(): void {
    if (this.#destroyed) return;
    for (let next = this.#queue.next(); next !== undefined; next = this.#queue.next()) this.#send(next.item);
  }

  #send(e: Entry): void {
    const child = this.#child ?? this.#start();
    const id = this.#nextId++;
    // Once in the runner a job ends within its bound (its timeout, the kill
    // grace, the abandon delay); no answer by then plus slack means the runner
    // is stuck: the job fails (tempfail) and the runner is replaced, so a
    // message can never hang on it.
    const limitMs = jobBoundMs(e.job.settings.timeout) + (this.#options.answerSlackMs ?? RUNNER_ANSWER_SLACK_MS);
    const timer = setTimeout(() => this.#noAnswer(e, limitMs), limitMs);
    timer.unref();
    e.inRunner = { id, child, timer };
    this.#inRunner.set(id, e);
    child.stdin?.write(encodeLine({ id, job: e.job }));
  }

  #settle(e: Entry, how: { result: FilterResult } | { error: PumError }): void {
    const r = e.inRunner;
    if (r === undefined) return;
    e.inRunner = undefined;
    clearTimeout(r.timer);
    this.#inRunner.delete(r.id);
    this.#queue.finished(e.job.user.uid);
    if ('result' in how) e.resolve(how.result);
    else e.reject(how.error);
    this.#dispatch();
  }

  #noAnswer(e: Entry, limitMs: number): void {
    const child = e.inRunner?.child;
    if (child === undefined) return;
    // Nothing more goes to the stuck runner: waiting jobs start a new one.
    if (this.#child === child) {
      this.#child = null;
      child.kill('SIGKILL');
    }
    // Its 'exit' fails the other jobs it holds and reports it.
    this.#settle(e, { error: runnerGone(`gave no answer within ${limitMs} ms`) });
  }

  /**
   * Live figures: every job passes here, so they are exact. `queueSize` is
   * the runs waiting for a slot or for their user's turn; `utilization` the
   * busy share of the run slots (threads × concurrency) right now, which is
   * what an autoscaler wants (deploy/kubernetes scales on it).
   */
  stats(): PoolStats {
    const running = this.#queue.running;
    return {
      queueSize: this.#queue.waiting,
      utilization: running / this.#capacity(),
      threads: this.#child ? this.#options.threads : 0,
      running,
    };
  }

  /**
   * Refuses new messages, waits for every job admitted (each bounded by its
   * filter's timeout once it runs), then ends the runner's input: it exits,
   * killing anything still running.
   */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    // Waiting jobs start as running ones end (#settle dispatches them): wait until none is left.
    while (this.#inRunner.size > 0) await Promise.allSettled([...this.#inRunner.values()].map((e) => e.settled));
    await this.destroy();
  }

  /** Ends the runner now (tests, a failed start): its running filters are killed, every pending job fails. */
  async destroy(): Promise<void> {
    this.#closing = true;
    this.#destroyed = true;
    for (const e of this.#queue.drain()) e.reject(runnerGone('was shut down before the job started'));
    this.#child?.stdin?.end();
    await this.#exited;
  }
}
