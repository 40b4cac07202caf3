// The manual pages in man/: per-user-milter.conf(5) is exactly what
// scripts/man.ts makes of the schema (so it cannot drift), every page renders
// without a single groff warning, and the pages name what the code has.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { envName, leafKeys } from '../../../src/config/schema.js';
import { TRY_USAGE } from '../../../src/cli/usage.js';
import { CONF_PAGE, packageVersion, renderConfPage } from '../../../scripts/man.js';
import { lacksCommand } from '../../support/require.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const MAN = path.join(ROOT, 'man');
const PAGES = ['per-user-milter.8', 'per-user-milter.conf.5', 'per-user-milter-filter.5'];

/** A page as text, the way man(1) shows it (no bold/underline overstrikes). */
function render(page: string): { text: string; warnings: string } {
  const r = spawnSync('groff', ['-ww', '-man', '-Tutf8', '-P', '-cbou', path.join(MAN, page)], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C.UTF-8' } });
  assert.equal(r.status, 0, r.stderr);
  return { text: r.stdout, warnings: r.stderr };
}

test('per-user-milter.conf(5) is the page scripts/man.ts makes from the schema (npm run man)', () => {
  const committed = fs.readFileSync(CONF_PAGE, 'utf8');
  assert.ok(committed === renderConfPage(packageVersion()), 'man/per-user-milter.conf.5 differs from the schema: run `npm run man` and commit the result');
});

test('every page renders with groff -ww without a single warning', (t) => {
  if (lacksCommand(t, 'groff', 'groff-base')) return;
  for (const page of PAGES) assert.equal(render(page).warnings, '', `${page}: groff warnings`);
});

test('man --warnings -l renders every page without a warning', (t) => {
  if (lacksCommand(t, 'man', 'man-db')) return;
  for (const page of PAGES) {
    const r = spawnSync('man', ['--warnings', '-l', path.join(MAN, page)], { encoding: 'utf8', env: { ...process.env, MANPAGER: 'cat', PAGER: 'cat', LC_ALL: 'C.UTF-8', MANWIDTH: '80' } });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', `${page}: man warnings`);
    assert.ok(r.stdout.length > 1000, page);
  }
});

test('the pages name the version of package.json', () => {
  for (const page of PAGES) {
    const th = fs.readFileSync(path.join(MAN, page), 'utf8').split('\n').find((l) => l.startsWith('.TH '));
    assert.ok(th?.includes(`"per\\-user\\-milter ${packageVersion()}"`), `${page}: ${th}`);
  }
});

test('per-user-milter.conf(5) lists every key with its environment variable and flag', (t) => {
  if (lacksCommand(t, 'groff', 'groff-base')) return;
  const { text } = render('per-user-milter.conf.5');
  for (const key of leafKeys()) {
    assert.match(text, new RegExp(`^ {7}${key.replaceAll('.', '\\.')}$`, 'm'), key);
    assert.ok(text.includes(`Environment: ${envName(key)};`), envName(key));
    assert.ok(text.includes(`--${key} VALUE`), `--${key}`);
  }
  assert.ok(!text.includes('siteDefault'), 'public names only');
  assert.match(text, /pool\.threads\n(.*\n)*? +Default: the number of CPUs\./, 'no machine-specific default');
});

test('per-user-milter(8) documents every command, every try option, the signals and the exit codes', (t) => {
  if (lacksCommand(t, 'groff', 'groff-base')) return;
  const { text } = render('per-user-milter.8');
  for (const s of ['serve', 'check-config', 'try', '--version', '--help', 'SIGTERM', 'SIGHUP', 'RUNTIME_DIRECTORY', 'JOURNAL_STREAM', 'PER_USER_MILTER_', '/etc/per-user-milter/config.json']) {
    assert.ok(text.includes(s), s);
  }
  for (const opt of TRY_USAGE.matchAll(/^ {2}(--[a-z-]+)/gm)) assert.ok(text.includes(opt[1] ?? ''), `try option ${opt[1]}`);
  const exit = text.slice(text.indexOf('EXIT STATUS'), text.indexOf('ENVIRONMENT'));
  for (const code of ['0', '1', '2', '70', '75']) assert.match(exit, new RegExp(`^ {7}${code}\\b`, 'm'), `exit status ${code}`);
});

test('per-user-milter-filter(5) carries the filter contract and the RCPT-stage program, with the examples', (t) => {
  if (lacksCommand(t, 'groff', 'groff-base')) return;
  const { text } = render('per-user-milter-filter.5');
  for (const v of ['HOME', 'USER', 'LOGNAME', 'SHELL', 'PATH', 'SENDER', 'RECIPIENT', 'LOCAL', 'EXTENSION', 'DOMAIN', 'CLIENT_ADDRESS', 'CLIENT_HOSTNAME', 'CLIENT_HELO', 'CLIENT_PROTOCOL', 'QUEUE_ID', 'SASL_METHOD', 'SASL_USERNAME']) {
    assert.ok(new RegExp(`\\b${v}\\b`).test(text), v);
  }
  for (const s of ['~/.user-milter-rcpt', 'exec spamc -c -u "$USER"', 'grep -qixF -- "$SENDER" "$HOME/.blocked"', 'Return-Path:', 'no_new_privs', 'per-user-milter try --user']) {
    assert.ok(text.includes(s), s);
  }
});
