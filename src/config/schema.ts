// Runs in: every process (pure).
//
// The configuration schema: every key of the product contract
// (docs/reference.md §3), with its default, its environment variable and its
// command-line flag. convict validates types and rejects unknown keys; the
// loader (./load.ts) decides where values come from. The `Config` type below
// is derived from this very object, so the two cannot drift; so is the man
// page per-user-milter.conf(5) (scripts/man.ts).
import os from 'node:os';

/** `milter.maxConnections` -> `PER_USER_MILTER_MILTER_MAX_CONNECTIONS`. */
export function envName(dottedKey: string): string {
  return 'PER_USER_MILTER_' + dottedKey.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/\./g, '_').toUpperCase();
}

/** An enumerated format: convict checks membership, the type is the union of the values. */
const oneOf = <const T extends readonly string[]>(allowed: T): T => allowed;

/** The schema without env/arg names; `withSources` adds them for every leaf. */
const base = {
  milter: {
    listen: {
      doc: 'Socket, in the MTA syntax: inet:PORT@HOST, inet6:PORT@HOST, unix:PATH or local:PATH',
      format: 'listen-spec',
      default: 'inet:8890@127.0.0.1',
    },
    socketMode: {
      doc: 'Permissions (octal) of a unix socket. A stale socket file left by an earlier run (nobody listening) is removed at start; a live one is an error',
      format: 'file-mode',
      default: '0660',
    },
    maxConnections: {
      doc: 'Further connections are answered with a tempfail and closed',
      format: 'positive-int',
      default: 256,
    },
    progressInterval: {
      doc: 'While filters run at end-of-message, send SMFIR_PROGRESS this often (ms) so the MTA does not time out; keep it below the MTA read timeout (Sendmail: 10 s by default)',
      format: 'positive-int',
      default: 5000,
    },
    maxMessageSize: {
      doc: 'Larger messages (bytes) are not filtered: see policy.oversize',
      format: 'positive-int',
      default: 52428800,
    },
    user: {
      doc: 'Started as root: the account every Node process of the milter runs as (only the launcher keeps the privilege to switch users)',
      format: String,
      default: 'per-user-milter',
    },
  },
  spool: {
    dir: {
      doc: 'Where message bodies are spooled; created 0700, owned by the milter; stale files removed at start. Empty: $RUNTIME_DIRECTORY/spool under systemd, else a private directory made at start in the OS temporary directory and removed at exit',
      format: 'optional-path',
      default: '',
    },
  },
  recipients: {
    localMailers: {
      doc: 'A recipient whose {rcpt_mailer} macro (Postfix: the transport name) is one of these is local, if it resolves to a user',
      format: 'string-list',
      default: ['local'],
    },
    localDomains: {
      doc: 'A recipient in one of these domains is local (for MTAs or set-ups without {rcpt_mailer})',
      format: 'string-list',
      default: [] as string[],
    },
    delimiter: {
      doc: 'Recipient extension delimiter(s): alice+lists@x is user alice',
      format: String,
      default: '+',
    },
    map: {
      doc: 'Optional file of "address-or-localpart username" lines, checked first',
      format: 'optional-path',
      default: '',
    },
    aliasMaps: {
      doc: 'Tables that expand an address to the addresses behind it: Postfix TYPE:NAME (queried with postmap/postalias -q) or aliases:PATH (read directly)',
      format: 'string-list',
      default: [] as string[],
    },
  },
  users: {
    passwdFile: {
      doc: 'Empty: look users up through NSS; else a passwd(5)-format file',
      format: 'optional-path',
      default: '',
    },
    minUid: {
      doc: 'Users below this uid never get a filter run (root never does)',
      format: 'positive-int',
      default: 1000,
    },
    maxUid: {
      doc: 'Users above this uid (e.g. nobody) never get a filter run',
      format: 'positive-int',
      default: 60000,
    },
  },
  filter: {
    path: {
      doc: "Where a user's filter lives; ~ is the user's home, %u the user name",
      format: 'filter-path',
      default: '~/.user-milter',
    },
    timeout: {
      doc: 'After this (ms) every process of the run gets SIGTERM, then SIGKILL 2 s later',
      format: 'positive-int',
      default: 30000,
    },
    // Public name filter.default: see SCHEMA_NAMES.
    siteDefault: {
      doc: 'A site program run, as the user, for a local user who has no filter of their own; empty: such users have no say',
      format: 'optional-path',
      default: '',
    },
    rcptPath: {
      doc: "The user's RCPT-stage program (~ is the home, %u the user name); empty disables the stage",
      format: 'optional-filter-path',
      default: '~/.user-milter-rcpt',
    },
    rcptTimeout: {
      doc: 'Milliseconds an RCPT-stage program may run; keep it below the MTA command timeout',
      format: 'positive-int',
      default: 10000,
    },
    maxPerUser: {
      doc: "Runs of one user's programs in flight at once; further runs of that user wait",
      format: 'positive-int',
      default: 2,
    },
    sandbox: {
      doc: 'setpriv (the launcher: user switch, no_new_privs, rlimits, contained process tree), bwrap (also private /tmp, own pid namespace, read-only system), or none (unprivileged runs only; the same as setpriv there)',
      format: oneOf(['setpriv', 'bwrap', 'none']),
      default: 'setpriv',
    },
    cgroup: {
      doc: 'Where each run gets a cgroup of its own: auto (a delegated cgroup v2 subtree when there is one), none, or an absolute cgroup v2 directory',
      format: 'cgroup-setting',
      default: 'auto',
    },
    limits: {
      cpuSeconds: { doc: 'RLIMIT_CPU of each filter process (seconds of CPU)', format: 'positive-int', default: 20 },
      memoryBytes: { doc: 'RLIMIT_AS of each filter process (bytes of address space)', format: 'positive-int', default: 1073741824 },
      processes: { doc: 'RLIMIT_NPROC: processes the user may have while the filter runs', format: 'positive-int', default: 64 },
      fileSizeBytes: { doc: 'RLIMIT_FSIZE: largest file a filter may write (bytes)', format: 'positive-int', default: 104857600 },
      outputBytes: { doc: 'Bytes of a filter\'s standard output and error kept for the reply text and the log; the rest is read and dropped', format: 'positive-int', default: 65536 },
    },
    exitCodes: {
      reject: { doc: 'Exit codes that mean reject', format: 'exit-code-list', default: [1] },
      tempfail: { doc: 'Exit codes that mean tempfail', format: 'exit-code-list', default: [75] },
    },
    onError: {
      doc: 'What a filter that crashes, times out, is unsafe or exits with another code counts as: accept, or tempfail',
      format: oneOf(['accept', 'tempfail']),
      default: 'accept',
    },
    lineEndings: {
      doc: 'Line endings of the message on the filter\'s standard input: lf or crlf',
      format: oneOf(['lf', 'crlf']),
      default: 'lf',
    },
  },
  pool: {
    threads: {
      doc: 'Worker threads (in the filter runner process) that drive filter processes. Filters that wait on a network scanner use little CPU: more threads than CPUs can be right for them',
      format: 'positive-int',
      default: Math.max(1, os.availableParallelism()),
    },
    maxQueue: {
      doc: 'Filter runs waiting beyond this tempfail a new message (451 4.3.2 busy) at once instead of holding it until the MTA times out',
      format: 'non-negative-int',
      default: 1000,
    },
  },
  policy: {
    mixed: {
      doc: 'When some users accept and some reject: deliver to all; drop-rejecters (remove the rejecting users\' recipients with SMFIR_DELRCPT); split (answer every further user with a filter 452 4.5.3 at RCPT, so each gets a transaction of their own and an exact verdict)',
      format: oneOf(['deliver', 'drop-rejecters', 'split']),
      default: 'deliver',
    },
    rejectExtension: {
      doc: 'The address extension policy.mixed=extension gives the rejecting users',
      format: 'address-extension',
      default: 'spam',
    },
    skipAuthenticated: {
      doc: 'Accept mail from SMTP-AUTH authenticated clients without running filters',
      format: 'strict-boolean',
      default: false,
    },
    trustedNetworks: {
      doc: 'CIDR blocks (IPv4 and IPv6) whose mail is accepted without running filters',
      format: 'cidr-list',
      default: [] as string[],
    },
    nonLocal: {
      doc: 'Non-local recipients vote accept (accept) or have no say (ignore)',
      format: oneOf(['accept', 'ignore']),
      default: 'accept',
    },
    dryRun: {
      doc: 'Compute, log and count verdicts but never change any reply (no reject, no 452 split, no DELRCPT)',
      format: 'strict-boolean',
      default: false,
    },
    oversize: {
      doc: 'Messages above milter.maxMessageSize: accept unfiltered, or reject (552 5.3.4)',
      format: oneOf(['accept', 'reject']),
      default: 'accept',
    },
    rejectReply: {
      doc: 'Reply when the rejecting filters gave no text or different texts',
      format: 'smtp-reply-5',
      default: '550 5.7.1 Message rejected by its recipients',
    },
    tempfailReply: {
      doc: 'Reply when the tempfailing filters gave no text or different texts',
      format: 'smtp-reply-4',
      default: '451 4.7.1 Message deferred by its recipients',
    },
  },
  metrics: {
    listen: {
      doc: 'HOST:PORT ([IPv6]:PORT) of the Prometheus endpoint /metrics; empty disables it. Metrics tell who gets mail: keep it on loopback or behind a firewall',
      format: 'metrics-listen',
      default: '127.0.0.1:9464',
    },
    perUserLabels: {
      doc: 'Add a user label to the filter run counters (never to histograms): one series per user and outcome, so for small sites',
      format: 'strict-boolean',
      default: false,
    },
  },
  log: {
    level: {
      doc: 'Least severe level logged: fatal, error, warn, info (one line per message), debug or trace',
      format: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace']),
      default: 'info',
    },
    format: {
      doc: 'text: one line per event, like other milters\' syslog lines, with the queue id (under journald with a syslog priority and no time of its own); json: one JSON object per line, for log pipelines',
      format: oneOf(['text', 'json']),
      default: 'text',
    },
  },
};

/**
 * convict takes any schema node with a `default` property for a leaf, so a
 * key that is itself called `default` (docs/reference.md §3: filter.default) lives in
 * the schema under another name. Public name -> schema name; the loader
 * translates the file, and the result, through this table.
 */
export const SCHEMA_NAMES: Readonly<Record<string, string>> = { 'filter.default': 'filter.siteDefault' };
const PUBLIC_NAMES: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(SCHEMA_NAMES).map(([k, v]) => [v, k]));

/** The public name of a schema leaf (docs/reference.md §3). */
export function publicName(schemaName: string): string {
  return PUBLIC_NAMES[schemaName] ?? schemaName;
}

type Leaf = { doc: string; format: unknown; default: unknown; env?: string; arg?: string };
type Node = { [key: string]: Leaf | Node };

function isLeaf(n: Leaf | Node): n is Leaf {
  return Object.prototype.hasOwnProperty.call(n, 'default');
}

/** Every leaf key, dotted, in schema order. */
export function leafKeys(node: Node = base as unknown as Node, prefix = ''): string[] {
  const keys: string[] = [];
  for (const [name, child] of Object.entries(node)) {
    const dotted = prefix ? `${prefix}.${name}` : name;
    if (isLeaf(child)) keys.push(publicName(dotted));
    else keys.push(...leafKeys(child, dotted));
  }
  return keys;
}

function withSources(node: Node, prefix = ''): Node {
  const out: Node = {};
  for (const [name, child] of Object.entries(node)) {
    const dotted = prefix ? `${prefix}.${name}` : name;
    const pub = publicName(dotted);
    out[name] = isLeaf(child) ? { ...child, env: envName(pub), arg: pub } : withSources(child, dotted);
  }
  return out;
}

export const schema = withSources(base as unknown as Node);

/** A leaf's value type: the union of an enumerated format, else the type of its default. */
type LeafValue<L> = L extends { format: infer F; default: infer D }
  ? F extends readonly (infer U)[]
    ? U
    : D extends boolean
      ? boolean
      : D extends number
        ? number
        : D extends readonly number[]
          ? number[]
          : D extends readonly string[]
            ? string[]
            : string
  : never;

/** The schema's nodes as values; `siteDefault` under its public name `default` (see SCHEMA_NAMES). */
type ValuesOf<N> = {
  [K in keyof N as K extends 'siteDefault' ? 'default' : K]: N[K] extends { default: unknown } ? LeafValue<N[K]> : ValuesOf<N[K]>;
};

/** The validated configuration, as plain data: derived from the schema above, never written by hand. */
export type Config = ValuesOf<typeof base>;
