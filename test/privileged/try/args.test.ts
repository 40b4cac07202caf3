// parseTryArgs needs no privileges; it lives beside the try tests it serves.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseTryArgs } from '../../../src/cli/try.js';

test('parseTryArgs: own options, config keys, one FILE', () => {
  assert.deepEqual(parseTryArgs(['--user', 'alice', '--sender=s@x', '--filter.timeout', '5000', '--config', '/etc/c.json', 'msg.eml']), {
    user: 'alice',
    sender: 's@x',
    recipient: undefined,
    clientAddress: undefined,
    helo: undefined,
    saslUsername: undefined,
    rcptStage: false,
    file: 'msg.eml',
    configFile: '/etc/c.json',
    keyArgs: ['--filter.timeout=5000'],
  });
  assert.equal(parseTryArgs(['--user', 'a', '-']).file, '-');
  assert.equal(parseTryArgs(['--user', 'a', '--recipient', 'a+x@h']).recipient, 'a+x@h');
  assert.equal(parseTryArgs(['--user', 'a']).file, undefined);
  const client = parseTryArgs(['--user', 'a', '--client-address', '2001:db8::25', '--helo=mx.example.net', '--sasl-username', 'a@example.org']);
  assert.deepEqual([client.clientAddress, client.helo, client.saslUsername], ['2001:db8::25', 'mx.example.net', 'a@example.org']);
  const rcpt = parseTryArgs(['--user', 'a', '--rcpt-stage', '--sender', 's@x']);
  assert.deepEqual([rcpt.rcptStage, rcpt.sender, rcpt.file], [true, 's@x', undefined]);
});

test('parseTryArgs: usage errors', () => {
  assert.throws(() => parseTryArgs([]), /--user NAME is required/);
  assert.throws(() => parseTryArgs(['--user', 'a', 'one', 'two']), /one FILE at most/);
  assert.throws(() => parseTryArgs(['--user', 'a', '-x']), /unknown option -x/);
  assert.throws(() => parseTryArgs(['--user', 'a', '--nope', '1']), /unknown option --nope/);
  assert.throws(() => parseTryArgs(['--user']), /needs a value/);
  assert.throws(() => parseTryArgs(['--user', 'a', '--client-address', 'mx.example.net']), /--client-address wants an IPv4 or IPv6 address/);
  assert.throws(() => parseTryArgs(['--user', 'a', '--helo']), /needs a value/);
  assert.throws(() => parseTryArgs(['--user', 'a', '--rcpt-stage', 'msg.eml']), /no FILE/);
});
