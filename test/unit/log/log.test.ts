import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createLogger, formatMessageSummary, formatTextLine } from '../../../src/log/index.js';

const T = Date.parse('2026-11-25T10:00:00.123Z');

test('formatMessageSummary: the contract example and its variants', () => {
  const table: Array<[Parameters<typeof formatMessageSummary>[0], string]> = [
    [
      {
        from: 's@x',
        users: [
          { user: 'alice', outcome: 'reject', exit: 1, ms: 12 },
          { user: 'bob', outcome: 'accept', exit: 0, ms: 8.4 },
        ],
        action: 'reject',
        reply: '550 5.7.1 no',
      },
      'from=<s@x> alice=reject(1,12ms) bob=accept(0,8ms) action=reject reply="550 5.7.1 no"',
    ],
    [
      { from: '<>', rcpts: 3, users: [{ user: 'carol', outcome: 'nofilter', exit: null }], action: 'accept', ms: 3 },
      'from=<> rcpts=3 carol=nofilter action=accept ms=3',
    ],
    [
      {
        from: '',
        users: [{ user: 'dave', outcome: 'timeout', exit: 'SIGKILL', ms: 30001 }],
        action: 'accept',
        dryRunWouldBe: 'tempfail',
        dropped: ['<a@x>', '<b@x>'],
      },
      'from=<> dave=timeout(SIGKILL,30001ms) action=accept dry_run_would_be=tempfail dropped=<a@x>,<b@x>',
    ],
  ];
  for (const [summary, want] of table) assert.equal(formatMessageSummary(summary), want);
});

test('formatTextLine: time, level, queue id, message, fields', () => {
  const table: Array<[Record<string, unknown>, string]> = [
    [{ level: 30, time: T, pid: 1, msg: 'listening', listen: 'inet:8890@127.0.0.1' }, '2026-11-25T10:00:00Z info listening listen=inet:8890@127.0.0.1\n'],
    [{ level: 40, time: T, queueId: 'QID1', msg: 'filter output', user: 'alice', output: 'two\nlines' }, '2026-11-25T10:00:00Z warn QID1: filter output user=alice output="two\\nlines"\n'],
    [{ level: 50, time: T, msg: 'spool failed', err: { type: 'Error', message: 'ENOSPC: no space', stack: 'x' } }, '2026-11-25T10:00:00Z error spool failed err="ENOSPC: no space"\n'],
    [{ level: 20, time: T, msg: 'x', n: 3, ok: true, list: [1, 2] }, '2026-11-25T10:00:00Z debug x n=3 ok=true list=[1,2]\n'],
    [
      {
        level: 30,
        time: T,
        event: 'message',
        queueId: 'QID123',
        from: 's@x',
        users: [{ user: 'alice', outcome: 'reject', exit: 1, ms: 12 }],
        action: 'reject',
        reply: '550 5.7.1 …',
        msg: 'message',
      },
      '2026-11-25T10:00:00Z info QID123: from=<s@x> alice=reject(1,12ms) action=reject reply="550 5.7.1 …"\n',
    ],
  ];
  for (const [record, want] of table) assert.equal(formatTextLine(record), want);
});

function capture(format: 'text' | 'json', level: 'info' | 'debug' = 'info') {
  const lines: string[] = [];
  const log = createLogger({ level, format, destination: { write: (l: string) => lines.push(l) } });
  return { log, lines };
}

test('createLogger text: one line per event, level filtering', () => {
  const { log, lines } = capture('text');
  log.debug('hidden');
  log.info({ queueId: 'Q1', user: 'alice' }, 'hello world');
  log.child({ conn: 7 }).warn('child line');
  assert.equal(lines.length, 2);
  assert.match(lines[0] ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ info Q1: hello world user=alice\n$/);
  assert.match(lines[1] ?? '', / warn child line conn=7\n$/);
});

test('createLogger json: pino JSON lines with ISO time and serialized errors', () => {
  const { log, lines } = capture('json', 'debug');
  log.debug({ err: new Error('boom') }, 'failed');
  assert.equal(lines.length, 1);
  const rec = JSON.parse(lines[0] ?? '') as Record<string, unknown>;
  assert.equal(rec.level, 20);
  assert.equal(rec.msg, 'failed');
  assert.match(String(rec.time), /^\d{4}-\d\d-\d\dT/);
  assert.equal((rec.err as { message: string }).message, 'boom');
  assert.match((rec.err as { stack: string }).stack, /boom/);
});

test('lines written just before process.exit are not lost (fd destination)', () => {
  const logger = fileURLToPath(new URL('../../../src/log/logger.js', import.meta.url));
  for (const format of ['text', 'json']) {
    const script = `
      import { createLogger } from ${JSON.stringify(logger)};
      const log = createLogger({ level: 'info', format: ${JSON.stringify(format)}, destination: 1 });
      for (let i = 0; i < 2000; i++) log.info({ i }, 'line');
      process.exit(3);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', maxBuffer: 1 << 24 });
    assert.equal(r.status, 3, r.stderr);
    const lines = r.stdout.split('\n').filter(Boolean);
    assert.equal(lines.length, 2000, format);
    assert.ok((lines[1999] ?? '').includes('1999'), format);
  }
});
