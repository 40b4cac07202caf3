// The Debian route (README "Setting it up", debian/): dpkg-buildpackage
// builds the package from a clean copy of the repository with debhelper;
// lintian finds no error or warning; debian/copyright covers every vendored
// npm module; apt installs it; the Postfix steps of README.Debian and the
// installed unit's ExecStart, started as systemd would (root, the unit's
// bounding set, no_new_privs; no systemd here as PID 1) with the installed
// configuration, run a message through the recipients' real filters as
// their users; SIGTERM ends it with 0; `dpkg --purge` leaves nothing behind.
// Changes the machine: holds the heavy lock, and purges even on failure.
// Users pumops-deb*, ports 25470-25479 (this file's range in deploy's 254xx).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { lacksCommand, lacksRoot } from '../support/require.js';
import {
  ROOT, cleanCopy, deliver, ensureUser, freePort, httpGet, startServe, tmpDir, writeFilter,
} from './support.js';
import { one, parseUnit, unitCaps } from './privileges.js';

const PKG = 'per-user-milter';
const version = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const DOC = `/usr/share/doc/${PKG}`;
const UNIT = `/lib/systemd/system/${PKG}.service`;
const CONFIG = `/etc/${PKG}/config.json`;
const POSTFIX_TMPFILES = `/etc/tmpfiles.d/${PKG}-postfix.conf`;
const SOCKET_DIR = `/var/spool/postfix/${PKG}`;
/** Everything the package installs or makes; none of it may be there before, nor after the purge. */
const FOOTPRINT = [
  `/usr/lib/${PKG}`, `/etc/${PKG}`, `/usr/bin/${PKG}`, UNIT, `/usr/lib/sysusers.d/${PKG}.conf`,
  `/usr/lib/tmpfiles.d/${PKG}.conf`, DOC, `/usr/share/man/man8/${PKG}.8.gz`, `/var/spool/${PKG}`, `/run/${PKG}`, SOCKET_DIR,
  `/etc/systemd/system/multi-user.target.wants/${PKG}.service`,
];

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {}): string {
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd, encoding: 'utf8', timeout: opts.timeout ?? 600_000,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', npm_config_update_notifier: 'false', ...opts.env },
  });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const installed = (): boolean => spawnSync('dpkg-query', ['-W', '-f=${db:Status-Status}', PKG], { encoding: 'utf8' }).stdout === 'installed';

const RECORD = `#!/bin/sh
# Records who this filter runs as (test/deploy/debian.test.ts).
echo "uid=$(id -u)" > "$HOME/ran-as"
`;

/** Builds the package from a clean copy; returns the .deb's path. */
function build(t: TestContext): string {
  const work = tmpDir(t, 'deb');
  const src = path.join(work, PKG);
  cleanCopy(src);
  // debian/rules runs `npm ci --offline` (the cache `npm ci` filled) and tsc, builds native/, vendors the runtime modules.
  run('dpkg-buildpackage', ['-b', '-us', '-uc'], { cwd: src });
  const deb = path.join(work, `${PKG}_${version}_${execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim()}.deb`);
  assert.ok(fs.existsSync(deb), `dpkg-buildpackage made ${deb}: ${fs.readdirSync(work).join(' ')}`);
  return deb;
}

function checkContents(deb: string): void {
  const files = execFileSync('sh', ['-c', 'dpkg-deb --fsys-tarfile "$1" | tar -t', 'sh', deb], { encoding: 'utf8', maxBuffer: 64 << 20 })
    .split('\n').map((f) => f.replace(/^\.\//, '/')).filter((f) => f !== '/' && f !== '');
  for (const must of [
    `/usr/bin/${PKG}`, `/usr/lib/${PKG}/dist/src/main.js`, `/usr/lib/${PKG}/dist/workers/runner-process.js`, `/usr/lib/${PKG}/package.json`,
    `/usr/lib/${PKG}/native/per-user-milter-launcher`, `/usr/lib/${PKG}/node_modules/piscina/package.json`, UNIT, CONFIG,
    `/usr/lib/sysusers.d/${PKG}.conf`, `/usr/lib/tmpfiles.d/${PKG}.conf`, `${DOC}/operating.md`, `${DOC}/README.Debian`,
    `${DOC}/examples/${PKG}-postfix.conf`, `/usr/share/man/man8/${PKG}.8.gz`, `/usr/share/man/man5/${PKG}.conf.5.gz`,
    `/usr/share/man/man5/${PKG}-filter.5.gz`,
  ]) assert.ok(files.includes(must), `the package has ${must}`);
  const stray = files.filter((f) => /\/(typescript|@types|fast-check|yaml|@napi-rs)\/|\/dist\/(test|bench|scripts)\/|\.ts$|\/native\/.*\.c$/.test(f));
  assert.deepEqual(stray, [], 'no development modules, tests, sources or optional prebuilt binaries');
  // debian/copyright covers every vendored module, by its path.
  const copyright = fs.readFileSync(path.join(ROOT, 'debian/copyright'), 'utf8');
  const modules = new Set(files.flatMap((f) => {
    const m = /^\/(usr\/lib\/per-user-milter\/(?:node_modules\/(?:@[^/]+\/)?[^/]+\/)*node_modules\/(?:@[^/]+\/)?[^/]+)\/package\.json$/.exec(f);
    return m?.[1] ? [m[1]] : [];
  }));
  assert.ok(modules.size > 10, [...modules].join(' '));
  const uncovered = [...modules].filter((m) => !copyright.includes(`${m}/*`));
  assert.deepEqual(uncovered, [], 'vendored modules without a debian/copyright stanza');
  const depends = run('dpkg-deb', ['-f', deb, 'Depends']);
  assert.match(depends, /(^|, )nodejs \(>= 20\)(,|$)/m, 'Depends names the Node.js it needs');
}

test('dpkg-buildpackage builds a lintian-clean package that installs, serves as the unit would, and purges without a trace', { timeout: 1_200_000 }, async (t) => {
  if (lacksRoot(t) || lacksCommand(t, 'dpkg-buildpackage', 'dpkg-dev') || lacksCommand(t, 'dh', 'debhelper')
    || lacksCommand(t, 'lintian', 'lintian') || lacksCommand(t, 'cc', 'gcc') || lacksCommand(t, 'setpriv', 'util-linux')
    || lacksCommand(t, 'systemd-tmpfiles', 'systemd') || lacksCommand(t, 'git', 'git')) return;
  assert.ok(!installed(), `${PKG} is installed on this machine: the test would purge it`);
  const before = FOOTPRINT.filter((p) => fs.existsSync(p));
  assert.deepEqual(before, [], 'left from an earlier install: remove it (dpkg --purge per-user-milter) and run again');
  // The Postfix steps of README.Debian need the group postfix (package postfix).
  assert.ok(spawnSync('getent', ['group', 'postfix']).status === 0, 'group postfix (Debian package postfix)');
  const accountBefore = spawnSync('getent', ['passwd', PKG]).status === 0;

  const deb = build(t);
  checkContents(deb);
  const lint = spawnSync('lintian', ['--fail-on', 'error,warning', '--tag-display-limit', '0', deb], { encoding: 'utf8', timeout: 600_000 });
  assert.equal(lint.status, 0, `lintian:\n${lint.stdout}\n${lint.stderr}`);
  assert.doesNotMatch(lint.stdout, /^[EW]: /m, lint.stdout);

  // From here on the machine is changed: undo it whatever happens.
  t.after(() => {
    spawnSync('dpkg', ['--purge', PKG], { stdio: 'ignore' });
    fs.rmSync(POSTFIX_TMPFILES, { force: true });
    fs.rmSync(SOCKET_DIR, { recursive: true, force: true });
    if (!accountBefore) {
      spawnSync('userdel', [PKG], { stdio: 'ignore' });
      spawnSync('groupdel', [PKG], { stdio: 'ignore' });
    }
  });
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', deb]);
  assert.ok(installed());
  assert.match(run('dpkg-query', ['-W', '-f=${Conffiles}', PKG]), new RegExp(`^ ${CONFIG} [0-9a-f]{32}$`, 'm'), 'the configuration is a conffile');
  assert.equal(run(`/usr/bin/${PKG}`, ['--version']), `per-user-milter ${version} (Node.js ${process.version})\n`);
  // postinst: the account (sysusers.d), the 0700 spool (tmpfiles.d); the unit neither enabled nor started.
  const account = run('getent', ['passwd', PKG]).trim().split(':');
  const svcUid = Number(account[2]);
  assert.ok(svcUid > 0 && svcUid < 1000, `a system account: ${account.join(':')}`);
  const spool = fs.statSync(`/var/spool/${PKG}`);
  assert.equal(spool.mode & 0o7777, 0o700);
  assert.equal(spool.uid, svcUid);
  assert.ok(!fs.existsSync(`/etc/systemd/system/multi-user.target.wants/${PKG}.service`), 'not enabled at install');

  // README.Debian, Postfix: the setgid socket directory, then check-config on the installed configuration.
  fs.copyFileSync(`${DOC}/examples/${PKG}-postfix.conf`, POSTFIX_TMPFILES);
  run('systemd-tmpfiles', ['--create', POSTFIX_TMPFILES]);
  assert.equal(fs.statSync(SOCKET_DIR).mode & 0o7777, 0o2750);
  const metricsPort = await freePort(25470, 25479);
  // The metrics port of this test's range, as an Environment= drop-in would set it; everything else is the conffile.
  const env = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', PER_USER_MILTER_METRICS_LISTEN: `127.0.0.1:${metricsPort}` };
  const check = spawnSync(`/usr/bin/${PKG}`, ['check-config'], { encoding: 'utf8', env, timeout: 60_000 });
  assert.equal(check.status, 0, `check-config on ${CONFIG}:\n${check.stdout}\n${check.stderr}`);

  // The installed unit's ExecStart, as systemd starts it.
  const unit = parseUnit(fs.readFileSync(UNIT, 'utf8'));
  // Its Documentation= files are installed, uncompressed.
  const docs = (unit.get('Unit')?.get('Documentation') ?? []).flatMap((d) => d.split(/\s+/)).filter((d) => d.startsWith('file:'));
  assert.ok(docs.length > 0);
  for (const d of docs) assert.ok(fs.existsSync(d.slice('file:'.length)), `the unit's Documentation= ${d}`);
  const [exe, ...args] = (one(unit, 'ExecStart') ?? '').split(/\s+/);
  assert.equal(exe, `/usr/bin/${PKG}`);
  assert.equal(args[0], 'serve');
  const bounding = unitCaps(unit, 'CapabilityBoundingSet').map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`).join(',');
  const accepter = ensureUser(t, 'pumops-deb1');
  const rejecter = ensureUser(t, 'pumops-deb2');
  writeFilter(accepter, RECORD + 'exit 0\n');
  writeFilter(rejecter, RECORD + 'echo "5.7.1 pumops-deb2 says no"\nexit 1\n');
  const sock = path.join(SOCKET_DIR, 'milter.sock');
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const serve = await startServe(t, args.slice(1), {
    command: [exe ?? ''],
    launcher: ['setpriv', `--bounding-set=-all,${bounding}`, '--inh-caps=-all', '--no-new-privs', '--'],
    env,
    ready: async () => fs.existsSync(sock) && (await httpGet(metricsUrl).catch(() => ({ status: 0 }))).status === 200,
  });
  const status = fs.readFileSync(`/proc/${serve.child.pid ?? 0}/status`, 'utf8');
  assert.match(status, new RegExp(`^Uid:\\s+${svcUid}\\s`, 'm'), 'serve dropped to the account per-user-milter');
  assert.match(status, /^CapEff:\s+0+$/m);
  const sockStat = fs.statSync(sock);
  assert.equal(sockStat.gid, Number(run('getent', ['group', 'postfix']).split(':')[2]), 'the socket belongs to group postfix');

  const headers: Array<[string, string]> = [['From', 'sender@pumdeb.test'], ['Subject', 'debian']];
  const ranAs = (u: typeof accepter) => {
    const file = path.join(u.home, 'ran-as');
    assert.ok(fs.existsSync(file), `${u.name}'s filter did not run\n${serve.output()}`);
    assert.equal(fs.readFileSync(file, 'utf8'), `uid=${u.uid}\n`);
  };
  const ok = await deliver(`unix:${sock}`, { from: 'sender@pumdeb.test', to: [`${accepter.name}@pumdeb.test`], headers, body: 'hello\n', queueId: 'DEB0001' });
  assert.equal(ok.type, 'accept', `${JSON.stringify(ok)}\n${serve.output()}`);
  ranAs(accepter);
  const no = await deliver(`unix:${sock}`, { from: 'sender@pumdeb.test', to: [`${rejecter.name}@pumdeb.test`], headers, body: 'hello\n', queueId: 'DEB0002' });
  assert.equal(no.type, 'replycode', `${JSON.stringify(no)}\n${serve.output()}`);
  assert.equal(no.text, '550 5.7.1 pumops-deb2 says no');
  ranAs(rejecter);
  assert.equal(await serve.stop(), 0, serve.output());
  assert.ok(!fs.existsSync(sock), 'serve removed its socket');

  // An administrator's change to the conffile: purge removes it too.
  fs.appendFileSync(CONFIG, '// changed by the administrator\n');
  run('dpkg', ['--purge', PKG]);
  assert.ok(!installed());
  assert.equal(spawnSync('dpkg', ['-S', `/usr/lib/${PKG}`]).status, 1, 'dpkg knows no file of the package any more');
  fs.rmSync(POSTFIX_TMPFILES, { force: true }); // the administrator's own file (README.Debian)
  assert.deepEqual(FOOTPRINT.filter((p) => fs.existsSync(p)), [], 'left behind by the purge');
});
