// Our own failures through a real `per-user-milter serve` (docs/reference.md
// §5.6, §6): each one is answered 451 4.3.x by its code, leaves its
// per-message log line with the reason and moves internal_errors_total; none
// becomes a user's outcome (filter_runs_total), none is an accept or a reject,
// and the milter goes on serving. The real runner process, real user switch,
// real spool directory (a small tmpfs for the full disk). Needs root.
//
// Ranges: uids 64001-64009, ports 26401-26402 (see ./support.ts).
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { errorReplyLine } from '../../../src/errors.js';
import { childrenOf, isLauncher } from '../../support/procs.js';
import { startMilter, type Milter } from '../../mta/harness/milter.js';
import { lacksCommand, lacksRoot } from '../../support/require.js';
import { waitUntil } from '../../support/wait.js';
import { events, makeAppWorld, metricValue, openClient, processesOf, scrape, sendMessage, spoolFiles, type AppWorld } from './support.js';

const MILTER_PORT = 26401;
const METRICS_PORT = 26402;
const USERS = { alice: 64001, bob: 64002 };
const OUTCOMES = ['accept', 'reject', 'tempfail', 'nofilter', 'unsafe', 'error', 'timeout'];

let w: AppWorld | undefined;
let milter: Milter | undefined;

function needs(t: TestContext): boolean {
  return lacksRoot(t) || lacksCommand(t, 'setpriv', 'util-linux') || lacksCommand(t, 'prlimit', 'util-linux');
}

async function serve(config: Record<string, string | number | boolean> = {}): Promise<Milter> {
  assert.ok(w);
  // One serve at a time: a test that failed half-way left its own running.
  await milter?.stop();
  milter = undefined;
  milter = await startMilter({
    listen: `inet:${MILTER_PORT}@127.0.0.1`,
    config: {
      'users.passwdFile': w.passwd,
      'users.maxUid': 70000,
      'metrics.listen': `127.0.0.1:${METRICS_PORT}`,
      'log.format': 'json',
      'pool.threads': 1,
      ...config,
    },
  });
  return milter;
}

/** The filter_runs_total samples that are not 0. */
function outcomesCounted(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const o of OUTCOMES) {
    const n = metricValue(text, 'per_user_milter_filter_runs_total', `outcome="${o}"`);
    if (n !== 0) out[o] = n;
  }
  return out;
}

/** messages_total and message_duration_seconds_count agree for every action (one answer, one observation). */
function assertAnswersCounted(text: string, want: Record<string, number>): void {
  for (const action of ['accept', 'reject', 'tempfail']) {
    assert.equal(metricValue(text, 'per_user_milter_messages_total', `action="${action}"`), want[action] ?? 0, `messages_total{action=${action}}`);
    assert.equal(metricValue(text, 'per_user_milter_message_duration_seconds_count', `action="${action}"`), want[action] ?? 0, `message_duration_seconds_count{action=${action}}`);
  }
}

function messageLine(m: Milter, queueId: string): Record<string, unknown> {
  const lines = events(m.log(), 'message').filter((l) => l.queueId === queueId);
  assert.equal(lines.length, 1, `one message line for ${queueId}\n${m.log().slice(-3000)}`);
  return lines[0] as Record<string, unknown>;
}

describe('our own failures through a running serve: 451 4.3.x, a log line, a counter', { concurrency: false }, () => {
  before(() => {
    if (process.getuid?.() === 0) w = makeAppWorld('fail', USERS);
  });
  after(async () => {
    await milter?.stop();
    w?.cleanup();
  });

  it('the spool file removed between end of message and the run: 451 4.3.0 through the real runner, reason spool, no outcome counted', async (t) => {
    if (needs(t)) return;
    assert.ok(w);
    // maxPerUser 1: the second message to alice waits in the milter's queue
    // while the first runs, its spool file closed: the window in which it goes.
    const m = await serve({ 'filter.maxPerUser': 1 });
    w.writeFilter('alice', 'sleep 4; exit 0');
    const c1 = await openClient(MILTER_PORT);
    const c2 = await openClient(MILTER_PORT);
    try {
      const first = sendMessage(c1, ['alice'], { queueId: 'QFIRST' });
      await waitUntil("alice's first filter run", () => processesOf(USERS.alice).length > 0);
      const before = spoolFiles(m.log());
      assert.equal(before.length, 1);
      const second = sendMessage(c2, ['alice'], { queueId: 'QGONE' });
      // Waiting for alice's turn: the job is queued, its spool file complete.
      for (let i = 0; i < 200 && metricValue(await scrape(METRICS_PORT), 'per_user_milter_pool_queue_size') !== 1; i++) await new Promise((r) => setTimeout(r, 25));
      assert.equal(metricValue(await scrape(METRICS_PORT), 'per_user_milter_pool_queue_size'), 1, 'the second run waits');
      const added = spoolFiles(m.log()).filter((f) => !before.includes(f));
      assert.equal(added.length, 1);
      const dir = /"spoolDir":"([^"]+)"/.exec(m.log())?.[1] as string;
      fs.rmSync(path.join(dir, added[0] as string));

      assert.equal((await first).final, 'accept');
      assert.equal((await second).final, errorReplyLine('PUM_ERR_SPOOL_UNREADABLE'));
      assert.match(errorReplyLine('PUM_ERR_SPOOL_UNREADABLE'), /^451 4\.3\.0 /);
    } finally {
      await Promise.allSettled([c1.quit(), c2.quit()]);
    }
    const line = messageLine(m, 'QGONE');
    assert.equal(line.action, 'tempfail');
    assert.equal(line.code, 'PUM_ERR_SPOOL_UNREADABLE');
    assert.equal(line.reason, 'spool');
    assert.match(String(line.error), /cannot open spool file .*ENOENT/);
    assert.deepEqual(line.failed, ['alice']);
    assert.deepEqual(line.users, []);
    assert.equal(line.from, 'sender@client.test');
    const text = await scrape(METRICS_PORT);
    assert.equal(metricValue(text, 'per_user_milter_internal_errors_total', 'reason="spool"'), 1);
    assert.deepEqual(outcomesCounted(text), { accept: 1 }, 'only the first message counted an outcome');
    assertAnswersCounted(text, { accept: 1, tempfail: 1 });
    assert.deepEqual(spoolFiles(m.log()), []);
    assert.equal(await m.stop(), 0);
    milter = undefined;
  });

  it('a full spool (64 KiB tmpfs): 451 4.3.1 with its line and counter, no file left, and the next small message is served normally', async (t) => {
    if (needs(t) || lacksCommand(t, 'mount', 'mount')) return;
    assert.ok(w);
    const spoolDir = path.join(w.root, 'small-spool');
    fs.mkdirSync(spoolDir, { mode: 0o700 });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'pumfc-spool', spoolDir]);
    try {
      const m = await serve({ 'spool.dir': spoolDir });
      w.writeFilter('alice', 'exit 0');
      const c = await openClient(MILTER_PORT);
      try {
        const big = await sendMessage(c, ['alice'], { bodyBytes: 256 * 1024, queueId: 'QFULL' });
        assert.equal(big.final, errorReplyLine('PUM_ERR_SPOOL_WRITE'));
        assert.match(big.final, /^451 4\.3\.1 /);
        // The same connection goes on: a small message is filtered and accepted.
        const small = await sendMessage(c, ['alice'], { bodyBytes: 1000, queueId: 'QSMALL' });
        assert.equal(small.final, 'accept');
      } finally {
        await c.quit();
      }
      const line = messageLine(m, 'QFULL');
      assert.equal(line.action, 'tempfail');
      assert.equal(line.code, 'PUM_ERR_SPOOL_WRITE');
      assert.equal(line.reason, 'spool');
      assert.match(String(line.error), /ENOSPC/);
      assert.equal(messageLine(m, 'QSMALL').action, 'accept');
      assert.doesNotMatch(m.log(), /handler failed; answering tempfail/, 'answered by the application, not the engine fallback');
      const text = await scrape(METRICS_PORT);
      assert.equal(metricValue(text, 'per_user_milter_internal_errors_total', 'reason="spool"'), 1);
      assert.deepEqual(outcomesCounted(text), { accept: 1 });
      assertAnswersCounted(text, { accept: 1, tempfail: 1 });
      assert.deepEqual(fs.readdirSync(spoolDir).filter((n) => n !== 'launcher.sock'), [], 'no spool file left');
      assert.equal(await m.stop(), 0);
      milter = undefined;
    } finally {
      await milter?.stop();
      milter = undefined;
      execFileSync('umount', [spoolDir]);
    }
  });

  it('a user lookup that fails: 451 4.3.0 at RCPT with reason lookup, never a 250 as "not local"; a cached user goes on, and the next try asks again', async (t) => {
    if (needs(t)) return;
    assert.ok(w);
    const m = await serve();
    w.writeFilter('alice', 'exit 0');
    w.writeFilter('bob', 'exit 0');
    const c = await openClient(MILTER_PORT);
    try {
      assert.equal((await sendMessage(c, ['alice'], { queueId: 'QWARM' })).final, 'accept'); // alice is now cached
      // Unreadable for the milter's account (and changed, so its resolver
      // reads it again), still readable for the launcher (root, the file's
      // owner), which looks every account up itself by uid: a file that is
      // gone would fail alice's check there too (our failure, 451 as well).
      const passwd = w.passwd;
      const touch = (ms: number): void => fs.utimesSync(passwd, new Date(ms), new Date(ms));
      fs.chmodSync(w.passwd, 0o600);
      touch(Date.now() + 5000);
      let sent;
      try {
        sent = await sendMessage(c, ['bob', 'alice'], { queueId: 'QLOOKUP' });
      } finally {
        fs.chmodSync(w.passwd, 0o644);
        touch(Date.now() + 10_000);
      }
      assert.deepEqual(sent.rcptReplies, [errorReplyLine('PUM_ERR_USER_LOOKUP'), 'continue']);
      assert.match(sent.rcptReplies[0] as string, /^451 4\.3\.0 /);
      assert.equal(sent.final, 'accept', 'the message goes on with alice');
      // The failure was not cached: with the file back, bob resolves.
      const again = await sendMessage(c, ['bob'], { queueId: 'QBACK' });
      assert.deepEqual(again.rcptReplies, ['continue']);
      assert.equal(again.final, 'accept');
    } finally {
      await c.quit();
    }
    const rcptLines = events(m.log(), 'recipient');
    assert.equal(rcptLines.length, 1);
    const r = rcptLines[0] as Record<string, unknown>;
    assert.equal(r.queueId, 'QLOOKUP');
    assert.equal(r.rcpt, `<bob@example.test>`);
    assert.equal(r.action, 'tempfail');
    assert.equal(r.code, 'PUM_ERR_USER_LOOKUP');
    assert.equal(r.reason, 'lookup');
    assert.match(String(r.error), /EACCES/);
    const text = await scrape(METRICS_PORT);
    assert.equal(metricValue(text, 'per_user_milter_internal_errors_total', 'reason="lookup"'), 1);
    assert.equal(metricValue(text, 'per_user_milter_user_lookups_total', 'result="error"'), 1);
    assert.equal(metricValue(text, 'per_user_milter_user_lookups_total', 'result="found"'), 2, 'alice once (then cached), bob once');
    assert.equal(metricValue(text, 'per_user_milter_recipients_total', 'kind="nonlocal"'), 0, 'bob never became a non-local recipient');
    assert.equal(metricValue(text, 'per_user_milter_recipients_total', 'kind="local"'), 3);
    assertAnswersCounted(text, { accept: 3 });
    assert.equal(await m.stop(), 0);
    milter = undefined;
  });

  it('the runner process killed mid-run: 451 4.3.0, reason runner, no outcome counted; the next message gets a new runner', async (t) => {
    if (needs(t)) return;
    assert.ok(w);
    const m = await serve({ 'filter.timeout': 60_000 });
    w.writeFilter('alice', 'exec sleep 60');
    w.writeFilter('bob', 'exit 1');
    const c = await openClient(MILTER_PORT);
    try {
      const sending = sendMessage(c, ['alice'], { queueId: 'QKILLED' });
      await waitUntil("alice's filter", () => processesOf(USERS.alice).length > 0);
      // serve's children: the launcher and the filter runner process.
      const runners = childrenOf(m.pid).filter((p) => !isLauncher(p));
      assert.equal(runners.length, 1, 'one filter runner process');
      process.kill(runners[0] as number, 'SIGKILL');
      assert.equal((await sending).final, errorReplyLine('PUM_ERR_RUNNER_GONE'));
      assert.match(errorReplyLine('PUM_ERR_RUNNER_GONE'), /^451 4\.3\.0 /);
      const next = await sendMessage(c, ['bob'], { queueId: 'QNEXT' });
      assert.equal(next.final, '550 5.7.1 Message rejected by its recipients');
      const now = childrenOf(m.pid).filter((p) => !isLauncher(p));
      assert.equal(now.length, 1);
      assert.notEqual(now[0], runners[0], 'a new runner');
    } finally {
      await c.quit();
      // The killed runner's connections closed: the launcher ended its run; make sure.
      await waitUntil('the orphaned filter to end', () => processesOf(USERS.alice).length === 0, 5000).catch(() => undefined);
      for (const pid of processesOf(USERS.alice)) process.kill(pid, 'SIGKILL');
    }
    const line = messageLine(m, 'QKILLED');
    assert.equal(line.action, 'tempfail');
    assert.equal(line.code, 'PUM_ERR_RUNNER_GONE');
    assert.equal(line.reason, 'runner');
    assert.match(String(line.error), /killed by SIGKILL/);
    assert.deepEqual(line.failed, ['alice']);
    assert.match(m.log(), /filter runner process killed by SIGKILL; its jobs are tempfailed/);
    const text = await scrape(METRICS_PORT);
    assert.equal(metricValue(text, 'per_user_milter_internal_errors_total', 'reason="runner"'), 1);
    assert.deepEqual(outcomesCounted(text), { reject: 1 }, "only bob's run counted an outcome");
    assertAnswersCounted(text, { reject: 1, tempfail: 1 });
    assert.deepEqual(spoolFiles(m.log()), []);
    assert.equal(await m.stop(), 0);
    milter = undefined;
  });
});
