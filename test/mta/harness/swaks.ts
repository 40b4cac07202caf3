// Runs swaks (the real SMTP client) against an MTA and returns what the
// server answered. Exit codes (swaks(1)): 0 accepted, 23 error at MAIL,
// 24 no RCPT accepted, 25 DATA refused, 26 rejected after the final dot.
import { run } from './util.js';

export interface SwaksOptions {
  port: number;
  server?: string;
  from?: string;
  to: string | readonly string[];
  /** Header lines "Name: value" (swaks --header); ignored with `data`. */
  headers?: readonly string[];
  /** Body text (swaks --body); ignored with `data`. */
  body?: string;
  /** A whole message (header + body) from this file (swaks --data @FILE). */
  dataFile?: string;
  helo?: string;
  /** swaks --timeout, seconds (default 60). */
  timeoutSec?: number;
  extraArgs?: readonly string[];
}

export interface SwaksResult {
  /** swaks exit status. */
  code: number;
  /** The whole transcript (DATA suppressed). */
  transcript: string;
  /** Server reply lines, marker stripped ("250 2.1.0 Ok"), in order. */
  replies: string[];
  /** Error reply lines (swaks marks them "<**"), marker stripped. */
  errors: string[];
  /** Server replies to RCPT TO, one per recipient, in order. */
  rcptReplies: string[];
  /** The last reply before QUIT's 221: the verdict on the message (after the final dot), or the error that ended it. */
  finalReply: string;
}

export async function swaks(o: SwaksOptions): Promise<SwaksResult> {
  const to = typeof o.to === 'string' ? o.to : o.to.join(',');
  const args = [
    '--server', `${o.server ?? '127.0.0.1'}:${o.port}`,
    '--from', o.from ?? 'sender@client.test',
    '--to', to,
    '--helo', o.helo ?? 'client.test',
    '--timeout', String(o.timeoutSec ?? 60),
    '--suppress-data',
  ];
  if (o.dataFile) args.push('--data', `@${o.dataFile}`);
  else {
    for (const h of o.headers ?? []) args.push('--header', h);
    args.push('--body', o.body ?? 'hello from the pumtest e2e suite');
  }
  args.push(...(o.extraArgs ?? []));
  const r = await run('swaks', args, { timeoutMs: ((o.timeoutSec ?? 60) + 30) * 1000 });
  const transcript = r.stdout + r.stderr;
  const lines = transcript.split('\n');
  const replies: string[] = [];
  const errors: string[] = [];
  const rcptReplies: string[] = [];
  let lastCmd = '';
  for (const line of lines) {
    const m = /^(<-|<\*\*)\s+(.*)$/.exec(line);
    const c = /^\s*(->|\*\*>)\s+(\S+)/.exec(line);
    if (c) {
      lastCmd = c[2]!.toUpperCase();
      continue;
    }
    if (!m) continue;
    const text = m[2]!;
    replies.push(text);
    if (m[1] === '<**') errors.push(text);
    if (lastCmd === 'RCPT' && !/^\d{3}-/.test(text)) rcptReplies.push(text);
  }
  const final = [...replies].reverse().find((l) => !/^221 /.test(l) && !/^\d{3}-/.test(l)) ?? '';
  return { code: r.code ?? -1, transcript, replies, errors, rcptReplies, finalReply: final };
}
