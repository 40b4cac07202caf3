// `per-user-milter try` for real, as root: passwd-file users pumtry-* (uids
// 62001..) with filters in their homes, run through the setpriv sandbox.
// The command runs in a child process (its own stdin, stdout and exit code);
// through tryCommand directly, and through the built CLI when it exists.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test, type TestContext } from 'node:test';
import { lacksCommand, lacksRoot } from '../../support/require.js';

const TRY_MODULE = fileURLToPath(new URL('../../../src/cli/try.js', import.meta.url));
const MAIN = fileURLToPath(new URL('../../../src/main.js', import.meta.url));
const isRoot = process.getuid?.() === 0;

const USERS = { accept: 62001, reject: 62002, tempfail: 62003, echo: 62004, none: 62005, crash: 62006, client: 62007 } as const;
type Who = keyof typeof USERS;
const name = (who: Who) => `pumtry-${who}`;

const FILTERS: Partial<Record<Who, string>> = {
  accept: 'cat >/dev/null\nexit 0',
  reject: 'cat >/dev/null\necho "5.7.1 pumtry says no"\necho "a second line, only logged"\nexit 1',
  tempfail: 'cat >/dev/null\necho greylisted\nexit 75',
  // The environment and the first two lines of the message, as the reply text and output.
  echo: 'first=$(head -n 2 | tr "\\n" "|")\necho "R=$RECIPIENT S=$SENDER L=$LOCAL E=$EXTENSION D=$DOMAIN U=$USER $first"\nid -u\nexit 1',
  crash: 'cat >/dev/null\nexit 3',
  client: 'cat >/dev/null\necho "A=$CLIENT_ADDRESS H=$CLIENT_HELO S=$SASL_USERNAME"\nexit 1',
};

let base = '';
let passwd = '';

before(() => {
  if (!isRoot) return;
  base = fs.mkdtempSync('/var/lib/pumtry-');
  fs.chmodSync(base, 0o755);
  fs.mkdirSync(path.join(base, 'home'), { mode: 0o755 });
  const lines: string[] = [];
  for (const [who, uid] of Object.entries(USERS) as Array<[Who, number]>) {
    const home = path.join(base, 'home', name(who));
    fs.mkdirSync(home, { mode: 0o700 });
    fs.chownSync(home, uid, uid);
    lines.push(`${name(who)}:x:${uid}:${uid}::${home}:/bin/sh`);
    const script = FILTERS[who];
    if (script !== undefined) {
      const f = path.join(home, '.user-milter');
      fs.writeFileSync(f, `#!/bin/sh\n${script}\n`, { mode: 0o755 });
      fs.chownSync(f, uid, uid);
    }
  }
  passwd = path.join(base, 'passwd');
  fs.writeFileSync(passwd, lines.join('\n') + '\n');
  fs.writeFileSync(path.join(base, 'message.eml'), 'From: someone@example.org\r\nSubject: try me\r\n\r\nHello.\r\n');
});

after(() => {
  if (!base) return;
  for (const uid of Object.values(USERS)) {
    try {
      execFileSync('pkill', ['-KILL', '-U', String(uid)], { stdio: 'ignore' });
    } catch {
      // nothing left running
    }
  }
  fs.rmSync(base, { recursive: true, force: true });
});

function needs(t: TestContext): boolean {
  return lacksRoot(t);
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `try` in a child: through tryCommand, or the built CLI (`node dist/src/main.js try …`). */
function runTry(args: string[], opts: { stdin?: string; via?: 'module' | 'cli' } = {}): Run {
  const common = ['--users.passwdFile', passwd, '--users.maxUid', '62999', '--filter.sandbox', 'setpriv', '--filter.timeout', '10000'];
  const argv =
    opts.via === 'cli'
      ? [MAIN, 'try', ...common, ...args]
      : [
          '--input-type=module',
          '-e',
          `import { tryCommand } from ${JSON.stringify(TRY_MODULE)}; process.exitCode = await tryCommand(process.argv.slice(1));`,
          '--',
          ...common,
          ...args,
        ];
  const r = spawnSync(process.execPath, argv, {
    input: opts.stdin ?? '',
    encoding: 'utf8',
    timeout: 30_000,
    // A clean, predictable environment: no PER_USER_MILTER_* from the caller.
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function field(stdout: string, key: string): string | undefined {
  return stdout.split('\n').find((l) => l.startsWith(`${key}: `))?.slice(key.length + 2);
}

const message = () => path.join(base, 'message.eml');

test('accept: exit 0, outcome and exit code printed', (t) => {
  if (needs(t)) return;
  const r = runTry(['--user', name('accept'), message()]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.equal(field(r.stdout, 'outcome'), 'accept');
  assert.equal(field(r.stdout, 'exit code'), '0');
  assert.match(field(r.stdout, 'duration') ?? '', /^\d+ ms$/);
  assert.equal(field(r.stdout, 'reply'), '(none)');
});

test('reject with text: exit 1 and the reply the milter would send', (t) => {
  if (needs(t)) return;
  const r = runTry(['--user', name('reject'), message()]);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.equal(field(r.stdout, 'outcome'), 'reject');
  assert.equal(field(r.stdout, 'exit code'), '1');
  assert.equal(field(r.stdout, 'reply'), '550 5.7.1 pumtry says no');
  assert.match(r.stdout, /a second line, only logged/);
});

test('tempfail: exit 75, 451 4.7.1 reply', (t) => {
  if (needs(t)) return;
  const r = runTry(['--user', name('tempfail'), message()]);
  assert.equal(r.status, 75, r.stdout + r.stderr);
  assert.equal(field(r.stdout, 'outcome'), 'tempfail');
  assert.equal(field(r.stdout, 'reply'), '451 4.7.1 greylisted');
});

test('standard input, the milter message form and environment, as the user', (t) => {
  if (needs(t)) return;
  const r = runTry(['--user', name('echo'), '--sender', 'boss@example.org', '--recipient', 'PUMtry-echo+Lists@Example.COM'], {
    stdin: 'Return-Path: <old@x>\nSubject: from stdin\n\nbody\n',
  });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.equal(
    field(r.stdout, 'filter text'),
    'R=PUMtry-echo+Lists@Example.COM S=boss@example.org L=pumtry-echo+lists E=lists D=example.com U=pumtry-echo ' +
      'Return-Path: <boss@example.org>|Subject: from stdin|',
  );
  assert.match(r.stdout, new RegExp(`^  ${USERS.echo}$`, 'm'), 'ran as the user');
});

test('--client-address, --helo and --sasl-username reach the filter as CLIENT_ADDRESS, CLIENT_HELO, SASL_USERNAME', (t) => {
  if (needs(t)) return;
  const r = runTry(['--user', name('client'), '--client-address', '192.0.2.25', '--helo', 'mx.example.net', '--sasl-username', 'alice@example.org', message()]);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.equal(field(r.stdout, 'filter text'), 'A=192.0.2.25 H=mx.example.net S=alice@example.org');
  const none = runTry(['--user', name('client'), message()]);
  assert.equal(field(none.stdout, 'filter text'), 'A= H= S=', 'without the options: empty, as for a local submission');
});

test('defaults: RECIPIENT NAME@localhost, sender from the message Return-Path', (t) => {
  if (needs(t)) return;
  const r = runTry(['--user', name('echo'), '-'], { stdin: 'Return-Path: <list-bounce@x.test>\nSubject: s\n\n' });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(field(r.stdout, 'filter text') ?? '', /^R=pumtry-echo@localhost S=list-bounce@x\.test L=pumtry-echo E= D=localhost /);
});

test('anything else exits 2: no filter, a crash, an unknown user, a bad option', (t) => {
  if (needs(t)) return;
  const none = runTry(['--user', name('none'), message()]);
  assert.equal(none.status, 2);
  assert.equal(field(none.stdout, 'outcome'), 'nofilter');
  const crash = runTry(['--user', name('crash'), message()]);
  assert.equal(crash.status, 2);
  assert.equal(field(crash.stdout, 'outcome'), 'error');
  assert.equal(field(crash.stdout, 'exit code'), '3');
  assert.equal(field(crash.stdout, 'reply'), '(none)', 'filter.onError=accept');
  const crashTempfail = runTry(['--user', name('crash'), '--filter.onError', 'tempfail', message()]);
  assert.equal(field(crashTempfail.stdout, 'reply'), '451 4.7.1 Message deferred by its recipients');
  const unknown = runTry(['--user', 'pumtry-nobody', message()]);
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /no user pumtry-nobody/);
  const bad = runTry(['--user', name('accept'), '--frobnicate', 'x']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown option --frobnicate/);
  const missingUser = runTry([message()]);
  assert.equal(missingUser.status, 2);
  assert.match(missingUser.stderr, /--user NAME is required/);
});

test('leaves no spool file behind', (t) => {
  if (needs(t)) return;
  const tmp = '/tmp';
  const before = fs.readdirSync(tmp).filter((n) => n.startsWith('per-user-milter-try-'));
  runTry(['--user', name('accept'), message()]);
  const afterRun = fs.readdirSync(tmp).filter((n) => n.startsWith('per-user-milter-try-'));
  assert.deepEqual(afterRun, before);
});

test('the built CLI: per-user-milter try', (t) => {
  if (needs(t)) return;
  if (!fs.existsSync(MAIN)) return t.skip('dist/src/main.js not built yet');
  const r = runTry(['--user', name('reject'), message()], { via: 'cli' });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.equal(field(r.stdout, 'reply'), '550 5.7.1 pumtry says no');
});
