import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { UserAccount } from '../../../src/users/user.js';
import type { LocalRecipient } from '../../../src/recipients/classify.js';
import { TransactionRecipients } from '../../../src/recipients/transaction.js';

const alice: UserAccount = { name: 'alice', uid: 1001, gid: 1001, groups: [], home: '/home/alice', shell: '/bin/sh' };
const bob: UserAccount = { ...alice, name: 'bob', uid: 1002 };

function local(user: UserAccount, rcpt: string): LocalRecipient {
  return { kind: 'local', user, rcpt, address: rcpt.slice(1, -1), localPart: user.name, extension: '', domain: 'x' };
}

test('a user reached twice is asked once but keeps every RCPT', () => {
  const t = new TransactionRecipients();
  assert.deepEqual(t.add(local(alice, '<alice@x>')), [alice]);
  assert.deepEqual(t.add(local(bob, '<bob@x>')), [bob]);
  assert.deepEqual(t.add(local(alice, '<Alice+lists@X>')), []);
  assert.deepEqual(t.add({ kind: 'nonlocal', rcpt: '<z@remote>', reason: 'mailer smtp' }), []);
  assert.equal(t.localUserCount, 2);
  assert.equal(t.nonLocalCount, 1);
  const users = t.localUsers();
  assert.deepEqual(t.filteredUsers(), new Set(), 'no filter state given: no say');
  assert.equal(t.unfilteredCount, 2);
  assert.deepEqual(users.map((u) => [u.user.name, u.first.rcpt, u.rcpts]), [
    ['alice', '<alice@x>', ['<alice@x>', '<Alice+lists@X>']],
    ['bob', '<bob@x>', ['<bob@x>']],
  ]);
});

test('an alias RCPT reaches each user behind it; with non-local targets it is kept and they vote', () => {
  const t = new TransactionRecipients();
  const carol: UserAccount = { ...alice, name: 'carol', uid: 1003 };
  assert.deepEqual(t.add({ kind: 'alias', rcpt: '<team@x>', locals: [local(alice, '<team@x>'), local(bob, '<team@x>')], nonLocalTargets: 0 }), [alice, bob]);
  assert.deepEqual(t.add(local(alice, '<alice@x>')), []);
  assert.deepEqual(t.add({ kind: 'alias', rcpt: '<mixed@x>', locals: [local(carol, '<mixed@x>')], nonLocalTargets: 2 }), [carol]);
  assert.deepEqual(t.localUsers().map((u) => [u.user.name, u.rcpts]), [['alice', ['<team@x>', '<alice@x>']], ['bob', ['<team@x>']], ['carol', ['<mixed@x>']]]);
  assert.equal(t.nonLocalCount, 2);
  assert.deepEqual([...t.keptRcpts], ['<mixed@x>']);
});

test('each user keeps the filter state of their first RCPT', () => {
  const t = new TransactionRecipients();
  t.add(local(alice, '<alice@x>'), new Map([['alice', true]]));
  t.add(local(bob, '<bob@x>'), new Map([['bob', false]]));
  t.add(local(alice, '<alice+y@x>'), new Map([['alice', false]]));
  assert.deepEqual(t.filteredUsers(), new Set(['alice']));
  assert.equal(t.unfilteredCount, 1);
  assert.equal(t.user('alice')?.hasFilter, true);
  assert.equal(t.user('carol'), undefined);
});
