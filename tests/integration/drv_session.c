/* Test driver for the blocking session (tests/integration/test_session*.py).
 *
 *   drv_session HOST PORT [options]
 *
 * Runs the steps of --do (default connect,ehlo,mail,rcpt,data,quit) and stops
 * at the first failure. Prints, one per line (parseable, text escaped):
 *   step NAME rc=SMTPC_X ms=ELAPSED
 *   reply NAME CODE ENHANCED|TEXT
 *   err NAME MESSAGE                (when rc != 0)
 *   rcpt I STATUS CODE              (after "send", per recipient)
 *   canceled_after_ms N             (time from smtpc_session_cancel to the return)
 *   connected 0|1
 * Exit status: 0 when every step returned 0, else 1; 2 for usage errors.
 *
 * Options: --from A --to A (repeatable) --file PATH (the message; "" = empty)
 *   --do LIST  steps among connect,ehlo,helo,mail,rcpt,data,datacb,bdat,send,
 *              noop,rset,quit
 *   --ehlo NAME  --bind ADDR  --bdat (send uses BDAT)  --strict (send)
 *   --connect-timeout-ms N --greeting-timeout-ms N --command-timeout-ms N
 *   --data-timeout-ms N --deadline-ms N --max-line N --max-reply N
 *   --cancel-after-ms N  a second thread calls smtpc_session_cancel after N ms
 *   --cancel-before      cancel before the first step
 *   --keep-going         run the remaining steps after a failure
 *   --piece N            datacb hands the body over in N-byte pieces (default 7) */
#include <smtpc/smtpc.h>

#include "util/util.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_RCPTS 64

static smtpc_session *g_s;
static int64_t g_cancel_after = -1;
static _Atomic int64_t g_cancel_at_us = 0;

static void *cancel_thread(void *arg)
{
    (void)arg;
    struct timespec ts = {(time_t)(g_cancel_after / 1000), (long)(g_cancel_after % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    atomic_store(&g_cancel_at_us, smtpc__now_us());
    smtpc_session_cancel(g_s);
    return NULL;
}

static void print_escaped(const char *s)
{
    char buf[8192];
    smtpc__escape_into(buf, sizeof buf, s, strlen(s));
    fputs(buf, stdout);
}

static void print_reply(const char *name, const smtpc_reply *r)
{
    if (!r) return;
    printf("reply %s %d %s|", name, smtpc_reply_code(r), smtpc_reply_enhanced(r));
    print_escaped(smtpc_reply_text(r));
    putchar('\n');
}

typedef struct piece_src {
    const char *p;
    size_t left, piece;
} piece_src;

static ssize_t piece_read(void *ud, void *buf, size_t len)
{
    piece_src *m = ud;
    size_t n = m->left < len ? m->left : len;
    if (n > m->piece) n = m->piece;
    memcpy(buf, m->p, n);
    m->p += n;
    m->left -= n;
    return (ssize_t)n;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (n == cap) b = realloc(b, cap *= 2);
        size_t r = fread(b + n, 1, cap - n, f);
        if (r == 0) break;
        n += r;
    }
    fclose(f);
    *len = n;
    return b;
}

static int64_t num(const char *s)
{
    uint64_t v = 0;
    if (smtpc__parse_u64(s, strlen(s), &v) != 0) {
        fprintf(stderr, "bad number %s\n", s);
        exit(2);
    }
    return (int64_t)v;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: drv_session HOST PORT [options]\n");
        return 2;
    }
    /* Default SIGPIPE: a write that raised it would kill the driver. */
    signal(SIGPIPE, SIG_DFL);
    const char *host = argv[1];
    uint16_t port = (uint16_t)num(argv[2]);
    const char *from = "sender@example.org", *file = NULL, *ehlo = NULL, *bind = NULL;
    const char *rcpts[MAX_RCPTS];
    size_t nrcpts = 0, piece = 7;
    char steps[512] = "connect,ehlo,mail,rcpt,data,quit";
    bool bdat = false, strict = false, cancel_before = false, keep_going = false;
    smtpc_session *s;
    if (smtpc_session_new(&s) != 0) return 1;
    g_s = s;
    size_t max_line = 0, max_reply = 0;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && (i++, 1))
        if (OPT("--from")) from = v;
        else if (OPT("--to")) { if (nrcpts < MAX_RCPTS) rcpts[nrcpts++] = v; }
        else if (OPT("--file")) file = v;
        else if (OPT("--do")) smtpc__strlcpy(steps, v, sizeof steps);
        else if (OPT("--ehlo")) ehlo = v;
        else if (OPT("--bind")) bind = v;
        else if (OPT("--piece")) piece = (size_t)num(v);
        else if (strcmp(a, "--bdat") == 0) bdat = true;
        else if (strcmp(a, "--strict") == 0) strict = true;
        else if (strcmp(a, "--keep-going") == 0) keep_going = true;
        else if (strcmp(a, "--cancel-before") == 0) cancel_before = true;
        else if (OPT("--connect-timeout-ms")) smtpc_session_set_connect_timeout_ms(s, num(v));
        else if (OPT("--greeting-timeout-ms")) smtpc_session_set_greeting_timeout_ms(s, num(v));
        else if (OPT("--command-timeout-ms")) smtpc_session_set_command_timeout_ms(s, num(v));
        else if (OPT("--data-timeout-ms")) smtpc_session_set_data_timeout_ms(s, num(v));
        else if (OPT("--deadline-ms")) smtpc_session_set_deadline_ms(s, num(v));
        else if (OPT("--max-line")) max_line = (size_t)num(v);
        else if (OPT("--max-reply")) max_reply = (size_t)num(v);
        else if (OPT("--cancel-after-ms")) g_cancel_after = num(v);
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
#undef OPT
    }
    if (max_line || max_reply) smtpc_session_set_reply_limits(s, max_line, max_reply);
    if (ehlo) {
        int rc = smtpc_session_set_ehlo_name(s, ehlo);
        printf("step set_ehlo_name rc=%s ms=0\n", smtpc_err_name(rc));
        if (rc) {
            smtpc_session_free(s);
            return 1;
        }
    }
    if (bind) smtpc_session_set_bind(s, bind, 0);

    char *msg = NULL;
    size_t msglen = 0;
    if (file && *file && !(msg = read_file(file, &msglen))) {
        fprintf(stderr, "cannot read %s\n", file);
        return 2;
    }

    pthread_t th;
    bool have_thread = false;
    if (cancel_before) smtpc_session_cancel(s);
    if (g_cancel_after >= 0) have_thread = pthread_create(&th, NULL, cancel_thread, NULL) == 0;

    int status = 0;
    for (char *st = steps, *next; st && *st; st = next) {
        next = strchr(st, ',');
        if (next) *next++ = '\0';
        int64_t t0 = smtpc__now_us();
        int rc = 0;
        if (strcmp(st, "connect") == 0) rc = smtpc_session_connect(s, host, port);
        else if (strcmp(st, "ehlo") == 0) rc = smtpc_session_ehlo(s, NULL);
        else if (strcmp(st, "helo") == 0) rc = smtpc_session_helo(s, NULL);
        else if (strcmp(st, "mail") == 0) rc = smtpc_session_mail_from(s, from, NULL);
        else if (strcmp(st, "rcpt") == 0) {
            for (size_t i = 0; i < nrcpts && rc == 0; i++) {
                rc = smtpc_session_rcpt_to(s, rcpts[i], NULL);
                if (i + 1 < nrcpts) print_reply("rcpt", smtpc_session_reply(s));
            }
        } else if (strcmp(st, "data") == 0) rc = smtpc_session_data_mem(s, msg, msglen);
        else if (strcmp(st, "datacb") == 0) {
            piece_src p = {msg, msglen, piece};
            rc = smtpc_session_data_cb(s, piece_read, &p);
        } else if (strcmp(st, "bdat") == 0) rc = smtpc_session_bdat_mem(s, msg, msglen);
        else if (strcmp(st, "send") == 0) {
            smtpc_envelope env;
            memset(&env, 0, sizeof env);
            env.from = from;
            env.rcpts = rcpts;
            env.nrcpts = nrcpts;
            env.all_or_nothing = strict;
            env.use_bdat = bdat;
            piece_src p = {msg, msglen, piece};
            rc = smtpc_session_send(s, &env, piece_read, &p);
            for (size_t i = 0; i < smtpc_session_rcpt_count(s); i++)
                printf("rcpt %zu %s %d\n", i, smtpc_err_name(smtpc_session_rcpt_status(s, i)),
                       smtpc_reply_code(smtpc_session_rcpt_reply(s, i)));
        } else if (strcmp(st, "noop") == 0) rc = smtpc_session_noop(s);
        else if (strcmp(st, "rset") == 0) rc = smtpc_session_rset(s);
        else if (strcmp(st, "quit") == 0) rc = smtpc_session_quit(s);
        else {
            fprintf(stderr, "unknown step %s\n", st);
            return 2;
        }
        int64_t t1 = smtpc__now_us();
        printf("step %s rc=%s ms=%lld\n", st, smtpc_err_name(rc), (long long)((t1 - t0) / 1000));
        print_reply(st, smtpc_session_reply(s));
        if (strcmp(st, "ehlo") == 0) printf("ext %u\n", smtpc_session_extensions(s));
        if (rc == SMTPC_ECANCELED && atomic_load(&g_cancel_at_us))
            printf("canceled_after_us %lld\n", (long long)(t1 - atomic_load(&g_cancel_at_us)));
        if (rc) {
            printf("err %s ", st);
            print_escaped(smtpc_session_errmsg(s));
            putchar('\n');
            status = 1;
            if (!keep_going) break;
        }
    }
    printf("connected %d\n", smtpc_session_is_connected(s) ? 1 : 0);
    fflush(stdout);
    if (have_thread) pthread_join(th, NULL);
    smtpc_session_free(s);
    free(msg);
    return status;
}
