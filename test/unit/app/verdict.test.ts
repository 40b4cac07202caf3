// askFilters' failure rules (docs/reference.md §5.6): a message refused by
// the runner (pool.maxQueue) or a job that fails inside per-user-milter is a
// 451 4.3.x by its code (src/errors.ts), never a reject, never an accept,
// never a user's outcome; and it is visible: the message line names the
// reason, internal_errors_total and messages_total move. The real hand-off
// through the runner process: test/component/app/failures.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { askFilters, type Transaction } from '../../../src/app/verdict.js';
import type { AppContext } from '../../../src/app/context.js';
import { loadConfig } from '../../../src/config/load.js';
import { errorReply, PumError, type InternalReason } from '../../../src/errors.js';
import type { ConnectionContext } from '../../../src/milter/application.js';
import type { FilterJob, FilterResult } from '../../../src/filter/job.js';
import { TransactionRecipients } from '../../../src/recipients/index.js';
import { SMFIF_ADDRCPT, SMFIF_DELRCPT } from '../../../src/milter/constants.js';
import type { UserAccount } from '../../../src/users/user.js';

type Line = { level: string; obj: Record<string, unknown>; msg: string };

function capture(): { lines: Line[]; log: ConnectionContext['log'] } {
  const lines: Line[] = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj: obj as Record<string, unknown>, msg: msg ?? '' });
  return { lines, log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
}

function connWith(log: ConnectionContext['log']): ConnectionContext {
  return { id: 1, peer: 'test', macros: { get: () => undefined, snapshot: () => ({}) }, negotiated: { version: 6, actions: 0, protocol: 0 }, log, signal: new AbortController().signal } as unknown as ConnectionContext;
}

function user(name: string, uid: number): UserAccount {
  return { name, uid, gid: uid, groups: [uid], home: `/nonexistent/${name}`, shell: '/bin/sh' };
}

function transaction(names: string[]): Transaction {
  const recipients = new TransactionRecipients();
  names.forEach((n, i) => {
    recipients.add({ kind: 'local', user: user(n, 5000 + i), rcpt: `<${n}@x.test>`, address: `${n}@x.test`, localPart: n, extension: '', domain: 'x.test' }, new Map([[n, true]]));
  });
  return {
    config: loadConfig({ env: {} }).config,
    sender: 's@y.test',
    recipients,
    dryRunDeferred: [],
    file: null,
    queueId: 'Q1',
    started: performance.now(),
    client: { address: '', hostname: '', helo: '', protocol: '', saslMethod: '', saslUsername: '' },
  };
}

interface Seen {
  actions: string[];
  answered: Array<[string, number]>;
  internal: InternalReason[];
  runs: string[];
}

/** An AppContext whose runner answers each job with `run(job)`; `runMessage` may be replaced whole. */
function app(run: (job: FilterJob) => Promise<FilterResult>, runMessage?: AppContext['runner']['runMessage']): AppContext & { seen: Seen } {
  const seen: Seen = { actions: [], answered: [], internal: [], runs: [] };
  return {
    seen,
    config: () => loadConfig({ env: {} }).config,
    classify: () => Promise.reject(new Error('unused')),
    hasFilter: () => Promise.resolve(true),
    spool: null as never,
    runner: { runMessage: runMessage ?? ((jobs) => jobs.map(run)) },
    metrics: {
      message: (a) => seen.actions.push(a),
      messageAnswered: (a, s) => seen.answered.push([a, s]),
      internalError: (r) => seen.internal.push(r),
      filterRun: (o, _ms, u) => seen.runs.push(`${u}=${o}`),
      recipient() {},
      skip() {},
      rcptFilterRun() {},
      spoolBytes() {},
    },
    log: capture().log,
  };
}

const accept: FilterResult = { outcome: 'accept', exitCode: 0, signal: null, durationMs: 1, replyText: '', log: '' };
const reject: FilterResult = { outcome: 'reject', exitCode: 1, signal: null, durationMs: 1, replyText: 'no', log: '' };

function messageLine(lines: Line[]): Record<string, unknown> {
  const found = lines.filter((l) => l.obj.event === 'message');
  assert.equal(found.length, 1, 'exactly one message line');
  return (found[0] as Line).obj;
}

describe('askFilters failure rules', () => {
  it('a message refused for pool.maxQueue: 451 4.3.2, nothing ran, reason pool_full, every user named as failed', async () => {
    const a = app(
      () => Promise.resolve(accept),
      () => {
        throw new PumError('PUM_ERR_POOL_FULL', '3 filter runs already waiting (pool.maxQueue 0)');
      },
    );
    const { lines, log } = capture();
    const r = await askFilters(a, connWith(log), transaction(['alice', 'bob']), '/nonexistent/spool', performance.now());
    assert.deepEqual(r.reply, errorReply('PUM_ERR_POOL_FULL'));
    assert.match((r.reply as { text: string }).text, /^4\.3\.2 /);
    assert.deepEqual(a.seen.actions, ['tempfail']);
    assert.deepEqual(a.seen.internal, ['pool_full']);
    assert.deepEqual(a.seen.runs, [], 'no user outcome');
    assert.deepEqual(a.seen.answered.map(([act]) => act), ['tempfail']);
    const line = messageLine(lines);
    assert.equal(line.action, 'tempfail');
    assert.equal(line.code, 'PUM_ERR_POOL_FULL');
    assert.deepEqual(line.failed, ['alice', 'bob']);
    assert.equal(line.queueId, 'Q1');
    assert.equal(line.from, 's@y.test');
  });

  it('one run failing for our reasons tempfails the whole message, even when another filter rejected; the finished run is counted, the failed one is not', async () => {
    const a = app((job) =>
      job.user.name === 'alice' ? Promise.resolve(reject) : Promise.reject(new PumError('PUM_ERR_SPOOL_UNREADABLE', 'cannot open spool file /s/m: ENOENT')),
    );
    const { lines, log } = capture();
    const r = await askFilters(a, connWith(log), transaction(['alice', 'bob']), '/nonexistent/spool', performance.now());
    assert.deepEqual(r.reply, errorReply('PUM_ERR_SPOOL_UNREADABLE'));
    assert.deepEqual(a.seen.actions, ['tempfail']);
    assert.deepEqual(a.seen.internal, ['spool']);
    assert.deepEqual(a.seen.runs, ['alice=reject']);
    const line = messageLine(lines);
    assert.equal(line.code, 'PUM_ERR_SPOOL_UNREADABLE');
    assert.match(String(line.error), /ENOENT/);
    assert.deepEqual(line.failed, ['bob']);
    assert.deepEqual((line.users as Array<{ user: string; outcome: string }>).map((u) => `${u.user}=${u.outcome}`), ['alice=reject']);
    assert.equal(lines.find((l) => l.obj.event === 'message')?.level, 'error');
  });

  it('each code gets its own reply and reason: runner gone -> 4.3.0 runner; launcher -> 4.3.0 launcher', async () => {
    for (const [code, reason] of [['PUM_ERR_RUNNER_GONE', 'runner'], ['PUM_ERR_LAUNCHER', 'launcher']] as const) {
      const a = app(() => Promise.reject(new PumError(code, 'x')));
      const r = await askFilters(a, connWith(capture().log), transaction(['alice']), '/nonexistent/spool', performance.now());
      assert.deepEqual(r.reply, errorReply(code));
      assert.deepEqual(a.seen.internal, [reason]);
    }
  });

  it('anything else that rejects a run is PUM_ERR_INTERNAL: 451 4.3.0, reason other, logged with its stack', async () => {
    const a = app(() => Promise.reject(new Error('worker died')));
    const { lines, log } = capture();
    const r = await askFilters(a, connWith(log), transaction(['alice']), '/nonexistent/spool', performance.now());
    assert.deepEqual(r.reply, errorReply('PUM_ERR_INTERNAL'));
    assert.deepEqual(a.seen.internal, ['other']);
    assert.equal(messageLine(lines).code, 'PUM_ERR_INTERNAL');
    assert.ok(lines.some((l) => l.msg === 'internal error' && (l.obj.err as Error).message === 'worker died'));
  });

  it('waits for every run before answering, so the spool file outlives them all', async () => {
    let finished = 0;
    const a = app((job) =>
      job.user.name === 'alice'
        ? Promise.reject(new Error('boom'))
        : new Promise((resolve) => setTimeout(() => { finished++; resolve(accept); }, 50)),
    );
    await askFilters(a, connWith(capture().log), transaction(['alice', 'bob']), '/nonexistent/spool', performance.now());
    assert.equal(finished, 1);
  });

  it('a normal answer is counted once with its duration from end of message, and moves no internal error', async () => {
    const a = app(() => new Promise((resolve) => setTimeout(() => resolve(reject), 30)));
    const since = performance.now();
    const r = await askFilters(a, connWith(capture().log), transaction(['alice']), '/nonexistent/spool', since);
    assert.deepEqual(r.reply, { code: '550', text: '5.7.1 no' });
    assert.deepEqual(a.seen.actions, ['reject']);
    assert.equal(a.seen.answered.length, 1);
    const [action, seconds] = a.seen.answered[0] as [string, number];
    assert.equal(action, 'reject');
    assert.ok(seconds >= 0.025 && seconds < 5, `duration ${seconds}`);
    assert.deepEqual(a.seen.internal, []);
  });
});

describe('policy.mixed=extension at end of message', () => {
  const withMixed = (tx: Transaction, mixed: 'extension'): Transaction => ({ ...tx, config: { ...tx.config, policy: { ...tx.config.policy, mixed } } });
  const accepting: FilterResult = { outcome: 'accept', exitCode: 0, signal: null, durationMs: 1, replyText: '', log: '' };
  const rejecting: FilterResult = { outcome: 'reject', exitCode: 1, signal: null, durationMs: 1, replyText: '5.7.1 no', log: '' };
  const byUser = (job: FilterJob): Promise<FilterResult> => Promise.resolve(job.user.name === 'alice' ? rejecting : accepting);

  it('the MTA offered SMFIF_ADDRCPT: DELRCPT the rejecter, ADDRCPT its +spam form', async () => {
    const { log } = capture();
    const conn = { ...connWith(log), negotiated: { version: 6, actions: SMFIF_ADDRCPT | SMFIF_DELRCPT, protocol: 0 } } as ConnectionContext;
    const r = await askFilters(app(byUser), conn, withMixed(transaction(['alice', 'bob']), 'extension'), '/nonexistent/spool', performance.now());
    assert.equal(r.reply, 'accept');
    assert.deepEqual(
      (r.modifications ?? []).map((m) => [m.kind, 'recipient' in m ? Buffer.from(m.recipient).toString('latin1') : '']),
      [['deleteRecipient', '<alice@x.test>'], ['addRecipient', '<alice+spam@x.test>']],
    );
  });

  it('the MTA did not offer it: delivered unchanged, and the log says so (never a lost copy)', async () => {
    const { lines, log } = capture();
    const r = await askFilters(app(byUser), connWith(log), withMixed(transaction(['alice', 'bob']), 'extension'), '/nonexistent/spool', performance.now());
    assert.equal(r.reply, 'accept');
    assert.deepEqual(r.modifications, []);
    assert.ok(lines.some((l) => l.level === 'warn' && /SMFIF_ADDRCPT/.test(l.msg)));
  });
});
