// Runs in: the milter process and the in-repo client (pure).
//
// SMFIC_* commands (MTA -> milter): decoded into a discriminated union for the
// server, encoded back for the in-repo client. Strings that are names
// (host, HELO, header name, macro names) become latin1 strings; everything
// that is message or envelope data stays a Buffer.
import {
  COMMAND_NAMES,
  MILTER_OPTLEN,
  SMFIA_INET,
  SMFIA_INET6,
  SMFIA_UNIX,
  SMFIA_UNKNOWN,
  SMFIC_ABORT,
  SMFIC_BODY,
  SMFIC_BODYEOB,
  SMFIC_CONNECT,
  SMFIC_DATA,
  SMFIC_EOH,
  SMFIC_HEADER,
  SMFIC_HELO,
  SMFIC_MACRO,
  SMFIC_MAIL,
  SMFIC_OPTNEG,
  SMFIC_QUIT,
  SMFIC_QUIT_NC,
  SMFIC_RCPT,
  SMFIC_UNKNOWN,
} from './constants.js';
import type { ConnectFamily } from './application.js';
import { MilterProtocolError } from './errors.js';
import { cString, encodeFrame, splitCStrings, type Frame } from './frame.js';

/** SMFIA_* family bytes by name (the same names the application sees). */
export type FamilyName = ConnectFamily;

export type Command =
  | { readonly type: 'optneg'; readonly version: number; readonly actions: number; readonly protocol: number }
  | { readonly type: 'connect'; readonly hostname: string; readonly family: FamilyName; readonly port: number; readonly address: string }
  /** `stage` is the command byte the macros belong to; null for a D packet without even a stage byte. */
  | { readonly type: 'macro'; readonly stage: number | null; readonly macros: ReadonlyArray<readonly [string, string]> }
  | { readonly type: 'helo'; readonly name: string }
  | { readonly type: 'mail'; readonly args: readonly Buffer[] }
  | { readonly type: 'rcpt'; readonly args: readonly Buffer[] }
  | { readonly type: 'data' }
  | { readonly type: 'header'; readonly name: string; readonly value: Buffer }
  | { readonly type: 'eoh' }
  | { readonly type: 'body'; readonly chunk: Buffer }
  /** SMFIC_BODYEOB; `chunk` is a last body piece (empty from both real MTAs). */
  | { readonly type: 'eom'; readonly chunk: Buffer }
  | { readonly type: 'unknown'; readonly command: Buffer }
  | { readonly type: 'abort' }
  | { readonly type: 'quit' }
  | { readonly type: 'quit_nc' };

export type CommandType = Command['type'];

const FAMILY_BY_BYTE: Readonly<Record<number, FamilyName>> = {
  [SMFIA_UNKNOWN]: 'unknown',
  [SMFIA_UNIX]: 'unix',
  [SMFIA_INET]: 'inet',
  [SMFIA_INET6]: 'inet6',
};
const BYTE_BY_FAMILY: Readonly<Record<FamilyName, number>> = { unknown: SMFIA_UNKNOWN, unix: SMFIA_UNIX, inet: SMFIA_INET, inet6: SMFIA_INET6 };

function bad(code: number, what: string): MilterProtocolError {
  const name = COMMAND_NAMES[code] ?? `0x${code.toString(16)}`;
  return new MilterProtocolError('bad-payload', `${name}: ${what}`);
}

/** NUL-terminated strings, at least `min` of them. */
function strings(frame: Frame, min: number): Buffer[] {
  const parts = splitCStrings(frame.data);
  if (!parts) throw bad(frame.code, 'string not NUL-terminated');
  if (parts.length < min) throw bad(frame.code, `expected at least ${min} string(s), got ${parts.length}`);
  return parts;
}

/** Decodes one frame from the MTA. Throws MilterProtocolError('unknown-command' | 'bad-payload'). */
export function decodeCommand(frame: Frame): Command {
  const { code, data } = frame;
  switch (code) {
    case SMFIC_OPTNEG: {
      // libmilter takes a longer packet and ignores the rest; so do we.
      if (data.length < MILTER_OPTLEN) throw bad(code, `expected ${MILTER_OPTLEN} data bytes, got ${data.length}`);
      return { type: 'optneg', version: data.readUInt32BE(0), actions: data.readUInt32BE(4), protocol: data.readUInt32BE(8) };
    }
    case SMFIC_CONNECT: {
      const nul = data.indexOf(0);
      if (nul < 0) throw bad(code, 'hostname not NUL-terminated');
      const hostname = data.toString('latin1', 0, nul);
      const familyByte = data[nul + 1];
      if (familyByte === undefined) throw bad(code, 'no address family');
      const family = FAMILY_BY_BYTE[familyByte];
      if (!family) throw bad(code, `unknown address family 0x${familyByte.toString(16)}`);
      if (family === 'unknown') return { type: 'connect', hostname, family, port: 0, address: '' };
      const portAt = nul + 2;
      if (data.length < portAt + 2) throw bad(code, 'no port');
      const port = data.readUInt16BE(portAt);
      const rest = data.subarray(portAt + 2);
      const end = rest.indexOf(0);
      if (end < 0) throw bad(code, 'address not NUL-terminated');
      return { type: 'connect', hostname, family, port, address: rest.toString('latin1', 0, end) };
    }
    case SMFIC_MACRO: {
      // Postfix sends a bare stage byte when no listed macro has a value.
      const stage = data[0];
      if (stage === undefined) return { type: 'macro', stage: null, macros: [] };
      const parts = splitCStrings(data.subarray(1));
      if (!parts) throw bad(code, 'macro string not NUL-terminated');
      const macros: Array<readonly [string, string]> = [];
      // An odd count leaves a name without value: libmilter drops it too.
      for (let i = 0; i + 1 < parts.length; i += 2) {
        macros.push([(parts[i] as Buffer).toString('latin1'), (parts[i + 1] as Buffer).toString('latin1')]);
      }
      return { type: 'macro', stage, macros };
    }
    case SMFIC_HELO:
      return { type: 'helo', name: (strings(frame, 1)[0] as Buffer).toString('latin1') };
    case SMFIC_MAIL:
      return { type: 'mail', args: strings(frame, 1) };
    case SMFIC_RCPT:
      return { type: 'rcpt', args: strings(frame, 1) };
    case SMFIC_HEADER: {
      const parts = strings(frame, 2);
      if (parts.length !== 2) throw bad(code, `expected name and value, got ${parts.length} strings`);
      return { type: 'header', name: (parts[0] as Buffer).toString('latin1'), value: parts[1] as Buffer };
    }
    case SMFIC_UNKNOWN:
      return { type: 'unknown', command: strings(frame, 1)[0] as Buffer };
    case SMFIC_BODY:
      return { type: 'body', chunk: data };
    case SMFIC_BODYEOB:
      return { type: 'eom', chunk: data };
    // Commands without data: extra bytes are ignored, as libmilter does.
    case SMFIC_DATA:
      return { type: 'data' };
    case SMFIC_EOH:
      return { type: 'eoh' };
    case SMFIC_ABORT:
      return { type: 'abort' };
    case SMFIC_QUIT:
      return { type: 'quit' };
    case SMFIC_QUIT_NC:
      return { type: 'quit_nc' };
    default:
      throw new MilterProtocolError('unknown-command', `unknown command byte 0x${code.toString(16).padStart(2, '0')}`);
  }
}

function u32(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(value >>> 0, 0);
  return b;
}

/** Encodes one command as one packet (for the client side). */
export function encodeCommand(command: Command): Buffer {
  switch (command.type) {
    case 'optneg':
      return encodeFrame(SMFIC_OPTNEG, u32(command.version), u32(command.actions), u32(command.protocol));
    case 'connect': {
      const family = BYTE_BY_FAMILY[command.family];
      if (command.family === 'unknown') return encodeFrame(SMFIC_CONNECT, cString(command.hostname), Buffer.of(family));
      const port = Buffer.allocUnsafe(2);
      port.writeUInt16BE(command.port & 0xffff, 0);
      return encodeFrame(SMFIC_CONNECT, cString(command.hostname), Buffer.of(family), port, cString(command.address));
    }
    case 'macro': {
      if (command.stage === null) return encodeFrame(SMFIC_MACRO);
      const parts: Buffer[] = [Buffer.of(command.stage)];
      for (const [name, value] of command.macros) parts.push(cString(name), cString(value));
      return encodeFrame(SMFIC_MACRO, ...parts);
    }
    case 'helo':
      return encodeFrame(SMFIC_HELO, cString(command.name));
    case 'mail':
      return encodeFrame(SMFIC_MAIL, ...command.args.map(cString));
    case 'rcpt':
      return encodeFrame(SMFIC_RCPT, ...command.args.map(cString));
    case 'header':
      return encodeFrame(SMFIC_HEADER, cString(command.name), cString(command.value));
    case 'unknown':
      return encodeFrame(SMFIC_UNKNOWN, cString(command.command));
    case 'body':
      return encodeFrame(SMFIC_BODY, command.chunk);
    case 'eom':
      return encodeFrame(SMFIC_BODYEOB, command.chunk);
    case 'data':
      return encodeFrame(SMFIC_DATA);
    case 'eoh':
      return encodeFrame(SMFIC_EOH);
    case 'abort':
      return encodeFrame(SMFIC_ABORT);
    case 'quit':
      return encodeFrame(SMFIC_QUIT);
    case 'quit_nc':
      return encodeFrame(SMFIC_QUIT_NC);
    default: {
      const never: never = command;
      throw new Error(`unhandled command ${JSON.stringify(never)}`);
    }
  }
}
