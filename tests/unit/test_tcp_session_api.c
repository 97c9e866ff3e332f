/* The session API without a real SMTP server: argument checks, states,
 * cancel (from a thread and from a signal handler) and rearm. */
#include "t.h"

#include <smtpc/smtpc.h>

#include "util/util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* A listener that accepts (through the backlog) and never says anything. */
static int silent_listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sl) < 0 || listen(fd, 8) < 0) return -1;
    getsockname(fd, (struct sockaddr *)&a, &sl);
    *port = ntohs(a.sin_port);
    return fd;
}

TEST(new_free_and_setters)
{
    smtpc_session *s = (smtpc_session *)&s, *sentinel = s;
    CHECK_INT(smtpc_session_new(NULL), SMTPC_EINVAL);
    CHECK(s == sentinel);
    CHECK_INT(smtpc_session_new(&s), 0);
    smtpc_session_free(NULL);
    CHECK_INT(smtpc_session_set_command_timeout_ms(s, -1), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_command_timeout_ms(s, 0), 0);
    CHECK_INT(smtpc_session_set_deadline_ms(s, 1000), 0);
    CHECK_INT(smtpc_session_set_ehlo_name(s, "bad\r\nname"), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_ehlo_name(s, "two words"), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_ehlo_name(s, ""), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_ehlo_name(s, "client.example.org"), 0);
    CHECK_INT(smtpc_session_set_ehlo_name(s, NULL), 0);
    CHECK_INT(smtpc_session_set_bind(s, "127.0.0.1\n", 0), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_reply_limits(s, 512, 4096), 0);
    CHECK(smtpc_session_reply(s) == NULL);
    CHECK(smtpc_session_errmsg(s) != NULL);
    CHECK(!smtpc_session_is_connected(s));
    CHECK_INT(smtpc_session_extensions(s), 0);
    CHECK(smtpc_session_ext_param(s, "SIZE") == NULL);
    smtpc_session_free(s);
}

TEST(commands_need_a_connection)
{
    smtpc_session *s;
    CHECK_INT(smtpc_session_new(&s), 0);
    CHECK_INT(smtpc_session_ehlo(s, NULL), SMTPC_ESTATE);
    CHECK_INT(smtpc_session_mail_from(s, "a@example.org", NULL), SMTPC_ESTATE);
    CHECK_INT(smtpc_session_data_mem(s, "x", 1), SMTPC_ESTATE);
    CHECK_INT(smtpc_session_quit(s), SMTPC_ESTATE);
    CHECK_STR(smtpc_session_errmsg(s), "QUIT: not connected");
    CHECK_INT(smtpc_session_connect(s, "bad\r\nhost", 25), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_connect(s, NULL, 25), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_rcpt_count(s), 0);
    CHECK_INT(smtpc_session_rcpt_status(s, 0), SMTPC_EINVAL);
    smtpc_session_free(s);
}

static _Atomic int64_t cancel_at_ms;

static void *cancel_later(void *arg)
{
    usleep(150 * 1000);
    cancel_at_ms = smtpc__now_ms();
    smtpc_session_cancel(arg);
    return NULL;
}

TEST(cancel_from_thread_then_rearm)
{
    uint16_t port;
    int lfd = silent_listener(&port);
    CHECK(lfd >= 0);
    smtpc_session *s;
    CHECK_INT(smtpc_session_new(&s), 0);
    pthread_t th;
    pthread_create(&th, NULL, cancel_later, s);
    int64_t t0 = smtpc__now_ms();
    CHECK_INT(smtpc_session_connect(s, "127.0.0.1", port), SMTPC_ECANCELED);
    int64_t done = smtpc__now_ms();
    pthread_join(th, NULL);
    CHECK(done - t0 >= 140); /* it really waited for the cancel */
    /* Latency from the cancel call to the return: the bound is 100 ms; the
     * slack is for scheduling on a loaded 2-core box under ASan. */
    CHECK(done - cancel_at_ms < 100 + 200);
    CHECK(!smtpc_session_is_connected(s));
    /* Sticky until rearmed. */
    CHECK_INT(smtpc_session_connect(s, "127.0.0.1", port), SMTPC_ECANCELED);
    smtpc_session_rearm(s);
    CHECK_INT(smtpc_session_set_greeting_timeout_ms(s, 100), 0);
    CHECK_INT(smtpc_session_connect(s, "127.0.0.1", port), SMTPC_ETIMEDOUT);
    CHECK_STR(smtpc_session_errmsg(s), "greeting timed out after 0.100 s");
    smtpc_session_free(s);
    close(lfd);
}

static smtpc_session *g_sig_session;
static void on_alarm(int sig)
{
    (void)sig;
    smtpc_session_cancel(g_sig_session); /* async-signal-safe */
}

TEST(cancel_from_signal_handler)
{
    uint16_t port;
    int lfd = silent_listener(&port);
    smtpc_session *s;
    CHECK_INT(smtpc_session_new(&s), 0);
    g_sig_session = s;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 100 * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
    int64_t t0 = smtpc__now_ms();
    CHECK_INT(smtpc_session_connect(s, "127.0.0.1", port), SMTPC_ECANCELED);
    CHECK(smtpc__now_ms() - t0 < 2000);
    signal(SIGALRM, SIG_DFL);
    smtpc_session_free(s);
    close(lfd);
}

/* A tiny SMTP peer on one accepted connection: greeting, EHLO with AUTH
 * PLAIN, 235 to AUTH, 354 to DATA then the body up to the dot, 221 to QUIT,
 * 250 to anything else. */
static void *chatty_peer(void *arg)
{
    int lfd = *(int *)arg;
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) return NULL;
    static const char greet[] = "220 peer ready\r\n";
    if (write(fd, greet, sizeof greet - 1) < 0) goto out;
    char line[1024];
    size_t n = 0;
    bool data = false;
    for (;;) {
        char c;
        if (read(fd, &c, 1) != 1) break;
        if (n < sizeof line - 1) line[n++] = c;
        if (c != '\n') continue;
        line[n] = 0;
        n = 0;
        const char *r;
        if (data) {
            if (strcmp(line, ".\r\n") != 0) continue;
            data = false;
            r = "250 2.0.0 queued\r\n";
        } else if (!strncmp(line, "EHLO", 4)) {
            r = "250-peer\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n";
        } else if (!strncmp(line, "AUTH", 4)) {
            r = "235 2.7.0 ok\r\n";
        } else if (!strncmp(line, "DATA", 4)) {
            data = true;
            r = "354 go\r\n";
        } else {
            r = !strncmp(line, "QUIT", 4) ? "221 bye\r\n" : "250 2.0.0 fine\r\n";
        }
        if (write(fd, r, strlen(r)) < 0 || !strncmp(line, "QUIT", 4)) break;
    }
out:
    close(fd);
    return NULL;
}

typedef struct {
    int sent, received;
    char last[64];
} trace_count;

static void count_trace(void *ud, smtpc_trace_dir dir, const char *line, size_t len)
{
    trace_count *t = ud;
    if (dir == SMTPC_TRACE_SENT) t->sent++;
    if (dir == SMTPC_TRACE_RECEIVED) t->received++;
    snprintf(t->last, sizeof t->last, "%.*s", (int)len, line);
}

/* A trace set on an open connection sees the next commands and replies;
 * cleared, it sees nothing more (the engine only formats lines for it
 * while it is set). */
TEST(trace_set_and_cleared_while_open)
{
    uint16_t port;
    int lfd = silent_listener(&port);
    CHECK(lfd >= 0);
    pthread_t th;
    CHECK_INT(pthread_create(&th, NULL, chatty_peer, &lfd), 0);
    smtpc_session *s;
    CHECK_INT(smtpc_session_new(&s), 0);
    CHECK_INT(smtpc_session_set_tls_mode(s, SMTPC_TLS_MODE_NONE), 0);
    CHECK_INT(smtpc_session_open(s, "127.0.0.1", port), 0);
    trace_count t;
    memset(&t, 0, sizeof t);
    CHECK_INT(smtpc_session_set_trace(s, count_trace, &t), 0);
    CHECK_INT(smtpc_session_noop(s), 0);
    CHECK_INT(t.sent, 1);
    CHECK_INT(t.received, 1);
    CHECK_STR(t.last, "250 2.0.0 fine");
    CHECK_INT(smtpc_session_set_trace(s, NULL, NULL), 0);
    CHECK_INT(smtpc_session_noop(s), 0);
    CHECK_INT(t.sent + t.received, 2);
    smtpc_session_free(s);
    pthread_join(th, NULL);
    close(lfd);
}

static const char *leak_needles[2];
static size_t leak_blocks, leak_hits;

static void scan_for_secret(const void *p, size_t n)
{
    leak_blocks++;
    for (int k = 0; k < 2; k++) {
        size_t l = strlen(leak_needles[k]);
        for (size_t i = 0; i + l <= n; i++)
            if (!memcmp((const uint8_t *)p + i, leak_needles[k], l)) {
                leak_hits++;
                break;
            }
    }
}

/* AUTH PLAIN then a 300 KB message through a session: no buffer block given
 * back holds the password or its base64 (scan of every smtpc__buf block
 * released, growth included; other allocations are not seen). */
TEST(auth_and_send_leave_no_password)
{
    static char pw[301], msg[300000];
    for (size_t i = 0; i < sizeof pw - 1; i++) pw[i] = "Zq7-pass-WORD"[i % 13];
    pw[sizeof pw - 1] = 0;
    uint8_t plain[320];
    size_t pl = 0;
    plain[pl++] = 0;
    plain[pl++] = 'u';
    plain[pl++] = 0;
    memcpy(plain + pl, pw, sizeof pw - 1);
    pl += sizeof pw - 1;
    static char b64[440];
    smtpc__b64_encode(b64, plain, pl);
    char b64_mid[41];
    memcpy(b64_mid, b64 + 100, 40); /* part of the AUTH line only */
    b64_mid[40] = 0;
    char pw_mid[41];
    memcpy(pw_mid, pw + 100, 40);
    pw_mid[40] = 0;
    leak_needles[0] = pw_mid;
    leak_needles[1] = b64_mid;
    size_t ml = (size_t)snprintf(msg, sizeof msg, "Subject: t\r\n\r\n");
    while (ml + 80 < sizeof msg) {
        memset(msg + ml, 'm', 76);
        memcpy(msg + ml + 76, "\r\n", 2);
        ml += 78;
    }
    uint16_t port;
    int lfd = silent_listener(&port);
    CHECK(lfd >= 0);
    pthread_t th;
    CHECK_INT(pthread_create(&th, NULL, chatty_peer, &lfd), 0);
    leak_blocks = leak_hits = 0;
    smtpc__buf_scan_hook = scan_for_secret;
    smtpc_session *s;
    CHECK_INT(smtpc_session_new(&s), 0);
    CHECK_INT(smtpc_session_set_tls_mode(s, SMTPC_TLS_MODE_NONE), 0);
    CHECK_INT(smtpc_session_set_allow_plaintext_auth(s, true), 0);
    CHECK_INT(smtpc_session_set_credentials(s, "u", pw), 0);
    CHECK_INT(smtpc_session_open(s, "127.0.0.1", port), 0);
    CHECK_INT(smtpc_session_auth(s), 0);
    const char *rcpts[] = {"b@example.org"};
    smtpc_envelope env;
    memset(&env, 0, sizeof env);
    env.from = "a@example.org";
    env.rcpts = rcpts;
    env.nrcpts = 1;
    CHECK_INT(smtpc_session_send_mem(s, &env, msg, ml), 0);
    smtpc_session_free(s);
    smtpc__buf_scan_hook = NULL;
    pthread_join(th, NULL);
    close(lfd);
    CHECK(leak_blocks >= 3);
    CHECK_INT(leak_hits, 0);
}

int main(void)
{
    RUN(new_free_and_setters);
    RUN(commands_need_a_connection);
    RUN(cancel_from_thread_then_rearm);
    RUN(cancel_from_signal_handler);
    RUN(trace_set_and_cleared_while_open);
    RUN(auth_and_send_leave_no_password);
    T_DONE();
}
