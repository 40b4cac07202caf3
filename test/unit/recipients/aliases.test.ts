import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  aliasKeys,
  CachedTables,
  expandAlias,
  isDeliveryTarget,
  MAX_ALIAS_DEPTH,
  openAliasTable,
  parseAliases,
  splitTargets,
  type AliasTable,
} from '../../../src/recipients/aliases.js';
import { createRecipientClassifier, type RecipientSettings } from '../../../src/recipients/classify.js';
import { PumError } from '../../../src/errors.js';
import type { UserAccount } from '../../../src/users/user.js';
import { lacksCommand } from '../../support/require.js';

test('aliases(5): comments, continuation lines, quoted names, first definition wins, case-insensitive names', () => {
  const text = [
    '# the site aliases',
    'Team: alice,',
    '  bob',
    '\tcarol  # not a comment here: part of the value',
    '',
    '"odd name": dave',
    '"with:colon": erin',
    'postmaster: root',
    'postmaster: nobody-else',
    'no colon on this line',
    '   # an indented comment',
    'list: :include:/etc/mail/list, |/usr/bin/prog, /var/mail/archive',
  ].join('\n');
  const m = parseAliases(text);
  assert.equal(m.get('team'), 'alice, bob carol  # not a comment here: part of the value');
  assert.equal(m.get('odd name'), 'dave');
  assert.equal(m.get('with:colon'), 'erin');
  assert.equal(m.get('postmaster'), 'root');
  assert.equal(m.has('no colon on this line'), false);
  assert.deepEqual(splitTargets(m.get('list') ?? ''), [':include:/etc/mail/list', '|/usr/bin/prog', '/var/mail/archive']);
});

test('alias targets: commas or white space, quotes protect, delivery targets recognised', () => {
  assert.deepEqual(splitTargets('alice, bob@example.test  carol'), ['alice', 'bob@example.test', 'carol']);
  assert.deepEqual(splitTargets('"|/usr/bin/prog arg", "odd name"@x.test'), ['|/usr/bin/prog arg', 'odd name@x.test']);
  assert.deepEqual(splitTargets(':include: /etc/list, bob'), [':include:/etc/list', 'bob']);
  for (const t of ['|cmd', '/var/mail/x', ':include:/x', ':INCLUDE:/x']) assert.equal(isDeliveryTarget(t), true, t);
  for (const t of ['alice', 'a@b', 'x|y']) assert.equal(isDeliveryTarget(t), false, t);
});

test('alias keys: whole address with and without extension, local part only when local, then @domain', () => {
  assert.deepEqual(aliasKeys({ localPart: 'Info+News', base: 'Info', domain: 'Example.TEST' }, true), [
    'info+news@example.test', 'info@example.test', 'info+news', 'info', '@example.test',
  ]);
  assert.deepEqual(aliasKeys({ localPart: 'info', base: 'info', domain: 'remote.test' }, false), ['info@remote.test', '@remote.test']);
  assert.deepEqual(aliasKeys({ localPart: 'team', base: 'team', domain: '' }, false), ['team']);
});

/** A table from a plain object, counting its lookups. */
function fakeTable(name: string, entries: Record<string, string>): AliasTable & { asked: string[][] } {
  const asked: string[][] = [];
  return {
    name,
    asked,
    async lookup(keys) {
      asked.push([...keys]);
      return new Map(keys.filter((k) => entries[k] !== undefined).map((k) => [k, entries[k] as string]));
    },
  };
}

const bare = (a: string): string[] => [a.toLowerCase()];

test('expansion: recursive, loops and self-references end, programs and files skipped, every leaf once', async () => {
  const t = fakeTable('t', {
    team: 'alice, staff, |/usr/bin/archive',
    staff: 'bob, alice, /var/mail/copy',
    loop1: 'loop2',
    loop2: 'loop1, carol',
    alice2: 'alice2, dave', // a user who also keeps a copy
  });
  const x = await expandAlias(new CachedTables([t]), 'team', bare);
  assert.equal(x.expanded, true);
  assert.deepEqual(x.leaves.map((l) => l.target), ['alice', 'bob']);
  assert.deepEqual(x.skipped, ['|/usr/bin/archive', '/var/mail/copy']);
  const loop = await expandAlias(new CachedTables([t]), 'loop1', bare);
  assert.deepEqual(loop.leaves.map((l) => l.target), ['loop1', 'carol']);
  const self = await expandAlias(new CachedTables([t]), 'alice2', bare);
  assert.deepEqual(self.leaves.map((l) => l.target), ['alice2', 'dave']);
  const none = await expandAlias(new CachedTables([t]), 'nobody-here', bare);
  assert.deepEqual(none, { expanded: false, leaves: [], skipped: [] });
});

test(`expansion: at most ${MAX_ALIAS_DEPTH} levels`, async () => {
  const chain: Record<string, string> = {};
  for (let i = 0; i < 30; i++) chain[`a${i}`] = `a${i + 1}`;
  const x = await expandAlias(new CachedTables([fakeTable('t', chain)]), 'a0', bare);
  assert.deepEqual(x.leaves.map((l) => l.target), [`a${MAX_ALIAS_DEPTH}`]);
});

test('expansion: the first table that knows a key wins; answers are cached (found and not found) until the TTL', async () => {
  let now = 1000;
  const first = fakeTable('first', { info: 'alice' });
  const second = fakeTable('second', { info: 'bob', sales: 'carol' });
  const tables = new CachedTables([first, second], 30_000, () => now);
  assert.deepEqual((await expandAlias(tables, 'info', bare)).leaves.map((l) => l.target), ['alice']);
  assert.deepEqual((await expandAlias(tables, 'sales', bare)).leaves.map((l) => l.target), ['carol']);
  const before = first.asked.length + second.asked.length;
  await expandAlias(tables, 'info', bare);
  await expandAlias(tables, 'sales', bare);
  assert.equal(first.asked.length + second.asked.length, before, 'all from the cache');
  now += 30_001;
  await expandAlias(tables, 'info', bare);
  assert.ok(first.asked.length + second.asked.length > before, 'asked again after the TTL');
});

test('aliases: file read directly, read again when it changes; a missing file is PUM_ERR_TABLE', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pum-aliases-'));
  try {
    const file = path.join(dir, 'aliases');
    fs.writeFileSync(file, 'team: alice, bob\n');
    const table = openAliasTable(`aliases:${file}`);
    assert.deepEqual([...(await table.lookup(['TEAM', 'other']))], [['TEAM', 'alice, bob']]);
    fs.writeFileSync(file, 'team: carol\nother: dave\n');
    assert.deepEqual([...(await table.lookup(['team', 'other']))], [['team', 'carol'], ['other', 'dave']]);
    fs.rmSync(file);
    await assert.rejects(table.lookup(['team']), (e: unknown) => e instanceof PumError && e.code === 'PUM_ERR_TABLE' && /ENOENT/.test(e.message));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('Postfix tables through postmap -q: hash (built by postalias, with and without -N), texthash, regexp; found, not found, and a failing table', async (t) => {
  if (lacksCommand(t, 'postmap', 'postfix')) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pum-postmap-'));
  try {
    const cf = path.join(dir, 'cf');
    fs.mkdirSync(cf);
    fs.writeFileSync(path.join(cf, 'main.cf'), '');
    const env = { ...process.env, MAIL_CONFIG: cf };
    fs.writeFileSync(path.join(dir, 'aliases'), 'team: alice, bob\n"odd name": carol\njosé: dave\n');
    execFileSync('postalias', [`hash:${path.join(dir, 'aliases')}`], { env });
    fs.writeFileSync(path.join(dir, 'aliasesN'), 'team: dave\n');
    execFileSync('postalias', ['-N', `hash:${path.join(dir, 'aliasesN')}`], { env });
    fs.writeFileSync(path.join(dir, 'virtual'), 'info@example.test alice@example.test\n@catchall.test bob\n');
    fs.writeFileSync(path.join(dir, 'regexp'), '/^sales-(.*)@example\\.test$/ $1\n');
    const hash = openAliasTable(`hash:${path.join(dir, 'aliases')}`);
    assert.deepEqual([...(await hash.lookup(['team', 'odd name', 'nope']))], [['team', 'alice, bob'], ['odd name', 'carol']]);
    assert.deepEqual([...(await openAliasTable(`hash:${path.join(dir, 'aliasesN')}`).lookup(['team']))], [['team', 'dave']]);
    assert.deepEqual([...(await openAliasTable(`texthash:${path.join(dir, 'virtual')}`).lookup(['info@example.test', '@catchall.test', 'x@y']))], [
      ['info@example.test', 'alice@example.test'],
      ['@catchall.test', 'bob'],
    ]);
    assert.deepEqual([...(await openAliasTable(`regexp:${path.join(dir, 'regexp')}`).lookup(['sales-carol@example.test']))], [['sales-carol@example.test', 'carol']]);
    assert.equal((await hash.lookup(['nothing-here'])).size, 0, 'not found: an empty answer, not an error');
    // Keys travel as bytes (one character per byte, as from the milter wire): a UTF-8 local part is found.
    const jose = Buffer.from('josé', 'utf8').toString('latin1');
    assert.deepEqual([...(await hash.lookup([jose]))], [[jose, 'dave']]);
    const x = await expandAlias(new CachedTables([hash]), Buffer.from('José', 'utf8').toString('latin1'), (a) => aliasKeys({ localPart: a, base: a, domain: '' }, true));
    assert.deepEqual(x.leaves.map((l) => l.target), ['dave'], 'the key reaches postmap as the UTF-8 it came as (we lower-case ASCII only; Postfix folds the rest)');
    await assert.rejects(
      openAliasTable(`hash:${path.join(dir, 'missing')}`).lookup(['team']),
      (e: unknown) => e instanceof PumError && e.code === 'PUM_ERR_TABLE' && /hash:.*missing.*postmap exit 1.*fatal/.test(e.message),
    );
    await assert.rejects(openAliasTable('nosuchtype:/x').lookup(['team']), (e: unknown) => e instanceof PumError && e.code === 'PUM_ERR_TABLE');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const account = (name: string, uid: number): UserAccount => ({ name, uid, gid: uid, groups: [], home: `/home/${name}`, shell: '/bin/sh' });
const ACCOUNTS = [account('alice', 1001), account('bob', 1002), account('carol', 1003)];
const users = { lookup: async (n: string) => ACCOUNTS.find((a) => a.name === n) ?? null };

test('classifier with recipients.aliasMaps: an alias reaches the users behind it; remote targets counted; a failing table throws', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pum-alias-cls-'));
  try {
    const file = path.join(dir, 'aliases');
    fs.writeFileSync(file, 'team: alice, bob+work, |/usr/bin/archive\nmixed: carol, someone@remote.test, zed\nsolo: carol\nalice: alice, \\alice\n');
    const settings: RecipientSettings = { localMailers: ['local'], localDomains: [], delimiter: '+', map: '', aliasMaps: [`aliases:${file}`] };
    const c = await createRecipientClassifier({ recipients: settings, users });
    const team = await c.classify({ rcpt: '<Team@example.test>', rcptMailer: 'local', rcptAddr: 'team' });
    assert.equal(team.kind, 'alias');
    if (team.kind !== 'alias') return;
    assert.deepEqual(
      team.locals.map((l) => [l.user.name, l.rcpt, l.address, l.extension]),
      [['alice', '<Team@example.test>', 'alice@example.test', ''], ['bob', '<Team@example.test>', 'bob+work@example.test', 'work']],
    );
    assert.equal(team.nonLocalTargets, 0, 'the program target is not a recipient');
    const mixed = await c.classify({ rcpt: '<mixed@example.test>', rcptMailer: 'local', rcptAddr: 'mixed@example.test' });
    assert.ok(mixed.kind === 'alias' && mixed.locals.length === 1 && mixed.nonLocalTargets === 2, 'a remote address and an unknown name are non-local targets');
    // An alias that is not local by route is not expanded by local-part keys.
    const remote = await c.classify({ rcpt: '<team@remote.test>', rcptMailer: 'smtp', rcptAddr: 'team@remote.test' });
    assert.equal(remote.kind, 'nonlocal');
    // A plain user is still a plain local recipient.
    const bob = await c.classify({ rcpt: '<bob@example.test>', rcptMailer: 'local', rcptAddr: 'bob@example.test' });
    assert.equal(bob.kind === 'local' && bob.user.name, 'bob');
    fs.rmSync(file);
    await assert.rejects(c.classify({ rcpt: '<solo@example.test>', rcptMailer: 'local' }), (e: unknown) => e instanceof PumError && e.code === 'PUM_ERR_TABLE');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
