// Runs in: the runner process (its entry point, main thread).
//
// The filter runner process: a small Node process, started by the milter,
// that hosts the piscina pool (FilterPool) and nothing else, so that the
// filters have an owner that outlives a killed milter long enough to kill
// them, a crash on the pool side costs only the jobs in flight, and the fork
// behind every filter run copies this process's memory map instead of the
// milter's (docs/design.md §6, docs/sandbox.md). Jobs come as JSON lines on
// standard input, answers go out on standard output (src/runner/wire.ts). A
// filter never inherits either: its standard input, output and error are
// always its own.
//
// Lifecycle: the milter decides. SIGINT/SIGTERM/SIGHUP are ignored (a Ctrl-C
// or a process-group signal must not kill filters the milter is still
// draining). End of standard input means the milter closed us or died: we
// exit, and with us our worker threads' launcher connections, whose runs
// the launcher then kills (the filters are the launcher's children, never ours).
import { toPumError } from '../src/errors.js';
import { RUNNER_EXIT_MS } from '../src/timeouts.js';
import { FilterPool } from '../src/runner/pool.js';
import { encodeLine, LineSplitter, parseRequest, type Answer } from '../src/runner/wire.js';

/** From the milter (src/runner/client.ts), as JSON in argv[2]. */
interface RunnerOptions {
  threads: number;
  concurrency?: number;
}

process.title = 'per-user-milter: filter runner';
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => undefined);
// The milter may be gone: a failed write must not crash us before the cleanup below.
process.stdout.on('error', () => undefined);

const options = JSON.parse(process.argv[2] ?? '{}') as RunnerOptions;
const pool = new FilterPool({ threads: options.threads, ...(options.concurrency ? { concurrency: options.concurrency } : {}) });
let running = 0;

function send(answer: Answer): void {
  process.stdout.write(encodeLine(answer));
}

async function handle(line: string): Promise<void> {
  const request = parseRequest(line);
  if (!request) {
    process.stderr.write(`per-user-milter filter runner: ignoring a malformed request line (${line.length} bytes)\n`);
    return;
  }
  running++;
  try {
    const result = await pool.run(request.job);
    send({ id: request.id, result });
  } catch (err) {
    // A PumError keeps its code (spool unreadable, launcher); anything else is PUM_ERR_INTERNAL.
    send({ id: request.id, error: toPumError(err).toJSON() });
  } finally {
    running--;
  }
}

const lines = new LineSplitter();
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  for (const line of lines.push(chunk)) void handle(line);
});
// The pool is up: the milter may start listening.
process.stdout.write(encodeLine({ ready: true }));

process.stdin.on('end', () => {
  // Nobody is waiting for what still runs: exit now; the launcher sees our
  // connections close and kills their runs.
  if (running > 0) process.exit(0);
  void pool.close().finally(() => process.exit(0));
  // A worker stuck in a spawn must not keep us alive.
  setTimeout(() => process.exit(0), RUNNER_EXIT_MS).unref();
});
