/* The client's settings: the connection's are smtpc_conn_opts (it judges
 * their values), the rest the client's own; an account of a configuration
 * file. */
#include "client/client_int.h"

#include <smtpc/proxy.h>

#include <stdlib.h>
#include <string.h>

/* ---- setters ---- */

/* Every setter: refuse while a send runs (the pool key is built per send). */
#define SETTER_PROLOGUE(c)                                                                   \
    do {                                                                                     \
        if (!(c)) return SMTPC_EINVAL;                                                       \
        if (atomic_load(&(c)->busy)) return smtpc__err(&(c)->err, SMTPC_EBUSY, "operation in progress"); \
    } while (0)

static int set_str(smtpc_client *c, char **field, const char *v)
{
    if (v && smtpc__has_ctl(v)) return smtpc__err(&c->err, SMTPC_EINVAL, "control characters in a setting");
    char *d = NULL;
    if (v && !(d = smtpc__strdup(v))) return SMTPC_ENOMEM;
    free(*field);
    *field = d;
    return 0;
}

/* The connection options are the judge of every connection setting
 * (smtpc_conn_opts: the same values refused as by the session). The pool
 * key separates its fields with control characters: the client refuses
 * them in every string it keys on (also where the options allow a tab). */
static smtpc_conn_opts *opts(smtpc_client *c)
{
    smtpc__err_clear(&c->o.err);
    return &c->o;
}

static int opt_done(smtpc_client *c, int rc)
{
    return rc ? smtpc__conn_opts_fail(&c->err, &c->o, rc) : 0;
}

static int no_ctl(smtpc_client *c, const char *v)
{
    return v && smtpc__has_ctl(v) ? smtpc__err(&c->err, SMTPC_EINVAL, "control characters in a setting") : 0;
}

/* Setters of the options: refused while a send runs, and strings with
 * control characters refused before them. */
#define OPT_SET(c, call) (opt_done((c), (call)))
#define OPT_SETTER(c, str, call)                                                             \
    do {                                                                                     \
        SETTER_PROLOGUE(c);                                                                  \
        int rc_ = no_ctl((c), (str));                                                        \
        return rc_ ? rc_ : OPT_SET((c), (call));                                             \
    } while (0)

SMTPC_API int smtpc_client_set_conn_opts(smtpc_client *c, const smtpc_conn_opts *o)
{
    SETTER_PROLOGUE(c);
    if (!o) return smtpc__err(&c->err, SMTPC_EINVAL, "no connection options");
    const char *strs[] = {o->host, o->user, o->password, o->authzid, o->ehlo_name, o->bind_addr,
                          o->ca_file, o->ca_path, o->tls_name, o->cert_file, o->key_file};
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(strs); i++)
        if (no_ctl(c, strs[i])) return SMTPC_EINVAL;
    if (smtpc__conn_opts_copy(&c->o, o)) return smtpc__err(&c->err, SMTPC_ENOMEM, "out of memory");
    if (o->user) { /* credentials replace the callbacks, as smtpc_client_set_credentials */
        c->cred_cb = NULL;
        c->ident_cb = NULL;
    }
    return 0;
}

SMTPC_API int smtpc_client_set_host(smtpc_client *c, const char *host, uint16_t port)
{
    SETTER_PROLOGUE(c);
    if (!host || !*host) return smtpc__err(&c->err, SMTPC_EINVAL, "empty host");
    OPT_SETTER(c, host, smtpc_conn_opts_set_server(opts(c), host, port));
}

SMTPC_API int smtpc_client_set_tls_mode(smtpc_client *c, smtpc_tls_mode mode)
{
    OPT_SETTER(c, NULL, smtpc_conn_opts_set_tls_mode(opts(c), mode));
}

SMTPC_API int smtpc_client_set_allow_plaintext_auth(smtpc_client *c, bool allow)
{
    OPT_SETTER(c, NULL, smtpc_conn_opts_set_allow_plaintext_auth(opts(c), allow));
}

SMTPC_API int smtpc_client_set_credentials(smtpc_client *c, const char *user, const char *password)
{
    SETTER_PROLOGUE(c);
    int rc = no_ctl(c, user);
    if (!rc) rc = no_ctl(c, password);
    if (!rc) rc = OPT_SET(c, smtpc_conn_opts_set_credentials(opts(c), user, password));
    if (rc) return rc;
    c->cred_cb = NULL;
    c->ident_cb = NULL;
    return 0;
}

SMTPC_API int smtpc_client_set_credential_cb(smtpc_client *c, const char *user, smtpc_credential_cb cb,
                                             void *userdata)
{
    SETTER_PROLOGUE(c);
    int rc = no_ctl(c, user);
    if (!rc) rc = OPT_SET(c, smtpc_conn_opts_set_credentials(opts(c), user, NULL));
    if (rc) return rc;
    c->cred_cb = cb;
    c->cred_ud = userdata;
    c->ident_cb = NULL;
    return 0;
}

SMTPC_API int smtpc_client_set_identity_cb(smtpc_client *c, smtpc_identity_cb cb, void *userdata)
{
    SETTER_PROLOGUE(c);
    smtpc_conn_opts_set_credentials(&c->o, NULL, NULL);
    c->cred_cb = NULL;
    c->ident_cb = cb;
    c->ident_ud = userdata;
    return 0;
}

SMTPC_API int smtpc_client_set_auth_mechanisms(smtpc_client *c, const char *list)
{
    OPT_SETTER(c, list, smtpc_conn_opts_set_auth_mechanisms(opts(c), list));
}

SMTPC_API int smtpc_client_set_authzid(smtpc_client *c, const char *authzid)
{
    OPT_SETTER(c, authzid, smtpc_conn_opts_set_authzid(opts(c), authzid));
}

SMTPC_API int smtpc_client_set_connect_timeout_ms(smtpc_client *c, int64_t ms)
{
    OPT_SETTER(c, NULL, smtpc_conn_opts_set_connect_timeout_ms(opts(c), ms));
}
SMTPC_API int smtpc_client_set_greeting_timeout_ms(smtpc_client *c, int64_t ms)
{
    OPT_SETTER(c, NULL, smtpc_conn_opts_set_greeting_timeout_ms(opts(c), ms));
}
SMTPC_API int smtpc_client_set_command_timeout_ms(smtpc_client *c, int64_t ms)
{
    OPT_SETTER(c, NULL, smtpc_conn_opts_set_command_timeout_ms(opts(c), ms));
}
SMTPC_API int smtpc_client_set_data_timeout_ms(smtpc_client *c, int64_t ms)
{
    OPT_SETTER(c, NULL, smtpc_conn_opts_set_data_timeout_ms(opts(c), ms));
}
SMTPC_API int smtpc_client_set_auto_timeout_ms(smtpc_client *c, int64_t ms)
{
    OPT_SETTER(c, NULL, smtpc_conn_opts_set_auto_timeout_ms(opts(c), ms));
}

/* The client's own bounds. */
static int set_ms(smtpc_client *c, int64_t *f, int64_t ms)
{
    SETTER_PROLOGUE(c);
    if (ms < 0) return smtpc__err(&c->err, SMTPC_EINVAL, "negative timeout");
    *f = ms;
    return 0;
}

SMTPC_API int smtpc_client_set_timeout_ms(smtpc_client *c, int64_t ms)
{
    return c ? set_ms(c, &c->timeout_ms, ms) : SMTPC_EINVAL;
}
SMTPC_API int smtpc_client_set_deadline_ms(smtpc_client *c, int64_t ms)
{
    return c ? set_ms(c, &c->deadline_ms, ms) : SMTPC_EINVAL;
}

SMTPC_API int smtpc_client_set_ehlo_name(smtpc_client *c, const char *name)
{
    OPT_SETTER(c, name, smtpc_conn_opts_set_ehlo_name(opts(c), name));
}

SMTPC_API int smtpc_client_set_bind(smtpc_client *c, const char *addr, uint16_t port)
{
    OPT_SETTER(c, addr, smtpc_conn_opts_set_bind(opts(c), addr, port));
}

SMTPC_API int smtpc_client_set_family(smtpc_client *c, smtpc_family family)
{
    OPT_SETTER(c, NULL, smtpc_conn_opts_set_family(opts(c), family));
}

SMTPC_API int smtpc_client_set_proxy(smtpc_client *c, const smtpc_proxy *p)
{
    OPT_SETTER(c, NULL, smtpc_conn_opts_set_proxy(opts(c), p));
}

SMTPC_API int smtpc_client_set_proxy_url(smtpc_client *c, const char *url)
{
    OPT_SETTER(c, NULL, smtpc_conn_opts_set_proxy_url(opts(c), url));
}

SMTPC_API int smtpc_client_set_insecure(smtpc_client *c, bool insecure)
{
    OPT_SETTER(c, NULL, smtpc_conn_opts_set_insecure(opts(c), insecure));
}

SMTPC_API int smtpc_client_set_ca_file(smtpc_client *c, const char *path)
{
    OPT_SETTER(c, path, smtpc_conn_opts_set_ca_file(opts(c), path));
}

SMTPC_API int smtpc_client_set_ca_path(smtpc_client *c, const char *dir)
{
    OPT_SETTER(c, dir, smtpc_conn_opts_set_ca_path(opts(c), dir));
}

SMTPC_API int smtpc_client_set_tls_server_name(smtpc_client *c, const char *name)
{
    OPT_SETTER(c, name, smtpc_conn_opts_set_tls_server_name(opts(c), name));
}

SMTPC_API int smtpc_client_add_pin(smtpc_client *c, const char *pin)
{
    OPT_SETTER(c, NULL, smtpc_conn_opts_add_pin(opts(c), pin));
}

SMTPC_API int smtpc_client_set_client_cert(smtpc_client *c, const char *cert_file, const char *key_file)
{
    SETTER_PROLOGUE(c);
    int rc = no_ctl(c, cert_file);
    if (!rc) rc = no_ctl(c, key_file);
    return rc ? rc : OPT_SET(c, smtpc_conn_opts_set_client_cert(opts(c), cert_file, key_file));
}

SMTPC_API int smtpc_client_set_tls_versions(smtpc_client *c, int min_version, int max_version, bool strict)
{
    OPT_SETTER(c, NULL, smtpc_conn_opts_set_tls_versions(opts(c), min_version, max_version, strict));
}

SMTPC_API int smtpc_client_set_delivery(smtpc_client *c, smtpc_delivery method, const char *dir)
{
    SETTER_PROLOGUE(c);
    if ((int)method < 0 || method > SMTPC_DELIVERY_OUTBOX)
        return smtpc__err(&c->err, SMTPC_EINVAL, "bad delivery method");
    if (method != SMTPC_DELIVERY_NETWORK && (!dir || !*dir))
        return smtpc__err(&c->err, SMTPC_EINVAL, "pickup and outbox delivery need a directory");
    int rc = set_str(c, &c->dir, method == SMTPC_DELIVERY_NETWORK ? NULL : dir);
    if (!rc) c->delivery = method;
    return rc;
}

SMTPC_API int smtpc_client_set_strict_recipients(smtpc_client *c, bool strict)
{
    SETTER_PROLOGUE(c);
    c->strict = strict;
    return 0;
}

SMTPC_API int smtpc_client_set_dsn_policy(smtpc_client *c, smtpc_dsn_policy policy)
{
    SETTER_PROLOGUE(c);
    if (policy != SMTPC_DSN_IGNORE && policy != SMTPC_DSN_REQUIRE)
        return smtpc__err(&c->err, SMTPC_EINVAL, "bad DSN policy");
    c->dsn_policy = policy;
    return 0;
}

SMTPC_API int smtpc_client_set_use_bdat(smtpc_client *c, bool use)
{
    SETTER_PROLOGUE(c);
    c->use_bdat = use;
    return 0;
}

SMTPC_API int smtpc_client_set_trace(smtpc_client *c, smtpc_trace_cb cb, void *userdata)
{
    SETTER_PROLOGUE(c);
    c->trace_cb = cb;
    c->trace_ud = cb ? userdata : NULL;
    return 0;
}

SMTPC_API int smtpc_client_set_trace_body(smtpc_client *c, bool on)
{
    SETTER_PROLOGUE(c);
    c->trace_body = on;
    return 0;
}

SMTPC_API int smtpc_client_set_progress(smtpc_client *c, smtpc_progress_cb cb, void *userdata)
{
    SETTER_PROLOGUE(c);
    c->progress_cb = cb;
    c->progress_ud = cb ? userdata : NULL;
    return 0;
}

SMTPC_API int smtpc_client_set_retry(smtpc_client *c, const smtpc_retry_policy *p)
{
    SETTER_PROLOGUE(c);
    if (!p) {
        smtpc__retry_default(&c->retry);
        return 0;
    }
    if (p->attempts == 0 || p->backoff_factor < 1.0 || p->initial_delay_ms < 0 || p->max_delay_ms < 0)
        return smtpc__err(&c->err, SMTPC_EINVAL, "bad retry policy");
    c->retry = *p;
    return 0;
}

SMTPC_API int smtpc_client_set_pool(smtpc_client *c, smtpc_pool *pool)
{
    SETTER_PROLOGUE(c);
    c->pool = pool ? pool : c->own_pool;
    return 0;
}

SMTPC_API smtpc_pool *smtpc_client_pool(smtpc_client *c) { return c ? c->own_pool : NULL; }

/* ---- configuration file ---- */

/* A setter refused an account's value: SMTPC_ECONFIG (ENOMEM stays). */
static int config_err(smtpc_client *c, int rc, const char *key)
{
    if (rc == SMTPC_ENOMEM) return rc;
    char why[SMTPC__ERRMSG_MAX];
    smtpc__strlcpy(why, c->err.text, sizeof why);
    return smtpc__err(&c->err, SMTPC_ECONFIG, "%s: %s", key, why);
}

/* "1.0" .. "1.3" (the configuration checked the syntax); 0 otherwise. */
static int tls_version(const char *v)
{
    return !strcmp(v, "1.3") ? SMTPC_TLS_1_3 : !strcmp(v, "1.2") ? SMTPC_TLS_1_2
         : !strcmp(v, "1.1") ? SMTPC_TLS_1_1 : !strcmp(v, "1.0") ? SMTPC_TLS_1_0 : 0;
}

SMTPC_API int smtpc_client_use_config(smtpc_client *c, const smtpc_config *cfg, const char *account)
{
    SETTER_PROLOGUE(c);
    if (!cfg) return SMTPC_EINVAL;
    const smtpc_account *a = smtpc_config_account(cfg, account);
    if (!a) return smtpc__err(&c->err, SMTPC_ENOTFOUND, "no account \"%s\"", account ? account : "(default)");
    const char *v;
    int rc = 0;
    if ((v = smtpc_account_get(a, "tls"))) {
        smtpc_tls_mode m;
        if (smtpc_tls_mode_parse(v, &m)) return smtpc__err(&c->err, SMTPC_ECONFIG, "tls = %s: not a TLS mode", v);
        c->o.tls_mode = m;
    }
    c->o.allow_plain_auth = smtpc_account_get_bool(a, "allow-plaintext-auth", c->o.allow_plain_auth);
    int tmin = c->o.tls_min, tmax = c->o.tls_max;
    if ((v = smtpc_account_get(a, "tls-min"))) tmin = tls_version(v);
    if ((v = smtpc_account_get(a, "tls-max"))) tmax = tls_version(v);
    if (tmin && tmax && tmin > tmax) return smtpc__err(&c->err, SMTPC_ECONFIG, "tls-min is above tls-max");
    if ((rc = smtpc_client_set_tls_versions(c, tmin, tmax, c->o.tls_strict))) return config_err(c, rc, "tls-min");
    if ((v = smtpc_account_get(a, "server"))) {
        char host[256];
        uint16_t port = 0;
        if (smtpc_config_parse_server(v, host, sizeof host, &port))
            return smtpc__err(&c->err, SMTPC_ECONFIG, "server = %s: bad server", v);
        if ((rc = smtpc_client_set_host(c, host, port))) return config_err(c, rc, "server");
    }
    if ((v = smtpc_account_get(a, "port"))) {
        uint64_t n;
        if (smtpc__parse_u64(v, strlen(v), &n) || n == 0 || n > 65535)
            return smtpc__err(&c->err, SMTPC_ECONFIG, "port = %s: bad port", v);
        c->o.port = (uint16_t)n;
    }
    if ((v = smtpc_account_get(a, "user"))) {
        const char *pw = smtpc_account_get(a, "password");
        const char *pe = smtpc_account_get(a, "password-env");
        if (!pw && pe) pw = getenv(pe);
        /* without a password the one set before stays; the account's user
         * replaces a callback's identity */
        smtpc_credential_cb cb = pw ? NULL : c->cred_cb;
        if ((rc = smtpc_client_set_credentials(c, v, pw ? pw : c->o.password))) return config_err(c, rc, "user");
        c->cred_cb = cb;
    }
    if ((v = smtpc_account_get(a, "auth")) && (rc = smtpc_client_set_auth_mechanisms(c, v)))
        return config_err(c, rc, "auth");
    if ((v = smtpc_account_get(a, "ehlo-name")) && (rc = smtpc_client_set_ehlo_name(c, v)))
        return config_err(c, rc, "ehlo-name");
    if ((v = smtpc_account_get(a, "bind"))) {
        /* ADDR, ADDR:PORT, [IPv6]:PORT or a bare IPv6 address */
        char addr[256];
        uint16_t port = 0;
        const char *colon = strchr(v, ':');
        if (colon && v[0] != '[' && strchr(colon + 1, ':')) smtpc__strlcpy(addr, v, sizeof addr);
        else if (smtpc_config_parse_server(v, addr, sizeof addr, &port))
            return smtpc__err(&c->err, SMTPC_ECONFIG, "bind = %s: bad address", v);
        if ((rc = smtpc_client_set_bind(c, addr, port))) return config_err(c, rc, "bind");
    }
    /* the TLS files and names through their setters: the session's checks */
    static const struct {
        const char *key;
        int (*set)(smtpc_client *, const char *);
    } tls_keys[] = {{"ca-file", smtpc_client_set_ca_file},
                    {"ca-path", smtpc_client_set_ca_path},
                    {"tls-server-name", smtpc_client_set_tls_server_name}};
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(tls_keys); i++)
        if ((v = smtpc_account_get(a, tls_keys[i].key)) && (rc = tls_keys[i].set(c, v)))
            return config_err(c, rc, tls_keys[i].key);
    const char *cert = smtpc_account_get(a, "cert"), *key = smtpc_account_get(a, "key");
    if (key && !cert) return smtpc__err(&c->err, SMTPC_ECONFIG, "key without cert");
    if (cert && (rc = smtpc_client_set_client_cert(c, cert, key))) return config_err(c, rc, "cert");
    if ((v = smtpc_account_get(a, "pin"))) {
        /* several pins: separated by ';' ',' or blanks, as on the command line */
        char buf[2048];
        if (strlen(v) >= sizeof buf) return smtpc__err(&c->err, SMTPC_ECONFIG, "pin: too long");
        smtpc__strlcpy(buf, v, sizeof buf);
        smtpc_conn_opts_add_pin(&c->o, NULL);
        for (char *q = buf; *q;) {
            size_t n = strcspn(q, ";, \t");
            char save = q[n];
            q[n] = '\0';
            if (n && (rc = smtpc_client_add_pin(c, q))) return config_err(c, rc, "pin");
            q += n + (save ? 1 : 0);
        }
    }
    c->o.insecure = smtpc_account_get_bool(a, "insecure", c->o.insecure);
    if ((v = smtpc_account_get(a, "proxy")) && (rc = smtpc_client_set_proxy_url(c, v)))
        return config_err(c, rc, "proxy");
    int64_t t = smtpc_account_get_ms(a, "timeout", -1);
    if (t >= 0) c->o.command_ms = c->o.data_ms = t;
    t = smtpc_account_get_ms(a, "connect-timeout", -1);
    if (t >= 0) c->o.connect_ms = t;
    t = smtpc_account_get_ms(a, "greeting-timeout", -1);
    if (t >= 0) c->o.greeting_ms = c->o.auto_ms = t;
    const char *d = smtpc_account_get(a, "delivery");
    const char *pick = smtpc_account_get(a, "pickup-dir");
    const char *ob = smtpc_account_get(a, "outbox");
    if (d && !strcmp(d, "pickup") && pick) rc = set_str(c, &c->dir, pick), c->delivery = SMTPC_DELIVERY_PICKUP;
    else if (d && !strcmp(d, "outbox") && ob) rc = set_str(c, &c->dir, ob), c->delivery = SMTPC_DELIVERY_OUTBOX;
    else if (d && (!strcmp(d, "pickup") || !strcmp(d, "outbox")))
        return smtpc__err(&c->err, SMTPC_ECONFIG, "delivery = %s without its directory", d);
    else if (!d && !c->o.host && pick) rc = set_str(c, &c->dir, pick), c->delivery = SMTPC_DELIVERY_PICKUP;
    else if (d) c->delivery = SMTPC_DELIVERY_NETWORK;
    return rc;
}
