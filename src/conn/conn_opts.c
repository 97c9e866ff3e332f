/* Connection options: one object, validated once, applied by every driver. */
#include "conn/conn_opts.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- TLS mode names ------------------------------------------------------------------------ */

static const char *const mode_names[] = {"default", "none", "implicit", "starttls",
                                         "starttls-optional", "auto"};

SMTPC_API const char *smtpc_tls_mode_name(int mode)
{
    return mode >= 0 && mode < (int)SMTPC__ARRAY_LEN(mode_names) ? mode_names[mode] : "unknown";
}

SMTPC_API int smtpc_tls_mode_parse(const char *name, smtpc_tls_mode *out)
{
    static const struct { const char *n; smtpc_tls_mode m; } alias[] = {
        {"tls", SMTPC_TLS_MODE_IMPLICIT},  {"ssl", SMTPC_TLS_MODE_IMPLICIT},
        {"smtps", SMTPC_TLS_MODE_IMPLICIT}, {"starttls-opt", SMTPC_TLS_MODE_STARTTLS_OPTIONAL},
        {"opportunistic", SMTPC_TLS_MODE_STARTTLS_OPTIONAL}, {"plain", SMTPC_TLS_MODE_NONE}};
    if (!name || !out) return SMTPC_EINVAL;
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(mode_names); i++)
        if (!smtpc__strcasecmp(name, mode_names[i])) {
            *out = (smtpc_tls_mode)i;
            return 0;
        }
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(alias); i++)
        if (!smtpc__strcasecmp(name, alias[i].n)) {
            *out = alias[i].m;
            return 0;
        }
    return SMTPC_EINVAL;
}

SMTPC_API smtpc_tls_mode smtpc_tls_mode_effective(smtpc_tls_mode mode, uint16_t port, bool credentials)
{
    if (mode != SMTPC_TLS_MODE_DEFAULT) return mode;
    if (port == 465) return SMTPC_TLS_MODE_IMPLICIT;
    /* port 25 without credentials is relay: opportunistic (RFC 3207);
     * anything else is submission: TLS required */
    if (port == 25 && !credentials) return SMTPC_TLS_MODE_STARTTLS_OPTIONAL;
    return SMTPC_TLS_MODE_STARTTLS;
}

/* ---- life ------------------------------------------------------------------------------------ */

void smtpc__conn_opts_init(smtpc_conn_opts *o)
{
    memset(o, 0, sizeof *o);
    o->family = AF_UNSPEC;
    o->tls_mode = SMTPC_TLS_MODE_DEFAULT;
}

void smtpc__conn_opts_clear(smtpc_conn_opts *o)
{
    if (!o) return;
    free(o->host);
    free(o->ehlo_name);
    free(o->bind_addr);
    smtpc_proxy_free(o->proxy);
    free(o->ca_file);
    free(o->ca_path);
    free(o->cert_file);
    free(o->key_file);
    free(o->tls_name);
    free(o->user);
    smtpc__free_secret(o->password);
    free(o->authzid);
    smtpc__free_secret(o->oauth_token);
    smtpc__conn_opts_init(o);
}

static int dup_str(char **dst, const char *src)
{
    *dst = NULL;
    if (src && !(*dst = smtpc__strdup(src))) return SMTPC_ENOMEM;
    return 0;
}

int smtpc__conn_opts_copy(smtpc_conn_opts *dst, const smtpc_conn_opts *src)
{
    if (dst == src) return 0;
    smtpc_conn_opts n = *src; /* scalars, pins, callbacks */
    char **fields[] = {&n.host, &n.ehlo_name, &n.bind_addr, &n.ca_file, &n.ca_path, &n.cert_file,
                       &n.key_file, &n.tls_name, &n.user, &n.password, &n.authzid, &n.oauth_token};
    const char *from[] = {src->host, src->ehlo_name, src->bind_addr, src->ca_file, src->ca_path,
                          src->cert_file, src->key_file, src->tls_name, src->user, src->password,
                          src->authzid, src->oauth_token};
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(fields); i++) *fields[i] = NULL;
    n.proxy = NULL;
    int rc = 0;
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(fields) && !rc; i++) rc = dup_str(fields[i], from[i]);
    if (!rc && src->proxy) rc = smtpc_proxy_dup(&n.proxy, src->proxy);
    if (rc) {
        smtpc__conn_opts_clear(&n);
        return SMTPC_ENOMEM;
    }
    smtpc__conn_opts_clear(dst);
    *dst = n;
    smtpc__err_clear(&dst->err);
    return 0;
}

SMTPC_API int smtpc_conn_opts_new(smtpc_conn_opts **out)
{
    if (!out) return SMTPC_EINVAL;
    smtpc_conn_opts *o = malloc(sizeof *o);
    if (!o) return SMTPC_ENOMEM;
    smtpc__conn_opts_init(o);
    *out = o;
    return 0;
}

SMTPC_API int smtpc_conn_opts_dup(smtpc_conn_opts **out, const smtpc_conn_opts *o)
{
    if (!out || !o) return SMTPC_EINVAL;
    smtpc_conn_opts *n = malloc(sizeof *n);
    if (!n) return SMTPC_ENOMEM;
    smtpc__conn_opts_init(n);
    int rc = smtpc__conn_opts_copy(n, o);
    if (rc) {
        free(n);
        return rc;
    }
    *out = n;
    return 0;
}

SMTPC_API void smtpc_conn_opts_free(smtpc_conn_opts *o)
{
    if (!o) return;
    smtpc__conn_opts_clear(o);
    smtpc__secure_zero(o, sizeof *o);
    free(o);
}

SMTPC_API const char *smtpc_conn_opts_errmsg(const smtpc_conn_opts *o)
{
    return o ? o->err.text : "";
}

/* ---- setters --------------------------------------------------------------------------------- */

/* *field = a copy of v (NULL clears); path-like: no control characters. */
static int set_str(smtpc_conn_opts *o, char **field, const char *v, const char *what)
{
    if (v && (!*v || smtpc__has_ctl(v))) return smtpc__err(&o->err, SMTPC_EINVAL, "invalid %s", what);
    char *c = NULL;
    if (v && !(c = smtpc__strdup(v))) return SMTPC_ENOMEM;
    free(*field);
    *field = c;
    return 0;
}

/* Credentials: no CR, LF (NUL cannot be in a C string). */
static int set_cred(smtpc_conn_opts *o, char **field, const char *v, bool secret, const char *what)
{
    if (v && (strchr(v, '\r') || strchr(v, '\n')))
        return smtpc__err(&o->err, SMTPC_EINVAL, "%s contains CR or LF", what);
    char *c = NULL;
    if (v && !(c = smtpc__strdup(v))) return SMTPC_ENOMEM;
    if (secret) smtpc__free_secret(*field);
    else free(*field);
    *field = c;
    return 0;
}

static int set_ms(smtpc_conn_opts *o, int64_t *field, int64_t ms)
{
    if (!o) return SMTPC_EINVAL;
    if (ms < 0) return smtpc__err(&o->err, SMTPC_EINVAL, "negative timeout");
    *field = ms;
    return 0;
}

SMTPC_API int smtpc_conn_opts_set_server(smtpc_conn_opts *o, const char *host, uint16_t port)
{
    if (!o) return SMTPC_EINVAL;
    if (host && (!*host || strlen(host) > 255 || strpbrk(host, " \t")))
        return smtpc__err(&o->err, SMTPC_EINVAL, "invalid server name");
    int rc = set_str(o, &o->host, host, "server name");
    if (!rc) o->port = port;
    return rc;
}

/* A domain or an address literal: printable, no space, no control. */
static bool valid_ehlo_name(const char *n)
{
    if (!n || !*n || strlen(n) > 255) return false;
    for (const unsigned char *p = (const unsigned char *)n; *p; p++)
        if (*p <= 0x20 || *p == 0x7f) return false;
    return true;
}

SMTPC_API int smtpc_conn_opts_set_ehlo_name(smtpc_conn_opts *o, const char *name)
{
    if (!o) return SMTPC_EINVAL;
    if (name && !valid_ehlo_name(name)) return smtpc__err(&o->err, SMTPC_EINVAL, "invalid EHLO name");
    return set_str(o, &o->ehlo_name, name, "EHLO name");
}

SMTPC_API int smtpc_conn_opts_set_bind(smtpc_conn_opts *o, const char *addr, uint16_t port)
{
    if (!o) return SMTPC_EINVAL;
    int rc = set_str(o, &o->bind_addr, addr, "bind address");
    if (!rc) o->bind_port = port;
    return rc;
}

SMTPC_API int smtpc_conn_opts_set_family(smtpc_conn_opts *o, smtpc_family family)
{
    if (!o) return SMTPC_EINVAL;
    switch (family) {
    case SMTPC_FAMILY_ANY: o->family = AF_UNSPEC; return 0;
    case SMTPC_FAMILY_IPV4: o->family = AF_INET; return 0;
    case SMTPC_FAMILY_IPV6: o->family = AF_INET6; return 0;
    }
    return smtpc__err(&o->err, SMTPC_EINVAL, "invalid address family %d", (int)family);
}

SMTPC_API int smtpc_conn_opts_set_proxy(smtpc_conn_opts *o, const smtpc_proxy *p)
{
    if (!o) return SMTPC_EINVAL;
    smtpc_proxy *c = NULL;
    if (p) {
        int rc = smtpc_proxy_dup(&c, p);
        if (rc) return smtpc__err(&o->err, rc, "proxy: %s", smtpc_strerror(rc));
    }
    smtpc_proxy_free(o->proxy);
    o->proxy = c;
    return 0;
}

SMTPC_API int smtpc_conn_opts_set_proxy_url(smtpc_conn_opts *o, const char *url)
{
    if (!o) return SMTPC_EINVAL;
    if (!url || !*url) return smtpc_conn_opts_set_proxy(o, NULL);
    smtpc_proxy *p = NULL;
    char why[256];
    int rc = smtpc_proxy_parse_url(&p, url, why, sizeof why);
    if (rc) return smtpc__err(&o->err, rc, "%s", why); /* "proxy URL: ...", never the password */
    smtpc_proxy_free(o->proxy);
    o->proxy = p;
    return 0;
}

SMTPC_API int smtpc_conn_opts_set_connect_timeout_ms(smtpc_conn_opts *o, int64_t ms)
{
    return set_ms(o, o ? &o->connect_ms : NULL, ms);
}
SMTPC_API int smtpc_conn_opts_set_greeting_timeout_ms(smtpc_conn_opts *o, int64_t ms)
{
    return set_ms(o, o ? &o->greeting_ms : NULL, ms);
}
SMTPC_API int smtpc_conn_opts_set_command_timeout_ms(smtpc_conn_opts *o, int64_t ms)
{
    return set_ms(o, o ? &o->command_ms : NULL, ms);
}
SMTPC_API int smtpc_conn_opts_set_data_timeout_ms(smtpc_conn_opts *o, int64_t ms)
{
    return set_ms(o, o ? &o->data_ms : NULL, ms);
}
SMTPC_API int smtpc_conn_opts_set_auto_timeout_ms(smtpc_conn_opts *o, int64_t ms)
{
    return set_ms(o, o ? &o->auto_ms : NULL, ms);
}

SMTPC_API int smtpc_conn_opts_set_tls_mode(smtpc_conn_opts *o, smtpc_tls_mode mode)
{
    if (!o) return SMTPC_EINVAL;
    if ((int)mode < 0 || (int)mode >= (int)SMTPC__ARRAY_LEN(mode_names))
        return smtpc__err(&o->err, SMTPC_EINVAL, "invalid TLS mode %d", (int)mode);
    o->tls_mode = mode;
    return 0;
}

SMTPC_API int smtpc_conn_opts_set_ca_file(smtpc_conn_opts *o, const char *path)
{
    return o ? set_str(o, &o->ca_file, path, "CA file") : SMTPC_EINVAL;
}

SMTPC_API int smtpc_conn_opts_set_ca_path(smtpc_conn_opts *o, const char *dir)
{
    return o ? set_str(o, &o->ca_path, dir, "CA path") : SMTPC_EINVAL;
}

SMTPC_API int smtpc_conn_opts_set_tls_server_name(smtpc_conn_opts *o, const char *name)
{
    if (!o) return SMTPC_EINVAL;
    if (name && strlen(name) > 255) return smtpc__err(&o->err, SMTPC_EINVAL, "server name too long");
    return set_str(o, &o->tls_name, name, "server name");
}

SMTPC_API int smtpc_conn_opts_add_pin(smtpc_conn_opts *o, const char *pin)
{
    if (!o) return SMTPC_EINVAL;
    if (!pin) {
        o->pins[0] = '\0';
        return 0;
    }
    if (smtpc__has_ctl(pin) || strchr(pin, ';') || strchr(pin, ',') || strchr(pin, ' '))
        return smtpc__err(&o->err, SMTPC_EINVAL, "invalid pin (one sha256//BASE64 per call)");
    /* the syntax is checked here, with the TLS layer's own parser */
    smtpc__tls_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.insecure = true;
    cfg.pins = pin;
    smtpc__tls_ctx *c = NULL;
    int rc = smtpc__tls_ctx_new(&c, &cfg, &o->err);
    smtpc__tls_ctx_free(c);
    if (rc) return rc == SMTPC_ENOMEM ? rc : SMTPC_EINVAL;
    size_t l = strlen(o->pins);
    if (l + strlen(pin) + 2 > sizeof o->pins) return smtpc__err(&o->err, SMTPC_ELIMIT, "too many pins");
    snprintf(o->pins + l, sizeof o->pins - l, "%s%s", l ? ";" : "", pin);
    return 0;
}

SMTPC_API int smtpc_conn_opts_set_client_cert(smtpc_conn_opts *o, const char *cert_file, const char *key_file)
{
    if (!o) return SMTPC_EINVAL;
    if (!cert_file && key_file) return smtpc__err(&o->err, SMTPC_EINVAL, "a client key without a certificate");
    char *c = NULL, *k = NULL;
    int rc = set_str(o, &c, cert_file, "certificate file");
    if (!rc) rc = set_str(o, &k, key_file, "key file");
    if (rc) {
        free(c);
        return rc;
    }
    free(o->cert_file);
    free(o->key_file);
    o->cert_file = c;
    o->key_file = k;
    return 0;
}

SMTPC_API int smtpc_conn_opts_set_insecure(smtpc_conn_opts *o, bool insecure)
{
    if (!o) return SMTPC_EINVAL;
    o->insecure = insecure;
    return 0;
}

SMTPC_API int smtpc_conn_opts_set_tls_versions(smtpc_conn_opts *o, int min_version, int max_version, bool strict)
{
    if (!o) return SMTPC_EINVAL;
    bool okmin = min_version == 0 || (min_version >= SMTPC_TLS_1_0 && min_version <= SMTPC_TLS_1_3);
    bool okmax = max_version == 0 || (max_version >= SMTPC_TLS_1_0 && max_version <= SMTPC_TLS_1_3);
    if (!okmin || !okmax || (min_version && max_version && min_version > max_version))
        return smtpc__err(&o->err, SMTPC_EINVAL, "invalid TLS versions %d..%d", min_version, max_version);
    o->tls_min = min_version;
    o->tls_max = max_version;
    o->tls_strict = strict;
    return 0;
}

SMTPC_API int smtpc_conn_opts_set_credentials(smtpc_conn_opts *o, const char *user, const char *password)
{
    if (!o) return SMTPC_EINVAL;
    if (!user && password) return smtpc__err(&o->err, SMTPC_EINVAL, "a password without a user name");
    if ((user && (strchr(user, '\r') || strchr(user, '\n'))) ||
        (password && (strchr(password, '\r') || strchr(password, '\n'))))
        return smtpc__err(&o->err, SMTPC_EINVAL, "%s contains CR or LF",
                          user && (strchr(user, '\r') || strchr(user, '\n')) ? "user name" : "password");
    int rc = set_cred(o, &o->user, user, false, "user name");
    return rc ? rc : set_cred(o, &o->password, password, true, "password");
}

SMTPC_API int smtpc_conn_opts_set_authzid(smtpc_conn_opts *o, const char *authzid)
{
    return o ? set_cred(o, &o->authzid, authzid, false, "authorization identity") : SMTPC_EINVAL;
}

SMTPC_API int smtpc_conn_opts_set_oauth_token(smtpc_conn_opts *o, const char *token)
{
    return o ? set_cred(o, &o->oauth_token, token, true, "OAuth token") : SMTPC_EINVAL;
}

SMTPC_API int smtpc_conn_opts_set_token_cb(smtpc_conn_opts *o, smtpc_token_cb cb, void *userdata)
{
    if (!o) return SMTPC_EINVAL;
    o->token_cb = cb;
    o->token_ud = userdata;
    return 0;
}

SMTPC_API int smtpc_conn_opts_set_auth_mechanisms(smtpc_conn_opts *o, const char *list)
{
    if (!o) return SMTPC_EINVAL;
    if (!list) {
        o->auth_list_set = false;
        o->auth_list = 0;
        return 0;
    }
    smtpc__sasl_mask m = 0;
    int rc = smtpc__sasl_mask_parse(list, &m, &o->err);
    if (rc) return rc;
    if (!m) return smtpc__err(&o->err, SMTPC_EINVAL, "no AUTH mechanism in \"%s\"", list);
    o->auth_list = m;
    o->auth_list_set = true;
    return 0;
}

SMTPC_API int smtpc_conn_opts_set_allow_plaintext_auth(smtpc_conn_opts *o, bool allow)
{
    if (!o) return SMTPC_EINVAL;
    o->allow_plain_auth = allow;
    return 0;
}

SMTPC_API int smtpc_conn_opts_set_scram_min_iterations(smtpc_conn_opts *o, unsigned n)
{
    if (!o) return SMTPC_EINVAL;
    if (n > SMTPC__SASL_MAX_SCRAM_ITER)
        return smtpc__err(&o->err, SMTPC_EINVAL, "SCRAM minimum of %u iterations over the limit %u", n,
                          SMTPC__SASL_MAX_SCRAM_ITER);
    o->scram_min_iter = n;
    return 0;
}

/* ---- what the drivers derive -------------------------------------------------------------- */

bool smtpc__conn_opts_have_creds(const smtpc_conn_opts *o)
{
    return (o->user && o->password) || o->oauth_token || o->token_cb ||
           (o->cert_file && o->auth_list_set && (o->auth_list & SMTPC__SASL_BIT(SMTPC__SASL_EXTERNAL)));
}

uint16_t smtpc__conn_opts_port(const smtpc_conn_opts *o)
{
    if (o->port) return o->port;
    return o->tls_mode == SMTPC_TLS_MODE_IMPLICIT ? 465 : o->tls_mode == SMTPC_TLS_MODE_STARTTLS ? 587 : 25;
}

smtpc_tls_mode smtpc__conn_opts_effective_mode(const smtpc_conn_opts *o, uint16_t port)
{
    return smtpc_tls_mode_effective(o->tls_mode, port, smtpc__conn_opts_have_creds(o));
}

void smtpc__conn_opts_tls_config(const smtpc_conn_opts *o, smtpc__tls_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->insecure = o->insecure;
    cfg->ca_file = o->ca_file;
    cfg->ca_path = o->ca_path;
    cfg->pins = o->pins[0] ? o->pins : NULL;
    cfg->cert_file = o->cert_file;
    cfg->key_file = o->key_file;
    cfg->min_version = o->tls_min;
    cfg->max_version = o->tls_max;
    cfg->version_policy = o->tls_strict ? SMTPC_TLS_VERSION_STRICT : SMTPC_TLS_VERSION_NEAREST;
}

void smtpc__conn_opts_sasl_creds(const smtpc_conn_opts *o, smtpc__sasl_creds *c)
{
    memset(c, 0, sizeof *c);
    c->username = o->user;
    c->password = o->password;
    c->authzid = o->authzid;
    c->oauth_token = o->oauth_token;
    c->token_fn = o->token_cb;
    c->token_ud = o->token_ud;
    c->scram_min_iterations = (int)o->scram_min_iter; /* <= SMTPC__SASL_MAX_SCRAM_ITER */
}

smtpc__sasl_mask smtpc__conn_opts_allowed_mechs(const smtpc_conn_opts *o, const smtpc__sasl_creds *c,
                                               bool encrypted)
{
    if (!encrypted && !o->allow_plain_auth) return 0; /* credentials never in the clear */
    smtpc__sasl_mask m = smtpc__sasl_default_allowed(c, true);
    if (o->auth_list_set) m &= o->auth_list; /* allowed in the clear: as on TLS */
    return m;
}

void smtpc__conn_opts_opener_policy(const smtpc_conn_opts *o, bool client_cert, smtpc__opener_policy *p)
{
    memset(p, 0, sizeof *p);
    smtpc__conn_opts_sasl_creds(o, &p->creds);
    p->creds.client_cert = client_cert;
    p->have_creds = smtpc__conn_opts_have_creds(o);
    p->allow_plain_auth = o->allow_plain_auth;
    p->allowed_tls = smtpc__conn_opts_allowed_mechs(o, &p->creds, true);
    smtpc__sasl_creds plain = p->creds;
    plain.client_cert = false; /* a client certificate needs TLS */
    p->allowed_plain = smtpc__conn_opts_allowed_mechs(o, &plain, false);
}
