// What real Postfix and real Sendmail do when the milter closes a connection
// that has no transaction open (src/timeouts.ts IDLE_BETWEEN_TRANSACTIONS_MS
// relies on it): the rest of that SMTP session gets the milter default action
// (a tempfail with the shipped snippets), nothing is lost or let through
// unfiltered, and the next SMTP session gets a new milter connection and its
// mail flows. The engine runs in this process with a demo application and a
// limit of a second, so the test does not wait five minutes.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { CloseReason, MilterApplication } from '../../../src/milter/application.js';
import { MilterServer } from '../../../src/server/server.js';
import { auxPort, postfixMilterAddress, sleep, startPostfix, startSendmail, startSmtpSink, type Mta, type SmtpSink } from '../harness/index.js';
import { MTA_KINDS, REMOTE_DOMAIN, cannotRun, quietlyRunnable } from './support.js';

const LIMIT_MS = 1000;

/** A plain SMTP session that can carry several transactions (swaks sends one per session). */
class SmtpSession {
  private buffer = '';
  private waiting: Array<(reply: string) => void> = [];
  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buffer += d;
      this.deliver();
    });
  }

  static async open(port: number): Promise<SmtpSession> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const session = new SmtpSession(socket);
    assert.match(await session.reply(), /^220 /);
    assert.match(await session.command('EHLO client.test'), /^250/);
    return session;
  }

  /** The next whole reply (the last line of a multi-line one ends with "NNN "). */
  reply(): Promise<string> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.deliver();
    });
  }

  command(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`);
    return this.reply();
  }

  /** MAIL, RCPT, DATA and a small message; returns the reply that ended the transaction. */
  async transaction(to: string, tag: string): Promise<string> {
    const mail = await this.command('MAIL FROM:<sender@client.test>');
    if (!mail.startsWith('250')) return mail;
    const rcpt = await this.command(`RCPT TO:<${to}>`);
    if (!rcpt.startsWith('250')) return rcpt;
    assert.match(await this.command('DATA'), /^354/);
    return this.command(`Subject: idle ${tag}\r\nX-Pumtest-Case: ${tag}\r\n\r\nbody\r\n.`);
  }

  async quit(): Promise<void> {
    await this.command('QUIT');
    this.socket.end();
  }

  private deliver(): void {
    for (;;) {
      const end = /^\d{3} [^\r\n]*\r\n/m.exec(this.buffer);
      const waiter = this.waiting[0];
      if (!end || !waiter) return;
      const stop = end.index + end[0].length;
      const reply = this.buffer.slice(0, stop).trimEnd();
      this.buffer = this.buffer.slice(stop);
      this.waiting.shift();
      waiter(reply);
    }
  }
}

for (const kind of MTA_KINDS) {
  describe(`${kind}: the milter closes a connection idle between transactions`, () => {
    let sink: SmtpSink | undefined;
    let mta: Mta | undefined;
    let server: MilterServer | undefined;
    let dir = '';
    const closes: CloseReason[] = [];
    const application: MilterApplication = { declaration: { actions: 0 }, createHandler: () => ({}) };

    before(async () => {
      if (!quietlyRunnable()) return;
      sink = await startSmtpSink();
      dir = mkdtempSync('/var/lib/pumtest-idle-'); // not under /tmp: Sendmail refuses a socket there
      chmodSync(dir, 0o755);
      const listen = kind === 'postfix' ? `unix:${dir}/milter.sock` : `inet:${await auxPort()}@127.0.0.1`;
      server = await MilterServer.start({
        listen,
        application,
        socketMode: 0o666,
        idleBetweenTransactions: LIMIT_MS,
        events: { connectionClosed: (info) => closes.push(info.reason) },
      });
      const remote = { domain: REMOTE_DOMAIN, port: sink.port };
      mta = kind === 'postfix' ? await startPostfix({ milter: postfixMilterAddress(listen), remote }) : await startSendmail({ milter: listen, remote });
    });

    after(async () => {
      await mta?.stop();
      await server?.close({ graceMs: 200 });
      await sink?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('the rest of that SMTP session is tempfailed; the next session is served and its mail flows', async (t) => {
      if (cannotRun(t)) return;
      const relayed = (tag: string): number => sink!.messages.filter((m) => m.data.includes(`X-Pumtest-Case: ${tag}`)).length;
      const session = await SmtpSession.open(mta!.port);
      assert.match(await session.transaction(`a@${REMOTE_DOMAIN}`, 'idle-1'), /^250 /, 'the first transaction, within the limit');
      const before = closes.length;
      await sleep(LIMIT_MS * 2.5);
      assert.deepEqual(closes.slice(before), ['idle-timeout'], 'the engine closed the idle connection');
      // The MTA learns it at the next command: its default action, never an accept without the milter.
      const late = await session.transaction(`b@${REMOTE_DOMAIN}`, 'idle-2');
      assert.match(late, kind === 'postfix' ? /^451 4\.7\.1 / : /^451 4\.3\.2 /);
      assert.match(await session.transaction(`c@${REMOTE_DOMAIN}`, 'idle-3'), /^451 /, 'and so for the rest of that session');
      await session.quit();

      const next = await SmtpSession.open(mta!.port);
      assert.match(await next.transaction(`d@${REMOTE_DOMAIN}`, 'idle-4'), /^250 /, 'a new session gets a new milter connection');
      await next.quit();
      await mta!.settle();
      assert.equal(relayed('idle-1'), 1);
      assert.equal(relayed('idle-2') + relayed('idle-3'), 0);
      assert.equal(relayed('idle-4'), 1);
    });
  });
}
