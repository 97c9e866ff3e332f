/* smtpc — pickup directory delivery (System.Net.Mail's
 * SpecifiedPickupDirectory): the message is written to a directory as a
 * uniquely named .eml file for a relay that watches the directory. */
#ifndef SMTPC_PICKUP_H
#define SMTPC_PICKUP_H

#include "common.h"
#include "errors.h"
#include "session.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes "X-Sender: <from>" and one "X-Receiver: <rcpt>" line per recipient
 * (the IIS/Exchange pickup format), then the message read from cb, with line
 * ends normalised to CRLF. The file appears atomically: written to a
 * temporary name, fsync'ed, renamed to a unique "<time>-<pid>-<n>.eml", and
 * the directory fsync'ed. The directory is created (mode 0700) if missing.
 *
 * path_out: if not NULL, receives the final path (caller frees with free()).
 * errbuf:   if not NULL, receives a message on failure.
 * Errors: SMTPC_EINVAL (no recipient, CR/LF/NUL in an address), SMTPC_EIO
 * (with errno's words in errbuf), SMTPC_ENOMEM, or the callback's error.
 * On failure no file is left behind. */
SMTPC_API int smtpc_pickup_write(const char *dir, const char *from, const char *const *rcpts,
                                 size_t nrcpts, smtpc_read_cb cb, void *userdata,
                                 char **path_out, char *errbuf, size_t errbuf_len);

#ifdef __cplusplus
}
#endif
#endif
