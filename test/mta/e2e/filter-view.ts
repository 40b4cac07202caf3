// What a user's filter sees (docs/reference.md §4), checked from inside a real filter
// run by the milter behind real Postfix and real Sendmail: the message on
// stdin (Return-Path first, headers and body as received, folded headers kept,
// LF line endings), the clean environment, the user's identity, cwd and umask,
// and Bcc privacy (RECIPIENT is only the user's own address).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { filters, randomTag } from '../harness/index.js';
import { Rig, cannotRun } from './support.js';

/** Variables a POSIX shell may add by itself when it runs the filter script. */
const SHELL_ADDED = new Set(['PWD', 'OLDPWD', 'SHLVL', '_']);
const CONTRACT_ENV = [
  'HOME', 'USER', 'LOGNAME', 'SHELL', 'PATH', 'SENDER', 'RECIPIENT', 'LOCAL', 'EXTENSION', 'DOMAIN',
  'CLIENT_ADDRESS', 'CLIENT_HOSTNAME', 'CLIENT_HELO', 'CLIENT_PROTOCOL', 'QUEUE_ID', 'SASL_METHOD', 'SASL_USERNAME',
];

function parseEnv(text: string): Map<string, string> {
  const env = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) env.set(line.slice(0, i), line.slice(i + 1));
  }
  return env;
}

/** Defines the case inside a describe block that owns `rig` (users alice and bob). */
export function filterViewCase(rig: Rig): void {
  const kind = rig.kind;
  it('the filter gets the message as received and the environment of docs/reference.md §4, as the user', async (t) => {
    if (cannotRun(t)) return;
    await rig.scenario(async () => {
      rig.setFilters({ alice: filters.save(0), bob: filters.save(0) });
      await rig.startMilter();
      const caseId = randomTag(6);
      const sender = 'sender+tag@client.test';
      const alice = rig.user('alice');
      const bob = rig.user('bob');
      // header as the client sends it (one folded field; with Date and Message-ID, so that
      // Postfix's cleanup adds nothing), body with a leading dot and trailing blanks
      const header = [
        'Date: Wed, 25 Nov 2026 10:00:00 +0000',
        `From: Sender <${sender}>`,
        `To: Alice <${rig.addr('alice')}>`,
        `Subject: filter view ${caseId}`,
        `Message-ID: <${caseId}@client.test>`,
        `X-Pumtest-Case: ${caseId}`,
        'X-Folded: first part of a long value',
        '\tsecond part after a tab',
        '  third part after spaces',
      ].join('\n') + '\n';
      const body = ['line one', '.a line that starts with a dot', '', 'trailing blanks   ', 'last line'].join('\n') + '\n';
      const tmp = mkdtempSync(path.join(os.tmpdir(), 'pumtest-msg-'));
      t.after(() => rmSync(tmp, { recursive: true, force: true }));
      const file = path.join(tmp, `${caseId}.eml`);
      // swaks ends the DATA with CRLF . CRLF itself: the file must not end with a line break
      writeFileSync(file, (header + '\n' + body.slice(0, -1)).replace(/\n/g, '\r\n'));
      const r = await rig.send({ from: sender, to: [rig.addr('alice'), rig.addr('bob')], dataFile: file, caseId });
      assert.equal(r.code, 0, r.transcript);
      const queueId =
        kind === 'postfix' ? /queued as ([0-9A-F]+)/.exec(r.finalReply)?.[1] : /^250 2\.0\.0 (\S+) Message accepted/.exec(r.finalReply)?.[1];
      assert.ok(queueId, `no queue id in ${r.finalReply}`);
      await rig.mta.settle();

      for (const u of [alice, bob]) {
        const short = u === alice ? 'alice' : 'bob';
        // --- standard input
        const saved = u.read('saved.eml');
        assert.ok(saved !== undefined, `${u.name}'s filter saved nothing`);
        assert.ok(!saved.includes('\r'), 'filter.lineEndings=lf: no CR on stdin');
        assert.ok(saved.startsWith(`Return-Path: <${sender}>\n`), `first line: ${saved.split('\n')[0]}`);
        assert.ok(saved.endsWith(header + '\n' + body), `header (folding kept) and body as sent, at the end of:\n${saved}`);
        // between Return-Path and the client's header only the MTA's own Received: field may stand
        const between = saved.slice(saved.indexOf('\n') + 1, saved.length - (header + '\n' + body).length);
        assert.match(between, /^(Received:[^\n]*\n([ \t][^\n]*\n)*)*$/, `unexpected lines before the header:\n${between}`);
        // --- environment
        const env = parseEnv(u.read('saved.env') ?? '');
        const extra = [...env.keys()].filter((k) => !CONTRACT_ENV.includes(k) && !SHELL_ADDED.has(k));
        assert.deepEqual(extra, [], 'a clean environment: only the contract\'s variables');
        for (const k of CONTRACT_ENV) assert.ok(env.has(k), `${k} missing from the filter environment`);
        assert.equal(env.get('HOME'), u.home);
        assert.equal(env.get('USER'), u.name);
        assert.equal(env.get('LOGNAME'), u.name);
        assert.equal(env.get('SHELL'), '/bin/sh');
        assert.ok(env.get('PATH'));
        assert.equal(env.get('SENDER'), sender);
        assert.equal(env.get('RECIPIENT'), rig.addr(short), 'RECIPIENT is the user\'s own envelope address');
        assert.equal(env.get('LOCAL'), u.name);
        assert.equal(env.get('EXTENSION'), '');
        assert.equal(env.get('DOMAIN'), 'example.test');
        assert.equal(env.get('CLIENT_ADDRESS'), '127.0.0.1');
        assert.ok(env.get('CLIENT_HOSTNAME'), 'CLIENT_HOSTNAME');
        assert.equal(env.get('CLIENT_HELO'), 'client.test');
        assert.equal(env.get('QUEUE_ID'), queueId, 'QUEUE_ID is the MTA\'s queue id');
        assert.equal(env.get('SASL_METHOD'), '');
        assert.equal(env.get('SASL_USERNAME'), '');
        // Bcc privacy: nothing in the environment names the other recipient
        const other = u === alice ? bob : alice;
        assert.ok(!(u.read('saved.env') ?? '').includes(other.name), `${u.name}'s environment mentions ${other.name}`);
        // --- identity, cwd, umask
        const id = u.read('saved.id') ?? '';
        assert.match(id, new RegExp(`^uid=${u.uid}\\(${u.name}\\) gid=${u.gid}\\(`), id);
        assert.equal((u.read('saved.pwd') ?? '').trim(), u.home);
        assert.equal((u.read('saved.umask') ?? '').trim(), '0077');
        assert.equal(u.runs().length, 1);
      }
      // and the message was delivered, unchanged by the milter, to both
      assert.equal(rig.delivered('alice', caseId), 1);
      assert.equal(rig.delivered('bob', caseId), 1);
      const delivered = rig.mta.messages(alice.name).find((m) => m.get('X-Pumtest-Case') === caseId)!;
      assert.equal(delivered.body.toString('latin1').replace(/\n+$/, '\n'), body);
    });
  });
}
