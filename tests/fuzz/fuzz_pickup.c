/* libFuzzer target: the pickup-file reader (smtpc_pickup_read: the
 * X-Sender / X-Receiver envelope block) on arbitrary files, then the
 * message part through the loader as `smtpc pickup` does. The reader takes
 * a path: the input is written to an anonymous in-memory file (memfd, made
 * once per process, its whole content replaced for each input), opened by
 * the reader through /proc/self/fd/N. A file created and removed in /tmp
 * per input made the file system most of the time of a run. */
#define _GNU_SOURCE
#include <smtpc/smtpc.h>

#include "t.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_path[64];
static int g_fd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (g_fd < 0) {
        if ((g_fd = memfd_create("smtpc-fuzz-pickup", MFD_CLOEXEC)) < 0) abort();
        snprintf(g_path, sizeof g_path, "/proc/self/fd/%d", g_fd);
        int t = open(g_path, O_RDONLY | O_CLOEXEC); /* /proc is there: else no input would be read */
        if (t < 0) abort();
        close(t);
    }
    if (ftruncate(g_fd, (off_t)size) != 0) abort();
    if (size && pwrite(g_fd, data, size, 0) != (ssize_t)size) abort();
    smtpc_pickup_msg *m = NULL;
    char err[256];
    if (smtpc_pickup_read(g_path, &m, err, sizeof err) == 0) {
        const char *from = smtpc_pickup_msg_sender(m);
        if (from && strpbrk(from, "\r\n")) abort();
        size_t n = smtpc_pickup_msg_rcpt_count(m);
        for (size_t i = 0; i < n; i++) {
            const char *r = smtpc_pickup_msg_rcpt(m, i);
            if (!r || !*r || strpbrk(r, "\r\n")) abort();
        }
        if (smtpc_pickup_msg_rcpt(m, n)) abort();
        size_t len = 0;
        const char *d = smtpc_pickup_msg_data(m, &len);
        if (!d || len > size || d[len] != '\0') abort();
        t_memsrc s = {d, len, 0};
        smtpc_message *msg = NULL;
        if (smtpc_message_load_with(&msg, t_mem_read, &s, SMTPC_LOAD_NO_ENVELOPE, err, sizeof err) == 0)
            smtpc_message_free(msg);
        smtpc_pickup_msg_free(m);
    }
    return 0;
}
