/* msmtp's configuration file, taken with msmtp's meaning (src/client/msmtp.h,
 * docs/smtpc-config.5 "MSMTP FILES"). */
#include "msmtp.h"

#include <smtpc/errors.h>

#include "util/util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <unistd.h>

#define M_MAX_LINE 4096
#define M_MAX_ACCOUNTS 1024

/* The commands whose values are translated (per account). */
enum {
    M_HOST, M_PORT, M_FROM, M_AUTH, M_USER, M_PASSWORD, M_PASSWORDEVAL, M_TLS, M_TLS_STARTTLS,
    M_TLS_TRUST_FILE, M_TLS_FINGERPRINT, M_TLS_CERT_FILE, M_TLS_KEY_FILE, M_TLS_CERTCHECK,
    M_TLS_HOST_OVERRIDE, M_DOMAIN, M_TIMEOUT, M_PROXY_HOST, M_PROXY_PORT, M_SOURCE_IP,
    M_DSN_NOTIFY, M_DSN_RETURN, M_SET_FROM_HEADER, M_AUTO_FROM, M_MAILDOMAIN, M_LOGFILE,
    M_PROTOCOL, M_SOCKET, M_TLS_CRL_FILE, M_TLS_PRIORITIES,
    M__N
};
static const char *const mnames[M__N] = {
    "host", "port", "from", "auth", "user", "password", "passwordeval", "tls", "tls_starttls",
    "tls_trust_file", "tls_fingerprint", "tls_cert_file", "tls_key_file", "tls_certcheck",
    "tls_host_override", "domain", "timeout", "proxy_host", "proxy_port", "source_ip",
    "dsn_notify", "dsn_return", "set_from_header", "auto_from", "maildomain", "logfile",
    "protocol", "socket", "tls_crl_file", "tls_priorities",
};
/* Commands msmtp knows that only change local behaviour smtpc does not have
 * (headers it adds, logging): a warning names them, nothing else. */
static const char *const mignored[] = {
    "syslog", "aliases", "add_missing_from_header", "add_missing_date_header",
    "set_date_header", "set_msgid_header", "remove_bcc_headers", "undisclosed_recipients",
    "allow_from_override", "logfile_time_format", "ntlmdomain", "tls_min_dh_prime_bits",
};

typedef struct macct {
    char *name;
    char *v[M__N];
    unsigned line[M__N];
} macct;

typedef struct mstate {
    const char *file;
    const smtpc__msmtp_sink *sink;
    void *ud;
    char *errbuf;
    size_t errlen;
    macct defs;
    macct *acc;
    size_t n, cap;
} mstate;

static int warnf(mstate *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int warnf(mstate *m, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return m->sink->warn(m->ud, msg);
}

static bool blank(char c) { return c == ' ' || c == '\t'; }

static void macct_clear(macct *a)
{
    free(a->name);
    a->name = NULL;
    for (size_t i = 0; i < M__N; i++) {
        smtpc__free_secret(a->v[i]);
        a->v[i] = NULL;
    }
}

static int macct_copy_over(macct *dst, const macct *src)
{
    for (size_t i = 0; i < M__N; i++) {
        if (!src->v[i]) continue;
        char *d = smtpc__strdup(src->v[i]);
        if (!d) return SMTPC_ENOMEM;
        smtpc__free_secret(dst->v[i]);
        dst->v[i] = d;
        dst->line[i] = src->line[i];
    }
    return 0;
}

static int mindex(const char *cmd)
{
    for (int i = 0; i < M__N; i++)
        if (!strcmp(mnames[i], cmd)) return i;
    return -1;
}

static bool is_ignored(const char *cmd)
{
    for (size_t i = 0; i < sizeof mignored / sizeof mignored[0]; i++)
        if (!strcmp(mignored[i], cmd)) return true;
    return false;
}

bool smtpc__msmtp_detect(const char *text, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (blank(text[i]) || text[i] == '\r' || text[i] == '\n')) i++;
        if (i >= len) return false;
        if (text[i] == '#') {
            while (i < len && text[i] != '\n') i++;
            continue;
        }
        if (text[i] == '[') return false;
        size_t w = i;
        while (i < len && (isalnum((unsigned char)text[i]) || text[i] == '_' || text[i] == '-')) i++;
        char word[32];
        size_t wl = i - w;
        if (wl == 0 || wl >= sizeof word) return false;
        memcpy(word, text + w, wl);
        word[wl] = '\0';
        while (i < len && blank(text[i])) i++;
        if (i < len && text[i] == '=') return false; /* smtpc's "key = value" */
        return !strcmp(word, "defaults") || !strcmp(word, "account") || mindex(word) >= 0 ||
               is_ignored(word) || !strcmp(word, "eval");
    }
    return false;
}

static int on_off(const char *v, bool *out)
{
    if (!*v || !strcmp(v, "on")) { *out = true; return 0; }
    if (!strcmp(v, "off")) { *out = false; return 0; }
    return -1;
}

static macct *find_acct(mstate *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->acc[i].name, name)) return &m->acc[i];
    return NULL;
}

/* "account NAME [: PARENT[,PARENT...]]" */
static int start_account(mstate *m, char *arg, unsigned lineno, macct **cur)
{
    char *colon = strchr(arg, ':');
    char *parents = NULL;
    if (colon) {
        *colon = '\0';
        parents = colon + 1;
    }
    char *e = arg + strlen(arg);
    while (e > arg && blank(e[-1])) *--e = '\0';
    if (!*arg) {
        smtpc__config_seterr(m->errbuf, m->errlen, "%s:%u: account needs a name", m->file, lineno);
        return SMTPC_ECONFIG;
    }
    if (find_acct(m, arg)) {
        smtpc__config_seterr(m->errbuf, m->errlen, "%s:%u: account %s defined twice", m->file, lineno, arg);
        return SMTPC_ECONFIG;
    }
    if (m->n == M_MAX_ACCOUNTS) {
        smtpc__config_seterr(m->errbuf, m->errlen, "%s:%u: more than %u accounts", m->file, lineno, M_MAX_ACCOUNTS);
        return SMTPC_ELIMIT;
    }
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 4;
        macct *na = realloc(m->acc, nc * sizeof *na);
        if (!na) return SMTPC_ENOMEM;
        m->acc = na;
        m->cap = nc;
    }
    macct *a = &m->acc[m->n];
    memset(a, 0, sizeof *a);
    a->name = smtpc__strdup(arg);
    if (!a->name) return SMTPC_ENOMEM;
    m->n++;
    int rc = macct_copy_over(a, &m->defs); /* "the current default values are filled in" */
    while (!rc && parents) {
        char *p = parents;
        char *comma = strchr(p, ',');
        parents = comma ? comma + 1 : NULL;
        if (comma) *comma = '\0';
        while (blank(*p)) p++;
        char *pe = p + strlen(p);
        while (pe > p && blank(pe[-1])) *--pe = '\0';
        const macct *par = *p ? find_acct(m, p) : NULL;
        if (!par || par == a) {
            smtpc__config_seterr(m->errbuf, m->errlen, "%s:%u: account %s inherits from undefined account \"%s\"",
                   m->file, lineno, a->name, p);
            return SMTPC_ECONFIG;
        }
        rc = macct_copy_over(a, par);
    }
    *cur = a;
    return rc;
}

/* ~/ at the start of a file name is $HOME, as msmtp does. */
static int tilde(mstate *m, const char *v, char *out, size_t len)
{
    const char *home = getenv("HOME");
    int n;
    if (v[0] == '~' && (v[1] == '/' || !v[1]) && home && *home)
        n = snprintf(out, len, "%s%s", home, v + 1);
    else
        n = snprintf(out, len, "%s", v);
    if (n < 0 || (size_t)n >= len) {
        smtpc__config_seterr(m->errbuf, m->errlen, "%s: file name too long", m->file);
        return SMTPC_ELIMIT;
    }
    return 0;
}

/* msmtp's %U (user), %H (host name) and %% in from; %C and %M are not known here. */
static int expand_from(mstate *m, const macct *a, const char *v, char *out, size_t len)
{
    size_t o = 0;
    for (const char *p = v; *p; p++) {
        const char *ins = NULL;
        char one[2] = {*p, 0};
        char host[256];
        if (*p == '%' && p[1]) {
            p++;
            if (*p == '%') ins = "%";
            else if (*p == 'U') {
                const struct passwd *pw = getpwuid(geteuid());
                ins = pw && pw->pw_name && *pw->pw_name ? pw->pw_name : NULL;
            } else if (*p == 'H' && gethostname(host, sizeof host) == 0) {
                host[sizeof host - 1] = '\0';
                ins = host;
            }
            if (!ins) {
                smtpc__config_seterr(m->errbuf, m->errlen,
                       "%s:%u: account %s: from: %%%c is not supported by smtpc; write the address",
                       m->file, a->line[M_FROM], a->name, *p);
                return SMTPC_ECONFIG;
            }
        } else {
            ins = one;
        }
        size_t l = strlen(ins);
        if (o + l >= len) {
            smtpc__config_seterr(m->errbuf, m->errlen, "%s:%u: from: too long", m->file, a->line[M_FROM]);
            return SMTPC_ELIMIT;
        }
        memcpy(out + o, ins, l);
        o += l;
    }
    out[o] = '\0';
    return 0;
}

#define SET(key, val, ln)                                                                   \
    do {                                                                                    \
        if ((rc = m->sink->set(m->ud, (key), (val), (ln), m->errbuf, m->errlen))) return rc; \
    } while (0)
#define WARN(...)                                    \
    do {                                             \
        if ((rc = warnf(m, __VA_ARGS__))) return rc; \
    } while (0)

static bool auth_supported(const char *mech)
{
    static const char *const ok[] = {"plain", "login", "external", "xoauth2", "oauthbearer",
                                      "cram-md5", "scram-sha-1", "scram-sha-256"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!smtpc__strcasecmp(ok[i], mech)) return true;
    return false;
}

/* One msmtp account as smtpc keys. */
static int translate(mstate *m, const macct *a)
{
    int rc;
    char buf[M_MAX_LINE + 64];
    const char *f = m->file;
    const char *nm = a->name;
    if ((rc = m->sink->account(m->ud, nm, 0, m->errbuf, m->errlen))) return rc;
    SET("delivery", "smtp", 0); /* an msmtp account always sends to its host */
    bool b;
    if (a->v[M_PROTOCOL] && strcmp(a->v[M_PROTOCOL], "smtp")) {
        smtpc__config_seterr(m->errbuf, m->errlen, "%s:%u: account %s: protocol %s: smtpc speaks SMTP only", f,
               a->line[M_PROTOCOL], nm, a->v[M_PROTOCOL]);
        return SMTPC_ECONFIG;
    }
    if (a->v[M_SOCKET] && *a->v[M_SOCKET]) {
        smtpc__config_seterr(m->errbuf, m->errlen, "%s:%u: account %s: socket: smtpc does not connect to unix sockets",
               f, a->line[M_SOCKET], nm);
        return SMTPC_ECONFIG;
    }
    /* TLS: tls on + tls_starttls on (msmtp's default) = STARTTLS, required;
     * tls_starttls off = implicit TLS; tls off (msmtp's default) = none */
    bool tls = false, starttls = true;
    if (a->v[M_TLS] && on_off(a->v[M_TLS], &tls)) {
        smtpc__config_seterr(m->errbuf, m->errlen, "%s:%u: tls: \"%s\" is not on or off", f, a->line[M_TLS], a->v[M_TLS]);
        return SMTPC_ECONFIG;
    }
    if (a->v[M_TLS_STARTTLS] && on_off(a->v[M_TLS_STARTTLS], &starttls)) {
        smtpc__config_seterr(m->errbuf, m->errlen, "%s:%u: tls_starttls: \"%s\" is not on or off", f,
               a->line[M_TLS_STARTTLS], a->v[M_TLS_STARTTLS]);
        return SMTPC_ECONFIG;
    }
    unsigned tline = a->v[M_TLS] ? a->line[M_TLS] : 0;
    SET("tls", !tls ? "none" : starttls ? "starttls" : "implicit", tline);
    if (a->v[M_HOST] && *a->v[M_HOST]) {
        const char *h = a->v[M_HOST];
        if (strchr(h, ':')) snprintf(buf, sizeof buf, "[%s]", h);
        else snprintf(buf, sizeof buf, "%s", h);
        SET("server", buf, a->line[M_HOST]);
    }
    /* msmtp's default port: 25, or 465 for TLS without STARTTLS */
    if (a->v[M_PORT] && *a->v[M_PORT]) SET("port", a->v[M_PORT], a->line[M_PORT]);
    else SET("port", tls && !starttls ? "465" : "25", tline);
    if (a->v[M_FROM] && *a->v[M_FROM]) {
        char from[1024];
        if ((rc = expand_from(m, a, a->v[M_FROM], from, sizeof from))) return rc;
        if (strpbrk(from, "*?[")) SET("match-from", from, a->line[M_FROM]);
        else SET("from", from, a->line[M_FROM]);
    }
    /* auth: off (msmtp's default) = no login at all; on = any mechanism */
    bool auth = false;
    const char *av = a->v[M_AUTH];
    if (av && on_off(av, &auth) != 0) {
        if (!auth_supported(av)) {
            smtpc__config_seterr(m->errbuf, m->errlen,
                   "%s:%u: account %s: auth %s: smtpc does not support this mechanism "
                   "(plain, login, cram-md5, scram-sha-1, scram-sha-256, xoauth2, oauthbearer, "
                   "external)",
                   f, a->line[M_AUTH], nm, av);
            return SMTPC_ECONFIG;
        }
        auth = true;
        SET("auth", av, a->line[M_AUTH]);
    }
    bool oauth = av && (!smtpc__strcasecmp(av, "xoauth2") || !smtpc__strcasecmp(av, "oauthbearer"));
    if (auth) {
        if (a->v[M_USER] && *a->v[M_USER]) SET("user", a->v[M_USER], a->line[M_USER]);
        if (a->v[M_PASSWORDEVAL] && *a->v[M_PASSWORDEVAL])
            SET(oauth ? "oauth-token-cmd" : "password-cmd", a->v[M_PASSWORDEVAL],
                a->line[M_PASSWORDEVAL]);
        else if (a->v[M_PASSWORD] && *a->v[M_PASSWORD]) {
            if (oauth) {
                smtpc__config_seterr(m->errbuf, m->errlen,
                       "%s:%u: account %s: a fixed OAuth token in password: use passwordeval", f,
                       a->line[M_PASSWORD], nm);
                return SMTPC_ECONFIG;
            }
            SET("password", a->v[M_PASSWORD], a->line[M_PASSWORD]);
        }
        if (!tls && av && smtpc__strcasecmp(av, "external"))
            WARN("%s:%u: account %s: auth without tls: smtpc does not send credentials "
                 "unencrypted unless allow-plaintext-auth = yes is added",
                 f, a->line[M_AUTH], nm);
    } else if (a->v[M_USER] || a->v[M_PASSWORD] || a->v[M_PASSWORDEVAL]) {
        unsigned l = a->v[M_USER] ? a->line[M_USER] : a->v[M_PASSWORD] ? a->line[M_PASSWORD]
                                                                       : a->line[M_PASSWORDEVAL];
        WARN("%s:%u: account %s: credentials without \"auth on\": msmtp does not log in, "
             "neither does smtpc", f, l, nm);
    }
    if (a->v[M_TLS_FINGERPRINT] && *a->v[M_TLS_FINGERPRINT]) {
        smtpc__config_seterr(m->errbuf, m->errlen,
               "%s:%u: account %s: tls_fingerprint pins the server's whole certificate; smtpc "
               "pins its public key instead (pin = sha256//BASE64, see smtpc-config(5)); "
               "refusing to connect without the pinning you asked for",
               f, a->line[M_TLS_FINGERPRINT], nm);
        return SMTPC_ECONFIG;
    }
    const char *tf = a->v[M_TLS_TRUST_FILE];
    if (tf && !*tf) {
        smtpc__config_seterr(m->errbuf, m->errlen,
               "%s:%u: account %s: an empty tls_trust_file (no trusted CA) only works with "
               "tls_fingerprint, which smtpc does not support",
               f, a->line[M_TLS_TRUST_FILE], nm);
        return SMTPC_ECONFIG;
    }
    if (tf && strcmp(tf, "system")) {
        if ((rc = tilde(m, tf, buf, sizeof buf))) return rc;
        SET("ca-file", buf, a->line[M_TLS_TRUST_FILE]);
    }
    if (a->v[M_TLS_CERT_FILE] && *a->v[M_TLS_CERT_FILE]) {
        if ((rc = tilde(m, a->v[M_TLS_CERT_FILE], buf, sizeof buf))) return rc;
        SET("cert", buf, a->line[M_TLS_CERT_FILE]);
    }
    if (a->v[M_TLS_KEY_FILE] && *a->v[M_TLS_KEY_FILE]) {
        if ((rc = tilde(m, a->v[M_TLS_KEY_FILE], buf, sizeof buf))) return rc;
        SET("key", buf, a->line[M_TLS_KEY_FILE]);
    }
    if (a->v[M_TLS_CERTCHECK]) {
        if (on_off(a->v[M_TLS_CERTCHECK], &b)) {
            smtpc__config_seterr(m->errbuf, m->errlen, "%s:%u: tls_certcheck: \"%s\" is not on or off", f,
                   a->line[M_TLS_CERTCHECK], a->v[M_TLS_CERTCHECK]);
            return SMTPC_ECONFIG;
        }
        if (!b) {
            SET("insecure", "yes", a->line[M_TLS_CERTCHECK]);
            WARN("%s:%u: account %s: tls_certcheck off: the server's certificate is NOT "
                 "verified (as --insecure); anyone on the path can read the mail and the password",
                 f, a->line[M_TLS_CERTCHECK], nm);
        }
    }
    if (a->v[M_TLS_HOST_OVERRIDE] && *a->v[M_TLS_HOST_OVERRIDE])
        SET("tls-server-name", a->v[M_TLS_HOST_OVERRIDE], a->line[M_TLS_HOST_OVERRIDE]);
    if (a->v[M_TLS_CRL_FILE] && *a->v[M_TLS_CRL_FILE])
        WARN("%s:%u: account %s: tls_crl_file: smtpc does not check revocation lists; ignored",
             f, a->line[M_TLS_CRL_FILE], nm);
    if (a->v[M_TLS_PRIORITIES] && *a->v[M_TLS_PRIORITIES])
        WARN("%s:%u: account %s: tls_priorities (GnuTLS syntax): not supported, smtpc's TLS "
             "defaults apply (tls-min, tls-max)", f, a->line[M_TLS_PRIORITIES], nm);
    if (a->v[M_DOMAIN] && *a->v[M_DOMAIN]) SET("ehlo-name", a->v[M_DOMAIN], a->line[M_DOMAIN]);
    if (a->v[M_TIMEOUT] && *a->v[M_TIMEOUT] && strcmp(a->v[M_TIMEOUT], "off")) {
        uint64_t s;
        if (smtpc__parse_u64(a->v[M_TIMEOUT], strlen(a->v[M_TIMEOUT]), &s) || s == 0 ||
            s > 1000000) {
            smtpc__config_seterr(m->errbuf, m->errlen, "%s:%u: timeout: \"%s\" is not off or seconds", f,
                   a->line[M_TIMEOUT], a->v[M_TIMEOUT]);
            return SMTPC_ECONFIG;
        }
        snprintf(buf, sizeof buf, "%ss", a->v[M_TIMEOUT]);
        SET("timeout", buf, a->line[M_TIMEOUT]);
    }
    if (a->v[M_PROXY_HOST] && *a->v[M_PROXY_HOST]) {
        /* msmtp speaks SOCKS5 and lets the proxy resolve the server's name */
        const char *ph = a->v[M_PROXY_HOST];
        const char *pp = a->v[M_PROXY_PORT] && *a->v[M_PROXY_PORT] ? a->v[M_PROXY_PORT] : "1080";
        bool v6 = strchr(ph, ':') != NULL;
        snprintf(buf, sizeof buf, "socks5h://%s%s%s:%s", v6 ? "[" : "", ph, v6 ? "]" : "", pp);
        SET("proxy", buf, a->line[M_PROXY_HOST]);
    }
    if (a->v[M_SOURCE_IP] && *a->v[M_SOURCE_IP]) {
        const char *ip = a->v[M_SOURCE_IP];
        if (strchr(ip, ':')) snprintf(buf, sizeof buf, "[%s]", ip);
        else snprintf(buf, sizeof buf, "%s", ip);
        SET("bind", buf, a->line[M_SOURCE_IP]);
    }
    if (a->v[M_DSN_NOTIFY] && *a->v[M_DSN_NOTIFY] && strcmp(a->v[M_DSN_NOTIFY], "off"))
        SET("dsn-notify", a->v[M_DSN_NOTIFY], a->line[M_DSN_NOTIFY]);
    if (a->v[M_DSN_RETURN] && *a->v[M_DSN_RETURN] && strcmp(a->v[M_DSN_RETURN], "off")) {
        const char *r = a->v[M_DSN_RETURN];
        if (strcmp(r, "headers") && strcmp(r, "full")) {
            smtpc__config_seterr(m->errbuf, m->errlen, "%s:%u: dsn_return: \"%s\" is not off, headers or full",
                   f, a->line[M_DSN_RETURN], r);
            return SMTPC_ECONFIG;
        }
        SET("dsn-ret", !strcmp(r, "full") ? "FULL" : "HDRS", a->line[M_DSN_RETURN]);
    }
    const char *sfh = a->v[M_SET_FROM_HEADER];
    if (sfh && strcmp(sfh, "auto"))
        WARN("%s:%u: account %s: set_from_header %s: not supported; smtpc adds a From header "
             "only when the message has none (msmtp's auto)", f, a->line[M_SET_FROM_HEADER], nm, sfh);
    if (a->v[M_AUTO_FROM] && on_off(a->v[M_AUTO_FROM], &b) == 0 && b)
        WARN("%s:%u: account %s: auto_from: not supported (msmtp deprecates it); set from",
             f, a->line[M_AUTO_FROM], nm);
    if (a->v[M_LOGFILE] && *a->v[M_LOGFILE])
        WARN("%s:%u: account %s: logfile: smtpc writes no log file; ignored (the exit status "
             "and stderr say what happened)", f, a->line[M_LOGFILE], nm);
    return 0;
}

static int parse_lines(mstate *m, const char *text, size_t len)
{
    macct *cur = &m->defs; /* commands before any section: defaults */
    unsigned lineno = 0;
    size_t pos = 0;
    char line[M_MAX_LINE + 1];
    int rc = 0;
    while (pos < len) {
        lineno++;
        size_t e = pos;
        while (e < len && text[e] != '\n') e++;
        size_t ll = e - pos;
        if (ll && text[pos + ll - 1] == '\r') ll--;
        if (ll > M_MAX_LINE) {
            smtpc__config_seterr(m->errbuf, m->errlen, "%s:%u: line longer than %u bytes", m->file, lineno,
                   M_MAX_LINE);
            return SMTPC_ELIMIT;
        }
        memcpy(line, text + pos, ll);
        line[ll] = '\0';
        pos = e + 1;
        char *s = line;
        while (blank(*s)) s++;
        if (!*s || *s == '#') continue;
        char *cmd = s;
        while (*s && !blank(*s)) s++;
        if (*s) *s++ = '\0';
        while (blank(*s)) s++;
        char *end = s + strlen(s);
        while (end > s && blank(end[-1])) *--end = '\0';
        char *arg = s;
        if (smtpc__config_unquote(arg) < 0 || smtpc__has_ctl(arg)) {
            smtpc__config_seterr(m->errbuf, m->errlen, "%s:%u: %s: badly quoted value", m->file, lineno, cmd);
            rc = SMTPC_ECONFIG;
            break;
        }
        if (!strcmp(cmd, "defaults")) {
            cur = &m->defs;
            continue;
        }
        if (!strcmp(cmd, "account")) {
            if ((rc = start_account(m, arg, lineno, &cur))) break;
            continue;
        }
        if (!strcmp(cmd, "eval")) {
            smtpc__config_seterr(m->errbuf, m->errlen,
                   "%s:%u: eval: smtpc does not run commands to write its configuration; write "
                   "the setting (passwordeval is supported)",
                   m->file, lineno);
            rc = SMTPC_ECONFIG;
            break;
        }
        int k = mindex(cmd);
        if (k < 0) {
            rc = warnf(m, "%s:%u: %s: %s; ignored", m->file, lineno, cmd,
                       is_ignored(cmd) ? "not supported by smtpc" : "unknown msmtp command");
            if (rc) break;
            continue;
        }
        if ((k == M_PASSWORD || k == M_PASSWORDEVAL) && *arg) m->sink->secret(m->ud, mnames[k], lineno);
        char *d = smtpc__strdup(arg);
        if (!d) { rc = SMTPC_ENOMEM; break; }
        smtpc__free_secret(cur->v[k]);
        cur->v[k] = d;
        cur->line[k] = lineno;
    }
    smtpc__secure_zero(line, sizeof line);
    return rc;
}

int smtpc__msmtp_parse(const char *text, size_t len, const char *name,
                       const smtpc__msmtp_sink *sink, void *ud, char *errbuf, size_t errlen)
{
    mstate m;
    memset(&m, 0, sizeof m);
    m.file = name ? name : "(msmtp config)";
    m.sink = sink;
    m.ud = ud;
    m.errbuf = errbuf;
    m.errlen = errlen;
    int rc = parse_lines(&m, text, len);
    /* the unnamed account (no account chosen and no "default" one) never
     * falls back to writing into a pickup directory: msmtp would fail */
    if (!rc) rc = sink->set(ud, "delivery", "smtp", 0, errbuf, errlen);
    for (size_t i = 0; !rc && i < m.n; i++) rc = translate(&m, &m.acc[i]);
    if (!rc && find_acct(&m, "default")) rc = sink->dflt(ud, "default");
    macct_clear(&m.defs);
    for (size_t i = 0; i < m.n; i++) macct_clear(&m.acc[i]);
    free(m.acc);
    return rc;
}
