// The harness itself, without the product: each MTA delivers to real users'
// mailboxes and relays to the sink when no milter is configured. (With the
// shipped snippet and nothing listening, it tempfails: resilience.test.ts.)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MTA_KINDS, Rig, cannotRun, quietlyRunnable } from './support.js';

for (const kind of MTA_KINDS) {
  describe(`${kind}: harness baseline`, () => {
    const plain = new Rig(kind, { users: ['alice', 'bob'], noMilter: true });
    before(async () => {
      if (quietlyRunnable()) await plain.start();
    });
    after(() => plain.stop());

    it('delivers to two local users and relays a non-local recipient, exactly once each', async (t) => {
      if (cannotRun(t)) return;
      await plain.scenario(async () => {
        const r = await plain.send({ to: [plain.addr('alice'), plain.addr('bob'), `someone@remote.test`] });
        assert.equal(r.code, 0, r.transcript);
        assert.match(r.finalReply, /^250 /);
        await plain.mta.settle();
        assert.equal(plain.delivered('alice', r.caseId), 1);
        assert.equal(plain.delivered('bob', r.caseId), 1);
        assert.deepEqual(plain.relayed(r.caseId), [['someone@remote.test']]);
      });
    });

    it('rejects an unknown local user at RCPT', async (t) => {
      if (cannotRun(t)) return;
      await plain.scenario(async () => {
        const r = await plain.send({ to: `pumtest-nosuchuser@example.test` });
        assert.equal(r.code, 24, r.transcript);
        assert.match(r.rcptReplies[0] ?? '', /^550 /);
      });
    });
  });
}
