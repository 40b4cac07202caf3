import { test } from 'node:test';
import assert from 'node:assert/strict';
import { headerLine, returnPathLine } from '../../../src/spool/header.js';

test('headerLine: folding, line endings, leading space', () => {
  const table: Array<[string, string, 'lf' | 'crlf', boolean, string]> = [
    ['Subject', 'hello', 'lf', false, 'Subject: hello\n'],
    ['Subject', 'hello', 'crlf', false, 'Subject: hello\r\n'],
    ['Subject', ' hello', 'lf', true, 'Subject: hello\n'],
    ['Subject', '  two spaces', 'lf', true, 'Subject:  two spaces\n'],
    ['Subject', 'nospace', 'lf', true, 'Subject:nospace\n'],
    ['Received', 'from a\n\tby b\n    for c', 'lf', false, 'Received: from a\n\tby b\n    for c\n'],
    ['Received', 'from a\n\tby b', 'crlf', false, 'Received: from a\r\n\tby b\r\n'],
    ['Received', 'from a\r\n\tby b', 'lf', false, 'Received: from a\n\tby b\n'],
    ['X-Empty', '', 'lf', false, 'X-Empty: \n'],
  ];
  for (const [name, value, eol, lead, want] of table) {
    assert.equal(headerLine(name, value, { lineEndings: eol, leadingSpace: lead }).toString('latin1'), want, `${name} ${JSON.stringify(value)}`);
  }
});

test('headerLine keeps 8-bit bytes exactly', () => {
  const value = Buffer.from('Grüße', 'utf8');
  const line = headerLine('Subject', value, { lineEndings: 'lf', leadingSpace: false });
  assert.deepEqual(line, Buffer.concat([Buffer.from('Subject: '), value, Buffer.from('\n')]));
});

test('returnPathLine', () => {
  assert.equal(returnPathLine('s@x', 'lf').toString(), 'Return-Path: <s@x>\n');
  assert.equal(returnPathLine('<s@x>', 'crlf').toString(), 'Return-Path: <s@x>\r\n');
  assert.equal(returnPathLine('', 'lf').toString(), 'Return-Path: <>\n');
  assert.equal(returnPathLine('<>', 'lf').toString(), 'Return-Path: <>\n');
});
