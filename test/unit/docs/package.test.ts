// What `npm pack` would put in the package (the tarball `npm install -g`
// turns into a working per-user-milter): the built program, the native
// launcher's sources, the manual pages, deploy/ and docs/; never the tests,
// the benchmarks or the TypeScript sources. Packing builds first (prepack);
// installing builds the native launcher, and says what is missing when the
// machine has no C compiler or make. test/deploy/npm-package.test.ts packs,
// installs and runs the result.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { lacksCommand } from '../../support/require.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  version: string; bin: Record<string, string>; man: string[]; files: string[]; scripts: Record<string, string>; engines: { node: string };
};

test('package.json: files, a prepack that builds, the native launcher built at install, engines', () => {
  assert.deepEqual(pkg.files, ['dist/src/', 'dist/workers/', 'native/', 'man/', 'deploy/', 'docs/']);
  assert.match(pkg.scripts.prepack ?? '', /rmSync\('dist'.*&& npm run build/, 'a clean build before packing');
  for (const s of ['preinstall', 'postinstall', 'prepare']) assert.equal(pkg.scripts[s], undefined, `no ${s} script`);
  // The only install step: the native launcher, from source, with the system's cc and make (native/README.md).
  assert.match(pkg.scripts.install ?? '', /; make -s -C native$/);
  assert.equal(pkg.engines.node, '>=20');
  assert.equal(pkg.bin['per-user-milter'], 'dist/src/main.js');
  assert.match(fs.readFileSync(path.join(ROOT, 'src/main.ts'), 'utf8'), /^#!\/usr\/bin\/env node\n/, 'the bin has a shebang');
  // npm install -g links these into PREFIX/share/man.
  assert.deepEqual([...pkg.man].sort(), fs.readdirSync(path.join(ROOT, 'man')).filter((f) => /\.\d$/.test(f)).map((f) => `./man/${f}`).sort());
});

test('the install script says what to install when there is no C compiler or make', (t) => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'pum-nocc-'));
  t.after(() => fs.rmSync(empty, { recursive: true, force: true }));
  // A PATH with neither cc nor make (npm runs the script with sh).
  const r = spawnSync('/bin/sh', ['-c', pkg.scripts.install ?? ''], { cwd: ROOT, encoding: 'utf8', env: { PATH: empty } });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^per-user-milter: installing builds the native launcher \(native\/\) and needs a C compiler and make: apt-get install gcc make libc6-dev\n$/);
  const cc = spawnSync('/bin/sh', ['-c', pkg.scripts.install ?? ''], { cwd: ROOT, encoding: 'utf8', env: { PATH: '/usr/bin:/bin', CC: 'no-such-cc' } });
  assert.equal(cc.status, 1, 'CC names a compiler that is not there');
  assert.match(cc.stderr, /needs a C compiler/);
});

test('npm pack --dry-run lists the program, the manual pages, deploy/ and docs/, and nothing else', (t) => {
  if (lacksCommand(t, 'npm', 'npm')) return;
  if (!fs.existsSync(path.join(ROOT, 'dist/src/main.js'))) {
    assert.fail('dist/ not built: run npm run build');
  }
  // --ignore-scripts: list what is there now; prepack would rebuild dist/ under the running tests.
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const [info] = JSON.parse(r.stdout) as Array<{ name: string; version: string; files: Array<{ path: string }> }>;
  assert.ok(info);
  assert.equal(info.version, pkg.version);
  const files = info.files.map((f) => f.path).sort();
  for (const must of [
    'package.json', 'README.md', 'LICENSE',
    'dist/src/main.js', 'dist/src/cli/serve.js', 'dist/src/cli/check-config.js', 'dist/src/cli/try.js',
    'dist/workers/runner-process.js', 'dist/workers/filter-worker.js',
    'man/per-user-milter.8', 'man/per-user-milter.conf.5', 'man/per-user-milter-filter.5',
    'deploy/config.example.json', 'deploy/systemd/per-user-milter.service', 'deploy/systemd/sysusers.d/per-user-milter.conf',
    'deploy/systemd/tmpfiles.d/per-user-milter.conf', 'deploy/postfix/main.cf', 'deploy/sendmail/per-user-milter.mc',
    'docs/operating.md',
  ]) assert.ok(files.includes(must), `the package carries ${must}`);
  const stray = files.filter((f) => /^(src|test|bench|workers|scripts|dist\/test|dist\/bench|dist\/scripts|node_modules|\.ci)\//.test(f) || f.endsWith('.ts') && !f.endsWith('.d.ts'));
  assert.deepEqual(stray, [], 'tests, benchmarks, sources or scripts in the package');
  // Every native/ source the repository has goes along (the launcher's, once it lands).
  if (fs.existsSync(path.join(ROOT, 'native'))) {
    // (native/.npmignore keeps the build outputs out; npm never packs it.)
    const native = spawnSync('git', ['ls-files', 'native'], { cwd: ROOT, encoding: 'utf8' }).stdout.split('\n').filter((f) => f !== '' && f !== 'native/.npmignore');
    for (const f of native) assert.ok(files.includes(f), `native source ${f}`);
  }
});
