// Runs in: the milter process.
//
// One MTA connection of per-user-milter: collects the envelope, classifies
// recipients at RCPT, accepts early when no local recipient has a filter,
// spools the message, and at end of message asks every local user's filter
// (./verdict.ts). Per-transaction state is reset at MAIL and ABORT.
//
// Every failure of ours inside a step is caught here, not left to the milter
// engine's generic answer: at RCPT it tempfails that recipient
// (recipientFailure), from DATA to end of message it ends the message with
// its 451 4.3.x, log line and counters (ourFailure) and removes the spool file.
import type { ConnectionContext, ConnectFamily, CustomReply, EomResult, MilterHandler, StepResult } from '../milter/application.js';
import { localsOf, parseAddress, TransactionRecipients, type LocalRecipient } from '../recipients/index.js';
import type { SpoolFile } from '../spool/index.js';
import { decideOversize, mustSplit, OVERSIZE_REPLY, rcptStageReply, replyLine, skipReason, SPLIT_REPLY } from '../policy/index.js';
import type { FilterJob, FilterResult } from '../filter/job.js';
import { SMFIP_HDR_LEADSPC } from '../milter/constants.js';
import { answered, customReply, ourFailure, recipientFailure } from './answer.js';
import type { AppContext } from './context.js';
import { askFilters, envelopeOf, type Transaction } from './verdict.js';

const latin1 = (b: Buffer | undefined): string => (b === undefined ? '' : b.toString('latin1'));

export class PerUserHandler implements MilterHandler {
  private clientAddress = '';
  private clientHostname = '';
  private heloName = '';
  private tx: Transaction | null = null;

  constructor(
    private readonly app: AppContext,
    private readonly conn: ConnectionContext,
  ) {}

  connect(hostname: string, _family: ConnectFamily, _port: number, address: string): StepResult {
    // Sendmail prefixes IPv6 addresses with "IPv6:"; filters get the bare address.
    this.clientAddress = (this.conn.macros.get('{client_addr}') ?? address).replace(/^IPv6:/i, '');
    this.clientHostname = this.conn.macros.get('{client_name}') ?? hostname;
    return 'continue';
  }

  helo(name: string): StepResult {
    this.heloName = name;
    return 'continue';
  }

  async mail(args: readonly Buffer[]): Promise<StepResult> {
    await this.abort();
    const config = this.app.config();
    this.tx = {
      config,
      // One address parser for sender and recipients (brackets and a source route go).
      sender: parseAddress(latin1(args[0])).address,
      recipients: new TransactionRecipients(),
      dryRunDeferred: [],
      file: null,
      queueId: this.conn.macros.get('i') ?? '',
      started: performance.now(),
      client: {
        address: this.clientAddress,
        hostname: this.clientHostname,
        helo: this.heloName,
        protocol: this.conn.macros.get('r') ?? '',
        saslMethod: this.conn.macros.get('{auth_type}') ?? '',
        saslUsername: this.conn.macros.get('{auth_authen}') ?? '',
      },
    };
    // docs/reference.md §5.7: trusted networks and authenticated clients are accepted at MAIL, before any recipient.
    const skip = skipReason(
      { clientAddress: this.clientAddress, authenticatedAs: this.tx.client.saslUsername },
      { trustedNetworks: config.policy.trustedNetworks, skipAuthenticated: config.policy.skipAuthenticated },
    );
    if (skip !== null) {
      this.app.metrics.skip(skip.reason);
      answered(this.app, this.conn, this.tx, { action: 'accept', since: performance.now(), note: skip.note });
      this.tx = null;
      return 'accept';
    }
    return 'continue';
  }

  async rcpt(args: readonly Buffer[]): Promise<StepResult> {
    const tx = this.tx;
    if (tx === null) return 'continue'; // RCPT without MAIL: the engine's state machine already objects
    this.noteQueueId(tx);
    const rcpt = latin1(args[0]);
    try {
      const recipient = await this.app.classify({
        rcpt,
        rcptMailer: this.conn.macros.get('{rcpt_mailer}'),
        rcptAddr: this.conn.macros.get('{rcpt_addr}'),
      });
      // docs/reference.md §4b: the user's RCPT-stage program answers for this recipient alone, before anything else.
      if (recipient.kind === 'local') {
        const refused = await this.rcptStage(tx, recipient);
        if (refused !== null) return refused;
      }
      const locals = localsOf(recipient);
      // Which of the users behind this RCPT have a say (asked of the launcher once per user and transaction).
      const hasFilter = new Map<string, boolean>();
      for (const l of locals) {
        const known = tx.recipients.user(l.user.name);
        if (!known && !hasFilter.has(l.user.name)) hasFilter.set(l.user.name, await this.app.hasFilter(l.user));
      }
      const newFiltered = [...hasFilter].filter(([, has]) => has).map(([name]) => name);
      const newUnfiltered = [...hasFilter].filter(([, has]) => !has).length;
      const acceptsNonLocal = tx.config.policy.nonLocal === 'accept';
      const nonLocalVotes = !acceptsNonLocal ? 0 : recipient.kind === 'nonlocal' ? 1 : recipient.kind === 'alias' ? recipient.nonLocalTargets : 0;
      const split = mustSplit({
        mixed: tx.config.policy.mixed,
        filteredUsers: tx.recipients.filteredUsers(),
        acceptVotes: tx.recipients.unfilteredCount + (acceptsNonLocal ? tx.recipients.nonLocalCount : 0),
        newFiltered,
        newAcceptVotes: newUnfiltered + nonLocalVotes,
      });
      if (split) {
        // docs/reference.md §3 policy.dryRun: never a 452; say what would have been.
        if (!tx.config.policy.dryRun) {
          this.conn.log.debug({ rcpt, users: newFiltered }, 'split: deferring recipient to its own transaction');
          return customReply(SPLIT_REPLY);
        }
        tx.dryRunDeferred.push(rcpt);
        this.conn.log.info({ queueId: tx.queueId || 'NOQUEUE', rcpt, dryRunWouldBe: 'defer', reply: replyLine(SPLIT_REPLY) }, 'dry run: split would defer this recipient');
      }
      if (recipient.kind === 'alias') {
        this.conn.log.debug({ rcpt, users: locals.map((l) => l.user.name), nonLocalTargets: recipient.nonLocalTargets }, 'alias recipient');
      } else if (recipient.kind === 'nonlocal') {
        this.conn.log.debug({ rcpt: recipient.rcpt, reason: recipient.reason }, 'non-local recipient');
      }
      tx.recipients.add(recipient, hasFilter);
      this.app.metrics.recipient(locals.length > 0 ? 'local' : 'nonlocal');
      return 'continue';
    } catch (err) {
      return recipientFailure(this.app, this.conn, tx, rcpt, err);
    }
  }

  /**
   * Runs the recipient's RCPT-stage program when the user has one (asked
   * of the launcher: no run, no process, for users without): a reply that
   * refuses or defers this recipient, or null to go on. No message yet, so
   * no spool file; filter.rcptTimeout; filter.maxPerUser applies as to every
   * run. Our own failure throws (the caller tempfails the RCPT, 451 4.3.x).
   */
  private async rcptStage(tx: Transaction, r: LocalRecipient): Promise<CustomReply | null> {
    const filter = tx.config.filter;
    if (filter.rcptPath === '' || !(await this.app.hasFilter(r.user, 'rcpt'))) return null;
    const job: FilterJob = {
      spoolPath: '',
      program: 'rcpt',
      user: r.user,
      envelope: envelopeOf(tx, r),
      settings: { path: filter.rcptPath, timeout: filter.rcptTimeout, sandbox: filter.sandbox, limits: filter.limits, exitCodes: filter.exitCodes },
    };
    const [run] = this.app.runner.runMessage([job]);
    const result = await (run as Promise<FilterResult>);
    this.app.metrics.rcptFilterRun(result.outcome, r.user.name);
    const reply = rcptStageReply(result.outcome, result.replyText, filter.onError);
    this.conn.log.info(
      {
        event: 'rcpt-stage',
        queueId: tx.queueId || 'NOQUEUE',
        from: tx.sender,
        rcpt: r.rcpt,
        user: r.user.name,
        outcome: result.outcome,
        exit: result.exitCode ?? result.signal ?? null,
        ms: Math.round(result.durationMs),
        action: reply === null ? 'continue' : reply.code.startsWith('5') ? 'reject' : 'tempfail',
        ...(reply !== null ? { reply: replyLine(reply) } : {}),
        ...(result.log !== '' && result.outcome !== 'accept' ? { output: result.log } : {}),
      },
      'rcpt-stage',
    );
    return reply === null ? null : customReply(reply);
  }

  /** All recipients are known: accept at once when nobody has a say, else start spooling. */
  async data(): Promise<StepResult> {
    return this.guard((since) => this.startMessage(since));
  }

  async header(name: string, value: Buffer): Promise<StepResult> {
    return this.guard(async (since) => {
      const started = await this.startMessage(since); // MTAs that never send DATA (protocol v2/v3)
      if (started !== 'continue') return started;
      await this.tx?.file?.header(name, value);
      return 'continue';
    });
  }

  async eoh(): Promise<StepResult> {
    return this.guard(async (since) => {
      const started = await this.startMessage(since);
      if (started !== 'continue') return started;
      await this.tx?.file?.endHeaders();
      return 'continue';
    });
  }

  async body(chunk: Buffer): Promise<StepResult> {
    return this.guard(async (since) => {
      const tx = this.tx;
      const file = tx?.file;
      if (!tx || !file) return 'continue';
      await file.write(chunk);
      if (!file.oversize) return 'continue';
      return this.finishOversize(tx, file, since);
    });
  }

  async eom(): Promise<EomResult | StepResult> {
    return this.guard(async (since) => {
      const tx = this.tx;
      if (tx === null) return 'continue';
      this.noteQueueId(tx);
      const file = tx.file;
      if (file === null) {
        // Accepted early (no filters) — the MTA should not have sent more; be safe.
        return 'accept';
      }
      if (file.oversize) return this.finishOversize(tx, file, since);
      await file.close();
      this.app.metrics.spoolBytes(file.bytesWritten);
      const result = await askFilters(this.app, this.conn, tx, file.path, since);
      await this.abort();
      return result;
    });
  }

  /** Ends the transaction; its spool file goes. Never throws: a file that will not go is logged, the answer stands. */
  async abort(): Promise<void> {
    const tx = this.tx;
    this.tx = null;
    if (!tx?.file) return;
    try {
      await tx.file.remove();
    } catch (err) {
      this.conn.log.warn({ err, queueId: tx.queueId, file: tx.file.path }, 'cannot remove spool file');
    }
  }

  async close(): Promise<void> {
    await this.abort();
  }

  /**
   * Runs one step of an open message. A failure of ours inside it ends the
   * message now: 451 4.3.x by its code, the log line, the counters, and its
   * spool file removed. `since` is when the step's command arrived.
   */
  private async guard<T extends StepResult | EomResult>(step: (since: number) => Promise<T>): Promise<T | CustomReply> {
    const since = performance.now();
    try {
      return await step(since);
    } catch (err) {
      const tx = this.tx;
      // No message of ours open: the engine answers errorReply('PUM_ERR_INTERNAL') (serve.ts) and it is counted there.
      if (tx === null) throw err;
      const reply = ourFailure(this.app, this.conn, tx, err, since);
      await this.abort();
      return reply;
    }
  }

  private noteQueueId(tx: Transaction): void {
    // Postfix sends {i} only from the second RCPT or DATA on: keep the last one seen.
    tx.queueId = this.conn.macros.get('i') ?? tx.queueId;
  }

  private async startMessage(since: number): Promise<StepResult> {
    const tx = this.tx;
    if (tx === null || tx.file !== null) return 'continue';
    this.noteQueueId(tx);
    if (tx.recipients.filteredUsers().size === 0) {
      // docs/reference.md §5.5: no local recipient with a filter -> accept without the body.
      answered(this.app, this.conn, tx, { action: 'accept', since, note: 'no local recipient with a filter' });
      this.tx = null;
      return 'accept';
    }
    tx.file = await this.app.spool.create(tx.sender, {
      lineEndings: tx.config.filter.lineEndings,
      headerLeadingSpace: (this.conn.negotiated.protocol & SMFIP_HDR_LEADSPC) !== 0,
      maxMessageBytes: tx.config.milter.maxMessageSize,
    });
    return 'continue';
  }

  private async finishOversize(tx: Transaction, file: SpoolFile, since: number): Promise<StepResult> {
    const decision = decideOversize({ oversize: tx.config.policy.oversize, dryRun: tx.config.policy.dryRun });
    answered(this.app, this.conn, tx, {
      action: decision.action,
      since,
      reply: decision.reply,
      note: `oversize: more than milter.maxMessageSize (${tx.config.milter.maxMessageSize}) bytes, not filtered`,
      dryRunWouldBe: decision.dryRunWouldBe?.action,
    });
    await this.abort();
    return decision.action === 'reject' ? customReply(decision.reply ?? OVERSIZE_REPLY) : 'accept';
  }
}
