#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void smtpc__buf_init(smtpc__buf *b, size_t limit)
{
    memset(b, 0, sizeof *b);
    b->limit = limit ? limit : SIZE_MAX;
}

void (*smtpc__buf_release_hook)(const void *p, size_t n);
void (*smtpc__buf_scan_hook)(const void *p, size_t n);

void smtpc__buf_init_secure(smtpc__buf *b, size_t limit)
{
    smtpc__buf_init(b, limit);
    b->secure = true;
}

/* Gives a block back; a secure buffer's is wiped first. */
static void release(const smtpc__buf *b, uint8_t *data, size_t cap)
{
    if (data && b->secure) {
        smtpc__secure_zero(data, cap);
        if (smtpc__buf_release_hook) smtpc__buf_release_hook(data, cap);
    }
    if (data && smtpc__buf_scan_hook) smtpc__buf_scan_hook(data, cap);
    free(data);
}

void smtpc__buf_free(smtpc__buf *b)
{
    release(b, b->data, b->cap);
    size_t limit = b->limit;
    bool secure = b->secure;
    memset(b, 0, sizeof *b);
    b->limit = limit;
    b->secure = secure;
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
        if (b->secure) smtpc__secure_zero(b->data + live, b->len - live);
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
    uint8_t *p;
    if (b->secure || smtpc__buf_scan_hook) {
        if (!(p = malloc(ncap))) return SMTPC_ENOMEM;
        if (live) memcpy(p, b->data, live);
        release(b, b->data, b->cap);
    } else if (!(p = realloc(b->data, ncap))) {
        return SMTPC_ENOMEM;
    }
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

/* the digits of u, and a '-' before them when neg */
static int append_dec(smtpc__buf *b, uint64_t u, bool neg)
{
    char t[24];
    size_t k = sizeof t;
    do t[--k] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (neg) t[--k] = '-';
    return smtpc__buf_append(b, t + k, sizeof t - k);
}

int smtpc__buf_append_u64(smtpc__buf *b, uint64_t v) { return append_dec(b, v, false); }

int smtpc__buf_append_int(smtpc__buf *b, int64_t v)
{
    return append_dec(b, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, v < 0);
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
        smtpc__buf_reset(b);
        return;
    }
    if (b->secure) smtpc__secure_zero(b->data + b->off, n);
    b->off += n;
}

void smtpc__buf_reset(smtpc__buf *b)
{
    if (b->secure && b->data) smtpc__secure_zero(b->data, b->len);
    b->off = b->len = 0;
}
