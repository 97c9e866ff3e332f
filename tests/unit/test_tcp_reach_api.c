/* The session's "reaching the server" setters: proxy (copied, redacted in
 * every message, the handshake under the connect timeout), family. */
#include "t.h"

#include <smtpc/smtpc.h>

#include "util/util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define PW "Pa55-never-shown"

/* Accepts (through the backlog) and never says anything. */
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

TEST(setters_validate)
{
    smtpc_session *s = NULL;
    CHECK_INT(smtpc_session_new(&s), 0);
    CHECK_INT(smtpc_session_set_family(s, SMTPC_FAMILY_IPV6), 0);
    CHECK_INT(smtpc_session_set_family(s, (smtpc_family)5), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_family(NULL, SMTPC_FAMILY_ANY), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_proxy_url(s, "gopher://u:" PW "@h"), SMTPC_EINVAL);
    CHECK(strstr(smtpc_session_errmsg(s), "unknown scheme") != NULL);
    CHECK(strstr(smtpc_session_errmsg(s), PW) == NULL);
    CHECK_INT(smtpc_session_set_proxy_url(s, "socks5h://u:" PW "@h/x"), SMTPC_EINVAL);
    CHECK(strstr(smtpc_session_errmsg(s), PW) == NULL);
    CHECK_INT(smtpc_session_set_proxy_url(s, NULL), 0);
    CHECK_INT(smtpc_session_set_proxy_url(s, ""), 0);
    CHECK_INT(smtpc_session_set_proxy(s, NULL), 0);
    CHECK_INT(smtpc_session_set_proxy(NULL, NULL), SMTPC_EINVAL);
    smtpc_session_free(s);
}

/* The proxy is copied: the caller's may be freed at once. A proxy that
 * never answers costs the connect timeout, not more, and the message names
 * it without the password. */
TEST(proxy_copied_and_bounded)
{
    uint16_t port = 0;
    int lfd = silent_listener(&port);
    CHECK(lfd >= 0);
    char url[128];
    snprintf(url, sizeof url, "socks5h://me:" PW "@127.0.0.1:%u", (unsigned)port);
    smtpc_proxy *p = NULL;
    CHECK_INT(smtpc_proxy_parse_url(&p, url, NULL, 0), 0);
    smtpc_session *s = NULL;
    CHECK_INT(smtpc_session_new(&s), 0);
    CHECK_INT(smtpc_session_set_proxy(s, p), 0);
    smtpc_proxy_free(p);
    CHECK_INT(smtpc_session_set_connect_timeout_ms(s, 300), 0);
    CHECK_INT(smtpc_session_set_tls_mode(s, SMTPC_TLS_MODE_NONE), 0);
    int64_t t0 = smtpc__now_ms();
    CHECK_INT(smtpc_session_connect(s, "mx.example", 25), SMTPC_ETIMEDOUT);
    int64_t el = smtpc__now_ms() - t0;
    CHECK(el >= 300 && el < 3000);
    const char *m = smtpc_session_errmsg(s);
    CHECK(strstr(m, PW) == NULL);
    CHECK(strstr(m, "connect to mx.example:25: timed out after") == m);
    CHECK(strstr(m, "socks5h://me:***@127.0.0.1:") != NULL);
    CHECK(strstr(m, "did not complete the handshake") != NULL);
    CHECK(!smtpc_session_is_connected(s));

    /* cleared: a direct connection (the TCP connect succeeds; the silent
     * listener then times the greeting out) */
    CHECK_INT(smtpc_session_set_proxy(s, NULL), 0);
    CHECK_INT(smtpc_session_set_greeting_timeout_ms(s, 200), 0);
    CHECK_INT(smtpc_session_connect(s, "127.0.0.1", port), SMTPC_ETIMEDOUT);
    CHECK(strstr(smtpc_session_errmsg(s), "greeting") != NULL);
    smtpc_session_free(s);
    close(lfd);
}

int main(void)
{
    RUN(setters_validate);
    RUN(proxy_copied_and_bounded);
    T_DONE();
}
