/* DKIM in the CLI: the signer from --dkim-* (or the account's dkim-*
 * keys), signing what send, sendmail, bulk and queue flush send, and the
 * `smtpc dkim` command (keygen, verify). */
#include "cli.h"

#include <arpa/nameser.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <resolv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- the signer ----------------------------------------------------------- */

static smtpc_dkim_signer *g_signer; /* built once per process, freed at exit */

static void signer_free(void) { smtpc_dkim_signer_free(g_signer); }

/* The values of a repeatable option: the flags, else the account's key as a
 * comma-separated list (split into owned copies in own). */
static int values(const cli_ctx *c, cli_opt_id id, cli_list *out, cli_list *own)
{
    memset(out, 0, sizeof *out);
    if (c->o.list[id].n) {
        *out = c->o.list[id];
        out->cap = 0; /* borrowed */
        return 0;
    }
    const char *v = cli_get(c, id);
    while (v && *v) {
        const char *e = strchr(v, ',');
        size_t n = e ? (size_t)(e - v) : strlen(v);
        while (n && (*v == ' ' || *v == '\t')) v++, n--;
        while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
        char *s = strndup(v, n);
        if (!s || cli_list_push(own, s)) {
            free(s);
            return SMTPC_ENOMEM;
        }
        v = e ? e + 1 : v + strlen(v);
    }
    out->v = own->v;
    out->n = own->n;
    return 0;
}

const smtpc_dkim_signer *cli_dkim_signer(const cli_ctx *c, int *ex)
{
    *ex = 0;
    if (g_signer) return g_signer;
    cli_list keys, sels, algs, own_k = {0}, own_s = {0}, own_a = {0};
    int rc = values(c, O_DKIM_KEY, &keys, &own_k);
    if (!rc) rc = values(c, O_DKIM_SELECTOR, &sels, &own_s);
    if (!rc) rc = values(c, O_DKIM_ALGORITHM, &algs, &own_a);
    smtpc_dkim_signer *sg = NULL;
    const char *domain = cli_get(c, O_DKIM_DOMAIN), *hdrs = cli_get(c, O_DKIM_HEADERS);
    if (rc) {
        *ex = EX_OSERR;
    } else if (!keys.n) {
        if (sels.n || domain || algs.n) {
            cli_err(c, "--dkim-selector, --dkim-domain and --dkim-algorithm go with --dkim-key");
            *ex = EX_USAGE;
        }
    } else if (!domain || sels.n != keys.n || (algs.n && algs.n != keys.n && algs.n != 1)) {
        cli_err(c, "DKIM signing needs --dkim-domain and one --dkim-selector for each --dkim-key "
                   "(%zu key%s, %zu selector%s)", keys.n, keys.n == 1 ? "" : "s", sels.n, sels.n == 1 ? "" : "s");
        *ex = EX_USAGE;
    } else if (smtpc_dkim_signer_new(&sg)) {
        *ex = EX_OSERR;
    } else {
        rc = smtpc_dkim_signer_set_domain(sg, domain);
        if (!rc && hdrs) rc = smtpc_dkim_signer_set_headers(sg, hdrs);
        for (size_t i = 0; !rc && i < keys.n; i++) {
            rc = smtpc_dkim_signer_add_key_file(sg, sels.v[i], keys.v[i]);
            const char *want = algs.n ? algs.v[algs.n == 1 ? 0 : i] : NULL;
            const char *got = rc ? NULL : smtpc_dkim_signer_key_algorithm(sg, i);
            if (want && strcmp(want, "rsa-sha256") && strcmp(want, "ed25519-sha256")) {
                cli_err(c, "--dkim-algorithm: \"%s\" is not rsa-sha256 or ed25519-sha256", want);
                *ex = EX_USAGE;
                break;
            }
            if (got && want && strcmp(got, want)) {
                cli_err(c, "%s: a key for %s, not %s (--dkim-algorithm)", keys.v[i], got, want);
                *ex = EX_CONFIG;
                break;
            }
        }
        if (rc && !*ex) {
            cli_err(c, "DKIM: %s", smtpc_dkim_signer_errmsg(sg));
            *ex = rc == SMTPC_ENOMEM ? EX_OSERR : rc == SMTPC_ELIBRARY ? EX_OSFILE : EX_CONFIG;
        }
    }
    cli_list_free_strings(&own_k);
    cli_list_free_strings(&own_s);
    cli_list_free_strings(&own_a);
    if (*ex || !sg) {
        smtpc_dkim_signer_free(sg);
        return NULL;
    }
    g_signer = sg;
    atexit(signer_free);
    return sg;
}

int cli_dkim_client(const cli_ctx *c, smtpc_client *cl)
{
    int ex;
    const smtpc_dkim_signer *sg = cli_dkim_signer(c, &ex);
    if (!sg) return ex;
    int rc = smtpc_client_set_dkim(cl, sg);
    if (rc) cli_err(c, "%s", smtpc_client_errmsg(cl));
    return rc ? EX_SOFTWARE : 0;
}

int cli_dkim_bulk(const cli_ctx *c, smtpc_bulk *b)
{
    /* --list-unsubscribe URLs are checked once, not at each message */
    cli_buf v;
    cli_buf_init(&v, 64 << 10);
    bool post;
    int ex = cli_unsub_value(c, "", "", &v, &post);
    cli_buf_free(&v);
    if (ex) return ex;
    const smtpc_dkim_signer *sg = cli_dkim_signer(c, &ex);
    if (!sg) return ex;
    int rc = smtpc_bulk_set_dkim(b, sg, 0);
    if (rc) cli_err(c, "%s", smtpc_bulk_errmsg(b));
    return rc ? EX_SOFTWARE : 0;
}

/* ---- smtpc dkim keygen | verify ------------------------------------------ */

static int dkim_usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s dkim keygen --domain D --selector S [--algorithm rsa-sha256|ed25519-sha256]\n"
            "                      [--bits N] --out FILE\n"
            "       %s dkim verify FILE [--dns-txt FILE]   (without: the keys from DNS)\n",
            prog, prog);
    return EX_USAGE;
}

/* The DNS record in zone-file form: quoted strings of at most 255 octets. */
static void print_record(FILE *f, const char *name, const char *txt)
{
    fprintf(f, "%s. IN TXT (", name);
    for (size_t n = strlen(txt), at = 0; at < n; at += 250)
        fprintf(f, " \"%.*s\"", (int)(n - at < 250 ? n - at : 250), txt + at);
    fputs(" )\n", f);
}

static int keygen(const char *prog, int argc, char **argv)
{
    const char *domain = NULL, *sel = NULL, *alg = "rsa-sha256", *out = NULL, *bits_s = NULL;
    for (int i = 0; i < argc; i++) {
        const char **dst = !strcmp(argv[i], "--domain")      ? &domain
                           : !strcmp(argv[i], "--selector")  ? &sel
                           : !strcmp(argv[i], "--algorithm") ? &alg
                           : !strcmp(argv[i], "--out")       ? &out
                           : !strcmp(argv[i], "--bits")      ? &bits_s
                                                             : NULL;
        if (!dst || i + 1 == argc) return dkim_usage(prog);
        *dst = argv[++i];
    }
    uint64_t bits = 0;
    if (!domain || !sel || !out || (bits_s && (cli_parse_u64(bits_s, &bits) || bits > 4096))) return dkim_usage(prog);
    static char pem[8192];
    int rc = smtpc_dkim_keygen(alg, (unsigned)bits, pem, sizeof pem);
    if (rc) {
        fprintf(stderr, "%s dkim keygen: %s\n", prog,
                rc == SMTPC_EINVAL ? "--algorithm is rsa-sha256 (--bits 1024 to 4096) or ed25519-sha256"
                                   : smtpc_strerror(rc));
        return rc == SMTPC_EINVAL ? EX_USAGE : cli_exit_code(rc);
    }
    /* the signer checks the key as it will be used, and gives the record */
    smtpc_dkim_signer *sg = NULL;
    char txt[1024], name[512];
    rc = smtpc_dkim_signer_new(&sg);
    if (!rc) rc = smtpc_dkim_signer_set_domain(sg, domain);
    if (!rc) rc = smtpc_dkim_signer_add_key_pem(sg, sel, pem, strlen(pem));
    if (!rc) rc = smtpc_dkim_signer_key_txt(sg, 0, txt, sizeof txt);
    if (rc) {
        fprintf(stderr, "%s dkim keygen: %s\n", prog, sg && smtpc_dkim_signer_errmsg(sg)[0] ? smtpc_dkim_signer_errmsg(sg) : smtpc_strerror(rc));
        smtpc_dkim_signer_free(sg);
        explicit_bzero(pem, sizeof pem);
        return rc == SMTPC_EINVAL ? EX_USAGE : cli_exit_code(rc);
    }
    smtpc_dkim_signer_free(sg);
    /* a new file only, private from the start */
    int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    size_t len = strlen(pem);
    int ex = 0;
    if (fd < 0 || write(fd, pem, len) != (ssize_t)len || fsync(fd) != 0) {
        fprintf(stderr, "%s dkim keygen: %s: %s\n", prog, out, strerror(errno));
        ex = errno == EEXIST ? EX_CANTCREAT : EX_IOERR;
        if (fd >= 0) unlink(out);
    }
    if (fd >= 0) close(fd);
    explicit_bzero(pem, sizeof pem);
    if (ex) return ex;
    snprintf(name, sizeof name, "%s._domainkey.%s", sel, domain);
    printf("; publish in DNS (the private key is in %s, mode 0600):\n", out);
    print_record(stdout, name, txt);
    return 0;
}

/* --dns-txt FILE: lines "NAME [IN] [TXT] ( "..." "..." )" as keygen prints
 * them, or "NAME TEXT"; '#' and ';' start comments. */
typedef struct txt_file {
    char *data;
} txt_file;

static int txt_lookup(void *ud, const char *name, char *buf, size_t buflen)
{
    const txt_file *t = ud;
    size_t nl = strlen(name);
    for (const char *line = t->data; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t ll = end ? (size_t)(end - line) : strlen(line);
        const char *p = line, *e = line + ll;
        line = end ? end + 1 : NULL;
        while (p < e && (*p == ' ' || *p == '\t')) p++;
        if (p == e || *p == '#' || *p == ';') continue;
        const char *ne = p;
        while (ne < e && *ne != ' ' && *ne != '\t') ne++;
        size_t n = (size_t)(ne - p);
        if (n && p[n - 1] == '.') n--;
        if (n != nl || strncasecmp(p, name, n)) continue;
        p = ne;
        size_t o = 0;
        bool quoted = memchr(p, '"', (size_t)(e - p)) != NULL;
        for (;;) {
            while (p < e && (*p == ' ' || *p == '\t')) p++;
            if (p == e) break;
            if (quoted) {
                if (*p != '"') {
                    p++;
                    continue;
                }
                const char *q = memchr(p + 1, '"', (size_t)(e - p - 1));
                if (!q) break;
                size_t k = (size_t)(q - p - 1);
                if (o + k >= buflen) return SMTPC_ELIMIT;
                memcpy(buf + o, p + 1, k);
                o += k;
                p = q + 1;
            } else {
                size_t k = (size_t)(e - p);
                while (k && (p[k - 1] == '\r' || p[k - 1] == ' ')) k--;
                if (k >= buflen) return SMTPC_ELIMIT;
                memcpy(buf, p, k);
                o = k;
                break;
            }
        }
        buf[o] = '\0';
        return 0;
    }
    return SMTPC_ENOTFOUND;
}

/* Without --dns-txt: the TXT record from DNS (res_query; the strings of
 * every TXT answer for the name, joined). */
static int dns_lookup(void *ud, const char *name, char *buf, size_t buflen)
{
    (void)ud;
    unsigned char ans[4096];
    int n = res_query(name, C_IN, T_TXT, ans, sizeof ans);
    if (n < 0) return h_errno == HOST_NOT_FOUND || h_errno == NO_DATA ? SMTPC_ENOTFOUND : SMTPC_ETEMPFAIL;
    if (n < 12 || n > (int)sizeof ans) return SMTPC_ETEMPFAIL;
    const unsigned char *p = ans + 12, *end = ans + n;
    unsigned qd = (unsigned)(ans[4] << 8 | ans[5]), an = (unsigned)(ans[6] << 8 | ans[7]);
    char dn[1025];
    for (unsigned i = 0; i < qd; i++) {
        int k = dn_expand(ans, end, p, dn, sizeof dn);
        if (k < 0 || p + k + 4 > end) return SMTPC_ETEMPFAIL;
        p += k + 4;
    }
    size_t o = 0;
    bool found = false;
    for (unsigned i = 0; i < an; i++) {
        int k = dn_expand(ans, end, p, dn, sizeof dn);
        if (k < 0 || p + k + 10 > end) return SMTPC_ETEMPFAIL;
        p += k;
        unsigned type = (unsigned)(p[0] << 8 | p[1]), rdlen = (unsigned)(p[8] << 8 | p[9]);
        p += 10;
        if (p + rdlen > end) return SMTPC_ETEMPFAIL;
        if (type == T_TXT && !found) { /* the first TXT record (a CNAME may come before it) */
            found = true;
            for (const unsigned char *s = p; s < p + rdlen;) {
                size_t sl = *s++;
                if (s + sl > p + rdlen || o + sl >= buflen) return SMTPC_ELIMIT;
                memcpy(buf + o, s, sl);
                o += sl;
                s += sl;
            }
        }
        p += rdlen;
    }
    if (!found) return SMTPC_ENOTFOUND;
    buf[o] = '\0';
    return 0;
}

static int verify(const char *prog, int argc, char **argv)
{
    const char *file = NULL, *dns = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--dns-txt") && i + 1 < argc) dns = argv[++i];
        else if (argv[i][0] != '-' || !strcmp(argv[i], "-")) file = argv[i];
        else return dkim_usage(prog);
    }
    if (!file) return dkim_usage(prog);
    cli_buf msg, recs;
    cli_buf_init(&msg, CLI_MAX_MESSAGE);
    cli_buf_init(&recs, 1 << 20);
    int ex = 0;
    if (cli_slurp(file, &msg, CLI_MAX_MESSAGE) || (dns && cli_slurp(dns, &recs, 1 << 20)) ||
        cli_buf_append(&recs, "", 1)) {
        fprintf(stderr, "%s dkim verify: %s\n", prog, strerror(errno));
        ex = errno == ENOENT ? EX_NOINPUT : EX_IOERR;
    }
    smtpc_dkim_result res[SMTPC_DKIM_MAX_KEYS * 2];
    size_t count = 0;
    char err[256];
    txt_file t = {(char *)cli_buf_ptr(&recs)};
    int rc = ex ? 0
                : smtpc_dkim_verify(cli_buf_ptr(&msg), cli_buf_size(&msg), dns ? txt_lookup : dns_lookup, &t, 0, res,
                                    CLI_ARRAY_LEN(res), &count, err, sizeof err);
    if (!ex && rc) {
        fprintf(stderr, "%s dkim verify: %s: %s\n", prog, file, err);
        ex = cli_exit_code(rc);
    }
    static const char *const st[] = {"pass", "fail", "permerror", "temperror"};
    size_t pass = 0;
    for (size_t i = 0; !ex && i < count && i < CLI_ARRAY_LEN(res); i++) {
        printf("%s %s %s._domainkey.%s%s%s\n", st[res[i].status], res[i].algorithm, res[i].selector,
               res[i].domain, res[i].reason[0] ? ": " : "", res[i].reason);
        pass += res[i].status == SMTPC_DKIM_PASS;
    }
    if (!ex && count == 0) printf("none: the message has no DKIM-Signature\n");
    if (!ex && (count == 0 || pass != count)) ex = 1;
    cli_buf_free(&msg);
    cli_buf_free(&recs);
    return ex;
}

int cmd_dkim(const char *prog, int argc, char **argv)
{
    if (argc < 1) return dkim_usage(prog);
    if (!strcmp(argv[0], "keygen")) return keygen(prog, argc - 1, argv + 1);
    if (!strcmp(argv[0], "verify")) return verify(prog, argc - 1, argv + 1);
    return dkim_usage(prog);
}

/* ---- one-click unsubscribe (RFC 2369, RFC 8058) ---------------------------- */

/* Appends s percent-encoded (RFC 3986: unreserved characters kept). */
static int pct_append(cli_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    strchr("-._~", *p);
        char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
        int rc = keep ? cli_buf_append(b, p, 1) : cli_buf_append(b, e, 3);
        if (rc) return rc;
    }
    return 0;
}

int cli_unsub_value(const cli_ctx *c, const char *id, const char *rcpt, cli_buf *out, bool *one_click)
{
    const cli_list *l = &c->o.list[O_LIST_UNSUBSCRIBE];
    *one_click = false;
    for (size_t i = 0; i < l->n; i++) {
        const char *u = l->v[i];
        bool https = !strncasecmp(u, "https://", 8), mailto = !strncasecmp(u, "mailto:", 7);
        bool bad = !https && !mailto;
        for (const char *p = u; !bad && *p; p++) bad = (unsigned char)*p <= ' ' || *p == '<' || *p == '>' || *p == 0x7f;
        if (bad) {
            cli_err(c, "--list-unsubscribe: \"%s\" is not an https: or mailto: URL without spaces or <>", u);
            return EX_USAGE;
        }
        *one_click |= https;
        int rc = cli_buf_append_str(out, i ? ", <" : "<");
        for (const char *p = u; !rc && *p;) {
            if (!strncmp(p, "{id}", 4) || !strncmp(p, "{rcpt}", 6)) {
                bool isid = p[1] == 'i';
                rc = pct_append(out, isid ? id : rcpt);
                p += isid ? 4 : 6;
            } else {
                rc = cli_buf_append(out, p++, 1);
            }
        }
        if (!rc) rc = cli_buf_append_str(out, ">");
        if (rc) return EX_OSERR;
    }
    return 0;
}

int cli_unsub_message(const cli_ctx *c, smtpc_message *m, const char *rcpt)
{
    if (!c->o.list[O_LIST_UNSUBSCRIBE].n) return 0;
    cli_buf v;
    cli_buf_init(&v, 64 << 10);
    bool post;
    smtpc_message_writer *w = NULL; /* the first writer fixes the Message-ID */
    if (!smtpc_message_message_id(m) && !smtpc_message_writer_new(&w, m, SMTPC_WRITE_SMTPUTF8)) smtpc_message_writer_free(w);
    const char *mid = smtpc_message_message_id(m);
    char id[512];
    cli_strlcpy(id, mid && mid[0] == '<' ? mid + 1 : mid ? mid : "1", sizeof id);
    if (id[0] && id[strlen(id) - 1] == '>') id[strlen(id) - 1] = '\0';
    int ex = cli_unsub_value(c, id, rcpt, &v, &post);
    if (!ex && (cli_buf_append(&v, "", 1) ||
                smtpc_message_add_header(m, "List-Unsubscribe", (const char *)cli_buf_ptr(&v)) ||
                (post && smtpc_message_add_header(m, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click")))) {
        cli_err(c, "--list-unsubscribe: %s", smtpc_message_errmsg(m));
        ex = EX_USAGE;
    }
    cli_buf_free(&v);
    return ex;
}

int cli_unsub_fields(const cli_ctx *c, const char *id, const char *rcpt, cli_buf *out)
{
    if (!c->o.list[O_LIST_UNSUBSCRIBE].n) return 0;
    bool post;
    int ex = 0;
    if (cli_buf_append_str(out, "List-Unsubscribe: ")) return EX_OSERR;
    if ((ex = cli_unsub_value(c, id, rcpt, out, &post))) return ex;
    if (cli_buf_append_str(out, "\r\n") ||
        (post && cli_buf_append_str(out, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")))
        return EX_OSERR;
    return 0;
}

int cli_unsub_prepend(const cli_ctx *c, const char *path, const char *rcpt, char **data, size_t *len)
{
    if (!c->o.list[O_LIST_UNSUBSCRIBE].n) return 0;
    char id[256];
    const char *base = strrchr(path, '/');
    cli_strlcpy(id, base ? base + 1 : path, sizeof id);
    size_t il = strlen(id);
    if (il > 4 && !strcmp(id + il - 4, ".eml")) id[il - 4] = '\0';
    cli_buf f;
    cli_buf_init(&f, 64 << 10);
    int ex = cli_unsub_fields(c, id, rcpt, &f);
    char *nd = ex ? NULL : malloc(cli_buf_size(&f) + *len + 1);
    if (!ex && !nd) ex = EX_OSERR;
    if (!ex) {
        memcpy(nd, cli_buf_ptr(&f), cli_buf_size(&f));
        memcpy(nd + cli_buf_size(&f), *data, *len);
        *len += cli_buf_size(&f);
        free(*data);
        *data = nd;
    }
    cli_buf_free(&f);
    return ex;
}
