// The harness itself, without the product: each MTA delivers to real users'
// mailboxes and relays to the sink when no milter is configured, and with the
// shipped snippet (F=T / milter_default_action = tempfail) it tempfails when
// nothing listens at the milter socket.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MTA_KINDS, Rig, cannotRun, quietlyRunnable } from './support.js';

for (const kind of MTA_KINDS) {
  describe(`${kind}: harness baseline`, () => {
    const plain = new Rig(kind, { users: ['alice', 'bob'], noMilter: true });
    const guarded = new Rig(kind, { users: ['carol'] });
    before(async () => {
      if (!quietlyRunnable()) return;
      await plain.start();
      await guarded.start();
    });
    after(async () => {
      await plain.stop();
      await guarded.stop();
    });

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

    it('tempfails (4xx) while the milter is unreachable, and delivers nothing', async (t) => {
      if (cannotRun(t)) return;
      await guarded.scenario(async () => {
        const r = await guarded.send({ to: guarded.addr('carol') });
        assert.notEqual(r.code, 0, r.transcript);
        assert.match(r.errors[0] ?? '', /^451 4\.\d\.\d /, r.transcript);
        await guarded.mta.settle();
        assert.equal(guarded.delivered('carol', r.caseId), 0);
      });
    });
  });
}
