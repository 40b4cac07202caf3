// Runs in: the milter process (and check-config).
//
// The built-in start-up checks (src/config/checks.ts), one per thing `serve`
// needs before its first message: tables and files that must parse, a spool
// it can make, sandbox tools, coherent exit codes, a socket directory, and
// the privilege question. Modules with start-up checks of their own register
// them where they live; importing those modules here makes check-config and
// serve run them too.
import fs from 'node:fs';
import path from 'node:path';
import { error, registerStartupCheck, registeredChecks, runStartupChecks, warning, type CheckContext, type Finding } from '../config/checks.js';
import type { Config } from '../config/schema.js';
import { ownPrivileges, privilegeProblems } from '../filter/privileges.js';
import { findTool, launcherBinary } from '../launcher/start.js';
import { parseSocketSpec } from '../milter/socket-spec.js';
import { RecipientMap } from '../recipients/map.js';
import { aliasSpecProblem, openAliasTable } from '../recipients/aliases.js';
import { describeSpoolPlan, planSpoolDir } from '../spool/location.js';
import { parsePasswdLine } from '../users/resolve.js';

/** The nearest directory at or above `p` that exists. */
function existingAncestor(p: string): string {
  let dir = p;
  for (;;) {
    try {
      if (fs.statSync(dir).isDirectory()) return dir;
    } catch {
      // go up
    }
    const up = path.dirname(dir);
    if (up === dir) return dir;
    dir = up;
  }
}

function writable(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOENT') return 'no such file';
  if (e.code === 'EACCES') return 'permission denied';
  return e.message;
}

function checkRecipientMap(config: Config): Promise<Finding[]> | Finding[] {
  if (config.recipients.map === '') return [];
  return RecipientMap.load(config.recipients.map).then(
    () => [],
    // "FILE: ENOENT: no such file or directory, open 'FILE'" -> "FILE: no such file".
    (err: Error) => [error(`recipients.map: ${err.message.replace(/: (ENOENT|EACCES): .*$/, (_m, code: string) => `: ${code === 'ENOENT' ? 'no such file' : 'permission denied'}`)}`)],
  );
}

/** Each table of recipients.aliasMaps answers (a key it will not have: not found is fine, a failure is not). */
async function checkAliasMaps(config: Config): Promise<Finding[]> {
  const findings = await Promise.all(
    config.recipients.aliasMaps.map(async (spec): Promise<Finding[]> => {
      const problem = aliasSpecProblem(spec);
      if (problem !== '') return [error(`recipients.aliasMaps: ${problem}`)];
      try {
        await openAliasTable(spec).lookup(['per-user-milter-check-config']);
        return [];
      } catch (err) {
        return [error(`recipients.aliasMaps: ${(err as Error).message}`)];
      }
    }),
  );
  return findings.flat();
}

/**
 * What makes `file` (or a directory above it) untrusted, as the launcher
 * judges it at start (native/launcher.c check_account_files): not root's,
 * writable by group or others (a sticky directory too), or a symbolic link.
 * A missing group file is fine (the primary group only).
 */
export function accountFileProblem(file: string, mayBeMissing: boolean): string | null {
  for (let p = file; ; p = path.dirname(p)) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch (err) {
      if (mayBeMissing && p === file && (err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      return `${p}: ${errnoText(err)}`;
    }
    if (st.isSymbolicLink()) return `${p} is a symbolic link`;
    if (st.uid !== 0) return `${p} is not owned by root`;
    if ((st.mode & 0o022) !== 0) return `${p} is writable by group or others`;
    if (p === '/') return null;
  }
}

function checkUsers(config: Config): Finding[] {
  const out: Finding[] = [];
  const { passwdFile, minUid, maxUid } = config.users;
  if (minUid > maxUid) out.push(error(`users.minUid (${minUid}) is above users.maxUid (${maxUid}): nobody would get a filter run`));
  if (passwdFile === '') {
    if (!path.isAbsolute(findTool('getent'))) out.push(error('users.passwdFile is empty (users come from NSS) but getent is not installed (Debian package libc-bin)'));
    return out;
  }
  let text: string;
  try {
    text = fs.readFileSync(passwdFile, 'utf8');
  } catch (err) {
    return [...out, error(`users.passwdFile: ${passwdFile}: ${errnoText(err)}`)];
  }
  const groupFile = path.join(path.dirname(passwdFile), 'group');
  const untrusted = accountFileProblem(passwdFile, false) ?? accountFileProblem(groupFile, true);
  if (untrusted !== null) {
    out.push(error(`users.passwdFile: ${untrusted} (${passwdFile}, the group file beside it and every directory above must be root's and writable by root alone: they decide every user's groups)`));
  }
  const bad: number[] = [];
  for (const [i, line] of text.split('\n').entries()) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    if (parsePasswdLine(line) === null) bad.push(i + 1);
  }
  if (bad.length > 0) {
    const shown = bad.slice(0, 5).join(', ') + (bad.length > 5 ? ` and ${bad.length - 5} more` : '');
    out.push(error(`users.passwdFile: ${passwdFile}: not a passwd(5) line (NAME:x:UID:GID:GECOS:/HOME:SHELL) at line ${shown}`));
  }
  return out;
}

function checkSpool(config: Config, ctx: CheckContext): Finding[] {
  const plan = planSpoolDir(config.spool.dir, ctx.env);
  const dir = plan.kind === 'private' ? plan.parent : plan.dir;
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(dir);
  } catch {
    st = undefined;
  }
  if (st !== undefined && plan.kind !== 'private') {
    if (!st.isDirectory()) return [error(`spool.dir: ${describeSpoolPlan(plan)} exists and is not a directory`)];
    // Started as root, serve hands the directory to milter.user itself.
    if (st.uid !== ctx.uid && !ctx.root) return [error(`spool.dir: ${dir} is owned by uid ${st.uid}, not by the milter (uid ${ctx.uid}); it must be the milter's alone`)];
    return [];
  }
  const base = st === undefined ? existingAncestor(dir) : dir;
  if (!writable(base)) return [error(`spool.dir: cannot make ${describeSpoolPlan(plan)}: ${base} is not writable for uid ${ctx.uid}`)];
  return [];
}

/** The launcher (native/, built by npm ci) and what the sandbox needs (docs/sandbox.md). */
function checkSandbox(config: Config, ctx: CheckContext): Finding[] {
  const out: Finding[] = [];
  const sandbox = config.filter.sandbox;
  try {
    fs.accessSync(launcherBinary(ctx.env), fs.constants.X_OK);
  } catch {
    out.push(error(`the launcher ${launcherBinary(ctx.env)} is not built: run npm ci (it needs a C compiler and make)`));
  }
  if (sandbox === 'bwrap' && !path.isAbsolute(findTool('bwrap'))) out.push(error('filter.sandbox=bwrap needs bwrap, which is not installed (Debian package bubblewrap)'));
  if (ctx.switchUsers) for (const p of privilegeProblems(config, 0)) out.push(error(p));
  if (!ctx.switchUsers) {
    out.push(warning(`started without root: the launcher cannot switch users, so only programs owned by uid ${ctx.uid} run; every other user's filter is unsafe`));
  }
  return out;
}

function checkExitCodes(config: Config): Finding[] {
  const { reject, tempfail } = config.filter.exitCodes;
  const out: Finding[] = [];
  const both = reject.filter((c) => tempfail.includes(c));
  if (both.length > 0) out.push(error(`filter.exitCodes: ${both.join(', ')} in both reject and tempfail; an exit code has one meaning`));
  if (reject.includes(0)) out.push(error('filter.exitCodes.reject contains 0: exit 0 is accept, every filter that passes a message would reject it'));
  if (tempfail.includes(0)) out.push(error('filter.exitCodes.tempfail contains 0: exit 0 is accept, every filter that passes a message would defer it'));
  return out;
}

function checkSiteDefault(config: Config): Finding[] {
  const file = config.filter.default;
  if (file === '') return [];
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    return [error(`filter.default: ${file}: ${errnoText(err)}`)];
  }
  const out: Finding[] = [];
  if (!st.isFile()) out.push(error(`filter.default: ${file} is not a regular file`));
  if (st.uid !== 0) out.push(error(`filter.default: ${file} is owned by uid ${st.uid}; it runs as every user without a filter, so it must be owned by root`));
  if ((st.mode & 0o022) !== 0) out.push(error(`filter.default: ${file} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)}); it must be writable by root only`));
  if ((st.mode & 0o111) === 0) out.push(error(`filter.default: ${file} is not executable`));
  return out;
}

function checkListen(config: Config): Finding[] {
  const spec = parseSocketSpec(config.milter.listen);
  if (spec.kind !== 'unix') return [];
  const dir = path.dirname(spec.path);
  try {
    if (!fs.statSync(dir).isDirectory()) return [error(`milter.listen: ${dir} is not a directory`)];
  } catch (err) {
    return [error(`milter.listen: the socket directory ${dir}: ${errnoText(err)} (deploy/systemd/tmpfiles.d makes it)`)];
  }
  return [];
}

for (const [name, run] of [
  ['recipients.map', checkRecipientMap],
  ['recipients.aliasMaps', checkAliasMaps],
  ['users', checkUsers],
  ['spool.dir', checkSpool],
  ['filter.sandbox', checkSandbox],
  ['filter.exitCodes', checkExitCodes],
  ['filter.default', checkSiteDefault],
  ['milter.listen', checkListen],
] as const) {
  registerStartupCheck({ name, run });
}

/** The context of this process. */
export function ownCheckContext(env: NodeJS.ProcessEnv = process.env): CheckContext {
  const p = ownPrivileges();
  return { switchUsers: p.switchUsers, root: p.root, uid: process.getuid?.() ?? -1, env };
}

/** Every registered check against `config`, in this process. */
export function checkStartup(config: Config, env: NodeJS.ProcessEnv = process.env): Promise<Finding[]> {
  return runStartupChecks(config, ownCheckContext(env), registeredChecks());
}
