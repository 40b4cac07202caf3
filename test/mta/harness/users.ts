// Real system accounts for the end-to-end tests: useradd with the prefix
// `pumtest-`, a random tag (parallel suites never share accounts), a real
// ~/.user-milter filter each, and userdel -r at the end.
import { chmodSync, chownSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomTag, run, sleep } from './util.js';

export interface TestUser {
  /** The account name, e.g. pumtest-3fa1-alice. */
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
  /** Installs ~/.user-milter (owned by the user, 0755) with this shell script body; null removes it. */
  setFilter(script: string | null): void;
  /** A path in the user's home. */
  file(rel: string): string;
  /** Contents of a file in the user's home, or undefined. */
  read(rel: string): string | undefined;
  /** Removes files the filters wrote (runs, saved.*), keeps the filter. */
  clean(): void;
  /** The RECIPIENT of every filter run since clean(). */
  runs(): string[];
}

export interface TestUsers {
  readonly tag: string;
  readonly all: readonly TestUser[];
  get(short: string): TestUser;
  remove(): Promise<void>;
}

/**
 * Ready-made filter scripts (POSIX sh). Every one first appends
 * "$RECIPIENT" to ~/runs (so a test can count the runs), then reads all of
 * stdin, as real filters do.
 */
const RUN = 'echo "$RECIPIENT" >> "$HOME/runs"\n';
export const filters = {
  accept: () => `${RUN}cat >/dev/null\nexit 0\n`,
  reject: (text: string) => `${RUN}cat >/dev/null\necho '${text}'\nexit 1\n`,
  tempfail: (text: string) => `${RUN}cat >/dev/null\necho '${text}'\nexit 75\n`,
  /** Never finishes on its own (killed by filter.timeout). */
  hang: () => `${RUN}cat >/dev/null\nsleep 3600\nexit 0\n`,
  /** Takes `seconds`, then accepts. */
  slow: (seconds: number) => `${RUN}cat >/dev/null\nsleep ${seconds}\nexit 0\n`,
  /** Saves the message, its environment, id and cwd in the home directory, then exits `code`. */
  save: (code = 0) =>
    `${RUN}cat > "$HOME/saved.eml"\nenv > "$HOME/saved.env"\nid > "$HOME/saved.id"\npwd > "$HOME/saved.pwd"\numask > "$HOME/saved.umask"\nexit ${code}\n`,
  /** Any script body. */
  script: (body: string) => `${RUN}${body}`,
};

async function retry(cmd: string, args: string[]): Promise<void> {
  for (let i = 0; ; i++) {
    const r = await run(cmd, args);
    if (r.code === 0) return;
    // another suite may hold the passwd lock for a moment
    if (i < 20 && /lock|try again/i.test(r.stderr)) {
      await sleep(250);
      continue;
    }
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  }
}

function lookup(name: string): { uid: number; gid: number; home: string } {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(name + ':'));
  if (!line) throw new Error(`no passwd entry for ${name}`);
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]), home: f[5]! };
}

/** Creates one account per short name: pumtest-<tag>-<short>. */
export async function createTestUsers(shorts: readonly string[]): Promise<TestUsers> {
  const tag = randomTag(2);
  const made: TestUser[] = [];
  const remove = async () => {
    for (const u of made.splice(0)) {
      await run('userdel', ['-r', '-f', u.name]);
      if (existsSync(u.home)) rmSync(u.home, { recursive: true, force: true });
    }
  };
  try {
    for (const s of shorts) {
      const name = `pumtest-${tag}-${s}`;
      if (name.length > 32) throw new Error(`user name too long: ${name}`);
      await retry('useradd', ['-m', '-s', '/bin/sh', '-K', 'UID_MIN=2000', name]);
      const { uid, gid, home } = lookup(name);
      chmodSync(home, 0o755);
      const filterPath = path.join(home, '.user-milter');
      made.push({
        name,
        uid,
        gid,
        home,
        setFilter(script) {
          if (script === null) {
            rmSync(filterPath, { force: true });
            return;
          }
          writeFileSync(filterPath, `#!/bin/sh\n${script}`);
          chownSync(filterPath, uid, gid);
          chmodSync(filterPath, 0o755);
        },
        file: (rel) => path.join(home, rel),
        read: (rel) => {
          const p = path.join(home, rel);
          return existsSync(p) ? readFileSync(p, 'latin1') : undefined;
        },
        runs: () => {
          const p = path.join(home, 'runs');
          return existsSync(p) ? readFileSync(p, 'latin1').split('\n').filter((l) => l !== '') : [];
        },
        clean() {
          for (const f of ['runs', 'saved.eml', 'saved.env', 'saved.id', 'saved.pwd', 'saved.umask']) rmSync(path.join(home, f), { force: true });
        },
      });
    }
  } catch (e) {
    await remove();
    throw e;
  }
  return {
    tag,
    all: made,
    get(short) {
      const u = made.find((m) => m.name === `pumtest-${tag}-${short}`);
      if (!u) throw new Error(`no test user ${short}`);
      return u;
    },
    remove,
  };
}
