// Codec micro-benchmark: frames decoded and encoded per second, no sockets.
// Run: node dist/bench/codec.js [seconds per case, default 1]
// The decode cases feed a Postfix-like transaction (macros, commands,
// headers, 8 KiB body chunks) in 1500-byte pieces, like TCP segments, so the
// reassembly path is measured too; encode builds the replies a milter sends.
import { decodeCommand, encodeCommand, type Command } from '../src/milter/commands.js';
import { FrameDecoder } from '../src/milter/frame.js';
import { encodeReply, formatSmtpReply, type Reply } from '../src/milter/replies.js';

const seconds = Number(process.argv[2] ?? 1);
const b = (s: string): Buffer => Buffer.from(s, 'latin1');

const transaction: Command[] = [
  { type: 'macro', stage: 0x4d, macros: [['i', 'QID'], ['{mail_addr}', 's@example.net']] },
  { type: 'mail', args: [b('<s@example.net>'), b('SIZE=4096')] },
  { type: 'macro', stage: 0x52, macros: [['{rcpt_mailer}', 'local'], ['{rcpt_addr}', 'alice@example.org'], ['{rcpt_host}', 'mx']] },
  { type: 'rcpt', args: [b('<alice@example.org>')] },
  { type: 'data' },
  ...['From', 'To', 'Subject', 'Date', 'Message-Id', 'Received'].map((name): Command => ({ type: 'header', name, value: b(`value of ${name}`) })),
  { type: 'eoh' },
  ...Array.from({ length: 4 }, (): Command => ({ type: 'body', chunk: Buffer.alloc(8192, 0x61) })),
  { type: 'eom', chunk: Buffer.alloc(0) },
  { type: 'abort' },
];
const stream = Buffer.concat(transaction.map(encodeCommand));
const segments: Buffer[] = [];
for (let at = 0; at < stream.length; at += 1500) segments.push(stream.subarray(at, at + 1500));

const replies: Reply[] = [
  { type: 'continue' },
  { type: 'addheader', name: 'X-Per-User-Milter', value: b('alice=accept bob=reject') },
  { type: 'delrcpt', recipient: b('<bob@example.org>') },
  { type: 'replycode', text: formatSmtpReply('550', '5.7.1 Message rejected by its recipients') },
];

function measure(name: string, unitsPerRound: number, round: () => void): void {
  // Warm up so the JIT has settled, then count rounds for `seconds`.
  for (let i = 0; i < 200; i++) round();
  const deadline = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  const started = process.hrtime.bigint();
  let rounds = 0;
  while (process.hrtime.bigint() < deadline) {
    for (let i = 0; i < 50; i++) round();
    rounds += 50;
  }
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  const perSecond = (rounds * unitsPerRound) / elapsed;
  console.log(`${name.padEnd(44)} ${Math.round(perSecond).toLocaleString('en-US').padStart(14)} frames/s`);
}

let sink = 0;
measure('decode (frames + commands, 1500 B segments)', transaction.length, () => {
  const decoder = new FrameDecoder();
  for (const segment of segments) {
    decoder.push(segment);
    for (let frame = decoder.next(); frame; frame = decoder.next()) sink += decodeCommand(frame).type.length;
  }
});
measure('decode frames only (whole stream at once)', transaction.length, () => {
  const decoder = new FrameDecoder();
  decoder.push(stream);
  for (let frame = decoder.next(); frame; frame = decoder.next()) sink += frame.code;
});
measure('encode replies', replies.length, () => {
  for (const reply of replies) sink += encodeReply(reply).length;
});
measure('encode commands (client side)', transaction.length, () => {
  for (const command of transaction) sink += encodeCommand(command).length;
});
if (sink === 0) console.log('');
console.log(`transaction: ${transaction.length} frames, ${stream.length} bytes`);
