/* Runs in: the launcher (C, one process, single-threaded).
 *
 * What the parts of the launcher share: the wire protocol's numbers, the
 * parsed request, the answer buffer, the path checks and the child's plan.
 * native/README.md says what each file does and in which order to read them. */
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
	/* requests */
	T_ID = 1, T_PROGRAM, T_SANDBOX, T_USER, T_UID, T_GID, T_GROUPS, T_HOME,
	T_SPOOL, T_ENV, T_TIMEOUT, T_CPU, T_AS, T_NPROC, T_FSIZE, T_OUTPUT,
	T_MEMORY, T_PIDS,
	/* answers */
	T_WHAT = 32, T_EXIT, T_SIGNAL, T_TIMED_OUT, T_KILLED, T_WALL_MS,
	T_STDOUT, T_STDERR, T_DROPPED, T_KIND, T_REASON, T_PATH, T_MODE,
	T_OWNER, T_ERRNO, T_STAGE, T_TEXT,
};

enum program { PROG_FILTER = 1, PROG_RCPT };
enum sandbox { SB_SETPRIV = 1, SB_BWRAP, SB_NONE };

#define MAX_GROUPS 64
#define MAX_ENV 17
#define MAX_ENV_LEN 4096        /* one NAME=VALUE entry */
#define USER_NAME_MAX 64
#define SPOOL_NAME_LEN 28       /* "msg-" + 24 hex digits */

struct request {
	int type;
	int id_known;           /* for a FAILED answer to a bad request */
	uint64_t id;
	int program, sandbox;
	char user[USER_NAME_MAX + 1];
	uint32_t uid, gid;
	uint32_t groups[MAX_GROUPS];
	int ngroups;
	char home[PATH_MAX];
	int has_spool;
	char spool[SPOOL_NAME_LEN + 1];
	uint64_t timeout_ms, cpu, as, nproc, fsize, output, memory, pids;
	int nenv;               /* last: parse_request clears only what precedes */
	char env[MAX_ENV][MAX_ENV_LEN + 1];
};

/* Pure: parses one frame body (type byte + fields, the length word already
 * taken off). 0 = a valid request; -1 = invalid, `why` says what. */
int parse_request(const uint8_t *body, size_t len, struct request *rq, char *why, size_t whylen);

int parse_u64(const char *s, uint64_t max, uint64_t *out);
int valid_user_name(const char *s);
int valid_abs_path(const char *s);

/* Answers: a growing byte buffer of whole frames. */
struct buf {
	uint8_t *p;
	size_t len, cap;
};
void buf_put(struct buf *b, const void *data, size_t n);
void buf_frame(struct buf *b, int type);      /* starts a frame */
void buf_bytes(struct buf *b, int tag, const void *data, size_t n);
void buf_str(struct buf *b, int tag, const char *s);
void buf_num(struct buf *b, int tag, uint64_t v);
void buf_end(struct buf *b);                  /* patches the frame's length */

/* ---- checks as the user (check.c) ---------------------------------------- */

struct who {
	uid_t uid;
	gid_t gid;
	const uint32_t *groups;
	int ngroups;
};

enum verdict_kind { V_OK = 0, V_MISSING, V_UNSAFE, V_FAILED };

struct verdict {
	int kind;
	const char *reason;     /* a short code, native/README.md lists them */
	char path[PATH_MAX];    /* the file or directory it is about */
	uint32_t mode, owner;
	int err;
};

/* Checks the program at `path` for `w` (see check.c); on V_OK returns an
 * O_PATH descriptor of the very file checked and `resolved` holds its path. */
int check_program(const struct who *w, const char *path, int root_only,
		  struct verdict *v, char resolved[PATH_MAX]);
/* Switches the file-system identity to `w` and back, verified (check.c). */
int become(const struct who *w);
int unbecome(void);

extern int g_privileged;        /* euid 0 */
extern uid_t g_self_uid;

/* ---- the child (child.c) ------------------------------------------------- */

enum stage {
	ST_NONE = 0, ST_SIGNALS, ST_CGROUP, ST_DUP, ST_SETSID, ST_RLIMIT,
	ST_UMASK, ST_CAPBSET, ST_SETGROUPS, ST_SETRESGID, ST_SETRESUID,
	ST_CAPSET, ST_AMBIENT, ST_NNP, ST_PDEATHSIG, ST_PARENT, ST_CLOSE,
	ST_ARGS,
	ST_CHDIR, ST_EXEC,      /* from here on the failure is the user's */
	ST_COUNT,
};
extern const char *const stage_names[ST_COUNT];

struct child_status {
	int stage, err;
};

struct child_plan {
	int in_fd, out_fd, err_fd, status_fd;
	int exec_fd;            /* O_PATH of the checked program, -1 for bwrap */
	int cgroup_procs_fd;    /* the run's cgroup.procs, or -1 */
	int args_fd;            /* bwrap: --args 3 */
	int bwstat_fd;          /* bwrap: --json-status-fd 4 */
	int privileged;
	uid_t uid;
	gid_t gid;
	gid_t groups[MAX_GROUPS];
	int ngroups;
	int nlimits;
	struct { int resource; uint64_t value; } limits[5];
	int last_cap;
	pid_t parent;
	const char *home, *path;
	char *const *argv, *const *envp;
};

int child_main(void *plan);

#endif
