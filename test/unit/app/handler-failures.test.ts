// PerUserHandler's guards: a failure of ours in any step of an open message
// (spool create, a write, anything unexpected) is answered by the application
// itself with the 451 4.3.x of its code, one message line, the counters, and
// the spool file removed; a failure while classifying a recipient tempfails
// that recipient at RCPT. The milter engine's generic answer is never needed.
// The same through a real serve: test/component/app/failures.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AppContext } from '../../../src/app/context.js';
import { PerUserHandler } from '../../../src/app/handler.js';
import { loadConfig } from '../../../src/config/load.js';
import { errorReply, PumError, type InternalReason } from '../../../src/errors.js';
import type { ConnectionContext } from '../../../src/milter/application.js';
import type { Recipient } from '../../../src/recipients/index.js';
import type { SpoolFile } from '../../../src/spool/index.js';

type Line = { level: string; obj: Record<string, unknown> };

interface Fake {
  app: AppContext;
  conn: ConnectionContext;
  lines: Line[];
  internal: InternalReason[];
  actions: string[];
  durations: string[];
  removed: string[];
}

const alice: Recipient = {
  kind: 'local',
  user: { name: 'alice', uid: 5001, gid: 5001, groups: [5001], home: '/nonexistent/alice', shell: '/bin/sh' },
  rcpt: '<alice@x.test>',
  address: 'alice@x.test',
  localPart: 'alice',
  extension: '',
  domain: 'x.test',
};

function fakeFile(removed: string[], over: Partial<Record<'header' | 'endHeaders' | 'write' | 'close', () => Promise<void>>> = {}): SpoolFile {
  const ok = () => Promise.resolve();
  return {
    path: '/spool/msg-1',
    oversize: false,
    bytesWritten: 10,
    header: over.header ?? ok,
    endHeaders: over.endHeaders ?? ok,
    write: over.write ?? ok,
    close: over.close ?? ok,
    remove: () => {
      removed.push('/spool/msg-1');
      return Promise.resolve();
    },
  } as unknown as SpoolFile;
}

function fake(opts: { classify?: () => Promise<Recipient>; create?: (removed: string[]) => Promise<SpoolFile> }): Fake {
  const lines: Line[] = [];
  const at = (level: string) => (obj: object) => void lines.push({ level, obj: obj as Record<string, unknown> });
  const log = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  const f: Fake = { lines, internal: [], actions: [], durations: [], removed: [] } as unknown as Fake;
  f.app = {
    config: () => loadConfig({ env: {} }).config,
    classify: opts.classify ?? (() => Promise.resolve(alice)),
    hasFilter: (_user, program = 'filter') => Promise.resolve(program === 'filter'),
    spool: { create: () => (opts.create ?? (() => Promise.resolve(fakeFile(f.removed))))(f.removed) } as unknown as AppContext['spool'],
    runner: { runMessage: () => [] },
    metrics: {
      message: (a) => f.actions.push(a),
      messageAnswered: (a) => f.durations.push(a),
      internalError: (r) => f.internal.push(r),
      filterRun() {},
      recipient() {},
      skip() {},
      rcptFilterRun() {},
      spoolBytes() {},
    },
    log,
  };
  f.conn = {
    id: 1,
    peer: 'test',
    macros: { get: (n: string) => (n === 'i' ? 'QH1' : undefined), snapshot: () => ({}) },
    negotiated: { version: 6, actions: 0, protocol: 0 },
    log,
    signal: new AbortController().signal,
  } as unknown as ConnectionContext;
  return f;
}

async function openMessage(h: PerUserHandler): Promise<void> {
  assert.equal(await h.mail([Buffer.from('<s@y.test>')]), 'continue');
  assert.equal(await h.rcpt([Buffer.from('<alice@x.test>')]), 'continue');
}

function messageLines(f: Fake): Array<Record<string, unknown>> {
  return f.lines.filter((l) => l.obj.event === 'message').map((l) => l.obj);
}

describe('PerUserHandler: failures of ours inside a step', () => {
  it('the spool file cannot be created at DATA: 451 4.3.1, reason spool, one message line, counted once', async () => {
    const f = fake({ create: () => Promise.reject(new PumError('PUM_ERR_SPOOL_WRITE', 'cannot write spool file /spool/msg-1: ENOSPC')) });
    const h = new PerUserHandler(f.app, f.conn);
    await openMessage(h);
    assert.deepEqual(await h.data(), errorReply('PUM_ERR_SPOOL_WRITE'));
    assert.deepEqual(f.internal, ['spool']);
    assert.deepEqual(f.actions, ['tempfail']);
    assert.deepEqual(f.durations, ['tempfail']);
    const [line, ...more] = messageLines(f);
    assert.equal(more.length, 0);
    assert.equal(line?.code, 'PUM_ERR_SPOOL_WRITE');
    assert.equal(line?.queueId, 'QH1');
    // The MTA sends nothing more for this message; if it did, nothing is answered or counted twice.
    assert.equal(await h.eom(), 'continue');
    assert.deepEqual(f.actions, ['tempfail']);
  });

  it('a body write that fails ends the message at BODY and removes its spool file', async () => {
    const f = fake({ create: (removed) => Promise.resolve(fakeFile(removed, { write: () => Promise.reject(new PumError('PUM_ERR_SPOOL_WRITE', 'ENOSPC')) })) });
    const h = new PerUserHandler(f.app, f.conn);
    await openMessage(h);
    assert.equal(await h.data(), 'continue');
    assert.equal(await h.header('Subject', Buffer.from(' x')), 'continue');
    assert.equal(await h.eoh(), 'continue');
    assert.deepEqual(await h.body(Buffer.from('body\r\n')), errorReply('PUM_ERR_SPOOL_WRITE'));
    assert.deepEqual(f.removed, ['/spool/msg-1']);
    assert.deepEqual(f.internal, ['spool']);
    assert.equal(messageLines(f).length, 1);
  });

  it('anything unexpected (not a PumError) is PUM_ERR_INTERNAL: 451 4.3.0, reason other, and its stack is logged', async () => {
    const f = fake({ create: (removed) => Promise.resolve(fakeFile(removed, { close: () => Promise.reject(new TypeError('bug')) })) });
    const h = new PerUserHandler(f.app, f.conn);
    await openMessage(h);
    assert.equal(await h.data(), 'continue');
    assert.deepEqual(await h.eom(), errorReply('PUM_ERR_INTERNAL'));
    assert.deepEqual(f.internal, ['other']);
    assert.equal(messageLines(f)[0]?.code, 'PUM_ERR_INTERNAL');
    assert.ok(f.lines.some((l) => (l.obj.err as Error | undefined)?.message === 'bug'));
    assert.deepEqual(f.removed, ['/spool/msg-1']);
  });

  it('classifying a recipient fails: that RCPT gets 451 4.3.0 by its code with a recipient line; the transaction goes on', async () => {
    let calls = 0;
    const f = fake({
      classify: () => (calls++ === 0 ? Promise.reject(new PumError('PUM_ERR_USER_LOOKUP', 'getent passwd bob failed (exit 1)')) : Promise.resolve(alice)),
    });
    const h = new PerUserHandler(f.app, f.conn);
    assert.equal(await h.mail([Buffer.from('<s@y.test>')]), 'continue');
    assert.deepEqual(await h.rcpt([Buffer.from('<bob@x.test>')]), errorReply('PUM_ERR_USER_LOOKUP'));
    assert.equal(await h.rcpt([Buffer.from('<alice@x.test>')]), 'continue');
    assert.deepEqual(f.internal, ['lookup']);
    const r = f.lines.find((l) => l.obj.event === 'recipient')?.obj;
    assert.equal(r?.rcpt, '<bob@x.test>');
    assert.equal(r?.code, 'PUM_ERR_USER_LOOKUP');
    assert.deepEqual(f.actions, [], 'no message answered');
  });
});
