// Shared pieces for the server component tests: a small recording demo
// application (not per-user logic), server start-up on a free port or a
// temporary unix socket, and polling.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type {
  ConnectionContext,
  EomResult,
  MilterApplication,
  MilterDeclaration,
  MilterEvents,
  MilterHandler,
  MilterLogger,
  StepResult,
} from '../../../src/milter/application.js';
import { SMFIF_ADDHDRS, SMFIF_CHGHDRS, SMFIF_DELRCPT, SMFIF_QUARANTINE, SMFIF_SETSYMLIST } from '../../../src/milter/constants.js';
import { MilterServer, type MilterServerOptions } from '../../../src/server/server.js';

export const demoDeclaration: MilterDeclaration = {
  actions: SMFIF_DELRCPT | SMFIF_ADDHDRS,
  optionalActions: SMFIF_SETSYMLIST | SMFIF_CHGHDRS | SMFIF_QUARANTINE,
  skipSteps: ['unknown'],
  macros: {
    connect: ['j', '{daemon_name}', '{client_addr}', '{client_name}', '_'],
    helo: ['{tls_version}'],
    mail: ['i', '{mail_addr}', '{auth_type}', '{auth_authen}'],
    rcpt: ['i', '{rcpt_mailer}', '{rcpt_addr}', '{rcpt_host}'],
    data: ['i'],
    eoh: ['i'],
    eom: ['i'],
  },
};

/** One line per handler call, with the macros the handler could see: easy to assert on. */
export interface Recorded {
  readonly conn: number;
  readonly call: string;
  readonly args: string[];
  readonly macros: Record<string, string>;
}

/**
 * A demo application: records every call, answers 'continue', and at end of
 * message adds an X-Demo header and deletes recipients whose address
 * contains "drop". A recipient containing "reject" makes eom reject with a
 * custom reply. `hooks` replace single methods for a test.
 */
export function demoApplication(hooks: Partial<Record<keyof MilterHandler, (ctx: ConnectionContext, ...args: never[]) => unknown>> = {}, declaration = demoDeclaration) {
  const calls: Recorded[] = [];
  let active = 0;
  let maxActive = 0;
  const contexts: ConnectionContext[] = [];
  const application: MilterApplication = {
    declaration,
    createHandler(ctx) {
      contexts.push(ctx);
      const rcpts: Buffer[] = [];
      let bodyBytes = 0;
      const record = (call: string, args: unknown[]): void => {
        calls.push({
          conn: ctx.id,
          call,
          args: args.map((a) => (Buffer.isBuffer(a) ? a.toString('latin1') : Array.isArray(a) ? a.map((x: Buffer) => x.toString('latin1')).join(' ') : String(a))),
          macros: ctx.macros.snapshot(),
        });
      };
      const wrap =
        (name: keyof MilterHandler, fallback: (...args: never[]) => unknown) =>
        async (...args: never[]): Promise<unknown> => {
          active++;
          maxActive = Math.max(maxActive, active);
          try {
            record(name, args);
            const hook = hooks[name];
            return hook ? await hook(ctx, ...args) : await fallback(...args);
          } finally {
            active--;
          }
        };
      const handler: MilterHandler = {
        connect: wrap('connect', () => undefined) as MilterHandler['connect'],
        helo: wrap('helo', () => undefined) as MilterHandler['helo'],
        mail: wrap('mail', () => {
          rcpts.length = 0;
          bodyBytes = 0;
        }) as MilterHandler['mail'],
        rcpt: wrap('rcpt', (args: readonly Buffer[]) => {
          rcpts.push(args[0] as Buffer);
          return 'continue';
        }) as MilterHandler['rcpt'],
        data: wrap('data', () => undefined) as MilterHandler['data'],
        header: wrap('header', () => undefined) as MilterHandler['header'],
        eoh: wrap('eoh', () => undefined) as MilterHandler['eoh'],
        body: wrap('body', (chunk: Buffer) => {
          bodyBytes += chunk.length;
        }) as MilterHandler['body'],
        eom: wrap('eom', (): EomResult | StepResult => {
          if (rcpts.some((r) => r.includes('reject'))) return { code: '550', text: '5.7.1 Rejected by demo, 100% sure' };
          return {
            reply: 'continue',
            modifications: [
              { kind: 'addHeader', name: 'X-Demo', value: `${bodyBytes} bytes` },
              ...rcpts.filter((r) => r.includes('drop')).map((r) => ({ kind: 'deleteRecipient' as const, recipient: r })),
            ],
          };
        }) as MilterHandler['eom'],
        abort: wrap('abort', () => undefined) as MilterHandler['abort'],
        close: wrap('close', () => undefined) as MilterHandler['close'],
      };
      return handler;
    },
  };
  return {
    application,
    calls,
    contexts,
    get maxActive() {
      return maxActive;
    },
  };
}

/** A logger that keeps lines for assertions (and prints nothing). */
export function memoryLogger(): MilterLogger & { lines: Array<{ level: string; obj: object; msg?: string }> } {
  const lines: Array<{ level: string; obj: object; msg?: string }> = [];
  const at = (level: string) => (obj: object, msg?: string) => {
    lines.push({ level, obj, msg });
  };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** Event counts, as a metrics module would keep them. */
export function countingEvents(): MilterEvents & { counts: Record<string, number>; reasons: string[] } {
  const counts: Record<string, number> = {};
  const reasons: string[] = [];
  const inc = (k: string): void => {
    counts[k] = (counts[k] ?? 0) + 1;
  };
  return {
    counts,
    reasons,
    connectionOpened: () => inc('opened'),
    connectionClosed: (i) => inc(`closed:${i.reason}`),
    protocolError: (i) => {
      inc('protocolError');
      reasons.push(i.reason);
    },
    handlerError: () => inc('handlerError'),
    progressSent: () => inc('progress'),
  };
}

export function startInet(options: Omit<MilterServerOptions, 'listen'>): Promise<MilterServer> {
  return MilterServer.start({ listen: 'inet:0@127.0.0.1', ...options });
}

/** A private directory for unix sockets; removed by the returned cleanup. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'pum-milter-test-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function waitFor(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
