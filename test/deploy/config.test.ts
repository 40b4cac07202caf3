// deploy/config.example.json: sets every key of docs/reference.md §3, and both
// the loader and `per-user-milter check-config` accept it as it is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { leafKeys } from '../../src/config/schema.js';
import { inCI } from '../support/require.js';
import { DEPLOY, MAIN_JS } from './support.js';

const EXAMPLE = path.join(DEPLOY, 'config.example.json');

function get(obj: unknown, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((o, k) => (o !== null && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), obj);
}

test('config.example.json sets every configuration key', () => {
  const data = JSON.parse(fs.readFileSync(EXAMPLE, 'utf8')) as unknown;
  const missing = leafKeys().filter((k) => get(data, k) === undefined);
  assert.deepEqual(missing, [], 'keys the example leaves out');
});

test('config.example.json loads (strict: no unknown keys) with its deployment choices', () => {
  const { config } = loadConfig({ file: EXAMPLE, env: {}, args: [] });
  // The systemd deployment: socket inside Postfix's chroot (tmpfiles.d),
  // spool under /var/spool (tmpfiles.d), metrics on loopback.
  assert.equal(config.milter.listen, 'unix:/var/spool/postfix/per-user-milter/milter.sock');
  assert.equal(config.milter.socketMode, '0660');
  assert.equal(config.spool.dir, '/var/spool/per-user-milter');
  assert.equal(config.metrics.listen, '127.0.0.1:9464');
  assert.equal(config.filter.sandbox, 'setpriv');
  // The unit's TimeoutStopSec (45 s) covers filter.timeout + 2 s SIGKILL grace.
  assert.ok(config.filter.timeout + 2000 < 45_000);
  // PROGRESS well inside Sendmail's 10 s per-read R: timer.
  assert.ok(config.milter.progressInterval < 10_000);
});

test('per-user-milter check-config accepts config.example.json', (t) => {
  if (!fs.existsSync(MAIN_JS)) {
    if (inCI) throw new Error('dist/src/main.js not built');
    t.skip('dist/src/main.js not built');
    return;
  }
  const r = spawnSync(process.execPath, [MAIN_JS, 'check-config', '--config', EXAMPLE], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    timeout: 30_000,
  });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  // It prints the effective configuration: the example's values, unchanged.
  const start = r.stdout.indexOf('{');
  const printed = JSON.parse(r.stdout.slice(start, r.stdout.lastIndexOf('}') + 1)) as unknown;
  assert.deepEqual(printed, JSON.parse(fs.readFileSync(EXAMPLE, 'utf8')));
});
