import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mustSplit, type SplitQuestion } from '../../../src/policy/split.js';
import { replyLine, SPLIT_REPLY } from '../../../src/policy/reply.js';

const q = (over: Partial<SplitQuestion>): SplitQuestion => ({ mixed: 'split', filteredUsers: new Set(), acceptVotes: 0, newFiltered: [], newAcceptVotes: 0, ...over });

test('mustSplit: a second user with a filter, and (exact means exact) any accept vote beside a filtered user', () => {
  const table: Array<[string, SplitQuestion, boolean]> = [
    ['first filtered user', q({ newFiltered: ['a'] }), false],
    ['second filtered user', q({ filteredUsers: new Set(['a']), newFiltered: ['b'] }), true],
    ['same user again (nothing new)', q({ filteredUsers: new Set(['a']) }), false],
    ['a user without a filter after a filtered one', q({ filteredUsers: new Set(['a']), newAcceptVotes: 1 }), true],
    ['a non-local recipient (nonLocal=accept) after a filtered one', q({ filteredUsers: new Set(['a']), newAcceptVotes: 1 }), true],
    ['a filtered user after a user without a filter', q({ acceptVotes: 1, newFiltered: ['a'] }), true],
    ['accept votes among themselves', q({ acceptVotes: 2, newAcceptVotes: 1 }), false],
    ['one RCPT bringing both (an alias) into an empty transaction', q({ newFiltered: ['a', 'b'], newAcceptVotes: 1 }), false],
    ['deliver never splits', q({ mixed: 'deliver', filteredUsers: new Set(['a']), newFiltered: ['b'] }), false],
    ['drop-rejecters never splits', q({ mixed: 'drop-rejecters', filteredUsers: new Set(['a']), newFiltered: ['b'] }), false],
  ];
  for (const [name, question, want] of table) assert.equal(mustSplit(question), want, name);
});

test('the split reply carries the contract code (our own 451s: test/unit/errors.test.ts)', () => {
  assert.equal(replyLine(SPLIT_REPLY), '452 4.5.3 Try again in a separate transaction');
});
