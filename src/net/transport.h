/* The transport chain: tcp -> [socks | http proxy] -> [tls].
 *
 * Every layer is NON-BLOCKING. A call that cannot make progress returns
 * SMTPC_EAGAIN and reports, through `want`, whether it waits for the fd to
 * become readable (SMTPC__WANT_READ) or writable (SMTPC__WANT_WRITE); a TLS
 * layer may want to read in order to write. The blocking session waits with
 * smtpc__transport_wait(); the async driver puts the fd in its epoll set.
 * Nothing above this file touches sockets or OpenSSL.
 *
 * A layer owns the layer below it (`inner`) and frees it. */
#ifndef SMTPC_NET_TRANSPORT_H
#define SMTPC_NET_TRANSPORT_H

#include "util/util.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum { SMTPC__WANT_READ = 1, SMTPC__WANT_WRITE = 2 };

typedef struct smtpc__transport smtpc__transport;

typedef struct smtpc__transport_ops {
    const char *name; /* "tcp", "tls", "socks5", "http-proxy" ... */
    /* Completes the layer's own handshake (TLS, proxy negotiation). Returns 0
     * when done, SMTPC_EAGAIN with *want set, or a negative error with the
     * detail in t->err. NULL when the layer has none. */
    int (*handshake)(smtpc__transport *t, int *want);
    /* >0 bytes read; 0 = orderly end of stream (for TLS: close_notify
     * received); SMTPC_EAGAIN (*want set); or a negative error. */
    ssize_t (*read)(smtpc__transport *t, void *buf, size_t len, int *want);
    /* >0 bytes written (may be short); SMTPC_EAGAIN (*want set); or error. */
    ssize_t (*write)(smtpc__transport *t, const void *buf, size_t len, int *want);
    /* Bytes already decrypted/buffered inside the layer, readable without
     * waiting on the fd. NULL means 0. */
    size_t (*pending)(const smtpc__transport *t);
    /* Polite close (TLS close_notify); best effort, may return SMTPC_EAGAIN. */
    int (*shutdown)(smtpc__transport *t, int *want);
    void (*destroy)(smtpc__transport *t); /* frees this layer only */
} smtpc__transport_ops;

struct smtpc__transport {
    const smtpc__transport_ops *ops;
    smtpc__transport *inner; /* the layer below, owned; NULL for tcp */
    int fd;                  /* the socket at the bottom of the chain */
    smtpc__errmsg err;       /* detail of the last error of this layer */
};

/* Convenience wrappers that walk to the right layer. */
int smtpc__transport_handshake(smtpc__transport *t, int *want);
ssize_t smtpc__transport_read(smtpc__transport *t, void *buf, size_t len, int *want);
ssize_t smtpc__transport_write(smtpc__transport *t, const void *buf, size_t len, int *want);
size_t smtpc__transport_pending(const smtpc__transport *t);
int smtpc__transport_shutdown(smtpc__transport *t, int *want);
/* Frees the whole chain and closes the socket. NULL is a no-op. */
void smtpc__transport_free(smtpc__transport *t);

/* Waits until t's fd is ready for `want` or an error/hang-up, the absolute
 * monotonic deadline_ms passes (SMTPC_ETIMEDOUT; deadline_ms < 0 = none), or
 * cancel_fd becomes readable (SMTPC_ECANCELED; -1 = none). */
int smtpc__wait_fd(int fd, int want, int64_t deadline_ms, int cancel_fd);

/* ---- TCP ----------------------------------------------------------------- */
/* The TCP layer over an already created non-blocking socket (connected or
 * connecting); the layer owns fd from then on. NULL when out of memory (fd
 * is then still the caller's). Used by both connectors. */
smtpc__transport *smtpc__tcp_wrap_fd(int fd);

typedef struct smtpc__tcp_opts {
    const char *bind_addr; /* local address to bind, or NULL */
    uint16_t bind_port;    /* 0 = any */
    int family;            /* AF_UNSPEC, AF_INET or AF_INET6 */
    int64_t deadline_ms;   /* absolute monotonic deadline for the whole connect */
    int cancel_fd;         /* -1 = none */
} smtpc__tcp_opts;

/* Binds socket fd (of family) to the local addr (NULL = any) and port (0 =
 * any: picked at connect). -1 with *err_no (bind) or *gai_msg (addr does
 * not resolve) set; 0 when bound. Both connectors use it. */
int smtpc__tcp_bind_local(int fd, int family, const char *addr, uint16_t port, int *err_no,
                          const char **gai_msg);

/* Resolves host (opts->family; with a numeric bind address, its family)
 * and connects Happy-Eyeballs style (RFC 8305: families interleaved, a new
 * attempt every 250 ms or as soon as one fails, first to connect wins)
 * within the one deadline. Sets TCP_NODELAY, non-blocking
 * mode, no SIGPIPE (MSG_NOSIGNAL). On failure *out is untouched and err says
 * "connect to HOST:PORT: reason". */
int smtpc__tcp_connect(smtpc__transport **out, const char *host, uint16_t port,
                       const smtpc__tcp_opts *opts, smtpc__errmsg *err);

/* The connect half of smtpc__tcp_connect over an already resolved list
 * (Happy Eyeballs over `res`; only ai_family/ai_socktype/ai_protocol/
 * ai_addr/ai_addrlen/ai_next are used); hp is "HOST:PORT" for messages.
 * For tests that need a given address list. */
struct addrinfo;
int smtpc__tcp_connect_ai(smtpc__transport **out, const char *hp, const struct addrinfo *res,
                          const smtpc__tcp_opts *opts, smtpc__errmsg *err);

/* The default EHLO/HELO name (RFC 5321 4.1.4: the client's FQDN, else an
 * address literal): the host's FQDN when smtpc__local_fqdn_lookup() found
 * one, else the literal of fd's local address ("[192.0.2.1]",
 * "[IPv6:2001:db8::1]"), else "[127.0.0.1]". Never blocks. */
void smtpc__default_ehlo_name(int fd, char *dst, size_t n);

/* Looks the host's FQDN up once per process: gethostname(), and when that has
 * no dot, getaddrinfo(AI_CANONNAME) on it (which may block on DNS). Sessions
 * call it while the server's greeting is on its way; the bulk driver in its
 * resolver thread. Thread-safe; later calls return at once. */
void smtpc__local_fqdn_lookup(void);
bool smtpc__local_fqdn_done(void);

#endif
