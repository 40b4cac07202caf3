// The start-up checks (src/cli/startup-checks.ts): each thing serve would
// trip on at start is found before it starts, as one line naming the key.
// No root needed: the privilege question is a parameter.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { registerStartupCheck, registeredChecks, runStartupChecks, type CheckContext } from '../../../src/config/checks.js';
import { loadConfig } from '../../../src/config/load.js';
import type { Config } from '../../../src/config/schema.js';
import '../../../src/cli/startup-checks.js';

const me = process.getuid?.() ?? 0;
const unprivileged: CheckContext = { switchUsers: false, root: false, uid: me, env: {} };
const privileged: CheckContext = { switchUsers: true, root: me === 0, uid: me, env: {} };

function dir(t: TestContext): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pum-checks-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

function config(args: string[]): Config {
  return loadConfig({ env: {}, args }).config;
}

async function errors(args: string[], ctx: CheckContext = unprivileged): Promise<string[]> {
  return (await runStartupChecks(config(args), ctx, registeredChecks())).filter((f) => f.severity === 'error').map((f) => f.text);
}

test('the built-in defaults pass (serve starts on a fresh machine), with a warning when users cannot be switched', async () => {
  const f = await runStartupChecks(config([]), unprivileged, registeredChecks());
  assert.deepEqual(f.filter((x) => x.severity === 'error'), []);
  assert.ok(f.some((x) => x.severity === 'warning' && /cannot switch users/.test(x.text)), JSON.stringify(f));
  const p = await runStartupChecks(config([]), privileged, registeredChecks());
  assert.deepEqual(p.filter((x) => x.severity === 'error'), []);
  assert.ok(!p.some((x) => /cannot switch users/.test(x.text)));
});

test('a malformed recipients.map, a missing one', async (t) => {
  const d = dir(t);
  const map = path.join(d, 'map');
  fs.writeFileSync(map, 'info@example.org alice\nthis line has three\n');
  assert.deepEqual(await errors([`--recipients.map=${map}`]), [`recipients.map: ${map}:2: expected "address-or-localpart username", got "this line has three"`]);
  assert.deepEqual(await errors([`--recipients.map=${d}/none`]), [`recipients.map: ${d}/none: no such file`]);
  fs.writeFileSync(map, '# ok\ninfo alice\n');
  assert.deepEqual(await errors([`--recipients.map=${map}`]), []);
});

test('users.passwdFile missing or not passwd(5); minUid above maxUid', async (t) => {
  const d = dir(t);
  const pw = path.join(d, 'passwd');
  assert.deepEqual(await errors([`--users.passwdFile=${pw}`]), [`users.passwdFile: ${pw}: no such file`]);
  fs.writeFileSync(pw, 'alice:x:1001:1001::/home/alice:/bin/sh\n# comment\nbroken line\n\nbob:x:notanumber:1::/home/bob:/bin/sh\n');
  // (Under a temporary directory the trust finding below comes too: not this test's subject.)
  const e = (await errors([`--users.passwdFile=${pw}`])).filter((x) => !/writable by root alone/.test(x));
  assert.equal(e.length, 1);
  assert.match(e[0] ?? '', /^users\.passwdFile: .*: not a passwd\(5\) line .* at line 3, 5$/);
  assert.deepEqual(await errors(['--users.minUid=5000', '--users.maxUid=4000']), ['users.minUid (5000) is above users.maxUid (4000): nobody would get a filter run']);
});

test('users.passwdFile and the group file beside it must be root\'s and writable by root alone, every directory above too (review N1)', async (t) => {
  const d = dir(t);
  const pw = path.join(d, 'passwd');
  fs.writeFileSync(pw, 'alice:x:1001:1001::/home/alice:/bin/sh\n', { mode: 0o644 });
  // os.tmpdir() is world-writable (sticky or not, that is not enough), or the directory is not root's.
  assert.match((await errors([`--users.passwdFile=${pw}`])).join('\n'), /^users\.passwdFile: .* is (writable by group or others|not owned by root) \(.*writable by root alone/m);
  if (me !== 0) return;
  const safe = fs.mkdtempSync('/var/lib/pum-checks-');
  t.after(() => fs.rmSync(safe, { recursive: true, force: true }));
  fs.chmodSync(safe, 0o755);
  const pw2 = path.join(safe, 'passwd');
  fs.writeFileSync(pw2, 'alice:x:1001:1001::/home/alice:/bin/sh\n', { mode: 0o644 });
  assert.deepEqual(await errors([`--users.passwdFile=${pw2}`]), []);
  fs.writeFileSync(path.join(safe, 'group'), 'staff:x:50:alice\n', { mode: 0o666 });
  fs.chmodSync(path.join(safe, 'group'), 0o666);
  assert.deepEqual(await errors([`--users.passwdFile=${pw2}`]), [
    `users.passwdFile: ${safe}/group is writable by group or others (${pw2}, the group file beside it and every directory above must be root's and writable by root alone: they decide every user's groups)`,
  ]);
});

test('exit-code lists: no overlap, and 0 is never a reject or tempfail', async () => {
  assert.deepEqual(await errors(['--filter.exitCodes.reject=1,75']), ['filter.exitCodes: 75 in both reject and tempfail; an exit code has one meaning']);
  const zero = await errors(['--filter.exitCodes.reject=0,1']);
  assert.equal(zero.length, 1);
  assert.match(zero[0] ?? '', /^filter\.exitCodes\.reject contains 0/);
  assert.match((await errors(['--filter.exitCodes.tempfail=0']))[0] ?? '', /^filter\.exitCodes\.tempfail contains 0/);
});

test('the spool directory: can it be made, is it ours, and where the default goes', async (t) => {
  const d = dir(t);
  assert.deepEqual(await errors([`--spool.dir=${d}/a/b/spool`]), []);
  fs.writeFileSync(path.join(d, 'file'), '');
  assert.match((await errors([`--spool.dir=${d}/file`]))[0] ?? '', /exists and is not a directory/);
  if (me === 0) {
    // Owned by somebody else: the milter must not share its spool.
    const other = path.join(d, 'other');
    fs.mkdirSync(other);
    fs.chownSync(other, 65534, 65534);
    assert.match((await errors([`--spool.dir=${other}`]))[0] ?? '', /is owned by uid 65534, not by the milter/);
  } else {
    assert.match((await errors(['--spool.dir=/proc/pum-spool']))[0] ?? '', /^spool\.dir: cannot make \/proc\/pum-spool/);
  }
  // Under systemd the default is $RUNTIME_DIRECTORY/spool.
  const rt = path.join(d, 'run');
  fs.mkdirSync(rt);
  const f = await runStartupChecks(config([]), { ...unprivileged, env: { RUNTIME_DIRECTORY: rt } }, registeredChecks());
  assert.deepEqual(f.filter((x) => x.severity === 'error'), []);
});

test('sandbox none is refused when the milter can switch users', async () => {
  assert.deepEqual(await errors(['--filter.sandbox=none'], unprivileged), []);
  const e = await errors(['--filter.sandbox=none'], privileged);
  assert.equal(e.length, 1);
  assert.match(e[0] ?? '', /^filter\.sandbox=none is refused when the milter can switch users/);
});

test('filter.default must exist and be root-owned and writable by root only; the socket directory must exist', async (t) => {
  const d = dir(t);
  const prog = path.join(d, 'site-filter');
  assert.match((await errors([`--filter.default=${prog}`]))[0] ?? '', /^filter\.default: .*: no such file$/);
  fs.writeFileSync(prog, '#!/bin/sh\nexit 0\n', { mode: 0o777 });
  fs.chmodSync(prog, 0o777);
  const e = await errors([`--filter.default=${prog}`]);
  assert.ok(e.some((l) => /writable by group or others \(mode 777\)/.test(l)), e.join('\n'));
  if (me !== 0) assert.ok(e.some((l) => /must be owned by root/.test(l)), e.join('\n'));
  fs.chmodSync(prog, 0o755);
  if (me === 0) assert.deepEqual(await errors([`--filter.default=${prog}`]), []);
  assert.match((await errors([`--milter.listen=unix:${d}/missing/milter.sock`]))[0] ?? '', /^milter\.listen: the socket directory .*missing: no such file/);
  assert.deepEqual(await errors([`--milter.listen=unix:${d}/milter.sock`]), []);
});

test('modules register checks of their own; a check that throws is a finding, not a crash', async () => {
  registerStartupCheck({ name: 'test.tables', run: async (c) => (c.recipients.aliasMaps.length > 0 ? [{ severity: 'error', text: 'recipients.aliasMaps: hash:/x does not answer' }] : []) });
  registerStartupCheck({ name: 'test.broken', run: () => { throw new Error('boom'); } });
  try {
    const e = await errors(['--recipients.aliasMaps=hash:/x']);
    assert.ok(e.includes('recipients.aliasMaps: hash:/x does not answer'), e.join('\n'));
    assert.ok(e.includes('test.broken: the check itself failed: boom'), e.join('\n'));
  } finally {
    // Leave the registry as the other tests found it.
    const list = registeredChecks() as unknown as Array<{ name: string }>;
    for (const n of ['test.tables', 'test.broken']) list.splice(list.findIndex((c) => c.name === n), 1);
  }
});

test('recipients.aliasMaps: every table must answer; a malformed entry is named', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pum-check-aliases-'));
  try {
    const file = path.join(dir, 'aliases');
    fs.writeFileSync(file, 'team: alice\n');
    assert.deepEqual(await errors(['--recipients.aliasMaps', `aliases:${file}`]), []);
    assert.deepEqual(await errors(['--recipients.aliasMaps', `aliases:${path.join(dir, 'missing')}`]), [`recipients.aliasMaps: aliases:${path.join(dir, 'missing')}: ENOENT`]);
    assert.match((await errors(['--recipients.aliasMaps', 'no-type-here']))[0] ?? '', /^recipients\.aliasMaps: "no-type-here": expected TYPE:NAME/);
    assert.match((await errors(['--recipients.aliasMaps', 'aliases:relative/path']))[0] ?? '', /must be an absolute path/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
