// Sharing the runner fairly, through a real `per-user-milter serve`
// (docs/reference.md §3 filter.maxPerUser, pool.maxQueue): one user's slow
// filter holds at most maxPerUser runs, never another user's mail; a message
// is never refused for having many local recipients; pool.maxQueue refuses
// *new* messages while runs wait, visibly (451 4.3.2, reason pool_full).
// Needs root: filters run as passwd-file users.
//
// Ranges: uids 64011-64019 and 65000-66999 (the fan-out), ports 26411-26412 (see ./support.ts).
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { errorReplyLine } from '../../../src/errors.js';
import { startMilter, type Milter } from '../../mta/harness/milter.js';
import { lacksCommand, lacksRoot } from '../../support/require.js';
import { events, killUid, makeAppWorld, metricValue, openClient, scrape, sendMessage, spoolFiles, type AppWorld } from './support.js';

const MILTER_PORT = 26411;
const METRICS_PORT = 26412;
const USERS = { alice: 64011, bob: 64012 };
const FANOUT = 2000;
const FANOUT_UID = 65000;
/** How long alice's slow filter takes; the assertions compare against the measured run times, not this. */
const SLOW_SECONDS = 4;

let w: AppWorld | undefined;
let milter: Milter | undefined;

function needs(t: TestContext): boolean {
  return lacksRoot(t) || lacksCommand(t, 'setpriv', 'util-linux') || lacksCommand(t, 'prlimit', 'util-linux') || lacksCommand(t, 'flock', 'util-linux');
}

async function serve(config: Record<string, string | number | boolean>, passwd?: string): Promise<Milter> {
  assert.ok(w);
  // One serve at a time: a test that failed half-way left its own running.
  await milter?.stop();
  milter = undefined;
  milter = await startMilter({
    listen: `inet:${MILTER_PORT}@127.0.0.1`,
    config: {
      'users.passwdFile': passwd ?? w.passwd,
      'users.maxUid': 70000,
      'metrics.listen': `127.0.0.1:${METRICS_PORT}`,
      'log.format': 'json',
      ...config,
    },
  });
  return milter;
}

async function stop(): Promise<void> {
  const m = milter;
  milter = undefined;
  if (m) assert.equal(await m.stop(), 0, 'serve exits 0 on SIGTERM');
}

/**
 * alice's filter: counts the runs of it in flight in ~/running (under flock),
 * appends each new count to ~/counts, sleeps, and accepts.
 */
function slowCountingFilter(seconds: number): string {
  return [
    'exec 9>"$HOME/lock"',
    'flock 9; n=$(( $(cat "$HOME/running" 2>/dev/null || echo 0) + 1 )); echo $n >"$HOME/running"; echo $n >>"$HOME/counts"; flock -u 9',
    `sleep ${seconds}`,
    'flock 9; echo $(( $(cat "$HOME/running") - 1 )) >"$HOME/running"; flock -u 9',
    'exit 0',
  ].join('\n');
}

async function untilQueued(n: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (metricValue(await scrape(METRICS_PORT), 'per_user_milter_pool_queue_size') === n) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`pool_queue_size never reached ${n}`);
}

function runMs(m: Milter, queueId: string): number {
  const line = events(m.log(), 'message').find((l) => l.queueId === queueId);
  const users = line?.users as Array<{ ms: number }> | undefined;
  assert.ok(users?.[0], `a message line with a run for ${queueId}`);
  return users[0].ms;
}

describe('fairness and fan-out through a running serve', { concurrency: false }, () => {
  before(() => {
    if (process.getuid?.() === 0) w = makeAppWorld('fair', USERS);
  });
  after(async () => {
    await milter?.stop();
    w?.cleanup();
  });

  it('four slow messages to one user hold two runs (maxPerUser 2); another user\'s message is answered without waiting for them', async (t) => {
    if (needs(t)) return;
    assert.ok(w);
    // One thread: 4 run slots, as many as alice's messages. Without a per-user
    // limit her four runs would take every slot and bob would wait a whole run.
    const m = await serve({ 'pool.threads': 1, 'filter.maxPerUser': 2 });
    w.writeFilter('alice', slowCountingFilter(SLOW_SECONDS));
    w.writeFilter('bob', 'exit 0');
    const clients = await Promise.all([0, 1, 2, 3].map(() => openClient(MILTER_PORT, 30_000)));
    const bobClient = await openClient(MILTER_PORT);
    try {
      const aliceAnswered: number[] = [];
      const slow = clients.map((c, i) =>
        sendMessage(c, ['alice'], { queueId: `QSLOW${i}` }).then((s) => {
          aliceAnswered.push(performance.now());
          return s;
        }),
      );
      // Two of alice's runs go, two wait for her turn.
      await untilQueued(2);
      const bobSent = performance.now();
      const bob = await sendMessage(bobClient, ['bob'], { queueId: 'QFAST' });
      const bobAnswered = performance.now();
      assert.equal(bob.final, 'accept');
      for (const s of await Promise.all(slow)) assert.equal(s.final, 'accept');

      const aliceRun = Math.min(...[0, 1, 2, 3].map((i) => runMs(m, `QSLOW${i}`)));
      assert.ok(aliceRun >= SLOW_SECONDS * 1000 * 0.9, `alice's runs took their time (${aliceRun} ms)`);
      assert.ok(bobAnswered < Math.min(...aliceAnswered), 'bob is answered before any of alice\'s messages');
      assert.ok(bobAnswered - bobSent < aliceRun / 2, `bob waited ${Math.round(bobAnswered - bobSent)} ms, alice's run takes ${aliceRun} ms`);
      aliceAnswered.sort((a, b) => a - b);
      assert.ok((aliceAnswered[2] as number) - (aliceAnswered[1] as number) > aliceRun / 2, "alice's third and fourth runs waited for her first two");

      const counts = fs.readFileSync(path.join(w.homeOf('alice'), 'counts'), 'utf8').trim().split('\n').map(Number);
      assert.equal(counts.length, 4, 'four runs');
      assert.equal(Math.max(...counts), 2, `never more than 2 of alice's runs at once: ${counts.join(' ')}`);
      const text = await scrape(METRICS_PORT);
      assert.equal(metricValue(text, 'per_user_milter_filter_runs_total', 'outcome="accept"'), 5);
      assert.equal(metricValue(text, 'per_user_milter_internal_errors_total', 'reason="pool_full"'), 0);
    } finally {
      await Promise.allSettled([...clients, bobClient].map((c) => c.quit()));
      killUid(USERS.alice);
    }
    await stop();
  });

  it('pool.maxQueue refuses a new message while runs wait: 451 4.3.2, reason pool_full; admitted messages are all answered', async (t) => {
    if (needs(t)) return;
    assert.ok(w);
    fs.rmSync(path.join(w.homeOf('alice'), 'counts'), { force: true });
    const m = await serve({ 'pool.threads': 1, 'pool.maxQueue': 0, 'filter.maxPerUser': 1 });
    w.writeFilter('alice', `sleep ${SLOW_SECONDS}; exit 0`);
    w.writeFilter('bob', 'exit 0');
    const [c1, c2, c3] = await Promise.all([0, 1, 2].map(() => openClient(MILTER_PORT, 30_000)));
    try {
      const first = sendMessage(c1!, ['alice'], { queueId: 'QRUN' });
      // Nothing waits yet: the second message is admitted and waits for alice's turn.
      const second = sendMessage(c2!, ['alice'], { queueId: 'QWAIT' });
      await untilQueued(1);
      // One run waits, pool.maxQueue is 0: a new message is refused at once.
      const refused = await sendMessage(c3!, ['bob'], { queueId: 'QREFUSED' });
      assert.equal(refused.final, errorReplyLine('PUM_ERR_POOL_FULL'));
      assert.match(refused.final, /^451 4\.3\.2 /);
      assert.equal((await first).final, 'accept');
      assert.equal((await second).final, 'accept');
      // Nothing waits any more: the same message now goes through.
      assert.equal((await sendMessage(c3!, ['bob'], { queueId: 'QRETRY' })).final, 'accept');
    } finally {
      await Promise.allSettled([c1, c2, c3].map((c) => c?.quit()));
      killUid(USERS.alice);
    }
    const line = events(m.log(), 'message').find((l) => l.queueId === 'QREFUSED');
    assert.equal(line?.action, 'tempfail');
    assert.equal(line?.code, 'PUM_ERR_POOL_FULL');
    assert.equal(line?.reason, 'pool_full');
    assert.deepEqual(line?.failed, ['bob']);
    const text = await scrape(METRICS_PORT);
    assert.equal(metricValue(text, 'per_user_milter_internal_errors_total', 'reason="pool_full"'), 1);
    assert.equal(metricValue(text, 'per_user_milter_messages_total', 'action="tempfail"'), 1);
    assert.equal(metricValue(text, 'per_user_milter_filter_runs_total', 'outcome="accept"'), 3, 'the refused message ran nothing');
    assert.deepEqual(spoolFiles(m.log()), []);
    await stop();
  });

  it(`a message to ${FANOUT} filtered local users is answered (accept) with pool.maxQueue=0`, async (t) => {
    if (needs(t)) return;
    assert.ok(w);
    // Every user shares one home, root-owned, with one root-owned filter in it
    // (a filter owned by root is safe for any user).
    const home = path.join(w.root, 'fan-home');
    fs.mkdirSync(home, { mode: 0o755 });
    fs.writeFileSync(path.join(home, '.user-milter'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const names = Array.from({ length: FANOUT }, (_, i) => `fan${String(i).padStart(4, '0')}`);
    const passwd = path.join(w.root, 'fan-passwd');
    fs.writeFileSync(passwd, names.map((n, i) => `${n}:x:${FANOUT_UID + i}:${FANOUT_UID + i}::${home}:/bin/sh`).join('\n') + '\n');
    const m = await serve({ 'pool.threads': 2, 'pool.maxQueue': 0, 'filter.timeout': 20_000 }, passwd);
    const c = await openClient(MILTER_PORT, 60_000);
    try {
      const sent = await sendMessage(c, names, { queueId: 'QFANOUT' });
      assert.ok(sent.rcptReplies.every((r) => r === 'continue'));
      assert.equal(sent.final, 'accept', m.log().slice(-2000));
    } finally {
      await c.quit();
    }
    const line = events(m.log(), 'message').find((l) => l.queueId === 'QFANOUT');
    assert.equal(line?.action, 'accept');
    assert.equal((line?.users as unknown[]).length, FANOUT);
    const text = await scrape(METRICS_PORT);
    assert.equal(metricValue(text, 'per_user_milter_filter_runs_total', 'outcome="accept"'), FANOUT);
    assert.equal(metricValue(text, 'per_user_milter_internal_errors_total', 'reason="pool_full"'), 0);
    assert.equal(metricValue(text, 'per_user_milter_pool_queue_size'), 0);
    await stop();
  });
});
