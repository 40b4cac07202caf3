// Helpers for the component tests that drive a real `per-user-milter serve`
// (built CLI, real runner process, real user switch) through the in-repo
// milter client: a throw-away world of passwd-file users, one message, the
// metrics scrape, the per-message log lines.
//
// Ranges of this area (failures.test.ts, fairness.test.ts): uids 64001-66999,
// ports 26401-26429. Users are passwd-file entries only (no system accounts),
// and cleanup kills whatever still runs under their uids.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { MilterClient } from '../../../src/milter/client.js';
import type { Reply } from '../../../src/milter/replies.js';

export const DOMAIN = 'example.test';

export interface AppWorld {
  root: string;
  passwd: string;
  uids: Record<string, number>;
  homeOf(user: string): string;
  /** Writes `user`'s ~/.user-milter: a /bin/sh script with `body` after reading the message. */
  writeFilter(user: string, body: string): void;
  cleanup(): void;
}

/** Live processes of a uid (ps; zombies excluded). */
export function processesOf(uid: number): number[] {
  let out = '';
  try {
    out = execFileSync('ps', ['-u', String(uid), '-o', 'pid=,stat='], { encoding: 'utf8' });
  } catch {
    return []; // ps exits 1 when there is none
  }
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter(([pid, stat]) => pid && !stat?.startsWith('Z'))
    .map(([pid]) => Number(pid));
}

export function killUid(uid: number): void {
  for (const pid of processesOf(uid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

/**
 * Users by name and uid, each with a 0700 home of their own under a fresh
 * directory in /var/lib (not under /tmp: a world-writable ancestor makes
 * every filter unsafe), listed in a passwd file there.
 */
export function makeAppWorld(tag: string, uids: Record<string, number>): AppWorld {
  const root = fs.mkdtempSync(`/var/lib/pumfc-${tag}-`);
  fs.chmodSync(root, 0o755);
  fs.mkdirSync(path.join(root, 'home'), { mode: 0o755 });
  const homeOf = (u: string) => path.join(root, 'home', u);
  const lines: string[] = [];
  for (const [u, uid] of Object.entries(uids)) {
    fs.mkdirSync(homeOf(u), { mode: 0o700 });
    fs.chownSync(homeOf(u), uid, uid);
    lines.push(`${u}:x:${uid}:${uid}::${homeOf(u)}:/bin/sh`);
  }
  const passwd = path.join(root, 'passwd');
  fs.writeFileSync(passwd, lines.join('\n') + '\n');
  return {
    root,
    passwd,
    uids,
    homeOf,
    writeFilter(user, body) {
      const file = path.join(homeOf(user), '.user-milter');
      fs.writeFileSync(file, `#!/bin/sh\ncat >/dev/null\n${body}\n`, { mode: 0o755 });
      fs.chownSync(file, uids[user] as number, uids[user] as number);
      fs.chmodSync(file, 0o755);
    },
    cleanup() {
      for (const uid of Object.values(uids)) killUid(uid);
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

export async function openClient(port: number, timeoutMs = 20_000): Promise<MilterClient> {
  const c = await MilterClient.connect(`inet:${port}@127.0.0.1`, { timeout: timeoutMs });
  await c.negotiate();
  c.macro('C', { '{client_addr}': '192.0.2.7', '{client_name}': 'client.test' });
  assert.equal((await c.connect('client.test', 'inet', 4567, '192.0.2.7'))?.type, 'continue');
  assert.equal((await c.helo('client.test'))?.type, 'continue');
  return c;
}

export function describeReply(r: Reply, at = ''): string {
  if (r.type === 'replycode') return r.text;
  return at ? `${r.type}@${at}` : r.type;
}

export interface Sent {
  rcptReplies: string[];
  /** The final answer: 'accept', a REPLYCODE text, or 'TYPE@step' when it came before end of message. */
  final: string;
}

/**
 * One transaction to local users (by name) with a body of about `bodyBytes`;
 * stops at the first final answer. An RCPT answered other than continue is
 * noted and the transaction goes on, as an MTA does.
 */
export async function sendMessage(c: MilterClient, users: readonly string[], opts: { bodyBytes?: number; queueId?: string } = {}): Promise<Sent> {
  const queueId = opts.queueId ?? 'QTEST';
  assert.equal((await c.mail('<sender@client.test>'))?.type, 'continue');
  const rcptReplies: string[] = [];
  for (const u of users) {
    c.macro('R', { '{rcpt_mailer}': 'local', '{rcpt_addr}': `${u}@${DOMAIN}`, i: queueId });
    rcptReplies.push(describeReply((await c.rcpt(`<${u}@${DOMAIN}>`)) as Reply));
  }
  c.macro('T', { i: queueId });
  const data = (await c.data()) as Reply;
  if (data.type !== 'continue') return { rcptReplies, final: describeReply(data, 'data') };
  for (const [n, v] of [['From', ' <sender@client.test>'], ['Subject', ' test']] as const) {
    const h = (await c.header(n, v)) as Reply;
    if (h.type !== 'continue') return { rcptReplies, final: describeReply(h, 'header') };
  }
  const eoh = (await c.eoh()) as Reply;
  if (eoh.type !== 'continue') return { rcptReplies, final: describeReply(eoh, 'eoh') };
  const line = 'x'.repeat(70) + '\r\n';
  let body = line.repeat(Math.ceil((opts.bodyBytes ?? 200) / line.length));
  while (body.length > 0) {
    const chunk = body.slice(0, 65535);
    body = body.slice(65535);
    const r = (await c.body(chunk)) as Reply;
    if (r.type !== 'continue') return { rcptReplies, final: describeReply(r, 'body') };
  }
  c.macro('E', { i: queueId });
  const eom = await c.eom();
  return { rcptReplies, final: describeReply(eom.final) };
}

export function scrape(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
        let s = '';
        res.setEncoding('utf8').on('data', (d: string) => (s += d)).on('end', () => resolve(s));
      })
      .on('error', reject);
  });
}

/** One sample: `metricValue(text, 'per_user_milter_messages_total', 'action="accept"')`; 0 when absent. */
export function metricValue(text: string, name: string, labels = ''): number {
  const series = labels === '' ? name : `${name}{${labels}}`;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}

/** Every JSON log record with `event` (serve runs with log.format json), oldest first. */
export function events(log: string, event: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of log.split('\n')) {
    if (!line.startsWith('{') || !line.includes(`"event":"${event}"`)) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line cut by a concurrent write: not ours to judge here
    }
  }
  return out;
}

/** The files in serve's spool directory (from its start-up line). */
export function spoolFiles(log: string): string[] {
  const dir = /"spoolDir":"([^"]+)"/.exec(log)?.[1];
  assert.ok(dir, 'serve logs its spool directory');
  // The launcher's socket lives there too; only spooled messages count.
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n !== 'launcher.sock') : [];
}
