// The milter not running as root: filters run as the milter's own user, still
// with no_new_privs, rlimits, umask 077 and the clean environment, and a
// warning says so. Driven as root by starting node itself as a test uid.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { lacksCommand, lacksRoot } from '../../support/require.js';
import { makeWorld, type World } from './world.js';

const isRoot = process.getuid?.() === 0;
let w: World;
before(() => {
  if (isRoot) w = makeWorld('unpriv', 61031);
});
after(() => {
  w?.cleanup();
});

const DIST = fileURLToPath(new URL('../../../', import.meta.url));
const ROOT = path.dirname(DIST.replace(/\/$/, ''));

/**
 * The test uid must be able to read the code it runs, wherever the checkout
 * lives (CI's clone may sit under a 0700 directory): run a world-readable copy
 * of the compiled sources and their dependencies.
 */
function readableCopy(): { run: string; dir: string } {
  const dir = fs.mkdtempSync('/var/tmp/pumrun-code-');
  fs.chmodSync(dir, 0o755);
  for (const part of ['package.json', 'node_modules', 'dist/src']) {
    fs.cpSync(path.join(ROOT, part), path.join(dir, part), { recursive: true });
  }
  spawnSync('chmod', ['-R', 'a+rX', dir]);
  return { run: path.join(dir, 'dist/src/filter/run.js'), dir };
}

test('unprivileged: the filter runs as the milter\'s own uid, with no_new_privs, limits, umask 077, and a warning', async (t) => {
  if (lacksRoot(t) || lacksCommand(t, 'setpriv', 'util-linux')) return;
  const me = w.users.b; // the "milter" runs as pumrun-b ...
  const other = w.users.a; // ... and the recipient is pumrun-a, whose filter it cannot become
  w.install(me, 'ident');
  const spool = w.message();
  const code = readableCopy();
  t.after(() => fs.rmSync(code.dir, { recursive: true, force: true }));
  // The unprivileged milter must be able to open its own spool file.
  fs.chownSync(w.spoolDir, me.uid, me.gid);
  fs.chownSync(spool, me.uid, me.gid);
  const job = w.job({ ...other, home: me.home }, spool, { limits: { cpuSeconds: 7, memoryBytes: 300 << 20, processes: 50, fileSizeBytes: 1 << 20, outputBytes: 65536 } });
  // The filter belongs to `me` here (the account the milter runs as).
  job.user = { ...job.user, uid: me.uid, gid: me.gid, groups: [me.gid] };
  const script = `import { runFilter } from ${JSON.stringify(code.run)}; const r = await runFilter(${JSON.stringify(job)}); console.log(JSON.stringify(r));`;
  const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
    execFile(
      'setpriv',
      [`--reuid=${me.uid}`, `--regid=${me.gid}`, '--clear-groups', process.execPath, '--input-type=module', '-e', script],
      { cwd: '/', env: { PATH: '/usr/bin:/bin' }, timeout: 30_000 },
      (err, so, se) => (err ? reject(new Error(`${err.message}\n${se}`)) : resolve({ stdout: so, stderr: se })),
    );
  });
  const r = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as { outcome: string; log: string };
  assert.equal(r.outcome, 'accept', r.log);
  assert.match(r.log, new RegExp(`uid=${me.uid} gid=${me.gid} groups=${me.gid} cwd=${me.home} umask=0077`));
  assert.match(r.log, /NoNewPrivs: 1;/);
  assert.match(r.log, /Max cpu time 7 7 seconds;/);
  assert.match(r.log, /Max processes 50 50 processes;/);
  assert.match(r.log, new RegExp(`Max address space ${300 << 20} ${300 << 20} bytes;`));
  assert.match(stderr, /cannot switch users .*: every filter runs as uid \d+/);
});
