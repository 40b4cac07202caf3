// Contract §5, row by row, through the in-repo milter client against a real
// `per-user-milter serve` (built CLI, real setpriv user switch, real piscina
// pool). Needs root: filters run as the test users of a passwd file.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { MilterClient } from '../../../src/milter/client.js';
import type { Reply } from '../../../src/milter/replies.js';
import { startMilter, type Milter } from '../../mta/harness/milter.js';
import { childrenOf } from '../../support/procs.js';
import { lacksRoot } from '../../support/require.js';
import { isAlive, waitUntil } from '../../support/wait.js';

const USERS = { alice: 63001, bob: 63002, carol: 63003 } as const;
type UserName = keyof typeof USERS;
const DOMAIN = 'example.test';
const MILTER_PORT = 26011;
const METRICS_PORT = 26012;

/** What a test user's ~/.user-milter does. */
type Filter =
  | { kind: 'accept' }
  | { kind: 'reject'; text?: string }
  | { kind: 'tempfail'; text?: string }
  | { kind: 'exit'; code: number }
  | { kind: 'hang' }
  /** Hangs, and so does a background child in its process group. */
  | { kind: 'hang-with-child' }
  | { kind: 'unsafe' }
  | { kind: 'none' };

interface Case {
  name: string;
  config?: Record<string, string | number | boolean>;
  filters: Partial<Record<UserName, Filter>>;
  /** Local users by name (RCPT as `<Name@example.test>`), or a full RCPT for non-local ones. */
  rcpts: string[];
  /** Expected RCPT replies other than continue, by index. */
  rcptReplies?: Record<number, string>;
  /** Expected final reply: 'accept', or the REPLYCODE text. When the body is never sent: 'accept@data' or 'accept@body'. */
  expect: string;
  /** Expected SMFIR_DELRCPT recipients. */
  deleted?: string[];
  /** Expected filter outcomes (for the metrics check). */
  outcomes?: string[];
  /** Message body size (bytes), default small. */
  bodyBytes?: number;
}

let root: string;
let passwd: string;

function homeOf(u: UserName): string {
  return path.join(root, 'home', u);
}

function writeFilter(u: UserName, f: Filter): void {
  const file = path.join(homeOf(u), '.user-milter');
  fs.rmSync(file, { force: true });
  if (f.kind === 'none') return;
  const body: Record<Exclude<Filter['kind'], 'none'>, string> = {
    accept: 'exit 0',
    reject: `echo ${JSON.stringify((f as { text?: string }).text ?? '')}; exit 1`,
    tempfail: `echo ${JSON.stringify((f as { text?: string }).text ?? '')}; exit 75`,
    exit: `exit ${(f as { code?: number }).code ?? 0}`,
    hang: 'exec sleep 60',
    'hang-with-child': 'sleep 60 &\nexec sleep 60',
    unsafe: 'exit 1',
  };
  fs.writeFileSync(file, `#!/bin/sh\ncat >/dev/null\n${body[f.kind]}\n`, { mode: 0o755 });
  fs.chownSync(file, USERS[u], USERS[u]);
  fs.chmodSync(file, f.kind === 'unsafe' ? 0o775 : 0o755); // group-writable: unsafe
}

function rcptOf(r: string): { rcpt: string; mailer: string; addr: string } {
  if (r in USERS) return { rcpt: `<${r[0]!.toUpperCase()}${r.slice(1)}@${DOMAIN}>`, mailer: 'local', addr: `${r}@${DOMAIN}` };
  return { rcpt: `<${r}>`, mailer: 'smtp', addr: r };
}

interface Sent {
  rcptReplies: Reply[];
  final: string;
  deleted: string[];
}

function describeReply(r: Reply, at: string): string {
  if (r.type === 'replycode') return r.text;
  return at ? `${r.type}@${at}` : r.type;
}

/** One whole transaction; stops early when the milter gives a final answer before EOM. */
async function sendMessage(c: MilterClient, rcpts: string[], bodyBytes = 200, queueId = 'QTEST'): Promise<Sent> {
  assert.equal((await c.mail('<sender@client.test>', 'SIZE=100'))?.type, 'continue');
  const rcptReplies: Reply[] = [];
  for (const r of rcpts) {
    const { rcpt, mailer, addr } = rcptOf(r);
    c.macro('R', { '{rcpt_mailer}': mailer, '{rcpt_addr}': addr, i: queueId });
    rcptReplies.push((await c.rcpt(rcpt)) as Reply);
  }
  c.macro('T', { i: queueId });
  const data = (await c.data()) as Reply;
  if (data.type !== 'continue') return { rcptReplies, final: describeReply(data, 'data'), deleted: [] };
  for (const [n, v] of [['From', ' <sender@client.test>'], ['Subject', ' test']] as const) {
    const h = (await c.header(n, v)) as Reply;
    if (h.type !== 'continue') return { rcptReplies, final: describeReply(h, 'header'), deleted: [] };
  }
  assert.equal((await c.eoh())?.type, 'continue');
  const line = 'x'.repeat(70) + '\r\n';
  let body = line.repeat(Math.ceil(bodyBytes / line.length));
  while (body.length > 0) {
    const chunk = body.slice(0, 65535);
    body = body.slice(65535);
    const r = (await c.body(chunk)) as Reply;
    if (r.type !== 'continue') return { rcptReplies, final: describeReply(r, 'body'), deleted: [] };
  }
  const eom = await c.eom();
  const deleted = eom.modifications.filter((m) => m.type === 'delrcpt').map((m) => (m as { recipient: Buffer }).recipient.toString('latin1'));
  return { rcptReplies, final: describeReply(eom.final, ''), deleted };
}

async function openClient(): Promise<MilterClient> {
  const c = await MilterClient.connect(`inet:${MILTER_PORT}@127.0.0.1`, { timeout: 20_000 });
  await c.negotiate();
  c.macro('C', { '{client_addr}': '192.0.2.7', '{client_name}': 'client.test' });
  assert.equal((await c.connect('client.test', 'inet', 4567, '192.0.2.7'))?.type, 'continue');
  assert.equal((await c.helo('client.test'))?.type, 'continue');
  return c;
}

function scrape(): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: METRICS_PORT, path: '/metrics' }, (res) => {
      let s = '';
      res.setEncoding('utf8').on('data', (d: string) => (s += d)).on('end', () => resolve(s));
    }).on('error', reject);
  });
}

function metricValue(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}

function spoolFiles(m: Milter): string[] {
  const dir = /"spoolDir":"([^"]+)"/.exec(m.log())?.[1];
  assert.ok(dir, 'serve logs its spool directory');
  // The launcher's socket lives there too; only spooled messages count.
  return dir && fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n !== 'launcher.sock') : [];
}

/** Live processes of a uid (ps; zombies excluded). */
function processesOf(uid: number): number[] {
  let out = '';
  try {
    out = execFileSync('ps', ['-u', String(uid), '-o', 'pid=,stat='], { encoding: 'utf8' });
  } catch {
    return []; // ps exits 1 when there is none
  }
  return out.split('\n').map((l) => l.trim().split(/\s+/)).filter(([pid, stat]) => pid && !stat?.startsWith('Z')).map(([pid]) => Number(pid));
}

const reject = (text?: string): Filter => (text === undefined ? { kind: 'reject' } : { kind: 'reject', text });

const CASES: Case[] = [
  { name: 'all reject, same text', filters: { alice: reject('5.7.1 no thanks'), bob: reject('5.7.1 no thanks') }, rcpts: ['alice', 'bob'], expect: '550 5.7.1 no thanks', outcomes: ['reject', 'reject'] },
  { name: 'all reject, different texts', filters: { alice: reject('5.7.1 no'), bob: reject('5.7.1 nope') }, rcpts: ['alice', 'bob'], expect: '550 5.7.1 Message rejected by its recipients', outcomes: ['reject', 'reject'] },
  { name: 'reject text without an enhanced code', filters: { alice: reject('go away') }, rcpts: ['alice'], expect: '550 5.7.1 go away', outcomes: ['reject'] },
  { name: 'reject with a 4.x.y text gets the default', filters: { alice: reject('4.2.0 odd') }, rcpts: ['alice'], expect: '550 5.7.1 Message rejected by its recipients', outcomes: ['reject'] },
  { name: 'reject without text', filters: { alice: reject() }, rcpts: ['alice'], expect: '550 5.7.1 Message rejected by its recipients', outcomes: ['reject'] },
  { name: 'mixed, deliver', filters: { alice: { kind: 'accept' }, bob: reject('5.7.1 no') }, rcpts: ['alice', 'bob'], expect: 'accept', deleted: [], outcomes: ['accept', 'reject'] },
  { name: 'mixed, drop-rejecters', config: { 'policy.mixed': 'drop-rejecters' }, filters: { alice: { kind: 'accept' }, bob: reject('5.7.1 no') }, rcpts: ['alice', 'bob'], expect: 'accept', deleted: [`<Bob@${DOMAIN}>`], outcomes: ['accept', 'reject'] },
  { name: 'mixed, split: the second filtered user gets 452', config: { 'policy.mixed': 'split' }, filters: { alice: reject('5.7.1 alice says no'), bob: { kind: 'accept' } }, rcpts: ['alice', 'bob'], rcptReplies: { 1: '452 4.5.3 Try again in a separate transaction' }, expect: '550 5.7.1 alice says no', outcomes: ['reject'] },
  { name: 'split: the retried recipient gets its own verdict', config: { 'policy.mixed': 'split' }, filters: { alice: reject('5.7.1 alice says no'), bob: { kind: 'accept' } }, rcpts: ['bob'], expect: 'accept', outcomes: ['accept'] },
  { name: 'tempfail beats reject', filters: { alice: { kind: 'tempfail', text: '4.2.0 later' }, bob: reject('5.7.1 no') }, rcpts: ['alice', 'bob'], expect: '451 4.2.0 later', outcomes: ['tempfail', 'reject'] },
  { name: 'nofilter is an accept vote', filters: { alice: { kind: 'none' }, bob: reject('5.7.1 no') }, rcpts: ['alice', 'bob'], expect: 'accept', outcomes: ['nofilter', 'reject'] },
  { name: 'unsafe counts as accept (onError=accept)', filters: { alice: { kind: 'unsafe' }, bob: reject('5.7.1 no') }, rcpts: ['alice', 'bob'], expect: 'accept', outcomes: ['unsafe', 'reject'] },
  { name: 'unsafe counts as tempfail (onError=tempfail)', config: { 'filter.onError': 'tempfail' }, filters: { alice: { kind: 'unsafe' }, bob: reject('5.7.1 no') }, rcpts: ['alice', 'bob'], expect: '451 4.7.1 Message deferred by its recipients', outcomes: ['unsafe', 'reject'] },
  { name: 'error counts as accept (onError=accept)', filters: { alice: { kind: 'exit', code: 3 } }, rcpts: ['alice'], expect: 'accept', outcomes: ['error'] },
  { name: 'error counts as tempfail (onError=tempfail)', config: { 'filter.onError': 'tempfail' }, filters: { alice: { kind: 'exit', code: 3 } }, rcpts: ['alice'], expect: '451 4.7.1 Message deferred by its recipients', outcomes: ['error'] },
  { name: 'timeout counts as accept (onError=accept)', config: { 'filter.timeout': 800 }, filters: { alice: { kind: 'hang' }, bob: reject() }, rcpts: ['alice', 'bob'], expect: 'accept', outcomes: ['timeout', 'reject'] },
  { name: 'timeout counts as tempfail (onError=tempfail)', config: { 'filter.timeout': 800, 'filter.onError': 'tempfail' }, filters: { alice: { kind: 'hang' } }, rcpts: ['alice'], expect: '451 4.7.1 Message deferred by its recipients', outcomes: ['timeout'] },
  { name: 'a non-local recipient votes accept (nonLocal=accept)', filters: { alice: reject('5.7.1 no') }, rcpts: ['alice', 'someone@elsewhere.example'], expect: 'accept', outcomes: ['reject'] },
  { name: 'a non-local recipient has no say (nonLocal=ignore)', config: { 'policy.nonLocal': 'ignore' }, filters: { alice: reject('5.7.1 no') }, rcpts: ['alice', 'someone@elsewhere.example'], expect: '550 5.7.1 no', outcomes: ['reject'] },
  { name: 'dry run always accepts', config: { 'policy.dryRun': true }, filters: { alice: reject('5.7.1 no') }, rcpts: ['alice'], expect: 'accept', outcomes: ['reject'] },
  { name: 'no local recipient: accepted at DATA, body never sent', filters: {}, rcpts: ['someone@elsewhere.example'], expect: 'accept@data', outcomes: [] },
  { name: 'local recipients without filters: accepted at DATA', filters: { carol: { kind: 'none' } }, rcpts: ['carol'], expect: 'accept@data', outcomes: [] },
  { name: 'oversize, policy accept: accepted unfiltered', config: { 'milter.maxMessageSize': 4096 }, filters: { alice: reject() }, rcpts: ['alice'], bodyBytes: 20_000, expect: 'accept@body', outcomes: [] },
  { name: 'oversize, policy reject: 552 5.3.4', config: { 'milter.maxMessageSize': 4096, 'policy.oversize': 'reject' }, filters: { alice: reject() }, rcpts: ['alice'], bodyBytes: 20_000, expect: '552 5.3.4 Message too big for per-recipient filtering', outcomes: [] },
];

describe('verdicts through a running serve (contract §5)', { concurrency: false }, () => {
  let skip = false;
  const expectedActions = { accept: 0, reject: 0, tempfail: 0 };
  const expectedOutcomes: Record<string, number> = {};
  let milter: Milter | undefined;
  let milterConfig = '';

  before(() => {
    root = fs.mkdtempSync('/var/lib/pumapp-'); // not under /tmp: a world-writable ancestor makes every filter unsafe
    fs.chmodSync(root, 0o755);
    passwd = path.join(root, 'passwd');
    fs.mkdirSync(path.join(root, 'home'), { mode: 0o755 });
    const lines: string[] = [];
    for (const [u, uid] of Object.entries(USERS)) {
      fs.mkdirSync(homeOf(u as UserName), { mode: 0o700 });
      if (process.getuid?.() === 0) fs.chownSync(homeOf(u as UserName), uid, uid);
      lines.push(`${u}:x:${uid}:${uid}::${homeOf(u as UserName)}:/bin/sh`);
    }
    fs.writeFileSync(passwd, lines.join('\n') + '\n');
  });

  after(async () => {
    await milter?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });

  /** (Re)starts serve when a case needs another configuration; metrics reset with it, so they are checked per serve. */
  async function milterFor(config: Record<string, string | number | boolean> = {}): Promise<Milter> {
    const key = JSON.stringify(config);
    if (milter && key === milterConfig) return milter;
    if (milter) {
      await checkMetrics(milter);
      assert.equal(await milter.stop(), 0, 'serve exits 0 on SIGTERM');
    }
    for (const k of Object.keys(expectedActions)) expectedActions[k as keyof typeof expectedActions] = 0;
    for (const k of Object.keys(expectedOutcomes)) delete expectedOutcomes[k];
    milter = await startMilter({
      listen: `inet:${MILTER_PORT}@127.0.0.1`,
      config: { 'users.passwdFile': passwd, 'metrics.listen': `127.0.0.1:${METRICS_PORT}`, 'log.format': 'json', 'pool.threads': 2, ...config },
    });
    milterConfig = key;
    return milter;
  }

  async function checkMetrics(m: Milter): Promise<void> {
    const text = await scrape();
    for (const [action, n] of Object.entries(expectedActions)) {
      assert.equal(metricValue(text, 'per_user_milter_messages_total', `action="${action}"`), n, `messages_total{action=${action}}\n${m.log().slice(-3000)}`);
    }
    for (const outcome of ['accept', 'reject', 'tempfail', 'nofilter', 'unsafe', 'error', 'timeout']) {
      assert.equal(metricValue(text, 'per_user_milter_filter_runs_total', `outcome="${outcome}"`), expectedOutcomes[outcome] ?? 0, `filter_runs_total{outcome=${outcome}}`);
    }
  }

  for (const c of CASES) {
    it(c.name, async (t) => {
      if (skip || lacksRoot(t)) {
        skip = true;
        return;
      }
      const m = await milterFor(c.config);
      for (const u of Object.keys(USERS) as UserName[]) writeFilter(u, c.filters[u] ?? { kind: 'none' });
      const client = await openClient();
      try {
        const sent = await sendMessage(client, c.rcpts, c.bodyBytes);
        sent.rcptReplies.forEach((r, i) => {
          assert.equal(describeReply(r, ''), c.rcptReplies?.[i] ?? 'continue', `RCPT ${c.rcpts[i]}`);
        });
        assert.equal(sent.final, c.expect, `final reply\n${m.log().slice(-2000)}`);
        if (c.deleted) assert.deepEqual(sent.deleted, c.deleted);
      } finally {
        await client.quit();
      }
      const action = c.expect.startsWith('accept') ? 'accept' : c.expect.startsWith('4') ? 'tempfail' : 'reject';
      expectedActions[c.config?.['policy.dryRun'] ? 'accept' : action]++;
      for (const o of c.outcomes ?? []) expectedOutcomes[o] = (expectedOutcomes[o] ?? 0) + 1;
      assert.deepEqual(spoolFiles(m), [], 'spool directory empty after the message');
    });
  }

  it('a serve killed with SIGKILL mid-message leaves no filter running: its launcher kills them, background children too, and both children exit', async (t) => {
    if (skip || lacksRoot(t)) return;
    const m = await milterFor({ 'filter.timeout': 60_000 });
    writeFilter('alice', { kind: 'hang-with-child' });
    const client = await openClient();
    const sending = sendMessage(client, ['alice']).catch(() => undefined);
    try {
      await waitUntil('the filter and its background child', () => processesOf(USERS.alice).length >= 2);
      const children = childrenOf(m.pid);
      assert.equal(children.length, 2, 'serve has two children: the launcher and the filter runner process');
      m.kill('SIGKILL');
      await m.exited();
      milter = undefined;
      await waitUntil('the filters of the killed milter to be gone', () => processesOf(USERS.alice).length === 0);
      await waitUntil('the launcher and the runner process to exit', () => children.every((pid) => !isAlive(pid)));
    } finally {
      for (const pid of processesOf(USERS.alice)) process.kill(pid, 'SIGKILL');
      client.destroy();
      await sending;
      await m.stop();
    }
  });

  it('the per-message log line names queue id, sender, users with exit codes, and the action', async (t) => {
    if (skip || lacksRoot(t)) return;
    const m = await milterFor({});
    writeFilter('alice', reject('5.7.1 logged'));
    writeFilter('bob', { kind: 'accept' });
    const mark = m.logMark();
    const client = await openClient();
    await sendMessage(client, ['alice', 'bob'], 100, 'QLOG42');
    await client.quit();
    const line = (await m.waitForLog(/"event":"message"/, mark)).split('\n').find((l) => l.includes('"event":"message"'))!;
    const rec = JSON.parse(line) as { queueId: string; from: string; action: string; users: Array<{ user: string; outcome: string; exit: number; ms: number }> };
    assert.equal(rec.queueId, 'QLOG42');
    assert.equal(rec.from, 'sender@client.test');
    assert.equal(rec.action, 'accept');
    assert.deepEqual(rec.users.map((u) => [u.user, u.outcome, u.exit]), [['alice', 'reject', 1], ['bob', 'accept', 0]]);
    assert.ok(rec.users.every((u) => typeof u.ms === 'number'));
    expectedActions.accept++;
    expectedOutcomes.reject = (expectedOutcomes.reject ?? 0) + 1;
    expectedOutcomes.accept = (expectedOutcomes.accept ?? 0) + 1;
  });

  it('spool is empty after ABORT and after a client that disconnects in the middle of a body', async (t) => {
    if (skip || lacksRoot(t)) return;
    const m = await milterFor({});
    writeFilter('alice', reject());
    const c1 = await openClient();
    await c1.mail('<s@client.test>');
    c1.macro('R', { '{rcpt_mailer}': 'local', '{rcpt_addr}': `alice@${DOMAIN}` });
    await c1.rcpt(`<alice@${DOMAIN}>`);
    await c1.data();
    await c1.header('Subject', ' x');
    await c1.eoh();
    await c1.body('half a body\r\n');
    assert.equal(spoolFiles(m).length, 1, 'one message is being spooled');
    c1.abort();
    // The same connection goes on with a new transaction after ABORT.
    const sent = await sendMessage(c1, ['alice']);
    assert.equal(sent.final, '550 5.7.1 Message rejected by its recipients');
    expectedActions.reject++;
    expectedOutcomes.reject = (expectedOutcomes.reject ?? 0) + 1;
    await c1.quit();

    const c2 = await openClient();
    await c2.mail('<s@client.test>');
    c2.macro('R', { '{rcpt_mailer}': 'local', '{rcpt_addr}': `alice@${DOMAIN}` });
    await c2.rcpt(`<alice@${DOMAIN}>`);
    await c2.data();
    await c2.eoh();
    await c2.body('x'.repeat(30_000));
    c2.destroy();
    const deadline = Date.now() + 5000;
    while (spoolFiles(m).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(spoolFiles(m), []);
  });

  it('two hundred parallel connections each get their own verdict', async (t) => {
    if (skip || lacksRoot(t)) return;
    await milterFor({});
    writeFilter('alice', { kind: 'accept' });
    writeFilter('bob', reject('5.7.1 bob rejects'));
    const runs = Array.from({ length: 200 }, async (_, i) => {
      const c = await openClient();
      try {
        const who = i % 2 === 0 ? 'alice' : 'bob';
        const sent = await sendMessage(c, [who], 500, `QPAR${i}`);
        return [who, sent.final] as const;
      } finally {
        await c.quit();
      }
    });
    const results = await Promise.all(runs);
    for (const [who, final] of results) assert.equal(final, who === 'alice' ? 'accept' : '550 5.7.1 bob rejects');
    expectedActions.accept += 100;
    expectedActions.reject += 100;
    expectedOutcomes.accept = (expectedOutcomes.accept ?? 0) + 100;
    expectedOutcomes.reject = (expectedOutcomes.reject ?? 0) + 100;
  });

  it('metrics scraped over HTTP match the messages sent', async (t) => {
    if (skip || lacksRoot(t)) return;
    await checkMetrics(milter!);
    const text = await scrape();
    assert.match(text, /^per_user_milter_connections_active 0$/m);
    assert.match(text, /^process_cpu_seconds_total /m, 'default process metrics');
  });
});

describe('check-config', () => {
  it('rejects a bad file with one clear line per problem and exit 1', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pumcfg-'));
    const file = path.join(dir, 'bad.json');
    fs.writeFileSync(file, JSON.stringify({ milter: { listen: 'tcp:25', maxConnections: 0 }, policy: { mixed: 'sometimes' }, bogus: true }));
    let status = 0;
    let stderr = '';
    try {
      execFileSync(process.execPath, ['dist/src/main.js', 'check-config', '--config', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      const e = err as { status: number; stderr: string };
      status = e.status;
      stderr = e.stderr;
    }
    fs.rmSync(dir, { recursive: true });
    assert.equal(status, 1);
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 4, stderr);
    for (const key of ['milter.listen', 'milter.maxConnections', 'policy.mixed', 'bogus']) {
      assert.ok(lines.some((l) => l.includes(key)), `a line names ${key}:\n${stderr}`);
    }
  });

  it('accepts the example configuration and prints the effective one', () => {
    // check-config also checks that the socket's directory exists: the example's
    // (inside Postfix's chroot) is made by tmpfiles.d, so point it at one that exists.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pumcfg-'));
    let out: string;
    try {
      out = execFileSync(process.execPath, ['dist/src/main.js', 'check-config', '--config', 'deploy/config.example.json', '--policy.mixed', 'split', '--milter.listen', `unix:${dir}/milter.sock`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
    const config = JSON.parse(out) as { policy: { mixed: string }; milter: { listen: string } };
    assert.equal(config.policy.mixed, 'split', 'command line beats the file');
    assert.match(config.milter.listen, /^unix:/);
  });
});
