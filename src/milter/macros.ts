// Runs in: the milter process and the in-repo client (pure).
//
// Macros (SMFIC_MACRO), stored per stage with libmilter's scoping:
// - one table per stage; a new D packet replaces its stage's table;
// - a lookup goes from the latest stage back to CONNECT;
// - CONNECT, HELO, MAIL and RCPT clear the tables of all later stages, so
//   RCPT macros describe only the latest recipient and `{i}` from DATA is
//   still visible at end of message;
// - ABORT clears the transaction stages (MAIL onwards), keeping CONNECT/HELO.
import type { MacroReader, MacroStage } from './application.js';
import type { CommandType } from './commands.js';
import { SMFIC_BODY, SMFIC_BODYEOB, SMFIC_CONNECT, SMFIC_DATA, SMFIC_EOH, SMFIC_HEADER, SMFIC_HELO, SMFIC_MAIL, SMFIC_RCPT } from './constants.js';

/** Stages in the order they happen in a session. */
const STAGE_ORDER: readonly MacroStage[] = ['connect', 'helo', 'mail', 'rcpt', 'data', 'eoh', 'eom'];

/**
 * Which table a D packet's stage byte fills. Besides libmilter's letters,
 * Postfix sends 'L' (before every header, its EOH list) and 'B' (before every
 * body chunk, its EOM list). Others ('U', anything) are ignored, as libmilter
 * ignores them.
 */
const STAGE_BY_BYTE: Readonly<Record<number, MacroStage>> = {
  [SMFIC_CONNECT]: 'connect',
  [SMFIC_HELO]: 'helo',
  [SMFIC_MAIL]: 'mail',
  [SMFIC_RCPT]: 'rcpt',
  [SMFIC_DATA]: 'data',
  [SMFIC_HEADER]: 'eoh',
  [SMFIC_EOH]: 'eoh',
  [SMFIC_BODY]: 'eom',
  [SMFIC_BODYEOB]: 'eom',
};

/**
 * The first stage whose table a command clears, with every later one:
 * CONNECT, HELO, MAIL and RCPT keep their own stage and the earlier ones,
 * ABORT drops the transaction's stages, QUIT_NC everything.
 */
const CLEARS_FROM: Readonly<Partial<Record<CommandType, MacroStage>>> = {
  connect: 'helo',
  helo: 'mail',
  mail: 'rcpt',
  rcpt: 'data',
  abort: 'mail',
  quit_nc: 'connect',
};

/** 'i' and '{i}' are the same macro (smfi_getsymval accepts both). */
export function macroKey(name: string): string {
  return name.length > 2 && name.startsWith('{') && name.endsWith('}') ? name.slice(1, -1) : name;
}

export class MacroStore implements MacroReader {
  private readonly tables = new Map<MacroStage, Map<string, string>>();

  /** Applies a D packet. Returns false when the stage byte is one we ignore. */
  define(stageByte: number | null, macros: ReadonlyArray<readonly [string, string]>): boolean {
    if (stageByte === null) return false;
    const stage = STAGE_BY_BYTE[stageByte];
    if (!stage) return false;
    const table = new Map<string, string>();
    for (const [name, value] of macros) table.set(macroKey(name), value);
    this.tables.set(stage, table);
    return true;
  }

  /** Applies the clearing rule of a (non-macro) command, before its handler runs. */
  onCommand(type: CommandType): void {
    const from = CLEARS_FROM[type];
    if (from) this.clearFrom(from);
  }

  get(name: string): string | undefined {
    const key = macroKey(name);
    for (let i = STAGE_ORDER.length - 1; i >= 0; i--) {
      const value = this.tables.get(STAGE_ORDER[i] as MacroStage)?.get(key);
      if (value !== undefined) return value;
    }
    return undefined;
  }

  snapshot(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const stage of STAGE_ORDER) {
      for (const [key, value] of this.tables.get(stage) ?? []) out[key.length > 1 ? `{${key}}` : key] = value;
    }
    return out;
  }

  clear(): void {
    this.tables.clear();
  }

  private clearFrom(stage: MacroStage): void {
    for (let i = STAGE_ORDER.indexOf(stage); i < STAGE_ORDER.length; i++) this.tables.delete(STAGE_ORDER[i] as MacroStage);
  }
}
