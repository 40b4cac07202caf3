// Runs in: every process (pure).
//
// The filter's whole environment (docs/reference.md §4): Postfix local(8)
// and pipe(8) names, values as the MTA sent them with control characters
// removed, nothing else. The launcher accepts the envelope names from us and
// sets the first five itself (native/child.c).
import type { EnvelopeFacts } from './job.js';
import type { UserAccount } from '../users/user.js';

export const FILTER_PATH = '/usr/local/bin:/usr/bin:/bin';

/** The environment variables a filter gets, in this order, and nothing else. */
export const FILTER_ENV_NAMES = [
  'HOME', 'USER', 'LOGNAME', 'SHELL', 'PATH',
  'SENDER', 'RECIPIENT', 'LOCAL', 'EXTENSION', 'DOMAIN',
  'CLIENT_ADDRESS', 'CLIENT_HOSTNAME', 'CLIENT_HELO', 'CLIENT_PROTOCOL',
  'QUEUE_ID', 'SASL_METHOD', 'SASL_USERNAME',
] as const;

/** The launcher takes NAME=VALUE entries of at most 4096 bytes (native/launcher.h MAX_ENV_LEN). */
const MAX_ENTRY_BYTES = 4096;

/** Control characters (C0, DEL, C1) removed; cut to what the launcher takes. */
export function envValue(v: unknown, name = ''): string {
  // eslint-disable-next-line no-control-regex
  let s = String(v ?? '').replace(/[\u0000-\u001f\u007f-\u009f]/g, '');
  const room = MAX_ENTRY_BYTES - name.length - 1;
  while (Buffer.byteLength(s, 'utf8') > room) s = s.slice(0, -1);
  return s;
}

/**
 * What a client sends the launcher: the envelope names only, each once.
 * HOME, USER, LOGNAME, SHELL and PATH (FILTER_PATH) the launcher sets from
 * the account it looks up itself.
 */
export function envelopeEnvironment(envelope: EnvelopeFacts): string[] {
  return FILTER_ENV_NAMES.slice(5).map((name) => `${name}=${envValue(envelope[name as keyof EnvelopeFacts], name)}`);
}

export function filterEnvironment(user: UserAccount, envelope: EnvelopeFacts): Record<string, string> {
  const raw: Record<string, string> = {
    HOME: user.home,
    USER: user.name,
    LOGNAME: user.name,
    SHELL: user.shell || '/bin/sh',
    PATH: FILTER_PATH,
  };
  for (const name of FILTER_ENV_NAMES.slice(5)) raw[name] = String(envelope[name as keyof EnvelopeFacts] ?? '');
  const env: Record<string, string> = {};
  for (const name of FILTER_ENV_NAMES) env[name] = envValue(raw[name], name);
  return env;
}
