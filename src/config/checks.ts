// Runs in: the milter process (and check-config).
//
// The start-up checks: everything `serve` would trip on once it starts
// (docs/reference.md §3), asked of a loaded configuration without starting
// anything. `check-config` prints their findings; `serve` runs the same
// checks first and refuses to start on an error, one line each, instead of
// failing half-way with a stack trace.
//
// A module whose start-up can fail registers its own check here
// (registerStartupCheck), e.g. the alias tables (do they answer?) or the
// launcher (is its binary there?). src/cli/startup-checks.ts imports every
// module that registers one, so both commands see them all.
import type { Config } from './schema.js';

export interface Finding {
  /** error: serve would not start (or would fail at once); warning: it starts, but the administrator should know. */
  severity: 'error' | 'warning';
  /** One line, naming the key (public name) and what is wrong. */
  text: string;
}

/** What a check may know about the process besides the configuration. */
export interface CheckContext {
  /** The milter can run filters as their users (root, or ambient CAP_SETUID + CAP_SETGID). */
  switchUsers: boolean;
  /** euid 0. */
  root: boolean;
  uid: number;
  env: NodeJS.ProcessEnv;
}

export interface StartupCheck {
  /** Short name for the reader of the code and the tests ("recipients.map", "launcher"). */
  name: string;
  run(config: Config, context: CheckContext): Promise<Finding[]> | Finding[];
}

const registry: StartupCheck[] = [];

/** Adds a check; a second check of the same name replaces the first (modules may be loaded twice in tests). */
export function registerStartupCheck(check: StartupCheck): void {
  const i = registry.findIndex((c) => c.name === check.name);
  if (i >= 0) registry[i] = check;
  else registry.push(check);
}

export function registeredChecks(): readonly StartupCheck[] {
  return registry;
}

export const error = (text: string): Finding => ({ severity: 'error', text });
export const warning = (text: string): Finding => ({ severity: 'warning', text });

/**
 * Runs every check (concurrently: some ask NSS or postmap). A check that
 * throws is itself a finding, never a crash: check-config must never show a
 * stack trace.
 */
export async function runStartupChecks(config: Config, context: CheckContext, checks: readonly StartupCheck[] = registry): Promise<Finding[]> {
  const results = await Promise.all(
    checks.map(async (c) => {
      try {
        return await c.run(config, context);
      } catch (err) {
        return [error(`${c.name}: the check itself failed: ${err instanceof Error ? err.message : String(err)}`)];
      }
    }),
  );
  return results.flat();
}
