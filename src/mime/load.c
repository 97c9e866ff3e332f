/* Loading an existing message (sendmail -t): envelope from its headers,
 * Bcc removed, body streamed unchanged. */
#include "mime.h"

#include <stdlib.h>
#include <string.h>

int smtpc__writer_layout_loaded(smtpc_message_writer *w);
int smtpc__writer_raw_step(smtpc_message_writer *w, smtpc__part *p, uint8_t *in, size_t inblock,
                           uint8_t *out, size_t *outlen, bool *eof);

int smtpc__writer_layout_loaded(smtpc_message_writer *w)
{
    SMTPC__UNUSED(w);
    return SMTPC_EUNSUPPORTED;
}

int smtpc__writer_raw_step(smtpc_message_writer *w, smtpc__part *p, uint8_t *in, size_t inblock,
                           uint8_t *out, size_t *outlen, bool *eof)
{
    SMTPC__UNUSED(w);
    SMTPC__UNUSED(p);
    SMTPC__UNUSED(in);
    SMTPC__UNUSED(inblock);
    SMTPC__UNUSED(out);
    *outlen = 0;
    *eof = true;
    return SMTPC_EUNSUPPORTED;
}

int smtpc_message_load(smtpc_message **out, ssize_t (*cb)(void *, void *, size_t), void *ud,
                       char *errbuf, size_t errlen)
{
    SMTPC__UNUSED(out);
    SMTPC__UNUSED(cb);
    SMTPC__UNUSED(ud);
    if (errbuf && errlen) snprintf(errbuf, errlen, "not implemented yet");
    return SMTPC_EUNSUPPORTED;
}
