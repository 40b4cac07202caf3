// Start, stop and failure: graceful close, idle timeout, garbage on the
// wire, unix socket housekeeping.
import assert from 'node:assert/strict';
import { statSync, writeFileSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MilterClient } from '../../../src/milter/client.js';
import { encodeFrame } from '../../../src/milter/frame.js';
import { MilterServer } from '../../../src/server/server.js';
import { countingEvents, demoApplication, memoryLogger, sleep, startInet, tempDir, waitFor } from './helpers.js';

async function openTransaction(address: string): Promise<MilterClient> {
  const client = await MilterClient.connect(address);
  await client.negotiate();
  await client.connect('g.example', 'inet', 1, '192.0.2.1');
  await client.mail('<s@x>');
  await client.rcpt('<r@x>');
  return client;
}

describe('graceful close', () => {
  it('lets an in-flight EOM finish, tempfails an open transaction, closes idle connections', async () => {
    const demo = demoApplication({ eom: () => sleep(200).then(() => 'accept' as const) });
    const server = await startInet({ application: demo.application });
    const busy = await openTransaction(server.address);
    const open = await openTransaction(server.address);
    const idle = await MilterClient.connect(server.address);
    await idle.negotiate();
    await idle.connect('idle.example', 'inet', 1, '192.0.2.1');

    const eom = busy.eom();
    await waitFor(() => demo.calls.some((c) => c.call === 'eom'), 'eom running');
    const closing = server.close({ graceMs: 2000 });

    await idle.closed; // between transactions: closed at once
    assert.equal((await eom).final.type, 'accept', 'the in-flight EOM got its real verdict');
    const next = await open.header('Subject', 'late');
    assert.equal(next?.type, 'replycode');
    assert.match((next as { text: string }).text, /^451 4\.3\.2 /);
    await open.closed;
    await closing;
    assert.equal(server.socketCount, 0);
    // The open transaction's handler was told, so the app can drop its spool file.
    const openConn = demo.calls.filter((c) => c.call === 'header' && c.args[1] === 'late');
    assert.equal(openConn.length, 0, 'no handler call after shutdown began');
    assert.ok(demo.calls.filter((c) => c.call === 'abort').length >= 1);
  });

  it('after graceMs answers a still-running EOM with a tempfail and aborts its signal', async () => {
    let sawAbort = false;
    const demo = demoApplication({
      eom: (ctx) =>
        new Promise((resolve) => {
          ctx.signal.addEventListener('abort', () => {
            sawAbort = true;
            setTimeout(() => resolve('accept'), 20);
          });
        }),
    });
    const server = await startInet({ application: demo.application, progressInterval: 0 });
    const client = await openTransaction(server.address);
    const eom = client.eom();
    await waitFor(() => demo.calls.some((c) => c.call === 'eom'), 'eom running');
    const started = Date.now();
    await server.close({ graceMs: 150 });
    const result = await eom;
    assert.equal(result.final.type, 'replycode');
    assert.match((result.final as { text: string }).text, /^451 4\.3\.2 /);
    assert.ok(sawAbort, 'the handler saw context.signal abort');
    assert.ok(Date.now() - started < 2000);
    await client.closed;
    assert.equal(server.socketCount, 0);
    // eom() was called, so the application owns the clean-up of that message; close() comes after eom settled.
    await waitFor(() => demo.calls.at(-1)?.call === 'close', 'close() after eom settled');
  });

  it('stops accepting new connections', async () => {
    const server = await startInet({ application: demoApplication().application });
    const address = server.address;
    await server.close({ graceMs: 100 });
    await assert.rejects(MilterClient.connect(address, { timeout: 1000 }));
  });
});

describe('idle and broken connections', () => {
  it('closes a connection idle for idleTimeout', async () => {
    const events = countingEvents();
    const server = await startInet({ application: demoApplication().application, idleTimeout: 100, events });
    try {
      const client = await MilterClient.connect(server.address);
      await client.negotiate();
      await client.closed;
      await waitFor(() => events.counts['closed:idle-timeout'] === 1, 'idle close counted');
      assert.equal(server.connectionCount, 0);
    } finally {
      await server.close({ graceMs: 100 });
    }
  });

  it('closes a connection without an open transaction after idleBetweenTransactions, whatever it sends meanwhile', async () => {
    const events = countingEvents();
    const server = await startInet({ application: demoApplication().application, idleBetweenTransactions: 300, events });
    try {
      const client = await MilterClient.connect(server.address);
      const opened = Date.now();
      await client.negotiate();
      await client.connect('chatty.example', 'inet', 1, '192.0.2.1');
      let closed = false;
      void client.closed.then(() => (closed = true));
      // HELO, macros and ABORTs every 50 ms: traffic, but never a transaction.
      while (!closed && Date.now() - opened < 3000) {
        client.macro('H', {});
        await client.helo('chatty.example').catch(() => undefined);
        if (!closed) client.abort();
        await sleep(50);
      }
      assert.ok(closed, 'closed although it kept talking');
      assert.ok(Date.now() - opened >= 300, 'not before the limit');
      await waitFor(() => events.counts['closed:idle-timeout'] === 1, 'counted as idle-timeout');
    } finally {
      await server.close({ graceMs: 100 });
    }
  });

  it('does not cut an open transaction, and starts again after end of message', async () => {
    const events = countingEvents();
    const server = await startInet({ application: demoApplication().application, idleBetweenTransactions: 200, events });
    try {
      const client = await openTransaction(server.address);
      await sleep(500); // inside the transaction: only idleTimeout applies
      assert.equal((await client.header('Subject', 'still here'))?.type, 'continue');
      assert.equal((await client.eom()).final.type, 'continue');
      const ended = Date.now();
      await client.closed;
      assert.ok(Date.now() - ended >= 150, `closed ${Date.now() - ended} ms after end of message`);
      assert.equal(events.counts['closed:idle-timeout'], 1);
    } finally {
      await server.close({ graceMs: 100 });
    }
  });

  const garbage: Array<[string, Buffer, string]> = [
    ['a zero length', Buffer.from('0000000041', 'hex'), 'frame-length-zero'],
    ['an oversized length', Buffer.from('7fffffff41', 'hex'), 'frame-too-large'],
    ['an unknown command', encodeFrame(0x5a), 'unknown-command'],
    ['a bad payload', encodeFrame(0x4f, Buffer.from('short')), 'bad-payload'],
    ['a command out of order', encodeFrame(0x45), 'bad-order'],
    ['HTTP', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 'frame-too-large'],
  ];
  for (const [name, bytes, reason] of garbage) {
    it(`closes only that connection on ${name}, logs and counts it`, async () => {
      const events = countingEvents();
      const logger = memoryLogger();
      const server = await startInet({ application: demoApplication().application, events, logger, maxFrameLength: 1 << 20 });
      try {
        const bystander = await MilterClient.connect(server.address);
        await bystander.negotiate();
        const bad = await MilterClient.connect(server.address);
        bad.sendRaw(bytes);
        await bad.closed;
        assert.deepEqual(events.reasons, [reason]);
        assert.ok(logger.lines.some((l) => l.level === 'warn' && /protocol error/.test(l.msg ?? '')));
        assert.equal((await bystander.connect('ok.example', 'inet', 1, '192.0.2.1'))?.type, 'continue', 'others unaffected');
        await bystander.quit();
        await waitFor(() => server.connectionCount === 0, 'no leaked connection');
      } finally {
        await server.close({ graceMs: 100 });
      }
    });
  }

  it('cleans up when the MTA hangs up mid-transaction and mid-packet', async () => {
    const demo = demoApplication();
    const server = await startInet({ application: demo.application });
    try {
      const client = await openTransaction(server.address);
      client.sendRaw(Buffer.from('0000000a42', 'hex')); // half a BODY packet
      client.destroy();
      await waitFor(() => server.connectionCount === 0, 'connection gone');
      await waitFor(() => demo.calls.some((c) => c.call === 'close'), 'close() called');
      assert.deepEqual(demo.calls.map((c) => c.call).slice(-2), ['abort', 'close']);
    } finally {
      await server.close({ graceMs: 100 });
    }
  });
});

describe('unix sockets', () => {
  it('applies socketMode and removes the socket file at close', async () => {
    const tmp = tempDir();
    const path = join(tmp.dir, 'milter.sock');
    try {
      const server = await MilterServer.start({ listen: `unix:${path}`, application: demoApplication().application, socketMode: 0o600 });
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.equal(server.address, `unix:${path}`);
      await server.close({ graceMs: 100 });
      assert.equal(existsSync(path), false);
    } finally {
      tmp.cleanup();
    }
  });

  it('removes a stale socket (nobody listening) and refuses a live one or a non-socket', async () => {
    const tmp = tempDir();
    const path = join(tmp.dir, 'milter.sock');
    try {
      // A stale socket: bound once, listener gone, file left behind.
      // A stale socket: a process bound it and was killed, so nobody unlinked it.
      const child = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
      assert.equal(child.signal, 'SIGKILL');
      assert.ok(existsSync(path));
      const server = await MilterServer.start({ listen: `local:${path}`, application: demoApplication().application });
      await assert.rejects(MilterServer.start({ listen: `unix:${path}`, application: demoApplication().application }), /another process is listening/);
      await server.close({ graceMs: 100 });

      const file = join(tmp.dir, 'not-a-socket');
      writeFileSync(file, 'precious');
      await assert.rejects(MilterServer.start({ listen: `unix:${file}`, application: demoApplication().application }), /not a socket/);
      assert.ok(existsSync(file));
    } finally {
      tmp.cleanup();
    }
  });
});
