// Runs in: the milter process and the in-repo client (pure).
//
// Protocol errors. A MilterProtocolError means the peer broke the protocol
// (bad length, unknown command, malformed payload, command out of order): the
// server closes that one connection, logs the reason and counts it. It never
// means "our application failed" — that becomes a TEMPFAIL reply instead.

/** Stable machine-readable reasons, usable as a metrics label (a closed set). */
export type ProtocolErrorReason =
  /** Length word 0: there is not even a command byte. */
  | 'frame-length-zero'
  /** Length word above the configured maximum. */
  | 'frame-too-large'
  /** A command (or, client side, a reply) byte we do not know. */
  | 'unknown-command'
  /** The payload does not have the layout the command requires. */
  | 'bad-payload'
  /** A known command in a state where it cannot come. */
  | 'bad-order'
  /** OPTNEG could not agree (version too old, needed actions not offered). */
  | 'negotiation-failed'
  /** The peer closed the connection in the middle of a packet. */
  | 'truncated-frame'
  /** Client side: the milter answered something the protocol does not allow here. */
  | 'unexpected-reply';

export class MilterProtocolError extends Error {
  override readonly name = 'MilterProtocolError';
  readonly reason: ProtocolErrorReason;

  constructor(reason: ProtocolErrorReason, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** An application reply that cannot be put on the wire (bad SMTP code, bad text). */
export class MilterReplyError extends Error {
  override readonly name = 'MilterReplyError';
}
