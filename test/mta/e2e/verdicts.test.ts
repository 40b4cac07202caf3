// Verdicts end to end (contract §5), against real Postfix and real Sendmail:
// the SMTP client's view (reply codes and texts) and the mailboxes' view
// (who received what, exactly once); and what the filter sees (filter-view.ts).
// One MTA instance per describe block; the
// milter is restarted with each case's configuration.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { auxPort, filters, postfixMilterAddress, type Postfix } from '../harness/index.js';
import { lacksCommand } from '../../support/require.js';
import { filterViewCase } from './filter-view.js';
import { MTA_KINDS, REMOTE_DOMAIN, Rig, cannotRun, quietlyRunnable } from './support.js';

for (const kind of MTA_KINDS) {
  describe(`${kind}: verdicts`, () => {
    const rig = new Rig(kind, { users: ['alice', 'bob', 'carol'] });
    before(async () => {
      if (quietlyRunnable()) await rig.start();
    });
    after(() => rig.stop());

    it('every local recipient rejects: 5xx with the filters\' text, nothing delivered', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.reject('5.7.1 pumtest says no'), bob: filters.reject('5.7.1 pumtest says no') });
        await rig.startMilter();
        const r = await rig.send({ to: [rig.addr('alice'), rig.addr('bob')] });
        assert.equal(r.code, 26, `expected a reject after the final dot\n${r.transcript}`);
        assert.match(r.finalReply, /^550[ -]5\.7\.1 pumtest says no$/);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', r.caseId), 0);
        assert.equal(rig.delivered('bob', r.caseId), 0);
        assert.equal(rig.user('alice').runs().length, 1);
        assert.equal(rig.user('bob').runs().length, 1);
      });
    });

    it('one rejecting user alone: 550 with exactly that user\'s text (5.7.1 put before a text without a code)', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.reject('alice says no to this') });
        await rig.startMilter();
        const r = await rig.send({ to: rig.addr('alice') });
        assert.equal(r.code, 26, r.transcript);
        assert.match(r.finalReply, /^550[ -]5\.7\.1 alice says no to this$/);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', r.caseId), 0);
      });
    });

    it('rejecters with different texts: the configured policy.rejectReply', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.reject('alice says no'), bob: filters.reject('bob says no') });
        await rig.startMilter({ 'policy.rejectReply': '550 5.7.1 Rejected by every recipient (pumtest)' });
        const r = await rig.send({ to: [rig.addr('alice'), rig.addr('bob')] });
        assert.equal(r.code, 26, r.transcript);
        assert.match(r.finalReply, /^550[ -]5\.7\.1 Rejected by every recipient \(pumtest\)$/);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', r.caseId) + rig.delivered('bob', r.caseId), 0);
      });
    });

    it('mixed accept/reject under policy.mixed=deliver: accepted, both users get it once', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.accept(), bob: filters.reject('5.7.1 bob says no') });
        await rig.startMilter({ 'policy.mixed': 'deliver' });
        const r = await rig.send({ to: [rig.addr('alice'), rig.addr('bob')] });
        assert.equal(r.code, 0, r.transcript);
        assert.match(r.finalReply, /^250 /);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', r.caseId), 1);
        assert.equal(rig.delivered('bob', r.caseId), 1);
      });
    });

    it('a user without a filter counts as accept: the rejecter alone cannot bounce the message', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ bob: filters.reject('5.7.1 bob says no') }); // alice: no ~/.user-milter
        await rig.startMilter({ 'policy.mixed': 'drop-rejecters' });
        const r = await rig.send({ to: [rig.addr('alice'), rig.addr('bob')] });
        assert.equal(r.code, 0, r.transcript);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', r.caseId), 1);
        assert.equal(rig.delivered('bob', r.caseId), 0);
      });
    });

    it('mixed under policy.mixed=drop-rejecters: accepted, the rejecter\'s mailbox stays empty', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.accept(), bob: filters.reject('5.7.1 bob says no'), carol: filters.accept() });
        await rig.startMilter({ 'policy.mixed': 'drop-rejecters' });
        const r = await rig.send({ to: [rig.addr('alice'), rig.addr('bob'), rig.addr('carol')] });
        assert.equal(r.code, 0, r.transcript);
        assert.match(r.finalReply, /^250 /);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', r.caseId), 1);
        assert.equal(rig.delivered('bob', r.caseId), 0);
        assert.equal(rig.delivered('carol', r.caseId), 1);
      });
    });

    it('mixed under policy.mixed=split: 452 for the second user, each transaction gets its own user\'s verdict', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.accept(), bob: filters.reject('5.7.1 bob says no'), carol: filters.accept() });
        await rig.startMilter({ 'policy.mixed': 'split' });
        const to = [rig.addr('alice'), rig.addr('bob'), rig.addr('carol')];
        const { caseId, transactions } = await rig.sendRetrying(to);
        const [first, second, third] = transactions;
        assert.equal(transactions.length, 3, transactions.map((x) => x.transcript).join('\n'));
        // 1st: alice accepted, bob and carol told to come back
        assert.deepEqual(first!.accepted, [rig.addr('alice')]);
        assert.match(first!.rcptReplies[1]!, /^452[ -]4\.5\.3 /);
        assert.match(first!.rcptReplies[2]!, /^452[ -]4\.5\.3 /);
        assert.match(first!.finalReply, /^250 /);
        // 2nd: bob alone, his filter rejects: the client sees his text
        assert.deepEqual(second!.accepted, [rig.addr('bob')]);
        assert.match(second!.finalReply, /^550[ -]5\.7\.1 bob says no$/);
        // 3rd: carol alone, accepted
        assert.deepEqual(third!.accepted, [rig.addr('carol')]);
        assert.match(third!.finalReply, /^250 /);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', caseId), 1);
        assert.equal(rig.delivered('bob', caseId), 0);
        assert.equal(rig.delivered('carol', caseId), 1);
        assert.equal(rig.user('bob').runs().length, 1);
      });
    });

    it('split when the first user rejects: only that transaction bounces, the retried user gets the mail', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.reject('5.7.1 alice says no'), bob: filters.accept() });
        await rig.startMilter({ 'policy.mixed': 'split' });
        const { caseId, transactions } = await rig.sendRetrying([rig.addr('alice'), rig.addr('bob')]);
        assert.equal(transactions.length, 2);
        assert.match(transactions[0]!.finalReply, /^550[ -]5\.7\.1 alice says no$/);
        assert.match(transactions[1]!.finalReply, /^250 /);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', caseId), 0);
        assert.equal(rig.delivered('bob', caseId), 1);
      });
    });

    it('a tempfailing filter: 4xx with its text, nothing delivered (the client keeps the message)', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.tempfail('4.7.1 alice is busy, try later') });
        await rig.startMilter();
        const r = await rig.send({ to: rig.addr('alice') });
        assert.notEqual(r.code, 0, r.transcript);
        assert.match(r.finalReply, /^451[ -]4\.7\.1 alice is busy, try later$/);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', r.caseId), 0);
      });
    });

    it('a tempfail and a reject, no accept: tempfail wins (4xx), nothing delivered', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.tempfail('4.7.1 alice is busy'), bob: filters.reject('5.7.1 bob says no') });
        await rig.startMilter();
        const r = await rig.send({ to: [rig.addr('alice'), rig.addr('bob')] });
        assert.match(r.finalReply, /^451[ -]4\.7\.1 alice is busy$/, r.transcript);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', r.caseId) + rig.delivered('bob', r.caseId), 0);
      });
    });

    it('a local rejecter plus a non-local recipient (policy.nonLocal=accept): accepted, delivered and relayed once', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.reject('5.7.1 alice says no') });
        await rig.startMilter({ 'policy.nonLocal': 'accept', 'policy.mixed': 'drop-rejecters' });
        const remote = `someone@${REMOTE_DOMAIN}`;
        const r = await rig.send({ to: [rig.addr('alice'), remote] });
        assert.equal(r.code, 0, r.transcript);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', r.caseId), 0);
        assert.deepEqual(rig.relayed(r.caseId), [[remote]]);
      });
    });

    it('a local rejecter plus a non-local recipient (policy.nonLocal=ignore): rejected, nothing relayed', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.reject('5.7.1 alice says no') });
        await rig.startMilter({ 'policy.nonLocal': 'ignore' });
        const r = await rig.send({ to: [rig.addr('alice'), `someone@${REMOTE_DOMAIN}`] });
        assert.equal(r.code, 26, r.transcript);
        assert.match(r.finalReply, /^550[ -]5\.7\.1 alice says no$/);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', r.caseId), 0);
        assert.deepEqual(rig.relayed(r.caseId), []);
      });
    });

    it('+extension: the address maps to the user, whose filter sees the extension', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({
          alice: filters.script(
            'cat >/dev/null\nif [ "$EXTENSION" = spam ]; then echo "5.7.1 no mail to +spam"; exit 1; fi\nexit 0\n',
          ),
        });
        await rig.startMilter();
        const spam = await rig.send({ to: rig.addr('alice', 'spam') });
        assert.equal(spam.code, 26, spam.transcript);
        assert.match(spam.finalReply, /^550[ -]5\.7\.1 no mail to \+spam$/);
        const lists = await rig.send({ to: rig.addr('alice', 'lists') });
        assert.equal(lists.code, 0, lists.transcript);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', spam.caseId), 0);
        assert.equal(rig.delivered('alice', lists.caseId), 1);
        assert.deepEqual(rig.user('alice').runs(), [rig.addr('alice', 'spam'), rig.addr('alice', 'lists')]);
      });
    });

    it('one user addressed twice (plain and +extension) is asked once', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.accept() });
        await rig.startMilter();
        const r = await rig.send({ to: [rig.addr('alice'), rig.addr('alice', 'lists')] });
        assert.equal(r.code, 0, r.transcript);
        await rig.mta.settle();
        assert.equal(rig.user('alice').runs().length, 1, `filter runs: ${rig.user('alice').runs().join(', ')}`);
        // both MTAs deliver one copy per distinct envelope address (checked without a milter)
        assert.equal(rig.delivered('alice', r.caseId), 2);
      });
    });

    it('one user addressed twice whose filter rejects: rejected once, with the text', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.reject('5.7.1 alice says no twice') });
        await rig.startMilter();
        const r = await rig.send({ to: [rig.addr('alice', 'a'), rig.addr('alice', 'b')] });
        assert.equal(r.code, 26, r.transcript);
        assert.match(r.finalReply, /^550[ -]5\.7\.1 alice says no twice$/);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', r.caseId), 0);
        assert.equal(rig.user('alice').runs().length, 1);
      });
    });

    it('filter.sandbox=bwrap: the same verdicts, the filter still runs as the user in its home', async (t) => {
      if (cannotRun(t)) return;
      if (lacksCommand(t, 'bwrap', 'bubblewrap')) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.reject('5.7.1 alice says no from bwrap'), bob: filters.save(0) });
        await rig.startMilter({ 'filter.sandbox': 'bwrap', 'policy.mixed': 'drop-rejecters' });
        const both = await rig.send({ to: [rig.addr('alice'), rig.addr('bob')] });
        assert.equal(both.code, 0, both.transcript);
        const alone = await rig.send({ to: rig.addr('alice') });
        assert.equal(alone.code, 26, alone.transcript);
        assert.match(alone.finalReply, /^550[ -]5\.7\.1 alice says no from bwrap$/);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', both.caseId), 0);
        assert.equal(rig.delivered('bob', both.caseId), 1);
        const bob = rig.user('bob');
        assert.match(bob.read('saved.id') ?? '', new RegExp(`^uid=${bob.uid}\\(`));
        assert.match(bob.read('saved.eml') ?? '', new RegExp(`X-Pumtest-Case: ${both.caseId}`));
      });
    });

    if (kind === 'postfix') {
      it('Postfix over TCP (smtpd_milters = inet:127.0.0.1:PORT) gives the same verdict as over the unix socket', async (t) => {
        if (cannotRun(t)) return;
        const unixListen = rig.listen;
        const pf = rig.mta as Postfix;
        try {
          await rig.scenario(async () => {
            rig.setFilters({ alice: filters.reject('5.7.1 alice says no over tcp') });
            await rig.stopMilter();
            rig.listen = `inet:${await auxPort()}@127.0.0.1`;
            await pf.configure({ smtpd_milters: postfixMilterAddress(rig.listen) });
            await rig.startMilter();
            const r = await rig.send({ to: rig.addr('alice') });
            assert.equal(r.code, 26, r.transcript);
            assert.match(r.finalReply, /^550[ -]5\.7\.1 alice says no over tcp$/);
            await rig.mta.settle();
            assert.equal(rig.delivered('alice', r.caseId), 0);
          });
        } finally {
          await rig.stopMilter();
          rig.listen = unixListen;
          await pf.configure({ smtpd_milters: postfixMilterAddress(unixListen) });
        }
      });
    }

    filterViewCase(rig);
  });
}
