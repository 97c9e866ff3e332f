/* EHLO capabilities (RFC 5321 4.1.1.1 and the extension RFCs). */
#include "engine/reply.h"
#include "engine/sasl.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *kw;
    unsigned flag;
} known[] = {
    {"PIPELINING", SMTPC_EXT_PIPELINING},   {"SIZE", SMTPC_EXT_SIZE},
    {"8BITMIME", SMTPC_EXT_8BITMIME},       {"SMTPUTF8", SMTPC_EXT_SMTPUTF8},
    {"CHUNKING", SMTPC_EXT_CHUNKING},       {"BINARYMIME", SMTPC_EXT_BINARYMIME},
    {"DSN", SMTPC_EXT_DSN},                 {"ENHANCEDSTATUSCODES", SMTPC_EXT_ENHANCEDSTATUSCODES},
    {"STARTTLS", SMTPC_EXT_STARTTLS},       {"AUTH", SMTPC_EXT_AUTH},
    {"REQUIRETLS", SMTPC_EXT_REQUIRETLS},
};

void smtpc__caps_clear(smtpc__caps *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->nauth; i++) free(c->auth[i]);
    free(c->auth);
    for (size_t i = 0; i < c->nlines; i++) free(c->lines[i]);
    free(c->lines);
    memset(c, 0, sizeof *c);
}

/* Length of the keyword token of line s: up to a space (or '=' when eq). */
static size_t token_len(const char *s, bool eq)
{
    size_t n = 0;
    while (s[n] && s[n] != ' ' && !(eq && s[n] == '=')) n++;
    return n;
}

static const char *skip_spaces(const char *s)
{
    while (*s == ' ') s++;
    return s;
}

/* AUTH lists are parsed in time linear in their size, whatever a server
 * sends (a 64 KiB EHLO reply holds ~16,000 short tokens; comparing each with
 * every one kept before cost 0.9 s of CPU, stalling every connection of a
 * bulk loop). So:
 *   - a mechanism this library implements is kept once (a bit per mechanism);
 *   - of the others, at most SMTPC__CAPS_MAX_OTHER_AUTH distinct names are
 *     kept (they are only shown), later ones ignored;
 *   - a token longer than 20 characters is no mechanism name (RFC 4422 3.1)
 *     and is ignored.
 * Each token thus costs at most a fixed number of comparisons of at most
 * 20 characters, and the list never holds more than
 * SMTPC__SASL_MECH_COUNT + SMTPC__CAPS_MAX_OTHER_AUTH names. */
#define MECH_NAME_MAX 20

static int add_mech(smtpc__caps *c, const char *m, size_t n, smtpc__sasl_mask *known_seen,
                    size_t *others)
{
    if (n == 0 || n > MECH_NAME_MAX) return 0;
    char up[MECH_NAME_MAX + 1];
    for (size_t i = 0; i < n; i++) up[i] = (char)toupper((unsigned char)m[i]);
    up[n] = '\0';
    smtpc__sasl_mech id = smtpc__sasl_mech_from_name(up);
    if (id != SMTPC__SASL_NONE) {
        if (*known_seen & SMTPC__SASL_BIT(id)) return 0;
        *known_seen |= SMTPC__SASL_BIT(id);
    } else {
        if (*others >= SMTPC__CAPS_MAX_OTHER_AUTH) return 0;
        /* only the other names kept so far can be equal: at most the cap */
        for (size_t i = 0; i < c->nauth; i++)
            if (strcmp(c->auth[i], up) == 0) return 0;
        (*others)++;
    }
    char **na = realloc(c->auth, (c->nauth + 2) * sizeof *na);
    if (!na) return SMTPC_ENOMEM;
    c->auth = na;
    char *copy = smtpc__strndup(up, n);
    if (!copy) return SMTPC_ENOMEM;
    c->auth[c->nauth++] = copy;
    c->auth[c->nauth] = NULL;
    return 0;
}

static int add_mechs(smtpc__caps *c, const char *s, smtpc__sasl_mask *known_seen, size_t *others)
{
    while (*s) {
        s = skip_spaces(s);
        size_t n = token_len(s, false);
        int rc = add_mech(c, s, n, known_seen, others);
        if (rc) return rc;
        s += n;
    }
    return 0;
}

static void parse_size(smtpc__caps *c, const char *param)
{
    size_t n = token_len(param, false);
    uint64_t v = 0;
    int rc = smtpc__parse_u64(param, n, &v);
    if (rc == 0) c->size_max = v;
    else if (rc == SMTPC_ELIMIT) c->size_max = UINT64_MAX; /* absurdly large: no practical limit */
    else c->size_max = 0;                                 /* "SIZE" alone or junk: unknown */
}

int smtpc__caps_parse(smtpc__caps *c, const smtpc__reply *r, smtpc__errmsg *err)
{
    smtpc__caps_clear(c);
    c->esmtp = true;
    int rc = 0;
    smtpc__sasl_mask known_seen = 0;
    size_t others = 0;
    for (size_t i = 1; i < r->nlines; i++) {
        const char *line = skip_spaces(r->lines[i]);
        if (!*line) continue;
        char **nl = realloc(c->lines, (c->nlines + 1) * sizeof *nl);
        if (!nl) goto oom;
        c->lines = nl;
        if (!(c->lines[c->nlines] = smtpc__strdup(line))) goto oom;
        c->nlines++;

        size_t kl = token_len(line, false);
        const char *param = skip_spaces(line + kl);
        /* Obsolete form "AUTH=LOGIN PLAIN" (old Outlook clients needed it). */
        if (kl > 5 && smtpc__strncasecmp(line, "AUTH=", 5) == 0) {
            c->flags |= SMTPC_EXT_AUTH;
            if ((rc = add_mechs(c, line + 5, &known_seen, &others)) != 0) goto oom;
            continue;
        }
        for (size_t k = 0; k < SMTPC__ARRAY_LEN(known); k++) {
            if (strlen(known[k].kw) != kl || smtpc__strncasecmp(line, known[k].kw, kl) != 0)
                continue;
            c->flags |= known[k].flag;
            if (known[k].flag == SMTPC_EXT_SIZE) parse_size(c, param);
            if (known[k].flag == SMTPC_EXT_AUTH && (rc = add_mechs(c, param, &known_seen, &others)) != 0) goto oom;
            break;
        }
    }
    return 0;
oom:
    smtpc__caps_clear(c);
    return smtpc__err(err, SMTPC_ENOMEM, "out of memory parsing EHLO capabilities");
}

const char *smtpc__caps_param(const smtpc__caps *c, const char *kw)
{
    if (!c || !kw) return NULL;
    size_t kwl = strlen(kw);
    for (size_t i = 0; i < c->nlines; i++) {
        const char *line = c->lines[i];
        size_t kl = token_len(line, false);
        if (kl == kwl && smtpc__strncasecmp(line, kw, kl) == 0) return skip_spaces(line + kl);
    }
    /* "AUTH=LOGIN" style lines answer for their keyword when nothing better exists */
    for (size_t i = 0; i < c->nlines; i++) {
        const char *line = c->lines[i];
        size_t kl = token_len(line, true);
        if (kl == kwl && line[kl] == '=' && smtpc__strncasecmp(line, kw, kl) == 0)
            return line + kl + 1;
    }
    return NULL;
}

bool smtpc__caps_has_auth(const smtpc__caps *c, const char *mech)
{
    if (!c || !mech) return false;
    for (size_t i = 0; i < c->nauth; i++)
        if (smtpc__strcasecmp(c->auth[i], mech) == 0) return true;
    return false;
}
