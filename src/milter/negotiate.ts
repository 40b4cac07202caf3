// Runs in: the milter process and the in-repo client (pure).
//
// Option negotiation (SMFIC_OPTNEG): the MTA's offer × what the application
// declared -> our OPTNEG reply and the options in force. Pure.
import type { MacroStage, MilterDeclaration, NegotiatedOptions, Step } from './application.js';
import {
  SMFIF_SETSYMLIST,
  SMFIM_CONNECT,
  SMFIM_DATA,
  SMFIM_ENVFROM,
  SMFIM_ENVRCPT,
  SMFIM_EOH,
  SMFIM_EOM,
  SMFIM_HELO,
  SMFIP_HDR_LEADSPC,
  SMFIP_NOBODY,
  SMFIP_NOCONNECT,
  SMFIP_NODATA,
  SMFIP_NOEOH,
  SMFIP_NOHDRS,
  SMFIP_NOHELO,
  SMFIP_NOMAIL,
  SMFIP_NORCPT,
  SMFIP_NOUNKNOWN,
  SMFIP_NR_BODY,
  SMFIP_NR_CONN,
  SMFIP_NR_DATA,
  SMFIP_NR_EOH,
  SMFIP_NR_HDR,
  SMFIP_NR_HELO,
  SMFIP_NR_MAIL,
  SMFIP_NR_RCPT,
  SMFIP_NR_UNKN,
  SMFIP_RCPT_REJ,
  SMFIP_SKIP,
  SMFI_CURR_ACTS,
  SMFI_CURR_PROT,
  SMFI_PROT_VERSION,
  SMFI_PROT_VERSION_MIN,
  SMFI_V1_ACTS,
  SMFI_V1_PROT,
} from './constants.js';
import { MilterProtocolError } from './errors.js';
import type { MacroList, Reply } from './replies.js';

/** What the MTA offers in its OPTNEG command. */
export interface Offer {
  readonly version: number;
  readonly actions: number;
  readonly protocol: number;
}

export type OptnegReply = Extract<Reply, { type: 'optneg' }>;

export interface NegotiationResult {
  readonly reply: OptnegReply;
  readonly negotiated: NegotiatedOptions;
}

/** SMFIP_NO* bit that stops the MTA from sending a step. */
export const NO_SEND_BIT: Readonly<Record<Step, number>> = {
  connect: SMFIP_NOCONNECT,
  helo: SMFIP_NOHELO,
  mail: SMFIP_NOMAIL,
  rcpt: SMFIP_NORCPT,
  data: SMFIP_NODATA,
  header: SMFIP_NOHDRS,
  eoh: SMFIP_NOEOH,
  body: SMFIP_NOBODY,
  unknown: SMFIP_NOUNKNOWN,
};

/** SMFIP_NR_* bit by which the milter promises not to answer a step. */
export const NO_REPLY_BIT: Readonly<Record<Step, number>> = {
  connect: SMFIP_NR_CONN,
  helo: SMFIP_NR_HELO,
  mail: SMFIP_NR_MAIL,
  rcpt: SMFIP_NR_RCPT,
  data: SMFIP_NR_DATA,
  header: SMFIP_NR_HDR,
  eoh: SMFIP_NR_EOH,
  body: SMFIP_NR_BODY,
  unknown: SMFIP_NR_UNKN,
};

/** SMFIM_* number per macro stage. Note EOM (5) comes before EOH (6). */
export const MACRO_STAGE_NUMBER: Readonly<Record<MacroStage, number>> = {
  connect: SMFIM_CONNECT,
  helo: SMFIM_HELO,
  mail: SMFIM_ENVFROM,
  rcpt: SMFIM_ENVRCPT,
  data: SMFIM_DATA,
  eom: SMFIM_EOM,
  eoh: SMFIM_EOH,
};

const MACRO_STAGE_ORDER: readonly MacroStage[] = ['connect', 'helo', 'mail', 'rcpt', 'data', 'eom', 'eoh'];

function failed(message: string): MilterProtocolError {
  return new MilterProtocolError('negotiation-failed', message);
}

/**
 * Computes our answer to the MTA's OPTNEG, as libmilter would:
 * - version: min(ours, the MTA's); below 2 is refused.
 * - actions: all required ones must be offered (else negotiation fails and
 *   the MTA applies its default action); optional ones where offered. A zero
 *   actions word means SMFI_V1_ACTS, a zero protocol word SMFI_V1_PROT.
 * - protocol: only bits the MTA offered (Sendmail aborts on more): the
 *   declared no-send and no-reply steps, SKIP when offered, HDR_LEADSPC and
 *   RCPT_REJ when declared. Never the internal MDS bits: we send packets of
 *   at most 64 KiB anyway and accept larger ones up to our own cap.
 * - macro lists only when SMFIF_SETSYMLIST ends up in the actions.
 * Throws MilterProtocolError('negotiation-failed').
 */
export function negotiate(offer: Offer, declaration: MilterDeclaration): NegotiationResult {
  if (!Number.isInteger(offer.version) || offer.version < SMFI_PROT_VERSION_MIN) {
    throw failed(`MTA protocol version ${offer.version} is below ${SMFI_PROT_VERSION_MIN}`);
  }
  const version = Math.min(SMFI_PROT_VERSION, offer.version);
  const offeredActions = (offer.actions === 0 ? SMFI_V1_ACTS : offer.actions) & SMFI_CURR_ACTS;
  const offeredProtocol = (offer.protocol === 0 ? SMFI_V1_PROT : offer.protocol) & SMFI_CURR_PROT;

  const missing = declaration.actions & ~offeredActions;
  if (missing !== 0) {
    throw failed(`MTA offers actions 0x${offeredActions.toString(16)} but the application needs 0x${missing.toString(16)} too`);
  }
  const actions = (declaration.actions | ((declaration.optionalActions ?? 0) & offeredActions)) & SMFI_CURR_ACTS;

  let wanted = SMFIP_SKIP;
  for (const step of declaration.skipSteps ?? []) wanted |= NO_SEND_BIT[step];
  for (const step of declaration.noReplySteps ?? []) wanted |= NO_REPLY_BIT[step];
  if (declaration.headerLeadingSpace) wanted |= SMFIP_HDR_LEADSPC;
  if (declaration.rejectedRecipients) wanted |= SMFIP_RCPT_REJ;
  const protocol = (wanted & offeredProtocol) >>> 0;

  const macroLists: MacroList[] = [];
  if ((actions & SMFIF_SETSYMLIST) !== 0 && declaration.macros) {
    for (const stage of MACRO_STAGE_ORDER) {
      const names = declaration.macros[stage];
      if (names === undefined) continue;
      for (const name of names) {
        if (!/^[^\s,\0]+$/.test(name)) throw new RangeError(`bad macro name ${JSON.stringify(name)} for stage ${stage}`);
      }
      macroLists.push({ stage: MACRO_STAGE_NUMBER[stage], names: names.join(' ') });
    }
  }

  return {
    reply: { type: 'optneg', version, actions, protocol, macroLists },
    negotiated: { version, actions, protocol },
  };
}

/** Whether the MTA will send `step` (no no-send bit negotiated for it). */
export function mtaSends(negotiated: NegotiatedOptions, step: Step): boolean {
  return (negotiated.protocol & NO_SEND_BIT[step]) === 0;
}

/** Whether the milter must answer `step` (no no-reply bit negotiated for it). */
export function milterReplies(negotiated: NegotiatedOptions, step: Step): boolean {
  return (negotiated.protocol & NO_REPLY_BIT[step]) === 0;
}
