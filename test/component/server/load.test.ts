// No-stall load test. Postfix over TCP leaves Nagle on and writes a macro
// packet (no answer) right before each command; a milter that does not
// answer every step then waits ~40 ms per message for a delayed ACK
// (docs/testing-with-real-mtas.md §6). Our client reproduces that write pattern
// (noDelay: false, separate D and command writes), and a per-message bound a
// 40 ms stall would break guards against regressions such as negotiating
// SMFIP_NR_* bits by default.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MilterClient } from '../../../src/milter/client.js';
import { SMFIP_NOREPLY_MASK } from '../../../src/milter/constants.js';
import { MilterServer } from '../../../src/server/server.js';
import { demoApplication, demoDeclaration, tempDir } from './helpers.js';

const MESSAGES = 100;
/**
 * Generous: a loopback message takes ~2-6 ms on an idle machine and ~20 ms on
 * a loaded shared one. The median (robust against scheduling spikes) of a
 * stalled run is above 40 ms by construction.
 */
const MAX_MEDIAN_MS = 35;

async function medianMsPerMessage(address: string, count: number, expectNoReplyBits = false): Promise<number> {
  await postfixLikeMessage(address, expectNoReplyBits); // warm-up
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = process.hrtime.bigint();
    await postfixLikeMessage(address, expectNoReplyBits);
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] as number;
}

async function postfixLikeMessage(address: string, expectNoReplyBits = false): Promise<void> {
  const client = await MilterClient.connect(address, { noDelay: false });
  const negotiated = await client.negotiate();
  assert.equal((negotiated.protocol & SMFIP_NOREPLY_MASK) !== 0, expectNoReplyBits, 'no no-reply bits by default');
  client.macro('C', { j: 'mx.example.org', '{daemon_name}': 'mx', v: 'Postfix 3.7.11' });
  await client.connect('client.example.net', 'inet', 40000, '192.0.2.1');
  client.macro('H', {});
  await client.helo('client.example.net');
  client.macro('M', { '{mail_addr}': 's@example.net' });
  await client.mail('<s@example.net>', 'SIZE=300');
  client.macro('R', { '{rcpt_mailer}': 'local', '{rcpt_addr}': 'alice@example.org', '{rcpt_host}': 'mx' });
  await client.rcpt('<alice@example.org>');
  client.macro('T', { i: 'QID' });
  await client.data();
  for (const [name, value] of [['From', '<s@example.net>'], ['To', '<alice@example.org>'], ['Subject', 'load']]) {
    client.macro('L', { i: 'QID' });
    await client.header(name as string, value as string);
  }
  client.macro('N', { i: 'QID' });
  await client.eoh();
  client.macro('B', { i: 'QID' });
  await client.body('hello\r\n'.repeat(20));
  client.macro('E', { i: 'QID' });
  const eom = await client.eom();
  assert.equal(eom.final.type, 'continue');
  client.abort();
  client.abort();
  await client.quit();
}

describe('no-stall load', () => {
  for (const transport of ['inet', 'unix'] as const) {
    it(`${MESSAGES} sequential Postfix-style messages over ${transport} take well under 40 ms each (median)`, async () => {
      const tmp = tempDir();
      const demo = demoApplication();
      const server = await MilterServer.start({
        listen: transport === 'inet' ? 'inet:0@127.0.0.1' : `unix:${join(tmp.dir, 'load.sock')}`,
        application: demo.application,
      });
      try {
        const medianMs = await medianMsPerMessage(server.address, MESSAGES);
        assert.ok(medianMs < MAX_MEDIAN_MS, `median ${medianMs.toFixed(2)} ms per message over ${transport} (bound ${MAX_MEDIAN_MS} ms)`);
      } finally {
        await server.close({ graceMs: 500 });
        tmp.cleanup();
      }
    });
  }

  it('control: the same load with SMFIP_NR_HDR negotiated does stall over inet (the bound can fail)', async () => {
    const demo = demoApplication({}, { ...demoDeclaration, noReplySteps: ['header'] });
    const server = await MilterServer.start({ listen: 'inet:0@127.0.0.1', application: demo.application });
    try {
      const medianMs = await medianMsPerMessage(server.address, 9, true);
      assert.ok(medianMs > MAX_MEDIAN_MS, `expected the delayed-ACK stall with NR_HDR, got a median of ${medianMs.toFixed(2)} ms per message`);
    } finally {
      await server.close({ graceMs: 500 });
    }
  });
});
