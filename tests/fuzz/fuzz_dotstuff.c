/* libFuzzer: the body encoder. Byte 0 picks the piece size and the mode;
 * the wire must never hold a bare CR/LF or an early end of data. */
#include "engine/engine.h"

/* The library in the fuzz build is not compiled with coverage, so the code
 * under test is compiled into this target (the archive's copies are then
 * never linked in). */
#include "engine/dotstuff.c"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t ctl = data[0];
    data++;
    size--;
    bool stuff = ctl & 1;
    size_t piece = 1 + (ctl >> 1);
    smtpc__dotstuff d;
    smtpc__dotstuff_init(&d);
    smtpc__buf out;
    smtpc__buf_init(&out, 0);
    int rc = 0;
    for (size_t i = 0; i < size && !rc; i += piece) {
        size_t n = size - i < piece ? size - i : piece;
        rc = smtpc__dotstuff_write(&d, stuff, data + i, n, &out);
    }
    if (!rc) rc = smtpc__dotstuff_finish(&d, stuff, &out);
    const uint8_t *w = smtpc__buf_ptr(&out);
    size_t wl = smtpc__buf_size(&out);
    for (size_t i = 0; i < wl; i++) {
        if (w[i] == '\r' && (i + 1 >= wl || w[i + 1] != '\n')) abort();
        if (w[i] == '\n' && (i == 0 || w[i - 1] != '\r')) abort();
        bool start = i == 0 || w[i - 1] == '\n';
        /* "." CRLF at a line start is the end of data: only as the last 3 bytes */
        if (stuff && start && i + 2 < wl && w[i] == '.' && w[i + 1] == '\r' && i + 3 != wl) abort();
    }
    if (!rc && stuff && (wl < 3 || memcmp(w + wl - 3, ".\r\n", 3) != 0)) abort();
    smtpc__buf_free(&out);
    return 0;
}
