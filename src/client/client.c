/* The client: settings, send / send_async, results, retries; connections
 * come from a pool (pool.c). */
#include "client_int.h"

#include <smtpc/outbox.h>
#include <smtpc/pickup.h>
#include <smtpc/proxy.h>
#include <smtpc/tls.h>

#include "client/session_int.h"
#include "net/proxy_internal.h"
#include "util/util.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ======================================================================
 * Results
 * ====================================================================== */

typedef struct rcpt_res {
    char *addr;
    bool accepted;
    int code;
    char enh[16];
    char *text;
    unsigned attempts; /* transactions it was offered in */
    bool final;        /* delivered, refused with 5xx or unknown: never offered again */
    bool delivered;
} rcpt_res;

struct smtpc_result {
    int status;
    char errmsg[SMTPC__ERRMSG_MAX];
    size_t nrcpt;
    rcpt_res *r;
    int code;
    char enh[16];
    char *text;
    char queue_id[128];
    char msgid[256];
    char tls_version[16];
    char tls_cipher[64];
    char mech[32];
    int64_t t_connect, t_tls, t_auth, t_xfer;
    unsigned attempts;
    bool reused;
};

static const char *nz(const char *s) { return s ? s : ""; }

SMTPC_API void smtpc_result_free(smtpc_result *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nrcpt; i++) {
        free(r->r[i].addr);
        free(r->r[i].text);
    }
    free(r->r);
    free(r->text);
    free(r);
}

SMTPC_API int smtpc_result_status(const smtpc_result *r) { return r ? r->status : SMTPC_EINVAL; }
SMTPC_API smtpc_error_class smtpc_result_class(const smtpc_result *r)
{
    return smtpc_error_classify(r ? r->status : SMTPC_EINVAL);
}
SMTPC_API const char *smtpc_result_errmsg(const smtpc_result *r) { return r ? r->errmsg : ""; }
SMTPC_API size_t smtpc_result_rcpt_count(const smtpc_result *r) { return r ? r->nrcpt : 0; }
SMTPC_API const char *smtpc_result_rcpt_address(const smtpc_result *r, size_t i)
{
    return r && i < r->nrcpt ? nz(r->r[i].addr) : "";
}
SMTPC_API bool smtpc_result_rcpt_accepted(const smtpc_result *r, size_t i)
{
    return r && i < r->nrcpt && r->r[i].accepted;
}
SMTPC_API int smtpc_result_rcpt_code(const smtpc_result *r, size_t i)
{
    return r && i < r->nrcpt ? r->r[i].code : 0;
}
SMTPC_API const char *smtpc_result_rcpt_enhanced(const smtpc_result *r, size_t i)
{
    return r && i < r->nrcpt ? r->r[i].enh : "";
}
SMTPC_API const char *smtpc_result_rcpt_text(const smtpc_result *r, size_t i)
{
    return r && i < r->nrcpt ? nz(r->r[i].text) : "";
}
SMTPC_API int smtpc_result_reply_code(const smtpc_result *r) { return r ? r->code : 0; }
SMTPC_API const char *smtpc_result_reply_enhanced(const smtpc_result *r) { return r ? r->enh : ""; }
SMTPC_API const char *smtpc_result_reply_text(const smtpc_result *r) { return r ? nz(r->text) : ""; }
SMTPC_API const char *smtpc_result_queue_id(const smtpc_result *r) { return r ? r->queue_id : ""; }
SMTPC_API const char *smtpc_result_message_id(const smtpc_result *r) { return r ? r->msgid : ""; }
SMTPC_API const char *smtpc_result_tls_version(const smtpc_result *r) { return r ? r->tls_version : ""; }
SMTPC_API const char *smtpc_result_tls_cipher(const smtpc_result *r) { return r ? r->tls_cipher : ""; }
SMTPC_API const char *smtpc_result_auth_mechanism(const smtpc_result *r) { return r ? r->mech : ""; }
SMTPC_API int64_t smtpc_result_connect_us(const smtpc_result *r) { return r ? r->t_connect : 0; }
SMTPC_API int64_t smtpc_result_tls_us(const smtpc_result *r) { return r ? r->t_tls : 0; }
SMTPC_API int64_t smtpc_result_auth_us(const smtpc_result *r) { return r ? r->t_auth : 0; }
SMTPC_API int64_t smtpc_result_transfer_us(const smtpc_result *r) { return r ? r->t_xfer : 0; }
SMTPC_API unsigned smtpc_result_attempts(const smtpc_result *r) { return r ? r->attempts : 0; }
SMTPC_API bool smtpc_result_reused_connection(const smtpc_result *r) { return r && r->reused; }
SMTPC_API unsigned smtpc_result_rcpt_attempts(const smtpc_result *r, size_t i)
{
    return r && i < r->nrcpt ? r->r[i].attempts : 0;
}

/* ---- queue ids ---- */

static bool id_char(unsigned char ch)
{
    return isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '@' || ch == '/' || ch == '+' ||
           ch == '=';
}

/* Copies the token at p (id characters, trailing '.' dropped). */
static bool take_token(const char *p, char *out, size_t outlen)
{
    size_t n = 0;
    while (p[n] && id_char((unsigned char)p[n])) n++;
    while (n && p[n - 1] == '.') n--;
    if (n == 0 || outlen == 0) return false;
    if (n >= outlen) n = outlen - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

static const char *find_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (smtpc__strncasecmp(p, needle, n) == 0) return p;
    return NULL;
}

SMTPC_API bool smtpc_parse_queue_id(const char *text, char *out, size_t outlen)
{
    if (!text || !out || outlen == 0) return false;
    out[0] = '\0';
    const char *p;
    /* Postfix, aiosmtpd-style: "Ok: queued as 4FxyZ1"; "queued as <id>" */
    if ((p = find_ci(text, "queued as "))) {
        p += 10;
        while (*p == ' ' || *p == '<') p++;
        return take_token(p, out, outlen);
    }
    /* Exchange: "... [InternalId=123, Hostname=...] Queued mail for delivery" */
    if ((p = find_ci(text, "InternalId="))) return take_token(p + 11, out, outlen);
    /* Exim "OK id=1abc-00..", generic "id=..." (a word boundary before it) */
    for (p = text; (p = find_ci(p, "id=")); p += 3)
        if (p == text || !isalnum((unsigned char)p[-1])) return take_token(p + 3, out, outlen);
    /* Gmail: "OK  1700000000 x12si345abc.67 - gsmtp": the token before " - gsmtp" */
    if ((p = find_ci(text, " - gsmtp"))) {
        const char *e = p;
        const char *b = e;
        while (b > text && b[-1] != ' ') b--;
        size_t n = (size_t)(e - b);
        if (n && n < outlen) {
            memcpy(out, b, n);
            out[n] = '\0';
            return true;
        }
        return false;
    }
    /* sendmail: "4AB1cd02 Message accepted for delivery" */
    if ((p = find_ci(text, " Message accepted"))) {
        const char *b = p;
        while (b > text && b[-1] != ' ') b--;
        size_t n = (size_t)(p - b);
        if (n && n < outlen) {
            memcpy(out, b, n);
            out[n] = '\0';
            return true;
        }
    }
    return false;
}

/* ======================================================================
 * Client
 * ====================================================================== */

struct smtpc_client {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_bool busy;
    atomic_bool canceled;
    smtpc_session *cur; /* the session a send is using, for cancel (under mu) */

    /* every connection setting (its credentials: the fixed ones; the
     * callbacks below give a send's identity instead) */
    smtpc_conn_opts o;
    smtpc_credential_cb cred_cb;
    void *cred_ud;
    smtpc_identity_cb ident_cb;
    void *ident_ud;
    int64_t timeout_ms;  /* per attempt */
    int64_t deadline_ms; /* per connection, from its connect */
    smtpc_delivery delivery;
    char *dir;
    bool strict;
    smtpc_dsn_policy dsn_policy;
    bool use_bdat;
    smtpc_retry_policy retry;
    smtpc_pool *own_pool;
    smtpc_pool *pool;
    smtpc__errmsg err;

    /* async: one worker thread, started at the first send_async */
    pthread_t thr;
    bool thr_started;
    bool stop;
    bool job;
    smtpc_message *job_m;
    const smtpc_send_params *job_params;
    smtpc_send_cb job_cb;
    void *job_ud;
};

static void default_retry(smtpc_retry_policy *p)
{
    p->attempts = 1;
    p->initial_delay_ms = 1000;
    p->backoff_factor = 2.0;
    p->max_delay_ms = 60000;
}

SMTPC_API int smtpc_client_new(smtpc_client **out)
{
    if (!out) return SMTPC_EINVAL;
    smtpc_client *c = calloc(1, sizeof *c);
    if (!c) return SMTPC_ENOMEM;
    if (smtpc__pool_new_private(&c->own_pool)) {
        free(c);
        return SMTPC_ENOMEM;
    }
    c->pool = c->own_pool;
    smtpc__conn_opts_init(&c->o);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    default_retry(&c->retry);
    *out = c;
    return 0;
}

SMTPC_API void smtpc_client_free(smtpc_client *c)
{
    if (!c) return;
    if (c->thr_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thr, NULL);
    }
    smtpc_pool_free(c->own_pool);
    smtpc__conn_opts_clear(&c->o);
    free(c->dir);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

SMTPC_API const char *smtpc_client_errmsg(const smtpc_client *c) { return c ? c->err.text : "no client"; }
SMTPC_API bool smtpc_client_busy(const smtpc_client *c) { return c && atomic_load(&((smtpc_client *)c)->busy); }

int smtpc__client_enter(smtpc_client *c)
{
    bool expect = false;
    if (!atomic_compare_exchange_strong(&c->busy, &expect, true))
        return smtpc__err(&c->err, SMTPC_EBUSY, "operation in progress");
    atomic_store(&c->canceled, false);
    return 0;
}

void smtpc__client_leave(smtpc_client *c) { atomic_store(&c->busy, false); }

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

SMTPC_API int smtpc_client_set_retry(smtpc_client *c, const smtpc_retry_policy *p)
{
    SETTER_PROLOGUE(c);
    if (!p) {
        default_retry(&c->retry);
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

/* ======================================================================
 * Sending
 * ====================================================================== */

/* The identity a send authenticates with, asked once per send before a
 * pooled connection is chosen (a callback may answer differently each
 * time). Wiped after the send. */
typedef struct ident {
    const char *user; /* NULL = no AUTH */
    const char *pass; /* NULL = none (e.g. EXTERNAL) */
    char ubuf[256];
    char pbuf[1024];
    char hash[65];    /* hex of SHA-256(salt || pass); "-" without a password */
} ident;

static unsigned char g_salt[32];
static pthread_once_t g_salt_once = PTHREAD_ONCE_INIT;

/* A per-process random salt: the key never holds the password, nor a hash
 * that could be looked up or compared across processes. */
static void salt_init(void)
{
    if (RAND_bytes(g_salt, (int)sizeof g_salt) != 1) {
        uint64_t t = (uint64_t)smtpc__now_us();
        memcpy(g_salt, &t, sizeof t); /* still a hash; only weaker against guessing */
    }
}

static int secret_hash(const char *pass, char out[65])
{
    if (!pass) {
        smtpc__strlcpy(out, "-", 65);
        return 0;
    }
    pthread_once(&g_salt_once, salt_init);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    int ok = m && EVP_DigestInit_ex(m, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(m, g_salt, sizeof g_salt) == 1 && EVP_DigestUpdate(m, pass, strlen(pass)) == 1 &&
             EVP_DigestFinal_ex(m, md, &ml) == 1 && ml == 32;
    EVP_MD_CTX_free(m);
    if (!ok) return SMTPC_ENOMEM;
    static const char hx[] = "0123456789abcdef";
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hx[md[i] >> 4];
        out[2 * i + 1] = hx[md[i] & 15];
    }
    out[64] = '\0';
    smtpc__secure_zero(md, sizeof md);
    return 0;
}

static void ident_wipe(ident *id)
{
    smtpc__secure_zero(id, sizeof *id);
}

static int get_identity(smtpc_client *c, ident *id)
{
    memset(id, 0, sizeof *id);
    int rc = 0;
    if (c->ident_cb) {
        rc = c->ident_cb(c->ident_ud, id->ubuf, sizeof id->ubuf, id->pbuf, sizeof id->pbuf);
        id->ubuf[sizeof id->ubuf - 1] = '\0';
        id->pbuf[sizeof id->pbuf - 1] = '\0';
        if (rc) return smtpc__err(&c->err, rc < 0 ? rc : SMTPC_EAUTH, "the identity callback failed");
        /* The key separates its fields with control characters. */
        if (smtpc__has_ctl(id->ubuf))
            return smtpc__err(&c->err, SMTPC_EINVAL, "the identity callback gave a user name with control characters");
        if (id->ubuf[0]) {
            id->user = id->ubuf;
            id->pass = id->pbuf;
        }
    } else if (c->o.user) {
        id->user = c->o.user;
        id->pass = c->o.password;
        if (!c->o.password && c->cred_cb) {
            rc = c->cred_cb(c->cred_ud, c->o.user, id->pbuf, sizeof id->pbuf);
            id->pbuf[sizeof id->pbuf - 1] = '\0';
            if (rc) return smtpc__err(&c->err, rc < 0 ? rc : SMTPC_EAUTH, "the credential callback failed");
            id->pass = id->pbuf;
        }
    }
    if (secret_hash(id->pass, id->hash)) return smtpc__err(&c->err, SMTPC_ENOMEM, "SHA-256 is not available");
    return 0;
}

/* Everything that makes two connections interchangeable: where it goes
 * and through what, how it is protected (every TLS setting), and who it
 * is (the user name and the salted hash of the password, never the
 * password; the proxy's redacted URL and the hash of its password). The
 * fields are separated by a control character, which no field holds. */
static char *pool_key(const smtpc_client *c, const ident *id)
{
    const smtpc_conn_opts *o = &c->o;
    char proxy_hash[65] = "-", token_hash[65];
    if (o->proxy && secret_hash(o->proxy->pass, proxy_hash)) return NULL;
    if (secret_hash(o->oauth_token, token_hash)) return NULL;
    smtpc__buf b;
    smtpc__buf_init(&b, 1u << 16);
    int rc = smtpc__buf_printf(&b, "%s\x1f%u\x1f%d\x1f%d%d\x1f%s\x1f%d\x1f%s\x1f%s\x1f%s%s\x1f%s\x1f%d:%llx\x1f%s\x1f%s:%u\x1f%d\x1f%s",
                               o->host, smtpc__conn_opts_port(o), (int)o->tls_mode, o->insecure, o->allow_plain_auth,
                               nz(o->ca_file), o->tls_min, o->proxy ? smtpc_proxy_redacted(o->proxy) : "-", proxy_hash,
                               id->user ? "u" : "-", nz(id->user), id->hash, o->auth_list_set,
                               (unsigned long long)o->auth_list, nz(o->authzid), nz(o->bind_addr), o->bind_port,
                               o->family, nz(o->ehlo_name));
    if (!rc)
        rc = smtpc__buf_printf(&b, "\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%d%d\x1f%s\x1f%p:%p", nz(o->ca_path),
                               nz(o->tls_name), nz(o->cert_file), nz(o->key_file), o->pins, o->tls_max, o->tls_strict,
                               token_hash, (void *)(uintptr_t)o->token_cb, o->token_ud);
    if (!rc) rc = smtpc__buf_append(&b, "", 1);
    if (rc) {
        smtpc__buf_free_secure(&b);
        return NULL;
    }
    return (char *)b.data; /* off is 0: nothing was consumed */
}

static void publish(smtpc_client *c, smtpc_session *s)
{
    pthread_mutex_lock(&c->mu);
    c->cur = s;
    if (s && atomic_load(&c->canceled)) smtpc_session_cancel(s);
    pthread_mutex_unlock(&c->mu);
}

SMTPC_API void smtpc_client_cancel_async(smtpc_client *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    if (atomic_load(&c->busy)) {
        atomic_store(&c->canceled, true);
        if (c->cur) smtpc_session_cancel(c->cur);
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

/* Timestamps of the security steps, from the session's trace while it opens. */
typedef struct open_trace {
    int64_t starttls_sent, tls_done, auth_sent, auth_done, t0;
} open_trace;

static void on_trace(void *ud, smtpc_trace_dir dir, const char *line, size_t len)
{
    open_trace *t = ud;
    int64_t now = smtpc__now_us();
    if (dir == SMTPC_TRACE_SENT && len >= 8 && !smtpc__strncasecmp(line, "STARTTLS", 8)) t->starttls_sent = now;
    else if (dir == SMTPC_TRACE_INFO && len >= 13 && !strncmp(line, "TLS handshake", 13)) t->tls_done = now;
    else if (dir == SMTPC_TRACE_SENT && len >= 5 && !smtpc__strncasecmp(line, "AUTH ", 5) && !t->auth_sent)
        t->auth_sent = now;
    else if (dir == SMTPC_TRACE_RECEIVED && len >= 3 && !strncmp(line, "235", 3)) t->auth_done = now;
}

/* The smaller of two optional bounds (0 = none). */
static int64_t min_set(int64_t a, int64_t b)
{
    if (!a) return b;
    if (!b) return a;
    return a < b ? a : b;
}

/* Before an attempt on a re-used connection: its connection deadline and
 * a fresh per-attempt timeout, whichever comes first. false: the
 * connection is past its deadline (or nearly): not to be used. */
static bool rearm_deadline(const smtpc_client *c, smtpc__pconn *pc)
{
    if (!c->timeout_ms && !c->deadline_ms) return true;
    int64_t now = smtpc__now_ms();
    int64_t at = -1, ms = 0;
    if (c->deadline_ms) {
        at = pc->opened_ms + c->deadline_ms;
        ms = c->deadline_ms;
        if (at - now < 100) return false; /* nothing useful fits in what is left */
    }
    if (c->timeout_ms && (at < 0 || now + c->timeout_ms < at)) {
        at = now + c->timeout_ms;
        ms = c->timeout_ms;
    }
    smtpc__session_set_deadline_at(pc->s, at + 1, ms);
    return true;
}

static int open_session(smtpc_client *c, smtpc__pconn *pc, const ident *id, smtpc_result *res)
{
    smtpc_session *s;
    int rc = smtpc_session_new(&s);
    if (rc) return smtpc__err(&c->err, rc, "session: %s", smtpc_strerror(rc));
    pc->s = s;
    smtpc__pool_count_open(c->pool);
    /* Every connection setting in one call; then what is the client's own:
     * the greeting waits as long as a connect timeout set alone, the
     * overall bounds, and a callback's identity for this send. */
    rc = smtpc_session_set_conn_opts(s, &c->o);
    if (!rc && !c->o.greeting_ms && c->o.connect_ms)
        rc = smtpc_session_set_greeting_timeout_ms(s, c->o.connect_ms);
    /* A new connection: its attempt and the connection start together. */
    int64_t bound = min_set(c->timeout_ms, c->deadline_ms);
    if (!rc && bound) rc = smtpc_session_set_deadline_ms(s, bound);
    pc->opened_ms = smtpc__now_ms();
    if (!rc && (c->cred_cb || c->ident_cb)) rc = smtpc_session_set_credentials(s, id->user, id->pass);
    if (rc) return smtpc__err(&c->err, rc, "settings: %s", smtpc_session_errmsg(s));
    publish(c, s);
    open_trace tr;
    memset(&tr, 0, sizeof tr);
    smtpc_session_set_trace(s, on_trace, &tr);
    int64_t t0 = smtpc__now_us();
    rc = smtpc_session_open(s, NULL, 0); /* the server of c->o */
    int64_t t1 = smtpc__now_us();
    smtpc_session_set_trace(s, NULL, NULL); /* no per-line cost while sending */
    res->t_tls = tr.tls_done && tr.starttls_sent ? tr.tls_done - tr.starttls_sent : 0;
    res->t_auth = tr.auth_done && tr.auth_sent ? tr.auth_done - tr.auth_sent : 0;
    res->t_connect = (t1 - t0) - res->t_tls - res->t_auth;
    const smtpc_tls_info *ti = smtpc_session_tls_info(s);
    if (ti) {
        smtpc__strlcpy(res->tls_version, ti->version, sizeof res->tls_version);
        smtpc__strlcpy(res->tls_cipher, ti->cipher, sizeof res->tls_cipher);
    }
    smtpc__strlcpy(res->mech, nz(smtpc_session_auth_mechanism(s)), sizeof res->mech);
    if (rc) {
        smtpc__err(&c->err, rc, "%s", smtpc_session_errmsg(s));
        const smtpc_reply *r = smtpc_session_reply(s);
        if (r) {
            res->code = smtpc_reply_code(r);
            smtpc__strlcpy(res->enh, smtpc_reply_enhanced(r), sizeof res->enh);
            free(res->text);
            res->text = smtpc__strdup(smtpc_reply_text(r));
        }
    }
    return rc;
}

/* A body reader that remembers whether it was read. */
typedef struct body_run {
    const smtpc__body *b;
    smtpc_message_writer *w;
    const uint8_t *mp;
    size_t mleft;
    bool touched;
} body_run;

static ssize_t body_read(void *ud, void *buf, size_t len)
{
    body_run *r = ud;
    r->touched = true;
    if (r->w) return smtpc_message_writer_read(r->w, buf, len);
    if (r->b->cb) return r->b->cb(r->b->ud, buf, len);
    size_t n = r->mleft < len ? r->mleft : len;
    memcpy(buf, r->mp, n);
    r->mp += n;
    r->mleft -= n;
    return (ssize_t)n;
}

/* Recipient j of the transaction is res->r[idx ? idx[j] : j]. A recipient
 * without a RCPT reply this time keeps the reply of its previous attempt.
 * Once the message was delivered to some recipients, only a successful
 * retry replaces the final reply and the queue id. */
static void take_results(smtpc_client *c, smtpc_session *s, smtpc_result *res, int rc, const size_t *idx)
{
    bool delivered = false;
    for (size_t i = 0; i < res->nrcpt; i++) delivered |= res->r[i].delivered;
    size_t n = smtpc_session_rcpt_count(s);
    for (size_t j = 0; j < n; j++) {
        size_t i = idx ? idx[j] : j;
        if (i >= res->nrcpt) continue;
        rcpt_res *rr = &res->r[i];
        int st = smtpc_session_rcpt_status(s, j);
        const smtpc_reply *r = smtpc_session_rcpt_reply(s, j);
        rr->attempts++;
        if (r) {
            rr->accepted = st == 0;
            rr->code = smtpc_reply_code(r);
            smtpc__strlcpy(rr->enh, smtpc_reply_enhanced(r), sizeof rr->enh);
            free(rr->text);
            rr->text = smtpc__strdup(smtpc_reply_text(r));
        }
        /* Only a 4xx to RCPT, or a transaction that failed transiently
         * as a whole, leaves a recipient to retry. */
        if (st == SMTPC_EPERMFAIL || rc == SMTPC_EUNKNOWN || rc == SMTPC_ECANCELED) rr->final = true;
        else if (rc == 0 && st == 0) rr->final = rr->delivered = true;
    }
    if (delivered && rc != 0) {
        smtpc__err(&c->err, rc, "%s", smtpc_session_errmsg(s));
        return;
    }
    const smtpc_reply *r = smtpc_session_reply(s);
    res->code = smtpc_reply_code(r);
    smtpc__strlcpy(res->enh, r ? smtpc_reply_enhanced(r) : "", sizeof res->enh);
    free(res->text);
    res->text = r ? smtpc__strdup(smtpc_reply_text(r)) : NULL;
    res->queue_id[0] = '\0';
    if (rc == 0 && r) smtpc_parse_queue_id(smtpc_reply_text(r), res->queue_id, sizeof res->queue_id);
    if (rc) smtpc__err(&c->err, rc, "%s", smtpc_session_errmsg(s));
}

/* Failures of a re-used connection that show it was dead or closing before
 * the server took the message: safe to repeat once on a fresh connection.
 * The session reports a loss after the final dot as SMTPC_EUNKNOWN, so a
 * network error here is before it; a 421 is a refusal whenever it comes; a
 * protocol error (e.g. a server that keeps answering the pipelined commands
 * after its 421) only counts while the body was not started. */
static bool stale_failure(int rc, smtpc_session *s, bool body_started)
{
    if (rc == SMTPC_EUNKNOWN || rc == SMTPC_ECANCELED || rc == 0) return false;
    if (rc == SMTPC_ECLOSED || rc == SMTPC_ENETWORK) return true;
    if (smtpc_reply_code(smtpc_session_reply(s)) == 421) return true;
    return rc == SMTPC_EPROTO && !body_started && !smtpc_session_is_connected(s);
}

/* ---- DSN (RFC 3461) ---- */

static bool want_dsn(const smtpc_send_params *p)
{
    if (!p) return false;
    if (p->dsn_ret || p->dsn_envid || p->dsn_notify) return true;
    for (size_t i = 0; p->rcpt && i < p->nrcpt; i++)
        if (p->rcpt[i].dsn_notify || p->rcpt[i].dsn_orcpt) return true;
    return false;
}

static bool notify_ok(const char *n)
{
    if (!smtpc__strcasecmp(n, "NEVER")) return true;
    for (const char *p = n;;) {
        size_t l = strcspn(p, ",");
        if (!((l == 7 && !smtpc__strncasecmp(p, "SUCCESS", 7)) ||
              (l == 7 && !smtpc__strncasecmp(p, "FAILURE", 7)) ||
              (l == 5 && !smtpc__strncasecmp(p, "DELAY", 5))))
            return false;
        if (!p[l]) return true;
        p += l + 1;
    }
}

/* Checked before anything is sent: with the ignore policy a server without
 * DSN would otherwise hide a caller's mistake. */
static int check_params(smtpc_client *c, const smtpc_send_params *p, size_t nrcpts)
{
    if (!p) return 0;
    if (p->dsn_ret && smtpc__strcasecmp(p->dsn_ret, "FULL") && smtpc__strcasecmp(p->dsn_ret, "HDRS"))
        return smtpc__err(&c->err, SMTPC_EINVAL, "DSN RET must be FULL or HDRS");
    if (p->rcpt && p->nrcpt != nrcpts)
        return smtpc__err(&c->err, SMTPC_EINVAL, "DSN: %zu recipient entries for %zu recipients",
                          p->nrcpt, nrcpts);
    if (p->dsn_notify && !notify_ok(p->dsn_notify))
        return smtpc__err(&c->err, SMTPC_EINVAL, "DSN NOTIFY must be NEVER or a list of SUCCESS,FAILURE,DELAY");
    for (size_t i = 0; p->rcpt && i < p->nrcpt; i++)
        if (p->rcpt[i].dsn_notify && !notify_ok(p->rcpt[i].dsn_notify))
            return smtpc__err(&c->err, SMTPC_EINVAL,
                              "DSN NOTIFY of recipient %zu must be NEVER or a list of SUCCESS,FAILURE,DELAY", i);
    return 0;
}

/* The MAIL and RCPT parameters for the recipients of b (*ro: malloc'ed, one
 * per recipient). */
static int dsn_apply(smtpc_client *c, const smtpc__body *b, smtpc_mail_opts *mo, smtpc_rcpt_opts **ro)
{
    const smtpc_send_params *p = b->params;
    mo->dsn_ret = p->dsn_ret;
    mo->dsn_envid = p->dsn_envid;
    smtpc_rcpt_opts *r = calloc(b->nrcpts, sizeof *r);
    if (!r) return smtpc__err(&c->err, SMTPC_ENOMEM, "out of memory");
    for (size_t j = 0; j < b->nrcpts; j++) {
        size_t i = b->idx ? b->idx[j] : j;
        const smtpc_rcpt_opts *o = p->rcpt && i < p->nrcpt ? &p->rcpt[i] : NULL;
        r[j].dsn_notify = o && o->dsn_notify ? o->dsn_notify : p->dsn_notify;
        r[j].dsn_orcpt = o ? o->dsn_orcpt : NULL;
    }
    *ro = r;
    return 0;
}

/* A pooled connection for key: an idle one (RSET after an unclean
 * transaction, NOOP after a long idle; one past its deadline or dead while
 * idle is replaced, which is not an attempt) or a new one. */
static int get_conn(smtpc_client *c, const char *key, const ident *id, smtpc_result *res,
                    smtpc__pconn **out, bool *reused)
{
    for (;;) {
        smtpc__pconn *pc;
        bool check;
        int rc = smtpc__pool_acquire(c->pool, key, &c->canceled, &pc, &check);
        if (rc) return smtpc__err(&c->err, rc, "waiting for a pooled connection: %s", smtpc_strerror(rc));
        if (!pc->s) {
            rc = open_session(c, pc, id, res);
            if (rc) {
                publish(c, NULL);
                smtpc__pool_release(c->pool, pc, false, false);
                return rc;
            }
            *out = pc;
            *reused = false;
            return 0;
        }
        if (!rearm_deadline(c, pc)) {
            smtpc__pool_release(c->pool, pc, false, true); /* past its connection deadline */
            continue;
        }
        publish(c, pc->s);
        int prc = 0;
        if (pc->dirty) prc = smtpc_session_rset(pc->s);
        else if (check) prc = smtpc_session_noop(pc->s);
        if (prc) {
            publish(c, NULL);
            smtpc__pool_release(c->pool, pc, false, prc != SMTPC_ECANCELED); /* dead while idle */
            if (prc == SMTPC_ECANCELED || atomic_load(&c->canceled))
                return smtpc__err(&c->err, SMTPC_ECANCELED, "canceled");
            continue;
        }
        pc->dirty = false;
        *out = pc;
        *reused = true;
        return 0;
    }
}

/* Canceled while waiting for the reply to the final dot: the server may
 * have taken the message. Unknown, never "canceled" (a caller would resend). */
static int unknown_if_after_dot(smtpc_client *c, smtpc_session *s, int rc)
{
    if (rc != SMTPC_ECANCELED || !strstr(smtpc_session_errmsg(s), "may have been delivered")) return rc;
    char d[SMTPC__ERRMSG_MAX];
    smtpc__strlcpy(d, smtpc_session_errmsg(s), sizeof d);
    return smtpc__err(&c->err, SMTPC_EUNKNOWN, "%s", d);
}

/* The body reader and the MAIL parameters for b on this server: a message
 * gets a writer for the server's 8BITMIME/SMTPUTF8, SIZE= where known. */
static int prep_body(smtpc_client *c, smtpc_session *s, const smtpc__body *b, body_run *run,
                     smtpc_mail_opts *mo)
{
    memset(run, 0, sizeof *run);
    memset(mo, 0, sizeof *mo);
    run->b = b;
    bool ext8 = smtpc_session_has_ext(s, "8BITMIME");
    bool has_size = smtpc_session_has_ext(s, "SIZE");
    if (b->m) {
        bool needu = smtpc_message_needs_smtputf8(b->m);
        if (needu && !smtpc_session_has_ext(s, "SMTPUTF8"))
            return smtpc__err(&c->err, SMTPC_EUNSUPPORTED,
                              "the message needs SMTPUTF8 and the server does not offer it");
        int rc = smtpc_message_writer_new(&run->w, b->m, (ext8 ? SMTPC_WRITE_8BITMIME : 0u) |
                                                             (needu ? SMTPC_WRITE_SMTPUTF8 : 0u));
        if (rc) return smtpc__err(&c->err, rc, "message: %s", smtpc_message_errmsg(b->m));
        int64_t sz = smtpc_message_writer_size(run->w);
        if (has_size && sz > 0) mo->size = (uint64_t)sz;
        mo->body_8bitmime = ext8;
        mo->smtputf8 = needu;
    } else if (b->mem || !b->cb) {
        run->mp = b->mem;
        run->mleft = b->len;
        if (has_size) mo->size = b->len;
        mo->body_8bitmime = ext8 && smtpc__has_8bit(b->mem, b->len);
    }
    return 0;
}

/* One attempt: a connection from the pool (re-used or new), one
 * transaction. *body_touched tells whether the body was read. */
static int attempt(smtpc_client *c, const smtpc__body *b, const char *key, const ident *id, smtpc_result *res,
                   bool *body_touched)
{
    bool fresh_retry_done = false;
    *body_touched = false;
again:;
    smtpc__pconn *pc;
    bool reused;
    res->t_connect = res->t_tls = res->t_auth = res->t_xfer = 0;
    int rc = get_conn(c, key, id, res, &pc, &reused);
    if (rc) return rc;
    smtpc_session *s = pc->s;
    res->reused = reused;
    if (reused) {
        const smtpc_tls_info *ti = smtpc_session_tls_info(s);
        smtpc__strlcpy(res->tls_version, ti ? ti->version : "", sizeof res->tls_version);
        smtpc__strlcpy(res->tls_cipher, ti ? ti->cipher : "", sizeof res->tls_cipher);
        smtpc__strlcpy(res->mech, nz(smtpc_session_auth_mechanism(s)), sizeof res->mech);
    }

    /* The envelope and the body for this server. */
    body_run run;
    smtpc_mail_opts mo;
    rc = prep_body(c, s, b, &run, &mo);
    if (rc) goto done_nosend;
    if (b->m) smtpc__strlcpy(res->msgid, nz(smtpc_message_message_id(b->m)), sizeof res->msgid);
    smtpc_rcpt_opts *ro = NULL;
    if (want_dsn(b->params)) {
        if (smtpc_session_has_ext(s, "DSN")) {
            rc = dsn_apply(c, b, &mo, &ro);
            if (rc) goto done_nosend;
        } else if (c->dsn_policy == SMTPC_DSN_REQUIRE) {
            rc = smtpc__err(&c->err, SMTPC_EUNSUPPORTED,
                            "DSN (NOTIFY, RET, ENVID or ORCPT) was asked for and the server does "
                            "not offer DSN; nothing was sent (DSN policy: require)");
            goto done_nosend;
        }
    }
    smtpc_envelope env;
    memset(&env, 0, sizeof env);
    env.from = b->from;
    env.rcpts = b->rcpts;
    env.nrcpts = b->nrcpts;
    env.mail = &mo;
    env.rcpt = ro;
    env.all_or_nothing = c->strict;
    env.use_bdat = c->use_bdat && smtpc_session_has_ext(s, "CHUNKING");
    int64_t t0 = smtpc__now_us();
    rc = smtpc_session_send(s, &env, body_read, &run);
    res->t_xfer = smtpc__now_us() - t0;
    free(ro);
    smtpc_message_writer_free(run.w);
    *body_touched = run.touched;
    take_results(c, s, res, rc, b->idx);
    rc = unknown_if_after_dot(c, s, rc);
    if (rc == 0) pc->msgs++;
    if (rc && reused && !fresh_retry_done && stale_failure(rc, s, run.touched) &&
        (!run.touched || b->m || b->mem || b->rewind)) {
        /* nodemailer's idle-connection loss: the server had closed (or was
         * closing) the connection before it took the message. Once on a fresh one. */
        if (run.touched && b->rewind && b->rewind(b->ud)) goto done;
        fresh_retry_done = true;
        publish(c, NULL);
        smtpc__pool_release(c->pool, pc, false, false);
        goto again;
    }
    goto done;
done_nosend:
    smtpc_message_writer_free(run.w);
done:
    publish(c, NULL);
    pc->dirty = rc != 0;
    smtpc__pool_release(c->pool, pc, rc != SMTPC_ECANCELED && !atomic_load(&c->canceled),
                        rc != SMTPC_ECANCELED);
    return rc;
}

static bool retryable(int rc)
{
    return rc == SMTPC_ETEMPFAIL || rc == SMTPC_ENETWORK || rc == SMTPC_ECLOSED ||
           rc == SMTPC_ETIMEDOUT || rc == SMTPC_ENOHOST;
}

/* Sleeps ms unless canceled; returns true when canceled. */
static bool sleep_cancelable(smtpc_client *c, int64_t ms)
{
    int64_t end = smtpc__now_ms() + ms;
    pthread_mutex_lock(&c->mu);
    while (!atomic_load(&c->canceled)) {
        int64_t left = end - smtpc__now_ms();
        if (left <= 0) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t step = left < 100 ? left : 100;
        ts.tv_nsec += (long)(step * 1000000);
        while (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    bool canceled = atomic_load(&c->canceled);
    pthread_mutex_unlock(&c->mu);
    return canceled;
}

/* A result with one entry per recipient of b, or NULL. */
static smtpc_result *result_for(const smtpc__body *b)
{
    smtpc_result *res = calloc(1, sizeof *res);
    if (!res) return NULL;
    res->nrcpt = b->nrcpts;
    res->r = calloc(b->nrcpts ? b->nrcpts : 1, sizeof *res->r);
    for (size_t i = 0; res->r && i < b->nrcpts; i++) {
        if (!(res->r[i].addr = smtpc__strdup(b->rcpts[i]))) {
            res->nrcpt = i;
            smtpc_result_free(res);
            return NULL;
        }
    }
    if (!res->r) {
        free(res);
        return NULL;
    }
    return res;
}

static int deliver_attempts(smtpc_client *c, const smtpc__body *b, bool use_retry, smtpc_result *res,
                            unsigned k0, int last);

int smtpc__client_deliver(smtpc_client *c, const smtpc__body *b, bool use_retry, smtpc_result **out)
{
    smtpc_result *res = result_for(b);
    if (!res) return SMTPC_ENOMEM;
    int rc = deliver_attempts(c, b, use_retry, res, 1, 0);
    if (out) *out = res;
    else smtpc_result_free(res);
    return rc;
}

/* Attempts k0, k0+1 ... (per the retry policy) for the recipients of res
 * that are not final; k0 > 1 continues after an attempt made elsewhere (a
 * batch) that ended with last: waits the first delay before it. */
static int deliver_attempts(smtpc_client *c, const smtpc__body *b, bool use_retry, smtpc_result *res,
                            unsigned k0, int last)
{
    int rc = 0;
    if (!rc && !c->o.host) rc = smtpc__err(&c->err, SMTPC_ECONFIG, "no server configured");
    /* Per send, before a pooled connection is chosen: a callback's identity
     * is part of the key. */
    ident id;
    char *key = NULL;
    if (!rc) rc = get_identity(c, &id);
    else memset(&id, 0, sizeof id);
    if (!rc && !(key = pool_key(c, &id))) rc = SMTPC_ENOMEM;
    unsigned max = use_retry ? c->retry.attempts : 1;
    int64_t delay = c->retry.initial_delay_ms;
    /* Each attempt offers the recipients that are not final yet: all of
     * them at first, then those that got 4xx (or whose transaction failed
     * transiently); never one that got 2xx in a delivered transaction. */
    const char **sub = NULL;
    size_t *idx = NULL;
    if (!rc && (!(sub = calloc(b->nrcpts, sizeof *sub)) || !(idx = calloc(b->nrcpts, sizeof *idx))))
        rc = SMTPC_ENOMEM;
    bool delivered = k0 > 1 && last == 0, unknown = false;
    if (!rc && k0 > 1) {
        int64_t d = c->retry.initial_delay_ms < c->retry.max_delay_ms ? c->retry.initial_delay_ms
                                                                       : c->retry.max_delay_ms;
        if (sleep_cancelable(c, d)) rc = smtpc__err(&c->err, SMTPC_ECANCELED, "canceled while waiting to retry");
        double nd = (double)delay * c->retry.backoff_factor;
        delay = nd > 9e15 ? INT64_MAX / 2 : (int64_t)nd;
    }
    for (unsigned k = k0; !rc; k++) {
        size_t ns = 0;
        for (size_t i = 0; i < b->nrcpts; i++)
            if (!res->r[i].final) {
                sub[ns] = b->rcpts[i];
                idx[ns++] = i;
            }
        if (ns == 0) break;
        smtpc__body sb = *b;
        sb.rcpts = sub;
        sb.nrcpts = ns;
        sb.idx = idx;
        bool touched;
        res->attempts = k;
        last = attempt(c, &sb, key, &id, res, &touched);
        if (last == 0) delivered = true;
        if (last == SMTPC_EUNKNOWN) unknown = true;
        if (k >= max || !(last == 0 || retryable(last))) break;
        if (last == 0) {
            bool pending = false;
            for (size_t i = 0; i < b->nrcpts; i++) pending |= !res->r[i].final;
            if (!pending) break;
        }
        if (touched && !b->m && !b->mem) {
            if (!b->rewind || b->rewind(b->ud)) break; /* the body is gone */
        }
        int64_t d = delay < c->retry.max_delay_ms ? delay : c->retry.max_delay_ms;
        if (sleep_cancelable(c, d)) {
            last = smtpc__err(&c->err, SMTPC_ECANCELED, "canceled while waiting to retry");
            break;
        }
        double nd = (double)delay * c->retry.backoff_factor;
        delay = nd > 9e15 ? INT64_MAX / 2 : (int64_t)nd;
    }
    free(sub);
    free(idx);
    if (key) {
        smtpc__secure_zero(key, strlen(key));
        free(key);
    }
    ident_wipe(&id);
    /* Delivered to some: the send succeeded (the others' outcomes are in
     * the result), unless a retry may have delivered without telling. */
    if (!rc) rc = unknown ? SMTPC_EUNKNOWN : delivered ? 0 : last;
    if (rc == SMTPC_ECANCELED || atomic_load(&c->canceled)) {
        if (rc != 0 && rc != SMTPC_EUNKNOWN) rc = SMTPC_ECANCELED;
    }
    res->status = rc;
    smtpc__strlcpy(res->errmsg, rc ? c->err.text : "", sizeof res->errmsg);
    return rc;
}

/* Pickup and outbox delivery: no network. */
static int deliver_local(smtpc_client *c, const smtpc__body *b, smtpc_result **out)
{
    smtpc_result *res = calloc(1, sizeof *res);
    if (!res) return SMTPC_ENOMEM;
    res->nrcpt = b->nrcpts;
    res->r = calloc(b->nrcpts ? b->nrcpts : 1, sizeof *res->r);
    int rc = res->r ? 0 : SMTPC_ENOMEM;
    for (size_t i = 0; !rc && i < b->nrcpts; i++)
        if (!(res->r[i].addr = smtpc__strdup(b->rcpts[i]))) rc = SMTPC_ENOMEM;
    body_run run;
    memset(&run, 0, sizeof run);
    run.b = b;
    run.mp = b->mem;
    run.mleft = b->len;
    char err[512] = "";
    if (!rc && b->m) {
        rc = smtpc_message_writer_new(&run.w, b->m, SMTPC_WRITE_8BITMIME | SMTPC_WRITE_SMTPUTF8);
        if (rc) snprintf(err, sizeof err, "message: %s", smtpc_message_errmsg(b->m));
        else smtpc__strlcpy(res->msgid, nz(smtpc_message_message_id(b->m)), sizeof res->msgid);
    }
    res->attempts = 1;
    if (!rc && c->delivery == SMTPC_DELIVERY_PICKUP) {
        char *path = NULL;
        rc = smtpc_pickup_write(c->dir, b->from, b->rcpts, b->nrcpts, body_read, &run, &path, err, sizeof err);
        if (!rc && path) {
            const char *base = strrchr(path, '/');
            smtpc__strlcpy(res->queue_id, base ? base + 1 : path, sizeof res->queue_id);
        }
        free(path);
    } else if (!rc) {
        smtpc_outbox *ob;
        rc = smtpc_outbox_open(&ob, c->dir, err, sizeof err);
        if (!rc) {
            rc = smtpc_outbox_add_raw(ob, b->from, b->rcpts, b->nrcpts, body_read, &run, res->queue_id,
                                      sizeof res->queue_id);
            if (rc) snprintf(err, sizeof err, "%s", smtpc_outbox_errmsg(ob));
            smtpc_outbox_free(ob);
        }
    }
    smtpc_message_writer_free(run.w);
    for (size_t i = 0; !rc && i < b->nrcpts; i++) res->r[i].accepted = true;
    res->status = rc;
    if (rc) smtpc__err(&c->err, rc, "%s", err[0] ? err : smtpc_strerror(rc));
    smtpc__strlcpy(res->errmsg, rc ? c->err.text : "", sizeof res->errmsg);
    if (out) *out = res;
    else smtpc_result_free(res);
    return rc;
}

static int deliver(smtpc_client *c, const smtpc__body *b, smtpc_result **out)
{
    if (c->delivery != SMTPC_DELIVERY_NETWORK) return deliver_local(c, b, out);
    return smtpc__client_deliver(c, b, true, out);
}

/* The envelope of a message; rcpts is malloc'ed (pointers owned by m). */
static int message_envelope(smtpc_client *c, smtpc_message *m, smtpc__body *b, const char ***rcpts)
{
    memset(b, 0, sizeof *b);
    b->m = m;
    b->from = smtpc_message_envelope_from(m);
    size_t n = smtpc_message_rcpt_count(m);
    if (!b->from) return smtpc__err(&c->err, SMTPC_EINVAL, "the message has no From or Sender");
    if (n == 0) return smtpc__err(&c->err, SMTPC_EINVAL, "the message has no recipient");
    const char **r = calloc(n, sizeof *r);
    if (!r) return SMTPC_ENOMEM;
    for (size_t i = 0; i < n; i++) r[i] = smtpc_message_rcpt(m, i);
    b->rcpts = r;
    b->nrcpts = n;
    *rcpts = r;
    return 0;
}

SMTPC_API int smtpc_client_send_with(smtpc_client *c, smtpc_message *m, const smtpc_send_params *params,
                                     smtpc_result **result)
{
    if (result) *result = NULL;
    if (!c || !m) return SMTPC_EINVAL;
    int rc = smtpc__client_enter(c);
    if (rc) return rc;
    smtpc__body b;
    const char **rcpts = NULL;
    rc = message_envelope(c, m, &b, &rcpts);
    if (!rc) rc = check_params(c, params, b.nrcpts);
    b.params = params;
    if (!rc) rc = deliver(c, &b, result);
    free(rcpts);
    smtpc__client_leave(c);
    return rc;
}

SMTPC_API int smtpc_client_send(smtpc_client *c, smtpc_message *m, smtpc_result **result)
{
    return smtpc_client_send_with(c, m, NULL, result);
}

static int send_raw(smtpc_client *c, const char *from, const char *const *rcpts, size_t n,
                    smtpc__body *b, smtpc_result **result)
{
    if (result) *result = NULL;
    if (!c) return SMTPC_EINVAL;
    if (!from || !rcpts || n == 0) return smtpc__err(&c->err, SMTPC_EINVAL, "no sender or recipient");
    for (size_t i = 0; i < n; i++)
        if (!rcpts[i] || !*rcpts[i]) return smtpc__err(&c->err, SMTPC_EINVAL, "empty recipient");
    int rc = check_params(c, b->params, n);
    if (rc) return rc;
    rc = smtpc__client_enter(c);
    if (rc) return rc;
    b->from = from;
    b->rcpts = rcpts;
    b->nrcpts = n;
    rc = deliver(c, b, result);
    smtpc__client_leave(c);
    return rc;
}

SMTPC_API int smtpc_client_send_envelope_with(smtpc_client *c, const char *from, const char *const *rcpts,
                                              size_t nrcpts, smtpc_read_cb cb, void *userdata,
                                              const smtpc_send_params *params, smtpc_result **result)
{
    if (!cb) return SMTPC_EINVAL;
    smtpc__body b;
    memset(&b, 0, sizeof b);
    b.cb = cb;
    b.ud = userdata;
    b.params = params;
    return send_raw(c, from, rcpts, nrcpts, &b, result);
}

SMTPC_API int smtpc_client_send_envelope(smtpc_client *c, const char *from, const char *const *rcpts,
                                         size_t nrcpts, smtpc_read_cb cb, void *userdata,
                                         smtpc_result **result)
{
    return smtpc_client_send_envelope_with(c, from, rcpts, nrcpts, cb, userdata, NULL, result);
}

SMTPC_API int smtpc_client_send_mem_with(smtpc_client *c, const char *from, const char *const *rcpts,
                                         size_t nrcpts, const void *data, size_t len,
                                         const smtpc_send_params *params, smtpc_result **result)
{
    if (!data && len) return SMTPC_EINVAL;
    smtpc__body b;
    memset(&b, 0, sizeof b);
    b.mem = data ? data : "";
    b.len = len;
    b.params = params;
    return send_raw(c, from, rcpts, nrcpts, &b, result);
}

SMTPC_API int smtpc_client_send_mem(smtpc_client *c, const char *from, const char *const *rcpts,
                                    size_t nrcpts, const void *data, size_t len, smtpc_result **result)
{
    return smtpc_client_send_mem_with(c, from, rcpts, nrcpts, data, len, NULL, result);
}

/* ---- batches: one connection, pipelined across messages ---- */

typedef struct batch_slot {
    body_run run;
    smtpc__body b;
    const char **rcpts; /* a message's envelope (pointers owned by it) */
    smtpc_mail_opts mo;
    int prep_rc;
    char prep_err[SMTPC__ERRMSG_MAX];
} batch_slot;

typedef struct batch_ctx {
    smtpc_client *c;
    const smtpc_batch_item *items;
    size_t n;
    smtpc_batch_cb cb;
    void *ud;
    smtpc_session *s;
    smtpc__pconn *pc;
    unsigned max_msgs;  /* per connection (the pool's), 0 = no limit */
    unsigned begun;     /* on this connection */
    bool reused;
    batch_slot slots[4]; /* at most two messages are in flight */
    struct batch_redo {
        size_t i;
        int last;
        smtpc_result *res;
    } *redo;            /* temporary failures: continued one by one per the retry policy */
    size_t nredo;
    const ident *id;
    int first_fail;
} batch_ctx;

static void batch_slot_clear(batch_slot *sl)
{
    smtpc_message_writer_free(sl->run.w);
    free(sl->rcpts);
    memset(sl, 0, sizeof *sl);
}

static void batch_finish(batch_ctx *x, size_t i, smtpc_result *res, int rc)
{
    res->status = rc;
    smtpc__strlcpy(res->errmsg, rc ? x->c->err.text : "", sizeof res->errmsg);
    if (rc && !x->first_fail) x->first_fail = rc;
    if (x->cb) x->cb(x->ud, i, rc, res);
}

/* The item's envelope and body source (no server needed). */
static int batch_body(smtpc_client *c, const smtpc_batch_item *it, smtpc__body *b, const char ***rcpts)
{
    *rcpts = NULL;
    if (it->message) return message_envelope(c, it->message, b, rcpts);
    memset(b, 0, sizeof *b);
    if (!it->from || !it->rcpts || it->nrcpts == 0 || (!it->data && it->len))
        return smtpc__err(&c->err, SMTPC_EINVAL, "batch item: no sender, recipient or data");
    for (size_t k = 0; k < it->nrcpts; k++)
        if (!it->rcpts[k] || !*it->rcpts[k]) return smtpc__err(&c->err, SMTPC_EINVAL, "empty recipient");
    b->from = it->from;
    b->rcpts = it->rcpts;
    b->nrcpts = it->nrcpts;
    b->mem = it->data ? it->data : "";
    b->len = it->len;
    return 0;
}

static int batch_next(void *ud, size_t i, smtpc__batch_msg *m)
{
    batch_ctx *x = ud;
    if (i >= x->n || atomic_load(&x->c->canceled)) return 0;
    if (x->max_msgs && x->pc->msgs + x->begun >= x->max_msgs) return 0; /* the rest on a new one */
    x->begun++;
    smtpc_client *c = x->c;
    batch_slot *sl = &x->slots[i % 4];
    batch_slot_clear(sl);
    sl->prep_rc = batch_body(c, &x->items[i], &sl->b, &sl->rcpts);
    if (!sl->prep_rc) sl->prep_rc = prep_body(c, x->s, &sl->b, &sl->run, &sl->mo);
    sl->run.b = &sl->b;
    if (sl->prep_rc) smtpc__strlcpy(sl->prep_err, c->err.text, sizeof sl->prep_err);
    memset(m, 0, sizeof *m);
    /* a message that cannot be prepared still takes its turn: the session
     * refuses its empty envelope and done() reports the real reason */
    m->env.from = sl->prep_rc ? NULL : sl->b.from;
    m->env.rcpts = sl->b.rcpts;
    m->env.nrcpts = sl->b.nrcpts;
    m->env.mail = &sl->mo;
    m->env.all_or_nothing = c->strict;
    m->body = body_read;
    m->ud = &sl->run;
    return 1;
}

static void batch_done(void *ud, size_t i, int rc, smtpc_session *s)
{
    batch_ctx *x = ud;
    smtpc_client *c = x->c;
    batch_slot *sl = &x->slots[i % 4];
    smtpc_result *res = result_for(&sl->b);
    if (!res || !res->r) {
        smtpc_result_free(res);
        if (!x->first_fail) x->first_fail = SMTPC_ENOMEM;
        batch_slot_clear(sl);
        return;
    }
    if (sl->prep_rc) {
        rc = smtpc__err(&c->err, sl->prep_rc, "%s", sl->prep_err);
    } else {
        rc = unknown_if_after_dot(c, s, rc);
        take_results(c, s, res, rc, NULL);
        if (rc == 0) x->pc->msgs++;
        if (sl->b.m) smtpc__strlcpy(res->msgid, nz(smtpc_message_message_id(sl->b.m)), sizeof res->msgid);
    }
    res->attempts = 1;
    res->reused = x->reused;
    const smtpc_tls_info *ti = smtpc_session_tls_info(s);
    smtpc__strlcpy(res->tls_version, ti ? ti->version : "", sizeof res->tls_version);
    smtpc__strlcpy(res->tls_cipher, ti ? ti->cipher : "", sizeof res->tls_cipher);
    smtpc__strlcpy(res->mech, nz(smtpc_session_auth_mechanism(s)), sizeof res->mech);
    bool pending = false; /* recipients with a 4xx, or all after a 4xx to the message */
    for (size_t k = 0; k < res->nrcpt; k++) pending |= !res->r[k].final;
    if (!sl->prep_rc && c->retry.attempts > 1 && pending && (rc == 0 || rc == SMTPC_ETEMPFAIL)) {
        struct batch_redo *r = realloc(x->redo, (x->nredo + 1) * sizeof *r);
        if (r) {
            x->redo = r;
            x->redo[x->nredo++] = (struct batch_redo){i, rc, res}; /* later, on its own */
            batch_slot_clear(sl);
            return;
        }
    }
    batch_finish(x, i, res, rc);
    smtpc_result_free(res);
    batch_slot_clear(sl);
}

/* Item i continued after its attempt in the batch: the recipients that
 * are not final yet, per the retry policy. */
static void batch_continue(batch_ctx *x, const struct batch_redo *r)
{
    smtpc_client *c = x->c;
    smtpc__body b;
    const char **rcpts = NULL;
    int rc = batch_body(c, &x->items[r->i], &b, &rcpts);
    if (!rc) rc = deliver_attempts(c, &b, true, r->res, 2, r->last);
    batch_finish(x, r->i, r->res, rc);
    smtpc_result_free(r->res);
    free(rcpts);
}

/* Item i on its own, with retries and a fresh connection as needed. */
static void batch_single(batch_ctx *x, size_t i, bool use_retry)
{
    smtpc_client *c = x->c;
    smtpc__body b;
    const char **rcpts = NULL;
    smtpc_result *res = NULL;
    int rc = batch_body(c, &x->items[i], &b, &rcpts);
    if (!rc) {
        rc = atomic_load(&c->canceled) ? smtpc__err(&c->err, SMTPC_ECANCELED, "canceled")
                                       : smtpc__client_deliver(c, &b, use_retry, &res);
    }
    if (!res) res = result_for(&b);
    if (res && res->r) batch_finish(x, i, res, rc);
    else if (!x->first_fail) x->first_fail = SMTPC_ENOMEM;
    smtpc_result_free(res);
    free(rcpts);
}

/* A pooled connection for the batch: re-used (RSET/NOOP first when
 * needed) or new. */
static int batch_conn(batch_ctx *x, const char *key)
{
    smtpc_result tmp; /* connect timings: per message they are in no result */
    memset(&tmp, 0, sizeof tmp);
    int rc = get_conn(x->c, key, x->id, &tmp, &x->pc, &x->reused);
    if (rc) x->pc = NULL;
    return rc;
}

SMTPC_API int smtpc_client_send_batch(smtpc_client *c, const smtpc_batch_item *items, size_t n,
                                      smtpc_batch_cb cb, void *userdata)
{
    if (!c || (!items && n)) return SMTPC_EINVAL;
    int rc = smtpc__client_enter(c);
    if (rc) return rc;
    batch_ctx x;
    memset(&x, 0, sizeof x);
    x.c = c;
    x.items = items;
    x.n = n;
    x.cb = cb;
    x.ud = userdata;
    x.max_msgs = smtpc__pool_max_messages(c->pool);
    size_t i = 0;
    if (c->delivery != SMTPC_DELIVERY_NETWORK || !c->o.host) {
        for (; i < n; i++) batch_single(&x, i, true); /* pickup, outbox; or the config error */
    }
    /* the identity (a callback's) is asked once per batch, like per send */
    ident id;
    memset(&id, 0, sizeof id);
    char *key = NULL;
    if (i < n && ((rc = get_identity(c, &id)) != 0 || !(key = pool_key(c, &id)))) {
        if (!rc) rc = SMTPC_ENOMEM;
        for (; i < n; i++) batch_single(&x, i, true); /* each reports the error */
    }
    x.id = &id;
    while (i < n) {
        if (atomic_load(&c->canceled)) {
            batch_single(&x, i++, false); /* reported canceled */
            continue;
        }
        if (batch_conn(&x, key) != 0) {
            batch_single(&x, i++, true); /* its own attempts decide */
            continue;
        }
        x.s = x.pc->s;
        x.begun = 0;
        publish(c, x.s);
        size_t nd = 0;
        rc = smtpc__session_send_batch(x.s, batch_next, batch_done, &x, i, &nd);
        publish(c, NULL);
        i += nd;
        if (rc) smtpc__err(&c->err, rc, "%s", smtpc_session_errmsg(x.s)); /* before release */
        bool canceled = rc == SMTPC_ECANCELED || atomic_load(&c->canceled);
        x.pc->dirty = rc != 0;
        smtpc__pool_release(c->pool, x.pc, rc == 0 && !canceled, !canceled);
        x.pc = NULL;
        for (int k = 0; k < 4; k++) batch_slot_clear(&x.slots[k]);
        if (rc && i < n) {
            /* not written completely: on its own, on a fresh connection */
            batch_single(&x, i++, true);
        }
    }
    for (size_t k = 0; k < x.nredo; k++) batch_continue(&x, &x.redo[k]);
    free(x.redo);
    if (key) {
        smtpc__secure_zero(key, strlen(key));
        free(key);
    }
    ident_wipe(&id);
    smtpc__client_leave(c);
    return x.first_fail;
}

/* ---- async ---- */

static void *worker(void *arg)
{
    smtpc_client *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->job && !c->stop) pthread_cond_wait(&c->cv, &c->mu);
        if (!c->job) break; /* stop with nothing queued */
        smtpc_message *m = c->job_m;
        const smtpc_send_params *params = c->job_params;
        smtpc_send_cb cb = c->job_cb;
        void *ud = c->job_ud;
        c->job = false;
        pthread_mutex_unlock(&c->mu);

        smtpc__body b;
        const char **rcpts = NULL;
        smtpc_result *res = NULL;
        int rc = message_envelope(c, m, &b, &rcpts);
        if (!rc) rc = check_params(c, params, b.nrcpts);
        b.params = params;
        if (!rc) rc = deliver(c, &b, &res);
        free(rcpts);
        if (!res) {
            res = calloc(1, sizeof *res);
            if (res) {
                res->status = rc;
                smtpc__strlcpy(res->errmsg, c->err.text, sizeof res->errmsg);
            }
        }
        smtpc__client_leave(c); /* idle before the callback: it may send again */
        cb(ud, rc, res);
        smtpc_result_free(res);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

SMTPC_API int smtpc_client_send_async(smtpc_client *c, smtpc_message *m, smtpc_send_cb cb, void *userdata)
{
    return smtpc_client_send_async_with(c, m, NULL, cb, userdata);
}

SMTPC_API int smtpc_client_send_async_with(smtpc_client *c, smtpc_message *m, const smtpc_send_params *params,
                                           smtpc_send_cb cb, void *userdata)
{
    if (!c || !m || !cb) return SMTPC_EINVAL;
    int rc = smtpc__client_enter(c);
    if (rc) return rc;
    pthread_mutex_lock(&c->mu);
    if (!c->thr_started) {
        if (pthread_create(&c->thr, NULL, worker, c) != 0) {
            pthread_mutex_unlock(&c->mu);
            smtpc__client_leave(c);
            return smtpc__err(&c->err, SMTPC_ENOMEM, "cannot start the client thread");
        }
        c->thr_started = true;
    }
    c->job = true;
    c->job_m = m;
    c->job_params = params;
    c->job_cb = cb;
    c->job_ud = userdata;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return 0;
}
