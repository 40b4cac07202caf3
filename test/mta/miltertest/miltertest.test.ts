// Conformance against Debian's real `miltertest` (OpenDKIM's MTA simulator,
// built on the same protocol understanding as libmilter). Each Lua script
// in this directory drives our server, which runs a small demo application
// defined below (not the per-user logic). miltertest reads each reply
// header with a single read(), so these runs also check one-write-per-packet.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { MilterApplication, MilterHandler } from '../../../src/milter/application.js';
import { SMFIF_ADDHDRS, SMFIF_DELRCPT, SMFIF_SETSYMLIST } from '../../../src/milter/constants.js';
import { MilterServer } from '../../../src/server/server.js';
import { lacksCommand } from '../../support/require.js';

/** The Lua scripts stay in the source tree; this file runs from dist/test/mta/miltertest/. */
const scripts = fileURLToPath(new URL('../../../../test/mta/miltertest/', import.meta.url));

/**
 * Demo: MAIL from "tempfail…" -> 451 4.7.1; RCPT "busy…" -> 452 4.5.3;
 * RCPT "crash…" -> the handler throws (engine answers 451 4.3.0); Subject
 * containing "reject" -> 550 5.7.1 at EOM; otherwise EOM adds X-Demo-Body and
 * X-Demo-Macros headers and deletes every recipient containing "drop".
 */
function demo(): { application: MilterApplication; seen: string[] } {
  const seen: string[] = [];
  const application: MilterApplication = {
    declaration: {
      actions: SMFIF_ADDHDRS | SMFIF_DELRCPT,
      optionalActions: SMFIF_SETSYMLIST,
      skipSteps: ['unknown'],
      macros: { connect: ['j', '{daemon_name}'], helo: ['{tls_version}'], mail: ['{mail_addr}'], rcpt: ['{rcpt_mailer}', '{rcpt_addr}'], data: ['i'], eom: ['i'] },
    },
    createHandler({ macros }) {
      let rcpts: Buffer[] = [];
      let bodyBytes = 0;
      let chunks = 0;
      let subject = '';
      const reset = (): void => {
        rcpts = [];
        bodyBytes = 0;
        chunks = 0;
        subject = '';
      };
      const handler: MilterHandler = {
        connect: (host) => void seen.push(`connect ${host} j=${macros.get('j') ?? ''}`),
        mail: (args) => {
          reset();
          if (args[0]?.toString('latin1').includes('tempfail')) return { code: '451', text: '4.7.1 Sender deferred by the demo' };
          return 'continue';
        },
        rcpt: (args) => {
          const rcpt = args[0] as Buffer;
          if (rcpt.includes('busy')) return { code: '452', text: '4.5.3 Try again in a separate transaction' };
          if (rcpt.includes('crash')) throw new Error('demo handler crash');
          rcpts.push(rcpt);
          return 'continue';
        },
        header: (name, value) => {
          if (name.toLowerCase() === 'subject') subject = value.toString('latin1');
        },
        body: async (chunk) => {
          await new Promise((r) => setImmediate(r)); // an async handler, for once
          bodyBytes += chunk.length;
          chunks++;
        },
        eom: () => {
          seen.push(`eom ${bodyBytes}`);
          if (subject.includes('reject')) return { code: '550', text: '5.7.1 Rejected by the demo, 100% sure' };
          const line = `i=${macros.get('i') ?? ''} j=${macros.get('j') ?? ''} tls=${macros.get('{tls_version}') ?? ''} mail=${macros.get('mail_addr') ?? ''} rcpt=${macros.get('{rcpt_addr}') ?? ''}`;
          return {
            reply: 'continue',
            modifications: [
              { kind: 'addHeader', name: 'X-Demo-Body', value: `${bodyBytes} bytes in ${chunks} chunks` },
              { kind: 'addHeader', name: 'X-Demo-Macros', value: line },
              ...rcpts.filter((r) => r.toString('latin1').toLowerCase().includes('drop')).map((r) => ({ kind: 'deleteRecipient' as const, recipient: r })),
            ],
          };
        },
        abort: () => {
          seen.push('abort');
          reset();
        },
      };
      return handler;
    },
  };
  return { application, seen };
}

function runScript(script: string, port: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('miltertest', ['-D', `port=${port}`, '-s', `${scripts}${script}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('miltertest conformance', () => {
  let server: MilterServer | undefined;
  let app: ReturnType<typeof demo>;
  let port = 0;

  before(async () => {
    app = demo();
    server = await MilterServer.start({ listen: 'inet:0@127.0.0.1', application: app.application });
    port = Number(/inet:(\d+)@/.exec(server.address)?.[1]);
  });
  after(async () => {
    await server?.close({ graceMs: 500 });
  });

  for (const script of ['negotiate.lua', 'transaction.lua', 'two-transactions.lua', 'replies.lua']) {
    it(script, async (t) => {
      if (lacksCommand(t, 'miltertest', 'miltertest')) return;
      const { code, output } = await runScript(script, port);
      assert.equal(code, 0, `miltertest ${script} exited ${code}:\n${output}`);
      assert.match(output, /PASS/);
    });
  }

  it('the demo saw what the scripts sent (cross-check from the milter side)', (t) => {
    if (lacksCommand(t, 'miltertest', 'miltertest')) return;
    assert.ok(app.seen.includes('connect client.example.net j=mx.example.org'), app.seen.join('\n'));
    assert.ok(app.seen.includes('eom 440'));
    assert.ok(app.seen.includes('abort'));
  });
});
