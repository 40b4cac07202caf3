// A real Sendmail 8.17 beside Postfix: Debian's sendmail-bin/-base/-cf are
// downloaded once (apt-get download) and unpacked with dpkg -x into a cache,
// never installed. Each instance gets its own directory under /var/lib (no
// world-writable ancestor: Sendmail's file-safety checks), its own .mc/.cf,
// queue and mailboxes, and every invocation runs through a wrapper that gives
// it a private mount+UTS namespace with a qualified host name and files-only
// name service (else Sendmail sleeps 60 s looking for its FQDN).
// The milter part of the .mc is the shipped deploy/sendmail/per-user-milter.mc
// with only S= (and, when a test asks, T=) replaced.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import path from 'node:path';
import { readMbox, type MboxMessage } from './mbox.js';
import { canConnect, LogFile, type LogMark, randomTag, repoRoot, run, runOk, smtpPort, sleep, waitFor } from './util.js';

export const SENDMAIL_SNIPPET = path.join(repoRoot, 'deploy/sendmail/per-user-milter.mc');
export const SENDMAIL_CACHE = process.env.PUMTEST_SENDMAIL_CACHE ?? '/var/cache/pumtest-sendmail';
const PACKAGES = ['sendmail-bin', 'sendmail-base', 'sendmail-cf'];
export const SENDMAIL_HOSTNAME = 'mx3.example.test';

export interface SendmailOptions {
  /** Sendmail syntax: 'inet:PORT@127.0.0.1' or 'unix:/abs/path'; null = no INPUT_MAIL_FILTER at all. */
  milter: string | null;
  /** Replaces the snippet's T= value, e.g. 'C:5s;S:10s;R:2s;E:5m'. */
  milterTimeouts?: string;
  /** SMTP port on 127.0.0.1 (default: a free port in 25200-25299). */
  port?: number;
  /** Route all non-local mail by SMTP to 127.0.0.1:port (Sendmail's SMART_HOST), e.g. an SmtpSink. */
  remote?: { domain: string; port: number };
  /** Extra .mc lines, inserted before the MAILER() lines. */
  extraMc?: string[];
  /** Sendmail -d flags for the daemon (its debug output goes to sendmail.out), e.g. '64.5'. */
  debug?: string;
}

export interface Sendmail {
  readonly kind: 'sendmail';
  readonly port: number;
  /** Instance root: etc/, queue/, mail/, smtp-trace.log, sendmail.out. */
  readonly dir: string;
  readonly pid: number;
  mailboxPath(user: string): string;
  mailbox(user: string): string;
  messages(user: string): MboxMessage[];
  /** The -X trace (every SMTP line in and out) and the daemon's own output. */
  log(): string;
  logMark(): LogMark;
  logSince(mark: LogMark): string;
  /** `sendmail -bp`. */
  queue(): Promise<string>;
  /** `sendmail -q`: run the queue once, now. */
  flush(): Promise<void>;
  settle(timeoutMs?: number): Promise<void>;
  /** Runs the instance's sendmail binary (through the namespace wrapper) with these arguments. */
  exec(args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

/** Downloads (once) and unpacks (once) the Sendmail packages; returns the unpacked root. */
export async function sendmailTree(): Promise<string> {
  const root = path.join(SENDMAIL_CACHE, 'root');
  const binary = path.join(root, 'usr/libexec/sendmail/sendmail');
  if (existsSync(binary)) return root;
  const debs = path.join(SENDMAIL_CACHE, 'debs');
  mkdirSync(debs, { recursive: true, mode: 0o755 });
  const have = () => readdirSync(debs).filter((f) => f.endsWith('.deb'));
  if (PACKAGES.some((p) => !have().some((f) => f.startsWith(p + '_')))) {
    const r = await run('apt-get', ['download', ...PACKAGES], { cwd: debs });
    if (r.code !== 0) {
      throw new Error(`apt-get download ${PACKAGES.join(' ')} failed (run apt-get update?):\n${r.stdout}${r.stderr}`);
    }
  }
  // unpack into a fresh directory, then rename: parallel runs never see half a tree
  const tmp = mkdtempSync(path.join(SENDMAIL_CACHE, 'unpack-'));
  chmodSync(tmp, 0o755);
  for (const deb of have()) await runOk('dpkg', ['-x', path.join(debs, deb), tmp]);
  try {
    renameSync(tmp, root);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // someone else won the race
  }
  if (!existsSync(binary)) throw new Error(`no ${binary} after unpacking ${have().join(' ')}`);
  return root;
}

/** The shipped .mc snippet with S= (and optionally T=) replaced; throws if the snippet lost its shape. */
export function sendmailMilterMc(milter: string, timeouts?: string): string {
  const text = readFileSync(SENDMAIL_SNIPPET, 'utf8');
  const lines = text.split('\n');
  const i = lines.findIndex((l) => l.startsWith('INPUT_MAIL_FILTER('));
  const line = lines[i];
  if (line === undefined || !/\bS=[^,']+/.test(line) || !/\bT=[^,']+/.test(line)) {
    throw new Error(`${SENDMAIL_SNIPPET}: no INPUT_MAIL_FILTER line with S= and T= to substitute`);
  }
  let out = line.replace(/\bS=[^,']+/, `S=${milter}`);
  if (timeouts) out = out.replace(/\bT=[^,']+/, `T=${timeouts}`);
  lines[i] = out;
  return lines.join('\n');
}

export async function startSendmail(opts: SendmailOptions): Promise<Sendmail> {
  const R = await sendmailTree();
  const port = opts.port ?? (await smtpPort());
  mkdirSync('/var/lib', { recursive: true });
  const S = mkdtempSync(`/var/lib/pumtest-sendmail-${randomTag(2)}-`);
  chmodSync(S, 0o755);
  const etc = path.join(S, 'etc');
  const queue = path.join(S, 'queue');
  const mail = path.join(S, 'mail');
  mkdirSync(etc);
  mkdirSync(queue, { mode: 0o700 });
  mkdirSync(mail, { mode: 0o755 });
  const trace = path.join(S, 'smtp-trace.log');
  const outFile = path.join(S, 'sendmail.out');

  writeFileSync(path.join(etc, 'hosts'), `127.0.0.1 ${SENDMAIL_HOSTNAME} localhost\n`);
  writeFileSync(path.join(etc, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
  writeFileSync(path.join(etc, 'nsswitch.conf'), 'passwd: files\ngroup: files\nshadow: files\nhosts: files\nservices: files\n');
  const sm = path.join(S, 'sm');
  writeFileSync(
    sm,
    `#!/bin/sh
# sendmail with this instance's config, in a private mount+UTS namespace
exec unshare --mount --uts --propagation private /bin/sh -c '
  mount --bind ${etc}/hosts /etc/hosts &&
  mount --bind ${etc}/resolv.conf /etc/resolv.conf &&
  mount --bind ${etc}/nsswitch.conf /etc/nsswitch.conf &&
  hostname ${SENDMAIL_HOSTNAME} &&
  exec ${R}/usr/libexec/sendmail/sendmail -C ${etc}/sendmail.cf "$@"' sendmail "$@"
`,
    { mode: 0o755 },
  );
  // Local mailer: append to a private spool (Debian's mail.local wants /var/mail locks).
  writeFileSync(
    path.join(S, 'deliver.sh'),
    `#!/bin/sh
u="$1"
case "$u" in */*|.*|"") echo "bad user" >&2; exit 67;; esac
exec 9>>"${mail}/.$u.lock"
flock 9
{ cat; echo; } >> "${mail}/$u"
`,
    { mode: 0o755 },
  );

  const mc: string[] = [
    'divert(0)dnl',
    "VERSIONID(`pumtest private instance')dnl",
    "define(`__OSTYPE__', `pumtest')dnl",
    "define(`confCF_VERSION', `pumtest')dnl",
    `define(\`confEBINDIR', \`${R}/usr/libexec/sendmail')dnl`,
    `define(\`QUEUE_DIR', \`${queue}')dnl`,
    `define(\`ALIAS_FILE', \`${etc}/aliases')dnl`,
    `define(\`STATUS_FILE', \`${S}/statistics')dnl`,
    `define(\`HELP_FILE', \`${R}/etc/mail/helpfile')dnl`,
    `define(\`confPID_FILE', \`${S}/sendmail.pid')dnl`,
    `define(\`confDEAD_LETTER_DROP', \`${S}/dead.letter')dnl`,
    "define(`confHOST_STATUS_DIRECTORY', `')dnl",
    "define(`confCW_FILE', `')dnl",
    `define(\`confDOMAIN_NAME', \`${SENDMAIL_HOSTNAME}')dnl`,
    "define(`confDONT_PROBE_INTERFACES', `true')dnl",
    "define(`confLOG_LEVEL', `14')dnl",
    "define(`confMILTER_LOG_LEVEL', `14')dnl",
    "define(`confTO_IDENT', `0s')dnl",
    "define(`confDEF_USER_ID', `mail:mail')dnl",
    "define(`confPRIVACY_FLAGS', `authwarnings')dnl",
    "define(`confDELIVERY_MODE', `background')dnl",
    `define(\`LOCAL_MAILER_PATH', \`${S}/deliver.sh')dnl`,
    "define(`LOCAL_MAILER_ARGS', `deliver.sh $u')dnl",
    "define(`LOCAL_MAILER_FLAGS', `PS')dnl",
    "FEATURE(`no_default_msa')dnl",
    "FEATURE(`nocanonify')dnl",
    "FEATURE(`accept_unresolvable_domains')dnl",
    "LOCAL_DOMAIN(`example.test')dnl",
    `DAEMON_OPTIONS(\`Port=${port}, Addr=127.0.0.1, Name=MTA-pumtest')dnl`,
  ];
  if (opts.remote) {
    mc.push("define(`SMART_HOST', `relay:[127.0.0.1]')dnl", `define(\`RELAY_MAILER_ARGS', \`TCP $h ${opts.remote.port}')dnl`);
  }
  if (opts.milter !== null) mc.push(sendmailMilterMc(opts.milter, opts.milterTimeouts).trimEnd());
  mc.push(...(opts.extraMc ?? []), "MAILER(`local')dnl", "MAILER(`smtp')dnl");
  writeFileSync(path.join(etc, 'sendmail.mc'), mc.join('\n') + '\n');
  const cf = await runOk('m4', [`-D_CF_DIR_=${R}/usr/share/sendmail/cf/`, `${R}/usr/share/sendmail/cf/m4/cf.m4`, path.join(etc, 'sendmail.mc')]);
  writeFileSync(path.join(etc, 'sendmail.cf'), cf.stdout);
  writeFileSync(path.join(etc, 'aliases'), 'postmaster: root\nMAILER-DAEMON: postmaster\n');

  const exec = (args: string[], input?: string) => run(sm, args, { input: input ?? '', timeoutMs: 60_000 });
  const trlog = new LogFile(trace);
  const outlog = new LogFile(outFile);
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let stopped = false;

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (child?.pid && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const gone = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
      if (!gone) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    if (process.env.PUMTEST_KEEP !== '1') rmSync(S, { recursive: true, force: true });
  };

  try {
    const bi = await exec(['-bi']);
    if (bi.code !== 0) throw new Error(`sendmail -bi failed: ${bi.stdout}${bi.stderr}`);
    const fd = openSync(outFile, 'a');
    const args = ['-bD', '-X', trace];
    if (opts.debug) args.push(`-d${opts.debug}`);
    child = spawn(sm, args, { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    exited = new Promise((resolve) => child!.once('exit', () => resolve()));
    const c = child;
    const gone = () => c.exitCode !== null || c.signalCode !== null;
    await waitFor(`sendmail on 127.0.0.1:${port}`, async () => gone() || canConnect({ port }), 20_000);
    if (gone()) throw new Error(`sendmail exited ${c.exitCode ?? c.signalCode}`);
  } catch (e) {
    const out = outlog.since(0);
    await stop();
    throw new Error(`${String(e)}\n--- sendmail.out ---\n${out}`);
  }

  const mailboxPath = (user: string) => path.join(mail, user);
  const queueText = async () => {
    const r = await exec(['-bp']);
    return r.stdout + r.stderr;
  };
  const mark = (): LogMark => [trlog.mark(), outlog.mark()];

  return {
    kind: 'sendmail',
    port,
    dir: S,
    pid: child.pid!,
    mailboxPath,
    mailbox: (user) => (existsSync(mailboxPath(user)) ? readFileSync(mailboxPath(user), 'latin1') : ''),
    messages: (user) => readMbox(mailboxPath(user)),
    log: () => `--- ${trace} ---\n${trlog.since(0, 1 << 30)}--- ${outFile} ---\n${outlog.since(0, 1 << 30)}`,
    logMark: mark,
    logSince: (m) => {
      const [t = 0, o = 0] = m;
      return `--- ${trace} (-X trace) ---\n${trlog.since(t)}--- ${outFile} ---\n${outlog.since(o)}`;
    },
    queue: queueText,
    flush: async () => {
      await exec(['-q']);
    },
    settle: async (timeoutMs = 20_000) => {
      await waitFor('the Sendmail queue to empty', async () => /Total requests: 0|is empty/.test(await queueText()), timeoutMs, 250);
    },
    exec,
    stop,
  };
}
