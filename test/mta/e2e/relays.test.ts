// Recipients as real relays see them (issue 14), through real Postfix and
// real Sendmail: an alias that expands to two users (Postfix alias_maps with
// a hash: table queried through postmap; Sendmail's aliases file read
// directly), a Postfix virtual_alias_maps address, a Dovecot-style
// `local_transport = lmtp:...` with the default recipients.localMailers, and
// a trusted network skipping every filter. The verdict rows of the split and
// dry-run rules are in the shared table (test/scenarios/verdicts.ts).
//
// Ranges: the MTA and sink ports come from the harness (252xx/253xx); the
// LMTP sink takes a port in 25300-25399 (auxPort).
import assert from 'node:assert/strict';
import net from 'node:net';
import { chmodSync, chownSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { auxPort, filters, runOk, type Postfix, type Sendmail } from '../harness/index.js';
import { MTA_KINDS, Rig, cannotRun, quietlyRunnable } from './support.js';

const USERS = ['alice', 'bob', 'carol'] as const;

/** The message lines (log.format=json) of the milter's log since `mark`. */
function messageLines(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((l) => l.includes('"event":"message"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

for (const kind of MTA_KINDS) {
  describe(`${kind}: alias tables (recipients.aliasMaps)`, () => {
    const rig = new Rig(kind, { users: USERS });
    let aliasMaps = '';
    before(async () => {
      if (!quietlyRunnable()) return;
      await rig.start();
      const name = (u: string): string => rig.user(u).name;
      // team -> alice, bob; a program target that is not a user; staff -> team (recursion).
      const text = `team: ${name('alice')}, ${name('bob')}, "|/bin/true"\nstaff: team\n`;
      if (kind === 'postfix') {
        const pf = rig.mta as Postfix;
        const file = path.join(pf.dir, 'aliases');
        writeFileSync(file, text);
        await runOk('postalias', ['-c', pf.configDir, `hash:${file}`]);
        await pf.configure({ alias_maps: `hash:${file}`, alias_database: `hash:${file}` });
        aliasMaps = `hash:${file}`;
      } else {
        const sm = rig.mta as Sendmail;
        const file = path.join(sm.dir, 'etc', 'aliases');
        writeFileSync(file, `postmaster: root\nMAILER-DAEMON: postmaster\n${text}`);
        const bi = await sm.exec(['-bi']);
        assert.equal(bi.code, 0, bi.stdout + bi.stderr);
        aliasMaps = `aliases:${file}`;
      }
    });
    after(() => rig.stop());

    const send = async (to: string, config: Record<string, string> = {}) => {
      const milter = await rig.startMilter({ 'log.format': 'json', 'recipients.aliasMaps': aliasMaps, ...config });
      const mark = milter.logMark();
      const r = await rig.send({ to: [`${to}@example.test`] });
      await rig.mta.settle();
      const lines = messageLines(await milter.waitForLog(/"event":"message"/, mark));
      return { r, line: lines[0] ?? {} };
    };
    const users = (line: Record<string, unknown>) => ((line.users ?? []) as Array<{ user: string; outcome: string }>).map((u) => [u.user, u.outcome]).sort();

    it('an alias that expands to two users who both reject: 550 with their text, nothing delivered', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.reject('5.7.1 not for the team'), bob: filters.reject('5.7.1 not for the team') });
        const { r, line } = await send('team');
        assert.match(r.finalReply, /^550[ -]5\.7\.1 not for the team$/, r.transcript);
        assert.deepEqual(users(line), [[rig.user('alice').name, 'reject'], [rig.user('bob').name, 'reject']]);
        assert.equal(rig.user('alice').runs().length, 1);
        assert.equal(rig.user('bob').runs().length, 1);
        assert.equal(rig.delivered('alice', r.caseId) + rig.delivered('bob', r.caseId), 0);
      });
    });

    it('an alias of an alias (two levels): one user accepts, so under deliver both get it', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.reject('5.7.1 alice says no'), bob: filters.accept() });
        const { r, line } = await send('staff');
        assert.equal(r.code, 0, r.transcript);
        assert.deepEqual(users(line), [[rig.user('alice').name, 'reject'], [rig.user('bob').name, 'accept']]);
        assert.equal(rig.delivered('alice', r.caseId), 1);
        assert.equal(rig.delivered('bob', r.caseId), 1);
      });
    });

    it('drop-rejecters: the alias RCPT stays while any user behind it accepts (nothing removed)', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.reject('5.7.1 alice says no'), bob: filters.accept() });
        const { r, line } = await send('team', { 'policy.mixed': 'drop-rejecters' });
        assert.equal(r.code, 0, r.transcript);
        assert.equal(line.dropped, undefined, JSON.stringify(line));
        assert.equal(rig.delivered('bob', r.caseId), 1);
        assert.equal(rig.delivered('alice', r.caseId), 1, 'the alias cannot be taken from alice alone');
      });
    });

    it('a table that cannot answer tempfails the recipient (451 4.3.0), never "not local"', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.reject('5.7.1 alice says no') });
        // A second table that answers at start (serve refuses to start with a table that does not) and then goes away.
        const dir = kind === 'postfix' ? (rig.mta as Postfix).dir : (rig.mta as Sendmail).dir;
        const file = path.join(dir, 'more-aliases');
        writeFileSync(file, 'other: root\n');
        if (kind === 'postfix') await runOk('postalias', ['-c', (rig.mta as Postfix).configDir, `hash:${file}`]);
        const more = kind === 'postfix' ? `hash:${file}` : `aliases:${file}`;
        const milter = await rig.startMilter({ 'log.format': 'json', 'recipients.aliasMaps': `${aliasMaps},${more}` });
        rmSync(kind === 'postfix' ? `${file}.db` : file);
        const mark = milter.logMark();
        const r = await rig.send({ to: [rig.addr('alice')] });
        assert.match(r.rcptReplies[0] ?? '', /^451[ -]4\.3\.0/, r.transcript);
        await milter.waitForLog(/"reason":"lookup".*"code":"PUM_ERR_TABLE"|"code":"PUM_ERR_TABLE"/, mark);
        assert.equal(rig.user('alice').runs().length, 0);
      });
    });
  });
}

describe('postfix: virtual_alias_maps', () => {
  const rig = new Rig('postfix', { users: USERS });
  let table = '';
  before(async () => {
    if (!quietlyRunnable()) return;
    await rig.start();
    const pf = rig.mta as Postfix;
    table = path.join(pf.dir, 'virtual');
    writeFileSync(table, `info@virt.test ${rig.user('alice').name}@example.test\n`);
    await runOk('postmap', ['-c', pf.configDir, `hash:${table}`]);
    await pf.configure({ virtual_alias_domains: 'virt.test', virtual_alias_maps: `hash:${table}` });
  });
  after(() => rig.stop());

  it('a virtual alias address reaches its user\'s filter (reject: 550 with its text)', async (t) => {
    if (cannotRun(t)) return;
    await rig.scenario(async () => {
      rig.setFilters({ alice: filters.reject('5.7.1 alice says no to info@') });
      await rig.startMilter({ 'log.format': 'json', 'recipients.aliasMaps': `hash:${table}`, 'recipients.localDomains': 'example.test' });
      const r = await rig.send({ to: ['info@virt.test'] });
      assert.match(r.finalReply, /^550[ -]5\.7\.1 alice says no to info@$/, r.transcript);
      assert.deepEqual(rig.user('alice').runs(), [`${rig.user('alice').name}@example.test`], 'RECIPIENT is the address the alias led to');
    });
  });
});

/** A minimal LMTP server (RFC 2033): one 250 per accepted recipient after the data. Counts the messages per recipient. */
async function startLmtpSink(): Promise<{ port: number; received: Map<string, number>; close(): Promise<void> }> {
  const received = new Map<string, number>();
  const server = net.createServer((sock) => {
    let buf = '';
    let rcpts: string[] = [];
    let inData = false;
    sock.write('220 lmtp.test LMTP ready\r\n');
    sock.on('data', (chunk) => {
      buf += chunk.toString('latin1');
      for (let nl = buf.indexOf('\r\n'); nl >= 0; nl = buf.indexOf('\r\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (inData) {
          if (line === '.') {
            inData = false;
            for (const r of rcpts) {
              received.set(r, (received.get(r) ?? 0) + 1);
              sock.write('250 2.0.0 delivered\r\n');
            }
            rcpts = [];
          }
          continue;
        }
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'LHLO') sock.write('250-lmtp.test\r\n250 PIPELINING\r\n');
        else if (verb === 'MAIL') sock.write('250 2.1.0 ok\r\n');
        else if (verb === 'RCPT') {
          rcpts.push((/<([^>]*)>/.exec(line)?.[1] ?? '').toLowerCase());
          sock.write('250 2.1.5 ok\r\n');
        } else if (verb === 'DATA') {
          inData = true;
          sock.write('354 go ahead\r\n');
        } else if (verb === 'QUIT') sock.end('221 2.0.0 bye\r\n');
        else sock.write('250 2.0.0 ok\r\n');
      }
    });
    sock.on('error', () => undefined);
  });
  const port = await auxPort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { port, received, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe('postfix: Dovecot-style local_transport = lmtp:..., default settings', () => {
  const rig = new Rig('postfix', { users: USERS });
  let lmtp: Awaited<ReturnType<typeof startLmtpSink>> | undefined;
  before(async () => {
    if (!quietlyRunnable()) return;
    await rig.start();
    lmtp = await startLmtpSink();
    await (rig.mta as Postfix).configure({ local_transport: `lmtp:inet:127.0.0.1:${lmtp.port}` });
  });
  after(async () => {
    await lmtp?.close();
    await rig.stop();
  });

  it('{rcpt_mailer} lmtp is local by default: the filter runs (reject: 550), an accepted message reaches the LMTP server', async (t) => {
    if (cannotRun(t)) return;
    await rig.scenario(async () => {
      rig.setFilters({ alice: filters.reject('5.7.1 alice via lmtp says no'), bob: filters.accept() });
      // No recipients.* settings at all, and no configuration file (an empty one, so
      // that a system-wide /etc/per-user-milter/config.json is not read): the defaults must do.
      const empty = path.join((rig.mta as Postfix).dir, 'empty-config.json');
      writeFileSync(empty, '{}\n');
      await rig.startMilter({ 'log.format': 'json' }, empty);
      const r = await rig.send({ to: [rig.addr('alice')] });
      assert.match(r.finalReply, /^550[ -]5\.7\.1 alice via lmtp says no$/, r.transcript);
      const ok = await rig.send({ to: [rig.addr('bob')] });
      assert.equal(ok.code, 0, ok.transcript);
      await rig.mta.settle();
      assert.equal(rig.user('bob').runs().length, 1);
      assert.equal(lmtp?.received.get(rig.addr('bob').toLowerCase()), 1, `LMTP deliveries: ${JSON.stringify([...(lmtp?.received ?? [])])}`);
    });
  });
});

for (const kind of MTA_KINDS) {
  describe(`${kind}: skip rules, junk by extension`, () => {
    const rig = new Rig(kind, { users: USERS });
    before(async () => {
      if (quietlyRunnable()) await rig.start();
    });
    after(() => rig.stop());

    it('a client in policy.trustedNetworks: accepted at MAIL, no filter runs, the log says why', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.reject('5.7.1 alice says no') });
        const milter = await rig.startMilter({ 'log.format': 'json', 'policy.trustedNetworks': '127.0.0.0/8,::1/128' });
        const mark = milter.logMark();
        const r = await rig.send({ to: [rig.addr('alice')] });
        assert.equal(r.code, 0, r.transcript);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', r.caseId), 1);
        assert.equal(rig.user('alice').runs().length, 0);
        const [line] = messageLines(await milter.waitForLog(/"event":"message"/, mark));
        assert.match(String(line?.note), /^skipped: client 127\.0\.0\.1 in policy\.trustedNetworks 127\.0\.0\.0\/8$/);
      });
    });

    it('policy.mixed=extension: the rejecter\'s copy goes to user+spam (DELRCPT + ADDRCPT), the other recipient sees nothing of it', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.reject('5.7.1 alice says spam'), bob: filters.accept() });
        const milter = await rig.startMilter({ 'log.format': 'json', 'policy.mixed': 'extension' });
        const mark = milter.logMark();
        const r = await rig.send({ to: [rig.addr('alice'), rig.addr('bob')] });
        assert.equal(r.code, 0, r.transcript);
        await rig.mta.settle();
        const [line] = messageLines(await milter.waitForLog(/"event":"message"/, mark));
        assert.deepEqual(line?.added, [`<${rig.addr('alice', 'spam')}>`], JSON.stringify(line));
        assert.equal(rig.delivered('alice', r.caseId), 1, "alice's copy arrives, at her +spam address");
        assert.equal(rig.delivered('bob', r.caseId), 1);
        const bobs = rig.mta.messages(rig.user('bob').name).find((m) => m.get('X-Pumtest-Case') === r.caseId);
        assert.ok(bobs && !`${bobs.header}${bobs.body.toString('latin1')}`.includes('+spam'), 'nothing in the shared message names the +spam copy');
        if (kind === 'postfix') {
          const alices = rig.mta.messages(rig.user('alice').name).find((m) => m.get('X-Pumtest-Case') === r.caseId);
          assert.equal(alices?.get('Delivered-To'), rig.addr('alice', 'spam'));
        }
      });
    });

    it('an RCPT-stage program (~/.user-milter-rcpt) refuses its own recipient with 550 at RCPT; the others are delivered', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.accept(), bob: filters.accept() });
        const alice = rig.user('alice');
        const program = alice.file('.user-milter-rcpt');
        writeFileSync(program, '#!/bin/sh\necho "$SENDER" >> "$HOME/rcpt-runs"\nif [ "$SENDER" = sender@client.test ]; then echo "5.7.1 alice takes no mail from you"; exit 1; fi\nexit 0\n');
        chownSync(program, alice.uid, alice.gid);
        chmodSync(program, 0o755);
        try {
          const milter = await rig.startMilter({ 'log.format': 'json' });
          const mark = milter.logMark();
          const r = await rig.send({ to: [rig.addr('alice'), rig.addr('bob')] });
          // Sendmail puts the address before the text (`<a@x>... text`).
          assert.match(r.rcptReplies[0] ?? '', /^550[ -]5\.7\.1 (<[^>]+>\.\.\. )?alice takes no mail from you$/, r.transcript);
          assert.match(r.rcptReplies[1] ?? '', /^250/, r.transcript);
          assert.equal(r.code === 0 || /^250/.test(r.finalReply), true, r.transcript);
          await rig.mta.settle();
          assert.equal(rig.delivered('bob', r.caseId), 1);
          assert.equal(rig.delivered('alice', r.caseId), 0);
          assert.deepEqual(rig.user('alice').runs(), [], "alice's message filter never ran: she is not part of the transaction");
          assert.equal(rig.user('bob').runs().length, 1);
          assert.equal(alice.read('rcpt-runs'), 'sender@client.test\n');
          await milter.waitForLog(/"event":"rcpt-stage".*"action":"reject"/, mark);
          assert.equal(rig.user('bob').read('rcpt-runs'), undefined, 'bob has no RCPT-stage program: nothing ran for him');
        } finally {
          rmSync(program, { force: true });
          rmSync(alice.file('rcpt-runs'), { force: true });
        }
      });
    });
  });
}

/** One SMTP transaction over a raw socket, as bytes (swaks cannot send SMTPUTF8): the replies to each command. */
async function rawSmtp(port: number, commands: Buffer[]): Promise<string[]> {
  const sock = net.connect(port, '127.0.0.1');
  const replies: string[] = [];
  let buf = '';
  const waiters: Array<(line: string) => void> = [];
  sock.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    for (let nl = buf.indexOf('\r\n'); nl >= 0; nl = buf.indexOf('\r\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 2);
      if (/^\d{3} /.test(line)) waiters.shift()?.(line);
    }
  });
  const reply = (): Promise<string> => new Promise((resolve) => waiters.push(resolve));
  await reply(); // greeting
  for (const c of commands) {
    const next = reply();
    sock.write(c);
    replies.push(await next);
  }
  sock.end();
  return replies;
}

describe('postfix: an SMTPUTF8 sender', () => {
  const rig = new Rig('postfix', { users: USERS, postfixMain: { smtputf8_enable: 'yes' } });
  before(async () => {
    if (quietlyRunnable()) await rig.start();
  });
  after(() => rig.stop());

  it('josé@example.org reaches the filter\'s $SENDER as UTF-8, not double-encoded', async (t) => {
    if (cannotRun(t)) return;
    await rig.scenario(async () => {
      rig.setFilters({ alice: filters.save(0) });
      await rig.startMilter({ 'log.format': 'json' });
      const line = (s: string): Buffer => Buffer.from(`${s}\r\n`, 'utf8');
      const replies = await rawSmtp(rig.mta.port, [
        line('EHLO client.test'),
        line('MAIL FROM:<josé@example.org> SMTPUTF8'),
        line(`RCPT TO:<${rig.addr('alice')}>`),
        line('DATA'),
        line('From: josé@example.org\r\nSubject: utf8\r\nX-Pumtest-Case: utf8\r\n\r\nhola\r\n.'),
        line('QUIT'),
      ]);
      assert.match(replies[4] ?? '', /^250 /, replies.join('\n'));
      await rig.mta.settle();
      const env = Buffer.from(rig.user('alice').read('saved.env') ?? '', 'latin1').toString('utf8');
      assert.match(env, /^SENDER=josé@example\.org$/m, env);
    });
  });
});
