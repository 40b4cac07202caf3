// Runs in: every process (pure: texts).
//
// The usage text of each command (docs/reference.md §2), printed by --help
// on standard output. per-user-milter(8) says the same at length.

export const SERVE_USAGE = `Usage: per-user-milter serve [--config FILE] [--KEY VALUE ...]

Run the milter in the foreground. SIGTERM or SIGINT: stop accepting, finish or
tempfail the messages in flight, remove spool files, exit 0. SIGHUP: read the
configuration file again without dropping connections.

Before it listens, serve runs the checks of check-config and refuses to start
(exit 1, one line per problem) when one fails.

Options:
  --config FILE     configuration file (JSON with comments); default
                    /etc/per-user-milter/config.json when it exists
  --KEY VALUE       any configuration key, e.g. --milter.listen unix:/run/pum.sock
  -h, --help        this text
`;

export const CHECK_CONFIG_USAGE = `Usage: per-user-milter check-config [--config FILE] [--KEY VALUE ...]

Validate the configuration and check what serve needs at start: the map and
passwd files parse, the spool directory can be made, the sandbox tools exist,
the exit-code lists make sense, the socket directory exists, and whether this
process can run filters as their users. Prints the effective configuration on
standard output; exits 0, or 1 with one line per problem on standard error.

Options:
  --config FILE     configuration file; default /etc/per-user-milter/config.json when it exists
  --KEY VALUE       any configuration key
  -h, --help        this text
`;

export const TRY_USAGE = `Usage: per-user-milter try --user NAME [options] [--config FILE] [--KEY VALUE ...] [FILE]

Run NAME's filter on one message (FILE, or standard input) exactly as the
milter would: same user lookup, user switch, sandbox, limits, environment and
message form. Prints the outcome, exit code, duration and reply text.
Exit status: 0 accept, 1 reject, 75 tempfail, 2 anything else.

Options:
  --user NAME            the local user whose filter runs (required)
  --sender ADDR          envelope sender (SENDER; default: the message's Return-Path, else empty)
  --recipient ADDR       this user's envelope address (RECIPIENT; default NAME@localhost)
  --client-address IP    the SMTP client's address (CLIENT_ADDRESS)
  --helo NAME            the SMTP client's HELO/EHLO name (CLIENT_HELO)
  --sasl-username NAME   the authenticated SMTP user (SASL_USERNAME)
  --rcpt-stage           run NAME's RCPT-stage program (filter.rcptPath) instead, with no message
  --config FILE          configuration file
  --KEY VALUE            any configuration key
  -h, --help             this text
`;

export const MAIN_USAGE = `Usage:
  per-user-milter serve [--config FILE] [--KEY VALUE ...]
      Run the milter in the foreground until SIGTERM/SIGINT; SIGHUP reloads.
  per-user-milter check-config [--config FILE] [--KEY VALUE ...]
      Validate and print the effective configuration (exit 0, or 1 with one line per problem).
  per-user-milter try --user NAME [--sender ADDR] [--recipient ADDR] [--client-address IP]
                      [--helo NAME] [--sasl-username NAME] [--rcpt-stage] [--config FILE] [FILE]
      Run NAME's filter on FILE (or stdin) exactly as the milter would; exit 0 accept,
      1 reject, 75 tempfail, 2 anything else.
  per-user-milter --version | --help
  per-user-milter COMMAND --help

Every configuration key can be given as --dotted.key VALUE (e.g. --milter.listen unix:/run/pum.sock)
or as PER_USER_MILTER_DOTTED_KEY in the environment. Precedence: command line > environment > file > defaults.
The configuration file defaults to /etc/per-user-milter/config.json when it exists.
Manual pages: per-user-milter(8), per-user-milter.conf(5), per-user-milter-filter(5).
`;

/** True when the words ask for help (before a `--` that ends the options). */
export function wantsHelp(argv: readonly string[]): boolean {
  for (const w of argv) {
    if (w === '--') return false;
    if (w === '--help' || w === '-h') return true;
  }
  return false;
}
