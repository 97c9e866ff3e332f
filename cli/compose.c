/* Building a message from flags with the MIME library (smtpc/message.h):
 * addresses with display names and IDNs, encoded headers, text/HTML,
 * attachments and inline images, written as a stream. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads fd to its end into out (at most limit bytes: errno EFBIG). */
static int slurp_fd(int fd, cli_buf *out, size_t limit)
{
    char tmp[65536];
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) return 0;
        if (cli_buf_size(out) + (size_t)n > limit) { errno = EFBIG; return -1; }
        if (cli_buf_append(out, tmp, (size_t)n)) { errno = ENOMEM; return -1; }
    }
}

int cli_slurp(const char *path, cli_buf *out, size_t limit)
{
    int fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = slurp_fd(fd, out, limit);
    int e = errno;
    if (fd) close(fd);
    errno = e;
    return rc;
}

int cli_check_address(const cli_ctx *c, const char *what, const char *a)
{
    if (!*a || cli_has_ctl(a)) {
        cli_err(c, "%s: empty address or control characters in \"%s\"", what, a);
        return EX_DATAERR;
    }
    /* a bare addr-spec (the envelope form): no blanks or brackets; text on both sides of '@' */
    const char *at = strrchr(a, '@');
    if (strpbrk(a, " <>(),;") || !at || at == a || !at[1]) {
        cli_err(c, "%s: \"%s\" is not an address like user@example.org", what, a);
        return EX_DATAERR;
    }
    return 0;
}

static int body_from(const cli_ctx *c, cli_opt_id inline_id, cli_opt_id file_id, cli_buf *b,
                     const char **text, size_t *len)
{
    const char *file = c->o.val[file_id];
    if (file) {
        if (cli_slurp(file, b, CLI_MAX_MESSAGE) < 0) {
            cli_err(c, "cannot read %s: %s", file, strerror(errno));
            return errno == EFBIG ? EX_DATAERR : EX_NOINPUT;
        }
        *text = (const char *)cli_buf_ptr(b);
        *len = cli_buf_size(b);
    } else if (c->o.val[inline_id]) {
        *text = c->o.val[inline_id];
        *len = strlen(*text);
    }
    return 0;
}

/* EX_* for a failed smtpc_message_* call. */
static int msg_fail(const cli_ctx *c, smtpc_message *m, const char *opt, int rc)
{
    cli_err(c, "%s: %s", opt, smtpc_message_errmsg(m)[0] ? smtpc_message_errmsg(m) : smtpc_strerror(rc));
    if (rc == SMTPC_ENOTFOUND) return EX_NOINPUT;
    if (rc == SMTPC_EIO) return EX_NOINPUT;
    if (rc == SMTPC_ENOMEM) return EX_OSERR;
    if (rc == SMTPC_ELIBRARY) return EX_OSFILE;
    return EX_DATAERR;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* --attach FILE[;name=NAME][;type=TYPE], --inline FILE[;cid=ID][;type=TYPE]:
 * the parameters are the ';'-separated key=value pieces at the end whose keys
 * are in keys ("name type" / "cid type"); a name that exists as a file is
 * taken whole (a file name with ';' in it). Fills path (the file) and
 * vals[i] for keys[i] (or NULL). 0, or -1 when too long. */
typedef struct file_spec {
    char path[4096];
    char val[3][1024];
    const char *v[3];
} file_spec;

static int file_spec_parse(const char *arg, const char *const *keys, size_t nkeys, file_spec *fs)
{
    memset(fs->v, 0, sizeof fs->v);
    if (strlen(arg) >= sizeof fs->path) return -1;
    cli_strlcpy(fs->path, arg, sizeof fs->path);
    struct stat st;
    if (stat(arg, &st) == 0) return 0;
    /* the first ';' after which every piece is a known key=value */
    for (char *semi = strchr(fs->path, ';'); semi; semi = strchr(semi + 1, ';')) {
        bool all = true;
        const char *p = semi + 1;
        while (all && *p) {
            size_t n = strcspn(p, ";");
            const char *eq = memchr(p, '=', n);
            size_t k = 0;
            for (; eq && k < nkeys; k++)
                if (strlen(keys[k]) == (size_t)(eq - p) && !strncasecmp(p, keys[k], (size_t)(eq - p))) break;
            all = eq && k < nkeys && eq + 1 < p + n;
            p += n + (p[n] ? 1 : 0);
        }
        if (!all) continue;
        for (p = semi + 1; *p;) {
            size_t n = strcspn(p, ";");
            const char *eq = memchr(p, '=', n);
            for (size_t k = 0; k < nkeys; k++)
                if (strlen(keys[k]) == (size_t)(eq - p) && !strncasecmp(p, keys[k], (size_t)(eq - p))) {
                    size_t vl = n - (size_t)(eq + 1 - p);
                    if (vl >= sizeof fs->val[k]) return -1;
                    memcpy(fs->val[k], eq + 1, vl);
                    fs->val[k][vl] = '\0';
                    fs->v[k] = fs->val[k];
                }
            p += n + (p[n] ? 1 : 0);
        }
        *semi = '\0';
        break;
    }
    return 0;
}

int cli_compose(const cli_ctx *c, const char *from, smtpc_message **out)
{
    const cli_opts *o = &c->o;
    smtpc_message *m;
    if (smtpc_message_new(&m)) return EX_OSERR;
    int ex = 0, rc;
    cli_buf tb, hb;
    cli_buf_init(&tb, 0);
    cli_buf_init(&hb, 0);

#define TRY(opt, call)                                                                             \
    do {                                                                                           \
        if (!ex && (rc = (call)) != 0) ex = msg_fail(c, m, opt, rc);                               \
    } while (0)

    TRY("--from", smtpc_message_set_from(m, from));
    for (size_t i = 0; i < o->list[O_TO].n; i++) TRY("--to", smtpc_message_add_to(m, o->list[O_TO].v[i]));
    for (size_t i = 0; i < o->list[O_CC].n; i++) TRY("--cc", smtpc_message_add_cc(m, o->list[O_CC].v[i]));
    for (size_t i = 0; i < o->list[O_BCC].n; i++) TRY("--bcc", smtpc_message_add_bcc(m, o->list[O_BCC].v[i]));
    if (o->val[O_REPLY_TO]) TRY("--reply-to", smtpc_message_add_reply_to(m, o->val[O_REPLY_TO]));
    if (o->val[O_SUBJECT]) {
        if (!ex && strpbrk(o->val[O_SUBJECT], "\r\n")) {
            /* the library would encode them; on a command line they are a mistake or an attack */
            cli_err(c, "--subject must not contain CR, LF or NUL");
            ex = EX_DATAERR;
        }
        TRY("--subject", smtpc_message_set_subject(m, o->val[O_SUBJECT]));
    }
    const char *prio = o->val[O_PRIORITY];
    if (!ex && prio) {
        smtpc_priority p = SMTPC_PRIORITY_NORMAL;
        if (!strcmp(prio, "high")) p = SMTPC_PRIORITY_HIGH;
        else if (!strcmp(prio, "low")) p = SMTPC_PRIORITY_LOW;
        else if (strcmp(prio, "normal") != 0) {
            cli_err(c, "--priority: \"%s\" is not high, normal or low", prio);
            ex = EX_USAGE;
        }
        TRY("--priority", smtpc_message_set_priority(m, p));
    }
    for (size_t i = 0; !ex && i < o->list[O_HEADER].n; i++) {
        const char *h = o->list[O_HEADER].v[i];
        const char *colon = strchr(h, ':');
        if (!colon || colon == h) {
            cli_err(c, "--header \"%s\": expected \"Name: value\"", h);
            ex = EX_DATAERR;
            break;
        }
        char name[128];
        size_t nl = (size_t)(colon - h);
        if (nl >= sizeof name) nl = sizeof name - 1;
        memcpy(name, h, nl);
        name[nl] = '\0';
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        TRY("--header", smtpc_message_add_header(m, name, v));
    }
    const char *text = NULL, *html = NULL;
    size_t tlen = 0, hlen = 0;
    if (!ex) ex = body_from(c, O_TEXT, O_TEXT_FILE, &tb, &text, &tlen);
    if (!ex) ex = body_from(c, O_HTML, O_HTML_FILE, &hb, &html, &hlen);
    if (text || !html) TRY("--text", smtpc_message_set_text(m, text ? text : "", text ? tlen : 0));
    if (html) TRY("--html", smtpc_message_set_html(m, html, hlen));
    static const char *const akeys[] = {"name", "type"}, *const ikeys[] = {"cid", "type"};
    file_spec fs;
    for (size_t i = 0; !ex && i < o->list[O_ATTACH].n; i++) {
        if (file_spec_parse(o->list[O_ATTACH].v[i], akeys, 2, &fs)) {
            cli_err(c, "--attach: \"%s\" is too long", o->list[O_ATTACH].v[i]);
            ex = EX_USAGE;
            break;
        }
        smtpc_attachment_opts ao;
        memset(&ao, 0, sizeof ao);
        ao.name = fs.v[0];
        ao.content_type = fs.v[1];
        TRY("--attach", smtpc_message_add_attachment_file(m, fs.path, &ao));
    }
    /* an inline image is referred to from the HTML as cid:<ID>, by default its file name */
    for (size_t i = 0; !ex && i < o->list[O_INLINE].n; i++) {
        if (file_spec_parse(o->list[O_INLINE].v[i], ikeys, 2, &fs)) {
            cli_err(c, "--inline: \"%s\" is too long", o->list[O_INLINE].v[i]);
            ex = EX_USAGE;
            break;
        }
        TRY("--inline", smtpc_message_add_inline_file(m, fs.path, fs.v[0] ? fs.v[0] : base_name(fs.path), fs.v[1]));
    }
#undef TRY
    cli_buf_free(&tb);
    cli_buf_free(&hb);
    if (ex) {
        smtpc_message_free(m);
        return ex;
    }
    *out = m;
    return 0;
}

bool cli_has_8bit(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] & 0x80) return true;
    return false;
}

int cli_source_file(cli_source *src, const char *path, cli_buf *buf, size_t limit)
{
    bool in = strcmp(path, "-") == 0;
    int fd = in ? 0 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    off_t base = in ? lseek(fd, 0, SEEK_CUR) : 0;
    if (base < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < base) {
        /* a pipe, a terminal, a device: cannot be read twice, so it is held */
        int rc = slurp_fd(fd, buf, limit), e = errno;
        if (!in) close(fd);
        errno = e;
        if (rc) return -1;
        src->mem = cli_buf_ptr(buf);
        src->len = cli_buf_size(buf);
        return 0;
    }
    if ((uint64_t)(st.st_size - base) > limit) {
        if (!in) close(fd);
        errno = EFBIG;
        return -1;
    }
    /* one pass in bounded pieces: BODY=8BITMIME is declared before the body is sent */
    bool eight = false;
    char tmp[65536];
    for (off_t off = base; !eight && off < st.st_size;) {
        ssize_t n = pread(fd, tmp, sizeof tmp, off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            if (!in) close(fd);
            errno = e;
            return -1;
        }
        if (n == 0) break;
        eight = cli_has_8bit(tmp, (size_t)n);
        off += n;
    }
    src->file = true;
    src->fd = fd;
    src->len = (size_t)(st.st_size - base);
    src->base = (uint64_t)base;
    src->eightbit = eight;
    return 0;
}

void cli_source_close(cli_source *src)
{
    if (src->file && src->fd > 0) close(src->fd); /* not standard input */
    src->file = false;
    src->fd = -1;
}

void cli_source_reader_init(cli_source_reader *rd, const cli_source *src)
{
    rd->src = src;
    rd->off = 0;
    rd->err = NULL;
}

int cli_source_rewind(void *ud)
{
    cli_source_reader *rd = ud;
    cli_source_reader_init(rd, rd->src);
    return 0;
}

const char *cli_source_reader_error(const cli_source_reader *rd)
{
    return rd->err;
}

ssize_t cli_source_read(void *ud, void *buf, size_t len)
{
    cli_source_reader *rd = ud;
    const cli_source *s = rd->src;
    size_t left = s->len - rd->off;
    size_t n = left < len ? left : len;
    if (rd->off < s->headlen || !s->file) {
        size_t at = rd->off;
        bool in_head = at < s->headlen;
        if (in_head && n > s->headlen - at) n = s->headlen - at; /* the head, then the rest */
        if (n) memcpy(buf, in_head ? (const uint8_t *)s->head + at : (const uint8_t *)s->mem + (at - s->headlen), n);
        rd->off += n;
        return (ssize_t)n;
    }
    /* the file as measured: no more than its size then, so that SIZE= holds */
    for (;;) {
        if (n == 0) return 0;
        ssize_t r = pread(s->fd, buf, n, (off_t)(s->base + (rd->off - s->headlen)));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rd->err = strerror(errno);
            return SMTPC_EIO;
        }
        if (r == 0) { /* no truncated message */
            rd->err = "the message file shrank while being sent";
            return SMTPC_EIO;
        }
        rd->off += (size_t)r;
        return r;
    }
}

ssize_t cli_mem_read(void *ud, void *buf, size_t len)
{
    cli_mem_reader *r = ud;
    size_t n = r->len - r->off < len ? r->len - r->off : len;
    memcpy(buf, r->p + r->off, n);
    r->off += n;
    return (ssize_t)n;
}
