/* smtpc — pickup directory delivery (System.Net.Mail's
 * SpecifiedPickupDirectory): the message is written to a directory as a
 * uniquely named .eml file for a relay that watches the directory; and the
 * reader of such a directory. */
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
 * ends normalised to CRLF.
 *
 * Envelope injection: a reader takes the leading X-Sender / X-Receiver lines
 * of a file as its envelope, so X-Sender and X-Receiver fields in the
 * message's header section (case-insensitive, blanks before the colon
 * allowed) are renamed X-Original-Sender and X-Original-Receiver: the
 * envelope block holds exactly what from and rcpts say.
 *
 * The file appears atomically: written to a temporary name
 * ".tmp-<time>-<pid>-<n>.part" (hidden, and never "*.eml", so a reader of
 * the directory does not take a half-written file), fsync'ed, renamed to a
 * unique "<time>-<pid>-<n>.eml", and the directory fsync'ed. The directory
 * is created (mode 0700) if missing. An existing one must be owned by the
 * effective user or root and not writable by others unless it has the
 * sticky bit (group-writable is allowed: a relay's group may share it);
 * otherwise SMTPC_ECONFIG, with which rule in errbuf.
 *
 * path_out: if not NULL, receives the final path (caller frees with free()).
 * errbuf:   if not NULL, receives a message on failure.
 * Errors: SMTPC_EINVAL (no recipient, CR/LF/NUL in an address),
 * SMTPC_ECONFIG (the directory's owner or mode, above), SMTPC_EIO
 * (with errno's words in errbuf), SMTPC_ENOMEM, or the callback's error.
 * On failure no file is left behind. */
SMTPC_API int smtpc_pickup_write(const char *dir, const char *from, const char *const *rcpts,
                                 size_t nrcpts, smtpc_read_cb cb, void *userdata,
                                 char **path_out, char *errbuf, size_t errbuf_len);

/* ---- reading a pickup directory ------------------------------------------------
 * For a program that sends what was written (smtpc bulk --dir):
 *
 *   char **paths; size_t n;
 *   smtpc_pickup_list(dir, &paths, &n, err, sizeof err);
 *   for (size_t i = 0; i < n; i++) {
 *       smtpc_pickup_msg *m;
 *       if (smtpc_pickup_read(paths[i], &m, err, sizeof err)) continue;
 *       if (smtpc_pickup_msg_sender(m)) ... smtpc_pickup_msg_rcpt(m, k) ...
 *       size_t len; const char *data = smtpc_pickup_msg_data(m, &len);
 *       smtpc_pickup_msg_free(m);
 *   }
 *   smtpc_pickup_list_free(paths, n);
 */
typedef struct smtpc_pickup_msg smtpc_pickup_msg;

/* The regular files "*.eml" of dir whose names do not start with '.'
 * (temporaries: smtpc_pickup_write's ".tmp-*.part", other programs' dot
 * files), as "dir/name", sorted by name (the writer's names sort by time).
 * *paths_out is freed with smtpc_pickup_list_free; it is NULL when *n_out
 * is 0. Errors: SMTPC_EINVAL, SMTPC_ENOTFOUND (no such directory),
 * SMTPC_EIO, SMTPC_ENOMEM. */
SMTPC_API int smtpc_pickup_list(const char *dir, char ***paths_out, size_t *n_out, char *errbuf,
                                size_t errbuf_len);
SMTPC_API void smtpc_pickup_list_free(char **paths, size_t n);

/* Reads a file: the envelope block smtpc_pickup_write writes, and the
 * message after it. The block is an "X-Sender:" line followed by
 * "X-Receiver:" lines (names case-insensitive, CRLF or LF, values trimmed
 * and "<addr>" unbracketed: "<>" is the null sender ""); reading stops at
 * the first line of any other form (a second X-Sender included), which
 * begins the message. A file without that block (no X-Sender first, or no
 * X-Receiver after it) has no envelope: sender NULL, no recipients, the
 * whole file is the message; the caller may then take the envelope from
 * the header fields. An empty X-Receiver value ends the block too (the
 * writer never writes one). The whole file is read into memory. Limits:
 * 4096 octets per envelope line (a longer line ends the block), 100000
 * recipients (SMTPC_ELIMIT).
 * Errors: SMTPC_EINVAL, SMTPC_ENOTFOUND, SMTPC_EIO (also: not a regular
 * file), SMTPC_ELIMIT, SMTPC_ENOMEM; *out is untouched on failure. */
SMTPC_API int smtpc_pickup_read(const char *path, smtpc_pickup_msg **out, char *errbuf,
                                size_t errbuf_len);
/* The envelope sender ("" = the null sender), NULL when the file had no
 * envelope block. */
SMTPC_API const char *smtpc_pickup_msg_sender(const smtpc_pickup_msg *m);
SMTPC_API size_t smtpc_pickup_msg_rcpt_count(const smtpc_pickup_msg *m);
/* The i-th recipient, NULL past the end. */
SMTPC_API const char *smtpc_pickup_msg_rcpt(const smtpc_pickup_msg *m, size_t i);
/* The message after the envelope block, as in the file (CRLF line ends
 * when written by smtpc_pickup_write); *len its length. NUL-terminated. */
SMTPC_API const char *smtpc_pickup_msg_data(const smtpc_pickup_msg *m, size_t *len);
/* NULL is a no-op. */
SMTPC_API void smtpc_pickup_msg_free(smtpc_pickup_msg *m);

#ifdef __cplusplus
}
#endif
#endif
