import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Outcome } from '../../../src/filter/job.js';
import {
  decide,
  decideOversize,
  policySettings,
  voteOf,
  type Decision,
  type PolicySettings,
  type Verdict,
  type UserVerdict,
} from '../../../src/policy/aggregate.js';
import { OVERSIZE_REPLY, replyLine } from '../../../src/policy/reply.js';

const DEFAULTS: PolicySettings = {
  mixed: 'deliver',
  nonLocal: 'accept',
  dryRun: false,
  oversize: 'accept',
  rejectReply: '550 5.7.1 Message rejected by its recipients',
  tempfailReply: '451 4.7.1 Message deferred by its recipients',
  onError: 'accept',
};

/** `alice:reject:text` -> a verdict for alice with RCPT `<alice@x>`. */
function u(spec: string): UserVerdict {
  const [user = '', outcome = '', ...text] = spec.split(':');
  return { user, outcome: outcome as Outcome, replyText: text.join(':'), rcpts: [`<${user}@x>`] };
}

/** A verdict with its reply written as one line (`550 5.7.1 text`), as the table reads best. */
type Written<V> = Omit<V, 'reply' | 'dryRunWouldBe'> & { reply?: string; dryRunWouldBe?: Written<Verdict> };

/** A decision with its reply values written as lines, for comparing with the table. */
function written(d: Decision | Verdict): Written<Decision> {
  const out: Record<string, unknown> = { ...d };
  if (d.reply) out.reply = replyLine(d.reply);
  if ('dryRunWouldBe' in d && d.dryRunWouldBe) out.dryRunWouldBe = written(d.dryRunWouldBe);
  return out as Written<Decision>;
}

interface Row {
  name: string;
  users: string[];
  nonLocal?: number;
  settings?: Partial<PolicySettings>;
  want: Written<Decision>;
}

const REJECT = { action: 'reject', reply: DEFAULTS.rejectReply } as const;
const TEMPFAIL = { action: 'tempfail', reply: DEFAULTS.tempfailReply } as const;

const table: Row[] = [
  { name: 'no recipients at all', users: [], want: { action: 'accept' } },
  { name: 'one accept', users: ['a:accept'], want: { action: 'accept' } },
  { name: 'one reject with text (contract example)', users: ['u1:reject:5.7.1 u1 says no'], want: { action: 'reject', reply: '550 5.7.1 u1 says no' } },
  { name: 'one reject without text', users: ['a:reject'], want: REJECT },
  { name: 'reject with plain text', users: ['a:reject:go away'], want: { action: 'reject', reply: '550 5.7.1 go away' } },
  { name: 'reject with a 4.x.y text', users: ['a:reject:4.7.1 hmm'], want: REJECT },
  { name: 'two rejects, same text', users: ['a:reject:spam', 'b:reject:spam'], want: { action: 'reject', reply: '550 5.7.1 spam' } },
  { name: 'two rejects, different texts', users: ['a:reject:spam', 'b:reject:junk'], want: REJECT },
  { name: 'reject + accept: deliver', users: ['a:reject:spam', 'b:accept'], want: { action: 'accept' } },
  { name: 'reject + nofilter counts as accept', users: ['a:reject', 'b:nofilter'], want: { action: 'accept' } },
  { name: 'reject + non-local recipient (nonLocal=accept)', users: ['a:reject'], nonLocal: 1, want: { action: 'accept' } },
  { name: 'reject + non-local recipient (nonLocal=ignore)', users: ['a:reject'], nonLocal: 1, settings: { nonLocal: 'ignore' }, want: REJECT },
  { name: 'only non-local, ignored', users: [], nonLocal: 2, settings: { nonLocal: 'ignore' }, want: { action: 'accept' } },
  { name: 'reject + error, onError=accept', users: ['a:reject', 'b:error'], want: { action: 'accept' } },
  { name: 'reject + timeout, onError=tempfail', users: ['a:reject', 'b:timeout'], settings: { onError: 'tempfail' }, want: TEMPFAIL },
  { name: 'unsafe alone, onError=tempfail', users: ['a:unsafe'], settings: { onError: 'tempfail' }, want: TEMPFAIL },
  { name: 'unsafe alone, onError=accept', users: ['a:unsafe'], want: { action: 'accept' } },
  { name: 'tempfail with text', users: ['a:tempfail:greylisted'], want: { action: 'tempfail', reply: '451 4.7.1 greylisted' } },
  { name: 'tempfail with 4.x.y text', users: ['a:tempfail:4.2.2 over quota'], want: { action: 'tempfail', reply: '451 4.2.2 over quota' } },
  { name: 'tempfail with a 5.x.y text', users: ['a:tempfail:5.7.1 no'], want: TEMPFAIL },
  { name: 'tempfail wins over reject', users: ['a:reject:spam', 'b:tempfail:later'], want: { action: 'tempfail', reply: '451 4.7.1 later' } },
  { name: 'tempfail + error(onError=tempfail): texts differ', users: ['a:tempfail:later', 'b:error'], settings: { onError: 'tempfail' }, want: TEMPFAIL },
  { name: 'tempfail + accept', users: ['a:tempfail', 'b:accept'], want: { action: 'accept' } },
  { name: 'tempfail + non-local', users: ['a:tempfail'], nonLocal: 1, want: { action: 'accept' } },
  {
    name: 'drop-rejecters: rejecters dropped on accept',
    users: ['a:reject', 'b:accept', 'c:reject'],
    settings: { mixed: 'drop-rejecters' },
    want: { action: 'accept', dropRcpts: ['<a@x>', '<c@x>'] },
  },
  {
    name: 'drop-rejecters: tempfailers are not dropped',
    users: ['a:tempfail', 'b:accept'],
    settings: { mixed: 'drop-rejecters' },
    want: { action: 'accept' },
  },
  {
    name: 'drop-rejecters: non-local vote keeps the message, local rejecter dropped',
    users: ['a:reject'],
    nonLocal: 1,
    settings: { mixed: 'drop-rejecters' },
    want: { action: 'accept', dropRcpts: ['<a@x>'] },
  },
  { name: 'drop-rejecters: all reject -> reject', users: ['a:reject', 'b:reject'], settings: { mixed: 'drop-rejecters' }, want: REJECT },
  { name: 'split: like deliver at EOM', users: ['a:reject', 'b:accept'], settings: { mixed: 'split' }, want: { action: 'accept' } },
  {
    name: 'dryRun: reject becomes accept, reported',
    users: ['a:reject:spam'],
    settings: { dryRun: true },
    want: { action: 'accept', dryRunWouldBe: { action: 'reject', reply: '550 5.7.1 spam' } },
  },
  {
    name: 'dryRun: drop-rejecters reported, not done',
    users: ['a:reject', 'b:accept'],
    settings: { dryRun: true, mixed: 'drop-rejecters' },
    want: { action: 'accept', dryRunWouldBe: { action: 'accept', dropRcpts: ['<a@x>'] } },
  },
  { name: 'dryRun: accept reported as accept', users: ['a:accept'], settings: { dryRun: true }, want: { action: 'accept', dryRunWouldBe: { action: 'accept' } } },
  {
    name: 'custom rejectReply',
    users: ['a:reject'],
    settings: { rejectReply: '554 5.7.0 Go away' },
    want: { action: 'reject', reply: '554 5.7.0 Go away' },
  },
];

test('decide: docs/reference.md §5 table', () => {
  for (const row of table) {
    const got = decide(row.users.map(u), row.nonLocal ?? 0, { ...DEFAULTS, ...row.settings });
    assert.deepEqual(written(got), row.want, row.name);
  }
});

test('decide: a user reached through two addresses has both RCPTs dropped', () => {
  const users: UserVerdict[] = [
    { user: 'a', outcome: 'reject', replyText: '', rcpts: ['<a@x>', '<A+lists@X>'] },
    { user: 'b', outcome: 'accept', replyText: '', rcpts: ['<b@x>'] },
  ];
  assert.deepEqual(decide(users, 0, { ...DEFAULTS, mixed: 'drop-rejecters' }).dropRcpts, ['<a@x>', '<A+lists@X>']);
});

test('voteOf: every outcome under both onError settings', () => {
  const table: Array<[Outcome, 'accept' | 'reject' | 'tempfail', 'accept' | 'reject' | 'tempfail']> = [
    ['accept', 'accept', 'accept'],
    ['nofilter', 'accept', 'accept'],
    ['reject', 'reject', 'reject'],
    ['tempfail', 'tempfail', 'tempfail'],
    ['unsafe', 'accept', 'tempfail'],
    ['error', 'accept', 'tempfail'],
    ['timeout', 'accept', 'tempfail'],
  ];
  for (const [outcome, onAccept, onTempfail] of table) {
    assert.equal(voteOf(outcome, 'accept'), onAccept, `${outcome} onError=accept`);
    assert.equal(voteOf(outcome, 'tempfail'), onTempfail, `${outcome} onError=tempfail`);
  }
});

test('decideOversize', () => {
  assert.deepEqual(decideOversize({ oversize: 'accept', dryRun: false }), { action: 'accept' });
  assert.deepEqual(decideOversize({ oversize: 'reject', dryRun: false }), { action: 'reject', reply: OVERSIZE_REPLY });
  assert.match(replyLine(OVERSIZE_REPLY), /^552 5\.3\.4 /);
  assert.deepEqual(decideOversize({ oversize: 'reject', dryRun: true }), {
    action: 'accept',
    dryRunWouldBe: { action: 'reject', reply: OVERSIZE_REPLY },
  });
});

test('policySettings picks policy.* and filter.onError', () => {
  const s = policySettings({
    policy: { ...DEFAULTS, mixed: 'split' },
    filter: { onError: 'tempfail' },
  });
  assert.deepEqual(s, { ...DEFAULTS, mixed: 'split', onError: 'tempfail', rejectExtension: 'spam', delimiter: '+' });
});

test('drop-rejecters with an alias RCPT: removed only when every user behind it rejected, and never when it also leads elsewhere', async () => {
  const { rcptsToDrop } = await import('../../../src/policy/aggregate.js');
  const v = (user: string, outcome: Outcome, rcpts: string[]): UserVerdict => ({ user, outcome, replyText: '', rcpts });
  // team -> alice, bob. bob accepts: team stays; alice's own address goes.
  assert.deepEqual(rcptsToDrop([v('alice', 'reject', ['<team@x>', '<alice@x>']), v('bob', 'accept', ['<team@x>'])]), ['<alice@x>']);
  // both reject: team goes.
  assert.deepEqual(rcptsToDrop([v('alice', 'reject', ['<team@x>']), v('bob', 'reject', ['<team@x>'])]), ['<team@x>']);
  // both reject but team also reaches a remote address: kept.
  assert.deepEqual(rcptsToDrop([v('alice', 'reject', ['<team@x>']), v('bob', 'reject', ['<team@x>'])], new Set(['<team@x>'])), []);
  const d = decide([v('alice', 'reject', ['<team@x>']), v('bob', 'accept', ['<team@x>'])], 0, { ...DEFAULTS, mixed: 'drop-rejecters' });
  assert.deepEqual(d, { action: 'accept' });
});

test('policy.mixed=extension: the rejecters\' RCPTs are replaced by their +EXT form (existing extension replaced, domain kept)', async () => {
  const { withExtension } = await import('../../../src/policy/extension.js');
  assert.equal(withExtension('<alice@x.test>', 'spam', '+'), '<alice+spam@x.test>');
  assert.equal(withExtension('<Alice+lists@X.test>', 'spam', '+'), '<Alice+spam@X.test>');
  assert.equal(withExtension('<@relay.test:bob-list@x.test>', 'junk', '-+'), '<bob-junk@x.test>');
  assert.equal(withExtension('bob', 'spam', ''), 'bob+spam');
  const v = (user: string, outcome: Outcome): UserVerdict => ({ user, outcome, replyText: '', rcpts: [`<${user}+lists@x>`] });
  const settings = { ...DEFAULTS, mixed: 'extension' as const, rejectExtension: 'junk', delimiter: '+' };
  assert.deepEqual(decide([v('alice', 'reject'), v('bob', 'accept')], 0, settings), { action: 'accept', dropRcpts: ['<alice+lists@x>'], addRcpts: ['<alice+junk@x>'] });
  assert.deepEqual(written(decide([v('alice', 'reject'), v('bob', 'reject')], 0, settings)), REJECT, 'everyone rejects: still a reject');
  assert.deepEqual(decide([v('alice', 'reject'), v('bob', 'accept')], 0, { ...settings, dryRun: true }).action, 'accept');
  assert.equal(decide([v('alice', 'reject'), v('bob', 'accept')], 0, { ...settings, dryRun: true }).addRcpts, undefined, 'dry-run: nothing added');
});
