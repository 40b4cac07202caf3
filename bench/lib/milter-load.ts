// Milter-protocol load with the in-repo MTA-side client (src/milter/client.ts):
// N parallel connections, each replaying Postfix-shaped transactions (one
// connection per message, macros where Postfix sends them) at full speed.
// Measures the verdict latency (end-of-message, or the step at which the
// milter gave its verdict early) and the whole transaction.
import { MilterClient } from '../../src/milter/client.js';
import type { Reply } from '../../src/milter/replies.js';
import { summarize, type LatencySummary } from './stats.js';

export interface MilterRecipient {
  address: string;
  /** {rcpt_mailer}: 'local' for a local user, 'smtp' for pass-through. */
  mailer: string;
}

export interface MilterLoadSpec {
  /** libmilter syntax: unix:/path or inet:PORT@HOST. */
  socket: string;
  connections: number;
  messages: number;
  maxSeconds: number;
  recipients: MilterRecipient[];
  /** Body bytes. */
  size: number;
}

export interface MilterLoadResult {
  completed: number;
  elapsedSeconds: number;
  messagesPerSecond: number;
  verdictLatencyMs: LatencySummary;
  transactionLatencyMs: LatencySummary;
  verdicts: Record<string, number>;
  /** How many transactions got their verdict before end of message. */
  earlyVerdicts: number;
  /** Transactions by the step whose reply was the verdict (eom, rcpt, ...). */
  verdictSteps: Record<string, number>;
  errors: string[];
  timedOut: boolean;
}

const MILTER_CHUNK = 65535;
const bodies = new Map<number, Buffer>();

/** A body of exactly `size` bytes of 78-character CRLF lines. */
export function makeBody(size: number): Buffer {
  const cached = bodies.get(size);
  if (cached) return cached;
  const line = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ012345\r\n', 'latin1');
  const b = Buffer.alloc(size);
  for (let off = 0; off < size; off += line.length) line.copy(b, off, 0, Math.min(line.length, size - off));
  if (size >= 2) b.write('\r\n', size - 2, 'latin1');
  bodies.set(size, b);
  return b;
}

function classify(reply: Reply): string {
  switch (reply.type) {
    case 'continue':
    case 'accept':
      return 'accept';
    case 'replycode':
      return reply.text.startsWith('4') ? 'tempfail' : reply.text.startsWith('5') ? 'reject' : 'other';
    default:
      return reply.type;
  }
}

/** A verdict that ends the transaction before end of message. */
function isVerdict(reply: Reply | null): reply is Reply {
  return reply !== null && reply.type !== 'continue' && reply.type !== 'skip';
}

let qidCounter = 0;
function queueId(): string {
  qidCounter = (qidCounter + 1) % 0xfffff;
  return `B${process.pid.toString(16).toUpperCase()}${qidCounter.toString(16).toUpperCase().padStart(5, '0')}`;
}

interface OneResult {
  verdict: string;
  verdictMs: number;
  transactionMs: number;
  early: boolean;
  /** The step whose reply was the verdict. */
  step: string;
}

async function oneTransaction(spec: MilterLoadSpec, body: Buffer): Promise<OneResult> {
  const t0 = performance.now();
  const c = await MilterClient.connect(spec.socket, { timeout: 120_000 });
  try {
    await c.negotiate();
    const qid = queueId();
    let tStep = performance.now();
    let step = 'connect';
    const early = (reply: Reply | null): OneResult | null => {
      if (!isVerdict(reply)) return null;
      return { verdict: classify(reply), verdictMs: performance.now() - tStep, transactionMs: 0, early: true, step };
    };
    c.macro('C', { j: 'mx.example.test', '{daemon_name}': 'mx.example.test', '{daemon_addr}': '127.0.0.1', v: 'Postfix 3.7.11', _: 'localhost [127.0.0.1]' });
    tStep = performance.now();
    let r = early(await c.connect('localhost', 'inet', 40000, '127.0.0.1'));
    if (!r) {
      c.macro('H', {});
      tStep = performance.now();
      step = 'helo';
      r = early(await c.helo('client.test'));
    }
    if (!r) {
      c.macro('M', { '{mail_addr}': 'sender@client.test', '{mail_host}': 'client.test', '{mail_mailer}': 'smtp' });
      tStep = performance.now();
      step = 'mail';
      r = early(await c.mail('<sender@client.test>'));
    }
    for (const [k, rcpt] of spec.recipients.entries()) {
      if (r) break;
      const domain = rcpt.address.split('@')[1] ?? '';
      const macros: Record<string, string> = { '{rcpt_addr}': rcpt.address, '{rcpt_host}': rcpt.mailer === 'local' ? 'mx.example.test' : domain, '{rcpt_mailer}': rcpt.mailer };
      if (k > 0) macros.i = qid;
      c.macro('R', macros);
      tStep = performance.now();
      step = 'rcpt';
      r = early(await c.rcpt(`<${rcpt.address}>`));
    }
    if (!r) {
      c.macro('T', { i: qid });
      tStep = performance.now();
      step = 'data';
      r = early(await c.data());
    }
    const headers: Array<[string, string]> = [
      ['Received', `from client.test (localhost [127.0.0.1]) by mx.example.test (Postfix) with ESMTP id ${qid}`],
      ['From', 'sender@client.test'],
      ['To', spec.recipients.map((x) => x.address).join(', ')],
      ['Subject', 'per-user-milter bench'],
      ['Message-Id', `<${qid}@client.test>`],
      ['Date', new Date().toUTCString()],
    ];
    for (const [name, value] of headers) {
      if (r) break;
      c.macro('L', { i: qid });
      tStep = performance.now();
      step = 'header';
      r = early(await c.header(name, value));
    }
    if (!r) {
      c.macro('N', { i: qid });
      tStep = performance.now();
      step = 'eoh';
      r = early(await c.eoh());
    }
    let skipped = false;
    for (let off = 0; off < body.length && !r && !skipped; off += MILTER_CHUNK) {
      c.macro('B', { i: qid });
      tStep = performance.now();
      step = 'body';
      const reply = await c.body(body.subarray(off, Math.min(body.length, off + MILTER_CHUNK)));
      if (reply?.type === 'skip') skipped = true;
      else r = early(reply);
    }
    if (!r) {
      c.macro('E', { i: qid });
      tStep = performance.now();
      const eom = await c.eom();
      r = { verdict: classify(eom.final), verdictMs: performance.now() - tStep, transactionMs: 0, early: false, step: 'eom' };
    }
    // Postfix ends the transaction with ABORT after the verdict, then QUIT.
    c.abort();
    await c.quit();
    r.transactionMs = performance.now() - t0;
    return r;
  } catch (e) {
    c.destroy();
    throw e;
  }
}

export async function runMilterLoad(spec: MilterLoadSpec): Promise<MilterLoadResult> {
  const body = makeBody(spec.size);
  const verdictMs: number[] = [];
  const transactionMs: number[] = [];
  const verdicts: Record<string, number> = {};
  const errors: string[] = [];
  let earlyVerdicts = 0;
  const verdictSteps: Record<string, number> = {};
  let issued = 0;
  let timedOut = false;
  const t0 = performance.now();
  const deadline = t0 + spec.maxSeconds * 1000;
  const worker = async (): Promise<void> => {
    while (issued < spec.messages) {
      if (performance.now() > deadline) {
        timedOut = true;
        return;
      }
      issued++;
      try {
        const r = await oneTransaction(spec, body);
        verdicts[r.verdict] = (verdicts[r.verdict] ?? 0) + 1;
        verdictMs.push(r.verdictMs);
        transactionMs.push(r.transactionMs);
        if (r.early) earlyVerdicts++;
        verdictSteps[r.step] = (verdictSteps[r.step] ?? 0) + 1;
      } catch (e) {
        verdicts.error = (verdicts.error ?? 0) + 1;
        if (errors.length < 10) errors.push(String((e as Error).message ?? e));
      }
    }
  };
  await Promise.all(Array.from({ length: spec.connections }, () => worker()));
  const elapsedSeconds = (performance.now() - t0) / 1000;
  const completed = transactionMs.length;
  return {
    completed,
    elapsedSeconds,
    messagesPerSecond: completed / elapsedSeconds,
    verdictLatencyMs: summarize(verdictMs),
    transactionLatencyMs: summarize(transactionMs),
    verdicts,
    earlyVerdicts,
    verdictSteps,
    errors,
    timedOut,
  };
}
