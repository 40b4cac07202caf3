import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mustSplit } from '../../../src/policy/split.js';
import { SPLIT_REPLY } from '../../../src/policy/reply.js';

test('mustSplit: only a second, different user with a filter under split', () => {
  const table: Array<[string, Parameters<typeof mustSplit>[0], boolean]> = [
    ['first filtered user', { mixed: 'split', filteredUsers: new Set(), user: 'a', hasFilter: true }, false],
    ['second filtered user', { mixed: 'split', filteredUsers: new Set(['a']), user: 'b', hasFilter: true }, true],
    ['same user again', { mixed: 'split', filteredUsers: new Set(['a']), user: 'a', hasFilter: true }, false],
    ['user without filter', { mixed: 'split', filteredUsers: new Set(['a']), user: 'b', hasFilter: false }, false],
    ['deliver never splits', { mixed: 'deliver', filteredUsers: new Set(['a']), user: 'b', hasFilter: true }, false],
    ['drop-rejecters never splits', { mixed: 'drop-rejecters', filteredUsers: new Set(['a']), user: 'b', hasFilter: true }, false],
  ];
  for (const [name, q, want] of table) assert.equal(mustSplit(q), want, name);
});

test('the split reply carries the contract code (our own 451s: test/unit/errors.test.ts)', () => {
  assert.equal(SPLIT_REPLY, '452 4.5.3 Try again in a separate transaction');
});
