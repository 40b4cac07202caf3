// Runs in: its own short process (`per-user-milter check-config`).
//
// `per-user-milter check-config`: validate, run the start-up checks that
// serve runs (src/cli/startup-checks.ts), print the effective configuration,
// exit 0; or print one line per problem and exit 1. Never a stack trace.
import { ConfigError, loadConfig } from '../config/load.js';
import { describeSpoolPlan, planSpoolDir } from '../spool/location.js';
import { splitConfigArgs } from './args.js';
import { checkStartup } from './startup-checks.js';

function problem(line: string): void {
  process.stderr.write(`per-user-milter: config: ${line}\n`);
}

export async function checkConfigCommand(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  try {
    const parsed = splitConfigArgs(argv);
    if (parsed.rest.length > 0) throw new ConfigError([`unexpected argument: ${parsed.rest[0]}`]);
    const { config, file } = loadConfig({ file: parsed.configFile, args: parsed.keyArgs, env });
    const findings = await checkStartup(config, env);
    for (const f of findings) {
      if (f.severity === 'warning') process.stderr.write(`per-user-milter: warning: ${f.text}\n`);
      else problem(f.text);
    }
    if (findings.some((f) => f.severity === 'error')) return 1;
    process.stderr.write(`configuration OK (${file ?? 'built-in defaults'})\n`);
    process.stderr.write(`spool: ${describeSpoolPlan(planSpoolDir(config.spool.dir, env))}\n`);
    process.stdout.write(JSON.stringify(config, null, 2) + '\n');
    return 0;
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const line of err.problems) problem(line);
      return 1;
    }
    problem(`cannot check: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
