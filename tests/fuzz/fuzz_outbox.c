/* libFuzzer target: the outbox's reading of its own files (queue/<id>.msg
 * envelope header and queue/<id>.state), which another process, a crash or
 * a full disk may have left in any state. Input: [n][state bytes (n)]
 * [message file bytes...]; both are written into a private outbox, then
 * smtpc_outbox_list (every entry, failed/ too) parses them. The outbox is
 * made once per process, in /dev/shm when there is one (tmpfs: creating
 * and removing two files per input in /tmp, on a disk file system, was
 * most of the time of a run); both files are removed after each input. */
#include <smtpc/smtpc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64], g_msg[128], g_state[128];
static smtpc_outbox *g_ob;

static int on_entry(void *ud, const smtpc_outbox_entry *e)
{
    size_t *n = ud;
    if (!e->id || !e->last_error || (e->nrcpts && !e->first_rcpt)) abort();
    if (e->first_rcpt && strchr(e->first_rcpt, '\n')) abort();
    if (e->from && strchr(e->from, '\n')) abort();
    if (strchr(e->last_error, '\n')) abort();
    (*n)++;
    return 0;
}

static void put(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(p, 1, n, f) != n) abort();
    fclose(f);
}

/* The private outbox goes with the process. */
static void cleanup(void)
{
    static const char *const parts[] = {"queue", "failed", "tmp", "lock"};
    char p[128];
    smtpc_outbox_free(g_ob);
    unlink(g_msg);
    unlink(g_state);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", g_dir, parts[i]);
        if (rmdir(p) != 0) unlink(p);
    }
    rmdir(g_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_ob) {
        struct stat st;
        const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
                               ? "/dev/shm"
                               : "/tmp";
        snprintf(g_dir, sizeof g_dir, "%s/smtpc-fuzz-outbox-%d", base, (int)getpid());
        char err[256];
        if (smtpc_outbox_open(&g_ob, g_dir, err, sizeof err)) abort();
        atexit(cleanup);
        snprintf(g_msg, sizeof g_msg, "%s/queue/0000000001000000-1-1.msg", g_dir);
        snprintf(g_state, sizeof g_state, "%s/queue/0000000001000000-1-1.state", g_dir);
    }
    if (size < 1) return 0;
    size_t sn = data[0];
    if (sn > size - 1) sn = size - 1;
    put(g_state, data + 1, sn);
    put(g_msg, data + 1 + sn, size - 1 - sn);
    size_t n = 0;
    smtpc_outbox_list(g_ob, true, on_entry, &n);
    if (n > 1) abort();
    unlink(g_msg);
    unlink(g_state);
    return 0;
}
