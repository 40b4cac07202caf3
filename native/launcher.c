/* Runs in: the launcher (per-user-milter-launcher: C, one process, one
 * thread, started once by the milter with execa).
 *
 * The only part of per-user-milter that may switch users. It reads requests
 * from unix-socket connections of the milter's account, checks the program
 * as the user (check.c), and starts it in a child set up with raw system
 * calls (child.c); it watches each run (a pidfd, the output pipes, its
 * cgroup), enforces the timeout, kills whatever the run left behind, and
 * answers with what happened. End of standard input (the milter is gone)
 * ends every run and the launcher. Read native/README.md first. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
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
#define MAX_PENDING (64u << 20)   /* a client that does not read its answers is dropped */

int g_privileged;
uid_t g_self_uid;

static struct {
	const char *socket, *spool, *filter_path, *rcpt_path, *default_path, *cgroup, *bwrap;
	uint64_t client_uid, min_uid, max_uid;
} opt = { .cgroup = "auto" };

static int last_cap, spool_dir = -1, listen_fd = -1, sig_fd = -1, stopping;
static int cg_parent = -1, cg_pids, cg_memory;   /* the parent of the run cgroups */
static char cg_path[PATH_MAX] = "none";
static unsigned long run_seq;
static int64_t stop_deadline;

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
	"usage: per-user-milter-launcher --socket PATH --spool DIR --client-uid N --min-uid N --max-uid N\n"
	"         --filter-path TEMPLATE [--rcpt-path TEMPLATE] [--default-path PATH]\n"
	"         [--cgroup auto|none|DIR] [--bwrap PATH]\n";

/* "/..." or "~/...", %u for the user name; absolute and normalised once expanded. */
static int expand(const char *t, const char *home, const char *user, char out[PATH_MAX])
{
	size_t len = 0;
	const char *p = t;

	if (t[0] == '~' && t[1] == '/') {
		len = strcmp(home, "/") ? strlen(home) : 0;
		if (len >= PATH_MAX)
			return -1;
		memcpy(out, home, len);
		p = t + 1;
	} else if (t[0] != '/') {
		return -1;
	}
	for (; *p; p++) {
		const char *add = p[0] == '%' && p[1] == 'u' ? user : NULL;
		size_t n = add ? strlen(add) : 1;
		if (len + n >= PATH_MAX)
			return -1;
		memcpy(out + len, add ? add : p, n);
		len += n;
		p += add ? 1 : 0;
	}
	out[len] = 0;
	return valid_abs_path(out) ? 0 : -1;
}

static void parse_args(int argc, char **argv)
{
	static const char *const names[] = { "--socket", "--spool", "--client-uid", "--min-uid", "--max-uid",
		"--filter-path", "--rcpt-path", "--default-path", "--cgroup", "--bwrap" };
	const char *val[10] = { 0 };
	char probe[PATH_MAX];

	for (int i = 1; i < argc; i += 2) {
		int k = -1;
		for (int j = 0; j < 10; j++)
			if (!strcmp(argv[i], names[j]))
				k = j;
		if (k < 0 || i + 1 >= argc || val[k]) {
			fprintf(stderr, "per-user-milter-launcher: %s: %s\n%s", argv[i],
				k < 0 ? "unknown option" : i + 1 >= argc ? "needs a value" : "given twice", USAGE);
			exit(2);
		}
		val[k] = argv[i + 1];
	}
	opt.socket = val[0];
	opt.spool = val[1];
	opt.filter_path = val[5];
	opt.rcpt_path = val[6];
	opt.default_path = val[7];
	opt.cgroup = val[8] ? val[8] : "auto";
	opt.bwrap = val[9];
	const char *bad = NULL;
	if (!val[0] || !val[1] || !val[2] || !val[3] || !val[4] || !val[5])
		bad = "--socket, --spool, --client-uid, --min-uid, --max-uid and --filter-path are required";
	else if (parse_u64(val[2], UINT32_MAX - 1, &opt.client_uid) || parse_u64(val[3], UINT32_MAX - 1, &opt.min_uid) ||
		 parse_u64(val[4], UINT32_MAX - 1, &opt.max_uid) || opt.min_uid == 0 || opt.min_uid > opt.max_uid)
		bad = "--client-uid, --min-uid, --max-uid: decimal digits; 0 < min-uid <= max-uid";
	else if (!valid_abs_path(opt.spool) || !valid_abs_path(opt.socket) || strlen(opt.socket) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		bad = "--socket and --spool: absolute, normalised paths";
	else if (expand(opt.filter_path, "/h", "u", probe) || (opt.rcpt_path && expand(opt.rcpt_path, "/h", "u", probe)))
		bad = "--filter-path, --rcpt-path: /PATH or ~/PATH (%u = the user name), no . or .. component";
	else if ((opt.default_path && !valid_abs_path(opt.default_path)) || (opt.bwrap && !valid_abs_path(opt.bwrap)))
		bad = "--default-path, --bwrap: absolute, normalised paths";
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

/* The last /proc mount: does it hide other users' processes? */
static int proc_hidden(void)
{
	char line[4096];
	int hidden = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	while (f && fgets(line, sizeof line, f)) {
		char mnt[256], rest[3072];
		if (sscanf(line, "%*s %*s %*s %*s %255s %*s %3071[^\n]", mnt, rest) != 2 || strcmp(mnt, "/proc"))
			continue;
		char *dash = strstr(rest, "- proc ");
		if (dash)
			hidden = strstr(dash, "hidepid=invisible") || strstr(dash, "hidepid=2");
	}
	if (f)
		fclose(f);
	return hidden;
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

/* --cgroup auto: our own cgroup, only when it was delegated to us (systemd's
 * Delegate=yes marks it); we move into <own>/main so that the run cgroups
 * can have controllers (cgroup v2: no processes in inner nodes). */
static int own_cgroup(char out[PATH_MAX])
{
	char line[4096], mnt[PATH_MAX] = "", val[8];
	FILE *f = fopen("/proc/self/mountinfo", "re");

	while (f && !mnt[0] && fgets(line, sizeof line, f)) {
		char m[PATH_MAX], rest[3072];
		if (sscanf(line, "%*s %*s %*s %*s %4095s %*s %3071[^\n]", m, rest) == 2 && strstr(rest, "- cgroup2 "))
			snprintf(mnt, sizeof mnt, "%s", m);
	}
	if (f)
		fclose(f);
	f = fopen("/proc/self/cgroup", "re");
	while (f && fgets(line, sizeof line, f)) {
		if (strncmp(line, "0::", 3) || !mnt[0])
			continue;
		line[strcspn(line, "\n")] = 0;
		if ((size_t)snprintf(out, PATH_MAX, "%s%s", mnt, strcmp(line + 3, "/") ? line + 3 : "") >= PATH_MAX)
			break;
		fclose(f);
		ssize_t n = getxattr(out, "trusted.delegate", val, sizeof val);
		if (n < 0)
			n = getxattr(out, "user.delegate", val, sizeof val);
		return n == 1 && val[0] == '1' ? 0 : -1;
	}
	if (f)
		fclose(f);
	return -1;
}

static void setup_cgroup(void)
{
	char path[PATH_MAX], buf[4096];
	struct statfs sf;

	if (!strcmp(opt.cgroup, "none"))
		return;
	if (!strcmp(opt.cgroup, "auto")) {
		if (own_cgroup(path))
			return;          /* not delegated: none */
	} else {
		snprintf(path, sizeof path, "%s", opt.cgroup);
	}
	cg_parent = open(path, O_DIRECTORY | O_CLOEXEC);
	if (cg_parent < 0 || fstatfs(cg_parent, &sf) || sf.f_type != CGROUP2_SUPER_MAGIC ||
	    faccessat(cg_parent, "cgroup.procs", W_OK, AT_EACCESS))
		die("--cgroup %s: not a writable cgroup2 directory (%s)", path);
	if (!strcmp(opt.cgroup, "auto")) {
		/* No processes in a cgroup whose children have controllers: move ours. */
		int main_dir;
		if ((mkdirat(cg_parent, "main", 0755) && errno != EEXIST) ||
		    (main_dir = openat(cg_parent, "main", O_DIRECTORY | O_CLOEXEC)) < 0)
			die("cannot make %s/main: %s", path);
		read_file(cg_parent, "cgroup.procs", buf, sizeof buf);
		for (char *p = strtok(buf, "\n"); p; p = strtok(NULL, "\n"))
			write_file(main_dir, "cgroup.procs", p);
		close(main_dir);
	}
	read_file(cg_parent, "cgroup.controllers", buf, sizeof buf);
	if (strstr(buf, "pids"))
		write_file(cg_parent, "cgroup.subtree_control", "+pids");
	if (strstr(buf, "memory"))
		write_file(cg_parent, "cgroup.subtree_control", "+memory");
	read_file(cg_parent, "cgroup.subtree_control", buf, sizeof buf);
	cg_pids = strstr(buf, "pids") != NULL;
	cg_memory = strstr(buf, "memory") != NULL;
	snprintf(cg_path, sizeof cg_path, "%s", path);
}

static const struct who *client_who(void)
{
	static struct who w;

	w.uid = (uid_t)opt.client_uid;
	w.gid = getegid();
	return &w;
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
	g_privileged = g_self_uid == 0;
	fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, buf, sizeof buf - 1) <= 0 || (last_cap = atoi(buf)) < 1 || last_cap > 63)
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
	snprintf(buf, sizeof buf, "%d", getpid());
	char children[64];
	snprintf(children, sizeof children, "/proc/self/task/%s/children", buf);
	if (access(children, R_OK))
		die("%s: %s (the kernel needs CONFIG_PROC_CHILDREN)", children);

	/* With CAP_SYS_ADMIN: a /proc of our own in which the filters see only
	 * their own user's processes. Without it, say whether /proc hides them. */
	if (g_privileged && has_cap(caps, CAP_SYS_ADMIN) &&
	    (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	     mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible")))
		say("cannot mount a private /proc with hidepid=invisible: %s", strerror(errno));

	setup_cgroup();

	if (opt.bwrap && (stat(opt.bwrap, &st) || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022)))
		die("--bwrap %s: must be a root-owned program writable only by root (%s)", opt.bwrap);

	/* The spool and the socket belong to the milter's account: every access
	 * to them is made as that account. */
	if (become(client_who()))
		die("%s: %s", "cannot take the client's file-system identity");
	spool_dir = open(opt.spool, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (spool_dir < 0 || fstat(spool_dir, &st) || st.st_uid != opt.client_uid || (st.st_mode & 077))
		die("--spool %s: must be a directory of the client uid, mode 0700 (%s)", opt.spool);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", opt.socket);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (unlink(opt.socket) && errno != ENOENT)
		die("cannot remove %s: %s", opt.socket);
	mode_t old = umask(0177);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) || chmod(opt.socket, 0600) ||
	    listen(listen_fd, 128))
		die("cannot listen on %s: %s", opt.socket);
	umask(old);
	if (unbecome())
		die("%s: %s", "cannot switch the file-system identity back");

	printf("ready proc=%s cgroup=%s privileged=%s\n", proc_hidden() ? "hidden" : "visible", cg_path,
	       g_privileged ? "yes" : "no");
	if (fflush(stdout) || fclose(stdout))
		die("%s: %s", "cannot write the ready line");
}

/* ---- clients ------------------------------------------------------------- */

struct client {
	struct client *next;
	int fd, closing;
	uint8_t *in;
	size_t inlen;
	struct buf out;
	size_t sent;
};

struct run {
	struct run *next;
	struct client *c;       /* NULL once its client is gone: killed, no answer */
	uint64_t id;
	const char *what;       /* "own" or "default" */
	int bwrap;
	pid_t pid;
	int pidfd;              /* -1 once the leader is reaped */
	int fds[3];             /* stdout, stderr, bwrap status; -1 when closed */
	struct buf out, err;
	size_t budget, dropped, bwlen;
	char bwstat[512];
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

static int is_leader(pid_t pid)
{
	for (struct run *r = runs; r; r = r->next)
		if (r->pidfd >= 0 && r->pid == pid)
			return 1;
	return 0;
}

/* Our children that are not the leader of a run in progress: escapees of
 * some run (they left its process group and were re-parented to us). */
static int each_stray_child(int (*fn)(pid_t))
{
	char path[64], buf[65536];
	int fd, count = 0;
	ssize_t n;

	snprintf(path, sizeof path, "/proc/self/task/%d/children", getpid());
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
	for (char *p = strtok(buf, " \n"); p; p = strtok(NULL, " \n")) {
		pid_t pid = (pid_t)atoi(p);
		if (pid > 0 && !is_leader(pid))
			count += fn(pid);
	}
	return count;
}

/* Counted only when it was still alive and had left the process group of
 * the run that ends (members of that group were killed with it; bwrap's
 * own child, dying with its parent, stays in it). */
static pid_t sweep_pgid;

static int kill_stray(pid_t pid)
{
	char path[64], buf[512], state = 'Z';
	int fd, ppid, pgrp = 0;
	ssize_t n;

	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
	char *p = strrchr(buf, ')');
	if (p)
		sscanf(p + 1, " %c %d %d", &state, &ppid, &pgrp);
	return kill(pid, SIGKILL) == 0 && state != 'Z' && state != 'X' && pgrp != sweep_pgid;
}

static int reap_stray(pid_t pid)
{
	siginfo_t si;

	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG) == 0;
}

static int cg_count(struct run *r)
{
	char buf[65536];
	int n = 0;

	read_file(r->cg, "cgroup.procs", buf, sizeof buf);
	for (char *p = buf; *p; p++)
		n += *p == '\n';
	return n;
}

static int cg_populated(struct run *r)
{
	char buf[256];

	return r->cg >= 0 && read_file(r->cg, "cgroup.events", buf, sizeof buf) > 0 && strstr(buf, "populated 1");
}

/* Every process of the run: its process group (the leader's pid stays
 * reserved while the leader is an unreaped zombie) and its cgroup. */
static void kill_run(struct run *r, int sig)
{
	kill(-r->pid, sig);
	if (r->cg < 0)
		return;
	if (sig == SIGKILL) {
		write_file(r->cg, "cgroup.kill", "1");
		return;
	}
	char buf[65536];
	read_file(r->cg, "cgroup.procs", buf, sizeof buf);
	for (char *p = strtok(buf, "\n"); p; p = strtok(NULL, "\n"))
		kill((pid_t)atoi(p), sig);
}

static void leader_exited(struct run *r, int64_t now)
{
	siginfo_t si = { 0 };

	/* WNOWAIT: the zombie keeps the pid and process group reserved while
	 * the rest of the run is killed. */
	waitid(P_PIDFD, (id_t)r->pidfd, &si, WEXITED | WNOWAIT);
	r->code = si.si_code;
	r->status = si.si_status;
	r->wall = now - r->started;
	if (r->cg >= 0)   /* without a cgroup, finish() counts the escapees it ends */
		r->killed += cg_count(r);
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
	if (which == 2) {      /* bwrap's JSON status: only its start is of interest */
		size_t keep = (size_t)n < sizeof r->bwstat - 1 - r->bwlen ? (size_t)n : sizeof r->bwstat - 1 - r->bwlen;
		memcpy(r->bwstat + r->bwlen, chunk, keep);
		r->bwlen += keep;
		r->bwstat[r->bwlen] = 0;
		return;
	}
	size_t room = r->budget - r->out.len - r->err.len, keep = (size_t)n < room ? (size_t)n : room;
	struct buf *b = which == 0 ? &r->out : &r->err;
	if (keep > 0) {
		if (b->len + keep > b->cap) {
			uint8_t *p = realloc(b->p, b->len + keep);
			if (!p) {
				say("out of memory");
				exit(1);
			}
			b->p = p;
			b->cap = b->len + keep;
		}
		memcpy(b->p + b->len, chunk, keep);
		b->len += keep;
	}
	r->dropped += (size_t)n - keep;
}

static int run_finished(struct run *r, int64_t now)
{
	if (r->pidfd >= 0)
		return 0;
	if (now >= r->abandon_at)
		return 1;
	return r->fds[0] < 0 && r->fds[1] < 0 && r->fds[2] < 0 && !cg_populated(r);
}

static void finish(struct run *r)
{
	for (int i = 0; i < 3; i++)
		if (r->fds[i] >= 0)
			close(r->fds[i]);
	if (r->cg >= 0) {
		if (cg_populated(r))
			write_file(r->cg, "cgroup.kill", "1");
		close(r->cg);
		if (unlinkat(cg_parent, r->cgname, AT_REMOVEDIR))
			say("cannot remove cgroup %s/%s: %s", cg_path, r->cgname, strerror(errno));
	} else {
		/* No cgroup: whatever escaped any run is ended at this run's end.
		 * (With bwrap, its pid namespace already holds every process of the
		 * run; what is found here is bwrap's own child on its way out.) */
		sweep_pgid = r->pid;
		int n = each_stray_child(kill_stray);
		r->killed += r->bwrap ? 0 : n;
	}
	struct client *c = r->c;
	if (c && r->bwrap && !r->timed_out && !strstr(r->bwstat, "\"exit-code\"")) {
		/* bwrap ended without its command having run: bwrap's failure, ours. */
		char text[256];
		snprintf(text, sizeof text, "bwrap failed: %.*s", (int)(r->err.len < 200 ? r->err.len : 200), r->err.p ? (char *)r->err.p : "");
		answer_failed(c, 1, r->id, "bwrap", 0, text);
	} else if (c) {
		buf_frame(&c->out, MSG_DONE);
		buf_num(&c->out, T_ID, r->id);
		buf_str(&c->out, T_WHAT, r->what);
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
	if (rq->type == MSG_RUN && rq->sandbox == SB_NONE && g_privileged)
		return "sandbox none is refused when the launcher can switch users";
	if (rq->type == MSG_RUN && rq->sandbox == SB_BWRAP && !opt.bwrap)
		return "sandbox bwrap needs --bwrap";
	return NULL;
}

/* The user's own program, else (message filters only) the site default. */
static int choose(const struct request *rq, struct verdict *v, char resolved[PATH_MAX], const char **what)
{
	struct who w = { rq->uid, rq->gid, rq->groups, rq->ngroups };
	const char *tmpl = rq->program == PROG_FILTER ? opt.filter_path : opt.rcpt_path;
	char path[PATH_MAX];
	int fd;

	*what = "own";
	memset(v, 0, sizeof *v);
	if (!tmpl) {
		v->kind = V_MISSING;
		v->reason = "missing";
		return -1;
	}
	if (expand(tmpl, rq->home, rq->user, path)) {
		v->kind = V_UNSAFE;
		v->reason = "bad-path";
		return -1;
	}
	fd = check_program(&w, path, 0, v, resolved);
	if (fd < 0 && v->kind == V_MISSING && rq->program == PROG_FILTER && opt.default_path) {
		*what = "default";
		fd = check_program(&w, opt.default_path, 1, v, resolved);
	}
	return fd;
}

static void do_stat(struct client *c, const struct request *rq)
{
	char resolved[PATH_MAX];
	struct verdict v;
	const char *what;
	int fd = choose(rq, &v, resolved, &what);

	if (fd >= 0)
		close(fd);
	if (v.kind == V_FAILED)
		return answer_failed(c, 1, rq->id, "check", v.err, v.reason);
	buf_frame(&c->out, MSG_CHECKED);
	buf_num(&c->out, T_ID, rq->id);
	buf_str(&c->out, T_WHAT, v.kind == V_OK ? what : v.kind == V_MISSING ? "none" : "unsafe");
	if (v.kind == V_UNSAFE) {
		buf_str(&c->out, T_REASON, v.reason);
		buf_str(&c->out, T_PATH, v.path);
	}
	buf_end(&c->out);
}

static void answer_notrun(struct client *c, uint64_t id, const char *kind, const struct verdict *v)
{
	buf_frame(&c->out, MSG_NOTRUN);
	buf_num(&c->out, T_ID, id);
	buf_str(&c->out, T_KIND, kind);
	buf_str(&c->out, T_REASON, v->reason ? v->reason : kind);
	buf_str(&c->out, T_PATH, v->path);
	buf_num(&c->out, T_MODE, v->mode);
	buf_num(&c->out, T_OWNER, v->owner);
	buf_num(&c->out, T_ERRNO, (uint64_t)v->err);
	buf_end(&c->out);
}

/* The spool file, opened as the milter's account (it cannot name anything
 * that account could not open itself), and only a regular file. */
static int open_spool(const char *name)
{
	struct stat st;
	int fd, err;

	if (become(client_who()))
		return -1;
	fd = openat(spool_dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	err = errno;
	if (unbecome()) {
		say("cannot switch the file-system identity back: %s", strerror(errno));
		exit(1);
	}
	if (fd >= 0 && (fstat(fd, &st) || !S_ISREG(st.st_mode) || fcntl(fd, F_SETFL, 0))) {
		err = fd >= 0 && !S_ISREG(st.st_mode) ? EINVAL : errno;
		close(fd);
		fd = -1;
	}
	errno = err;
	return fd;
}

/* bwrap's options, NUL-separated, read by bwrap from --args 3: no command
 * line shows a user name or a home. The program's path reaches the
 * trampoline through the environment (PUM_EXEC), which only the user sees. */
static const char *const SYSTEM_DIRS[] = { "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/var" };
static const char BWRAP_TRAMPOLINE[] = "f=$PUM_EXEC; unset PUM_EXEC PWD; exec \"$f\"";

static int under_system_dir(const char *p)
{
	for (size_t i = 0; i < sizeof SYSTEM_DIRS / sizeof *SYSTEM_DIRS; i++) {
		size_t n = strlen(SYSTEM_DIRS[i]);
		if (!strncmp(p, SYSTEM_DIRS[i], n) && (p[n] == '/' || !p[n]))
			return 1;
	}
	return 0;
}

static void arg(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s) + 1);
}

static void bind_with_parents(struct buf *b, const char *how, const char *p)
{
	char parent[PATH_MAX];

	for (const char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
		snprintf(parent, sizeof parent, "%.*s", (int)(s - p), p);
		if (!under_system_dir(parent)) {
			arg(b, "--dir");
			arg(b, parent);
		}
	}
	arg(b, how);
	arg(b, p);
	arg(b, p);
}

static int bwrap_args(const struct request *rq, const char *program)
{
	static const char *const fixed[] = { "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--new-session",
		"--die-with-parent", "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp",
		"--ro-bind-try", "/run/systemd/resolve", "/run/systemd/resolve" };
	struct buf b = { 0 };
	char target[PATH_MAX];
	struct stat st;
	int p[2];

	for (size_t i = 0; i < sizeof SYSTEM_DIRS / sizeof *SYSTEM_DIRS; i++) {
		ssize_t n;
		if (lstat(SYSTEM_DIRS[i], &st))
			continue;
		if (S_ISLNK(st.st_mode) && (n = readlink(SYSTEM_DIRS[i], target, sizeof target - 1)) > 0) {
			target[n] = 0;
			arg(&b, "--symlink");
			arg(&b, target);
			arg(&b, SYSTEM_DIRS[i]);
		} else if (S_ISDIR(st.st_mode)) {
			arg(&b, "--ro-bind");
			arg(&b, SYSTEM_DIRS[i]);
			arg(&b, SYSTEM_DIRS[i]);
		}
	}
	for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
		arg(&b, fixed[i]);
	if (strcmp(rq->home, "/"))
		bind_with_parents(&b, "--bind", rq->home);
	size_t hl = strlen(rq->home);
	if (!under_system_dir(program) && !(strncmp(program, rq->home, hl) == 0 && program[hl] == '/'))
		bind_with_parents(&b, "--ro-bind", program);
	arg(&b, "--chdir");
	arg(&b, rq->home);
	size_t out = b.len;
	int fd = -1;
	if (out < 65536 && !pipe2(p, O_CLOEXEC)) {   /* fits the pipe: no writer needed later */
		if (write(p[1], b.p, out) == (ssize_t)out)
			fd = p[0];
		else
			close(p[0]);
		close(p[1]);
	}
	free(b.p);
	return fd;
}

static struct run *start(struct client *c, const struct request *rq, int exe, const char *path, const char *what)
{
	static char stack[256 * 1024] __attribute__((aligned(16)));   /* one child at a time (CLONE_VFORK) */
	struct child_plan plan = { .exec_fd = exe, .cgroup_procs_fd = -1, .args_fd = -1, .bwstat_fd = -1 };
	int out[2] = { -1, -1 }, err[2] = { -1, -1 }, status[2] = { -1, -1 }, bw[2] = { -1, -1 };
	char *envp[MAX_ENV + 2], pum_exec[PATH_MAX + 16];
	const char *stage = "pipe";
	struct child_status cs = { 0, 0 };
	struct run *r = calloc(1, sizeof *r);
	int in = -1, e = 0, pidfd = -1;

	if (!r) {
		say("out of memory");
		exit(1);
	}
	r->fds[0] = r->fds[1] = r->fds[2] = r->cg = -1;
	in = rq->has_spool ? open_spool(rq->spool) : open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		stage = rq->has_spool ? "spool" : "devnull";
		goto failed;
	}
	if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(status, O_CLOEXEC) ||
	    fcntl(out[0], F_SETFL, O_NONBLOCK) || fcntl(err[0], F_SETFL, O_NONBLOCK))
		goto failed;
	if (rq->sandbox == SB_BWRAP) {
		stage = "bwrap";
		if ((plan.args_fd = bwrap_args(rq, path)) < 0 || pipe2(bw, O_CLOEXEC) || fcntl(bw[0], F_SETFL, O_NONBLOCK))
			goto failed;
		/* Above 9, so that moving them to 3 and 4 in the child cannot collide. */
		int a = fcntl(plan.args_fd, F_DUPFD_CLOEXEC, 10), s = fcntl(bw[1], F_DUPFD_CLOEXEC, 10);
		close(plan.args_fd);
		close(bw[1]);
		plan.args_fd = a;
		bw[1] = plan.bwstat_fd = s;
		if (a < 0 || s < 0)
			goto failed;
	}
	if (cg_parent >= 0) {
		stage = "cgroup";
		snprintf(r->cgname, sizeof r->cgname, "run-%d-%lu", getpid(), ++run_seq);
		char num[24];
		if (mkdirat(cg_parent, r->cgname, 0755) || (r->cg = openat(cg_parent, r->cgname, O_DIRECTORY | O_CLOEXEC)) < 0)
			goto failed;
		if (cg_pids && rq->pids) {
			snprintf(num, sizeof num, "%llu", (unsigned long long)rq->pids);
			if (write_file(r->cg, "pids.max", num))
				goto failed;
		}
		if (cg_memory && rq->memory) {
			snprintf(num, sizeof num, "%llu", (unsigned long long)rq->memory);
			if (write_file(r->cg, "memory.max", num))
				goto failed;
		}
		if ((plan.cgroup_procs_fd = openat(r->cg, "cgroup.procs", O_WRONLY | O_CLOEXEC)) < 0)
			goto failed;
	}

	int n = 0;
	for (int i = 0; i < rq->nenv; i++)
		envp[n++] = (char *)rq->env[i];
	static char *bw_argv[] = { NULL, "--args", "3", "--json-status-fd", "4", "/bin/sh", "-c", (char *)BWRAP_TRAMPOLINE, NULL };
	char *argv[] = { (char *)path, NULL };
	if (rq->sandbox == SB_BWRAP) {
		snprintf(pum_exec, sizeof pum_exec, "PUM_EXEC=%s", path);
		envp[n++] = pum_exec;
		bw_argv[0] = (char *)opt.bwrap;
		plan.argv = bw_argv;
		plan.path = opt.bwrap;
		plan.exec_fd = -1;
	} else {
		plan.argv = argv;
		plan.path = path;
	}
	envp[n] = NULL;
	plan.envp = envp;
	plan.in_fd = in;
	plan.out_fd = out[1];
	plan.err_fd = err[1];
	plan.status_fd = status[1];
	plan.privileged = g_privileged;
	plan.uid = rq->uid;
	plan.gid = rq->gid;
	plan.ngroups = rq->ngroups;
	for (int i = 0; i < rq->ngroups; i++)
		plan.groups[i] = rq->groups[i];
	plan.last_cap = last_cap;
	plan.parent = getpid();
	plan.home = rq->home;
	const struct { int res; uint64_t v; } lim[5] = { { RLIMIT_CPU, rq->cpu }, { RLIMIT_AS, rq->as },
		{ RLIMIT_NPROC, rq->nproc }, { RLIMIT_FSIZE, rq->fsize }, { RLIMIT_CORE, 0 } };
	for (int i = 0; i < 5; i++) {
		struct rlimit cur;
		uint64_t v = lim[i].v;
		/* Unprivileged, a hard limit cannot be raised: stay under ours. */
		if (!g_privileged && !getrlimit(lim[i].res, &cur) && cur.rlim_max != RLIM_INFINITY && v > cur.rlim_max)
			v = cur.rlim_max;
		plan.limits[plan.nlimits].resource = lim[i].res;
		plan.limits[plan.nlimits++].value = v;
	}

	/* No signal may reach the child before it has reset the dispositions. */
	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	r->started = now_ms();
	pid_t pid = clone(child_main, stack + sizeof stack, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &plan, &pidfd);
	e = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	stage = "clone";
	if (pid < 0) {
		errno = e;
		goto failed;
	}
	close(status[1]);
	status[1] = -1;
	/* The child has exec'd (the pipe closed: 0 bytes) or failed (its record). */
	if (read(status[0], &cs, sizeof cs) == (ssize_t)sizeof cs) {
		siginfo_t si;
		waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED);
		close(pidfd);
		pidfd = -1;
		errno = cs.err;
		stage = cs.stage > 0 && cs.stage < ST_COUNT ? stage_names[cs.stage] : "child";
		/* chdir and exec of the user's own program fail for the user's
		 * reasons (a bad "#!" line, a missing home): not ours. */
		if ((cs.stage == ST_CHDIR || cs.stage == ST_EXEC) && rq->sandbox != SB_BWRAP) {
			struct verdict v = { .kind = V_UNSAFE, .reason = stage_names[cs.stage], .err = cs.err };
			snprintf(v.path, sizeof v.path, "%s", cs.stage == ST_CHDIR ? rq->home : path);
			answer_notrun(c, rq->id, "exec", &v);
			stage = NULL;
		}
		goto failed;
	}
	r->c = c;
	r->id = rq->id;
	r->what = what;
	r->bwrap = rq->sandbox == SB_BWRAP;
	r->pid = pid;
	r->pidfd = pidfd;
	r->fds[0] = out[0];
	r->fds[1] = err[0];
	r->fds[2] = bw[0];
	r->budget = rq->output;
	r->deadline = r->started + (int64_t)rq->timeout_ms;
	r->kill_at = INT64_MAX;
	r->abandon_at = INT64_MAX;
	out[0] = err[0] = bw[0] = -1;
	r->next = runs;
	runs = r;
	r = NULL;
failed:
	e = errno;
	int fds[] = { in, out[0], out[1], err[0], err[1], status[0], status[1], bw[0], bw[1], plan.args_fd, plan.cgroup_procs_fd };
	for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (r) {
		if (r->cg >= 0) {
			close(r->cg);
			unlinkat(cg_parent, r->cgname, AT_REMOVEDIR);
		}
		free(r);
		if (stage)
			answer_failed(c, 1, rq->id, stage, e, strerror(e));
		return NULL;
	}
	return runs;
}

static void do_run(struct client *c, const struct request *rq)
{
	char resolved[PATH_MAX];
	struct verdict v;
	const char *what;
	int fd = choose(rq, &v, resolved, &what);

	if (fd < 0) {
		if (v.kind == V_FAILED)
			return answer_failed(c, 1, rq->id, "check", v.err, v.reason);
		return answer_notrun(c, rq->id, v.kind == V_MISSING ? "missing" : "unsafe", &v);
	}
	start(c, rq, fd, resolved, what);
	close(fd);
}

static void handle_frame(struct client *c, const uint8_t *body, size_t len)
{
	static struct request rq;   /* 70 KB: not on the stack */
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
	if (rq.type == MSG_STAT)
		do_stat(c, &rq);
	else
		do_run(c, &rq);
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
	if (c->sent == c->out.len)
		c->out.len = c->sent = 0;
}

static void accept_client(void)
{
	struct ucred cred;
	socklen_t len = sizeof cred;
	int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) || cred.uid != opt.client_uid) {
		say("refusing a connection from uid %d", (int)cred.uid);
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
}

/* ---- the loop ------------------------------------------------------------ */

static void stop(void)
{
	stopping = 1;
	stop_deadline = now_ms() + STOP_MS;
	if (listen_fd >= 0) {
		close(listen_fd);
		listen_fd = -1;
		if (!become(client_who())) {
			unlink(opt.socket);
			if (unbecome())
				exit(1);
		}
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
}

static int next_timeout(int64_t now)
{
	int64_t next = INT64_MAX;

	for (struct run *r = runs; r; r = r->next) {
		int64_t t = r->pidfd >= 0 ? (r->timed_out ? r->kill_at : r->deadline) : cg_populated(r) ? now + 10 : r->abandon_at;
		if (t < next)
			next = t;
	}
	if (stopping && stop_deadline < next)
		next = stop_deadline;
	if (next == INT64_MAX)
		return -1;
	return next <= now ? 0 : next - now > 60000 ? 60000 : (int)(next - now);
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	setup();
	for (;;) {
		size_t cap = 4, n = 0;
		for (struct client *c = clients; c; c = c->next)
			cap++;
		for (struct run *r = runs; r; r = r->next)
			cap += 4;
		struct pollfd *pf = calloc(cap, sizeof *pf);
		void **owner = calloc(cap, sizeof *owner);
		if (!pf || !owner) {
			say("out of memory");
			exit(1);
		}
		if (!stopping) {
			pf[n++] = (struct pollfd){ .fd = 0, .events = POLLIN };
			pf[n++] = (struct pollfd){ .fd = listen_fd, .events = POLLIN };
		}
		pf[n++] = (struct pollfd){ .fd = sig_fd, .events = POLLIN };
		for (struct client *c = clients; c; c = c->next) {
			owner[n] = c;
			pf[n++] = (struct pollfd){ .fd = c->fd, .events = (c->closing ? 0 : POLLIN) | (c->out.len ? POLLOUT : 0) };
		}
		size_t first_run = n;
		for (struct run *r = runs; r; r = r->next)
			for (int i = 0; i < 4; i++) {
				owner[n] = r;
				pf[n++] = (struct pollfd){ .fd = i == 3 ? r->pidfd : r->fds[i], .events = POLLIN };
			}
		int64_t now = now_ms();
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
				accept_client();
			} else if (!owner[i]) {
				struct signalfd_siginfo si;
				while (read(sig_fd, &si, sizeof si) > 0)
					;
				each_stray_child(reap_stray);
			} else if (i < first_run) {
				struct client *c = owner[i];
				if (pf[i].revents & (POLLIN | POLLHUP | POLLERR) && !c->closing)
					client_input(c);
				if (c->out.len && (pf[i].revents & POLLOUT))
					client_output(c);
			} else {
				struct run *r = owner[i];
				int which = (int)((i - first_run) % 4);
				if (which == 3 && r->pidfd >= 0)
					leader_exited(r, now);
				else if (which < 3 && r->fds[which] >= 0)
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
		}
		for (struct client **p = &clients; *p; ) {
			struct client *c = *p;
			if (c->out.len - c->sent > MAX_PENDING)
				drop_client(c), c->out.len = c->sent = 0;
			if (c->closing && c->out.len)
				client_output(c);
			if (!c->closing || c->out.len) {
				p = &c->next;
				continue;
			}
			*p = c->next;
			close(c->fd);
			free(c->in);
			free(c->out.p);
			free(c);
		}
		if (stopping && (!runs || now_ms() >= stop_deadline)) {
			sweep_pgid = 0;
			each_stray_child(kill_stray);
			if (runs)
				say("exiting with runs still ending");
			exit(0);
		}
	}
}
