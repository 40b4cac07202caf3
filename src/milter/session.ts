// Runs in: the milter process and the in-repo client (pure).
//
// The milter session as an explicit state machine. advance(state, command) is
// pure: it checks the command against the state table and returns the next
// state plus the effects the connection must perform (send a packet, call a
// handler, notify an abort, close). It throws MilterProtocolError for
// protocol errors (bad order, failed negotiation); application errors never
// reach this module — the connection turns them into TEMPFAIL replies.
//
// Quirks handled here, each seen in a real MTA:
// - ABORT may come at any point after OPTNEG, also with no transaction open:
//   Postfix sends one after every finished transaction and one more at the
//   end. It is idempotent and never undoes an end-of-message decision.
// - A MAIL while a transaction is open starts a new one (Sendmail sends no
//   ABORT after a completed EOM; a new MAIL is an implicit abort otherwise).
// - HELO mid-transaction aborts it (Postfix sends HELO, then ABORT).
// - QUIT_NC ends the SMTP session but keeps the socket; a new CONNECT (or
//   UNKNOWN) follows without a new OPTNEG.
// - Macro packets may be empty or carry a stage byte we do not use.
// - Steps negotiated away with SMFIP_NO* bits are simply absent.
import type { HandlerCall, HandlerStep, MilterDeclaration, NegotiatedOptions, Step } from './application.js';
import type { Command, CommandType } from './commands.js';
import { MilterProtocolError } from './errors.js';
import { milterReplies, mtaSends, negotiate, type Offer } from './negotiate.js';
import type { Reply } from './replies.js';

/**
 * negotiate: waiting for OPTNEG.  connect: negotiated, waiting for CONNECT
 * (also after QUIT_NC).  session: connected, no transaction open.  mail,
 * rcpt, data, header, eoh, body: inside a transaction, after that command.
 * closed: after QUIT.
 */
export type Phase = 'negotiate' | 'connect' | 'session' | 'mail' | 'rcpt' | 'data' | 'header' | 'eoh' | 'body' | 'closed';

export interface SessionState {
  readonly phase: Phase;
  readonly declaration: MilterDeclaration;
  /** Null until OPTNEG succeeded. */
  readonly negotiated: NegotiatedOptions | null;
}

export type Effect =
  /** Write this packet now (the OPTNEG reply). */
  | { readonly kind: 'send'; readonly reply: Reply }
  /** Negotiation succeeded: create the application's handler. */
  | { readonly kind: 'negotiated'; readonly options: NegotiatedOptions }
  /** Replace one stage's macro table. */
  | { readonly kind: 'macros'; readonly stage: number | null; readonly macros: ReadonlyArray<readonly [string, string]> }
  /** Apply the macro scoping rule of this command (clear later stages). */
  | { readonly kind: 'macro-scope'; readonly command: CommandType }
  /** The open transaction ended without end of message: tell the handler. */
  | { readonly kind: 'abort' }
  /**
   * Call this handler method; `reply` says whether its answer goes on the
   * wire. The effects of one command run in order, and after a failed call
   * the command's further calls are not made (their answer is a tempfail).
   */
  | { readonly kind: 'call'; readonly call: HandlerCall; readonly reply: boolean }
  /** QUIT: close the connection. */
  | { readonly kind: 'quit' };

/** What one command does: the session after it, and the effects the connection performs. */
export interface Transition {
  readonly state: SessionState;
  readonly effects: readonly Effect[];
}

export function initialState(declaration: MilterDeclaration): SessionState {
  return { phase: 'negotiate', declaration, negotiated: null };
}

const TRANSACTION_PHASES: ReadonlySet<Phase> = new Set<Phase>(['mail', 'rcpt', 'data', 'header', 'eoh', 'body']);

/** Whether a transaction (MAIL seen, no EOM or ABORT yet) is open. */
export function inTransaction(phase: Phase): boolean {
  return TRANSACTION_PHASES.has(phase);
}

/**
 * The state table: for each phase, the step commands it accepts and the
 * phase after them. ABORT, MACRO, QUIT and QUIT_NC are valid in every phase
 * after negotiation and are handled outside the table; so are the implicit
 * aborts (MAIL or HELO inside a transaction), which restart from 'session'.
 */
export const TRANSITIONS: Readonly<Record<Phase, Readonly<Partial<Record<HandlerStep, Phase>>>>> = {
  negotiate: {},
  connect: { connect: 'session', unknown: 'connect' },
  session: { helo: 'session', mail: 'mail', unknown: 'session' },
  mail: { rcpt: 'rcpt', unknown: 'mail' },
  rcpt: { rcpt: 'rcpt', data: 'data', header: 'header', eoh: 'eoh', body: 'body', eom: 'session', unknown: 'rcpt' },
  data: { header: 'header', eoh: 'eoh', body: 'body', eom: 'session', unknown: 'data' },
  header: { header: 'header', eoh: 'eoh', body: 'body', eom: 'session' },
  eoh: { body: 'body', eom: 'session' },
  body: { body: 'body', eom: 'session' },
  closed: {},
};

/**
 * When the MTA was told not to send a step (SMFIP_NO*), the phase it would
 * have led to is reachable directly: e.g. with NOCONNECT a HELO comes in
 * phase 'connect'. Maps a phase to the phase after its usual next step.
 */
const SKIPPED_STEP: Readonly<Partial<Record<Phase, { step: Step; then: Phase }>>> = {
  connect: { step: 'connect', then: 'session' },
  session: { step: 'mail', then: 'mail' },
  mail: { step: 'rcpt', then: 'rcpt' },
};

function badOrder(command: Command, phase: Phase): MilterProtocolError {
  return new MilterProtocolError('bad-order', `${command.type} not allowed in phase ${phase}`);
}

/** Next phase for a step command, following skipped (no-send) steps; undefined if out of order. */
function nextPhase(phase: Phase, type: HandlerStep, negotiated: NegotiatedOptions): Phase | undefined {
  let at: Phase = phase;
  for (;;) {
    const next = TRANSITIONS[at][type];
    if (next !== undefined) return next;
    const skipped = SKIPPED_STEP[at];
    if (!skipped || mtaSends(negotiated, skipped.step)) return undefined;
    at = skipped.then;
  }
}

/** Advances the session by one command. Pure. Throws MilterProtocolError. */
export function advance(state: SessionState, command: Command): Transition {
  const { phase } = state;
  if (phase === 'closed') throw badOrder(command, phase);

  if (phase === 'negotiate') {
    if (command.type !== 'optneg') throw badOrder(command, phase);
    const offer: Offer = { version: command.version, actions: command.actions, protocol: command.protocol };
    const { reply, negotiated } = negotiate(offer, state.declaration);
    return {
      state: { ...state, phase: 'connect', negotiated },
      effects: [
        { kind: 'send', reply },
        { kind: 'negotiated', options: negotiated },
      ],
    };
  }

  const negotiated = state.negotiated as NegotiatedOptions;
  const open = inTransaction(phase);
  const abortIfOpen: Effect[] = open ? [{ kind: 'abort' }] : [];

  switch (command.type) {
    case 'optneg':
      // A second OPTNEG on one connection: neither MTA does this.
      throw badOrder(command, phase);
    case 'macro':
      return { state, effects: [{ kind: 'macros', stage: command.stage, macros: command.macros }] };
    case 'abort':
      return {
        state: open ? { ...state, phase: 'session' } : state,
        effects: [...abortIfOpen, { kind: 'macro-scope', command: 'abort' }],
      };
    case 'quit':
      return { state: { ...state, phase: 'closed' }, effects: [...abortIfOpen, { kind: 'quit' }] };
    case 'quit_nc':
      return { state: { ...state, phase: 'connect' }, effects: [...abortIfOpen, { kind: 'macro-scope', command: 'quit_nc' }] };
    case 'helo':
    case 'mail': {
      // Inside a transaction both start over from 'session': an implicit abort.
      const from: Phase = open ? 'session' : phase;
      const next = nextPhase(from, command.type, negotiated);
      if (next === undefined) throw badOrder(command, phase);
      return {
        state: { ...state, phase: next },
        effects: [...abortIfOpen, ...callEffects(command, negotiated)],
      };
    }
    case 'connect':
    case 'rcpt':
    case 'data':
    case 'header':
    case 'eoh':
    case 'body':
    case 'unknown': {
      const next = nextPhase(phase, command.type, negotiated);
      if (next === undefined) throw badOrder(command, phase);
      return { state: { ...state, phase: next }, effects: callEffects(command, negotiated) };
    }
    case 'eom': {
      const next = nextPhase(phase, 'eom', negotiated);
      if (next === undefined) throw badOrder(command, phase);
      // libmilter treats data in BODYEOB as a last body chunk (no MTA sends any).
      const lastChunk: Effect[] = command.chunk.length > 0 ? [{ kind: 'call', call: { step: 'body', args: [command.chunk] }, reply: false }] : [];
      // No no-reply bit exists for end of message: it is always answered.
      return { state: { ...state, phase: next }, effects: [...lastChunk, { kind: 'call', call: { step: 'eom', args: [] }, reply: true }] };
    }
    default: {
      const never: never = command;
      throw new Error(`unhandled command ${JSON.stringify(never)}`);
    }
  }
}

type StepCommand = Extract<Command, { type: Step }>;

/** The handler method for a step command, with its arguments. */
function handlerCall(command: StepCommand): HandlerCall {
  switch (command.type) {
    case 'connect':
      return { step: 'connect', args: [command.hostname, command.family, command.port, command.address] };
    case 'helo':
      return { step: 'helo', args: [command.name] };
    case 'mail':
      return { step: 'mail', args: [command.args] };
    case 'rcpt':
      return { step: 'rcpt', args: [command.args] };
    case 'data':
      return { step: 'data', args: [] };
    case 'header':
      return { step: 'header', args: [command.name, command.value] };
    case 'eoh':
      return { step: 'eoh', args: [] };
    case 'body':
      return { step: 'body', args: [command.chunk] };
    case 'unknown':
      return { step: 'unknown', args: [command.command] };
  }
}

function callEffects(command: StepCommand, negotiated: NegotiatedOptions): Effect[] {
  return [
    { kind: 'macro-scope', command: command.type },
    { kind: 'call', call: handlerCall(command), reply: milterReplies(negotiated, command.type) },
  ];
}
