// runFilter never sends a RUN twice (review L11): a connection that breaks
// after the request was written may have started the filter, so the answer
// is our failure (PUM_ERR_LAUNCHER, 451), not a second run. A unix-socket
// server stands in for the launcher: it counts the RUN frames it receives
// and hangs up after the first.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { PumError } from '../../../src/errors.js';
import { closeLauncherConnection, LAUNCHER_SOCKET_ENV, runFilter } from '../../../src/filter/run.js';
import { FrameSplitter, MSG } from '../../../src/launcher/protocol.js';

test('a connection lost after the RUN was written: PUM_ERR_LAUNCHER, and the RUN was sent once', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pum-resend-'));
  const socket = path.join(dir, 's');
  let runs = 0;
  const server = net.createServer((c) => {
    const frames = new FrameSplitter();
    c.on('data', (chunk: Buffer) => {
      for (const body of frames.push(chunk)) if (body.readUInt8(0) === MSG.RUN) runs++;
      c.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  const saved = process.env[LAUNCHER_SOCKET_ENV];
  process.env[LAUNCHER_SOCKET_ENV] = socket;
  try {
    const user = { name: 'alice', uid: 61990, gid: 61990, groups: [61990], home: '/home/alice', shell: '/bin/sh' };
    const envelope = { SENDER: 's@x', RECIPIENT: 'alice@y', LOCAL: 'alice', EXTENSION: '', DOMAIN: 'y', CLIENT_ADDRESS: '', CLIENT_HOSTNAME: '', CLIENT_HELO: '', CLIENT_PROTOCOL: '', QUEUE_ID: '', SASL_METHOD: '', SASL_USERNAME: '' };
    const settings = { path: '~/.user-milter', timeout: 1000, sandbox: 'setpriv' as const, limits: { cpuSeconds: 1, memoryBytes: 1 << 20, processes: 1, fileSizeBytes: 1, outputBytes: 1 }, exitCodes: { reject: [1], tempfail: [75] } };
    await assert.rejects(runFilter({ spoolPath: path.join(dir, 'msg-000000000000000000000001'), user, envelope, settings }), (err: unknown) => {
      assert.ok(err instanceof PumError);
      assert.equal(err.code, 'PUM_ERR_LAUNCHER');
      return true;
    });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(runs, 1, 'the RUN reached the launcher once, and was not sent again');
  } finally {
    closeLauncherConnection();
    if (saved === undefined) delete process.env[LAUNCHER_SOCKET_ENV];
    else process.env[LAUNCHER_SOCKET_ENV] = saved;
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
