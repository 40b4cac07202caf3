// Runs in: the soak and fault tests.
//
// A small SMTP client that keeps every reply: the soak must know, per
// message, whether the server said 2xx, 4xx or 5xx after the final dot (and
// at RCPT and DATA), which smtp-source and swaks do not tell per message at
// this rate. One connection carries several transactions (RSET between), as
// an MTA's client does.
import net from 'node:net';

export interface Reply {
  code: number;
  text: string;
}

export type Attempt =
  | { kind: 'accepted'; reply: Reply }
  | { kind: 'rejected'; at: 'mail' | 'rcpt' | 'data' | 'dot'; reply: Reply }
  | { kind: 'deferred'; at: 'connect' | 'mail' | 'rcpt' | 'data' | 'dot'; reply: Reply }
  /** The connection failed; `afterDot`: the whole message had been sent (the server may have taken it). */
  | { kind: 'broken'; afterDot: boolean; error: string };

class ConnClosed extends Error {}

export class SmtpConnection {
  private buf = '';
  private waiting: ((line: string | null) => void) | null = null;
  private lines: string[] = [];
  private closed = false;
  private error = '';
  transactions = 0;

  private constructor(private readonly sock: net.Socket, private readonly timeoutMs: number) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i).replace(/\r$/, '');
        this.buf = this.buf.slice(i + 1);
        this.push(line);
      }
    });
    const end = (why: string) => {
      if (this.closed) return;
      this.closed = true;
      this.error = why;
      const w = this.waiting;
      this.waiting = null;
      w?.(null);
    };
    sock.on('error', (e) => end(e.message));
    sock.on('close', () => end('connection closed'));
    sock.setTimeout(timeoutMs, () => {
      end(`no reply in ${timeoutMs} ms`);
      sock.destroy();
    });
  }

  private push(line: string): void {
    const w = this.waiting;
    if (w) {
      this.waiting = null;
      w(line);
    } else this.lines.push(line);
  }

  private nextLine(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.closed) return Promise.reject(new ConnClosed(this.error));
    return new Promise((resolve, reject) => {
      this.waiting = (line) => (line === null ? reject(new ConnClosed(this.error)) : resolve(line));
    });
  }

  async reply(): Promise<Reply> {
    const text: string[] = [];
    for (;;) {
      const line = await this.nextLine();
      const m = /^(\d{3})([ -])(.*)$/.exec(line);
      if (!m) throw new ConnClosed(`malformed reply line: ${JSON.stringify(line)}`);
      text.push(m[3]!);
      if (m[2] === ' ') return { code: Number(m[1]), text: `${m[1]} ${text.join(' / ')}` };
    }
  }

  private write(data: string | Buffer): void {
    if (this.closed) throw new ConnClosed(this.error);
    this.sock.write(data);
  }

  async command(line: string): Promise<Reply> {
    this.write(line + '\r\n');
    return this.reply();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Connects, reads the greeting and says EHLO; null with the reply or error when the server does not want us. */
  static async open(port: number, timeoutMs = 300_000): Promise<{ conn: SmtpConnection } | { greeting: Reply } | { error: string }> {
    const sock = net.connect(port, '127.0.0.1');
    const conn = new SmtpConnection(sock, timeoutMs);
    try {
      const hello = await conn.reply();
      if (hello.code !== 220) {
        conn.close();
        return { greeting: hello };
      }
      const ehlo = await conn.command('EHLO soak.client.test');
      if (ehlo.code !== 250) {
        conn.close();
        return { greeting: ehlo };
      }
      return { conn };
    } catch (e) {
      conn.close();
      return { error: (e as Error).message };
    }
  }

  /** One transaction: MAIL, RCPT each, DATA, the message (dot-stuffed here), the final dot. */
  async send(from: string, to: readonly string[], message: Buffer): Promise<Attempt> {
    let afterDot = false;
    try {
      if (this.transactions++ > 0) {
        const r = await this.command('RSET');
        if (r.code !== 250) return { kind: 'broken', afterDot, error: `RSET: ${r.text}` };
      }
      const mail = await this.command(`MAIL FROM:<${from}>`);
      if (mail.code >= 400) return mail.code < 500 ? { kind: 'deferred', at: 'mail', reply: mail } : { kind: 'rejected', at: 'mail', reply: mail };
      let firstBad: Reply | null = null;
      for (const rcpt of to) {
        const r = await this.command(`RCPT TO:<${rcpt}>`);
        if (r.code >= 300 && (!firstBad || (firstBad.code >= 500 && r.code < 500))) firstBad = r;
      }
      // All or nothing: a message some of whose recipients were refused is sent again whole
      // (each copy is counted at the mailboxes; a partial send would need per-recipient bookkeeping).
      if (firstBad) {
        return firstBad.code < 500 ? { kind: 'deferred', at: 'rcpt', reply: firstBad } : { kind: 'rejected', at: 'rcpt', reply: firstBad };
      }
      const data = await this.command('DATA');
      if (data.code !== 354) return data.code < 500 ? { kind: 'deferred', at: 'data', reply: data } : { kind: 'rejected', at: 'data', reply: data };
      this.write(dotStuff(message));
      this.write('.\r\n');
      afterDot = true;
      const r = await this.reply();
      if (r.code < 300) return { kind: 'accepted', reply: r };
      return r.code < 500 ? { kind: 'deferred', at: 'dot', reply: r } : { kind: 'rejected', at: 'dot', reply: r };
    } catch (e) {
      this.close();
      return { kind: 'broken', afterDot, error: (e as Error).message };
    }
  }

  close(): void {
    if (!this.closed) {
      try {
        this.sock.write('QUIT\r\n');
      } catch {
        // gone
      }
    }
    this.sock.end();
    this.sock.destroy();
    this.closed = true;
  }
}

/** Dot-stuffing (RFC 5321 4.5.2); the message must end with CRLF. */
export function dotStuff(msg: Buffer): Buffer {
  let s = msg.toString('latin1');
  if (!s.endsWith('\r\n')) s += '\r\n';
  if (s.startsWith('.')) s = '.' + s;
  return Buffer.from(s.replace(/\r\n\./g, '\r\n..'), 'latin1');
}
