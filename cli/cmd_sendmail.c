/* smtpc sendmail (and argv[0] "sendmail"): the sendmail(8) interface that
 * cron, mail(1), git send-email and PHP's mail() use. Options follow
 * sendmail/msmtp; harmless ones we have no use for are accepted and ignored. */
#define _GNU_SOURCE /* O_TMPFILE */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
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
                {"--outbox", O_OUTBOX}, {"--delivery", O_DELIVERY}, {"--dkim-key", O_DKIM_KEY},
                {"--dkim-selector", O_DKIM_SELECTOR}, {"--dkim-domain", O_DKIM_DOMAIN},
                {"--dkim-algorithm", O_DKIM_ALGORITHM}, {"--dkim-headers", O_DKIM_HEADERS}};
            if (!strcmp(a, "--trace") || !strcmp(a, "--trace-body")) { /* to debug a mail(1) setup */
                o->val[a[7] ? O_TRACE_BODY : O_TRACE] = "1";
                continue;
            }
            size_t k = 0;
            const char *eq = strchr(a, '=');
            size_t nl = eq ? (size_t)(eq - a) : strlen(a);
            for (; k < CLI_ARRAY_LEN(longs); k++)
                if (strlen(longs[k].name) == nl && !strncmp(a, longs[k].name, nl)) break;
            if (k == CLI_ARRAY_LEN(longs)) {
                fprintf(stderr, "%s: unknown option %s\n", prog, a);
                return EX_USAGE;
            }
            const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) {
                fprintf(stderr, "%s: option %s needs a value\n", prog, a);
                return EX_USAGE;
            }
            cli_opt_id id = longs[k].id;
            /* repeatable, as in smtpc send: one signature per --dkim-key */
            if (id == O_DKIM_KEY || id == O_DKIM_SELECTOR || id == O_DKIM_ALGORITHM) {
                if (cli_list_push(&o->list[id], v)) return EX_OSERR;
            } else {
                o->val[id] = v;
            }
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

/* Standard input, read in bounded memory. A message up to SM_MEM_MAX is
 * held whole, as ever (the cron and PHP case: no disk). A larger one keeps
 * its header block in memory (at most SM_MEM_MAX: a bigger one is refused)
 * and spools the body to an unlinked file in $TMPDIR (else /tmp), which the
 * delivery then reads afresh at each attempt. */
#define SM_MEM_MAX ((size_t)1 << 20)

typedef struct sm_input {
    cli_buf mem;     /* the message, or once spooled its header block */
    int fd;             /* the spool file holding the body, or -1 */
    uint64_t body_len;  /* the body's length in fd */
    bool body8;         /* a body byte has the high bit */
    uint64_t total;     /* bytes read from standard input */
    int dot;            /* the dot line: 0 at a line start, 1 after "." there, 2 after ".\r", 3 in a line */
    bool ended;         /* a dot line ended the message: the rest is read and dropped */
} sm_input;

/* Without -i, a line holding only "." (or ".\r"; the last one also without
 * its LF) ends the message. Scans p[0..n) with st carried across chunks and
 * returns the offset of the LF that ends the dot line, or n. */
static size_t dot_scan(int *st, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '\n') {
            if (*st == 1 || *st == 2) return i;
            *st = 0;
            continue;
        }
        if (*st == 0 && ch == '.') { *st = 1; continue; }
        if (*st == 1 && ch == '\r') { *st = 2; continue; }
        *st = 3; /* the rest of this line cannot end the message */
        const char *nl = memchr(p + i, '\n', n - i);
        if (!nl) return n;
        i = (size_t)(nl - p) - 1;
    }
    return n;
}

/* Offset just past the header block's blank line (or len when none). */
static size_t header_end(const char *m, size_t len)
{
    for (size_t i = 0; i < len;) {
        if (m[i] == '\n') return i + 1;
        if (m[i] == '\r' && i + 1 < len && m[i + 1] == '\n') return i + 2;
        const char *nl = memchr(m + i, '\n', len - i);
        if (!nl) return len;
        i = (size_t)(nl - m) + 1;
    }
    return len;
}

static const char *tmp_dir(void)
{
    const char *d = getenv("TMPDIR");
    return d && *d ? d : "/tmp";
}

/* An unlinked read-write file in the temporary directory, or -1 with errno. */
static int spool_open(void)
{
    const char *dir = tmp_dir();
#ifdef O_TMPFILE
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) return fd;
#endif
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/smtpc-sendmail.XXXXXX", dir) >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int tfd = mkstemp(path);
    if (tfd < 0) return -1;
    unlink(path);
    fcntl(tfd, F_SETFD, FD_CLOEXEC);
    return tfd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Stores n bytes of the message: in memory, or in the spool file (opened,
 * the header block kept and the body moved there, when memory is full). 0,
 * EX_DATAERR for a header block beyond SM_MEM_MAX, EX_TEMPFAIL when the
 * spool file cannot be written (after printing why). */
static int sm_store(const cli_ctx *c, sm_input *in, const char *p, size_t n)
{
    if (in->fd < 0) {
        if (cli_buf_append(&in->mem, p, n)) {
            cli_err(c, "out of memory");
            return EX_OSERR;
        }
        /* not while a dot line may be under way: its bytes stay together */
        size_t have = cli_buf_size(&in->mem);
        if (have <= SM_MEM_MAX || in->dot == 1 || in->dot == 2) return 0;
        const char *m = (const char *)cli_buf_ptr(&in->mem);
        size_t hlen = header_end(m, have);
        if (hlen > SM_MEM_MAX) {
            cli_err(c, "the header block is larger than %zu KiB (no empty line after the header?)",
                    SM_MEM_MAX >> 10);
            return EX_DATAERR;
        }
        if ((in->fd = spool_open()) < 0) {
            cli_err(c, "cannot create a spool file for the message in %s: %s", tmp_dir(), strerror(errno));
            return EX_TEMPFAIL;
        }
        in->mem.len = in->mem.off + hlen; /* the header block stays */
        p = m + hlen;
        n = have - hlen;
    }
    if (write_all(in->fd, p, n)) {
        cli_err(c, "cannot write the message to a spool file in %s: %s", tmp_dir(), strerror(errno));
        return EX_TEMPFAIL;
    }
    in->body8 = in->body8 || cli_has_8bit(p, n);
    in->body_len += n;
    return 0;
}

/* Reads standard input to its end (the limit counts every byte), storing
 * the message: up to a dot line unless dots is set. 0 or an exit status
 * after printing why. */
static int sm_read(const cli_ctx *c, sm_input *in, bool dots)
{
    char tmp[65536];
    for (;;) {
        ssize_t r = read(0, tmp, sizeof tmp);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            cli_err(c, "cannot read the message from standard input: %s", strerror(errno));
            return EX_NOINPUT;
        }
        size_t n = (size_t)r, keep = n;
        in->total += n;
        if (in->total > CLI_MAX_MESSAGE) {
            cli_err(c, "the message is larger than %zu MiB", CLI_MAX_MESSAGE >> 20);
            return EX_DATAERR;
        }
        if (in->ended) {
            if (n == 0) return 0;
            continue;
        }
        if (!dots) keep = n ? dot_scan(&in->dot, tmp, n) : 0;
        /* at the end or at a dot line, a "." or ".\r" begun before is dropped */
        bool end = !dots && (keep < n || (n == 0 && (in->dot == 1 || in->dot == 2)));
        size_t dotlen = end ? (size_t)in->dot : 0;        /* "." or ".\r" before the LF */
        size_t from_here = keep > dotlen ? keep - dotlen : 0; /* the message's bytes in tmp */
        size_t drop = dotlen - (keep - from_here);           /* those stored with the chunk before */
        int ex = from_here ? sm_store(c, in, tmp, from_here) : 0;
        if (ex) return ex;
        if (drop) { /* the rest of the dot line came in the previous chunk */
            if (in->fd >= 0) in->body_len -= drop;
            else in->mem.len -= drop;
        }
        in->ended = end;
        if (n == 0) return 0;
    }
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
    sm_input in;
    memset(&in, 0, sizeof in);
    in.fd = -1;
    cli_buf msg;
    cli_buf_init(&in.mem, 0);
    cli_buf_init(&msg, 0);
    cli_list rcpts = {0};
    smtpc_message *hm = NULL; /* the header block, loaded by the library */
    char fallback_from[320] = "";

    int ex = parse(prog, argc, argv, &s, &c.o);
    if (!ex) ex = cli_dsn_normalize(&c);
    if (ex) goto out;
    if (!s.t && c.o.pos.n == 0) {
        fprintf(stderr, "%s: no recipients given (name them, or use -t to read To/Cc/Bcc)\n", prog);
        ex = EX_USAGE;
        goto out;
    }
    if ((ex = sm_read(&c, &in, s.i))) goto out;
    /* m: the message, or (spooled) its header block */
    const char *m = (const char *)cli_buf_ptr(&in.mem);
    size_t mlen = cli_buf_size(&in.mem), hlen = header_end(m, mlen);
    /* the envelope in the headers (From/Sender; To, Cc, Bcc) and the header
     * block as sent: Bcc removed, Date and Message-ID added when missing, by
     * the library's loader (which reads through mr as long as hm lives) */
    cli_mem_reader mr = {m, hlen, 0};
    {
        char why[512] = "";
        int lrc = smtpc_message_load_with(&hm, cli_mem_read, &mr, SMTPC_LOAD_NO_ENVELOPE, why, sizeof why);
        if (lrc) {
            cli_err(&c, "the message's header: %s", why[0] ? why : smtpc_strerror(lrc));
            ex = lrc == SMTPC_ENOMEM ? EX_OSERR : EX_DATAERR;
            goto out;
        }
    }
    const char *hdr_from = smtpc_message_envelope_from(hm);
    /* the sender: -f, else the account's from, else From:, else user@host */
    const char *hint = s.from ? s.from : hdr_from;
    if ((ex = cli_ctx_load_config(&c, hint))) goto out;
    const char *from = s.from ? s.from : cli_get(&c, O_FROM);
    if (!from && hdr_from) from = hdr_from;
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
    size_t nh = s.t ? smtpc_message_rcpt_count(hm) : 0;
    for (size_t i = 0; i < c.o.pos.n + nh; i++) {
        const char *a = i < c.o.pos.n ? c.o.pos.v[i] : smtpc_message_rcpt(hm, i - c.o.pos.n);
        bool dup = false;
        for (size_t j = 0; j < rcpts.n && !dup; j++) dup = !strcasecmp(rcpts.v[j], a);
        if (dup) continue;
        if ((ex = cli_check_address(&c, "recipient", a))) goto out;
        if (cli_list_push(&rcpts, a)) { ex = EX_OSERR; goto out; }
    }
    if (rcpts.n == 0) {
        cli_err(&c, "no recipients found%s", s.t ? " in To, Cc or Bcc" : "");
        ex = EX_USAGE;
        goto out;
    }

    /* a missing From is added; Bcc never leaves this machine (the loaded
     * header block is written without it) */
    int rc = 0;
    if (!hdr_from) {
        const char *fn = s.fullname;
        if (fn && *fn && !cli_has_ctl(fn)) {
            rc = cli_buf_append_str(&msg, "From: \"");
            for (const char *p = fn; !rc && *p; p++) {
                if (*p == '"' || *p == '\\') rc = cli_buf_append(&msg, "\\", 1);
                if (!rc) rc = cli_buf_append(&msg, p, 1);
            }
            if (!rc) rc = cli_buf_printf(&msg, "\" <%s>\r\n", *from ? from : fallback_from);
        } else {
            /* a null sender is no author: the header names the local user */
            rc = cli_buf_printf(&msg, "From: %s\r\n", *from ? from : fallback_from);
        }
    }
    smtpc_message_writer *hw = NULL;
    if (!rc) rc = smtpc_message_writer_new(&hw, hm, 0);
    char tmp[16384];
    ssize_t n = 0;
    while (!rc && (n = smtpc_message_writer_read(hw, tmp, sizeof tmp)) > 0) rc = cli_buf_append(&msg, tmp, (size_t)n);
    if (!rc && n < 0) rc = (int)n;
    smtpc_message_writer_free(hw);
    if (!rc) rc = cli_buf_append(&msg, m + hlen, mlen - hlen); /* the body (or nothing when spooled) */
    if (rc) { ex = EX_OSERR; goto out; }

    cli_delivery d;
    if ((ex = cli_delivery_choose(&c, &d)) || (ex = cli_check_supported(&c, d))) goto out;
    cli_envelope env = {from, rcpts.v, rcpts.n};
    cli_result r;
    cli_result_init(&r);
    cli_source src = {NULL, cli_buf_ptr(&msg), cli_buf_size(&msg), false, -1, false, 0, NULL, 0};
    if (in.fd >= 0) { /* the added fields and header block, then the spooled body */
        src.mem = NULL;
        src.head = cli_buf_ptr(&msg);
        src.headlen = cli_buf_size(&msg);
        src.file = true;
        src.fd = in.fd;
        src.len = src.headlen + (size_t)in.body_len;
        src.eightbit = in.body8 || cli_has_8bit(src.head, src.headlen);
    }
    rc = cli_deliver(&c, d, &env, &src, &r);
    cli_print_result(&c, &r);
    cli_result_free(&r);
    ex = cli_exit_code(rc);
out:
    smtpc_message_free(hm);
    free(rcpts.v);
    if (in.fd >= 0) close(in.fd);
    cli_buf_free(&in.mem);
    cli_buf_free(&msg);
    cli_ctx_free(&c);
    return ex;
}
