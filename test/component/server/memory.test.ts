// A large message streams from the socket to the spool file: the live memory
// of the milter process does not grow with the message. Measured as what a
// full garbage collection leaves (heap used + ArrayBuffers), so the number is
// what the process holds, not what the collector has yet to free: the
// resident set of a real `serve` (test/mta/e2e/resilience.test.ts) also
// carries Buffers that are garbage but not yet collected.
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { describe, it } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { MilterApplication } from '../../../src/milter/application.js';
import { MilterClient } from '../../../src/milter/client.js';
import { Spool, type SpoolFile } from '../../../src/spool/index.js';
import { demoDeclaration, startInet, tempDir } from './helpers.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const MB = 1024 * 1024;
const CHUNK = 65535; // the largest BODY packet Postfix and Sendmail send

/** Bytes the process still holds after a full collection. */
function live(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

describe('memory', () => {
  it('a 20 MB body goes to the spool file without the milter process holding it', async (t) => {
    const tmp = tempDir();
    const { spool } = await Spool.open(tmp.dir);
    let file: SpoolFile | undefined;
    const samples: number[] = [];
    // A bare application (the demo one records every argument): spool what comes.
    const application: MilterApplication = {
      declaration: demoDeclaration,
      createHandler: () => ({
        mail: async () => {
          file = await spool.create('s@x', { lineEndings: 'lf', headerLeadingSpace: false, maxMessageBytes: 64 * MB });
        },
        header: (name, value) => file!.header(name, value),
        body: (chunk) => file!.write(chunk),
        eom: async () => {
          await file!.close();
          return 'accept' as const;
        },
      }),
    };
    const server = await startInet({ application });
    try {
      const client = await MilterClient.connect(server.address, { timeout: 30_000 });
      await client.negotiate();
      await client.connect('big.example', 'inet', 1, '192.0.2.1');
      await client.mail('<s@x>');
      await client.rcpt('<r@x>');
      await client.header('Subject', 'big');
      const line = Buffer.from('x'.repeat(76) + '\r\n');
      const chunk = Buffer.concat(Array.from({ length: Math.ceil(CHUNK / line.length) }, () => line)).subarray(0, CHUNK);
      const chunks = Math.ceil((20 * MB) / CHUNK);
      await client.body(chunk); // the first chunk opens the body: code paths loaded, buffers sized
      const before = live();
      for (let i = 1; i < chunks; i++) {
        await client.body(chunk);
        if (i % 64 === 0) samples.push(live() - before);
      }
      const eom = await client.eom();
      assert.equal(eom.final.type, 'accept');
      const after = live() - before;
      const spooled = statSync(file!.path).size;
      // every byte arrived (CRLF -> LF), so nothing was dropped to save memory
      assert.ok(spooled >= chunks * (CHUNK - 2 * Math.ceil(CHUNK / 78)), `spooled only ${spooled} bytes`);
      assert.ok(readFileSync(file!.path).includes(Buffer.from('Subject: big\n')));
      const peak = Math.max(...samples, after);
      t.diagnostic(`live memory growth, MB: ${samples.map((s) => (s / MB).toFixed(2)).join(" ")}; after end of message ${(after / MB).toFixed(2)}`);
      // A body held in memory would add its size, up to 20 MB; streaming holds a few frames.
      assert.ok(peak < 2 * MB, `live memory grew ${(peak / MB).toFixed(1)} MB while a 20 MB body streamed (samples ${samples.map((s) => (s / MB).toFixed(1)).join(' ')})`);
      await client.quit();
    } finally {
      await server.close({ graceMs: 200 });
      await file?.remove();
      tmp.cleanup();
    }
  });
});
