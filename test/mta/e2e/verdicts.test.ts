// The verdict table (test/scenarios/verdicts.ts), row by row, end to end
// through real Postfix and real Sendmail: swaks sends as a well-behaved
// client (recipients deferred with 452 come back in a new transaction), and
// each row is checked from both ends: the SMTP replies the client got, the
// mailboxes and the remote sink (who received what, exactly once, derived
// from the row's verdicts), the filter runs, and the milter's per-message log
// line. Every row runs on each MTA's usual milter transport (Postfix: unix
// socket, Sendmail: TCP); rows marked bothTransports run on the other one
// too. Also here: what the filter sees (filter-view.ts).
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { MtaKind } from '../harness/index.js';
import { lacksCommand } from '../../support/require.js';
import {
  byConfig,
  carried,
  checkLogLine,
  DEFER_REPLY,
  deliveries,
  expand,
  filterBody,
  messageLines,
  ran,
  recipient,
  relays,
  transactions,
  USERS,
  type Scenario,
  type User,
} from '../../scenarios/scenario.js';
import { VERDICTS } from '../../scenarios/verdicts.js';
import { filterViewCase } from './filter-view.js';
import { MTA_KINDS, REMOTE_DOMAIN, Rig, cannotRun, quietlyRunnable } from './support.js';

type Transport = 'unix' | 'inet';
const USUAL: Record<MtaKind, Transport> = { postfix: 'unix', sendmail: 'inet' };

/** '550 5.7.1 text' as the client sees it: the code, a space or dash, the rest verbatim. 'accept': a 250. */
function replyPattern(reply: string): RegExp {
  if (reply === 'accept') return /^250 /;
  const escaped = reply.slice(4).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${reply.slice(0, 3)}[ -]${escaped}$`);
}

async function replay(rig: Rig, row: Scenario): Promise<void> {
  rig.setFilters(Object.fromEntries(USERS.map((u) => [u, row.filters[u] ? filterBody(row.filters[u]!) : null])));
  for (const u of USERS) if (row.filters[u]?.kind === 'unsafe') chmodSync(rig.user(u).file('.user-milter'), 0o775); // group-writable
  const milter = await rig.startMilter({ 'log.format': 'json', ...row.config });
  const mark = milter.logMark();
  const account = (u: User): { uid: number; home: string } => ({ uid: rig.user(u).uid, home: rig.user(u).home });
  const address = (to: string): string => {
    const r = recipient(to);
    return r.kind === 'remote' ? `${r.local}@${REMOTE_DOMAIN}` : rig.addr(r.user, r.extension || undefined);
  };

  const body = row.bodyBytes ? `${'x'.repeat(70)}\n`.repeat(Math.ceil(row.bodyBytes / 71)) : undefined;
  const { caseId, transactions: sent } = await rig.sendRetrying(row.to.map(address), body ? { body } : {});
  const expected = transactions(row);
  assert.equal(sent.length, expected.length, `transactions:\n${sent.map((x) => x.transcript).join('\n')}`);
  const lists = carried(row);
  expected.forEach((t, n) => {
    const got = sent[n]!;
    assert.deepEqual(got.accepted, lists[n]!.map(address), `transaction ${n + 1}: accepted recipients`);
    assert.deepEqual(got.deferred, (t.deferred ?? []).map(address), `transaction ${n + 1}: deferred recipients`);
    got.rcptReplies.filter((r) => r.startsWith('4')).forEach((r) => assert.match(r, replyPattern(DEFER_REPLY)));
    assert.match(got.finalReply, replyPattern(expand(t.reply, account)), `transaction ${n + 1}: the verdict\n${got.transcript}`);
    if (t.reply === 'accept') assert.equal(got.code, 0, got.transcript);
    else if (t.reply.startsWith('5')) assert.equal(got.code, 26, `rejected after the final dot\n${got.transcript}`);
    else assert.notEqual(got.code, 0, got.transcript);
  });

  await rig.mta.settle();
  const copies = deliveries(row);
  for (const u of USERS) assert.equal(rig.delivered(u, caseId), copies[u], `${u}'s mailbox`);
  const sort = (lists: string[][]): string[][] => lists.map((l) => [...l].sort()).sort();
  assert.deepEqual(sort(rig.relayed(caseId)), sort(relays(row).map((l) => l.map(address))), 'relayed to the remote domain');
  for (const u of USERS) {
    const runs = expected.filter((t) => t.users[u] !== undefined && ran(t.users[u])).length;
    assert.equal(rig.user(u).runs().length, runs, `${u}'s filter runs`);
  }

  const lines = messageLines(await milter.waitForLog(new RegExp(`("event":"message".*){${expected.length}}`, 's'), mark));
  assert.equal(lines.length, expected.length, 'one log line per transaction');
  expected.forEach((t, n) => {
    // The MTA's own queue id: in the reply when it accepted, else at least one.
    const queued = /queued as ([0-9A-Z]+)$|^250 2\.0\.0 (\S+) Message accepted/.exec(sent[n]!.finalReply);
    const queueId = queued ? (queued[1] ?? queued[2])! : /^[0-9A-Za-z]+$/;
    checkLogLine(lines[n]!, row, t, { name: (u) => rig.user(u).name, from: 'sender@client.test', queueId, expand: (s) => expand(s, account) });
  });
  const spool = /"spoolDir":"([^"]+)"/.exec(milter.log())?.[1];
  assert.ok(spool, 'serve logs its spool directory');
  // The launcher's socket lives there too; only spooled messages count.
  assert.deepEqual(existsSync(spool) ? readdirSync(spool).filter((n) => n !== 'launcher.sock') : [], [], 'spool directory empty after the message');
}

for (const kind of MTA_KINDS) {
  for (const transport of [USUAL[kind], USUAL[kind] === 'unix' ? 'inet' : 'unix'] as const) {
    const usual = transport === USUAL[kind];
    const rows = byConfig(usual ? VERDICTS : VERDICTS.filter((r) => r.bothTransports)).flat();
    describe(`${kind}, milter over ${transport === 'unix' ? 'a unix socket' : 'TCP'}: verdicts`, () => {
      const rig = new Rig(kind, { users: USERS, socket: transport });
      before(async () => {
        if (quietlyRunnable()) await rig.start();
      });
      after(() => rig.stop());

      for (const row of rows) {
        it(row.name, async (t) => {
          if (cannotRun(t)) return;
          for (const [command, pkg] of row.needs ?? []) if (lacksCommand(t, command, pkg)) return;
          await rig.scenario(() => replay(rig, row));
        });
      }

      if (usual) filterViewCase(rig);
    });
  }
}
