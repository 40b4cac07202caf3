/* The per-recipient floor: a plain fork+exec loop of the filter, from a small
 * C program. Each run: fork, (as root: setgroups, setresgid, setresuid to
 * the user), stdin from the message file, stdout/stderr to /dev/null, exec;
 * the parent reaps. No checks, no sandbox, no capture. INFLIGHT runs at once
 * (default 1: one after another), as the milter's pool keeps several.
 *
 *   fork-exec RUNS FILTER MESSAGE [UID GID [INFLIGHT]]
 *
 * Prints "runs=N cpu_ms_per_run=X wall_ms_per_run=Y" (CPU: this process and
 * its reaped children, user + system). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double ms(struct timeval t)
{
	return t.tv_sec * 1e3 + t.tv_usec / 1e3;
}

int main(int argc, char **argv)
{
	if (argc != 4 && argc != 6 && argc != 7) {
		fprintf(stderr, "usage: fork-exec RUNS FILTER MESSAGE [UID GID [INFLIGHT]]\n");
		return 2;
	}
	int runs = atoi(argv[1]), failures = 0, running = 0, started = 0;
	int inflight = argc == 7 ? atoi(argv[6]) : 1;
	uid_t uid = argc >= 6 ? (uid_t)atoi(argv[4]) : 0;
	gid_t gid = argc >= 6 ? (gid_t)atoi(argv[5]) : 0;
	if (runs < 1 || inflight < 1) {
		fprintf(stderr, "fork-exec: RUNS and INFLIGHT must be positive\n");
		return 2;
	}
	char *const args[] = { argv[2], NULL };
	char *const env[] = { "PATH=/usr/bin:/bin", NULL };
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (started < runs || running > 0) {
		while (started < runs && running < inflight) {
			pid_t pid = fork();
			if (pid == 0) {
				int in = open(argv[3], O_RDONLY), null = open("/dev/null", O_WRONLY);
				if (in < 0 || null < 0 || dup2(in, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
					_exit(126);
				if (argc >= 6 && (setgroups(1, &gid) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid)))
					_exit(126);
				execve(argv[2], args, env);
				_exit(127);
			}
			started++;
			if (pid < 0)
				failures++;
			else
				running++;
		}
		int st;
		if (running > 0) {
			if (waitpid(-1, &st, 0) < 0)
				return 1;
			running--;
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				failures++;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	struct rusage self, kids;
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	double cpu = ms(self.ru_utime) + ms(self.ru_stime) + ms(kids.ru_utime) + ms(kids.ru_stime);
	double wall = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	printf("runs=%d failures=%d cpu_ms_per_run=%.3f wall_ms_per_run=%.3f\n", runs, failures, cpu / runs, wall / runs);
	return failures ? 1 : 0;
}
