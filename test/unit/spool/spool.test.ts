import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { prepareSpoolDir, Spool, SpoolDirError } from '../../../src/spool/spool.js';
import { PumError } from '../../../src/errors.js';
import { spoolRawMessage } from '../../../src/spool/raw.js';
import type { SpoolFileOptions } from '../../../src/spool/file.js';

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'pum-spool-'));
}

const LF: SpoolFileOptions = { lineEndings: 'lf', headerLeadingSpace: false, maxMessageBytes: 1 << 20 };

test('prepareSpoolDir: creates 0700, tightens the mode, removes only stale spool files', async () => {
  const base = tempDir();
  try {
    const dir = path.join(base, 'a', 'spool');
    assert.equal(await prepareSpoolDir(dir), 0);
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    fs.chmodSync(dir, 0o755);
    fs.writeFileSync(path.join(dir, 'msg-0123456789abcdef01234567'), 'old');
    fs.writeFileSync(path.join(dir, 'keep-me'), 'not ours');
    assert.equal(await prepareSpoolDir(dir), 1);
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    assert.deepEqual(fs.readdirSync(dir), ['keep-me']);
    const notDir = path.join(base, 'file');
    fs.writeFileSync(notDir, '');
    await assert.rejects(prepareSpoolDir(notDir));
    const link = path.join(base, 'link');
    fs.symlinkSync(dir, link);
    await assert.rejects(prepareSpoolDir(link), SpoolDirError);
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('prepareSpoolDir refuses a directory owned by someone else', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root to chown');
  const base = tempDir();
  try {
    const dir = path.join(base, 'spool');
    fs.mkdirSync(dir, { mode: 0o700 });
    fs.chownSync(dir, 65534, 65534);
    await assert.rejects(prepareSpoolDir(dir), /owned by uid 65534/);
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('a spool file: 0600, message form, byte counts, idempotent removal', async () => {
  const dir = tempDir();
  try {
    const { spool } = await Spool.open(dir);
    const f = await spool.create('<s@x.test>', LF);
    assert.match(path.basename(f.path), /^msg-[0-9a-f]{24}$/);
    assert.equal(fs.statSync(f.path).mode & 0o777, 0o600);
    await f.header('Subject', Buffer.from('hi'));
    await f.header('Received', Buffer.from('from a\n\tby b'));
    await f.write(Buffer.from('body 1\r'));
    await f.write(Buffer.from('\nbody 2\r\n'));
    await f.close();
    const want = 'Return-Path: <s@x.test>\nSubject: hi\nReceived: from a\n\tby b\n\nbody 1\nbody 2\n';
    assert.equal(fs.readFileSync(f.path, 'latin1'), want);
    assert.equal(f.bytesWritten, want.length);
    // As sent: "Subject: hi\r\n" 13 + "Received: from a\n\tby b\r\n" 24 + CRLF 2 + body 16.
    assert.equal(f.messageBytes, 13 + 24 + 2 + 16);
    assert.equal(f.oversize, false);
    assert.equal(spool.openFiles, 1);
    await Promise.all([f.remove(), f.remove()]);
    await f.remove();
    assert.equal(fs.existsSync(f.path), false);
    assert.equal(spool.openFiles, 0);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('crlf line endings and SMFIP_HDR_LEADSPC', async () => {
  const dir = tempDir();
  try {
    const { spool } = await Spool.open(dir);
    const f = await spool.create('', { lineEndings: 'crlf', headerLeadingSpace: true, maxMessageBytes: 1000 });
    await f.header('Subject', ' spaced');
    await f.header('X-Tight', 'x');
    await f.endHeaders();
    await f.write(Buffer.from('a\r\nb'));
    await f.close();
    assert.equal(fs.readFileSync(f.path, 'latin1'), 'Return-Path: <>\r\nSubject: spaced\r\nX-Tight:x\r\n\r\na\r\nb');
    await f.remove();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('oversize: flagged once past the maximum, nothing more written', async () => {
  const dir = tempDir();
  try {
    const { spool } = await Spool.open(dir);
    const f = await spool.create('s@x', { ...LF, maxMessageBytes: 100 });
    await f.header('Subject', 'x');
    await f.write(Buffer.alloc(80, 0x61));
    assert.equal(f.oversize, false);
    const before = f.bytesWritten;
    await f.write(Buffer.alloc(80, 0x5a)); // Z
    assert.equal(f.oversize, true);
    assert.equal(f.bytesWritten, before);
    await f.write(Buffer.alloc(10, 0x63));
    await f.close();
    assert.equal(fs.readFileSync(f.path, 'latin1').includes('Z'), false);
    await f.remove();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('backpressure: a large body streams through bounded writes', async () => {
  const dir = tempDir();
  try {
    const { spool } = await Spool.open(dir);
    const f = await spool.create('s@x', { ...LF, maxMessageBytes: 64 << 20 });
    await f.endHeaders();
    const chunk = Buffer.from('0123456789abcde\r\n'.repeat(4096)); // 68 KiB, over the stream's high-water mark
    for (let i = 0; i < 200; i++) await f.write(chunk);
    await f.close();
    const size = fs.statSync(f.path).size;
    assert.equal(size, f.bytesWritten);
    assert.equal(size, 'Return-Path: <s@x>\n\n'.length + 200 * 4096 * 16);
    await f.remove();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('removeAll removes every open or closed file; removed files leave the registry', async () => {
  const dir = tempDir();
  try {
    const { spool } = await Spool.open(dir);
    const a = await spool.create('a@x', LF);
    const b = await spool.create('b@x', LF);
    await b.write(Buffer.from('partial'));
    await a.close();
    assert.equal(spool.openFiles, 2);
    await spool.removeAll();
    assert.equal(spool.openFiles, 0);
    assert.deepEqual(fs.readdirSync(dir), []);
    await assert.rejects(b.write(Buffer.from('more')), /removed/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('Spool.open removes stale files of an earlier run', async () => {
  const dir = tempDir();
  try {
    fs.writeFileSync(path.join(dir, 'msg-aaaaaaaaaaaaaaaaaaaaaaaa'), 'x');
    const { staleRemoved } = await Spool.open(dir);
    assert.equal(staleRemoved, 1);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('spoolRawMessage gives the same bytes as the milter path', async () => {
  const dir = tempDir();
  try {
    const { spool } = await Spool.open(dir);
    const raw =
      'From someone@x Wed Nov 25 10:00:00 2026\n' +
      'Return-Path: <bounce@list.test>\n' +
      'Received: from a\n\tby b\n' +
      'Subject: hello\n' +
      'X-Multi:  two spaces\n' +
      '\n' +
      'body line\n\nlast\n';
    for (const lineEndings of ['lf', 'crlf'] as const) {
      // Fed in small pieces, with CRLF input, to cross every boundary.
      const crlf = raw.replace(/\n/g, '\r\n');
      const pieces = crlf.match(/[\s\S]{1,7}/g) ?? [];
      const { file, sender } = await spoolRawMessage(spool, Readable.from(pieces.map((p) => Buffer.from(p))), {
        lineEndings,
        maxMessageBytes: 1 << 20,
      });
      assert.equal(sender, 'bounce@list.test', 'sender taken from the Return-Path');
      // The milter path: header packets without the leading space (no LEADSPC), body CRLF.
      const m = await spool.create('<bounce@list.test>', { lineEndings, headerLeadingSpace: false, maxMessageBytes: 1 << 20 });
      await m.header('Received', 'from a\n\tby b');
      await m.header('Subject', 'hello');
      await m.header('X-Multi', ' two spaces');
      await m.endHeaders();
      await m.write(Buffer.from('body line\r\n\r\nlast\r\n'));
      await m.close();
      assert.equal(fs.readFileSync(file.path, 'latin1'), fs.readFileSync(m.path, 'latin1'), lineEndings);
      await file.remove();
      await m.remove();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('spoolRawMessage: explicit sender, header-only message, non-header line starts the body', async () => {
  const dir = tempDir();
  try {
    const { spool } = await Spool.open(dir);
    const a = await spoolRawMessage(spool, Readable.from([Buffer.from('Subject: x')]), { sender: 'me@h', lineEndings: 'lf', maxMessageBytes: 1000 });
    assert.equal(fs.readFileSync(a.file.path, 'latin1'), 'Return-Path: <me@h>\nSubject: x\n\n');
    const b = await spoolRawMessage(spool, Readable.from([Buffer.from('Subject: x\nthis is body\n')]), { lineEndings: 'lf', maxMessageBytes: 1000 });
    assert.equal(b.sender, '');
    assert.equal(fs.readFileSync(b.file.path, 'latin1'), 'Return-Path: <>\nSubject: x\n\nthis is body\n');
    await spool.removeAll();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('remove() during close() (shutdown) is not an error', async () => {
  const dir = tempDir();
  try {
    const { spool } = await Spool.open(dir);
    const f = await spool.create('s@x', LF);
    await f.write(Buffer.alloc(256 * 1024, 0x61));
    const closing = f.close();
    await spool.removeAll();
    await closing;
    assert.deepEqual(fs.readdirSync(dir), []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a write error (disk full) rejects the write with PUM_ERR_SPOOL_WRITE (451 4.3.1)', async (t) => {
  if (!fs.existsSync('/dev/full')) return t.skip('no /dev/full');
  const dir = tempDir();
  try {
    // A SpoolFile over /dev/full, where every write fails with ENOSPC.
    const { SpoolFile } = await import('../../../src/spool/file.js');
    const handle = await (await import('node:fs/promises')).open('/dev/full', 'w');
    const full = new SpoolFile('/dev/full-not-removed', handle, LF);
    await assert.rejects(
      (async () => {
        for (let i = 0; i < 100; i++) await full.write(Buffer.alloc(64 * 1024, 0x61));
        await full.close();
      })(),
      (err: unknown) => err instanceof PumError && err.code === 'PUM_ERR_SPOOL_WRITE' && /ENOSPC/.test(err.message),
    );
    await full.remove(); // unlinking a path that does not exist is fine
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a spool file that cannot be created is PUM_ERR_SPOOL_WRITE, naming the file and the errno', async () => {
  const dir = tempDir();
  const { spool } = await Spool.open(dir);
  fs.rmSync(dir, { recursive: true, force: true });
  await assert.rejects(
    spool.create('s@x', LF),
    (err: unknown) => err instanceof PumError && err.code === 'PUM_ERR_SPOOL_WRITE' && /msg-[0-9a-f]{24}: ENOENT/.test(err.message),
  );
  assert.equal(spool.openFiles, 0);
});
