/* Sending a MIME message over a session: the envelope from the message and
 * the encoding matched to what the server offers. Uses only the public
 * session and message APIs, so the blocking client, the CLI and C callers
 * share one policy. */
#include <smtpc/message.h>
#include <smtpc/session.h>

#include "client/session_int.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

SMTPC_API int smtpc_session_send_message(smtpc_session *s, smtpc_message *m,
                                         const smtpc_send_opts *opts)
{
    static const smtpc_send_opts defaults;
    if (!opts) opts = &defaults;
    if (!s || !m) return SMTPC_EINVAL;
    const char *from = smtpc_message_envelope_from(m);
    size_t n = smtpc_message_rcpt_count(m);
    smtpc__errmsg *err = smtpc__session_errbuf(s);
    if (!from) return smtpc__err(err, SMTPC_EINVAL, "send message: the message has no From or Sender");
    if (n == 0) return smtpc__err(err, SMTPC_EINVAL, "send message: the message has no recipient");

    bool ext8 = smtpc_session_has_ext(s, "8BITMIME");
    bool extu = smtpc_session_has_ext(s, "SMTPUTF8");
    bool chunking = smtpc_session_has_ext(s, "CHUNKING");
    bool need_utf8 = smtpc_message_needs_smtputf8(m);
    if (need_utf8 && !extu) {
        /* Fail before MAIL: a server without SMTPUTF8 cannot take this
         * envelope, and downgrading addresses is not ours to do. */
        return smtpc__err(err, SMTPC_EUNSUPPORTED,
                          "send message: an address has a non-ASCII local part, which needs "
                          "SMTPUTF8, and the server does not offer it");
    }
    unsigned flags = (ext8 ? SMTPC_WRITE_8BITMIME : 0u) | (need_utf8 ? SMTPC_WRITE_SMTPUTF8 : 0u);
    smtpc_message_writer *w = NULL;
    int rc = smtpc_message_writer_new(&w, m, flags);
    if (rc) return smtpc__err(err, rc, "send message: %s", smtpc_message_errmsg(m));

    smtpc_mail_opts mo;
    memset(&mo, 0, sizeof mo);
    int64_t size = smtpc_message_writer_size(w);
    if (size > 0 && smtpc_session_has_ext(s, "SIZE")) mo.size = (uint64_t)size;
    mo.body_8bitmime = ext8;
    mo.smtputf8 = need_utf8;
    mo.dsn_ret = opts->dsn_ret;
    mo.dsn_envid = opts->dsn_envid;

    const char **rcpts = calloc(n, sizeof *rcpts);
    smtpc_rcpt_opts *ro = calloc(n, sizeof *ro);
    if (!rcpts || !ro) {
        free(rcpts);
        free(ro);
        smtpc_message_writer_free(w);
        return smtpc__err(err, SMTPC_ENOMEM, "send message: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        rcpts[i] = smtpc_message_rcpt(m, i);
        ro[i].dsn_notify = opts->dsn_notify;
    }
    smtpc_envelope env;
    memset(&env, 0, sizeof env);
    env.from = from;
    env.mail = &mo;
    env.rcpts = rcpts;
    env.nrcpts = n;
    env.rcpt = opts->dsn_notify ? ro : NULL;
    env.all_or_nothing = opts->all_or_nothing;
    env.use_bdat = opts->use_bdat && chunking;
    rc = smtpc_session_send(s, &env, smtpc_message_writer_read, w);
    if (rc && smtpc_message_writer_errmsg(w)[0])
        smtpc__err(err, rc, "send message: %s", smtpc_message_writer_errmsg(w));
    smtpc_message_writer_free(w);
    free(rcpts);
    free(ro);
    return rc;
}
