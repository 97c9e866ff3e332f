/* The outbox: a spool directory of queued messages (see smtpc/outbox.h for
 * the layout and the durability argument). */
#include "client/deliver.h"
#include "client/outbox_check.h"
#include "client/outbox_pg.h"
#include "client/spooldir.h"

#include <smtpc/outbox.h>

#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HDR_MAX (256 * 1024) /* envelope header of a .msg file */
#define ID_MAX 64

struct smtpc_outbox {
    char *dir;
    int64_t initial_ms, max_ms;
    double factor;
    unsigned max_attempts;
    smtpc_outbox_progress_cb progress;
    void *progress_ud;
    smtpc__errmsg err;
    smtpc__pg *pg; /* a postgresql:// outbox: every call goes there */
};

static _Atomic unsigned g_seq;

static int oerr(smtpc_outbox *ob, int code, const char *what, const char *path)
{
    return smtpc__err(&ob->err, code, "%s %s: %s", what, path, strerror(errno));
}

static int path_of(char *dst, size_t n, const smtpc_outbox *ob, const char *sub, const char *id,
                   const char *ext)
{
    int k = snprintf(dst, n, "%s/%s%s%s%s", ob->dir, sub, id ? "/" : "", id ? id : "", ext ? ext : "");
    return k < 0 || (size_t)k >= n ? SMTPC_ELIMIT : 0;
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

static int mkdir_p(const char *p)
{
    if (mkdir(p, 0700) == 0 || errno == EEXIST) return 0;
    return -1;
}

SMTPC_API int smtpc_outbox_open(smtpc_outbox **out, const char *dir, char *errbuf, size_t errlen)
{
    if (!out || !dir || !*dir) return SMTPC_EINVAL;
    smtpc_outbox *ob = calloc(1, sizeof *ob);
    if (!ob || !(ob->dir = smtpc__strdup(dir))) {
        free(ob);
        return SMTPC_ENOMEM;
    }
    ob->initial_ms = 60000;
    ob->factor = 2.0;
    ob->max_ms = 3600000;
    if (smtpc__pg_is_url(dir)) {
        int rc = smtpc__pg_open(&ob->pg, dir, errbuf, errlen);
        if (rc) smtpc_outbox_free(ob);
        else *out = ob;
        return rc;
    }
    static const char *subs[] = {"", "queue", "failed", "tmp"};
    char p[4096];
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) {
        if (path_of(p, sizeof p, ob, subs[i], NULL, NULL) || mkdir_p(p)) {
            if (errbuf && errlen) snprintf(errbuf, errlen, "outbox %s: %s", p, strerror(errno));
            smtpc_outbox_free(ob);
            return SMTPC_EIO;
        }
        /* one that is there already is used only when nobody else can write
         * into it (planted links, swapped messages and envelopes) */
        int rc = smtpc__spool_dir_check("outbox", p, false, errbuf, errlen);
        if (rc) {
            smtpc_outbox_free(ob);
            return rc;
        }
    }
    *out = ob;
    return 0;
}

SMTPC_API void smtpc_outbox_free(smtpc_outbox *ob)
{
    if (!ob) return;
    smtpc__pg_free(ob->pg);
    free(ob->dir);
    free(ob);
}

SMTPC_API const char *smtpc_outbox_errmsg(const smtpc_outbox *ob)
{
    return !ob ? "no outbox" : ob->pg ? smtpc__pg_errmsg(ob->pg) : ob->err.text;
}

smtpc__pg *smtpc__outbox_pg(const smtpc_outbox *ob) { return ob ? ob->pg : NULL; }

SMTPC_API int smtpc_outbox_set_backoff(smtpc_outbox *ob, int64_t initial_ms, double factor, int64_t max_ms,
                                       unsigned max_attempts)
{
    if (!ob || initial_ms < 0 || max_ms < 0 || factor < 1.0) return SMTPC_EINVAL;
    if (ob->pg) return smtpc__pg_set_backoff(ob->pg, initial_ms, factor, max_ms, max_attempts);
    ob->initial_ms = initial_ms;
    ob->factor = factor;
    ob->max_ms = max_ms;
    ob->max_attempts = max_attempts;
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Creates a new file for writing: never an existing one, never through a
 * symbolic link. */
#define CREATE_FLAGS (O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC)

/* Writes data to a new tmp/<name>.<pid>-<n>.tmp (created exclusively: two
 * writers never share one, a name planted there is skipped), fsyncs it and
 * renames it to final; then fsyncs final's directory. */
static int durable_write(smtpc_outbox *ob, const char *name, const void *data, size_t len,
                         const char *final, const char *final_dir)
{
    char tmp[4096], uniq[ID_MAX + 48];
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 100; tries++) {
        snprintf(uniq, sizeof uniq, "%s.%ld-%u", name, (long)getpid(), atomic_fetch_add(&g_seq, 1));
        if (path_of(tmp, sizeof tmp, ob, "tmp", uniq, ".tmp")) return SMTPC_ELIMIT;
        fd = open(tmp, CREATE_FLAGS, 0600);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) return oerr(ob, SMTPC_EIO, "create", tmp);
    if (write_all(fd, data, len) || fsync(fd)) {
        int rc = oerr(ob, SMTPC_EIO, "write", tmp);
        close(fd);
        unlink(tmp);
        return rc;
    }
    close(fd);
    if (rename(tmp, final)) {
        int rc = oerr(ob, SMTPC_EIO, "rename to", final);
        unlink(tmp);
        return rc;
    }
    fsync_dir(final_dir);
    return 0;
}

static bool bad_addr(const char *a) { return !a || smtpc__has_crlfnul(a, strlen(a)); }

SMTPC_API int smtpc_outbox_add_raw(smtpc_outbox *ob, const char *from, const char *const *rcpts,
                                   size_t nrcpts, smtpc_read_cb cb, void *ud, char *id_out,
                                   size_t idlen)
{
    if (!ob) return SMTPC_EINVAL;
    if (ob->pg) return smtpc__pg_add_raw(ob->pg, from, rcpts, nrcpts, cb, ud, id_out, idlen);
    if (!cb || bad_addr(from) || !rcpts || nrcpts == 0)
        return smtpc__err(&ob->err, SMTPC_EINVAL, "outbox: no sender, recipient or body");
    for (size_t i = 0; i < nrcpts; i++)
        if (bad_addr(rcpts[i]) || !*rcpts[i])
            return smtpc__err(&ob->err, SMTPC_EINVAL, "outbox: bad recipient %zu", i);
    char id[ID_MAX];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(id, sizeof id, "%010lld%06ld-%d-%u", (long long)ts.tv_sec, ts.tv_nsec / 1000, (int)getpid(),
             atomic_fetch_add(&g_seq, 1));
    char tmp[4096], fin[4096], qdir[4096];
    if (path_of(tmp, sizeof tmp, ob, "tmp", id, ".msg") || path_of(fin, sizeof fin, ob, "queue", id, ".msg") ||
        path_of(qdir, sizeof qdir, ob, "queue", NULL, NULL))
        return smtpc__err(&ob->err, SMTPC_ELIMIT, "outbox: path too long");
    int fd = open(tmp, CREATE_FLAGS, 0600);
    if (fd < 0) return oerr(ob, SMTPC_EIO, "create", tmp);
    smtpc__buf h;
    smtpc__buf_init(&h, HDR_MAX);
    int rc = smtpc__buf_printf(&h, "smtpc-outbox 1\nfrom %s\n", from);
    for (size_t i = 0; !rc && i < nrcpts; i++) rc = smtpc__buf_printf(&h, "rcpt %s\n", rcpts[i]);
    if (!rc) rc = smtpc__buf_append(&h, "\n", 1);
    if (rc) {
        smtpc__buf_free(&h);
        close(fd);
        unlink(tmp);
        return smtpc__err(&ob->err, rc, "outbox: envelope too large");
    }
    if (write_all(fd, smtpc__buf_ptr(&h), smtpc__buf_size(&h))) rc = oerr(ob, SMTPC_EIO, "write", tmp);
    smtpc__buf_free(&h);
    char buf[65536];
    while (!rc) {
        ssize_t n = cb(ud, buf, sizeof buf);
        if (n < 0) {
            rc = smtpc__err(&ob->err, (int)n, "outbox: the body callback failed (%s)", smtpc_err_name((int)n));
            break;
        }
        if (n == 0) break;
        if (write_all(fd, buf, (size_t)n)) rc = oerr(ob, SMTPC_EIO, "write", tmp);
    }
    if (!rc && fsync(fd)) rc = oerr(ob, SMTPC_EIO, "fsync", tmp);
    close(fd);
    if (!rc && rename(tmp, fin)) rc = oerr(ob, SMTPC_EIO, "rename to", fin);
    if (rc) {
        unlink(tmp);
        return rc;
    }
    if (fsync_dir(qdir)) {
        /* "durable on return 0" would be a lie: not queued (a power cut
         * may still bring it back: a duplicate, never a loss) */
        rc = oerr(ob, SMTPC_EIO, "fsync", qdir);
        unlink(fin);
        return rc;
    }
    if (id_out && idlen) smtpc__strlcpy(id_out, id, idlen);
    return 0;
}

SMTPC_API int smtpc_outbox_add(smtpc_outbox *ob, smtpc_message *m, char *id_out, size_t idlen)
{
    if (!ob || !m) return SMTPC_EINVAL;
    const char *from = smtpc_message_envelope_from(m);
    size_t n = smtpc_message_rcpt_count(m);
    if (!from || n == 0) return smtpc__err(&ob->err, SMTPC_EINVAL, "outbox: the message has no sender or recipient");
    const char **r = calloc(n, sizeof *r);
    if (!r) return SMTPC_ENOMEM;
    for (size_t i = 0; i < n; i++) r[i] = smtpc_message_rcpt(m, i);
    smtpc_message_writer *w;
    int rc = smtpc_message_writer_new(&w, m, smtpc__stored_write_flags(m));
    if (rc) {
        free(r);
        return smtpc__err(&ob->err, rc, "outbox: %s", smtpc_message_errmsg(m));
    }
    rc = smtpc_outbox_add_raw(ob, from, r, n, smtpc_message_writer_read, w, id_out, idlen);
    smtpc_message_writer_free(w);
    free(r);
    return rc;
}

/* ---- reading entries ---- */

typedef struct entry {
    char id[ID_MAX];
    int fd;
    off_t body_off;
    char *hdr;      /* the header block, NUL-separated in place */
    char *from;
    char **rcpts;
    size_t nrcpts;
    unsigned attempts;
    int64_t next;
    char error[1024];
} entry;

static void entry_free(entry *e)
{
    if (e->fd >= 0) close(e->fd);
    free(e->hdr);
    free(e->rcpts);
    memset(e, 0, sizeof *e);
    e->fd = -1;
}

/* Reads the state file (missing = never tried). */
static void read_state(const char *path, entry *e)
{
    e->attempts = 0;
    e->next = 0;
    e->error[0] = '\0';
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        return;
    }
    char line[1200];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        uint64_t v;
        if (!strncmp(line, "attempts ", 9) && !smtpc__parse_u64(line + 9, strlen(line + 9), &v))
            e->attempts = (unsigned)v;
        else if (!strncmp(line, "next ", 5) && !smtpc__parse_u64(line + 5, strlen(line + 5), &v))
            e->next = (int64_t)v;
        else if (!strncmp(line, "error ", 6))
            smtpc__strlcpy(e->error, line + 6, sizeof e->error);
    }
    fclose(f);
}

static int entry_open(smtpc_outbox *ob, const char *sub, const char *id, entry *e)
{
    memset(e, 0, sizeof *e);
    e->fd = -1;
    smtpc__strlcpy(e->id, id, sizeof e->id);
    char p[4096];
    if (path_of(p, sizeof p, ob, sub, id, ".msg")) return SMTPC_ELIMIT;
    e->fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (e->fd < 0) return errno == ENOENT ? SMTPC_ENOTFOUND : oerr(ob, SMTPC_EIO, "open", p);
    /* The envelope header, read in pieces of 4 KiB doubling to 64 KiB, up
     * to HDR_MAX: most are a few hundred octets, and a buffer of HDR_MAX
     * for every entry read (each list, flush, retry) cost more than the
     * parsing (an mmap and its page faults each under ASan). */
    size_t len = 0, chunk = 4096;
    char *end = NULL;
    for (;;) {
        size_t want = chunk < HDR_MAX - len ? chunk : HDR_MAX - len;
        char *nh = realloc(e->hdr, len + want + 1);
        if (!nh) return SMTPC_ENOMEM;
        e->hdr = nh;
        ssize_t n = pread(e->fd, e->hdr + len, want, (off_t)len);
        if (n < 0) return oerr(ob, SMTPC_EIO, "read", p);
        size_t from = len ? len - 1 : 0; /* "\n\n" may straddle two reads */
        len += (size_t)n;
        e->hdr[len] = '\0';
        for (size_t i = from; !end && i + 1 < len; i++)
            if (e->hdr[i] == '\n' && e->hdr[i + 1] == '\n') end = e->hdr + i;
        if (end || n == 0 || len == HDR_MAX) break;
        if (chunk < 65536) chunk *= 2;
    }
    /* a NUL before the blank line: not ours (the parse below walks strings) */
    if (strncmp(e->hdr, "smtpc-outbox 1\n", 15) || !end || memchr(e->hdr, '\0', (size_t)(end - e->hdr)))
        return smtpc__err(&ob->err, SMTPC_EIO, "%s: not an outbox message", p);
    end[1] = '\0';
    e->body_off = (off_t)(end + 2 - e->hdr);
    size_t cap = 0;
    for (char *l = e->hdr + 15; *l;) {
        char *nl = strchr(l, '\n');
        *nl = '\0';
        if (!strncmp(l, "from ", 5)) {
            e->from = l + 5;
        } else if (!strncmp(l, "rcpt ", 5)) {
            if (e->nrcpts == cap) {
                cap = cap ? cap * 2 : 8;
                char **nr = realloc(e->rcpts, cap * sizeof *nr);
                if (!nr) return SMTPC_ENOMEM;
                e->rcpts = nr;
            }
            e->rcpts[e->nrcpts++] = l + 5;
        }
        l = nl + 1;
    }
    if (!e->from || e->nrcpts == 0) return smtpc__err(&ob->err, SMTPC_EIO, "%s: no envelope", p);
    if (path_of(p, sizeof p, ob, sub, id, ".state")) return SMTPC_ELIMIT;
    read_state(p, e);
    return 0;
}

typedef struct idlist {
    char (*ids)[ID_MAX];
    size_t n, cap;
} idlist;

static int cmp_id(const void *a, const void *b) { return strcmp(a, b); }

static bool has_id(const idlist *l, const char *id)
{
    return l->n && bsearch(id, l->ids, l->n, sizeof *l->ids, cmp_id) != NULL;
}

/* The ids of the .msg files in sub, sorted (oldest first). With clean (only
 * under the directory lock: move_entry writes the state before it moves the
 * message), removes the state files whose message is gone (a crash between
 * the two unlinks of a removal, or of a move). */
static int list_ids(smtpc_outbox *ob, const char *sub, idlist *l, bool clean)
{
    char p[4096];
    if (path_of(p, sizeof p, ob, sub, NULL, NULL)) return SMTPC_ELIMIT;
    DIR *d = opendir(p);
    if (!d) return oerr(ob, SMTPC_EIO, "open", p);
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 5 || len - 4 >= ID_MAX || strcmp(de->d_name + len - 4, ".msg")) continue;
        if (l->n == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 64;
            void *nn = realloc(l->ids, l->cap * sizeof *l->ids);
            if (!nn) {
                closedir(d);
                return SMTPC_ENOMEM;
            }
            l->ids = nn;
        }
        memcpy(l->ids[l->n], de->d_name, len - 4);
        l->ids[l->n][len - 4] = '\0';
        l->n++;
    }
    if (l->n) qsort(l->ids, l->n, sizeof *l->ids, cmp_id);
    if (clean) {
        rewinddir(d);
        while ((de = readdir(d))) {
            size_t len = strlen(de->d_name);
            if (len < 7 || len - 6 >= ID_MAX || strcmp(de->d_name + len - 6, ".state")) continue;
            char id[ID_MAX];
            memcpy(id, de->d_name, len - 6);
            id[len - 6] = '\0';
            if (!has_id(l, id)) unlinkat(dirfd(d), de->d_name, 0);
        }
    }
    closedir(d);
    return 0;
}

static int write_state(smtpc_outbox *ob, const char *sub, const entry *e)
{
    char buf[1400], fin[4096], dir[4096], name[ID_MAX + 8];
    char esc[1100];
    smtpc__escape_into(esc, sizeof esc, e->error, strlen(e->error));
    int n = snprintf(buf, sizeof buf, "attempts %u\nnext %lld\nerror %s\n", e->attempts, (long long)e->next, esc);
    if (n < 0 || (size_t)n >= sizeof buf) n = (int)sizeof buf - 1;
    snprintf(name, sizeof name, "%s.state", e->id);
    if (path_of(fin, sizeof fin, ob, sub, e->id, ".state") || path_of(dir, sizeof dir, ob, sub, NULL, NULL))
        return SMTPC_ELIMIT;
    return durable_write(ob, name, buf, (size_t)n, fin, dir);
}

static ssize_t fd_read(void *ud, void *buf, size_t len)
{
    entry *e = ud;
    for (;;) {
        ssize_t n = read(e->fd, buf, len);
        if (n < 0 && errno == EINTR) continue;
        return n < 0 ? SMTPC_EIO : n;
    }
}

static int fd_rewind(void *ud)
{
    entry *e = ud;
    return lseek(e->fd, e->body_off, SEEK_SET) < 0 ? SMTPC_EIO : 0;
}

/* The stored message's size and whether it has 8-bit bytes (a raw entry
 * may: smtpc_outbox_add_raw, smtpc send --outbox --message), for SIZE=
 * and BODY=8BITMIME when it is sent; then back at its first byte. */
static int entry_scan(entry *e, smtpc_send_params *p)
{
    struct stat st;
    if (fstat(e->fd, &st) || st.st_size < e->body_off) return SMTPC_EIO;
    p->size = (uint64_t)(st.st_size - e->body_off);
    int rc = fd_rewind(e);
    char buf[16384];
    while (!rc && !p->body_8bit) {
        ssize_t n = fd_read(e, buf, sizeof buf);
        if (n < 0) return (int)n;
        if (n == 0) break;
        p->body_8bit = smtpc__has_8bit(buf, (size_t)n);
    }
    return rc ? rc : fd_rewind(e);
}

/* Moves id's message (and state) from one subdirectory to another; the
 * message last, so a crash leaves it where it was or where it goes. */
static int move_entry(smtpc_outbox *ob, const char *from, const char *to, const entry *e)
{
    char a[4096], b[4096], d1[4096], d2[4096];
    if (path_of(a, sizeof a, ob, from, e->id, ".msg") || path_of(b, sizeof b, ob, to, e->id, ".msg") ||
        path_of(d1, sizeof d1, ob, from, NULL, NULL) || path_of(d2, sizeof d2, ob, to, NULL, NULL))
        return SMTPC_ELIMIT;
    int rc = write_state(ob, to, e);
    if (rc) return rc;
    if (rename(a, b)) return oerr(ob, SMTPC_EIO, "rename", a);
    fsync_dir(d2);
    fsync_dir(d1);
    if (!path_of(a, sizeof a, ob, from, e->id, ".state")) unlink(a);
    return 0;
}

static void remove_entry(smtpc_outbox *ob, const char *sub, const char *id)
{
    char p[4096], d[4096];
    if (path_of(p, sizeof p, ob, sub, id, ".msg") || path_of(d, sizeof d, ob, sub, NULL, NULL)) return;
    unlink(p); /* the commit point of the removal */
    fsync_dir(d);
    if (!path_of(p, sizeof p, ob, sub, id, ".state")) unlink(p);
}

static int64_t backoff_s(const smtpc_outbox *ob, unsigned attempts)
{
    double d = (double)ob->initial_ms;
    for (unsigned k = 1; k < attempts && d < (double)ob->max_ms; k++) d *= ob->factor;
    int64_t dm = d > (double)ob->max_ms ? ob->max_ms : (int64_t)d;
    return (dm + 999) / 1000;
}

/* Queues the refused recipients of a partly accepted entry (transient and
 * permanent apart). 0 when there were none or they are recorded. */
static int split_refused(smtpc_outbox *ob, entry *e, const smtpc_result *res, int64_t now,
                         smtpc_outbox_stats *st)
{
    size_t n = smtpc_result_rcpt_count(res);
    for (int perm = 0; perm < 2; perm++) {
        const char **sub = calloc(n ? n : 1, sizeof *sub);
        if (!sub) return SMTPC_ENOMEM;
        size_t k = 0;
        char first[256] = "";
        for (size_t i = 0; i < n && i < e->nrcpts; i++) {
            if (smtpc_result_rcpt_accepted(res, i)) continue;
            int code = smtpc_result_rcpt_code(res, i);
            if ((code / 100 == 5) != (perm == 1)) continue;
            if (!first[0])
                snprintf(first, sizeof first, "%d %s %s", code, smtpc_result_rcpt_enhanced(res, i),
                         smtpc_result_rcpt_text(res, i));
            sub[k++] = e->rcpts[i];
        }
        int rc = 0;
        if (k) {
            entry ne;
            memset(&ne, 0, sizeof ne);
            ne.fd = -1;
            rc = fd_rewind(e);
            if (!rc) rc = smtpc_outbox_add_raw(ob, e->from, sub, k, fd_read, e, ne.id, sizeof ne.id);
            if (!rc) {
                ne.attempts = e->attempts + 1;
                snprintf(ne.error, sizeof ne.error, "recipient refused: %s", first);
                if (perm) {
                    rc = move_entry(ob, "queue", "failed", &ne);
                    if (!rc) st->failed++;
                } else {
                    ne.next = now + backoff_s(ob, ne.attempts);
                    rc = write_state(ob, "queue", &ne);
                    if (!rc) st->deferred++;
                }
            }
        }
        free(sub);
        if (rc) return rc;
    }
    return 0;
}

static int lock_dir(smtpc_outbox *ob, int *fd_out)
{
    char p[4096];
    if (path_of(p, sizeof p, ob, "lock", NULL, NULL)) return SMTPC_ELIMIT;
    int fd = open(p, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return oerr(ob, SMTPC_EIO, "open", p);
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        close(fd);
        return smtpc__err(&ob->err, SMTPC_EBUSY,
                          "outbox %s: another flush is running (or a retry or drop); try again later", ob->dir);
    }
    *fd_out = fd;
    return 0;
}

/* Handles one queued entry: sends it when due and records the outcome
 * (removed, deferred with backoff, or moved to failed/) in d. Returns 0 to
 * go on, or the error that stops the flush (SMTPC_ECANCELED, SMTPC_EIO ...). */
static int flush_one(smtpc_outbox *ob, smtpc_client *c, const char *id, int64_t now, smtpc_outbox_stats *d)
{
    entry e;
    int orc = entry_open(ob, "queue", id, &e);
    if (orc) {
        entry_free(&e);
        /* one that does not read (damaged: smtpc_outbox_check moves it
         * aside) must not hold up the others: kept, counted deferred */
        if (orc == SMTPC_EIO) d->deferred++;
        return orc == SMTPC_ENOTFOUND || orc == SMTPC_EIO ? 0 : orc;
    }
    if (e.next > now) {
        d->not_due++;
        entry_free(&e);
        return 0;
    }
    int rc = 0;
    smtpc__body b;
    memset(&b, 0, sizeof b);
    b.from = e.from;
    b.rcpts = (const char *const *)e.rcpts;
    b.nrcpts = e.nrcpts;
    b.cb = fd_read;
    b.ud = &e;
    b.rewind = fd_rewind;
    smtpc_send_params p; /* no DSN: what the entry is, for MAIL */
    memset(&p, 0, sizeof p);
    b.params = &p;
    smtpc_result *res = NULL;
    int src = entry_scan(&e, &p);
    if (!src) src = smtpc__client_deliver(c, &b, false, &res);
    if (src == 0) {
        /* Recipients the server refused while taking the message for the
         * others: a new entry for them (4xx: queued with backoff; 5xx:
         * failed/) before the original goes, so none is dropped. When they
         * cannot be recorded the whole entry stays (a duplicate beats a loss). */
        if (!split_refused(ob, &e, res, now, d)) {
            remove_entry(ob, "queue", e.id);
            d->sent++;
        }
    } else if (src == SMTPC_ECANCELED) {
        rc = src;
    } else {
        /* SMTPC_EUNKNOWN (lost after the final dot) lands here too: kept and
         * retried later, never counted as sent. */
        e.attempts++;
        snprintf(e.error, sizeof e.error, "%s: %s", smtpc_err_name(src),
                 res ? smtpc_result_errmsg(res) : smtpc_strerror(src));
        bool perm = src == SMTPC_EPERMFAIL || (ob->max_attempts && e.attempts >= ob->max_attempts);
        if (perm) {
            e.next = 0;
            if (move_entry(ob, "queue", "failed", &e) == 0) d->failed++;
        } else {
            e.next = now + backoff_s(ob, e.attempts);
            write_state(ob, "queue", &e);
            d->deferred++;
        }
    }
    smtpc_result_free(res);
    entry_free(&e);
    return rc;
}

/* One flush shared by its workers. The directory lock keeps other flushes
 * (threads or processes) out; inside, entries are handed out one at a
 * time under mu, so no entry is handled twice. */
typedef struct flush_run {
    smtpc_outbox *ob;
    idlist l;
    int64_t now;
    pthread_mutex_t mu;
    size_t next;            /* the next entry to hand out */
    size_t done;            /* entries handled */
    smtpc_outbox_stats *st; /* under mu */
    int rc;                 /* the first error that stopped the flush */
    bool stop;
} flush_run;

typedef struct flush_worker {
    flush_run *run;
    smtpc_client *c;
    pthread_t thr;
} flush_worker;

static void stats_add(smtpc_outbox_stats *a, const smtpc_outbox_stats *d)
{
    a->sent += d->sent;
    a->deferred += d->deferred;
    a->failed += d->failed;
    a->not_due += d->not_due;
}

static void *flush_worker_main(void *arg)
{
    flush_worker *w = arg;
    flush_run *r = w->run;
    /* A private copy for the error text: the helpers write ob->err, and
     * workers must not write the shared one at the same time. */
    pthread_mutex_lock(&r->mu);
    smtpc_outbox wob = *r->ob;
    while (!r->stop && r->next < r->l.n) {
        size_t i = r->next++;
        /* Under mu: callbacks never overlap and see consistent counts. */
        if (r->ob->progress) r->ob->progress(r->ob->progress_ud, r->done, r->l.n, r->st);
        pthread_mutex_unlock(&r->mu);
        smtpc_outbox_stats d = {0, 0, 0, 0};
        int rc = flush_one(&wob, w->c, r->l.ids[i], r->now, &d);
        pthread_mutex_lock(&r->mu);
        stats_add(r->st, &d);
        r->done++;
        if (rc) {
            r->stop = true;
            if (!r->rc) {
                r->rc = rc;
                r->ob->err = wob.err;
            }
        }
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

SMTPC_API int smtpc_outbox_flush_parallel(smtpc_outbox *ob, smtpc_client *const *clients, size_t n,
                                          smtpc_outbox_stats *st)
{
    smtpc_outbox_stats dummy;
    if (!st) st = &dummy;
    memset(st, 0, sizeof *st);
    if (!ob || !clients || n == 0 || n > SMTPC_OUTBOX_MAX_CONNECTIONS) return SMTPC_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!clients[i]) return SMTPC_EINVAL;
    if (ob->pg) return smtpc__pg_flush(ob->pg, clients, n, st);
    int lfd = -1;
    int rc = lock_dir(ob, &lfd);
    if (rc) return rc;
    size_t entered = 0;
    for (; entered < n; entered++) {
        rc = smtpc__client_enter(clients[entered]);
        if (rc) break;
    }
    if (rc) {
        while (entered) smtpc__client_leave(clients[--entered]);
        close(lfd);
        return smtpc__err(&ob->err, rc, "outbox: the client is busy");
    }
    flush_run r;
    memset(&r, 0, sizeof r);
    r.ob = ob;
    r.st = st;
    rc = list_ids(ob, "queue", &r.l, true);
    r.now = (int64_t)time(NULL);
    flush_worker *w = rc ? NULL : calloc(n, sizeof *w);
    if (!rc && !w) rc = SMTPC_ENOMEM;
    if (!rc) {
        pthread_mutex_init(&r.mu, NULL);
        /* No more workers than entries; the calling thread is worker 0. */
        size_t k = n < r.l.n ? n : r.l.n, started = 1;
        for (size_t i = 0; i < n; i++) {
            w[i].run = &r;
            w[i].c = clients[i];
        }
        for (; started < k; started++)
            if (pthread_create(&w[started].thr, NULL, flush_worker_main, &w[started])) break; /* fewer workers */
        if (k) flush_worker_main(&w[0]);
        for (size_t i = 1; i < started; i++) pthread_join(w[i].thr, NULL);
        rc = r.rc;
        if (ob->progress && r.l.n) ob->progress(ob->progress_ud, r.done, r.l.n, st);
        pthread_mutex_destroy(&r.mu);
    }
    free(w);
    free(r.l.ids);
    for (size_t i = 0; i < n; i++) smtpc__client_leave(clients[i]);
    close(lfd);
    return rc;
}

SMTPC_API int smtpc_outbox_flush(smtpc_outbox *ob, smtpc_client *c, smtpc_outbox_stats *st)
{
    if (!c) {
        if (st) memset(st, 0, sizeof *st);
        return SMTPC_EINVAL;
    }
    return smtpc_outbox_flush_parallel(ob, &c, 1, st);
}

SMTPC_API void smtpc_outbox_set_progress(smtpc_outbox *ob, smtpc_outbox_progress_cb cb, void *ud)
{
    if (!ob) return;
    if (ob->pg) smtpc__pg_set_progress(ob->pg, cb, ud);
    ob->progress = cb;
    ob->progress_ud = ud;
}

SMTPC_API int smtpc_outbox_list(smtpc_outbox *ob, bool include_failed,
                                int (*cb)(void *ud, const smtpc_outbox_entry *e), void *ud)
{
    if (!ob || !cb) return SMTPC_EINVAL;
    if (ob->pg) return smtpc__pg_list(ob->pg, include_failed, cb, ud);
    int rc = 0;
    for (int pass = 0; pass < (include_failed ? 2 : 1) && !rc; pass++) {
        const char *sub = pass ? "failed" : "queue";
        idlist l = {0};
        rc = list_ids(ob, sub, &l, false);
        for (size_t i = 0; !rc && i < l.n; i++) {
            entry e;
            int orc = entry_open(ob, sub, l.ids[i], &e);
            if (!orc) {
                smtpc_outbox_entry oe = {e.id, e.from, e.nrcpts, e.rcpts[0], e.attempts, e.next, e.error, pass == 1};
                rc = cb(ud, &oe);
            }
            entry_free(&e);
        }
        free(l.ids);
    }
    return rc;
}

static int retry_one(smtpc_outbox *ob, const char *id)
{
    entry e;
    int rc = entry_open(ob, "failed", id, &e);
    if (rc == 0) {
        e.next = 0;
        rc = move_entry(ob, "failed", "queue", &e);
    } else if (rc == SMTPC_ENOTFOUND) {
        entry_free(&e);
        rc = entry_open(ob, "queue", id, &e);
        if (!rc) {
            e.next = 0;
            rc = write_state(ob, "queue", &e);
        }
    }
    entry_free(&e);
    return rc;
}

/* Under the directory lock (flush's: an entry being sent is never moved
 * or removed under it; SMTPC_EBUSY while a flush runs). */
static int retry_locked(smtpc_outbox *ob, const char *id)
{
    if (id) {
        int rc = retry_one(ob, id);
        if (rc == SMTPC_ENOTFOUND) smtpc__err(&ob->err, rc, "no outbox entry %s", id);
        return rc;
    }
    int rc = 0;
    for (int pass = 0; pass < 2 && !rc; pass++) {
        idlist l = {0};
        rc = list_ids(ob, pass ? "queue" : "failed", &l, true);
        for (size_t i = 0; !rc && i < l.n; i++) {
            int r1 = retry_one(ob, l.ids[i]);
            if (r1 && r1 != SMTPC_ENOTFOUND) rc = r1;
        }
        free(l.ids);
    }
    return rc;
}

SMTPC_API int smtpc_outbox_retry(smtpc_outbox *ob, const char *id)
{
    if (!ob) return SMTPC_EINVAL;
    if (ob->pg) return smtpc__pg_retry(ob->pg, id);
    if (id && (strchr(id, '/') || !*id)) return SMTPC_EINVAL;
    int lfd, rc = lock_dir(ob, &lfd);
    if (rc) return rc;
    rc = retry_locked(ob, id);
    close(lfd);
    return rc;
}

SMTPC_API int smtpc_outbox_drop(smtpc_outbox *ob, const char *id)
{
    if (!ob || !id || !*id) return SMTPC_EINVAL;
    if (ob->pg) return smtpc__pg_drop(ob->pg, id);
    if (strchr(id, '/')) return SMTPC_EINVAL;
    char p[4096];
    int lfd, rc = lock_dir(ob, &lfd);
    if (rc) return rc;
    rc = SMTPC_ENOTFOUND;
    for (int pass = 0; pass < 2; pass++) {
        const char *sub = pass ? "failed" : "queue";
        if (path_of(p, sizeof p, ob, sub, id, ".msg")) {
            rc = SMTPC_ELIMIT;
            break;
        }
        if (access(p, F_OK) == 0) {
            remove_entry(ob, sub, id);
            rc = 0;
            break;
        }
    }
    close(lfd);
    if (rc == SMTPC_ENOTFOUND) smtpc__err(&ob->err, rc, "no outbox entry %s", id);
    return rc;
}

/* ---- for the consistency check (client/outbox_check.h) ---- */
const char *smtpc__outbox_dir(const smtpc_outbox *ob) { return ob->dir; }
smtpc__errmsg *smtpc__outbox_err(smtpc_outbox *ob) { return &ob->err; }
int smtpc__outbox_lock(smtpc_outbox *ob, int *fd_out) { return lock_dir(ob, fd_out); }
int smtpc__outbox_fsync_dir(const char *path) { return fsync_dir(path); }

int smtpc__outbox_entry_check(smtpc_outbox *ob, const char *sub, const char *id)
{
    entry e;
    int rc = entry_open(ob, sub, id, &e);
    entry_free(&e);
    return rc;
}
