/* Runs in: the launcher (no global state; its only I/O is buf_put's
 * out-of-memory line to stderr before exit(1), see there).
 *
 * The request parser and the answer encoder. A frame is
 *   u32 BE length of the rest | u8 type | fields
 * and a field is
 *   u8 tag | u32 BE length | bytes.
 * Everything a client sends is checked here, strictly: numbers are ASCII
 * digits only (no sign, no leading zero, overflow-checked), strings hold no
 * NUL, each tag appears at most once (T_ENV may repeat, each name once),
 * control characters leave env values, unknown tags and
 * missing required tags are errors. native/fuzz/ drives this file alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher.h"

/* The envelope variables a client may send (docs/reference.md §4). HOME,
 * USER, LOGNAME, SHELL and PATH are the launcher's own, from the account. */
static const char *const ENV_NAMES[MAX_ENV] = {
	"SENDER", "RECIPIENT", "LOCAL", "EXTENSION", "DOMAIN", "CLIENT_ADDRESS",
	"CLIENT_HOSTNAME", "CLIENT_HELO", "CLIENT_PROTOCOL", "QUEUE_ID",
	"SASL_METHOD", "SASL_USERNAME",
};

#define BIT(t) (UINT64_C(1) << (t))
#define STAT_NEEDS (BIT(T_ID) | BIT(T_PROGRAM) | BIT(T_USER) | BIT(T_UID))
#define RUN_MAY (STAT_NEEDS | BIT(T_SPOOL) | BIT(T_ENV))

static int num(const uint8_t *v, uint32_t n, uint64_t max, uint64_t *out)
{
	uint64_t x = 0;

	if (n == 0 || n > 20 || (n > 1 && v[0] == '0'))
		return -1;
	for (uint32_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		unsigned d = v[i] - '0';
		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	if (x > max)
		return -1;
	*out = x;
	return 0;
}

int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	return num((const uint8_t *)s, (uint32_t)strnlen(s, 21), max, out);
}

/* Copies a string field into `dst` (cap bytes with its NUL); no NUL inside. */
static int str(const uint8_t *v, uint32_t n, char *dst, size_t cap)
{
	if (n >= cap || memchr(v, 0, n))
		return -1;
	memcpy(dst, v, n);
	dst[n] = 0;
	return 0;
}

/* A login name as Debian's adduser allows it, no path tricks. */
int valid_user_name(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > USER_NAME_MAX || s[0] == '-' || !strcmp(s, ".") || !strcmp(s, ".."))
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-' || c == '@'))
			return 0;
	}
	return 1;
}

/* Absolute and normalised: no empty, "." or ".." component, no trailing '/'. */
int valid_abs_path(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= PATH_MAX || s[0] != '/')
		return 0;
	if (n == 1)
		return 1;
	if (s[n - 1] == '/')
		return 0;
	for (const char *p = s; *p; ) {
		const char *c = p + 1, *e = strchr(c, '/');
		size_t len = e ? (size_t)(e - c) : strlen(c);
		if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
		p = c + len;
	}
	return 1;
}

static int valid_spool_name(const char *s)
{
	if (strlen(s) != SPOOL_NAME_LEN || strncmp(s, "msg-", 4))
		return 0;
	for (int i = 4; i < SPOOL_NAME_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* C0 controls and DEL, and C1 controls (U+0080..U+009F as UTF-8), removed
 * in place: the rule holds at this boundary, not only in Node. */
static void strip_controls(char *s)
{
	char *o = s;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			continue;
		if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			p++;
			continue;
		}
		*o++ = (char)*p;
	}
	*o = 0;
}

/* NAME=VALUE with NAME one of ENV_NAMES, each name at most once. */
static int env(const uint8_t *v, uint32_t n, struct request *rq, uint32_t *names_seen)
{
	char *dst;
	const char *eq;

	if (rq->nenv == MAX_ENV)
		return -1;
	dst = rq->env[rq->nenv];
	if (str(v, n, dst, MAX_ENV_LEN + 1) || !(eq = strchr(dst, '=')))
		return -1;
	strip_controls(dst + (eq - dst) + 1);
	for (int i = 0; i < MAX_ENV; i++) {
		size_t len = strlen(ENV_NAMES[i]);
		if ((size_t)(eq - dst) == len && !strncmp(dst, ENV_NAMES[i], len)) {
			if (*names_seen & (1u << i))
				return -1;
			*names_seen |= 1u << i;
			rq->nenv++;
			return 0;
		}
	}
	return -1;
}

static int field(int tag, const uint8_t *v, uint32_t n, struct request *rq, uint32_t *names_seen)
{
	char word[16];
	uint64_t x;

	switch (tag) {
	case T_ID:
		if (num(v, n, UINT64_MAX, &rq->id))
			return -1;
		rq->id_known = 1;
		return 0;
	case T_PROGRAM:
		if (str(v, n, word, sizeof word))
			return -1;
		rq->program = !strcmp(word, "filter") ? PROG_FILTER : !strcmp(word, "rcpt") ? PROG_RCPT : 0;
		return rq->program ? 0 : -1;
	case T_USER:
		return str(v, n, rq->user, sizeof rq->user) || !valid_user_name(rq->user) ? -1 : 0;
	case T_UID:
		if (num(v, n, UINT32_MAX - 1, &x) || x == 0)
			return -1;
		rq->uid = (uid_t)x;
		return 0;
	case T_SPOOL:
		rq->has_spool = 1;
		return str(v, n, rq->spool, sizeof rq->spool) || !valid_spool_name(rq->spool) ? -1 : 0;
	case T_ENV:
		return env(v, n, rq, names_seen);
	}
	return -1;
}

int parse_request(const uint8_t *body, size_t len, struct request *rq, char *why, size_t whylen)
{
	uint64_t seen = 0, needs, may;
	uint32_t names_seen = 0;
	size_t at = 1;

	memset(rq, 0, offsetof(struct request, env));
	rq->nenv = 0;
	if (len < 1 || (body[0] != MSG_RUN && body[0] != MSG_STAT)) {
		snprintf(why, whylen, "unknown request type");
		return -1;
	}
	rq->type = body[0];
	needs = STAT_NEEDS;
	may = rq->type == MSG_RUN ? RUN_MAY : STAT_NEEDS;
	while (at < len) {
		if (len - at < 5) {
			snprintf(why, whylen, "truncated field header");
			return -1;
		}
		int tag = body[at];
		uint32_t n = (uint32_t)body[at + 1] << 24 | (uint32_t)body[at + 2] << 16 |
			     (uint32_t)body[at + 3] << 8 | body[at + 4];
		at += 5;
		if (n > len - at) {
			snprintf(why, whylen, "field %d longer than the frame", tag);
			return -1;
		}
		if (tag >= 64 || !(may & BIT(tag)) || (tag != T_ENV && (seen & BIT(tag)))) {
			snprintf(why, whylen, "unexpected or repeated field %d", tag);
			return -1;
		}
		seen |= BIT(tag);
		if (field(tag, body + at, n, rq, &names_seen)) {
			snprintf(why, whylen, "bad value in field %d", tag);
			return -1;
		}
		at += n;
	}
	if ((seen & needs) != needs) {
		snprintf(why, whylen, "missing required field");
		return -1;
	}
	/* A message filter reads the spool; an RCPT-stage program has no message. */
	if (rq->type == MSG_RUN && (rq->program == PROG_FILTER) != (rq->has_spool != 0)) {
		snprintf(why, whylen, "spool must be given for filter and only for filter");
		return -1;
	}
	return 0;
}

/* ---- answers ------------------------------------------------------------- */

void buf_put(struct buf *b, const void *data, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p) {
			/* Out of memory in a 1 MB process: nothing sensible is left to do.
			 * The milter sees the launcher gone and tempfails. */
			fputs("per-user-milter-launcher: out of memory\n", stderr);
			exit(1);
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

void buf_frame(struct buf *b, int type)
{
	uint8_t head[5] = { 0, 0, 0, 0, (uint8_t)type };

	b->frame_start = b->len;
	buf_put(b, head, sizeof head);
}

void buf_bytes(struct buf *b, int tag, const void *data, size_t n)
{
	uint8_t head[5] = { (uint8_t)tag, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };

	buf_put(b, head, sizeof head);
	buf_put(b, data, n);
}

void buf_str(struct buf *b, int tag, const char *s)
{
	buf_bytes(b, tag, s, strlen(s));
}

void buf_num(struct buf *b, int tag, uint64_t v)
{
	char s[24];

	buf_bytes(b, tag, s, (size_t)snprintf(s, sizeof s, "%llu", (unsigned long long)v));
}

void buf_end(struct buf *b)
{
	size_t n = b->len - b->frame_start - 4;
	uint8_t *p = b->p + b->frame_start;

	p[0] = (uint8_t)(n >> 24);
	p[1] = (uint8_t)(n >> 16);
	p[2] = (uint8_t)(n >> 8);
	p[3] = (uint8_t)n;
}
