#include "util.h"

#include <string.h>

#include "b64_pairs.h"

static const char enc_tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Table-driven: one 12-bit lookup yields two output characters, so three
 * input bytes cost two loads and two 2-byte stores. */
static inline void enc3(char *d, const uint8_t *s)
{
    uint32_t v = (uint32_t)s[0] << 16 | (uint32_t)s[1] << 8 | s[2];
    memcpy(d, b64_pairs + 2 * (v >> 12), 2);
    memcpy(d + 2, b64_pairs + 2 * (v & 0xfff), 2);
}

/* Six input bytes -> eight characters, with one 8-byte load (s[6..7] are
 * read but unused: callers keep 8 readable bytes) and one 8-byte store. */
static inline void enc6(char *d, const uint8_t *s)
{
    uint64_t v;
    memcpy(&v, s, 8);
    v = __builtin_bswap64(v);
    uint16_t a, b, c, e;
    memcpy(&a, b64_pairs + 2 * ((v >> 52) & 0xfff), 2);
    memcpy(&b, b64_pairs + 2 * ((v >> 40) & 0xfff), 2);
    memcpy(&c, b64_pairs + 2 * ((v >> 28) & 0xfff), 2);
    memcpy(&e, b64_pairs + 2 * ((v >> 16) & 0xfff), 2);
    uint64_t o;
    if (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
        o = (uint64_t)a | (uint64_t)b << 16 | (uint64_t)c << 32 | (uint64_t)e << 48;
    else
        o = (uint64_t)a << 48 | (uint64_t)b << 32 | (uint64_t)c << 16 | (uint64_t)e;
    memcpy(d, &o, 8);
}

static void enc_tail(char *dst, const uint8_t *src, size_t rem)
{
    if (rem == 1) {
        uint32_t v = (uint32_t)src[0] << 16;
        dst[0] = enc_tab[v >> 18];
        dst[1] = enc_tab[(v >> 12) & 63];
        dst[2] = '=';
        dst[3] = '=';
    } else if (rem == 2) {
        uint32_t v = (uint32_t)src[0] << 16 | (uint32_t)src[1] << 8;
        dst[0] = enc_tab[v >> 18];
        dst[1] = enc_tab[(v >> 12) & 63];
        dst[2] = enc_tab[(v >> 6) & 63];
        dst[3] = '=';
    }
}

void smtpc__b64_encode(char *dst, const uint8_t *src, size_t n)
{
    size_t i = 0;
    for (; i + 26 <= n; i += 24, dst += 32) {
        enc6(dst, src + i);
        enc6(dst + 8, src + i + 6);
        enc6(dst + 16, src + i + 12);
        enc6(dst + 24, src + i + 18);
    }
    for (; i + 3 <= n; i += 3, dst += 4) enc3(dst, src + i);
    enc_tail(dst, src + i, n - i);
}

size_t smtpc__b64_lines_len(size_t n)
{
    size_t full = n / 57, rem = n % 57;
    return full * 78 + (rem ? smtpc__b64_encoded_len(rem) + 2 : 0);
}

size_t smtpc__b64_encode_lines(char *dst, const uint8_t *src, size_t n)
{
    char *d = dst;
    size_t i = 0;
    for (; i + 59 <= n; i += 57) {
        const uint8_t *s = src + i;
        for (int k = 0; k < 54; k += 6, d += 8) enc6(d, s + k);
        enc3(d, s + 54);
        d += 4;
        d[0] = '\r';
        d[1] = '\n';
        d += 2;
    }
    for (; i + 57 <= n; i += 57) {
        const uint8_t *s = src + i;
        for (int k = 0; k < 57; k += 3, d += 4) enc3(d, s + k);
        d[0] = '\r';
        d[1] = '\n';
        d += 2;
    }
    if (i < n) {
        smtpc__b64_encode(d, src + i, n - i);
        d += smtpc__b64_encoded_len(n - i);
        d[0] = '\r';
        d[1] = '\n';
        d += 2;
    }
    return (size_t)(d - dst);
}

static int dec1(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

long smtpc__b64_decode(uint8_t *dst, const char *src, size_t n)
{
    if (n % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int a = dec1((unsigned char)src[i]), b = dec1((unsigned char)src[i + 1]);
        if (a < 0 || b < 0) return -1;
        bool last = i + 4 == n;
        if (last && src[i + 2] == '=') {
            if (src[i + 3] != '=' || (b & 15)) return -1;
            dst[o++] = (uint8_t)(a << 2 | b >> 4);
            break;
        }
        int c = dec1((unsigned char)src[i + 2]);
        if (c < 0) return -1;
        if (last && src[i + 3] == '=') {
            if (c & 3) return -1;
            dst[o++] = (uint8_t)(a << 2 | b >> 4);
            dst[o++] = (uint8_t)((b & 15) << 4 | c >> 2);
            break;
        }
        int d = dec1((unsigned char)src[i + 3]);
        if (d < 0) return -1;
        dst[o++] = (uint8_t)(a << 2 | b >> 4);
        dst[o++] = (uint8_t)((b & 15) << 4 | c >> 2);
        dst[o++] = (uint8_t)((c & 3) << 6 | d);
    }
    return (long)o;
}
