// The executable as an administrator meets it: --version, --help after every
// command, and check-config and serve refusing a broken configuration with
// one line per problem, exit 1, never a stack trace. Nothing here listens:
// serve refuses before it binds anything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { lacksServiceAccount, SERVICE_ACCOUNT } from '../../support/require.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const MAIN = path.join(ROOT, 'dist/src/main.js');

function run(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    timeout: 30_000,
    input: '',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('--version names the package version and the Node.js it runs on', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const r = run([flag]);
    assert.equal(r.status, 0);
    assert.equal(r.stdout, `per-user-milter ${pkg.version} (Node.js ${process.version})\n`);
  }
});

test('--help after every command: exit 0, its own usage on standard output, nothing on standard error', () => {
  for (const [args, first] of [
    [['--help'], /^Usage:\n  per-user-milter serve/],
    [['-h'], /^Usage:\n/],
    [['help', 'try'], /^Usage: per-user-milter try --user NAME/],
    [['serve', '--help'], /^Usage: per-user-milter serve /],
    [['serve', '--config', '/nonexistent', '--help'], /^Usage: per-user-milter serve /],
    [['check-config', '-h'], /^Usage: per-user-milter check-config /],
    [['try', '--help'], /^Usage: per-user-milter try --user NAME/],
    [['try', '--user', 'x', '--help'], /^Usage: per-user-milter try /],
  ] as const) {
    const r = run([...args]);
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, first, args.join(' '));
    assert.equal(r.stderr, '', args.join(' '));
  }
  const tryHelp = run(['try', '--help']).stdout;
  for (const opt of ['--client-address IP', '--helo NAME', '--sasl-username NAME', '--sender ADDR', '--recipient ADDR']) assert.ok(tryHelp.includes(opt), opt);
  // An unknown command is a usage error on standard error.
  const bad = run(['frobnicate']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown command 'frobnicate'/);
});

function brokenSetup(): { dir: string; args: string[]; want: RegExp[] } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pum-cli-'));
  fs.writeFileSync(path.join(dir, 'map'), 'info alice\nnot a valid line\n');
  fs.writeFileSync(path.join(dir, 'config.json'), `{
  // a broken set-up, one problem per key
  "milter": { "listen": "unix:${dir}/milter.sock" },
  "recipients": { "map": "${dir}/map" },
  "users": { "passwdFile": "${dir}/passwd" },
  "filter": { "exitCodes": { "reject": [0, 1] } },
  "metrics": { "listen": "" }
}
`);
  return {
    dir,
    args: ['--config', path.join(dir, 'config.json')],
    want: [
      /^per-user-milter: config: recipients\.map: .*map:2: expected "address-or-localpart username"/m,
      /^per-user-milter: config: users\.passwdFile: .*passwd: no such file$/m,
      /^per-user-milter: config: filter\.exitCodes\.reject contains 0/m,
    ],
  };
}

test('check-config: one line per problem, exit 1, no stack trace', () => {
  const { dir, args, want } = brokenSetup();
  try {
    const r = run(['check-config', ...args]);
    assert.equal(r.status, 1, r.stderr);
    for (const w of want) assert.match(r.stderr, w);
    assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
    assert.equal(r.stdout, '', 'no configuration printed for a broken one');
    // A syntax error names file, line and column.
    fs.writeFileSync(path.join(dir, 'config.json'), '{\n  "milter": { "listen": "inet:8890@127.0.0.1", }\n}\n');
    const s = run(['check-config', ...args]);
    assert.equal(s.status, 1);
    assert.equal(s.stderr, `per-user-milter: config: ${dir}/config.json:2:48: a comma before a closing } or ] (JSON allows none)\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('serve refuses the same set-up with the same lines and exit 1, not a crash (exit 70)', () => {
  const { dir, args, want } = brokenSetup();
  try {
    const r = run(['serve', ...args]);
    assert.equal(r.status, 1, r.stderr);
    for (const w of want) assert.match(r.stderr, w);
    assert.match(r.stderr, /not started/);
    assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
    assert.ok(!fs.existsSync(path.join(dir, 'milter.sock')), 'nothing was bound');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('check-config on the built-in defaults says where the spool would be', () => {
  const r = run(['check-config'], { TMPDIR: '/var/tmp' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /^spool: a private directory \/var\/tmp\/per-user-milter-XXXXXX made at start and removed at exit/m);
  const s = run(['check-config'], { RUNTIME_DIRECTORY: '/run/per-user-milter' });
  assert.match(s.stderr, /^spool: \/run\/per-user-milter\/spool \(\$RUNTIME_DIRECTORY\/spool/m);
  assert.equal((JSON.parse(r.stdout) as { spool: { dir: string } }).spool.dir, '');
});

/** Starts serve on an ephemeral port, waits for "spool ready", stops it with SIGTERM; returns the spool directory it used. */
async function serveOnce(env: NodeJS.ProcessEnv, whileRunning: (spoolDir: string) => void): Promise<{ code: number | null; out: string; spoolDir: string }> {
  const { spawn } = await import('node:child_process');
  // As root, serve drops to milter.user (its default, per-user-milter) after starting the launcher.
  const child = spawn(process.execPath, [MAIN, 'serve', '--milter.listen', 'inet:0@127.0.0.1', '--metrics.listen', '', '--pool.threads', '1', ], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const until = Date.now() + 30_000;
  while (!/milter listening/.test(out)) {
    if (Date.now() > until || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error(`serve did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const spoolDir = /spool ready spoolDir=(\S+)/.exec(out)?.[1] ?? '';
  try {
    whileRunning(spoolDir);
  } finally {
    child.kill('SIGTERM');
  }
  return { code: await exited, out, spoolDir };
}

test('spool.dir empty: a private mkdtemp directory, 0700 and ours, removed at exit; under systemd $RUNTIME_DIRECTORY/spool', async (t) => {
  if (process.getuid?.() === 0 && lacksServiceAccount(t)) return;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pum-spool-'));
  // Like the real /tmp (the milter may run as another account than ours).
  fs.chmodSync(tmp, 0o1777);
  // Started as root, the directory is handed to milter.user (per-user-milter).
  const owner = process.getuid?.() === 0 ? Number(execFileSync('id', ['-u', SERVICE_ACCOUNT], { encoding: 'utf8' })) : process.getuid?.();
  try {
    // Somebody else's directory at the old fixed name changes nothing.
    fs.mkdirSync(path.join(tmp, 'per-user-milter'), { mode: 0o777 });
    const a = await serveOnce({ TMPDIR: tmp }, (dir) => {
      assert.match(dir, new RegExp(`^${tmp}/per-user-milter-[A-Za-z0-9]{6}$`));
      const st = fs.statSync(dir);
      assert.equal(st.mode & 0o777, 0o700);
      assert.equal(st.uid, owner);
    });
    assert.equal(a.code, 0, a.out);
    assert.ok(!fs.existsSync(a.spoolDir), 'removed at exit');

    const run = path.join(tmp, 'run');
    fs.mkdirSync(run);
    const b = await serveOnce({ TMPDIR: tmp, RUNTIME_DIRECTORY: run }, (dir) => assert.equal(dir, path.join(run, 'spool')));
    assert.equal(b.code, 0, b.out);
    assert.equal(fs.statSync(path.join(run, 'spool')).mode & 0o777, 0o700, 'the runtime directory is systemd\'s to remove');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
