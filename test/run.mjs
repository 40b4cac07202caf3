#!/usr/bin/env node
// Runs the compiled test files (dist/test/**/*.test.js) with Node's own test
// runner. Arguments narrow the run to sub-directories of test/, e.g.
// `node test/run.mjs unit component`.
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('../dist/test/', import.meta.url).pathname;
const wanted = process.argv.slice(2);
const dirs = wanted.length > 0 ? wanted.map((d) => join(root, d)) : [root];

function collect(dir, out) {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) collect(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = dirs.flatMap((d) => collect(d, []));
if (files.length === 0) {
  console.error(`no test files under ${dirs.join(', ')}: did the build run?`);
  process.exit(1);
}
// One file at a time: the privileged and MTA tests share the machine's state
// (the installed package's /etc/per-user-milter, users, cgroups), and this is
// how the suite's time is measured.
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
