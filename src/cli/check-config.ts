// `per-user-milter check-config`: validate, print the effective configuration,
// exit 0; or print one line per problem and exit 1.
import { ConfigError, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { privilegeProblems } from '../filter/privileges.js';
import { splitConfigArgs } from './args.js';

export function checkConfigCommand(argv: string[]): number {
  let parsed;
  try {
    parsed = splitConfigArgs(argv);
    if (parsed.rest.length > 0) throw new ConfigError([`unexpected argument: ${parsed.rest[0]}`]);
    const { config, file } = loadConfig({ file: parsed.configFile, args: parsed.keyArgs });
    const problems = launcherProblems(config);
    if (problems.length > 0) throw new ConfigError(problems);
    process.stderr.write(`configuration OK (${file ?? 'built-in defaults'})\n`);
    process.stdout.write(JSON.stringify(config, null, 2) + '\n');
    return 0;
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const line of err.problems) process.stderr.write(`per-user-milter: config: ${line}\n`);
      return 1;
    }
    throw err;
  }
}

/** What serve would refuse about the launcher at start (docs/sandbox.md): sandbox none when it can switch users. */
export function launcherProblems(config: Config, euid: number = process.geteuid?.() ?? -1): string[] {
  return privilegeProblems(config, euid);
}
