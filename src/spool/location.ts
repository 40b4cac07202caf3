// Runs in: the milter process (and check-config).
//
// Where the spool is (docs/reference.md §3 `spool.dir`). Set: that
// directory. Empty: `$RUNTIME_DIRECTORY/spool` under systemd (the unit's
// RuntimeDirectory, private to the service and removed when it stops), else a
// directory of our own made at start with mkdtemp(3) in the OS temporary
// directory: a fixed name such as /tmp/per-user-milter could be created
// first by any local user and keep the milter from starting (or be read).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export type SpoolPlan =
  | { kind: 'configured'; dir: string }
  | { kind: 'runtime-directory'; dir: string }
  | { kind: 'private'; parent: string; template: string };

/** Where the spool will be, without touching the file system. */
export function planSpoolDir(configured: string, env: NodeJS.ProcessEnv = process.env): SpoolPlan {
  if (configured !== '') return { kind: 'configured', dir: configured };
  // systemd may list several runtime directories, separated by colons; ours is the first.
  const runtime = (env.RUNTIME_DIRECTORY ?? '').split(':')[0] ?? '';
  if (runtime !== '' && path.isAbsolute(runtime)) return { kind: 'runtime-directory', dir: path.join(runtime, 'spool') };
  const parent = os.tmpdir();
  return { kind: 'private', parent, template: path.join(parent, 'per-user-milter-XXXXXX') };
}

/** One line for check-config and the start-up log. */
export function describeSpoolPlan(plan: SpoolPlan): string {
  switch (plan.kind) {
    case 'configured':
      return plan.dir;
    case 'runtime-directory':
      return `${plan.dir} ($RUNTIME_DIRECTORY/spool: spool.dir is empty and systemd gave a runtime directory)`;
    case 'private':
      return `a private directory ${plan.template} made at start and removed at exit (spool.dir is empty)`;
  }
}

export interface SpoolDirectory {
  dir: string;
  /** Removes the directory when it is ours alone (the private one); a no-op otherwise. */
  release(): Promise<void>;
}

/** Makes the private directory if that is the plan (0700: mkdtemp's mode); Spool.open does the rest. */
export async function makeSpoolDir(plan: SpoolPlan): Promise<SpoolDirectory> {
  if (plan.kind !== 'private') return { dir: plan.dir, release: async () => {} };
  const dir = await fs.mkdtemp(path.join(plan.parent, 'per-user-milter-'));
  return { dir, release: () => fs.rm(dir, { recursive: true, force: true }) };
}
