// The soak's CI variant: `npm run soak` with a few hundred messages of the
// full mix (1-10 recipients, 4 KB-512 KB, filters that accept, reject,
// tempfail once, time out, crash, flood, fork) through a private Postfix to
// real mailboxes. Its one-line summary must say nothing was lost,
// duplicated, wrongly rejected or wrongly accepted, and it must exit 0 (no
// growth beyond the thresholds, no filter process or spool file left).
// Heavy: run it under `flock /tmp/pum-heavy.lock`.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../mta/harness/util.js';
import { lacksCommand, lacksRoot } from '../support/require.js';

const SUMMARY = /^soak: (\d+) messages, lost (\d+), duplicated (\d+), wrongly rejected (\d+), wrongly accepted (\d+), rss-growth (-?[\d.]+) MB, fd-growth (-?\d+)$/m;

test('soak, CI size: 400 messages of the mix, every copy counted at the mailboxes', { timeout: 240_000 }, async (t) => {
  if (lacksRoot(t) || lacksCommand(t, 'postconf', 'postfix') || lacksCommand(t, 'useradd', 'passwd')) return;
  const out = mkdtempSync(path.join(os.tmpdir(), 'pumtest-soak-ci-'));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const args = [path.join(repoRoot, 'dist/bench/soak.js'), '--messages', '400', '--seed', '16', '--max-size', String(512 * 1024), '--out', out];
  const child = spawn(process.execPath, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const m = SUMMARY.exec(stdout);
  assert.ok(m, `no summary line in the soak's output:\n${stdout}\n${stderr}`);
  t.diagnostic(m[0]);
  const [, n, lost, dup, wrej, wacc] = m.map(Number);
  assert.equal(n, 400, stderr);
  assert.deepEqual({ lost, dup, wrej, wacc }, { lost: 0, dup: 0, wrej: 0, wacc: 0 }, stderr);
  assert.equal(code, 0, `soak exited ${code}:\n${stderr}`);
  // the mix really exercised every kind of filter behaviour and both verdicts
  assert.ok(existsSync(path.join(out, 'soak.svg')), 'no chart');
  const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as {
    sums: { accepted: number; rejected: number; deferrals: number };
    filterRuns: Record<string, number>;
    internalErrors: number;
  };
  assert.ok(summary.sums.accepted > 200 && summary.sums.rejected > 40, JSON.stringify(summary.sums));
  assert.ok(summary.sums.deferrals > 0, 'no message was deferred and sent again');
  for (const o of ['accept', 'reject', 'tempfail', 'nofilter', 'error', 'timeout']) {
    assert.ok((summary.filterRuns[o] ?? 0) > 0, `no filter run with outcome ${o}: ${JSON.stringify(summary.filterRuns)}`);
  }
  assert.equal(summary.internalErrors, 0, 'internal errors during a soak without faults');
});
