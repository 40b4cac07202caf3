import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MilterDeclaration } from '../../../src/milter/application.js';
import {
  SMFIF_ADDHDRS,
  SMFIF_CHGBODY,
  SMFIF_ADDRCPT,
  SMFIF_DELRCPT,
  SMFIF_SETSYMLIST,
  SMFIP_HDR_LEADSPC,
  SMFIP_NOUNKNOWN,
  SMFIP_NR_BODY,
  SMFIP_NR_HDR,
  SMFIP_SKIP,
  SMFI_CURR_ACTS,
  SMFI_CURR_PROT,
} from '../../../src/milter/constants.js';
import { MilterProtocolError } from '../../../src/milter/errors.js';
import { milterReplies, mtaSends, negotiate } from '../../../src/milter/negotiate.js';
import { DECLARATION } from '../../../src/app/index.js';

/** per-user-milter's own declaration: what the application really asks of the MTA. */
const perUser: MilterDeclaration = DECLARATION;

const postfix = { version: 6, actions: SMFI_CURR_ACTS, protocol: SMFI_CURR_PROT };

describe('negotiate', () => {
  it('answers a Postfix 3.7 offer: v6, DELRCPT + SETSYMLIST + ADDRCPT (policy.mixed=extension), NOUNKNOWN + SKIP + HDR_LEADSPC, macro lists in stage order', () => {
    const { reply, negotiated } = negotiate(postfix, perUser);
    assert.equal(reply.version, 6);
    assert.equal(reply.actions, SMFIF_DELRCPT | SMFIF_SETSYMLIST | SMFIF_ADDRCPT);
    assert.equal(reply.protocol, SMFIP_NOUNKNOWN | SMFIP_SKIP | SMFIP_HDR_LEADSPC);
    assert.deepEqual(reply.macroLists, [
      { stage: 0, names: 'j {daemon_name} {client_addr} {client_name} _' },
      { stage: 1, names: '{tls_version}' },
      { stage: 2, names: 'i {mail_addr} {auth_type} {auth_authen} r' },
      { stage: 3, names: 'i {rcpt_mailer} {rcpt_addr} {rcpt_host}' },
      { stage: 4, names: 'i' },
      { stage: 5, names: 'i' },
      { stage: 6, names: 'i' },
    ]);
    assert.deepEqual(negotiated, { version: 6, actions: reply.actions, protocol: reply.protocol });
  });

  it('replies to every step by default: no NR bits unless declared', () => {
    const { negotiated } = negotiate(postfix, perUser);
    for (const step of ['connect', 'helo', 'mail', 'rcpt', 'data', 'header', 'eoh', 'body'] as const) {
      assert.ok(milterReplies(negotiated, step), step);
      assert.ok(mtaSends(negotiated, step), step);
    }
    assert.equal(mtaSends(negotiated, 'unknown'), false);
  });

  it('sets declared no-reply and format bits only where offered', () => {
    const decl: MilterDeclaration = { actions: 0, noReplySteps: ['header', 'body'], headerLeadingSpace: true };
    assert.equal(negotiate(postfix, decl).reply.protocol, SMFIP_NR_HDR | SMFIP_NR_BODY | SMFIP_HDR_LEADSPC | SMFIP_SKIP);
    // An MTA that offers none of them gets none (Sendmail aborts on bits it did not offer).
    assert.equal(negotiate({ version: 6, actions: SMFI_CURR_ACTS, protocol: 0x3f }, decl).reply.protocol, 0);
  });

  it('answers a v2 peer with version 2, no macro lists, V1 defaults for zero words', () => {
    const { reply } = negotiate({ version: 2, actions: 0x3f, protocol: 0x7f }, perUser);
    assert.equal(reply.version, 2);
    assert.equal(reply.actions, SMFIF_DELRCPT | SMFIF_ADDRCPT, 'SETSYMLIST was not offered: dropped, and with it the lists; ADDRCPT (in 0x3f) kept');
    assert.deepEqual(reply.macroLists, []);
    assert.equal(reply.protocol, 0, 'NOUNKNOWN (0x100), SKIP and HDR_LEADSPC are beyond a v2 offer');
    const zero = negotiate({ version: 2, actions: 0, protocol: 0 }, { actions: SMFIF_DELRCPT });
    assert.equal(zero.reply.actions, SMFIF_DELRCPT, 'zero actions word means SMFI_V1_ACTS (0x0F)');
  });

  it('caps the version at 6 for a newer MTA', () => {
    assert.equal(negotiate({ ...postfix, version: 9 }, perUser).reply.version, 6);
  });

  it('fails when a needed action is not offered, or the MTA is older than v2', () => {
    assert.throws(
      () => negotiate({ version: 6, actions: SMFIF_ADDHDRS, protocol: SMFI_CURR_PROT }, perUser),
      (e: unknown) => e instanceof MilterProtocolError && e.reason === 'negotiation-failed' && /needs 0x8/.test(e.message),
    );
    assert.throws(() => negotiate({ ...postfix, version: 1 }, perUser), /below 2/);
    assert.throws(() => negotiate(postfix, { actions: SMFIF_CHGBODY << 12 }), MilterProtocolError);
  });

  it('never echoes internal MDS bits', () => {
    const { reply } = negotiate({ ...postfix, protocol: SMFI_CURR_PROT | 0x30000000 }, perUser);
    assert.equal(reply.protocol & 0x70000000, 0);
  });

  it('sends an empty list for a stage declared with no names, and nothing for stages left out', () => {
    const { reply } = negotiate(postfix, { actions: 0, optionalActions: SMFIF_SETSYMLIST, macros: { rcpt: [] } });
    assert.deepEqual(reply.macroLists, [{ stage: 3, names: '' }]);
  });

  it('refuses macro names with separators', () => {
    assert.throws(() => negotiate(postfix, { actions: SMFIF_SETSYMLIST, macros: { connect: ['a b'] } }), RangeError);
  });
});
