// The npm route (README "Setting it up"): on a clean copy of the repository,
// `npm ci --offline` (from the cache CI's own `npm ci` filled) and `npm pack`
// make the tarball; `npm install -g --prefix DIR` turns it into a
// per-user-milter command, with the machine's cc and make building the
// native launcher from the packed sources. That install resolves the
// dependencies' version ranges, for which it needs the registry's package
// documents: `npm ci` caches only the tarballs its lockfile names, so a
// strictly --offline install fails with ENOTCACHED on a fresh machine;
// --prefer-offline takes the tarballs from the cache and asks the registry
// for the rest. The installed command then
// answers --version, passes check-config, and serves as root with the
// systemd unit's bounding set: a message runs its recipient's real filter as
// that user through the installed launcher, and SIGTERM ends it with 0.
// Users pumops-npm*, ports 25460-25469 (this file's range in deploy's 254xx).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { lacksCommand, lacksRoot } from '../support/require.js';
import { ROOT, cleanCopy, ensureUser, freePort, tmpDir } from './support.js';
import { UNIT_TEXT, filtersRunAsTheirUsers } from './privileges.js';

const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };

function run(cmd: string, args: string[], cwd: string, timeout = 300_000): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout, env: { ...process.env, npm_config_update_notifier: 'false' } });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

test('npm pack on a clean clone, npm install -g into a prefix: the installed command works and serves', { timeout: 600_000 }, async (t) => {
  if (lacksRoot(t) || lacksCommand(t, 'npm', 'nodejs') || lacksCommand(t, 'cc', 'gcc') || lacksCommand(t, 'make', 'make')
    || lacksCommand(t, 'setpriv', 'util-linux') || lacksCommand(t, 'git', 'git')) return;
  const work = tmpDir(t, 'npm');
  // The service account must reach the installed files after serve drops to it.
  fs.chmodSync(work, 0o755);
  const src = path.join(work, 'src');
  cleanCopy(src);
  assert.ok(!fs.existsSync(path.join(src, 'dist')) && !fs.existsSync(path.join(src, 'node_modules')), 'a clean copy');
  run('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], src);
  // prepack builds dist/ (tsc) before packing.
  const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work], src)) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const tarball = path.join(work, packed[0]?.filename ?? '');
  assert.equal(path.basename(tarball), `${pkg.name}-${pkg.version}.tgz`);
  const listed = (packed[0]?.files ?? []).map((f) => f.path);
  assert.ok(listed.includes('dist/src/main.js') && listed.includes('native/launcher.c') && listed.includes('man/per-user-milter.8'));
  assert.deepEqual(listed.filter((f) => /^(test|bench|dist\/test|dist\/bench|src)\//.test(f) || f === 'native/per-user-milter-launcher'), [], 'no tests, benchmarks, sources or built launcher');

  const prefix = path.join(work, 'prefix');
  // --allow-scripts: npm 11 asks global installs to name the packages whose
  // install script may run (ours builds the launcher); older npm ignores it.
  run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', `--allow-scripts=${pkg.name}`, tarball], work);
  const bin = path.join(prefix, 'bin', 'per-user-milter');
  const installed = path.join(prefix, 'lib', 'node_modules', pkg.name);
  assert.ok(fs.statSync(path.join(installed, 'native/per-user-milter-launcher')).mode & 0o100, 'the launcher was built at install');
  for (const m of ['man8/per-user-milter.8', 'man5/per-user-milter.conf.5', 'man5/per-user-milter-filter.5']) {
    assert.ok(fs.existsSync(path.join(prefix, 'share/man', m)), `man page ${m} linked into the prefix`);
  }
  assert.ok(!fs.existsSync(path.join(installed, 'node_modules/typescript')), 'no development dependencies');

  const version = execFileSync(bin, ['--version'], { encoding: 'utf8' });
  assert.equal(version, `per-user-milter ${pkg.version} (Node.js ${process.version})\n`);

  // check-config on a configuration serve could start with here.
  const svc = ensureUser(t, 'pumops-npmsvc', { system: true });
  const spool = path.join(work, 'spool');
  fs.mkdirSync(spool, { mode: 0o700 });
  const config = path.join(work, 'check.json');
  fs.writeFileSync(config, JSON.stringify({
    milter: { listen: `unix:${path.join(work, 'milter.sock')}`, user: svc.name },
    spool: { dir: spool },
    metrics: { listen: `127.0.0.1:${await freePort(25460, 25469)}` },
  }));
  const check = spawnSync(bin, ['check-config', '--config', config], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(check.status, 0, `check-config:\n${check.stdout}\n${check.stderr}`);

  // serve, as systemd starts the unit, from the installed command.
  await filtersRunAsTheirUsers(t, {
    unitText: UNIT_TEXT(), sandbox: 'setpriv', portFrom: 25461, prefix: 'pumops-npm', command: [bin], serviceUser: svc.name,
  });
});
