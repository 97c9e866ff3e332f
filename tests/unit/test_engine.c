/* Engine behaviour that transcripts cannot show: the trace callback and its
 * redaction flag, what feed consumes around STARTTLS, reset, names. */
#include "engine/engine.h"
#include "util/util.h"

#include <stddef.h>
#include "t.h"

typedef struct {
    char log[4096];
    int secrets;
} trace_log;

static void on_trace(void *ud, smtpc__trace_dir dir, const char *line, size_t len, bool secret)
{
    trace_log *t = ud;
    size_t n = strlen(t->log);
    snprintf(t->log + n, sizeof t->log - n, "%c:%.*s|", dir == SMTPC__TRACE_CLIENT ? 'C' : 'S',
             secret ? 6 : (int)len, secret ? "SECRET" : line);
    if (secret) t->secrets++;
}

static int feed(smtpc__engine *e, const char *s, size_t *used)
{
    size_t u = 0;
    int rc = smtpc__engine_feed(e, (const uint8_t *)s, strlen(s), &u);
    if (used) *used = u;
    return rc;
}

static void drain(smtpc__engine *e)
{
    smtpc__event ev;
    while (smtpc__engine_next_event(e, &ev) == 1) {}
}

TEST(trace_redacts_auth)
{
    smtpc__engine *e = NULL;
    CHECK_INT(smtpc__engine_new(&e, NULL), 0);
    trace_log t = {"", 0};
    smtpc__engine_set_trace(e, on_trace, &t);
    CHECK_INT(smtpc__engine_expect_greeting(e), 0);
    CHECK_INT(feed(e, "220 hi\r\n", NULL), 0);
    CHECK_INT(smtpc__engine_ehlo(e, "c"), 0);
    CHECK_INT(feed(e, "250-mx\r\n250 ENHANCEDSTATUSCODES\r\n", NULL), 0);
    CHECK_INT(smtpc__engine_auth(e, "PLAIN", "AHVzZXIAcGFzcw=="), 0);
    CHECK_INT(feed(e, "535 5.7.8 no\r\n", NULL), 0);
    CHECK_INT(smtpc__engine_auth(e, "LOGIN", NULL), 0);
    CHECK_INT(feed(e, "334 VXNlcm5hbWU6\r\n", NULL), 0);
    CHECK_INT(smtpc__engine_auth_continue(e, "dXNlcg=="), 0);
    CHECK_STR(t.log, "S:220 hi|C:EHLO c|S:250-mx|S:250 ENHANCEDSTATUSCODES|C:SECRET|"
                     "S:535 5.7.8 no|C:AUTH LOGIN|S:334 VXNlcm5hbWU6|C:SECRET|");
    CHECK_INT(t.secrets, 2);
    CHECK(strstr(t.log, "cGFzcw") == NULL);
    drain(e);
    smtpc__engine_free(e);
}

TEST(starttls_stops_feed)
{
    smtpc__engine *e = NULL;
    CHECK_INT(smtpc__engine_new(&e, NULL), 0);
    CHECK_INT(smtpc__engine_expect_greeting(e), 0);
    CHECK_INT(feed(e, "220 hi\r\n", NULL), 0);
    drain(e);
    CHECK_INT(smtpc__engine_starttls(e), 0);
    size_t used = 0;
    /* the 220 alone: all consumed, TLS_READY */
    CHECK_INT(feed(e, "220 go\r\n", &used), 0);
    CHECK_INT(used, 8);
    smtpc__event ev;
    CHECK_INT(smtpc__engine_next_event(e, &ev), 1);
    CHECK_INT(ev.type, SMTPC__EV_TLS_READY);
    CHECK_INT(smtpc__engine_next_event(e, &ev), 0);
    CHECK(!smtpc__engine_tls_active(e));
    smtpc__engine_tls_started(e);
    CHECK(smtpc__engine_tls_active(e));
    CHECK_INT(smtpc__engine_ehlo(e, "c"), 0);
    CHECK_INT(feed(e, "250 mx\r\n", &used), 0);
    drain(e);
    smtpc__engine_free(e);

    /* with injected bytes in the same read: consumed stops after the 220 */
    CHECK_INT(smtpc__engine_new(&e, NULL), 0);
    CHECK_INT(smtpc__engine_expect_greeting(e), 0);
    CHECK_INT(feed(e, "220 hi\r\n", NULL), 0);
    drain(e);
    CHECK_INT(smtpc__engine_starttls(e), 0);
    CHECK_INT(feed(e, "220 go\r\n250 evil\r\n", &used), SMTPC_EPROTO);
    CHECK_INT(used, 8);
    CHECK(strstr(smtpc__engine_errmsg(e), "response injection") != NULL);
    CHECK_INT(smtpc__engine_next_event(e, &ev), 1);
    CHECK_INT(ev.type, SMTPC__EV_TLS_READY);
    /* the connection is unusable now */
    CHECK_INT(feed(e, "250 x\r\n", &used), SMTPC_EPROTO);
    CHECK_INT(smtpc__engine_noop(e), SMTPC_ESTATE);
    smtpc__engine_free(e);
}

TEST(reset_and_reuse)
{
    smtpc__engine *e = NULL;
    CHECK_INT(smtpc__engine_new(&e, NULL), 0);
    CHECK_INT(smtpc__engine_expect_greeting(e), 0);
    CHECK_INT(feed(e, "220 hi\r\n", NULL), 0);
    CHECK_INT(smtpc__engine_ehlo(e, "c"), 0);
    CHECK_INT(feed(e, "250-mx\r\n250 PIPELINING\r\n250-half", NULL), 0);
    CHECK(smtpc__engine_caps(e)->flags & SMTPC_EXT_PIPELINING);
    CHECK(smtpc__engine_last_reply(e) != NULL);
    CHECK_INT(smtpc__engine_quit(e), 0);
    CHECK(smtpc__engine_closing(e));
    smtpc__engine_reset(e);
    CHECK(!smtpc__engine_closing(e));
    CHECK(smtpc__engine_last_reply(e) == NULL);
    CHECK_INT(smtpc__engine_caps(e)->flags, 0);
    CHECK_INT(smtpc__engine_pending_replies(e), 0);
    const uint8_t *out;
    CHECK_INT(smtpc__engine_output(e, &out), 0);
    smtpc__event ev;
    CHECK_INT(smtpc__engine_next_event(e, &ev), 0);
    /* the half line from before is gone */
    CHECK_INT(smtpc__engine_expect_greeting(e), 0);
    CHECK_INT(feed(e, "220 again\r\n", NULL), 0);
    CHECK_INT(smtpc__engine_next_event(e, &ev), 1);
    CHECK_INT(ev.reply->code, 220);
    CHECK_STR(smtpc_reply_text(ev.reply), "again");
    CHECK_STR(smtpc_reply_text(smtpc__engine_last_reply(e)), "again");
    smtpc__engine_free(e);
    smtpc__engine_free(NULL);
}

TEST(output_partial_writes)
{
    smtpc__engine *e = NULL;
    CHECK_INT(smtpc__engine_new(&e, NULL), 0);
    CHECK_INT(smtpc__engine_noop(e), 0);
    CHECK_INT(smtpc__engine_rset(e), 0);
    const uint8_t *out;
    size_t n = smtpc__engine_output(e, &out);
    CHECK_MEM(out, n, "NOOP\r\nRSET\r\n", 12);
    smtpc__engine_output_advance(e, 3);
    n = smtpc__engine_output(e, &out);
    CHECK_MEM(out, n, "P\r\nRSET\r\n", 9);
    CHECK_INT(smtpc__engine_pending_replies(e), 2);
    smtpc__engine_free(e);
}

/* A refused body write leaves the output as it was, even when the buffer
 * was compacted on the way. */
TEST(body_write_failure_queues_nothing)
{
    smtpc__engine *e = NULL;
    CHECK_INT(smtpc__engine_new(&e, NULL), 0);
    CHECK_INT(smtpc__engine_expect_greeting(e), 0);
    CHECK_INT(feed(e, "220 hi\r\n", NULL), 0);
    CHECK_INT(smtpc__engine_data(e), 0);
    CHECK_INT(feed(e, "354 go\r\n", NULL), 0);
    drain(e);
    smtpc__engine_output_advance(e, 4); /* "DA" of "DATA\r\n" written... */
    /* short lines past the first 64 KiB slice, then one too long */
    static char body[70000];
    memset(body, 'a', sizeof body);
    for (size_t i = 100; i < 68000; i += 100) body[i] = '\n';
    CHECK_INT(smtpc__engine_body_write(e, body, sizeof body), SMTPC_ELIMIT);
    const uint8_t *out;
    size_t n = smtpc__engine_output(e, &out);
    CHECK_MEM(out, n, "\r\n", 2);
    /* the encoder state was restored too: a good write still works */
    CHECK_INT(smtpc__engine_body_write(e, ".x", 2), 0);
    CHECK_INT(smtpc__engine_body_end(e), 0);
    n = smtpc__engine_output(e, &out);
    CHECK_MEM(out, n, "\r\n..x\r\n.\r\n", 10);
    smtpc__engine_free(e);
}

TEST(names)
{
    CHECK_STR(smtpc__cmd_name(SMTPC__CMD_DATA_END), "DATA_END");
    CHECK_STR(smtpc__cmd_name(SMTPC__CMD_EHLO), "EHLO");
    CHECK_STR(smtpc__cmd_name((smtpc__cmd)99), "?");
    smtpc__engine *e = NULL;
    CHECK_INT(smtpc__engine_new(&e, NULL), 0);
    CHECK_STR(smtpc__engine_state_name(e), "IDLE");
    smtpc__engine_free(e);
}

/* Output so far as a string, consumed. */
static void take_out(smtpc__engine *e, char *buf, size_t cap)
{
    const uint8_t *p;
    size_t n = smtpc__engine_output(e, &p);
    snprintf(buf, cap, "%.*s", (int)n, (const char *)p);
    smtpc__engine_output_advance(e, n);
}

static void ready_pipelining(smtpc__engine *e)
{
    CHECK_INT(smtpc__engine_expect_greeting(e), 0);
    CHECK_INT(feed(e, "220 hi\r\n", NULL), 0);
    CHECK_INT(smtpc__engine_ehlo(e, "c"), 0);
    CHECK_INT(feed(e, "250-mx\r\n250 PIPELINING\r\n", NULL), 0);
    drain(e);
    char skip[64];
    take_out(e, skip, sizeof skip); /* the EHLO line */
}

/* Cross-message pipelining: the next transaction's MAIL/RCPT/DATA join the
 * previous final dot in one write; the previous EV_TXN_DONE comes first,
 * with its own reply; a 5xx to the dot fails only that message. */
TEST(chain_after_final_dot)
{
    smtpc__engine *e = NULL;
    CHECK_INT(smtpc__engine_new(&e, NULL), 0);
    ready_pipelining(e);
    char out[512];
    const char *r1[] = {"b@x"}, *r2[] = {"c@x", "d@x"};
    smtpc__txn_opts o;
    memset(&o, 0, sizeof o);
    o.from = "a@x";
    o.rcpts = r1;
    o.nrcpts = 1;
    CHECK_INT(smtpc__engine_txn_begin(e, &o), 0);
    take_out(e, out, sizeof out);
    CHECK_STR(out, "MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n");
    /* not chainable before the body ended */
    smtpc__txn_opts o2 = o;
    o2.rcpts = r2;
    o2.nrcpts = 2;
    CHECK_INT(smtpc__engine_txn_begin(e, &o2), SMTPC_ESTATE);
    CHECK_INT(smtpc__engine_txn_chain(e), SMTPC_ESTATE);
    CHECK_INT(feed(e, "250 ok\r\n250 ok\r\n354 go\r\n", NULL), 0);
    smtpc__event ev;
    CHECK_INT(smtpc__engine_next_event(e, &ev), 1);
    CHECK_INT(ev.type, SMTPC__EV_TXN_RCPT);
    CHECK_INT(smtpc__engine_next_event(e, &ev), 1);
    CHECK_INT(ev.type, SMTPC__EV_TXN_BODY);
    CHECK_INT(smtpc__engine_body_write(e, "one\r\n", 5), 0);
    CHECK_INT(smtpc__engine_body_end(e), 0);
    CHECK_INT(smtpc__engine_txn_begin(e, &o2), SMTPC_ESTATE); /* chain must be asked for */
    CHECK_INT(smtpc__engine_txn_chain(e), 0);
    CHECK_STR(smtpc__engine_state_name(e), "IDLE");
    CHECK_INT(smtpc__engine_txn_begin(e, &o2), 0);
    take_out(e, out, sizeof out);
    CHECK_STR(out, "one\r\n.\r\nMAIL FROM:<a@x>\r\nRCPT TO:<c@x>\r\nRCPT TO:<d@x>\r\nDATA\r\n");
    CHECK_INT(smtpc__engine_pending_replies(e), 5);
    /* the dot's reply (a refusal), then the second envelope, one read */
    CHECK_INT(feed(e, "554 5.7.1 no thanks\r\n250 ok\r\n250 ok\r\n550 no d\r\n354 go\r\n", NULL), 0);
    CHECK_INT(smtpc__engine_next_event(e, &ev), 1);
    CHECK_INT(ev.type, SMTPC__EV_TXN_DONE);
    CHECK_INT(ev.cmd, SMTPC__CMD_DATA_END);
    CHECK_INT(ev.status, SMTPC_EPERMFAIL);
    CHECK_INT(ev.reply->code, 554);
    CHECK_INT(smtpc__engine_next_event(e, &ev), 1);
    CHECK_INT(ev.type, SMTPC__EV_TXN_RCPT);
    CHECK_INT(ev.tag, 0);
    CHECK_INT(smtpc__engine_next_event(e, &ev), 1);
    CHECK_INT(ev.type, SMTPC__EV_TXN_RCPT);
    CHECK_INT(ev.tag, 1);
    CHECK_INT(ev.reply->code, 550);
    CHECK_INT(smtpc__engine_next_event(e, &ev), 1);
    CHECK_INT(ev.type, SMTPC__EV_TXN_BODY);
    CHECK_INT(smtpc__engine_body_write(e, ".two", 4), 0);
    CHECK_INT(smtpc__engine_body_end(e), 0);
    take_out(e, out, sizeof out);
    CHECK_STR(out, "..two\r\n.\r\n");
    CHECK_INT(feed(e, "250 2.0.0 queued as X\r\n", NULL), 0);
    CHECK_INT(smtpc__engine_next_event(e, &ev), 1);
    CHECK_INT(ev.type, SMTPC__EV_TXN_DONE);
    CHECK_INT(ev.status, 0);
    CHECK_INT(smtpc__engine_next_event(e, &ev), 0);
    CHECK_STR(smtpc__engine_state_name(e), "IDLE");
    smtpc__engine_free(e);
}

/* A 421 to the previous dot ends both: the previous message with the 421,
 * the chained one as not sent (temporary, cmd NONE), and the engine closes. */
TEST(chain_421_ends_both)
{
    smtpc__engine *e = NULL;
    CHECK_INT(smtpc__engine_new(&e, NULL), 0);
    ready_pipelining(e);
    const char *r1[] = {"b@x"};
    smtpc__txn_opts o;
    memset(&o, 0, sizeof o);
    o.from = "a@x";
    o.rcpts = r1;
    o.nrcpts = 1;
    CHECK_INT(smtpc__engine_txn_begin(e, &o), 0);
    CHECK_INT(feed(e, "250 ok\r\n250 ok\r\n354 go\r\n", NULL), 0);
    drain(e);
    CHECK_INT(smtpc__engine_body_end(e), 0);
    CHECK_INT(smtpc__engine_txn_chain(e), 0);
    CHECK_INT(smtpc__engine_txn_begin(e, &o), 0);
    CHECK_INT(feed(e, "421 4.3.2 bye\r\n", NULL), 0);
    smtpc__event ev;
    CHECK_INT(smtpc__engine_next_event(e, &ev), 1);
    CHECK_INT(ev.type, SMTPC__EV_TXN_DONE);
    CHECK_INT(ev.cmd, SMTPC__CMD_DATA_END);
    CHECK_INT(ev.status, SMTPC_ETEMPFAIL);
    CHECK_INT(smtpc__engine_next_event(e, &ev), 1);
    CHECK_INT(ev.type, SMTPC__EV_TXN_DONE);
    CHECK_INT(ev.cmd, SMTPC__CMD_NONE);
    CHECK_INT(ev.status, SMTPC_ETEMPFAIL);
    CHECK_INT(smtpc__engine_next_event(e, &ev), 0);
    CHECK_INT(smtpc__engine_pending_replies(e), 0);
    CHECK_INT(smtpc__engine_txn_begin(e, &o), SMTPC_ESTATE);
    smtpc__engine_free(e);
}

/* No chaining without PIPELINING (each command waits for its reply). */
TEST(chain_needs_pipelining)
{
    smtpc__engine *e = NULL;
    CHECK_INT(smtpc__engine_new(&e, NULL), 0);
    CHECK_INT(smtpc__engine_expect_greeting(e), 0);
    CHECK_INT(feed(e, "220 hi\r\n", NULL), 0);
    CHECK_INT(smtpc__engine_ehlo(e, "c"), 0);
    CHECK_INT(feed(e, "250 mx\r\n", NULL), 0);
    drain(e);
    const char *r1[] = {"b@x"};
    smtpc__txn_opts o;
    memset(&o, 0, sizeof o);
    o.from = "a@x";
    o.rcpts = r1;
    o.nrcpts = 1;
    CHECK_INT(smtpc__engine_txn_begin(e, &o), 0);
    CHECK_INT(feed(e, "250 ok\r\n", NULL), 0);
    CHECK_INT(feed(e, "250 ok\r\n", NULL), 0);
    CHECK_INT(feed(e, "354 go\r\n", NULL), 0);
    drain(e);
    CHECK_INT(smtpc__engine_body_end(e), 0);
    CHECK_INT(smtpc__engine_txn_chain(e), SMTPC_ESTATE);
    CHECK_STR(smtpc__engine_state_name(e), "WAIT_END");
    smtpc__engine_free(e);
}

/* ---- credentials in the output buffer -------------------------------------- */
static const char *scan_needle;
static size_t scan_blocks, scan_hits, secure_blocks, secure_nonzero;

static void on_scan(const void *p, size_t n)
{
    size_t k = strlen(scan_needle);
    scan_blocks++;
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp((const uint8_t *)p + i, scan_needle, k) == 0) {
            scan_hits++;
            break;
        }
}

static void on_secure_release(const void *p, size_t n)
{
    secure_blocks++;
    for (size_t i = 0; i < n; i++) secure_nonzero += ((const uint8_t *)p)[i] != 0;
}

/* An AUTH line still queued when a body grows the output: the block growth
 * gives up is wiped, the line is wiped once written, and after that the
 * buffer is an ordinary one again (its growth wipes nothing). No block any
 * buffer gives back holds the credential. */
TEST(auth_line_leaves_no_copy)
{
    static char cred[6001], body[200000];
    for (size_t i = 0; i < sizeof cred - 1; i++) cred[i] = "c2VjcmV0UGFzc3dvcmQ"[i % 19];
    cred[sizeof cred - 1] = '\0';
    memset(body, 'b', sizeof body);
    for (size_t i = 70; i < sizeof body; i += 72) body[i] = '\n';
    scan_needle = "c2VjcmV0UGFzc3dvcmQc2VjcmV0"; /* only the credential has this */
    scan_blocks = scan_hits = secure_blocks = secure_nonzero = 0;
    smtpc__buf_scan_hook = on_scan;
    smtpc__buf_release_hook = on_secure_release;

    smtpc__engine *e = NULL;
    CHECK_INT(smtpc__engine_new(&e, NULL), 0);
    ready_pipelining(e);
    CHECK_INT(smtpc__engine_auth(e, "PLAIN", cred), 0);
    size_t auth_len = 11 + strlen(cred) + 2; /* "AUTH PLAIN " cred CRLF */
    const uint8_t *out;
    CHECK_INT(smtpc__engine_output(e, &out), auth_len);
    smtpc__engine_output_advance(e, 100); /* a short write: most of it still queued */
    CHECK_INT(feed(e, "235 2.7.0 ok\r\n", NULL), 0);
    CHECK_INT(smtpc__engine_mail(e, "a@example.org", NULL), 0);
    CHECK_INT(smtpc__engine_rcpt(e, "b@example.org", NULL, 1), 0);
    CHECK_INT(smtpc__engine_data(e), 0);
    CHECK_INT(feed(e, "250 ok\r\n250 ok\r\n354 go\r\n", NULL), 0);
    drain(e);
    size_t before = secure_blocks;
    CHECK_INT(smtpc__engine_body_write(e, body, sizeof body), 0); /* the output grows */
    CHECK(secure_blocks > before);
    CHECK_INT(secure_nonzero, 0);
    /* write the rest of the AUTH line: the bytes written are wiped at once */
    size_t n = smtpc__engine_output(e, &out);
    CHECK(n > sizeof body);
    smtpc__engine_output_advance(e, auth_len - 100);
    CHECK(smtpc__engine_output(e, &out) == n - (auth_len - 100));
    size_t nz = 0;
    for (size_t i = 0; i < auth_len - 100; i++) nz += out[-(ptrdiff_t)(auth_len - 100) + (ptrdiff_t)i] != 0;
    CHECK_INT(nz, 0);
    /* past the credential the output is an ordinary buffer again */
    before = secure_blocks;
    for (int i = 0; i < 4; i++) CHECK_INT(smtpc__engine_body_write(e, body, sizeof body), 0);
    CHECK_INT(secure_blocks, before);
    CHECK_INT(smtpc__engine_body_end(e), 0);
    while ((n = smtpc__engine_output(e, &out)) > 0) smtpc__engine_output_advance(e, n < 4096 ? n : 4096);
    CHECK_INT(feed(e, "250 queued\r\n", NULL), 0);
    drain(e);
    smtpc__engine_free(e);
    smtpc__buf_scan_hook = NULL;
    smtpc__buf_release_hook = NULL;
    CHECK(scan_blocks >= 2);
    CHECK_INT(scan_hits, 0);
    CHECK_INT(secure_nonzero, 0);
}

/* A reset while an AUTH line is queued wipes it. */
TEST(reset_wipes_queued_auth)
{
    static char cred[3001];
    for (size_t i = 0; i < sizeof cred - 1; i++) cred[i] = "c2VjcmV0UGFzc3dvcmQ"[i % 19];
    cred[sizeof cred - 1] = '\0';
    smtpc__engine *e = NULL;
    CHECK_INT(smtpc__engine_new(&e, NULL), 0);
    ready_pipelining(e);
    CHECK_INT(smtpc__engine_auth(e, "PLAIN", cred), 0);
    const uint8_t *out;
    size_t n = smtpc__engine_output(e, &out);
    smtpc__engine_output_advance(e, 10);
    smtpc__engine_reset(e);
    size_t nz = 0; /* out is still valid: reset frees nothing */
    for (size_t i = 0; i < n; i++) nz += out[i] != 0;
    CHECK_INT(nz, 0);
    smtpc__engine_free(e);
}

/* The engine reuses reply blocks and its lines buffer from one message to
 * the next: each event still carries its own reply's text (short, long,
 * multi-line, growing and shrinking), a reply someone keeps (a reference)
 * is never reused, and a refused transaction leaves nothing behind for the
 * next one. */
TEST(reuse_across_messages)
{
    smtpc__engine *e = NULL;
    CHECK_INT(smtpc__engine_new(&e, NULL), 0);
    ready_pipelining(e);
    char out[2048], in[2048], want[600];
    const char *bad[] = {"b@x", "c\r@x"}, *one[] = {"b@x"};
    smtpc__txn_opts o;
    memset(&o, 0, sizeof o);
    o.from = "a@x";
    smtpc__reply *kept = NULL;
    bool chained = false;
    for (int i = 0; i < 40 && !t_cur_failed; i++) {
        o.rcpts = bad;
        o.nrcpts = 2;
        CHECK_INT(smtpc__engine_txn_begin(e, &o), SMTPC_EINVAL);
        o.rcpts = one;
        o.nrcpts = 1;
        o.from = i % 2 ? "" : "a@x";
        CHECK_INT(smtpc__engine_txn_begin(e, &o), 0);
        take_out(e, out, sizeof out);
        snprintf(want, sizeof want, "MAIL FROM:<%s>\r\nRCPT TO:<b@x>\r\nDATA\r\n", o.from);
        CHECK_STR(out, want);
        /* the previous dot's reply, then this envelope's: lengths vary */
        size_t xl = (size_t)(i * 37 % 500);
        char xs[501];
        memset(xs, 'x', xl);
        xs[xl] = 0;
        snprintf(in, sizeof in, "%s250 mail %d %s\r\n250-rcpt %d\r\n250 two\r\n354 go\r\n",
                 chained ? "250 queued\r\n" : "", i, xs, i);
        CHECK_INT(feed(e, in, NULL), 0);
        smtpc__event ev;
        if (chained) {
            CHECK_INT(smtpc__engine_next_event(e, &ev), 1);
            CHECK_INT(ev.type, SMTPC__EV_TXN_DONE);
            CHECK_STR(ev.reply->text, "queued");
        }
        CHECK_INT(smtpc__engine_next_event(e, &ev), 1);
        CHECK_INT(ev.type, SMTPC__EV_TXN_RCPT);
        snprintf(want, sizeof want, "rcpt %d\ntwo", i);
        CHECK_STR(ev.reply->text, want);
        CHECK_INT((int)ev.reply->nlines, 2);
        if (i == 3) kept = smtpc__reply_ref((smtpc__reply *)ev.reply);
        CHECK_STR(smtpc__engine_last_reply(e)->text, "go");
        CHECK_INT(smtpc__engine_next_event(e, &ev), 1);
        CHECK_INT(ev.type, SMTPC__EV_TXN_BODY);
        CHECK_INT(smtpc__engine_body_write(e, "hi\r\n", 4), 0);
        CHECK_INT(smtpc__engine_body_end(e), 0);
        CHECK_INT(smtpc__engine_txn_chain(e), 0);
        take_out(e, out, sizeof out);
        CHECK_STR(out, "hi\r\n.\r\n");
        chained = true;
    }
    CHECK(kept != NULL);
    if (kept) {
        CHECK_STR(kept->text, "rcpt 3\ntwo");
        CHECK_STR(kept->lines[0], "rcpt 3");
    }
    smtpc__reply_free(kept);
    smtpc__engine_trim(e); /* gives the spares and the lines back; still usable */
    CHECK_INT(feed(e, "250 queued\r\n", NULL), 0);
    smtpc__event ev;
    CHECK_INT(smtpc__engine_next_event(e, &ev), 1);
    CHECK_INT(ev.type, SMTPC__EV_TXN_DONE);
    CHECK_INT(ev.status, 0);
    o.from = "z@x";
    CHECK_INT(smtpc__engine_txn_begin(e, &o), 0);
    take_out(e, out, sizeof out);
    CHECK_STR(out, "MAIL FROM:<z@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n");
    smtpc__engine_free(e);
}

int main(void)
{
    RUN(trace_redacts_auth);
    RUN(starttls_stops_feed);
    RUN(reset_and_reuse);
    RUN(output_partial_writes);
    RUN(body_write_failure_queues_nothing);
    RUN(names);
    RUN(chain_after_final_dot);
    RUN(chain_421_ends_both);
    RUN(chain_needs_pipelining);
    RUN(auth_line_leaves_no_copy);
    RUN(reset_wipes_queued_auth);
    RUN(reuse_across_messages);
    T_DONE();
}
