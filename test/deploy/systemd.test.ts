// deploy/systemd: the unit passes `systemd-analyze verify` and an offline
// security review; sysusers.d and tmpfiles.d make the user and directories
// they promise; and the unit's ExecStart, started as root with exactly the
// unit's bounding set and no_new_privs, drops to milter.user, runs every
// filter as its own user with no capabilities left (also in bwrap mode), and
// ends a runaway filter.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { lacksCommand, lacksRoot } from '../support/require.js';
import { DEPLOY, lacksServe, readDeploy, tmpDir } from './support.js';
import { UNIT_TEXT, filtersRunAsTheirUsers, one, parseUnit, unitCaps } from './privileges.js';

const EXPECTED_CAPS = ['CAP_CHOWN', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETPCAP', 'CAP_SETUID'];

/** Copies the unit with ExecStart pointing at an executable that exists here. */
function unitForVerify(t: TestContext): { file: string; env: NodeJS.ProcessEnv } {
  const dir = tmpDir(t, 'unit');
  const exe = path.join(dir, 'per-user-milter');
  fs.writeFileSync(exe, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  const text = UNIT_TEXT().replaceAll('/usr/bin/per-user-milter', exe);
  const file = path.join(dir, 'per-user-milter.service');
  fs.writeFileSync(file, text);
  // The unit's own directory first in the search path.
  return { file, env: { ...process.env, SYSTEMD_UNIT_PATH: `${dir}:` } };
}

for (const [label, maxExposure] of [['the unit', 4.0]] as const) {
  test(`systemd-analyze verify accepts ${label}, without a single warning`, (t) => {
    if (lacksCommand(t, 'systemd-analyze', 'systemd')) return;
    const { file, env } = unitForVerify(t);
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', file], { encoding: 'utf8', env });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'verify printed warnings');
  });

  test(`systemd-analyze security (offline) rates ${label} OK (exposure <= ${maxExposure})`, (t) => {
    if (lacksCommand(t, 'systemd-analyze', 'systemd')) return;
    const { file, env } = unitForVerify(t);
    const r = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', file], { encoding: 'utf8', env });
    assert.equal(r.status, 0, r.stderr);
    const m = /Overall exposure level for per-user-milter\.service: ([\d.]+)/.exec(r.stdout);
    assert.ok(m, r.stdout);
    assert.ok(Number(m[1]) <= maxExposure, `exposure ${m[1]}`);
  });
}

test('the unit starts serve as root with only the launcher\'s capabilities, no_new_privs, hidden /proc and a delegated cgroup', () => {
  const u = parseUnit(UNIT_TEXT());
  assert.equal(one(u, 'User'), undefined, 'root: serve drops to milter.user itself after starting the launcher');
  assert.match(one(u, 'ExecStart') ?? '', /^\/usr\/bin\/per-user-milter serve --config \/etc\/per-user-milter\/config\.json$/);
  assert.deepEqual(unitCaps(u, 'AmbientCapabilities'), []);
  assert.deepEqual(unitCaps(u, 'CapabilityBoundingSet'), EXPECTED_CAPS);
  assert.equal(one(u, 'NoNewPrivileges'), 'yes');
  assert.equal(one(u, 'ProtectProc'), 'invisible');
  assert.equal(one(u, 'Delegate'), 'yes');
  assert.equal(one(u, 'Restart'), 'on-failure');
  // Options that would break filters stay off (each one is explained in the unit).
  assert.equal(one(u, 'ProtectHome'), 'no', 'filters live in homes');
  assert.notEqual(one(u, 'ProtectSystem'), 'strict', 'strict makes homes read-only for filters');
  assert.notEqual(one(u, 'PrivateUsers'), 'yes', 'a user namespace maps away the recipients');
  assert.notEqual(one(u, 'MemoryDenyWriteExecute'), 'yes', 'V8 needs W+X pages');
  assert.equal(one(u, 'PrivateTmp'), 'yes');
  assert.equal(one(u, 'StandardOutput'), 'journal');
  // Logs like a mail daemon: facility mail, our name, a priority per line.
  assert.equal(one(u, 'SyslogFacility'), 'mail');
  assert.equal(one(u, 'SyslogIdentifier'), 'per-user-milter');
  assert.equal(one(u, 'SyslogLevelPrefix'), 'yes');
  // Graceful stop: longer than the default filter.timeout (30 s) plus 2 s.
  assert.ok(parseInt(one(u, 'TimeoutStopSec') ?? '0', 10) > 32);
  assert.equal(one(u, 'KillSignal'), 'SIGTERM');
  assert.match(one(u, 'ExecReload') ?? '', /kill -HUP \$MAINPID/);
});

test('sysusers.d and tmpfiles.d create the user, the 0700 spool and the setgid Postfix socket dir', (t) => {
  if (lacksRoot(t) || lacksCommand(t, 'systemd-sysusers', 'systemd') || lacksCommand(t, 'systemd-tmpfiles', 'systemd')) return;
  const root = tmpDir(t, 'root');
  for (const d of ['etc/sysusers.d', 'etc/tmpfiles.d', 'var/spool/postfix']) fs.mkdirSync(path.join(root, d), { recursive: true });
  for (const f of fs.readdirSync(path.join(DEPLOY, 'systemd/sysusers.d'))) fs.copyFileSync(path.join(DEPLOY, 'systemd/sysusers.d', f), path.join(root, 'etc/sysusers.d', f));
  for (const f of fs.readdirSync(path.join(DEPLOY, 'systemd/tmpfiles.d'))) fs.copyFileSync(path.join(DEPLOY, 'systemd/tmpfiles.d', f), path.join(root, 'etc/tmpfiles.d', f));
  execFileSync('systemd-sysusers', [`--root=${root}`], { stdio: 'pipe' });
  const passwd = fs.readFileSync(path.join(root, 'etc/passwd'), 'utf8');
  const pw = /^per-user-milter:x:(\d+):(\d+):[^:]*:([^:]*):([^:\n]*)$/m.exec(passwd);
  assert.ok(pw, passwd);
  const uid = Number(pw[1]);
  assert.ok(uid > 0 && uid < 1000, `a system uid, got ${uid}`);
  assert.equal(pw[4], '/usr/sbin/nologin');
  // What the postfix package would have made.
  fs.appendFileSync(path.join(root, 'etc/group'), 'postfix:x:4242:\n');
  execFileSync('systemd-tmpfiles', [`--root=${root}`, '--create'], { stdio: 'pipe' });
  const spool = fs.statSync(path.join(root, 'var/spool/per-user-milter'));
  assert.equal(spool.mode & 0o7777, 0o700);
  assert.equal(spool.uid, uid);
  const run = fs.statSync(path.join(root, 'run/per-user-milter'));
  assert.equal(run.uid, uid, 'the runtime directory belongs to the account serve drops to');
  const sock = fs.statSync(path.join(root, 'var/spool/postfix/per-user-milter'));
  assert.equal(sock.mode & 0o7777, 0o2750, 'setgid, group may enter, others not');
  assert.equal(sock.uid, uid);
  assert.equal(sock.gid, 4242, 'group postfix');
});

test("serve as root with the unit's bounding set runs filters as their users", { timeout: 120_000 }, async (t) => {
  if (lacksRoot(t) || lacksCommand(t, 'setpriv', 'util-linux') || lacksServe(t)) return;
  await filtersRunAsTheirUsers(t, { unitText: UNIT_TEXT(), sandbox: 'setpriv', portFrom: 25410, prefix: 'pumops-cap' });
});

test('the same unit runs bwrap-sandboxed filters as their users (bwrap runs as the user, in a user namespace)', { timeout: 120_000 }, async (t) => {
  if (lacksRoot(t) || lacksCommand(t, 'setpriv', 'util-linux') || lacksCommand(t, 'bwrap', 'bubblewrap') || lacksServe(t)) return;
  await filtersRunAsTheirUsers(t, { unitText: UNIT_TEXT(), sandbox: 'bwrap', portFrom: 25415, prefix: 'pumops-bw' });
});
