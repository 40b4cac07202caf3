// Runs in: the milter process.
//
// The per-user-milter application: what it asks of the MTA in negotiation,
// and one PerUserHandler per MTA connection.
import type { MilterApplication, MilterDeclaration } from '../milter/application.js';
import { SMFIF_ADDRCPT, SMFIF_DELRCPT, SMFIF_SETSYMLIST } from '../milter/constants.js';
import type { AppContext } from './context.js';
import { PerUserHandler } from './handler.js';

export type { AppContext, AppMetrics, FilterRunner } from './context.js';

export const DECLARATION: MilterDeclaration = {
  // DELRCPT for policy.mixed=drop-rejecters; without it the MTA must not talk to us.
  actions: SMFIF_DELRCPT,
  // ADDRCPT for policy.mixed=extension; an MTA that does not offer it still talks to us (extension falls back to deliver).
  optionalActions: SMFIF_SETSYMLIST | SMFIF_ADDRCPT,
  skipSteps: ['unknown'],
  // Filters get the message byte-exact: keep the whitespace after each colon.
  headerLeadingSpace: true,
  macros: {
    connect: ['j', '{daemon_name}', '{client_addr}', '{client_name}', '_'],
    helo: ['{tls_version}'],
    mail: ['i', '{mail_addr}', '{auth_type}', '{auth_authen}', 'r'],
    rcpt: ['i', '{rcpt_mailer}', '{rcpt_addr}', '{rcpt_host}'],
    data: ['i'],
    eoh: ['i'],
    eom: ['i'],
  },
};

export function createPerUserApplication(app: AppContext): MilterApplication {
  return {
    declaration: DECLARATION,
    createHandler: (conn) => new PerUserHandler(app, conn),
  };
}
