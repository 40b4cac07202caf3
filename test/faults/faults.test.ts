// Fault injection under traffic (issue 16): the soak's rig and mix (a private
// Postfix, real users u0..u9 with the soak filter, a client that re-sends
// what was deferred, every copy counted at the mailboxes), with one fault
// injected while messages flow. Each case asserts that nothing was lost,
// duplicated, wrongly rejected or wrongly accepted, what the client was told
// while the fault lasted, and that the milter recovered.
// Heavy: run under `flock /tmp/pum-heavy.lock`.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MailboxCounter, metricValue, serviceIds, milterParts, runTraffic, SoakRig, spoolFiles } from '../../bench/soak/engine.js';
import { auxPort, canConnect, sleep, waitFor } from '../mta/harness/util.js';
import { lacksCommand } from '../support/require.js';
import { assertExact, AttemptLog, cannotRun, deferralTexts, quietlyRunnable, Supervisor, userProcessesAfter } from './support.js';

/** A quick mix: no filter that outlives the timeout, messages up to 64 KiB. */
const QUICK = { maxSize: 64 * 1024, without: ['o' as const] };
const ours = /^451 4\.3\.\d /;

describe('faults under traffic', () => {
  const rig = new SoakRig({ startMilter: false });
  before(async () => {
    if (quietlyRunnable()) await rig.start();
  });
  after(async () => {
    await rig.stop();
  });

  /** A fresh milter with this case's configuration. */
  const fresh = async (extra: Record<string, string | number | boolean> = {}) => {
    await rig.stopMilter();
    // each case answers for what it leaves behind, not for an earlier case's leftovers
    await rig.killUserProcesses();
    return rig.startMilter(extra);
  };
  /** What the runner/launcher case found left running (checked by the todo case after it). */
  let launcherLeftovers = '';

  it('the runner and the launcher SIGKILLed mid-run, 3 times each: 451 for the runs in flight, re-sent and delivered once, nothing left running', { timeout: 180_000 }, async (t) => {
    if (cannotRun(t)) return;
    await fresh();
    const sup = new Supervisor(rig);
    const log = new AttemptLog();
    const kills: string[] = [];
    let trafficDone = false;
    const killer = (async () => {
      for (let i = 0; i < 6 && !trafficDone; i++) {
        await sleep(700);
        // mid-run: wait for a filter to be running
        await waitFor('a filter run', async () => trafficDone || (await rig.userProcesses()) > 0, 30_000, 10);
        const m = rig.milter;
        if (!m?.alive()) continue;
        const parts = milterParts(m.pid);
        const which = i % 2 === 0 ? 'runner' : 'launcher';
        const pid = parts[which];
        if (pid === null) continue;
        process.kill(pid, 'SIGKILL');
        kills.push(which);
        // the milter exits 70 after a launcher loss (the supervisor restarts it); the runner is restarted inside
        if (which === 'launcher') await waitFor('the supervisor to restart the milter', () => rig.milter !== m && rig.milter?.alive(), 30_000);
      }
    })();
    const { sums } = await runTraffic(rig, { messages: 150, seed: 101, concurrency: 4, mix: QUICK, onAttempt: log.add });
    trafficDone = true;
    await killer;
    await sup.stop();
    t.diagnostic(`kills: ${kills.join(', ')}; milter exits: ${sup.exits.join(', ')}; deferrals ${sums.deferrals}: ${deferralTexts(log)}`);
    assertExact(sums, 'runner/launcher killed');
    assert.ok(kills.filter((k) => k === 'runner').length >= 2 && kills.filter((k) => k === 'launcher').length >= 2, `kills: ${kills.join(', ')}`);
    assert.ok(sup.exits.every((e) => e === 70), `a launcher loss ends the milter with 70 for its supervisor: ${sup.exits.join(', ')}`);
    const ourDeferrals = log.deferred().filter((d) => ours.test(d.text));
    assert.ok(ourDeferrals.length >= 1, `no 451 4.3.x while runs were killed: ${JSON.stringify(log.deferred().slice(0, 10))}`);
    assert.equal(spoolFiles(rig.spoolDir), 0, 'spool files left behind');
    launcherLeftovers = await userProcessesAfter(rig, 10_000);
  });

  it('no filter process survives its launcher being SIGKILLed', {
    // Runs and reports, but does not fail the suite: a known bug, not fixed yet (docs/reliability.md, "Found").
    todo: 'known bug: a double-forked child of a run outlives a SIGKILLed launcher (reparented to init)',
  }, (t) => {
    if (cannotRun(t)) return;
    assert.equal(launcherLeftovers, '', 'filter processes left behind after the launcher was killed');
  });

  it('the milter SIGKILLed and restarted 20 times under load: Postfix tempfails meanwhile, every message delivered once, no filter left running', { timeout: 240_000 }, async (t) => {
    if (cannotRun(t)) return;
    await fresh();
    const sup = new Supervisor(rig);
    const log = new AttemptLog();
    let kills = 0;
    let trafficDone = false;
    const killer = (async () => {
      while (kills < 20 && !trafficDone) {
        await sleep(700);
        const m = rig.milter;
        if (!m?.alive()) continue;
        m.kill('SIGKILL');
        kills++;
        await waitFor('the supervisor to restart the milter', () => trafficDone || (rig.milter !== m && rig.milter?.alive()), 30_000);
      }
    })();
    const { sums } = await runTraffic(rig, { messages: 300, seed: 102, concurrency: 4, mix: QUICK, onAttempt: log.add });
    trafficDone = true;
    await killer;
    await sup.stop();
    const texts = [...new Set(log.deferred().map((d) => d.text.replace(/soak: \S+/, 'soak: uN')))];
    t.diagnostic(`kills ${kills}, deferrals ${sums.deferrals}, replies while deferred: ${texts.join(' | ')}`);
    assertExact(sums, 'milter killed 20 times');
    assert.equal(kills, 20);
    assert.equal(sup.exits.filter((e) => e === 'SIGKILL').length, 20);
    assert.ok(log.deferred().every((d) => /^4\d\d /.test(d.text) || d.stage === 'connect'), 'every refusal while the milter was down was a 4xx');
    assert.equal(await userProcessesAfter(rig, 15_000), '', 'filter processes outlived the milter that started them');
  });

  it('the spool file system fills up mid-message and frees again: 451 4.3.x while full, internal_errors_total{reason="spool"}, then everything delivered once', { timeout: 180_000 }, async (t) => {
    if (cannotRun(t)) return;
    const mnt = path.join(path.dirname(rig.spoolDir), 'spool-tmpfs');
    mkdirSync(mnt, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m,mode=0755', 'pumtest-faults-spool', mnt]);
    t.after(() => {
      try {
        execFileSync('umount', ['-l', mnt]);
      } catch {
        // already gone
      }
    });
    const svc = serviceIds();
    chownSync(mnt, svc.uid, svc.gid);
    const spool = path.join(mnt, 'spool');
    await fresh({ 'spool.dir': spool });
    const filler = path.join(mnt, 'filler');
    const log = new AttemptLog();
    let fullFrom = 0;
    let fullTo = 0;
    let finished = 0;
    const fault = (async () => {
      await waitFor('20 messages through', () => finished >= 20, 120_000);
      // fill what is left: dd stops at ENOSPC (its non-zero exit is the point)
      try {
        execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=1M', 'count=64'], { stdio: 'ignore' });
      } catch {
        // full
      }
      fullFrom = Date.now();
      await sleep(6000);
      rmSync(filler, { force: true });
      fullTo = Date.now();
    })();
    const { sums } = await runTraffic(rig, {
      messages: 120,
      seed: 103,
      concurrency: 4,
      // large enough that a message does not fit the few bytes left
      mix: { ...QUICK, maxSize: 1024 * 1024 },
      onAttempt: log.add,
      every: 1,
      onProgress: (n) => {
        finished = n;
      },
    });
    await fault;
    const during = log.deferred(fullFrom, fullTo + 500);
    const metrics = await rig.metrics();
    t.diagnostic(`deferrals while full: ${during.length} (${[...new Set(during.map((d) => d.text))].slice(0, 4).join(' | ')}); internal spool errors ${metricValue(metrics, 'per_user_milter_internal_errors_total', 'reason="spool"')}`);
    assertExact(sums, 'spool full');
    assert.ok(during.some((d) => ours.test(d.text)), 'no 451 4.3.x while the spool was full');
    assert.ok(during.every((d) => /^4\d\d /.test(d.text)), 'something other than a 4xx while full');
    assert.ok(metricValue(metrics, 'per_user_milter_internal_errors_total', 'reason="spool"') > 0, 'internal_errors_total{reason="spool"} not counted');
    assert.equal(spoolFiles(spool), 0, 'spool files left behind');
    await rig.stopMilter();
  });

  it('the user directory fails (users.passwdFile unreadable): 451 4.3.0 at RCPT, internal_errors_total{reason="lookup"}, never "not local"; readable again: delivered once', { timeout: 180_000 }, async (t) => {
    if (cannotRun(t)) return;
    // root's own directory: the launcher trusts a passwd file (and the group
    // file beside it) only where nobody but root can write (docs/sandbox.md)
    const dir = mkdtempSync('/var/lib/pumtest-directory-');
    chmodSync(dir, 0o755);
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const passwd = path.join(dir, 'passwd');
    copyFileSync('/etc/passwd', passwd);
    chmodSync(passwd, 0o644);
    await fresh({ 'users.passwdFile': passwd });
    // the directory stops answering before the milter has looked anyone up (answers are cached for a minute)
    chmodSync(passwd, 0o000);
    const log = new AttemptLog();
    let brokenUntil = 0;
    const fault = (async () => {
      await sleep(8000);
      chmodSync(passwd, 0o644);
      brokenUntil = Date.now();
    })();
    const { sums } = await runTraffic(rig, { messages: 60, seed: 104, concurrency: 4, mix: QUICK, onAttempt: log.add });
    await fault;
    const during = log.deferred(0, brokenUntil);
    const metrics = await rig.metrics();
    t.diagnostic(`deferrals while the directory failed: ${during.length} (${[...new Set(during.map((d) => `${d.stage}: ${d.text}`))].slice(0, 3).join(' | ')})`);
    assertExact(sums, 'directory failing');
    assert.ok(during.some((d) => d.stage === 'rcpt' && ours.test(d.text)), 'no 451 4.3.x at RCPT while the directory failed');
    assert.ok(metricValue(metrics, 'per_user_milter_internal_errors_total', 'reason="lookup"') > 0, 'internal_errors_total{reason="lookup"} not counted');
    assert.ok(metricValue(metrics, 'per_user_milter_user_lookups_total', 'result="error"') > 0, 'user_lookups_total{result="error"} not counted');
    assert.equal(metricValue(metrics, 'per_user_milter_recipients_total', 'kind="nonlocal"'), 0, 'a local user was taken for not local');
  });

  it('the system user directory hangs (NSS: /etc/passwd a FIFO in the milter\'s mount namespace): 451 4.3.0 at RCPT after the lookup timeout, internal_errors_total{reason="lookup"}, never "not local"; answering again: delivered once', {
    timeout: 180_000,
    // Runs and reports, but does not fail the suite: it finds a bug not fixed yet (docs/reliability.md, "Found").
    todo: 'known bug: with NSS hanging, messages whose every recipient rejects were accepted unfiltered',
  }, async (t) => {
    if (cannotRun(t) || lacksCommand(t, 'nsenter', 'util-linux') || lacksCommand(t, 'unshare', 'util-linux')) return;
    await rig.stopMilter();
    // the milter (and the getent it runs) in a mount namespace of its own, so the rest of the machine keeps its NSS
    const m = await rig.startMilter({}, ['unshare', '-m', '--propagation', 'private', '--']);
    const fifo = path.join(path.dirname(rig.spoolDir), 'passwd.fifo');
    execFileSync('mkfifo', ['-m', '0644', fifo]);
    const ns = (...args: string[]) => execFileSync('nsenter', ['-t', String(m.pid), '-m', '--', ...args]);
    ns('mount', '--bind', fifo, '/etc/passwd');
    let hanging = true;
    t.after(() => {
      try {
        if (hanging) ns('umount', '-l', '/etc/passwd');
      } catch {
        // the milter and its namespace are gone
      }
      rmSync(fifo, { force: true });
    });
    const log = new AttemptLog();
    let answeredAgain = 0;
    const fault = (async () => {
      // long enough for lookups to run into their timeout (src/timeouts.ts USER_LOOKUP_TIMEOUT_MS)
      await sleep(16_000);
      assert.ok(m.alive(), `the milter died while NSS hung:\n${m.log().slice(-3000)}`);
      // lazily: getent processes still wait in open(); give any such reader the real file, then it is an ordinary file again
      ns('umount', '-l', '/etc/passwd');
      spawnSync('timeout', ['2', 'sh', '-c', `cat /etc/passwd > ${fifo}`]);
      hanging = false;
      answeredAgain = Date.now();
    })();
    const traffic = runTraffic(rig, { messages: 40, seed: 109, concurrency: 4, mix: QUICK, onAttempt: log.add, giveUpMs: 60_000 });
    await fault;
    const { sums } = await traffic;
    const during = log.deferred(0, answeredAgain);
    const metrics = await rig.metrics();
    t.diagnostic(`milter log while NSS hung:\n${m.log().split('\n').filter((l) => /action=accept|lookup|launcher|nonlocal|error/i.test(l)).slice(0, 25).join('\n')}`);
    t.diagnostic(`deferrals while NSS hung: ${during.length} (${[...new Set(during.map((d) => `${d.stage}: ${d.text}`))].slice(0, 3).join(' | ')})`);
    assertExact(sums, 'NSS hanging');
    assert.ok(during.some((d) => d.stage === 'rcpt' && ours.test(d.text)), 'no 451 4.3.x at RCPT while NSS hung');
    assert.ok(metricValue(metrics, 'per_user_milter_internal_errors_total', 'reason="lookup"') > 0, 'internal_errors_total{reason="lookup"} not counted');
    assert.equal(metricValue(metrics, 'per_user_milter_recipients_total', 'kind="nonlocal"'), 0, 'a local user was taken for not local');
    await rig.stopMilter();
  });

  it('a real spamd killed while two users\' filters use it: each user\'s own onError decides (tempfail / accept), everyone else unaffected; spamd back: delivered once', { timeout: 180_000 }, async (t) => {
    if (cannotRun(t) || lacksCommand(t, 'spamd', 'spamassassin') || lacksCommand(t, 'spamc', 'spamc')) return;
    await fresh();
    const port = await auxPort();
    const startSpamd = async (): Promise<ChildProcess> => {
      const p = spawn('spamd', ['--listen', `127.0.0.1:${port}`, '--allowed-ips', '127.0.0.1', '--max-children', '2', '--nouser-config', '--username', 'nobody', '--syslog', 'stderr'], {
        detached: true,
        stdio: 'ignore',
      });
      await waitFor('spamd to listen', () => canConnect({ port }), 120_000, 250);
      return p;
    };
    const stopSpamd = (p: ChildProcess) => {
      try {
        process.kill(-p.pid!, 'SIGKILL'); // the whole group: the parent and its children
      } catch {
        // gone
      }
    };
    let spamd = await startSpamd();
    t.after(() => stopSpamd(spamd));
    // u0 tempfails when the spam check is unavailable, u1 accepts then (spamc -x: no silent fallback)
    const check = `spamc -d 127.0.0.1 -p ${port} -c -x -t 20 >/dev/null\nrc=$?\n[ $rc -le 1 ] && exit $rc\n`;
    const saved = new Map<string, string>();
    for (const [short, onError] of [['u0', 'echo "4.7.1 spam check unavailable"; exit 75'], ['u1', 'exit 0']] as const) {
      const u = rig.users.get(short);
      saved.set(short, u.read('.user-milter') ?? '');
      u.setFilter(check + onError + '\n');
    }
    t.after(() => {
      for (const [short, body] of saved) rig.users.get(short).setFilter(body.replace(/^#!\/bin\/sh\n/, ''));
    });
    const { SmtpConnection } = await import('../../bench/soak/smtp-client.js');
    const sendOne = async (short: string, id: string) => {
      const opened = await SmtpConnection.open(rig.pf.port);
      assert.ok('conn' in opened, JSON.stringify(opened));
      const a = await opened.conn.send('friend@client.test', [rig.addr(short)], Buffer.from(`Subject: lunch\r\nX-Soak-Id: ${id}\r\n\r\nShall we meet for lunch on Thursday?\r\n`));
      opened.conn.close();
      return a.kind === 'broken' ? a.error : a.reply.text;
    };
    const counter = new MailboxCounter(rig.pf, rig.users);
    const traffic = runTraffic(rig, { messages: 80, seed: 110, concurrency: 3, mix: { ...QUICK, users: ['u2', 'u3', 'u4', 'u5', 'u6', 'u7', 'u8', 'u9'] }, counter });
    const up = [await sendOne('u0', 'x-up-u0'), await sendOne('u1', 'x-up-u1')];
    stopSpamd(spamd);
    await waitFor('spamd gone', async () => !(await canConnect({ port })), 10_000);
    const down = [await sendOne('u0', 'x-down-u0'), await sendOne('u1', 'x-down-u1')];
    spamd = await startSpamd();
    const again = await sendOne('u0', 'x-down-u0');
    const { sums } = await traffic;
    await rig.pf.settle(60_000);
    counter.harvest();
    const copies = (id: string, short: string) => counter.copies.get(id)?.get(short) ?? 0;
    t.diagnostic(`spamd up: ${up.join(' | ')}; killed: ${down.join(' | ')}; back: ${again}`);
    assertExact(sums, 'the other users while spamd died');
    assert.match(up[0]!, /^250 /);
    assert.match(up[1]!, /^250 /);
    assert.match(down[0]!, /^451 4\.7\.1 spam check unavailable/, 'u0 chose tempfail when spamd is gone');
    assert.match(down[1]!, /^250 /, 'u1 chose accept when spamd is gone');
    assert.match(again, /^250 /, 'u0\'s message after spamd came back');
    assert.deepEqual(
      ['x-up-u0/u0', 'x-up-u1/u1', 'x-down-u0/u0', 'x-down-u1/u1'].map((k) => copies(k.split('/')[0]!, k.split('/')[1]!)),
      [1, 1, 1, 1],
      'each message once in its mailbox',
    );
  });

  it('500 milter connections opened at once and dropped: descriptors, spool and memory back to baseline, mail still flows', { timeout: 180_000 }, async (t) => {
    if (cannotRun(t)) return;
    const m = await fresh();
    const warm = await runTraffic(rig, { messages: 20, seed: 105, concurrency: 4, mix: QUICK });
    assertExact(warm.sums, 'warm-up');
    const fdsOf = (pid: number) => Number(execFileSync('sh', ['-c', `ls /proc/${pid}/fd | wc -l`], { encoding: 'utf8' }));
    const base = { fds: fdsOf(m.pid), rss: (await m.memory()).rss };
    const sockPath = rig.listen.replace(/^unix:/, '');
    const socks = await Promise.all(
      Array.from({ length: 500 }, (_, i) =>
        new Promise<net.Socket>((resolve) => {
          const s = net.connect(sockPath);
          s.on('error', () => undefined);
          s.once('connect', () => {
            // half of them start a negotiation and stop in the middle of the frame
            if (i % 2 === 0) s.write(Buffer.from([0, 0, 0, 13, 0x4f, 0, 0, 0, 6]));
            resolve(s);
          });
          s.once('error', () => resolve(s));
        }),
      ),
    );
    await sleep(500);
    const peakFds = fdsOf(m.pid);
    for (const s of socks) s.destroy();
    const back = await waitFor('descriptors back to baseline', () => fdsOf(m.pid) <= base.fds + 2, 20_000).then(() => fdsOf(m.pid));
    const rss = (await m.memory()).rss;
    t.diagnostic(`milter fds ${base.fds} -> ${peakFds} with 500 open -> ${back}; RSS ${(base.rss / 1048576).toFixed(1)} -> ${(rss / 1048576).toFixed(1)} MB`);
    assert.ok(peakFds > base.fds + 100, `the 500 connections did not reach the milter (fds ${peakFds})`);
    assert.ok(m.alive(), 'the milter died');
    assert.equal(spoolFiles(rig.spoolDir), 0);
    assert.ok(rss < base.rss + 48 * 1048576, `RSS grew ${((rss - base.rss) / 1048576).toFixed(1)} MB`);
    const afterStorm = await runTraffic(rig, { messages: 30, seed: 106, concurrency: 4, mix: QUICK });
    assertExact(afterStorm.sums, 'after the storm');
  });

  it('configuration reloaded (SIGHUP) 100 times under load: no connection dropped, no tempfail of ours, every message delivered once', { timeout: 180_000 }, async (t) => {
    if (cannotRun(t)) return;
    const cfg = path.join(path.dirname(rig.spoolDir), 'reload.json');
    const write = (n: number) => writeFileSync(cfg, JSON.stringify({ filter: { maxPerUser: n, timeout: 3000 }, policy: { tempfailReply: `451 4.7.1 deferred (${n})` } }), { mode: 0o644 });
    write(2);
    const m = await fresh({ config: cfg });
    const log = new AttemptLog();
    let reloads = 0;
    let trafficDone = false;
    const hup = (async () => {
      while (reloads < 100 && !trafficDone) {
        write(2 + (reloads % 2));
        m.kill('SIGHUP');
        reloads++;
        await sleep(60);
      }
    })();
    const mark = m.logMark();
    const { sums } = await runTraffic(rig, { messages: 150, seed: 107, concurrency: 4, mix: QUICK, onAttempt: log.add });
    trafficDone = true;
    await hup;
    const reloaded = (m.logSince(mark).match(/configuration reloaded/g) ?? []).length;
    t.diagnostic(`reloads sent ${reloads}, logged ${reloaded}, deferrals ${sums.deferrals}`);
    assertExact(sums, 'reloads');
    assert.equal(reloads, 100, 'the traffic ended before 100 reloads');
    assert.ok(m.alive(), 'the milter died');
    assert.ok(reloaded >= 50, `only ${reloaded} reloads logged`);
    assert.equal(log.broken(), 0, 'a connection broke');
    // the only deferrals are the filters' own second-try requests
    const foreign = log.deferred().filter((d) => !/soak: u\d wants a second try|deferred \(\d\)/.test(d.text));
    assert.deepEqual(foreign, [], 'tempfails that are not the filters\' own');
  });

  it('a memory hog, a fork bomb and an output flood at once for three users: the other users\' verdicts unchanged and on time', { timeout: 180_000 }, async (t) => {
    if (cannotRun(t)) return;
    await fresh({ 'filter.limits.memoryBytes': 256 * 1048576, 'filter.limits.processes': 32 });
    const hostile: Record<string, string> = {
      u0: 'cat >/dev/null\nexec awk \'BEGIN { s = "x"; while (1) s = s s }\'\n',
      u1: 'cat >/dev/null\nb() { b | b & }\nb\nsleep 3600\n',
      u2: 'cat >/dev/null\nexec yes "flooding the milter with output"\n',
    };
    const saved = new Map<string, string>();
    for (const [short, body] of Object.entries(hostile)) {
      const u = rig.users.get(short);
      saved.set(short, u.read('.user-milter') ?? '');
      u.setFilter(body);
    }
    t.after(() => {
      for (const [short, body] of saved) rig.users.get(short).setFilter(body.replace(/^#!\/bin\/sh\n/, ''));
    });
    // the hostile users get a steady stream of their own mail
    let stop = false;
    const { SmtpConnection } = await import('../../bench/soak/smtp-client.js');
    const hostileReplies: string[] = [];
    const pest = (async () => {
      let i = 0;
      while (!stop) {
        const opened = await SmtpConnection.open(rig.pf.port);
        if (!('conn' in opened)) continue;
        const to = ['u0', 'u1', 'u2'][i++ % 3]!;
        const a = await opened.conn.send('pest@client.test', [rig.addr(to)], Buffer.from(`Subject: pest ${i}\r\nX-Pest-Id: pest-${i}\r\n\r\nhostile\r\n`));
        hostileReplies.push(a.kind === 'accepted' || a.kind === 'rejected' || a.kind === 'deferred' ? a.reply.text.replace(/queued as \w+/, 'queued as QID') : a.kind);
        opened.conn.close();
      }
    })();
    await sleep(1500);
    const others = ['u3', 'u4', 'u5', 'u6', 'u7', 'u8', 'u9'];
    const { sums, records } = await runTraffic(rig, { messages: 80, seed: 108, concurrency: 3, mix: { ...QUICK, users: others } });
    stop = true;
    await pest;
    const waits = records.map((r) => (r.finalAt - r.firstAt) / 1000).sort((a, b) => a - b);
    const p95 = waits[Math.floor(waits.length * 0.95)] ?? 0;
    const worst = waits[waits.length - 1] ?? 0;
    t.diagnostic(`others: p95 ${p95.toFixed(2)} s, worst ${worst.toFixed(2)} s (first try to final answer, re-sends included); hostile users' replies: ${[...new Set(hostileReplies)].join(' | ')}`);
    assertExact(sums, 'hostile neighbours');
    assert.ok(hostileReplies.length >= 3, 'the hostile filters did not run');
    // they did hit their limits: the hog dies (error), the bomb and the flood are cut off at filter.timeout
    const metrics = await rig.metrics();
    assert.ok(metricValue(metrics, 'per_user_milter_filter_runs_total', 'outcome="timeout"') > 0, 'no run timed out');
    assert.ok(metricValue(metrics, 'per_user_milter_filter_runs_total', 'outcome="error"') > 0, 'the memory hog did not fail');
    // "on time": well inside the MTA's patience; the hostile runs each take the whole filter.timeout
    assert.ok(worst < 20, `another user's message took ${worst.toFixed(1)} s`);
    assert.equal(await userProcessesAfter(rig, 15_000), '', 'the fork bomb or the hog left processes behind');
  });
});
