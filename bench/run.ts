// `npm run bench`: runs the benchmark (bench/harness.ts), prints the table,
// writes bench/results/{results.json,report.md,chart.svg}; with --record also
// copies the report and chart to bench/reports/<date>/ for committing.
//
//   node dist/bench/run.js [--smoke] [--only REGEX] [--scale N] [--max-seconds N]
//        [--concurrency N] [--threads N] [--no-peer] [--no-setup] [--out DIR] [--record]
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_OPTIONS, emergencyCleanup, runBench, type BenchOptions } from './harness.js';
import { repoRoot } from './lib/daemons.js';
import { summaryMarkdown, terminalTable, writeOutputs } from './lib/report.js';

const USAGE = `usage: node dist/bench/run.js [options]
  --smoke            a few seconds: milter-protocol load (null milter, per-user-milter pass-through) + one Postfix pass-through
  --only REGEX       only scenarios whose id matches (e.g. 'smtp/(pum|mimedefang)')
  --scale N          multiply every message count (default 1)
  --max-seconds N    time bound of one scenario's load phase (default ${DEFAULT_OPTIONS.maxSeconds})
  --concurrency N    parallel milter connections / SMTP sessions (default ${DEFAULT_OPTIONS.concurrency})
  --threads N        per-user-milter pool.threads (default ${DEFAULT_OPTIONS.threads})
  --no-peer          leave MIMEDefang out
  --no-setup         do not run bench/setup.sh (apt-get install of missing packages)
  --out DIR          output directory (default bench/results)
  --record           also copy report.md, chart.svg, results.json to bench/reports/<date>/ (+ summary.md for the README)
`;

function parse(argv: string[]): { opts: Partial<BenchOptions>; record: boolean } {
  const opts: Partial<BenchOptions> = {};
  let record = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const num = (): number => {
      const v = Number(val());
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${a} needs a positive number`);
      return v;
    };
    switch (a) {
      case '--smoke': opts.smoke = true; break;
      case '--only': opts.only = new RegExp(val()); break;
      case '--scale': opts.scale = num(); break;
      case '--max-seconds': opts.maxSeconds = num(); break;
      case '--concurrency': opts.concurrency = Math.round(num()); break;
      case '--threads': opts.threads = Math.round(num()); break;
      case '--no-peer': opts.peer = false; break;
      case '--no-setup': opts.setup = false; break;
      case '--out': opts.outDir = path.resolve(val()); break;
      case '--record': record = true; break;
      case '--help': case '-h': process.stdout.write(USAGE); process.exit(0); break;
      default: throw new Error(`unknown option ${a}\n${USAGE}`);
    }
  }
  return { opts, record };
}

async function main(): Promise<number> {
  const { opts, record } = parse(process.argv.slice(2));
  let interrupted = false;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (interrupted) return;
      interrupted = true;
      process.stderr.write(`\nbench: ${sig}: stopping what the bench started, removing its users and sudoers rule\n`);
      void emergencyCleanup().finally(() => process.exit(130));
    });
  }
  const run = await runBench(opts);
  const outDir = opts.outDir ?? DEFAULT_OPTIONS.outDir;
  const files = writeOutputs(run, outDir);
  process.stdout.write(terminalTable(run) + '\n\n');
  process.stdout.write(`bench: wrote ${files.json}, ${files.markdown}, ${files.svg}\n`);
  if (record) {
    const dir = path.join(repoRoot, 'bench', 'reports', run.startedAt.slice(0, 10));
    mkdirSync(dir, { recursive: true });
    copyFileSync(files.markdown, path.join(dir, 'report.md'));
    copyFileSync(files.svg, path.join(dir, 'chart.svg'));
    copyFileSync(files.json, path.join(dir, 'results.json'));
    writeFileSync(path.join(dir, 'summary.md'), summaryMarkdown(run, path.relative(path.join(repoRoot, 'bench'), dir)));
    process.stdout.write(`bench: recorded in ${dir}\n`);
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
    void emergencyCleanup().finally(() => process.exit(1));
  },
);
