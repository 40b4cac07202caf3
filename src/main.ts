#!/usr/bin/env node
// Runs in: the milter process (its entry point; also the `try` and `check-config` processes).
//
// The per-user-milter executable: dispatches to the subcommands of
// docs/reference.md §2.
import { readFileSync } from 'node:fs';
import { CHECK_CONFIG_USAGE, MAIN_USAGE, SERVE_USAGE, TRY_USAGE, wantsHelp } from './cli/usage.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const COMMAND_USAGE: Record<string, string> = { serve: SERVE_USAGE, 'check-config': CHECK_CONFIG_USAGE, try: TRY_USAGE };

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== undefined && COMMAND_USAGE[command] !== undefined && wantsHelp(rest)) {
    process.stdout.write(COMMAND_USAGE[command]);
    return 0;
  }
  switch (command) {
    case 'serve': {
      const { serveCommand } = await import('./cli/serve.js');
      return serveCommand(rest);
    }
    case 'check-config': {
      const { checkConfigCommand } = await import('./cli/check-config.js');
      return checkConfigCommand(rest);
    }
    case 'try': {
      const { tryCommand } = await import('./cli/try.js');
      return tryCommand(rest);
    }
    case '--version':
    case '-V':
      process.stdout.write(`per-user-milter ${pkg.version} (Node.js ${process.version})\n`);
      return 0;
    case '--help':
    case '-h':
    case 'help': {
      const topic = rest[0] !== undefined ? COMMAND_USAGE[rest[0]] : undefined;
      process.stdout.write(topic ?? MAIN_USAGE);
      return 0;
    }
    default:
      process.stderr.write(command === undefined ? MAIN_USAGE : `per-user-milter: unknown command '${command}'\n\n${MAIN_USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // A bug: say so plainly; the stack is for the bug report.
    process.stderr.write(`per-user-milter: internal error (please report): ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 70;
  },
);
