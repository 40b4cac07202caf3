// Runs in: every process (pure).
//
// Splits the words after a subcommand into --config FILE, --dotted.key VALUE
// pairs (handed to convict) and whatever else the subcommand takes.
import { ConfigError } from '../config/load.js';
import { leafKeys } from '../config/schema.js';

export interface SplitArgs {
  configFile: string | undefined;
  /** `--dotted.key value` words, normalised to `--dotted.key=value`. */
  keyArgs: string[];
  /** Options and operands the subcommand itself handles, in order. */
  rest: string[];
}

const KEYS = new Set(leafKeys());

export function splitConfigArgs(argv: string[], ownOptions: readonly string[] = []): SplitArgs {
  const out: SplitArgs = { configFile: undefined, keyArgs: [], rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] as string;
    const eq = word.indexOf('=');
    const name = word.startsWith('--') ? (eq > 0 ? word.slice(2, eq) : word.slice(2)) : null;
    if (name === null || word === '--') {
      out.rest.push(...(word === '--' ? argv.slice(i + 1) : [word]));
      if (word === '--') break;
      continue;
    }
    const takeValue = (): string => {
      if (eq > 0) return word.slice(eq + 1);
      const v = argv[++i];
      if (v === undefined) throw new ConfigError([`--${name} needs a value`]);
      return v;
    };
    if (name === 'config') out.configFile = takeValue();
    else if (KEYS.has(name)) out.keyArgs.push(`--${name}=${takeValue()}`);
    else if (ownOptions.includes(name)) out.rest.push(`--${name}`, takeValue());
    else throw new ConfigError([`unknown option --${name}`]);
  }
  return out;
}
