// The StrictModes rules on stat data, and the directory walk.
import assert from 'node:assert/strict';
import type fs from 'node:fs';
import { test } from 'node:test';
import { ancestors, unsafeDirReason, unsafeFileReason } from '../../../src/filter/checks.js';
import type { UserAccount } from '../../../src/users/user.js';

const u: UserAccount = { name: 'u', uid: 1001, gid: 1001, groups: [1001, 50], home: '/home/u', shell: '/bin/sh' };
const st = (mode: number, uid: number, gid = uid, file = true) =>
  ({ mode, uid, gid, isFile: () => file, isDirectory: () => !file }) as unknown as fs.Stats;

test('ancestors: from / down to the parent', () => {
  assert.deepEqual(ancestors('/home/u/.user-milter'), ['/', '/home', '/home/u']);
  assert.deepEqual(ancestors('/f'), ['/']);
});

test('directories: root or the user may own them; nobody else may write', () => {
  assert.equal(unsafeDirReason('/home', st(0o40755, 0), u), null);
  assert.equal(unsafeDirReason('/home/u', st(0o40700, 1001), u), null);
  assert.match(unsafeDirReason('/home/u', st(0o40755, 1002), u) ?? '', /owned by uid 1002/);
  assert.match(unsafeDirReason('/d', st(0o40775, 0), u) ?? '', /group-writable/);
  assert.match(unsafeDirReason('/tmp', st(0o41777, 0), u) ?? '', /world-writable/);
  // The user must be able to pass through (the checks run as root).
  assert.match(unsafeDirReason('/root', st(0o40700, 0), u) ?? '', /not searchable by u/);
  assert.equal(unsafeDirReason('/srv/g', st(0o40750, 0, 50), u), null, 'searchable through a supplementary group');
});

test('the file: regular, owned by the user or root, not group/world-writable, executable by the user', () => {
  assert.equal(unsafeFileReason('f', st(0o100700, 1001), u), null);
  assert.equal(unsafeFileReason('f', st(0o100755, 0), u), null);
  assert.equal(unsafeFileReason('f', st(0o100750, 0, 50), u), null, 'root-owned, executable through a supplementary group');
  assert.match(unsafeFileReason('f', st(0o100700, 0), u) ?? '', /not executable/);
  assert.match(unsafeFileReason('f', st(0o100644, 1001), u) ?? '', /not executable/);
  assert.match(unsafeFileReason('f', st(0o100775, 1001), u) ?? '', /group-writable/);
  assert.match(unsafeFileReason('f', st(0o100757, 1001), u) ?? '', /world-writable/);
  assert.match(unsafeFileReason('f', st(0o100755, 1002), u) ?? '', /owned by uid 1002/);
  assert.match(unsafeFileReason('f', st(0o40755, 1001, 1001, false), u) ?? '', /not a regular file/);
});
