/* libFuzzer target: the pickup-file reader (smtpc_pickup_read: the
 * X-Sender / X-Receiver envelope block) on arbitrary files, then the
 * message part through the loader as `smtpc pickup` does. The input is
 * written to a private temporary file (the reader takes a path). */
#include <smtpc/smtpc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_path[64];

typedef struct src {
    const char *p;
    size_t len, off;
} src;

static ssize_t src_read(void *ud, void *buf, size_t len)
{
    src *s = ud;
    size_t n = s->len - s->off < len ? s->len - s->off : len;
    memcpy(buf, s->p + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_path[0]) {
        snprintf(g_path, sizeof g_path, "/tmp/smtpc-fuzz-pickup-%d.eml", (int)getpid());
    }
    FILE *f = fopen(g_path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
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
        src s = {d, len, 0};
        smtpc_message *msg = NULL;
        if (smtpc_message_load_with(&msg, src_read, &s, SMTPC_LOAD_NO_ENVELOPE, err, sizeof err) == 0)
            smtpc_message_free(msg);
        smtpc_pickup_msg_free(m);
    }
    unlink(g_path);
    return 0;
}
