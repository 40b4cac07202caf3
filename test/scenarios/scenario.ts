// The format of a scenario row (test/scenarios/verdicts.ts), and what both
// runners derive from one: the component runner (test/component/app/
// verdicts.test.ts: the in-repo milter client against a real `serve`) and the
// MTA runner (test/mta/e2e/verdicts.test.ts: swaks through real Postfix and
// real Sendmail). A row says what the filters do and what the verdict is;
// each runner checks the consequences it can see in its tier. The format is
// described for people adding rows in test/mta/e2e/README.md.
import assert from 'node:assert/strict';

/** The test users every runner creates. */
export const USERS = ['alice', 'bob', 'carol'] as const;
export type User = (typeof USERS)[number];

/** What a user's ~/.user-milter does. */
export type Filter =
  | { readonly kind: 'accept' }
  | { readonly kind: 'reject'; readonly text?: string }
  | { readonly kind: 'tempfail'; readonly text?: string }
  | { readonly kind: 'exit'; readonly code: number }
  /** Never finishes (killed at filter.timeout). */
  | { readonly kind: 'hang' }
  /** A rejecting filter that is group-writable: never run, outcome `unsafe`. */
  | { readonly kind: 'unsafe' }
  /** Rejects with its own identity: `5.7.1 uid=UID home=CWD`. */
  | { readonly kind: 'identity' }
  /** Any sh body (stdin not read for you). */
  | { readonly kind: 'script'; readonly body: string };

export const accept = (): Filter => ({ kind: 'accept' });
export const reject = (text?: string): Filter => (text === undefined ? { kind: 'reject' } : { kind: 'reject', text });
export const tempfail = (text?: string): Filter => (text === undefined ? { kind: 'tempfail' } : { kind: 'tempfail', text });
export const exit = (code: number): Filter => ({ kind: 'exit', code });
export const hang = (): Filter => ({ kind: 'hang' });
export const unsafe = (): Filter => ({ kind: 'unsafe' });
export const identity = (): Filter => ({ kind: 'identity' });
export const script = (body: string): Filter => ({ kind: 'script', body });

/** A filter outcome as the per-message log line names it. */
export type Outcome = 'accept' | 'reject' | 'tempfail' | 'nofilter' | 'unsafe' | 'error' | 'timeout';

/** The reply policy.mixed=split gives a recipient that must come back in a transaction of its own. */
export const DEFER_REPLY = '452 4.5.3 Try again in a separate transaction';

/** One transaction of a row; a row has several when recipients are deferred (DEFER_REPLY) and sent again. */
export interface Transaction {
  /** The recipients answered DEFER_REPLY at RCPT; the client sends them again in the next transaction. */
  readonly deferred?: readonly string[];
  /** The verdict: 'accept', or the whole reply the client gets ('550 5.7.1 text'). */
  readonly reply: string;
  /** The verdict came before end of message: at DATA (the body is never sent) or during the body. */
  readonly at?: 'data' | 'body';
  /** Recipients removed from the message (SMFIR_DELRCPT): they get no copy. */
  readonly dropped?: readonly User[];
  /** The per-message log line: each asked user's outcome (one filter run each; users without a say are absent). */
  readonly users: Readonly<Partial<Record<User, Outcome>>>;
  /** Further fields of the log line, compared exactly (strings) or matched (RegExp). The action is derived from `reply`. */
  readonly log?: Readonly<Record<string, string | RegExp>>;
}

export interface Scenario {
  /** The rule, in words: the test's name in both tiers. */
  readonly name: string;
  /** serve's configuration for the row, as --dotted.key values. */
  readonly config?: Readonly<Record<string, string | number | boolean>>;
  /** Each user's filter; users left out have none. */
  readonly filters: Readonly<Partial<Record<User, Filter>>>;
  /**
   * Recipients in RCPT order: a test user ('alice'), a user with an address
   * extension ('alice+lists'), or someone in the non-local domain ('someone@remote').
   */
  readonly to: readonly string[];
  /** Body size in bytes (default: a few lines). */
  readonly bodyBytes?: number;
  /** The transactions it takes, in order: usually one. */
  readonly expect: Transaction | readonly Transaction[];
  /** Commands a row needs besides the usual ones, with their Debian package. */
  readonly needs?: ReadonlyArray<readonly [command: string, debianPackage: string]>;
  /** The MTA runner also replays the row over its MTA's other milter transport (unix socket and TCP). */
  readonly bothTransports?: boolean;
}

/** The row's transactions as a list. */
export function transactions(s: Scenario): readonly Transaction[] {
  return Array.isArray(s.expect) ? (s.expect as readonly Transaction[]) : [s.expect as Transaction];
}

/** A recipient of `to`, taken apart. */
export type Recipient = { readonly kind: 'local'; readonly user: User; readonly extension: string } | { readonly kind: 'remote'; readonly local: string };

export function recipient(to: string): Recipient {
  const remote = /^([^@]+)@remote$/.exec(to);
  if (remote) return { kind: 'remote', local: remote[1] as string };
  const [user, extension = ''] = to.split('+') as [string, string?];
  if (!(USERS as readonly string[]).includes(user)) throw new Error(`scenario recipient ${to}: not a test user or someone@remote`);
  return { kind: 'local', user: user as User, extension };
}

/** The recipients each transaction carries: what is left over from the one before, minus what it defers. */
export function carried(s: Scenario): string[][] {
  let pending = [...s.to];
  return transactions(s).map((t) => {
    const deferred = t.deferred ?? [];
    const here = pending.filter((r) => !deferred.includes(r));
    pending = pending.filter((r) => deferred.includes(r));
    return here;
  });
}

/** What the log line's action is for a reply (policy.dryRun: always accept). */
export function actionOf(reply: string): 'accept' | 'reject' | 'tempfail' {
  return reply === 'accept' ? 'accept' : reply.startsWith('4') ? 'tempfail' : 'reject';
}

/** Outcomes of a run that started the filter's process (it then wrote its run mark). */
export function ran(outcome: Outcome): boolean {
  return outcome !== 'nofilter' && outcome !== 'unsafe';
}

/** The exit code the log line gives for an outcome of these filters, where it is fixed. */
export function exitOf(outcome: Outcome, filter: Filter | undefined): number | undefined {
  if (outcome === 'accept') return 0;
  if (outcome === 'reject') return 1;
  if (outcome === 'tempfail') return 75;
  if (outcome === 'error' && filter?.kind === 'exit') return filter.code;
  return undefined;
}

/** Copies each user's mailbox gets: one per accepted recipient address of theirs that was not dropped. */
export function deliveries(s: Scenario): Record<User, number> {
  const out = Object.fromEntries(USERS.map((u) => [u, 0])) as Record<User, number>;
  const lists = carried(s);
  transactions(s).forEach((t, i) => {
    if (t.reply !== 'accept') return;
    for (const to of lists[i] ?? []) {
      const r = recipient(to);
      if (r.kind === 'local' && !(t.dropped ?? []).includes(r.user)) out[r.user]++;
    }
  });
  return out;
}

/** The non-local recipients of accepted transactions, one list per transaction that relays any. */
export function relays(s: Scenario): string[][] {
  const lists = carried(s);
  return transactions(s)
    .map((t, i) => (t.reply === 'accept' ? (lists[i] ?? []).filter((to) => recipient(to).kind === 'remote') : []))
    .filter((l) => l.length > 0);
}

/**
 * The sh body of a filter (no #! line). Every one first appends $RECIPIENT
 * to ~/runs, so a runner can count the runs, and reads its standard input.
 */
export function filterBody(f: Filter): string {
  const run = 'echo "$RECIPIENT" >> "$HOME/runs"\n';
  const say = (text: string | undefined): string => (text === undefined ? '' : `echo '${text.replace(/'/g, `'\\''`)}'\n`);
  switch (f.kind) {
    case 'accept':
      return `${run}cat >/dev/null\nexit 0\n`;
    case 'reject':
    case 'unsafe':
      return `${run}cat >/dev/null\n${say(f.kind === 'reject' ? f.text : undefined)}exit 1\n`;
    case 'tempfail':
      return `${run}cat >/dev/null\n${say(f.text)}exit 75\n`;
    case 'exit':
      return `${run}cat >/dev/null\nexit ${f.code}\n`;
    case 'hang':
      return `${run}cat >/dev/null\nexec sleep 60\n`;
    case 'identity':
      return `${run}cat >/dev/null\necho "5.7.1 uid=$(id -u) home=$(pwd)"\nexit 1\n`;
    case 'script':
      return `${run}${f.body}`;
  }
}

/** Expected texts may name a user's uid or home: `{uid:alice}`, `{home:alice}`. */
export function expand(text: string, account: (user: User) => { uid: number; home: string }): string {
  return text.replace(/\{(uid|home):(\w+)\}/g, (_m, what: string, user: string) => String(account(user as User)[what as 'uid' | 'home']));
}

/** Rows grouped by configuration, in table order of first appearance: one serve per group. */
export function byConfig(rows: readonly Scenario[]): Scenario[][] {
  const groups = new Map<string, Scenario[]>();
  for (const row of rows) {
    const key = JSON.stringify(Object.entries(row.config ?? {}).sort(([a], [b]) => a.localeCompare(b)));
    groups.set(key, [...(groups.get(key) ?? []), row]);
  }
  return [...groups.values()];
}

/** The fields of the per-message log line (`"event":"message"`, log.format=json) a runner checks. */
export interface MessageLine {
  queueId: string;
  from: string;
  action: string;
  users: Array<{ user: string; outcome: string; exit: number | string | null; ms: number }>;
  [field: string]: unknown;
}

/** The message lines in a stretch of serve's JSON log, in order. */
export function messageLines(log: string): MessageLine[] {
  return log
    .split('\n')
    .filter((l) => l.includes('"event":"message"'))
    .map((l) => JSON.parse(l) as MessageLine);
}

/**
 * Checks one transaction's log line: the action its reply implies, each
 * asked user's outcome and exit code, the sender, the queue id and the
 * row's further fields. `name` maps a test user to the account name the log uses.
 */
export function checkLogLine(
  line: MessageLine,
  row: Scenario,
  t: Transaction,
  o: { name: (user: User) => string; from: string; queueId: string | RegExp; expand: (text: string) => string },
): void {
  const users = Object.entries(t.users) as Array<[User, Outcome]>;
  const what = `log line ${JSON.stringify(line)}`;
  assert.equal(line.action, actionOf(t.reply), what);
  assert.deepEqual(
    line.users.map((u) => [u.user, u.outcome]).sort(),
    users.map(([user, outcome]) => [o.name(user), outcome]).sort(),
    what,
  );
  for (const [user, outcome] of users) {
    const exitCode = exitOf(outcome, row.filters[user]);
    const logged = line.users.find((u) => u.user === o.name(user));
    if (exitCode !== undefined) assert.equal(logged?.exit, exitCode, `${user}'s exit code in the ${what}`);
    assert.equal(typeof logged?.ms, 'number', what);
  }
  assert.equal(line.from, o.from, what);
  if (typeof o.queueId === 'string') assert.equal(line.queueId, o.queueId, what);
  else assert.match(line.queueId, o.queueId, what);
  for (const [field, want] of Object.entries(t.log ?? {})) {
    if (want instanceof RegExp) assert.match(String(line[field]), want, `${field} in the ${what}`);
    else assert.equal(line[field], o.expand(want), `${field} in the ${what}`);
  }
}
