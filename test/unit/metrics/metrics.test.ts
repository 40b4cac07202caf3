import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createMetrics, MetricsServer, parseMetricsListen, type Metrics } from '../../../src/metrics/index.js';
import { parseProcessUsage, readProcessUsage } from '../../../src/metrics/proc.js';

async function scrape(port: number, host = '127.0.0.1', path = '/metrics'): Promise<{ status: number; type: string | null; body: string }> {
  const res = await fetch(`http://${host.includes(':') ? `[${host}]` : host}:${port}${path}`);
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
}

async function serve(metrics: Metrics, listen = '127.0.0.1:0'): Promise<{ server: MetricsServer; port: number }> {
  const server = new MetricsServer(listen, metrics.registry);
  const addr = await server.start();
  assert.ok(addr);
  return { server, port: addr.port };
}

/** The value of one sample line, e.g. `per_user_milter_messages_total{action="accept"}`. */
function sample(body: string, series: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('every contract metric is exposed with its type, labelled series at 0', async () => {
  const metrics = createMetrics({ perUserLabels: false });
  const { server, port } = await serve(metrics);
  try {
    const { status, type, body } = await scrape(port);
    assert.equal(status, 200);
    assert.match(type ?? '', /^text\/plain; version=0\.0\.4/);
    const types: Array<[string, string]> = [
      ['messages_total', 'counter'],
      ['filter_runs_total', 'counter'],
      ['filter_duration_seconds', 'histogram'],
      ['recipients_total', 'counter'],
      ['connections_active', 'gauge'],
      ['pool_queue_size', 'gauge'],
      ['pool_utilization', 'gauge'],
      ['spool_bytes_total', 'counter'],
      ['protocol_errors_total', 'counter'],
    ];
    for (const [name, kind] of types) assert.ok(body.includes(`# TYPE per_user_milter_${name} ${kind}\n`), name);
    for (const action of ['accept', 'reject', 'tempfail']) {
      assert.equal(sample(body, `per_user_milter_messages_total{action="${action}"}`), 0, action);
    }
    for (const outcome of ['accept', 'reject', 'tempfail', 'nofilter', 'unsafe', 'error', 'timeout']) {
      assert.equal(sample(body, `per_user_milter_filter_runs_total{outcome="${outcome}"}`), 0, outcome);
      // Durations exist only for runs that start a process.
      const timed = outcome !== 'nofilter' && outcome !== 'unsafe';
      assert.equal(sample(body, `per_user_milter_filter_duration_seconds_count{outcome="${outcome}"}`), timed ? 0 : undefined, outcome);
    }
    assert.equal(sample(body, 'per_user_milter_recipients_total{kind="local"}'), 0);
    assert.equal(sample(body, 'per_user_milter_recipients_total{kind="nonlocal"}'), 0);
    assert.equal(sample(body, 'per_user_milter_spool_bytes_total'), 0);
    assert.equal(sample(body, 'per_user_milter_protocol_errors_total'), 0);
    assert.ok(body.includes('process_cpu_user_seconds_total'), 'default process metrics');
    assert.ok(body.includes('per_user_milter_filter_duration_seconds_bucket{le="0.005",outcome="accept"} 0'), '5 ms bucket');
    assert.ok(body.includes('per_user_milter_filter_duration_seconds_bucket{le="60",outcome="accept"} 0'), '60 s bucket');
  } finally {
    await server.close();
  }
});

test('events move the right series', async () => {
  let pool = { queueSize: 7, utilization: 0.25 };
  const metrics = createMetrics({ perUserLabels: false, poolStats: () => pool, processMetrics: false, maxConnections: 256 });
  metrics.message('reject');
  metrics.message('accept');
  metrics.message('accept');
  metrics.filterRun('reject', 12, 'alice');
  metrics.filterRun('timeout', 30_000);
  metrics.recipient('local');
  metrics.recipient('nonlocal');
  metrics.recipient('nonlocal');
  metrics.connectionOpened();
  metrics.connectionOpened();
  metrics.connectionClosed();
  metrics.spoolBytes(1234);
  metrics.protocolError();
  const { server, port } = await serve(metrics);
  try {
    let { body } = await scrape(port);
    assert.equal(sample(body, 'per_user_milter_messages_total{action="accept"}'), 2);
    assert.equal(sample(body, 'per_user_milter_messages_total{action="reject"}'), 1);
    assert.equal(sample(body, 'per_user_milter_filter_runs_total{outcome="reject"}'), 1);
    assert.equal(sample(body, 'per_user_milter_filter_duration_seconds_sum{outcome="reject"}'), 0.012);
    assert.equal(sample(body, 'per_user_milter_filter_duration_seconds_bucket{le="0.01",outcome="reject"}'), 0);
    assert.equal(sample(body, 'per_user_milter_filter_duration_seconds_bucket{le="0.025",outcome="reject"}'), 1);
    assert.equal(sample(body, 'per_user_milter_filter_duration_seconds_bucket{le="30",outcome="timeout"}'), 1);
    assert.equal(sample(body, 'per_user_milter_recipients_total{kind="nonlocal"}'), 2);
    assert.equal(sample(body, 'per_user_milter_connections_active'), 1);
    assert.equal(sample(body, 'per_user_milter_connections_max'), 256);
    assert.equal(sample(body, 'per_user_milter_spool_bytes_total'), 1234);
    assert.equal(sample(body, 'per_user_milter_protocol_errors_total'), 1);
    assert.equal(sample(body, 'per_user_milter_pool_queue_size'), 7);
    assert.equal(sample(body, 'per_user_milter_pool_utilization'), 0.25);
    assert.ok(!body.includes('user="alice"'), 'no user label unless asked for');
    assert.ok(!body.includes('process_cpu_user_seconds_total'), 'process metrics off');
    pool = { queueSize: 0, utilization: 1 };
    ({ body } = await scrape(port));
    assert.equal(sample(body, 'per_user_milter_pool_queue_size'), 0, 'gauges read at scrape time');
    assert.equal(sample(body, 'per_user_milter_pool_utilization'), 1);
  } finally {
    await server.close();
  }
});

test('metrics.perUserLabels adds a user label to the run counters only, never to a histogram', async () => {
  const metrics = createMetrics({ perUserLabels: true, processMetrics: false });
  metrics.filterRun('accept', 5, 'alice');
  metrics.filterRun('accept', 7, 'alice');
  metrics.filterRun('reject', 9, 'bob');
  metrics.rcptFilterRun('tempfail', 'carol');
  metrics.message('accept');
  const body = await metrics.text();
  assert.equal(sample(body, 'per_user_milter_filter_runs_total{outcome="accept",user="alice"}'), 2);
  assert.equal(sample(body, 'per_user_milter_filter_runs_total{outcome="reject",user="bob"}'), 1);
  assert.equal(sample(body, 'per_user_milter_rcpt_filter_runs_total{outcome="tempfail",user="carol"}'), 1);
  assert.equal(sample(body, 'per_user_milter_filter_duration_seconds_count{outcome="accept"}'), 2);
  assert.equal(sample(body, 'per_user_milter_messages_total{action="accept"}'), 1);
  const userLines = body.split('\n').filter((l) => l.includes('user="'));
  assert.ok(userLines.length > 0);
  for (const l of userLines) assert.match(l, /^per_user_milter_(rcpt_)?filter_runs_total\{/, `user label outside the run counters: ${l}`);
});

test('runs that started no process (nofilter, unsafe) are counted but not timed', async () => {
  const metrics = createMetrics({ perUserLabels: false, processMetrics: false });
  for (let i = 0; i < 99; i++) metrics.filterRun('nofilter', 0);
  metrics.filterRun('unsafe', 1);
  metrics.filterRun('accept', 20_000);
  const body = await metrics.text();
  assert.equal(sample(body, 'per_user_milter_filter_runs_total{outcome="nofilter"}'), 99);
  assert.equal(sample(body, 'per_user_milter_filter_runs_total{outcome="unsafe"}'), 1);
  assert.ok(!body.includes('per_user_milter_filter_duration_seconds_count{outcome="nofilter"}'));
  assert.ok(!body.includes('per_user_milter_filter_duration_seconds_count{outcome="unsafe"}'));
  // So the only timed run is the slow one: every quantile above 10 s can see it.
  const counts = body.split('\n').filter((l) => l.startsWith('per_user_milter_filter_duration_seconds_count'));
  assert.equal(counts.reduce((n, l) => n + Number(l.split(' ')[1]), 0), 1);
  assert.equal(sample(body, 'per_user_milter_filter_duration_seconds_bucket{le="10",outcome="accept"}'), 0);
  assert.equal(sample(body, 'per_user_milter_filter_duration_seconds_bucket{le="20",outcome="accept"}'), 1);
});

test('the helper processes: RSS and CPU read from /proc at scrape time, by process', async (t) => {
  // A stand-in runner: 64 MiB resident, then 300 ms of its own CPU time, then it says so.
  const script = 'const a = Buffer.alloc(64 << 20, 1); let x = 0; while (process.cpuUsage().user < 300_000) x += a[x % a.length]; console.log("ready"); setInterval(() => {}, 1000);';
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => child.kill('SIGKILL'));
  await new Promise((resolve) => child.stdout.once('data', resolve));
  let runnerPid: number | null = child.pid ?? null;
  const metrics = createMetrics({ perUserLabels: false, processMetrics: false, processes: () => [{ process: 'milter', pid: process.pid }, { process: 'runner', pid: runnerPid }] });
  let body = await metrics.text();
  const rss = sample(body, 'per_user_milter_process_resident_memory_bytes{process="runner"}') ?? 0;
  assert.ok(rss > 64 << 20, `runner RSS ${rss} holds its 64 MiB buffer`);
  const cpu = sample(body, 'per_user_milter_process_cpu_seconds_total{process="runner"}') ?? 0;
  assert.ok(cpu >= 0.25, `runner CPU ${cpu} s after 300 ms of CPU`);
  assert.ok((sample(body, 'per_user_milter_process_resident_memory_bytes{process="milter"}') ?? 0) > 0);
  assert.ok(body.includes('# TYPE per_user_milter_process_cpu_seconds_total counter'));
  // Gone: no series (not a stale value).
  runnerPid = null;
  body = await metrics.text();
  assert.equal(sample(body, 'per_user_milter_process_resident_memory_bytes{process="runner"}'), undefined);
  assert.equal(sample(body, 'per_user_milter_process_cpu_seconds_total{process="runner"}'), undefined);
  assert.equal(readProcessUsage(2 ** 22 + 12345), null);
});

test('parseProcessUsage: VmRSS in kB, utime + stime in ticks, a command name with ") " in it', () => {
  const stat = '4242 (evil) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 200';
  assert.deepEqual(parseProcessUsage('Name:\tx\nVmRSS:\t   2048 kB\n', stat), { residentBytes: 2048 * 1024, cpuSeconds: 3 });
  assert.equal(parseProcessUsage('Name:\tx\n', stat), null, 'a kernel thread has no VmRSS');
  assert.equal(parseProcessUsage('VmRSS: 1 kB', '1 (x) S 1'), null);
});

test('/metrics only: other paths 404, other methods 405, HEAD has no body', async () => {
  const metrics = createMetrics({ perUserLabels: false, processMetrics: false });
  const { server, port } = await serve(metrics);
  try {
    assert.equal((await scrape(port, '127.0.0.1', '/')).status, 404);
    assert.equal((await scrape(port, '127.0.0.1', '/metricsx')).status, 404);
    assert.equal((await scrape(port, '127.0.0.1', '/metrics?x=1')).status, 200);
    const post = await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' });
    assert.equal(post.status, 405);
    const head = await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
  } finally {
    await server.close();
  }
  await assert.rejects(fetch(`http://127.0.0.1:${port}/metrics`), 'closed');
});

test('IPv6 loopback listen address', async (t) => {
  const metrics = createMetrics({ perUserLabels: false, processMetrics: false });
  const server = new MetricsServer('[::1]:0', metrics.registry);
  let addr;
  try {
    addr = await server.start();
  } catch (err) {
    return t.skip(`no IPv6 loopback here: ${(err as Error).message}`);
  }
  try {
    assert.ok(addr);
    assert.equal(addr.host, '::1');
    assert.equal((await scrape(addr.port, '::1')).status, 200);
  } finally {
    await server.close();
  }
});

test('parseMetricsListen', () => {
  assert.deepEqual(parseMetricsListen('127.0.0.1:9464'), { host: '127.0.0.1', port: 9464 });
  assert.deepEqual(parseMetricsListen('[::1]:9464'), { host: '::1', port: 9464 });
  assert.deepEqual(parseMetricsListen('localhost:1'), { host: 'localhost', port: 1 });
  assert.deepEqual(parseMetricsListen(':9464'), { host: '127.0.0.1', port: 9464 });
  assert.equal(parseMetricsListen(''), null);
  assert.throws(() => parseMetricsListen('9464'));
  assert.throws(() => parseMetricsListen('h:99999'));
});

test('an empty metrics.listen disables the endpoint', async () => {
  const metrics = createMetrics({ perUserLabels: false, processMetrics: false });
  const server = new MetricsServer('', metrics.registry);
  assert.equal(await server.start(), null);
  await server.close();
});

test('milterEvents: refused connections do not move connections_active', async () => {
  const metrics = createMetrics({ perUserLabels: false, processMetrics: false });
  const events = metrics.milterEvents();
  events.connectionOpened();
  events.connectionOpened();
  events.connectionClosed({ reason: 'refused' });
  events.connectionClosed({ reason: 'quit' });
  events.protocolError();
  const body = await metrics.text();
  assert.equal(sample(body, 'per_user_milter_connections_active'), 1);
  assert.equal(sample(body, 'per_user_milter_protocol_errors_total'), 1);
});
