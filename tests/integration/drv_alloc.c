/* Allocation-failure driver (tests/integration/test_alloc.py; docs/HACKING.md).
 *
 *   drv_alloc SCENARIO [options]
 *
 * Needs a build with -DSMTPC_ALLOC_FAIL=ON (otherwise prints "alloc
 * disabled" and exits 77). For N = 1, 1+STEP, ... runs SCENARIO with the
 * N-th allocation of the library made to fail, until a run completes
 * without an injected failure (or N passes --max). After each failed run
 * it checks, with injection off, that the handles left are still usable
 * (and frees them: LSan reports any leak at exit). Scenarios:
 *   mime     compose a message with attachments and write it with the pull
 *            writer, then load the written bytes back (smtpc_message_load)
 *   session  connect, STARTTLS, AUTH, send a composed message, QUIT
 *   client   smtpc_client_send through the pool, a batch of 3, and an
 *            outbox add + flush (--outbox DIR: must be empty)
 *   bulk     20 messages over 3 connections
 * Options: --host H --port P --tls none|starttls --ca-file PEM --user U
 *   --password P --mech LIST --to ADDR --step S --start N --max N --outbox DIR
 *   --persistent 1 (every allocation from the N-th on fails, not only the N-th)
 *   --trace N (only point N, with the stack of the failed allocation: ASan)
 * Prints one line per failed run that did not end in SMTPC_ENOMEM:
 *   other N rc=SMTPC_X
 * or that succeeded all the same ("tolerated N"),
 * and at the end:
 *   alloc scenario=S points=P last=L runs=R enomem=E deferred=D tolerated=T other=O
 * (points: allocations of the run without failure; last: the first N whose
 * run had no failure; deferred: the outbox kept the message for a later
 * flush (a transient failure, as documented); tolerated: runs that
 * succeeded although an allocation failed, e.g. a connection lost and
 * replaced). Exits
 * 1 when a check failed (line "FAIL N what"). */
#include <smtpc/smtpc.h>

#include "t.h"
#include "util/util.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef SMTPC_ALLOC_FAIL
#include "util/alloc_fail.h"

static const char *g_host = "127.0.0.1", *g_tls = "none", *g_ca, *g_user, *g_pass, *g_mech;
static const char *g_to = "rcpt@example.net", *g_outbox;
static uint16_t g_port;
static long g_fails;
static long g_cur;

#define FAIL(...)                                                                 \
    do {                                                                          \
        printf("FAIL %ld ", g_cur);                                               \
        printf(__VA_ARGS__);                                                      \
        printf("\n");                                                             \
        fflush(stdout);                                                           \
        g_fails++;                                                                \
    } while (0)

/* A scenario's outcome "deferred for a later attempt" (the outbox). */
#define DEFERRED 1

static void inject_off(void) { smtpc__alloc_fail_off(); }

/* ---- the message every scenario sends ---- */
static const char ATTACH[] = "attachment bytes\r\n\x01\x02\x03 binary \xff\xfe";

/* A streamed attachment (spooled to a temporary file by the first write). */
static size_t g_cb_off;
static ssize_t cb_read(void *ud, void *buf, size_t len)
{
    size_t *off = ud;
    static const char text[] = "streamed attachment line\r\n";
    if (*off >= 40) return 0;
    size_t n = sizeof text - 1 < len ? sizeof text - 1 : len;
    memcpy(buf, text, n);
    (*off)++;
    return (ssize_t)n;
}

static int build_message(smtpc_message **out)
{
    smtpc_attachment_opts bin = {.name = "data.bin", .content_type = "application/octet-stream"};
    smtpc_attachment_opts txt = {.name = "r\xc3\xa9sum\xc3\xa9.txt", .content_type = "text/plain; charset=utf-8"};
    smtpc_attachment_opts cbo = {.name = "stream.txt"};
    smtpc_message *m = NULL;
    g_cb_off = 0;
    int rc = smtpc_message_new(&m);
    if (rc) return rc;
    if ((rc = smtpc_message_set_from(m, "Sender Name <sender@example.org>")) ||
        (rc = smtpc_message_add_to(m, g_to)) ||
        (rc = smtpc_message_add_cc(m, "\"Cc, Person\" <cc@example.net>")) ||
        (rc = smtpc_message_set_subject(m, "Gr\xc3\xbc\xc3\x9f" "e with an encoded subject")) ||
        (rc = smtpc_message_set_date(m, 1700000000)) ||
        (rc = smtpc_message_set_message_id(m, "<alloc-test@example.org>")) ||
        (rc = smtpc_message_add_header(m, "X-Test", "allocation failures")) ||
        (rc = smtpc_message_set_text(m, "Hello,\nthis is the text part.\n.\nA dot line.\n", SIZE_MAX)) ||
        (rc = smtpc_message_set_html(m, "<p>Hello <b>world</b></p>\n", SIZE_MAX)) ||
        (rc = smtpc_message_add_attachment_mem(m, ATTACH, sizeof ATTACH - 1, &bin)) ||
        (rc = smtpc_message_add_inline_mem(m, "GIF89a....", 10, "logo@x", "image/gif")) ||
        (rc = smtpc_message_add_attachment_mem(m, "caf\xc3\xa9\n", 6, &txt)) ||
        (rc = smtpc_message_add_attachment_cb(m, cb_read, &g_cb_off, -1, &cbo))) {
        smtpc_message_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

/* Writes m completely into *out (malloc'd; the driver's own allocations are
 * never counted). */
static int write_message(smtpc_message *m, char **out, size_t *outlen)
{
    smtpc_message_writer *w = NULL;
    int rc = smtpc_message_writer_new(&w, m, 0);
    if (rc) return rc;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (cap - len < 1024) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t n = smtpc_message_writer_read(w, buf + len, cap - len);
        if (n < 0) {
            rc = (int)n;
            break;
        }
        if (n == 0) break;
        len += (size_t)n;
    }
    smtpc_message_writer_free(w);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *outlen = len;
    return 0;
}

/* ---- a: compose, write, load ---- */
static size_t g_ref_len;

static int scen_mime(void)
{
    smtpc_message *m = NULL, *l = NULL;
    char *bytes = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    int rc = build_message(&m);
    if (rc) return rc;
    rc = write_message(m, &bytes, &len);
    if (rc) {
        /* the message must still be writable, with the same bytes */
        inject_off();
        int rc2 = write_message(m, &again, &len2);
        if (rc2) FAIL("mime: rewrite after a failed write: %s", smtpc_strerror(rc2));
        else if (g_ref_len && len2 != g_ref_len) FAIL("mime: rewrite gave %zu bytes, not %zu", len2, g_ref_len);
        free(again);
        smtpc_message_free(m);
        return rc;
    }
    if (!g_ref_len) g_ref_len = len;
    else if (len != g_ref_len) FAIL("mime: %zu bytes written, not %zu", len, g_ref_len);
    t_memsrc src = {bytes, len, 0};
    char err[256] = "";
    rc = smtpc_message_load(&l, t_mem_read, &src, err, sizeof err);
    if (!rc) {
        char *lb = NULL;
        size_t ll = 0;
        rc = write_message(l, &lb, &ll);
        free(lb);
        smtpc_message_free(l);
    }
    free(bytes);
    smtpc_message_free(m);
    return rc;
}

/* ---- b: session with STARTTLS and AUTH ---- */
static smtpc_message *g_msg;

static int session_setup(smtpc_session *s)
{
    int rc = 0;
    if (!strcmp(g_tls, "starttls")) rc = smtpc_session_set_tls_mode(s, SMTPC_TLS_MODE_STARTTLS);
    if (!rc && g_ca) rc = smtpc_session_set_ca_file(s, g_ca);
    if (!rc && g_user) rc = smtpc_session_set_credentials(s, g_user, g_pass);
    if (!rc && g_mech) rc = smtpc_session_set_auth_mechanisms(s, g_mech);
    if (!rc) rc = smtpc_session_set_command_timeout_ms(s, 60000);
    return rc;
}

static int scen_session(void)
{
    smtpc_session *s = NULL;
    int rc = smtpc_session_new(&s);
    if (rc) return rc;
    rc = session_setup(s);
    if (!rc) rc = smtpc_session_open(s, g_host, g_port);
    if (!rc) rc = smtpc_session_send_message(s, g_msg, NULL);
    if (!rc) rc = smtpc_session_quit(s);
    if (rc) {
        /* the handle stays usable: configure again, open again, send */
        inject_off();
        if (smtpc_session_is_connected(s)) smtpc_session_disconnect(s);
        int rc2 = session_setup(s);
        if (!rc2) rc2 = smtpc_session_open(s, g_host, g_port);
        if (!rc2) rc2 = smtpc_session_send_message(s, g_msg, NULL);
        if (!rc2) rc2 = smtpc_session_quit(s);
        if (rc2) FAIL("session: not usable after %s: %s (%s)", smtpc_strerror(rc), smtpc_strerror(rc2),
                      smtpc_session_errmsg(s));
    }
    smtpc_session_free(s);
    return rc;
}

/* ---- c: client (pool), batch, outbox ---- */
static int client_setup(smtpc_client *c)
{
    int rc = smtpc_client_set_host(c, g_host, g_port);
    if (!rc) rc = smtpc_client_set_tls_mode(c, !strcmp(g_tls, "starttls") ? SMTPC_TLS_MODE_STARTTLS : SMTPC_TLS_MODE_NONE);
    if (!rc && g_ca) rc = smtpc_client_set_ca_file(c, g_ca);
    if (!rc && g_user) rc = smtpc_client_set_credentials(c, g_user, g_pass);
    if (!rc && g_mech) rc = smtpc_client_set_auth_mechanisms(c, g_mech);
    return rc;
}

static void batch_cb(void *ud, size_t index, int status, const smtpc_result *r)
{
    int *seen = ud;
    seen[index]++;
}

static int count_dir(const char *dir, const char *sub, const char *suffix)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    DIR *d = opendir(path);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        if (l >= sl && !strcmp(e->d_name + l - sl, suffix)) n++;
    }
    closedir(d);
    return n;
}

static int outbox_flush_clean(smtpc_client *c)
{
    smtpc_outbox *ob = NULL;
    char err[256] = "";
    int rc = smtpc_outbox_open(&ob, g_outbox, err, sizeof err);
    if (rc) return rc;
    rc = smtpc_outbox_retry(ob, NULL); /* what was deferred is due now */
    if (rc == SMTPC_ENOTFOUND) rc = 0;
    smtpc_outbox_stats st;
    memset(&st, 0, sizeof st);
    if (!rc) rc = smtpc_outbox_flush(ob, c, &st);
    if (!rc && st.deferred + st.failed) rc = SMTPC_ETEMPFAIL;
    smtpc_outbox_free(ob);
    return rc;
}

static int scen_client(void)
{
    smtpc_client *c = NULL;
    smtpc_result *r = NULL;
    int rc = smtpc_client_new(&c);
    if (rc) return rc;
    int seen[3] = {0, 0, 0};
    rc = client_setup(c);
    if (!rc) rc = smtpc_client_send(c, g_msg, &r);
    smtpc_result_free(r);
    r = NULL;
    if (!rc) {
        static const char body[] = "Subject: batch\r\n\r\nbatch body\r\n";
        const char *rcpts[] = {g_to};
        smtpc_batch_item items[3];
        memset(items, 0, sizeof items);
        items[0].message = g_msg;
        for (int i = 1; i < 3; i++) {
            items[i].from = "batch@example.org";
            items[i].rcpts = rcpts;
            items[i].nrcpts = 1;
            items[i].data = body;
            items[i].len = sizeof body - 1;
        }
        rc = smtpc_client_send_batch(c, items, 3, batch_cb, seen);
        if (rc != SMTPC_EBUSY && rc != SMTPC_EINVAL)
            for (int i = 0; i < 3; i++)
                if (seen[i] != 1) FAIL("batch: item %d reported %d times", i, seen[i]);
    }
    int queued_before = count_dir(g_outbox, "queue", ".msg");
    if (!rc) {
        smtpc_outbox *ob = NULL;
        char err[256] = "";
        rc = smtpc_outbox_open(&ob, g_outbox, err, sizeof err);
        if (!rc) {
            char id[128] = "";
            rc = smtpc_outbox_add(ob, g_msg, id, sizeof id);
            smtpc_outbox_stats st;
            memset(&st, 0, sizeof st);
            if (!rc) rc = smtpc_outbox_flush(ob, c, &st);
            if (!rc && st.failed) FAIL("outbox: a transient failure made permanent");
            if (!rc && st.deferred) rc = DEFERRED; /* kept for a later flush: as documented */
            smtpc_outbox_free(ob);
        }
    }
    /* no half-written file: tmp/ empty, every queued message whole */
    if (count_dir(g_outbox, "tmp", "")) FAIL("outbox: a file left in tmp/ after %s", smtpc_strerror(rc));
    if (count_dir(g_outbox, "failed", "")) FAIL("outbox: a message in failed/ after %s", smtpc_strerror(rc));
    if (count_dir(g_outbox, "queue", ".msg") > queued_before + 1) FAIL("outbox: more than one message queued");
    if (rc) {
        inject_off();
        int rc2 = client_setup(c);
        if (!rc2) rc2 = smtpc_client_send(c, g_msg, &r);
        if (rc2) FAIL("client: not usable after %s: %s (%s)", smtpc_strerror(rc), smtpc_strerror(rc2),
                      r ? smtpc_result_errmsg(r) : smtpc_client_errmsg(c));
        smtpc_result_free(r);
        /* what was queued goes out now, and nothing stays behind */
        rc2 = outbox_flush_clean(c);
        if (rc2 && rc2 != SMTPC_ENOMEM) FAIL("outbox: flush after %s: %s", smtpc_strerror(rc), smtpc_strerror(rc2));
        if (count_dir(g_outbox, "queue", "")) FAIL("outbox: queue/ not empty after a clean flush");
    }
    smtpc_client_free(c);
    return rc;
}

/* ---- d: bulk, 20 messages over 3 connections ---- */
typedef struct bulk_src {
    int next, reported[20];
    const char *rcpts[1];
} bulk_src;

static const char BULK_BODY[] = "Subject: bulk\r\n\r\nbulk body\r\n.leading dot\r\n";

static int bulk_next(void *ud, smtpc_bulk_msg *m)
{
    bulk_src *s = ud;
    if (s->next == 20) return 0;
    m->from = "bulk@example.org";
    m->rcpts = s->rcpts;
    m->nrcpts = 1;
    m->data = BULK_BODY;
    m->len = sizeof BULK_BODY - 1;
    m->userdata = &s->reported[s->next++];
    return 1;
}

static void bulk_result(void *ud, const smtpc_bulk_msg *m, const smtpc_bulk_result *r)
{
    (*(int *)m->userdata)++;
    int *failed = ud;
    if (r->status != SMTPC_BULK_SENT) {
        if (!g_cur) printf("bulk: reference message failed: %s %s\n", smtpc_err_name(r->error), r->errmsg);
        (*failed)++;
    }
}

static int scen_bulk(void)
{
    smtpc_bulk *b = NULL;
    bulk_src src;
    memset(&src, 0, sizeof src);
    src.rcpts[0] = g_to;
    int failed = 0;
    int rc = smtpc_bulk_new(&b, g_host, g_port);
    if (rc) return rc;
    if (!rc) rc = smtpc_bulk_set_source(b, bulk_next, &src);
    if (!rc) rc = smtpc_bulk_set_result_cb(b, bulk_result, &failed);
    if (!rc) rc = smtpc_bulk_set_connections(b, 3);
    if (!rc)
        rc = smtpc_bulk_set_tls(b, !strcmp(g_tls, "starttls") ? SMTPC_TLS_MODE_STARTTLS : SMTPC_TLS_MODE_NONE,
                                NULL, g_ca, false);
    if (!rc && g_user) rc = smtpc_bulk_set_credentials(b, g_user, g_pass);
    if (!rc && g_mech) rc = smtpc_bulk_set_auth_mechanisms(b, g_mech);
    if (!rc) rc = smtpc_bulk_run(b);
    for (int i = 0; i < src.next; i++)
        if (src.reported[i] != 1) FAIL("bulk: message %d reported %d times", i, src.reported[i]);
    if (!rc && failed) rc = SMTPC_ENOMEM; /* a message failed: by the injected failure */
    if (!rc && src.next != 20) FAIL("bulk: only %d of 20 messages taken", src.next);
    smtpc_bulk_free(b);
    return rc;
}

/* --trace: where the injected failure was (ASan's stack printer). */
void __sanitizer_print_stack_trace(void) __attribute__((weak));
static void trace_hook(long n)
{
    printf("injected failure %ld at:\n", n);
    fflush(stdout);
    if (__sanitizer_print_stack_trace) __sanitizer_print_stack_trace();
}

/* A run that never ends is a failure too (a lost wake-up after a failed
 * allocation): say which. */
static void on_alarm(int sig)
{
    char line[64];
    int n = snprintf(line, sizeof line, "FAIL %ld hang\n", g_cur);
    if (write(1, line, (size_t)n) < 0) _exit(4);
    _exit(3);
}

int main(int argc, char **argv)
{
    signal(SIGALRM, on_alarm);
    if (argc < 2) return 2;
    const char *scen = argv[1];
    long step = 1, max = 1000000, start = 1;
    int persistent = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        if (!strcmp(o, "--host")) g_host = v;
        else if (!strcmp(o, "--port")) g_port = (uint16_t)strtoul(v, NULL, 10);
        else if (!strcmp(o, "--tls")) g_tls = v;
        else if (!strcmp(o, "--ca-file")) g_ca = v;
        else if (!strcmp(o, "--user")) g_user = v;
        else if (!strcmp(o, "--password")) g_pass = v;
        else if (!strcmp(o, "--mech")) g_mech = v;
        else if (!strcmp(o, "--to")) g_to = v;
        else if (!strcmp(o, "--outbox")) g_outbox = v;
        else if (!strcmp(o, "--step")) step = strtol(v, NULL, 10);
        else if (!strcmp(o, "--max")) max = strtol(v, NULL, 10);
        else if (!strcmp(o, "--start")) start = strtol(v, NULL, 10);
        else if (!strcmp(o, "--persistent")) persistent = strtol(v, NULL, 10) != 0;
        else if (!strcmp(o, "--trace")) {
            start = max = strtol(v, NULL, 10);
            smtpc__alloc_fail_hook = trace_hook;
        }
        else {
            fprintf(stderr, "unknown option %s\n", o);
            return 2;
        }
    }
    int (*run)(void) = NULL;
    if (!strcmp(scen, "mime")) run = scen_mime;
    else if (!strcmp(scen, "session")) run = scen_session;
    else if (!strcmp(scen, "client")) run = scen_client;
    else if (!strcmp(scen, "bulk")) run = scen_bulk;
    if (!run || step < 1 || (!strcmp(scen, "client") && !g_outbox)) return 2;
    if (strcmp(scen, "mime")) {
        int rc = build_message(&g_msg);
        if (rc) {
            printf("FAIL 0 build: %s\n", smtpc_strerror(rc));
            return 1;
        }
    }
    /* the reference run: no failure; its allocation count is the number of points */
    smtpc__alloc_fail_at(0, 0);
    g_cur = 0;
    int rc = run();
    long points = smtpc__alloc_count();
    if (rc) {
        printf("FAIL 0 the run without failure: %s\n", smtpc_strerror(rc));
        return 1;
    }
    long runs = 0, enomem = 0, deferred = 0, tolerated = 0, other = 0, n;
    for (n = start; n <= max; n += step) {
        g_cur = n;
        smtpc__alloc_fail_at(n, persistent);
        alarm(120);
        rc = run();
        alarm(0);
        long failed = smtpc__alloc_failed();
        long count = smtpc__alloc_count();
        inject_off();
        if (!failed) {
            if (rc) FAIL("run %ld without an injected failure: %s (%ld allocations)", n, smtpc_strerror(rc), count);
            break;
        }
        runs++;
        if (rc == SMTPC_ENOMEM) enomem++;
        else if (rc == DEFERRED) deferred++;
        else if (rc == 0) {
            tolerated++;
            printf("tolerated %ld\n", n);
        }
        else {
            other++;
            printf("other %ld rc=%s\n", n, smtpc_err_name(rc));
        }
        fflush(stdout);
    }
    smtpc_message_free(g_msg);
    printf("alloc scenario=%s points=%ld last=%ld runs=%ld enomem=%ld deferred=%ld tolerated=%ld other=%ld\n",
           scen, points, n, runs, enomem, deferred, tolerated, other);
    return g_fails ? 1 : 0;
}
#else
int main(void)
{
    printf("alloc disabled\n");
    return 77;
}
#endif
