// The real-MTA test harness: private Postfix and Sendmail instances, real
// test users with real filters, the built milter, swaks and an SMTP sink.
// Everything a start* function returns has a stop()/remove() that the caller
// must run (t.after / finally), also when the test fails.
export * from './util.js';
export * from './mbox.js';
export * from './postfix.js';
export * from './sendmail.js';
export * from './users.js';
export * from './milter.js';
export * from './swaks.js';
export * from './sink.js';

import type { Postfix } from './postfix.js';
import type { Sendmail } from './sendmail.js';
export type Mta = Postfix | Sendmail;
export type MtaKind = Mta['kind'];
