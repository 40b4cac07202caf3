// Shared set-up of the end-to-end scenarios: one MTA instance (Postfix or
// Sendmail) per describe block, real test users, an SMTP sink for the
// non-local domain, and the milter restarted with each case's configuration.
// A failing case gets the MTA's log lines and the milter's output for that
// case appended to its error.
import { execFileSync } from 'node:child_process';
import type { TestContext } from 'node:test';
import {
  auxPort,
  createTestUsers,
  postfixMilterAddress,
  randomTag,
  startMilter,
  startPostfix,
  startSendmail,
  startSmtpSink,
  swaks,
  type LogMark,
  type Milter,
  type MilterOptions,
  type Mta,
  type MtaKind,
  type Postfix,
  type SmtpSink,
  type SwaksOptions,
  type SwaksResult,
  type TestUser,
  type TestUsers,
} from '../harness/index.js';
import { lacksCommand, lacksRoot } from '../../support/require.js';

export const REMOTE_DOMAIN = 'remote.test';
export const LOCAL_DOMAIN = 'example.test';
export const MTA_KINDS: readonly MtaKind[] = ['postfix', 'sendmail'];

/** True when this machine can run the suite; in CI a missing piece fails the test instead. */
export function cannotRun(t: TestContext): boolean {
  return (
    lacksRoot(t) ||
    lacksCommand(t, 'postconf', 'postfix') ||
    lacksCommand(t, 'swaks', 'swaks') ||
    lacksCommand(t, 'm4', 'm4') ||
    lacksCommand(t, 'unshare', 'util-linux') ||
    lacksCommand(t, 'useradd', 'passwd')
  );
}

/** Whether to start MTAs at all (without failing or skipping anything: the tests' cannotRun() does that). */
export function quietlyRunnable(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('sh', ['-c', 'command -v postconf && command -v swaks && command -v m4 && command -v unshare && command -v useradd'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface RigOptions {
  users: readonly string[];
  /** Postfix main.cf overrides (e.g. a short milter_content_timeout). */
  postfixMain?: Record<string, string>;
  /** Sendmail T= override. */
  sendmailTimeouts?: string;
  /** Milter transport; default: a unix socket for Postfix, TCP for Sendmail (other files swap them). */
  socket?: 'unix' | 'inet';
  /** Run without any milter configured in the MTA. */
  noMilter?: boolean;
  /**
   * Also start a sending-side Postfix (no milter) that relays everything to
   * the MTA under test: the client's own MTA, which keeps a message queued
   * after a 4xx and retries it.
   */
  sendingMta?: boolean;
}

export class Rig {
  mta!: Mta;
  /** The sending-side Postfix (RigOptions.sendingMta). */
  sender: Postfix | undefined;
  users!: TestUsers;
  sink!: SmtpSink;
  milter: Milter | undefined;
  /** The milter's listen spec (milter syntax). */
  listen!: string;
  private dir = '';

  constructor(readonly kind: MtaKind, readonly opts: RigOptions) {}

  async start(): Promise<void> {
    this.sink = await startSmtpSink();
    this.users = await createTestUsers(this.opts.users);
    if ((this.opts.socket ?? (this.kind === 'postfix' ? 'unix' : 'inet')) === 'unix') {
      const { mkdtempSync, chmodSync } = await import('node:fs');
      // not under /tmp: Sendmail refuses a socket in a world-writable directory
      this.dir = mkdtempSync('/var/lib/pumtest-sock-');
      chmodSync(this.dir, 0o755);
      this.listen = `unix:${this.dir}/milter.sock`;
    } else {
      this.listen = `inet:${await auxPort()}@127.0.0.1`;
    }
    const remote = { domain: REMOTE_DOMAIN, port: this.sink.port };
    if (this.kind === 'postfix') {
      this.mta = await startPostfix({
        milter: this.opts.noMilter ? null : postfixMilterAddress(this.listen),
        remote,
        extraMain: this.opts.postfixMain ?? {},
      });
    } else {
      this.mta = await startSendmail({
        milter: this.opts.noMilter ? null : this.listen,
        remote,
        ...(this.opts.sendmailTimeouts ? { milterTimeouts: this.opts.sendmailTimeouts } : {}),
      });
    }
    if (this.opts.sendingMta) {
      this.sender = await startPostfix({
        milter: null,
        extraMain: {
          myhostname: 'mta.client.test',
          mydomain: 'client.test',
          myorigin: 'client.test',
          mydestination: '',
          relayhost: `[127.0.0.1]:${this.mta.port}`,
          syslog_name: 'pumtest-sender',
        },
      });
    }
  }

  async stop(): Promise<void> {
    const errs: unknown[] = [];
    const attempt = async (f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (e) {
        errs.push(e);
      }
    };
    await attempt(() => this.stopMilter());
    if (this.sender) await attempt(() => this.sender!.stop());
    if (this.mta) await attempt(() => this.mta.stop());
    if (this.users) await attempt(() => this.users.remove());
    if (this.sink) await attempt(() => this.sink.stop());
    if (this.dir) {
      const { rmSync } = await import('node:fs');
      rmSync(this.dir, { recursive: true, force: true });
    }
    if (errs.length) throw errs[0];
  }

  /**
   * Makes sure the milter runs with this case's configuration: a running
   * milter with the same configuration is kept (filters are read per message,
   * so changing them needs no restart), anything else is restarted.
   */
  async startMilter(config: MilterOptions['config'] = {}, configFile?: string): Promise<Milter> {
    const full = { 'users.minUid': 1000, ...config };
    const key = JSON.stringify([configFile ?? '', ...Object.entries(full).sort(([a], [b]) => a.localeCompare(b))]);
    if (this.milter && this.milterKey === key && this.milter.alive()) return this.milter;
    await this.stopMilter();
    this.milter = await startMilter({ listen: this.listen, config: full, ...(configFile ? { configFile } : {}) });
    this.milterKey = key;
    return this.milter;
  }

  async stopMilter(): Promise<void> {
    const m = this.milter;
    this.milter = undefined;
    this.milterKey = '';
    if (m) await m.stop();
  }

  private milterKey = '';

  /** Gives every test user the filter named here (others get none) and clears what earlier filters wrote. */
  setFilters(map: Record<string, string | null>): void {
    for (const u of this.users.all) {
      u.clean();
      const short = u.name.slice(`pumtest-${this.users.tag}-`.length);
      u.setFilter(map[short] ?? null);
    }
  }

  /**
   * Sends like a well-behaved SMTP client: recipients answered with a 4xx at
   * RCPT (policy.mixed=split's "452 4.5.3 Try again in a separate
   * transaction") are sent again in a new transaction, until none is left.
   * Returns one result per transaction with the recipients it carried.
   */
  async sendRetrying(
    to: readonly string[],
    o: Omit<SwaksOptions, 'port' | 'to'> = {},
  ): Promise<{ caseId: string; transactions: (SwaksResult & { to: string[]; accepted: string[]; deferred: string[] })[] }> {
    const caseId = randomTag(6);
    const transactions: (SwaksResult & { to: string[]; accepted: string[]; deferred: string[] })[] = [];
    let pending = [...to];
    while (pending.length > 0) {
      if (transactions.length >= to.length) throw new Error(`still deferring ${pending.join(', ')} after ${transactions.length} transactions`);
      const r = await this.send({ ...o, to: pending, caseId });
      const accepted: string[] = [];
      const deferred: string[] = [];
      pending.forEach((rcpt, i) => {
        const reply = r.rcptReplies[i] ?? '';
        if (/^2/.test(reply)) accepted.push(rcpt);
        else if (/^4/.test(reply)) deferred.push(rcpt);
      });
      transactions.push({ ...r, to: pending, accepted, deferred });
      if (accepted.length === 0 && deferred.length === pending.length) throw new Error(`every recipient deferred:\n${r.transcript}`);
      pending = deferred;
    }
    return { caseId, transactions };
  }

  user(short: string): TestUser {
    return this.users.get(short);
  }

  addr(short: string, ext?: string): string {
    return `${this.user(short).name}${ext ? '+' + ext : ''}@${LOCAL_DOMAIN}`;
  }

  /** Sends with swaks; a unique X-Pumtest-Case header marks the message. */
  async send(o: Omit<SwaksOptions, 'port'> & { caseId?: string }): Promise<SwaksResult & { caseId: string }> {
    const caseId = o.caseId ?? randomTag(6);
    const headers = [`Subject: pumtest ${caseId}`, `X-Pumtest-Case: ${caseId}`, ...(o.headers ?? [])];
    const r = await swaks({ ...o, headers, port: this.mta.port });
    return { ...r, caseId };
  }

  /** How many copies of case `caseId` are in a user's mailbox. */
  delivered(short: string, caseId: string): number {
    return this.mta.messages(this.user(short).name).filter((m) => m.get('X-Pumtest-Case') === caseId).length;
  }

  /** How many copies of case `caseId` reached the remote sink, and for which recipients. */
  relayed(caseId: string): string[][] {
    return this.sink.messages.filter((m) => m.data.includes(`X-Pumtest-Case: ${caseId}`)).map((m) => m.to);
  }

  /** Runs one case; on failure appends the MTA's and the milter's log lines of this case to the error. */
  async scenario(fn: () => Promise<void>): Promise<void> {
    const mtaMark: LogMark = this.mta.logMark();
    const senderMark: LogMark | undefined = this.sender?.logMark();
    const milterMarks = new Map<Milter, LogMark>();
    const m0 = this.milter;
    if (m0) milterMarks.set(m0, m0.logMark());
    try {
      await fn();
    } catch (e) {
      let extra = `\n===== ${this.kind} log lines of this case =====\n${this.mta.logSince(mtaMark)}`;
      if (this.sender && senderMark) extra += `\n===== sending-side postfix log lines =====\n${this.sender.logSince(senderMark)}`;
      const m = this.milter;
      if (m) extra += `\n===== per-user-milter output =====\n${m.logSince(milterMarks.get(m) ?? [0])}`;
      extra += `\n===== queue =====\n${await this.mta.queue().catch((q: unknown) => String(q))}`;
      if (e instanceof Error) {
        // reporters print the stack, which was rendered with the old message
        const old = e.message;
        e.message += extra;
        if (e.stack) e.stack = e.stack.includes(old) ? e.stack.replace(old, e.message) : e.stack + extra;
        throw e;
      }
      throw new Error(String(e) + extra);
    }
  }
}
