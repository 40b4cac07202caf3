#!/usr/bin/env node
// The per-user-milter executable: dispatches to the subcommands of docs/reference.md §2.
import { readFileSync } from 'node:fs';
import { checkConfigCommand } from './cli/check-config.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const HELP = `Usage:
  per-user-milter serve [--config FILE] [--KEY VALUE ...]
      Run the milter in the foreground until SIGTERM/SIGINT; SIGHUP reloads.
  per-user-milter check-config [--config FILE] [--KEY VALUE ...]
      Validate and print the effective configuration (exit 0, or 1 with one line per problem).
  per-user-milter try --user NAME [--sender ADDR] [--recipient ADDR] [--config FILE] [FILE]
      Run NAME's filter on FILE (or stdin) exactly as the milter would; exit 0 accept,
      1 reject, 75 tempfail, 2 anything else.
  per-user-milter --version | --help

Every configuration key can be given as --dotted.key VALUE (e.g. --milter.listen unix:/run/pum.sock)
or as PER_USER_MILTER_DOTTED_KEY in the environment. Precedence: command line > environment > file > defaults.
The configuration file defaults to /etc/per-user-milter/config.json when it exists.
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve': {
      const { serveCommand } = await import('./cli/serve.js');
      return serveCommand(rest);
    }
    case 'check-config':
      return checkConfigCommand(rest);
    case 'try': {
      const { tryCommand } = await import('./cli/try.js');
      return tryCommand(rest);
    }
    case '--version':
    case '-V':
      process.stdout.write(`per-user-milter ${pkg.version}\n`);
      return 0;
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(HELP);
      return 0;
    default:
      process.stderr.write(command === undefined ? HELP : `per-user-milter: unknown command '${command}'\n\n${HELP}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`per-user-milter: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 70;
  },
);
