/* The client's connections: the identity of a send, the pool key that
 * keeps connections of other settings and identities apart, opening a
 * session with the client's options, re-using a pooled one. */
#include "client/client_int.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "net/proxy_internal.h"
#include "util/syslib.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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

static int secret_hash(const char *pass, char out[65], smtpc__errmsg *err)
{
    if (!pass) {
        smtpc__strlcpy(out, "-", 65);
        return 0;
    }
    int rc = smtpc__syslib_need(SMTPC__LIB_CRYPTO, err);
    if (rc) return rc;
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

void smtpc__ident_wipe(smtpc__ident *id)
{
    smtpc__secure_zero(id, sizeof *id);
}

int smtpc__client_identity(smtpc_client *c, smtpc__ident *id)
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
    rc = secret_hash(id->pass, id->hash, &c->err);
    if (rc) return rc == SMTPC_ELIBRARY ? rc : smtpc__err(&c->err, SMTPC_ENOMEM, "SHA-256 is not available");
    return 0;
}

/* Everything that makes two connections interchangeable: where it goes
 * and through what, how it is protected (every TLS setting), and who it
 * is (the user name and the salted hash of the password, never the
 * password; the proxy's redacted URL and the hash of its password). The
 * fields are separated by a control character, which no field holds. */
char *smtpc__client_pool_key(const smtpc_client *c, const smtpc__ident *id)
{
    const smtpc_conn_opts *o = &c->o;
    char proxy_hash[65] = "-", token_hash[65];
    if (o->proxy && secret_hash(o->proxy->pass, proxy_hash, NULL)) return NULL;
    if (secret_hash(o->oauth_token, token_hash, NULL)) return NULL;
    smtpc__buf b;
    smtpc__buf_init(&b, 1u << 16);
    int rc = smtpc__buf_printf(&b, "%s\x1f%u\x1f%d\x1f%d%d\x1f%s\x1f%d\x1f%s\x1f%s\x1f%s%s\x1f%s\x1f%d:%llx\x1f%s\x1f%s:%u\x1f%d\x1f%s",
                               o->host, smtpc__conn_opts_port(o), (int)o->tls_mode, o->insecure, o->allow_plain_auth,
                               smtpc__nz(o->ca_file), o->tls_min, o->proxy ? smtpc_proxy_redacted(o->proxy) : "-", proxy_hash,
                               id->user ? "u" : "-", smtpc__nz(id->user), id->hash, o->auth_list_set,
                               (unsigned long long)o->auth_list, smtpc__nz(o->authzid), smtpc__nz(o->bind_addr), o->bind_port,
                               o->family, smtpc__nz(o->ehlo_name));
    if (!rc)
        rc = smtpc__buf_printf(&b, "\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%d%d\x1f%s\x1f%p:%p", smtpc__nz(o->ca_path),
                               smtpc__nz(o->tls_name), smtpc__nz(o->cert_file), smtpc__nz(o->key_file), o->pins, o->tls_max, o->tls_strict,
                               token_hash, (void *)(uintptr_t)o->token_cb, o->token_ud);
    if (!rc) rc = smtpc__buf_append(&b, "", 1);
    if (rc) {
        smtpc__buf_free_secure(&b);
        return NULL;
    }
    return (char *)b.data; /* off is 0: nothing was consumed */
}

/* Timestamps of the security steps, from the session's trace while it
 * opens (passed on to the caller's trace). */
typedef struct open_trace {
    int64_t starttls_sent, tls_done, auth_sent, auth_done, t0;
    const smtpc_client *c;
} open_trace;

static void on_trace(void *ud, smtpc_trace_dir dir, const char *line, size_t len)
{
    open_trace *t = ud;
    if (t->c->trace_cb) t->c->trace_cb(t->c->trace_ud, dir, line, len);
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

static int open_session(smtpc_client *c, smtpc__pconn *pc, const smtpc__ident *id, smtpc_result *res)
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
    smtpc__client_publish(c, s);
    open_trace tr;
    memset(&tr, 0, sizeof tr);
    tr.c = c;
    smtpc_session_set_trace(s, on_trace, &tr);
    int64_t t0 = smtpc__now_us();
    rc = smtpc_session_open(s, NULL, 0); /* the server of c->o */
    int64_t t1 = smtpc__now_us();
    /* then only the caller's, if any: no per-line cost while sending */
    smtpc__client_trace_conn(c, s, true);
    res->t_tls = tr.tls_done && tr.starttls_sent ? tr.tls_done - tr.starttls_sent : 0;
    res->t_auth = tr.auth_done && tr.auth_sent ? tr.auth_done - tr.auth_sent : 0;
    res->t_connect = (t1 - t0) - res->t_tls - res->t_auth;
    smtpc__result_security(res, s);
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

void smtpc__client_trace_conn(const smtpc_client *c, smtpc_session *s, bool on)
{
    if (!s) return;
    /* the private pool's connection keeps it: its QUIT at smtpc_client_free is traced too */
    if (on) smtpc_session_set_trace(s, c->trace_cb, c->trace_ud);
    else if (c->pool != c->own_pool && c->trace_cb) smtpc_session_set_trace(s, NULL, NULL);
}

/* A pooled connection for key: an idle one (RSET after an unclean
 * transaction, NOOP after a long idle; one past its deadline or dead while
 * idle is replaced, which is not an attempt) or a new one. */
int smtpc__client_get_conn(smtpc_client *c, const char *key, const smtpc__ident *id, smtpc_result *res,
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
                smtpc__client_publish(c, NULL);
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
        smtpc__client_publish(c, pc->s);
        smtpc__client_trace_conn(c, pc->s, true);
        int prc = 0;
        if (pc->dirty) prc = smtpc_session_rset(pc->s);
        else if (check) prc = smtpc_session_noop(pc->s);
        if (prc) {
            smtpc__client_publish(c, NULL);
            smtpc__client_trace_conn(c, pc->s, false);
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
