/* DKIM signing of what the client sends: the signer on the client, and
 * the signed body reader of one attempt (the first pass when the body is
 * prepared, so t= is the attempt's time; the fields, then the body, as the
 * session reads it). */
#include "client/client_int.h"

#include <stdlib.h>
#include <string.h>

SMTPC_API int smtpc_client_set_dkim(smtpc_client *c, const smtpc_dkim_signer *sg)
{
    if (!c) return SMTPC_EINVAL;
    if (atomic_load(&c->busy)) return smtpc__err(&c->err, SMTPC_EBUSY, "operation in progress");
    if (sg) {
        /* a signer without key or domain fails here, not at each send */
        smtpc_dkim_sign *probe;
        int rc = smtpc_dkim_sign_begin(sg, &probe);
        if (rc) return smtpc__err(&c->err, rc, "DKIM: %s", smtpc_dkim_signer_errmsg(sg));
        smtpc_dkim_sign_free(probe);
    }
    c->dkim = sg;
    return 0;
}

static ssize_t src_read(void *ud, void *buf, size_t len)
{
    smtpc__body_run *run = ud;
    run->dk_in = true;
    ssize_t n = smtpc__body_read(run, buf, len);
    run->dk_in = false;
    return n;
}

/* Back to the start of the body: a second writer of the message gives the
 * same bytes; memory is re-read; a callback rewinds. */
static int src_rewind(void *ud)
{
    smtpc__body_run *run = ud;
    const smtpc__body *b = run->b;
    if (run->w) {
        smtpc_message_writer_free(run->w);
        run->w = NULL;
        int rc = smtpc_message_writer_new(&run->w, b->m, run->dk_wflags);
        return rc;
    }
    if (b->mem || !b->cb) {
        run->mp = b->mem;
        run->mleft = b->len;
        return 0;
    }
    return b->rewind ? b->rewind(b->ud) : SMTPC_ESTATE;
}

int smtpc__client_dkim_prep(smtpc_client *c, smtpc__body_run *run, smtpc_mail_opts *mo)
{
    if (!c->dkim) return 0;
    const smtpc__body *b = run->b;
    run->dk_wflags = (mo->body_8bitmime ? SMTPC_WRITE_8BITMIME : 0u) | (mo->smtputf8 ? SMTPC_WRITE_SMTPUTF8 : 0u);
    /* a callback without rewind is read once, into the reader's spool */
    bool once = !run->w && !b->mem && b->cb && !b->rewind;
    char err[SMTPC__ERRMSG_MAX];
    int rc = smtpc_dkim_reader_new(&run->dk, c->dkim, src_read, once ? NULL : src_rewind, run, err, sizeof err);
    if (rc) {
        if (run->w && smtpc_message_writer_errmsg(run->w)[0])
            return smtpc__err(&c->err, rc, "message: %s", smtpc_message_writer_errmsg(run->w));
        if (!run->w && b->m) return smtpc__err(&c->err, rc, "message: %s", smtpc_message_errmsg(b->m));
        return smtpc__err(&c->err, rc, "%s", err);
    }
    /* nothing was sent yet: only a body that cannot be read again counts as read */
    run->touched = once;
    size_t flen;
    smtpc_dkim_reader_fields(run->dk, &flen);
    if (mo->size) mo->size += flen;
    return 0;
}

ssize_t smtpc__client_dkim_read(smtpc__body_run *run, void *buf, size_t len)
{
    return smtpc_dkim_reader_read(run->dk, buf, len);
}
