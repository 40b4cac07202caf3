// runFilter for real, as root, through the native launcher, with setpriv and
// bwrap: identity, environment, isolation, exit-code mapping, safety checks
// (done by the launcher, as the user). Timeouts and limits are in
// limits.test.ts, the pool in pool.test.ts, the launcher itself in
// test/privileged/launcher/.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { PumError } from '../../../src/errors.js';
import { FILTER_ENV_NAMES } from '../../../src/filter/environment.js';
import { LAUNCHER_SOCKET_ENV, runFilter } from '../../../src/filter/run.js';
import { LauncherConnection } from '../../../src/launcher/client.js';
import { launcherBinary } from '../../../src/launcher/start.js';
import { privilegeProblems } from '../../../src/filter/privileges.js';
import { lacksCommand, lacksRoot } from '../../support/require.js';
import { launcherBuilt, makeWorld, SUPP_GID, type World } from './world.js';

const isRoot = process.getuid?.() === 0;
let w: World;

before(async () => {
  if (isRoot && launcherBuilt()) {
    w = makeWorld('run', 61001);
    await w.launch();
  }
});
after(async () => {
  await w?.cleanup();
});

function needs(t: TestContext, sandbox: string): boolean {
  if (lacksRoot(t)) return true;
  if (!launcherBuilt()) {
    lacksCommand(t, 'per-user-milter-launcher-is-not-built', 'gcc make (npm ci builds native/)');
    return true;
  }
  return sandbox === 'bwrap' && lacksCommand(t, 'bwrap', 'bubblewrap');
}

/** What the launcher says at RCPT time about `u`'s filter. */
async function statOf(u: World['users']['a']): Promise<string> {
  const c = await LauncherConnection.connect(process.env[LAUNCHER_SOCKET_ENV] as string);
  try {
    return (await c.stat({ program: 'filter', user: u.name, uid: u.uid })).what;
  } finally {
    c.close();
  }
}

function parseEnviron(stdoutLog: string): Record<string, string> {
  // `#!/bin/cat /proc/self/environ` prints the NUL-separated environment, then the script itself.
  const text = stdoutLog.replace(/^stdout: /, '').split('#!/bin/cat')[0] ?? '';
  const env: Record<string, string> = {};
  for (const kv of text.split('\0')) {
    if (kv === '') continue;
    const i = kv.indexOf('=');
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return env;
}

for (const sandbox of ['setpriv', 'bwrap'] as const) {
  describe(`runFilter with sandbox ${sandbox}`, () => {
    test('runs as the user: uid, gid, supplementary groups, home, umask 077, own session, no_new_privs, only fds 0-2', async (t) => {
      if (needs(t, sandbox)) return;
      const u = w.users.a;
      w.install(u, 'ident');
      const r = await w.run(w.job(u, w.message(), { sandbox }));
      assert.equal(r.outcome, 'accept', r.log);
      const out = r.log;
      // bwrap runs in a user namespace of the user's, where groups other than the primary one show as nogroup.
      const groups = sandbox === 'setpriv' ? `${u.uid},${SUPP_GID}` : `${u.uid},65534`;
      assert.match(out, new RegExp(`uid=${u.uid} gid=${u.gid} groups=${groups} cwd=${u.home} umask=0077`));
      const ids = /pid=(\d+) sid=(\d+) pgid=(\d+)/.exec(out);
      assert.ok(ids, out);
      // Own session and process group: with setpriv the filter leads both; in
      // bwrap's pid namespace it is pid 2 in the new session of bwrap's init (pid 1).
      const leader = sandbox === 'setpriv' ? ids[1] : '1';
      assert.equal(ids[2], leader, `session: ${ids[0]}`);
      assert.equal(ids[3], leader, `process group: ${ids[0]}`);
      if (sandbox === 'bwrap') assert.equal(ids[1], '2', 'own pid namespace');
      assert.match(out, /NoNewPrivs: 1;/);
      assert.match(out, /CapEff: 0000000000000000;/);
      assert.match(out, /CapInh: 0000000000000000;/);
      assert.match(out, /CapBnd: 0000000000000000;/);
      assert.match(out, /Max cpu time 10 10 seconds;Max processes 64 64 processes;/);
      // `exec ls /proc/self/fd`: 0 1 2 and ls's own directory handle (3); a leaked descriptor would push it to 4.
      const fds = out.split('\n').filter((l) => /^\d+$/.test(l.trim())).map(Number).sort((x, y) => x - y);
      assert.deepEqual(fds, [0, 1, 2, 3]);
    });

    test('ids reach the launcher as numbers: an account named like the uid, or a group named like a gid, cannot capture the switch', async (t) => {
      if (needs(t, sandbox) || lacksCommand(t, 'useradd', 'passwd') || lacksCommand(t, 'groupadd', 'passwd')) return;
      const u = w.users.a;
      // Decoys in the real account database (setpriv asks NSS): a user *named*
      // "61001" with uid 61008, a group *named* "61100" with gid 61008.
      const decoyId = 61008;
      const decoyUser = String(u.uid);
      const decoyGroup = String(SUPP_GID);
      execFileSync('groupadd', ['-g', String(decoyId), decoyGroup], { stdio: 'pipe' });
      try {
        execFileSync('useradd', ['--badname', '-M', '-N', '-g', String(decoyId), '-u', String(decoyId), '-d', '/nonexistent', '-s', '/usr/sbin/nologin', decoyUser], { stdio: 'pipe' });
        try {
          assert.equal(execFileSync('id', ['-u', decoyUser], { encoding: 'utf8' }).trim(), String(decoyId), 'the decoy account exists');
          w.install(u, 'ident');
          const r = await w.run(w.job(u, w.message(), { sandbox }));
          assert.equal(r.outcome, 'accept', r.log);
          assert.match(r.log, new RegExp(`uid=${u.uid} gid=${u.gid} groups=${u.uid},${sandbox === 'setpriv' ? SUPP_GID : 65534} `));
        } finally {
          execFileSync('userdel', [decoyUser], { stdio: 'pipe' });
        }
      } finally {
        execFileSync('groupdel', [decoyGroup], { stdio: 'pipe' });
      }
    });

    test('gets exactly the documented environment, RECIPIENT its own address only', async (t) => {
      if (needs(t, sandbox)) return;
      const u = w.users.a;
      w.install(u, 'environ');
      process.env.PUMRUN_SHOULD_NOT_LEAK = 'yes';
      const r = await w.run(
        w.job(u, w.message(), { sandbox, limits: { cpuSeconds: 5, memoryBytes: 512 << 20, processes: 64, fileSizeBytes: 1 << 20, outputBytes: 65536 } }, {
          RECIPIENT: 'pumrun-a+lists@example.com',
          EXTENSION: 'lists',
          SASL_METHOD: 'PLAIN',
          SASL_USERNAME: 'sasl\u0001us\u007fer\r\n',
        }),
      );
      delete process.env.PUMRUN_SHOULD_NOT_LEAK;
      assert.equal(r.outcome, 'accept', r.log);
      const env = parseEnviron(r.log);
      assert.deepEqual(Object.keys(env).sort(), [...FILTER_ENV_NAMES].sort());
      assert.equal(env.HOME, u.home);
      assert.equal(env.USER, u.name);
      assert.equal(env.LOGNAME, u.name);
      assert.equal(env.SHELL, '/bin/sh');
      assert.equal(env.RECIPIENT, 'pumrun-a+lists@example.com');
      assert.equal(env.EXTENSION, 'lists');
      assert.equal(env.SENDER, 'sender@example.org');
      assert.equal(env.SASL_USERNAME, 'sasluser', 'control characters removed');
      assert.equal(env.QUEUE_ID, '4ABCDEF123');
    });

    test('cannot open the spool file by path, nor another user\'s 0700 home', async (t) => {
      if (needs(t, sandbox)) return;
      const a = w.users.a;
      const b = w.users.b;
      fs.writeFileSync(path.join(b.home, 'secret'), 'b only\n', { mode: 0o600 });
      fs.chownSync(path.join(b.home, 'secret'), b.uid, b.gid);
      w.install(a, 'try-open');
      const spool = w.message();
      const r1 = await w.run(w.job(a, w.message({ 'X-Path': spool }), { sandbox }));
      assert.equal(r1.outcome, 'accept', r1.log);
      assert.equal(r1.replyText, `denied ${spool}`);
      // It can read its own stdin (the message) though: the same filter on its own home file works.
      fs.writeFileSync(path.join(a.home, 'mine'), 'a\n', { mode: 0o600 });
      fs.chownSync(path.join(a.home, 'mine'), a.uid, a.gid);
      const r2 = await w.run(w.job(a, w.message({ 'X-Path': path.join(a.home, 'mine') }), { sandbox }));
      assert.equal(r2.replyText, `opened ${path.join(a.home, 'mine')}`);
      const r3 = await w.run(w.job(a, w.message({ 'X-Path': path.join(b.home, 'secret') }), { sandbox }));
      assert.equal(r3.replyText, `denied ${path.join(b.home, 'secret')}`);
    });

    test('exit codes map to outcomes; the reply text is the first non-empty stdout line, cleaned', async (t) => {
      if (needs(t, sandbox)) return;
      const u = w.users.a;
      w.install(u, 'exit-code');
      const cases: Array<[string, string, string]> = [
        ['0', 'accept', ''],
        ['1', 'reject', '5.7.1 no thanks'],
        ['75', 'tempfail', '4.2.0 later'],
        ['2', 'error', 'odd'],
        ['99', 'reject', 'custom reject code'],
        ['SEGV', 'error', 'crash'],
      ];
      for (const [code, outcome, text] of cases) {
        const r = await w.run(
          w.job(u, w.message({ 'X-Exit': code, 'X-Text': text }), { sandbox, exitCodes: { reject: [1, 99], tempfail: [75] } }),
        );
        assert.equal(r.outcome, outcome, `exit ${code}: ${r.log}`);
        assert.equal(r.replyText, text, `exit ${code}`);
        // bwrap reports a signalled child as exit status 128+n.
        if (code === 'SEGV') assert.ok(r.signal === 'SIGSEGV' || (sandbox === 'bwrap' && r.exitCode === 139), `${r.signal} ${r.exitCode}`);
        else assert.equal(r.exitCode, Number(code));
      }
      const dirty = await w.run(w.job(u, w.message({ 'X-Exit': '1', 'X-Text': `\t5.7.1 caf\u00e9 \u0007bell ${'x'.repeat(300)}` }), { sandbox }));
      assert.equal(dirty.outcome, 'reject');
      assert.match(dirty.replyText, /^5\.7\.1 caf bell x+$/);
      assert.equal(dirty.replyText.length, 200);
    });
  });
}

describe('runFilter: no filter, unsafe filters', () => {
  test('no file: nofilter; a dangling symlink too', async (t) => {
    if (needs(t, 'setpriv')) return;
    const u = w.users.b;
    fs.rmSync(path.join(u.home, '.user-milter'), { force: true });
    const r = await w.run(w.job(u, w.message()));
    assert.equal(r.outcome, 'nofilter');
    assert.equal(await statOf(u), 'none');
    fs.symlinkSync(path.join(u.home, 'nothing-here'), path.join(u.home, '.user-milter'));
    fs.lchownSync(path.join(u.home, '.user-milter'), u.uid, u.gid);
    // A dangling link is no filter, at RCPT time and at the run.
    assert.equal(await statOf(u), 'none');
    const r2 = await w.run(w.job(u, w.message()));
    assert.equal(r2.outcome, 'nofilter', r2.log);
    fs.rmSync(path.join(u.home, '.user-milter'));
  });

  test('a group-writable filter is unsafe', async (t) => {
    if (needs(t, 'setpriv')) return;
    const u = w.users.b;
    w.install(u, 'trivial', { mode: 0o775 });
    const r = await w.run(w.job(u, w.message()));
    assert.equal(r.outcome, 'unsafe');
    assert.match(r.log, /group-writable/);
    assert.equal(r.exitCode, null);
  });

  test('a world-writable filter is unsafe; a non-executable one too; root-owned is fine', async (t) => {
    if (needs(t, 'setpriv')) return;
    const u = w.users.b;
    w.install(u, 'trivial', { mode: 0o757 });
    assert.equal((await w.run(w.job(u, w.message()))).outcome, 'unsafe');
    w.install(u, 'trivial', { mode: 0o644 });
    const r = await w.run(w.job(u, w.message()));
    assert.equal(r.outcome, 'unsafe');
    assert.match(r.log, /not executable/);
    w.install(u, 'trivial', { mode: 0o755, owner: 0 });
    assert.equal((await w.run(w.job(u, w.message()))).outcome, 'accept');
  });

  test("someone else's file is unsafe, also behind a symlink", async (t) => {
    if (needs(t, 'setpriv')) return;
    const a = w.users.a;
    const b = w.users.b;
    w.install(b, 'trivial', { owner: a.uid });
    const r = await w.run(w.job(b, w.message()));
    assert.equal(r.outcome, 'unsafe');
    assert.match(r.log, new RegExp(`owned by uid ${a.uid}`));
    // A symlink in b's home, owned by b, to a file that belongs to a (in a directory b can reach).
    const shared = path.join(w.base, 'shared');
    fs.mkdirSync(shared, { mode: 0o755 });
    const target = w.install(a, 'trivial', { at: path.join(shared, 'a-filter') });
    const link = path.join(b.home, '.user-milter');
    fs.rmSync(link, { force: true });
    fs.symlinkSync(target, link);
    fs.lchownSync(link, b.uid, b.gid);
    const r2 = await w.run(w.job(b, w.message()));
    assert.equal(r2.outcome, 'unsafe');
    assert.match(r2.log, new RegExp(`${target} is owned by uid ${a.uid}`));
    // The same symlink to a file b owns is fine.
    fs.chownSync(target, b.uid, b.gid);
    assert.equal((await w.run(w.job(b, w.message()))).outcome, 'accept');
    fs.rmSync(link);
  });

  test('a world-writable directory on the path is unsafe (configured path and resolved path)', async (t) => {
    if (needs(t, 'setpriv')) return;
    const u = w.users.b;
    const dir = path.join(u.home, 'filters');
    fs.mkdirSync(dir, { recursive: true });
    fs.chownSync(dir, u.uid, u.gid);
    fs.chmodSync(dir, 0o777);
    w.install(u, 'trivial', { at: path.join(dir, 'f') });
    await w.launch({ filterPath: '~/filters/f' });
    const r = await w.run(w.job(u, w.message()));
    await w.launch();
    assert.equal(r.outcome, 'unsafe');
    assert.match(r.log, /world-writable/);
    // Only through a symlink: ~/.user-milter -> ~/filters/f
    const link = path.join(u.home, '.user-milter');
    fs.rmSync(link, { force: true });
    fs.symlinkSync(path.join(dir, 'f'), link);
    fs.lchownSync(link, u.uid, u.gid);
    const r2 = await w.run(w.job(u, w.message()));
    assert.equal(r2.outcome, 'unsafe');
    assert.match(r2.log, /filters is world-writable/);
    fs.chmodSync(dir, 0o755);
    assert.equal((await w.run(w.job(u, w.message()))).outcome, 'accept');
    // %u in the configured path.
    await w.launch({ filterPath: `${w.base}/home/%u/filters/f` });
    assert.equal((await w.run(w.job(u, w.message()))).outcome, 'accept');
    await w.launch();
    fs.rmSync(link);
  });

  test('a symlink to a root-owned filter in a directory the user cannot enter is unsafe', async (t) => {
    if (needs(t, 'bwrap')) return;
    const u = w.users.b;
    const hidden = path.join(w.base, 'root-only');
    fs.mkdirSync(hidden, { mode: 0o700 });
    const target = w.install(u, 'trivial', { at: path.join(hidden, 'script'), owner: 0 });
    const link = path.join(u.home, '.user-milter');
    fs.rmSync(link, { force: true });
    fs.symlinkSync(target, link);
    fs.lchownSync(link, u.uid, u.gid);
    for (const sandbox of ['setpriv', 'bwrap'] as const) {
      const r = await w.run(w.job(u, w.message(), { sandbox }));
      assert.equal(r.outcome, 'unsafe', `${sandbox}: ${r.log}`);
      assert.match(r.log, /root-only is not searchable by pumrun-b/);
    }
    fs.rmSync(link);
  });

  test('a directory on the path owned by another user is unsafe', async (t) => {
    if (needs(t, 'setpriv')) return;
    const a = w.users.a;
    const b = w.users.b;
    const dir = path.join(w.base, 'by-a');
    fs.mkdirSync(dir, { mode: 0o755 });
    fs.chownSync(dir, a.uid, a.gid);
    w.install(b, 'trivial', { at: path.join(dir, `${b.name}-filter`) });
    await w.launch({ filterPath: `${dir}/%u-filter` });
    const r = await w.run(w.job(b, w.message()));
    await w.launch();
    assert.equal(r.outcome, 'unsafe');
    assert.match(r.log, new RegExp(`by-a is owned by uid ${a.uid}`));
  });

  test('a setuid binary does not raise privileges (no_new_privs); control: without setpriv --nnp it would', async (t) => {
    if (needs(t, 'setpriv')) return;
    const u = w.users.a;
    const suid = path.join(w.base, 'suid-id');
    fs.copyFileSync('/usr/bin/id', suid);
    fs.chownSync(suid, 0, 0);
    fs.chmodSync(suid, 0o4755);
    w.install(u, 'setuid-id');
    const r = await w.run(w.job(u, w.message({ 'X-Path': suid })));
    assert.equal(r.outcome, 'accept', r.log);
    assert.equal(r.replyText, `euid=${u.uid}`);
    // Control: the same binary, run as the user without no_new_privs, does become root.
    const ctl = execFileSync('setpriv', [`--reuid=${u.uid}`, `--regid=${u.gid}`, '--clear-groups', suid, '-u'], { encoding: 'utf8' });
    assert.equal(ctl.trim(), '0');
    fs.rmSync(suid);
  });

  test('the spool file cannot be opened: our failure (PUM_ERR_SPOOL_UNREADABLE, the message is tempfailed), not a filter outcome', async (t) => {
    if (needs(t, 'setpriv')) return;
    const u = w.users.a;
    w.install(u, 'trivial');
    await assert.rejects(w.run(w.job(u, path.join(w.spoolDir, 'msg-000000000000000000000000'))), (err: unknown) => {
      assert.ok(err instanceof PumError);
      assert.equal(err.code, 'PUM_ERR_SPOOL_UNREADABLE');
      assert.match(err.message, /spool/);
      return true;
    });
  });

  test('never as root; sandbox none is refused when the milter can switch users (the launcher has no such mode)', async (t) => {
    if (needs(t, 'setpriv')) return;
    const root = { name: 'root', uid: 0, gid: 0, groups: [0], home: '/root', shell: '/bin/sh' };
    const r = await w.run(w.job(root, w.message()));
    assert.equal(r.outcome, 'unsafe');
    assert.match(privilegeProblems({ filter: { sandbox: 'none' } }, 0).join(' '), /sandbox=none is refused/);
    const l = spawnSync(launcherBinary(), ['--socket', '/s', '--spool', '/d', '--client-uid', '0', '--min-uid', '1', '--max-uid', '2', '--filter-path', '~/.f', '--sandbox', 'none'], { encoding: 'utf8' });
    assert.equal(l.status, 2, l.stderr);
  });

  test('a setuid-root copy of a harmless program, and a program with file capabilities, are unsafe as filters', async (t) => {
    if (needs(t, 'setpriv') || lacksCommand(t, 'setcap', 'libcap2-bin')) return;
    const u = w.users.a;
    const at = path.join(u.home, '.user-milter');
    for (const [mode, owner] of [[0o4755, 0], [0o2755, 0], [0o4755, u.uid]] as const) {
      fs.rmSync(at, { force: true });
      fs.copyFileSync('/usr/bin/true', at);
      fs.chownSync(at, owner, owner);
      fs.chmodSync(at, mode);
      const r = await w.run(w.job(u, w.message()));
      assert.equal(r.outcome, 'unsafe', `mode ${mode.toString(8)}: ${r.log}`);
      assert.match(r.log, /setuid or setgid bit/);
    }
    fs.rmSync(at, { force: true });
    fs.copyFileSync('/usr/bin/true', at);
    fs.chownSync(at, 0, 0);
    fs.chmodSync(at, 0o755);
    assert.equal((await w.run(w.job(u, w.message()))).outcome, 'accept', 'control: the same program without the bits runs');
    execFileSync('setcap', ['cap_net_raw+ep', at]);
    const r = await w.run(w.job(u, w.message()));
    assert.equal(r.outcome, 'unsafe', r.log);
    assert.match(r.log, /file capabilities/);
    fs.rmSync(at);
  });

  test('a directory the user cannot search: unsafe, and the same answer whether the file behind it exists or not', async (t) => {
    if (needs(t, 'setpriv')) return;
    const u = w.users.b;
    const hidden = path.join(w.base, 'closed');
    fs.mkdirSync(hidden, { mode: 0o700 });
    await w.launch({ filterPath: `${hidden}/%u` });
    try {
      const absent = await w.run(w.job(u, w.message()));
      w.install(u, 'trivial', { at: path.join(hidden, u.name), owner: 0 });
      const present = await w.run(w.job(u, w.message()));
      assert.equal(absent.outcome, 'unsafe', absent.log);
      assert.equal(present.outcome, 'unsafe', present.log);
      assert.equal(present.log, absent.log, 'no oracle: the answers are identical');
      assert.match(present.log, /closed is not searchable by pumrun-b \(mode 0700\)/);
      assert.equal(await statOf(u), 'unsafe');
    } finally {
      await w.launch();
    }
  });
});
