// Runs in: the milter process.
//
// The recipients of one transaction (MAIL .. EOM/ABORT). A user reached
// through two addresses (alias, extension) is asked once, with the first
// address as their RECIPIENT, but every RCPT string that reached them is kept
// so that drop-rejecters can remove them all. An alias RCPT (recipients.aliasMaps)
// reaches several users; it is removed only when all of them rejected and
// nothing else is behind it (`keptRcpts`).
import type { UserAccount } from '../users/user.js';
import { localsOf, type LocalRecipient, type Recipient } from './classify.js';

export interface RecipientsOfUser {
  user: UserAccount;
  /** The first RCPT that reached this user: its address is the filter's RECIPIENT. */
  first: LocalRecipient;
  /** Every RCPT argument (as sent) that reached this user, in order. */
  rcpts: string[];
}

export class TransactionRecipients {
  private readonly byUser = new Map<string, RecipientsOfUser>();
  private nonLocal = 0;
  private readonly kept = new Set<string>();

  /** Adds one classified RCPT; returns the local users not seen before in this transaction. */
  add(r: Recipient): UserAccount[] {
    if (r.kind === 'nonlocal') {
      this.nonLocal++;
      return [];
    }
    if (r.kind === 'alias' && r.nonLocalTargets > 0) {
      // Its other targets vote too, and get their copy whatever the users behind it say.
      this.nonLocal += r.nonLocalTargets;
      this.kept.add(r.rcpt);
    }
    const fresh: UserAccount[] = [];
    for (const l of localsOf(r)) {
      const known = this.byUser.get(l.user.name);
      if (known) {
        if (!known.rcpts.includes(l.rcpt)) known.rcpts.push(l.rcpt);
        continue;
      }
      this.byUser.set(l.user.name, { user: l.user, first: l, rcpts: [l.rcpt] });
      fresh.push(l.user);
    }
    return fresh;
  }

  /** Each local user once, in the order first seen. */
  localUsers(): RecipientsOfUser[] {
    return [...this.byUser.values()];
  }

  /** RCPTs never removed by drop-rejecters: aliases that also lead to non-local targets. */
  get keptRcpts(): ReadonlySet<string> {
    return this.kept;
  }

  get localUserCount(): number {
    return this.byUser.size;
  }

  /** Non-local recipients, counting the non-local targets of aliases. */
  get nonLocalCount(): number {
    return this.nonLocal;
  }
}
