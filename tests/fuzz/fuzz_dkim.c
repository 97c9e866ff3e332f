/* libFuzzer target: DKIM on hostile input.
 *   - the verifier on any message (its tag lists, h= lists, base64, l=, the
 *     key record it is served: the first line of the input);
 *   - the signer on any message fed in the splits the input chooses: a
 *     header section over the limit, no From or a malformed header line are
 *     errors, anything else signs; and the body hash does not depend on the
 *     split. */
#include "dkim/dkim_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* RFC 8463's Ed25519 key (the RFC 8032 7.1 test 1 seed, a public vector). */
static const char ed_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                             "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
                             "-----END PRIVATE KEY-----\n";

typedef struct rec {
    const char *p;
    size_t n;
} rec;

static int txt_cb(void *ud, const char *name, char *buf, size_t len)
{
    const rec *r = ud;
    (void)name;
    if (!r->n) return SMTPC_ENOTFOUND;
    size_t n = r->n < len - 1 ? r->n : len - 1;
    memcpy(buf, r->p, n);
    buf[n] = '\0';
    return 0;
}

static const char *body_hash_tag(const char *f)
{
    const char *bh = strstr(f, "bh=");
    if (!bh) abort();
    return bh;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static smtpc_dkim_signer *sg;
    if (!sg) {
        if (smtpc_dkim_signer_new(&sg) || smtpc_dkim_signer_set_domain(sg, "example.org") ||
            smtpc_dkim_signer_add_key_pem(sg, "ed", ed_pem, sizeof ed_pem - 1))
            abort();
    }
    if (size < 1) return 0;
    uint8_t mode = data[0];
    data++;
    size--;

    /* verify: the first line is the key record */
    const uint8_t *nl = memchr(data, '\n', size);
    rec r = {(const char *)data, nl ? (size_t)(nl - data) : 0};
    const uint8_t *msg = nl ? nl + 1 : data;
    size_t mlen = size - (size_t)(msg - data);
    smtpc_dkim_result res[4];
    size_t count = 0;
    char err[128];
    int rc = smtpc_dkim_verify(msg, mlen, txt_cb, &r, 1, res, 4, &count, err, sizeof err);
    if (rc && rc != SMTPC_EINVAL && rc != SMTPC_ELIMIT) abort();

    /* sign, whole and split where mode says */
    smtpc_dkim_signer_set_canon(sg, mode & 1, (mode >> 1) & 1);
    const char *f1 = NULL, *f2 = NULL;
    size_t l1, l2;
    smtpc_dkim_sign *a = NULL, *b = NULL;
    if (smtpc_dkim_sign_begin(sg, &a) || smtpc_dkim_sign_begin(sg, &b)) abort();
    int ra = smtpc_dkim_sign_update(a, data, size);
    int rb = 0;
    size_t step = 1 + (mode >> 2);
    for (size_t i = 0; i < size && !rb; i += step)
        rb = smtpc_dkim_sign_update(b, data + i, size - i < step ? size - i : step);
    if (ra != rb) abort();
    if (!ra) ra = smtpc_dkim_sign_final(a, &f1, &l1);
    if (!rb) rb = smtpc_dkim_sign_final(b, &f2, &l2);
    if (ra != rb) abort();
    if (!ra) {
        if (strlen(f1) != l1 || strncmp(f1, "DKIM-Signature: ", 16)) abort();
        /* same body hash whatever the split (t= is the same second, or not) */
        if (strncmp(body_hash_tag(f1), body_hash_tag(f2), 47)) abort();
    } else if (ra != SMTPC_EINVAL && ra != SMTPC_ELIMIT) {
        abort();
    }
    smtpc_dkim_sign_free(a);
    smtpc_dkim_sign_free(b);
    return 0;
}
