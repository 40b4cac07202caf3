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

// ---- a sender must not forge fields or lines ------------------------------

/** Reads a text line back the way a log parser would: words, key=value, "quoted \"values\"". */
function fieldsOf(line: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const re = /([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)|(\S+)/g;
  for (const m of line.matchAll(re)) {
    if (m[1] === undefined) continue;
    const raw = m[2] ?? '';
    out.push([m[1], raw.startsWith('"') ? (JSON.parse(raw.replace(/\\u([0-9a-f]{4})/g, '\\u$1')) as string) : raw]);
  }
  return out;
}

const HOSTILE_SENDERS = [
  'evil@x.test> action=accept reply="250 ok',
  'a@b\r\n2026-11-25T10:00:00Z info FAKEQID: from=<boss@corp> action=reject',
  'quote"in@side',
  'back\\slash@x',
  'tab\there@x',
  'nul\u0000bel\u0007del\u007fcsi\u009b@x',
  'line\u2028sep@x',
  'key=value@x',
  'ünïcödé@例え.jp',
];

test('text: a hostile sender stays inside its own from= field, on one line', () => {
  for (const from of HOSTILE_SENDERS) {
    const line = formatTextLine({
      level: 30, time: T, event: 'message', queueId: 'Q1', from,
      users: [{ user: 'alice', outcome: 'reject', exit: 1, ms: 3 }], action: 'reject', reply: `550 5.7.1 no "${from}"`, msg: 'message',
    });
    assert.equal(line.split('\n').length, 2, `one line: ${JSON.stringify(line)}`);
    assert.ok(line.endsWith('\n'));
    assert.doesNotMatch(line.slice(0, -1), /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/, 'no raw control characters');
    const fields = fieldsOf(line.slice(0, -1));
    assert.deepEqual(fields.filter(([k]) => k === 'action'), [['action', 'reject']], `${from}: ${line}`);
    assert.deepEqual(fields.filter(([k]) => k === 'from'), [['from', `<${from}>`]], `${from}: ${line}`);
    assert.deepEqual(fields.filter(([k]) => k === 'reply').map(([, v]) => v), [`550 5.7.1 no "${from}"`]);
  }
  // Plain addresses stay as readable as before.
  assert.match(formatMessageSummary({ from: 'alice@example.org', users: [], action: 'accept' }), /^from=<alice@example\.org> action=accept$/);
});

test('text: other fields, the queue id and the message text are escaped the same way', () => {
  const line = formatTextLine({ level: 40, time: T, queueId: 'Q 1\nx', msg: 'filter said\r\nsomething', helo: 'mx" evil=1', list: ['a\u2028b'] });
  assert.equal(line.split('\n').length, 2, JSON.stringify(line));
  assert.ok(line.startsWith('2026-11-25T10:00:00Z warn "Q 1\\nx": filter said\\r\\nsomething '), line);
  const fields = fieldsOf(line.slice(line.indexOf('something')));
  assert.deepEqual(fields.find(([k]) => k === 'helo'), ['helo', 'mx" evil=1']);
  assert.ok(!fields.some(([k]) => k === 'evil'));
  assert.match(line, /list=\["a\\u2028b"\]/);
});

test('json: a hostile sender is one JSON value on one line', () => {
  const { log, lines } = capture('json');
  for (const from of HOSTILE_SENDERS) log.info({ event: 'message', queueId: 'Q1', from, users: [], action: 'reject' }, 'message');
  assert.equal(lines.length, HOSTILE_SENDERS.length);
  for (const [i, l] of lines.entries()) {
    assert.equal(l.indexOf('\n'), l.length - 1, 'one line');
    assert.doesNotMatch(l.slice(0, -1), /[\u0000-\u001f]/);
    const rec = JSON.parse(l) as { from: string; action: string };
    assert.equal(rec.from, HOSTILE_SENDERS[i]);
    assert.equal(rec.action, 'reject');
  }
});

test('our own failures: the message line says reason= and code=', () => {
  assert.equal(
    formatMessageSummary({ from: 's@x', rcpts: 1, users: [], action: 'tempfail', reason: 'spool', code: 'PUM_ERR_SPOOL_WRITE', reply: '451 4.3.1 Mail system full, try again later' }),
    'from=<s@x> rcpts=1 action=tempfail reason=spool code=PUM_ERR_SPOOL_WRITE reply="451 4.3.1 Mail system full, try again later"',
  );
});

// ---- journald ---------------------------------------------------------------

test('journal lines: <priority>, no time of our own, warnings and worse in words', () => {
  const j = (level: number, extra: Record<string, unknown> = {}) => formatTextLine({ level, time: T, msg: 'm', ...extra }, { journal: true });
  assert.equal(j(30, { queueId: 'Q1' }), '<6>Q1: m\n');
  assert.equal(j(20), '<7>m\n');
  assert.equal(j(40), '<4>warning: m\n');
  assert.equal(j(50, { queueId: 'Q2' }), '<3>error: Q2: m\n');
  assert.equal(j(60), '<2>fatal: m\n');
  assert.equal(
    formatTextLine({ level: 30, time: T, event: 'message', queueId: 'QID9', from: 's@x', users: [], action: 'accept', msg: 'message' }, { journal: true }),
    '<6>QID9: from=<s@x> action=accept\n',
  );
});

test('createLogger finds the journal by JOURNAL_STREAM = the device:inode of its descriptor', async () => {
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const logger = fileURLToPath(new URL('../../../src/log/logger.js', import.meta.url));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pum-journal-'));
  try {
    const out = path.join(dir, 'stdout');
    for (const [format, matching] of [['text', true], ['text', false], ['json', true]] as const) {
      const fd = fs.openSync(out, 'w');
      const st = fs.fstatSync(fd);
      const script = `
        import { createLogger } from ${JSON.stringify(logger)};
        const log = createLogger({ level: 'info', format: ${JSON.stringify(format)}, destination: 1 });
        log.info({ queueId: 'Q1' }, 'hello');
        log.warn({}, 'careful');
        log.error({}, 'broken');`;
      const env = { ...process.env, JOURNAL_STREAM: matching ? `${st.dev}:${st.ino}` : `${st.dev}:${st.ino + 1}` };
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', fd, 'pipe'], env, encoding: 'utf8' });
      fs.closeSync(fd);
      assert.equal(r.status, 0, r.stderr);
      const lines = fs.readFileSync(out, 'utf8').split('\n').filter(Boolean);
      if (format === 'json') {
        assert.deepEqual(lines.map((l) => l.slice(0, 3)), ['<6>', '<4>', '<3>']);
        assert.equal((JSON.parse(lines[0]!.slice(3)) as { msg: string }).msg, 'hello');
      } else if (matching) {
        assert.deepEqual(lines, ['<6>Q1: hello', '<4>warning: careful', '<3>error: broken']);
      } else {
        assert.match(lines[0] ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ info Q1: hello$/);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
