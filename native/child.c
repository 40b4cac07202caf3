/* Runs in: a child of the launcher, from its fork (clone3, no CLONE_VM: a
 * copy of a single-threaded process) to the exec of the user's program.
 *
 * Everything that could block or that depends on who the user is happens
 * here, not in the launcher's loop: the account lookup by uid (account.c),
 * the spool file opened as the milter's account, the program checked as the
 * user (check.c), then the set-up and the exec. The launcher reads the
 * verdict from the close-on-exec status pipe in its poll loop; end of file
 * without a record means the exec happened. The run's deadline counts from
 * the fork, so a child stuck anywhere here is killed like any run.
 *
 * Before the uid change libc is used normally (NSS, stdio, malloc). From the
 * uid change on, the user may signal or stop this process; only raw system
 * calls follow, on memory this process owns. The order matters: the uid
 * change comes after everything that needs privileges, and the parent-death
 * signal after the uid change (which clears it). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "launcher.h"

static int status_fd = -1;
static struct record rec;

/* strncpy without libc, always terminated. */
static void raw_copy(char *dst, size_t cap, const char *src)
{
	size_t i = 0;

	for (; i < cap - 1 && src[i]; i++)
		dst[i] = src[i];
	dst[i] = 0;
}

static _Noreturn void send(int kind, int code)
{
	rec.kind = kind;
	syscall(SYS_write, status_fd, &rec, sizeof rec);
	syscall(SYS_exit_group, code);
	for (;;)
		;
}

/* Our failure (FAILED, 451 4.3.x): never the user's outcome. */
static _Noreturn void setup_failed(const char *stage, long err)
{
	raw_copy(rec.stage, sizeof rec.stage, stage);
	rec.err = (int)err;
	send(R_SETUP, 127);
}

#define TRY(stage, call) do { if ((call) < 0) setup_failed(stage, errno); } while (0)

static void set_verdict(const struct verdict *v, const char *what)
{
	rec.vkind = v->kind;
	rec.err = v->err;
	rec.mode = v->mode;
	rec.owner = v->owner;
	snprintf(rec.what, sizeof rec.what, "%s", what);
	snprintf(rec.reason, sizeof rec.reason, "%s", v->reason ? v->reason : "");
	snprintf(rec.path, sizeof rec.path, "%s", v->path);
}

/* The file-system identity (and the groups, which stay for the exec):
 * raw setgroups, the fs ids each read back. Unprivileged: nothing to do. */
static void take_fs_identity(uid_t uid, gid_t gid, int ngroups, const gid_t *groups)
{
	if (!g_privileged)
		return;
	TRY("setgroups", syscall(SYS_setgroups, (size_t)ngroups, groups));
	setfsgid(gid);
	setfsuid(uid);
	if ((gid_t)setfsgid(gid) != gid || (uid_t)setfsuid(uid) != uid)
		setup_failed("setfsuid", EPERM);
}

/* The spool file, opened as the milter's account (it cannot name anything
 * that account could not open itself): a regular file of that account with
 * one link, so that a hard link planted in the spool cannot feed a filter
 * someone else's file. */
static int open_spool(const char *name)
{
	struct stat st;
	int fd;

	take_fs_identity((uid_t)opt.client_uid, (gid_t)opt.client_gid, 0, NULL);
	fd = openat(g_spool_dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st))
		setup_failed("spool", errno);
	if (!S_ISREG(st.st_mode) || st.st_uid != (uid_t)opt.client_uid)
		setup_failed("spool", EPERM);
	if (st.st_nlink != 1)
		setup_failed("spool", EMLINK);
	TRY("spool", fcntl(fd, F_SETFL, 0));
	return fd;
}

int expand(const char *t, const char *home, const char *user, char out[PATH_MAX])
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

/* The user's own program, else (message filters only) the site default. */
static int choose(const struct request *rq, const struct account *a, struct verdict *v, char resolved[PATH_MAX], const char **what)
{
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
	if (expand(tmpl, a->home, a->name, path)) {
		v->kind = V_UNSAFE;
		v->reason = "bad-path";
		snprintf(v->path, sizeof v->path, "%s", a->home);
		return -1;
	}
	fd = check_program(a->uid, path, 0, v, resolved);
	if (fd < 0 && v->kind == V_MISSING && rq->program == PROG_FILTER && opt.default_path) {
		*what = "default";
		fd = check_program(a->uid, opt.default_path, 1, v, resolved);
	}
	return fd;
}

/* ---- bwrap --------------------------------------------------------------- */

/* bwrap's options, NUL-separated, read by bwrap from --args 3: bwrap's
 * command line shows no user name or home. The program's path reaches the
 * trampoline through the environment (PUM_EXEC), which only the user sees;
 * env(1) then drops SHLVL, which a bash /bin/sh would add. */
static const char *const SYSTEM_DIRS[] = { "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/var" };
static const char BWRAP_TRAMPOLINE[] = "f=$PUM_EXEC; unset PUM_EXEC PWD; exec /usr/bin/env -u SHLVL \"$f\"";

static int under_system_dir(const char *p)
{
	for (size_t i = 0; i < sizeof SYSTEM_DIRS / sizeof *SYSTEM_DIRS; i++) {
		size_t n = strlen(SYSTEM_DIRS[i]);
		if (!strncmp(p, SYSTEM_DIRS[i], n) && (p[n] == '/' || !p[n]))
			return 1;
	}
	return 0;
}

/* Not buf_put: its out-of-memory exit(1) would read as the filter's
 * "reject". Here it is our set-up failure. */
static void arg(struct buf *b, const char *s)
{
	size_t n = strlen(s) + 1;

	if (b->len + n > b->cap) {
		size_t cap = (b->len + n) * 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p)
			setup_failed("bwrap", ENOMEM);
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
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

/* A pipe holding the options, its write end closed; never blocks (a pipe
 * that cannot take them all is a set-up failure). */
static int bwrap_args(const char *home, const char *program)
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
	if (strcmp(home, "/"))
		bind_with_parents(&b, "--bind", home);
	size_t hl = strlen(home);
	if (!under_system_dir(program) && !(strncmp(program, home, hl) == 0 && program[hl] == '/'))
		bind_with_parents(&b, "--ro-bind", program);
	arg(&b, "--chdir");
	arg(&b, home);
	TRY("bwrap", pipe2(p, O_CLOEXEC));
	TRY("bwrap", fcntl(p[1], F_SETFL, O_NONBLOCK));
	if (write(p[1], b.p, b.len) != (ssize_t)b.len)
		setup_failed("bwrap", E2BIG);
	close(p[1]);
	free(b.p);
	/* Above 9, so that moving it (and the status pipe) to 3 and 4 cannot collide. */
	int fd = fcntl(p[0], F_DUPFD_CLOEXEC, 10);
	TRY("bwrap", fd);
	close(p[0]);
	return fd;
}

/* ---- the child ----------------------------------------------------------- */

static void move_fd(int from, int to)
{
	if (from == to)
		TRY("dup", syscall(SYS_fcntl, to, F_SETFD, 0));
	else
		TRY("dup", syscall(SYS_dup3, from, to, 0));
}

_Noreturn void child_main(const struct request *rq, const struct child_fds *f, pid_t parent)
{
	static struct account a;
	static struct verdict v;
	static char resolved[PATH_MAX], env_own[6][PATH_MAX + 16];
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigset_t none;
	const char *what;
	int in = -1, exe, args_fd = -1, bwstat_fd = -1;

	status_fd = f->status;
	/* Ignored signals stay ignored across exec: back to the defaults. */
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &dfl, NULL);   /* EINVAL for the few libc keeps: harmless */
	sigemptyset(&none);
	TRY("signals", sigprocmask(SIG_SETMASK, &none, NULL));
	TRY("pdeathsig", prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0));
	if (getppid() != parent)
		setup_failed("parent", ESRCH);

	if (lookup_account(rq->uid, &a))
		setup_failed("lookup", errno);
	/* The uid is authoritative (USER, LOGNAME and %u are the account's own
	 * name). The client's name may be another name of the same uid; one
	 * that names a different uid, or nobody, is a confusion: FAILED. */
	uid_t named;
	if (strcmp(a.name, rq->user) && (uid_of_name(rq->user, &named) || named != a.uid))
		setup_failed("user", EINVAL);
	int root_group = a.gid == 0;
	for (int i = 0; i < a.ngroups; i++)
		root_group |= a.groups[i] == 0;
	if (root_group) {
		v = (struct verdict){ .kind = V_UNSAFE, .reason = "root-group" };
		snprintf(v.path, sizeof v.path, "%s", a.home);
		set_verdict(&v, "own");
		send(rq->type == MSG_STAT ? R_CHECKED : R_VERDICT, rq->type == MSG_STAT ? 0 : 127);
	}

	/* Spool first, as the milter's account; then the user's identity for
	 * the check and, from there on, everything else: each identity taken
	 * once, from the more privileged to the less. */
	if (rq->type == MSG_RUN)
		in = rq->has_spool ? open_spool(rq->spool) : open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (rq->type == MSG_RUN && in < 0)
		setup_failed("devnull", errno);
	take_fs_identity(a.uid, a.gid, a.ngroups, a.groups);
	exe = choose(rq, &a, &v, resolved, &what);
	if (exe < 0 && v.kind == V_FAILED)
		setup_failed("check", v.err);
	set_verdict(&v, what);
	if (rq->type == MSG_STAT)
		send(R_CHECKED, 0);
	if (exe < 0)
		send(R_VERDICT, 127);
	/* The environment: the account's five, then the client's envelope. */
	char *envp[MAX_ENV + 7], *argv[2] = { resolved, NULL };
	static char *bw_argv[] = { NULL, "--args", "3", "--json-status-fd", "4", "/bin/sh", "-c", (char *)BWRAP_TRAMPOLINE, NULL };
	int n = 0;
	snprintf(env_own[0], sizeof env_own[0], "HOME=%s", a.home);
	snprintf(env_own[1], sizeof env_own[1], "USER=%s", a.name);
	snprintf(env_own[2], sizeof env_own[2], "LOGNAME=%s", a.name);
	snprintf(env_own[3], sizeof env_own[3], "SHELL=%s", a.shell);
	snprintf(env_own[4], sizeof env_own[4], "PATH=%s", "/usr/local/bin:/usr/bin:/bin");
	for (int i = 0; i < 5; i++)
		envp[n++] = env_own[i];
	for (int i = 0; i < rq->nenv; i++)
		envp[n++] = (char *)rq->env[i];
	char *const *args = argv;
	const char *exec_path = resolved;
	if (opt.sandbox == SB_BWRAP) {
		snprintf(env_own[5], sizeof env_own[5], "PUM_EXEC=%s", resolved);
		envp[n++] = env_own[5];
		args_fd = bwrap_args(a.home, resolved);
		bwstat_fd = fcntl(f->bwstat, F_DUPFD_CLOEXEC, 10);
		TRY("bwrap", bwstat_fd);
		bw_argv[0] = (char *)opt.bwrap;
		args = bw_argv;
		exec_path = opt.bwrap;
		close(exe);
		exe = -1;
	}
	envp[n] = NULL;
	/* Which program: the launcher's DONE says it. Sent only now, after
	 * every step of ours that allocates or reads the file system, so that a
	 * failure there can only be a set-up failure (FAILED), never a run. */
	rec.kind = R_CHOSEN;
	TRY("status", write(status_fd, &rec, sizeof rec));
	memset(&rec, 0, sizeof rec);

	/* Every descriptor of the plan is above 2 (the launcher keeps 0, 1, 2
	 * open): the moves below cannot overwrite one of them. */
	int plan[] = { in, f->out, f->err, f->status, exe, args_fd, bwstat_fd };
	for (size_t i = 0; i < sizeof plan / sizeof *plan; i++)
		if (plan[i] >= 0 && plan[i] <= 2)
			setup_failed("dup", EBADF);

	/* From here on: raw system calls only. */
	move_fd(in, 0);
	move_fd(f->out, 1);
	move_fd(f->err, 2);
	TRY("setsid", syscall(SYS_setsid));
	const struct { int res; uint64_t v; } lim[5] = { { RLIMIT_CPU, opt.cpu }, { RLIMIT_AS, opt.as },
		{ RLIMIT_NPROC, opt.nproc }, { RLIMIT_FSIZE, opt.fsize }, { RLIMIT_CORE, 0 } };
	for (int i = 0; i < 5; i++) {
		struct rlimit64 { uint64_t cur, max; } rl, cur;
		rl.cur = rl.max = lim[i].v;
		/* Unprivileged, a hard limit cannot be raised: stay under ours. */
		if (!g_privileged && !syscall(SYS_prlimit64, 0, lim[i].res, NULL, &cur) && rl.max > cur.max)
			rl.cur = rl.max = cur.max;
		TRY("rlimit", syscall(SYS_prlimit64, 0, lim[i].res, &rl, NULL));
	}
	syscall(SYS_umask, 077);

	if (g_privileged) {
		for (int cap = 0; cap <= g_last_cap; cap++)
			TRY("capbset", syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0));
		TRY("setresgid", syscall(SYS_setresgid, a.gid, a.gid, a.gid));
		TRY("setresuid", syscall(SYS_setresuid, a.uid, a.uid, a.uid));
	}
	/* Leaving uid 0 cleared the permitted and effective sets; the
	 * inheritable and ambient sets are cleared here, in both modes. */
	struct __user_cap_header_struct head = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
	TRY("capset", syscall(SYS_capset, &head, data));
	TRY("ambient", syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0));
	TRY("no_new_privs", syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
	TRY("pdeathsig", syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0));
	if (syscall(SYS_getppid) != parent)   /* the launcher died before the signal was armed */
		setup_failed("parent", ESRCH);

	if (syscall(SYS_chdir, a.home) < 0) {
		rec.err = errno;
		raw_copy(rec.reason, sizeof rec.reason, "chdir");
		raw_copy(rec.path, sizeof rec.path, a.home);
		send(R_USER, 127);
	}
	/* Every descriptor above 2 closes at exec: the status pipe tells the
	 * launcher the exec happened by closing. */
	TRY("close_range", syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC));
	if (args_fd >= 0) {   /* bwrap --args 3 --json-status-fd 4 */
		move_fd(args_fd, 3);
		move_fd(bwstat_fd, 4);
	}
	if (exe >= 0) {
		syscall(SYS_execveat, exe, "", args, envp, AT_EMPTY_PATH);
		/* A "#!" script cannot run from a close-on-exec descriptor (the
		 * interpreter could not open /dev/fd/N): the kernel says ENOENT.
		 * Then by path; see native/README.md for why that is safe. */
		if (errno != ENOENT)
			goto failed;
	}
	syscall(SYS_execve, exec_path, args, envp);
failed:
	if (opt.sandbox == SB_BWRAP)
		setup_failed("exec", errno);   /* bwrap itself: ours */
	rec.err = errno;
	raw_copy(rec.reason, sizeof rec.reason, "exec");
	raw_copy(rec.path, sizeof rec.path, resolved);
	send(R_USER, 127);
}
