// The loader: strict booleans, JSON with comments, public key names in
// messages, the real socket parsers behind the validators, and a Config type
// that comes from the schema.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig, parseConfigText } from '../../../src/config/load.js';
import { envName, leafKeys, schema, type Config } from '../../../src/config/schema.js';

function problems(f: () => unknown): string[] {
  try {
    f();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  assert.fail('expected a ConfigError');
}

function withFile(t: import('node:test').TestContext, text: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pum-config-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, text);
  return file;
}

test('PER_USER_MILTER_POLICY_DRY_RUN=0 (and no, off, false) leaves dry-run off', () => {
  for (const word of ['0', 'no', 'off', 'false', 'FALSE', 'No', ' off ']) {
    const { config } = loadConfig({ env: { PER_USER_MILTER_POLICY_DRY_RUN: word }, args: [] });
    assert.equal(config.policy.dryRun, false, JSON.stringify(word));
  }
  for (const word of ['1', 'yes', 'on', 'true', 'TRUE', 'On']) {
    const { config } = loadConfig({ env: { PER_USER_MILTER_POLICY_DRY_RUN: word }, args: [] });
    assert.equal(config.policy.dryRun, true, JSON.stringify(word));
  }
});

test('every boolean key, from the environment and the command line, takes the eight words and refuses others', () => {
  const booleans = leafKeys().filter((k) => {
    const leaf = k.split('.').reduce<any>((n, p) => n[p === 'default' ? 'siteDefault' : p], schema);
    return leaf.format === 'strict-boolean';
  });
  assert.deepEqual(booleans, ['policy.skipAuthenticated', 'policy.dryRun', 'metrics.perUserLabels']);
  for (const key of booleans) {
    const get = (c: Config): unknown => key.split('.').reduce<any>((o, p) => o[p], c);
    assert.equal(get(loadConfig({ env: {}, args: [`--${key}=off`] }).config), false);
    assert.equal(get(loadConfig({ env: {}, args: [`--${key}=on`] }).config), true);
    assert.equal(get(loadConfig({ env: { [envName(key)]: '0' }, args: [] }).config), false);
    for (const bad of ['maybe', '2', 'enabled', '']) {
      const p = problems(() => loadConfig({ env: { [envName(key)]: bad }, args: [] }));
      assert.equal(p.length, 1, p.join('\n'));
      assert.match(p[0] ?? '', new RegExp(`^${key.replace('.', '\\.')}: must be true or false`));
    }
  }
  // In the file a boolean is a JSON boolean.
  const { config } = loadConfig({ file: undefined, env: {}, args: ['--policy.dryRun', 'yes'] });
  assert.equal(config.policy.dryRun, true);
});

test('comments are allowed in the file; syntax errors name file, line and column', (t) => {
  const file = withFile(t, `{
  // where the MTA connects
  "milter": { "listen": "inet:8891@127.0.0.1" }, /* block
     comment */
  "policy": { "dryRun": true } // trailing
}
`);
  const { config } = loadConfig({ file, env: {}, args: [] });
  assert.equal(config.milter.listen, 'inet:8891@127.0.0.1');
  assert.equal(config.policy.dryRun, true);

  const table: Array<[string, RegExp]> = [
    ['{\n  "filter": {\n    "timeout": 3,\n  }\n}\n', /:4:3: a comma before a closing \} or \] \(JSON allows none\)$/],
    ['{\n  "filter": { "timeout" 3 }\n}\n', /:2:25: ':' expected$/],
    ['{\n  "a": 1\n  "b": 2\n}', /:3:3: ',' expected$/],
    ['{ /* never closed\n', /:1:3: comment not closed$/],
    ['[1, 2]', /: must contain one JSON object$/],
    ['', /:1:1: a value expected$|: must contain one JSON object$/],
  ];
  for (const [text, want] of table) {
    const bad = withFile(t, text);
    const p = problems(() => loadConfig({ file: bad, env: {}, args: [] }));
    assert.equal(p.length, 1, `${JSON.stringify(text)}: ${p.join(' | ')}`);
    assert.ok(p[0]?.startsWith(bad), p[0]);
    assert.match(p[0] ?? '', want, JSON.stringify(text));
  }
  assert.deepEqual(problems(() => loadConfig({ file: '/nonexistent/pum.json', env: {}, args: [] })), ['/nonexistent/pum.json: cannot read it: no such file']);
  assert.deepEqual(parseConfigText('{"a": 1} // ok', 'x'), { a: 1 });
});

test('messages name keys by their public names, one line each', (t) => {
  const file = withFile(t, JSON.stringify({ filter: { default: 'relative/prog', timeout: 0 }, bogus: { x: 1 } }));
  const p = problems(() => loadConfig({ file, env: {}, args: [] }));
  assert.ok(p.some((l) => /^filter\.default: must be empty or an absolute path/.test(l)), p.join('\n'));
  assert.ok(p.some((l) => /^filter\.timeout: must be a positive integer/.test(l)), p.join('\n'));
  assert.ok(p.some((l) => /^bogus\.x: unknown key/.test(l) || /^bogus: unknown key/.test(l)), p.join('\n'));
  assert.ok(p.every((l) => !l.includes('siteDefault') && !l.includes('\n')), p.join('\n'));
  // The environment name follows the public name too.
  assert.equal(loadConfig({ env: { PER_USER_MILTER_FILTER_DEFAULT: '/usr/local/bin/site-filter' }, args: [] }).config.filter.default, '/usr/local/bin/site-filter');
  assert.equal(loadConfig({ env: {}, args: ['--filter.default=/usr/local/bin/x'] }).config.filter.default, '/usr/local/bin/x');
});

test('the socket validators are the real parsers, hints included', () => {
  const milter = (v: string): string[] => problems(() => loadConfig({ env: {}, args: [`--milter.listen=${v}`] }));
  assert.match(milter('inet:127.0.0.1:8890')[0] ?? '', /^milter\.listen: .*Postfix syntax.*write inet:PORT@HOST/);
  assert.match(milter('tcp:8890')[0] ?? '', /unknown socket type "tcp"/);
  assert.match(milter('inet:99999@localhost')[0] ?? '', /out of range/);
  assert.match(milter('unix:relative.sock')[0] ?? '', /must be absolute/);
  for (const ok of ['inet:8890@127.0.0.1', 'inet6:8890@[::1]', 'unix:/run/x.sock', 'local:/run/x.sock', 'inet:8890']) {
    assert.equal(loadConfig({ env: {}, args: [`--milter.listen=${ok}`] }).config.milter.listen, ok);
  }
  const metrics = (v: string): string[] => problems(() => loadConfig({ env: {}, args: [`--metrics.listen=${v}`] }));
  assert.match(metrics('inet:9464@127.0.0.1')[0] ?? '', /^metrics\.listen: .*milter socket spec; metrics\.listen is HOST:PORT/);
  assert.match(metrics('::1:9464')[0] ?? '', /in brackets/);
  assert.match(metrics('9464')[0] ?? '', /^metrics\.listen: expected HOST:PORT/);
  assert.equal(loadConfig({ env: {}, args: ['--metrics.listen='] }).config.metrics.listen, '');
});

test('numbers from the environment are whole words: "12abc" is an error, not 12', () => {
  for (const [key, bad] of [['pool.maxQueue', '12abc'], ['milter.maxConnections', '1e3'], ['pool.maxQueue', '-1'], ['filter.timeout', '']] as const) {
    const p = problems(() => loadConfig({ env: { [envName(key)]: bad }, args: [] }));
    assert.equal(p.length, 1, `${key}=${bad}: ${p.join(' | ')}`);
    assert.ok(p[0]?.startsWith(`${key}: must be`), p[0]);
  }
  assert.equal(loadConfig({ env: { PER_USER_MILTER_POOL_MAX_QUEUE: '0' }, args: [] }).config.pool.maxQueue, 0);
});

test('spool.dir defaults to empty (decided at start), and exit-code lists from the environment are checked', () => {
  assert.equal(loadConfig({ env: {}, args: [] }).config.spool.dir, '');
  assert.deepEqual(loadConfig({ env: { PER_USER_MILTER_FILTER_EXIT_CODES_REJECT: '1, 2' }, args: [] }).config.filter.exitCodes.reject, [1, 2]);
  assert.match(problems(() => loadConfig({ env: { PER_USER_MILTER_FILTER_EXIT_CODES_REJECT: '1,x' }, args: [] }))[0] ?? '', /^filter\.exitCodes\.reject: must be a list of exit codes/);
});

test('the Config type is the schema (compile-time checks, and the keys at run time)', () => {
  const { config } = loadConfig({ env: {}, args: [] });
  // Enumerations are unions, not strings: these assignments compile only if so.
  const sandbox: 'setpriv' | 'bwrap' | 'none' = config.filter.sandbox;
  const level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' = config.log.level;
  const dry: boolean = config.policy.dryRun;
  const codes: number[] = config.filter.exitCodes.reject;
  // @ts-expect-error the schema's internal name is not part of the type
  void config.filter.siteDefault;
  assert.ok([sandbox, level, dry, codes]);
  const flat = (o: Record<string, unknown>, prefix = ''): string[] =>
    Object.entries(o).flatMap(([k, v]) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? flat(v as Record<string, unknown>, `${prefix}${k}.`) : [`${prefix}${k}`]));
  assert.deepEqual(flat(config as unknown as Record<string, unknown>).sort(), [...leafKeys()].sort());
});
