// Runs in: the milter process (and `try`, `check-config`).
//
// Loads the configuration: defaults < file < environment < command line, as
// docs/reference.md §3 says (convict applies env and args after the file
// itself). The file is JSON with comments (JSONC: `//` and `/* */`), parsed
// by jsonc-parser, the parser of VS Code's settings files; a syntax error
// names the file, line and column. Every problem is one line that names the
// key by its public name.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import convict from 'convict';
import jsonc from 'jsonc-parser';
import { parseMetricsListen } from '../metrics/listen.js';
import { parseSocketSpec } from '../milter/socket-spec.js';
import { SCHEMA_NAMES, publicName, schema, type Config } from './schema.js';

export const DEFAULT_CONFIG_FILE = '/etc/per-user-milter/config.json';

/** A configuration that failed validation; `problems` has one line each. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

/** `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a /32 or /128). */
export function isCidr(s: string): boolean {
  const [addr = '', bits, ...rest] = s.split('/');
  if (rest.length > 0) return false;
  const family = net.isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

const BOOLEAN_WORDS: Readonly<Record<string, boolean>> = {
  true: true, false: false, '1': true, '0': false, yes: true, no: false, on: true, off: false,
};

function fail(message: string): never {
  throw new Error(message);
}

let formatsAdded = false;
function addFormats(): void {
  if (formatsAdded) return;
  formatsAdded = true;
  convict.addFormats({
    // The server's own parser, so its hints ("that is Postfix syntax") reach the user.
    'listen-spec': {
      validate(v: unknown) {
        if (typeof v !== 'string') fail('must be a string');
        let spec;
        try {
          spec = parseSocketSpec(v);
        } catch (err) {
          fail((err as Error).message);
        }
        if (spec.kind === 'unix' && !path.isAbsolute(spec.path)) fail(`${JSON.stringify(v)}: the socket path must be absolute`);
      },
    },
    'metrics-listen': {
      validate(v: unknown) {
        if (typeof v !== 'string') fail('must be a string');
        try {
          parseMetricsListen(v);
        } catch (err) {
          fail((err as Error).message.replace(/^metrics\.listen: /, ''));
        }
      },
    },
    // Booleans from the environment and the command line arrive as words;
    // convict's own Boolean reads every word but "false" as true.
    'strict-boolean': {
      validate(v: unknown) {
        if (typeof v !== 'boolean') fail(`must be true or false (from the environment or command line also 1/0, yes/no, on/off), got ${JSON.stringify(v)}`);
      },
      coerce: (v: unknown) => (typeof v === 'string' ? (BOOLEAN_WORDS[v.trim().toLowerCase()] ?? v) : v),
    },
    'file-mode': {
      validate(v: unknown) {
        if (typeof v !== 'string' || !/^0?[0-7]{3}$/.test(v)) fail('must be an octal mode such as "0660"');
      },
      coerce: (v: unknown) => String(v),
    },
    'positive-int': {
      validate(v: unknown) {
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) fail('must be a positive integer');
      },
      coerce: (v: unknown) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
    },
    // Not convict's 'nat': its parseInt reads "12abc" from the environment as 12.
    'non-negative-int': {
      validate(v: unknown) {
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) fail('must be an integer, 0 or more');
      },
      coerce: (v: unknown) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
    },
    'absolute-path': {
      validate(v: unknown) {
        if (typeof v !== 'string' || !path.isAbsolute(v)) fail('must be an absolute path');
      },
    },
    'optional-path': {
      validate(v: unknown) {
        if (typeof v !== 'string' || (v !== '' && !path.isAbsolute(v))) fail('must be empty or an absolute path');
      },
    },
    'filter-path': {
      validate(v: unknown) {
        if (typeof v !== 'string' || !(v.startsWith('/') || v.startsWith('~/'))) {
          fail('must start with / or ~/ (%u is the user name)');
        }
      },
    },
    'optional-filter-path': {
      validate(v: unknown) {
        if (typeof v !== 'string' || !(v === '' || v.startsWith('/') || v.startsWith('~/'))) {
          fail('must be empty or start with / or ~/ (%u is the user name)');
        }
      },
    },
    'cgroup-setting': {
      validate(v: unknown) {
        if (typeof v !== 'string' || !(v === 'auto' || v === 'none' || path.isAbsolute(v))) fail('must be auto, none or an absolute path');
      },
    },
    'address-extension': {
      validate(v: unknown) {
        if (typeof v !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(v)) fail('must be 1-64 letters, digits, dots, dashes or underscores');
      },
    },
    'cidr-list': {
      validate(v: unknown) {
        if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || !isCidr(s))) {
          fail('must be a list of CIDR blocks such as 192.0.2.0/24 or 2001:db8::/32');
        }
      },
      coerce: (v: unknown) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v),
    },
    'string-list': {
      validate(v: unknown) {
        if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || s === '')) {
          fail('must be a list of non-empty strings');
        }
      },
      coerce: (v: unknown) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v),
    },
    'exit-code-list': {
      validate(v: unknown) {
        if (!Array.isArray(v) || v.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) {
          fail('must be a list of exit codes 0-255');
        }
      },
      coerce: (v: unknown) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean).map((s) => (/^\d+$/.test(s) ? Number(s) : s)) : v),
    },
    'smtp-reply-5': {
      validate(v: unknown) {
        if (typeof v !== 'string' || !/^5\d\d 5\.\d{1,3}\.\d{1,3} [\x20-\x7e]+$/.test(v)) {
          fail('must be "5xx 5.x.y text"');
        }
      },
    },
    'smtp-reply-4': {
      validate(v: unknown) {
        if (typeof v !== 'string' || !/^4\d\d 4\.\d{1,3}\.\d{1,3} [\x20-\x7e]+$/.test(v)) {
          fail('must be "4xx 4.x.y text"');
        }
      },
    },
  });
}

/** Moves `from` (dotted) to `to` inside a nested object, in place, when present. */
function rename(obj: Record<string, unknown>, from: string, to: string): void {
  const f = from.split('.');
  const t = to.split('.');
  const parentOf = (parts: string[]): Record<string, unknown> | undefined => {
    let o: unknown = obj;
    for (const p of parts.slice(0, -1)) o = typeof o === 'object' && o !== null ? (o as Record<string, unknown>)[p] : undefined;
    return typeof o === 'object' && o !== null && !Array.isArray(o) ? (o as Record<string, unknown>) : undefined;
  };
  const src = parentOf(f);
  const key = f[f.length - 1] as string;
  if (!src || !Object.prototype.hasOwnProperty.call(src, key)) return;
  const dst = parentOf(t);
  if (!dst) return;
  dst[t[t.length - 1] as string] = src[key];
  delete src[key];
}

export interface LoadOptions {
  /** Explicit --config FILE; when absent the default file is used if it exists. */
  file?: string | undefined;
  /** Command-line words after the subcommand (`--dotted.key value` pairs). */
  args?: string[];
  /** Environment; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface LoadedConfig {
  config: Config;
  /** The file that was read, or null for built-in defaults. */
  file: string | null;
}

/** The text with comments blanked (for looking back from an error). */
function stripComments(text: string): string {
  return jsonc.stripComments(text);
}

/** 1-based line and column of a character offset. */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return { line, column: offset - before.lastIndexOf('\n') };
}

const SYNTAX_WORDS: Readonly<Record<string, string>> = {
  InvalidSymbol: 'unexpected character',
  InvalidNumberFormat: 'malformed number',
  PropertyNameExpected: 'a "quoted" key expected',
  ValueExpected: 'a value expected',
  ColonExpected: "':' expected",
  CommaExpected: "',' expected",
  CloseBraceExpected: "'}' expected",
  CloseBracketExpected: "']' expected",
  EndOfFileExpected: 'nothing expected after the closing }',
  InvalidCommentToken: 'malformed comment',
  UnexpectedEndOfComment: 'comment not closed',
  UnexpectedEndOfString: 'string not closed',
  UnexpectedEndOfNumber: 'number not finished',
  InvalidUnicode: 'malformed \\u escape',
  InvalidEscapeCharacter: 'malformed escape',
  InvalidCharacter: 'control character in a string',
};

/**
 * Parses configuration file text: JSON plus `//` and `/* *\/` comments (no
 * trailing commas, so the file stays JSON once the comments are gone).
 * Throws a ConfigError with one `FILE:LINE:COLUMN: what` line per problem.
 */
export function parseConfigText(text: string, file: string): Record<string, unknown> {
  const errors: jsonc.ParseError[] = [];
  const data: unknown = jsonc.parse(text, errors, { allowTrailingComma: false, disallowComments: false, allowEmptyContent: false });
  if (errors.length > 0) {
    const lines = errors.map((e) => {
      const { line, column } = lineColumn(text, e.offset);
      const code = jsonc.printParseErrorCode(e.error);
      const trailingComma = (code === 'PropertyNameExpected' || code === 'ValueExpected') && /,\s*$/.test(stripComments(text.slice(0, e.offset)));
      return `${file}:${line}:${column}: ${trailingComma ? 'a comma before a closing } or ] (JSON allows none)' : (SYNTAX_WORDS[code] ?? code)}`;
    });
    // One mistake often yields more errors after it: report the first, as a compiler does.
    throw new ConfigError(lines.slice(0, 1));
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new ConfigError([`${file}: must contain one JSON object`]);
  }
  return data as Record<string, unknown>;
}

/** convict names keys by their schema name: give the public one (filter.default, not filter.siteDefault). */
function publicMessage(line: string): string {
  let out = line;
  for (const internal of Object.values(SCHEMA_NAMES)) out = out.replaceAll(internal, publicName(internal));
  const unknown = /^configuration param '(.+)' not declared in the schema$/.exec(out);
  if (unknown) return `${unknown[1]}: unknown key (every key: per-user-milter.conf(5))`;
  // convict appends the value; our messages mostly quote it already.
  const m = /^(.*): value was (.*)$/s.exec(out);
  if (m && (m[1] ?? '').includes(m[2] ?? '')) out = m[1] ?? out;
  return out;
}

export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  addFormats();
  const env = opts.env ?? process.env;
  const conf = convict(schema as never, { args: opts.args ?? [], env: env as Record<string, string> });
  let file: string | null = null;
  const problems: string[] = [];
  if (opts.file !== undefined) file = opts.file;
  else if (fs.existsSync(DEFAULT_CONFIG_FILE)) file = DEFAULT_CONFIG_FILE;
  if (file !== null) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new ConfigError([`${file}: cannot read it: ${e.code === 'ENOENT' ? 'no such file' : e.message}`]);
    }
    const data = parseConfigText(text, file);
    for (const [pub, internal] of Object.entries(SCHEMA_NAMES)) rename(data as Record<string, unknown>, pub, internal);
    try {
      conf.load(data as object);
    } catch (err) {
      problems.push(...String((err as Error).message).split('\n').filter(Boolean));
    }
  }
  try {
    conf.validate({ allowed: 'strict' });
  } catch (err) {
    problems.push(...String((err as Error).message).split('\n').filter(Boolean));
  }
  if (problems.length > 0) throw new ConfigError(problems.map(publicMessage));
  const config = conf.getProperties() as unknown as Record<string, unknown>;
  for (const [pub, internal] of Object.entries(SCHEMA_NAMES)) rename(config, internal, pub);
  return { config: config as unknown as Config, file };
}
