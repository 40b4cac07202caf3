// Runs in: the soak (`npm run soak -- --messages N`), as root.
//
// Sends a seeded, realistic mix through a private Postfix and the built
// per-user-milter to real users, re-sends what was deferred, counts every
// copy at the mailboxes, samples the milter, runner and launcher as it goes,
// and ends with one line scripts can read:
//   soak: N messages, lost L, duplicated D, wrongly rejected W, wrongly accepted A, rss-growth X MB, fd-growth F
// Exit status 0 only when L, D, W and A are 0, the growth is within the
// thresholds, and no filter process or spool file is left at the end.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { metricValue, runTraffic, sample, SoakRig, type Sample } from './soak/engine.js';
import { soakChart, trends } from './soak/report.js';
import { repoRoot, sleep } from '../test/mta/harness/util.js';

const HELP = `usage: npm run soak -- [options]
  --messages N        messages to send (default 100000)
  --seconds S         stop starting new messages after S seconds (default: no bound)
  --seed X            seed of the mix (default 1)
  --concurrency C     parallel SMTP sessions (default 6)
  --max-size BYTES    largest message (default 2097152)
  --warmup N          messages before the growth is measured (default: 10% of N, at most 2000)
  --max-rss-growth MB fail above this summed RSS growth after warm-up (default 64)
  --max-fd-growth F   fail above this summed descriptor growth after warm-up (default 8)
  --out DIR           where samples.json, soak.svg and summary.json go (default: a temp dir)
`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      messages: { type: 'string', default: '100000' },
      seconds: { type: 'string' },
      seed: { type: 'string', default: '1' },
      concurrency: { type: 'string', default: '6' },
      'max-size': { type: 'string', default: String(2 * 1024 * 1024) },
      warmup: { type: 'string' },
      'max-rss-growth': { type: 'string', default: '64' },
      'max-fd-growth': { type: 'string', default: '8' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('soak: must run as root (real users, a private Postfix, the milter dropping privileges)\n');
    return 2;
  }
  const messages = Number(values.messages);
  const seed = Number(values.seed);
  const warmup = values.warmup !== undefined ? Number(values.warmup) : Math.min(2000, Math.ceil(messages / 10));
  const every = Math.max(20, Math.round(messages / 250));
  const out = values.out ?? mkdtempSync(path.join(os.tmpdir(), 'pum-soak-'));
  mkdirSync(out, { recursive: true });
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim();
  } catch {
    // not a checkout
  }

  const rig = new SoakRig();
  const samples: Sample[] = [];
  const t0 = Date.now();
  let code = 1;
  try {
    await rig.start();
    const log = (s: string) => process.stderr.write(`[soak ${((Date.now() - t0) / 1000).toFixed(0)} s] ${s}\n`);
    log(`seed ${seed}, ${messages} messages, ${values.concurrency} sessions, samples every ${every}, warm-up ${warmup}; output in ${out}`);
    samples.push(await sample(rig, 0, t0));
    const { sums } = await runTraffic(rig, {
      messages,
      ...(values.seconds ? { seconds: Number(values.seconds) } : {}),
      seed,
      concurrency: Number(values.concurrency),
      mix: { maxSize: Number(values['max-size']) },
      every,
      onProgress: async (done) => {
        const s = await sample(rig, done, t0);
        samples.push(s);
        if (samples.length % 10 === 0) {
          log(`${done} finished; milter ${mb(s.milter?.rss)} MB/${s.milter?.fds ?? '-'} fds, runner ${mb(s.runner?.rss)} MB/${s.runner?.fds ?? '-'} fds, launcher ${mb(s.launcher?.rss)} MB, user procs ${s.userProcs}, spool ${s.spoolFiles}`);
        }
      },
    });
    // what is left once the traffic is over: no filter process, no spool file
    let last = await sample(rig, sums.finished, t0);
    for (let i = 0; i < 40 && (last.userProcs > 0 || last.spoolFiles > 0); i++) {
      await sleep(250);
      last = await sample(rig, sums.finished, t0);
    }
    samples.push(last);
    const metrics = await rig.metrics();
    const tr = trends(samples, warmup);
    const rssGrowth = tr.reduce((a, t) => a + (t.rssEndMb - t.rssStartMb), 0);
    const fdGrowth = Math.round(tr.reduce((a, t) => a + (t.fdsEnd - t.fdsStart), 0));
    const internal = metricValue(metrics, 'per_user_milter_internal_errors_total');
    const summary = {
      date: new Date().toISOString(),
      commit,
      machine: `${os.cpus().length} CPUs, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.release()}, node ${process.version}`,
      seed,
      sums,
      trends: tr,
      leftUserProcesses: last.userProcs,
      leftSpoolFiles: last.spoolFiles,
      milterRestarts: 0,
      internalErrors: internal,
      milterMessages: {
        accept: metricValue(metrics, 'per_user_milter_messages_total', 'action="accept"'),
        reject: metricValue(metrics, 'per_user_milter_messages_total', 'action="reject"'),
        tempfail: metricValue(metrics, 'per_user_milter_messages_total', 'action="tempfail"'),
      },
      filterRuns: Object.fromEntries(
        ['accept', 'reject', 'tempfail', 'nofilter', 'unsafe', 'error', 'timeout'].map((o) => [o, metricValue(metrics, 'per_user_milter_filter_runs_total', `outcome="${o}"`)]),
      ),
    };
    writeFileSync(path.join(out, 'samples.json'), JSON.stringify(samples, null, 1));
    writeFileSync(path.join(out, 'summary.json'), JSON.stringify(summary, null, 2));
    writeFileSync(path.join(out, 'soak.svg'), soakChart(samples, warmup, `soak: ${sums.messages} messages, seed ${seed}, commit ${commit}`));
    for (const p of sums.problems) log(p);
    log(`accepted ${sums.accepted}, rejected ${sums.rejected}, deferrals re-sent ${sums.deferrals}, gave up ${sums.gaveUp}, ambiguous ${sums.ambiguous}, strays ${sums.strays}, ${sums.elapsedSeconds.toFixed(0)} s (${(sums.finished / sums.elapsedSeconds).toFixed(1)} msg/s)`);
    log(`milter counted: ${JSON.stringify(summary.milterMessages)}, filter runs ${JSON.stringify(summary.filterRuns)}, internal errors ${internal}`);
    for (const t of tr) {
      log(`${t.part}: RSS ${t.rssStartMb.toFixed(1)} -> ${t.rssEndMb.toFixed(1)} MB (${t.rssMbPer10k.toFixed(1)} MB/10k), fds ${t.fdsStart} -> ${t.fdsEnd} (${t.fdsPer10k.toFixed(1)}/10k), threads ${t.threadsStart} -> ${t.threadsEnd}`);
    }
    log(`left at the end: ${last.userProcs} filter processes, ${last.spoolFiles} spool files`);
    const bad = sums.lost + sums.duplicated + sums.wronglyRejected + sums.wronglyAccepted + sums.strays;
    const growthOk = rssGrowth <= Number(values['max-rss-growth']) && fdGrowth <= Number(values['max-fd-growth']);
    code = bad === 0 && growthOk && last.userProcs === 0 && last.spoolFiles === 0 && sums.finished === sums.messages ? 0 : 1;
    process.stdout.write(
      `soak: ${sums.messages} messages, lost ${sums.lost}, duplicated ${sums.duplicated}, wrongly rejected ${sums.wronglyRejected}, wrongly accepted ${sums.wronglyAccepted}, rss-growth ${rssGrowth.toFixed(1)} MB, fd-growth ${fdGrowth}\n`,
    );
  } finally {
    await rig.stop().catch((e: unknown) => process.stderr.write(`soak: cleanup: ${String(e)}\n`));
  }
  return code;
}

function mb(b: number | undefined): string {
  return b === undefined ? '-' : (b / 1048576).toFixed(0);
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`soak: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(2);
  },
);
