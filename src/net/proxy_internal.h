/* The proxy configuration's representation, shared by proxy_url.c and the
 * proxy layers (proxy.c). Not part of any API. */
#ifndef SMTPC_NET_PROXY_INTERNAL_H
#define SMTPC_NET_PROXY_INTERNAL_H

#include <smtpc/proxy.h>

struct smtpc_proxy {
    smtpc_proxy_type type;
    char *host;     /* without brackets */
    uint16_t port;  /* never 0 */
    char *user;     /* decoded; NULL = no credentials */
    char *pass;     /* decoded; NULL = none (empty password when user is set) */
    char *redacted; /* scheme://user:***@host:port */
};

#endif
