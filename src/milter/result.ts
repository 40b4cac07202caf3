// Runs in: the milter process (pure).
//
// A handler's answer -> the packets that go back to the MTA, each encoded
// once, in order. Pure: no socket, no timer; the connection only writes what
// comes out of here. Everything of one answer is encoded before anything is
// returned, so a bad modification cannot leave half an answer on the wire.
import type { CustomReply, EomResult, HandlerStep, Modification, NegotiatedOptions, StepResult } from './application.js';
import { toBuffer } from './bytes.js';
import {
  SMFIF_ADDHDRS,
  SMFIF_ADDRCPT,
  SMFIF_ADDRCPT_PAR,
  SMFIF_CHGBODY,
  SMFIF_CHGFROM,
  SMFIF_CHGHDRS,
  SMFIF_DELRCPT,
  SMFIF_QUARANTINE,
  SMFIP_SKIP,
} from './constants.js';
import { MilterReplyError } from './errors.js';
import { encodeReply, formatSmtpReply, replyBodyChunks, type Reply } from './replies.js';

/** The action flag each modification needs (libmilter refuses to send without it). */
export function requiredAction(mod: Modification): number {
  switch (mod.kind) {
    case 'addHeader':
    case 'insertHeader':
      return SMFIF_ADDHDRS;
    case 'changeHeader':
      return SMFIF_CHGHDRS;
    case 'addRecipient':
      return mod.args === undefined ? SMFIF_ADDRCPT : SMFIF_ADDRCPT_PAR;
    case 'deleteRecipient':
      return SMFIF_DELRCPT;
    case 'quarantine':
      return SMFIF_QUARANTINE;
    case 'changeSender':
      return SMFIF_CHGFROM;
    case 'replaceBody':
      return SMFIF_CHGBODY;
    default: {
      const never: never = mod;
      throw new MilterReplyError(`unknown modification ${JSON.stringify(never)}`);
    }
  }
}

/** Modification -> replies. Throws MilterReplyError if its action was not negotiated. */
export function modificationReplies(mod: Modification, negotiated: NegotiatedOptions): Reply[] {
  const needed = requiredAction(mod);
  if ((negotiated.actions & needed) === 0) {
    throw new MilterReplyError(`modification ${mod.kind} needs action 0x${needed.toString(16)}, not negotiated`);
  }
  switch (mod.kind) {
    case 'addHeader':
      return [{ type: 'addheader', name: mod.name, value: toBuffer(mod.value) }];
    case 'insertHeader':
      return [{ type: 'insheader', index: mod.index, name: mod.name, value: toBuffer(mod.value) }];
    case 'changeHeader':
      return [{ type: 'chgheader', index: mod.index, name: mod.name, value: toBuffer(mod.value) }];
    case 'addRecipient':
      return mod.args === undefined
        ? [{ type: 'addrcpt', recipient: toBuffer(mod.recipient) }]
        : [{ type: 'addrcpt_par', recipient: toBuffer(mod.recipient), args: toBuffer(mod.args) }];
    case 'deleteRecipient':
      return [{ type: 'delrcpt', recipient: toBuffer(mod.recipient) }];
    case 'quarantine':
      return [{ type: 'quarantine', reason: mod.reason }];
    case 'changeSender':
      return [{ type: 'chgfrom', sender: toBuffer(mod.sender), args: mod.args === undefined ? null : toBuffer(mod.args) }];
    case 'replaceBody':
      return replyBodyChunks(mod.body);
  }
}

/** A step's result -> its final reply. Throws MilterReplyError for a bad custom reply. */
export function finalReply(result: StepResult | void, step: HandlerStep, negotiated: NegotiatedOptions): Reply {
  if (result === undefined || result === 'continue') return { type: 'continue' };
  if (typeof result === 'object') return { type: 'replycode', text: formatSmtpReply(result.code, result.text) };
  switch (result) {
    case 'accept':
    case 'reject':
    case 'tempfail':
    case 'discard':
      return { type: result };
    case 'skip':
      // SKIP only means something for body chunks, and only if the MTA offered it.
      return step === 'body' && (negotiated.protocol & SMFIP_SKIP) !== 0 ? { type: 'skip' } : { type: 'continue' };
    default:
      throw new MilterReplyError(`unknown step result ${JSON.stringify(result)}`);
  }
}

function isEomResult(value: unknown): value is EomResult {
  return typeof value === 'object' && value !== null && 'reply' in value;
}

/** The final result inside what a handler returned (an eom() may wrap it in an EomResult). */
function finalResult(step: HandlerStep, value: unknown): StepResult | void {
  return step === 'eom' && isEomResult(value) ? value.reply : (value as StepResult | void);
}

/**
 * What a handler method returned -> the packets to write, in order: at end
 * of message the modifications, then the final reply; for any other step the
 * final reply alone. Throws MilterReplyError (not negotiated, NUL inside,
 * empty quarantine reason, bad SMTP code or text...).
 */
export function answerPackets(step: HandlerStep, value: unknown, negotiated: NegotiatedOptions): Buffer[] {
  const replies: Reply[] = [];
  if (step === 'eom' && isEomResult(value)) {
    for (const mod of value.modifications ?? []) replies.push(...modificationReplies(mod, negotiated));
  }
  replies.push(finalReply(finalResult(step, value), step, negotiated));
  return replies.map(encodeReply);
}

/**
 * Whether the answer closes the SMTP session: a 421 reply says the service
 * is closing the channel (RFC 5321 §3.8), and both MTAs end the SMTP session
 * on it. The engine then hangs up itself instead of waiting for the QUIT.
 */
export function closesSession(step: HandlerStep, value: unknown): boolean {
  const result = finalResult(step, value);
  return typeof result === 'object' && result !== null && result.code === '421';
}

/** One of the engine's own answers (errorReply, shutdownReply) as one packet; a text that cannot be sent becomes a bare TEMPFAIL. */
export function ownReplyPacket(custom: CustomReply): Buffer {
  try {
    return encodeReply({ type: 'replycode', text: formatSmtpReply(custom.code, custom.text) });
  } catch {
    return encodeReply({ type: 'tempfail' });
  }
}

export const PROGRESS_PACKET: Buffer = encodeReply({ type: 'progress' });
