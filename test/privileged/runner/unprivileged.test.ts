// A launcher that cannot switch users (started as a plain user): nobody's
// code runs as somebody else (docs/reference.md §4, issue 11). Only programs
// owned by the launcher's own uid run; another user's world-executable
// filter is unsafe and has no effect at all. Driven as root by starting the
// launcher and the client as a test uid (setpriv, no capabilities).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { launcherBinary } from '../../../src/launcher/start.js';
import { lacksCommand, lacksRoot } from '../../support/require.js';
import { launcherBuilt, launcherPolicy, makeWorld, testLauncherSettings, type World } from './world.js';

const isRoot = process.getuid?.() === 0;
let w: World;
before(() => {
  if (isRoot) w = makeWorld('unpriv', 61031);
});
after(async () => {
  await w?.cleanup();
});

const DIST = fileURLToPath(new URL('../../../', import.meta.url));
const ROOT = path.dirname(DIST.replace(/\/$/, ''));

/** The code the test uid runs, readable by it wherever the checkout lives (CI's clone may sit in a 0700 directory). */
function readableCopy(): string {
  const dir = fs.mkdtempSync('/var/tmp/pumrun-code-');
  fs.chmodSync(dir, 0o755);
  for (const part of ['package.json', 'node_modules', 'dist/src']) fs.cpSync(path.join(ROOT, part), path.join(dir, part), { recursive: true });
  fs.mkdirSync(path.join(dir, 'native'));
  fs.copyFileSync(launcherBinary(), path.join(dir, 'native/per-user-milter-launcher'));
  for (const p of [dir, ...fs.readdirSync(dir, { recursive: true }).map((f) => path.join(dir, String(f)))]) {
    const st = fs.lstatSync(p);
    if (!st.isSymbolicLink()) fs.chmodSync(p, st.mode | (st.isDirectory() || st.mode & 0o100 ? 0o555 : 0o444));
  }
  return dir;
}

test('unprivileged: only programs owned by the launcher\'s own uid run; another user\'s world-executable filter is unsafe and does nothing', async (t) => {
  if (lacksRoot(t) || lacksCommand(t, 'setpriv', 'util-linux')) return;
  if (!launcherBuilt() && lacksCommand(t, 'per-user-milter-launcher-is-not-built', 'gcc make (npm ci builds native/)')) return;
  const me = w.users.b; // the milter and its launcher run as pumrun-b ...
  const other = w.users.a; // ... and pumrun-a's filter must not run as pumrun-b
  fs.chmodSync(other.home, 0o755);
  const marker = path.join(me.home, 'touched-by-a');
  const evil = w.install(other, 'trivial', { mode: 0o755 });
  fs.writeFileSync(evil, `#!/bin/sh\ncat >/dev/null\ntouch ${marker}\nexit 1\n`);
  w.install(me, 'ident');
  const code = readableCopy();
  t.after(() => fs.rmSync(code, { recursive: true, force: true }));
  // The unprivileged milter's own spool.
  const spool = fs.mkdtempSync('/var/lib/pumrun-unpriv-spool-');
  t.after(() => fs.rmSync(spool, { recursive: true, force: true }));
  fs.chownSync(spool, me.uid, me.gid);
  fs.chmodSync(spool, 0o700);
  const message = (name: string): string => {
    const p = path.join(spool, name);
    fs.writeFileSync(p, 'Subject: t\n\nbody\n', { mode: 0o600 });
    fs.chownSync(p, me.uid, me.gid);
    return p;
  };
  const mine = w.job(me, message('msg-aaaaaaaaaaaaaaaaaaaaaaaa'), { limits: { cpuSeconds: 7, memoryBytes: 300 << 20, processes: 50, fileSizeBytes: 1 << 20, outputBytes: 65536 } });
  const theirs = w.job(other, message('msg-bbbbbbbbbbbbbbbbbbbbbbbb'));
  const settings = testLauncherSettings({
    socket: path.join(spool, 'launcher.sock'), spool, clientUid: me.uid, clientGid: me.gid, minUid: 61031, maxUid: 61099, bwrap: '', passwdFile: w.passwdFile,
    ...launcherPolicy(mine.settings),
  });
  const script = `
    import { startLauncher } from ${JSON.stringify(path.join(code, 'dist/src/launcher/start.js'))};
    import { runFilter, LAUNCHER_SOCKET_ENV } from ${JSON.stringify(path.join(code, 'dist/src/filter/run.js'))};
    const socket = ${JSON.stringify(path.join(spool, 'launcher.sock'))};
    const l = await startLauncher(${JSON.stringify(settings)});
    process.env[LAUNCHER_SOCKET_ENV] = socket;
    const out = { ready: l.ready, mine: await runFilter(${JSON.stringify(mine)}), theirs: await runFilter(${JSON.stringify(theirs)}) };
    console.log(JSON.stringify(out));
    await l.stop();
    process.exit(0);`;
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile('setpriv', [`--reuid=${me.uid}`, `--regid=${me.gid}`, '--clear-groups', '--inh-caps=-all', process.execPath, '--input-type=module', '-e', script],
      { cwd: '/', env: { PATH: '/usr/bin:/bin' }, timeout: 30_000 },
      (err, so, se) => (err ? reject(new Error(`${err.message}\n${se}`)) : resolve(so)));
  });
  const r = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as { ready: { privileged: boolean }; mine: { outcome: string; log: string }; theirs: { outcome: string; log: string } };
  assert.equal(r.ready.privileged, false);
  assert.equal(r.mine.outcome, 'accept', r.mine.log);
  assert.match(r.mine.log, new RegExp(`uid=${me.uid} gid=${me.gid} groups=${me.gid} cwd=${me.home} umask=0077`));
  assert.match(r.mine.log, /NoNewPrivs: 1;/);
  assert.match(r.mine.log, /Max cpu time 7 7 seconds;/);
  assert.match(r.mine.log, /Max processes 50 50 processes;/);
  assert.equal(r.theirs.outcome, 'unsafe', r.theirs.log);
  assert.match(r.theirs.log, new RegExp(`cannot switch users: only programs owned by uid ${me.uid} run`));
  assert.equal(fs.existsSync(marker), false, "pumrun-a's filter had no effect");
});
