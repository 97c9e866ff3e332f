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
    for (size_t i = 0; i < n; i++) {
        uint8_t c = in[i];
        if (c == '\n' && d->state == DS_AFTER_CR) {
            d->state = DS_LINE_START;
            continue;
        }
        if (c == '\r' || c == '\n') {
            *w++ = '\r';
            *w++ = '\n';
            d->line_len = 0;
            d->state = c == '\r' ? DS_AFTER_CR : DS_LINE_START;
            continue;
        }
        if (d->line_len >= DS_MAX_LINE) {
            *d = saved;
            out->len = start_len;
            return SMTPC_ELIMIT;
        }
        if (dot_stuff && c == '.' && d->state != DS_MID) *w++ = '.';
        *w++ = c;
        d->line_len++;
        d->state = DS_MID;
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
