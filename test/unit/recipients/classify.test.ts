import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { UserAccount } from '../../../src/users/user.js';
import {
  createRecipientClassifier,
  localRecipientFor,
  type ClassifierOptions,
  type RcptInput,
  type RecipientSettings,
  type UserLookup,
} from '../../../src/recipients/classify.js';
import { RecipientMap } from '../../../src/recipients/map.js';
import { PumError } from '../../../src/errors.js';

function account(name: string, uid: number): UserAccount {
  return { name, uid, gid: uid, groups: [], home: `/home/${name}`, shell: '/bin/sh' };
}

const ACCOUNTS = [account('alice', 1001), account('bob', 1002), account('daemon', 1), account('root', 0), account('carol', 1003)];

/** A resolver that records what it was asked and, like the real one, never returns root or accounts below users.minUid (1000). */
function fakeUsers(): UserLookup & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    async lookup(name: string) {
      asked.push(name);
      const account = ACCOUNTS.find((a) => a.name === name);
      return account && account.uid >= 1000 ? account : null;
    },
  };
}

const SETTINGS: RecipientSettings = { localMailers: ['local'], localDomains: [], delimiter: '+', map: '' };

async function classifier(settings: Partial<RecipientSettings> = {}, users = fakeUsers()) {
  const opts: ClassifierOptions = { recipients: { ...SETTINGS, ...settings }, users };
  return createRecipientClassifier(opts);
}

interface Row {
  name: string;
  input: RcptInput;
  settings?: Partial<RecipientSettings>;
  /** Expected user name, or a regexp for the non-local reason. */
  want: { user: string; address: string; localPart: string; extension: string; domain: string } | RegExp;
}

const table: Row[] = [
  {
    name: 'Postfix local mailer, full address in rcpt_addr',
    input: { rcpt: '<Alice+Lists@Example.ORG>', rcptMailer: 'local', rcptAddr: 'Alice+Lists@Example.ORG' },
    want: { user: 'alice', address: 'Alice+Lists@Example.ORG', localPart: 'alice+lists', extension: 'lists', domain: 'example.org' },
  },
  {
    name: 'Sendmail local mailer, bare user in rcpt_addr',
    input: { rcpt: '<bob@mx3.example.test>', rcptMailer: 'local', rcptAddr: 'bob' },
    want: { user: 'bob', address: 'bob@mx3.example.test', localPart: 'bob', extension: '', domain: 'mx3.example.test' },
  },
  {
    name: 'Sendmail: alias resolved to another user by the MTA',
    input: { rcpt: '<info@x.test>', rcptMailer: 'local', rcptAddr: 'carol' },
    want: { user: 'carol', address: 'info@x.test', localPart: 'info', extension: '', domain: 'x.test' },
  },
  {
    name: 'Sendmail: extension kept from the RCPT when rcpt_addr lost it',
    input: { rcpt: '<bob+x@h>', rcptMailer: 'local', rcptAddr: 'bob' },
    want: { user: 'bob', address: 'bob+x@h', localPart: 'bob+x', extension: 'x', domain: 'h' },
  },
  {
    name: 'no macros, domain listed (case-insensitive)',
    input: { rcpt: '<ALICE@Mail.Example>' },
    settings: { localDomains: ['mail.example'] },
    want: { user: 'alice', address: 'ALICE@Mail.Example', localPart: 'alice', extension: '', domain: 'mail.example' },
  },
  {
    name: 'remote mailer but listed domain: local',
    input: { rcpt: '<bob@mail.example>', rcptMailer: 'smtp', rcptAddr: 'bob@mail.example' },
    settings: { localDomains: ['MAIL.example'] },
    want: { user: 'bob', address: 'bob@mail.example', localPart: 'bob', extension: '', domain: 'mail.example' },
  },
  {
    name: 'several delimiter characters',
    input: { rcpt: '<alice-lists@x>', rcptMailer: 'local', rcptAddr: 'alice-lists@x' },
    settings: { delimiter: '+-' },
    want: { user: 'alice', address: 'alice-lists@x', localPart: 'alice-lists', extension: 'lists', domain: 'x' },
  },
  { name: 'remote mailer', input: { rcpt: '<alice@gmail.test>', rcptMailer: 'smtp', rcptAddr: 'alice@gmail.test' }, want: /mailer smtp/ },
  { name: 'discard transport', input: { rcpt: '<alice@bench.test>', rcptMailer: 'discard' }, want: /mailer discard/ },
  { name: 'no macros, domain not listed', input: { rcpt: '<alice@x>' }, want: /domain x not local/ },
  { name: 'unknown user', input: { rcpt: '<zed@x>', rcptMailer: 'local', rcptAddr: 'zed@x' }, want: /no such user zed/ },
  { name: 'system user below minUid (the resolver answers null)', input: { rcpt: '<daemon@x>', rcptMailer: 'local', rcptAddr: 'daemon@x' }, want: /no such user daemon/ },
  { name: 'root never (the resolver answers null)', input: { rcpt: '<root@x>', rcptMailer: 'local', rcptAddr: 'root@x' }, want: /no such user root/ },
  { name: 'program delivery from Sendmail aliasing', input: { rcpt: '<list@x>', rcptMailer: 'local', rcptAddr: '|/usr/bin/prog' }, want: /not a user name/ },
  { name: 'empty address', input: { rcpt: '<>', rcptMailer: 'local' }, want: /empty address/ },
];

test('classify: table', async () => {
  const c = await classifier();
  for (const row of table) {
    const cc = row.settings ? await classifier(row.settings) : c;
    const got = await cc.classify(row.input);
    assert.equal(got.rcpt, row.input.rcpt, `${row.name}: rcpt kept as sent`);
    if (row.want instanceof RegExp) {
      assert.equal(got.kind, 'nonlocal', row.name);
      if (got.kind === 'nonlocal') assert.match(got.reason, row.want, row.name);
    } else {
      assert.equal(got.kind, 'local', `${row.name}: ${got.kind === 'nonlocal' ? got.reason : ''}`);
      if (got.kind !== 'local') continue;
      const { user, address, localPart, extension, domain } = got;
      assert.deepEqual({ user: user.name, address, localPart, extension, domain }, row.want, row.name);
    }
  }
});

test('classify: the resolver is asked for the lower-cased user without extension', async () => {
  const users = fakeUsers();
  const c = await classifier({}, users);
  await c.classify({ rcpt: '<Bob+Tag@X>', rcptMailer: 'local', rcptAddr: 'Bob+Tag@X' });
  assert.deepEqual(users.asked, ['bob']);
});

test('recipient map: checked first, whole-address and local-part keys', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pum-map-'));
  const file = path.join(dir, 'map');
  fs.writeFileSync(
    file,
    ['# address-or-localpart username', '', 'Sales@Shop.Example  carol  # a whole address', 'postmaster bob', 'info alice', ''].join('\n'),
  );
  try {
    const c = await classifier({ map: file, localDomains: ['local.example'] });
    const sales = await c.classify({ rcpt: '<sales@shop.example>', rcptMailer: 'smtp' });
    assert.equal(sales.kind === 'local' && sales.user.name, 'carol', 'whole-address key works for a remote-looking domain');
    const pm = await c.classify({ rcpt: '<Postmaster@local.example>' });
    assert.equal(pm.kind === 'local' && pm.user.name, 'bob', 'local-part key on a local domain');
    const ext = await c.classify({ rcpt: '<info+news@h>', rcptMailer: 'local', rcptAddr: 'info+news@h' });
    assert.ok(ext.kind === 'local' && ext.user.name === 'alice' && ext.extension === 'news', 'local-part key without extension');
    const remote = await c.classify({ rcpt: '<postmaster@elsewhere.test>', rcptMailer: 'smtp' });
    assert.equal(remote.kind, 'nonlocal', 'a local-part key never catches a remote address');

    // Reload picks up a changed map; a broken map keeps the old one.
    fs.writeFileSync(file, 'postmaster alice\n');
    await c.reload({ recipients: { ...SETTINGS, map: file, localDomains: ['local.example'] }, users: fakeUsers() });
    const pm2 = await c.classify({ rcpt: '<postmaster@local.example>' });
    assert.equal(pm2.kind === 'local' && pm2.user.name, 'alice');
    fs.writeFileSync(file, 'just-one-field\n');
    await assert.rejects(
      c.reload({ recipients: { ...SETTINGS, map: file }, users: fakeUsers() }),
      (err: unknown) => err instanceof PumError && err.code === 'PUM_ERR_TABLE' && /:1: /.test(err.message),
    );
    const pm3 = await c.classify({ rcpt: '<postmaster@local.example>' });
    assert.equal(pm3.kind === 'local' && pm3.user.name, 'alice', 'previous map still in force');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('recipient map: parse errors and missing file', async () => {
  assert.throws(() => RecipientMap.parse('a b c\n', 'm'), (err: unknown) => err instanceof PumError && err.code === 'PUM_ERR_TABLE' && /m:1: /.test(err.message));
  assert.equal(RecipientMap.parse('# only a comment\n\n').size, 0);
  await assert.rejects(RecipientMap.load('/nonexistent/pum-map'), (err: unknown) => err instanceof PumError && err.code === 'PUM_ERR_TABLE' && /ENOENT/.test(err.message));
  assert.equal((await RecipientMap.load('')).size, 0);
});

test('localRecipientFor gives the classifier\'s address fields', async () => {
  const alice = ACCOUNTS[0] as UserAccount;
  const viaTry = localRecipientFor(alice, '<Alice+Lists@Example.ORG>', '+');
  const c = await classifier();
  const viaMilter = await c.classify({ rcpt: '<Alice+Lists@Example.ORG>', rcptMailer: 'local', rcptAddr: 'Alice+Lists@Example.ORG' });
  assert.deepEqual(viaTry, viaMilter);
  assert.deepEqual(localRecipientFor(alice, 'alice@localhost', '+'), {
    kind: 'local', user: alice, rcpt: 'alice@localhost', address: 'alice@localhost', localPart: 'alice', extension: '', domain: 'localhost',
  });
});

test('recipients.localMailers: a user reached through a mailer not in the list is reported (not for relay mailers)', async () => {
  const reports: Array<[string, string]> = [];
  const opts: ClassifierOptions = {
    recipients: { ...SETTINGS, localMailers: ['local', 'lmtp', 'virtual'] },
    users: fakeUsers(),
    onUnmatchedMailer: (mailer, user) => reports.push([mailer, user]),
  };
  const c = await createRecipientClassifier(opts);
  // Dovecot LMTP as Postfix's local_transport: local by the default list.
  const lmtp = await c.classify({ rcpt: '<Alice@example.org>', rcptMailer: 'lmtp', rcptAddr: 'Alice@example.org' });
  assert.equal(lmtp.kind === 'local' && lmtp.user.name, 'alice');
  const virtual = await c.classify({ rcpt: '<bob@virt.example>', rcptMailer: 'virtual', rcptAddr: 'bob@virt.example' });
  assert.equal(virtual.kind === 'local' && virtual.user.name, 'bob');
  // A pipe transport the administrator did not list: not local, and said so.
  const pipe = await c.classify({ rcpt: '<bob+x@example.org>', rcptMailer: 'dovecot', rcptAddr: 'bob+x@example.org' });
  assert.equal(pipe.kind, 'nonlocal');
  // Remote by a relay mailer, an unknown user, a mailer whose user is below minUid: not reported.
  await c.classify({ rcpt: '<alice@gmail.test>', rcptMailer: 'smtp', rcptAddr: 'alice@gmail.test' });
  await c.classify({ rcpt: '<alice@gmail.test>', rcptMailer: 'esmtp', rcptAddr: 'alice@gmail.test' });
  await c.classify({ rcpt: '<zed@example.org>', rcptMailer: 'dovecot', rcptAddr: 'zed@example.org' });
  await c.classify({ rcpt: '<daemon@example.org>', rcptMailer: 'dovecot', rcptAddr: 'daemon@example.org' });
  assert.deepEqual(reports, [['dovecot', 'bob']]);
});

test('recipients.localMailers: the schema default is local, lmtp and virtual (docs/reference.md §3)', async () => {
  const { schema } = await import('../../../src/config/schema.js');
  const recipients = schema.recipients as Record<string, { default: unknown }>;
  assert.deepEqual(recipients.localMailers?.default, ['local', 'lmtp', 'virtual']);
});
