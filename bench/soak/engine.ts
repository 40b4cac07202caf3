// Runs in: the soak and fault tests.
//
// The soak's machinery, shared by `npm run soak` (bench/soak.ts) and the
// fault-injection tests (test/faults/): a private Postfix (the real-MTA
// harness of test/mta/harness) in front of the built per-user-milter, real
// users u0..u9 with the soak filter, a client that sends a seeded mix and
// re-sends every deferred message as a real client would, and counting at
// the mailboxes: each message's copies per recipient, read from the mbox
// files by X-Soak-Id. Faults are injected by the caller while traffic flows
// (hooks); the sums must still come out exact.
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  auxPort,
  createTestUsers,
  postfixMilterAddress,
  sleep,
  startMilter,
  startPostfix,
  type Milter,
  type MilterOptions,
  type Postfix,
  type TestUsers,
} from '../../test/mta/harness/index.js';
import { SERVICE_ACCOUNT } from '../../test/support/require.js';
import { expectedFinal, Mix, NO_FILTER_USER, renderMessage, soakFilterScript, SOAK_USERS, type MixOptions, type Plan } from './mix.js';
import { SmtpConnection, type Attempt } from './smtp-client.js';

export const SENDER = 'soak-sender@client.test';
export const LOCAL_DOMAIN = 'example.test';

// ---- the rig: Postfix, users, milter --------------------------------------------

export interface RigOptions {
  /** Extra milter configuration (serve --dotted.key values). */
  milterConfig?: MilterOptions['config'];
  /** Postfix main.cf overrides. */
  postfixMain?: Record<string, string>;
  /** Parent of the spool directory (e.g. a small tmpfs); default a private temp dir. */
  spoolParent?: string;
  /** Start the milter at once (default true). */
  startMilter?: boolean;
}

export class SoakRig {
  pf!: Postfix;
  users!: TestUsers;
  milter: Milter | undefined;
  listen!: string;
  spoolDir!: string;
  metricsPort!: number;
  private dir = '';

  constructor(readonly o: RigOptions = {}) {}

  async start(): Promise<void> {
    this.dir = mkdtempSync('/var/lib/pumtest-soak-');
    // the milter drops to its service account, which must reach its socket and spool
    const { chmodSync, chownSync } = await import('node:fs');
    chmodSync(this.dir, 0o755);
    const svc = serviceIds();
    chownSync(this.dir, svc.uid, svc.gid);
    this.listen = `unix:${this.dir}/milter.sock`;
    const spoolParent = this.o.spoolParent ?? this.dir;
    this.spoolDir = path.join(spoolParent, 'spool');
    this.metricsPort = await auxPort();
    this.users = await createTestUsers(SOAK_USERS);
    for (const u of this.users.all) {
      const short = u.name.slice(u.name.lastIndexOf('-') + 1);
      u.setFilter(short === NO_FILTER_USER ? null : soakFilterScript().replace(/^#!\/bin\/sh\n/, ''));
    }
    this.pf = await startPostfix({
      milter: postfixMilterAddress(this.listen),
      extraMain: {
        in_flow_delay: '0s',
        smtpd_client_connection_count_limit: '0',
        smtpd_client_connection_rate_limit: '0',
        default_process_limit: '100',
        // the soak counts what local(8) writes; a busy mailbox is retried soon
        ...this.o.postfixMain,
      },
    });
    if (this.o.startMilter !== false) await this.startMilter();
  }

  milterConfig(): NonNullable<MilterOptions['config']> {
    return {
      'users.minUid': 1000,
      'spool.dir': this.spoolDir,
      'metrics.listen': `127.0.0.1:${this.metricsPort}`,
      'filter.timeout': 3000,
      ...this.o.milterConfig,
    };
  }

  async startMilter(extra: MilterOptions['config'] = {}, wrap?: readonly string[]): Promise<Milter> {
    this.milter = await startMilter({ listen: this.listen, config: { ...this.milterConfig(), ...extra }, ...(wrap ? { wrap } : {}) });
    return this.milter;
  }

  async stopMilter(): Promise<void> {
    const m = this.milter;
    this.milter = undefined;
    if (m) await m.stop();
  }

  addr(short: string): string {
    return `${this.users.get(short).name}@${LOCAL_DOMAIN}`;
  }

  uids(): number[] {
    return this.users.all.map((u) => u.uid);
  }

  /** Processes of the soak users still alive (filters and whatever they left). */
  async userProcesses(): Promise<number> {
    return processesOfUids(new Set(this.uids())).length;
  }

  /** Ends what the soak users left running (after a milter SIGKILL nobody else will). */
  async killUserProcesses(): Promise<void> {
    {
      for (const pid of processesOfUids(new Set(this.uids()))) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  }

  /** The milter's Prometheus text, or '' when it does not answer. */
  async metrics(): Promise<string> {
    try {
      const r = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`, { signal: AbortSignal.timeout(5000) });
      return await r.text();
    } catch {
      return '';
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
    await attempt(() => this.killUserProcesses());
    if (this.pf) await attempt(() => this.pf.stop());
    if (this.users) await attempt(() => this.users.remove());
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    if (errs.length) throw errs[0];
  }
}

/** PIDs of the processes whose real uid is one of `uids` (one pass over /proc). */
export function processesOfUids(uids: ReadonlySet<number>): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${name}/status`, 'latin1'));
      if (m && uids.has(Number(m[1]))) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** The account serve drops to (milter.user's default), as the harness starts it. */
export function serviceIds(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${SERVICE_ACCOUNT}:`));
  const f = line?.split(':') ?? [];
  if (f.length < 4) throw new Error(`no ${SERVICE_ACCOUNT} account (.ci/run creates it)`);
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/** A counter's value summed over its series matching `labels` (e.g. 'reason="lookup"'); 0 if absent. */
export function metricValue(text: string, name: string, labels = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (labels && !(m[2] ?? '').includes(labels)) continue;
    sum += Number(m[3]);
  }
  return sum;
}

// ---- counting at the mailboxes --------------------------------------------------

/**
 * Takes each user's mbox away from local(8) under its dot lock (Postfix's
 * mailbox_delivery_lock includes dotlock; a delivery that finds the lock
 * waits and retries), counts the soak ids in it and deletes it, so a long
 * soak needs no disk for its mail.
 */
export class MailboxCounter {
  /** id -> user short name -> copies */
  readonly copies = new Map<string, Map<string, number>>();
  /** Copies whose X-Soak-Id is not one we sent. */
  strays = 0;

  constructor(private readonly pf: Postfix, private readonly users: TestUsers) {}

  private short(name: string): string {
    return name.slice(name.lastIndexOf('-') + 1);
  }

  harvest(): void {
    for (const u of this.users.all) {
      const mbox = this.pf.mailboxPath(u.name);
      if (!existsSync(mbox)) continue;
      const lock = `${mbox}.lock`;
      const taken = `${mbox}.soak-${process.pid}`;
      let fd = -1;
      for (let i = 0; i < 200 && fd < 0; i++) {
        try {
          fd = openSync(lock, 'wx', 0o600);
        } catch {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
        }
      }
      if (fd < 0) continue; // local(8) holds it; next time
      try {
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        renameSync(mbox, taken);
      } finally {
        unlinkSync(lock);
      }
      this.count(this.short(u.name), readFileSync(taken));
      rmSync(taken);
    }
  }

  private count(user: string, buf: Buffer): void {
    const needle = Buffer.from('\nX-Soak-Id: ', 'latin1');
    let i = 0;
    for (;;) {
      const j = buf.indexOf(needle, i);
      if (j < 0) break;
      const end = buf.indexOf(0x0a, j + needle.length);
      const id = buf.subarray(j + needle.length, end < 0 ? buf.length : end).toString('latin1').trim();
      const m = this.copies.get(id) ?? new Map<string, number>();
      m.set(user, (m.get(user) ?? 0) + 1);
      this.copies.set(id, m);
      i = j + needle.length;
    }
  }
}

// ---- process sampling ---------------------------------------------------------

export interface ProcSample {
  pid: number;
  rss: number;
  fds: number;
  threads: number;
}

export interface Sample {
  /** Messages finished (accepted or rejected) so far. */
  done: number;
  t: number;
  milter: ProcSample | null;
  runner: ProcSample | null;
  launcher: ProcSample | null;
  /** Files in the spool directory (message bodies; the launcher's socket excluded). */
  spoolFiles: number;
  /** Processes running as the soak users (filters and what they left). */
  userProcs: number;
  /** All processes of the milter's tree (itself included). */
  treeProcs: number;
}

function readProc(pid: number): ProcSample | null {
  try {
    const st = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = Number(/^VmRSS:\s+(\d+)/m.exec(st)?.[1] ?? 0) * 1024;
    const threads = Number(/^Threads:\s+(\d+)/m.exec(st)?.[1] ?? 0);
    const fds = readdirSync(`/proc/${pid}/fd`).length;
    return { pid, rss, fds, threads };
  } catch {
    return null;
  }
}

function children(): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const s = readFileSync(`/proc/${name}/stat`, 'latin1');
      const ppid = Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]);
      const l = out.get(ppid) ?? [];
      l.push(Number(name));
      out.set(ppid, l);
    } catch {
      // gone
    }
  }
  return out;
}

/** The milter's runner (node running workers/runner-process) and launcher (the native binary) among its children. */
export function milterParts(milterPid: number): { runner: number | null; launcher: number | null; tree: number } {
  const kids = children();
  let runner: number | null = null;
  let launcher: number | null = null;
  for (const pid of kids.get(milterPid) ?? []) {
    let cmd = '';
    let exe = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
      exe = readlinkSync(`/proc/${pid}/exe`);
    } catch {
      continue;
    }
    if (cmd.includes('runner-process') || cmd.includes('filter runner')) runner = pid;
    else if (exe.includes('launcher') || cmd.includes('launcher')) launcher = pid;
  }
  let tree = 0;
  const stack = [milterPid];
  while (stack.length) {
    const p = stack.pop()!;
    tree++;
    stack.push(...(kids.get(p) ?? []));
  }
  return { runner, launcher, tree };
}

export function spoolFiles(dir: string): number {
  try {
    return readdirSync(dir).filter((n) => {
      try {
        return !statSync(path.join(dir, n)).isSocket();
      } catch {
        return false;
      }
    }).length;
  } catch {
    return 0;
  }
}

export async function sample(rig: SoakRig, done: number, t0: number): Promise<Sample> {
  const m = rig.milter;
  const parts = m?.alive() ? milterParts(m.pid) : { runner: null, launcher: null, tree: 0 };
  return {
    done,
    t: (Date.now() - t0) / 1000,
    milter: m?.alive() ? readProc(m.pid) : null,
    runner: parts.runner ? readProc(parts.runner) : null,
    launcher: parts.launcher ? readProc(parts.launcher) : null,
    spoolFiles: spoolFiles(rig.spoolDir),
    userProcs: await rig.userProcesses(),
    treeProcs: parts.tree,
  };
}

// ---- the traffic --------------------------------------------------------------

export interface MessageRecord {
  plan: Plan;
  attempts: number;
  /** Replies of the attempts, newest last (kept short). */
  replies: string[];
  final: 'accepted' | 'rejected' | 'gave-up' | null;
  /** Attempts whose connection broke after the final dot (the server may have taken the message). */
  ambiguous: number;
  /** When the first attempt started and the final answer came (ms since the epoch). */
  firstAt: number;
  finalAt: number;
}

export interface TrafficOptions {
  messages: number;
  /** Stop sending new messages after this many seconds (the resends still finish). */
  seconds?: number;
  seed: number;
  /** Parallel SMTP sessions (default 6). */
  concurrency?: number;
  /** Transactions per connection before QUIT (default 10). */
  perConnection?: number;
  /** A deferred message is sent again after this long (ms, grows with the attempts; default 300). */
  retryDelayMs?: number;
  /** A message still deferred after this long is given up (counted as lost; default 300 s). */
  giveUpMs?: number;
  mix?: Omit<MixOptions, 'seed'>;
  /** Called each time `every` messages have finished. */
  onProgress?: (done: number) => void | Promise<void>;
  every?: number;
  /** Told each attempt's result (the fault tests watch the 4xx while a fault lasts). */
  onAttempt?: (rec: MessageRecord, a: Attempt, at: number) => void;
  /** Harvest the mailboxes every this many finished messages (default 500). */
  harvestEvery?: number;
  /** Count into this counter (a test that sends mail of its own, with ids starting `x-`, reads its copies here). */
  counter?: MailboxCounter;
}

export interface Sums {
  messages: number;
  finished: number;
  accepted: number;
  rejected: number;
  /** Attempts answered 4xx (at any stage) or refused at connect, later sent again. */
  deferrals: number;
  lost: number;
  duplicated: number;
  wronglyRejected: number;
  wronglyAccepted: number;
  gaveUp: number;
  ambiguous: number;
  strays: number;
  /** Up to 20 lines explaining each non-zero error sum. */
  problems: string[];
  elapsedSeconds: number;
}

/** Sends the mix through the rig's Postfix, re-sending deferrals, then counts at the mailboxes. */
export async function runTraffic(rig: SoakRig, o: TrafficOptions): Promise<{ sums: Sums; records: MessageRecord[] }> {
  const mix = new Mix({ seed: o.seed, ...o.mix });
  const counter = o.counter ?? new MailboxCounter(rig.pf, rig.users);
  const records: MessageRecord[] = [];
  const retry: { rec: MessageRecord; at: number }[] = [];
  const t0 = Date.now();
  let next = 0;
  let finished = 0;
  let sinceHarvest = 0;
  let lastProgress = 0;
  const every = o.every ?? 100;
  const harvestEvery = o.harvestEvery ?? 500;
  const giveUp = o.giveUpMs ?? 300_000;
  const firstTry = new Map<MessageRecord, number>();
  let stopNew = false;
  const deadline = o.seconds ? t0 + o.seconds * 1000 : Infinity;

  const take = (): MessageRecord | null | 'wait' => {
    const now = Date.now();
    const ready = retry.findIndex((r) => r.at <= now);
    if (ready >= 0) return retry.splice(ready, 1)[0]!.rec;
    if (!stopNew && now > deadline) stopNew = true;
    if (!stopNew && next < o.messages) {
      const plan = mix.plan(next++);
      const rec: MessageRecord = { plan, attempts: 0, replies: [], final: null, ambiguous: 0, firstAt: 0, finalAt: 0 };
      records.push(rec);
      return rec;
    }
    return retry.length > 0 || inFlight > 0 ? 'wait' : null;
  };
  let inFlight = 0;

  const finish = async (rec: MessageRecord, final: MessageRecord['final']) => {
    rec.final = final;
    rec.finalAt = Date.now();
    finished++;
    sinceHarvest++;
    if (sinceHarvest >= harvestEvery) {
      sinceHarvest = 0;
      counter.harvest();
    }
    if (finished - lastProgress >= every) {
      lastProgress = finished;
      await o.onProgress?.(finished);
    }
  };

  const worker = async () => {
    let conn: SmtpConnection | null = null;
    for (;;) {
      const rec = take();
      if (rec === null) break;
      if (rec === 'wait') {
        await sleep(50);
        continue;
      }
      inFlight++;
      try {
        if (!firstTry.has(rec)) firstTry.set(rec, Date.now());
        if (rec.firstAt === 0) rec.firstAt = Date.now();
        if (!conn || conn.isClosed || conn.transactions >= (o.perConnection ?? 10)) {
          conn?.close();
          conn = null;
          const opened = await SmtpConnection.open(rig.pf.port);
          if ('conn' in opened) conn = opened.conn;
          else {
            const reply = 'greeting' in opened ? opened.greeting : { code: 0, text: opened.error };
            const a: Attempt = { kind: 'deferred', at: 'connect', reply };
            rec.attempts++;
            o.onAttempt?.(rec, a, Date.now());
            rec.replies.push(`connect: ${reply.text}`);
            await requeue(rec);
            continue;
          }
        }
        rec.attempts++;
        const to = rec.plan.to.map((u) => rig.addr(u));
        const a = await conn.send(SENDER, to, renderMessage(rec.plan, SENDER));
        o.onAttempt?.(rec, a, Date.now());
        if (rec.replies.length > 8) rec.replies.shift();
        if (a.kind === 'accepted') {
          rec.replies.push(a.reply.text);
          await finish(rec, 'accepted');
        } else if (a.kind === 'rejected') {
          rec.replies.push(`${a.at}: ${a.reply.text}`);
          await finish(rec, 'rejected');
        } else if (a.kind === 'deferred') {
          rec.replies.push(`${a.at}: ${a.reply.text}`);
          await requeue(rec);
        } else {
          rec.replies.push(`broken${a.afterDot ? ' after the dot' : ''}: ${a.error}`);
          if (a.afterDot) rec.ambiguous++;
          conn = null;
          await requeue(rec);
        }
      } finally {
        inFlight--;
      }
    }
    conn?.close();
  };

  const requeue = async (rec: MessageRecord) => {
    if (Date.now() - (firstTry.get(rec) ?? Date.now()) > giveUp) {
      await finish(rec, 'gave-up');
      return;
    }
    const delay = Math.min(5000, (o.retryDelayMs ?? 300) * rec.attempts);
    retry.push({ rec, at: Date.now() + delay });
  };

  await Promise.all(Array.from({ length: o.concurrency ?? 6 }, () => worker()));
  // everything accepted is in Postfix's queue or delivered: let local(8) finish
  await rig.pf.settle(120_000);
  await sleep(300);
  counter.harvest();
  const sums = reckon(records, counter, (Date.now() - t0) / 1000);
  return { sums, records };
}

/** Compares what was sent and answered with what the mailboxes hold. */
export function reckon(records: readonly MessageRecord[], counter: Pick<MailboxCounter, 'copies'>, elapsedSeconds: number): Sums {
  const s: Sums = {
    messages: records.length,
    finished: 0,
    accepted: 0,
    rejected: 0,
    deferrals: 0,
    lost: 0,
    duplicated: 0,
    wronglyRejected: 0,
    wronglyAccepted: 0,
    gaveUp: 0,
    ambiguous: 0,
    strays: 0,
    problems: [],
    elapsedSeconds,
  };
  const say = (line: string) => {
    if (s.problems.length < 20) s.problems.push(line);
  };
  const ids = new Set<string>();
  for (const r of records) {
    ids.add(r.plan.id);
    s.deferrals += r.attempts - (r.final === 'gave-up' ? 0 : 1);
    s.ambiguous += r.ambiguous;
    const got = counter.copies.get(r.plan.id) ?? new Map<string, number>();
    const want = expectedFinal(r.plan);
    const why = `${r.plan.id} to=${r.plan.to.join(',')} acts=${JSON.stringify(r.plan.acts)} replies=${JSON.stringify(r.replies)} copies=${JSON.stringify([...got])}`;
    if (r.final !== null) s.finished++;
    if (r.final === 'gave-up') {
      s.gaveUp++;
      // never accepted: every copy that should exist is lost
      if (want === 'accept') {
        s.lost += r.plan.to.length;
        say(`lost (gave up): ${why}`);
      }
      continue;
    }
    if (r.final === 'rejected') {
      s.rejected++;
      if (want === 'accept') {
        s.wronglyRejected++;
        say(`wrongly rejected: ${why}`);
      }
      const copies = [...got.values()].reduce((a, b) => a + b, 0);
      if (copies > 0) {
        s.duplicated += copies;
        say(`rejected but delivered: ${why}`);
      }
      continue;
    }
    if (r.final === 'accepted') {
      s.accepted++;
      if (want === 'reject') {
        s.wronglyAccepted++;
        say(`wrongly accepted: ${why}`);
      }
      for (const u of r.plan.to) {
        const n = got.get(u) ?? 0;
        if (n === 0) {
          s.lost++;
          say(`lost for ${u}: ${why}`);
        } else if (n > 1) {
          s.duplicated += n - 1;
          say(`duplicated for ${u}: ${why}`);
        }
      }
      for (const [u, n] of got) {
        if (!r.plan.to.includes(u)) {
          s.duplicated += n;
          say(`delivered to a non-recipient ${u}: ${why}`);
        }
      }
    }
  }
  for (const [id, m] of counter.copies) {
    if (!ids.has(id) && !id.startsWith('x-')) {
      s.strays += [...m.values()].reduce((a, b) => a + b, 0);
      say(`stray copies of ${id}`);
    }
  }
  return s;
}

export function soakTmpDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'pumtest-soak-'));
  mkdirSync(d, { recursive: true });
  return d;
}
