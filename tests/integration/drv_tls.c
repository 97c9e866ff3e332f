/* Test driver for the TLS layer: connects over TCP, wraps TLS, prints what
 * was negotiated, optionally sends a line and reads to the end.
 *
 *   drv_tls HOST PORT [--name N | --no-name] [--ca FILE] [--capath DIR]
 *           [--insecure] [--pin PINS] [--cert FILE] [--key FILE]
 *           [--min 1.x] [--max 1.x] [--strict] [--send TEXT] [--read]
 *           [--reconnect] [--chunky] [--bulk N] [--starttls]
 *
 * Output: "key: value" lines; on failure "error: SMTPC_X: message" and
 * exit status 1. --reconnect: after the first connection (read to the end),
 * connects again offering the session, and prints "2.resumed: yes|no".
 * --chunky puts a test layer between TCP and TLS that moves 1 to 7 bytes
 * per call and answers every other call with SMTPC_EAGAIN: TLS must work
 * over any inner layer and survive short reads and writes.
 * --bulk N sends N bytes of 'x' and a newline (before --send).
 * --starttls reads a greeting line in clear, sends STARTTLS, expects a 220
 * line, and only then puts TLS on the same connection. */
#include "net/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the --chunky test layer ---------------------------------------------- */
typedef struct chunky {
    smtpc__transport base;
    unsigned calls;
} chunky;

static ssize_t chunky_read(smtpc__transport *t, void *buf, size_t len, int *want)
{
    chunky *c = (chunky *)t;
    if (++c->calls % 2) {
        *want = SMTPC__WANT_READ;
        return SMTPC_EAGAIN;
    }
    size_t max = 1 + c->calls % 7;
    return smtpc__transport_read(t->inner, buf, len < max ? len : max, want);
}

static ssize_t chunky_write(smtpc__transport *t, const void *buf, size_t len, int *want)
{
    chunky *c = (chunky *)t;
    if (++c->calls % 2) {
        *want = SMTPC__WANT_WRITE;
        return SMTPC_EAGAIN;
    }
    size_t max = 1 + c->calls % 5;
    return smtpc__transport_write(t->inner, buf, len < max ? len : max, want);
}

static void chunky_destroy(smtpc__transport *t) { free(t); }

static const smtpc__transport_ops chunky_ops = {
    .name = "chunky", .read = chunky_read, .write = chunky_write, .destroy = chunky_destroy,
};

static int64_t deadline(void) { return smtpc__now_ms() + 20000; }

static int fail(int rc, const char *msg)
{
    printf("error: %s: %s\n", smtpc_err_name(rc), msg);
    return 1;
}

static int parse_version(const char *s)
{
    if (strcmp(s, "1.0") == 0) return SMTPC_TLS_1_0;
    if (strcmp(s, "1.1") == 0) return SMTPC_TLS_1_1;
    if (strcmp(s, "1.2") == 0) return SMTPC_TLS_1_2;
    if (strcmp(s, "1.3") == 0) return SMTPC_TLS_1_3;
    return 99;
}

typedef struct opts {
    const char *host, *name, *send;
    uint16_t port;
    bool read, reconnect, chunky, starttls;
    size_t bulk;
} opts;

/* Reads one line in clear, byte by byte (nothing past the CRLF may be
 * consumed: it belongs to TLS). */
static int read_line(smtpc__transport *t, char *line, size_t size)
{
    size_t n = 0;
    int64_t dl = deadline();
    while (n + 1 < size) {
        int want = 0;
        ssize_t r = smtpc__transport_read(t, line + n, 1, &want);
        if (r == SMTPC_EAGAIN) {
            int rc = smtpc__wait_fd(t->fd, want, dl, -1);
            if (rc) return rc;
            continue;
        }
        if (r <= 0) return r == 0 ? SMTPC_ECLOSED : (int)r;
        if (line[n++] == '\n') break;
    }
    line[n] = '\0';
    return 0;
}

static int starttls(smtpc__transport *t)
{
    char line[512];
    int rc = read_line(t, line, sizeof line);
    if (rc) return rc;
    printf("clear.greeting: %.*s\n", (int)strcspn(line, "\r\n"), line);
    const char *cmd = "STARTTLS\r\n";
    size_t off = 0;
    while (off < strlen(cmd)) {
        int want = 0;
        ssize_t n = smtpc__transport_write(t, cmd + off, strlen(cmd) - off, &want);
        if (n == SMTPC_EAGAIN) {
            if ((rc = smtpc__wait_fd(t->fd, want, deadline(), -1))) return rc;
            continue;
        }
        if (n < 0) return (int)n;
        off += (size_t)n;
    }
    if ((rc = read_line(t, line, sizeof line))) return rc;
    printf("clear.starttls: %.*s\n", (int)strcspn(line, "\r\n"), line);
    return strncmp(line, "220", 3) == 0 ? 0 : SMTPC_EUNSUPPORTED;
}

static int one(const opts *o, smtpc__tls_ctx *ctx, smtpc__tls_session *resume,
               smtpc__tls_session **keep, const char *prefix)
{
    smtpc__errmsg err = {{0}};
    smtpc__transport *tcp = NULL, *t = NULL;
    smtpc__tcp_opts to = {.family = 0, .deadline_ms = deadline(), .cancel_fd = -1};
    int rc = smtpc__tcp_connect(&tcp, o->host, o->port, &to, &err);
    if (rc) return fail(rc, err.text);
    if (o->starttls && (rc = starttls(tcp)) != 0) {
        smtpc__transport_free(tcp);
        return fail(rc, "STARTTLS in clear failed");
    }
    if (o->chunky) {
        chunky *c = calloc(1, sizeof *c);
        if (!c) return fail(SMTPC_ENOMEM, "chunky");
        c->base.ops = &chunky_ops;
        c->base.inner = tcp;
        c->base.fd = tcp->fd;
        tcp = &c->base;
    }
    rc = smtpc__tls_wrap(&t, tcp, ctx, o->name, resume, &err);
    if (rc) {
        smtpc__transport_free(tcp);
        return fail(rc, err.text);
    }
    int64_t dl = deadline();
    int want = 0;
    while ((rc = smtpc__transport_handshake(t, &want)) == SMTPC_EAGAIN)
        if ((rc = smtpc__wait_fd(t->fd, want, dl, -1)) != 0) break;
    if (rc) {
        fail(rc, t->err.text);
        smtpc__transport_free(t);
        return 1;
    }
    const smtpc_tls_info *i = smtpc__tls_info(t);
    printf("%shandshake: ok\n", prefix);
    printf("%sversion: %s\n", prefix, i->version);
    printf("%scipher: %s\n", prefix, i->cipher);
    printf("%ssubject: %s\n", prefix, i->subject);
    printf("%sissuer: %s\n", prefix, i->issuer);
    printf("%snot_after: %s\n", prefix, i->not_after);
    printf("%sverified: %s\n", prefix, i->verified ? "yes" : "no");
    printf("%sverify: %s\n", prefix, i->verify_message);
    printf("%spin: %s\n", prefix, i->pin_sha256);
    printf("%spinned: %s\n", prefix, i->pin_checked ? "yes" : "no");
    printf("%sresumed: %s\n", prefix, i->resumed ? "yes" : "no");
    fflush(stdout);
    int status = 0;
    char *payload = NULL;
    if (o->bulk || o->send) {
        size_t sl = o->send ? strlen(o->send) : 0;
        payload = malloc(o->bulk + 1 + sl + 1);
        if (!payload) return fail(SMTPC_ENOMEM, "payload");
        memset(payload, 'x', o->bulk);
        size_t pl = o->bulk;
        if (o->bulk) payload[pl++] = '\n';
        if (sl) memcpy(payload + pl, o->send, sl);
        payload[pl + sl] = '\0';
    }
    if (payload) {
        size_t len = strlen(payload), off = 0;
        while (off < len) {
            ssize_t n = smtpc__transport_write(t, payload + off, len - off, &want);
            if (n == SMTPC_EAGAIN) {
                if ((rc = smtpc__wait_fd(t->fd, want, dl, -1)) != 0) break;
                continue;
            }
            if (n < 0) {
                rc = (int)n;
                break;
            }
            off += (size_t)n;
        }
        if (rc) status = fail(rc, t->err.text);
        free(payload);
    }
    if (!status && o->read) {
        smtpc__buf data;
        smtpc__buf_init(&data, 1 << 20);
        for (;;) {
            char buf[4096];
            ssize_t n = smtpc__transport_read(t, buf, sizeof buf, &want);
            if (n == SMTPC_EAGAIN) {
                if ((rc = smtpc__wait_fd(t->fd, want, dl, -1)) != 0) {
                    printf("%send: wait %s\n", prefix, smtpc_err_name(rc));
                    status = 1;
                    break;
                }
                continue;
            }
            if (n == 0) {
                printf("%send: close_notify\n", prefix);
                break;
            }
            if (n < 0) {
                printf("%send: %s: %s\n", prefix, smtpc_err_name((int)n), t->err.text);
                status = 1;
                break;
            }
            smtpc__buf_append(&data, buf, (size_t)n);
        }
        char shown[8192];
        smtpc__escape_into(shown, sizeof shown, (const char *)smtpc__buf_ptr(&data), smtpc__buf_size(&data));
        printf("%sdata: %s\n", prefix, shown);
        smtpc__buf_free(&data);
    }
    if (keep) *keep = smtpc__tls_get_session(t);
    int sw = 0;
    for (int k = 0; k < 100 && smtpc__transport_shutdown(t, &sw) == SMTPC_EAGAIN; k++)
        if (smtpc__wait_fd(t->fd, sw, smtpc__now_ms() + 1000, -1)) break;
    smtpc__transport_free(t);
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: drv_tls HOST PORT [options]\n");
        return 64;
    }
    opts o = {.host = argv[1], .name = argv[1]};
    uint64_t port = 0;
    if (smtpc__parse_u64(argv[2], strlen(argv[2]), &port) || port == 0 || port > 65535) return 64;
    o.port = (uint16_t)port;
    smtpc__tls_config cfg = {0};
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--name") && v) o.name = argv[++i];
        else if (!strcmp(a, "--no-name")) o.name = NULL;
        else if (!strcmp(a, "--ca") && v) cfg.ca_file = argv[++i];
        else if (!strcmp(a, "--capath") && v) cfg.ca_path = argv[++i];
        else if (!strcmp(a, "--insecure")) cfg.insecure = true;
        else if (!strcmp(a, "--pin") && v) cfg.pins = argv[++i];
        else if (!strcmp(a, "--cert") && v) cfg.cert_file = argv[++i];
        else if (!strcmp(a, "--key") && v) cfg.key_file = argv[++i];
        else if (!strcmp(a, "--min") && v) cfg.min_version = parse_version(argv[++i]);
        else if (!strcmp(a, "--max") && v) cfg.max_version = parse_version(argv[++i]);
        else if (!strcmp(a, "--strict")) cfg.version_policy = SMTPC_TLS_VERSION_STRICT;
        else if (!strcmp(a, "--send") && v) o.send = argv[++i];
        else if (!strcmp(a, "--read")) o.read = true;
        else if (!strcmp(a, "--reconnect")) o.reconnect = true;
        else if (!strcmp(a, "--chunky")) o.chunky = true;
        else if (!strcmp(a, "--starttls")) o.starttls = true;
        else if (!strcmp(a, "--bulk") && v) o.bulk = (size_t)strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "drv_tls: bad option %s\n", a);
            return 64;
        }
    }
    smtpc__errmsg err = {{0}};
    smtpc__tls_ctx *ctx = NULL;
    int rc = smtpc__tls_ctx_new(&ctx, &cfg, &err);
    if (rc) return fail(rc, err.text);
    int minv, maxv;
    smtpc__tls_ctx_versions(ctx, &minv, &maxv);
    printf("range: %s-%s\n", smtpc_tls_version_name(minv), smtpc_tls_version_name(maxv));
    smtpc__tls_session *sess = NULL;
    int status = one(&o, ctx, NULL, o.reconnect ? &sess : NULL, "");
    if (!status && o.reconnect) {
        printf("session: %s\n", sess ? "yes" : "no");
        status = one(&o, ctx, sess, NULL, "2.");
    }
    smtpc__tls_session_free(sess);
    smtpc__tls_ctx_free(ctx);
    return status;
}
