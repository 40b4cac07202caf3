// Property test against a LIVE server: random, truncated, oversized,
// zero-length and reordered frames, in random chunkings. The server must not
// crash, must not leave an unhandled rejection, must close every such
// connection (count back to 0) and must still serve a normal session.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { MilterClient } from '../../../src/milter/client.js';
import { encodeCommand, type Command } from '../../../src/milter/commands.js';
import type { MilterServer } from '../../../src/server/server.js';
import { countingEvents, demoApplication, startInet, waitFor } from './helpers.js';

const b = (s: string): Buffer => Buffer.from(s);
const VALID: Command[] = [
  { type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff },
  { type: 'macro', stage: 0x43, macros: [['j', 'mx']] },
  { type: 'connect', hostname: 'h', family: 'inet', port: 25, address: '192.0.2.1' },
  { type: 'helo', name: 'h' },
  { type: 'mail', args: [b('<s@x>')] },
  { type: 'rcpt', args: [b('<r@x>')] },
  { type: 'data' },
  { type: 'header', name: 'Subject', value: b('x') },
  { type: 'eoh' },
  { type: 'body', chunk: b('x\r\n') },
  { type: 'eom', chunk: Buffer.alloc(0) },
  { type: 'abort' },
  { type: 'unknown', command: b('FOO') },
  { type: 'quit_nc' },
  { type: 'quit' },
];
const IN_ORDER = VALID.slice(0, 11);

const piece: fc.Arbitrary<Buffer> = fc.oneof(
  // a valid packet, any command (so also out of order)
  fc.constantFrom(...VALID).map(encodeCommand),
  // the normal session prefix, to get deep into the state machine
  fc.integer({ min: 1, max: IN_ORDER.length }).map((n) => Buffer.concat(IN_ORDER.slice(0, n).map(encodeCommand))),
  // random bytes
  fc.uint8Array({ minLength: 1, maxLength: 64 }).map((a) => Buffer.from(a)),
  // a random command byte with random data
  fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 32 })).map(([code, data]) => {
    const packet = Buffer.alloc(5 + data.length);
    packet.writeUInt32BE(1 + data.length, 0);
    packet[4] = code;
    Buffer.from(data).copy(packet, 5);
    return packet;
  }),
  // a truncated packet
  fc.tuple(fc.constantFrom(...VALID).map(encodeCommand), fc.nat()).map(([p, n]) => p.subarray(0, n % p.length)),
  // zero and oversized lengths
  fc.constantFrom(Buffer.from('00000000', 'hex'), Buffer.from('ffffffff4f', 'hex'), Buffer.from('0010000142', 'hex')),
);

function sendAndHangUp(address: string, bytes: Buffer, cuts: number[], endPolitely: boolean): Promise<void> {
  const port = Number(/inet:(\d+)@/.exec(address)?.[1]);
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' }, () => {
      let at = 0;
      let i = 0;
      while (at < bytes.length) {
        const n = cuts.length > 0 ? (cuts[i++ % cuts.length] as number) : bytes.length;
        socket.write(bytes.subarray(at, at + n));
        at += n;
      }
      if (endPolitely) socket.end();
      else setTimeout(() => socket.destroy(), 5);
    });
    socket.resume(); // ignore replies
    socket.on('error', () => undefined); // the server may reset a broken connection
    socket.on('close', () => resolve());
    setTimeout(() => reject(new Error('connection did not close')), 5000).unref();
  });
}

describe('fuzzing a live server', () => {
  let server: MilterServer;
  const events = countingEvents();
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason);
  };

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    process.on('uncaughtException', onUnhandled);
    server = await startInet({ application: demoApplication().application, events, maxFrameLength: 4096, idleTimeout: 2000 });
  });
  after(async () => {
    await server.close({ graceMs: 500 });
    process.off('unhandledRejection', onUnhandled);
    process.off('uncaughtException', onUnhandled);
  });

  it('survives random, truncated, oversized and reordered frames without leaking connections', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(piece, { minLength: 1, maxLength: 10 }),
        fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 6 }),
        fc.boolean(),
        async (pieces, cuts, endPolitely) => {
          await sendAndHangUp(server.address, Buffer.concat(pieces), cuts, endPolitely);
          await waitFor(() => server.socketCount === 0, 'connection count back to 0', 3000);
        },
      ),
      // CI keeps 150 runs; the soak mode (npm run soak:fuzz) runs 100,000, seeded so that a failure can be replayed
      {
        numRuns: Number(process.env['PUM_FUZZ_RUNS'] ?? 150),
        ...(process.env['PUM_FUZZ_SEED'] ? { seed: Number(process.env['PUM_FUZZ_SEED']) } : {}),
      },
    );
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(unhandled, [], 'no unhandled rejection or exception');
    assert.ok((events.counts['protocolError'] ?? 0) > 0, 'the generator does produce broken input');
    assert.equal(events.counts['opened'], Object.entries(events.counts).filter(([k]) => k.startsWith('closed:')).reduce((n, [, v]) => n + v, 0));

    // Still healthy.
    const client = await MilterClient.connect(server.address);
    await client.negotiate();
    assert.equal((await client.connect('after.example', 'inet', 1, '192.0.2.1'))?.type, 'continue');
    await client.quit();
  });
});
