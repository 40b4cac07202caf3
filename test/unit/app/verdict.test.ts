// askFilters' failure rules (contract §5.6): a pool that is full or a job
// that fails inside per-user-milter is a 451 tempfail, never a reject and
// never an accept; and a spool file that cannot be opened is such a failure.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { askFilters, type Transaction } from '../../../src/app/verdict.js';
import type { AppContext } from '../../../src/app/context.js';
import { loadConfig } from '../../../src/config/load.js';
import type { ConnectionContext } from '../../../src/milter/application.js';
import type { FilterJob, FilterResult } from '../../../src/pool/job.js';
import { PoolFullError } from '../../../src/pool/pool.js';
import { runFilter } from '../../../src/filter/run.js';
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
    metrics: { message: (a) => actions.push(a), filterRun() {}, recipient() {}, spoolBytes() {} },
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

  it('the runner treats an unreadable spool file as its own failure (PUM_ERR_SPOOL), not a filter outcome', async (t) => {
    // Needs a filter that passes the safety checks: use a root-owned one in a root-owned directory.
    if (process.getuid?.() !== 0) {
      t.skip('needs root to own the filter file');
      return;
    }
    const fs = await import('node:fs');
    const dir = fs.mkdtempSync('/var/lib/pumspool-');
    fs.chmodSync(dir, 0o755);
    fs.writeFileSync(`${dir}/.user-milter`, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    try {
      const job: FilterJob = {
        spoolPath: `${dir}/missing-spool-file`,
        user: { name: 'nobody', uid: 65534, gid: 65534, groups: [65534], home: dir, shell: '/bin/sh' },
        envelope: { SENDER: '', RECIPIENT: '', LOCAL: '', EXTENSION: '', DOMAIN: '', CLIENT_ADDRESS: '', CLIENT_HOSTNAME: '', CLIENT_HELO: '', CLIENT_PROTOCOL: '', QUEUE_ID: '', SASL_METHOD: '', SASL_USERNAME: '' },
        settings: { path: '~/.user-milter', timeout: 5000, sandbox: 'setpriv', limits: { cpuSeconds: 5, memoryBytes: 1 << 30, processes: 64, fileSizeBytes: 1 << 20, outputBytes: 4096 }, exitCodes: { reject: [1], tempfail: [75] } },
      };
      await assert.rejects(runFilter(job), (err: Error & { code?: string }) => err.code === 'PUM_ERR_SPOOL');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
