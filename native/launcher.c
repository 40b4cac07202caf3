/* Runs in: the launcher (per-user-milter-launcher: C, one process, one
 * thread, started once by the milter with execa).
 *
 * The only part of per-user-milter that may switch users. Its policy (which
 * programs, which sandbox, which limits and timeouts, which uids) is fixed
 * by its command line; a request names only a uid, a program kind, a spool
 * file and the envelope. Each request gets a child (a fork: clone3 with a
 * pidfd, into the run's cgroup) that looks the account up, checks the
 * program as the user and executes it (child.c); this loop never touches a
 * user's file or a directory service, so nothing a user controls can stall
 * it. It watches each run (the pidfd, the output and status pipes, the
 * cgroup), enforces the deadline from the fork on, kills whatever the run
 * left behind, and answers. End of standard input (the milter is gone) ends
 * every run and the launcher. Read native/README.md first. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "launcher.h"

#define KILL_GRACE_MS 2000   /* src/timeouts.ts KILL_GRACE_MS: SIGTERM, then SIGKILL this much later */
#define ABANDON_MS 500       /* src/timeouts.ts ABANDON_MS: pipes drained at most this long after the leader */
#define STOP_MS 3000         /* at end of stdin, wait this long for runs to end before exiting anyway */
#define SWEEP_MS 50          /* without a cgroup: look for escapees this often while there are any */
#define ACCEPT_PAUSE_MS 100  /* out of descriptors: stop accepting this long */
#define CLOSING_MS 5000      /* a closed client's unsent answers are dropped after this */
#define MAX_PENDING (64u << 20)   /* a client that does not read its answers is dropped */
#define MAX_CLIENTS 256
#define MAX_RUNS 4096

struct options opt = { .cgroup = "auto" };
int g_privileged, g_last_cap, g_spool_dir = -1;
uid_t g_self_uid;

static int listen_fd = -1, sig_fd = -1, stopping;
static int cg_parent = -1, cg_runs = -1, cg_pids, cg_memory;   /* --cgroup, and its runs/ (the parent of the run cgroups) */
static char cg_path[PATH_MAX + 8] = "none";
static unsigned long run_seq;
static int64_t stop_deadline, accept_paused_until, sweep_at = INT64_MAX;
static int nclients, nruns, escapees_killed;
static char leftover[64][48];   /* run cgroups that could not be removed yet */
static int nleftover;
static int64_t leftover_at = INT64_MAX;

static void say(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	for (char *p = line; *p; p++)       /* one diagnostic, one line */
		if (*p == '\n')
			*p = ' ';
	fprintf(stderr, "per-user-milter-launcher: %s\n", line);
}

static _Noreturn void die(const char *fmt, const char *arg)
{
	say(fmt, arg, strerror(errno));
	exit(1);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- start-up ------------------------------------------------------------ */

static const char USAGE[] =
	"usage: per-user-milter-launcher --socket PATH --spool DIR --client-uid N [--client-gid N]\n"
	"         --min-uid N --max-uid N --filter-path TEMPLATE [--rcpt-path TEMPLATE] [--default-path PATH]\n"
	"         --sandbox setpriv|bwrap [--bwrap PATH] [--cgroup auto|none|DIR] [--passwd-file PATH]\n"
	"         --timeout-ms N [--rcpt-timeout-ms N] --cpu N --as N --nproc N --fsize N --output N --memory N --pids N\n";


static void parse_args(int argc, char **argv)
{
	enum { SOCKET, SPOOL, CLIENT_UID, CLIENT_GID, MIN_UID, MAX_UID, FILTER, RCPT, DEFAULT, CGROUP, BWRAP,
	       PASSWD, SANDBOX, TIMEOUT, RCPT_TIMEOUT, CPU, AS, NPROC, FSIZE, OUTPUT, MEMORY, PIDS, NOPTS };
	static const char *const names[NOPTS] = { "--socket", "--spool", "--client-uid", "--client-gid", "--min-uid",
		"--max-uid", "--filter-path", "--rcpt-path", "--default-path", "--cgroup", "--bwrap", "--passwd-file",
		"--sandbox", "--timeout-ms", "--rcpt-timeout-ms", "--cpu", "--as", "--nproc", "--fsize", "--output",
		"--memory", "--pids" };
	/* Numbers: the most each may be, and whether 0 is allowed. */
	static const struct { int k; uint64_t *dst; uint64_t max; int zero; } nums[] = {
		{ CLIENT_UID, &opt.client_uid, UINT32_MAX - 1, 1 }, { CLIENT_GID, &opt.client_gid, UINT32_MAX - 1, 1 },
		{ MIN_UID, &opt.min_uid, UINT32_MAX - 1, 0 }, { MAX_UID, &opt.max_uid, UINT32_MAX - 1, 0 },
		{ TIMEOUT, &opt.timeout_ms, 86400000, 0 }, { RCPT_TIMEOUT, &opt.rcpt_timeout_ms, 86400000, 0 },
		{ CPU, &opt.cpu, UINT64_C(1) << 62, 0 }, { AS, &opt.as, UINT64_C(1) << 62, 0 },
		{ NPROC, &opt.nproc, UINT64_C(1) << 62, 0 }, { FSIZE, &opt.fsize, UINT64_C(1) << 62, 0 },
		{ OUTPUT, &opt.output, 16u << 20, 1 }, { MEMORY, &opt.memory, UINT64_C(1) << 62, 1 },
		{ PIDS, &opt.pids, 1u << 22, 1 },
	};
	const char *val[NOPTS] = { 0 }, *bad = NULL;
	char probe[PATH_MAX];

	for (int i = 1; i < argc; i += 2) {
		int k = -1;
		for (int j = 0; j < NOPTS; j++)
			if (!strcmp(argv[i], names[j]))
				k = j;
		if (k < 0 || i + 1 >= argc || val[k]) {
			fprintf(stderr, "per-user-milter-launcher: %s: %s\n%s", argv[i],
				k < 0 ? "unknown option" : i + 1 >= argc ? "needs a value" : "given twice", USAGE);
			exit(2);
		}
		val[k] = argv[i + 1];
	}
	opt.socket = val[SOCKET];
	opt.spool = val[SPOOL];
	opt.filter_path = val[FILTER];
	opt.rcpt_path = val[RCPT];
	opt.default_path = val[DEFAULT];
	opt.cgroup = val[CGROUP] ? val[CGROUP] : "auto";
	opt.bwrap = val[BWRAP];
	opt.passwd_file = val[PASSWD];
	opt.sandbox = !val[SANDBOX] ? 0 : !strcmp(val[SANDBOX], "setpriv") ? SB_SETPRIV : !strcmp(val[SANDBOX], "bwrap") ? SB_BWRAP : 0;
	for (size_t i = 0; i < sizeof nums / sizeof *nums && !bad; i++) {
		const char *v = val[nums[i].k];
		if (!v && nums[i].k != CLIENT_GID && nums[i].k != RCPT_TIMEOUT)
			bad = "--socket, --spool, --client-uid, --min-uid, --max-uid, --filter-path, --sandbox, --timeout-ms and every limit are required";
		else if (v && (parse_u64(v, nums[i].max, nums[i].dst) || (!nums[i].zero && *nums[i].dst == 0)))
			bad = "a number: decimal digits, in range (uids, timeouts and rlimits not 0)";
	}
	if (!val[RCPT_TIMEOUT])
		opt.rcpt_timeout_ms = opt.timeout_ms;
	g_privileged = geteuid() == 0;
	if (bad)
		;
	else if (!opt.socket || !opt.spool || !opt.filter_path || !opt.sandbox)
		bad = "--socket, --spool, --filter-path and --sandbox setpriv|bwrap are required";
	else if (opt.min_uid > opt.max_uid)
		bad = "--min-uid must not be above --max-uid";
	else if (g_privileged && opt.client_uid >= opt.min_uid && opt.client_uid <= opt.max_uid)
		bad = "--client-uid must lie outside --min-uid..--max-uid (nobody's filter runs as the milter's account)";
	else if (!valid_abs_path(opt.spool) || !valid_abs_path(opt.socket) || strlen(opt.socket) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		bad = "--socket and --spool: absolute, normalised paths";
	else if (expand(opt.filter_path, "/h", "u", probe) || (opt.rcpt_path && expand(opt.rcpt_path, "/h", "u", probe)))
		bad = "--filter-path, --rcpt-path: /PATH or ~/PATH (%u = the user name), no . or .. component";
	else if ((opt.default_path && !valid_abs_path(opt.default_path)) || (opt.bwrap && !valid_abs_path(opt.bwrap)) ||
		 (opt.passwd_file && !valid_abs_path(opt.passwd_file)))
		bad = "--default-path, --bwrap, --passwd-file: absolute, normalised paths";
	else if (opt.sandbox == SB_BWRAP && !opt.bwrap)
		bad = "--sandbox bwrap needs --bwrap";
	else if (strcmp(opt.cgroup, "auto") && strcmp(opt.cgroup, "none") && !valid_abs_path(opt.cgroup))
		bad = "--cgroup: auto, none or an absolute path";
	if (bad) {
		fprintf(stderr, "per-user-milter-launcher: %s\n%s", bad, USAGE);
		exit(2);
	}
}

static int has_cap(const struct __user_cap_data_struct d[2], int cap)
{
	return (d[cap / 32].effective >> (cap % 32)) & 1;
}

/* The last mount at `where` of file-system type `type` in our mountinfo:
 * its mount point and super options (in `opts`), or -1. */
static int find_mount(const char *type, const char *where, char mnt[PATH_MAX], char opts[1024])
{
	char line[4096], m[PATH_MAX], rest[3072], t[64];
	int found = -1;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	while (f && fgets(line, sizeof line, f)) {
		char *dash;
		if (sscanf(line, "%*s %*s %*s %*s %4095s %*s %3071[^\n]", m, rest) != 2 || !(dash = strstr(rest, "- ")))
			continue;
		if (sscanf(dash, "- %63s %*s %1023s", t, opts) < 1 || strcmp(t, type) || (where && strcmp(m, where)))
			continue;
		snprintf(mnt, PATH_MAX, "%s", m);
		found = 0;
	}
	if (f)
		fclose(f);
	return found;
}

static int proc_hidden(void)
{
	char mnt[PATH_MAX], opts[1024] = "";

	return !find_mount("proc", "/proc", mnt, opts) && (strstr(opts, "hidepid=invisible") || strstr(opts, "hidepid=2"));
}

static int write_file(int dir, const char *name, const char *text)
{
	int fd = openat(dir, name, O_WRONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : write(fd, text, strlen(text));
	int err = errno;

	if (fd >= 0)
		close(fd);
	errno = err;
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static ssize_t read_file(int dir, const char *name, char *buf, size_t cap)
{
	int fd = openat(dir, name, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, cap - 1);

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
	return n;
}

/* Calls fn for each pid of a list file (cgroup.procs, /proc/.../children),
 * read whole, to its end (no pid cut in two); returns the sum of fn's results. */
static int each_pid(int dir, const char *name, int (*fn)(pid_t, void *), void *arg)
{
	int fd = openat(dir, name, O_RDONLY | O_CLOEXEC), sum = 0;
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	ssize_t n;

	if (fd < 0 || !buf) {
		if (fd >= 0)
			close(fd);
		free(buf);
		return 0;
	}
	while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (cap - len < 2) {
			char *p = realloc(buf, cap * 2);
			if (!p)
				break;
			buf = p;
			cap *= 2;
		}
	}
	close(fd);
	buf[len] = 0;
	for (char *p = buf, *end; *p; p = end) {
		long v = strtol(p, &end, 10);
		if (end == p) {
			end = p + 1;
			continue;
		}
		if (v > 0 && v <= INT32_MAX)
			sum += fn((pid_t)v, arg);
	}
	free(buf);
	return sum;
}

/* --cgroup auto: our own cgroup, only when it was delegated to us (systemd's
 * Delegate=yes marks it). */
static int own_cgroup(char out[PATH_MAX])
{
	char line[4096], mnt[PATH_MAX], opts[1024], val[8];
	FILE *f;

	if (find_mount("cgroup2", NULL, mnt, opts) || !(f = fopen("/proc/self/cgroup", "re")))
		return -1;
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, "0::", 3))
			continue;
		line[strcspn(line, "\n")] = 0;
		fclose(f);
		if ((size_t)snprintf(out, PATH_MAX, "%s%s", mnt, strcmp(line + 3, "/") ? line + 3 : "") >= PATH_MAX)
			return -1;
		ssize_t n = getxattr(out, "trusted.delegate", val, sizeof val);
		if (n < 0)
			n = getxattr(out, "user.delegate", val, sizeof val);
		return n == 1 && val[0] == '1' ? 0 : -1;
	}
	fclose(f);
	return -1;
}

static int move_pid(pid_t pid, void *dir)
{
	char num[24];

	snprintf(num, sizeof num, "%d", (int)pid);
	return write_file(*(int *)dir, "cgroup.procs", num) == 0;
}

/* What a crashed launcher left: killed and removed (a busy one stays). */
static void remove_stale_runs(void)
{
	int fd = dup(cg_runs);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *e;

	while (d && (e = readdir(d))) {
		if (strncmp(e->d_name, "run-", 4))
			continue;
		int run = openat(cg_runs, e->d_name, O_DIRECTORY | O_CLOEXEC);
		if (run >= 0) {
			write_file(run, "cgroup.kill", "1");
			close(run);
		}
		if (unlinkat(cg_runs, e->d_name, AT_REMOVEDIR))
			say("cannot remove the stale cgroup %s/runs/%s: %s", cg_path, e->d_name, strerror(errno));
	}
	if (d)
		closedir(d);
	else if (fd >= 0)
		close(fd);
}

/* The run cgroups live in <parent>/runs (mode 0711: a filter cannot list
 * how many runs there are), each 0700. With --cgroup auto we move ourselves
 * into <parent>/main first (cgroup v2: no processes in inner nodes). */
static void setup_cgroup(void)
{
	char path[PATH_MAX], buf[4096];
	struct statfs sf;
	int parent;

	if (!strcmp(opt.cgroup, "none"))
		return;
	if (!strcmp(opt.cgroup, "auto")) {
		if (own_cgroup(path))
			return;          /* not delegated: none */
	} else {
		snprintf(path, sizeof path, "%s", opt.cgroup);
	}
	parent = open(path, O_DIRECTORY | O_CLOEXEC);
	if (parent < 0 || fstatfs(parent, &sf) || sf.f_type != CGROUP2_SUPER_MAGIC ||
	    faccessat(parent, "cgroup.procs", W_OK, AT_EACCESS))
		die("--cgroup %s: not a writable cgroup2 directory (%s)", path);
	if (!strcmp(opt.cgroup, "auto")) {
		int main_dir;
		if ((mkdirat(parent, "main", 0755) && errno != EEXIST) ||
		    (main_dir = openat(parent, "main", O_DIRECTORY | O_CLOEXEC)) < 0)
			die("cannot make %s/main: %s", path);
		each_pid(parent, "cgroup.procs", move_pid, &main_dir);
		close(main_dir);
	}
	if ((mkdirat(parent, "runs", 0711) && errno != EEXIST) || (cg_runs = openat(parent, "runs", O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    fchmod(cg_runs, 0711))
		die("cannot make %s/runs: %s", path);
	for (int at = 0; at < 2; at++) {     /* the controllers, down to the run cgroups */
		int dir = at ? cg_runs : parent;
		read_file(dir, "cgroup.controllers", buf, sizeof buf);
		if (strstr(buf, "pids"))
			write_file(dir, "cgroup.subtree_control", "+pids");
		if (strstr(buf, "memory"))
			write_file(dir, "cgroup.subtree_control", "+memory");
	}
	cg_parent = parent;
	read_file(cg_runs, "cgroup.subtree_control", buf, sizeof buf);
	cg_pids = strstr(buf, "pids") != NULL;
	cg_memory = strstr(buf, "memory") != NULL;
	snprintf(cg_path, sizeof cg_path, "%s/runs", path);
	remove_stale_runs();
}

/* The file-system identity of the milter's account (for its spool and its
 * socket), or back to ours. The launcher has no supplementary groups. */
static void as_client(int on)
{
	uid_t u = on ? (uid_t)opt.client_uid : geteuid();
	gid_t g = on ? (gid_t)opt.client_gid : getegid();

	if (!g_privileged)
		return;
	setfsgid(g);
	setfsuid(u);
	if ((uid_t)setfsuid(u) != u || (gid_t)setfsgid(g) != g) {
		say("cannot switch the file-system identity %s", on ? "to the client's" : "back");
		exit(1);
	}
}

/* Least privilege for the rest of our life: the four capabilities a run's
 * set-up needs (switch ids, drop the children's bounding set, signal other
 * users' processes), in every set; the rest of the bounding set dropped.
 * Files we touch from now on are root's own (cgroups, the passwd file) or
 * are touched with the right file-system uid (spool, socket, programs). */
static void drop_capabilities(void)
{
	const uint32_t keep = 1u << CAP_SETUID | 1u << CAP_SETGID | 1u << CAP_SETPCAP | 1u << CAP_KILL;
	struct __user_cap_header_struct head = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct caps[2] = { { keep, keep, 0 }, { 0, 0, 0 } };

	for (int cap = 0; cap <= g_last_cap; cap++)
		if (!(cap < 32 && (keep >> cap) & 1) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0))
			die("%s: %s", "PR_CAPBSET_DROP");
	if (syscall(SYS_capset, &head, caps) || prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0))
		die("%s: %s", "capset");
}

static void setup(void)
{
	struct __user_cap_header_struct head = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct caps[2];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	sigset_t chld;
	char buf[16];
	int fd;

	g_self_uid = geteuid();
	fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, buf, sizeof buf - 1) <= 0 || (g_last_cap = atoi(buf)) < 1 || g_last_cap > 63)
		die("cannot read %s: %s", "/proc/sys/kernel/cap_last_cap");
	close(fd);
	if (syscall(SYS_capget, &head, caps))
		die("%s: %s", "capget");
	if (g_privileged) {
		if (!has_cap(caps, CAP_SETUID) || !has_cap(caps, CAP_SETGID) || !has_cap(caps, CAP_SETPCAP) || !has_cap(caps, CAP_KILL)) {
			say("running as root without CAP_SETUID, CAP_SETGID, CAP_SETPCAP and CAP_KILL: cannot run filters as their users");
			exit(1);
		}
		if (syscall(SYS_setgroups, (size_t)0, NULL))
			die("%s: %s", "setgroups");
	}

	/* Our lifecycle is standard input, not signals: a Ctrl-C to the process
	 * group must not kill filters the milter is still draining. */
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	if ((sig_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
		die("%s: %s", "signalfd");
	/* Escapees (setsid, double fork) are re-parented to us, not to init. */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
		die("%s: %s", "PR_SET_CHILD_SUBREAPER");
	char children[64];
	snprintf(children, sizeof children, "/proc/self/task/%d/children", getpid());
	if (access(children, R_OK))
		die("%s: %s (the kernel needs CONFIG_PROC_CHILDREN)", children);

	/* With CAP_SYS_ADMIN: a /proc of our own in which the filters see only
	 * their own user's processes (gid=0: we, never a filter, see all).
	 * MS_SLAVE: mounts made later outside (automounted homes) still reach us. */
	if (g_privileged && has_cap(caps, CAP_SYS_ADMIN) &&
	    (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) ||
	     mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible,gid=0")))
		say("cannot mount a private /proc with hidepid=invisible: %s", strerror(errno));

	setup_cgroup();

	if (opt.bwrap && (stat(opt.bwrap, &st) || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022)))
		die("--bwrap %s: must be a root-owned program writable only by root (%s)", opt.bwrap);

	/* The spool and the socket belong to the milter's account: every access
	 * to them is made as that account (its gid by default the spool's). */
	g_spool_dir = open(opt.spool, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (g_spool_dir < 0 || fstat(g_spool_dir, &st) || st.st_uid != opt.client_uid || (st.st_mode & 077))
		die("--spool %s: must be a directory of the client uid, mode 0700 (%s)", opt.spool);
	if (!g_privileged)
		opt.client_gid = getegid();
	else if (opt.client_gid == 0)
		opt.client_gid = st.st_gid;
	as_client(1);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", opt.socket);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (unlink(opt.socket) && errno != ENOENT)
		die("cannot remove %s: %s", opt.socket);
	mode_t old = umask(0177);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) || chmod(opt.socket, 0600) ||
	    listen(listen_fd, 128))
		die("cannot listen on %s: %s", opt.socket);
	umask(old);
	as_client(0);
	if (g_privileged)
		drop_capabilities();

	printf("ready proc=%s cgroup=%s privileged=%s\n", proc_hidden() ? "hidden" : "visible", cg_path,
	       g_privileged ? "yes" : "no");
	if (fflush(stdout))
		die("%s: %s", "cannot write the ready line");
	/* Nothing more on standard output, and fd 1 never free for a descriptor
	 * of ours (a child moves its plan onto 0, 1 and 2). */
	fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || dup2(fd, 1) != 1)
		die("%s: %s", "/dev/null on standard output");
	close(fd);
}

/* ---- clients ------------------------------------------------------------- */

struct client {
	struct client *next;
	int fd, closing;
	int64_t closed_at;
	uint8_t *in;
	size_t inlen;
	struct buf out;
	size_t sent;
};

struct run {
	struct run *next;
	struct client *c;       /* NULL once its client is gone: killed, no answer */
	uint64_t id;
	int type;               /* MSG_RUN or MSG_STAT */
	pid_t pid;
	int pidfd;              /* -1 once the leader is reaped */
	int fds[4];             /* stdout, stderr, bwrap status, child status; -1 when closed */
	struct buf out, err;
	size_t dropped, bwlen, stagedlen;
	char bwstat[512];
	int have_rec;
	struct record rec;      /* the last whole record the child sent */
	struct record staged;   /* the one being read */
	int cg;                 /* the run's cgroup directory, or -1 */
	char cgname[48];
	int64_t started, deadline, kill_at, abandon_at, wall;
	int timed_out, killed, code, status;
};

static struct client *clients;
static struct run *runs;

static void kill_run(struct run *r, int sig);

static void drop_client(struct client *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	c->closed_at = now_ms();
	for (struct run *r = runs; r; r = r->next)
		if (r->c == c) {
			r->c = NULL;
			kill_run(r, SIGKILL);
		}
}

static void answer_failed(struct client *c, int id_known, uint64_t id, const char *stage, int err, const char *text)
{
	buf_frame(&c->out, MSG_FAILED);
	if (id_known)
		buf_num(&c->out, T_ID, id);
	buf_str(&c->out, T_STAGE, stage);
	buf_num(&c->out, T_ERRNO, (uint64_t)err);
	buf_str(&c->out, T_TEXT, text);
	buf_end(&c->out);
}

/* ---- runs ---------------------------------------------------------------- */

static int is_live_leader(pid_t pid)
{
	for (struct run *r = runs; r; r = r->next)
		if (r->pidfd >= 0 && r->pid == pid)
			return 1;
	return 0;
}

/* Our children that are not the leader of a run in progress: escapees of
 * some run, re-parented to us. A zombie is reaped. Without a cgroup, one
 * that is not in the process group of a run in progress (it left it: setsid)
 * is killed now; one still in such a group ends with that group. */
static int sweep_child(pid_t pid, void *kill_all)
{
	char path[64], buf[512], state = 'Z';
	int fd, ppid, pgrp = 0;
	ssize_t n;
	siginfo_t si;

	if (is_live_leader(pid))
		return 0;
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
	char *p = strrchr(buf, ')');
	if (p)
		sscanf(p + 1, " %c %d %d", &state, &ppid, &pgrp);
	if (state == 'Z' || state == 'X') {
		waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG);
		return 0;
	}
	if (!kill_all && (cg_runs >= 0 || is_live_leader(pgrp)))
		return 1;   /* still there: look again later */
	if (kill(pid, SIGKILL) == 0)
		escapees_killed++;
	return 1;
}

/* Returns whether any child other than a live leader is left. */
static int sweep(int kill_all)
{
	char path[64];

	snprintf(path, sizeof path, "/proc/self/task/%d/children", getpid());
	return each_pid(AT_FDCWD, path, sweep_child, kill_all ? &kill_all : NULL) > 0;
}

static int count_pid(pid_t pid, void *arg)
{
	(void)pid;
	(void)arg;
	return 1;
}

static int term_pid(pid_t pid, void *arg)
{
	(void)arg;
	return kill(pid, SIGTERM) == 0;
}

static int cg_populated(struct run *r)
{
	char buf[256];

	return r->cg >= 0 && read_file(r->cg, "cgroup.events", buf, sizeof buf) > 0 && strstr(buf, "populated 1");
}

/* Every process of the run: the leader through its pidfd, its process group
 * while the leader is not reaped (the zombie keeps the pgid reserved: no
 * other group can have it), and its cgroup. SIGKILL goes through
 * cgroup.kill; SIGTERM goes to the pids read from cgroup.procs, the one
 * step where a process that exits between the read and the kill could have
 * its pid reused (a narrow race, and only SIGTERM). */
static void kill_run(struct run *r, int sig)
{
	if (r->pidfd >= 0) {
		syscall(SYS_pidfd_send_signal, r->pidfd, sig, NULL, 0);
		kill(-r->pid, sig);
	}
	if (!cg_populated(r))
		return;
	if (sig == SIGKILL)
		write_file(r->cg, "cgroup.kill", "1");
	else
		each_pid(r->cg, "cgroup.procs", term_pid, NULL);
}

static void leader_exited(struct run *r, int64_t now)
{
	siginfo_t si = { 0 };

	/* WNOWAIT: the zombie keeps the pid and process group reserved while
	 * the rest of the run is killed. */
	if (waitid(P_PIDFD, (id_t)r->pidfd, &si, WEXITED | WNOWAIT | WNOHANG) || si.si_pid == 0)
		return;
	r->code = si.si_code;
	r->status = si.si_status;
	r->wall = now - r->started;
	if (r->cg >= 0)   /* without a cgroup, the sweep counts the escapees it ends */
		r->killed += each_pid(r->cg, "cgroup.procs", count_pid, NULL);   /* the leader, exited, is no longer listed */
	kill_run(r, SIGKILL);
	waitid(P_PIDFD, (id_t)r->pidfd, &si, WEXITED);
	close(r->pidfd);
	r->pidfd = -1;
	r->abandon_at = now + ABANDON_MS;
}

static void read_output(struct run *r, int which)
{
	char chunk[65536];
	ssize_t n = read(r->fds[which], chunk, sizeof chunk);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		close(r->fds[which]);
		r->fds[which] = -1;
		return;
	}
	if (which == 3) {      /* the child's records, whole ones kept */
		for (size_t at = 0; at < (size_t)n; ) {
			size_t keep = (size_t)n - at < sizeof r->staged - r->stagedlen ? (size_t)n - at : sizeof r->staged - r->stagedlen;
			memcpy((char *)&r->staged + r->stagedlen, chunk + at, keep);
			at += keep;
			if ((r->stagedlen += keep) == sizeof r->staged) {
				r->rec = r->staged;
				r->have_rec = 1;
				r->stagedlen = 0;
			}
		}
		return;
	}
	if (which == 2) {      /* bwrap's JSON status: only its start is of interest */
		size_t keep = (size_t)n < sizeof r->bwstat - 1 - r->bwlen ? (size_t)n : sizeof r->bwstat - 1 - r->bwlen;
		memcpy(r->bwstat + r->bwlen, chunk, keep);
		r->bwlen += keep;
		return;
	}
	size_t room = opt.output - r->out.len - r->err.len, keep = (size_t)n < room ? (size_t)n : room;
	if (keep > 0)
		buf_put(which == 0 ? &r->out : &r->err, chunk, keep);
	r->dropped += (size_t)n - keep;
}

static int run_finished(struct run *r, int64_t now)
{
	if (r->pidfd >= 0)
		return 0;
	if (now >= r->abandon_at)
		return 1;
	return r->fds[0] < 0 && r->fds[1] < 0 && r->fds[2] < 0 && r->fds[3] < 0 && !cg_populated(r);
}

static void answer_record(struct client *c, struct run *r)
{
	struct record *x = &r->rec;

	x->what[sizeof x->what - 1] = x->stage[sizeof x->stage - 1] = x->reason[sizeof x->reason - 1] = 0;
	x->path[sizeof x->path - 1] = 0;
	if (x->kind == R_SETUP)
		return answer_failed(c, 1, r->id, x->stage, x->err, strerror(x->err));
	if (x->kind == R_CHECKED && r->type == MSG_STAT) {
		buf_frame(&c->out, MSG_CHECKED);
		buf_num(&c->out, T_ID, r->id);
		buf_str(&c->out, T_WHAT, x->vkind == V_OK ? x->what : x->vkind == V_MISSING ? "none" : "unsafe");
		if (x->vkind == V_UNSAFE) {
			buf_str(&c->out, T_REASON, x->reason);
			buf_str(&c->out, T_PATH, x->path);
		}
		buf_end(&c->out);
		return;
	}
	if ((x->kind != R_VERDICT && x->kind != R_USER) || r->type != MSG_RUN)
		return answer_failed(c, 1, r->id, "child", 0, "a record that does not fit the request");
	buf_frame(&c->out, MSG_NOTRUN);
	buf_num(&c->out, T_ID, r->id);
	buf_str(&c->out, T_KIND, x->kind == R_USER ? "exec" : x->vkind == V_MISSING ? "missing" : "unsafe");
	buf_str(&c->out, T_REASON, x->reason[0] ? x->reason : "missing");
	buf_str(&c->out, T_PATH, x->path);
	buf_num(&c->out, T_MODE, x->mode);
	buf_num(&c->out, T_OWNER, x->owner);
	buf_num(&c->out, T_ERRNO, (uint64_t)x->err);
	buf_end(&c->out);
}

static void finish(struct run *r)
{
	for (int i = 0; i < 4; i++)
		if (r->fds[i] >= 0)
			close(r->fds[i]);
	if (r->cg >= 0) {
		if (cg_populated(r))
			write_file(r->cg, "cgroup.kill", "1");
		close(r->cg);
		if (unlinkat(cg_runs, r->cgname, AT_REMOVEDIR)) {
			say("cannot remove cgroup %s/%s yet: %s (retried)", cg_path, r->cgname, strerror(errno));
			if (nleftover < 64)
				snprintf(leftover[nleftover++], sizeof *leftover, "%s", r->cgname);
			leftover_at = now_ms() + 1000;
		}
	} else {
		/* Without a cgroup, escapees are ended as they appear (sweep); the
		 * count goes to the run that ends next. */
		sweep(0);
		r->killed += r->type == MSG_RUN && opt.sandbox != SB_BWRAP ? escapees_killed : 0;
		escapees_killed = 0;
	}
	struct client *c = r->c;
	int chosen = r->have_rec && r->rec.kind == R_CHOSEN;
	r->rec.what[sizeof r->rec.what - 1] = 0;
	const char *what = chosen && !strcmp(r->rec.what, "default") ? "default" : "own";
	if (!c)
		;
	else if (r->have_rec && !chosen)
		answer_record(c, r);
	else if (r->type == MSG_STAT || r->stagedlen > 0 || !chosen)
		/* A child that died before its verdict (a crash), or one still in
		 * our set-up at the deadline (a hanging account lookup, a check
		 * on a blocking file system): ours, FAILED, never the user's
		 * timeout (which the user's onError could turn into accept). */
		answer_failed(c, 1, r->id, r->timed_out ? "timeout" : "child", r->timed_out ? ETIMEDOUT : 0,
			      r->timed_out ? "the set-up did not end in time" : "the child ended without an answer");
	else if (opt.sandbox == SB_BWRAP && !r->timed_out && !strstr(r->bwstat, "\"exit-code\"")) {
		/* bwrap ended without its command having run: bwrap's failure, ours. */
		char text[256];
		snprintf(text, sizeof text, "bwrap failed: %.*s", (int)(r->err.len < 200 ? r->err.len : 200), r->err.p ? (char *)r->err.p : "");
		answer_failed(c, 1, r->id, "bwrap", 0, text);
	} else {
		buf_frame(&c->out, MSG_DONE);
		buf_num(&c->out, T_ID, r->id);
		buf_str(&c->out, T_WHAT, what);
		if (r->code == CLD_EXITED)
			buf_num(&c->out, T_EXIT, (uint64_t)r->status);
		else
			buf_num(&c->out, T_SIGNAL, (uint64_t)r->status);
		buf_num(&c->out, T_TIMED_OUT, (uint64_t)r->timed_out);
		buf_num(&c->out, T_KILLED, (uint64_t)r->killed);
		buf_num(&c->out, T_WALL_MS, (uint64_t)r->wall);
		buf_bytes(&c->out, T_STDOUT, r->out.p, r->out.len);
		buf_bytes(&c->out, T_STDERR, r->err.p, r->err.len);
		buf_num(&c->out, T_DROPPED, r->dropped);
		buf_end(&c->out);
	}
	free(r->out.p);
	free(r->err.p);
}

/* ---- requests ------------------------------------------------------------ */

static const char *refused(const struct request *rq)
{
	if (rq->uid < opt.min_uid || rq->uid > opt.max_uid)
		return "uid outside --min-uid..--max-uid";
	if (g_privileged && rq->uid == opt.client_uid)
		return "uid is the client's";
	if (nruns >= MAX_RUNS)
		return "too many runs at once";
	return NULL;
}

static void close_all(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* In the new child: what it must not keep (other clients' connections,
 * other runs' pipes and pidfds) goes before anything else happens. */
static void close_others(struct run *self)
{
	for (struct client *c = clients; c; c = c->next)
		close(c->fd);
	for (struct run *r = runs; r; r = r->next) {
		if (r == self)
			continue;
		close_all(r->fds, 4);
		if (r->pidfd >= 0)
			close(r->pidfd);
		if (r->cg >= 0)
			close(r->cg);
	}
	close(listen_fd);
	close(sig_fd);
}

/* A child for the request (a fork: no shared memory, so nothing it does can
 * stall us); its pipes and pidfd go into the poll loop. */
static void start(struct client *c, const struct request *rq)
{
	int out[2] = { -1, -1 }, err[2] = { -1, -1 }, status[2] = { -1, -1 }, bw[2] = { -1, -1 }, pidfd = -1, e;
	const char *stage = "pipe";
	struct run *r = calloc(1, sizeof *r);
	char num[24];

	if (!r) {
		say("out of memory");
		exit(1);
	}
	r->fds[0] = r->fds[1] = r->fds[2] = r->fds[3] = r->cg = -1;
	if (pipe2(status, O_CLOEXEC) || fcntl(status[0], F_SETFL, O_NONBLOCK))
		goto failed;
	if (rq->type == MSG_RUN && (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) ||
	    fcntl(out[0], F_SETFL, O_NONBLOCK) || fcntl(err[0], F_SETFL, O_NONBLOCK)))
		goto failed;
	if (rq->type == MSG_RUN && opt.sandbox == SB_BWRAP && (pipe2(bw, O_CLOEXEC) || fcntl(bw[0], F_SETFL, O_NONBLOCK)))
		goto failed;
	if (cg_runs >= 0 && rq->type == MSG_RUN) {
		stage = "cgroup";
		snprintf(r->cgname, sizeof r->cgname, "run-%d-%lu", getpid(), ++run_seq);
		if (mkdirat(cg_runs, r->cgname, 0700) || (r->cg = openat(cg_runs, r->cgname, O_DIRECTORY | O_CLOEXEC)) < 0) {
			e = errno;
			unlinkat(cg_runs, r->cgname, AT_REMOVEDIR);
			errno = e;
			goto failed;
		}
		if (cg_pids && opt.pids && (snprintf(num, sizeof num, "%llu", (unsigned long long)opt.pids), write_file(r->cg, "pids.max", num)))
			goto failed;
		if (cg_memory && opt.memory && (snprintf(num, sizeof num, "%llu", (unsigned long long)opt.memory), write_file(r->cg, "memory.max", num)))
			goto failed;
	}

	struct clone_args ca = {
		.flags = CLONE_PIDFD | (r->cg >= 0 ? CLONE_INTO_CGROUP : 0),
		.pidfd = (uint64_t)(uintptr_t)&pidfd,
		.exit_signal = SIGCHLD,
		.cgroup = (uint64_t)(r->cg >= 0 ? r->cg : 0),
	};
	pid_t parent = getpid();
	sigset_t all, old;
	/* No signal may reach the child before it has reset the dispositions. */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	r->started = now_ms();
	pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
	if (pid == 0) {
		struct child_fds f = { out[1], err[1], status[1], bw[1] };
		close_others(r);
		child_main(rq, &f, parent);
	}
	e = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	stage = "clone";
	if (pid < 0) {
		errno = e;
		goto failed;
	}
	r->c = c;
	r->id = rq->id;
	r->type = rq->type;
	r->pid = pid;
	r->pidfd = pidfd;
	r->fds[0] = out[0];
	r->fds[1] = err[0];
	r->fds[2] = bw[0];
	r->fds[3] = status[0];
	out[0] = err[0] = bw[0] = status[0] = -1;
	/* The deadline counts from the fork: lookup and check included. */
	r->deadline = r->started + (int64_t)(rq->type == MSG_RUN && rq->program == PROG_FILTER ? opt.timeout_ms : opt.rcpt_timeout_ms);
	r->kill_at = INT64_MAX;
	r->abandon_at = INT64_MAX;
	r->next = runs;
	runs = r;
	nruns++;
	r = NULL;
failed:
	e = errno;
	int fds[] = { out[0], out[1], err[0], err[1], status[0], status[1], bw[0], bw[1] };
	close_all(fds, sizeof fds / sizeof *fds);
	if (r) {
		if (r->cg >= 0) {
			close(r->cg);
			unlinkat(cg_runs, r->cgname, AT_REMOVEDIR);
		}
		free(r);
		answer_failed(c, 1, rq->id, stage, e, strerror(e));
	}
}

static void handle_frame(struct client *c, const uint8_t *body, size_t len)
{
	static struct request rq;   /* 50 KB: not on the stack */
	char why[128];
	const char *no;

	if (parse_request(body, len, &rq, why, sizeof why)) {
		say("closing a connection after a bad request: %s", why);
		if (rq.id_known)
			answer_failed(c, 1, rq.id, "request", EINVAL, why);
		drop_client(c);
		return;
	}
	if ((no = refused(&rq))) {
		answer_failed(c, 1, rq.id, "request", EPERM, no);
		return;
	}
	start(c, &rq);
}

static void client_input(struct client *c)
{
	if (!c->in && !(c->in = malloc(4 + MAX_FRAME))) {
		say("out of memory");
		exit(1);
	}
	ssize_t n = read(c->fd, c->in + c->inlen, 4 + MAX_FRAME - c->inlen);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0)
		return drop_client(c);   /* gone: its runs are killed */
	c->inlen += (size_t)n;
	size_t at = 0;
	while (!c->closing && c->inlen - at >= 4) {
		uint8_t *p = c->in + at;
		uint32_t len = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
		if (len == 0 || len > MAX_FRAME) {
			say("closing a connection after a frame of %u bytes", len);
			return drop_client(c);
		}
		if (c->inlen - at - 4 < len)
			break;
		handle_frame(c, p + 4, len);
		at += 4 + len;
	}
	memmove(c->in, c->in + at, c->inlen - at);
	c->inlen -= at;
	if (c->inlen == 0) {   /* idle connections hold no 1 MiB buffer */
		free(c->in);
		c->in = NULL;
	}
}

static void client_output(struct client *c)
{
	ssize_t n = write(c->fd, c->out.p + c->sent, c->out.len - c->sent);

	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		drop_client(c);
		c->sent = c->out.len;   /* nobody reads it any more */
	} else if (n > 0) {
		c->sent += (size_t)n;
	}
	if (c->sent == c->out.len) {
		c->out.len = c->sent = 0;
		if (c->out.cap > (1u << 20)) {   /* after a big answer, give the memory back */
			free(c->out.p);
			c->out = (struct buf){ 0 };
		}
	}
}

static void accept_client(int64_t now)
{
	struct ucred cred = { 0, (uid_t)-1, (gid_t)-1 };
	socklen_t len = sizeof cred;
	int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			say("cannot accept a connection: %s; pausing", strerror(errno));
			accept_paused_until = now + ACCEPT_PAUSE_MS;
		}
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) || cred.uid != opt.client_uid || nclients >= MAX_CLIENTS) {
		say("refusing a connection from uid %ld%s", cred.uid == (uid_t)-1 ? -1L : (long)cred.uid,
		    nclients >= MAX_CLIENTS ? " (too many connections)" : "");
		close(fd);
		return;
	}
	struct client *c = calloc(1, sizeof *c);
	if (!c) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->next = clients;
	clients = c;
	nclients++;
}

/* ---- the loop ------------------------------------------------------------ */

static void stop(void)
{
	stopping = 1;
	stop_deadline = now_ms() + STOP_MS;
	if (listen_fd >= 0) {
		close(listen_fd);
		listen_fd = -1;
		as_client(1);
		unlink(opt.socket);
		as_client(0);
	}
	for (struct client *c = clients; c; c = c->next)
		drop_client(c);
	for (struct run *r = runs; r; r = r->next)
		kill_run(r, SIGKILL);
}

static void timers(int64_t now)
{
	for (struct run *r = runs; r; r = r->next) {
		if (r->pidfd < 0)
			continue;
		if (!r->timed_out && now >= r->deadline) {
			r->timed_out = 1;
			kill_run(r, SIGTERM);
			r->kill_at = now + KILL_GRACE_MS;
		} else if (now >= r->kill_at) {
			kill_run(r, SIGKILL);
			r->kill_at = INT64_MAX;
		}
	}
	if (now >= sweep_at)
		sweep_at = sweep(0) ? now + SWEEP_MS : INT64_MAX;
	if (now >= leftover_at) {   /* killed again, and removed once empty */
		for (int i = 0; i < nleftover; ) {
			int dir = openat(cg_runs, leftover[i], O_DIRECTORY | O_CLOEXEC);
			if (dir >= 0) {
				write_file(dir, "cgroup.kill", "1");
				close(dir);
			}
			if (unlinkat(cg_runs, leftover[i], AT_REMOVEDIR) == 0 || errno == ENOENT)
				memmove(leftover[i], leftover[--nleftover], sizeof *leftover);
			else
				i++;
		}
		leftover_at = nleftover ? now + 1000 : INT64_MAX;
	}
}

static int next_timeout(int64_t now)
{
	int64_t next = sweep_at < leftover_at ? sweep_at : leftover_at;

	for (struct run *r = runs; r; r = r->next) {
		int64_t t = r->pidfd >= 0 ? (r->timed_out ? r->kill_at : r->deadline) : cg_populated(r) ? now + 10 : r->abandon_at;
		if (t < next)
			next = t;
	}
	if (stopping && stop_deadline < next)
		next = stop_deadline;
	if (accept_paused_until > now && accept_paused_until < next)
		next = accept_paused_until;
	if (next == INT64_MAX)
		return -1;
	return next <= now ? 0 : next - now > 60000 ? 60000 : (int)(next - now);
}

/* --passwd-file and the `group` file beside it decide every uid's gid and
 * groups: whoever can write either, or a directory above them, can grant
 * any group. Each must be root's and writable by root alone, with no
 * symbolic link (a sticky /tmp is not enough: its owner-only deletion does
 * not stop a user creating the file first). A missing group file is
 * allowed (the primary group only); its directory is checked with the
 * passwd file's. Returns NULL or what is wrong with `bad`. */
static const char *untrusted_account_file(const char *file, char bad[PATH_MAX])
{
	char p[PATH_MAX];
	struct stat st;

	snprintf(p, sizeof p, "%s", file);
	for (;;) {
		if (lstat(p, &st)) {
			if (errno == ENOENT && !strcmp(p, file) && strcmp(file, opt.passwd_file))
				goto up;   /* no group file */
			snprintf(bad, PATH_MAX, "%s", p);
			return strerror(errno);
		}
		snprintf(bad, PATH_MAX, "%s", p);
		if (S_ISLNK(st.st_mode))
			return "a symbolic link";
		if (st.st_uid != 0)
			return "not owned by root";
		if (st.st_mode & (S_IWGRP | S_IWOTH))
			return "writable by group or others";
up:
		if (!strcmp(p, "/"))
			return NULL;
		char *slash = strrchr(p, '/');
		if (slash == p)
			slash[1] = 0;
		else
			*slash = 0;
	}
}

static void check_account_files(void)
{
	char group[PATH_MAX], bad[PATH_MAX];
	const char *why, *slash = strrchr(opt.passwd_file, '/');

	snprintf(group, sizeof group, "%.*sgroup", (int)(slash - opt.passwd_file + 1), opt.passwd_file);
	if ((why = untrusted_account_file(opt.passwd_file, bad)) || (why = untrusted_account_file(group, bad))) {
		say("refusing --passwd-file %s: %s is %s (it and the group file beside it, and every directory above, must be root's and writable by root alone)",
		    opt.passwd_file, bad, why);
		exit(1);
	}
}

/* The child uses libc (stdio, malloc, NSS) after a raw clone3, which is
 * safe only in a copy of a single-threaded process: see native/README.md. */
static void check_single_threaded(void)
{
	char line[256];
	int threads = -1;
	FILE *f = fopen("/proc/self/status", "re");

	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "Threads:", 8))
			threads = atoi(line + 8);
	if (f)
		fclose(f);
	if (threads != 1) {
		say("expected exactly one thread, /proc/self/status says %d: refusing to start", threads);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	check_single_threaded();
	if (g_privileged && opt.passwd_file)
		check_account_files();
	setup();
	for (;;) {
		size_t cap = 3, n = 0;
		for (struct client *c = clients; c; c = c->next)
			cap++;
		for (struct run *r = runs; r; r = r->next)
			cap += 5;
		struct pollfd *pf = calloc(cap, sizeof *pf);
		void **owner = calloc(cap, sizeof *owner);
		if (!pf || !owner) {
			say("out of memory");
			exit(1);
		}
		int64_t now = now_ms();
		if (!stopping) {
			pf[n++] = (struct pollfd){ .fd = 0, .events = POLLIN };
			pf[n++] = (struct pollfd){ .fd = now >= accept_paused_until ? listen_fd : -1, .events = POLLIN };
		}
		pf[n++] = (struct pollfd){ .fd = sig_fd, .events = POLLIN };
		for (struct client *c = clients; c; c = c->next) {
			owner[n] = c;
			pf[n++] = (struct pollfd){ .fd = c->fd, .events = (c->closing ? 0 : POLLIN) | (c->out.len ? POLLOUT : 0) };
		}
		size_t first_run = n;
		for (struct run *r = runs; r; r = r->next)
			for (int i = 0; i < 5; i++) {
				owner[n] = r;
				pf[n++] = (struct pollfd){ .fd = i == 4 ? r->pidfd : r->fds[i], .events = POLLIN };
			}
		if (poll(pf, n, next_timeout(now)) < 0 && errno != EINTR) {
			say("poll: %s", strerror(errno));
			exit(1);
		}
		now = now_ms();
		for (size_t i = 0; i < n; i++) {
			if (!pf[i].revents || pf[i].fd < 0)
				continue;
			if (!owner[i] && pf[i].fd == 0) {
				char sink[4096];
				ssize_t got = read(0, sink, sizeof sink);
				if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR))
					stop();   /* the milter is gone */
			} else if (!owner[i] && pf[i].fd == listen_fd) {
				accept_client(now);
			} else if (!owner[i]) {
				struct signalfd_siginfo si;
				while (read(sig_fd, &si, sizeof si) > 0)
					;
				if (sweep(0))
					sweep_at = now + SWEEP_MS;
			} else if (i < first_run) {
				struct client *c = owner[i];
				if (pf[i].revents & (POLLIN | POLLHUP | POLLERR) && !c->closing)
					client_input(c);
				if (c->out.len && (pf[i].revents & POLLOUT))
					client_output(c);
			} else {
				struct run *r = owner[i];
				int which = (int)((i - first_run) % 5);
				if (which == 4 && r->pidfd >= 0)
					leader_exited(r, now);
				else if (which < 4 && r->fds[which] >= 0)
					read_output(r, which);
			}
		}
		free(pf);
		free(owner);
		timers(now);
		for (struct run **p = &runs; *p; ) {
			struct run *r = *p;
			if (!run_finished(r, now_ms())) {
				p = &r->next;
				continue;
			}
			*p = r->next;
			finish(r);
			free(r);
			nruns--;
		}
		for (struct client **p = &clients; *p; ) {
			struct client *c = *p;
			if (c->out.len - c->sent > MAX_PENDING)
				drop_client(c), c->out.len = c->sent = 0;
			if (c->closing && c->out.len)
				client_output(c);
			if (!c->closing || (c->out.len && now - c->closed_at < CLOSING_MS)) {
				p = &c->next;
				continue;
			}
			*p = c->next;
			close(c->fd);
			free(c->in);
			free(c->out.p);
			free(c);
			nclients--;
		}
		if (stopping && (!runs || now_ms() >= stop_deadline)) {
			sweep(1);
			if (runs)
				say("exiting with runs still ending");
			else if (cg_parent >= 0 && !nleftover)   /* a clean end leaves no cgroup of ours behind */
				unlinkat(cg_parent, "runs", AT_REMOVEDIR);
			exit(0);
		}
	}
}
