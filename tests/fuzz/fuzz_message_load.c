/* libFuzzer target: the raw-message loader (smtpc_message_load_with), as
 * `smtpc send --file`, sendmail -t and the pickup reader use it.
 * Input: [flags][piece][message bytes...]: the loader reads the message in
 * pieces of 1 + piece%64 octets (or 64 KiB when piece >= 0x80), with
 * flags&3 as its SMTPC_LOAD_* flags. A loaded message is then written
 * twice (plain and SMTPUTF8/8BITMIME): the writer must succeed or fail
 * cleanly, and its output is CRLF only, without a bare CR or LF. */
#include <smtpc/smtpc.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct src {
    const uint8_t *p;
    size_t len, off, piece;
} src;

static ssize_t src_read(void *ud, void *buf, size_t len)
{
    src *s = ud;
    size_t n = s->len - s->off;
    if (n > s->piece) n = s->piece;
    if (n > len) n = len;
    memcpy(buf, s->p + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void write_all(smtpc_message *m, unsigned flags)
{
    smtpc_message_writer *w = NULL;
    if (smtpc_message_writer_new(&w, m, flags)) return;
    char buf[4096];
    char prev = 0;
    ssize_t n;
    while ((n = smtpc_message_writer_read(w, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n' && prev != '\r') abort();  /* bare LF */
            if (prev == '\r' && buf[i] != '\n') abort();  /* bare CR */
            prev = buf[i];
        }
    }
    smtpc_message_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    unsigned flags = data[0] & 3u;
    size_t piece = data[1] >= 0x80 ? 65536 : 1 + data[1] % 64u;
    src s = {data + 2, size - 2, 0, piece};
    smtpc_message *m = NULL;
    char err[256];
    if (smtpc_message_load_with(&m, src_read, &s, flags, err, sizeof err) == 0) {
        /* the envelope the loader found is usable as such */
        const char *from = smtpc_message_envelope_from(m);
        if (from && strpbrk(from, "\r\n")) abort();
        for (size_t i = 0; i < smtpc_message_rcpt_count(m); i++) {
            const char *r = smtpc_message_rcpt(m, i);
            if (!r || strpbrk(r, "\r\n")) abort();
        }
        write_all(m, 0);
        write_all(m, SMTPC_WRITE_8BITMIME | SMTPC_WRITE_SMTPUTF8);
        smtpc_message_free(m);
    }
    return 0;
}
