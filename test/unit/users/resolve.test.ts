// The user resolver against a passwd(5) file (and its group file), its
// cache, and NSS for accounts every system has.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { PumError } from '../../../src/errors.js';
import { createUserResolver, groupsFromGroupFile, isPlausibleUserName, parsePasswdLine, type LookupResult } from '../../../src/users/resolve.js';

function tmpdir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'pum-users-'));
}

const PASSWD = [
  'root:x:0:0:root:/root:/bin/bash',
  'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin',
  'alice:x:1001:1001:Alice:/home/alice:/bin/bash',
  'bob:x:1002:100::/home/bob:',
  'broken line',
  'carol:x:notanumber:1:c:/home/carol:/bin/sh',
  '',
].join('\n');

const GROUP = ['users:x:100:alice,bob', 'mail:x:8:alice', 'alice:x:1001:', 'bogus'].join('\n');

test('parsePasswdLine: fields, empty shell defaults to /bin/sh, malformed lines are null', () => {
  assert.deepEqual(parsePasswdLine('bob:x:1002:100::/home/bob:'), {
    name: 'bob', uid: 1002, gid: 100, groups: [100], home: '/home/bob', shell: '/bin/sh',
  });
  assert.equal(parsePasswdLine('broken line'), null);
  assert.equal(parsePasswdLine('carol:x:nan:1:c:/home/carol:/bin/sh'), null);
  assert.equal(parsePasswdLine('dave:x:5:5:d:relative/home:/bin/sh'), null);
});

test('groupsFromGroupFile: gids whose member list names the user', () => {
  assert.deepEqual(groupsFromGroupFile(GROUP, 'alice'), [100, 8]);
  assert.deepEqual(groupsFromGroupFile(GROUP, 'bob'), [100]);
  assert.deepEqual(groupsFromGroupFile(GROUP, 'nobody'), []);
});

test('isPlausibleUserName (lookups and recipient classification): refuses numeric names (getent would read a uid), options, deliveries to files and programs, odd bytes', () => {
  for (const ok of ['alice', 'a.b', 'a_b-c', 'machine$', 'pumrun-a']) assert.equal(isPlausibleUserName(ok), true, ok);
  for (const bad of ['', '1000', '-x', 'a b', 'a/b', 'a:b', 'x'.repeat(65), 'é', '.', '..', 'a$b', '/var/mail/x', '|/bin/prog', ':include:/x', 'a\nb']) {
    assert.equal(isPlausibleUserName(bad), false, JSON.stringify(bad));
  }
});

test('passwd file: lookup, supplementary groups from the group file beside it, root and low uids refused', async () => {
  const dir = tmpdir();
  try {
    fs.writeFileSync(path.join(dir, 'passwd'), PASSWD);
    fs.writeFileSync(path.join(dir, 'group'), GROUP);
    const r = createUserResolver({ passwdFile: path.join(dir, 'passwd'), minUid: 1000 });
    assert.deepEqual(await r.lookup('alice'), {
      name: 'alice', uid: 1001, gid: 1001, groups: [1001, 100, 8], home: '/home/alice', shell: '/bin/bash',
    });
    assert.deepEqual((await r.lookup('bob'))?.groups, [100]);
    assert.equal(await r.lookup('root'), null);
    assert.equal(await r.lookup('daemon'), null);
    assert.equal(await r.lookup('nosuch'), null);
    assert.equal(await r.lookup('1001'), null);
    const low = createUserResolver({ passwdFile: path.join(dir, 'passwd'), minUid: 1002 });
    assert.equal(await low.lookup('alice'), null);
    assert.equal((await low.lookup('bob'))?.uid, 1002);
    // users.maxUid: above it (nobody, 65534) never local.
    const capped = createUserResolver({ passwdFile: path.join(dir, 'passwd'), minUid: 1000, maxUid: 1001 });
    assert.equal((await capped.lookup('alice'))?.uid, 1001, 'at maxUid: local');
    assert.equal(await capped.lookup('bob'), null, 'above maxUid: not local');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('passwd file without a group file: primary group only', async () => {
  const dir = tmpdir();
  try {
    fs.writeFileSync(path.join(dir, 'users.passwd'), PASSWD);
    const r = createUserResolver({ passwdFile: path.join(dir, 'users.passwd'), minUid: 1000 });
    assert.deepEqual((await r.lookup('alice'))?.groups, [1001]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('answers, negative ones too, are cached for ttlMs, then looked up again', async () => {
  const dir = tmpdir();
  try {
    const file = path.join(dir, 'passwd');
    fs.writeFileSync(file, PASSWD);
    let now = 1_000_000;
    const r = createUserResolver({ passwdFile: file, minUid: 1000, ttlMs: 60_000, now: () => now });
    assert.equal(await r.lookup('erin'), null);
    assert.equal((await r.lookup('alice'))?.home, '/home/alice');
    fs.writeFileSync(file, PASSWD.replace('/home/alice', '/srv/alice') + 'erin:x:1005:1005::/home/erin:/bin/sh\n');
    fs.utimesSync(file, new Date(), new Date(Date.now() + 5000));
    now += 59_000;
    assert.equal(await r.lookup('erin'), null, 'negative answer still cached');
    assert.equal((await r.lookup('alice'))?.home, '/home/alice', 'positive answer still cached');
    now += 2_000;
    assert.equal((await r.lookup('erin'))?.uid, 1005);
    assert.equal((await r.lookup('alice'))?.home, '/srv/alice');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an unreadable passwd file rejects with PUM_ERR_USER_LOOKUP (the caller tempfails), is not cached, and is counted as an error', async () => {
  const dir = tmpdir();
  try {
    const file = path.join(dir, 'passwd');
    const results: LookupResult[] = [];
    const r = createUserResolver({ passwdFile: file, minUid: 1000, onLookup: (x) => results.push(x) });
    const lookupError = (err: unknown) => err instanceof PumError && err.code === 'PUM_ERR_USER_LOOKUP' && /ENOENT/.test(err.message);
    await assert.rejects(r.lookup('alice'), lookupError);
    await assert.rejects(r.lookup('alice'), lookupError);
    // A directory where the file should be: an error too, never "no such user".
    fs.mkdirSync(file);
    await assert.rejects(r.lookup('alice'), (err: unknown) => err instanceof PumError && err.code === 'PUM_ERR_USER_LOOKUP' && /EISDIR/.test(err.message));
    fs.rmdirSync(file);
    // Back: found, and the failures were not cached.
    fs.writeFileSync(file, PASSWD);
    assert.equal((await r.lookup('alice'))?.uid, 1001);
    assert.deepEqual(results, ['error', 'error', 'error', 'found']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('user_lookups_total results: what the directory said (found, also for an account refused for its uid; unknown), nothing for cache hits or implausible names', async () => {
  const dir = tmpdir();
  try {
    const file = path.join(dir, 'passwd');
    fs.writeFileSync(file, PASSWD);
    const results: LookupResult[] = [];
    const r = createUserResolver({ passwdFile: file, minUid: 1000, onLookup: (x) => results.push(x) });
    await r.lookup('alice');
    await r.lookup('alice');
    await r.lookup('nosuch');
    await r.lookup('daemon');
    await r.lookup('1001');
    assert.deepEqual(results, ['found', 'unknown', 'found']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('NSS: root is refused, an unknown name is null, nobody (65534) resolves with its groups', async () => {
  const r = createUserResolver({ passwdFile: '', minUid: 1000 });
  assert.equal(await r.lookup('root'), null);
  assert.equal(await r.lookup('pum-no-such-user-xyz'), null);
  const nobody = await r.lookup('nobody');
  assert.ok(nobody, 'nobody exists on Debian');
  assert.equal(nobody.uid, 65534);
  assert.ok(nobody.groups.includes(nobody.gid));
  const strict = createUserResolver({ passwdFile: '', minUid: 65535 });
  assert.equal(await strict.lookup('nobody'), null);
});
