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
  assert.equal(t.add(local(alice, '<alice@x>')), true);
  assert.equal(t.add(local(bob, '<bob@x>')), true);
  assert.equal(t.add(local(alice, '<Alice+lists@X>')), false);
  assert.equal(t.add({ kind: 'nonlocal', rcpt: '<z@remote>', reason: 'mailer smtp' }), false);
  assert.equal(t.localUserCount, 2);
  assert.equal(t.nonLocalCount, 1);
  const users = t.localUsers();
  assert.deepEqual(users.map((u) => [u.user.name, u.first.rcpt, u.rcpts]), [
    ['alice', '<alice@x>', ['<alice@x>', '<Alice+lists@X>']],
    ['bob', '<bob@x>', ['<bob@x>']],
  ]);
});
