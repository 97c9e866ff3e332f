/* libFuzzer: choosing a SASL mechanism from untrusted text - the caller's
 * list (smtpc__sasl_mask_parse), the server's AUTH keywords
 * (smtpc__sasl_mask_from_names), the password's SASLprep, the default
 * allowed set, the choice, the formatted list - and a context for the
 * chosen mechanism with the input as credentials.
 * Input: NUL-separated [caller list][server names, space separated][user]
 * [password][authzid]. Checks: the choice is in offered & allowed and is
 * the strongest there; SASLprep's check-only form agrees with the full
 * one, and SASLprep is idempotent; the formatted list parses back to the
 * same set. */
#include "engine/sasl.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *field(char **p, char *end)
{
    char *f = *p;
    if (f >= end) return "";
    *p = f + strlen(f) + 1;
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    char *buf = malloc(size + 1);
    if (!buf) abort();
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *p = buf, *end = buf + size;
    const char *list = field(&p, end), *names = field(&p, end), *user = field(&p, end);
    const char *pass = field(&p, end), *authzid = field(&p, end);

    smtpc__errmsg err;
    smtpc__sasl_mask allowed_list = 0;
    int lrc = smtpc__sasl_mask_parse(list, &allowed_list, &err);

    /* the server's keywords */
    const char *kw[32];
    size_t nkw = 0;
    char *words = strdup(names);
    if (!words) abort();
    for (char *w = words; *w && nkw < 32;) {
        char *sp = strchr(w, ' ');
        if (sp) *sp = '\0';
        if (*w) kw[nkw++] = w;
        if (!sp) break;
        w = sp + 1;
    }
    smtpc__sasl_mask offered = smtpc__sasl_mask_from_names(kw, nkw);

    /* SASLprep: check-only agrees with the full form, and it is idempotent */
    char *prep = NULL;
    int prc = smtpc__saslprep(pass, &prep);
    if (prc != smtpc__saslprep(pass, NULL)) abort();
    if (prc == 0) {
        char *again = NULL;
        if (smtpc__saslprep(prep, &again) != 0 || strcmp(prep, again)) abort();
        smtpc__free_secret(again);
        smtpc__free_secret(prep);
    }

    smtpc__sasl_creds c = {.username = user, .password = pass, .authzid = *authzid ? authzid : NULL,
                           .oauth_token = (size & 1) ? pass : NULL, .host = "mx.example", .port = 587,
                           .client_cert = (size & 2) != 0};
    smtpc__sasl_mask allowed = smtpc__sasl_default_allowed(&c, (size & 4) != 0);
    if (lrc == 0) allowed &= allowed_list;
    smtpc__sasl_mech m = smtpc__sasl_choose(offered, allowed);
    if (m != SMTPC__SASL_NONE) {
        if (!(offered & allowed & SMTPC__SASL_BIT(m))) abort();
        const char *name = smtpc__sasl_mech_name(m);
        if (!name || smtpc__sasl_mech_from_name(name) != m) abort();
    } else if (offered & allowed) {
        abort();
    }

    /* the formatted set parses back to itself */
    char fmt[256];
    size_t need = smtpc__sasl_mask_format(offered, fmt, sizeof fmt);
    if (need < sizeof fmt) {
        smtpc__sasl_mask back = 0;
        if (smtpc__sasl_mask_parse(fmt, &back, &err) != 0 || back != (offered & SMTPC__SASL_ALL)) abort();
    }

    if (m != SMTPC__SASL_NONE) {
        smtpc__sasl *s = NULL;
        if (smtpc__sasl_new(&s, m, &c, &err) == 0) {
            smtpc__sasl_line line;
            smtpc__sasl_start(s, &line);
            if (line.b64 && strlen(line.b64) != line.len) abort();
            smtpc__sasl_free(s);
        }
    }
    free(words);
    free(buf);
    return 0;
}
