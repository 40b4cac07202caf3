// Flow control: one command in flight, socket paused while a handler works,
// PROGRESS during a slow end of message, maxConnections.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MilterClient } from '../../../src/milter/client.js';
import { encodeCommand } from '../../../src/milter/commands.js';
import { countingEvents, demoApplication, sleep, startInet, waitFor } from './helpers.js';

describe('backpressure', () => {
  it('runs one handler call at a time even when the MTA pipelines commands', async () => {
    const demo = demoApplication({ rcpt: () => sleep(5).then(() => 'continue' as const) });
    const server = await startInet({ application: demo.application });
    try {
      const client = await MilterClient.connect(server.address);
      await client.negotiate();
      await client.connect('p.example', 'inet', 1, '192.0.2.1');
      await client.mail('<s@x>');
      // Twenty RCPTs in one write, without waiting for replies.
      client.sendRaw(Buffer.concat(Array.from({ length: 20 }, (_, i) => encodeCommand({ type: 'rcpt', args: [Buffer.from(`<r${i}@x>`)] }))));
      for (let i = 0; i < 20; i++) assert.equal((await client.readReply()).type, 'continue');
      assert.equal(demo.maxActive, 1, 'never two handler calls at once');
      const order = demo.calls.filter((c) => c.call === 'rcpt').map((c) => c.args[0]);
      assert.deepEqual(order, Array.from({ length: 20 }, (_, i) => `<r${i}@x>`));
      await client.quit();
    } finally {
      await server.close({ graceMs: 200 });
    }
  });

  it('stops reading the socket while a handler is pending, and catches up afterwards', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let bodyCalls = 0;
    const demo = demoApplication({
      body: async () => {
        bodyCalls++;
        if (bodyCalls === 1) await gate;
      },
      eom: () => 'accept' as const,
    });
    const server = await startInet({ application: demo.application });
    try {
      const client = await MilterClient.connect(server.address);
      await client.negotiate();
      await client.connect('bp.example', 'inet', 1, '192.0.2.1');
      await client.mail('<s@x>');
      await client.rcpt('<r@x>');
      // Push 64 KiB body packets until our writes stop draining: the server is not reading.
      const packet = encodeCommand({ type: 'body', chunk: Buffer.alloc(65535, 0x61) });
      const socket = (client as unknown as { socket: import('node:net').Socket }).socket;
      let sent = 0;
      let stalled = false;
      while (sent < 256) {
        sent++;
        if (!socket.write(packet)) {
          const drained = await Promise.race([new Promise<boolean>((r) => socket.once('drain', () => r(true))), sleep(300).then(() => false)]);
          if (!drained) {
            stalled = true;
            break;
          }
        }
      }
      assert.ok(stalled, `the server kept reading while its handler was blocked (${sent} packets sent)`);
      assert.equal(bodyCalls, 1, 'no further body call while the first is pending');
      release();
      for (let i = 0; i < sent; i++) assert.equal((await client.readReply()).type, 'continue');
      assert.equal(bodyCalls, sent);
      assert.equal((await client.eom()).final.type, 'accept');
      await client.quit();
    } finally {
      await server.close({ graceMs: 200 });
    }
  });
});

describe('PROGRESS', () => {
  it('sends SMFIR_PROGRESS every progressInterval while eom() works, then the verdict', async () => {
    const events = countingEvents();
    const demo = demoApplication({ eom: () => sleep(330).then(() => ({ reply: 'continue' as const, modifications: [{ kind: 'addHeader' as const, name: 'X-Slow', value: 'yes' }] })) });
    const server = await startInet({ application: demo.application, progressInterval: 50, events });
    try {
      const client = await MilterClient.connect(server.address);
      await client.negotiate();
      await client.connect('slow.example', 'inet', 1, '192.0.2.1');
      await client.mail('<s@x>');
      await client.rcpt('<r@x>');
      const eom = await client.eom();
      assert.ok(eom.progress >= 4 && eom.progress <= 7, `progress packets: ${eom.progress}`);
      assert.equal(eom.modifications.length, 1);
      assert.equal(eom.final.type, 'continue');
      assert.equal(events.counts['progress'], eom.progress);
      await sleep(120);
      assert.equal(events.counts['progress'], eom.progress, 'no PROGRESS after the verdict');
      await client.quit();
    } finally {
      await server.close({ graceMs: 200 });
    }
  });

  it('sends no PROGRESS for steps before end of message (Sendmail calls it bogus there)', async () => {
    const demo = demoApplication({ rcpt: () => sleep(150).then(() => 'continue' as const) });
    const server = await startInet({ application: demo.application, progressInterval: 20 });
    try {
      const client = await MilterClient.connect(server.address);
      await client.negotiate();
      await client.connect('slow.example', 'inet', 1, '192.0.2.1');
      await client.mail('<s@x>');
      client.send({ type: 'rcpt', args: [Buffer.from('<r@x>')] });
      assert.equal((await client.readReply()).type, 'continue', 'the first packet is the verdict, not a PROGRESS');
      await client.quit();
    } finally {
      await server.close({ graceMs: 200 });
    }
  });
});

describe('maxConnections', () => {
  it('answers connections beyond the cap with a 421 REPLYCODE and closes them; the slot frees again', async () => {
    const events = countingEvents();
    const demo = demoApplication();
    const server = await startInet({ application: demo.application, maxConnections: 1, events });
    try {
      const first = await MilterClient.connect(server.address);
      await first.negotiate();
      await waitFor(() => server.connectionCount === 1, 'first connection registered');

      const second = await MilterClient.connect(server.address);
      await second.negotiate();
      const refused = await second.connect('two.example', 'inet', 1, '192.0.2.2');
      assert.equal(refused?.type, 'replycode');
      assert.match((refused as { text: string }).text, /^421 4\.3\.2 /);
      await second.closed;
      assert.equal(server.connectionCount, 1);
      assert.equal(events.counts['closed:refused'], 1);
      assert.equal(demo.contexts.length, 1, 'no handler for the refused connection');

      assert.equal((await first.connect('one.example', 'inet', 1, '192.0.2.1'))?.type, 'continue');
      await first.quit();
      await waitFor(() => server.connectionCount === 0, 'first connection gone');

      const third = await MilterClient.connect(server.address);
      await third.negotiate();
      assert.equal((await third.connect('three.example', 'inet', 1, '192.0.2.3'))?.type, 'continue');
      await third.quit();
    } finally {
      await server.close({ graceMs: 200 });
    }
  });
});

describe('421', () => {
  it('hangs up after any 421 answer (both MTAs end the SMTP session on it)', async () => {
    const events = countingEvents();
    const demo = demoApplication({ helo: () => ({ code: '421', text: '4.7.0 Closing, go away' }) });
    const server = await startInet({ application: demo.application, events });
    try {
      const client = await MilterClient.connect(server.address);
      await client.negotiate();
      await client.connect('rude.example', 'inet', 1, '192.0.2.1');
      const reply = await client.helo('rude.example');
      assert.equal(reply?.type, 'replycode');
      assert.match((reply as { text: string }).text, /^421 4\.7\.0 /);
      await waitFor(() => events.counts['closed:refused'] === 1, 'closed by the milter, as refused');
      await client.closed;
    } finally {
      await server.close({ graceMs: 200 });
    }
  });

  it('takes only a 421 as the refusal over maxConnections', async () => {
    await assert.rejects(startInet({ application: demoApplication().application, refuseReply: { code: '451', text: '4.3.2 busy' } }), RangeError);
  });
});

describe('one write per packet', () => {
  it('writes every reply packet whole, in one socket.write() of one Buffer', async () => {
    const { Socket } = await import('node:net');
    const { FrameDecoder } = await import('../../../src/milter/frame.js');
    const original = Socket.prototype.write;
    const writes: Buffer[] = [];
    // Server-side sockets have a `server`; the client's do not.
    Socket.prototype.write = function (this: import('node:net').Socket & { server?: unknown }, chunk: unknown, ...rest: unknown[]) {
      if (this.server) writes.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
      return (original as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    } as typeof original;
    const demo = demoApplication({ eom: () => sleep(120).then(() => ({ reply: { code: '550', text: ['5.7.1 a', 'b'] }, modifications: [{ kind: 'addHeader' as const, name: 'X-A', value: 'b' }] })) });
    const server = await startInet({ application: demo.application, progressInterval: 30 });
    try {
      const client = await MilterClient.connect(server.address);
      await client.negotiate();
      await client.connect('w.example', 'inet', 1, '192.0.2.1');
      await client.mail('<s@x>');
      await client.rcpt('<r@x>');
      await client.body('x'.repeat(1000));
      const eom = await client.eom();
      assert.ok(eom.progress > 0);
      await client.quit();
    } finally {
      Socket.prototype.write = original;
      await server.close({ graceMs: 200 });
    }
    assert.ok(writes.length >= 8, `saw ${writes.length} writes`);
    for (const buffer of writes) {
      const decoder = new FrameDecoder();
      decoder.push(buffer);
      assert.ok(decoder.next(), 'a whole packet');
      assert.equal(decoder.bufferedBytes, 0, 'exactly one packet');
    }
  });
});
