// The verdict table (test/scenarios/verdicts.ts), row by row, through the
// in-repo milter client against a real `per-user-milter serve` (built CLI,
// real setpriv user switch, real filter runner). This tier sees the milter
// replies themselves: the RCPT replies, where the verdict came (DATA, a body
// chunk or end of message), the SMFIR_DELRCPT packets, the per-message log
// line and the metrics. After the rows: what only this tier can do (a killed
// serve, a client that hangs up mid-body, two hundred connections at once).
// Needs root: filters run as the users of a passwd file, uids 63001-63003.
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
import { lacksCommand, lacksRoot } from '../../support/require.js';
import { isAlive, waitUntil } from '../../support/wait.js';
import {
  actionOf,
  byConfig,
  checkLogLine,
  DEFER_REPLY,
  expand,
  filterBody,
  messageLines,
  ran,
  recipient,
  transactions,
  USERS,
  type Filter,
  type Scenario,
  type User,
} from '../../scenarios/scenario.js';
import { VERDICTS } from '../../scenarios/verdicts.js';

const UID: Record<User, number> = { alice: 63001, bob: 63002, carol: 63003 };
const DOMAIN = 'example.test';
const SENDER = 'sender@client.test';
const MILTER_PORT = 26011;
const METRICS_PORT = 26012;

let root: string;
let passwd: string;

const homeOf = (u: User): string => path.join(root, 'home', u);
const account = (u: User): { uid: number; home: string } => ({ uid: UID[u], home: homeOf(u) });

/** Installs a user's ~/.user-milter (none: removed) and clears what earlier runs wrote. */
function writeFilter(u: User, f: Filter | undefined): void {
  const file = path.join(homeOf(u), '.user-milter');
  fs.rmSync(file, { force: true });
  fs.rmSync(path.join(homeOf(u), 'runs'), { force: true });
  if (!f) return;
  fs.writeFileSync(file, `#!/bin/sh\n${filterBody(f)}`);
  fs.chownSync(file, UID[u], UID[u]);
  fs.chmodSync(file, f.kind === 'unsafe' ? 0o775 : 0o755); // group-writable: unsafe
}

function runsOf(u: User): number {
  const file = path.join(homeOf(u), 'runs');
  return fs.existsSync(file) ? fs.readFileSync(file, 'latin1').split('\n').filter((l) => l !== '').length : 0;
}

/** A recipient of the table as this tier sends it: the RCPT argument (case as a client may write it) and its macros. */
function rcptOf(to: string): { rcpt: string; mailer: string; addr: string } {
  const r = recipient(to);
  if (r.kind === 'remote') return { rcpt: `<${r.local}@elsewhere.example>`, mailer: 'smtp', addr: `${r.local}@elsewhere.example` };
  const local = r.extension ? `${r.user}+${r.extension}` : r.user;
  return { rcpt: `<${local[0]!.toUpperCase()}${local.slice(1)}@${DOMAIN}>`, mailer: 'local', addr: `${local}@${DOMAIN}` };
}

function describeReply(r: Reply): string {
  if (r.type === 'replycode') return r.text;
  return r.type;
}

interface Sent {
  /** RCPT replies other than continue, by recipient. */
  rcptReplies: Map<string, string>;
  /** 'accept' or the reply text. */
  final: string;
  /** Where the verdict came when before end of message. */
  at: 'data' | 'header' | 'body' | undefined;
  /** SMFIR_DELRCPT recipients. */
  deleted: string[];
}

/** One whole transaction; stops early when the milter gives a final answer before EOM. */
async function sendTransaction(c: MilterClient, to: readonly string[], bodyBytes = 200, queueId = 'QTEST'): Promise<Sent> {
  const sent: Sent = { rcptReplies: new Map(), final: '', at: undefined, deleted: [] };
  c.macro('M', { '{mail_addr}': SENDER });
  assert.equal((await c.mail(`<${SENDER}>`, 'SIZE=100'))?.type, 'continue');
  for (const r of to) {
    const { rcpt, mailer, addr } = rcptOf(r);
    c.macro('R', { '{rcpt_mailer}': mailer, '{rcpt_addr}': addr, i: queueId });
    const reply = (await c.rcpt(rcpt)) as Reply;
    if (reply.type !== 'continue') sent.rcptReplies.set(r, describeReply(reply));
  }
  const early = (r: Reply, at: Sent['at']): Sent => ({ ...sent, final: describeReply(r), at });
  c.macro('T', { i: queueId });
  const data = (await c.data()) as Reply;
  if (data.type !== 'continue') return early(data, 'data');
  for (const [n, v] of [['From', ` <${SENDER}>`], ['Subject', ' test']] as const) {
    const h = (await c.header(n, v)) as Reply;
    if (h.type !== 'continue') return early(h, 'header');
  }
  assert.equal((await c.eoh())?.type, 'continue');
  const line = 'x'.repeat(70) + '\r\n';
  let body = line.repeat(Math.ceil(bodyBytes / line.length));
  while (body.length > 0) {
    const r = (await c.body(body.slice(0, 65535))) as Reply;
    body = body.slice(65535);
    if (r.type !== 'continue') return early(r, 'body');
  }
  const eom = await c.eom();
  sent.deleted = eom.modifications.filter((m) => m.type === 'delrcpt').map((m) => (m as { recipient: Buffer }).recipient.toString('latin1'));
  sent.final = describeReply(eom.final);
  return sent;
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

describe('verdicts through a running serve (docs/reference.md §5)', { concurrency: false }, () => {
  let skip = false;
  const expectedActions = { accept: 0, reject: 0, tempfail: 0 };
  const expectedOutcomes: Record<string, number> = {};
  let milter: Milter | undefined;
  let milterConfig = '';
  /** A test failed on the running serve: what it counted is not known, so its metrics are not compared. */
  let tainted = false;

  before(() => {
    root = fs.mkdtempSync('/var/lib/pumapp-'); // not under /tmp: a world-writable ancestor makes every filter unsafe
    fs.chmodSync(root, 0o755);
    passwd = path.join(root, 'passwd');
    fs.mkdirSync(path.join(root, 'home'), { mode: 0o755 });
    const lines: string[] = [];
    for (const u of USERS) {
      fs.mkdirSync(homeOf(u), { mode: 0o700 });
      if (process.getuid?.() === 0) fs.chownSync(homeOf(u), UID[u], UID[u]);
      lines.push(`${u}:x:${UID[u]}:${UID[u]}::${homeOf(u)}:/bin/sh`);
    }
    fs.writeFileSync(passwd, lines.join('\n') + '\n');
  });

  after(async () => {
    await milter?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });

  /** (Re)starts serve when a row needs another configuration; metrics reset with it, so they are checked per serve. */
  async function milterFor(config: Record<string, string | number | boolean> = {}): Promise<Milter> {
    const key = JSON.stringify(config);
    if (milter && key === milterConfig) return milter;
    if (milter) {
      const old = milter;
      milter = undefined;
      try {
        if (!tainted) await checkMetrics(old);
      } finally {
        assert.equal(await old.stop(), 0, 'serve exits 0 on SIGTERM');
      }
    }
    tainted = false;
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

  /** One row: its transactions on one connection, deferred recipients sent again in the next. */
  async function replay(row: Scenario, index: number): Promise<void> {
    const m = await milterFor({ ...row.config });
    for (const u of USERS) writeFilter(u, row.filters[u]);
    const mark = m.logMark();
    const client = await openClient();
    const queueIds: string[] = [];
    try {
      let pending = [...row.to];
      for (const [n, t] of transactions(row).entries()) {
        const queueId = `Q${index}T${n}`;
        queueIds.push(queueId);
        const sent = await sendTransaction(client, pending, row.bodyBytes, queueId);
        const deferred = [...sent.rcptReplies.keys()];
        for (const [to, reply] of sent.rcptReplies) assert.equal(reply, DEFER_REPLY, `RCPT ${to}`);
        assert.deepEqual(deferred, t.deferred ?? [], 'deferred recipients');
        assert.equal(sent.final, expand(t.reply, account), `transaction ${n + 1}: the verdict\n${m.logSince(mark).slice(-2000)}`);
        assert.equal(sent.at, t.at, `transaction ${n + 1}: where the verdict came`);
        const dropped = pending.filter((to) => {
          const r = recipient(to);
          return r.kind === 'local' && (t.dropped ?? []).includes(r.user);
        });
        assert.deepEqual(sent.deleted.sort(), dropped.map((to) => rcptOf(to).rcpt).sort(), 'SMFIR_DELRCPT');
        pending = deferred;
      }
    } finally {
      await client.quit();
    }
    const lines = messageLines(await m.waitForLog(new RegExp(`("event":"message".*){${transactions(row).length}}`, 's'), mark));
    assert.equal(lines.length, transactions(row).length, 'one log line per transaction');
    transactions(row).forEach((t, n) => {
      checkLogLine(lines[n]!, row, t, { name: (u) => u, from: SENDER, queueId: queueIds[n]!, expand: (s) => expand(s, account) });
      expectedActions[actionOf(t.reply)]++;
      for (const outcome of Object.values(t.users)) expectedOutcomes[outcome] = (expectedOutcomes[outcome] ?? 0) + 1;
    });
    for (const u of USERS) {
      const runs = transactions(row).filter((t) => t.users[u] !== undefined && ran(t.users[u])).length;
      assert.equal(runsOf(u), runs, `${u}'s filter runs`);
    }
    assert.deepEqual(spoolFiles(m), [], 'spool directory empty after the message');
  }

  /** Runs a test that moves the counters; when it fails, the serve's counts are no longer known. */
  async function counted(test: () => Promise<void>): Promise<void> {
    try {
      await test();
    } catch (error) {
      tainted = true;
      throw error;
    }
  }

  const rows = byConfig(VERDICTS).flat();
  for (const row of rows) {
    it(row.name, async (t) => {
      if (skip || lacksRoot(t)) {
        skip = true;
        return;
      }
      for (const [command, pkg] of row.needs ?? []) if (lacksCommand(t, command, pkg)) return;
      await counted(() => replay(row, VERDICTS.indexOf(row)));
    });
  }

  it('a serve killed with SIGKILL mid-message leaves no filter running: its launcher kills them, background children too, and both children exit', async (t) => {
    if (skip || lacksRoot(t)) return;
    const m = await milterFor({ 'filter.timeout': 60_000 });
    writeFilter('alice', { kind: 'script', body: 'cat >/dev/null\nsleep 60 &\nexec sleep 60\n' });
    const client = await openClient();
    const sending = sendTransaction(client, ['alice']).catch(() => undefined);
    try {
      await waitUntil('the filter and its background child', () => processesOf(UID.alice).length >= 2);
      const children = childrenOf(m.pid);
      assert.equal(children.length, 2, 'serve has two children: the launcher and the filter runner process');
      m.kill('SIGKILL');
      await m.exited();
      milter = undefined;
      await waitUntil('the filters of the killed milter to be gone', () => processesOf(UID.alice).length === 0);
      await waitUntil('the launcher and the runner process to exit', () => children.every((pid) => !isAlive(pid)));
    } finally {
      for (const pid of processesOf(UID.alice)) process.kill(pid, 'SIGKILL');
      client.destroy();
      await sending;
      await m.stop();
    }
  });

  it('spool is empty after ABORT and after a client that disconnects in the middle of a body', async (t) => {
    if (skip || lacksRoot(t)) return;
    await counted(() => spoolAfterAbort());
  });

  async function spoolAfterAbort(): Promise<void> {
    const m = await milterFor({});
    writeFilter('alice', { kind: 'reject' });
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
    const sent = await sendTransaction(c1, ['alice']);
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
  }

  it('two hundred parallel connections each get their own verdict', async (t) => {
    if (skip || lacksRoot(t)) return;
    await counted(() => twoHundredConnections());
  });

  async function twoHundredConnections(): Promise<void> {
    await milterFor({});
    writeFilter('alice', { kind: 'accept' });
    writeFilter('bob', { kind: 'reject', text: '5.7.1 bob rejects' });
    const runs = Array.from({ length: 200 }, async (_, i) => {
      const c = await openClient();
      try {
        const who = i % 2 === 0 ? 'alice' : 'bob';
        const sent = await sendTransaction(c, [who], 500, `QPAR${i}`);
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
  }

  it('metrics scraped over HTTP match the messages sent', async (t) => {
    if (skip || lacksRoot(t)) return;
    if (tainted) return t.skip('a test failed on this serve (reported above): its counts are not known');
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
