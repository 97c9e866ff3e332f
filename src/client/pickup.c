/* Pickup directory: the writer (an envelope block, then the message) and
 * the reader of what it writes (include/smtpc/pickup.h). */
#include <smtpc/pickup.h>

#include "client/spooldir.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SMTPC__PICKUP_TMP_PREFIX ".tmp-"
#define SMTPC__PICKUP_TMP_SUFFIX ".part"
/* Reader bounds: an envelope line (a path is at most 256 octets, RFC 5321
 * 4.5.3.1.3; room for an SMTPUTF8 one) and the number of recipients. */
#define ENV_LINE_MAX 4096
#define ENV_RCPTS_MAX 100000

static atomic_uint pickup_counter;

static int fail(char *errbuf, size_t len, int code, const char *what, const char *path)
{
    if (errbuf && len) snprintf(errbuf, len, "%s %s: %s", what, path, strerror(errno));
    return code;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int mkdir_p(const char *dir)
{
    char tmp[4096];
    if (smtpc__strlcpy(tmp, dir, sizeof tmp) >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST) return -1;
    return 0;
}

/* ---- writer -------------------------------------------------------------------------------- */

/* The message goes through two stages: line ends normalised to CRLF, then,
 * in its header section, X-Sender / X-Receiver fields renamed to
 * X-Original-Sender / X-Original-Receiver: a reader takes the leading
 * X-Sender / X-Receiver lines of the file as the envelope, so the message's
 * own must never look like them (envelope injection). A field name is
 * matched case-insensitively, with blanks allowed before the colon. */
#define NAME_PEEK 11 /* "x-receiver" and one more octet */

typedef struct pickup_out {
    smtpc__buf *out;
    bool in_header;  /* before the first empty line */
    bool line_start; /* collecting the first octets of a header line */
    char peek[NAME_PEEK];
    size_t npeek;
} pickup_out;

/* 1: peek (n octets) is a whole X-Sender/X-Receiver name plus the octet
 * after it; 0: it may still become one; -1: it cannot. */
static int envelope_name(const char *peek, size_t n)
{
    static const char *const names[] = {"x-sender", "x-receiver"};
    int r = -1;
    for (size_t k = 0; k < 2; k++) {
        size_t nl = strlen(names[k]);
        size_t cmp = n < nl ? n : nl;
        if (smtpc__strncasecmp(peek, names[k], cmp) != 0) continue;
        if (n <= nl) r = r < 0 ? 0 : r;
        else if (peek[nl] == ':' || peek[nl] == ' ' || peek[nl] == '\t') return 1;
    }
    return r;
}

/* Appends octets, '\n' standing for CRLF. */
static int out_raw(pickup_out *o, const char *p, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = p[i] == '\n' ? smtpc__buf_append(o->out, "\r\n", 2) : smtpc__buf_append(o->out, p + i, 1);
    return rc;
}

static int out_flush_peek(pickup_out *o)
{
    int rc = out_raw(o, o->peek, o->npeek);
    o->npeek = 0;
    o->line_start = false;
    return rc;
}

/* One octet of the normalised message ('\n' = end of line). */
static int out_put(pickup_out *o, char c)
{
    if (!o->in_header || !o->line_start) {
        if (o->in_header && c == '\n') o->line_start = true;
        return out_raw(o, &c, 1);
    }
    if (c == '\n') {
        if (o->npeek == 0) o->in_header = false; /* the empty line: the body follows */
        int rc = out_flush_peek(o);
        o->line_start = o->in_header;
        return rc ? rc : out_raw(o, "\n", 1);
    }
    o->peek[o->npeek++] = c;
    int m = envelope_name(o->peek, o->npeek);
    if (m == 0 && o->npeek < NAME_PEEK) return 0;
    if (m == 1) { /* "X-" becomes "X-Original-": "X-Original-Sender:" */
        if (smtpc__buf_append(o->out, "X-Original-", 11)) return SMTPC_ENOMEM;
        o->npeek -= 2;
        memmove(o->peek, o->peek + 2, o->npeek);
    }
    return out_flush_peek(o);
}

/* Unique names: "<time>-<pid>-<n>.eml", written first as the temporary
 * ".tmp-<time>-<pid>-<n>.part", which no reader of "*.eml" takes. */
static void pickup_names(const char *dir, char *tmp, size_t tl, char *final, size_t fl)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned n = atomic_fetch_add(&pickup_counter, 1);
    char base[96];
    snprintf(base, sizeof base, "%lld.%06ld-%ld-%u", (long long)ts.tv_sec, ts.tv_nsec / 1000,
             (long)getpid(), n);
    snprintf(tmp, tl, "%s/" SMTPC__PICKUP_TMP_PREFIX "%s" SMTPC__PICKUP_TMP_SUFFIX, dir, base);
    snprintf(final, fl, "%s/%s.eml", dir, base);
}

SMTPC_API int smtpc_pickup_write(const char *dir, const char *from, const char *const *rcpts,
                                 size_t nrcpts, smtpc_read_cb cb, void *userdata,
                                 char **path_out, char *errbuf, size_t errbuf_len)
{
    if (errbuf && errbuf_len) errbuf[0] = '\0';
    if (!dir || !*dir || !from || !rcpts || nrcpts == 0 || !cb) {
        if (errbuf && errbuf_len)
            snprintf(errbuf, errbuf_len, "pickup: a directory, a sender and at least one recipient are required");
        return SMTPC_EINVAL;
    }
    if (smtpc__has_crlfnul(from, strlen(from))) {
        if (errbuf && errbuf_len) snprintf(errbuf, errbuf_len, "pickup: sender contains CR, LF or NUL");
        return SMTPC_EINVAL;
    }
    for (size_t i = 0; i < nrcpts; i++) {
        if (!rcpts[i] || !*rcpts[i] || smtpc__has_crlfnul(rcpts[i], strlen(rcpts[i]))) {
            if (errbuf && errbuf_len)
                snprintf(errbuf, errbuf_len, "pickup: recipient %zu is empty or contains CR, LF or NUL", i + 1);
            return SMTPC_EINVAL;
        }
    }
    if (mkdir_p(dir) < 0) return fail(errbuf, errbuf_len, SMTPC_EIO, "cannot create", dir);
    /* the outbox's rule, for a directory a relay also reads (spooldir.h) */
    int drc = smtpc__spool_dir_check("pickup directory", dir, true, errbuf, errbuf_len);
    if (drc) return drc;

    char tmp[4200], final[4200];
    pickup_names(dir, tmp, sizeof tmp, final, sizeof final);

    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return fail(errbuf, errbuf_len, SMTPC_EIO, "cannot create", tmp);

    int rc = 0;
    smtpc__buf out;
    smtpc__buf_init(&out, 0);
    rc = smtpc__buf_printf(&out, "X-Sender: %s\r\n", from);
    for (size_t i = 0; !rc && i < nrcpts; i++) rc = smtpc__buf_printf(&out, "X-Receiver: %s\r\n", rcpts[i]);

    /* Normalise line ends to CRLF: bare CR and bare LF both become CRLF. */
    char in[65536];
    bool last_cr = false;
    pickup_out po = {&out, true, true, {0}, 0};
    while (!rc) {
        ssize_t got = cb(userdata, in, sizeof in);
        if (got < 0) { rc = (int)got; break; }
        if (got == 0) break;
        for (ssize_t i = 0; i < got && !rc; i++) {
            char c = in[i];
            if (last_cr) {
                last_cr = false;
                if (c == '\n') continue; /* CRLF already emitted */
            }
            if (c == '\r') last_cr = true;
            rc = out_put(&po, c == '\r' ? '\n' : c);
        }
        if (!rc && smtpc__buf_size(&out) >= 65536) {
            if (write_all(fd, smtpc__buf_ptr(&out), smtpc__buf_size(&out)) < 0) {
                rc = fail(errbuf, errbuf_len, SMTPC_EIO, "cannot write", tmp);
                break;
            }
            smtpc__buf_reset(&out);
        }
    }
    if (!rc) rc = out_flush_peek(&po); /* a message ending inside a field name */
    if (!rc && write_all(fd, smtpc__buf_ptr(&out), smtpc__buf_size(&out)) < 0)
        rc = fail(errbuf, errbuf_len, SMTPC_EIO, "cannot write", tmp);
    smtpc__buf_free(&out);
    if (!rc && fsync(fd) < 0) rc = fail(errbuf, errbuf_len, SMTPC_EIO, "cannot sync", tmp);
    if (close(fd) < 0 && !rc) rc = fail(errbuf, errbuf_len, SMTPC_EIO, "cannot close", tmp);
    if (!rc && rename(tmp, final) < 0) rc = fail(errbuf, errbuf_len, SMTPC_EIO, "cannot rename", tmp);
    if (rc) {
        unlink(tmp);
        if (rc != SMTPC_EIO && rc != SMTPC_EINVAL && errbuf && errbuf_len && !errbuf[0])
            snprintf(errbuf, errbuf_len, "pickup: %s", smtpc_strerror(rc));
        return rc;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    if (path_out) {
        *path_out = smtpc__strdup(final);
        if (!*path_out) return SMTPC_ENOMEM;
    }
    return 0;
}

/* ---- reader ------------------------------------------------------------------------------------ */

struct smtpc_pickup_msg {
    char *sender;   /* NULL: no envelope block */
    char **rcpts;
    size_t nrcpts;
    char *data;     /* the whole file; the message starts at off */
    size_t len, off;
};

SMTPC_API void smtpc_pickup_msg_free(smtpc_pickup_msg *m)
{
    if (!m) return;
    free(m->sender);
    for (size_t i = 0; i < m->nrcpts; i++) free(m->rcpts[i]);
    free(m->rcpts);
    free(m->data);
    free(m);
}

static int read_whole(const char *path, char **data, size_t *len, char *errbuf, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return fail(errbuf, errlen, errno == ENOENT ? SMTPC_ENOTFOUND : SMTPC_EIO, "cannot open", path);
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0) rc = fail(errbuf, errlen, SMTPC_EIO, "cannot stat", path);
    else if (!S_ISREG(st.st_mode) && errbuf && errlen)
        snprintf(errbuf, errlen, "pickup: %s: not a regular file", path);
    if (!rc && !S_ISREG(st.st_mode)) rc = SMTPC_EIO;
    if (rc) {
        close(fd);
        return rc;
    }
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    char tmp[65536];
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = fail(errbuf, errlen, SMTPC_EIO, "cannot read", path);
            break;
        }
        if (n == 0) break;
        if (smtpc__buf_append(&b, tmp, (size_t)n)) {
            rc = SMTPC_ENOMEM;
            break;
        }
    }
    close(fd);
    char *p = NULL;
    if (!rc && !(p = malloc(smtpc__buf_size(&b) + 1))) rc = SMTPC_ENOMEM;
    if (!rc) {
        memcpy(p, smtpc__buf_ptr(&b), smtpc__buf_size(&b));
        p[smtpc__buf_size(&b)] = '\0';
        *data = p;
        *len = smtpc__buf_size(&b);
    }
    smtpc__buf_free(&b);
    return rc;
}

/* The value of an envelope line "Name: value" of line l (ll octets, line
 * end excluded) when its name is name: trimmed, "<addr>" unbracketed
 * ("<>" = ""). NULL when the line is something else or the value is not an
 * address the writer could have written. */
static char *envelope_value(const char *l, size_t ll, const char *name, bool may_be_empty, int *rc)
{
    size_t nl = strlen(name);
    *rc = 0;
    if (ll <= nl || smtpc__strncasecmp(l, name, nl) != 0 || l[nl] != ':') return NULL;
    const char *v = l + nl + 1, *e = l + ll;
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
    if (e - v >= 2 && *v == '<' && e[-1] == '>') {
        v++;
        e--;
    }
    if ((v == e && !may_be_empty) || memchr(v, '\r', (size_t)(e - v)) || memchr(v, '\0', (size_t)(e - v)))
        return NULL;
    char *r = smtpc__strndup(v, (size_t)(e - v));
    if (!r) *rc = SMTPC_ENOMEM;
    return r;
}

SMTPC_API int smtpc_pickup_read(const char *path, smtpc_pickup_msg **out, char *errbuf,
                                size_t errbuf_len)
{
    if (errbuf && errbuf_len) errbuf[0] = '\0';
    if (!path || !out) return SMTPC_EINVAL;
    smtpc_pickup_msg *m = calloc(1, sizeof *m);
    if (!m) return SMTPC_ENOMEM;
    int rc = read_whole(path, &m->data, &m->len, errbuf, errbuf_len);
    /* The writer's block: one X-Sender line, then X-Receiver lines; the
     * first line of any other form is the message's (the writer renames
     * the message's own X-Sender/X-Receiver fields). */
    for (size_t off = 0; !rc;) {
        const char *l = m->data + off;
        const char *nl = memchr(l, '\n', m->len - off);
        if (!nl) break;
        size_t ll = (size_t)(nl - l) + 1, vl = ll - 1;
        if (vl && l[vl - 1] == '\r') vl--;
        if (vl > ENV_LINE_MAX) break;
        char *v = envelope_value(l, vl, m->sender ? "X-Receiver" : "X-Sender", !m->sender, &rc);
        if (!v) break;
        if (!m->sender) {
            m->sender = v;
        } else {
            char **nr = m->nrcpts < ENV_RCPTS_MAX ? realloc(m->rcpts, (m->nrcpts + 1) * sizeof *nr) : NULL;
            if (!nr) {
                free(v);
                rc = m->nrcpts < ENV_RCPTS_MAX ? SMTPC_ENOMEM : SMTPC_ELIMIT;
                if (rc == SMTPC_ELIMIT && errbuf && errbuf_len)
                    snprintf(errbuf, errbuf_len, "pickup: %s: more than %d recipients", path, ENV_RCPTS_MAX);
                break;
            }
            m->rcpts = nr;
            m->rcpts[m->nrcpts++] = v;
        }
        off += ll;
        m->off = off;
    }
    /* a sender line without recipients is not the writer's block */
    if (!rc && m->sender && !m->nrcpts) {
        free(m->sender);
        m->sender = NULL;
        m->off = 0;
    }
    if (rc) {
        if (rc == SMTPC_ENOMEM && errbuf && errbuf_len && !errbuf[0])
            snprintf(errbuf, errbuf_len, "pickup: out of memory");
        smtpc_pickup_msg_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

SMTPC_API const char *smtpc_pickup_msg_sender(const smtpc_pickup_msg *m)
{
    return m ? m->sender : NULL;
}

SMTPC_API size_t smtpc_pickup_msg_rcpt_count(const smtpc_pickup_msg *m)
{
    return m ? m->nrcpts : 0;
}

SMTPC_API const char *smtpc_pickup_msg_rcpt(const smtpc_pickup_msg *m, size_t i)
{
    return m && i < m->nrcpts ? m->rcpts[i] : NULL;
}

SMTPC_API const char *smtpc_pickup_msg_data(const smtpc_pickup_msg *m, size_t *len)
{
    if (len) *len = m ? m->len - m->off : 0;
    return m ? m->data + m->off : NULL;
}

/* A name a reader takes: "*.eml", not hidden (the writer's temporaries
 * are ".tmp-*.part"; other programs' are often dot-files too). */
static bool pickup_name(const char *n)
{
    size_t l = strlen(n);
    return n[0] != '.' && l > 4 && smtpc__strcasecmp(n + l - 4, ".eml") == 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

SMTPC_API void smtpc_pickup_list_free(char **paths, size_t n)
{
    if (!paths) return;
    for (size_t i = 0; i < n; i++) free(paths[i]);
    free(paths);
}

SMTPC_API int smtpc_pickup_list(const char *dir, char ***paths_out, size_t *n_out, char *errbuf,
                                size_t errbuf_len)
{
    if (errbuf && errbuf_len) errbuf[0] = '\0';
    if (!dir || !*dir || !paths_out || !n_out) return SMTPC_EINVAL;
    DIR *d = opendir(dir);
    if (!d) return fail(errbuf, errbuf_len, errno == ENOENT ? SMTPC_ENOTFOUND : SMTPC_EIO, "cannot open", dir);
    char **v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        if (!pickup_name(e->d_name)) continue;
        size_t pl = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(pl);
        if (!p) {
            rc = SMTPC_ENOMEM;
            break;
        }
        snprintf(p, pl, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) < 0 || !S_ISREG(st.st_mode)) { /* gone meanwhile, or a directory */
            free(p);
            continue;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                free(p);
                rc = SMTPC_ENOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        v[n++] = p;
    }
    closedir(d);
    if (rc) {
        smtpc_pickup_list_free(v, n);
        return rc;
    }
    if (n) qsort(v, n, sizeof *v, cmp_names);
    *paths_out = v;
    *n_out = n;
    return 0;
}
