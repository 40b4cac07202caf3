import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAddress, rcptAddrUser, splitExtension, stripBrackets } from '../../../src/recipients/address.js';

test('parseAddress: brackets, source routes, domains', () => {
  const table: Array<[string, string, string, string]> = [
    ['<Alice+lists@Example.ORG>', 'Alice+lists@Example.ORG', 'Alice+lists', 'Example.ORG'],
    ['alice@example.org', 'alice@example.org', 'alice', 'example.org'],
    ['<alice>', 'alice', 'alice', ''],
    ['<postmaster>', 'postmaster', 'postmaster', ''],
    ['<@relay.example,@b.example:bob@x.test>', 'bob@x.test', 'bob', 'x.test'],
    ['<"odd@name"@x.test>', '"odd@name"@x.test', '"odd@name"', 'x.test'],
    ['<bob@x.test.>', 'bob@x.test.', 'bob', 'x.test'],
    ['<>', '', '', ''],
    [' <carol@y> ', 'carol@y', 'carol', 'y'],
  ];
  for (const [arg, address, localPart, domain] of table) {
    assert.deepEqual(parseAddress(arg), { address, localPart, domain }, arg);
  }
});

test('splitExtension: first of any delimiter character', () => {
  const table: Array<[string, string, string, string]> = [
    ['alice+lists', '+', 'alice', 'lists'],
    ['alice+a+b', '+', 'alice', 'a+b'],
    ['alice-lists', '+', 'alice-lists', ''],
    ['alice-lists+x', '+-', 'alice', 'lists+x'],
    ['alice+', '+', 'alice', ''],
    ['+alice', '+', '+alice', ''],
    ['alice+lists', '', 'alice+lists', ''],
    ['alice', '+', 'alice', ''],
  ];
  for (const [local, delim, base, extension] of table) {
    assert.deepEqual(splitExtension(local, delim), { base, extension }, `${local} / ${delim}`);
  }
});

test('rcptAddrUser: Postfix user@domain and Sendmail bare user', () => {
  assert.equal(rcptAddrUser('pumtest-alice@example.test'), 'pumtest-alice');
  assert.equal(rcptAddrUser('pumtest-alice'), 'pumtest-alice');
  assert.equal(rcptAddrUser('<alice@x>'), 'alice');
  assert.equal(rcptAddrUser('\\alice'), 'alice');
});

test('stripBrackets', () => {
  assert.equal(stripBrackets('<a@b>'), 'a@b');
  assert.equal(stripBrackets(' <> '), '');
  assert.equal(stripBrackets('a@b'), 'a@b');
  assert.equal(stripBrackets('< a@b >'), 'a@b');
  assert.equal(stripBrackets('<a@b'), '<a@b');
});
