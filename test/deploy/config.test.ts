// deploy/config.example.json: sets every key of docs/reference.md §3 with a
// comment for each, and both the loader and `per-user-milter check-config`
// accept it as it is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, parseConfigText } from '../../src/config/load.js';
import { leafKeys } from '../../src/config/schema.js';
import { inCI } from '../support/require.js';
import { DEPLOY, MAIN_JS } from './support.js';

const EXAMPLE = path.join(DEPLOY, 'config.example.json');

function get(obj: unknown, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((o, k) => (o !== null && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), obj);
}

const exampleData = (): unknown => parseConfigText(fs.readFileSync(EXAMPLE, 'utf8'), EXAMPLE);

test('config.example.json sets every configuration key, each under a comment that explains it', () => {
  const data = exampleData();
  const missing = leafKeys().filter((k) => get(data, k) === undefined);
  assert.deepEqual(missing, [], 'keys the example leaves out');
  // Each leaf's line comes right after a comment line (a group such as
  // filter.limits may share one comment for its object, not for its leaves).
  const lines = fs.readFileSync(EXAMPLE, 'utf8').split('\n');
  const uncommented: string[] = [];
  for (const key of leafKeys()) {
    const leaf = key.split('.').at(-1) ?? '';
    const i = lines.findIndex((l) => l.trimStart().startsWith(`"${leaf}":`) && !l.trimEnd().endsWith('{'));
    assert.ok(i > 0, `line of ${key}`);
    if (!(lines[i - 1] ?? '').trimStart().startsWith('//')) uncommented.push(key);
  }
  assert.deepEqual(uncommented, [], 'keys without a comment above them');
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
  const check = (extra: string[]) => spawnSync(process.execPath, [MAIN_JS, 'check-config', '--config', EXAMPLE, ...extra], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    timeout: 30_000,
  });
  // The socket directory inside Postfix's chroot comes from tmpfiles.d; where
  // it was not made, check-config says so (serve could not listen there).
  const socketDir = '/var/spool/postfix/per-user-milter';
  if (!fs.existsSync(socketDir)) {
    const r = check([]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^per-user-milter: config: milter\.listen: the socket directory \/var\/spool\/postfix\/per-user-milter: no such file/m);
  }
  // With a socket directory that exists, the example passes as it is.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pumops-example-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const listen = `unix:${dir}/milter.sock`;
  const r = check(['--milter.listen', listen]);
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  // It prints the effective configuration: the example's values, unchanged.
  const printed = JSON.parse(r.stdout) as { milter: { listen: string } };
  assert.equal(printed.milter.listen, listen);
  const want = exampleData() as { milter: { listen: string } };
  want.milter.listen = listen;
  assert.deepEqual(printed, want);
});
