// Rooms that show the processes (docs/design.md): every source file in src/
// and workers/ says on its first line (after a shebang) where it runs, so a
// reader knows which end of the runner pipe, or which thread, they are in.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../../', import.meta.url));

/** Where a file may say it runs; each phrase starts the text after `// Runs in: `. */
const PLACES = ['the milter process', 'the runner process', 'a piscina worker thread', 'every process', 'its own process', 'its own short process'];

/**
 * Files whose headers belong to work in flight in other branches this round
 * (the engine's split, issue 13; the launcher, issue 12). Each entry must
 * still lack its header: once it has one, remove it here.
 */
const PENDING = new Set([
  'src/milter/application.ts', 'src/milter/bytes.ts', 'src/milter/client.ts', 'src/milter/commands.ts', 'src/milter/constants.ts', 'src/milter/errors.ts',
  'src/milter/frame.ts', 'src/milter/macros.ts', 'src/milter/negotiate.ts', 'src/milter/replies.ts', 'src/milter/session.ts', 'src/milter/socket-spec.ts',
  'src/server/connection.ts', 'src/server/server.ts', 'src/server/unix-socket.ts',
]);

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(rel));
    else if (e.name.endsWith('.ts')) out.push(rel);
  }
  return out.sort();
}

function header(file: string): string | undefined {
  const lines = fs.readFileSync(path.join(root, file), 'utf8').split('\n');
  const first = lines[0]?.startsWith('#!') ? lines[1] : lines[0];
  return first?.startsWith('// Runs in: ') ? first.slice('// Runs in: '.length) : undefined;
}

describe('every file says where it runs', () => {
  const files = [...sources('src'), ...sources('workers')];

  it('has a `// Runs in:` first line naming a process or thread', () => {
    const missing = files.filter((f) => !PENDING.has(f) && header(f) === undefined);
    assert.deepEqual(missing, [], 'files without a `// Runs in:` first line');
    const odd = files.filter((f) => header(f) !== undefined && !PLACES.some((p) => header(f)?.startsWith(p)));
    assert.deepEqual(odd, [], `say one of: ${PLACES.join(', ')}`);
  });

  it('the list of files still pending elsewhere is exact', () => {
    for (const f of PENDING) {
      assert.ok(files.includes(f), `${f} is gone: remove it from PENDING`);
      assert.equal(header(f), undefined, `${f} has its header now: remove it from PENDING`);
    }
  });

  it('the two ends of the runner pipe say which end they are', () => {
    assert.match(header('src/runner/client.ts') ?? '', /^the milter process/);
    assert.match(header('src/runner/fair-queue.ts') ?? '', /^the milter process/);
    assert.match(header('src/runner/pool.ts') ?? '', /^the runner process/);
    assert.match(header('workers/runner-process.ts') ?? '', /^the runner process/);
    assert.match(header('workers/filter-worker.ts') ?? '', /^a piscina worker thread/);
  });
});
