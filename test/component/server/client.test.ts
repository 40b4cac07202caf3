// The in-repo MTA-side client on its own: timeouts, no-reply steps,
// failures surfaced as rejected promises.
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { MilterClient, MilterClientError } from '../../../src/milter/client.js';
import { SMFIP_NR_HDR } from '../../../src/milter/constants.js';
import { demoApplication, demoDeclaration, startInet } from './helpers.js';

/** A TCP listener that accepts and never says anything. */
async function silentPeer(): Promise<{ address: string; close: () => Promise<void> }> {
  const sockets: Socket[] = [];
  const server = createServer((s) => sockets.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    address: `inet:${port}@127.0.0.1`,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

describe('MilterClient', () => {
  it('times out waiting for a reply', async () => {
    const peer = await silentPeer();
    try {
      const client = await MilterClient.connect(peer.address, { timeout: 100 });
      await assert.rejects(client.negotiate(), (e: unknown) => e instanceof MilterClientError && /no reply within 100 ms/.test(e.message));
      client.destroy();
    } finally {
      await peer.close();
    }
  });

  it('rejects when nobody listens', async () => {
    const peer = await silentPeer();
    const address = peer.address;
    await peer.close();
    await assert.rejects(MilterClient.connect(address, { timeout: 1000 }));
  });

  it('does not wait for steps the milter will not answer (SMFIP_NR_*)', async () => {
    const demo = demoApplication({}, { ...demoDeclaration, noReplySteps: ['header'] });
    const server = await startInet({ application: demo.application });
    try {
      const client = await MilterClient.connect(server.address);
      const reply = await client.negotiate();
      assert.equal(reply.protocol & SMFIP_NR_HDR, SMFIP_NR_HDR);
      await client.connect('nr.example', 'inet', 1, '192.0.2.1');
      await client.mail('<s@x>');
      await client.rcpt('<r@x>');
      assert.equal(await client.header('Subject', 'a'), null);
      assert.equal(await client.header('Subject', 'b'), null);
      assert.equal((await client.eoh())?.type, 'continue', 'the next answered step gets its own reply, not a stray one');
      assert.equal((await client.eom()).final.type, 'continue');
      await client.quit();
      assert.equal(demo.calls.filter((c) => c.call === 'header').length, 2);
    } finally {
      await server.close({ graceMs: 200 });
    }
  });

  it('offers what it is told to offer (a v2 MTA) and gets a v2 answer', async () => {
    const server = await startInet({ application: demoApplication().application });
    try {
      const client = await MilterClient.connect(server.address, { version: 2, actions: 0x3f, protocol: 0x7f });
      const reply = await client.negotiate();
      assert.equal(reply.version, 2);
      assert.deepEqual(reply.macroLists, []);
      await client.connect('v2.example', 'inet', 1, '192.0.2.1');
      await client.mail('<s@x>');
      await client.rcpt('<r@x>');
      await client.header('Subject', 'v2 has no DATA step');
      assert.equal((await client.eom()).final.type, 'continue');
      await client.quit();
    } finally {
      await server.close({ graceMs: 200 });
    }
  });

  it('fails pending reads when the milter hangs up', async () => {
    const server = await startInet({ application: demoApplication().application, idleTimeout: 50 });
    try {
      const client = await MilterClient.connect(server.address);
      await client.negotiate();
      await assert.rejects(client.readReply(2000), /closed by the milter/);
    } finally {
      await server.close({ graceMs: 200 });
    }
  });
});
