// Runs in: the milter process.
//
// The recipients of one transaction (MAIL .. EOM/ABORT). A user reached
// through two addresses (alias, extension) is asked once, with the first
// address as their RECIPIENT, but every RCPT string that reached them is kept
// so that drop-rejecters can remove them all.
import type { UserAccount } from '../users/user.js';
import type { LocalRecipient, NonLocalRecipient, Recipient } from './classify.js';

export interface RecipientsOfUser {
  user: UserAccount;
  /** The first RCPT that reached this user: its address is the filter's RECIPIENT. */
  first: LocalRecipient;
  /** Every RCPT argument (as sent) that reached this user, in order. */
  rcpts: string[];
}

export class TransactionRecipients {
  private readonly byUser = new Map<string, RecipientsOfUser>();
  private readonly others: NonLocalRecipient[] = [];

  /** Adds one classified RCPT; returns true when it is a local user not seen before in this transaction. */
  add(r: Recipient): boolean {
    if (r.kind === 'nonlocal') {
      this.others.push(r);
      return false;
    }
    const known = this.byUser.get(r.user.name);
    if (known) {
      known.rcpts.push(r.rcpt);
      return false;
    }
    this.byUser.set(r.user.name, { user: r.user, first: r, rcpts: [r.rcpt] });
    return true;
  }

  has(userName: string): boolean {
    return this.byUser.has(userName);
  }

  /** Each local user once, in the order first seen. */
  localUsers(): RecipientsOfUser[] {
    return [...this.byUser.values()];
  }

  get localUserCount(): number {
    return this.byUser.size;
  }

  get nonLocal(): readonly NonLocalRecipient[] {
    return this.others;
  }

  get nonLocalCount(): number {
    return this.others.length;
  }

  /** Forget everything (new MAIL, ABORT). */
  clear(): void {
    this.byUser.clear();
    this.others.length = 0;
  }
}
