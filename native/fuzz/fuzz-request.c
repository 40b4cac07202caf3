/* Runs in: the fuzzer only (never installed).
 *
 * The request parser (proto.c) under random, truncated and mutated input.
 * LLVMFuzzerTestOneInput is the libFuzzer entry point (clang -fsanitize=fuzzer
 * can link it as it is); without clang, the main() below drives it: every
 * corpus file whole and truncated at every length, then `-runs=N` inputs
 * made by seeded mutation of the corpus (byte flips, inserts, deletes,
 * length-word and tag rewrites). Built with ASan and UBSan (Makefile), so a
 * crash, an overflow or undefined behaviour ends the run non-zero. The
 * parser has no I/O: nothing can run from here. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher.h"

static unsigned long accepted;

static const char *const ENVELOPE[] = { "SENDER=", "RECIPIENT=", "LOCAL=", "EXTENSION=", "DOMAIN=", "CLIENT_ADDRESS=",
	"CLIENT_HOSTNAME=", "CLIENT_HELO=", "CLIENT_PROTOCOL=", "QUEUE_ID=", "SASL_METHOD=", "SASL_USERNAME=" };

/* What a valid request promises the launcher. */
static void check(const struct request *rq)
{
	if ((rq->type != MSG_RUN && rq->type != MSG_STAT) || !valid_user_name(rq->user) || rq->uid == 0 ||
	    rq->nenv < 0 || rq->nenv > MAX_ENV || (rq->program != PROG_FILTER && rq->program != PROG_RCPT))
		abort();
	if (rq->type == MSG_RUN && (rq->program == PROG_FILTER) != (rq->has_spool != 0))
		abort();
	if (rq->has_spool && (strlen(rq->spool) != SPOOL_NAME_LEN || strncmp(rq->spool, "msg-", 4) ||
			      strspn(rq->spool + 4, "0123456789abcdef") != SPOOL_NAME_LEN - 4))
		abort();
	unsigned seen = 0;
	for (int i = 0; i < rq->nenv; i++) {
		int k = -1;
		for (int j = 0; j < MAX_ENV; j++)
			if (!strncmp(rq->env[i], ENVELOPE[j], strlen(ENVELOPE[j])))
				k = j;
		if (k < 0 || (seen & (1u << k)))   /* only envelope names (never HOME, PATH, ...), each once */
			abort();
		seen |= 1u << k;
		for (const unsigned char *p = (const unsigned char *)rq->env[i]; *p; p++)
			if (*p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))
				abort();   /* control characters were removed */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct request rq;
	char why[128];

	if (parse_request(data, size, &rq, why, sizeof why) == 0) {
		accepted++;
		check(&rq);
	}
	return 0;
}

#ifndef LIBFUZZER
static uint64_t state;

static uint64_t rnd(void)
{
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return state;
}

static uint8_t *corpus[256];
static size_t sizes[256], ncorpus;

static void load(const char *dir)
{
	char path[4096];
	struct dirent *d;
	DIR *dp = opendir(dir);

	while (dp && (d = readdir(dp)) && ncorpus < 256) {
		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, d->d_name);
		FILE *f = fopen(path, "rb");
		if (!f)
			continue;
		uint8_t *buf = malloc(MAX_FRAME + 16);
		size_t n = fread(buf, 1, MAX_FRAME + 16, f);
		fclose(f);
		/* Corpus files are whole frames: the parser sees the body after the length word. */
		if (n < 5) {
			free(buf);
			continue;
		}
		corpus[ncorpus] = buf;
		sizes[ncorpus++] = n;
	}
	if (dp)
		closedir(dp);
}

int main(int argc, char **argv)
{
	unsigned long runs = 100000, seed = 1;
	const char *dir = NULL;
	uint8_t *buf = malloc(1 << 16);

	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "-runs=", 6))
			runs = strtoul(argv[i] + 6, NULL, 10);
		else if (!strncmp(argv[i], "-seed=", 6))
			seed = strtoul(argv[i] + 6, NULL, 10);
		else
			dir = argv[i];
	}
	if (dir)
		load(dir);
	state = seed * 0x9e3779b97f4a7c15ull + 1;
	/* Every corpus frame whole, then cut at every length. */
	for (size_t c = 0; c < ncorpus; c++)
		for (size_t n = 0; n <= sizes[c] - 4; n++) {
			uint8_t *copy = malloc(n ? n : 1);   /* exact size: ASan sees any overread */
			memcpy(copy, corpus[c] + 4, n);
			LLVMFuzzerTestOneInput(copy, n);
			free(copy);
		}
	unsigned long valid_corpus = accepted;
	for (unsigned long r = 0; r < runs; r++) {
		size_t n;
		if (ncorpus && rnd() % 8) {
			size_t c = rnd() % ncorpus;
			n = sizes[c] - 4 < (1 << 16) ? sizes[c] - 4 : (1 << 16);
			memcpy(buf, corpus[c] + 4, n);
			for (int k = 1 + rnd() % 4; k > 0 && n > 0; k--) {
				size_t at = rnd() % n;
				switch (rnd() % 6) {
				case 0: buf[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
				case 1: buf[at] = (uint8_t)rnd(); break;
				case 2: n = at; break;                                   /* truncate */
				case 3: if (n < (1 << 16) - 1) { memmove(buf + at + 1, buf + at, n - at); buf[at] = (uint8_t)rnd(); n++; } break;
				case 4: memmove(buf + at, buf + at + 1, n - at - 1); n--; break;
				case 5: if (at + 4 < n) { uint32_t v = (uint32_t)rnd() % 70000; buf[at] = v >> 24; buf[at + 1] = v >> 16; buf[at + 2] = v >> 8; buf[at + 3] = v; } break;
				}
			}
		} else {
			n = rnd() % 512;
			for (size_t i = 0; i < n; i++)
				buf[i] = (uint8_t)(rnd() % 4 ? rnd() % 64 : rnd());
		}
		uint8_t *copy = malloc(n ? n : 1);
		memcpy(copy, buf, n);
		LLVMFuzzerTestOneInput(copy, n);
		free(copy);
	}
	printf("fuzz-request: %zu corpus frames (%lu prefixes accepted), %lu generated inputs, %lu accepted in all, no crash\n",
	       ncorpus, valid_corpus, runs, accepted);
	free(buf);
	return ncorpus > 0 && valid_corpus == 0 ? 1 : 0;
}
#endif
