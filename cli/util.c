/* The CLI's own small helpers: a growable bounded byte buffer and a few
 * string functions. The CLI uses only the library's public headers
 * (include/smtpc/); what it needs beyond them and standard C/POSIX is here. */
#include "cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cli_buf_init(cli_buf *b, size_t limit)
{
    memset(b, 0, sizeof *b);
    b->limit = limit ? limit : SIZE_MAX;
}

void cli_buf_init_secure(cli_buf *b, size_t limit)
{
    cli_buf_init(b, limit);
    b->secure = true;
}

void (*cli_buf_release_hook)(const void *p, size_t n);

/* Gives a block back; a secure buffer's is wiped first. */
static void release(const cli_buf *b, uint8_t *data, size_t cap)
{
    if (data && b->secure) {
        explicit_bzero(data, cap);
        if (cli_buf_release_hook) cli_buf_release_hook(data, cap);
    }
    free(data);
}

void cli_buf_free(cli_buf *b)
{
    bool secure = b->secure;
    release(b, b->data, b->cap);
    cli_buf_init(b, b->limit);
    b->secure = secure;
}

void cli_buf_free_secure(cli_buf *b)
{
    if (b->data) explicit_bzero(b->data, b->cap);
    cli_buf_free(b);
}

void cli_buf_reset(cli_buf *b)
{
    if (b->secure && b->data) explicit_bzero(b->data, b->len);
    b->off = b->len = 0;
}

int cli_buf_reserve(cli_buf *b, size_t extra)
{
    if (b->off && b->off == b->len) cli_buf_reset(b);
    size_t used = b->len - b->off;
    if (extra > b->limit || used > b->limit - extra) return SMTPC_ELIMIT;
    if (b->cap - b->len >= extra) return 0;
    if (b->off) { /* make room by moving the live bytes down */
        memmove(b->data, b->data + b->off, used);
        if (b->secure) explicit_bzero(b->data + used, b->len - used);
        b->off = 0;
        b->len = used;
        if (b->cap - b->len >= extra) return 0;
    }
    size_t nc = b->cap ? b->cap : 256;
    while (nc - used < extra) {
        if (nc > SIZE_MAX / 2) { nc = used + extra; break; }
        nc *= 2;
    }
    uint8_t *p;
    if (b->secure) { /* realloc could leave a copy in the block it frees */
        if (!(p = malloc(nc))) return SMTPC_ENOMEM;
        if (b->len) memcpy(p, b->data, b->len);
        release(b, b->data, b->cap);
    } else if (!(p = realloc(b->data, nc))) {
        return SMTPC_ENOMEM;
    }
    b->data = p;
    b->cap = nc;
    return 0;
}

int cli_buf_append(cli_buf *b, const void *p, size_t n)
{
    if (!n) return 0;
    int rc = cli_buf_reserve(b, n);
    if (rc) return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int cli_buf_append_str(cli_buf *b, const char *s)
{
    return cli_buf_append(b, s, strlen(s));
}

int cli_buf_printf(cli_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return SMTPC_EINVAL;
    if ((size_t)n < sizeof tmp) return cli_buf_append(b, tmp, (size_t)n);
    int rc = cli_buf_reserve(b, (size_t)n + 1);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

size_t cli_strlcpy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);
    if (size) {
        size_t k = n < size - 1 ? n : size - 1;
        memcpy(dst, src, k);
        dst[k] = '\0';
    }
    return n;
}

bool cli_has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return true;
    return false;
}

int cli_parse_u64(const char *s, uint64_t *out)
{
    if (!*s || *s < '0' || *s > '9') return -1; /* no sign, no blank */
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

void cli_free_secret(char *s)
{
    if (!s) return;
    explicit_bzero(s, strlen(s));
    free(s);
}

size_t cli_utf8_len(const unsigned char *s, size_t n)
{
    if (!n) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) return 0;
        if (c == 0xe0 && s[1] < 0xa0) return 0;  /* overlong */
        if (c == 0xed && s[1] >= 0xa0) return 0; /* surrogates */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80) return 0;
        if (c == 0xf0 && s[1] < 0x90) return 0;  /* overlong */
        if (c == 0xf4 && s[1] >= 0x90) return 0; /* beyond U+10FFFF */
        return 4;
    }
    return 0;
}

int cli_text_class(const unsigned char *s, size_t n, size_t *len)
{
    size_t k = cli_utf8_len(s, n);
    *len = k ? k : 1;
    if (!k) return CLI_TEXT_INVALID;
    if (k == 1) return s[0] < 0x20 || s[0] == 0x7f ? CLI_TEXT_C0 : CLI_TEXT_OK;
    if (k == 2 && s[0] == 0xc2 && s[1] < 0xa0) return CLI_TEXT_C1; /* U+0080..U+009F */
    return CLI_TEXT_OK;
}

void cli_escape_into(char *dst, size_t dstsz, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    if (!dstsz) return;
    for (size_t i = 0; i < n;) {
        size_t k;
        int cls = cli_text_class(u + i, n - i, &k);
        unsigned c = cls == CLI_TEXT_C1 ? u[i + 1] : u[i];
        char tmp[8];
        size_t tl;
        if (cls == CLI_TEXT_OK) {
            memcpy(tmp, u + i, k);
            tl = k;
        } else if (c == '\r' || c == '\n') {
            tmp[0] = '\\';
            tmp[1] = c == '\r' ? 'r' : 'n';
            tl = 2;
        } else if (cls == CLI_TEXT_C1) { /* the code point, not its bytes: \u009b */
            memcpy(tmp, "\\u00", 4);
            tmp[4] = hex[c >> 4];
            tmp[5] = hex[c & 15];
            tl = 6;
        } else { /* a C0 control, DEL, or a byte that is not UTF-8 */
            tmp[0] = '\\';
            tmp[1] = 'x';
            tmp[2] = hex[c >> 4];
            tmp[3] = hex[c & 15];
            tl = 4;
        }
        if (o + tl >= dstsz) break;
        memcpy(dst + o, tmp, tl);
        o += tl;
        i += k;
    }
    dst[o] = '\0';
}

int64_t cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
