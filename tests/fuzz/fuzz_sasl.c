/* Fuzzes the SASL mechanisms with hostile challenges: the first byte picks
 * the mechanism, the rest is a list of challenges separated by '\n' (as
 * base64 text, or raw bytes that get base64-encoded when the line starts
 * with '!'); a line starting with '$' is passed to _finish instead, and
 * "#NNN text" to _reply as a reply with code NNN. */
#include "engine/sasl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
