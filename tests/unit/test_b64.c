/* The table-driven base64 encoders against a bytewise reference, at every
 * length around the block and line sizes. */
#include "t.h"
#include "util/util.h"

static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t ref(char *d, const uint8_t *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
        d[o++] = A[v >> 18];
        d[o++] = A[(v >> 12) & 63];
        d[o++] = i + 1 < n ? A[(v >> 6) & 63] : '=';
        d[o++] = i + 2 < n ? A[v & 63] : '=';
    }
    return o;
}

TEST(plain_and_lines)
{
    enum { MAX = 57 * 5 + 40 };
    uint8_t in[MAX] = {0};
    static char a[4 * MAX], b[4 * MAX], c[4 * MAX];
    uint32_t st = 1;
    for (size_t n = 0; n <= MAX; n++) {
        for (size_t i = 0; i < n; i++) in[i] = (uint8_t)((st = st * 1103515245u + 12345u) >> 16);
        size_t rl = ref(a, in, n);
        smtpc__b64_encode(b, in, n);
        CHECK_MEM(b, smtpc__b64_encoded_len(n), a, rl);
        /* lines: 76 characters then CRLF */
        size_t o = 0;
        for (size_t i = 0; i < rl; i += 76) {
            size_t k = rl - i < 76 ? rl - i : 76;
            memcpy(c + o, a + i, k);
            o += k;
            c[o++] = '\r';
            c[o++] = '\n';
        }
        size_t ll = smtpc__b64_encode_lines(b, in, n);
        CHECK_INT(ll, smtpc__b64_lines_len(n));
        CHECK_MEM(b, ll, c, o);
        if (t_cur_failed) break;
    }
}

int main(void)
{
    RUN(plain_and_lines);
    T_DONE();
}
