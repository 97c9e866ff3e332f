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

/* A line at a time: memchr finds the next LF, a second memchr a CR before
 * it, and the bytes in between are copied whole. Equivalent to the obvious
 * byte-at-a-time loop (tests/unit/test_dotstuff.c checks it against one on
 * random input split at random points) at a fraction of its cost: that loop
 * was ~17 instructions per body byte, 60 % of the client's CPU. */
int smtpc__dotstuff_write(smtpc__dotstuff *d, bool dot_stuff, const uint8_t *in, size_t n,
                          smtpc__buf *out)
{
    if (n == 0) return 0;
    /* Worst case: every byte doubles (a CR or LF per byte, or "." lines). */
    if (n > (SIZE_MAX - 2) / 2) return SMTPC_ELIMIT;
    int rc = smtpc__buf_reserve(out, 2 * n);
    if (rc) return rc;
    smtpc__dotstuff saved = *d;
    size_t start_len = out->len;
    uint8_t *w = out->data + out->len;
    const uint8_t *p = in, *end = in + n;
    while (p < end) {
        if (d->state == DS_AFTER_CR && *p == '\n') { /* the LF of a CRLF already written */
            d->state = DS_LINE_START;
            p++;
            continue;
        }
        const uint8_t *lf = memchr(p, '\n', (size_t)(end - p));
        const uint8_t *stop = lf ? lf : end;
        /* the usual line ends in CRLF: look for another CR before it only,
         * and copy the line with its CRLF at once */
        bool crlf = lf && lf > p && lf[-1] == '\r';
        if (crlf) stop = lf - 1;
        const uint8_t *cr = memchr(p, '\r', (size_t)(stop - p));
        if (cr) {
            stop = cr;
            crlf = false;
        }
        size_t len = (size_t)(stop - p);
        if (crlf) {
            if (len > DS_MAX_LINE - d->line_len) {
                *d = saved;
                out->len = start_len;
                return SMTPC_ELIMIT;
            }
            if (dot_stuff && len && *p == '.' && d->state != DS_MID) *w++ = '.';
            memcpy(w, p, len + 2);
            w += len + 2;
            d->line_len = 0;
            d->state = DS_LINE_START;
            p = lf + 1;
            continue;
        }
        if (len) {
            if (len > DS_MAX_LINE - d->line_len) {
                *d = saved;
                out->len = start_len;
                return SMTPC_ELIMIT;
            }
            if (dot_stuff && *p == '.' && d->state != DS_MID) *w++ = '.';
            memcpy(w, p, len);
            w += len;
            d->line_len += len;
            d->state = DS_MID;
            p = stop;
        }
        if (p == end) break;
        /* *p is CR or LF: one CRLF on the wire */
        *w++ = '\r';
        *w++ = '\n';
        d->line_len = 0;
        d->state = *p == '\r' ? DS_AFTER_CR : DS_LINE_START;
        p++;
    }
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
