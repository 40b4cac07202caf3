// Runs in: every process (pure).
//
// policy.mixed = split (contract §5.4): one transaction carries at most one
// user whose filter will run, so that user's verdict can be exact for the
// whole transaction. Further such recipients get 452 4.5.3 at RCPT and the
// client retries them in a new transaction. Pure: no I/O.

export interface SplitQuestion {
  mixed: 'deliver' | 'drop-rejecters' | 'split';
  /** Users with a filter already accepted as recipients of this transaction. */
  filteredUsers: ReadonlySet<string>;
  /** The user this RCPT resolved to. */
  user: string;
  /** Whether that user has a filter (no filter: no say, so no need to split). */
  hasFilter: boolean;
}

/**
 * True when this RCPT must be answered with SPLIT_REPLY. The same user
 * reached through a second address is not deferred: they are asked once.
 */
export function mustSplit(q: SplitQuestion): boolean {
  return q.mixed === 'split' && q.hasFilter && q.filteredUsers.size > 0 && !q.filteredUsers.has(q.user);
}
