// Runs in: its own short process (`per-user-milter check-config`).
//
// `per-user-milter check-config`: validate, print the effective configuration,
// exit 0; or print one line per problem and exit 1.
import { ConfigError, loadConfig } from '../config/load.js';
import { splitConfigArgs } from './args.js';

export function checkConfigCommand(argv: string[]): number {
  let parsed;
  try {
    parsed = splitConfigArgs(argv);
    if (parsed.rest.length > 0) throw new ConfigError([`unexpected argument: ${parsed.rest[0]}`]);
    const { config, file } = loadConfig({ file: parsed.configFile, args: parsed.keyArgs });
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
