// The shipped MTA snippets against the milter's own defaults (no MTA needed):
// the timeouts the snippets set must leave room for what the milter does with
// its default configuration, and their sockets must match the shipped example
// configuration. The e2e files prove the snippets work in real MTAs; this file
// keeps their numbers honest when a default changes.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseConfigText } from '../../../src/config/load.js';
import { schema } from '../../../src/config/schema.js';
import { parseMainCf, POSTFIX_SNIPPET, repoRoot, SENDMAIL_SNIPPET } from '../harness/index.js';

/** Postfix / Sendmail durations: "300s", "5m", "10" (seconds) -> ms. */
function ms(text: string): number {
  const m = /^(\d+)\s*([smhd]?)$/.exec(text.trim());
  assert.ok(m, `cannot parse duration ${text}`);
  const unit = { '': 1000, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

const defaults = schema as unknown as {
  filter: { timeout: { default: number } };
  milter: { progressInterval: { default: number } };
};
const filterTimeout = defaults.filter.timeout.default;
const progress = defaults.milter.progressInterval.default;
/** filter.timeout, then SIGTERM and SIGKILL 2 s later (contract §3). */
const worstFilter = filterTimeout + 2000;

describe('deploy/postfix/main.cf', () => {
  const cf = parseMainCf(readFileSync(POSTFIX_SNIPPET, 'utf8'));

  it('tempfails when the milter is unavailable, speaks protocol 6, filters SMTP mail only', () => {
    assert.equal(cf.get('milter_default_action'), 'tempfail');
    assert.equal(cf.get('milter_protocol'), '6');
    assert.ok(cf.get('smtpd_milters'));
    assert.equal(cf.has('non_smtpd_milters'), false);
  });

  it('milter_content_timeout outlasts the progress interval and a whole timed-out filter', () => {
    const content = ms(cf.get('milter_content_timeout') ?? '');
    assert.ok(content > progress, `milter_content_timeout ${content} ms <= milter.progressInterval ${progress} ms`);
    assert.ok(content > worstFilter, `milter_content_timeout ${content} ms <= filter.timeout + 2 s`);
  });

  it('the socket is the one deploy/config.example.json listens on, seen from the chrooted smtpd', () => {
    const exampleFile = path.join(repoRoot, 'deploy/config.example.json');
    // JSON with comments, read as the milter reads it.
    const example = parseConfigText(readFileSync(exampleFile, 'utf8'), exampleFile) as { milter?: { listen?: string } };
    const listen = example.milter?.listen ?? '';
    const milters = cf.get('smtpd_milters') ?? '';
    if (listen.startsWith('unix:/var/spool/postfix/')) {
      assert.equal(milters, 'unix:' + listen.slice('unix:/var/spool/postfix'.length));
    } else {
      assert.ok(milters.startsWith('unix:') || milters.startsWith('inet:'), milters);
    }
  });
});

describe('deploy/sendmail/per-user-milter.mc', () => {
  const line = readFileSync(SENDMAIL_SNIPPET, 'utf8').split('\n').find((l) => l.startsWith('INPUT_MAIL_FILTER('));
  const field = (name: string) => new RegExp(`\\b${name}=([^,']+)`).exec(line ?? '')?.[1]?.trim();

  it('has one INPUT_MAIL_FILTER that tempfails when the milter is unavailable', () => {
    assert.ok(line, 'no INPUT_MAIL_FILTER line');
    assert.equal(field('F'), 'T');
    assert.match(field('S') ?? '', /^(unix|local|inet6?):/);
  });

  it('T=: R (per reply, restarted by progress) exceeds the progress interval; E (whole end-of-message) a timed-out filter', () => {
    const t = new Map((field('T') ?? '').split(';').map((kv) => kv.split(':') as [string, string]));
    const r = ms(t.get('R') ?? '10s'); // Sendmail's defaults when absent
    const e = ms(t.get('E') ?? '5m');
    assert.ok(r > progress, `T=R ${r} ms <= milter.progressInterval ${progress} ms: Sendmail would time out between progress packets`);
    assert.ok(e > worstFilter, `T=E ${e} ms <= filter.timeout + 2 s: Sendmail would give up while a filter may still run`);
  });
});
