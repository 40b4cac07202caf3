// Runs in: its own process (`per-user-milter try`), which runs the filter in its main thread.
//
// `per-user-milter try --user NAME [--sender ADDR] [--recipient ADDR]
// [--client-address IP] [--helo NAME] [--sasl-username NAME]
// [--config FILE] [--dotted.key value…] [FILE]` (docs/reference.md §2): runs NAME's
// filter on one message exactly as the milter would (same user lookup,
// sandbox, limits, environment, message form), prints what came of it and
// exits 0 accept, 1 reject, 75 tempfail, 2 anything else.
//
// The message is spooled into a private temporary directory, not spool.dir:
// a running milter owns that one, and `try` must not touch its files. `try`
// starts its own launcher on that directory; as root it keeps root (it is
// an administrator's tool, never network-facing).
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { ConfigError, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { closeLauncherConnection, LAUNCHER_SOCKET_ENV, runFilter } from '../filter/run.js';
import { launcherReport, privilegeProblems } from '../filter/privileges.js';
import { PumError } from '../errors.js';
import { startLauncher } from '../launcher/start.js';
import { launcherSettings } from './privsep.js';
import { decide, decideOversize, policySettings } from '../policy/index.js';
import type { EnvelopeFacts, FilterJob, FilterResult, Outcome } from '../filter/job.js';
import { localRecipientFor } from '../recipients/index.js';
import { Spool, spoolRawMessage } from '../spool/index.js';
import { createUserResolver } from '../users/resolve.js';
import type { UserAccount } from '../users/user.js';
import { splitConfigArgs } from './args.js';

const EXIT_BY_OUTCOME: Partial<Record<Outcome, number>> = { accept: 0, reject: 1, tempfail: 75 };
/** Usage, configuration, unknown user, or any outcome other than accept/reject/tempfail. */
const EXIT_OTHER = 2;

export interface TryArgs {
  user: string;
  sender: string | undefined;
  recipient: string | undefined;
  /** The SMTP client as the milter would have seen it (CLIENT_ADDRESS, CLIENT_HELO, SASL_USERNAME). */
  clientAddress: string | undefined;
  helo: string | undefined;
  saslUsername: string | undefined;
  /** undefined or '-': standard input. */
  file: string | undefined;
  configFile: string | undefined;
  keyArgs: string[];
}

class UsageError extends Error {}

const USAGE = 'usage: per-user-milter try --user NAME [--sender ADDR] [--recipient ADDR] [--client-address IP] [--helo NAME] [--sasl-username NAME] [--config FILE] [--dotted.key VALUE ...] [FILE]\n(per-user-milter try --help says more)';

const OWN_OPTIONS = ['user', 'sender', 'recipient', 'client-address', 'helo', 'sasl-username'] as const;

export function parseTryArgs(argv: string[]): TryArgs {
  const split = splitConfigArgs(argv, OWN_OPTIONS);
  const own: Record<string, string> = {};
  const operands: string[] = [];
  for (let i = 0; i < split.rest.length; i++) {
    const word = split.rest[i] as string;
    if (word.startsWith('--') && (OWN_OPTIONS as readonly string[]).includes(word.slice(2))) {
      own[word.slice(2)] = split.rest[++i] as string;
    } else if (word.startsWith('-') && word !== '-') {
      throw new UsageError(`unknown option ${word}`);
    } else {
      operands.push(word);
    }
  }
  if (own.user === undefined || own.user === '') throw new UsageError('--user NAME is required');
  if (operands.length > 1) throw new UsageError(`one FILE at most, got: ${operands.join(' ')}`);
  const clientAddress = own['client-address'];
  if (clientAddress !== undefined && net.isIP(clientAddress) === 0) throw new UsageError(`--client-address wants an IPv4 or IPv6 address, got ${JSON.stringify(clientAddress)}`);
  return {
    user: own.user,
    sender: own.sender,
    recipient: own.recipient,
    clientAddress,
    helo: own.helo,
    saslUsername: own['sasl-username'],
    file: operands[0],
    configFile: split.configFile,
    keyArgs: split.keyArgs,
  };
}

function out(line: string): void {
  process.stdout.write(line + '\n');
}

function err(line: string): void {
  process.stderr.write(`per-user-milter try: ${line}\n`);
}

/** The environment facts the milter would give this user's filter for a message from the client the options describe. */
function envelopeFor(config: Config, user: UserAccount, sender: string, args: TryArgs): EnvelopeFacts {
  const rcpt = localRecipientFor(user, args.recipient ?? `${user.name}@localhost`, config.recipients.delimiter);
  return {
    SENDER: sender,
    RECIPIENT: rcpt.address,
    LOCAL: rcpt.localPart,
    EXTENSION: rcpt.extension,
    DOMAIN: rcpt.domain,
    CLIENT_ADDRESS: args.clientAddress ?? '',
    CLIENT_HOSTNAME: '',
    CLIENT_HELO: args.helo ?? '',
    CLIENT_PROTOCOL: '',
    QUEUE_ID: '',
    SASL_METHOD: '',
    SASL_USERNAME: args.saslUsername ?? '',
  };
}

function printResult(config: Config, result: FilterResult): void {
  out(`outcome: ${result.outcome}`);
  out(`exit code: ${result.exitCode ?? (result.signal ? `none (signal ${result.signal})` : 'none (not run)')}`);
  out(`duration: ${Math.round(result.durationMs)} ms`);
  // What the milter would answer if this user were the message's only recipient.
  const decision = decide([{ user: '', outcome: result.outcome, replyText: result.replyText, rcpts: [] }], 0, {
    ...policySettings(config),
    dryRun: false,
  });
  out(`verdict alone: ${decision.action}${config.policy.dryRun ? ' (policy.dryRun: the milter would accept)' : ''}`);
  out(`reply: ${decision.reply ?? '(none)'}`);
  if (result.replyText !== '') out(`filter text: ${result.replyText}`);
  if (result.log !== '') {
    out('filter output:');
    for (const line of result.log.replace(/\n$/, '').split('\n')) out(`  ${line}`);
  }
}

export async function tryCommand(argv: string[]): Promise<number> {
  let args: TryArgs;
  let config: Config;
  try {
    args = parseTryArgs(argv);
    config = loadConfig({ file: args.configFile, args: args.keyArgs }).config;
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const line of e.problems) err(`config: ${line}`);
      return EXIT_OTHER;
    }
    if (e instanceof UsageError) {
      err(e.message);
      process.stderr.write(USAGE + '\n');
      return EXIT_OTHER;
    }
    throw e;
  }

  const users = createUserResolver({ passwdFile: config.users.passwdFile, minUid: config.users.minUid });
  const user = await users.lookup(args.user);
  if (user === null) {
    err(`no user ${args.user} with uid >= users.minUid (${config.users.minUid}); root never gets a filter run`);
    return EXIT_OTHER;
  }

  const input: Readable = args.file === undefined || args.file === '-' ? process.stdin : fs.createReadStream(args.file);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'per-user-milter-try-'));
  try {
    const { spool } = await Spool.open(dir);
    let spooled;
    try {
      spooled = await spoolRawMessage(spool, input, {
        sender: args.sender,
        lineEndings: config.filter.lineEndings,
        maxMessageBytes: config.milter.maxMessageSize,
      });
    } catch (e) {
      err(`cannot read the message: ${(e as Error).message}`);
      return EXIT_OTHER;
    }
    const { file, sender } = spooled;
    if (file.oversize) {
      const d = decideOversize({ oversize: config.policy.oversize, dryRun: false });
      out('outcome: none (not run)');
      out(`message larger than milter.maxMessageSize (${config.milter.maxMessageSize} bytes): the milter does not filter it`);
      out(`verdict alone: ${d.action}`);
      out(`reply: ${d.reply ?? '(none)'}`);
      return EXIT_OTHER;
    }
    const problems = privilegeProblems(config, process.geteuid?.() ?? -1);
    if (problems.length > 0) {
      for (const p of problems) err(p);
      return EXIT_OTHER;
    }
    const settings = launcherSettings(config, dir, process.getuid?.() ?? 0, process.getgid?.() ?? 0);
    let launcher;
    try {
      launcher = await startLauncher(settings, { onStderr: (line) => err(line) });
    } catch (e) {
      err((e as Error).message);
      return EXIT_OTHER;
    }
    for (const w of launcherReport(launcher.ready, process.getuid?.() ?? -1).warn) err(w);
    process.env[LAUNCHER_SOCKET_ENV] = settings.socket;
    const job: FilterJob = {
      spoolPath: file.path,
      user,
      envelope: envelopeFor(config, user, sender, args),
      settings: {
        path: config.filter.path,
        timeout: config.filter.timeout,
        sandbox: config.filter.sandbox,
        limits: config.filter.limits,
        exitCodes: config.filter.exitCodes,
      },
    };
    let result: FilterResult;
    try {
      result = await runFilter(job);
    } catch (e) {
      // Our own failure, never the filter's outcome: the milter would answer 451 4.3.x.
      const pe = e instanceof PumError ? e : null;
      out('outcome: none (not run)');
      err(`${pe ? `${pe.code}: ` : ''}${(e as Error).message}`);
      return EXIT_OTHER;
    } finally {
      closeLauncherConnection();
      await launcher.stop();
    }
    out(`user: ${user.name} (uid ${user.uid})`);
    printResult(config, result);
    return EXIT_BY_OUTCOME[result.outcome] ?? EXIT_OTHER;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
