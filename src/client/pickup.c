#include <smtpc/pickup.h>

#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned n = atomic_fetch_add(&pickup_counter, 1);
    char name[128], tmp[4200], final[4200];
    snprintf(name, sizeof name, "%lld.%06ld-%ld-%u.eml", (long long)ts.tv_sec, ts.tv_nsec / 1000,
             (long)getpid(), n);
    snprintf(tmp, sizeof tmp, "%s/.tmp-%s", dir, name);
    snprintf(final, sizeof final, "%s/%s", dir, name);

    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return fail(errbuf, errbuf_len, SMTPC_EIO, "cannot create", tmp);

    int rc = 0;
    smtpc__buf out;
    smtpc__buf_init(&out, 0);
    rc = smtpc__buf_printf(&out, "X-Sender: %s\r\n", from);
    for (size_t i = 0; !rc && i < nrcpts; i++) rc = smtpc__buf_printf(&out, "X-Receiver: %s\r\n", rcpts[i]);

    /* Normalise line ends to CRLF: bare CR and bare LF both become CRLF. */
    char in[65536];
    bool last_cr = false;
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
            if (c == '\r') { rc = smtpc__buf_append(&out, "\r\n", 2); last_cr = true; }
            else if (c == '\n') rc = smtpc__buf_append(&out, "\r\n", 2);
            else rc = smtpc__buf_append(&out, &c, 1);
        }
        if (!rc && smtpc__buf_size(&out) >= 65536) {
            if (write_all(fd, smtpc__buf_ptr(&out), smtpc__buf_size(&out)) < 0) {
                rc = fail(errbuf, errbuf_len, SMTPC_EIO, "cannot write", tmp);
                break;
            }
            smtpc__buf_reset(&out);
        }
    }
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
