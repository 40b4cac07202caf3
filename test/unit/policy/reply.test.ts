import { test } from 'node:test';
import assert from 'node:assert/strict';
import { combinedReply, filterReply, replyLine, replyValue, type ReplyKind } from '../../../src/policy/reply.js';

const FALLBACK_5 = '550 5.7.1 Message rejected by its recipients';
const FALLBACK_4 = '451 4.7.1 Message deferred by its recipients';

test('filterReply: a filter text becomes a full SMTP reply, or null', () => {
  const table: Array<[ReplyKind, string, string | null]> = [
    ['reject', '5.7.1 u1 says no', '550 5.7.1 u1 says no'],
    ['reject', 'no spam here', '550 5.7.1 no spam here'],
    ['reject', '5.2.2 mailbox full', '550 5.2.2 mailbox full'],
    ['reject', '5.7.1', '550 5.7.1'],
    ['reject', '4.7.1 later', null], // contradicts the verdict
    ['reject', '2.0.0 fine', null],
    ['reject', '', null],
    ['reject', '   ', null],
    ['reject', '5.7.1x not a code', '550 5.7.1 5.7.1x not a code'],
    ['reject', '550 5.7.1 spam', '550 5.7.1 550 5.7.1 spam'], // a basic code is just text
    ['tempfail', 'greylisted', '451 4.7.1 greylisted'],
    ['tempfail', '4.2.1 slow down', '451 4.2.1 slow down'],
    ['tempfail', '5.7.1 no', null],
  ];
  for (const [kind, text, want] of table) {
    const got = filterReply(kind, text);
    assert.equal(got === null ? null : replyLine(got), want, `${kind} ${JSON.stringify(text)}`);
  }
});

test('combinedReply: same texts -> that text, otherwise the configured reply', () => {
  const table: Array<[ReplyKind, string[], string]> = [
    ['reject', ['5.7.1 u1 says no'], '550 5.7.1 u1 says no'],
    ['reject', ['no', 'no'], '550 5.7.1 no'],
    ['reject', ['no', '5.7.1 no'], '550 5.7.1 no'], // same reply once completed
    ['reject', ['no', 'nope'], FALLBACK_5],
    ['reject', ['no', ''], FALLBACK_5],
    ['reject', [''], FALLBACK_5],
    ['reject', ['4.7.1 later'], FALLBACK_5],
    ['reject', [], FALLBACK_5],
    ['tempfail', ['busy'], '451 4.7.1 busy'],
    ['tempfail', ['busy', 'full'], FALLBACK_4],
  ];
  for (const [kind, texts, want] of table) {
    const fallback = kind === 'reject' ? FALLBACK_5 : FALLBACK_4;
    assert.equal(replyLine(combinedReply(kind, texts, fallback)), want, `${kind} ${JSON.stringify(texts)}`);
  }
});

test('reply values: code, enhanced code and text kept apart, and written back as one line', () => {
  assert.deepEqual(filterReply('reject', '5.7.1 u1 says no'), { code: '550', enhanced: '5.7.1', text: 'u1 says no' });
  assert.deepEqual(filterReply('tempfail', 'greylisted'), { code: '451', enhanced: '4.7.1', text: 'greylisted' });
  assert.deepEqual(replyValue('550 5.7.1 Message rejected by its recipients'), { code: '550', enhanced: '5.7.1', text: 'Message rejected by its recipients' });
  assert.equal(replyLine(replyValue('550 5.7.1')), '550 5.7.1');
  assert.throws(() => replyValue('550 no enhanced code'));
});
