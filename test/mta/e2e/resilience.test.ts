// The milter going away, and a big message (docs/reference.md §5.6: mail is never lost
// because of us). When the milter is killed in the middle of a message or
// stopped between messages, the MTA tempfails (the shipped snippets:
// milter_default_action = tempfail / F=T), nothing is delivered, and the
// same message sent again once the milter is back arrives exactly once.
// A 20 MB message is filtered, delivered byte for byte, and the milter's
// memory stays flat (the body is spooled, not buffered).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { filters, processesOf, randomTag, swaks, waitFor } from '../harness/index.js';
import { MTA_KINDS, Rig, cannotRun, quietlyRunnable } from './support.js';

const MB = 1024 * 1024;

/** Writes a message of about `size` bytes (CRLF) and returns its body in LF form. */
async function writeBigMessage(file: string, caseId: string, size: number): Promise<Buffer> {
  // base64 lines of random bytes: no "From " or "." at a line start, nothing an MTA would rewrite
  const lines = (): string[] => {
    const b64 = randomBytes(57 * 1000).toString('base64');
    const out: string[] = [];
    for (let i = 0; i < b64.length; i += 76) out.push(b64.slice(i, i + 76));
    return out;
  };
  const out = createWriteStream(file);
  const write = (s: string) => new Promise<void>((resolve) => (out.write(s) ? resolve() : out.once('drain', resolve)));
  await write(
    [`From: big@client.test`, `Subject: big ${caseId}`, `X-Pumtest-Case: ${caseId}`, 'MIME-Version: 1.0', 'Content-Type: application/octet-stream', 'Content-Transfer-Encoding: base64', '', ''].join('\r\n'),
  );
  let n = 0;
  const body: string[] = [];
  while (n < size) {
    const chunk = lines().join('\n') + '\n';
    body.push(chunk);
    n += chunk.length;
    // swaks ends the DATA with CRLF . CRLF itself: no line break at the very end of the file
    await write((n >= size ? chunk.slice(0, -1) : chunk).replace(/\n/g, '\r\n'));
  }
  await new Promise<void>((resolve) => out.end(resolve));
  return Buffer.from(body.join(''), 'latin1');
}

for (const kind of MTA_KINDS) {
  describe(`${kind}: milter outages and a 20 MB message`, () => {
    const rig = new Rig(kind, { users: ['alice', 'bob'], sendingMta: true });
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'pumtest-big-'));
    before(async () => {
      if (quietlyRunnable()) await rig.start();
    });
    after(async () => {
      rmSync(tmp, { recursive: true, force: true });
      await rig.stop();
    });

    it('nothing listening at the milter socket: 4xx (milter_default_action = tempfail / F=T), nothing delivered', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.accept() });
        await rig.stopMilter();
        const r = await rig.send({ to: rig.addr('alice') });
        assert.notEqual(r.code, 0, r.transcript);
        assert.match(r.errors[0] ?? '', /^451[ -]4\.\d\.\d /, r.transcript);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', r.caseId), 0);
      });
    });

    it('milter killed (SIGKILL) while a filter runs: 4xx, nothing delivered; resent after restart: delivered once', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.slow(20), bob: filters.accept() });
        const milter = await rig.startMilter({ 'filter.timeout': 60_000 });
        const caseId = randomTag(6);
        const to = [rig.addr('alice'), rig.addr('bob')];
        const pending = rig.send({ to, caseId });
        await waitFor('alice\'s filter to run', () => rig.user('alice').runs().length === 1, 20_000);
        milter.kill('SIGKILL');
        assert.equal(await milter.exited(), 'SIGKILL');
        const r = await pending;
        assert.notEqual(r.code, 0, r.transcript);
        assert.match(r.finalReply, /^4\d\d[ -]/, r.transcript);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', caseId), 0);
        assert.equal(rig.delivered('bob', caseId), 0);
        // the killed milter could not reap its filter: end what it left behind (test users only)
        const orphans = await processesOf(rig.user('alice').uid);
        t.diagnostic(`filter processes left behind by the killed milter: ${orphans.length}`);
        for (const pid of orphans) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        // back again: the client's retry goes through, exactly once per user
        rig.setFilters({ alice: filters.accept(), bob: filters.accept() });
        await rig.startMilter();
        const again = await rig.send({ to, caseId });
        assert.equal(again.code, 0, again.transcript);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', caseId), 1);
        assert.equal(rig.delivered('bob', caseId), 1);
      });
    });

    it('milter stopped (SIGTERM, exit 0): new mail tempfails (4xx); resent after restart: delivered once', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.accept() });
        const milter = await rig.startMilter();
        const warm = await rig.send({ to: rig.addr('alice') });
        assert.equal(warm.code, 0, warm.transcript);
        assert.equal(await rig.stopMilter().then(() => milter.exited()), 0, 'serve exits 0 on SIGTERM');
        const caseId = randomTag(6);
        const r = await rig.send({ to: rig.addr('alice'), caseId });
        assert.notEqual(r.code, 0, r.transcript);
        assert.match(r.errors[0] ?? '', /^4\d\d[ -]/, r.transcript);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', caseId), 0);
        await rig.startMilter();
        const again = await rig.send({ to: rig.addr('alice'), caseId });
        assert.equal(again.code, 0, again.transcript);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', caseId), 1);
        assert.equal(rig.delivered('alice', warm.caseId), 1);
      });
    });

    it('through a sending MTA: the milter killed mid-message, the message waits in the sender\'s queue and arrives once when the milter is back', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        const sender = rig.sender!;
        rig.setFilters({ alice: filters.slow(20), bob: filters.accept() });
        const milter = await rig.startMilter({ 'filter.timeout': 60_000 });
        const caseId = randomTag(6);
        // the client hands the message to its own MTA, which relays it to the MTA under test
        const submitted = await swaks({ port: sender.port, to: [rig.addr('alice'), rig.addr('bob')], headers: [`X-Pumtest-Case: ${caseId}`] });
        assert.equal(submitted.code, 0, submitted.transcript);
        await waitFor('alice\'s filter to run', () => rig.user('alice').runs().length === 1, 30_000);
        milter.kill('SIGKILL');
        await milter.exited();
        // the MTA under test answered 4xx: the sender deferred the message and still holds it
        await waitFor('the sender to defer the message', () => /status=deferred/.test(sender.log()), 30_000);
        assert.match(await sender.queue(), /pumtest-\w+-alice@example\.test/);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', caseId) + rig.delivered('bob', caseId), 0);
        for (const pid of await processesOf(rig.user('alice').uid)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        // the milter is back: the sender's next attempt goes through
        rig.setFilters({ alice: filters.accept(), bob: filters.accept() });
        await rig.startMilter();
        await sender.flush();
        await sender.settle(30_000);
        await rig.mta.settle();
        assert.equal(rig.delivered('alice', caseId), 1);
        assert.equal(rig.delivered('bob', caseId), 1);
      });
    });

    it('a 20 MB message: filtered, delivered intact, milter memory bounded', async (t) => {
      if (cannotRun(t)) return;
      await rig.scenario(async () => {
        rig.setFilters({ alice: filters.save(0) });
        const milter = await rig.startMilter();
        // warm up (first message loads code, starts workers)
        const warm = await rig.send({ to: rig.addr('alice') });
        assert.equal(warm.code, 0, warm.transcript);
        const before = await milter.memory();
        const caseId = randomTag(6);
        const file = path.join(tmp, `${caseId}.eml`);
        const body = await writeBigMessage(file, caseId, 20 * MB);
        const r = await rig.send({ to: rig.addr('alice'), dataFile: file, caseId, timeoutSec: 120 });
        assert.equal(r.code, 0, r.transcript);
        const afterMem = await milter.memory();
        await rig.mta.settle(60_000);
        // the filter saw the whole message
        const saved = readFileSync(rig.user('alice').file('saved.eml'));
        assert.ok(saved.subarray(saved.length - body.length).equals(body), `the filter's stdin does not end with the 20 MB body (${saved.length} bytes)`);
        // delivered once, byte for byte
        assert.equal(rig.delivered('alice', caseId), 1);
        const msg = rig.mta.messages(rig.user('alice').name).find((m) => m.get('X-Pumtest-Case') === caseId)!;
        let got = msg.body;
        while (got.length > body.length && got[got.length - 1] === 0x0a) got = got.subarray(0, got.length - 1);
        assert.equal(got.length, body.length, 'delivered body length');
        assert.ok(got.equals(body), 'delivered body differs from the one sent');
        // Memory, as the kernel sees it. The resident set also holds Buffers
        // that are garbage the collector has not freed yet (a streamed 20 MB
        // body leaves 15-22 MB of them here), so this bound is a sanity check:
        // a body held in memory adds its 20 MB on top of that garbage. The
        // exact property (live memory flat while 20 MB stream) is
        // test/component/server/memory.test.ts.
        const grew = afterMem.rss - before.rss;
        const peak = afterMem.hwm - before.rss;
        t.diagnostic(`milter RSS ${Math.round(before.rss / MB)} MB -> ${Math.round(afterMem.rss / MB)} MB, peak ${Math.round(afterMem.hwm / MB)} MB`);
        assert.ok(grew < 36 * MB, `RSS grew by ${Math.round(grew / MB)} MB for a 20 MB message`);
        assert.ok(peak < 40 * MB, `RSS peaked ${Math.round(peak / MB)} MB above the start for a 20 MB message`);
      });
    });
  });
}
