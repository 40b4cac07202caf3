// Runs in: every process (pure).
//
// policy.mixed = split (docs/reference.md §5.4): a transaction that holds a
// user whose filter will run holds nothing that could outvote that user, so
// that user's verdict is exact for the whole transaction. "Exact means
// exact": besides a second user with a filter, a user without one and a
// non-local recipient under policy.nonLocal=accept (both accept votes) are
// kept apart too. Whatever would break that is answered 452 4.5.3 at RCPT and
// the client retries it in a new transaction: a later filtered user when
// the transaction already holds a filtered user or an accept vote, and a
// later accept vote when it already holds a filtered user. One RCPT is
// never split (an alias reaching several users goes as a whole). Under
// policy.dryRun nothing is ever deferred: the caller logs what would have
// been. Pure: no I/O.

export interface SplitQuestion {
  mixed: 'deliver' | 'drop-rejecters' | 'split' | 'extension';
  /** Users with a filter already accepted as recipients of this transaction. */
  filteredUsers: ReadonlySet<string>;
  /** Accept votes already in the transaction: users without a filter, non-local recipients under policy.nonLocal=accept. */
  acceptVotes: number;
  /** The users with a filter this RCPT brings that the transaction does not hold yet. */
  newFiltered: readonly string[];
  /** The accept votes this RCPT brings (users without a filter not yet in the transaction, non-local targets under nonLocal=accept). */
  newAcceptVotes: number;
}

/** True when this RCPT must be answered with SPLIT_REPLY (or, under dry-run, would be). */
export function mustSplit(q: SplitQuestion): boolean {
  if (q.mixed !== 'split') return false;
  const holdsFiltered = q.filteredUsers.size > 0;
  if (q.newFiltered.length > 0 && (holdsFiltered || q.acceptVotes > 0)) return true;
  return q.newAcceptVotes > 0 && holdsFiltered;
}
