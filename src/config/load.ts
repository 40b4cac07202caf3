// Runs in: the milter process (and `try`, `check-config`).
//
// Loads the configuration: defaults < file < environment < command line, as
// the contract says (convict applies env and args after the file itself).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import convict from 'convict';
import { SCHEMA_NAMES, schema, type Config } from './schema.js';

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

function fail(message: string): never {
  throw new Error(message);
}

let formatsAdded = false;
function addFormats(): void {
  if (formatsAdded) return;
  formatsAdded = true;
  convict.addFormats({
    'listen-spec': {
      validate(v: unknown) {
        if (typeof v !== 'string') fail('must be a string');
        if (!/^(inet:\d{1,5}(@.+)?|inet6:\d{1,5}(@.+)?|(unix|local):\/.+)$/.test(v)) {
          fail('must be inet:PORT@HOST, inet6:PORT@HOST, unix:/ABS/PATH or local:/ABS/PATH');
        }
        const port = /^inet6?:(\d+)/.exec(v)?.[1];
        if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) fail('port must be 1-65535');
      },
    },
    'metrics-listen': {
      validate(v: unknown) {
        if (typeof v !== 'string') fail('must be a string');
        if (v === '') return;
        const m = /^(.*):(\d{1,5})$/.exec(v);
        if (!m || Number(m[2]) > 65535) fail('must be HOST:PORT (IPv6 as [::1]:PORT) or empty');
      },
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
      coerce: (v: unknown) => (typeof v === 'string' ? v.split(',').map((s) => Number(s.trim())) : v),
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

export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  addFormats();
  const env = opts.env ?? process.env;
  const conf = convict(schema as never, { args: opts.args ?? [], env: env as Record<string, string> });
  let file: string | null = null;
  const problems: string[] = [];
  if (opts.file !== undefined) file = opts.file;
  else if (fs.existsSync(DEFAULT_CONFIG_FILE)) file = DEFAULT_CONFIG_FILE;
  if (file !== null) {
    let data: unknown;
    try {
      data = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ConfigError([`${file}: ${(err as Error).message}`]);
    }
    if (typeof data !== 'object' || data === null || Array.isArray(data)) {
      throw new ConfigError([`${file}: must contain one JSON object`]);
    }
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
  if (problems.length > 0) throw new ConfigError(problems);
  const config = conf.getProperties() as unknown as Record<string, unknown>;
  for (const [pub, internal] of Object.entries(SCHEMA_NAMES)) rename(config, internal, pub);
  return { config: config as unknown as Config, file };
}
