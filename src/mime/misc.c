/* Small MIME helpers: quoted-printable, content types, randomness, dates. */
#include "mime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static const char hexd[] = "0123456789ABCDEF";

/* RFC 2045 6.7 with lines of at most 76 characters. Also encodes '.' and
 * "From " at line starts, which some relays mangle. */
/* 1 for bytes written as themselves (printable ASCII except '=', and
 * SP/TAB, whose position is then checked). */
static const uint8_t qp_lit[256] = {
    ['\t'] = 1, [' '] = 1,
#define R8(a) [a] = 1, [a + 1] = 1, [a + 2] = 1, [a + 3] = 1, [a + 4] = 1, [a + 5] = 1, [a + 6] = 1, [a + 7] = 1
    R8(33), R8(41), R8(49), [57] = 1, [58] = 1, [59] = 1, [60] = 1, /* '=' (61) is encoded */
    [62] = 1, [63] = 1, [64] = 1, R8(65), R8(73), R8(81), R8(89), R8(97), R8(105), R8(113),
    [121] = 1, [122] = 1, [123] = 1, [124] = 1, [125] = 1, [126] = 1,
#undef R8
};

int smtpc__qp_encode(smtpc__buf *out, const uint8_t *src, size_t n)
{
    /* worst case: 3 characters per byte plus a soft break every 25 bytes */
    if (n > (SIZE_MAX - 64) / 4) return SMTPC_ENOMEM;
    if (smtpc__buf_reserve(out, 3 * n + n / 8 + 16)) return SMTPC_ENOMEM;
    char *d0 = (char *)out->data + out->len, *d = d0;
    size_t col = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = src[i];
        /* fast path: a run of plain printable characters in mid-line */
        if (col > 0 && col < 75 && qp_lit[c] && c != ' ' && c != '\t') {
            size_t room = 75 - col, k = 0;
            while (k < room && i + k < n && qp_lit[src[i + k]] && src[i + k] != ' ' && src[i + k] != '\t') k++;
            memcpy(d, src + i, k);
            d += k;
            col += k;
            i += k - 1;
            continue;
        }
        if (c == '\r' && i + 1 < n && src[i + 1] == '\n') {
            *d++ = '\r';
            *d++ = '\n';
            col = 0;
            i++;
            continue;
        }
        bool lit = qp_lit[c];
        /* whitespace before a line end (or the end) must be encoded */
        if (lit && (c == ' ' || c == '\t') && (i + 1 == n || src[i + 1] == '\r')) lit = false;
        size_t tl = lit ? 1 : 3;
        if (col + tl > 75) {
            *d++ = '=';
            *d++ = '\r';
            *d++ = '\n';
            col = 0;
        }
        /* '.' and "From " at a line start are encoded: some relays mangle them */
        if (lit && col == 0 && (c == '.' || (c == 'F' && n - i >= 5 && memcmp(src + i, "From ", 5) == 0))) {
            lit = false;
            tl = 3;
        }
        if (lit) {
            *d++ = (char)c;
        } else {
            d[0] = '=';
            d[1] = hexd[c >> 4];
            d[2] = hexd[c & 15];
            d += 3;
        }
        col += tl;
    }
    out->len += (size_t)(d - d0);
    return 0;
}

static const struct {
    const char *ext, *type;
} types[] = {
    {"txt", "text/plain"},        {"htm", "text/html"},          {"html", "text/html"},
    {"css", "text/css"},          {"csv", "text/csv"},           {"ics", "text/calendar"},
    {"md", "text/markdown"},      {"xml", "application/xml"},    {"json", "application/json"},
    {"pdf", "application/pdf"},   {"zip", "application/zip"},    {"gz", "application/gzip"},
    {"tar", "application/x-tar"}, {"7z", "application/x-7z-compressed"},
    {"doc", "application/msword"},
    {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"xls", "application/vnd.ms-excel"},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    {"ppt", "application/vnd.ms-powerpoint"},
    {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
    {"odt", "application/vnd.oasis.opendocument.text"},
    {"ods", "application/vnd.oasis.opendocument.spreadsheet"},
    {"rtf", "application/rtf"},   {"eml", "message/rfc822"},     {"png", "image/png"},
    {"jpg", "image/jpeg"},        {"jpeg", "image/jpeg"},        {"gif", "image/gif"},
    {"webp", "image/webp"},       {"svg", "image/svg+xml"},      {"bmp", "image/bmp"},
    {"ico", "image/vnd.microsoft.icon"}, {"tif", "image/tiff"},  {"tiff", "image/tiff"},
    {"mp3", "audio/mpeg"},        {"wav", "audio/wav"},          {"ogg", "audio/ogg"},
    {"mp4", "video/mp4"},         {"webm", "video/webm"},        {"mov", "video/quicktime"},
    {"js", "text/javascript"},    {"asc", "application/pgp-signature"},
};

const char *smtpc__mime_guess_type(const char *name)
{
    const char *dot = name ? strrchr(name, '.') : NULL;
    if (dot && dot[1]) {
        for (size_t i = 0; i < SMTPC__ARRAY_LEN(types); i++)
            if (smtpc__strcasecmp(dot + 1, types[i].ext) == 0) return types[i].type;
    }
    return "application/octet-stream";
}

int smtpc__random_hex(char *dst, size_t nhex)
{
    uint8_t r[64];
    size_t nb = (nhex + 1) / 2;
    if (nb > sizeof r) return SMTPC_EINVAL;
    size_t got = 0;
    while (got < nb) {
        ssize_t k = getrandom(r + got, nb - got, 0);
        if (k < 0) {
            if (errno == EINTR) continue;
            return SMTPC_EIO;
        }
        got += (size_t)k;
    }
    for (size_t i = 0; i < nhex; i++) dst[i] = hexd[(i & 1) ? (r[i / 2] & 15) : (r[i / 2] >> 4)];
    dst[nhex] = '\0';
    return 0;
}

void smtpc__rfc5322_date(char *dst, size_t dstsz, int64_t t)
{
    static const char *days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t tt = (time_t)t;
    struct tm tm;
    if (!localtime_r(&tt, &tm)) gmtime_r(&tt, &tm);
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0) off = -off;
    snprintf(dst, dstsz, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday % 7],
             tm.tm_mday, mons[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec, sign, off / 60, off % 60);
}

uint8_t *smtpc__crlf_normalize(const uint8_t *s, size_t n, size_t *outlen)
{
    size_t extra = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) extra++;
        if (s[i] == '\r' && (i + 1 == n || s[i + 1] != '\n')) extra++;
    }
    uint8_t *d = malloc(n + extra + 1);
    if (!d) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            d[o++] = '\r';
            d[o++] = '\n';
            if (i + 1 < n && s[i + 1] == '\n') i++;
        } else if (s[i] == '\n') {
            d[o++] = '\r';
            d[o++] = '\n';
        } else {
            d[o++] = s[i];
        }
    }
    d[o] = 0;
    *outlen = o;
    return d;
}
