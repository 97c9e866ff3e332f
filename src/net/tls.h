/* The TLS layer of the transport chain (OpenSSL 3), internal API.
 *
 * A TLS context (smtpc__tls_ctx) holds what is shared by connections with
 * the same settings: trust store, client certificate, pins, versions. It is
 * reference counted, so a pool can keep one and every connection made from
 * it keeps it alive. smtpc__tls_wrap() puts a TLS layer on top of any
 * transport (TCP, a proxy tunnel, an SMTP connection after STARTTLS's 220):
 * the records go through the inner layer's read/write, never to the fd
 * directly.
 *
 * The layer is non-blocking like every layer: handshake/read/write return
 * SMTPC_EAGAIN with *want set (TLS may want to read in order to write and
 * the other way round). After SMTPC_EAGAIN from write, call write again with
 * the same bytes. Errors are SMTPC_ETLS (handshake, verification, pin,
 * protocol) with the cause in t->err, SMTPC_ECLOSED when the peer closed
 * without close_notify (a truncation, never taken as a clean end), or the
 * inner layer's error. read returns 0 only after the peer's close_notify.
 *
 * OpenSSL is initialised on the first smtpc__tls_ctx_new(): a program that
 * never uses TLS pays nothing. */
#ifndef SMTPC_NET_TLS_H
#define SMTPC_NET_TLS_H

#include "net/transport.h"

#include <smtpc/tls.h>

#include <stdbool.h>

typedef struct smtpc__tls_config {
    /* Verification is on unless insecure is set: chain to a trusted CA,
     * validity dates, and the server name given to smtpc__tls_wrap() (DNS
     * name: SAN dNSName, CN only when there is no SAN, RFC 6125, no partial
     * wildcards; IP literal: SAN iPAddress). insecure turns all that off
     * (pins, when set, are still checked). */
    bool insecure;
    const char *ca_file;      /* PEM bundle; with ca_path, replaces the system store */
    const char *ca_path;      /* OpenSSL hashed directory */
    /* Public-key pins "sha256//<base64 of SHA-256(SPKI DER)>", several
     * separated by ';' ',' or spaces; one must match the peer's key. */
    const char *pins;
    const char *cert_file;    /* client certificate chain (PEM) */
    const char *key_file;     /* its private key (PEM); NULL = in cert_file */
    int min_version;          /* smtpc_tls_version; 0 = TLS 1.2 */
    int max_version;          /* 0 = the newest available */
    smtpc_tls_version_policy version_policy;
    const char *ciphers;      /* TLS <= 1.2 cipher list; NULL = OpenSSL's default */
    const char *ciphersuites; /* TLS 1.3 suites; NULL = default */
    /* SSL_MODE_RELEASE_BUFFERS: free a connection's record buffers while
     * it has nothing buffered; for drivers that keep many connections open
     * and mostly idle (smtpc_bulk: ~36 -> ~26 KiB per idle connection). */
    bool release_buffers;
} smtpc__tls_config;

typedef struct smtpc__tls_ctx smtpc__tls_ctx;
/* A TLS session kept for resumption (opaque; wraps an SSL_SESSION). */
typedef struct smtpc__tls_session smtpc__tls_session;

/* Creates a context from cfg (strings are copied or used at once).
 * Errors: SMTPC_EINVAL (bad pin syntax, version out of range, min above
 * max), SMTPC_EUNSUPPORTED (a version this build cannot do under
 * SMTPC_TLS_VERSION_STRICT, a minimum above its newest under either),
 * SMTPC_ECONFIG (CA file/path, certificate or
 * key that cannot be loaded, key not matching the certificate, bad cipher
 * list), SMTPC_ENOMEM. On failure *out is untouched and err says why. */
int smtpc__tls_ctx_new(smtpc__tls_ctx **out, const smtpc__tls_config *cfg, smtpc__errmsg *err);
smtpc__tls_ctx *smtpc__tls_ctx_ref(smtpc__tls_ctx *c);
void smtpc__tls_ctx_free(smtpc__tls_ctx *c); /* drops one reference; NULL is a no-op */
/* The versions a context uses for the requested ones (0 = default) on a
 * build whose newest is build_max: under SMTPC_TLS_VERSION_NEAREST only
 * narrowed (a minimum raised to the floor, a maximum lowered to build_max);
 * a minimum above build_max is never lowered: SMTPC_EUNSUPPORTED. Also
 * SMTPC_EINVAL (out of range, min above max). On error the ints are
 * unchanged. (Separate from _ctx_new so a build without TLS 1.3 can be
 * tested.) */
int smtpc__tls_fit_versions(int *min_version, int *max_version, int build_max,
                            smtpc_tls_version_policy pol, smtpc__errmsg *err);
/* The versions actually used after the nearest-version adjustment. */
void smtpc__tls_ctx_versions(const smtpc__tls_ctx *c, int *min_version, int *max_version);
bool smtpc__tls_ctx_has_client_cert(const smtpc__tls_ctx *c);

/* Puts a TLS client layer over inner. server_name is the name verified
 * and sent as SNI (not sent for an IP literal; "[::1]" is accepted); it may
 * be NULL only in insecure mode. resume, when not NULL, is offered for
 * resumption (borrowed). On success the layer owns inner; on failure *out
 * and inner are untouched (the caller still owns inner). The handshake is
 * done by smtpc__transport_handshake() (or the first read/write). */
int smtpc__tls_wrap(smtpc__transport **out, smtpc__transport *inner, smtpc__tls_ctx *ctx,
                    const char *server_name, smtpc__tls_session *resume, smtpc__errmsg *err);

/* t is a TLS layer (the outermost layer of a chain is checked). */
bool smtpc__tls_is(const smtpc__transport *t);
/* The peer's first bytes on this TLS layer were a TLS record header (type
 * 20..24, major version 3): whatever went wrong after that (certificate,
 * pin, alert, bad record, no version in common), the port speaks TLS. False
 * when nothing came, when the stream ended before any byte, or when the
 * first bytes are something else (a plaintext "220 " greeting): the port
 * does not speak TLS. */
bool smtpc__tls_peer_spoke_tls(const smtpc__transport *t);
/* After the handshake: what was negotiated. NULL before it or when t is not TLS. */
const smtpc_tls_info *smtpc__tls_info(const smtpc__transport *t);
/* The session to resume later (a new reference: free it), or NULL if none
 * yet. With TLS 1.3 the server sends it after the handshake, so ask after
 * the first read (the SMTP greeting / EHLO reply). Offer it again only to
 * the same server name and port with the same context (key a cache on
 * that): a resumed connection skips certificate verification and keeps
 * the first connection's verdict, pins and info. */
smtpc__tls_session *smtpc__tls_get_session(smtpc__transport *t);
void smtpc__tls_session_free(smtpc__tls_session *s);

#endif
