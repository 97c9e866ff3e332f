/* The configuration file reader (include/smtpc/config.h, docs/smtpc-config.5). */
#include <smtpc/config.h>

#include "msmtp.h"
#include "util/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_MAX_FILE (1u << 20)
#define CFG_MAX_LINE 4096
#define CFG_MAX_ACCOUNTS 1024

typedef enum {
    T_STR,      /* any text without control characters */
    T_WORD,     /* no blanks either (addresses, host names, paths are T_STR) */
    T_SERVER,
    T_PORT,
    T_TLS,
    T_BOOL,
    T_DURATION,
    T_DELIVERY,
    T_TLSVER,
    T_AUTH
} val_type;

typedef struct key_def {
    const char *name;
    val_type type;
    bool no_env; /* never from the environment */
    bool secret; /* reveals or obtains a credential: the file must be private */
} key_def;

/* Keep in the order of docs/smtpc-config.5. */
static const key_def keys[] = {
    {"server", T_SERVER, false, false},
    {"port", T_PORT, false, false},
    {"tls", T_TLS, false, false},
    {"from", T_WORD, false, false},
    {"match-from", T_STR, false, false},
    {"ehlo-name", T_WORD, false, false},
    {"user", T_STR, false, false},
    {"password", T_STR, true, true},
    {"password-env", T_WORD, false, false},
    {"password-file", T_STR, false, true},
    {"password-cmd", T_STR, false, true},
    {"oauth-token-cmd", T_STR, false, true},
    {"auth", T_AUTH, false, false},
    {"allow-plaintext-auth", T_BOOL, false, false},
    {"ca-file", T_STR, false, false},
    {"ca-path", T_STR, false, false},
    {"pin", T_STR, false, false},
    {"cert", T_STR, false, false},
    {"key", T_STR, false, false},
    {"tls-server-name", T_WORD, false, false},
    {"insecure", T_BOOL, false, false},
    {"tls-min", T_TLSVER, false, false},
    {"tls-max", T_TLSVER, false, false},
    {"bind", T_WORD, false, false},
    {"proxy", T_WORD, false, false},
    {"timeout", T_DURATION, false, false},
    {"connect-timeout", T_DURATION, false, false},
    {"greeting-timeout", T_DURATION, false, false},
    {"delivery", T_DELIVERY, false, false},
    {"pickup-dir", T_STR, false, false},
    {"outbox", T_STR, false, false},
    {"rcpt-allowfails", T_BOOL, false, false},
    {"dsn-notify", T_WORD, false, false},
    {"dsn-ret", T_WORD, false, false},
    {"dkim-key", T_STR, false, false}, /* the key file itself must be private (the signer checks) */
    {"dkim-selector", T_STR, false, false},
    {"dkim-domain", T_WORD, false, false},
    {"dkim-algorithm", T_STR, false, false},
    {"dkim-headers", T_WORD, false, false},
};
#define NKEYS (sizeof keys / sizeof keys[0])

struct smtpc_account {
    char *name;
    char *val[NKEYS];
    unsigned line[NKEYS];
    const smtpc_config *cfg;
};

struct smtpc_config {
    char *path;     /* the loaded file, NULL if none */
    char *srcname;  /* the name used in messages */
    char *default_name;
    smtpc_account global;   /* keys before the first section */
    smtpc_account *acct;
    size_t nacct, cap;
    char *env[NKEYS];
    bool msmtp;      /* read from an msmtp file */
    char **warn;     /* what an msmtp file asked that smtpc does not do exactly */
    size_t nwarn;
};

static int key_index(const char *name)
{
    if (!name) return -1;
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].name, name)) return (int)i;
    return -1;
}

#define seterr smtpc__config_seterr
void smtpc__config_seterr(char *buf, size_t len, const char *fmt, ...)
{
    if (!buf || !len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* ---- values ------------------------------------------------------------- */

static int ieq(const char *a, const char *b) { return smtpc__strcasecmp(a, b) == 0; }

static int parse_bool(const char *v, bool *out)
{
    if (ieq(v, "yes") || ieq(v, "true") || ieq(v, "on") || !strcmp(v, "1")) { *out = true; return 0; }
    if (ieq(v, "no") || ieq(v, "false") || ieq(v, "off") || !strcmp(v, "0")) { *out = false; return 0; }
    return SMTPC_ECONFIG;
}

SMTPC_API int smtpc_config_parse_duration_ms(const char *s, int64_t *ms_out)
{
    if (!s) return SMTPC_ECONFIG;
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9') n++;
    uint64_t v;
    if (n == 0 || n > 12 || smtpc__parse_u64(s, n, &v)) return SMTPC_ECONFIG;
    const char *u = s + n;
    uint64_t mul;
    if (!*u || !strcmp(u, "s")) mul = 1000;
    else if (!strcmp(u, "ms")) mul = 1;
    else if (!strcmp(u, "m") || !strcmp(u, "min")) mul = 60000;
    else if (!strcmp(u, "h")) mul = 3600000;
    else return SMTPC_ECONFIG;
    if (ms_out) *ms_out = (int64_t)(v * mul); /* v < 10^12, mul <= 3.6e6: fits */
    return 0;
}

SMTPC_API int smtpc_config_parse_server(const char *s, char *host, size_t hostlen,
                                        uint16_t *port_out)
{
    if (!s || !*s || !host || !hostlen) return SMTPC_ECONFIG;
    const char *h = s, *hend, *colon;
    if (*s == '[') {
        h = s + 1;
        hend = strchr(h, ']');
        if (!hend || hend == h) return SMTPC_ECONFIG;
        colon = hend[1] == ':' ? hend + 1 : NULL;
        if (!colon && hend[1]) return SMTPC_ECONFIG;
    } else {
        colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':')) return SMTPC_ECONFIG; /* bare IPv6: needs [] */
        hend = colon ? colon : s + strlen(s);
        if (hend == h) return SMTPC_ECONFIG;
    }
    for (const char *p = h; p < hend; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '/' || *p == '@') return SMTPC_ECONFIG;
    size_t hl = (size_t)(hend - h);
    if (hl >= hostlen) return SMTPC_ECONFIG;
    uint16_t port = 0;
    if (colon) {
        uint64_t v;
        if (smtpc__parse_u64(colon + 1, strlen(colon + 1), &v) || v == 0 || v > 65535)
            return SMTPC_ECONFIG;
        port = (uint16_t)v;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (port_out) *port_out = port;
    return 0;
}

static int check_value(int k, const char *v, char *errbuf, size_t len)
{
    const key_def *d = &keys[k];
    if (smtpc__has_ctl(v)) {
        seterr(errbuf, len, "%s: value contains control characters", d->name);
        return SMTPC_ECONFIG;
    }
    if (!*v) {
        seterr(errbuf, len, "%s: empty value", d->name);
        return SMTPC_ECONFIG;
    }
    bool b;
    char host[256];
    uint64_t u;
    switch (d->type) {
    case T_STR: return 0;
    case T_WORD:
        for (const char *p = v; *p; p++)
            if (*p == ' ') {
                seterr(errbuf, len, "%s: value must not contain blanks", d->name);
                return SMTPC_ECONFIG;
            }
        return 0;
    case T_SERVER:
        if (smtpc_config_parse_server(v, host, sizeof host, NULL) == 0) return 0;
        seterr(errbuf, len, "%s: \"%s\" is not HOST, HOST:PORT or [IPv6]:PORT", d->name, v);
        return SMTPC_ECONFIG;
    case T_PORT:
        if (smtpc__parse_u64(v, strlen(v), &u) == 0 && u >= 1 && u <= 65535) return 0;
        seterr(errbuf, len, "%s: \"%s\" is not a port number (1-65535)", d->name, v);
        return SMTPC_ECONFIG;
    case T_TLS:
        if (!strcmp(v, "none") || !strcmp(v, "starttls") || !strcmp(v, "tls") ||
            !strcmp(v, "implicit") || !strcmp(v, "starttls-optional") || !strcmp(v, "auto"))
            return 0;
        seterr(errbuf, len,
               "%s: \"%s\" is not one of auto, implicit (tls), starttls, starttls-optional, none",
               d->name, v);
        return SMTPC_ECONFIG;
    case T_BOOL:
        if (parse_bool(v, &b) == 0) return 0;
        seterr(errbuf, len, "%s: \"%s\" is not yes or no", d->name, v);
        return SMTPC_ECONFIG;
    case T_DURATION:
        if (smtpc_config_parse_duration_ms(v, NULL) == 0) return 0;
        seterr(errbuf, len, "%s: \"%s\" is not a duration (30, 30s, 500ms, 2m)", d->name, v);
        return SMTPC_ECONFIG;
    case T_DELIVERY:
        if (!strcmp(v, "smtp") || !strcmp(v, "pickup") || !strcmp(v, "outbox")) return 0;
        seterr(errbuf, len, "%s: \"%s\" is not one of smtp, pickup, outbox", d->name, v);
        return SMTPC_ECONFIG;
    case T_TLSVER:
        if (!strcmp(v, "1.0") || !strcmp(v, "1.1") || !strcmp(v, "1.2") || !strcmp(v, "1.3"))
            return 0;
        seterr(errbuf, len, "%s: \"%s\" is not a TLS version (1.0, 1.1, 1.2, 1.3)", d->name, v);
        return SMTPC_ECONFIG;
    case T_AUTH:
        for (const char *p = v; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != ',') {
                seterr(errbuf, len, "%s: \"%s\" is not a list of mechanisms (plain,login,...)",
                       d->name, v);
                return SMTPC_ECONFIG;
            }
        return 0;
    }
    return 0;
}

SMTPC_API bool smtpc_config_key_valid(const char *key) { return key_index(key) >= 0; }

SMTPC_API const char *smtpc_config_key_at(size_t i) { return i < NKEYS ? keys[i].name : NULL; }

SMTPC_API int smtpc_config_check_value(const char *key, const char *value, char *errbuf,
                                       size_t errbuf_len)
{
    int k = key_index(key);
    if (k < 0) {
        seterr(errbuf, errbuf_len, "unknown key \"%s\"", key ? key : "");
        return SMTPC_ECONFIG;
    }
    if (!value) {
        seterr(errbuf, errbuf_len, "%s: no value", key);
        return SMTPC_ECONFIG;
    }
    return check_value(k, value, errbuf, errbuf_len);
}

/* ---- the parser ----------------------------------------------------------- */

static void account_wipe(smtpc_account *a)
{
    free(a->name);
    for (size_t i = 0; i < NKEYS; i++) smtpc__free_secret(a->val[i]);
}

SMTPC_API void smtpc_config_free(smtpc_config *cfg)
{
    if (!cfg) return;
    account_wipe(&cfg->global);
    for (size_t i = 0; i < cfg->nacct; i++) account_wipe(&cfg->acct[i]);
    free(cfg->acct);
    for (size_t i = 0; i < NKEYS; i++) smtpc__free_secret(cfg->env[i]);
    free(cfg->path);
    free(cfg->srcname);
    free(cfg->default_name);
    for (size_t i = 0; i < cfg->nwarn; i++) free(cfg->warn[i]);
    free(cfg->warn);
    free(cfg);
}

static bool blank(char c) { return c == ' ' || c == '\t'; }

static bool valid_account_name(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("._@+-", *s)) return false;
    return true;
}

/* Unquotes a "..." value in place; returns -1 on a bad quote. */
#define unquote smtpc__config_unquote
int smtpc__config_unquote(char *v)
{
    size_t n = strlen(v);
    if (n == 0 || v[0] != '"') return 0;
    if (n < 2 || v[n - 1] != '"') return -1;
    char *w = v;
    for (size_t i = 1; i < n - 1; i++) {
        if (v[i] == '\\') {
            if (i + 1 >= n - 1 || (v[i + 1] != '"' && v[i + 1] != '\\')) return -1;
            i++;
        } else if (v[i] == '"') {
            return -1;
        }
        *w++ = v[i];
    }
    *w = '\0';
    return 0;
}

/* A proxy URL with a password in it ("socks5h://user:pass@host"). */
static int add_account(smtpc_config *cfg, const char *s, const char *name, unsigned lineno,
                       smtpc_account **cur, char *errbuf, size_t errlen)
{
    if (!valid_account_name(s)) {
        seterr(errbuf, errlen,
               "%s:%u: invalid account name \"%s\" (letters, digits and ._@+- only)",
               name, lineno, s);
        return SMTPC_ECONFIG;
    }
    for (size_t i = 0; i < cfg->nacct; i++)
        if (!strcmp(cfg->acct[i].name, s)) {
            seterr(errbuf, errlen, "%s:%u: account \"%s\" defined twice", name, lineno, s);
            return SMTPC_ECONFIG;
        }
    if (cfg->nacct == CFG_MAX_ACCOUNTS) {
        seterr(errbuf, errlen, "%s:%u: more than %u accounts", name, lineno, CFG_MAX_ACCOUNTS);
        return SMTPC_ELIMIT;
    }
    if (cfg->nacct == cfg->cap) {
        size_t nc = cfg->cap ? cfg->cap * 2 : 4;
        smtpc_account *na = realloc(cfg->acct, nc * sizeof *na);
        if (!na) return SMTPC_ENOMEM;
        cfg->acct = na;
        cfg->cap = nc;
    }
    smtpc_account *a = &cfg->acct[cfg->nacct];
    memset(a, 0, sizeof *a);
    a->cfg = cfg;
    a->name = smtpc__strdup(s);
    if (!a->name) return SMTPC_ENOMEM;
    cfg->nacct++;
    *cur = a;
    return 0;
}

static bool url_has_password(const char *v)
{
    const char *a = strstr(v, "://");
    a = a ? a + 3 : v;
    size_t n = strcspn(a, "/?#");
    const char *at = memchr(a, '@', n);
    return at && memchr(a, ':', (size_t)(at - a));
}

/* The first key in a file that makes it secret-bearing (see keys[]). */
typedef struct secret_seen {
    const char *key; /* NULL = none */
    unsigned line;
} secret_seen;

static int parse_text(smtpc_config *cfg, const char *text, size_t len, const char *name,
                      secret_seen *secret, char *errbuf, size_t errlen)
{
    smtpc_account *cur = &cfg->global;
    unsigned lineno = 0;
    size_t pos = 0;
    char line[CFG_MAX_LINE + 1];
    if (len > CFG_MAX_FILE) {
        seterr(errbuf, errlen, "%s: file larger than %u bytes", name, CFG_MAX_FILE);
        return SMTPC_ELIMIT;
    }
    while (pos < len) {
        lineno++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos;
        if (ll > CFG_MAX_LINE) {
            seterr(errbuf, errlen, "%s:%u: line longer than %u bytes", name, lineno, CFG_MAX_LINE);
            return SMTPC_ELIMIT;
        }
        memcpy(line, text + pos, ll);
        line[ll] = '\0';
        pos += ll + (nl ? 1 : 0);
        if (ll && line[ll - 1] == '\r') line[--ll] = '\0';
        if (memchr(line, '\0', ll)) {
            seterr(errbuf, errlen, "%s:%u: NUL byte", name, lineno);
            smtpc__secure_zero(line, sizeof line);
            return SMTPC_ECONFIG;
        }
        char *s = line, *e = line + ll;
        while (blank(*s)) s++;
        while (e > s && blank(e[-1])) *--e = '\0';
        if (!*s || *s == '#') continue;
        if (*s == '[') {
            if (e[-1] != ']') {
                seterr(errbuf, errlen, "%s:%u: section header must end with ']'", name, lineno);
                return SMTPC_ECONFIG;
            }
            e[-1] = '\0';
            s++;
            while (blank(*s)) s++;
            if (strncmp(s, "account", 7) != 0 || !blank(s[7])) {
                seterr(errbuf, errlen, "%s:%u: expected [account NAME]", name, lineno);
                return SMTPC_ECONFIG;
            }
            s += 7;
            while (blank(*s)) s++;
            char *ne = s + strlen(s);
            while (ne > s && blank(ne[-1])) *--ne = '\0';
            int arc = add_account(cfg, s, name, lineno, &cur, errbuf, errlen);
            if (arc) return arc;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            seterr(errbuf, errlen, "%s:%u: expected \"key = value\" or \"[account NAME]\"", name,
                   lineno);
            return SMTPC_ECONFIG;
        }
        char *ke = eq;
        while (ke > s && blank(ke[-1])) ke--;
        *ke = '\0';
        char *v = eq + 1;
        while (blank(*v)) v++;
        if (unquote(v) < 0) {
            seterr(errbuf, errlen, "%s:%u: %s: badly quoted value", name, lineno, s);
            smtpc__secure_zero(line, sizeof line);
            return SMTPC_ECONFIG;
        }
        if (!strcmp(s, "default")) {
            if (cur != &cfg->global) {
                seterr(errbuf, errlen, "%s:%u: \"default\" belongs before the first [account]",
                       name, lineno);
                return SMTPC_ECONFIG;
            }
            if (cfg->default_name) {
                seterr(errbuf, errlen, "%s:%u: \"default\" set twice", name, lineno);
                return SMTPC_ECONFIG;
            }
            cfg->default_name = smtpc__strdup(v);
            if (!cfg->default_name) return SMTPC_ENOMEM;
            continue;
        }
        int k = key_index(s);
        if (k < 0) {
            seterr(errbuf, errlen, "%s:%u: unknown key \"%s\"", name, lineno, s);
            smtpc__secure_zero(line, sizeof line);
            return SMTPC_ECONFIG;
        }
        if (cur->val[k]) {
            seterr(errbuf, errlen, "%s:%u: %s already set on line %u", name, lineno, s,
                   cur->line[k]);
            smtpc__secure_zero(line, sizeof line);
            return SMTPC_ECONFIG;
        }
        char why[256];
        int rc = check_value(k, v, why, sizeof why);
        if (rc) {
            /* never echo a password back */
            if (!strcmp(s, "password")) snprintf(why, sizeof why, "password: invalid value");
            seterr(errbuf, errlen, "%s:%u: %s", name, lineno, why);
            smtpc__secure_zero(line, sizeof line);
            return rc;
        }
        if (!secret->key && (keys[k].secret || (!strcmp(s, "proxy") && url_has_password(v)))) {
            secret->key = keys[k].name;
            secret->line = lineno;
        }
        cur->val[k] = smtpc__strdup(v);
        cur->line[k] = lineno;
        smtpc__secure_zero(line, sizeof line);
        if (!cur->val[k]) return SMTPC_ENOMEM;
    }
    if (cfg->default_name) {
        bool found = false;
        for (size_t i = 0; i < cfg->nacct; i++)
            if (!strcmp(cfg->acct[i].name, cfg->default_name)) found = true;
        if (!found) {
            seterr(errbuf, errlen, "%s: default account \"%s\" is not defined", name,
                   cfg->default_name);
            return SMTPC_ECONFIG;
        }
    }
    return 0;
}

/* ---- msmtp files (src/client/msmtp.c translates, this stores) -------------- */

typedef struct msmtp_ud {
    smtpc_config *cfg;
    smtpc_account *cur;
    secret_seen *secret;
    const char *name;
} msmtp_ud;

static int ms_account(void *ud, const char *name, unsigned line, char *errbuf, size_t errlen)
{
    msmtp_ud *u = ud;
    return add_account(u->cfg, name, u->name, line, &u->cur, errbuf, errlen);
}

static int ms_set(void *ud, const char *key, const char *v, unsigned line, char *errbuf,
                  size_t errlen)
{
    msmtp_ud *u = ud;
    int k = key_index(key);
    if (k < 0) return SMTPC_EINVAL;
    char why[256];
    int rc = check_value(k, v, why, sizeof why);
    if (rc) {
        if (keys[k].secret) snprintf(why, sizeof why, "%s: invalid value", key);
        seterr(errbuf, errlen, "%s:%u: %s", u->name, line, why);
        return rc;
    }
    if (!u->secret->key && (keys[k].secret || (!strcmp(key, "proxy") && url_has_password(v)))) {
        u->secret->key = keys[k].name;
        u->secret->line = line;
    }
    char *d = smtpc__strdup(v);
    if (!d) return SMTPC_ENOMEM;
    smtpc__free_secret(u->cur->val[k]);
    u->cur->val[k] = d;
    u->cur->line[k] = line;
    return 0;
}

static int ms_warn(void *ud, const char *msg)
{
    msmtp_ud *u = ud;
    smtpc_config *cfg = u->cfg;
    if (cfg->nwarn >= 256) return 0;
    char **nw = realloc(cfg->warn, (cfg->nwarn + 1) * sizeof *nw);
    if (!nw) return SMTPC_ENOMEM;
    cfg->warn = nw;
    if (!(cfg->warn[cfg->nwarn] = smtpc__strdup(msg))) return SMTPC_ENOMEM;
    cfg->nwarn++;
    return 0;
}

static int ms_default(void *ud, const char *name)
{
    msmtp_ud *u = ud;
    free(u->cfg->default_name);
    u->cfg->default_name = smtpc__strdup(name);
    return u->cfg->default_name ? 0 : SMTPC_ENOMEM;
}

static void ms_secret(void *ud, const char *cmd, unsigned line)
{
    msmtp_ud *u = ud;
    if (u->secret->key) return;
    u->secret->key = cmd; /* a string constant of msmtp.c */
    u->secret->line = line;
}

/* smtpc's syntax or msmtp's, whichever the text is written in. */
static int parse_any(smtpc_config *cfg, const char *text, size_t len, const char *name,
                     unsigned flags, secret_seen *secret, char *errbuf, size_t errlen)
{
    bool ms = smtpc__msmtp_detect(text, len);
    if ((flags & SMTPC_CONFIG_MSMTP) && !ms) {
        seterr(errbuf, errlen, "%s: not an msmtp configuration file", name);
        return SMTPC_ECONFIG;
    }
    if (!ms) return parse_text(cfg, text, len, name, secret, errbuf, errlen);
    if (len > CFG_MAX_FILE) {
        seterr(errbuf, errlen, "%s: file larger than %u bytes", name, CFG_MAX_FILE);
        return SMTPC_ELIMIT;
    }
    static const smtpc__msmtp_sink sink = {ms_account, ms_set, ms_warn, ms_default, ms_secret};
    msmtp_ud u = {cfg, &cfg->global, secret, name};
    cfg->msmtp = true;
    return smtpc__msmtp_parse(text, len, name, &sink, &u, errbuf, errlen);
}

static int load_env(smtpc_config *cfg, char *errbuf, size_t errlen)
{
    for (size_t k = 0; k < NKEYS; k++) {
        if (keys[k].no_env) continue;
        char var[64] = "SMTPC_";
        size_t n = 6;
        for (const char *p = keys[k].name; *p && n < sizeof var - 1; p++)
            var[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        var[n] = '\0';
        const char *v = getenv(var);
        if (!v || !*v) continue;
        char why[256];
        if (check_value((int)k, v, why, sizeof why)) {
            seterr(errbuf, errlen, "environment %s: %s", var, why);
            return SMTPC_ECONFIG;
        }
        cfg->env[k] = smtpc__strdup(v);
        if (!cfg->env[k]) return SMTPC_ENOMEM;
    }
    return 0;
}

static smtpc_config *config_new(void)
{
    smtpc_config *cfg = calloc(1, sizeof *cfg);
    if (cfg) cfg->global.cfg = cfg;
    if (cfg) cfg->global.name = smtpc__strdup("");
    if (cfg && !cfg->global.name) { free(cfg); cfg = NULL; }
    return cfg;
}

SMTPC_API int smtpc_config_parse(smtpc_config **out, const char *text, size_t len,
                                 const char *name, unsigned flags, char *errbuf,
                                 size_t errbuf_len)
{
    if (errbuf && errbuf_len) errbuf[0] = '\0';
    if (!out || (!text && len)) return SMTPC_EINVAL;
    smtpc_config *cfg = config_new();
    if (!cfg) return SMTPC_ENOMEM;
    secret_seen secret = {NULL, 0}; /* no file: no permissions to check */
    int rc = parse_any(cfg, text ? text : "", len, name ? name : "(config)", flags, &secret,
                       errbuf, errbuf_len);
    if (!rc && !(flags & SMTPC_CONFIG_NOENV)) rc = load_env(cfg, errbuf, errbuf_len);
    if (!rc && name) {
        cfg->srcname = smtpc__strdup(name);
        if (!cfg->srcname) rc = SMTPC_ENOMEM;
    }
    if (rc) {
        smtpc_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

static int read_file(const char *path, smtpc__buf *b, struct stat *st, char *errbuf,
                     size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        seterr(errbuf, errlen, "%s: %s", path, strerror(e));
        return e == ENOENT ? SMTPC_ENOTFOUND : SMTPC_EIO;
    }
    if (fstat(fd, st) < 0) {
        seterr(errbuf, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return SMTPC_EIO;
    }
    if (S_ISDIR(st->st_mode)) {
        seterr(errbuf, errlen, "%s: is a directory", path);
        close(fd);
        return SMTPC_EIO;
    }
    char tmp[8192];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            seterr(errbuf, errlen, "%s: %s", path, strerror(errno));
            rc = SMTPC_EIO;
            break;
        }
        if (n == 0) break;
        if (smtpc__buf_append(b, tmp, (size_t)n)) {
            seterr(errbuf, errlen, "%s: file larger than %u bytes", path, CFG_MAX_FILE);
            rc = SMTPC_ELIMIT;
            break;
        }
    }
    smtpc__secure_zero(tmp, sizeof tmp);
    close(fd);
    return rc;
}

/* Any file: whoever can change it can send the mail and the credentials
 * elsewhere (server, proxy, insecure) or run commands (password-cmd), so it
 * must be owned by the user or by root (/etc/smtpc.conf) and writable by
 * nobody else (as ssh(1) treats its configuration). */
static int check_file_safe(const char *path, const struct stat *st, char *errbuf, size_t errlen)
{
    if (st->st_uid != geteuid() && st->st_uid != 0) {
        seterr(errbuf, errlen,
               "%s: owned by another user (uid %u), neither you nor root: whoever owns it "
               "decides where your mail and credentials go; refusing to use it",
               path, (unsigned)st->st_uid);
        return SMTPC_ECONFIG;
    }
    if (st->st_mode & 022) {
        seterr(errbuf, errlen,
               "%s: writable by group or others (mode %03o): they could redirect your mail and "
               "credentials or run commands as you; refusing to use it. Run: chmod go-w %s",
               path, (unsigned)(st->st_mode & 0777), path);
        return SMTPC_ECONFIG;
    }
    return 0;
}

/* A file with a key that holds or obtains a credential: readable by the
 * user alone, and owned by the user. */
static int check_file_private(const char *path, const struct stat *st, const secret_seen *sec,
                              char *errbuf, size_t errlen)
{
    if (st->st_mode & 077) {
        seterr(errbuf, errlen,
               "%s:%u: %s in a file accessible by group or others (mode %03o); refusing to use "
               "it. Run: chmod 600 %s",
               path, sec->line, sec->key, (unsigned)(st->st_mode & 0777), path);
        return SMTPC_ECONFIG;
    }
    if (st->st_uid != geteuid()) {
        seterr(errbuf, errlen, "%s:%u: %s in a file owned by another user (uid %u); refusing to use it",
               path, sec->line, sec->key, (unsigned)st->st_uid);
        return SMTPC_ECONFIG;
    }
    return 0;
}

static int exists(const char *p)
{
    struct stat st;
    return p && stat(p, &st) == 0;
}

SMTPC_API int smtpc_config_load(smtpc_config **out, const char *path, unsigned flags,
                                char *errbuf, size_t errbuf_len)
{
    if (errbuf && errbuf_len) errbuf[0] = '\0';
    if (!out) return SMTPC_EINVAL;
    char found[4096];
    found[0] = '\0';
    if (path) {
        if (smtpc__strlcpy(found, path, sizeof found) >= sizeof found) return SMTPC_ELIMIT;
    } else if (!(flags & SMTPC_CONFIG_NOSEARCH)) {
        const char *env = getenv("SMTPC_CONFIG");
        const char *home = getenv("HOME");
        const char *xdg = getenv("XDG_CONFIG_HOME");
        char cand[7][4096];
        if (env && *env && !(flags & SMTPC_CONFIG_MSMTP)) {
            /* an explicit choice: missing is an error, not a fall-through */
            if (smtpc__strlcpy(found, env, sizeof found) >= sizeof found) return SMTPC_ELIMIT;
        } else {
            int n = 0;
            if (!(flags & SMTPC_CONFIG_MSMTP)) {
                if (xdg && *xdg) snprintf(cand[n++], sizeof cand[0], "%s/smtpc/config", xdg);
                else if (home && *home) snprintf(cand[n++], sizeof cand[0], "%s/.config/smtpc/config", home);
                if (home && *home) snprintf(cand[n++], sizeof cand[0], "%s/.smtpcrc", home);
                snprintf(cand[n++], sizeof cand[0], "/etc/smtpc.conf");
            }
            /* no smtpc configuration: msmtp's, as msmtp looks for it */
            if (home && *home) snprintf(cand[n++], sizeof cand[0], "%s/.msmtprc", home);
            if (xdg && *xdg) snprintf(cand[n++], sizeof cand[0], "%s/msmtp/config", xdg);
            else if (home && *home) snprintf(cand[n++], sizeof cand[0], "%s/.config/msmtp/config", home);
            snprintf(cand[n++], sizeof cand[0], "/etc/msmtprc");
            for (int i = 0; i < n && !found[0]; i++)
                if (exists(cand[i])) smtpc__strlcpy(found, cand[i], sizeof found);
        }
    }
    if (!found[0]) return smtpc_config_parse(out, NULL, 0, NULL, flags, errbuf, errbuf_len);

    smtpc__buf b;
    smtpc__buf_init_secure(&b, CFG_MAX_FILE); /* may hold a password */
    struct stat st;
    int rc = read_file(found, &b, &st, errbuf, errbuf_len);
    smtpc_config *cfg = NULL;
    secret_seen secret = {NULL, 0};
    /* /dev/null (world-writable, root's) means no configuration: nothing
     * in it to redirect anything */
    bool empty_dev = !rc && S_ISCHR(st.st_mode) && smtpc__buf_size(&b) == 0;
    if (!rc && !empty_dev) rc = check_file_safe(found, &st, errbuf, errbuf_len);
    if (!rc) {
        cfg = config_new();
        if (!cfg) rc = SMTPC_ENOMEM;
    }
    if (!rc)
        rc = parse_any(cfg, (const char *)smtpc__buf_ptr(&b), smtpc__buf_size(&b), found, flags,
                       &secret, errbuf, errbuf_len);
    smtpc__buf_free_secure(&b);
    if (!rc && secret.key) rc = check_file_private(found, &st, &secret, errbuf, errbuf_len);
    if (!rc && !(flags & SMTPC_CONFIG_NOENV)) rc = load_env(cfg, errbuf, errbuf_len);
    if (!rc) {
        cfg->path = smtpc__strdup(found);
        cfg->srcname = smtpc__strdup(found);
        if (!cfg->path || !cfg->srcname) rc = SMTPC_ENOMEM;
    }
    if (rc) {
        smtpc_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

/* ---- queries ------------------------------------------------------------ */

SMTPC_API const char *smtpc_config_path(const smtpc_config *cfg) { return cfg ? cfg->path : NULL; }

SMTPC_API const char *smtpc_config_format(const smtpc_config *cfg)
{
    return cfg && cfg->msmtp ? "msmtp" : "smtpc";
}

SMTPC_API const char *smtpc_config_warning_at(const smtpc_config *cfg, size_t i)
{
    return cfg && i < cfg->nwarn ? cfg->warn[i] : NULL;
}

SMTPC_API size_t smtpc_config_account_count(const smtpc_config *cfg) { return cfg ? cfg->nacct : 0; }

SMTPC_API const smtpc_account *smtpc_config_account_at(const smtpc_config *cfg, size_t i)
{
    return cfg && i < cfg->nacct ? &cfg->acct[i] : NULL;
}

SMTPC_API const smtpc_account *smtpc_config_account(const smtpc_config *cfg, const char *name)
{
    if (!cfg) return NULL;
    if (!name) name = cfg->default_name;
    if (!name) return cfg->nacct == 1 ? &cfg->acct[0] : &cfg->global;
    for (size_t i = 0; i < cfg->nacct; i++)
        if (!strcmp(cfg->acct[i].name, name)) return &cfg->acct[i];
    return NULL;
}

SMTPC_API const smtpc_account *smtpc_config_account_by_from(const smtpc_config *cfg,
                                                            const char *addr)
{
    if (!cfg) return NULL;
    int kf = key_index("from"), km = key_index("match-from");
    if (addr && *addr) {
        /* fnmatch's FNM_CASEFOLD is a GNU extension: compare in lower case */
        char low[CFG_MAX_LINE + 1];
        size_t al = strlen(addr);
        if (al > CFG_MAX_LINE) al = CFG_MAX_LINE;
        for (size_t j = 0; j < al; j++) low[j] = (char)tolower((unsigned char)addr[j]);
        low[al] = '\0';
        for (size_t i = 0; i < cfg->nacct; i++)
            if (cfg->acct[i].val[kf] && ieq(cfg->acct[i].val[kf], addr)) return &cfg->acct[i];
        for (size_t i = 0; i < cfg->nacct; i++) {
            const char *m = cfg->acct[i].val[km];
            if (!m) continue;
            char pat[CFG_MAX_LINE + 1];
            while (*m) {
                while (blank(*m)) m++;
                size_t n = 0;
                while (m[n] && !blank(m[n])) n++;
                if (!n) break;
                for (size_t j = 0; j < n; j++) pat[j] = (char)tolower((unsigned char)m[j]);
                pat[n] = '\0';
                m += n;
                if (fnmatch(pat, low, 0) == 0) return &cfg->acct[i];
            }
        }
    }
    return smtpc_config_account(cfg, NULL);
}

SMTPC_API const char *smtpc_account_name(const smtpc_account *a) { return a ? a->name : NULL; }

SMTPC_API const char *smtpc_account_get(const smtpc_account *a, const char *key)
{
    int k = key_index(key);
    if (!a || k < 0) return NULL;
    const smtpc_config *cfg = a->cfg;
    if (cfg->env[k]) return cfg->env[k];
    if (a->val[k]) return a->val[k];
    return cfg->global.val[k];
}

SMTPC_API const char *smtpc_account_source(const smtpc_account *a, const char *key, char *buf,
                                           size_t len)
{
    int k = key_index(key);
    if (!a || k < 0 || !buf || !len) return NULL;
    const smtpc_config *cfg = a->cfg;
    const char *src = cfg->srcname ? cfg->srcname : "(config)";
    if (cfg->env[k]) {
        char var[64] = "SMTPC_";
        size_t n = 6;
        for (const char *p = keys[k].name; *p && n < sizeof var - 1; p++)
            var[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        var[n] = '\0';
        snprintf(buf, len, "environment %s", var);
    } else if (a->val[k] && !a->line[k]) {
        /* an msmtp file's value that msmtp implies (its default port, tls off) */
        snprintf(buf, len, "%s (msmtp's default)", src);
    } else if (a->val[k]) {
        snprintf(buf, len, "%s:%u", src, a->line[k]);
    } else if (cfg->global.val[k] && !cfg->global.line[k]) {
        snprintf(buf, len, "%s (msmtp's default)", src);
    } else if (cfg->global.val[k]) {
        snprintf(buf, len, "%s:%u", src, cfg->global.line[k]);
    } else {
        return NULL;
    }
    return buf;
}

SMTPC_API bool smtpc_account_get_bool(const smtpc_account *a, const char *key, bool dflt)
{
    const char *v = smtpc_account_get(a, key);
    bool b;
    return v && parse_bool(v, &b) == 0 ? b : dflt;
}

SMTPC_API int64_t smtpc_account_get_ms(const smtpc_account *a, const char *key, int64_t dflt)
{
    const char *v = smtpc_account_get(a, key);
    int64_t ms;
    return v && smtpc_config_parse_duration_ms(v, &ms) == 0 ? ms : dflt;
}
