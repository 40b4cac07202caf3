/* Runs in: a child of the launcher, before it drops privileges (a fork of a
 * single-threaded process: libc, NSS and stdio are safe to use here).
 *
 * Who the user is, from the uid alone: the client names a uid, never a home,
 * a gid or groups. Either NSS (getpwuid_r, then getgrouplist for the
 * supplementary groups, so LDAP and sssd users work), or, with
 * --passwd-file, that passwd(5) file and the `group` file beside it. A line
 * that does not parse is skipped; of two lines with the uid, the first wins
 * (as users.passwdFile in Node). A lookup that blocks (a slow directory) holds
 * up only this child, which the run's deadline kills. A home that is not
 * absolute or has a ".." component makes the lookup fail (EINVAL). */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher.h"

static int copy(char *dst, size_t cap, const char *src)
{
	if (strlen(src) >= cap) {
		errno = E2BIG;
		return -1;
	}
	strcpy(dst, src);
	return 0;
}

static int add_group(struct account *a, gid_t g)
{
	for (int i = 0; i < a->ngroups; i++)
		if (a->groups[i] == g)
			return 0;
	if (a->ngroups == MAX_GROUPS) {
		errno = E2BIG;
		return -1;
	}
	a->groups[a->ngroups++] = g;
	return 0;
}

/* Splits a line in place into exactly `n` ':'-separated fields. */
static int fields(char *line, char **f, int n)
{
	line[strcspn(line, "\n")] = 0;
	for (int i = 0; i < n; i++) {
		f[i] = line;
		line = strchr(line, ':');
		if ((i < n - 1) != (line != NULL))
			return -1;
		if (line)
			*line++ = 0;
	}
	return 0;
}

static int from_files(uid_t uid, struct account *a)
{
	char line[8192], *f[7], group_path[PATH_MAX];
	uint64_t u, g;
	int found = 0;
	FILE *pw = fopen(opt.passwd_file, "re");

	if (!pw)
		return -1;
	while (!found && fgets(line, sizeof line, pw))
		if (!fields(line, f, 7) && !parse_u64(f[2], UINT32_MAX - 1, &u) && u == uid &&
		    !parse_u64(f[3], UINT32_MAX - 1, &g) && valid_user_name(f[0])) {
			if (copy(a->name, sizeof a->name, f[0]) || copy(a->home, sizeof a->home, f[5]) ||
			    copy(a->shell, sizeof a->shell, f[6])) {
				fclose(pw);
				return -1;
			}
			a->uid = uid;
			a->gid = (gid_t)g;
			found = 1;
		}
	fclose(pw);
	if (!found) {
		errno = ENOENT;
		return -1;
	}
	if (add_group(a, a->gid))
		return -1;
	const char *slash = strrchr(opt.passwd_file, '/');
	snprintf(group_path, sizeof group_path, "%.*sgroup", (int)(slash - opt.passwd_file + 1), opt.passwd_file);
	FILE *gr = fopen(group_path, "re");
	if (!gr)
		return errno == ENOENT ? 0 : -1;   /* no group file: the primary group only */
	while (fgets(line, sizeof line, gr)) {
		if (fields(line, f, 4) || parse_u64(f[2], UINT32_MAX - 1, &g))
			continue;
		for (char *m = strtok(f[3], ","); m; m = strtok(NULL, ","))
			if (!strcmp(m, a->name) && add_group(a, (gid_t)g)) {
				fclose(gr);
				return -1;
			}
	}
	fclose(gr);
	return 0;
}

static int from_nss(uid_t uid, struct account *a)
{
	static char buf[65536];
	struct passwd pw, *res = NULL;
	int n = MAX_GROUPS, err = getpwuid_r(uid, &pw, buf, sizeof buf, &res);

	if (err || !res) {
		errno = err ? err : ENOENT;
		return -1;
	}
	if (!valid_user_name(pw.pw_name)) {
		errno = EINVAL;
		return -1;
	}
	if (copy(a->name, sizeof a->name, pw.pw_name) || copy(a->home, sizeof a->home, pw.pw_dir) ||
	    copy(a->shell, sizeof a->shell, pw.pw_shell))
		return -1;
	a->uid = uid;
	a->gid = pw.pw_gid;
	if (getgrouplist(a->name, a->gid, a->groups, &n) < 0) {
		errno = E2BIG;
		return -1;
	}
	a->ngroups = n;
	return 0;
}

int lookup_account(uid_t uid, struct account *a)
{
	memset(a, 0, sizeof *a);
	if (opt.passwd_file ? from_files(uid, a) : from_nss(uid, a))
		return -1;
	if (!a->shell[0])
		strcpy(a->shell, "/bin/sh");
	/* The home is chdir'd to, bound by bwrap and given as HOME: an
	 * absolute path with no ".." component, or no account. */
	const char *h = a->home;
	if (h[0] != '/') {
		errno = EINVAL;
		return -1;
	}
	for (const char *c = h; c; c = strchr(c + 1, '/'))
		if (!strncmp(c, "/..", 3) && (c[3] == '/' || !c[3])) {
			errno = EINVAL;
			return -1;
		}
	return 0;
}

int uid_of_name(const char *name, uid_t *uid)
{
	if (!opt.passwd_file) {
		static char buf[65536];
		struct passwd pw, *res = NULL;
		int err = getpwnam_r(name, &pw, buf, sizeof buf, &res);
		if (err || !res) {
			errno = err ? err : ENOENT;
			return -1;
		}
		*uid = pw.pw_uid;
		return 0;
	}
	char line[8192], *f[7];
	uint64_t u;
	FILE *pw = fopen(opt.passwd_file, "re");

	if (!pw)
		return -1;
	while (fgets(line, sizeof line, pw))
		if (!fields(line, f, 7) && !strcmp(f[0], name) && !parse_u64(f[2], UINT32_MAX - 1, &u)) {
			fclose(pw);
			*uid = (uid_t)u;
			return 0;
		}
	fclose(pw);
	errno = ENOENT;
	return -1;
}
