/* smtpc_bulk: the addresses of the server (or of the proxy), resolved in a
 * thread unless the name is a literal, so the loop never waits for DNS. */
#define _GNU_SOURCE
#include "async/bulk_int.h"

#include "net/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void smtpc__bulk_target_host(const smtpc_bulk *b, char *out, size_t n)
{
    const char *h = b->o.host;
    size_t hl = strlen(h);
    if (hl > 2 && h[0] == '[' && h[hl - 1] == ']')
        snprintf(out, n, "%.*s", (int)(hl - 2), h + 1);
    else
        snprintf(out, n, "%s", h);
}

static int set_addrs(smtpc_bulk *b, struct addrinfo *res)
{
    size_t n = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) n++;
    if (!n) return SMTPC_ENOHOST;
    free(b->addrs); /* a literal resolved in the loop, then again in the resolver thread */
    free(b->addrlens);
    b->addrs = calloc(n, sizeof *b->addrs);
    b->addrlens = calloc(n, sizeof *b->addrlens);
    if (!b->addrs || !b->addrlens) return SMTPC_ENOMEM;
    size_t i = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next, i++) {
        memcpy(&b->addrs[i], ai->ai_addr, ai->ai_addrlen);
        b->addrlens[i] = ai->ai_addrlen;
    }
    b->naddrs = n;
    return 0;
}

static int resolve(smtpc_bulk *b, bool numeric_only)
{
    struct addrinfo hints, *res = NULL;
    char portstr[8];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = b->o.family; /* of the server's addresses, or the proxy's */
    /* a numeric bind address fixes the family: the others could not be bound */
    unsigned char ab[16];
    if (hints.ai_family == AF_UNSPEC && b->o.bind_addr) {
        if (inet_pton(AF_INET, b->o.bind_addr, ab) == 1) hints.ai_family = AF_INET;
        else if (inet_pton(AF_INET6, b->o.bind_addr, ab) == 1) hints.ai_family = AF_INET6;
    }
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV | (numeric_only ? AI_NUMERICHOST : 0);
    char tmp[256];
    smtpc__bulk_target_host(b, tmp, sizeof tmp);
    const char *h = tmp;
    uint16_t port = b->port;
    if (b->o.proxy) {
        /* SOCKS4/SOCKS5 (not 4a/5h) carry an address: the target is resolved here */
        smtpc_proxy_type pt = smtpc_proxy_get_type(b->o.proxy);
        if (smtpc__proxy_resolves_locally(pt) && !b->ptarget_set) {
            unsigned char a[16];
            if (numeric_only && inet_pton(AF_INET, tmp, a) != 1 && inet_pton(AF_INET6, tmp, a) != 1)
                return 1; /* a name: in the resolver thread */
            int rc = smtpc__proxy_resolve_target(pt, tmp, &b->ptarget, &b->resolve_err);
            if (rc) return rc;
            b->ptarget_set = true;
        }
        h = smtpc_proxy_get_host(b->o.proxy);
        port = smtpc_proxy_get_port(b->o.proxy);
    }
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    int g = getaddrinfo(h, portstr, &hints, &res);
    if (g) {
        if (numeric_only && g == EAI_NONAME) return 1; /* not a literal */
        return smtpc__err(&b->resolve_err, SMTPC_ENOHOST, "cannot resolve %s%s: %s%s",
                          b->o.proxy ? "the proxy " : "", h, gai_strerror(g),
                          hints.ai_family == AF_INET    ? " (IPv4 only)"
                          : hints.ai_family == AF_INET6 ? " (IPv6 only)"
                                                        : "");
    }
    int rc = set_addrs(b, res);
    freeaddrinfo(res);
    return rc;
}

static void *resolver_main(void *arg)
{
    smtpc_bulk *b = arg;
    if (!b->o.ehlo_name) smtpc__local_fqdn_lookup(); /* the default EHLO name: may wait for DNS */
    b->resolve_rc = resolve(b, false);
    char x = 1;
    ssize_t w;
    do w = write(b->resolve_pipe[1], &x, 1);
    while (w < 0 && errno == EINTR);
    return NULL;
}

void smtpc__bulk_resolved(smtpc_bulk *b)
{
    pthread_join(b->resolver, NULL);
    b->resolver_started = false;
    if (b->sock_cb) b->sock_cb(b->sock_ud, b->resolve_pipe[0], SMTPC_POLL_REMOVE);
    close(b->resolve_pipe[0]);
    close(b->resolve_pipe[1]);
    b->resolve_pipe[0] = b->resolve_pipe[1] = -1;
    b->resolving = false;
    if (b->resolve_rc) {
        smtpc__strlcpy(b->last_conn_msg, b->resolve_err.text, sizeof b->last_conn_msg);
        b->last_conn_err = b->resolve_rc;
        b->last_conn_code = 0;
        b->last_conn_text[0] = 0;
        smtpc__bulk_give_up(b);
        return;
    }
    b->resolved = true;
}


int smtpc__bulk_resolve_start(smtpc_bulk *b)
{
    int rc = resolve(b, true);
    /* The default EHLO name's first lookup may wait for DNS: not in the loop. */
    if (rc == 0 && !b->o.ehlo_name && !smtpc__local_fqdn_done()) rc = 1;
    if (rc == 0) {
        b->resolved = true;
    } else if (rc == 1) {
        if (pipe2(b->resolve_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
            return smtpc__err(&b->err, SMTPC_ENOMEM, "pipe: %s", strerror(errno));
        b->resolving = true;
        if (pthread_create(&b->resolver, NULL, resolver_main, b) != 0) {
            b->resolving = false;
            return smtpc__err(&b->err, SMTPC_ENOMEM, "cannot start the resolver thread");
        }
        b->resolver_started = true;
        if (b->sock_cb) b->sock_cb(b->sock_ud, b->resolve_pipe[0], SMTPC_POLL_IN);
    } else {
        return smtpc__err(&b->err, rc, "%s", b->resolve_err.text);
    }
    return 0;
}

void smtpc__bulk_resolve_stop(smtpc_bulk *b)
{
    if (!b->resolver_started) return;
    pthread_join(b->resolver, NULL);
    b->resolver_started = false;
    if (b->resolve_pipe[0] >= 0) {
        if (b->sock_cb) b->sock_cb(b->sock_ud, b->resolve_pipe[0], SMTPC_POLL_REMOVE);
        close(b->resolve_pipe[0]);
        close(b->resolve_pipe[1]);
        b->resolve_pipe[0] = b->resolve_pipe[1] = -1;
    }
}
