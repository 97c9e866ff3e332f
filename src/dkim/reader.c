/* A reader that puts the DKIM-Signature fields before a message: the
 * first pass (hashing) happens when the reader is made, the second is the
 * caller's reads. A source that cannot rewind is copied to an unlinked
 * temporary file during the first pass, so memory never depends on the
 * message's size. */
#include "util/util.h"

#include <smtpc/dkim.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READER_BLOCK (64u * 1024u)

struct smtpc_dkim_reader {
    smtpc_dkim_sign *ctx;
    const char *fields;
    size_t flen, foff;
    ssize_t (*read)(void *userdata, void *buf, size_t len);
    int (*rewind)(void *userdata);
    void *ud;
    FILE *spool; /* the source's copy when it cannot rewind */
    int failed;
    smtpc__errmsg err;
};

const char *smtpc_dkim_reader_errmsg(const smtpc_dkim_reader *r) { return r ? r->err.text : ""; }

void smtpc_dkim_reader_free(smtpc_dkim_reader *r)
{
    if (!r) return;
    smtpc_dkim_sign_free(r->ctx);
    if (r->spool) fclose(r->spool);
    free(r);
}

const char *smtpc_dkim_reader_fields(const smtpc_dkim_reader *r, size_t *len)
{
    if (len) *len = r ? r->flen : 0;
    return r && r->fields ? r->fields : "";
}

/* The first pass: everything through the signer (and into the spool). */
static int first_pass(smtpc_dkim_reader *r)
{
    uint8_t *buf = malloc(READER_BLOCK);
    if (!buf) return smtpc__err(&r->err, SMTPC_ENOMEM, "out of memory");
    int rc = 0;
    for (;;) {
        ssize_t n = r->read(r->ud, buf, READER_BLOCK);
        if (n == 0) break;
        if (n < 0 || (size_t)n > READER_BLOCK) {
            rc = n < 0 && n >= INT_MIN ? (int)n : SMTPC_EIO;
            smtpc__err(&r->err, rc, "reading the message to sign failed (%s)", smtpc_err_name(rc));
            break;
        }
        if (r->spool && fwrite(buf, 1, (size_t)n, r->spool) != (size_t)n) {
            rc = smtpc__err(&r->err, SMTPC_EIO, "DKIM spool file: %s", strerror(errno));
            break;
        }
        rc = smtpc_dkim_sign_update(r->ctx, buf, (size_t)n);
        if (rc) {
            smtpc__err(&r->err, rc, "DKIM: %s", smtpc_dkim_sign_errmsg(r->ctx));
            break;
        }
    }
    free(buf);
    if (rc) return rc;
    rc = smtpc_dkim_sign_final(r->ctx, &r->fields, &r->flen);
    if (rc) return smtpc__err(&r->err, rc, "DKIM: %s", smtpc_dkim_sign_errmsg(r->ctx));
    return 0;
}

static int source_rewind(smtpc_dkim_reader *r)
{
    if (r->spool) {
        if (fflush(r->spool) != 0 || fseek(r->spool, 0, SEEK_SET) != 0)
            return smtpc__err(&r->err, SMTPC_EIO, "DKIM spool file: %s", strerror(errno));
        return 0;
    }
    int rc = r->rewind(r->ud);
    if (rc) return smtpc__err(&r->err, rc < 0 ? rc : SMTPC_EIO, "the message source cannot rewind");
    return 0;
}

int smtpc_dkim_reader_new(smtpc_dkim_reader **out, const smtpc_dkim_signer *sg,
                          ssize_t (*read)(void *userdata, void *buf, size_t len),
                          int (*rewind)(void *userdata), void *userdata, char *errbuf, size_t errlen)
{
    if (errbuf && errlen) errbuf[0] = '\0';
    if (!out || !sg || !read) return SMTPC_EINVAL;
    smtpc_dkim_reader *r = calloc(1, sizeof *r);
    if (!r) return SMTPC_ENOMEM;
    r->read = read;
    r->rewind = rewind;
    r->ud = userdata;
    int rc = smtpc_dkim_sign_begin(sg, &r->ctx);
    if (rc) smtpc__err(&r->err, rc, "DKIM: %s", smtpc_dkim_signer_errmsg(sg));
    if (!rc && !rewind && !(r->spool = tmpfile()))
        rc = smtpc__err(&r->err, SMTPC_EIO, "cannot create the DKIM spool file: %s", strerror(errno));
    if (!rc) rc = first_pass(r);
    if (!rc) rc = source_rewind(r);
    if (rc) {
        if (errbuf && errlen) smtpc__strlcpy(errbuf, r->err.text, errlen);
        smtpc_dkim_reader_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

ssize_t smtpc_dkim_reader_read(void *reader, void *buf, size_t len)
{
    smtpc_dkim_reader *r = reader;
    if (!r || (!buf && len)) return SMTPC_EINVAL;
    if (r->failed) return r->failed;
    if (len == 0) return 0;
    if (r->foff < r->flen) {
        size_t n = r->flen - r->foff;
        if (n > len) n = len;
        memcpy(buf, r->fields + r->foff, n);
        r->foff += n;
        return (ssize_t)n;
    }
    if (r->spool) {
        size_t n = fread(buf, 1, len, r->spool);
        if (n == 0 && ferror(r->spool))
            return r->failed = smtpc__err(&r->err, SMTPC_EIO, "DKIM spool file: %s", strerror(errno));
        return (ssize_t)n;
    }
    ssize_t n = r->read(r->ud, buf, len);
    if (n < 0) r->failed = n >= INT_MIN ? (int)n : SMTPC_EIO;
    return n;
}

int smtpc_dkim_reader_rewind(void *reader)
{
    smtpc_dkim_reader *r = reader;
    if (!r) return SMTPC_EINVAL;
    if (r->failed) return r->failed;
    r->foff = 0;
    int rc = source_rewind(r);
    if (rc) r->failed = rc;
    return rc;
}
