/* A power cut, simulated: an LD_PRELOAD shim for test_outbox_powercut.py
 * (built by that test; not part of the library).
 *
 * It counts the file-system operations a process makes under $PC_DIR
 * (creating a file, write, fsync/fdatasync, rename, unlink), the count
 * kept across processes in the 8-byte file $PC_COUNTER. Just before
 * operation number $PC_AT it copies $PC_DIR to $PC_SNAP (cp -a) and writes
 * $PC_SNAP.journal, which says what a power cut at that moment could lose:
 *   dirty PATH SIZE      data written to PATH after its last fsync: a cut
 *                        keeps only SIZE bytes (the size at that fsync, 0
 *                        when never synced);
 *   create PATH          operations on directory entries made since the
 *   rename FROM TO STASH last fsync of the directory concerned, in order
 *   unlink PATH STASH    (STASH: a hard link, under $PC_STASH, to what an
 *                        unlink or a rename over an existing file removed,
 *                        or "-"): a cut may undo them;
 * (paths relative to $PC_DIR), then _exit(77). With PC_AT 0 it only counts.
 * With $PC_FAIL_DIRSYNC set, every fsync of a directory under $PC_DIR
 * fails with EIO.
 * Directory fsyncs cover the entry operations of that directory; a file
 * fsync covers the file's data. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXF 4096
#define MAXOPS 4096

static struct {
    ino_t ino;
    off_t synced;
    int dirty;
} files[MAXF];
static size_t nfiles;

static struct {
    char kind[8];
    char a[PATH_MAX], b[PATH_MAX], stash[PATH_MAX];
    char dir[PATH_MAX]; /* the directory whose fsync makes it durable */
    int durable;
} ops[MAXOPS];
static size_t nops;

static char root[PATH_MAX];
static size_t rootlen;
static long at;
static int inited, busy;
static unsigned long nstash;

static int (*r_open)(const char *, int, ...);
static int (*r_openat)(int, const char *, int, ...);
static ssize_t (*r_write)(int, const void *, size_t);
static int (*r_fsync)(int);
static int (*r_fdatasync)(int);
static int (*r_rename)(const char *, const char *);
static int (*r_renameat)(int, const char *, int, const char *);
static int (*r_unlink)(const char *);
static int (*r_unlinkat)(int, const char *, int);

static void init(void)
{
    if (inited) return;
    inited = 1;
    r_open = dlsym(RTLD_NEXT, "open");
    r_openat = dlsym(RTLD_NEXT, "openat");
    r_write = dlsym(RTLD_NEXT, "write");
    r_fsync = dlsym(RTLD_NEXT, "fsync");
    r_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    r_rename = dlsym(RTLD_NEXT, "rename");
    r_renameat = dlsym(RTLD_NEXT, "renameat");
    r_unlink = dlsym(RTLD_NEXT, "unlink");
    r_unlinkat = dlsym(RTLD_NEXT, "unlinkat");
    const char *d = getenv("PC_DIR"), *a = getenv("PC_AT");
    if (d && realpath(d, root)) rootlen = strlen(root);
    at = a ? strtol(a, NULL, 10) : 0;
}

/* The absolute path of name relative to dirfd (AT_FDCWD: the cwd);
 * 0 when it is under PC_DIR, and rel then points past root. */
static int resolve(int dirfd, const char *name, char *out, const char **rel)
{
    char base[PATH_MAX];
    const char *d = getenv("PC_DIR");
    if (!rootlen && d && realpath(d, root)) rootlen = strlen(root); /* created after the start */
    if (!rootlen || !name) return -1;
    if (name[0] == '/') {
        snprintf(out, PATH_MAX, "%s", name);
    } else {
        if (dirfd == AT_FDCWD) {
            if (!getcwd(base, sizeof base)) return -1;
        } else {
            char l[64];
            snprintf(l, sizeof l, "/proc/self/fd/%d", dirfd);
            ssize_t n = readlink(l, base, sizeof base - 1);
            if (n < 0) return -1;
            base[n] = '\0';
        }
        snprintf(out, PATH_MAX, "%s/%s", base, name);
    }
    if (strncmp(out, root, rootlen) || (out[rootlen] != '/' && out[rootlen])) return -1;
    *rel = out[rootlen] ? out + rootlen + 1 : ".";
    return 0;
}

static int fd_path(int fd, char *out, const char **rel)
{
    char l[64];
    snprintf(l, sizeof l, "/proc/self/fd/%d", fd);
    char p[PATH_MAX];
    ssize_t n = readlink(l, p, sizeof p - 1);
    if (n < 0) return -1;
    p[n] = '\0';
    return resolve(AT_FDCWD, p, out, rel);
}

static void parent_of(const char *path, char *out)
{
    snprintf(out, PATH_MAX, "%s", path);
    char *s = strrchr(out, '/');
    if (s) *s = '\0';
}

static ssize_t put(int fd, const char *fmt, ...)
{
    char b[3 * PATH_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    return r_write(fd, b, (size_t)n);
}

static int journal_fd;

static int walk(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
    (void)type;
    (void)ftw;
    for (size_t i = 0; i < nfiles; i++)
        if (files[i].dirty && files[i].ino == st->st_ino && S_ISREG(st->st_mode))
            put(journal_fd, "dirty %s %lld\n", p + rootlen + 1, (long long)files[i].synced);
    return 0;
}

static void journal(const char *path, int flags)
{
    journal_fd = r_open(path, O_WRONLY | O_CREAT | flags, 0600);
    if (journal_fd < 0) return;
    nftw(root, walk, 16, FTW_PHYS);
    for (size_t i = 0; i < nops; i++) {
        if (ops[i].durable) continue;
        if (!strcmp(ops[i].kind, "rename"))
            put(journal_fd, "rename %s %s %s\n", ops[i].a, ops[i].b, ops[i].stash);
        else if (!strcmp(ops[i].kind, "unlink"))
            put(journal_fd, "unlink %s %s\n", ops[i].a, ops[i].stash);
        else
            put(journal_fd, "create %s\n", ops[i].a);
    }
    put(journal_fd, "end\n");
    close(journal_fd);
}

static void cut(void)
{
    const char *snap = getenv("PC_SNAP");
    unsetenv("LD_PRELOAD");
    pid_t pid = fork();
    if (pid == 0) {
        execlp("cp", "cp", "-a", root, snap, (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    char j[PATH_MAX];
    snprintf(j, sizeof j, "%s.journal", snap);
    journal(j, O_TRUNC);
    _exit(77);
}

/* $PC_END_JOURNAL: what a cut right after a normal exit could still undo
 * (appended, one block per process ending with "end"). */
__attribute__((destructor)) static void at_exit_journal(void)
{
    const char *j = getenv("PC_END_JOURNAL");
    if (j && rootlen) journal(j, O_APPEND);
}

/* Counts one operation; cuts when it is the one. */
static void tick(void)
{
    const char *cf = getenv("PC_COUNTER");
    long n = 0;
    int fd = cf ? r_open(cf, O_RDWR | O_CREAT, 0600) : -1;
    if (fd >= 0) {
        char b[32] = "";
        ssize_t k = pread(fd, b, sizeof b - 1, 0);
        if (k > 0) n = strtol(b, NULL, 10);
        n++;
        snprintf(b, sizeof b, "%020ld", n);
        pwrite(fd, b, 20, 0);
        close(fd);
    }
    if (at > 0 && n == at) cut();
}

static void track_write(int fd)
{
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) return;
    for (size_t i = 0; i < nfiles; i++)
        if (files[i].ino == st.st_ino) {
            files[i].dirty = 1;
            return;
        }
    if (nfiles < MAXF) {
        files[nfiles].ino = st.st_ino;
        files[nfiles].synced = 0;
        files[nfiles].dirty = 1;
        nfiles++;
    }
}

static void track_sync(int fd, const char *abs)
{
    struct stat st;
    if (fstat(fd, &st)) return;
    if (S_ISDIR(st.st_mode)) {
        for (size_t i = 0; i < nops; i++)
            if (!strcmp(ops[i].dir, abs)) ops[i].durable = 1;
        return;
    }
    for (size_t i = 0; i < nfiles; i++)
        if (files[i].ino == st.st_ino) {
            files[i].synced = st.st_size;
            files[i].dirty = 0;
        }
}

static void stash(const char *abs, char *out)
{
    const char *sd = getenv("PC_STASH");
    struct stat st;
    snprintf(out, PATH_MAX, "-");
    if (!sd || lstat(abs, &st)) return;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%d-%lu", sd, (int)getpid(), nstash++);
    if (link(abs, p) == 0) snprintf(out, PATH_MAX, "%s", p);
}

static void add_op(const char *kind, const char *a, const char *b, const char *abs_target)
{
    if (nops >= MAXOPS) return;
    snprintf(ops[nops].kind, sizeof ops[nops].kind, "%s", kind);
    snprintf(ops[nops].a, PATH_MAX, "%s", a);
    snprintf(ops[nops].b, PATH_MAX, "%s", b ? b : "-");
    parent_of(abs_target, ops[nops].dir);
    ops[nops].durable = 0;
    snprintf(ops[nops].stash, PATH_MAX, "-");
    nops++;
}

static int do_open(int dirfd, const char *name, int flags, mode_t mode)
{
    init();
    char abs[PATH_MAX];
    const char *rel;
    if (!busy && (flags & O_CREAT) && resolve(dirfd, name, abs, &rel) == 0) {
        busy = 1;
        tick();
        struct stat st;
        int existed = lstat(abs, &st) == 0;
        int fd = r_openat(dirfd, name, flags, mode);
        if (fd >= 0 && !existed) add_op("create", rel, NULL, abs);
        busy = 0;
        return fd;
    }
    return r_openat(dirfd, name, flags, mode);
}

/* the mode argument of open and openat, present with O_CREAT */
#define MODE_ARG(mode, flags)                                                                                  \
    do {                                                                                                       \
        if ((flags) & O_CREAT) {                                                                               \
            va_list ap;                                                                                        \
            va_start(ap, flags);                                                                               \
            mode = va_arg(ap, mode_t);                                                                         \
            va_end(ap);                                                                                        \
        }                                                                                                      \
    } while (0)

int open(const char *name, int flags, ...)
{
    mode_t mode = 0;
    MODE_ARG(mode, flags);
    return do_open(AT_FDCWD, name, flags, mode);
}

int open64(const char *name, int flags, ...) __attribute__((alias("open")));

int openat(int dirfd, const char *name, int flags, ...)
{
    mode_t mode = 0;
    MODE_ARG(mode, flags);
    return do_open(dirfd, name, flags, mode);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    init();
    char abs[PATH_MAX];
    const char *rel;
    if (!busy && fd > 2 && fd_path(fd, abs, &rel) == 0) {
        busy = 1;
        tick();
        ssize_t k = r_write(fd, buf, n);
        track_write(fd);
        busy = 0;
        return k;
    }
    return r_write(fd, buf, n);
}

static int do_sync(int fd, int (*real)(int))
{
    init();
    char abs[PATH_MAX];
    const char *rel;
    struct stat st;
    if (getenv("PC_FAIL_DIRSYNC") && fd_path(fd, abs, &rel) == 0 && !fstat(fd, &st) && S_ISDIR(st.st_mode)) {
        errno = EIO; /* a disk that fails to write the directory */
        return -1;
    }
    if (!busy && fd_path(fd, abs, &rel) == 0) {
        busy = 1;
        tick();
        int r = real(fd);
        if (r == 0) track_sync(fd, abs);
        busy = 0;
        return r;
    }
    return real(fd);
}

int fsync(int fd) { return do_sync(fd, r_fsync ? r_fsync : (init(), r_fsync)); }
int fdatasync(int fd) { return do_sync(fd, r_fdatasync ? r_fdatasync : (init(), r_fdatasync)); }

static int do_rename(int fd1, const char *a, int fd2, const char *b)
{
    init();
    char aa[PATH_MAX], ab[PATH_MAX];
    const char *ra, *rb;
    int in_a = resolve(fd1, a, aa, &ra) == 0, in_b = resolve(fd2, b, ab, &rb) == 0;
    if (busy || (!in_a && !in_b)) return r_renameat(fd1, a, fd2, b);
    busy = 1;
    tick();
    char st[PATH_MAX];
    stash(ab, st);
    int r = r_renameat(fd1, a, fd2, b);
    if (r == 0 && in_a && in_b) {
        add_op("rename", ra, rb, ab);
        snprintf(ops[nops - 1].stash, PATH_MAX, "%s", st);
    }
    busy = 0;
    return r;
}

int rename(const char *a, const char *b) { return do_rename(AT_FDCWD, a, AT_FDCWD, b); }
int renameat(int fd1, const char *a, int fd2, const char *b) { return do_rename(fd1, a, fd2, b); }

static int do_unlink(int dirfd, const char *name, int flags)
{
    init();
    char abs[PATH_MAX];
    const char *rel;
    if (busy || resolve(dirfd, name, abs, &rel)) return r_unlinkat(dirfd, name, flags);
    busy = 1;
    tick();
    char st[PATH_MAX];
    stash(abs, st);
    int r = r_unlinkat(dirfd, name, flags);
    if (r == 0) {
        add_op("unlink", rel, NULL, abs);
        snprintf(ops[nops - 1].stash, PATH_MAX, "%s", st);
    }
    busy = 0;
    return r;
}

int unlink(const char *name) { return do_unlink(AT_FDCWD, name, 0); }
int unlinkat(int dirfd, const char *name, int flags) { return do_unlink(dirfd, name, flags); }
