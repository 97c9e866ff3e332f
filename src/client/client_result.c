/* The client's results: the outcome of one send, its recipients and
 * replies, the queue id parsed from the final reply. */
#include "client/client_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

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
    return r && i < r->nrcpt ? smtpc__nz(r->r[i].addr) : "";
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
    return r && i < r->nrcpt ? smtpc__nz(r->r[i].text) : "";
}
SMTPC_API int smtpc_result_reply_code(const smtpc_result *r) { return r ? r->code : 0; }
SMTPC_API const char *smtpc_result_reply_enhanced(const smtpc_result *r) { return r ? r->enh : ""; }
SMTPC_API const char *smtpc_result_reply_text(const smtpc_result *r) { return r ? smtpc__nz(r->text) : ""; }
SMTPC_API const char *smtpc_result_queue_id(const smtpc_result *r) { return r ? r->queue_id : ""; }
SMTPC_API const char *smtpc_result_message_id(const smtpc_result *r) { return r ? r->msgid : ""; }
SMTPC_API const char *smtpc_result_tls_version(const smtpc_result *r) { return r ? r->tls_version : ""; }
SMTPC_API const char *smtpc_result_tls_cipher(const smtpc_result *r) { return r ? r->tls_cipher : ""; }
SMTPC_API const char *smtpc_result_auth_mechanism(const smtpc_result *r) { return r ? r->mech : ""; }
SMTPC_API bool smtpc_result_tls_verified(const smtpc_result *r) { return r && r->tls_verified; }
SMTPC_API smtpc_tls_mode smtpc_result_security_used(const smtpc_result *r)
{
    return r && r->security ? r->security : SMTPC_TLS_MODE_NONE;
}
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

void smtpc__result_security(smtpc_result *res, const smtpc_session *s)
{
    smtpc_tls_mode u = smtpc_session_security_used(s);
    const smtpc_tls_info *ti = u != SMTPC_TLS_MODE_NONE ? smtpc_session_tls_info(s) : NULL;
    smtpc__strlcpy(res->tls_version, ti ? ti->version : "", sizeof res->tls_version);
    smtpc__strlcpy(res->tls_cipher, ti ? ti->cipher : "", sizeof res->tls_cipher);
    res->tls_verified = ti && ti->verified;
    res->security = ti ? u : SMTPC_TLS_MODE_NONE;
    smtpc__strlcpy(res->mech, smtpc__nz(smtpc_session_auth_mechanism(s)), sizeof res->mech);
}

/* A result with one entry per recipient of b, or NULL. */
smtpc_result *smtpc__result_for(const smtpc__body *b)
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

/* Recipient j of the transaction is res->r[idx ? idx[j] : j]. A recipient
 * without a RCPT reply this time keeps the reply of its previous attempt.
 * Once the message was delivered to some recipients, only a successful
 * retry replaces the final reply and the queue id. */
void smtpc__client_take_results(smtpc_client *c, smtpc_session *s, smtpc_result *res, int rc, const size_t *idx)
{
    bool delivered = false;
    for (size_t i = 0; i < res->nrcpt; i++) delivered |= res->r[i].delivered;
    size_t n = smtpc_session_rcpt_count(s);
    for (size_t j = 0; j < n; j++) {
        size_t i = idx ? idx[j] : j;
        if (i >= res->nrcpt) continue;
        smtpc__rcpt_res *rr = &res->r[i];
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
