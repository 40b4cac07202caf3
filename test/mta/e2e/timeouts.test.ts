// A filter that hangs (docs/reference.md §3 filter.timeout, milter.progressInterval):
// the MTAs here are configured with a 3 s read timeout for the milter's
// end-of-message reply (Postfix milter_content_timeout = 3s; Sendmail T=R:3s,
// which Sendmail applies to each read while E: bounds the whole wait) and the
// filter is killed after 6 s. With progress every 750 ms the MTA waits, the
// outcome is `timeout`, and filter.onError decides. The control case turns
// progress off and the MTA gives up after 3 s: that is what progress prevents.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { filters, processesOf, sleep, waitFor } from '../harness/index.js';
import { MTA_KINDS, Rig, cannotRun, quietlyRunnable } from './support.js';

const MTA_READ_TIMEOUT_S = 3;
const FILTER_TIMEOUT_MS = 6000;

for (const kind of MTA_KINDS) {
  describe(`${kind}: a hanging filter`, () => {
    const rig = new Rig(kind, {
      users: ['alice'],
      // the other transport than in the other files: Postfix over TCP, Sendmail over a unix socket
      socket: kind === 'postfix' ? 'inet' : 'unix',
      postfixMain: { milter_content_timeout: `${MTA_READ_TIMEOUT_S}s` },
      sendmailTimeouts: `C:5s;S:10s;R:${MTA_READ_TIMEOUT_S}s;E:5m`,
    });
    before(async () => {
      if (quietlyRunnable()) await rig.start();
    });
    after(() => rig.stop());

    /** The hanging filter's whole process group is gone within the 2 s kill grace (+ slack). */
    async function noFilterLeft(): Promise<void> {
      const uid = rig.user('alice').uid;
      await waitFor(`no process of ${rig.user('alice').name} left`, async () => (await processesOf(uid)).length === 0, 6000);
    }

    it('filter.onError=accept: progress keeps the MTA waiting past its read timeout; outcome timeout; delivered', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.hang() });
        const milter = await rig.startMilter({
          'filter.timeout': FILTER_TIMEOUT_MS,
          'filter.onError': 'accept',
          'milter.progressInterval': 750,
        });
        const mark = milter.logMark();
        const mtaMark = rig.mta.logMark();
        const t0 = Date.now();
        const r = await rig.send({ to: rig.addr('alice') });
        const took = Date.now() - t0;
        assert.equal(r.code, 0, r.transcript);
        assert.match(r.finalReply, /^250 /);
        assert.ok(took >= FILTER_TIMEOUT_MS - 500, `answered after ${took} ms: the filter cannot have timed out yet`);
        assert.ok(took > MTA_READ_TIMEOUT_S * 1000 * 2, `answered after ${took} ms`);
        await milter.waitForLog(/timeout/, mark);
        if (kind === 'postfix') assert.doesNotMatch(rig.mta.logSince(mtaMark), /milter[^\n]*(timeout|timed out)/i);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', r.caseId), 1);
        await noFilterLeft();
      });
    });

    it('filter.onError=tempfail: the same wait, then 451 with policy.tempfailReply; nothing delivered', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.hang() });
        await rig.startMilter({
          'filter.timeout': FILTER_TIMEOUT_MS,
          'filter.onError': 'tempfail',
          'milter.progressInterval': 750,
          'policy.tempfailReply': '451 4.7.1 pumtest: filters did not finish',
        });
        const t0 = Date.now();
        const r = await rig.send({ to: rig.addr('alice') });
        const took = Date.now() - t0;
        assert.match(r.finalReply, /^451[ -]4\.7\.1 pumtest: filters did not finish$/, r.transcript);
        assert.ok(took >= FILTER_TIMEOUT_MS - 500, `answered after ${took} ms`);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', r.caseId), 0);
        await noFilterLeft();
      });
    });

    it('control: without progress the MTA gives up after its read timeout (4xx, nothing delivered)', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.hang() });
        await rig.startMilter({
          'filter.timeout': FILTER_TIMEOUT_MS,
          'filter.onError': 'accept',
          'milter.progressInterval': 600_000,
        });
        const mtaMark = rig.mta.logMark();
        const t0 = Date.now();
        const r = await rig.send({ to: rig.addr('alice') });
        const took = Date.now() - t0;
        assert.notEqual(r.code, 0, r.transcript);
        // the MTA's own tempfail (milter_default_action = tempfail / F=T), not a reply of the milter
        if (kind === 'postfix') {
          assert.match(r.finalReply, /^451[ -]4\.7\.1 Service unavailable - try again later$/, r.transcript);
          assert.match(rig.mta.logSince(mtaMark), /milter[^\n]*(timeout|timed out)/i);
        } else {
          assert.match(r.finalReply, /^451[ -]4\.3\.2 Please try again later$/, r.transcript);
        }
        assert.ok(took < FILTER_TIMEOUT_MS - 1000, `answered after ${took} ms: the MTA should have timed out at ${MTA_READ_TIMEOUT_S} s`);
        // let the milter finish (and kill) the filter before the next case
        await sleep(Math.max(0, FILTER_TIMEOUT_MS - took));
        await noFilterLeft();
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', r.caseId), 0);
      });
    });
  });
}
