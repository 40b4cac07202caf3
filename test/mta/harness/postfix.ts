// A private Postfix 3.7 instance (`postfix -c DIR`) for tests and benchmarks:
// its own main.cf/master.cf, queue, mailboxes and log file, listening on
// 127.0.0.1:PORT. The system Postfix configuration is never read or touched.
// The milter part of main.cf is the shipped snippet deploy/postfix/main.cf,
// with only smtpd_milters replaced, so the README's snippet is what is tested.
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readMbox, type MboxMessage } from './mbox.js';
import { canConnect, LogFile, type LogMark, repoRoot, run, runOk, smtpPort, waitFor } from './util.js';

export const POSTFIX_SNIPPET = path.join(repoRoot, 'deploy/postfix/main.cf');

export interface PostfixOptions {
  /** Postfix syntax: 'inet:127.0.0.1:PORT' or 'unix:/abs/path'; null = no milter at all. */
  milter: string | null;
  /** SMTP port on 127.0.0.1 (default: a free port in 25200-25299). */
  port?: number;
  /** Extra or overriding main.cf parameters, applied last. */
  extraMain?: Record<string, string>;
  /** Route this domain (a non-local destination) by SMTP to 127.0.0.1:port, e.g. an SmtpSink. */
  remote?: { domain: string; port: number };
  /** Parent directory for the instance (default: the OS temp dir). */
  parentDir?: string;
}

export interface Postfix {
  readonly kind: 'postfix';
  readonly port: number;
  /** Instance root: etc/, queue/, data/, mail/, postfix.log. */
  readonly dir: string;
  readonly configDir: string;
  /** The mailbox file of a local user (may not exist yet). */
  mailboxPath(user: string): string;
  /** Raw mailbox contents ('' when nothing was delivered). */
  mailbox(user: string): string;
  /** The messages in a user's mailbox. */
  messages(user: string): MboxMessage[];
  /** The whole maillog_file. */
  log(): string;
  /** Position in the log, for logSince(). */
  logMark(): LogMark;
  logSince(mark: LogMark): string;
  /** `postqueue -p` output. */
  queue(): Promise<string>;
  /** `postqueue -f`: try deferred mail again now. */
  flush(): Promise<void>;
  /** Waits until the queue is empty (all mail delivered or bounced); throws after timeoutMs. */
  settle(timeoutMs?: number): Promise<void>;
  /** Sets main.cf parameters (postconf -e) and reloads. */
  configure(params: Record<string, string>): Promise<void>;
  /** `postfix reload`, then waits a moment for new smtpd processes. */
  reload(): Promise<void>;
  /** `postfix stop`, waits for the master to exit, removes the directory (unless PUMTEST_KEEP=1). */
  stop(): Promise<void>;
}

/** Parses `name = value` lines (with continuation lines) of a main.cf fragment. */
export function parseMainCf(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let last: string | undefined;
  for (const raw of text.split('\n')) {
    if (/^\s*(#|$)/.test(raw)) {
      last = undefined;
      continue;
    }
    if (/^\s/.test(raw) && last) {
      out.set(last, `${out.get(last) ?? ''} ${raw.trim()}`);
      continue;
    }
    const m = /^([A-Za-z0-9_]+)\s*=\s*(.*)$/.exec(raw);
    if (!m) throw new Error(`cannot parse main.cf line: ${raw}`);
    last = m[1]!;
    out.set(last, m[2]!.trim());
  }
  return out;
}

function postfixUid(): number {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postfix:'));
  const uid = line?.split(':')[2];
  if (!uid) throw new Error('no postfix user: install the Debian package postfix');
  return Number(uid);
}

export async function startPostfix(opts: PostfixOptions): Promise<Postfix> {
  const port = opts.port ?? (await smtpPort());
  const dir = mkdtempSync(path.join(opts.parentDir ?? os.tmpdir(), 'pumtest-postfix-'));
  chmodSync(dir, 0o755); // the postfix daemons must traverse it
  const etc = path.join(dir, 'etc');
  const queue = path.join(dir, 'queue');
  const data = path.join(dir, 'data');
  const mail = path.join(dir, 'mail');
  const logFile = path.join(dir, 'postfix.log');
  for (const d of [etc, queue, data, mail]) mkdirSync(d);
  chownSync(data, postfixUid(), -1);
  chmodSync(mail, 0o1777);
  copyFileSync('/etc/postfix/master.cf.proto', path.join(etc, 'master.cf'));

  const params = new Map<string, string>([
    ['compatibility_level', '3.6'],
    ['queue_directory', queue],
    ['data_directory', data],
    ['mail_spool_directory', mail],
    ['maillog_file', logFile],
    ['maillog_file_prefixes', `${dir}, /dev/stdout`],
    ['syslog_name', `pumtest-postfix-${port}`],
    ['myhostname', 'mx.example.test'],
    ['mydomain', 'example.test'],
    ['myorigin', 'example.test'],
    ['mydestination', 'example.test, $myhostname, localhost'],
    ['inet_interfaces', '127.0.0.1'],
    ['inet_protocols', 'ipv4'],
    ['mynetworks', '127.0.0.0/8'],
    ['alias_maps', ''],
    ['alias_database', ''],
    ['smtputf8_enable', 'no'],
    ['biff', 'no'],
    ['recipient_delimiter', '+'],
    ['message_size_limit', String(60 * 1024 * 1024)],
    ['mailbox_size_limit', '0'],
    // quick retries when a test flushes the queue
    ['minimal_backoff_time', '1s'],
    ['maximal_backoff_time', '2s'],
    ['queue_run_delay', '1s'],
  ]);
  // The shipped snippet, verbatim but for the milter address.
  for (const [k, v] of parseMainCf(readFileSync(POSTFIX_SNIPPET, 'utf8'))) params.set(k, v);
  if (opts.milter === null) params.delete('smtpd_milters');
  else params.set('smtpd_milters', opts.milter);
  if (opts.remote) {
    params.set('relay_domains', opts.remote.domain);
    params.set('transport_maps', `inline:{ ${opts.remote.domain}=smtp:[127.0.0.1]:${opts.remote.port} }`);
    params.set('smtp_host_lookup', 'native');
  }
  for (const [k, v] of Object.entries(opts.extraMain ?? {})) params.set(k, v);
  writeFileSync(path.join(etc, 'main.cf'), [...params].map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');

  const pf = (...args: string[]) => runOk('postfix', ['-c', etc, ...args]);
  const log = new LogFile(logFile);
  let stopped = false;

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await run('postfix', ['-c', etc, 'stop']);
    const pidFile = path.join(queue, 'pid', 'master.pid');
    await waitFor('postfix master to exit', () => {
      if (!existsSync(pidFile)) return true;
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    }, 15_000).catch(() => undefined);
    if (process.env.PUMTEST_KEEP !== '1') rmSync(dir, { recursive: true, force: true });
  };

  try {
    await runOk('postconf', ['-c', etc, '-F', '*/*/chroot = n']);
    await runOk('postconf', ['-c', etc, '-M#', 'smtp/inet']);
    await runOk('postconf', ['-c', etc, '-M', `127.0.0.1:${port}/inet=127.0.0.1:${port} inet n - n - - smtpd`]);
    await pf('start');
    await waitFor(`postfix on 127.0.0.1:${port}`, () => canConnect({ port }), 15_000);
  } catch (e) {
    const tail = log.since(0);
    await stop();
    throw new Error(`${String(e)}\n--- ${logFile} ---\n${tail}`);
  }

  const mailboxPath = (user: string) => path.join(mail, user);
  const queueText = async () => (await runOk('postqueue', ['-c', etc, '-p'])).stdout;

  return {
    kind: 'postfix',
    port,
    dir,
    configDir: etc,
    mailboxPath,
    mailbox: (user) => (existsSync(mailboxPath(user)) ? readFileSync(mailboxPath(user), 'latin1') : ''),
    messages: (user) => readMbox(mailboxPath(user)),
    log: () => log.since(0, 1 << 30),
    logMark: () => [log.mark()],
    logSince: (mark) => log.since(mark[0] ?? 0),
    queue: queueText,
    flush: async () => {
      await runOk('postqueue', ['-c', etc, '-f']);
    },
    settle: async (timeoutMs = 20_000) => {
      await waitFor('the Postfix queue to empty', async () => /Mail queue is empty/.test(await queueText()), timeoutMs, 200);
    },
    configure: async (p) => {
      for (const [k, v] of Object.entries(p)) await runOk('postconf', ['-c', etc, '-e', `${k}=${v}`]);
      await pf('reload');
      await new Promise((r) => setTimeout(r, 1200));
    },
    reload: async () => {
      await pf('reload');
      await new Promise((r) => setTimeout(r, 1200));
    },
    stop,
  };
}
