#include "t.h"
#include "util/util.h"

#include <stdint.h>
#include <string.h>

TEST(buf_limit)
{
    smtpc__buf b;
    smtpc__buf_init(&b, 8);
    CHECK_INT(smtpc__buf_append(&b, "12345678", 8), 0);
    CHECK_INT(smtpc__buf_append(&b, "9", 1), SMTPC_ELIMIT);
    CHECK_INT(smtpc__buf_size(&b), 8);
    smtpc__buf_consume(&b, 3);
    CHECK_INT(smtpc__buf_append(&b, "abc", 3), 0);
    CHECK_MEM(smtpc__buf_ptr(&b), smtpc__buf_size(&b), "45678abc", 8);
    smtpc__buf_free(&b);
}

/* Decimal numbers without printf: the extremes, zero, a sign only when
 * negative, and the buffer's limit respected. */
TEST(buf_append_int)
{
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    CHECK_INT(smtpc__buf_append_int(&b, 0), 0);
    CHECK_INT(smtpc__buf_append_str(&b, " "), 0);
    CHECK_INT(smtpc__buf_append_int(&b, -7), 0);
    CHECK_INT(smtpc__buf_append_str(&b, " "), 0);
    CHECK_INT(smtpc__buf_append_int(&b, INT64_MIN), 0);
    CHECK_INT(smtpc__buf_append_str(&b, " "), 0);
    CHECK_INT(smtpc__buf_append_int(&b, INT64_MAX), 0);
    CHECK_INT(smtpc__buf_append_str(&b, " "), 0);
    CHECK_INT(smtpc__buf_append_u64(&b, UINT64_MAX), 0);
    CHECK_INT(smtpc__buf_append_str(&b, " "), 0);
    CHECK_INT(smtpc__buf_append_u64(&b, 10240), 0);
    const char *want = "0 -7 -9223372036854775808 9223372036854775807 18446744073709551615 10240";
    CHECK_MEM(smtpc__buf_ptr(&b), smtpc__buf_size(&b), want, strlen(want));
    smtpc__buf_free(&b);
    smtpc__buf_init(&b, 3);
    CHECK_INT(smtpc__buf_append_int(&b, -1234), SMTPC_ELIMIT);
    CHECK_INT(smtpc__buf_size(&b), 0);
    CHECK_INT(smtpc__buf_append_u64(&b, 123), 0);
    CHECK_MEM(smtpc__buf_ptr(&b), smtpc__buf_size(&b), "123", 3);
    smtpc__buf_free(&b);
}

/* What a secure buffer releases, seen by the hook before free(). */
static size_t released, released_nonzero;

static void on_release(const void *p, size_t n)
{
    released++;
    for (size_t i = 0; i < n; i++) released_nonzero += ((const uint8_t *)p)[i] != 0;
}

static size_t nonzero(const uint8_t *p, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += p[i] != 0;
    return c;
}

/* A secret in a growing buffer leaves no copy behind: not in the block
 * growth gives up (realloc would free it as it is), not in bytes consumed,
 * compacted away, reset or freed. */
TEST(buf_secure)
{
    uint8_t secret[300];
    memset(secret, 'S', sizeof secret);
    smtpc__buf_release_hook = on_release;
    released = released_nonzero = 0;
    smtpc__buf b;
    smtpc__buf_init_secure(&b, 0);
    CHECK_INT(smtpc__buf_append(&b, secret, 200), 0);
    CHECK_INT(b.cap, 256);
    CHECK_INT(smtpc__buf_append(&b, secret, 300), 0); /* grows: the 256-octet block goes */
    CHECK_INT(released, 1);
    CHECK_INT(released_nonzero, 0);
    CHECK_INT(b.cap, 512);
    CHECK_INT(nonzero(b.data, 500), 500); /* the contents moved intact */
    /* consumed octets are wiped at once */
    smtpc__buf_consume(&b, 400);
    CHECK_INT(nonzero(b.data, 400), 0);
    CHECK_INT(smtpc__buf_size(&b), 100);
    /* compaction moves the live 100 to the front and wipes where they were */
    CHECK_INT(smtpc__buf_append(&b, "0123456789abcdefghij", 20), 0);
    CHECK_INT(b.cap, 512);
    CHECK_INT(b.off, 0);
    CHECK_INT(nonzero(b.data, 100), 100);
    CHECK_MEM(b.data + 100, 20, "0123456789abcdefghij", 20);
    CHECK_INT(nonzero(b.data + 120, 500 - 120), 0);
    /* consuming everything, and reset, wipe what was live */
    smtpc__buf_consume(&b, 1000);
    CHECK_INT(nonzero(b.data, 120), 0);
    CHECK_INT(smtpc__buf_printf(&b, "AUTH PLAIN %s", "c2VjcmV0"), 0);
    smtpc__buf_reset(&b);
    CHECK_INT(nonzero(b.data, 19), 0);
    /* free wipes; the buffer stays secure for reuse */
    CHECK_INT(smtpc__buf_append(&b, secret, 10), 0);
    smtpc__buf_free(&b);
    CHECK_INT(released, 2);
    CHECK_INT(released_nonzero, 0);
    CHECK(b.secure && b.data == NULL);
    CHECK_INT(smtpc__buf_append(&b, secret, 300), 0);
    smtpc__buf_free_secure(&b);
    CHECK_INT(released, 3);
    CHECK_INT(released_nonzero, 0);
    /* an ordinary buffer is not slowed down by any of it */
    smtpc__buf_init(&b, 0);
    CHECK_INT(smtpc__buf_append(&b, secret, 300), 0);
    CHECK_INT(smtpc__buf_append(&b, secret, 300), 0);
    smtpc__buf_free(&b);
    CHECK_INT(released, 3);
    smtpc__buf_release_hook = NULL;
}

TEST(secure_zero)
{
    unsigned char a[1000];
    for (size_t i = 0; i < sizeof a; i++) a[i] = (unsigned char)(i | 1);
    smtpc__secure_zero(a + 1, sizeof a - 2); /* unaligned start and length */
    CHECK_INT(a[0], 1);
    CHECK_INT(a[sizeof a - 1], (int)((sizeof a - 1) | 1) & 0xff);
    size_t nz = 0;
    for (size_t i = 1; i < sizeof a - 1; i++) nz += a[i] != 0;
    CHECK_INT(nz, 0);
    smtpc__secure_zero(NULL, 0); /* UBSan: explicit_bzero's pointer is nonnull */
    char *s = strdup("hunter2");
    CHECK(s != NULL);
    smtpc__free_secret(s); /* ASan: no overrun; nothing to check after free */
}

TEST(has_8bit)
{
    char b[37];
    memset(b, 'a', sizeof b);
    CHECK(!smtpc__has_8bit(b, sizeof b));
    for (size_t i = 0; i < sizeof b; i++) { /* in the 8-byte words and in the tail */
        b[i] = (char)0xe9;
        CHECK(smtpc__has_8bit(b, sizeof b));
        CHECK(!smtpc__has_8bit(b, i));
        b[i] = 'a';
    }
    CHECK(!smtpc__has_8bit(NULL, 0));
}

TEST(parse_u64)
{
    uint64_t v = 0;
    CHECK_INT(smtpc__parse_u64("18446744073709551615", 20, &v), 0);
    CHECK(v == UINT64_MAX);
    CHECK_INT(smtpc__parse_u64("18446744073709551616", 20, &v), SMTPC_ELIMIT);
    CHECK_INT(smtpc__parse_u64("-1", 2, &v), SMTPC_EINVAL);
    CHECK_INT(smtpc__parse_u64("", 0, &v), SMTPC_EINVAL);
}

TEST(base64_roundtrip)
{
    uint8_t in[300] = {0}, dec[300];
    char enc[404];
    for (size_t n = 0; n < sizeof in; n++) {
        for (size_t i = 0; i < n; i++) in[i] = (uint8_t)(i * 37 + n);
        smtpc__b64_encode(enc, in, n);
        long d = smtpc__b64_decode(dec, enc, smtpc__b64_encoded_len(n));
        CHECK_INT(d, (long)n);
        if (d == (long)n) CHECK(memcmp(in, dec, n) == 0);
    }
    char out[8];
    smtpc__b64_encode(out, (const uint8_t *)"foob", 4);
    CHECK(memcmp(out, "Zm9vYg==", 8) == 0);
    CHECK_INT(smtpc__b64_decode(dec, "Zm9vYg=", 7), -1);
    CHECK_INT(smtpc__b64_decode(dec, "Zm9v*g==", 8), -1);
    CHECK_INT(smtpc__b64_decode(dec, "Zm9vYh==", 8), -1); /* non-zero pad bits */
}

TEST(escape)
{
    char out[64];
    smtpc__escape_into(out, sizeof out, "a\r\nb\x1b[2J", 8);
    CHECK_STR(out, "a\\r\\nb\\x1b[2J");
    CHECK(smtpc__has_crlfnul("ab\nc", 4));
    CHECK(!smtpc__has_crlfnul("abc", 3));
    CHECK(smtpc__has_crlfnul("a\0c", 3));
}

TEST(errors)
{
    CHECK_STR(smtpc_err_name(SMTPC_ETIMEDOUT), "SMTPC_ETIMEDOUT");
    CHECK(smtpc_error_classify(SMTPC_EPERMFAIL) == SMTPC_CLASS_PERMANENT);
    CHECK(smtpc_error_classify(SMTPC_ETEMPFAIL) == SMTPC_CLASS_TRANSIENT);
    CHECK(smtpc_error_classify(SMTPC_EUNKNOWN) == SMTPC_CLASS_UNKNOWN);
    CHECK_STR(smtpc_strerror(12345), "unknown error code");
}

int main(void)
{
    RUN(buf_limit);
    RUN(buf_append_int);
    RUN(buf_secure);
    RUN(secure_zero);
    RUN(has_8bit);
    RUN(parse_u64);
    RUN(base64_roundtrip);
    RUN(escape);
    RUN(errors);
    T_DONE();
}
