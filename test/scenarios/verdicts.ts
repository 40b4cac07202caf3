// The verdict rules (docs/reference.md §5), one row each, replayed by the
// component runner (test/component/app/verdicts.test.ts) and, through real
// Postfix and real Sendmail, by the MTA runner (test/mta/e2e/verdicts.test.ts).
// The row format: test/scenarios/scenario.ts; how to add a row:
// test/mta/e2e/README.md.
import { accept, exit, hang, identity, reject, script, tempfail, unsafe, type Scenario } from './scenario.js';

const DEFAULT_REJECT = '550 5.7.1 Message rejected by its recipients';
const DEFAULT_TEMPFAIL = '451 4.7.1 Message deferred by its recipients';

const SPLIT = { 'policy.mixed': 'split' } as const;
const DROP = { 'policy.mixed': 'drop-rejecters' } as const;
const BWRAP: Scenario['needs'] = [['bwrap', 'bubblewrap']];
/** Rejects mail to +spam, accepts the rest. */
const NO_SPAM_EXTENSION = script('cat >/dev/null\nif [ "$EXTENSION" = spam ]; then echo "5.7.1 no mail to +spam"; exit 1; fi\nexit 0\n');

export const VERDICTS: readonly Scenario[] = [
  // §5.2: reject only when every vote is a reject; the reply text
  {
    name: 'every local recipient rejects with the same text: 550 with that text, nothing delivered',
    filters: { alice: reject('5.7.1 pumtest says no'), bob: reject('5.7.1 pumtest says no') },
    to: ['alice', 'bob'],
    expect: { reply: '550 5.7.1 pumtest says no', users: { alice: 'reject', bob: 'reject' } },
    bothTransports: true,
  },
  {
    name: 'rejecting filters with different texts: the default policy.rejectReply',
    filters: { alice: reject('5.7.1 no'), bob: reject('5.7.1 nope') },
    to: ['alice', 'bob'],
    expect: { reply: DEFAULT_REJECT, users: { alice: 'reject', bob: 'reject' }, log: { reply: DEFAULT_REJECT } },
  },
  {
    name: 'rejecting filters with different texts: the configured policy.rejectReply',
    config: { 'policy.rejectReply': '550 5.7.1 Rejected by every recipient (pumtest)' },
    filters: { alice: reject('alice says no'), bob: reject('bob says no') },
    to: ['alice', 'bob'],
    expect: { reply: '550 5.7.1 Rejected by every recipient (pumtest)', users: { alice: 'reject', bob: 'reject' } },
  },
  {
    name: 'a reject text without an enhanced status code gets 5.7.1 put before it',
    filters: { alice: reject('alice says no to this') },
    to: ['alice'],
    expect: { reply: '550 5.7.1 alice says no to this', users: { alice: 'reject' } },
  },
  {
    name: 'a reject text with a 4.x.y code gets the default reply',
    filters: { alice: reject('4.2.0 odd') },
    to: ['alice'],
    expect: { reply: DEFAULT_REJECT, users: { alice: 'reject' } },
  },
  {
    name: 'a reject without text gets the default reply',
    filters: { alice: reject() },
    to: ['alice'],
    expect: { reply: DEFAULT_REJECT, users: { alice: 'reject' } },
  },
  {
    name: 'the filter runs as its user, in its home',
    filters: { alice: identity() },
    to: ['alice'],
    expect: { reply: '550 5.7.1 uid={uid:alice} home={home:alice}', users: { alice: 'reject' } },
  },
  {
    name: 'one user addressed twice whose filter rejects: asked once, rejected with the text',
    filters: { alice: reject('5.7.1 alice says no twice') },
    to: ['alice+a', 'alice+b'],
    expect: { reply: '550 5.7.1 alice says no twice', users: { alice: 'reject' } },
  },
  {
    name: '+extension: the address maps to the user, whose filter sees the extension (+spam: rejected)',
    filters: { alice: NO_SPAM_EXTENSION },
    to: ['alice+spam'],
    expect: { reply: '550 5.7.1 no mail to +spam', users: { alice: 'reject' } },
  },
  {
    name: '+extension: the address maps to the user, whose filter sees the extension (+lists: delivered)',
    filters: { alice: NO_SPAM_EXTENSION },
    to: ['alice+lists'],
    expect: { reply: 'accept', users: { alice: 'accept' } },
  },

  // §5.3: a tempfail and no accept
  {
    name: 'a tempfailing filter alone: 451 with its text, nothing delivered',
    filters: { alice: tempfail('4.7.1 alice is busy, try later') },
    to: ['alice'],
    expect: { reply: '451 4.7.1 alice is busy, try later', users: { alice: 'tempfail' } },
  },
  {
    name: 'a tempfail and a reject, no accept: the tempfail wins',
    filters: { alice: tempfail('4.7.1 alice is busy'), bob: reject('5.7.1 bob says no') },
    to: ['alice', 'bob'],
    expect: { reply: '451 4.7.1 alice is busy', users: { alice: 'tempfail', bob: 'reject' } },
  },

  // §5.1 and §5.4: who votes accept; mixed verdicts
  {
    name: 'mixed accept and reject under the default policy.mixed=deliver: accepted, everyone gets it',
    filters: { alice: accept(), bob: reject('5.7.1 bob says no') },
    to: ['alice', 'bob'],
    expect: { reply: 'accept', users: { alice: 'accept', bob: 'reject' } },
  },
  {
    name: 'a user without a filter is an accept vote',
    filters: { bob: reject('5.7.1 bob says no') },
    to: ['alice', 'bob'],
    expect: { reply: 'accept', users: { alice: 'nofilter', bob: 'reject' } },
  },
  {
    name: 'one user addressed twice (plain and +extension) is asked once; each address gets its copy',
    filters: { alice: accept() },
    to: ['alice', 'alice+lists'],
    expect: { reply: 'accept', users: { alice: 'accept' } },
  },
  {
    name: 'mixed under policy.mixed=drop-rejecters: accepted, the rejecter removed from the message',
    config: DROP,
    filters: { alice: accept(), bob: reject('5.7.1 bob says no'), carol: accept() },
    to: ['alice', 'bob', 'carol'],
    expect: { reply: 'accept', dropped: ['bob'], users: { alice: 'accept', bob: 'reject', carol: 'accept' } },
    bothTransports: true,
  },
  {
    name: 'a user without a filter is an accept vote: the rejecter alone cannot bounce the message (drop-rejecters)',
    config: DROP,
    filters: { bob: reject('5.7.1 bob says no') },
    to: ['alice', 'bob'],
    expect: { reply: 'accept', dropped: ['bob'], users: { alice: 'nofilter', bob: 'reject' } },
  },
  {
    name: 'split: the first user rejects, only that transaction bounces; the deferred user gets their own verdict',
    config: SPLIT,
    filters: { alice: reject('5.7.1 alice says no'), bob: accept() },
    to: ['alice', 'bob'],
    expect: [
      { deferred: ['bob'], reply: '550 5.7.1 alice says no', users: { alice: 'reject' } },
      { reply: 'accept', users: { bob: 'accept' } },
    ],
  },
  {
    name: 'split with three users: 452 for every later user, each transaction gets its own user\'s verdict',
    config: SPLIT,
    filters: { alice: accept(), bob: reject('5.7.1 bob says no'), carol: accept() },
    to: ['alice', 'bob', 'carol'],
    expect: [
      { deferred: ['bob', 'carol'], reply: 'accept', users: { alice: 'accept' } },
      { deferred: ['carol'], reply: '550 5.7.1 bob says no', users: { bob: 'reject' } },
      { reply: 'accept', users: { carol: 'accept' } },
    ],
  },

  // §5.4 "Exact means exact": nothing that could outvote a filtered user shares its transaction
  {
    name: 'split is exact: a user without a filter is deferred, so the filtered user\'s reject bounces its own transaction',
    config: SPLIT,
    filters: { alice: reject('5.7.1 alice says no') },
    to: ['alice', 'carol'],
    expect: [
      { deferred: ['carol'], reply: '550 5.7.1 alice says no', users: { alice: 'reject' } },
      { reply: 'accept', at: 'data', users: {}, log: { note: 'no local recipient with a filter' } },
    ],
  },
  {
    name: 'split is exact: a filtered user after a user without a filter is deferred to its own transaction',
    config: SPLIT,
    filters: { bob: reject('5.7.1 bob says no') },
    to: ['carol', 'bob'],
    expect: [
      { deferred: ['bob'], reply: 'accept', at: 'data', users: {} },
      { reply: '550 5.7.1 bob says no', users: { bob: 'reject' } },
    ],
  },
  {
    name: 'split is exact: a non-local recipient (policy.nonLocal=accept) is deferred, relayed in its own transaction',
    config: SPLIT,
    filters: { alice: reject('5.7.1 alice says no') },
    to: ['alice', 'someone@remote'],
    expect: [
      { deferred: ['someone@remote'], reply: '550 5.7.1 alice says no', users: { alice: 'reject' } },
      { reply: 'accept', at: 'data', users: {} },
    ],
    bothTransports: true,
  },
  {
    name: 'policy.dryRun with split: nothing deferred, nothing rejected; the log says what would have been',
    config: { ...SPLIT, 'policy.dryRun': true },
    filters: { alice: reject('5.7.1 alice says no'), bob: reject('5.7.1 bob says no') },
    to: ['alice', 'bob'],
    expect: { reply: 'accept', users: { alice: 'reject', bob: 'reject' }, log: { dryRunWouldBe: 'reject', dryRunDeferred: /bob/i } },
  },

  // filter.onError: what a broken filter counts as
  {
    name: 'an unsafe filter is not run and counts as accept (filter.onError=accept)',
    filters: { alice: unsafe(), bob: reject('5.7.1 no') },
    to: ['alice', 'bob'],
    expect: { reply: 'accept', users: { alice: 'unsafe', bob: 'reject' } },
  },
  {
    name: 'an unsafe filter is not run and counts as tempfail (filter.onError=tempfail)',
    config: { 'filter.onError': 'tempfail' },
    filters: { alice: unsafe(), bob: reject('5.7.1 no') },
    to: ['alice', 'bob'],
    expect: { reply: DEFAULT_TEMPFAIL, users: { alice: 'unsafe', bob: 'reject' } },
  },
  {
    name: 'a filter exiting with another code counts as accept (filter.onError=accept)',
    filters: { alice: exit(3) },
    to: ['alice'],
    expect: { reply: 'accept', users: { alice: 'error' } },
  },
  {
    name: 'a filter exiting with another code counts as tempfail (filter.onError=tempfail)',
    config: { 'filter.onError': 'tempfail' },
    filters: { alice: exit(3) },
    to: ['alice'],
    expect: { reply: DEFAULT_TEMPFAIL, users: { alice: 'error' } },
  },
  {
    name: 'a filter past filter.timeout counts as accept (filter.onError=accept)',
    config: { 'filter.timeout': 800 },
    filters: { alice: hang(), bob: reject() },
    to: ['alice', 'bob'],
    expect: { reply: 'accept', users: { alice: 'timeout', bob: 'reject' } },
  },
  {
    name: 'a filter past filter.timeout counts as tempfail (filter.onError=tempfail)',
    config: { 'filter.timeout': 800, 'filter.onError': 'tempfail' },
    filters: { alice: hang() },
    to: ['alice'],
    expect: { reply: DEFAULT_TEMPFAIL, users: { alice: 'timeout' } },
  },

  // policy.nonLocal
  {
    name: 'a non-local recipient is an accept vote (policy.nonLocal=accept): delivered and relayed',
    filters: { alice: reject('5.7.1 no') },
    to: ['alice', 'someone@remote'],
    expect: { reply: 'accept', users: { alice: 'reject' } },
  },
  {
    name: 'a local rejecter plus a non-local recipient under drop-rejecters: relayed once, the rejecter removed',
    config: DROP,
    filters: { alice: reject('5.7.1 alice says no') },
    to: ['alice', 'someone@remote'],
    expect: { reply: 'accept', dropped: ['alice'], users: { alice: 'reject' } },
  },
  {
    name: 'a non-local recipient has no say (policy.nonLocal=ignore): the local rejecter bounces it, nothing relayed',
    config: { 'policy.nonLocal': 'ignore' },
    filters: { alice: reject('5.7.1 no') },
    to: ['alice', 'someone@remote'],
    expect: { reply: '550 5.7.1 no', users: { alice: 'reject' } },
  },

  // policy.dryRun
  {
    name: 'policy.dryRun: the verdict is logged, the reply is accept',
    config: { 'policy.dryRun': true },
    filters: { alice: reject('5.7.1 no') },
    to: ['alice'],
    expect: { reply: 'accept', users: { alice: 'reject' }, log: { dryRunWouldBe: 'reject' } },
  },

  // §5.5: nobody with a say
  {
    name: 'no local recipient: accepted at DATA, the body is never sent',
    filters: {},
    to: ['someone@remote'],
    expect: { reply: 'accept', at: 'data', users: {}, log: { note: 'no local recipient with a filter' } },
  },
  {
    name: 'local recipients without filters: accepted at DATA',
    filters: {},
    to: ['carol'],
    expect: { reply: 'accept', at: 'data', users: {}, log: { note: 'no local recipient with a filter' } },
  },

  // policy.oversize
  {
    name: 'oversize under policy.oversize=accept: accepted unfiltered',
    config: { 'milter.maxMessageSize': 4096 },
    filters: { alice: reject() },
    to: ['alice'],
    bodyBytes: 20_000,
    expect: { reply: 'accept', at: 'body', users: {}, log: { note: /^oversize: / } },
  },
  {
    name: 'oversize under policy.oversize=reject: 552 5.3.4, not filtered',
    config: { 'milter.maxMessageSize': 4096, 'policy.oversize': 'reject' },
    filters: { alice: reject() },
    to: ['alice'],
    bodyBytes: 20_000,
    expect: { reply: '552 5.3.4 Message too big for per-recipient filtering', at: 'body', users: {} },
  },

  // filter.sandbox=bwrap: the same verdicts
  {
    name: 'filter.sandbox=bwrap: the filter still runs as its user, in its home',
    config: { 'filter.sandbox': 'bwrap' },
    filters: { alice: identity() },
    to: ['alice'],
    expect: { reply: '550 5.7.1 uid={uid:alice} home={home:alice}', users: { alice: 'reject' } },
    needs: BWRAP,
  },
  {
    name: 'filter.sandbox=bwrap: mixed under drop-rejecters, the same verdict',
    config: { 'filter.sandbox': 'bwrap', ...DROP },
    filters: { alice: reject('5.7.1 alice says no from bwrap'), bob: accept() },
    to: ['alice', 'bob'],
    expect: { reply: 'accept', dropped: ['alice'], users: { alice: 'reject', bob: 'accept' } },
    needs: BWRAP,
  },
];
