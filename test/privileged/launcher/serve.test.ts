// The privilege split through a running `serve`, as root, the way the unit
// starts it (capability bounding set CAP_SETUID CAP_SETGID CAP_SETPCAP
// CAP_KILL CAP_CHOWN, no_new_privs): every Node process runs as milter.user
// with no capability in any thread, only the launcher holds any, and a filter
// ends up with none (bounding set included). Then our failures: the launcher
// or the runner killed mid-run, the launcher missing or broken: 451 4.3.x,
// never a user's verdict. Users pumops-l*, ports from 25480.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { launcherBinary } from '../../../src/launcher/start.js';
import { lacksCommand, lacksRoot } from '../../support/require.js';
import { childrenOf } from '../../support/procs.js';
import { isAlive, waitUntil } from '../../support/wait.js';
import { canConnect, deliver, ensureUser, freePort, lacksServe, startServe, tmpDir, writeFilter, type Serve, type TestUser } from '../../deploy/support.js';

const UNIT_BOUNDING = ['setuid', 'setgid', 'setpcap', 'kill', 'chown'];
const LAUNCHER = launcherBinary();

function needs(t: TestContext): boolean {
  return lacksRoot(t) || lacksCommand(t, 'setpriv', 'util-linux') || lacksServe(t) ||
    (!fs.existsSync(LAUNCHER) && lacksCommand(t, 'per-user-milter-launcher-is-not-built', 'gcc make (npm ci builds native/)'));
}

function status(pid: number | string, tid?: string): Record<string, string> {
  const out: Record<string, string> = {};
  const file = tid ? `/proc/${pid}/task/${tid}/status` : `/proc/${pid}/status`;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

interface Setup {
  svc: TestUser;
  user: TestUser;
  port: number;
  spec: string;
  serve: Serve;
}

async function startAsUnit(t: TestContext, over: string[] = [], env: NodeJS.ProcessEnv = {}, expectReady = true): Promise<Setup> {
  const svc = ensureUser(t, 'pumops-lsvc', { system: true });
  const user = ensureUser(t, 'pumops-l1');
  const base = tmpDir(t, 'launch');
  fs.chmodSync(base, 0o755);
  const port = await freePort(25480);
  const args = [
    '--milter.listen', `inet:${port}@127.0.0.1`, '--milter.user', svc.name, '--spool.dir', path.join(base, 'spool'),
    '--metrics.listen', '', '--filter.timeout', '20000', '--pool.threads', '1', ...over,
  ];
  const serve = await startServe(t, args, {
    launcher: ['setpriv', `--bounding-set=-all,${UNIT_BOUNDING.map((c) => `+${c}`).join(',')}`, '--inh-caps=-all', '--no-new-privs', '--'],
    env: { PATH: '/usr/local/bin:/usr/bin:/bin', ...env },
    ready: async () => !expectReady || (await canConnect(port)),
  });
  return { svc, user, port, spec: `inet:${port}@127.0.0.1`, serve };
}

const message = (to: string, queueId: string) => ({ from: 'sender@pumops.test', to: [to], headers: [['Subject', 'launcher'] as [string, string]], body: 'hello\n', queueId });

describe('serve started as root under the unit\'s capabilities', () => {
  test('every Node process and thread runs as milter.user with no capability; only the launcher holds any; a filter has none, bounding set included', { timeout: 120_000 }, async (t) => {
    if (needs(t)) return;
    const s = await startAsUnit(t);
    writeFilter(s.user, `#!/bin/sh\ncat >/dev/null\ngrep -E '^(Cap|NoNewPrivs)' /proc/self/status > "$HOME/caps"\nid -u >> "$HOME/caps"\nexit 0\n`);
    const r = await deliver(s.spec, message(`${s.user.name}@pumops.test`, 'LCAP1'));
    assert.equal(r.type, 'accept', `${JSON.stringify(r)}\n${s.serve.output()}`);
    const caps = fs.readFileSync(path.join(s.user.home, 'caps'), 'utf8');
    for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.match(caps, new RegExp(`^${set}:\\s+0+$`, 'm'), caps);
    assert.match(caps, /^NoNewPrivs:\s+1$/m);
    assert.match(caps, new RegExp(`^${s.user.uid}$`, 'm'));

    const servePid = s.serve.child.pid as number;
    const kids = childrenOf(servePid);
    const launcher = kids.filter((p) => fs.readlinkSync(`/proc/${p}/exe`) === fs.realpathSync(LAUNCHER));
    const runner = kids.filter((p) => !launcher.includes(p));
    assert.equal(launcher.length, 1, `one launcher among ${kids.join(',')}`);
    assert.equal(runner.length, 1, 'one runner process');
    for (const pid of [servePid, ...runner]) {
      for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
        const st = status(pid, tid);
        for (const set of ['CapPrm', 'CapEff', 'CapAmb']) assert.match(st[set] ?? '', /^0+$/, `pid ${pid} thread ${tid} ${set}=${st[set]}`);
        assert.deepEqual(st.Uid?.split(/\s+/).map(Number), [s.svc.uid, s.svc.uid, s.svc.uid, s.svc.uid], `pid ${pid} thread ${tid} uids`);
        assert.deepEqual(st.Gid?.split(/\s+/).map(Number), [s.svc.gid, s.svc.gid, s.svc.gid, s.svc.gid], `pid ${pid} thread ${tid} gids`);
      }
    }
    const ls = status(launcher[0] as number);
    assert.equal(ls.Uid?.split(/\s+/)[0], '0', 'the launcher keeps root');
    assert.notEqual(BigInt(`0x${ls.CapEff}`), 0n, 'the launcher holds the capabilities');
    assert.match(s.serve.output(), /privileged: the launcher runs each filter as its user/);
    assert.equal(await s.serve.stop(), 0, s.serve.output());
  });
});

describe('our failures through serve: 451 4.3.x, never a user\'s verdict', () => {
  test('the runner killed mid-run: 451 4.3.0, the launcher ends the run, serve goes on', { timeout: 120_000 }, async (t) => {
    if (needs(t)) return;
    const s = await startAsUnit(t);
    writeFilter(s.user, `#!/bin/sh\ncat >/dev/null\ntouch "$HOME/started"\nsleep 60 &\nsleep 60\nexit 1\n`);
    fs.rmSync(path.join(s.user.home, 'started'), { force: true });
    const pending = deliver(s.spec, message(`${s.user.name}@pumops.test`, 'LRUN1'));
    await waitUntil('the filter to start', () => fs.existsSync(path.join(s.user.home, 'started')), 20_000);
    const runner = childrenOf(s.serve.child.pid as number).filter((p) => fs.readlinkSync(`/proc/${p}/exe`) !== fs.realpathSync(LAUNCHER));
    assert.equal(runner.length, 1);
    process.kill(runner[0] as number, 'SIGKILL');
    const r = await pending;
    assert.equal(r.type, 'replycode', JSON.stringify(r));
    assert.match(r.text ?? '', /^451 4\.3\.\d /);
    await waitUntil(`no process of ${s.user.name} left`, () => processesOf(s.user.uid).length === 0, 10_000);
    writeFilter(s.user, '#!/bin/sh\ncat >/dev/null\nexit 0\n');
    assert.equal((await deliver(s.spec, message(`${s.user.name}@pumops.test`, 'LRUN2'))).type, 'accept', s.serve.output());
    assert.equal(await s.serve.stop(), 0);
  });

  test('the launcher killed mid-run: 451 4.3.0, then serve drains and exits 70 for its supervisor', { timeout: 120_000 }, async (t) => {
    if (needs(t)) return;
    const s = await startAsUnit(t);
    writeFilter(s.user, `#!/bin/sh\ncat >/dev/null\ntouch "$HOME/started"\nexec sleep 60\n`);
    fs.rmSync(path.join(s.user.home, 'started'), { force: true });
    const pending = deliver(s.spec, message(`${s.user.name}@pumops.test`, 'LGONE1'));
    await waitUntil('the filter to start', () => fs.existsSync(path.join(s.user.home, 'started')), 20_000);
    const launcher = childrenOf(s.serve.child.pid as number).filter((p) => fs.readlinkSync(`/proc/${p}/exe`) === fs.realpathSync(LAUNCHER));
    process.kill(launcher[0] as number, 'SIGKILL');
    const r = await pending;
    assert.equal(r.type, 'replycode', JSON.stringify(r));
    assert.match(r.text ?? '', /^451 4\.3\.\d /);
    await waitUntil('serve to exit', () => !isAlive(s.serve.child.pid as number), 30_000);
    assert.equal(s.serve.child.exitCode, 70, s.serve.output());
    assert.match(s.serve.output(), /the launcher killed by SIGKILL/);
    // The filter's leader had a parent-death signal; nothing of the user is left.
    await waitUntil(`no process of ${s.user.name} left`, () => processesOf(s.user.uid).length === 0, 10_000);
  });

  for (const [what, script, expect] of [
    ['missing', null, /launcher .* is not built/],
    ['replaced by `exit 1`', '#!/bin/sh\nexit 1\n', /exited with status 1 before it was ready/],
    ['replaced by one that says nothing and exits 0', '#!/bin/sh\nexit 0\n', /exited with status 0 before it was ready/],
  ] as const) {
    test(`the launcher binary ${what}: serve refuses to start (exit 1, one line), so the MTA applies its milter_default_action=tempfail`, { timeout: 60_000 }, async (t) => {
      if (needs(t)) return;
      const dir = tmpDir(t, 'fake');
      fs.chmodSync(dir, 0o755);
      const fake = path.join(dir, 'launcher');
      if (script !== null) fs.writeFileSync(fake, script, { mode: 0o755 });
      const s = await startAsUnit(t, [], { PER_USER_MILTER_LAUNCHER: fake }, false);
      await waitUntil('serve to exit', () => !isAlive(s.serve.child.pid as number), 30_000);
      assert.equal(s.serve.child.exitCode, 1, s.serve.output());
      assert.match(s.serve.output(), expect);
      assert.equal(await canConnect(s.port), false, 'never listened');
    });
  }

  test('a launcher that says ready and then exits without running anything: messages get 451 4.3.x, serve exits 70', { timeout: 60_000 }, async (t) => {
    if (needs(t)) return;
    const dir = tmpDir(t, 'fake');
    fs.chmodSync(dir, 0o755);
    const fake = path.join(dir, 'launcher');
    // Ready, then gone once the milter is up (it reads its stdin until a byte that never comes, for 3 s).
    fs.writeFileSync(fake, '#!/bin/sh\necho "ready proc=visible cgroup=none privileged=yes"\nexec timeout 3 cat >/dev/null\n', { mode: 0o755 });
    const s = await startAsUnit(t, [], { PER_USER_MILTER_LAUNCHER: fake });
    writeFilter(s.user, '#!/bin/sh\ncat >/dev/null\nexit 1\n');
    const r = await deliver(s.spec, message(`${s.user.name}@pumops.test`, 'LFAKE1'));
    assert.equal(r.type, 'replycode', JSON.stringify(r));
    assert.match(r.text ?? '', /^451 4\.3\.\d /, 'never 550, never accept');
    await waitUntil('serve to exit', () => !isAlive(s.serve.child.pid as number), 30_000);
    assert.equal(s.serve.child.exitCode, 70, s.serve.output());
  });
});

function processesOf(uid: number): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const st = status(name);
      if (Number(st.Uid?.split(/\s+/)[0]) === uid && !st.State?.startsWith('Z')) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}
