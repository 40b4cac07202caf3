// PerUserHandler and the policy decided at MAIL and RCPT: skip rules
// (docs/reference.md §5.7) accept at MAIL without any filter; split is exact
// (§5.4: nothing that could outvote a filtered user shares its transaction);
// policy.dryRun never changes a reply (no 452); an alias RCPT reaches every
// user behind it. The same through real MTAs: test/scenarios/verdicts.ts and
// test/mta/e2e/relays.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AppContext } from '../../../src/app/context.js';
import { PerUserHandler } from '../../../src/app/handler.js';
import { loadConfig } from '../../../src/config/load.js';
import type { ConnectionContext } from '../../../src/milter/application.js';
import type { LocalRecipient, Recipient } from '../../../src/recipients/index.js';
import { replyLine, SPLIT_REPLY as SPLIT_VALUE, addressBytes, inCidr, parseCidr, skipReason } from '../../../src/policy/index.js';

const SPLIT_REPLY = replyLine(SPLIT_VALUE);
import type { UserAccount } from '../../../src/users/user.js';
import type { FilterJob, FilterResult, Outcome } from '../../../src/filter/job.js';
import { rcptStageReply as rcptStageValue } from '../../../src/policy/index.js';

const rcptStageReply = (...a: Parameters<typeof rcptStageValue>): string | null => {
  const r = rcptStageValue(...a);
  return r === null ? null : replyLine(r);
};

const user = (name: string, uid: number): UserAccount => ({ name, uid, gid: uid, groups: [uid], home: `/nonexistent/${name}`, shell: '/bin/sh' });
const USERS: Record<string, UserAccount> = { alice: user('alice', 5001), bob: user('bob', 5002), carol: user('carol', 5003) };
const local = (name: string, rcpt = `<${name}@x.test>`): LocalRecipient => ({
  kind: 'local', user: USERS[name] as UserAccount, rcpt, address: `${name}@x.test`, localPart: name, extension: '', domain: 'x.test',
});

interface World {
  handler: PerUserHandler;
  lines: Array<Record<string, unknown>>;
  skips: string[];
  actions: string[];
  jobs: FilterJob[];
  rcptRuns: string[];
}

/** `withFilter`: users who have a filter; `macros`: what the MTA sent; `args`: configuration. */
function world(o: {
  withFilter: string[];
  macros?: Record<string, string>;
  args?: string[];
  classify?: (rcpt: string) => Recipient;
  /** Users with an RCPT-stage program, and what it comes to. */
  rcptStage?: Record<string, FilterResult>;
}): World {
  const lines: Array<Record<string, unknown>> = [];
  const at = () => (obj: object) => void lines.push(obj as Record<string, unknown>);
  const log = { debug: at(), info: at(), warn: at(), error: at() };
  const w = { lines, skips: [] as string[], actions: [] as string[], jobs: [] as FilterJob[], rcptRuns: [] as string[] } as World;
  const config = loadConfig({ env: {}, args: o.args ?? [] }).config;
  const app: AppContext = {
    config: () => config,
    classify: (input) => {
      if (o.classify) return Promise.resolve(o.classify(input.rcpt));
      const m = /^<([a-z]+)@x\.test>$/.exec(input.rcpt);
      return Promise.resolve(m && USERS[m[1] as string] ? local(m[1] as string) : { kind: 'nonlocal', rcpt: input.rcpt, reason: 'mailer smtp' });
    },
    hasFilter: (u, program = 'filter') => Promise.resolve(program === 'rcpt' ? o.rcptStage?.[u.name] !== undefined : o.withFilter.includes(u.name)),
    spool: { create: () => Promise.resolve({ path: '/spool/x', remove: () => Promise.resolve() }) } as unknown as AppContext['spool'],
    runner: {
      runMessage: (jobs) =>
        jobs.map((job) => {
          w.jobs.push(job);
          return Promise.resolve(o.rcptStage?.[job.user.name] as FilterResult);
        }),
    },
    metrics: {
      message: (a) => w.actions.push(a),
      messageAnswered() {},
      internalError() {},
      filterRun() {},
      recipient() {},
      skip: (r) => w.skips.push(r),
      rcptFilterRun: (outcome, u) => w.rcptRuns.push(`${u}=${outcome}`),
      spoolBytes() {},
    },
    log,
  };
  const macros = o.macros ?? {};
  const conn = {
    id: 1,
    peer: 'test',
    macros: { get: (n: string) => macros[n], snapshot: () => ({}) },
    negotiated: { version: 6, actions: 0, protocol: 0 },
    log,
    signal: new AbortController().signal,
  } as unknown as ConnectionContext;
  w.handler = new PerUserHandler(app, conn);
  return w;
}

async function rcpts(h: PerUserHandler, to: string[]): Promise<string[]> {
  assert.equal(await h.mail([Buffer.from('<s@y.test>')]), 'continue');
  const out: string[] = [];
  for (const r of to) {
    const reply = await h.rcpt([Buffer.from(`<${r}>`)]);
    out.push(reply === 'continue' ? 'ok' : typeof reply === 'object' && 'code' in reply ? `${reply.code} ${reply.text}` : String(reply));
  }
  return out;
}

describe('skip rules', () => {
  it('CIDR: IPv4, IPv6, Sendmail\'s IPv6: prefix, IPv4-mapped IPv6, bare addresses', () => {
    const yes: Array<[string, string]> = [
      ['192.0.2.7', '192.0.2.0/24'], ['192.0.2.7', '192.0.2.7'], ['::ffff:192.0.2.7', '192.0.2.0/24'], ['IPv6:2001:db8::1', '2001:db8::/32'],
      ['2001:DB8:0:0:0:0:0:1', '2001:db8::1/128'], ['[10.1.2.3]', '10.0.0.0/8'], ['::1', '::1'], ['IPv6:::ffff:10.0.0.1', '10.0.0.0/8'], ['8.8.8.8', '0.0.0.0/0'],
    ];
    const no: Array<[string, string]> = [
      ['192.0.3.7', '192.0.2.0/24'], ['2001:db9::1', '2001:db8::/32'], ['10.0.0.1', '2001:db8::/32'], ['192.0.2.7', '::ffff:0:0/128'],
    ];
    for (const [a, c] of yes) assert.equal(inCidr(addressBytes(a)!, parseCidr(c)!), true, `${a} in ${c}`);
    for (const [a, c] of no) assert.equal(inCidr(addressBytes(a)!, parseCidr(c)!), false, `${a} not in ${c}`);
    for (const bad of ['192.0.2.256', '1:2:3', '1::2::3', 'example.org', '']) assert.equal(addressBytes(bad), null, bad);
    for (const bad of ['192.0.2.0/33', '2001:db8::/129', '1.2.3.4/x']) assert.equal(parseCidr(bad), null, bad);
    assert.equal(skipReason({ clientAddress: 'IPv6:2001:db8::5', authenticatedAs: 'u' }, { trustedNetworks: ['2001:db8::/48'], skipAuthenticated: true })?.reason, 'trusted');
    assert.equal(skipReason({ clientAddress: '198.51.100.1', authenticatedAs: 'u' }, { trustedNetworks: ['2001:db8::/48'], skipAuthenticated: true })?.reason, 'authenticated');
    assert.equal(skipReason({ clientAddress: '198.51.100.1', authenticatedAs: 'u' }, { trustedNetworks: [], skipAuthenticated: false }), null);
  });

  it('a client in policy.trustedNetworks is accepted at MAIL: logged with why, skipped_total{trusted}, messages_total accept', async () => {
    const w = world({ withFilter: ['alice'], macros: { '{client_addr}': 'IPv6:2001:db8::25' }, args: ['--policy.trustedNetworks', '192.0.2.0/24,2001:db8::/32'] });
    await w.handler.connect('client.test', 'inet6', 25, '2001:db8::25');
    assert.equal(await w.handler.mail([Buffer.from('<s@y.test>')]), 'accept');
    assert.deepEqual(w.skips, ['trusted']);
    assert.deepEqual(w.actions, ['accept']);
    const line = w.lines.find((l) => l.event === 'message');
    assert.match(String(line?.note), /^skipped: client 2001:db8::25 in policy\.trustedNetworks 2001:db8::\/32$/);
  });

  it('an authenticated client under policy.skipAuthenticated is accepted at MAIL; without the setting its mail is filtered', async () => {
    const skip = world({ withFilter: ['alice'], macros: { '{auth_authen}': 'alice' }, args: ['--policy.skipAuthenticated', 'true'] });
    assert.equal(await skip.handler.mail([Buffer.from('<alice@x.test>')]), 'accept');
    assert.deepEqual(skip.skips, ['authenticated']);
    const filtered = world({ withFilter: ['alice'], macros: { '{auth_authen}': 'alice' } });
    assert.deepEqual(await rcpts(filtered.handler, ['alice@x.test']), ['ok']);
    assert.deepEqual(filtered.skips, []);
    const anonymous = world({ withFilter: ['alice'], macros: { '{auth_authen}': '' }, args: ['--policy.skipAuthenticated', 'true'] });
    assert.deepEqual(await rcpts(anonymous.handler, ['alice@x.test']), ['ok']);
    assert.deepEqual(anonymous.skips, []);
  });
});

describe('policy.mixed=split is exact; policy.dryRun never defers', () => {
  const SPLIT = ['--policy.mixed', 'split'];
  it('a user without a filter, and a non-local recipient, do not share a transaction with a filtered user', async () => {
    assert.deepEqual(await rcpts(world({ withFilter: ['alice'], args: SPLIT }).handler, ['alice@x.test', 'carol@x.test', 'z@remote.test']), ['ok', SPLIT_REPLY, SPLIT_REPLY]);
    assert.deepEqual(await rcpts(world({ withFilter: ['alice'], args: SPLIT }).handler, ['carol@x.test', 'z@remote.test', 'alice@x.test']), ['ok', 'ok', SPLIT_REPLY]);
    assert.deepEqual(await rcpts(world({ withFilter: ['alice', 'bob'], args: SPLIT }).handler, ['alice@x.test', 'alice@x.test', 'bob@x.test']), ['ok', 'ok', SPLIT_REPLY]);
  });

  it('under policy.nonLocal=ignore a non-local recipient has no vote: it may share the transaction', async () => {
    assert.deepEqual(await rcpts(world({ withFilter: ['alice'], args: [...SPLIT, '--policy.nonLocal', 'ignore'] }).handler, ['alice@x.test', 'z@remote.test']), ['ok', 'ok']);
  });

  it('dry-run: nothing deferred; the recipient the split would have deferred is logged', async () => {
    const w = world({ withFilter: ['alice', 'bob'], args: [...SPLIT, '--policy.dryRun', 'true'] });
    assert.deepEqual(await rcpts(w.handler, ['alice@x.test', 'bob@x.test']), ['ok', 'ok']);
    assert.ok(w.lines.some((l) => l.dryRunWouldBe === 'defer' && l.rcpt === '<bob@x.test>'));
  });

  it('an alias RCPT is one recipient: never split itself, but it is deferred as a whole when a filtered user is already there', async () => {
    const team: Recipient = { kind: 'alias', rcpt: '<team@x.test>', locals: [local('alice', '<team@x.test>'), local('bob', '<team@x.test>')], nonLocalTargets: 0 };
    const classify = (rcpt: string): Recipient => (rcpt === '<team@x.test>' ? team : local(/^<([a-z]+)@/.exec(rcpt)![1] as string));
    assert.deepEqual(await rcpts(world({ withFilter: ['alice', 'bob'], args: SPLIT, classify }).handler, ['team@x.test', 'alice@x.test']), ['ok', 'ok']);
    assert.deepEqual(await rcpts(world({ withFilter: ['alice', 'bob', 'carol'], args: SPLIT, classify }).handler, ['carol@x.test', 'team@x.test']), ['ok', SPLIT_REPLY]);
  });
});

describe('RCPT-stage programs (docs/reference.md §4b)', () => {
  const result = (outcome: Outcome, replyText = '', exitCode: number | null = null): FilterResult => ({ outcome, exitCode, signal: null, durationMs: 3, replyText, log: '' });

  it('the answer for one recipient: 550 with the first line, 450 for a tempfail, filter.onError for the rest', () => {
    assert.equal(rcptStageReply('accept', '', 'accept'), null);
    assert.equal(rcptStageReply('reject', '5.7.1 no mail from you', 'accept'), '550 5.7.1 no mail from you');
    assert.equal(rcptStageReply('reject', 'go away', 'accept'), '550 5.7.1 go away');
    assert.equal(rcptStageReply('reject', '', 'accept'), '550 5.7.1 Recipient rejected by its owner');
    assert.equal(rcptStageReply('tempfail', '4.2.1 mailbox full for now', 'accept'), '450 4.2.1 mailbox full for now');
    assert.equal(rcptStageReply('tempfail', '', 'accept'), '450 4.7.1 Recipient deferred by its owner');
    for (const o of ['error', 'timeout', 'unsafe'] as const) {
      assert.equal(rcptStageReply(o, 'ignored', 'accept'), null, o);
      assert.equal(rcptStageReply(o, 'ignored', 'tempfail'), '450 4.7.1 Recipient deferred by its owner', o);
    }
  });

  it('a refused recipient is not part of the transaction; the others go on; users without a program get no run', async () => {
    const w = world({ withFilter: ['alice', 'bob'], rcptStage: { alice: result('reject', '5.7.1 alice refuses this sender', 1) } });
    assert.deepEqual(await rcpts(w.handler, ['alice@x.test', 'bob@x.test']), ['550 5.7.1 alice refuses this sender', 'ok']);
    assert.deepEqual(w.jobs.map((j) => [j.user.name, j.program, j.spoolPath, j.envelope.RECIPIENT, j.envelope.SENDER, j.settings.timeout]), [['alice', 'rcpt', '', 'alice@x.test', 's@y.test', 10000]]);
    assert.deepEqual(w.rcptRuns, ['alice=reject']);
    assert.ok(w.lines.some((l) => l.event === 'rcpt-stage' && l.action === 'reject' && l.user === 'alice'));
    // Only bob is left: the message filter runs for him alone (alice's is never asked).
    assert.equal(await w.handler.data(), 'continue');
  });

  it('an accepting program lets the recipient through to the message filter; a failing one follows filter.onError', async () => {
    const ok = world({ withFilter: ['alice'], rcptStage: { alice: result('accept', '', 0) } });
    assert.deepEqual(await rcpts(ok.handler, ['alice@x.test']), ['ok']);
    const broken = world({ withFilter: ['alice'], rcptStage: { alice: result('timeout') }, args: ['--filter.onError', 'tempfail'] });
    assert.deepEqual(await rcpts(broken.handler, ['alice@x.test']), ['450 4.7.1 Recipient deferred by its owner']);
    const off = world({ withFilter: ['alice'], rcptStage: { alice: result('reject', 'no', 1) }, args: ['--filter.rcptPath', ''] });
    assert.deepEqual(await rcpts(off.handler, ['alice@x.test']), ['ok'], 'filter.rcptPath empty: no stage');
    assert.deepEqual(off.jobs, []);
  });
});
