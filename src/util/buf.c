#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void smtpc__buf_init(smtpc__buf *b, size_t limit)
{
    memset(b, 0, sizeof *b);
    b->limit = limit ? limit : SIZE_MAX;
}

void smtpc__buf_free(smtpc__buf *b)
{
    free(b->data);
    size_t limit = b->limit;
    memset(b, 0, sizeof *b);
    b->limit = limit;
}

void smtpc__buf_free_secure(smtpc__buf *b)
{
    if (b->data) smtpc__secure_zero(b->data, b->cap);
    smtpc__buf_free(b);
}

int smtpc__buf_reserve(smtpc__buf *b, size_t extra)
{
    size_t live = b->len - b->off;
    if (extra > b->limit || live > b->limit - extra) return SMTPC_ELIMIT;
    if (b->cap - b->len >= extra) return 0;
    /* Compact first: consumed bytes at the front are dead. */
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, live);
        b->len = live;
        b->off = 0;
        if (b->cap - b->len >= extra) return 0;
    }
    size_t need = live + extra;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) { ncap = need; break; }
        ncap *= 2;
    }
    uint8_t *p = realloc(b->data, ncap);
    if (!p) return SMTPC_ENOMEM;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int smtpc__buf_append(smtpc__buf *b, const void *p, size_t n)
{
    if (n == 0) return 0;
    int rc = smtpc__buf_reserve(b, n);
    if (rc) return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int smtpc__buf_append_str(smtpc__buf *b, const char *s)
{
    return smtpc__buf_append(b, s, strlen(s));
}

int smtpc__buf_printf(smtpc__buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return SMTPC_EINVAL;
    int rc = smtpc__buf_reserve(b, (size_t)n + 1);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void smtpc__buf_consume(smtpc__buf *b, size_t n)
{
    size_t live = b->len - b->off;
    if (n >= live) {
        b->off = b->len = 0;
    } else {
        b->off += n;
    }
}

void smtpc__buf_reset(smtpc__buf *b)
{
    b->off = b->len = 0;
}
