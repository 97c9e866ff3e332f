/* smtpc bulk / smtpc send --count N --connections K: many messages over K
 * connections with smtpc_bulk.
 *
 *   smtpc bulk --server HOST[:PORT] --dir DIR [--connections K] ...
 *   smtpc send --server HOST[:PORT] --from A --to B [--to C] [--message FILE]
 *              --count N --connections K ...
 * Options: --tls implicit|starttls, --insecure, --ca-file F, --rate MSG/S,
 * --max-per-connection N, --quiet; AUTH: --user NAME with --password-env VAR,
 * --password-file F or --password-cmd CMD (as smtpc send; never a password
 * on the command line), --oauth-token-cmd CMD (run again when the server
 * refuses the token: it expired during a long run), --auth MECHS,
 * --allow-plaintext-auth; --proxy URL (socks4/4a/5/5h, http, https). Envelope for --dir: IIS-style leading
 * "X-Sender:" / "X-Receiver:" lines (removed from the message), else From:
 * and To:/Cc:/Bcc: headers (Bcc removed). Progress on a terminal: done, rate, ETA, failures.
 * Exit 0 when every message was sent, 75 (EX_TEMPFAIL) otherwise. */
#include "cli.h"

#include <smtpc/smtpc.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct item {
    char *path;
    char *data; /* as sent: without the X-Sender/X-Receiver lines and Bcc */
    size_t len;
    cli_list from;  /* the first is the reverse-path (owned strings) */
    cli_list rcpts; /* owned strings, no duplicates */
} item;

typedef struct bulk_ctx {
    const char *from;
    const char *to[64];
    size_t nto;
    char *msg; /* --count: one body for all */
    size_t msg_len;
    size_t count, next, done, sent, failed;
    char **files;
    size_t nfiles;
    bool progress, quiet;
    double t0, last_print;
} bulk_ctx;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 65536, n = 0;
    char *p = malloc(cap);
    size_t r;
    while (p && (r = fread(p + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *q = realloc(p, cap *= 2);
            if (!q) { free(p); p = NULL; }
            else p = q;
        }
    }
    fclose(f);
    *len = n;
    return p;
}

/* Adds the addresses of a header or X-Receiver value, skipping ones
 * already there (compared without case, as sendmail -t does). */
static int add_addresses(cli_list *l, const char *v)
{
    cli_list got = {0};
    int rc = hdr_addresses(v, &got);
    for (size_t i = 0; i < got.n; i++) {
        bool dup = false;
        for (size_t j = 0; j < l->n && !dup; j++) dup = !smtpc__strcasecmp(l->v[j], got.v[i]);
        if (!rc && !dup && cli_list_push(l, got.v[i])) rc = SMTPC_ENOMEM;
        if (rc || dup) free((void *)got.v[i]); /* else the list owns it */
    }
    free(got.v);
    return rc;
}

typedef struct env_ud {
    item *it;
    bool want_from, want_rcpts;
} env_ud;

static int envelope_field(void *ud, const char *name, size_t nl, const char *value)
{
    env_ud *e = ud;
    if (e->want_rcpts && ((nl == 2 && (!smtpc__strncasecmp(name, "To", 2) || !smtpc__strncasecmp(name, "Cc", 2))) ||
                          (nl == 3 && !smtpc__strncasecmp(name, "Bcc", 3))))
        return add_addresses(&e->it->rcpts, value);
    if (e->want_from && nl == 4 && !smtpc__strncasecmp(name, "From", 4) && e->it->from.n == 0)
        return add_addresses(&e->it->from, value);
    return 0;
}

/* The envelope: leading IIS pickup lines (X-Sender, X-Receiver), removed
 * from the message; else (or for what they lack) the headers, unfolded:
 * From, and To, Cc and Bcc (all their recipients). Bcc never leaves this
 * machine: the field is removed whichever way the envelope came. 0, -1
 * cannot read, -2 no sender or recipient, -3 a header field too long or
 * out of memory. */
static int load_item(item *it)
{
    it->data = slurp(it->path, &it->len);
    if (!it->data) return -1;
    size_t off = 0;
    for (;;) {
        const char *l = it->data + off;
        size_t left = it->len - off;
        const char *nl = memchr(l, '\n', left);
        if (!nl) break;
        size_t ll = (size_t)(nl - l);
        bool sender = ll > 9 && !strncasecmp(l, "X-Sender:", 9);
        bool receiver = ll > 11 && !strncasecmp(l, "X-Receiver:", 11);
        if (!sender && !receiver) break;
        char *v = smtpc__strndup(l + (sender ? 9 : 11), ll - (sender ? 9 : 11));
        if (!v) return -3;
        if (sender) cli_list_free_strings(&it->from);
        int rc = add_addresses(sender ? &it->from : &it->rcpts, v);
        if (!rc && sender && it->from.n == 0 && strstr(v, "<>")) { /* the null sender (a bounce) */
            char *null_sender = strdup("");
            if (!null_sender || cli_list_push(&it->from, null_sender)) {
                free(null_sender);
                rc = SMTPC_ENOMEM;
            }
        }
        free(v);
        if (rc) return -3;
        off += ll + 1;
    }
    if (off) {
        memmove(it->data, it->data + off, it->len - off);
        it->len -= off;
    }
    size_t hlen = hdr_end(it->data, it->len);
    env_ud e = {it, it->from.n == 0, it->rcpts.n == 0};
    if ((e.want_from || e.want_rcpts) && hdr_each(it->data, hlen, envelope_field, &e)) return -3;
    if (hdr_has(it->data, hlen, "Bcc")) {
        smtpc__buf out;
        smtpc__buf_init(&out, 0);
        if (hdr_remove(it->data, it->len, "Bcc", &out)) {
            smtpc__buf_free(&out);
            return -3;
        }
        char *p = malloc(smtpc__buf_size(&out) + 1);
        if (!p) {
            smtpc__buf_free(&out);
            return -3;
        }
        memcpy(p, smtpc__buf_ptr(&out), smtpc__buf_size(&out));
        free(it->data);
        it->data = p;
        it->len = smtpc__buf_size(&out);
        smtpc__buf_free(&out);
    }
    return it->from.n && it->rcpts.n ? 0 : -2;
}

static void item_free(item *it)
{
    free(it->data);
    cli_list_free_strings(&it->from);
    cli_list_free_strings(&it->rcpts);
    free(it->path);
    free(it);
}

static int next_cb(void *ud, smtpc_bulk_msg *m)
{
    bulk_ctx *x = ud;
    memset(m, 0, sizeof *m);
    if (x->files) {
        while (x->next < x->nfiles) {
            item *it = calloc(1, sizeof *it);
            if (!it) return SMTPC_ENOMEM;
            it->path = x->files[x->next++];
            int rc = load_item(it);
            if (rc) {
                fprintf(stderr, "smtpc: %s: %s\n", it->path,
                        rc == -1   ? "cannot read"
                        : rc == -2 ? "no sender or recipient (X-Sender/X-Receiver or From/To/Cc/Bcc)"
                                   : "a header field is too long (or out of memory)");
                x->failed++;
                x->done++;
                item_free(it);
                continue;
            }
            m->from = it->from.v[0];
            m->rcpts = it->rcpts.v;
            m->nrcpts = it->rcpts.n;
            m->data = it->data;
            m->len = it->len;
            m->userdata = it;
            return 1;
        }
        return 0;
    }
    if (x->next >= x->count) return 0;
    x->next++;
    m->from = x->from;
    m->rcpts = x->to;
    m->nrcpts = x->nto;
    m->data = x->msg;
    m->len = x->msg_len;
    return 1;
}

static void print_progress(bulk_ctx *x, bool final)
{
    size_t total = x->files ? x->nfiles : x->count;
    double el = now_s() - x->t0;
    double rate = el > 0 ? (double)x->done / el : 0;
    double eta = rate > 0 ? (double)(total - x->done) / rate : 0;
    fprintf(stderr, "\r%zu/%zu done, %.0f msg/s, ETA %.0fs, %zu failed%s", x->done, total, rate, eta,
            x->failed, final ? "\n" : "   ");
}

static void result_cb(void *ud, const smtpc_bulk_msg *m, const smtpc_bulk_result *r)
{
    bulk_ctx *x = ud;
    x->done++;
    if (r->status == SMTPC_BULK_SENT) {
        x->sent++;
    } else {
        x->failed++;
        static const char *names[] = {"sent", "failed", "canceled", "unknown (maybe delivered)"};
        item *it = m->userdata;
        if (!x->quiet && r->reply_code)
            fprintf(stderr, "%ssmtpc: %s: %s: %s %d %s\n", x->progress ? "\r" : "",
                    it ? it->path : "message", names[r->status], r->errmsg, r->reply_code,
                    r->reply_text ? r->reply_text : "");
        else if (!x->quiet) /* no reply decided it (a local refusal, a network failure) */
            fprintf(stderr, "%ssmtpc: %s: %s: %s\n", x->progress ? "\r" : "",
                    it ? it->path : "message", names[r->status], r->errmsg);
    }
    if (m->userdata) item_free(m->userdata);
    if (x->progress) {
        double t = now_s();
        if (t - x->last_print > 0.2) {
            x->last_print = t;
            print_progress(x, false);
        }
    }
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int list_dir(bulk_ctx *x, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    size_t cap = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcasecmp(e->d_name + l - 4, ".eml")) continue;
        if (x->nfiles == cap) {
            cap = cap ? cap * 2 : 256;
            char **nf = realloc(x->files, cap * sizeof *nf);
            if (!nf) break;
            x->files = nf;
        }
        size_t pl = strlen(dir) + l + 2;
        char *p = malloc(pl);
        if (!p) break;
        snprintf(p, pl, "%s/%s", dir, e->d_name);
        x->files[x->nfiles++] = p;
    }
    closedir(d);
    if (x->nfiles) qsort(x->files, x->nfiles, sizeof *x->files, cmp_str);
    return 0;
}

static void ctx_free(bulk_ctx *x)
{
    for (size_t i = x->next; i < x->nfiles; i++) free(x->files[i]);
    free(x->files);
    free(x->msg);
}

/* --oauth-token-cmd, as the run's token callback: the command's token is
 * kept for every connection, and the command runs again only when the
 * server refused the token (it expired during a long run). */
typedef struct bulk_token {
    const cli_ctx *sc;
    char *token;
} bulk_token;

static int token_cb(void *ud, bool refresh, const char **token, size_t *len)
{
    bulk_token *t = ud;
    if (refresh || !t->token) {
        char *fresh = NULL, err[300];
        const char *src = NULL;
        int rc = cli_secret(t->sc, true, &fresh, &src, err, sizeof err);
        if (rc) {
            fprintf(stderr, "%s: a new OAuth token: %s\n", t->sc->prog, err);
            return rc == SMTPC_ENOTFOUND ? SMTPC_EAUTH : rc;
        }
        smtpc__free_secret(t->token);
        t->token = fresh;
    }
    *token = t->token;
    *len = strlen(t->token);
    return 0;
}

static void bulk_usage(FILE *f)
{
    fputs("usage: smtpc bulk --server HOST[:PORT] --dir DIR [options]\n"
          "       smtpc send --server HOST[:PORT] --from A --to B [--message FILE] --count N --connections K [options]\n"
          "Sends every .eml of DIR (envelope from X-Sender/X-Receiver lines or the headers),\n"
          "or one message N times, over K connections with pipelining (smtpc_bulk).\n\n"
          "  --connections K         connections at once (1-10000; default 1)\n"
          "  --count N               how many copies (send only; default 1)\n"
          "  --max-per-connection N  messages per connection before a new one (default: no limit)\n"
          "  --rate R                at most R messages per second over all connections\n"
          "  --tls none|implicit|starttls  --ca-file FILE  --insecure\n"
          "  --user NAME  --password-env VAR|--password-file FILE|--password-cmd CMD\n"
          "  --oauth-token-cmd CMD  --auth MECH,...  --allow-plaintext-auth\n"
          "  --proxy URL             socks5://, socks5h://, socks4://, socks4a://, http://, https://\n"
          "  --subject TEXT  --quiet (no progress line)\n"
          "See smtpc(1), BULK SENDING.\n",
          f);
}

/* A whole decimal number in [lo, hi] for option a, or 64 (usage) with a message. */
static int bulk_num(const char *prog, const char *a, const char *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (smtpc__parse_u64(v, strlen(v), out) || *out < lo || *out > hi) {
        fprintf(stderr, "%s: %s wants a whole number from %llu to %llu, not '%s'\n", prog, a,
                (unsigned long long)lo, (unsigned long long)hi, v);
        return 64;
    }
    return 0;
}

int cmd_bulk(const char *prog, int argc, char **argv)
{
    bulk_ctx x;
    memset(&x, 0, sizeof x);
    const char *server = NULL, *dir = NULL, *message = NULL, *tls = NULL, *ca = NULL, *subject = "smtpc";
    unsigned k = 1, maxper = 0;
    double rate = 0;
    bool insecure = false, plain_auth = false;
    const char *user = NULL, *mechs = NULL, *proxy = NULL;
    cli_ctx sc; /* only the secret sources, for cli_secret() */
    memset(&sc, 0, sizeof sc);
    sc.prog = prog;
    bulk_token tk = {&sc, NULL}; /* outlives the run */
    x.count = 1;
    uint64_t u = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define VAL() do { if (!v) { fprintf(stderr, "%s: %s needs a value\n", prog, a); return 64; } i++; } while (0)
        if (!strcmp(a, "--server")) { VAL(); server = v; }
        else if (!strcmp(a, "--dir")) { VAL(); dir = v; }
        else if (!strcmp(a, "--message")) { VAL(); message = v; }
        else if (!strcmp(a, "--from")) { VAL(); x.from = v; }
        else if (!strcmp(a, "--to")) {
            VAL();
            if (x.nto >= 64) {
                fprintf(stderr, "%s: at most 64 --to\n", prog);
                return 64;
            }
            x.to[x.nto++] = v;
        }
        else if (!strcmp(a, "--subject")) { VAL(); subject = v; }
        else if (!strcmp(a, "--count")) {
            VAL();
            if (bulk_num(prog, a, v, 1, SIZE_MAX / 2, &u)) return 64;
            x.count = (size_t)u;
        } else if (!strcmp(a, "--connections")) {
            VAL();
            if (bulk_num(prog, a, v, 1, 10000, &u)) return 64;
            k = (unsigned)u;
        } else if (!strcmp(a, "--max-per-connection")) {
            VAL();
            if (bulk_num(prog, a, v, 1, UINT32_MAX, &u)) return 64;
            maxper = (unsigned)u;
        } else if (!strcmp(a, "--rate")) {
            VAL();
            char *end = NULL;
            rate = strtod(v, &end);
            if (!end || *end || !(rate > 0) || rate > 1e9) {
                fprintf(stderr, "%s: --rate wants messages per second above 0, not '%s'\n", prog, v);
                return 64;
            }
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            bulk_usage(stdout);
            return 0;
        }
        else if (!strcmp(a, "--tls")) { VAL(); tls = v; }
        else if (!strcmp(a, "--ca-file")) { VAL(); ca = v; }
        else if (!strcmp(a, "--insecure")) insecure = true;
        else if (!strcmp(a, "--quiet")) x.quiet = true;
        else if (!strcmp(a, "--user")) { VAL(); user = v; }
        else if (!strcmp(a, "--password-env")) { VAL(); sc.o.val[O_PASSWORD_ENV] = v; }
        else if (!strcmp(a, "--password-file")) { VAL(); sc.o.val[O_PASSWORD_FILE] = v; }
        else if (!strcmp(a, "--password-cmd")) { VAL(); sc.o.val[O_PASSWORD_CMD] = v; }
        else if (!strcmp(a, "--oauth-token-cmd")) { VAL(); sc.o.val[O_OAUTH_TOKEN_CMD] = v; }
        else if (!strcmp(a, "--auth")) { VAL(); mechs = v; }
        else if (!strcmp(a, "--allow-plaintext-auth")) plain_auth = true;
        else if (!strcmp(a, "--proxy")) { VAL(); proxy = v; }
        else { fprintf(stderr, "%s: unknown option %s\n", prog, a); return 64; }
#undef VAL
    }
    if (!server || (!dir && (!x.from || !x.nto))) {
        bulk_usage(stderr);
        return 64;
    }
    char host[256];
    unsigned port = 25;
    const char *colon = strrchr(server, ':');
    if (server[0] == '[') {
        const char *rb = strchr(server, ']');
        if (!rb) return 64;
        snprintf(host, sizeof host, "%.*s", (int)(rb - server - 1), server + 1);
        if (rb[1] == ':') port = (unsigned)strtoul(rb + 2, NULL, 10);
    } else if (colon && !strchr(colon + 1, ':') && colon == strchr(server, ':')) {
        snprintf(host, sizeof host, "%.*s", (int)(colon - server), server);
        port = (unsigned)strtoul(colon + 1, NULL, 10);
    } else {
        snprintf(host, sizeof host, "%s", server);
    }
    if (dir) {
        if (list_dir(&x, dir) < 0) {
            fprintf(stderr, "%s: cannot read directory %s\n", prog, dir);
            return 66;
        }
    } else if (message) {
        x.msg = slurp(message, &x.msg_len);
        if (!x.msg) {
            fprintf(stderr, "%s: cannot read %s\n", prog, message);
            return 66;
        }
    } else {
        size_t cap = 512;
        x.msg = malloc(cap);
        if (!x.msg) return 71;
        int n = snprintf(x.msg, cap, "From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nSent by smtpc.\r\n",
                         x.from, x.to[0], subject);
        x.msg_len = n > 0 && (size_t)n < cap ? (size_t)n : 0;
    }
    smtpc_bulk *b;
    int rc = smtpc_bulk_new(&b, host, (uint16_t)port);
    if (rc) return 64;
    if (smtpc_bulk_set_connections(b, k) != 0) {
        fprintf(stderr, "%s: --connections %u: %s\n", prog, k, smtpc_bulk_errmsg(b));
        smtpc_bulk_free(b);
        ctx_free(&x);
        return 64;
    }
    smtpc_bulk_set_source(b, next_cb, &x);
    smtpc_bulk_set_result_cb(b, result_cb, &x);
    if (maxper) smtpc_bulk_set_max_per_connection(b, maxper);
    if (rate > 0) smtpc_bulk_set_rate(b, rate, 1);
    {
        /* without --tls: plaintext, as this command always did (the library's
         * default is the session's policy by port) */
        smtpc_tls_mode mode = SMTPC_TLS_MODE_NONE;
        if (tls && smtpc_tls_mode_parse(tls, &mode)) {
            fprintf(stderr, "%s: --tls implicit|starttls\n", prog);
            smtpc_bulk_free(b);
            return 64;
        }
        if (smtpc_bulk_set_tls(b, mode, tls ? host : NULL, ca, insecure)) {
            fprintf(stderr, "%s: --tls %s: %s\n", prog, tls ? tls : "none", smtpc_bulk_errmsg(b));
            smtpc_bulk_free(b);
            return 64;
        }
    }
    if (proxy) {
        smtpc_proxy *px = NULL;
        char why[256];
        rc = smtpc_proxy_parse_url(&px, proxy, why, sizeof why);
        if (!rc) {
            rc = smtpc_bulk_set_proxy(b, px);
            if (rc) snprintf(why, sizeof why, "%s", smtpc_bulk_errmsg(b));
            smtpc_proxy_free(px);
        }
        if (rc) {
            fprintf(stderr, "%s: --proxy: %s\n", prog, why);
            smtpc_bulk_free(b);
            ctx_free(&x);
            return 64;
        }
    }
    if (user || mechs || plain_auth) {
        char *pw = NULL, *tok = NULL;
        const char *src = NULL;
        char err[300];
        int r1 = cli_secret(&sc, false, &pw, &src, err, sizeof err);
        int r2 = r1 == 0 || r1 == SMTPC_ENOTFOUND ? cli_secret(&sc, true, &tok, &src, err, sizeof err) : r1;
        int r3 = 0;
        if ((r1 && r1 != SMTPC_ENOTFOUND) || (r2 && r2 != SMTPC_ENOTFOUND)) {
            fprintf(stderr, "%s: %s\n", prog, err);
            r3 = r1 == SMTPC_ETEMPFAIL || r2 == SMTPC_ETEMPFAIL ? 75 : 78; /* EX_TEMPFAIL, EX_CONFIG */
        } else if (!user || (!pw && !tok)) {
            fprintf(stderr, "%s: AUTH needs --user and a --password-env/-file/-cmd or --oauth-token-cmd\n",
                    prog);
            r3 = 64;
        } else if (smtpc_bulk_set_credentials(b, user, pw) ||
                   (tok && smtpc_bulk_set_token_cb(b, token_cb, &tk)) ||
                   (mechs && smtpc_bulk_set_auth_mechanisms(b, mechs)) ||
                   smtpc_bulk_set_allow_plaintext_auth(b, plain_auth)) {
            fprintf(stderr, "%s: %s\n", prog, smtpc_bulk_errmsg(b));
            r3 = 64;
        }
        smtpc__free_secret(pw);
        tk.token = tok; /* the first token: the command ran once already */
        if (r3) {
            smtpc__free_secret(tk.token);
            smtpc_bulk_free(b);
            ctx_free(&x);
            return r3;
        }
    }
    x.progress = !x.quiet && isatty(2);
    x.t0 = now_s();
    rc = smtpc_bulk_run(b);
    if (rc && rc != SMTPC_ECANCELED) fprintf(stderr, "%s: %s\n", prog, smtpc_bulk_errmsg(b));
    smtpc_bulk_free(b);
    smtpc__free_secret(tk.token);
    if (x.progress) print_progress(&x, true);
    if (!x.quiet)
        fprintf(stderr, "smtpc: %zu sent, %zu not sent, %.2fs\n", x.sent, x.failed, now_s() - x.t0);
    ctx_free(&x);
    return x.failed || rc ? 75 : 0;
}

bool cli_wants_bulk(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--connections")) return true; /* --count alone: cmd_send's own */
    return false;
}
