/* smtpc sendmail (and argv[0] "sendmail"): the sendmail(8) interface that
 * cron, mail(1), git send-email and PHP's mail() use. Options follow
 * sendmail/msmtp; harmless ones we have no use for are accepted and ignored. */
#include "cli.h"

#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct sm_args {
    bool t, i;
    const char *from, *fullname;
} sm_args;

/* Options that take a value, attached ("-fX") or separate ("-f X"). */
static const char *take_value(int argc, char **argv, int *i, const char *prog)
{
    const char *a = argv[*i];
    if (a[2]) return a + 2;
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s: option %s needs a value\n", prog, a);
        return NULL;
    }
    return argv[++*i];
}

static int parse(const char *prog, int argc, char **argv, sm_args *s, cli_opts *o)
{
    bool only_pos = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || !a[1]) {
            if (cli_list_push(&o->pos, a)) return EX_OSERR;
            continue;
        }
        if (!strcmp(a, "--")) { only_pos = true; continue; }
        if (a[1] == '-') { /* smtpc's own long options that make sense here */
            static const struct { const char *name; cli_opt_id id; } longs[] = {
                {"--account", O_ACCOUNT}, {"--config", O_CONFIG}, {"--pickup-dir", O_PICKUP_DIR},
                {"--outbox", O_OUTBOX}, {"--delivery", O_DELIVERY}};
            if (!strcmp(a, "--trace") || !strcmp(a, "--trace-body")) { /* to debug a mail(1) setup */
                o->val[a[7] ? O_TRACE_BODY : O_TRACE] = "1";
                continue;
            }
            size_t k = 0;
            const char *eq = strchr(a, '=');
            size_t nl = eq ? (size_t)(eq - a) : strlen(a);
            for (; k < SMTPC__ARRAY_LEN(longs); k++)
                if (strlen(longs[k].name) == nl && !strncmp(a, longs[k].name, nl)) break;
            if (k == SMTPC__ARRAY_LEN(longs)) {
                fprintf(stderr, "%s: unknown option %s\n", prog, a);
                return EX_USAGE;
            }
            const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) {
                fprintf(stderr, "%s: option %s needs a value\n", prog, a);
                return EX_USAGE;
            }
            o->val[longs[k].id] = v;
            continue;
        }
        const char *v;
        switch (a[1]) {
        case 't': if (a[2]) goto ignored; s->t = true; break;
        case 'i': if (a[2]) goto ignored; s->i = true; break;
        case 'f':
        case 'r': if (!(v = take_value(argc, argv, &i, prog))) return EX_USAGE; s->from = v; break;
        case 'F': if (!(v = take_value(argc, argv, &i, prog))) return EX_USAGE; s->fullname = v; break;
        case 'N': if (!(v = take_value(argc, argv, &i, prog))) return EX_USAGE; o->val[O_DSN_NOTIFY] = v; break;
        case 'R': if (!(v = take_value(argc, argv, &i, prog))) return EX_USAGE; o->val[O_DSN_RET] = v; break;
        case 'V': if (!(v = take_value(argc, argv, &i, prog))) return EX_USAGE; o->val[O_ENVID] = v; break;
        case 'C': if (!(v = take_value(argc, argv, &i, prog))) return EX_USAGE; o->val[O_CONFIG] = v; break;
        case 'a': if (!(v = take_value(argc, argv, &i, prog))) return EX_USAGE; o->val[O_ACCOUNT] = v; break;
        case 'o':
            if (!strcmp(a, "-oi")) { s->i = true; break; }
            if (!a[2] && !take_value(argc, argv, &i, prog)) return EX_USAGE; /* "-o X" */
            break;                                                             /* -oem, -odi, -oQ... */
        case 'O': case 'B': case 'h': case 'L': case 'X':
            if (!take_value(argc, argv, &i, prog)) return EX_USAGE; /* value ignored */
            break;
        case 'b':
            if (!strcmp(a, "-bm")) break;
            fprintf(stderr, "%s: mode %s is not supported (only -bm, deliver a message)\n", prog, a);
            return EX_USAGE;
        case 'q':
            fprintf(stderr, "%s: %s (queue processing) is not supported; see 'smtpc queue'\n", prog, a);
            return EX_USAGE;
        case 'G': case 'm': case 'n': case 'v': case 'U': case 'x': case 'd': case 'e':
        ignored:
            break;
        default:
            /* unknown: ignored as msmtp does, but say so */
            fprintf(stderr, "%s: ignoring unknown option %s\n", prog, a);
            break;
        }
    }
    return 0;
}

/* Truncates at a line holding only "." (sendmail without -i). */
static void cut_at_dot(smtpc__buf *m)
{
    const char *p = (const char *)smtpc__buf_ptr(m);
    size_t len = smtpc__buf_size(m), i = 0;
    while (i < len) {
        const char *nl = memchr(p + i, '\n', len - i);
        size_t ll = nl ? (size_t)(nl - (p + i)) : len - i;
        if ((ll == 1 && p[i] == '.') || (ll == 2 && p[i] == '.' && p[i + 1] == '\r')) {
            m->len = m->off + i;
            return;
        }
        i += ll + 1;
    }
}

typedef struct collect_ud {
    bool want_rcpts;
    cli_list *rcpts;
    cli_list from; /* From: addresses */
    int rc;
} collect_ud;

static int collect(void *ud, const char *name, size_t nl, const char *value)
{
    collect_ud *c = ud;
    if (c->want_rcpts && ((nl == 2 && !smtpc__strncasecmp(name, "To", 2)) ||
                          (nl == 2 && !smtpc__strncasecmp(name, "Cc", 2)) ||
                          (nl == 3 && !smtpc__strncasecmp(name, "Bcc", 3))))
        return hdr_addresses(value, c->rcpts);
    if (nl == 4 && !smtpc__strncasecmp(name, "From", 4) && c->from.n == 0)
        return hdr_addresses(value, &c->from);
    return 0;
}

static void free_strings(cli_list *l)
{
    for (size_t i = 0; i < l->n; i++) free((void *)l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

int cmd_sendmail(const char *prog, int argc, char **argv)
{
    cli_ctx c;
    memset(&c, 0, sizeof c);
    c.prog = prog;
    c.cmdname = "sendmail";
    c.cmd = CMD_SENDMAIL;
    sm_args s;
    memset(&s, 0, sizeof s);
    smtpc__buf in, msg;
    smtpc__buf_init(&in, 0);
    smtpc__buf_init(&msg, 0);
    cli_list hdr_rcpts = {0}, rcpts = {0};
    collect_ud cu = {false, &hdr_rcpts, {0}, 0};
    char fallback_from[320] = "";

    int ex = parse(prog, argc, argv, &s, &c.o);
    if (!ex) ex = cli_dsn_normalize(&c);
    if (ex) goto out;
    if (!s.t && c.o.pos.n == 0) {
        fprintf(stderr, "%s: no recipients given (name them, or use -t to read To/Cc/Bcc)\n", prog);
        ex = EX_USAGE;
        goto out;
    }
    if (cli_slurp("-", &in, CLI_MAX_MESSAGE) < 0) {
        cli_err(&c, "cannot read the message from standard input");
        ex = EX_NOINPUT;
        goto out;
    }
    if (!s.i) cut_at_dot(&in);
    const char *m = (const char *)smtpc__buf_ptr(&in);
    size_t mlen = smtpc__buf_size(&in), hlen = hdr_end(m, mlen);
    cu.want_rcpts = s.t;
    if (hdr_each(m, hlen, collect, &cu)) {
        cli_err(&c, "header field too long");
        ex = EX_DATAERR;
        goto out;
    }
    /* the sender: -f, else the account's from, else From:, else user@host */
    const char *hint = s.from ? s.from : cu.from.n ? cu.from.v[0] : NULL;
    if ((ex = cli_ctx_load_config(&c, hint))) goto out;
    const char *from = s.from ? s.from : cli_get(&c, O_FROM);
    if (!from && cu.from.n) from = cu.from.v[0];
    {
        struct passwd *pw = getpwuid(getuid());
        char host[256] = "localhost";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        snprintf(fallback_from, sizeof fallback_from, "%s@%s", pw ? pw->pw_name : "nobody", host);
        if (!from) from = fallback_from;
    }
    /* -f '<a@b>' is a@b; -f '' or -f '<>' is the null sender (bounces, vacation) */
    char stripped[320];
    size_t fl = strlen(from);
    if (fl >= 2 && from[0] == '<' && from[fl - 1] == '>' && fl - 2 < sizeof stripped) {
        memcpy(stripped, from + 1, fl - 2);
        stripped[fl - 2] = '\0';
        from = stripped;
    }
    if (*from && (ex = cli_check_address(&c, "sender", from))) goto out;

    /* recipients: the command line, then (with -t) the headers; no duplicates */
    for (int pass = 0; pass < 2; pass++) {
        const cli_list *src = pass ? &hdr_rcpts : &c.o.pos;
        for (size_t i = 0; i < src->n; i++) {
            bool dup = false;
            for (size_t j = 0; j < rcpts.n && !dup; j++) dup = !smtpc__strcasecmp(rcpts.v[j], src->v[i]);
            if (dup) continue;
            if ((ex = cli_check_address(&c, "recipient", src->v[i]))) goto out;
            if (cli_list_push(&rcpts, src->v[i])) { ex = EX_OSERR; goto out; }
        }
    }
    if (rcpts.n == 0) {
        cli_err(&c, "no recipients found%s", s.t ? " in To, Cc or Bcc" : "");
        ex = EX_USAGE;
        goto out;
    }

    /* missing From and Date are added; Bcc never leaves this machine */
    int rc = 0;
    if (!hdr_has(m, hlen, "From")) {
        const char *fn = s.fullname;
        if (fn && *fn && !smtpc__has_ctl(fn)) {
            rc = smtpc__buf_append_str(&msg, "From: \"");
            for (const char *p = fn; !rc && *p; p++) {
                if (*p == '"' || *p == '\\') rc = smtpc__buf_append(&msg, "\\", 1);
                if (!rc) rc = smtpc__buf_append(&msg, p, 1);
            }
            if (!rc) rc = smtpc__buf_printf(&msg, "\" <%s>\r\n", *from ? from : fallback_from);
        } else {
            /* a null sender is no author: the header names the local user */
            rc = smtpc__buf_printf(&msg, "From: %s\r\n", *from ? from : fallback_from);
        }
    }
    if (!rc && !hdr_has(m, hlen, "Date")) {
        char date[64];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", &tm);
        rc = smtpc__buf_printf(&msg, "Date: %s\r\n", date);
    }
    if (!rc) rc = hdr_remove(m, mlen, "Bcc", &msg);
    if (rc) { ex = EX_OSERR; goto out; }

    cli_delivery d;
    if ((ex = cli_delivery_choose(&c, &d)) || (ex = cli_check_supported(&c, d))) goto out;
    cli_envelope env = {from, rcpts.v, rcpts.n};
    cli_result r;
    cli_result_init(&r);
    cli_source src = {NULL, smtpc__buf_ptr(&msg), smtpc__buf_size(&msg), false, -1, false, 0};
    rc = cli_deliver(&c, d, &env, &src, &r);
    cli_print_result(&c, &r);
    cli_result_free(&r);
    ex = cli_exit_code(rc);
out:
    free_strings(&hdr_rcpts);
    free_strings(&cu.from);
    free(rcpts.v);
    smtpc__buf_free(&in);
    smtpc__buf_free(&msg);
    cli_ctx_free(&c);
    return ex;
}
