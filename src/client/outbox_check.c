/* The outbox's consistency check: what a crash (kill -9, power loss) or a
 * stray hand can leave in an outbox directory, found and repaired.
 *
 * What a crash leaves, by the write protocol of outbox.c (every file is
 * written under tmp/, fsynced, renamed into place, directory fsynced):
 *   - tmp/<id>.msg, tmp/<name>.<pid>-<n>.tmp: an add or a state update
 *     that never reached its rename. The message was never queued (the add
 *     had not returned): removed once their writer is gone.
 *   - queue|failed/<id>.state without <id>.msg: a removal or a move
 *     interrupted between its steps (the message is gone or elsewhere, with
 *     its own state): removed.
 * What a crash cannot leave but a disk or a hand can: a message or state
 * file that does not read as one, anything else in queue/ failed/ tmp/.
 * Those are moved into damaged/, never deleted. */
#include "client/outbox_check.h"
#include "client/outbox_pg.h"
#include "client/spooldir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_MAX 4096

typedef struct check_run {
    smtpc_outbox *ob;
    bool repair;
    smtpc_outbox_check_report *rep;
    smtpc_outbox_check_cb cb;
    void *ud;
    int rc; /* a failure that stops the check */
} check_run;

static void report(check_run *r, const char *sub, const char *name, const char *problem, bool fixed)
{
    if (fixed) r->rep->repaired++;
    if (!r->cb) return;
    char rel[1024];
    snprintf(rel, sizeof rel, "%s/%s", sub, name);
    r->cb(r->ud, rel, problem, fixed);
}

/* Moves sub/name into damaged/ as sub.name (sub.name.N when taken). */
static bool move_aside(check_run *r, int dfd, const char *sub, const char *name)
{
    const char *dir = smtpc__outbox_dir(r->ob);
    char dmg[4096], dst[4096], src[4096];
    snprintf(dmg, sizeof dmg, "%s/damaged", dir);
    if (mkdir(dmg, 0700) && errno != EEXIST) return false;
    if (smtpc__spool_dir_check("outbox", dmg, false, NULL, 0)) return false;
    snprintf(src, sizeof src, "%s/%s", sub, name);
    for (unsigned n = 0; n < 1000; n++) {
        int k = n ? snprintf(dst, sizeof dst, "%s/%s.%s.%u", dmg, sub, name, n)
                  : snprintf(dst, sizeof dst, "%s/%s.%s", dmg, sub, name);
        if (k < 0 || (size_t)k >= sizeof dst) return false;
        struct stat st;
        if (lstat(dst, &st) == 0) continue;
        if (renameat(dfd, name, AT_FDCWD, dst)) return false;
        smtpc__outbox_fsync_dir(dmg);
        fsync(dfd);
        return true;
    }
    return false;
}

static void damaged(check_run *r, int dfd, const char *sub, const char *name, const char *problem)
{
    r->rep->damaged++;
    report(r, sub, name, problem, r->repair && move_aside(r, dfd, sub, name));
}

/* A state file as write_state makes it: "attempts N", "next N", "error
 * TEXT", each once, each ending in a newline. */
static bool state_ok(int dfd, const char *name)
{
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return false;
    char buf[STATE_MAX + 1];
    ssize_t n = read(fd, buf, STATE_MAX);
    close(fd);
    if (n <= 0 || n == STATE_MAX || buf[n - 1] != '\n') return false;
    buf[n] = '\0';
    unsigned seen = 0;
    for (char *l = buf; *l;) {
        char *nl = strchr(l, '\n');
        *nl = '\0';
        uint64_t v;
        unsigned bit = 0;
        if (!strncmp(l, "attempts ", 9) && !smtpc__parse_u64(l + 9, strlen(l + 9), &v)) bit = 1;
        else if (!strncmp(l, "next ", 5) && !smtpc__parse_u64(l + 5, strlen(l + 5), &v)) bit = 2;
        else if (!strncmp(l, "error ", 6)) bit = 4;
        if (!bit || (seen & bit)) return false;
        seen |= bit;
        l = nl + 1;
    }
    return seen == 7;
}

static bool has_suffix(const char *s, size_t len, const char *suf)
{
    size_t k = strlen(suf);
    return len > k && !memcmp(s + len - k, suf, k);
}

static bool regular(int dfd, const char *name)
{
    struct stat st;
    return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

/* queue/ or failed/: <id>.msg with an optional <id>.state. */
static void check_entries(check_run *r, const char *sub)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", smtpc__outbox_dir(r->ob), sub);
    DIR *d = opendir(p);
    if (!d) {
        r->rc = smtpc__err(smtpc__outbox_err(r->ob), SMTPC_EIO, "open %s: %s", p, strerror(errno));
        return;
    }
    int dfd = dirfd(d);
    /* Names first: renaming while reading the directory could show an
     * entry twice. */
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        if (!(names[n] = smtpc__strdup(de->d_name))) break;
        n++;
    }
    if (de) r->rc = SMTPC_ENOMEM;
    for (size_t i = 0; !r->rc && i < n; i++) {
        const char *name = names[i];
        size_t len = strlen(name);
        char id[256];
        bool msg = has_suffix(name, len, ".msg"), state = has_suffix(name, len, ".state");
        size_t idlen = len - (msg ? 4 : state ? 6 : 0);
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW)) continue; /* moved aside with its message */
        if ((!msg && !state) || idlen >= sizeof id || !S_ISREG(st.st_mode)) {
            damaged(r, dfd, sub, name, "not an outbox entry");
            continue;
        }
        memcpy(id, name, idlen);
        id[idlen] = '\0';
        if (msg) {
            int rc = smtpc__outbox_entry_check(r->ob, sub, id);
            if (rc == SMTPC_ENOMEM) r->rc = rc;
            else if (rc == SMTPC_ENOTFOUND) continue; /* gone meanwhile: moved aside with its state */
            else if (rc) {
                damaged(r, dfd, sub, name, "not a readable outbox message");
                char sn[300]; /* its state goes with it, not deleted as an orphan */
                snprintf(sn, sizeof sn, "%s.state", id);
                if (r->repair && regular(dfd, sn)) {
                    r->rep->damaged++;
                    report(r, sub, sn, "state of a damaged message", move_aside(r, dfd, sub, sn));
                }
            }
            else r->rep->entries++;
            continue;
        }
        char m[300];
        snprintf(m, sizeof m, "%s.msg", id);
        if (faccessat(dfd, m, F_OK, AT_SYMLINK_NOFOLLOW) != 0) {
            r->rep->orphans++;
            report(r, sub, name, "state of a message that is gone", r->repair && unlinkat(dfd, name, 0) == 0);
        } else if (!state_ok(dfd, name)) {
            damaged(r, dfd, sub, name, "unreadable state file");
        }
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    closedir(d);
}

/* The writer's process id in a temporary name: an add's tmp/<sec+usec>-<pid>-<seq>.msg
 * or a state update's tmp/<name>.<pid>-<n>.tmp. 0 when the name is neither. */
static long tmp_writer(const char *name)
{
    size_t len = strlen(name);
    const char *p = NULL, *e = NULL;
    if (has_suffix(name, len, ".tmp")) {
        const char *end = name + len - 4;
        for (p = end; p > name && p[-1] != '.';) p--;
        e = memchr(p, '-', (size_t)(end - p));
    } else if (has_suffix(name, len, ".msg")) {
        p = strchr(name, '-');
        if (p) e = strchr(++p, '-');
    }
    uint64_t v;
    if (!p || !e || e == p || smtpc__parse_u64(p, (size_t)(e - p), &v) || v == 0 || v > 0x7fffffff) return 0;
    return (long)v;
}

static void check_tmp(check_run *r)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/tmp", smtpc__outbox_dir(r->ob));
    DIR *d = opendir(p);
    if (!d) {
        r->rc = smtpc__err(smtpc__outbox_err(r->ob), SMTPC_EIO, "open %s: %s", p, strerror(errno));
        return;
    }
    int dfd = dirfd(d);
    struct dirent *de;
    /* Only unlinks and moves to another directory: safe while reading. */
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..")) continue;
        struct stat st;
        /* Gone since readdir: its add finished and renamed it into queue/. */
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) continue;
            st.st_mode = 0;
        }
        long pid = S_ISREG(st.st_mode) ? tmp_writer(name) : 0;
        if (!pid) {
            damaged(r, dfd, "tmp", name, "not a temporary file of the outbox");
        } else if (kill((pid_t)pid, 0) == 0 || errno == EPERM) {
            r->rep->in_progress++; /* its writer runs: an add in progress */
        } else if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT) {
            continue; /* renamed into queue/ just before its writer exited */
        } else {
            r->rep->leftovers++;
            report(r, "tmp", name, "temporary file of a write that was interrupted",
                   r->repair && unlinkat(dfd, name, 0) == 0);
        }
    }
    closedir(d);
}

SMTPC_API int smtpc_outbox_check(smtpc_outbox *ob, bool repair, smtpc_outbox_check_report *rep,
                                 smtpc_outbox_check_cb cb, void *userdata)
{
    smtpc_outbox_check_report dummy;
    if (!rep) rep = &dummy;
    memset(rep, 0, sizeof *rep);
    if (!ob) return SMTPC_EINVAL;
    /* PostgreSQL: its transactions leave nothing half-done, and expired
     * leases are taken over by the workers */
    if (smtpc__outbox_pg(ob)) return SMTPC_EUNSUPPORTED;
    int lfd, rc = smtpc__outbox_lock(ob, &lfd);
    if (rc) return rc;
    check_run r = {ob, repair, rep, cb, userdata, 0};
    /* tmp/ first: an interrupted add leaves nothing elsewhere */
    check_tmp(&r);
    if (!r.rc) check_entries(&r, "queue");
    if (!r.rc) check_entries(&r, "failed");
    if (repair) {
        char p[4096];
        static const char *subs[] = {"tmp", "queue", "failed"};
        for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) {
            snprintf(p, sizeof p, "%s/%s", smtpc__outbox_dir(ob), subs[i]);
            smtpc__outbox_fsync_dir(p);
        }
    }
    close(lfd);
    return r.rc;
}
