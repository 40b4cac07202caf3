/*
 * null-milter: the protocol-overhead floor for the benchmark.
 *
 * A libmilter milter that registers a callback for every step, so the MTA
 * sends every command and waits for every reply (the same conversation
 * per-user-milter has), and answers "continue" to each one and "accept" at
 * end of message. It does no work of its own: whatever it costs is the price
 * of speaking the milter protocol through libmilter's threads.
 *
 * Build:  gcc -O2 -o null-milter null-milter.c -lmilter -pthread
 * Run:    null-milter inet:PORT@127.0.0.1   (or unix:/abs/path.sock)
 * Stops on SIGTERM/SIGINT (libmilter handles them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libmilter/mfapi.h>

static sfsistat on_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{ (void)ctx; (void)host; (void)addr; return SMFIS_CONTINUE; }
static sfsistat on_helo(SMFICTX *ctx, char *helo)
{ (void)ctx; (void)helo; return SMFIS_CONTINUE; }
static sfsistat on_mail(SMFICTX *ctx, char **argv)
{ (void)ctx; (void)argv; return SMFIS_CONTINUE; }
static sfsistat on_rcpt(SMFICTX *ctx, char **argv)
{ (void)ctx; (void)argv; return SMFIS_CONTINUE; }
static sfsistat on_data(SMFICTX *ctx)
{ (void)ctx; return SMFIS_CONTINUE; }
static sfsistat on_header(SMFICTX *ctx, char *name, char *value)
{ (void)ctx; (void)name; (void)value; return SMFIS_CONTINUE; }
static sfsistat on_eoh(SMFICTX *ctx)
{ (void)ctx; return SMFIS_CONTINUE; }
static sfsistat on_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{ (void)ctx; (void)chunk; (void)len; return SMFIS_CONTINUE; }
static sfsistat on_eom(SMFICTX *ctx)
{ (void)ctx; return SMFIS_ACCEPT; }
static sfsistat on_abort(SMFICTX *ctx)
{ (void)ctx; return SMFIS_CONTINUE; }
static sfsistat on_close(SMFICTX *ctx)
{ (void)ctx; return SMFIS_CONTINUE; }
static sfsistat on_unknown(SMFICTX *ctx, const char *cmd)
{ (void)ctx; (void)cmd; return SMFIS_CONTINUE; }

static struct smfiDesc desc = {
    "bench-null-milter", /* filter name */
    SMFI_VERSION,        /* version code */
    0,                   /* flags: we modify nothing */
    on_connect,
    on_helo,
    on_mail,
    on_rcpt,
    on_header,
    on_eoh,
    on_body,
    on_eom,
    on_abort,
    on_close,
    on_unknown,
    on_data,
    NULL                 /* negotiate: let libmilter ask for every step we have a callback for */
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s inet:PORT@HOST|unix:/path\n", argv[0]);
        return 2;
    }
    const char *spec = argv[1];
    if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "local:", 6) == 0) {
        const char *path = strchr(spec, ':') + 1;
        unlink(path); /* a stale socket from an earlier run */
    }
    if (smfi_setconn((char *)spec) == MI_FAILURE) {
        fprintf(stderr, "smfi_setconn(%s) failed\n", spec);
        return 1;
    }
    if (smfi_register(desc) == MI_FAILURE) {
        fprintf(stderr, "smfi_register failed\n");
        return 1;
    }
    /* a large backlog, like a busy real milter would use */
    smfi_setbacklog(128);
    /* make a unix socket usable by Postfix's smtpd (user postfix) */
    umask(0);
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
