/* libFuzzer: one smtpc_bulk connection (opening, AUTH, pipelined messages
 * across transactions, retries, results) against a hostile server, without
 * sockets. The fuzz input is a few control bytes and then everything the
 * server says, handed to the connection in pieces through a transport of
 * this file; whatever the client writes is accepted (or, when asked, in
 * short writes). The run ends at the end of input (EOF or a timeout), then
 * the handle is freed: every message the source gave must have been
 * reported exactly once, and nothing may leak (ASan). */
#include "async/bulk_int.h"

/* The library in the fuzz build is not compiled with coverage, so the code
 * under test is compiled into this target (the archive's copies are then
 * never linked in). */
#include "engine/reply.c"
#include "engine/caps.c"
#include "engine/dotstuff.c"
#include "engine/engine.c"
#include "engine/opener.c"
#include "async/sched.c"
#include "async/conn.c"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fz {
    const uint8_t *data;
    size_t len, off, piece;
    bool short_writes, eof;
    unsigned nmsgs, given, results;
    unsigned char *reported;
} fz;

static fz F;

typedef struct fake {
    smtpc__transport t;
} fake;

static ssize_t fk_read(smtpc__transport *t, void *buf, size_t len, int *want)
{
    (void)t;
    if (F.off == F.len) {
        if (F.eof) return 0;
        *want = SMTPC__WANT_READ;
        return SMTPC_EAGAIN;
    }
    size_t n = F.len - F.off;
    if (n > F.piece) n = F.piece;
    if (n > len) n = len;
    memcpy(buf, F.data + F.off, n);
    F.off += n;
    return (ssize_t)n;
}

static ssize_t fk_write(smtpc__transport *t, const void *buf, size_t len, int *want)
{
    (void)t;
    (void)buf;
    (void)want;
    if (F.short_writes && len > 7) return 7;
    return (ssize_t)len;
}

static void fk_destroy(smtpc__transport *t)
{
    if (t->fd >= 0) close(t->fd);
    free(t);
}

static const smtpc__transport_ops fk_ops = {"fuzz", NULL, fk_read, fk_write, NULL, NULL, fk_destroy};

static const char *const RCPTS[] = {"a@example.org", "b@example.org", "c@example.org"};
static const char BODY[] = "Subject: x\r\n\r\n.line\r\nbare\rcr\nlf\r\n\xc3\xa9\r\n.";

static int next_msg(void *ud, smtpc_bulk_msg *m)
{
    (void)ud;
    if (F.given == F.nmsgs) return 0;
    memset(m, 0, sizeof *m);
    m->from = F.given % 3 == 2 ? "" : "s@example.org";
    m->rcpts = RCPTS;
    m->nrcpts = 1 + F.given % 3;
    m->data = BODY;
    m->len = F.given % 2 ? sizeof BODY - 1 : 0;
    m->userdata = (void *)(uintptr_t)F.given;
    F.given++;
    return 1;
}

static void result(void *ud, const smtpc_bulk_msg *m, const smtpc_bulk_result *r)
{
    (void)ud;
    uintptr_t i = (uintptr_t)m->userdata;
    if (i >= F.given || F.reported[i]) abort(); /* reported twice, or never given */
    if ((r->status == SMTPC_BULK_SENT) != (r->error == 0)) abort();
    F.reported[i] = 1;
    F.results++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint8_t c0 = data[0], c1 = data[1];
    unsigned char reported[8] = {0};
    memset(&F, 0, sizeof F);
    F.data = data + 2;
    F.len = size - 2;
    F.piece = 1 + (c0 & 0x3f);
    F.short_writes = c0 & 0x40;
    F.eof = !(c0 & 0x80);
    F.nmsgs = 1 + (c1 & 7);
    F.reported = reported;

    smtpc_bulk *b = NULL;
    if (smtpc_bulk_new(&b, "mx.example", 25)) return 0;
    smtpc_bulk_set_source(b, next_msg, NULL);
    smtpc_bulk_set_result_cb(b, result, NULL);
    smtpc_bulk_set_ehlo_name(b, "client.example");
    smtpc_bulk_set_max_attempts(b, 1 + ((c1 >> 3) & 1));
    if (c1 & 0x10) {
        smtpc_bulk_set_credentials(b, "user", "pass");
        smtpc_bulk_set_allow_plaintext_auth(b, (c1 & 0x20) != 0);
        if (c1 & 0x40) smtpc_bulk_set_auth_mechanisms(b, "LOGIN");
    }
    if (c1 & 0x80) smtpc_bulk_set_max_per_connection(b, 1);
    if (smtpc_bulk_set_tls(b, SMTPC_TLS_MODE_NONE, NULL, NULL, false)) goto out;
    /* started, but never resolved: no real connection is ever opened */
    b->port = smtpc__conn_opts_port(&b->o);
    b->mode = smtpc__conn_opts_effective_mode(&b->o, b->port);
    b->started = true;
    smtpc__bulk_now_update(b);

    fake *fk = calloc(1, sizeof *fk);
    if (!fk) goto out;
    fk->t.ops = &fk_ops;
    fk->t.fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fk->t.fd < 0) {
        free(fk);
        goto out;
    }
    smtpc__bulk_conn *c = smtpc__bulk_conn_adopt(b, &fk->t);
    for (int rounds = 0; c && b->nconns && rounds < 100000; rounds++) {
        size_t before = F.off;
        smtpc__bulk_conn_io(c, SMTPC_POLL_IN | SMTPC_POLL_OUT);
        if (b->nconns && !c->dead && F.off == F.len && before == F.off) {
            /* nothing more will come: the wait times out */
            smtpc__bulk_conn_timeout(c);
        }
        smtpc__bulk_after_action(b);
    }
out:
    smtpc_bulk_free(b);
    if (F.results != F.given) abort(); /* every message reported exactly once */
    return 0;
}
