/* Runs in: a child of the launcher, with its file-system uid, gid and
 * groups already the user's (child.c): the kernel's own permission checks
 * decide what the user can reach, and a file the user cannot reach gives the
 * same answer whether it exists or not (EACCES on the way is `unsafe`, never
 * `missing`). A file system that blocks (a hung NFS home, a FUSE mount that
 * never answers) holds up only this child, never the launcher's loop.
 *
 * The checks before a program runs (docs/reference.md §4). The path is
 * walked one component at a time from "/" with O_PATH|O_NOFOLLOW
 * descriptors (O_DIRECTORY too for every component before the last, which
 * also lets an automount point trigger its mount), and the descriptor of the
 * last component is what the child executes: no second lookup by path
 * between the check and the exec. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "launcher.h"

#define MAX_LINKS 40

static int say(struct verdict *v, int kind, const char *reason, const char *path, const struct stat *st, int err)
{
	v->kind = kind;
	v->reason = reason;
	snprintf(v->path, sizeof v->path, "%s", path[0] ? path : "/");
	v->mode = st ? st->st_mode & 07777 : 0;
	v->owner = st ? st->st_uid : 0;
	v->err = err;
	return -1;
}

/* Every directory on the way: owned by root or the user (root only for the
 * site default), writable by nobody else. No exception for sticky dirs. */
static int bad_dir(uid_t uid, int root_only, const char *path, const struct stat *st, struct verdict *v)
{
	if (st->st_uid != 0 && (root_only || st->st_uid != uid))
		return say(v, V_UNSAFE, "dir-owner", path, st, 0);
	if (st->st_mode & S_IWOTH)
		return say(v, V_UNSAFE, "dir-world-writable", path, st, 0);
	if (st->st_mode & S_IWGRP)
		return say(v, V_UNSAFE, "dir-group-writable", path, st, 0);
	return 0;
}

static int bad_file(uid_t uid, int root_only, int fd, const char *path, const struct stat *st, struct verdict *v)
{
	char proc[64];

	if (!S_ISREG(st->st_mode))
		return say(v, V_UNSAFE, "not-regular", path, st, 0);
	if (!g_privileged && st->st_uid != g_self_uid)
		return say(v, V_UNSAFE, "not-own-uid", path, st, 0);
	if (st->st_uid != 0 && (root_only || st->st_uid != uid))
		return say(v, V_UNSAFE, "owner", path, st, 0);
	if (st->st_mode & S_IWOTH)
		return say(v, V_UNSAFE, "world-writable", path, st, 0);
	if (st->st_mode & S_IWGRP)
		return say(v, V_UNSAFE, "group-writable", path, st, 0);
	if (st->st_mode & (S_ISUID | S_ISGID))
		return say(v, V_UNSAFE, "setid", path, st, 0);
	/* AT_EACCESS: with the current (file-system) ids, i.e. the user's. */
	if (syscall(SYS_faccessat2, fd, "", X_OK, AT_EMPTY_PATH | AT_EACCESS))
		return say(v, V_UNSAFE, errno == EACCES ? "not-executable" : "error", path, st, errno);
	/* fgetxattr() refuses O_PATH descriptors; the magic link reaches the same inode. */
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
	if (getxattr(proc, "security.capability", NULL, 0) >= 0)
		return say(v, V_UNSAFE, "file-capabilities", path, st, 0);
	if (errno != ENODATA && errno != ENOTSUP)
		return say(v, V_UNSAFE, "error", path, st, errno);
	return 0;
}

/* Lexically: "." goes, ".." takes the previous component off (not past "/"). */
static int normalise(const char *in, char *out, size_t cap)
{
	size_t len = 0;

	for (const char *p = in; *p; ) {
		while (*p == '/')
			p++;
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			while (len > 0 && out[--len] != '/')
				;
		} else if (n > 0 && !(n == 1 && p[0] == '.')) {
			if (len + 1 + n >= cap)
				return -1;
			out[len++] = '/';
			memcpy(out + len, p, n);
			len += n;
		}
		p = e;
	}
	if (len == 0)
		out[len++] = '/';
	out[len] = 0;
	return 0;
}

static int walk(uid_t uid, const char *path, int root_only, struct verdict *v, char *resolved)
{
	char todo[PATH_MAX], target[PATH_MAX], next[3 * PATH_MAX + 4];
	struct stat st;
	int links = 0, dir, fd;

	snprintf(todo, sizeof todo, "%s", path);
restart:
	resolved[0] = 0;       /* "" stands for "/" */
	dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0 || fstat(dir, &st))
		return say(v, V_FAILED, "error", "/", NULL, errno);
	if (bad_dir(uid, root_only, "/", &st, v))
		goto fail;
	for (const char *p = todo;;) {
		while (*p == '/')
			p++;
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p), rl = strlen(resolved);
		char name[NAME_MAX + 1];

		if (n == 0) {          /* the path names a directory */
			say(v, V_UNSAFE, "not-regular", resolved, &st, 0);
			goto fail;
		}
		if (n > NAME_MAX || rl + 1 + n >= PATH_MAX) {
			say(v, V_UNSAFE, "error", resolved, &st, ENAMETOOLONG);
			goto fail;
		}
		memcpy(name, p, n);
		name[n] = 0;
		/* Before the last component, O_DIRECTORY first: a plain O_PATH open
		 * does not trigger an automount; a symbolic link answers ENOTDIR. */
		fd = *e ? openat(dir, name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC) : -1;
		if (!*e || (fd < 0 && errno == ENOTDIR))
			fd = openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			int err = errno, gone = err == ENOENT || err == ENOTDIR;
			if (err == EACCES) {   /* whatever lies behind: say nothing about it */
				say(v, V_UNSAFE, "dir-not-searchable", resolved, &st, err);
				goto fail;
			}
			snprintf(resolved + rl, PATH_MAX - rl, "/%s", name);
			say(v, gone ? V_MISSING : V_UNSAFE, gone ? "missing" : "error", resolved, NULL, err);
			goto fail;
		}
		snprintf(resolved + rl, PATH_MAX - rl, "/%s", name);
		p = e;
		if (fstat(fd, &st)) {
			say(v, V_FAILED, "error", resolved, NULL, errno);
			close(fd);
			goto fail;
		}
		if (S_ISLNK(st.st_mode)) {
			/* Where it sits was checked (its directory); now where it leads. */
			ssize_t tl = ++links > MAX_LINKS ? -1 : readlinkat(fd, "", target, sizeof target - 1);
			int err = links > MAX_LINKS ? ELOOP : errno;
			close(fd);
			if (tl <= 0) {
				say(v, V_UNSAFE, links > MAX_LINKS ? "too-many-links" : "error", resolved, NULL, err);
				goto fail;
			}
			target[tl] = 0;
			resolved[rl] = 0;      /* the link's directory */
			int nl = snprintf(next, sizeof next, "%s/%s/%s", target[0] == '/' ? "" : resolved, target, p);
			close(dir);
			if (nl < 0 || (size_t)nl >= sizeof next || normalise(next, todo, sizeof todo))
				return say(v, V_UNSAFE, "error", resolved, NULL, ENAMETOOLONG);
			goto restart;
		}
		if (*p == 0) {
			close(dir);
			if (bad_file(uid, root_only, fd, resolved, &st, v)) {
				close(fd);
				return -1;
			}
			return fd;
		}
		if (!S_ISDIR(st.st_mode)) {
			say(v, V_MISSING, "missing", resolved, NULL, ENOTDIR);
			close(fd);
			goto fail;
		}
		if (bad_dir(uid, root_only, resolved, &st, v)) {
			close(fd);
			goto fail;
		}
		close(dir);
		dir = fd;
	}
fail:
	close(dir);
	return -1;
}

int check_program(uid_t uid, const char *path, int root_only, struct verdict *v, char resolved[PATH_MAX])
{
	int fd;

	memset(v, 0, sizeof *v);
	fd = walk(uid, path, root_only, v, resolved);
	if (fd >= 0)
		v->kind = V_OK;
	return fd;
}
