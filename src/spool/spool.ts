// Runs in: the milter process.
//
// The spool directory (`spool.dir`) and the registry of its open files.
// The directory is ours alone (0700, owned by the milter's uid): filters,
// which run as other users, cannot open a spooled message; they read it
// through a descriptor the runner hands them. Files left by an earlier run
// are removed at start; `removeAll()` is for shutdown.
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { SpoolFile, SPOOL_OPEN_FLAGS, spoolWriteError, type SpoolFileOptions } from './file.js';

/** Spool file names: `msg-` + 24 hex digits. Only these are ever deleted as stale. */
const FILE_PREFIX = 'msg-';
const STALE_FILE = /^msg-[0-9a-f]{24}$/;

/** spool.dir is unusable at start: start-up configuration, not a message failure (serve exits, check-config says so). */
export class SpoolDirError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SpoolDirError';
  }
}

/**
 * Creates the directory (0700) if needed, checks that it is a real directory
 * owned by us, tightens its mode, and removes stale spool files. Returns how
 * many stale files were removed.
 */
export async function prepareSpoolDir(dir: string): Promise<number> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await fs.lstat(dir);
  if (!st.isDirectory()) throw new SpoolDirError(`spool.dir ${dir} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new SpoolDirError(`spool.dir ${dir} is owned by uid ${st.uid}, not by us (uid ${uid})`);
  }
  if ((st.mode & 0o777) !== 0o700) await fs.chmod(dir, 0o700);
  let removed = 0;
  for (const name of await fs.readdir(dir)) {
    if (!STALE_FILE.test(name)) continue;
    try {
      await fs.unlink(path.join(dir, name));
      removed++;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return removed;
}

export class Spool {
  private readonly files = new Set<SpoolFile>();

  private constructor(readonly dir: string) {}

  /** Prepares `dir` (see prepareSpoolDir) and returns the spool; `staleRemoved` is for the start-up log. */
  static async open(dir: string): Promise<{ spool: Spool; staleRemoved: number }> {
    const staleRemoved = await prepareSpoolDir(dir);
    return { spool: new Spool(dir), staleRemoved };
  }

  /**
   * A new spool file (0600, O_EXCL, random name), its first line
   * `Return-Path: <sender>` already written. Options are per file, so a
   * configuration reload applies to the next message.
   */
  async create(sender: string, options: SpoolFileOptions): Promise<SpoolFile> {
    const file = path.join(this.dir, FILE_PREFIX + crypto.randomBytes(12).toString('hex'));
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, SPOOL_OPEN_FLAGS, 0o600);
    } catch (err) {
      throw spoolWriteError(file, err);
    }
    const spoolFile = new SpoolFile(file, handle, options, (f) => this.files.delete(f));
    this.files.add(spoolFile);
    try {
      await spoolFile.writeReturnPath(sender);
    } catch (err) {
      await spoolFile.remove().catch(() => {});
      throw err;
    }
    return spoolFile;
  }

  /** Spool files created and not yet removed. */
  get openFiles(): number {
    return this.files.size;
  }

  /** Removes every file not yet removed (shutdown). */
  async removeAll(): Promise<void> {
    await Promise.allSettled([...this.files].map((f) => f.remove()));
  }
}
