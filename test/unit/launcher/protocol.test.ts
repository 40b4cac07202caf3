// The launcher's frames on the Node side (pure): what is encoded, what is
// accepted back, and the start-up line.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeAnswer, encodeRun, encodeStat, frame, FrameSplitter, MSG, TAG } from '../../../src/launcher/protocol.js';
import { launcherArgs, parseReady } from '../../../src/launcher/start.js';
import { envelopeEnvironment, FILTER_ENV_NAMES } from '../../../src/filter/environment.js';

const subject = { program: 'filter' as const, user: 'alice', uid: 1001 };

function fields(buf: Buffer): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  assert.equal(buf.readUInt32BE(0), buf.length - 4);
  for (let at = 5; at < buf.length; ) {
    const len = buf.readUInt32BE(at + 1);
    out.push([buf.readUInt8(at), buf.subarray(at + 5, at + 5 + len).toString()]);
    at += 5 + len;
  }
  return out;
}

test('STAT and RUN name only a uid (and the name to cross-check), the program kind, the spool file and the envelope', () => {
  const stat = encodeStat(7, subject);
  assert.equal(stat.readUInt8(4), MSG.STAT);
  assert.deepEqual(fields(stat), [[TAG.id, '7'], [TAG.program, 'filter'], [TAG.user, 'alice'], [TAG.uid, '1001']]);
  const run = encodeRun(8, { ...subject, spool: 'msg-0123456789abcdef01234567', env: ['SENDER=a@b', 'LOCAL=alice'] });
  const f = fields(run);
  assert.deepEqual(f.filter(([t]) => t === TAG.env).map(([, v]) => v), ['SENDER=a@b', 'LOCAL=alice']);
  assert.deepEqual(f.find(([t]) => t === TAG.spool), [TAG.spool, 'msg-0123456789abcdef01234567']);
  assert.deepEqual(f.map(([t]) => t), [TAG.id, TAG.program, TAG.user, TAG.uid, TAG.spool, TAG.env, TAG.env]);
  const rcpt = encodeRun(9, { ...subject, program: 'rcpt', env: [] });
  assert.equal(fields(rcpt).some(([t]) => t === TAG.spool), false);
});

test('the environment a client sends: the 12 envelope names, never HOME, USER, LOGNAME, SHELL or PATH', () => {
  const env = envelopeEnvironment({ SENDER: 'a@b', RECIPIENT: 'c@d', LOCAL: 'c', EXTENSION: '', DOMAIN: 'd', CLIENT_ADDRESS: '1', CLIENT_HOSTNAME: 'h', CLIENT_HELO: 'h\x07', CLIENT_PROTOCOL: 'ESMTP', QUEUE_ID: 'Q', SASL_METHOD: '', SASL_USERNAME: '' });
  assert.equal(env.length, 12);
  assert.deepEqual(env.map((kv) => kv.split('=')[0]), FILTER_ENV_NAMES.slice(5));
  assert.ok(env.includes('CLIENT_HELO=h'), 'control characters removed');
});

test('answers decode strictly; the splitter reassembles frames cut anywhere', () => {
  const done = frame(MSG.DONE, [[TAG.id, 3], [TAG.what, 'own'], [TAG.exit, 1], [TAG.timedOut, 0], [TAG.killed, 2], [TAG.wallMs, 40], [TAG.stdout, Buffer.from('5.7.1 no\n')], [TAG.stderr, ''], [TAG.dropped, 0]]);
  const failed = frame(MSG.FAILED, [[TAG.stage, 'spool'], [TAG.errno, 2], [TAG.text, 'No such file']]);
  const both = Buffer.concat([done, failed]);
  const splitter = new FrameSplitter();
  const bodies = [...splitter.push(both.subarray(0, 3)), ...splitter.push(both.subarray(3, 20)), ...splitter.push(both.subarray(20))];
  assert.equal(bodies.length, 2);
  const a = decodeAnswer(bodies[0] as Buffer);
  assert.equal(a.type, 'done');
  if (a.type === 'done') {
    assert.equal(a.exitCode, 1);
    assert.equal(a.signal, null);
    assert.equal(a.killed, 2);
    assert.equal(a.stdout.toString(), '5.7.1 no\n');
  }
  assert.deepEqual(decodeAnswer(bodies[1] as Buffer), { type: 'failed', id: null, stage: 'spool', errno: 2, text: 'No such file' });
  for (const bad of [
    frame(MSG.DONE, [[TAG.id, 'x']]),
    frame(MSG.CHECKED, [[TAG.id, 1], [TAG.what, 'maybe']]),
    frame(0x99, []),
    frame(MSG.NOTRUN, [[TAG.id, 1], [TAG.id, 2]]),
    frame(MSG.FAILED, [[TAG.id, '-1'], [TAG.stage, 'x'], [TAG.errno, 0], [TAG.text, '']]),
  ]) {
    assert.throws(() => decodeAnswer(bad.subarray(4)), /launcher protocol/);
  }
});

test('the ready line and the command line', () => {
  assert.deepEqual(parseReady('ready proc=hidden cgroup=/sys/fs/cgroup/x privileged=yes'), { procHidden: true, cgroup: '/sys/fs/cgroup/x', privileged: true });
  assert.deepEqual(parseReady('ready proc=visible cgroup=none privileged=no'), { procHidden: false, cgroup: null, privileged: false });
  assert.equal(parseReady('ready'), null);
  assert.equal(parseReady('ready proc=hidden cgroup=none privileged=yes extra'), null);
  const args = launcherArgs({
    socket: '/s/l.sock', spool: '/s', clientUid: 110, clientGid: 111, minUid: 1000, maxUid: 60000, filterPath: '~/.user-milter', rcptPath: '',
    defaultPath: '/usr/local/lib/f', cgroup: 'auto', bwrap: '', sandbox: 'setpriv', passwdFile: '/etc/pum/passwd', timeoutMs: 30000, rcptTimeoutMs: 5000,
    cpu: 10, as: 2, nproc: 3, fsize: 4, output: 5, memory: 6, pids: 7,
  });
  assert.deepEqual(args, [
    '--socket', '/s/l.sock', '--spool', '/s', '--client-uid', '110', '--client-gid', '111', '--min-uid', '1000', '--max-uid', '60000',
    '--filter-path', '~/.user-milter', '--cgroup', 'auto', '--sandbox', 'setpriv', '--timeout-ms', '30000', '--rcpt-timeout-ms', '5000',
    '--cpu', '10', '--as', '2', '--nproc', '3', '--fsize', '4', '--output', '5', '--memory', '6', '--pids', '7',
    '--passwd-file', '/etc/pum/passwd', '--default-path', '/usr/local/lib/f',
  ]);
});
