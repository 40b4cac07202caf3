// SMTP load through a private Postfix (test/mta/harness/postfix.ts, the same
// instance recipe the end-to-end tests use): smtp-source generates the load,
// every recipient is routed to the discard transport so no disk fills, and the
// Postfix log gives per-message latency and the errors.
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import path from 'node:path';
import { startPostfix, type Postfix } from '../../test/mta/harness/postfix.js';
import { sleep } from './daemons.js';
import { summarize, type LatencySummary } from './stats.js';
import { treeCpuSeconds } from './proc.js';

export const LOCAL_DOMAIN = 'example.test';
export const DISCARD_DOMAIN = 'bench.test';

export interface BenchPostfix {
  pf: Postfix;
  port: number;
  logFile: string;
  masterPid(): number | null;
  /** Points smtpd at this milter (Postfix syntax) or none, and reloads. */
  useMilter(spec: string | null): Promise<void>;
  stop(): Promise<void>;
}

/** Postfix wants inet:HOST:PORT where libmilter says inet:PORT@HOST. */
export function postfixMilterSpec(spec: string): string {
  const m = /^inet:(\d+)@(.+)$/.exec(spec);
  return m ? `inet:${m[2]}:${m[1]}` : spec;
}

/**
 * A Postfix that accepts example.test recipients that are real users (and
 * smtp-source's numbered aliases of them) and bench.test recipients, and
 * delivers all of them to discard:.
 */
export async function startBenchPostfix(port: number, parentDir: string, numberedAliases: Record<string, string>): Promise<BenchPostfix> {
  const aliases = Object.entries(numberedAliases).map(([k, v]) => `${k}=${v}`).join(', ');
  const pf = await startPostfix({
    milter: null,
    port,
    parentDir,
    extraMain: {
      relay_domains: DISCARD_DOMAIN,
      transport_maps: `inline:{ ${DISCARD_DOMAIN}=discard: }`,
      // local users are accepted (local_recipient_maps) but not written to mailboxes
      local_transport: 'discard:',
      alias_maps: aliases ? `inline:{ ${aliases} }` : '',
      // per-message latency from the log with microsecond digits
      delay_logging_resolution_limit: '6',
      // measure the milter, not Postfix's own inflow throttling
      in_flow_delay: '0s',
      smtpd_client_connection_count_limit: '0',
      smtpd_client_connection_rate_limit: '0',
      default_process_limit: '200',
      smtpd_milters: '',
    },
  });
  const logFile = path.join(pf.dir, 'postfix.log');
  return {
    pf,
    port,
    logFile,
    masterPid() {
      try {
        return Number(readFileSync(path.join(pf.dir, 'queue', 'pid', 'master.pid'), 'utf8').trim()) || null;
      } catch {
        return null;
      }
    },
    async useMilter(spec) {
      await pf.configure({ smtpd_milters: spec === null ? '' : postfixMilterSpec(spec) });
    },
    stop: () => pf.stop(),
  };
}

export interface SmtpLoad {
  messages: number;
  sessions: number;
  recipients: number;
  /** Body bytes (smtp-source -l). */
  size: number;
  /** -t address; the 2nd.. recipients get smtp-source's number prefix. */
  to: string;
  /** Stop smtp-source after this long (the count is a bound, so is the time). */
  maxSeconds: number;
  /** Probe first and fit the count to the time bound (default true). */
  fitToTime?: boolean;
}

export interface SmtpResult {
  sent: number;
  elapsedSeconds: number;
  messagesPerSecond: number;
  /** Postfix's delays=a part: from queue file creation (1st RCPT) through DATA and the milter's end-of-message verdict to the queue manager. */
  latencyMs: LatencySummary;
  rejects: number;
  tempfails: number;
  errors: string[];
  timedOut: boolean;
  /** CPU seconds of the whole Postfix process tree, per delivered message. */
  postfixCpuPerMessage: number | null;
}

function readFrom(file: string, offset: number): string {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const buf = Buffer.alloc(Math.max(0, size - offset));
    readSync(fd, buf, 0, buf.length, offset);
    return buf.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

function fileSize(file: string): number {
  try {
    const fd = openSync(file, 'r');
    try {
      return fstatSync(fd).size;
    } finally {
      closeSync(fd);
    }
  } catch {
    return 0;
  }
}

function runSmtpSource(args: string[], maxSeconds: number): Promise<{ code: number | null; stderr: string; timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn('smtp-source', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let timedOut = false;
    child.stderr.on('data', (b: Buffer) => {
      if (stderr.length < 10_000) stderr += b.toString();
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
    }, maxSeconds * 1000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, timedOut });
    });
  });
}

/** Parses the log lines of one run: delivered queue ids with their `a` delay, rejects, tempfails, warnings. */
export function parsePostfixLog(text: string): { delivered: Map<string, number>; rejects: number; tempfails: number; problems: string[] } {
  const delivered = new Map<string, number>();
  let rejects = 0;
  let tempfails = 0;
  const problems: string[] = [];
  for (const line of text.split('\n')) {
    const sent = /: ([0-9A-F]+): to=<[^>]*>.*? delays=([\d.]+)\/.*status=sent/.exec(line);
    if (sent) {
      delivered.set(sent[1] as string, Number(sent[2]) * 1000);
      continue;
    }
    if (/milter-reject: /.test(line)) {
      if (/: 4\d\d /.test(line)) tempfails++;
      else rejects++;
      if (problems.length < 5) problems.push(line);
      continue;
    }
    if (/ reject: |status=(deferred|bounced)|warning: .*milter|fatal:|panic:/.test(line)) {
      if (problems.length < 5) problems.push(line);
      if (/ reject: .*: 4\d\d |status=deferred/.test(line)) tempfails++;
      else if (/ reject: |status=bounced/.test(line)) rejects++;
    }
  }
  return { delivered, rejects, tempfails, problems };
}

/** One smtp-source run (-s sessions -m messages); killed at the time bound. */
async function smtpSourceRun(bp: BenchPostfix, load: SmtpLoad, messages: number): Promise<{ code: number | null; stderr: string; timedOut: boolean; elapsedSeconds: number }> {
  const args = [
    '-s', String(load.sessions),
    '-m', String(messages),
    '-r', String(load.recipients),
    '-l', String(load.size),
    '-f', 'sender@client.test',
    '-M', 'client.test',
    '-t', load.to,
    '-S', 'per-user-milter bench',
    `127.0.0.1:${bp.port}`,
  ];
  const t0 = process.hrtime.bigint();
  const r = await runSmtpSource(args, load.maxSeconds);
  return { ...r, elapsedSeconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

/**
 * One scenario's SMTP load. A short probe (one message per session, not
 * counted) estimates the rate, and the measured run gets as many messages as
 * fit in about 80% of the time bound (at most `load.messages`), so that it
 * normally ends by count: killing smtp-source at the bound leaves aborted
 * transactions whose filters still run and skew CPU per message. (Running
 * many short smtp-source processes instead costs far more: each process
 * start and end adds a lot of idle time per session.) The kill at the bound
 * stays as the safety net. `hooks` bracket the measured run (CPU meters).
 */
export async function runSmtpLoad(bp: BenchPostfix, load: SmtpLoad, hooks: { before?: () => void; after?: () => void } = {}): Promise<SmtpResult & { planned: number }> {
  let planned = load.messages;
  if (load.fitToTime !== false && load.messages > load.sessions * 2) {
    const probe = await smtpSourceRun(bp, { ...load, maxSeconds: Math.min(load.maxSeconds, 20) }, load.sessions);
    await bp.pf.settle(30_000).catch(() => undefined);
    if (probe.code === 0 && probe.elapsedSeconds > 0) {
      const rate = load.sessions / probe.elapsedSeconds;
      planned = Math.max(load.sessions, Math.min(load.messages, Math.floor(rate * load.maxSeconds * 0.8)));
    }
  }
  const mark = fileSize(bp.logFile);
  const master = bp.masterPid();
  hooks.before?.();
  const cpu0 = master ? treeCpuSeconds([master]) : 0;
  const r = await smtpSourceRun(bp, load, planned);
  // Let the queue manager hand the last accepted messages to discard:.
  await bp.pf.settle(30_000).catch(() => undefined);
  await sleep(200);
  const cpu = master ? treeCpuSeconds([master]) - cpu0 : null;
  hooks.after?.();
  const parsed = parsePostfixLog(readFrom(bp.logFile, mark));
  const errors = [...parsed.problems];
  if (r.code !== 0 && !r.timedOut) errors.unshift(`smtp-source exited ${r.code}: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`);
  const sent = parsed.delivered.size;
  return {
    sent,
    planned,
    elapsedSeconds: r.elapsedSeconds,
    messagesPerSecond: sent / r.elapsedSeconds,
    latencyMs: summarize([...parsed.delivered.values()]),
    rejects: parsed.rejects,
    tempfails: parsed.tempfails,
    errors,
    timedOut: r.timedOut,
    postfixCpuPerMessage: cpu !== null && sent > 0 ? cpu / sent : null,
  };
}
