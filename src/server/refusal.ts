// Runs in: the milter process.
//
// What a connection over milter.maxConnections talks to instead of the real
// application: the same declaration, so negotiation goes as the MTA expects
// (it waits for the OPTNEG reply, and a dropped socket would count as a
// milter failure), and a 421 for the first step it is asked about. Both MTAs
// end the SMTP session on a 421; the connection hangs up after writing it.
import type { CustomReply, MilterApplication, MilterDeclaration, MilterHandler } from '../milter/application.js';

export function refusal(declaration: MilterDeclaration, reply: CustomReply): MilterApplication {
  if (reply.code !== '421') throw new RangeError(`a refusal must be a 421 (it closes the SMTP session), got ${reply.code}`);
  const refuse = (): CustomReply => reply;
  const handler: MilterHandler = { connect: refuse, helo: refuse, mail: refuse, rcpt: refuse, data: refuse, header: refuse, eoh: refuse, body: refuse, eom: refuse, unknown: refuse };
  return { declaration, createHandler: () => handler };
}
