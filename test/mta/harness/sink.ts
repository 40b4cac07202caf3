// A minimal SMTP server that accepts everything and keeps the messages: the
// "remote" next hop for non-local recipients, so a test can see that a
// relayed copy arrived exactly once.
import net from 'node:net';
import { auxPort } from './util.js';

export interface SinkMessage {
  from: string;
  to: string[];
  data: string;
}

export interface SmtpSink {
  readonly port: number;
  readonly messages: SinkMessage[];
  stop(): Promise<void>;
}

export async function startSmtpSink(port?: number): Promise<SmtpSink> {
  const p = port ?? (await auxPort());
  const messages: SinkMessage[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf = '';
    let inData = false;
    let cur: SinkMessage = { from: '', to: [], data: '' };
    const say = (l: string) => sock.write(l + '\r\n');
    say('220 sink.remote.test ESMTP pumtest sink');
    sock.setEncoding('latin1');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      for (;;) {
        const i = buf.indexOf('\r\n');
        if (i < 0) break;
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (inData) {
          if (line === '.') {
            inData = false;
            messages.push(cur);
            cur = { from: '', to: [], data: '' };
            say('250 2.0.0 queued by sink');
          } else cur.data += (line.startsWith('.') ? line.slice(1) : line) + '\n';
          continue;
        }
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') say('250-sink.remote.test\r\n250 8BITMIME');
        else if (verb === 'HELO') say('250 sink.remote.test');
        else if (verb === 'MAIL') {
          cur = { from: /<([^>]*)>/.exec(line)?.[1] ?? '', to: [], data: '' };
          say('250 2.1.0 ok');
        } else if (verb === 'RCPT') {
          cur.to.push(/<([^>]*)>/.exec(line)?.[1] ?? '');
          say('250 2.1.5 ok');
        } else if (verb === 'DATA') {
          inData = true;
          say('354 go ahead');
        } else if (verb === 'QUIT') {
          say('221 2.0.0 bye');
          sock.end();
        } else say('250 2.0.0 ok');
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(p, '127.0.0.1', () => resolve());
  });
  return {
    port: p,
    messages,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
