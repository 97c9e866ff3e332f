/* Body encoder: CRLF normalisation, dot-stuffing, line-length check.
 *
 * Every CR, LF or CRLF in the input becomes exactly one CRLF on the wire
 * (a CR ending one write and an LF starting the next are one CRLF), so no
 * input can produce a bare CR or LF, and every "." starting a line is doubled:
 * the only "<CRLF>.<CRLF>" on the wire is the one _finish writes (SMTP
 * smuggling, CVE-2023-51764/5/6). Memory is constant: output is written as
 * the input is read. */
#include "engine/engine.h"

#include <string.h>

#if defined(__SSE2__) && defined(__GNUC__) && !defined(SMTPC_DOTSTUFF_PORTABLE)
#include <emmintrin.h>
#endif

enum {
    DS_LINE_START = 0, /* at the start of a line (also the start of the body) */
    DS_MID,            /* inside a line */
    DS_AFTER_CR        /* a CR was just turned into CRLF; an LF now belongs to it */
};

#define DS_MAX_LINE 998 /* RFC 5321 4.5.3.1.6, excluding CRLF */

void smtpc__dotstuff_init(smtpc__dotstuff *d)
{
    d->state = DS_LINE_START;
    d->line_len = 0;
}

/* Copies [p, end) to *w up to the first CR or LF (or end) and returns where
 * it stopped; *w is advanced by the bytes copied. With SSE2 (every x86-64)
 * sixteen bytes are compared and copied at once: a whole block is stored
 * even when the CR or LF is inside it, so up to 15 bytes past the copy are
 * scribbled over, inside the room the caller reserved (see the write below).
 * Elsewhere: memchr for the LF, a second one for a CR before it, memcpy. */
static inline const uint8_t *copy_to_eol(const uint8_t *p, const uint8_t *end, uint8_t **wp)
{
    uint8_t *w = *wp;
#if defined(__SSE2__) && defined(__GNUC__) && !defined(SMTPC_DOTSTUFF_PORTABLE)
    if (end - p >= 16) {
        const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
        const uint8_t *last = end - 16; /* a block starts at last at the latest */
        do {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
            _mm_storeu_si128((__m128i *)(void *)w, v);
            unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
            if (m) {
                unsigned k = (unsigned)__builtin_ctz(m);
                *wp = w + k;
                return p + k;
            }
            p += 16;
            w += 16;
        } while (p <= last);
    }
    while (p < end && *p != '\r' && *p != '\n') *w++ = *p++;
    *wp = w;
    return p;
#else
    const uint8_t *stop = memchr(p, '\n', (size_t)(end - p));
    if (!stop) stop = end;
    const uint8_t *cr = memchr(p, '\r', (size_t)(stop - p));
    if (cr) stop = cr;
    memcpy(w, p, (size_t)(stop - p));
    *wp = w + (stop - p);
    return stop;
#endif
}

/* A line at a time: copy_to_eol copies up to the next CR or LF, then the
 * line end is one CRLF. Equivalent to the obvious byte-at-a-time loop
 * (tests/unit/test_dotstuff.c checks it against one on random input split
 * at random points) at a fraction of its cost: that loop was ~17
 * instructions per body byte, 60 % of the client's CPU. The state is kept
 * in locals: stores through w could alias *d and force it to memory.
 *
 * Room: every input byte makes at most two output bytes (a doubled dot, a
 * CR or LF as CRLF), so 2n is reserved. A 16-byte block store happens only
 * with 16 input bytes left from p; the output so far is at most twice the
 * input consumed plus one dot, which keeps the block inside 2n. */
int smtpc__dotstuff_write(smtpc__dotstuff *d, bool dot_stuff, const uint8_t *in, size_t n,
                          smtpc__buf *out)
{
    if (n == 0) return 0;
    if (n > (SIZE_MAX - 2) / 2) return SMTPC_ELIMIT;
    int rc = smtpc__buf_reserve(out, 2 * n);
    if (rc) return rc;
    int state = d->state;
    size_t line_len = d->line_len;
    uint8_t *w = out->data + out->len;
    const uint8_t *p = in, *end = in + n;
    while (p < end) {
        if (state == DS_AFTER_CR && *p == '\n') { /* the LF of a CRLF already written */
            state = DS_LINE_START;
            p++;
            continue;
        }
        /* a "." starting a line is doubled ('.' is no line end: len >= 1) */
        if (dot_stuff && *p == '.' && state != DS_MID) *w++ = '.';
        const uint8_t *stop = copy_to_eol(p, end, &w);
        size_t len = (size_t)(stop - p);
        if (len > DS_MAX_LINE - line_len) return SMTPC_ELIMIT; /* *d and out unchanged */
        if (len) {
            line_len += len;
            state = DS_MID;
        }
        p = stop;
        if (p == end) break;
        /* *p is CR or LF: one CRLF on the wire (the usual CRLF taken whole) */
        *w++ = '\r';
        *w++ = '\n';
        line_len = 0;
        if (*p == '\n') {
            state = DS_LINE_START;
            p++;
        } else if (p + 1 < end && p[1] == '\n') {
            state = DS_LINE_START;
            p += 2;
        } else {
            state = DS_AFTER_CR;
            p++;
        }
    }
    d->state = state;
    d->line_len = line_len;
    out->len = (size_t)(w - out->data);
    return 0;
}

int smtpc__dotstuff_finish(smtpc__dotstuff *d, bool dot_stuff, smtpc__buf *out)
{
    int rc = 0;
    if (d->state == DS_MID) rc = smtpc__buf_append(out, "\r\n", 2);
    if (!rc && dot_stuff) rc = smtpc__buf_append(out, ".\r\n", 3);
    if (!rc) {
        d->state = DS_LINE_START;
        d->line_len = 0;
    }
    return rc;
}
