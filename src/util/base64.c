#include "util.h"

static const char enc_tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void smtpc__b64_encode(char *dst, const uint8_t *src, size_t n)
{
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
        *dst++ = enc_tab[v >> 18];
        *dst++ = enc_tab[(v >> 12) & 63];
        *dst++ = enc_tab[(v >> 6) & 63];
        *dst++ = enc_tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)src[i] << 16;
        *dst++ = enc_tab[v >> 18];
        *dst++ = enc_tab[(v >> 12) & 63];
        *dst++ = '=';
        *dst++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
        *dst++ = enc_tab[v >> 18];
        *dst++ = enc_tab[(v >> 12) & 63];
        *dst++ = enc_tab[(v >> 6) & 63];
        *dst++ = '=';
    }
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
