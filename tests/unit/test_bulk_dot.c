/* smtpc_bulk: a message is UNKNOWN only when its final dot was written.
 * The connection hands the end of a body and its dot to the engine while
 * earlier body bytes still wait for the socket; a connection lost then
 * never carried the dot (the server cannot have taken the message), so the
 * message is retried or failed, never reported as maybe delivered. One
 * connection over a transport of this file, without sockets. */
#include "t.h"

#include "async/bulk_int.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BODY_LEN (300u << 10)

static struct {
    const char *script[4]; /* server replies, the next one after the client wrote marker[i] */
    const char *marker[4];
    size_t step, roff;
    char wrote[4096]; /* the commands the client wrote (not the body) */
    size_t nwrote;
    bool in_body, dead, dot_written;
    size_t body_written, body_cap; /* body octets the socket takes before it blocks */
    int results, status, error;
    char *body;
} F;

static ssize_t fk_read(smtpc__transport *t, void *buf, size_t len, int *want)
{
    (void)t;
    if (F.dead || F.dot_written) {
        smtpc__err(&t->err, SMTPC_ENETWORK, "connection reset by peer");
        return SMTPC_ENETWORK;
    }
    const char *r = F.step < 4 ? F.script[F.step] : NULL;
    if (r && (!F.marker[F.step] || strstr(F.wrote, F.marker[F.step]))) {
        size_t n = strlen(r) - F.roff;
        if (n > len) n = len;
        memcpy(buf, r + F.roff, n);
        F.roff += n;
        if (F.roff == strlen(r)) {
            F.step++;
            F.roff = 0;
            if (strstr(r, "354")) F.in_body = true;
        }
        return (ssize_t)n;
    }
    *want = SMTPC__WANT_READ;
    return SMTPC_EAGAIN;
}

static ssize_t fk_write(smtpc__transport *t, const void *buf, size_t len, int *want)
{
    (void)t;
    if (F.dead) return SMTPC_ENETWORK;
    if (!F.in_body) {
        size_t n = len < sizeof F.wrote - 1 - F.nwrote ? len : sizeof F.wrote - 1 - F.nwrote;
        memcpy(F.wrote + F.nwrote, buf, n);
        F.nwrote += n;
        F.wrote[F.nwrote] = '\0';
        return (ssize_t)len;
    }
    /* the server stopped reading: the socket fills, then the peer resets */
    size_t room = F.body_cap - F.body_written;
    if (room == 0) {
        F.dead = true;
        *want = SMTPC__WANT_WRITE;
        return SMTPC_EAGAIN;
    }
    size_t n = len < room ? len : room;
    F.body_written += n;
    if (n == len && n >= 5 && !memcmp((const char *)buf + n - 5, "\r\n.\r\n", 5)) F.dot_written = true;
    return (ssize_t)n;
}

static void fk_destroy(smtpc__transport *t)
{
    if (t->fd >= 0) close(t->fd);
    free(t);
}

static const smtpc__transport_ops fk_ops = {"test", NULL, fk_read, fk_write, NULL, NULL, fk_destroy};

static const char *const RCPT[] = {"a@example.org"};

static int next_msg(void *ud, smtpc_bulk_msg *m)
{
    int *given = ud;
    if (*given) return 0;
    (*given)++;
    memset(m, 0, sizeof *m);
    m->from = "s@example.org";
    m->rcpts = RCPT;
    m->nrcpts = 1;
    m->data = F.body;
    m->len = BODY_LEN;
    return 1;
}

static void result(void *ud, const smtpc_bulk_msg *m, const smtpc_bulk_result *r)
{
    (void)ud;
    (void)m;
    F.results++;
    F.status = r->status;
    F.error = r->error;
}

/* One message of BODY_LEN octets; the socket takes cap octets of the body,
 * then the connection is reset. */
static void run(size_t cap)
{
    char *body = F.body;
    memset(&F, 0, sizeof F);
    F.body = body;
    F.body_cap = cap;
    F.script[0] = "220 mx\r\n";
    F.script[1] = "250-mx\r\n250 PIPELINING\r\n";
    F.marker[1] = "EHLO";
    F.script[2] = "250 ok\r\n250 ok\r\n354 go\r\n";
    F.marker[2] = "DATA\r\n";
    int given = 0;
    smtpc_bulk *b = NULL;
    CHECK_INT(smtpc_bulk_new(&b, "mx.example", 25), 0);
    smtpc_bulk_set_source(b, next_msg, &given);
    smtpc_bulk_set_result_cb(b, result, NULL);
    smtpc_bulk_set_ehlo_name(b, "client.example");
    smtpc_bulk_set_max_attempts(b, 1);
    CHECK_INT(smtpc_bulk_set_tls(b, SMTPC_TLS_MODE_NONE, NULL, NULL, false), 0);
    /* started, never resolved: no real connection is opened */
    b->port = smtpc__conn_opts_port(&b->o);
    b->mode = smtpc__conn_opts_effective_mode(&b->o, b->port);
    b->started = true;
    smtpc__bulk_now_update(b);
    smtpc__transport *t = calloc(1, sizeof *t);
    CHECK(t != NULL);
    t->ops = &fk_ops;
    t->fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    smtpc__bulk_conn *c = smtpc__bulk_conn_adopt(b, t);
    CHECK(c != NULL);
    for (int i = 0; i < 1000 && b->nconns && F.results == 0; i++) {
        smtpc__bulk_conn_io(c, SMTPC_POLL_IN | SMTPC_POLL_OUT);
        smtpc__bulk_after_action(b);
    }
    smtpc_bulk_free(b);
    CHECK_INT(F.results, 1);
}

TEST(lost_with_the_dot_unwritten_is_not_unknown)
{
    /* the socket takes all but the last 100 KiB: the dot is queued, unwritten */
    run(BODY_LEN - (100u << 10));
    CHECK(F.in_body && F.dead && !F.dot_written);
    CHECK_INT(F.status, SMTPC_BULK_FAILED);
    CHECK_INT(F.error, SMTPC_ENETWORK);
    /* blocked early in the body: the dot not even queued */
    run(1000);
    CHECK_INT(F.status, SMTPC_BULK_FAILED);
}

TEST(lost_after_the_dot_was_written_is_unknown)
{
    /* everything written (the socket takes it all), then the reset */
    run(BODY_LEN + 100);
    CHECK(F.dot_written);
    CHECK_INT(F.status, SMTPC_BULK_UNKNOWN);
    CHECK_INT(F.error, SMTPC_EUNKNOWN);
}

int main(void)
{
    F.body = malloc(BODY_LEN);
    CHECK(F.body != NULL);
    for (size_t i = 0; i < BODY_LEN; i++) F.body[i] = (i % 72 == 70) ? '\r' : (i % 72 == 71) ? '\n' : 'x';
    RUN(lost_with_the_dot_unwritten_is_not_unknown);
    RUN(lost_after_the_dot_was_written_is_unknown);
    free(F.body);
    T_DONE();
}
