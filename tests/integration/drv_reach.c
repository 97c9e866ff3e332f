/* drv_reach: one message through the session API with the "reaching the
 * server" options (proxy, family, bind, TLS mode), for test_reach*.py.
 *
 *   drv_reach HOST PORT [--proxy URL] [--family 4|6] [--bind ADDR [--bind-port N]]
 *             [--tls none|starttls|implicit] [--ca FILE] [--user U] (password: $DRV_PASSWORD)
 *             [--connect-timeout-ms N] [--to ADDR] [--dual-localhost]
 *
 * Prints "OPEN_MS: n", "SECURITY: mode", "AUTH: mech", "OK <code>" or
 * "ERROR <SMTPC_NAME>: <message>" (exit 1).
 *
 * --dual-localhost makes "localhost" resolve to ::1 then 127.0.0.1 (as a
 * stock /etc/hosts does) for this process only: getaddrinfo/freeaddrinfo
 * are interposed below (the library is linked statically, so its calls land
 * here). Only the name "localhost" is affected; the rest goes to libc. */
#define _GNU_SOURCE
#include <smtpc/smtpc.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static int dual_localhost;
static char fake_tag[] = "drv_reach-fake";

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
typedef void (*fai_fn)(struct addrinfo *);

static void *next_sym(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}

typedef struct fake_ai {
    struct addrinfo ai;
    struct sockaddr_storage ss;
} fake_ai;

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    gai_fn real;
    void *p = next_sym("getaddrinfo");
    memcpy(&real, &p, sizeof real);
    if (!dual_localhost || !node || strcmp(node, "localhost") != 0 || !service)
        return real(node, service, hints, res);
    int fam = hints ? hints->ai_family : AF_UNSPEC;
    int port = atoi(service);
    struct addrinfo *head = NULL, **tail = &head;
    for (int k = 0; k < 2; k++) {
        int f = k == 0 ? AF_INET6 : AF_INET;
        if (fam != AF_UNSPEC && fam != f) continue;
        fake_ai *a = calloc(1, sizeof *a);
        if (!a) return EAI_MEMORY;
        a->ai.ai_family = f;
        a->ai.ai_socktype = SOCK_STREAM;
        a->ai.ai_protocol = IPPROTO_TCP;
        a->ai.ai_canonname = fake_tag;
        a->ai.ai_addr = (struct sockaddr *)&a->ss;
        if (f == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
            s6->sin6_family = AF_INET6;
            s6->sin6_addr = in6addr_loopback;
            s6->sin6_port = htons((uint16_t)port);
            a->ai.ai_addrlen = sizeof *s6;
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
            s4->sin_family = AF_INET;
            s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            s4->sin_port = htons((uint16_t)port);
            a->ai.ai_addrlen = sizeof *s4;
        }
        *tail = &a->ai;
        tail = &a->ai.ai_next;
    }
    if (!head) return EAI_ADDRFAMILY;
    *res = head;
    return 0;
}

void freeaddrinfo(struct addrinfo *ai)
{
    if (ai && ai->ai_canonname == fake_tag) {
        while (ai) {
            struct addrinfo *n = ai->ai_next;
            free(ai); /* the fake_ai starts with its addrinfo */
            ai = n;
        }
        return;
    }
    fai_fn real;
    void *p = next_sym("freeaddrinfo");
    memcpy(&real, &p, sizeof real);
    real(ai);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(smtpc_session *s, int rc)
{
    printf("ERROR %s: %s\n", smtpc_err_name(rc), smtpc_session_errmsg(s));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: drv_reach HOST PORT [options]\n");
        return 2;
    }
    const char *host = argv[1];
    uint16_t port = (uint16_t)atoi(argv[2]);
    const char *proxy = NULL, *bind = NULL, *tls = "none", *ca = NULL, *user = NULL;
    const char *to = "b@example.net";
    int family = 0, bind_port = 0;
    long long cto = 10000;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--dual-localhost")) { dual_localhost = 1; continue; }
        i++;
        if (!strcmp(a, "--proxy")) proxy = v;
        else if (!strcmp(a, "--family")) family = atoi(v);
        else if (!strcmp(a, "--bind")) bind = v;
        else if (!strcmp(a, "--bind-port")) bind_port = atoi(v);
        else if (!strcmp(a, "--tls")) tls = v;
        else if (!strcmp(a, "--ca")) ca = v;
        else if (!strcmp(a, "--user")) user = v;
        else if (!strcmp(a, "--to")) to = v;
        else if (!strcmp(a, "--connect-timeout-ms")) cto = atoll(v);
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    smtpc_session *s;
    if (smtpc_session_new(&s)) return 2;
    int rc = smtpc_session_set_connect_timeout_ms(s, cto);
    smtpc_tls_mode mode;
    if (!rc) rc = smtpc_tls_mode_parse(tls, &mode);
    if (!rc) rc = smtpc_session_set_tls_mode(s, mode);
    if (!rc && ca) rc = smtpc_session_set_ca_file(s, ca);
    if (!rc && user) rc = smtpc_session_set_credentials(s, user, getenv("DRV_PASSWORD"));
    if (!rc && family) rc = smtpc_session_set_family(s, (smtpc_family)family);
    if (!rc && bind) rc = smtpc_session_set_bind(s, bind, (uint16_t)bind_port);
    if (!rc && proxy) rc = smtpc_session_set_proxy_url(s, proxy);
    if (rc) {
        int r = fail(s, rc);
        smtpc_session_free(s);
        return r;
    }
    long long t0 = now_ms();
    rc = smtpc_session_open(s, host, port);
    printf("OPEN_MS: %lld\n", now_ms() - t0);
    if (rc) {
        int r = fail(s, rc);
        smtpc_session_free(s);
        return r;
    }
    printf("SECURITY: %s\n", smtpc_tls_mode_name(smtpc_session_security_used(s)));
    const char *mech = smtpc_session_auth_mechanism(s);
    printf("AUTH: %s\n", mech ? mech : "none");
    static const char msg[] = "From: a@example.org\r\nTo: b@example.net\r\nSubject: reach test\r\n\r\n"
                              "through the chain\r\n";
    const char *rcpts[1] = {to};
    smtpc_envelope env;
    memset(&env, 0, sizeof env);
    env.from = "a@example.org";
    env.rcpts = rcpts;
    env.nrcpts = 1;
    rc = smtpc_session_send_mem(s, &env, msg, sizeof msg - 1);
    if (rc) {
        int r = fail(s, rc);
        smtpc_session_free(s);
        return r;
    }
    printf("OK %d\n", smtpc_reply_code(smtpc_session_reply(s)));
    smtpc_session_quit(s);
    smtpc_session_free(s);
    return 0;
}
