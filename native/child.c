/* Runs in: the launcher's child, between clone(CLONE_VM|CLONE_VFORK) and
 * exec. It shares the launcher's memory (the launcher waits meanwhile), so
 * it only reads the plan the parent prepared, writes nothing but its own
 * stack, and makes raw system calls: no allocation, no stdio, no libc state.
 * Any failure writes {stage, errno} to the close-on-exec status pipe and
 * exits 127; the parent tells our failures (451) from the user's (chdir,
 * exec) by the stage, never by an exit status. The order matters: the uid
 * change comes after everything that needs privileges, and the parent-death
 * signal after the uid change (which clears it). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "launcher.h"

const char *const stage_names[ST_COUNT] = {
	"none", "signals", "cgroup", "dup", "setsid", "rlimit", "umask",
	"capbset", "setgroups", "setresgid", "setresuid", "capset", "ambient",
	"no_new_privs", "pdeathsig", "parent", "close_range", "args",
	"chdir", "exec",
};

static _Noreturn void fail(const struct child_plan *c, int stage, long err)
{
	struct child_status st = { stage, (int)err };

	syscall(SYS_write, c->status_fd, &st, sizeof st);
	syscall(SYS_exit_group, 127);
	for (;;)
		;
}

/* syscall() returns -1 with errno set; errno is the parent's (shared TLS),
 * which is harmless while the parent waits, and is read right away. */
#define TRY(stage, call) do { if ((call) < 0) fail(c, stage, errno); } while (0)

static void move_fd(const struct child_plan *c, int from, int to)
{
	if (from == to)
		TRY(ST_DUP, syscall(SYS_fcntl, to, F_SETFD, 0));
	else
		TRY(ST_DUP, syscall(SYS_dup3, from, to, 0));
}

int child_main(void *arg)
{
	const struct child_plan *c = arg;
	struct { unsigned long v[4]; } dfl = { { 0 } };   /* SIG_DFL, no flags, empty mask */
	uint64_t none = 0;
	char pid[24];
	int n = 0;

	/* Ignored signals stay ignored across exec: back to the defaults. */
	for (int sig = 1; sig < 65; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(uint64_t));
	TRY(ST_SIGNALS, syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof none));

	if (c->cgroup_procs_fd >= 0) {   /* into the run's cgroup before anything runs */
		long p = syscall(SYS_getpid);
		char tmp[24];
		do tmp[n++] = (char)('0' + p % 10); while ((p /= 10) > 0);
		for (int i = 0; i < n; i++)
			pid[i] = tmp[n - 1 - i];
		TRY(ST_CGROUP, syscall(SYS_write, c->cgroup_procs_fd, pid, n));
	}

	move_fd(c, c->in_fd, 0);
	move_fd(c, c->out_fd, 1);
	move_fd(c, c->err_fd, 2);
	TRY(ST_SETSID, syscall(SYS_setsid));
	for (int i = 0; i < c->nlimits; i++) {
		struct rlimit64 { uint64_t cur, max; } rl = { c->limits[i].value, c->limits[i].value };
		TRY(ST_RLIMIT, syscall(SYS_prlimit64, 0, c->limits[i].resource, &rl, NULL));
	}
	syscall(SYS_umask, 077);

	if (c->privileged) {
		for (int cap = 0; cap <= c->last_cap; cap++)
			TRY(ST_CAPBSET, syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0));
		TRY(ST_SETGROUPS, syscall(SYS_setgroups, (size_t)c->ngroups, c->groups));
		TRY(ST_SETRESGID, syscall(SYS_setresgid, c->gid, c->gid, c->gid));
		TRY(ST_SETRESUID, syscall(SYS_setresuid, c->uid, c->uid, c->uid));
	}
	/* Leaving uid 0 cleared the permitted and effective sets; the
	 * inheritable and ambient sets are cleared here, in both modes. */
	struct __user_cap_header_struct head = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
	TRY(ST_CAPSET, syscall(SYS_capset, &head, data));
	TRY(ST_AMBIENT, syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0));
	TRY(ST_NNP, syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
	TRY(ST_PDEATHSIG, syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0));
	if (syscall(SYS_getppid) != c->parent)   /* the launcher died before the signal was armed */
		fail(c, ST_PARENT, ESRCH);

	if (syscall(SYS_chdir, c->home) < 0)
		fail(c, ST_CHDIR, errno);
	/* Every descriptor above 2 closes at exec: the status pipe tells the
	 * parent the exec happened by closing. */
	TRY(ST_CLOSE, syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC));
	if (c->args_fd >= 0) {   /* bwrap --args 3 --json-status-fd 4 (the parent put both above 9) */
		move_fd(c, c->args_fd, 3);
		move_fd(c, c->bwstat_fd, 4);
	}

	if (c->exec_fd >= 0) {
		syscall(SYS_execveat, c->exec_fd, "", c->argv, c->envp, AT_EMPTY_PATH);
		/* A "#!" script cannot run from a close-on-exec descriptor (the
		 * interpreter could not open /dev/fd/N): the kernel says ENOENT.
		 * Then by path; see native/README.md for why that is safe. */
		if (errno != ENOENT)
			fail(c, ST_EXEC, errno);
	}
	syscall(SYS_execve, c->path, c->argv, c->envp);
	fail(c, ST_EXEC, errno);
}
