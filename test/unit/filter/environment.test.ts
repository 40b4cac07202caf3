import { test } from 'node:test';
import assert from 'node:assert/strict';
import { filterEnvironment, textOfBytes } from '../../../src/filter/environment.js';
import type { EnvelopeFacts } from '../../../src/filter/job.js';
import { parseTryArgs } from '../../../src/cli/try.js';
import { asciiLower } from '../../../src/recipients/address.js';

/** What the milter codec makes of bytes on the wire: one character per byte. */
const wire = (text: string): string => Buffer.from(text, 'utf8').toString('latin1');

test('bytes become text once, at the filter environment: valid UTF-8 as it came, invalid bytes dropped', () => {
  assert.equal(textOfBytes(wire('josé@example.org')), 'josé@example.org', 'not josÃ©');
  assert.equal(textOfBytes(wire('用户@例子.广告')), '用户@例子.广告');
  assert.equal(textOfBytes(wire('emoji-😀@x')), 'emoji-😀@x');
  assert.equal(textOfBytes('plain@example.org'), 'plain@example.org');
  assert.equal(textOfBytes('a\xffb\xc3c'), 'abc', 'stray bytes and a truncated sequence are dropped');
  assert.equal(textOfBytes('\xc0\xafx'), 'x', 'an overlong form is not a character');
  assert.equal(textOfBytes('\xed\xa0\x80y'), 'y', 'a UTF-16 surrogate is not a character');
  assert.equal(textOfBytes('already text: ü€'), 'already text: ü€', 'a string with characters above U+00FF is text already');
  const envelope = {
    SENDER: wire('josé@example.org'), RECIPIENT: 'alice@x.test', LOCAL: 'alice', EXTENSION: '', DOMAIN: 'x.test',
    CLIENT_ADDRESS: '192.0.2.1', CLIENT_HOSTNAME: wire('hôte.example'), CLIENT_HELO: 'helo\x01\x7f', CLIENT_PROTOCOL: 'ESMTP', QUEUE_ID: 'Q', SASL_METHOD: '', SASL_USERNAME: wire('jürgen'),
  } satisfies EnvelopeFacts;
  const env = filterEnvironment({ name: 'alice', uid: 5001, gid: 5001, groups: [5001], home: '/home/alice', shell: '/bin/sh' }, envelope);
  assert.equal(env.SENDER, 'josé@example.org');
  assert.equal(env.CLIENT_HOSTNAME, 'hôte.example');
  assert.equal(env.SASL_USERNAME, 'jürgen');
  assert.equal(env.CLIENT_HELO, 'helo', 'control characters removed');
});

test('try encodes its arguments the way the milter receives them', () => {
  const a = parseTryArgs(['--user', 'alice', '--sender', 'josé@example.org', '--recipient', 'Jürgen@x.test']);
  assert.equal(a.sender, wire('josé@example.org'));
  assert.equal(textOfBytes(a.sender ?? ''), 'josé@example.org');
  assert.equal(a.recipient, wire('Jürgen@x.test'));
});

test('asciiLower leaves the bytes of a UTF-8 address alone', () => {
  assert.equal(textOfBytes(asciiLower(wire('JOSÉ@Example.ORG'))), 'josÉ@example.org');
  assert.notEqual(textOfBytes(wire('JOSÉ').toLowerCase()), 'josÉ', 'String#toLowerCase would have broken it');
});
