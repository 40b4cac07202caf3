// A real system account (useradd) found through NSS (getent), then its filter
// run with its supplementary groups from `getent initgroups`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { closeLauncherConnection, LAUNCHER_SOCKET_ENV, runFilter } from '../../../src/filter/run.js';
import { startLauncher, type RunningLauncher } from '../../../src/launcher/start.js';
import { createUserResolver } from '../../../src/users/resolve.js';
import { lacksCommand, lacksRoot } from '../../support/require.js';
import { defaultSettings, envelopeFor, FIXTURES, killUid, launcherBuilt, testLauncherSettings } from './world.js';

const USER = 'pumrun-sys';
const GROUP = 'pumrun-grp';
const isRoot = process.getuid?.() === 0;

function quiet(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
  } catch {
    // absent already
  }
}

function removeAccount(): void {
  try {
    const uid = Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' }).trim());
    if (uid > 0) killUid(uid);
  } catch {
    // no such user
  }
  quiet('userdel', ['-r', USER]);
  quiet('groupdel', [GROUP]);
}

before(() => {
  if (!isRoot) return;
  removeAccount(); // leftovers of an interrupted run
  execFileSync('groupadd', [GROUP]);
  execFileSync('useradd', ['-m', '-U', '-G', GROUP, '-s', '/bin/sh', USER]);
});
after(() => {
  if (isRoot) removeAccount();
});

test('NSS: the account, its primary and supplementary groups; the filter runs with exactly those', async (t) => {
  if (lacksRoot(t) || lacksCommand(t, 'useradd', 'passwd') || lacksCommand(t, 'getent', 'libc-bin')) return;
  if (!launcherBuilt() && lacksCommand(t, 'per-user-milter-launcher-is-not-built', 'gcc make (npm ci builds native/)')) return;
  const r = createUserResolver({ passwdFile: '', minUid: 1000 });
  const acct = await r.lookup(USER);
  assert.ok(acct, 'found through getent');
  const idG = execFileSync('id', ['-G', USER], { encoding: 'utf8' }).trim().split(/\s+/).map(Number);
  const grp = Number(execFileSync('getent', ['group', GROUP], { encoding: 'utf8' }).split(':')[2]);
  assert.equal(acct.uid, Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' })));
  assert.deepEqual([...acct.groups].sort((a, b) => a - b), [...idG].sort((a, b) => a - b));
  assert.ok(acct.groups.includes(grp), 'the supplementary group');
  assert.equal(acct.home, `/home/${USER}`);

  const f = path.join(acct.home, '.user-milter');
  fs.copyFileSync(path.join(FIXTURES, 'ident'), f);
  fs.chownSync(f, acct.uid, acct.gid);
  fs.chmodSync(f, 0o700);
  const spoolDir = fs.mkdtempSync('/var/lib/pumrun-nss-');
  fs.chmodSync(spoolDir, 0o700);
  const socket = path.join(spoolDir, 'launcher.sock');
  let launcher: RunningLauncher | null = null;
  process.env[LAUNCHER_SOCKET_ENV] = socket;
  try {
    const spool = path.join(spoolDir, 'msg-00112233445566778899aabb');
    fs.writeFileSync(spool, 'Return-Path: <s@x>\nSubject: t\n\nbody\n', { mode: 0o600 });
    for (const sandbox of ['setpriv', 'bwrap'] as const) {
      if (sandbox === 'bwrap' && lacksCommand(t, 'bwrap', 'bubblewrap')) continue;
      // The launcher looks the account up by uid itself, through NSS (no --passwd-file).
      closeLauncherConnection();
      await launcher?.stop();
      launcher = await startLauncher(testLauncherSettings({ socket, spool: spoolDir, clientUid: 0, minUid: acct.uid, maxUid: acct.uid, sandbox }));
      const res = await runFilter({ spoolPath: spool, user: acct, envelope: envelopeFor(acct), settings: defaultSettings({ sandbox }) });
      assert.equal(res.outcome, 'accept', res.log);
      const m = /uid=(\d+) gid=(\d+) groups=([\d,]+) cwd=(\S+)/.exec(res.log);
      assert.ok(m, res.log);
      assert.equal(Number(m[1]), acct.uid);
      assert.equal(Number(m[2]), acct.gid);
      // In bwrap's user namespace only the user's own ids are mapped; the other groups show as nogroup.
      const want: number[] = sandbox === 'setpriv' ? idG : idG.map((g: number): number => (g === acct.gid ? g : 65534));
      assert.deepEqual(m[3]?.split(',').map(Number).sort((a, b) => a - b), [...want].sort((a, b) => a - b));
      assert.equal(m[4], acct.home);
    }
  } finally {
    closeLauncherConnection();
    await launcher?.stop();
    fs.rmSync(spoolDir, { recursive: true, force: true });
  }
});
