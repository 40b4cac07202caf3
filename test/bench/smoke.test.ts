// Keeps the benchmark harness from rotting: the smoke set (a few dozen
// messages over the milter protocol to the C null milter and to
// per-user-milter, and one pass-through run through a private Postfix with
// smtp-source) must finish and produce sane figures and all three outputs.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { runBench } from '../../bench/harness.js';
import { terminalTable, writeOutputs } from '../../bench/lib/report.js';
import { lacksCommand, lacksRoot } from '../support/require.js';

test('bench smoke: milter-protocol load and one Postfix pass-through give sane figures', { timeout: 180_000 }, async (t) => {
  if (lacksRoot(t)) return;
  if (lacksCommand(t, 'smtp-source', 'postfix')) return;
  if (lacksCommand(t, 'gcc', 'gcc')) return;
  if (!existsSync('/usr/include/libmilter/mfapi.h')) {
    if (lacksCommand(t, 'libmilter-headers-missing', 'libmilter-dev')) return;
  }
  const out = mkdtempSync(path.join(os.tmpdir(), 'pumbench-smoke-'));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const log: string[] = [];
  const run = await runBench({ smoke: true, setup: false, peer: false, outDir: out, maxSeconds: 20, log: (l) => log.push(l) });

  const ids = run.scenarios.map((s) => s.id);
  for (const want of ['milter/null-c/r1/4k/pass', 'milter/pum-setpriv/r1/4k/pass', 'smtp/pum-setpriv/r1/4k/pass']) {
    assert.ok(ids.includes(want), `scenario ${want} missing; got ${ids.join(', ')}\n${log.join('\n')}`);
  }
  for (const s of run.scenarios) {
    const where = `${s.id}: ${JSON.stringify(s)}`;
    assert.ok(s.messages > 0, `no messages completed in ${where}`);
    assert.ok(s.messagesPerSecond > 0 && Number.isFinite(s.messagesPerSecond), `msg/s not positive in ${where}`);
    assert.equal(s.errors.length, 0, `errors in ${where}`);
    assert.equal(s.tempfails, 0, `tempfails in ${where}`);
    assert.equal(s.rejects, 0, `rejects in ${where}`);
    assert.equal(s.latencyMs.count, s.messages, `one latency sample per message in ${where}`);
    assert.ok(s.latencyMs.p50 >= 0 && s.latencyMs.p50 <= s.latencyMs.p99, `latency percentiles out of order in ${where}`);
    if (s.system !== 'postfix-only') {
      // Process CPU comes in 10 ms clock ticks, and 30 messages to the C null
      // milter take less than one: 0 is a true reading there. What must not
      // happen is no reading at all; the whole machine certainly worked.
      assert.ok(s.cpuSecondsPerMessage !== null && Number.isFinite(s.cpuSecondsPerMessage) && s.cpuSecondsPerMessage >= 0, `no CPU figure in ${where}`);
      assert.ok(s.machineCpuSecondsPerMessage !== null && s.machineCpuSecondsPerMessage > 0, `no machine CPU figure in ${where}`);
      assert.ok(s.rssPeakBytes !== null && s.rssPeakBytes > 0, `no RSS figure in ${where}`);
    }
  }
  const pass = run.scenarios.find((s) => s.id === 'smtp/pum-setpriv/r1/4k/pass');
  assert.equal(pass?.messages, 30, 'every pass-through message through Postfix was delivered');
  assert.ok(run.targets.length >= 5);

  const files = writeOutputs(run, out);
  const json = JSON.parse(readFileSync(files.json, 'utf8')) as { scenarios: unknown[] };
  assert.equal(json.scenarios.length, run.scenarios.length);
  assert.match(readFileSync(files.svg, 'utf8'), /<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(readFileSync(files.markdown, 'utf8'), /\| `smtp\/pum-setpriv\/r1\/4k\/pass` \|/);
  assert.match(terminalTable(run), /milter\/null-c\/r1\/4k\/pass/);
  // nothing left behind: no bench users
  assert.doesNotMatch(readFileSync('/etc/passwd', 'utf8'), /^pumbench-/m);
});
