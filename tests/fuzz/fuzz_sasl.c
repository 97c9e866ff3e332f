/* Fuzzes the SASL mechanisms with hostile challenges: the first byte picks
 * the mechanism, the rest is a list of challenges separated by '\n' (as
 * base64 text, or raw bytes that get base64-encoded when the line starts
 * with '!'); a line starting with '$' is passed to _finish instead, and
 * "#NNN text" to _reply as a reply with code NNN. */
#define _GNU_SOURCE
#include "engine/sasl.h"

#include <dlfcn.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* SCRAM's key derivation is OpenSSL's PBKDF2, not code under test, and it
 * took 84 % of this target's time: the library asks for at least 4,096
 * iterations, and OpenSSL copies a digest context per iteration, an
 * allocation that ASan intercepts. This program's definition takes the
 * library's calls; it remembers the last derivations, keyed by digest,
 * password, salt and count, so an input mutated anywhere but in those
 * derives nothing again, and it asks OpenSSL for the real derivation
 * otherwise, with the count cut to 4,096: above that, only an input that
 * already carries the proof for its count could tell the difference, and
 * the fuzzer cannot forge one. What the library does with the result
 * (proof, server signature, errors) is unchanged. Not instrumented for
 * coverage, and compared without memcmp (which libFuzzer watches): the
 * memo is not code under test either. */
__attribute__((no_sanitize("coverage"))) static bool same(const unsigned char *a, const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return false;
    return true;
}

__attribute__((no_sanitize("coverage"))) int PKCS5_PBKDF2_HMAC(const char *pass, int passlen, const unsigned char *salt, int saltlen, int iter,
                      const EVP_MD *md, int keylen, unsigned char *out)
{
    typedef int (*pbkdf2_fn)(const char *, int, const unsigned char *, int, int, const EVP_MD *, int,
                             unsigned char *);
    static pbkdf2_fn real;
    enum { SLOTS = 64, SALT_MAX = 512, KEY_MAX = EVP_MAX_MD_SIZE };
    static struct {
        const EVP_MD *md;
        int iter, saltlen, passlen, keylen;
        unsigned char salt[SALT_MAX], pass[64], key[KEY_MAX];
    } memo[SLOTS];
    static unsigned next;
    if (!real && !(real = (pbkdf2_fn)dlsym(RTLD_NEXT, "PKCS5_PBKDF2_HMAC"))) abort();
    bool fits = saltlen >= 0 && saltlen <= SALT_MAX && passlen >= 0 && passlen <= 64 && keylen > 0 &&
                keylen <= KEY_MAX;
    for (unsigned i = 0; fits && i < SLOTS; i++)
        if (memo[i].md == md && memo[i].iter == iter && memo[i].saltlen == saltlen &&
            memo[i].passlen == passlen && memo[i].keylen == keylen && same(memo[i].salt, salt, (size_t)saltlen) &&
            same(memo[i].pass, (const unsigned char *)pass, (size_t)passlen)) {
            memcpy(out, memo[i].key, (size_t)keylen);
            return 1;
        }
    int rc = real(pass, passlen, salt, saltlen, iter > 4096 ? 4096 : iter, md, keylen, out);
    if (rc == 1 && fits) {
        unsigned i = next++ % SLOTS;
        memo[i].md = md;
        memo[i].iter = iter;
        memo[i].saltlen = saltlen;
        memo[i].passlen = passlen;
        memo[i].keylen = keylen;
        memcpy(memo[i].salt, salt, (size_t)saltlen);
        memcpy(memo[i].pass, pass, (size_t)passlen);
        memcpy(memo[i].key, out, (size_t)keylen);
    }
    return rc;
}

static int token_fn(void *ud, bool refresh, const char **tok, size_t *len)
{
    (void)ud;
    *tok = refresh ? "fresh-token" : "token";
    *len = strlen(*tok);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    smtpc__sasl_mech mech = (smtpc__sasl_mech)(1 + data[0] % (SMTPC__SASL_MECH_COUNT - 1));
    smtpc__sasl_creds c = {.username = "user", .password = "pencil", .authzid = data[0] & 0x80 ? "a=b,c" : NULL,
                           .token_fn = token_fn, .host = "mx.example.org", .port = 587, .client_cert = true};
    smtpc__sasl *s = NULL;
    smtpc__errmsg err;
    if (smtpc__sasl_new(&s, mech, &c, &err) != 0) return 0;
    if (data[0] & 0x40) smtpc__sasl_set_nonce(s, "fyko+d2lbbFgONRv9qkxdawL");
    smtpc__sasl_line line;
    smtpc__sasl_start(s, &line);
    if (data[0] & 0x20) smtpc__sasl_defer_ir(s);
    size_t i = 1;
    int rounds = 0;
    while (i < size && rounds++ < 64) {
        const uint8_t *e = memchr(data + i, '\n', size - i);
        size_t n = e ? (size_t)(e - (data + i)) : size - i;
        const char *p = (const char *)data + i;
        char *b64 = NULL;
        if (n && p[0] == '!') {
            b64 = malloc(smtpc__b64_encoded_len(n - 1) + 1);
            smtpc__b64_encode(b64, (const uint8_t *)p + 1, n - 1);
            b64[smtpc__b64_encoded_len(n - 1)] = '\0';
        } else {
            b64 = malloc(n + 1);
            memcpy(b64, p, n);
            b64[n] = '\0';
        }
        if (n && p[0] == '$') {
            smtpc__sasl_finish(s, b64 + 1);
        } else if (n >= 4 && p[0] == '#') {
            int code = (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
            int rc = smtpc__sasl_reply(s, code, b64 + 4, strlen(b64 + 4), &line);
            if (rc == 1 && (mech == SMTPC__SASL_SCRAM_SHA_1 || mech == SMTPC__SASL_SCRAM_SHA_256) &&
                !(data[0] & 0x40))
                abort(); /* a random nonce: nobody can have proved knowing the password */
        } else {
            int rc = smtpc__sasl_step(s, b64, strlen(b64), &line);
            if (rc < 0 && !line.b64) abort(); /* an error always leaves a line to send */
            if (line.b64 && strlen(line.b64) != line.len) abort();
            if (rc < 0 && smtpc__sasl_token_rejected(s) && (data[0] & 0x10)) {
                smtpc__sasl_restart(s, true);
                smtpc__sasl_start(s, &line);
            }
        }
        free(b64);
        i += n + 1;
    }
    smtpc__sasl_free(s);
    return 0;
}
