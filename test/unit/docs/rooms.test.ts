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
const PLACES = ['the milter process', 'tests, the bench and diagnostics', 'the runner process', 'a piscina worker thread', 'every process', 'its own process', 'its own short process'];


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
    const missing = files.filter((f) => header(f) === undefined);
    assert.deepEqual(missing, [], 'files without a `// Runs in:` first line');
    const odd = files.filter((f) => header(f) !== undefined && !PLACES.some((p) => header(f)?.startsWith(p)));
    assert.deepEqual(odd, [], `say one of: ${PLACES.join(', ')}`);
  });

  it('the two ends of the runner pipe say which end they are', () => {
    assert.match(header('src/runner/client.ts') ?? '', /^the milter process/);
    assert.match(header('src/runner/fair-queue.ts') ?? '', /^the milter process/);
    assert.match(header('src/runner/pool.ts') ?? '', /^the runner process/);
    assert.match(header('workers/runner-process.ts') ?? '', /^the runner process/);
    assert.match(header('workers/filter-worker.ts') ?? '', /^a piscina worker thread/);
  });
});
