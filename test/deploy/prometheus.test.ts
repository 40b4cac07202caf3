// deploy/prometheus: promtool accepts the scrape config and the rules, the
// rules' unit tests pass and cover every alert, every metric the alerts and
// the dashboard use exists (contract §6), and a real Prometheus scraping a
// running `serve` through a short load stores exactly the counts of what the
// load did.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { lacksCommand, lacksRoot } from '../support/require.js';
import {
  DEPLOY, deliver, ensureUser, freePort, httpGet, lacksServe, optionalImport, readDeploy, sleep, startServe, tmpDir, waitFor, writeFilter,
} from './support.js';

const PROM = path.join(DEPLOY, 'prometheus');

/** Contract §6 names (without the prefix) and the series they produce. */
const CONTRACT_METRICS = [
  'messages_total', 'filter_runs_total', 'filter_duration_seconds', 'recipients_total', 'connections_active',
  'pool_queue_size', 'pool_utilization', 'spool_bytes_total', 'protocol_errors_total',
];
const KNOWN_SERIES = new Set([
  ...CONTRACT_METRICS.map((m) => `per_user_milter_${m}`),
  ...['bucket', 'sum', 'count'].map((s) => `per_user_milter_filter_duration_seconds_${s}`),
  'up', 'ALERTS',
  // prom-client default metrics the dashboard shows
  'process_resident_memory_bytes', 'process_cpu_seconds_total', 'nodejs_eventloop_lag_p99_seconds',
]);

const PROMQL_WORDS = new Set([
  'sum', 'by', 'without', 'rate', 'increase', 'histogram_quantile', 'min_over_time', 'max_over_time', 'avg_over_time', 'avg', 'max', 'min',
  'absent', 'and', 'or', 'unless', 'on', 'ignoring', 'label_values', 'humanizePercentage', 'humanizeDuration', 'printf', 'offset', 'bool',
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

test('alerts and dashboard use only metrics that exist (contract §6, prom-client defaults)', async (t) => {
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
  // Each §6 metric is watched somewhere.
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
      rules: queries.map((q, i) => ({ record: `dashboard:query_${i}`, expr: q.replaceAll('$__rate_interval', '5m').replaceAll('$instance', '.*') })),
    }],
  };
  const file = path.join(tmpDir(t, 'dash'), 'dashboard-queries.yml');
  fs.writeFileSync(file, JSON.stringify(rules, null, 2));
  const r = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
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
  if (lacksRoot(t) || lacksCommand(t, 'prometheus', 'prometheus') || lacksServe(t)) return;
  const user = ensureUser(t, 'pumops-prom');
  writeFilter(user, VERDICT_FILTER);

  const dir = tmpDir(t, 'prom');
  // Started as root, serve drops to milter.user (here `nobody`), which must reach its spool.
  fs.chmodSync(dir, 0o755);
  const milterPort = await freePort(25420);
  const metricsPort = await freePort(milterPort + 1);
  const promPort = await freePort(metricsPort + 1);
  const config = path.join(dir, 'config.json');
  fs.writeFileSync(config, JSON.stringify({
    milter: { listen: `inet:${milterPort}@127.0.0.1`, user: 'nobody' },
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
  // The shipped rules loaded and evaluate cleanly against real series.
  const rules = JSON.parse((await httpGet(`${base}/api/v1/rules`)).body) as { data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> } };
  const loaded = rules.data.groups.flatMap((g) => g.rules);
  assert.equal(loaded.length, 8);
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
