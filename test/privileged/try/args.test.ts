// parseTryArgs needs no privileges; it lives beside the try tests it serves.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseTryArgs } from '../../../src/cli/try.js';

test('parseTryArgs: own options, config keys, one FILE', () => {
  assert.deepEqual(parseTryArgs(['--user', 'alice', '--sender=s@x', '--filter.timeout', '5000', '--config', '/etc/c.json', 'msg.eml']), {
    user: 'alice',
    sender: 's@x',
    recipient: undefined,
    file: 'msg.eml',
    configFile: '/etc/c.json',
    keyArgs: ['--filter.timeout=5000'],
  });
  assert.equal(parseTryArgs(['--user', 'a', '-']).file, '-');
  assert.equal(parseTryArgs(['--user', 'a', '--recipient', 'a+x@h']).recipient, 'a+x@h');
  assert.equal(parseTryArgs(['--user', 'a']).file, undefined);
});

test('parseTryArgs: usage errors', () => {
  assert.throws(() => parseTryArgs([]), /--user NAME is required/);
  assert.throws(() => parseTryArgs(['--user', 'a', 'one', 'two']), /one FILE at most/);
  assert.throws(() => parseTryArgs(['--user', 'a', '-x']), /unknown option -x/);
  assert.throws(() => parseTryArgs(['--user', 'a', '--nope', '1']), /unknown option --nope/);
  assert.throws(() => parseTryArgs(['--user']), /needs a value/);
});
