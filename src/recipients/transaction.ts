// Runs in: the milter process.
//
// The recipients of one transaction (MAIL .. EOM/ABORT), each local user
// with their filter state (whether they have a say): the one place the
// transaction keeps who it is for. A user reached
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
  /** Whether the user has a filter (their own or filter.default), as the launcher said at their first RCPT. */
  hasFilter: boolean;
}

export class TransactionRecipients {
  private readonly byUser = new Map<string, RecipientsOfUser>();
  private nonLocal = 0;
  private readonly kept = new Set<string>();

  /**
   * Adds one classified RCPT; returns the local users not seen before in
   * this transaction. `hasFilter` answers for those new users (absent: no
   * filter).
   */
  add(r: Recipient, hasFilter: ReadonlyMap<string, boolean> = new Map()): UserAccount[] {
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
      this.byUser.set(l.user.name, { user: l.user, first: l, rcpts: [l.rcpt], hasFilter: hasFilter.get(l.user.name) ?? false });
      fresh.push(l.user);
    }
    return fresh;
  }

  /** The user, if this transaction already holds them. */
  user(name: string): RecipientsOfUser | undefined {
    return this.byUser.get(name);
  }

  /** Names of the users with a filter. */
  filteredUsers(): Set<string> {
    return new Set([...this.byUser.values()].filter((u) => u.hasFilter).map((u) => u.user.name));
  }

  /** Users without a filter (each an accept vote). */
  get unfilteredCount(): number {
    return [...this.byUser.values()].filter((u) => !u.hasFilter).length;
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
