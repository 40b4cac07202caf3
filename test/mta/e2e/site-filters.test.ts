// The site default filter (filter.default, docs/reference.md §4) with the
// examples shipped in deploy/filters/, each against the real tool from
// Debian's packages, through a real Postfix: the example runs as each
// recipient user for users without a ~/.user-milter of their own, with that
// user's own data (~/.blocked, ~/.bogofilter, ~/.spamassassin/user_prefs).
//
// Ranges: spamd listens on a port in 25300-25399 (auxPort); the installed
// copies of the examples live in /var/lib/pumtest-sitefilter-* (root-owned,
// as filter.default requires), removed at the end.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { auxPort, canConnect, filters, repoRoot, runOk, waitFor, type TestUser } from '../harness/index.js';
import { lacksCommand } from '../../support/require.js';
import { Rig, cannotRun, quietlyRunnable } from './support.js';

const USERS = ['alice', 'bob', 'carol'] as const;
const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';
const SPAMMY = 'Buy cheap pills now, limited offer, click here, casino lottery winner';
const HAMMY = 'Here are the notes from our project meeting on Tuesday about the release';

/** Installs deploy/filters/NAME where filter.default may point (root-owned, 0755), with `edit` applied to its text. */
function install(dir: string, name: string, edit: (text: string) => string = (t) => t): string {
  const file = path.join(dir, name);
  copyFileSync(path.join(repoRoot, 'deploy/filters', name), file);
  writeFileSync(file, edit(readFileSync(file, 'utf8')));
  chmodSync(file, 0o755);
  return file;
}

/** Writes a file in the user's home, owned by the user. */
function writeAs(u: TestUser, rel: string, text: string): void {
  const file = u.file(rel);
  mkdirSync(path.dirname(file), { recursive: true });
  chownSync(path.dirname(file), u.uid, u.gid);
  writeFileSync(file, text);
  chownSync(file, u.uid, u.gid);
}

/** Runs a command as the user (their uid, gid and groups), with their HOME. */
async function asUser(u: TestUser, cmd: string[], input: string): Promise<void> {
  await runOk('setpriv', [`--reuid=${u.uid}`, `--regid=${u.gid}`, '--init-groups', 'env', `HOME=${u.home}`, ...cmd], { input });
}

describe('postfix: filter.default with the deploy/filters examples', () => {
  const rig = new Rig('postfix', { users: USERS });
  let dir = '';
  before(async () => {
    if (!quietlyRunnable()) return;
    await rig.start();
    dir = mkdtempSync('/var/lib/pumtest-sitefilter-');
    chmodSync(dir, 0o755);
  });
  after(async () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    await rig.stop();
  });

  const deliver = async (to: string, body: string) => {
    const r = await rig.send({ to: [rig.addr(to)], body });
    await rig.mta.settle();
    return r;
  };

  it('blocklist: a user whose ~/.blocked names the sender rejects; another user\'s list does not; a user\'s own filter comes first', async (t) => {
    if (cannotRun(t)) return;
    await rig.scenario(async () => {
      rig.setFilters({ carol: filters.accept() });
      writeAs(rig.user('alice'), '.blocked', '# mine\nSender@Client.TEST\n');
      writeAs(rig.user('bob'), '.blocked', '@elsewhere.test\n');
      writeAs(rig.user('carol'), '.blocked', '@client.test\n');
      await rig.startMilter({ 'filter.default': install(dir, 'blocklist') });
      const alice = await deliver('alice', 'hello');
      assert.match(alice.finalReply, new RegExp(`^550[ -]5\\.7\\.1 ${rig.user('alice').name} does not accept mail from this sender$`), alice.transcript);
      const bob = await deliver('bob', 'hello');
      assert.equal(bob.code, 0, bob.transcript);
      assert.equal(rig.delivered('bob', bob.caseId), 1);
      const carol = await deliver('carol', 'hello');
      assert.equal(carol.code, 0, `carol's own filter accepts, the site default is not asked\n${carol.transcript}`);
      assert.equal(rig.user('carol').runs().length, 1);
    });
  });

  it('bogofilter: each user\'s own word list decides (trained the other way round for bob)', async (t) => {
    if (cannotRun(t) || lacksCommand(t, 'bogofilter', 'bogofilter') || lacksCommand(t, 'setpriv', 'util-linux')) return;
    await rig.scenario(async () => {
      rig.setFilters({});
      const alice = rig.user('alice');
      const bob = rig.user('bob');
      for (const u of [alice, bob]) rmSync(u.file('.bogofilter'), { recursive: true, force: true });
      const msg = (body: string) => `From: x@client.test\nSubject: t\n\n${body}\n`;
      for (let i = 0; i < 3; i++) {
        await asUser(alice, ['bogofilter', '-d', alice.file('.bogofilter'), '-s'], msg(SPAMMY));
        await asUser(alice, ['bogofilter', '-d', alice.file('.bogofilter'), '-n'], msg(HAMMY));
        await asUser(bob, ['bogofilter', '-d', bob.file('.bogofilter'), '-n'], msg(SPAMMY));
        await asUser(bob, ['bogofilter', '-d', bob.file('.bogofilter'), '-s'], msg(HAMMY));
      }
      await rig.startMilter({ 'filter.default': install(dir, 'bogofilter') });
      const a = await deliver('alice', SPAMMY);
      assert.match(a.finalReply, /^550[ -]5\.7\.1 Message looks like spam to its recipient \(bogofilter\)$/, a.transcript);
      const b = await deliver('bob', SPAMMY);
      assert.equal(b.code, 0, b.transcript);
      assert.equal(rig.delivered('bob', b.caseId), 1);
      const ham = await deliver('alice', HAMMY);
      assert.equal(ham.code, 0, ham.transcript);
      // carol has no word list: no say.
      const c = await deliver('carol', SPAMMY);
      assert.equal(c.code, 0, c.transcript);
    });
  });

  describe('spamassassin through spamd with per-user preferences', () => {
    let spamd: ChildProcess | undefined;
    let port = 0;
    const log: string[] = [];
    const startSpamd = async (t: TestContext): Promise<boolean> => {
      if (lacksCommand(t, 'spamd', 'spamd') || lacksCommand(t, 'spamc', 'spamc')) return false;
      if (spamd) return true;
      port = await auxPort();
      // As root, so it can switch to each user (spamc -u) and read their user_prefs.
      spamd = spawn('spamd', ['-i', '127.0.0.1', '-A', '127.0.0.1', '-p', String(port), '--max-children', '2', '--syslog', 'stderr', '--pidfile', path.join(dir, 'spamd.pid')], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      spamd.stdout?.on('data', (d: Buffer) => log.push(d.toString()));
      spamd.stderr?.on('data', (d: Buffer) => log.push(d.toString()));
      await waitFor(`spamd on 127.0.0.1:${port}`, () => canConnect({ port }), 60_000, 250);
      return true;
    };
    after(async () => {
      if (spamd?.pid && spamd.exitCode === null) {
        spamd.kill('SIGTERM');
        await new Promise((r) => spamd?.once('exit', r));
      }
    });

    it('GTUBE (1000 points): rejected for a user with required_score 5, accepted for a user whose own threshold is above it', async (t) => {
      if (cannotRun(t)) return;
      if (!(await startSpamd(t))) return;
      await rig.scenario(async () => {
        rig.setFilters({});
        writeAs(rig.user('alice'), '.spamassassin/user_prefs', 'required_score 5\n');
        writeAs(rig.user('bob'), '.spamassassin/user_prefs', 'required_score 5000\n');
        const script = install(dir, 'spamassassin', (text) => text.replace('SPAMC_OPTIONS="-d 127.0.0.1 -p 783"', `SPAMC_OPTIONS="-d 127.0.0.1 -p ${port}"`));
        await rig.startMilter({ 'filter.default': script, 'filter.timeout': 60_000 });
        const a = await deliver('alice', `spam test\n${GTUBE}\n`);
        assert.match(a.finalReply, /^550[ -]5\.7\.1 Message looks like spam to its recipient \(\d+(\.\d+)?\/5\.0\)$/, `${a.transcript}\n${log.join('')}`);
        const b = await deliver('bob', `spam test\n${GTUBE}\n`);
        assert.equal(b.code, 0, `${b.transcript}\n${log.join('')}`);
        assert.equal(rig.delivered('bob', b.caseId), 1);
      });
    });
  });
});
