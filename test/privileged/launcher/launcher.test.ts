// The native launcher on its own, as root, with real users (uids 61201..):
// its request parser under the fuzzer, its strictness on the wire and on the
// command line, its lifecycle (stdin, signals, a closed connection), Bcc
// privacy between two users' filters running at once, and bwrap mode.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test, type TestContext } from 'node:test';
import { LAUNCHER_SOCKET_ENV, runFilter } from '../../../src/filter/run.js';
import { LauncherConnection } from '../../../src/launcher/client.js';
import { decodeAnswer, encodeStat, frame, FrameSplitter, MSG, TAG } from '../../../src/launcher/protocol.js';
import { findBwrap, launcherBinary } from '../../../src/launcher/start.js';
import { runRequest } from '../../../src/filter/run.js';
import { lacksCommand, lacksRoot } from '../../support/require.js';
import { isAlive, waitUntil } from '../../support/wait.js';
import { launcherBuilt, makeWorld, settle, testLauncherSettings, type World } from '../runner/world.js';

const NATIVE = fileURLToPath(new URL('../../../../native/', import.meta.url));
const isRoot = process.getuid?.() === 0;
let w: World;

before(async () => {
  if (isRoot && launcherBuilt()) {
    w = makeWorld('launcher', 61201);
    await w.launch();
  }
});
after(async () => {
  await w?.cleanup();
});

function needs(t: TestContext): boolean {
  if (lacksRoot(t)) return true;
  if (!launcherBuilt()) {
    lacksCommand(t, 'per-user-milter-launcher-is-not-built', 'gcc make (npm ci builds native/)');
    return true;
  }
  return false;
}

/** Sends raw bytes on a fresh connection; resolves with the answers and whether the launcher closed it. */
function exchange(bytes: Buffer, waitMs = 1000): Promise<{ answers: ReturnType<typeof decodeAnswer>[]; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.createConnection(process.env[LAUNCHER_SOCKET_ENV] as string);
    const frames = new FrameSplitter();
    const answers: ReturnType<typeof decodeAnswer>[] = [];
    let closed = false;
    s.on('data', (c: Buffer) => answers.push(...frames.push(c).map(decodeAnswer)));
    s.on('close', () => {
      closed = true;
    });
    s.on('error', () => undefined);
    s.on('connect', () => s.write(bytes));
    setTimeout(() => {
      s.destroy();
      resolve({ answers, closed });
    }, waitMs);
  });
}

describe('the request parser', () => {
  test('fuzzed under ASan and UBSan (seeded, 200k inputs plus every truncation of the valid corpus): no crash', (t) => {
    if (lacksCommand(t, 'make', 'make') || lacksCommand(t, 'gcc', 'gcc')) return;
    execFileSync('make', ['-s', '-C', NATIVE, 'fuzz'], { stdio: 'pipe' });
    const r = spawnSync(path.join(NATIVE, 'fuzz/fuzz-request'), ['-runs=200000', '-seed=12', path.join(NATIVE, 'fuzz/corpus')], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const m = /6 corpus frames \((\d+) prefixes accepted\), 200000 generated inputs, \d+ accepted in all, no crash/.exec(r.stdout);
    assert.ok(m && Number(m[1]) >= 5, r.stdout);
  });
});

describe('the wire', () => {
  test('a malformed request gets FAILED (with its id) and its connection closed; other connections go on', async (t) => {
    if (needs(t)) return;
    const u = w.users.a;
    const good = await LauncherConnection.connect(process.env[LAUNCHER_SOCKET_ENV] as string);
    try {
      const cases: Array<[string, Buffer]> = [
        ['unknown tag', frame(MSG.STAT, [[TAG.id, 5], [TAG.program, 'filter'], [99, 'x']])],
        ['uid 0', frame(MSG.STAT, [[TAG.id, 5], [TAG.program, 'filter'], [TAG.user, 'root'], [TAG.uid, 0]])],
        ['a sign', frame(MSG.STAT, [[TAG.id, 5], [TAG.program, 'filter'], [TAG.user, 'x'], [TAG.uid, '+61201']])],
        // The fields of the old request (gid 6, groups 7, home 8, sandbox 3, timeout 11, limits 12-18): a client no longer says who a user is, nor the policy.
        ['a gid', frame(MSG.STAT, [[TAG.id, 5], [TAG.program, 'filter'], [TAG.user, u.name], [TAG.uid, u.uid], [6, 42]])],
        ['groups', frame(MSG.STAT, [[TAG.id, 5], [TAG.program, 'filter'], [TAG.user, u.name], [TAG.uid, u.uid], [7, '6,27']])],
        ['a home', frame(MSG.STAT, [[TAG.id, 5], [TAG.program, 'filter'], [TAG.user, u.name], [TAG.uid, u.uid], [8, '/etc']])],
        ['a sandbox', frame(MSG.RUN, [[TAG.id, 5], [TAG.program, 'rcpt'], [TAG.user, u.name], [TAG.uid, u.uid], [3, 'setpriv']])],
        ['a timeout', frame(MSG.RUN, [[TAG.id, 5], [TAG.program, 'rcpt'], [TAG.user, u.name], [TAG.uid, u.uid], [11, '86400000']])],
        ['a memory limit', frame(MSG.RUN, [[TAG.id, 5], [TAG.program, 'rcpt'], [TAG.user, u.name], [TAG.uid, u.uid], [17, '0']])],
        ...(['HOME', 'USER', 'LOGNAME', 'SHELL', 'PATH'] as const).map((name): [string, Buffer] => [`env ${name}`,
          frame(MSG.RUN, [[TAG.id, 5], [TAG.program, 'rcpt'], [TAG.user, u.name], [TAG.uid, u.uid], [TAG.env, `${name}=/tmp/x`]])]),
        ['an envelope name twice', frame(MSG.RUN, [[TAG.id, 5], [TAG.program, 'rcpt'], [TAG.user, u.name], [TAG.uid, u.uid], [TAG.env, 'SENDER=a'], [TAG.env, 'SENDER=b']])],
        ['a repeated tag', frame(MSG.STAT, [[TAG.id, 5], [TAG.id, 6]])],
        ['a missing tag', frame(MSG.STAT, [[TAG.id, 5], [TAG.program, 'filter']])],
      ];
      for (const [what, bytes] of cases) {
        const { answers, closed } = await exchange(bytes, 300);
        assert.equal(closed, true, `${what}: connection closed`);
        assert.equal(answers.length, 1, `${what}: ${JSON.stringify(answers)}`);
        assert.equal(answers[0]?.type, 'failed');
        assert.equal(answers[0]?.id, 5);
      }
      // No id parsed, or a frame over 1 MiB: closed without an answer.
      for (const bytes of [frame(MSG.RUN, [[TAG.id, 'x']]), Buffer.from([0x00, 0x20, 0x00, 0x00, 0x01])]) {
        const { answers, closed } = await exchange(bytes, 300);
        assert.deepEqual(answers, []);
        assert.equal(closed, true);
      }
      // Meanwhile the good connection still works.
      const a = await good.stat({ program: 'filter', user: u.name, uid: u.uid });
      assert.equal(a.type, 'checked');
    } finally {
      good.close();
    }
  });

  test('a uid outside --min-uid..--max-uid is refused (FAILED), the connection stays', async (t) => {
    if (needs(t)) return;
    const { answers, closed } = await exchange(encodeStat(3, { program: 'filter', user: 'nobody', uid: 65534 }), 300);
    assert.equal(answers[0]?.type, 'failed');
    assert.match(answers[0]?.type === 'failed' ? answers[0].text : '', /outside --min-uid/);
    assert.equal(closed, false);
  });

  test('only the client uid may talk to it (SO_PEERCRED)', async (t) => {
    if (needs(t)) return;
    // This test runs as root: a launcher serving uid 61200 must hang up on us.
    const spool = fs.mkdtempSync('/var/lib/pumrun-peer-');
    fs.chownSync(spool, 61200, 61200);
    const { startLauncher } = await import('../../../src/launcher/start.js');
    const l = await startLauncher(testLauncherSettings({ socket: path.join(spool, 's'), spool, clientUid: 61200, minUid: 61201, maxUid: 61299 }), { onStderr: () => undefined });
    try {
      const c = await LauncherConnection.connect(path.join(spool, 's'));
      await assert.rejects(c.stat({ program: 'filter', user: 'x', uid: 61201 }), /closed|EPIPE|ECONNRESET/);
      assert.equal(fs.statSync(path.join(spool, 's')).uid, 61200, 'the socket belongs to the client uid');
      assert.equal(fs.statSync(path.join(spool, 's')).gid, 61200, 'and its group (the spool directory\'s)');
      assert.equal(fs.statSync(path.join(spool, 's')).mode & 0o777, 0o600);
    } finally {
      await l.stop();
      fs.rmSync(spool, { recursive: true, force: true });
    }
  });

  test('strict command line: an unknown option, a missing value, a signed number exit 2', (t) => {
    if (needs(t)) return;
    const policy = ['--sandbox', 'setpriv', '--timeout-ms', '1000', '--cpu', '1', '--as', '1', '--nproc', '1', '--fsize', '1', '--output', '1', '--memory', '0', '--pids', '0'];
    for (const args of [
      ['--bogus', 'x'], ['--socket'], ['--socket', '/s', '--spool', '/d', '--client-uid', '+1', '--min-uid', '1', '--max-uid', '2', '--filter-path', '~/.f', ...policy],
      // The policy is required, and the client's uid may not be one a filter runs as.
      ['--socket', '/s', '--spool', '/d', '--client-uid', '100', '--min-uid', '1000', '--max-uid', '2000', '--filter-path', '~/.f'],
      ['--socket', '/s', '--spool', '/d', '--client-uid', '1500', '--min-uid', '1000', '--max-uid', '2000', '--filter-path', '~/.f', ...policy],
      ['--socket', '/s', '--spool', '/d', '--client-uid', '100', '--min-uid', '1000', '--max-uid', '2000', '--filter-path', '~/.f', ...policy, '--sandbox', 'none'],
    ]) {
      const r = spawnSync(launcherBinary(), args, { encoding: 'utf8' });
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^per-user-milter-launcher: /);
    }
  });
});

describe('lifecycle', () => {
  test('SIGTERM, SIGINT, SIGHUP are ignored; a closed client connection kills its runs; end of stdin kills every run and exits', async (t) => {
    if (needs(t)) return;
    const launcher = await w.launch({ timeoutMs: 60_000 });
    const u = w.users.a;
    w.install(u, 'sleeper');
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.kill(launcher.pid, sig);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(isAlive(launcher.pid), 'still running after the signals');
    // A connection of our own with a run in flight, then closed.
    const c = await LauncherConnection.connect(process.env[LAUNCHER_SOCKET_ENV] as string);
    const pending = c.run(runRequest(w.job(u, w.message(), { timeout: 60_000 })));
    pending.catch(() => undefined);
    await waitUntil('the filter to start', () => w.processesOf(u.uid).length >= 2);
    c.close();
    assert.deepEqual(await settle(w, u.uid, 3000), [], 'the closed connection\'s run was killed');
    // Again through runFilter, then the launcher's stdin ends.
    const run = runFilter(w.job(u, w.message(), { timeout: 60_000 }));
    run.catch(() => undefined);
    await waitUntil('the filter to start', () => w.processesOf(u.uid).length >= 2);
    assert.match(await launcher.stop(), /exited with status 0/);
    await assert.rejects(run, /launcher/);
    assert.deepEqual(await settle(w, u.uid, 3000), []);
    await w.launch();
  });
});

describe('Bcc privacy', () => {
  test('two users\' filters for the same message run at once and see none of each other\'s processes; no command line names a user or a home', async (t) => {
    if (needs(t) || lacksCommand(t, 'ps', 'procps')) return;
    const launcher = await w.launch();
    const a = w.users.a;
    const b = w.users.b;
    // Each waits until both run (a file each in a shared 1777-free place they can both reach: their own homes, read by the test),
    // then lists every process it can see.
    const lister = (me: World['users']['a']) =>
      `#!/bin/sh\ncat >/dev/null\ntouch ${me.home}/running\nn=0; while [ ! -e ${me.home}/go ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done\n` +
      `ps -eo user:20,args | sed 1d\necho "--- proc"\nfor p in /proc/[0-9]*; do stat -c %u "$p" 2>/dev/null; done | sort -u\n`;
    for (const u of [a, b]) {
      fs.rmSync(path.join(u.home, 'running'), { force: true });
      fs.rmSync(path.join(u.home, 'go'), { force: true });
      fs.writeFileSync(w.install(u, 'trivial'), lister(u));
    }
    const msg = w.message();
    const runs = [runFilter(w.job(a, msg)), runFilter(w.job(b, msg))];
    await waitUntil('both filters to run', () => fs.existsSync(path.join(a.home, 'running')) && fs.existsSync(path.join(b.home, 'running')));
    // Meanwhile, from outside: what any local user would see of the launcher.
    const cmd = fs.readFileSync(`/proc/${launcher.pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    for (const u of [a, b]) fs.writeFileSync(path.join(u.home, 'go'), '');
    const [ra, rb] = await Promise.all(runs);
    for (const [r, me, other] of [[ra, a, b], [rb, b, a]] as const) {
      assert.equal(r?.outcome, 'accept', r?.log);
      const [psPart, procPart] = (r?.log ?? '').split('--- proc');
      assert.match(psPart ?? '', new RegExp(me.name), 'sees its own processes');
      assert.doesNotMatch(psPart ?? '', new RegExp(other.name), `${me.name} sees nothing of ${other.name}`);
      assert.deepEqual((procPart ?? '').trim().split('\n').map((l) => l.trim()).filter((l) => /^\d+$/.test(l)), [String(me.uid)], 'only its own uid in /proc');
    }
    for (const u of [a, b]) {
      assert.ok(!cmd.includes(u.name) && !cmd.includes(u.home), `launcher command line: ${cmd}`);
    }
  });
});

describe('bwrap mode', () => {
  test('writable private /tmp (1777), its own pid namespace, arguments through a descriptor: bwrap\'s command line names no user or home', async (t) => {
    if (needs(t) || lacksCommand(t, 'bwrap', 'bubblewrap')) return;
    await w.launch();
    const u = w.users.b;
    fs.rmSync(path.join(u.home, 'go'), { force: true });
    fs.writeFileSync(w.install(u, 'trivial'),
      `#!/bin/sh\ncat >/dev/null\ntouch ${u.home}/running\nn=0; while [ ! -e ${u.home}/go ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done\n` +
      `echo "tmp=$(stat -c %a /tmp) pid=$$"; echo hello > /tmp/x && echo "wrote=$(cat /tmp/x)"; ls /tmp\n`);
    fs.rmSync(path.join(u.home, 'running'), { force: true });
    const run = w.run(w.job(u, w.message(), { sandbox: 'bwrap' }));
    await waitUntil('the filter to run', () => fs.existsSync(path.join(u.home, 'running')));
    const bwrapLines = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.trim().startsWith(findBwrap()));
    fs.writeFileSync(path.join(u.home, 'go'), '');
    const r = await run;
    assert.equal(r.outcome, 'accept', r.log);
    assert.match(r.log, /tmp=1777 pid=\d\b/, 'writable private /tmp, a pid namespace (a small pid)');
    assert.match(r.log, /wrote=hello\nx\n/, 'only its own file in /tmp');
    assert.ok(bwrapLines.length > 0, 'bwrap was running');
    for (const l of bwrapLines) {
      assert.match(l, /--args 3/);
      assert.ok(!l.includes(u.name) && !l.includes(u.home), `bwrap command line: ${l}`);
    }
  });
});

describe('after the security review', () => {
  const statWith = async (subject: { program: 'filter'; user: string; uid: number }) => {
    const c = await LauncherConnection.connect(process.env[LAUNCHER_SOCKET_ENV] as string);
    try {
      return await c.stat(subject);
    } finally {
      c.close();
    }
  };

  test('the account comes from the launcher\'s own lookup by uid: a name that is not the uid\'s is FAILED; the filter gets the account\'s groups, home and the fixed PATH', async (t) => {
    if (needs(t)) return;
    await w.launch();
    const a = w.users.a;
    const b = w.users.b;
    await assert.rejects(statWith({ program: 'filter', user: b.name, uid: a.uid }), /launcher: user: /);
    w.install(a, 'ident');
    // Node's own idea of the user is wrong on purpose: other groups, another home. The launcher ignores it (it never receives it).
    const forged = { ...a, gid: 6, groups: [6, 27, 8], home: b.home, shell: '/tmp/x/sh' };
    const r = await w.run(w.job(forged, w.message()));
    assert.equal(r.outcome, 'accept', r.log);
    assert.match(r.log, new RegExp(`uid=${a.uid} gid=${a.gid} groups=${a.uid},61100 cwd=${a.home} `));
    fs.writeFileSync(w.install(a, 'trivial'), '#!/bin/sh\ncat >/dev/null\necho "PATH=$PATH HOME=$HOME USER=$USER LOGNAME=$LOGNAME SHELL=$SHELL"\n');
    const e = await w.run(w.job(forged, w.message()));
    assert.match(e.log, new RegExp(`PATH=/usr/local/bin:/usr/bin:/bin HOME=${a.home} USER=${a.name} LOGNAME=${a.name} SHELL=/bin/sh`));
  });

  test('a RUN still in our set-up at its deadline (an account lookup that hangs) is FAILED stage timeout, never the user\'s timeout (review N3)', { timeout: 30_000 }, async (t) => {
    if (needs(t)) return;
    const u = w.users.b;
    w.install(u, 'trivial');
    await w.launchFor({ timeout: 1000 });
    // The passwd file becomes a FIFO nobody writes: the child's lookup blocks in open().
    const saved = `${w.passwdFile}.saved`;
    fs.renameSync(w.passwdFile, saved);
    execFileSync('mkfifo', ['-m', '0644', w.passwdFile]);
    try {
      await assert.rejects(w.run(w.job(u, w.message(), { timeout: 1000 })), (err: unknown) => (err as { code?: string }).code === 'PUM_ERR_LAUNCHER' && /launcher: timeout: /.test((err as Error).message));
    } finally {
      fs.rmSync(w.passwdFile, { force: true });
      fs.renameSync(saved, w.passwdFile);
    }
    assert.equal((await w.run(w.job(u, w.message()))).outcome, 'accept');
    await w.launch();
  });

  test('the passwd and group files must be root\'s and writable by root alone, and so every directory above: else the launcher refuses to start (review N1)', async (t) => {
    if (needs(t)) return;
    const group = path.join(path.dirname(w.passwdFile), 'group');
    try {
      fs.chmodSync(group, 0o666);
      await assert.rejects(w.launch(), /refusing --passwd-file .*\/group is writable by group or others/);
      fs.chmodSync(group, 0o644);
      fs.chmodSync(path.dirname(w.passwdFile), 0o1777);
      await assert.rejects(w.launch(), /refusing --passwd-file .*\/etc is writable by group or others/);
      fs.chmodSync(path.dirname(w.passwdFile), 0o755);
      fs.chownSync(w.passwdFile, w.users.b.uid, 0);
      await assert.rejects(w.launch(), /refusing --passwd-file .*\/passwd is not owned by root/);
    } finally {
      fs.chmodSync(group, 0o644);
      fs.chmodSync(path.dirname(w.passwdFile), 0o755);
      fs.chownSync(w.passwdFile, 0, 0);
    }
    await w.launch();
  });

  test('the uid is authoritative: another name of the same uid (one with \'@\', as sssd gives) is accepted and the filter sees the account\'s own name; a name of another uid is still FAILED (review N4)', async (t) => {
    if (needs(t)) return;
    await w.launch();
    const a = w.users.a;
    const saved = fs.readFileSync(w.passwdFile, 'utf8');
    try {
      fs.appendFileSync(w.passwdFile, `pumrun-alias:x:${a.uid}:${a.gid}::${a.home}:/bin/sh\npumrun-a@example.org:x:${a.uid}:${a.gid}::${a.home}:/bin/sh\n`);
      w.install(a, 'trivial');
      for (const name of ['pumrun-alias', 'pumrun-a@example.org']) {
        const st = await statWith({ program: 'filter', user: name, uid: a.uid });
        assert.equal(st.what, 'own', `${name}: ${JSON.stringify(st)}`);
      }
      fs.writeFileSync(w.install(a, 'trivial'), '#!/bin/sh\ncat >/dev/null\necho "USER=$USER LOGNAME=$LOGNAME"\n');
      const r = await w.run(w.job({ ...a, name: 'pumrun-alias' }, w.message()));
      assert.equal(r.outcome, 'accept', r.log);
      assert.match(r.log, new RegExp(`USER=${a.name} LOGNAME=${a.name}`));
      await assert.rejects(statWith({ program: 'filter', user: w.users.b.name, uid: a.uid }), /launcher: user: /);
      await assert.rejects(statWith({ program: 'filter', user: 'pumrun-nobody-at-all', uid: a.uid }), /launcher: user: /);
    } finally {
      fs.writeFileSync(w.passwdFile, saved);
    }
  });

  test('an account whose home is relative or has a ".." component is FAILED at the lookup, never chdir\'d to (review N10)', async (t) => {
    if (needs(t)) return;
    await w.launch();
    const b = w.users.b;
    w.install(b, 'trivial');
    const saved = fs.readFileSync(w.passwdFile, 'utf8');
    try {
      for (const home of [`${b.home}/../pumrun-a`, 'relative/home', '/..']) {
        fs.writeFileSync(w.passwdFile, saved.replace(`:${b.home}:`, `:${home}:`));
        await assert.rejects(statWith({ program: 'filter', user: b.name, uid: b.uid }), /launcher: lookup: .*EINVAL/, home);
      }
      fs.writeFileSync(w.passwdFile, saved.replace(`:${b.home}:`, `:${b.home}/..x:`));
      // A component that only starts with ".." is a name: the lookup passes (the program is then simply not there).
      await statWith({ program: 'filter', user: b.name, uid: b.uid }).then(() => undefined, (e: Error) => assert.doesNotMatch(e.message, /lookup/));
    } finally {
      fs.writeFileSync(w.passwdFile, saved);
    }
    assert.equal((await statWith({ program: 'filter', user: b.name, uid: b.uid })).what, 'own');
  });

  test('least privilege: the launcher keeps exactly CAP_SETUID, CAP_SETGID, CAP_SETPCAP and CAP_KILL, in every set and the bounding set', async (t) => {
    if (needs(t)) return;
    const l = await w.launch();
    const status = fs.readFileSync(`/proc/${l.pid}/status`, 'utf8');
    for (const set of ['CapPrm', 'CapEff', 'CapBnd']) {
      assert.match(status, new RegExp(`^${set}:\\s*00000000000001e0$`, 'm'), `${set}: ${/^Cap.*$/gm.exec(status)}`);
    }
    assert.match(status, /^CapAmb:\s*0{16}$/m);
    assert.match(status, /^CapInh:\s*0{16}$/m);
    // And it still does its job.
    w.install(w.users.b, 'trivial');
    assert.equal((await w.run(w.job(w.users.b, w.message()))).outcome, 'accept');
  });

  test('the spool file must be the client\'s, with one link: a planted hard link is FAILED (PUM_ERR_SPOOL_UNREADABLE), never a filter\'s stdin', async (t) => {
    if (needs(t)) return;
    await w.launch();
    const u = w.users.b;
    w.install(u, 'trivial');
    const msg = w.message();
    const link = path.join(w.spoolDir, 'msg-0000000000000000000000aa');
    fs.rmSync(link, { force: true });
    fs.linkSync(msg, link);
    await assert.rejects(w.run(w.job(u, link)), (err: unknown) => err instanceof Error && (err as { code?: string }).code === 'PUM_ERR_SPOOL_UNREADABLE' && /EMLINK/.test(err.message));
    fs.rmSync(link);
    // Not the client's (it runs as root here: a file of another uid).
    const theirs = w.message();
    fs.chownSync(theirs, u.uid, u.gid);
    await assert.rejects(w.run(w.job(u, theirs)), (err: unknown) => (err as { code?: string }).code === 'PUM_ERR_SPOOL_UNREADABLE');
    assert.equal((await w.run(w.job(u, msg))).outcome, 'accept');
  });

  test('fd 1 is never free: after a client disconnects, a program four directories deep still runs (review M2)', async (t) => {
    if (needs(t)) return;
    const l = await w.launch({ filterPath: '~/d1/d2/d3/f' });
    try {
      assert.equal(fs.readlinkSync(`/proc/${l.pid}/fd/1`), '/dev/null');
      const u = w.users.b;
      w.install(u, 'trivial', { at: path.join(u.home, 'd1/d2/d3/f') });
      for (const d of ['d1', 'd1/d2', 'd1/d2/d3']) fs.chownSync(path.join(u.home, d), u.uid, u.gid);
      const first = await LauncherConnection.connect(process.env[LAUNCHER_SOCKET_ENV] as string);
      const stays = await LauncherConnection.connect(process.env[LAUNCHER_SOCKET_ENV] as string);
      first.close();
      await new Promise((r) => setTimeout(r, 100));
      const a = await stays.run(runRequest(w.job(u, w.message())));
      stays.close();
      assert.equal(a.type, 'done', JSON.stringify(a));
      assert.equal(fs.readlinkSync(`/proc/${l.pid}/fd/1`), '/dev/null');
    } finally {
      await w.launch();
    }
  });

  test('without a cgroup, an escapee that outlives its intermediate parent is still ended (review M3)', async (t) => {
    if (needs(t)) return;
    await w.launch({ cgroup: 'none' });
    const u = w.users.b;
    fs.writeFileSync(w.install(u, 'trivial'), "#!/bin/sh\nexec >/dev/null 2>&1\nsetsid sh -c 'sleep 1234 & wait' &\nsleep 0.3\nexit 0\n");
    const r = await w.run(w.job(u, w.message()));
    assert.equal(r.outcome, 'accept', r.log);
    assert.deepEqual(await settle(w, u.uid, 3000), [], 'nothing of the run is left');
  });

  test('a user who stops his own processes (kill -STOP -1 in a loop) cannot freeze the launcher: another user\'s runs finish on time (review H1)', { timeout: 60_000 }, async (t) => {
    if (needs(t)) return;
    await w.launch({ timeoutMs: 3000 });
    const a = w.users.a;
    const b = w.users.b;
    w.install(a, 'trivial');
    fs.writeFileSync(w.install(b, 'trivial'), '#!/bin/sh\ncat >/dev/null\n(while :; do kill -STOP -1 2>/dev/null; done) &\nsleep 2\n');
    const bRuns = Array.from({ length: 8 }, () => runFilter(w.job(b, w.message())).catch((e: Error) => e));
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      const r = await runFilter(w.job(a, w.message()));
      assert.equal(r.outcome, 'accept', r.log);
      assert.ok(performance.now() - t0 < 2000, `run ${i} of the other user took ${performance.now() - t0} ms`);
    }
    for (const r of await Promise.all(bRuns)) assert.ok(r instanceof Error || r.outcome === 'timeout' || r.outcome === 'accept', JSON.stringify(r));
    assert.deepEqual(await settle(w, b.uid, 5000), [], 'the stopped user\'s runs were all ended');
    await w.launch();
  });
});
