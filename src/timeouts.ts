// Runs in: every process (constants only, imports nothing).
//
// Every internal timeout in one place, each with its default and the reason
// for it. The timeouts an administrator sets (filter.timeout,
// filter.rcptTimeout, milter.progressInterval) are configuration keys
// (src/config/schema.ts); these are the ones that follow from how the parts
// work together.

/** After SIGTERM to every process of a timed-out run, SIGKILL this much later (docs/reference.md §3 filter.timeout). */
export const KILL_GRACE_MS = 2000;

/**
 * After the final SIGKILL, stop waiting for a run's output this much later:
 * a process that left the run (and the cgroup is not there to catch it) may
 * hold the output pipes for ever, and the verdict must not wait for it.
 */
export const ABANDON_MS = 500;

/**
 * Slack on top of a job's own bound (its timeout + kill grace + abandon)
 * before the milter counts the runner process as stuck: JSON hops and a busy
 * machine, never a filter's own time.
 */
export const RUNNER_ANSWER_SLACK_MS = 10_000;

/** After its input ends, the runner process waits this long for its pool to close before it exits anyway. */
export const RUNNER_EXIT_MS = 5000;

/**
 * A milter connection without traffic and without a command in flight is
 * closed after this. Above Postfix's 300 s smtpd timeout, so an SMTP session
 * that is merely slow keeps its milter connection.
 */
export const CONNECTION_IDLE_MS = 600_000;

/**
 * A milter connection with no transaction open (before the first MAIL, and
 * after each end of message or abort) is closed this long after it became
 * so, whatever it sends meanwhile (macros, HELO, ABORT do not extend it), so
 * a client that is not carrying mail cannot keep a maxConnections slot.
 * Both MTAs answer every later transaction of that SMTP session with their
 * milter default action (a tempfail with ours: Postfix 451 4.7.1, Sendmail
 * 451 4.3.2; test/mta/e2e/idle.test.ts) and use a new milter connection for
 * the next session, so the limit sits at Postfix's smtpd_timeout default:
 * Postfix itself hangs up on an SMTP client silent that long. Only a client
 * that spends longer between two messages (or before its first) and keeps
 * its session up meanwhile (EHLO, NOOP, RSET; Sendmail waits up to an hour
 * per command) sees the limit: a 451 at its next MAIL, and it sends again.
 */
export const IDLE_BETWEEN_TRANSACTIONS_MS = 300_000;

/** A connection refused for milter.maxConnections may linger this long before we hang up ourselves. */
export const REFUSED_IDLE_MS = 10_000;

/** On SIGTERM, messages in flight may take filter.timeout plus this (the kill grace and a margin). */
export const SHUTDOWN_MARGIN_MS = 3000;

/** User lookups (NSS, passwd file), positive and negative, are cached this long: ten recipients must not cost twenty execs. */
export const USER_CACHE_TTL_MS = 60_000;

/** One getent call may take this long; an NSS backend (LDAP, sssd) that hangs longer is a lookup error (tempfail). */
export const USER_LOOKUP_TIMEOUT_MS = 10_000;

/** The Prometheus endpoint's request and header timeouts: a scrape is small, a slow client must not hold a socket. */
export const METRICS_REQUEST_TIMEOUT_MS = 10_000;

/** The launcher must print its ready line within this after it was started (it only sets up a socket and a cgroup). */
export const LAUNCHER_READY_MS = 10_000;

/**
 * Answers of recipients.aliasMaps (found and not found) are cached this
 * long: one postmap per table and message, not per recipient, and an
 * edited table counts within half a minute (an aliases: file is re-read as
 * soon as it changes).
 */
export const ALIAS_CACHE_TTL_MS = 30_000;

/** One postmap query may take this long; a table server (LDAP, SQL) slower than that is a table failure (451 4.3.0 at RCPT). */
export const ALIAS_LOOKUP_TIMEOUT_MS = 10_000;
