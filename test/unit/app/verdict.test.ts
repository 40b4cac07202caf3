// askFilters' failure rules (docs/reference.md §5.6): a pool that is full or a job
// that fails inside per-user-milter is a 451 tempfail, never a reject and
// never an accept (the runner's side: test/privileged/runner, PUM_ERR_SPOOL).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { askFilters, type Transaction } from '../../../src/app/verdict.js';
import type { AppContext } from '../../../src/app/context.js';
import { loadConfig } from '../../../src/config/load.js';
import type { ConnectionContext } from '../../../src/milter/application.js';
import type { FilterJob, FilterResult } from '../../../src/filter/job.js';
import { PoolFullError } from '../../../src/runner/pool.js';
import { TransactionRecipients } from '../../../src/recipients/index.js';
import type { UserAccount } from '../../../src/users/user.js';

const silent = { debug() {}, info() {}, warn() {}, error() {} };
const conn = { id: 1, peer: 'test', macros: { get: () => undefined, snapshot: () => ({}) }, negotiated: { version: 6, actions: 0, protocol: 0 }, log: silent, signal: new AbortController().signal } as ConnectionContext;

function user(name: string, uid: number): UserAccount {
  return { name, uid, gid: uid, groups: [uid], home: `/nonexistent/${name}`, shell: '/bin/sh' };
}

function transaction(names: string[]): Transaction {
  const recipients = new TransactionRecipients();
  names.forEach((n, i) => {
    recipients.add({ kind: 'local', user: user(n, 5000 + i), rcpt: `<${n}@x.test>`, address: `${n}@x.test`, localPart: n, extension: '', domain: 'x.test' });
  });
  return {
    config: loadConfig({ env: {} }).config,
    sender: 's@y.test',
    recipients,
    filtered: new Set(names),
    file: null,
    queueId: 'Q1',
    started: performance.now(),
    client: { address: '', hostname: '', helo: '', protocol: '', saslMethod: '', saslUsername: '' },
  };
}

function app(run: (job: FilterJob) => Promise<FilterResult>): AppContext & { actions: string[] } {
  const actions: string[] = [];
  return {
    actions,
    config: () => loadConfig({ env: {} }).config,
    classify: () => Promise.reject(new Error('unused')),
    hasFilter: () => Promise.resolve(true),
    spool: null as never,
    runner: { run },
    metrics: { message: (a) => actions.push(a), messageAnswered() {}, internalError() {}, filterRun() {}, recipient() {}, spoolBytes() {} },
    log: silent,
  };
}

const accept: FilterResult = { outcome: 'accept', exitCode: 0, signal: null, durationMs: 1, replyText: '', log: '' };
const reject: FilterResult = { outcome: 'reject', exitCode: 1, signal: null, durationMs: 1, replyText: 'no', log: '' };

describe('askFilters failure rules', () => {
  it('a full pool tempfails the whole message with 451 4.3.2, even when another filter rejected', async () => {
    const a = app((job) => (job.user.name === 'alice' ? Promise.resolve(reject) : Promise.reject(new PoolFullError(0))));
    const r = await askFilters(a, conn, transaction(['alice', 'bob']), '/nonexistent/spool');
    assert.deepEqual(r.reply, { code: '451', text: '4.3.2 Per-recipient filters busy, try again later' });
    assert.deepEqual(a.actions, ['tempfail']);
  });

  it('a job that throws tempfails with 451 4.3.0', async () => {
    const a = app(() => Promise.reject(new Error('worker died')));
    const r = await askFilters(a, conn, transaction(['alice']), '/nonexistent/spool');
    assert.deepEqual(r.reply, { code: '451', text: '4.3.0 Temporary failure in per-recipient filtering, try again later' });
    assert.deepEqual(a.actions, ['tempfail']);
  });

  it('waits for every run before answering, so the spool file outlives them all', async () => {
    let finished = 0;
    const a = app((job) =>
      job.user.name === 'alice'
        ? Promise.reject(new Error('boom'))
        : new Promise((resolve) => setTimeout(() => { finished++; resolve(accept); }, 50)),
    );
    await askFilters(a, conn, transaction(['alice', 'bob']), '/nonexistent/spool');
    assert.equal(finished, 1);
  });
});
