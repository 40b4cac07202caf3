// The in-repo client against a live server, over inet and unix sockets.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MilterClient } from '../../../src/milter/client.js';
import { SMFIF_ADDHDRS, SMFIF_DELRCPT, SMFIF_SETSYMLIST, SMFIP_NOUNKNOWN, SMFIP_SKIP } from '../../../src/milter/constants.js';
import type { MilterServer } from '../../../src/server/server.js';
import { MilterServer as Server } from '../../../src/server/server.js';
import { countingEvents, demoApplication, memoryLogger, startInet, tempDir, waitFor } from './helpers.js';

const text = (reply: unknown): string => JSON.stringify(reply, (_k, v: unknown) => (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' ? Buffer.from((v as { data: number[] }).data).toString('latin1') : v));

async function fullTransaction(client: MilterClient, rcpts: string[], bodyChunks: string[]): Promise<Awaited<ReturnType<MilterClient['eom']>>> {
  client.macro('M', { i: 'Q1', '{mail_addr}': 's@example.net' });
  assert.equal((await client.mail('<s@example.net>', 'SIZE=10'))?.type, 'continue');
  for (const r of rcpts) {
    client.macro('R', { '{rcpt_mailer}': 'local', '{rcpt_addr}': r.replace(/[<>]/g, '') });
    assert.equal((await client.rcpt(r))?.type, 'continue');
  }
  client.macro('T', { i: 'QID42' });
  assert.equal((await client.data())?.type, 'continue');
  assert.equal((await client.header('Subject', 'hello'))?.type, 'continue');
  assert.equal((await client.header('X-Folded', 'a\n\tb'))?.type, 'continue');
  assert.equal((await client.eoh())?.type, 'continue');
  for (const chunk of bodyChunks) assert.equal((await client.body(chunk))?.type, 'continue');
  client.macro('E', { i: 'QID42' });
  return client.eom();
}

for (const transport of ['inet', 'unix'] as const) {
  describe(`client against server over ${transport}`, () => {
    let server: MilterServer;
    let demo: ReturnType<typeof demoApplication>;
    let tmp: ReturnType<typeof tempDir>;
    const events = countingEvents();

    before(async () => {
      demo = demoApplication();
      tmp = tempDir();
      const options = { application: demo.application, events, logger: memoryLogger() };
      server = transport === 'inet' ? await startInet(options) : await Server.start({ ...options, listen: `unix:${join(tmp.dir, 'm.sock')}` });
    });
    after(async () => {
      await server.close({ graceMs: 500 });
      tmp.cleanup();
    });

    it('negotiates like libmilter: needed actions, SETSYMLIST lists, NOUNKNOWN + SKIP', async () => {
      const client = await MilterClient.connect(server.address);
      const reply = await client.negotiate();
      assert.equal(reply.version, 6);
      assert.equal(reply.actions & (SMFIF_ADDHDRS | SMFIF_DELRCPT | SMFIF_SETSYMLIST), SMFIF_ADDHDRS | SMFIF_DELRCPT | SMFIF_SETSYMLIST);
      assert.equal(reply.protocol, SMFIP_NOUNKNOWN | SMFIP_SKIP);
      assert.deepEqual(reply.macroLists.find((l) => l.stage === 3), { stage: 3, names: 'i {rcpt_mailer} {rcpt_addr} {rcpt_host}' });
      assert.equal(await client.unknown('FOO'), null, 'the client does not send a step negotiated away');
      await client.quit();
    });

    it('runs a whole transaction: macros per stage, body in many chunks, header + DELRCPT at EOM', async () => {
      const client = await MilterClient.connect(server.address);
      await client.negotiate();
      client.macro('C', { j: 'mx.example.org', '{daemon_name}': 'mx' });
      assert.equal((await client.connect('client.example.net', 'inet', 4711, '192.0.2.1'))?.type, 'continue');
      client.macro('H', {});
      assert.equal((await client.helo('client.example.net'))?.type, 'continue');
      const chunks = Array.from({ length: 50 }, (_, i) => `line ${i}\r\n`);
      const eom = await fullTransaction(client, ['<alice@example.org>', '<drop.Me@Example.ORG>'], chunks);
      assert.equal(eom.final.type, 'continue');
      assert.equal(
        text(eom.modifications),
        text([
          { type: 'addheader', name: 'X-Demo', value: Buffer.from(`${chunks.join('').length} bytes`) },
          { type: 'delrcpt', recipient: Buffer.from('<drop.Me@Example.ORG>') },
        ]),
      );
      await client.quit();

      const mine = demo.calls.filter((c) => c.conn === demo.calls.find((x) => x.call === 'connect' && x.args[0] === 'client.example.net')?.conn);
      const connect = mine.find((c) => c.call === 'connect');
      assert.deepEqual(connect?.args, ['client.example.net', 'inet', '4711', '192.0.2.1']);
      assert.equal(connect?.macros['j'], 'mx.example.org');
      const mail = mine.find((c) => c.call === 'mail');
      assert.deepEqual(mail?.args, ['<s@example.net> SIZE=10'], 'argv[0] exactly as sent, brackets included');
      const rcpts = mine.filter((c) => c.call === 'rcpt');
      assert.equal(rcpts[1]?.macros['{rcpt_addr}'], 'drop.Me@Example.ORG', 'RCPT macros of the latest recipient');
      const header = mine.find((c) => c.call === 'header' && c.args[0] === 'X-Folded');
      assert.equal(header?.args[1], 'a\n\tb');
      const eomCall = mine.find((c) => c.call === 'eom');
      assert.equal(eomCall?.macros['i'], 'QID42');
      assert.equal(eomCall?.macros['{mail_addr}'], 's@example.net', 'MAIL macros still visible at EOM');
      assert.equal(mine.filter((c) => c.call === 'body').length, 50);
      await waitFor(() => mine.length > 0 && demo.calls.some((c) => c.conn === connect?.conn && c.call === 'close'), 'close() call');
    });

    it('serves two transactions on one connection with an ABORT between them', async () => {
      const client = await MilterClient.connect(server.address);
      await client.negotiate();
      await client.connect('two.example', 'inet', 1, '192.0.2.2');
      await client.helo('two.example');
      assert.equal((await client.mail('<a@x>'))?.type, 'continue');
      await client.rcpt('<b@x>');
      client.abort();
      const eom = await fullTransaction(client, ['<c@x>'], ['x\r\n']);
      assert.equal(eom.final.type, 'continue');
      client.abort(); // Postfix: one ABORT after every transaction …
      client.abort(); // … and one more at the end
      await client.quit();
      const conn = demo.calls.find((c) => c.call === 'connect' && c.args[0] === 'two.example')?.conn;
      await waitFor(() => demo.calls.some((c) => c.conn === conn && c.call === 'close'), 'close');
      const sequence = demo.calls.filter((c) => c.conn === conn).map((c) => c.call);
      assert.deepEqual(sequence, ['connect', 'helo', 'mail', 'rcpt', 'abort', 'mail', 'rcpt', 'data', 'header', 'header', 'eoh', 'body', 'eom', 'close']);
    });

    it('answers a custom reply as REPLYCODE with % escaped', async () => {
      const client = await MilterClient.connect(server.address);
      await client.negotiate();
      await client.connect('r.example', 'inet', 1, '192.0.2.3');
      const eom = await fullTransaction(client, ['<reject@x>'], ['x\r\n']);
      assert.deepEqual(eom.final, { type: 'replycode', text: '550 5.7.1 Rejected by demo, 100%% sure' });
      assert.deepEqual(eom.modifications, []);
      await client.quit();
    });

    it('supports QUIT_NC: a new session on the same connection without OPTNEG', async () => {
      const client = await MilterClient.connect(server.address);
      await client.negotiate();
      await client.connect('first.example', 'inet', 1, '192.0.2.4');
      client.quitNc();
      assert.equal((await client.connect('second.example', 'inet', 2, '192.0.2.5'))?.type, 'continue');
      assert.equal((await client.helo('second.example'))?.type, 'continue');
      await client.quit();
    });
  });
}

describe('application errors', () => {
  it('answers TEMPFAIL 451 4.3.0 when a handler throws or rejects, and the session goes on', async () => {
    const events = countingEvents();
    const logger = memoryLogger();
    const demo = demoApplication({
      rcpt: (_ctx, args: readonly Buffer[]) => {
        if (args[0]?.includes('sync')) throw new Error('boom');
        if (args[0]?.includes('async')) return Promise.reject(new Error('later boom'));
        return 'continue';
      },
      eom: () => ({ reply: { code: '250', text: 'not allowed' } }),
    });
    const server = await startInet({ application: demo.application, events, logger });
    try {
      const client = await MilterClient.connect(server.address);
      await client.negotiate();
      await client.connect('e.example', 'inet', 1, '192.0.2.9');
      await client.mail('<s@x>');
      const sync = await client.rcpt('<sync@x>');
      assert.equal(sync?.type, 'replycode');
      assert.match((sync as { text: string }).text, /^451 4\.3\.0 /);
      const asyncReply = await client.rcpt('<async@x>');
      assert.match((asyncReply as { text: string }).text, /^451 4\.3\.0 /);
      assert.equal((await client.rcpt('<fine@x>'))?.type, 'continue');
      const eom = await client.eom();
      assert.match((eom.final as { text: string }).text, /^451 4\.3\.0 /, 'an invalid application reply is our fault: tempfail');
      await client.quit();
      assert.equal(events.counts['handlerError'], 3);
      assert.ok(logger.lines.some((l) => l.level === 'error' && /tempfail/.test(l.msg ?? '')));
    } finally {
      await server.close({ graceMs: 200 });
    }
  });

  it('never sends half an EOM answer when a modification was not negotiated', async () => {
    const demo = demoApplication({
      eom: () => ({ reply: 'continue', modifications: [{ kind: 'addHeader', name: 'X-A', value: 'a' }, { kind: 'replaceBody', body: Buffer.from('new') }] }),
    });
    const server = await startInet({ application: demo.application });
    try {
      const client = await MilterClient.connect(server.address);
      await client.negotiate();
      await client.connect('m.example', 'inet', 1, '192.0.2.9');
      await client.mail('<s@x>');
      await client.rcpt('<r@x>');
      const eom = await client.eom();
      assert.deepEqual(eom.modifications, []);
      assert.equal(eom.final.type, 'replycode');
      await client.quit();
    } finally {
      await server.close({ graceMs: 200 });
    }
  });
});

describe('inet6', () => {
  it('listens and serves on inet6:PORT@::1 when the host has IPv6 loopback', async (t) => {
    const demo = demoApplication();
    let server: MilterServer;
    try {
      server = await Server.start({ listen: 'inet6:0@::1', application: demo.application });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EADDRNOTAVAIL' || (error as NodeJS.ErrnoException).code === 'EAFNOSUPPORT') {
        t.skip('no IPv6 loopback on this host');
        return;
      }
      throw error;
    }
    try {
      assert.match(server.address, /^inet6:\d+@::1$/);
      const client = await MilterClient.connect(server.address);
      await client.negotiate();
      assert.equal((await client.connect('v6.example', 'inet6', 1, '2001:db8::1'))?.type, 'continue');
      await client.quit();
    } finally {
      await server.close({ graceMs: 200 });
    }
  });
});
