/* Runs in: the launcher (C, one process, single-threaded) and its per-run
 * children (forks of it).
 *
 * What the parts of the launcher share: the wire protocol's numbers, the
 * parsed request, the start-up options, the answer buffer, the account and
 * path checks, and the record a child sends back. native/README.md says what
 * each file does and in which order to read them. */
#ifndef PUM_LAUNCHER_H
#define PUM_LAUNCHER_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- wire protocol (native/README.md has the table) ---------------------- */

#define MAX_FRAME (1u << 20)   /* a client frame above this closes its connection */

enum msg_type {
	MSG_RUN = 1, MSG_STAT = 2,                    /* client -> launcher */
	MSG_DONE = 0x81, MSG_NOTRUN = 0x82,           /* launcher -> client */
	MSG_FAILED = 0x83, MSG_CHECKED = 0x84,
};

enum tag {
	/* requests (the numbers of fields dropped since stay unused) */
	T_ID = 1, T_PROGRAM = 2, T_USER = 4, T_UID = 5, T_SPOOL = 9, T_ENV = 10,
	/* answers */
	T_WHAT = 32, T_EXIT, T_SIGNAL, T_TIMED_OUT, T_KILLED, T_WALL_MS,
	T_STDOUT, T_STDERR, T_DROPPED, T_KIND, T_REASON, T_PATH, T_MODE,
	T_OWNER, T_ERRNO, T_STAGE, T_TEXT,
};

enum program { PROG_FILTER = 1, PROG_RCPT };

#define MAX_GROUPS 65536   /* the kernel's NGROUPS_MAX: every account fits */
#define MAX_ENV 12              /* the envelope variables; the launcher adds 5 */
#define MAX_ENV_LEN 4096        /* one NAME=VALUE entry */
#define USER_NAME_MAX 64
#define SPOOL_NAME_LEN 28       /* "msg-" + 24 hex digits */

struct request {
	int type;
	int id_known;           /* for a FAILED answer to a bad request */
	uint64_t id;
	int program;
	char user[USER_NAME_MAX + 1];   /* a cross-check only: the launcher looks up the uid */
	uid_t uid;
	int has_spool;
	char spool[SPOOL_NAME_LEN + 1];
	int nenv;               /* last: parse_request clears only what precedes */
	char env[MAX_ENV][MAX_ENV_LEN + 1];
};

/* Pure: parses one frame body (type byte + fields, the length word already
 * taken off). 0 = a valid request; -1 = invalid, `why` says what. Control
 * characters are removed from env values. */
int parse_request(const uint8_t *body, size_t len, struct request *rq, char *why, size_t whylen);

int parse_u64(const char *s, uint64_t max, uint64_t *out);
int valid_user_name(const char *s);
int valid_abs_path(const char *s);

/* Answers: a growing byte buffer of whole frames. */
struct buf {
	uint8_t *p;
	size_t len, cap;
	size_t frame_start;
};
void buf_put(struct buf *b, const void *data, size_t n);
void buf_frame(struct buf *b, int type);      /* starts a frame */
void buf_bytes(struct buf *b, int tag, const void *data, size_t n);
void buf_str(struct buf *b, int tag, const char *s);
void buf_num(struct buf *b, int tag, uint64_t v);
void buf_end(struct buf *b);                  /* patches the frame's length */

/* ---- start-up options: the whole policy, fixed for the launcher's life ---- */

enum sandbox { SB_SETPRIV = 1, SB_BWRAP };

struct options {
	const char *socket, *spool, *filter_path, *rcpt_path, *default_path, *cgroup, *bwrap, *passwd_file;
	uint64_t client_uid, client_gid, min_uid, max_uid;
	int sandbox;
	uint64_t cpu, as, nproc, fsize, output, memory, pids;   /* memory, pids: 0 = none */
	uint64_t timeout_ms, rcpt_timeout_ms;
};
extern struct options opt;
extern int g_privileged;        /* euid 0 */
extern uid_t g_self_uid;
extern int g_last_cap, g_spool_dir;

/* ---- the account, looked up by uid in the child (account.c) --------------- */

struct account {
	char name[USER_NAME_MAX + 1];
	uid_t uid;
	gid_t gid;
	char home[PATH_MAX], shell[PATH_MAX];
	gid_t groups[MAX_GROUPS];
	int ngroups;
};

/* 0, or -1 with errno (ENOENT: no such uid; E2BIG: too many groups or too long). */
int lookup_account(uid_t uid, struct account *a);
/* The uid that `name` names (passwd file or NSS), or -1 with errno (ENOENT: none). */
int uid_of_name(const char *name, uid_t *uid);

/* ---- checks as the user (check.c) ---------------------------------------- */

enum verdict_kind { V_OK = 0, V_MISSING, V_UNSAFE, V_FAILED };

struct verdict {
	int kind;
	const char *reason;     /* a short code, native/README.md lists them */
	char path[PATH_MAX];    /* the file or directory it is about */
	uint32_t mode, owner;
	int err;
};

/* Checks the program at `path` for user `uid`, with the file-system identity
 * already the user's; on V_OK returns an O_PATH descriptor of the very file
 * checked and `resolved` holds its path. */
int check_program(uid_t uid, const char *path, int root_only, struct verdict *v, char resolved[PATH_MAX]);

/* ---- the child (child.c) ------------------------------------------------- */

/* What a child tells the launcher through its close-on-exec status pipe.
 * Nothing (end of file) = the program was executed. */
enum record_kind {
	R_CHECKED = 1,          /* STAT: the verdict (what, kind, reason, path) */
	R_VERDICT,              /* RUN: missing or unsafe: the user's program, not run */
	R_USER,                 /* RUN: chdir or exec failed, for the user's reasons */
	R_SETUP,                /* our failure, at `stage` with `err` */
	R_CHOSEN,               /* RUN: the program passed (`what`); set-up and exec follow */
};

struct record {
	int kind, vkind, err;
	uint32_t mode, owner;
	char what[8];           /* own, default */
	char stage[16];
	char reason[32];
	char path[PATH_MAX];
};

struct child_fds {
	int out, err, status, bwstat;   /* write ends of the run's pipes (-1: none) */
};

/* "/..." or "~/...", %u the user name: 0 and `out` absolute and normalised, or -1. */
int expand(const char *tmpl, const char *home, const char *user, char out[PATH_MAX]);

/* Runs in the child right after the fork; never returns. */
_Noreturn void child_main(const struct request *rq, const struct child_fds *f, pid_t parent);

#endif
