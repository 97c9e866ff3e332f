/* smtpc — command-line tool. A thin shell over libsmtpc. */
#include <smtpc/smtpc.h>

#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

typedef struct send_args {
    const char *from, *subject, *text, *text_file, *message_file, *pickup_dir, *server, *tls;
    const char *to[256];
    size_t nto;
} send_args;

static void usage(FILE *f)
{
    fputs("usage: smtpc send --from ADDR --to ADDR [--to ADDR ...] [--subject TEXT]\n"
          "                  [--text TEXT | --text-file FILE | --message FILE]\n"
          "                  [--server HOST[:PORT] --tls none | --pickup-dir DIR]\n"
          "       smtpc --version\n"
          "With no --server the message is written to the pickup directory (default ./outbox).\n",
          f);
}

/* Reads a whole file ("-" = stdin) into memory. */
static int slurp(const char *path, smtpc__buf *out)
{
    int fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char tmp[65536];
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { if (fd) close(fd); return -1; }
        if (n == 0) break;
        if (smtpc__buf_append(out, tmp, (size_t)n)) { if (fd) close(fd); errno = ENOMEM; return -1; }
    }
    if (fd) close(fd);
    return 0;
}

static int header_ok(const char *name, const char *v)
{
    if (v && smtpc__has_crlfnul(v, strlen(v))) {
        fprintf(stderr, "smtpc: %s must not contain CR, LF or NUL\n", name);
        return 0;
    }
    return 1;
}

typedef struct mem_reader { const uint8_t *p; size_t left; } mem_reader;
static ssize_t mem_read(void *ud, void *buf, size_t len)
{
    mem_reader *m = ud;
    size_t n = m->left < len ? m->left : len;
    memcpy(buf, m->p, n);
    m->p += n;
    m->left -= n;
    return (ssize_t)n;
}

static int build_message(const send_args *a, smtpc__buf *msg)
{
    if (a->message_file) {
        if (slurp(a->message_file, msg) < 0) {
            fprintf(stderr, "smtpc: cannot read %s: %s\n", a->message_file, strerror(errno));
            return EX_NOINPUT;
        }
        return 0;
    }
    if (!header_ok("--from", a->from) || !header_ok("--subject", a->subject)) return EX_DATAERR;
    for (size_t i = 0; i < a->nto; i++)
        if (!header_ok("--to", a->to[i])) return EX_DATAERR;
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", &tm);
    const char *dom = strrchr(a->from, '@');
    int rc = smtpc__buf_printf(msg, "Date: %s\r\nFrom: %s\r\n", date, a->from);
    for (size_t i = 0; !rc && i < a->nto; i++)
        rc = smtpc__buf_printf(msg, "%s%s", i ? ", " : "To: ", a->to[i]);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (!rc)
        rc = smtpc__buf_printf(msg, "\r\nSubject: %s\r\nMessage-ID: <%lld.%ld.%ld@%s>\r\n"
                               "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
                               a->subject ? a->subject : "", (long long)ts.tv_sec, ts.tv_nsec,
                               (long)getpid(), dom ? dom + 1 : "localhost");
    if (rc) return EX_SOFTWARE;
    if (a->text_file) {
        if (slurp(a->text_file, msg) < 0) {
            fprintf(stderr, "smtpc: cannot read %s: %s\n", a->text_file, strerror(errno));
            return EX_NOINPUT;
        }
    } else if (a->text) {
        if (smtpc__buf_append_str(msg, a->text) || smtpc__buf_append(msg, "\r\n", 2)) return EX_SOFTWARE;
    }
    return 0;
}

static int cmd_send(int argc, char **argv)
{
    send_args a;
    memset(&a, 0, sizeof a);
    for (int i = 0; i < argc; i++) {
        const char *opt = argv[i];
        const char **slot = NULL;
        if (!strcmp(opt, "--from")) slot = &a.from;
        else if (!strcmp(opt, "--subject")) slot = &a.subject;
        else if (!strcmp(opt, "--text")) slot = &a.text;
        else if (!strcmp(opt, "--text-file")) slot = &a.text_file;
        else if (!strcmp(opt, "--message")) slot = &a.message_file;
        else if (!strcmp(opt, "--pickup-dir")) slot = &a.pickup_dir;
        else if (!strcmp(opt, "--server")) slot = &a.server;
        else if (!strcmp(opt, "--tls")) slot = &a.tls;
        else if (!strcmp(opt, "--to")) {
            if (a.nto == SMTPC__ARRAY_LEN(a.to)) { fputs("smtpc: too many --to\n", stderr); return EX_USAGE; }
            slot = &a.to[a.nto++];
        } else {
            fprintf(stderr, "smtpc send: unknown option %s\n", opt);
            usage(stderr);
            return EX_USAGE;
        }
        if (i + 1 >= argc) { fprintf(stderr, "smtpc send: %s needs a value\n", opt); return EX_USAGE; }
        *slot = argv[++i];
    }
    if (!a.from || a.nto == 0) {
        fputs("smtpc send: --from and at least one --to are required\n", stderr);
        usage(stderr);
        return EX_USAGE;
    }
    if (a.server) {
        fputs("smtpc send: network delivery is not available in this build yet\n", stderr);
        return EX_UNAVAILABLE;
    }
    smtpc__buf msg;
    smtpc__buf_init(&msg, 0);
    int ex = build_message(&a, &msg);
    if (ex) { smtpc__buf_free(&msg); return ex; }
    mem_reader r = {smtpc__buf_ptr(&msg), smtpc__buf_size(&msg)};
    char *path = NULL, err[512];
    int rc = smtpc_pickup_write(a.pickup_dir ? a.pickup_dir : "outbox", a.from, a.to, a.nto,
                                mem_read, &r, &path, err, sizeof err);
    smtpc__buf_free(&msg);
    if (rc) {
        fprintf(stderr, "smtpc: %s\n", err);
        return rc == SMTPC_EINVAL ? EX_DATAERR : EX_IOERR;
    }
    printf("written to pickup directory: %s\n", path);
    free(path);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) { usage(stderr); return EX_USAGE; }
    if (!strcmp(argv[1], "--version")) { printf("smtpc %s\n", smtpc_version()); return 0; }
    if (!strcmp(argv[1], "send")) return cmd_send(argc - 2, argv + 2);
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help")) { usage(stdout); return 0; }
    fprintf(stderr, "smtpc: unknown command %s\n", argv[1]);
    usage(stderr);
    return EX_USAGE;
}
