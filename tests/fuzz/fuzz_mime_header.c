/* libFuzzer target: the RFC 2047 decoder on arbitrary input, and the
 * header encoder's round trip: any valid UTF-8 value written as an
 * unstructured header (plain and SMTPUTF8) is CRLF-folded, has no line over
 * 998 octets, no bare CR/LF, and decodes back to the input. */
#include "mime/mime.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(const char *v, size_t n, bool utf8)
{
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    smtpc__hdr h;
    if (smtpc__hdr_begin(&h, &b, "Subject") || smtpc__hdr_unstructured(&h, v, n, utf8) || smtpc__hdr_end(&h))
        abort();
    const char *s = (const char *)smtpc__bptr(&b);
    size_t len = smtpc__buf_size(&b), line = 0;
    smtpc__buf u; /* unfolded value */
    smtpc__buf_init(&u, 0);
    for (size_t i = 8; i < len; i++) {
        if (s[i] == '\r') {
            if (i + 1 >= len || s[i + 1] != '\n') abort();
            if (i + 2 < len && s[i + 2] != ' ' && s[i + 2] != '\t') abort(); /* a new header! */
            i++;
            line = 0;
            continue;
        }
        if (s[i] == '\n' || ++line > 998) abort();
        smtpc__buf_append(&u, s + i, 1);
    }
    const char *uv = (const char *)smtpc__bptr(&u);
    size_t un = smtpc__buf_size(&u);
    if (un && uv[0] == ' ') {
        uv++;
        un--;
    }
    char *d = smtpc__rfc2047_decode(uv, un);
    if (!d || strlen(d) != n || memcmp(d, v, n) != 0) abort();
    free(d);
    smtpc__buf_free(&u);
    smtpc__buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 20000) return 0;
    char *d = smtpc__rfc2047_decode((const char *)data, size);
    free(d);
    if (memchr(data, 0, size) || !smtpc__utf8_valid(data, size)) return 0;
    roundtrip((const char *)data, size, false);
    roundtrip((const char *)data, size, true);
    return 0;
}
