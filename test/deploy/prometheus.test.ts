// deploy/prometheus: promtool accepts the scrape config and the rules, the
// rules' unit tests pass and cover every alert, every metric the alerts and
// the dashboard use exists (docs/reference.md §6), and a real Prometheus scraping a
// running `serve` through a short load stores exactly the counts of what the
// load did.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { lacksCommand, lacksRoot, lacksServiceAccount } from '../support/require.js';
import {
  DEPLOY, deliver, ensureUser, freePort, httpGet, lacksServe, optionalImport, readDeploy, sleep, startServe, tmpDir, waitFor, writeFilter,
} from './support.js';

const PROM = path.join(DEPLOY, 'prometheus');

/** docs/reference.md §6 names (without the prefix) and the series they produce. */
const CONTRACT_METRICS = [
  'messages_total', 'filter_runs_total', 'filter_duration_seconds', 'recipients_total', 'connections_active',
  'pool_queue_size', 'pool_utilization', 'spool_bytes_total', 'protocol_errors_total',
  'message_duration_seconds', 'internal_errors_total', 'rcpt_filter_runs_total', 'user_lookups_total', 'skipped_total', 'build_info',
  // beyond docs/reference.md §6: the limit beside connections_active, and our helper processes
  'connections_max', 'process_resident_memory_bytes', 'process_cpu_seconds_total',
];
const KNOWN_SERIES = new Set([
  ...CONTRACT_METRICS.map((m) => `per_user_milter_${m}`),
  ...['bucket', 'sum', 'count'].flatMap((s) => [`per_user_milter_filter_duration_seconds_${s}`, `per_user_milter_message_duration_seconds_${s}`]),
  'up', 'ALERTS',
  // prom-client default metrics the dashboard shows
  'nodejs_eventloop_lag_p99_seconds',
]);

const PROMQL_WORDS = new Set([
  'sum', 'by', 'without', 'rate', 'increase', 'histogram_quantile', 'min_over_time', 'max_over_time', 'avg_over_time', 'avg', 'max', 'min',
  'absent', 'and', 'or', 'unless', 'on', 'ignoring', 'label_values', 'humanizePercentage', 'humanizeDuration', 'printf', 'offset', 'bool',
  'group_left', 'group_right', 'topk', 'count',
]);

/** Metric names in a PromQL expression: identifiers that are not functions, keywords, label names or strings. */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"[^"]*"/g, '""')
    .replace(/\{[^}]*\}/g, '{}')
    .replace(/\[[^\]]*\]/g, '[]')
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, '');
  return [...stripped.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()/g)]
    .map((m) => m[1] ?? '')
    .filter((w) => !PROMQL_WORDS.has(w) && !/^\d/.test(w) && !/^(e|m|s|h|d)$/.test(w));
}

function promtool(t: import('node:test').TestContext, args: string[]): { status: number | null; out: string } {
  const r = spawnSync('promtool', args, { cwd: PROM, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

test('promtool check config accepts prometheus.yml (with its rule file)', (t) => {
  if (lacksCommand(t, 'promtool', 'prometheus')) return;
  const r = promtool(t, ['check', 'config', 'prometheus.yml']);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /SUCCESS: 1 rule files found/);
});

test('promtool check rules accepts alerts.yml', (t) => {
  if (lacksCommand(t, 'promtool', 'prometheus')) return;
  const r = promtool(t, ['check', 'rules', 'alerts.yml']);
  assert.equal(r.status, 0, r.out);
});

test('promtool test rules: alerts.test.yml passes and makes every alert fire at least once', async (t) => {
  if (lacksCommand(t, 'promtool', 'prometheus')) return;
  const YAML = await optionalImport(t, 'yaml');
  if (!YAML) return;
  const r = promtool(t, ['test', 'rules', 'alerts.test.yml']);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /SUCCESS/);
  const alerts = (YAML.parse(readDeploy('prometheus/alerts.yml')).groups as Array<{ rules: Array<{ alert?: string }> }>)
    .flatMap((g) => g.rules.map((x) => x.alert ?? ''));
  const tests = YAML.parse(readDeploy('prometheus/alerts.test.yml')).tests as Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts: unknown[] }> }>;
  const fired = new Set(tests.flatMap((x) => x.alert_rule_test ?? []).filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname));
  const quiet = new Set(tests.flatMap((x) => x.alert_rule_test ?? []).filter((a) => a.exp_alerts.length === 0).map((a) => a.alertname));
  for (const a of alerts) {
    assert.ok(fired.has(a), `alerts.test.yml never makes ${a} fire`);
    assert.ok(quiet.has(a), `alerts.test.yml never checks that ${a} stays quiet`);
  }
});

test('alerts and dashboard use only metrics that exist (docs/reference.md §6, prom-client defaults)', async (t) => {
  const YAML = await optionalImport(t, 'yaml');
  if (!YAML) return;
  const exprs: string[] = [];
  for (const g of YAML.parse(readDeploy('prometheus/alerts.yml')).groups as Array<{ rules: Array<{ expr: string }> }>) {
    for (const r of g.rules) exprs.push(r.expr);
  }
  const dash = JSON.parse(readDeploy('prometheus/grafana-dashboard.json')) as { panels: Array<{ targets?: Array<{ expr: string }> }> };
  for (const p of dash.panels) for (const x of p.targets ?? []) exprs.push(x.expr);
  for (const e of exprs) {
    for (const name of metricNames(e)) assert.ok(KNOWN_SERIES.has(name), `unknown metric ${name} in: ${e}`);
  }
  // Each metric of docs/reference.md §6 is watched somewhere.
  const all = exprs.join('\n');
  for (const m of CONTRACT_METRICS) assert.ok(all.includes(`per_user_milter_${m}`), `nothing shows per_user_milter_${m}`);
});

test('the Grafana dashboard is well-formed and every panel query is valid PromQL', (t) => {
  const dash = JSON.parse(readDeploy('prometheus/grafana-dashboard.json')) as {
    uid: string; title: string; schemaVersion: number;
    templating: { list: Array<{ name: string }> };
    panels: Array<{ id: number; type: string; title: string; gridPos: { x: number; y: number; w: number; h: number }; targets?: Array<{ refId: string; expr: string; datasource: { uid: string } }> }>;
  };
  assert.equal(dash.uid, 'per-user-milter');
  assert.ok(dash.schemaVersion >= 36);
  const vars = dash.templating.list.map((v) => v.name);
  assert.deepEqual(vars, ['datasource', 'instance']);
  const ids = dash.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  const queries: string[] = [];
  for (const p of dash.panels) {
    assert.ok(p.gridPos.x + p.gridPos.w <= 24, `${p.title} fits the 24-column grid`);
    if (p.type === 'row') continue;
    assert.ok(p.targets && p.targets.length > 0, `${p.title} has queries`);
    for (const x of p.targets) {
      assert.equal(x.datasource.uid, '${datasource}');
      assert.match(x.expr, /instance=~"\$instance"/, `${p.title} follows the instance variable`);
      queries.push(x.expr);
    }
  }
  if (lacksCommand(t, 'promtool', 'prometheus')) return;
  // promtool parses PromQL in rule files: one recording rule per query, with
  // Grafana's variables replaced by what they expand to.
  const rules = {
    groups: [{
      name: 'dashboard',
      rules: queries.map((q, i) => ({ record: `dashboard:query_${i}`, expr: q.replaceAll('$__rate_interval', '5m').replaceAll('$__range', '6h').replaceAll('$instance', '.*') })),
    }],
  };
  const file = path.join(tmpDir(t, 'dash'), 'dashboard-queries.yml');
  fs.writeFileSync(file, JSON.stringify(rules, null, 2));
  const r = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
});

type Panel = {
  id: number; type: string; title: string;
  fieldConfig?: { defaults?: { unit?: string; min?: number; max?: number; thresholds?: { mode: string; steps: Array<{ color: string; value: number | null }> } } };
  targets?: Array<{ expr: string; format?: string; instant?: boolean }>;
};

test('dashboard thresholds mean something: tempfail 1%/5%, pool 0.7/0.9, gauges 0..1, no red throughput', () => {
  const dash = JSON.parse(readDeploy('prometheus/grafana-dashboard.json')) as { panels: Panel[] };
  const byTitle = (t: string): Panel => {
    const p = dash.panels.find((x) => x.title === t);
    assert.ok(p, `panel ${t}`);
    return p;
  };
  const steps = (p: Panel): Array<number | null> => p.fieldConfig?.defaults?.thresholds?.steps.map((x) => x.value) ?? [];
  // Grafana's default for a panel without thresholds is "red at 80": every stat and gauge says what it means.
  for (const p of dash.panels.filter((x) => x.type === 'stat' || x.type === 'gauge')) {
    assert.equal(p.fieldConfig?.defaults?.thresholds?.mode, 'absolute', `${p.title}: explicit thresholds`);
    assert.ok(!steps(p).includes(80), `${p.title}: Grafana's default 80`);
    if (p.fieldConfig?.defaults?.unit === 'percentunit') {
      assert.equal(p.fieldConfig.defaults.min, 0, `${p.title}: min 0`);
      assert.equal(p.fieldConfig.defaults.max, 1, `${p.title}: max 1`);
    }
  }
  assert.deepEqual(steps(byTitle('Tempfail ratio')), [null, 0.01, 0.05]);
  assert.deepEqual(steps(byTitle('Pool utilization')), [null, 0.7, 0.9]);
  assert.deepEqual(steps(byTitle('Messages / s')), [null], 'a throughput has no bad value');
  // Connections against milter.maxConnections, as the alert sees them.
  assert.match(byTitle('Connections / maxConnections').targets?.[0]?.expr ?? '', /connections_active.*\/ on \(job, instance\) per_user_milter_connections_max/);
});

test('dashboard: a per-user top-k of broken filters, a version panel, the runner and launcher processes', () => {
  const dash = JSON.parse(readDeploy('prometheus/grafana-dashboard.json')) as { panels: Panel[] };
  const topk = dash.panels.find((p) => p.type === 'table' && (p.targets?.[0]?.expr ?? '').startsWith('topk('));
  assert.ok(topk, 'a top-k table');
  const q = topk.targets?.[0];
  assert.match(q?.expr ?? '', /sum by \(user, outcome\) \(increase\(per_user_milter_filter_runs_total\{.*outcome=~"unsafe\|error\|timeout"\}\[\$__range\]\)\)/);
  assert.equal(q?.instant, true);
  assert.equal(q?.format, 'table');
  const version = dash.panels.find((p) => (p.targets ?? []).some((x) => x.expr.includes('per_user_milter_build_info')));
  assert.ok(version && /count by \(version, node\)/.test(version.targets?.[0]?.expr ?? ''), 'versions from build_info');
  for (const m of ['per_user_milter_process_resident_memory_bytes', 'per_user_milter_process_cpu_seconds_total']) {
    const p = dash.panels.find((x) => (x.targets ?? []).some((t) => t.expr.includes(m)));
    assert.ok(p && p.targets?.some((t) => /\{\{process\}\}/.test((t as { legendFormat?: string }).legendFormat ?? '')), `${m} by process`);
  }
});

// ---- a real Prometheus scraping a real serve -------------------------------

interface Sample { metric: Record<string, string>; value: [number, string] }

async function query(base: string, q: string): Promise<Sample[]> {
  const r = await httpGet(`${base}/api/v1/query?query=${encodeURIComponent(q)}`);
  assert.equal(r.status, 200, r.body);
  const j = JSON.parse(r.body) as { status: string; data: { resultType: string; result: Sample[] } };
  assert.equal(j.status, 'success');
  return j.data.result;
}

/** label value -> number, for a query whose result is one series per `label`. */
async function byLabel(base: string, q: string, label: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const s of await query(base, q)) out[s.metric[label] ?? ''] = Number(s.value[1]);
  return out;
}

const VERDICT_FILTER = `#!/bin/sh
# Rejects messages that ask for it (test/deploy/prometheus.test.ts).
verdict=$(sed -n 's/^X-Pumops-Verdict: //p' | head -n 1)
case "$verdict" in
  reject) echo "5.7.1 pumops-prom does not want this"; exit 1 ;;
  tempfail) echo "4.7.1 pumops-prom is busy"; exit 75 ;;
esac
exit 0
`;

test('a real Prometheus scrapes serve during a load and stores what the load did', { timeout: 180_000 }, async (t) => {
  if (lacksRoot(t) || lacksCommand(t, 'prometheus', 'prometheus') || lacksServe(t) || lacksServiceAccount(t)) return;
  const user = ensureUser(t, 'pumops-prom');
  writeFilter(user, VERDICT_FILTER);

  const dir = tmpDir(t, 'prom');
  // Started as root, serve drops to milter.user (its default, per-user-milter), which must reach its spool.
  fs.chmodSync(dir, 0o755);
  const milterPort = await freePort(25420);
  const metricsPort = await freePort(milterPort + 1);
  const promPort = await freePort(metricsPort + 1);
  const config = path.join(dir, 'config.json');
  fs.writeFileSync(config, JSON.stringify({
    milter: { listen: `inet:${milterPort}@127.0.0.1` },
    spool: { dir: path.join(dir, 'spool') },
    filter: { timeout: 10_000, sandbox: 'setpriv' },
    pool: { threads: 2 },
    metrics: { listen: `127.0.0.1:${metricsPort}` },
    log: { level: 'info' },
  }));
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const serve = await startServe(t, ['--config', config], {
    ready: async () => (await httpGet(metricsUrl).catch(() => ({ status: 0 }))).status === 200,
  });

  // Prometheus: the shipped alerts.yml, a 1 s scrape of this serve, its own data dir.
  fs.copyFileSync(path.join(PROM, 'alerts.yml'), path.join(dir, 'alerts.yml'));
  fs.writeFileSync(path.join(dir, 'prometheus.yml'), [
    'global:', '  scrape_interval: 1s', '  evaluation_interval: 1s',
    'rule_files:', '  - alerts.yml',
    'scrape_configs:', '  - job_name: per-user-milter', '    scrape_timeout: 1s', '    static_configs:', `      - targets: ['127.0.0.1:${metricsPort}']`, '',
  ].join('\n'));
  const prom = spawn('prometheus', [
    `--config.file=${path.join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${promPort}`,
    '--storage.tsdb.retention.time=1h',
    '--log.level=warn',
  ], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let promLog = '';
  prom.stdout.setEncoding('utf8').on('data', (c: string) => (promLog += c));
  prom.stderr.setEncoding('utf8').on('data', (c: string) => (promLog += c));
  const promExit = new Promise<void>((resolve) => prom.on('exit', () => resolve()));
  t.after(async () => {
    if (prom.exitCode === null && prom.signalCode === null) {
      prom.kill('SIGTERM');
      const timer = setTimeout(() => prom.kill('SIGKILL'), 10_000);
      await promExit;
      clearTimeout(timer);
    }
  });
  const base = `http://127.0.0.1:${promPort}`;
  await waitFor(`Prometheus ready\n${promLog}`, 60_000, async () => ((await httpGet(`${base}/-/ready`)).status === 200 ? true : undefined));
  // It scrapes serve, and series exist (at 0) before the first message.
  await waitFor('first scrape of serve', 30_000, async () => {
    const up = await query(base, 'up{job="per-user-milter"}');
    const zero = await query(base, 'per_user_milter_messages_total{action="accept"}');
    return up[0]?.value[1] === '1' && zero[0]?.value[1] === '0' ? true : undefined;
  });

  // The load: accepts, rejects and tempfails for the local test user.
  const plan = ['accept', 'reject', 'accept', 'tempfail', 'accept', 'reject', 'accept', 'reject', 'accept'] as const;
  const ACCEPTS = plan.filter((v) => v === 'accept').length;
  const REJECTS = plan.filter((v) => v === 'reject').length;
  const TEMPFAILS = plan.filter((v) => v === 'tempfail').length;
  const spec = `inet:${milterPort}@127.0.0.1`;
  for (const [i, verdict] of plan.entries()) {
    const d = await deliver(spec, {
      from: `sender${i}@pumops.test`, to: [`${user.name}@pumops.test`], queueId: `PROM${String(i).padStart(4, '0')}`,
      headers: [['From', `sender${i}@pumops.test`], ['Subject', `load ${i}`], ['X-Pumops-Verdict', verdict]],
      body: `message ${i}\n`,
    });
    if (verdict === 'reject') assert.deepEqual([d.type, d.text], ['replycode', '550 5.7.1 pumops-prom does not want this'], serve.output());
    else if (verdict === 'tempfail') assert.deepEqual([d.type, d.text], ['replycode', '451 4.7.1 pumops-prom is busy'], serve.output());
    else assert.equal(d.type, 'accept', `${JSON.stringify(d)}\n${serve.output()}`);
  }

  // What a Kubernetes readiness probe does (deploy/kubernetes: tcpSocket on
  // the milter port): connect and close. That must not count as an error,
  // or PerUserMilterProtocolErrors would fire every few seconds.
  for (let i = 0; i < 3; i++) {
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(milterPort, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', reject);
    });
  }

  // What Prometheus stored, once a scrape after the load has landed.
  const messages = await waitFor('stored message counters', 30_000, async () => {
    const m = await byLabel(base, 'per_user_milter_messages_total{job="per-user-milter"}', 'action');
    return m.accept === ACCEPTS && m.reject === REJECTS && m.tempfail === TEMPFAILS ? m : undefined;
  }).catch(async (err) => {
    throw new Error(`${(err as Error).message}; Prometheus has ${JSON.stringify(await byLabel(base, 'per_user_milter_messages_total', 'action'))}\n${serve.output()}`);
  });
  assert.deepEqual(messages, { accept: ACCEPTS, reject: REJECTS, tempfail: TEMPFAILS });
  const runs = await byLabel(base, 'per_user_milter_filter_runs_total{job="per-user-milter"}', 'outcome');
  assert.deepEqual(runs, { accept: ACCEPTS, reject: REJECTS, tempfail: TEMPFAILS, nofilter: 0, unsafe: 0, error: 0, timeout: 0 });
  const recipients = await byLabel(base, 'per_user_milter_recipients_total{job="per-user-milter"}', 'kind');
  assert.equal(recipients.local, plan.length);
  assert.equal(recipients.nonlocal ?? 0, 0);
  const runCount = await query(base, 'sum(per_user_milter_filter_duration_seconds_count{job="per-user-milter"})');
  assert.equal(Number(runCount[0]?.value[1]), plan.length, 'histogram counted every run');
  await sleep(2500); // two scrapes after the probes
  const protocolErrors = await query(base, 'per_user_milter_protocol_errors_total{job="per-user-milter"}');
  assert.equal(protocolErrors[0]?.value[1], '0', 'probe connections are not protocol errors');
  const spooled = await query(base, 'per_user_milter_spool_bytes_total{job="per-user-milter"}');
  assert.ok(Number(spooled[0]?.value[1]) > 0, 'spool bytes counted');
  // The series this round adds, scraped and stored.
  const internal = await byLabel(base, 'per_user_milter_internal_errors_total{job="per-user-milter"}', 'reason');
  assert.deepEqual(internal, { spool: 0, launcher: 0, runner: 0, lookup: 0, pool_full: 0, other: 0 });
  const lookups = await byLabel(base, 'per_user_milter_user_lookups_total{job="per-user-milter"}', 'result');
  assert.deepEqual(Object.keys(lookups).sort(), ['error', 'found', 'unknown']);
  assert.equal(lookups.error, 0);
  const skipped = await byLabel(base, 'per_user_milter_skipped_total{job="per-user-milter"}', 'reason');
  assert.deepEqual(Object.keys(skipped).sort(), ['authenticated', 'trusted']);
  const durations = await byLabel(base, 'per_user_milter_message_duration_seconds_count{job="per-user-milter"}', 'action');
  assert.deepEqual(Object.keys(durations).sort(), ['accept', 'reject', 'tempfail']);
  const rcptRuns = await byLabel(base, 'per_user_milter_rcpt_filter_runs_total{job="per-user-milter"}', 'outcome');
  assert.equal(Object.keys(rcptRuns).length, 7);
  const build = await query(base, 'per_user_milter_build_info{job="per-user-milter"}');
  const pkg = JSON.parse(fs.readFileSync(path.join(DEPLOY, '..', 'package.json'), 'utf8')) as { version: string };
  assert.deepEqual(build.map((b) => [b.metric.version, b.metric.node, b.value[1]]), [[pkg.version, process.version, '1']]);
  assert.equal((await query(base, 'per_user_milter_connections_max{job="per-user-milter"}'))[0]?.value[1], '256');
  const rss = await byLabel(base, 'per_user_milter_process_resident_memory_bytes{job="per-user-milter"}', 'process');
  assert.ok((rss.milter ?? 0) > 10_000_000 && (rss.runner ?? 0) > 10_000_000, `milter and runner RSS: ${JSON.stringify(rss)}`);
  const cpu = await byLabel(base, 'per_user_milter_process_cpu_seconds_total{job="per-user-milter"}', 'process');
  assert.ok((cpu.runner ?? 0) > 0, `the runner used CPU for ${plan.length} filter runs: ${JSON.stringify(cpu)}`);
  // The shipped rules loaded and evaluate cleanly against real series.
  const rules = JSON.parse((await httpGet(`${base}/api/v1/rules`)).body) as { data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> } };
  const loaded = rules.data.groups.flatMap((g) => g.rules);
  assert.equal(loaded.length, 13);
  await waitFor('rules evaluated', 15_000, async () => {
    const r = JSON.parse((await httpGet(`${base}/api/v1/rules`)).body) as typeof rules;
    const all = r.data.groups.flatMap((g) => g.rules);
    const bad = all.filter((x) => x.health === 'err');
    assert.deepEqual(bad, [], 'rule evaluation errors');
    return all.every((x) => x.health === 'ok') ? true : undefined;
  });
  const firing = await query(base, 'ALERTS{alertstate="firing"}');
  assert.deepEqual(firing.map((s) => s.metric.alertname), [], 'no alert fires on a healthy milter');

  assert.equal(await serve.stop(), 0, serve.output());
  // Once serve is gone, the next scrapes say so (PerUserMilterDown's input).
  await waitFor('up == 0 after stop', 20_000, async () => ((await query(base, 'up{job="per-user-milter"}'))[0]?.value[1] === '0' ? true : undefined));
});
