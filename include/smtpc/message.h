/* smtpc — addresses, the MIME message model and its streaming pull writer.
 *
 *   smtpc_message *m;
 *   smtpc_message_new(&m);
 *   smtpc_message_set_from(m, "Zoë <zoe@example.org>");
 *   smtpc_message_add_to(m, "bob@example.com, \"Carol C.\" <carol@example.net>");
 *   smtpc_message_set_subject(m, "Report for Q3 — final");
 *   smtpc_message_set_text(m, "Hello\n", (size_t)-1);
 *   smtpc_message_add_attachment_file(m, "/tmp/report.pdf", NULL);
 *
 *   smtpc_message_writer *w;
 *   smtpc_message_writer_new(&w, m, 0);          // or SMTPC_WRITE_8BITMIME ...
 *   smtpc_session_data_cb(s, smtpc_message_writer_read, w);
 *   smtpc_message_writer_free(w);
 *   smtpc_message_free(m);
 *
 * Conventions: every fallible function returns 0 or a negative SMTPC_E* code
 * (smtpc/errors.h); the detail is in smtpc_message_errmsg() (or the errbuf
 * argument of functions without a handle). String inputs are UTF-8 and are
 * copied: the caller keeps ownership. Strings returned as `const char *` are
 * owned by the object they come from and live as long as it (or until the
 * next call that changes that field). `_new(&out)` leaves *out untouched on
 * failure; `_free(NULL)` is a no-op.
 *
 * A message is used by one thread at a time. It must not be modified while a
 * writer on it exists, and it has at most one writer at a time (callback
 * attachments are shared state). */
#ifndef SMTPC_MESSAGE_H
#define SMTPC_MESSAGE_H

#include "common.h"
#include "errors.h"
#include "session.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Addresses (RFC 5322 mailboxes and groups, RFC 6532 UTF-8, IDNA2008)
 * ====================================================================== */

typedef struct smtpc_address smtpc_address;
typedef struct smtpc_address_list smtpc_address_list;

/* Format flags for smtpc_address_format (and writer flags below). */
#define SMTPC_FORMAT_UTF8 0x2u /* raw UTF-8 allowed (RFC 6532): no encoded words, U-label domains */

/* Parses one mailbox: "a@b", "Name <a@b>", "\"Doe, J.\" <a@b>",
 * "=?utf-8?q?Zo=C3=AB?= <z@b>", "a@[192.0.2.1]", "x@bücher.example",
 * "ü@example.org". Comments are ignored; display names in RFC 2047 encoded
 * words are decoded. A UTF-8 domain is converted to its A-label (libidn2,
 * IDNA2008) for the envelope; a UTF-8 local part marks the address as
 * needing SMTPUTF8.
 * out: receives a new address (free with smtpc_address_free).
 * errbuf: if not NULL, receives the reason on failure (e.g. "more than one
 *   '@'", "unterminated quoted string", "control character (CR/LF/NUL)").
 * Errors: SMTPC_EINVAL (syntax; a group or several mailboxes), SMTPC_ENOMEM. */
SMTPC_API int smtpc_address_parse(smtpc_address **out, const char *s, char *errbuf, size_t errlen);

/* Builds an address from a display name (UTF-8, may be NULL; taken
 * literally, not parsed) and an addr-spec ("local@domain"), validated like
 * smtpc_address_parse. Errors: SMTPC_EINVAL, SMTPC_ENOMEM. */
SMTPC_API int smtpc_address_new(smtpc_address **out, const char *display_name,
                                const char *addr_spec, char *errbuf, size_t errlen);

/* A deep copy. Errors: SMTPC_ENOMEM. */
SMTPC_API int smtpc_address_dup(smtpc_address **out, const smtpc_address *a);
SMTPC_API void smtpc_address_free(smtpc_address *a);

/* The envelope form used in MAIL FROM / RCPT TO, exactly the address that was
 * validated: local part (quoted only if it must be) "@" A-label domain. Never
 * NULL. The send path must use this and nothing re-parsed. */
SMTPC_API const char *smtpc_address_envelope(const smtpc_address *a);
/* The display name (decoded UTF-8), or NULL when there is none. */
SMTPC_API const char *smtpc_address_display_name(const smtpc_address *a);
/* The local part, unquoted (UTF-8). Never NULL. */
SMTPC_API const char *smtpc_address_local_part(const smtpc_address *a);
/* The domain as written (U-label, ASCII, or "[literal]"). Never NULL. */
SMTPC_API const char *smtpc_address_domain(const smtpc_address *a);
/* The domain in ASCII (A-labels). Never NULL. */
SMTPC_API const char *smtpc_address_domain_ascii(const smtpc_address *a);
/* The name of the group this mailbox was listed in, or NULL. */
SMTPC_API const char *smtpc_address_group(const smtpc_address *a);
/* True when the envelope needs the server's SMTPUTF8 extension (a
 * non-ASCII local part). A UTF-8 domain alone does not: it is sent as an
 * A-label. */
SMTPC_API bool smtpc_address_needs_smtputf8(const smtpc_address *a);

/* The header form: `addr-spec` or `display-name <addr-spec>`, the display
 * name quoted or RFC 2047 encoded as needed (raw UTF-8 with
 * SMTPC_FORMAT_UTF8). Not folded. Returns a malloc'ed string the caller
 * frees with free(), or NULL when out of memory. parse(format(a)) gives back
 * the same address. */
SMTPC_API char *smtpc_address_format(const smtpc_address *a, unsigned flags);

/* Parses an address list (RFC 5322 address-list: mailboxes and groups, e.g.
 * "a@b, Friends: c@d, \"E\" <e@f>;"). Groups are flattened: each member
 * carries its group name (smtpc_address_group). An empty group is allowed
 * and contributes nothing; an empty list is an error.
 * Errors: SMTPC_EINVAL (with the reason and the position in errbuf),
 * SMTPC_ENOMEM. */
SMTPC_API int smtpc_address_list_parse(smtpc_address_list **out, const char *s, char *errbuf,
                                       size_t errlen);
SMTPC_API size_t smtpc_address_list_count(const smtpc_address_list *l);
/* The i-th address (owned by the list), or NULL when i is out of range. */
SMTPC_API const smtpc_address *smtpc_address_list_get(const smtpc_address_list *l, size_t i);
SMTPC_API void smtpc_address_list_free(smtpc_address_list *l);

/* ======================================================================
 * Message
 * ====================================================================== */

typedef struct smtpc_message smtpc_message;

/* Creates an empty message. Errors: SMTPC_ENOMEM. */
SMTPC_API int smtpc_message_new(smtpc_message **out);
/* Frees the message, its parts and any spool file. Callback userdata is
 * not touched. */
SMTPC_API void smtpc_message_free(smtpc_message *m);
/* The detail of the last failure on m (empty string if none). Never NULL. */
SMTPC_API const char *smtpc_message_errmsg(const smtpc_message *m);

/* From: exactly one mailbox (string form parsed as smtpc_address_parse).
 * Replaces a previous From. Errors: SMTPC_EINVAL, SMTPC_ENOMEM. */
SMTPC_API int smtpc_message_set_from(smtpc_message *m, const char *mailbox);
/* Sender: one mailbox; when set it is also the envelope sender (MAIL FROM).
 * NULL clears it. Errors: SMTPC_EINVAL, SMTPC_ENOMEM. */
SMTPC_API int smtpc_message_set_sender(smtpc_message *m, const char *mailbox);
/* Append the addresses of an address list (parsed as
 * smtpc_address_list_parse) to To, Cc, Bcc or Reply-To. On error nothing is
 * added. Bcc addresses are envelope recipients only: never written as a
 * header. Errors: SMTPC_EINVAL, SMTPC_ENOMEM. */
SMTPC_API int smtpc_message_add_to(smtpc_message *m, const char *address_list);
SMTPC_API int smtpc_message_add_cc(smtpc_message *m, const char *address_list);
SMTPC_API int smtpc_message_add_bcc(smtpc_message *m, const char *address_list);
SMTPC_API int smtpc_message_add_reply_to(smtpc_message *m, const char *address_list);
/* The same with an address object (copied). */
SMTPC_API int smtpc_message_add_to_address(smtpc_message *m, const smtpc_address *a);
SMTPC_API int smtpc_message_add_cc_address(smtpc_message *m, const smtpc_address *a);
SMTPC_API int smtpc_message_add_bcc_address(smtpc_message *m, const smtpc_address *a);

/* Subject, any UTF-8 text (CR/LF included: they are encoded, never start a
 * new header). NULL removes it. Errors: SMTPC_EINVAL (invalid UTF-8),
 * SMTPC_ENOMEM. */
SMTPC_API int smtpc_message_set_subject(smtpc_message *m, const char *subject);
/* Fixes the Date header to t (seconds since the epoch, written in the local
 * zone). By default Date is the time of the first write. */
SMTPC_API int smtpc_message_set_date(smtpc_message *m, int64_t t);
/* Fixes Message-ID ("<id@domain>" or "id@domain"). By default a unique id is
 * generated at the first write: "<random.time@from-domain>".
 * Errors: SMTPC_EINVAL (syntax, CR/LF), SMTPC_ENOMEM. */
SMTPC_API int smtpc_message_set_message_id(smtpc_message *m, const char *msgid);
/* The Message-ID (with angle brackets): the one set, or the generated one
 * once the message has been written (or sized), else NULL. */
SMTPC_API const char *smtpc_message_message_id(const smtpc_message *m);
/* In-Reply-To and References: one or more "<msg-id>" separated by spaces.
 * NULL clears. Errors: SMTPC_EINVAL, SMTPC_ENOMEM. */
SMTPC_API int smtpc_message_set_in_reply_to(smtpc_message *m, const char *msgids);
SMTPC_API int smtpc_message_set_references(smtpc_message *m, const char *msgids);

typedef enum smtpc_priority {
    SMTPC_PRIORITY_NORMAL = 0, /* no header */
    SMTPC_PRIORITY_HIGH = 1,   /* X-Priority: 1 (Highest), Importance: high */
    SMTPC_PRIORITY_LOW = 2     /* X-Priority: 5 (Lowest), Importance: low */
} smtpc_priority;
SMTPC_API int smtpc_message_set_priority(smtpc_message *m, smtpc_priority p);

/* Adds a header "name: value". name must be an RFC 5322 field name
 * (printable ASCII except ':', 1..76 octets) and not one the library writes
 * itself (From, To, Cc, Bcc, Sender, Reply-To, Subject, Date, Message-ID,
 * MIME-Version, Content-*, In-Reply-To, References). value is UTF-8 text
 * without CR or LF (non-ASCII is RFC 2047 encoded; long values folded).
 * Errors: SMTPC_EINVAL, SMTPC_ENOMEM. */
SMTPC_API int smtpc_message_add_header(smtpc_message *m, const char *name, const char *value);

/* Plain-text and HTML bodies (UTF-8; len (size_t)-1 means strlen). Line
 * ends are normalised to CRLF. With both, the message is
 * multipart/alternative. The text is copied. NULL removes.
 * Errors: SMTPC_EINVAL (invalid UTF-8), SMTPC_ENOMEM. */
SMTPC_API int smtpc_message_set_text(smtpc_message *m, const char *text, size_t len);
SMTPC_API int smtpc_message_set_html(smtpc_message *m, const char *html, size_t len);
/* An extra alternative view (e.g. "text/calendar; method=REQUEST",
 * "text/x-markdown") with its own charset (NULL: utf-8; for a non-text type
 * pass NULL and the content is base64 encoded). Views are written after the
 * text and before the HTML (more faithful last). Errors: SMTPC_EINVAL,
 * SMTPC_ENOMEM. */
SMTPC_API int smtpc_message_add_alternative(smtpc_message *m, const char *content_type,
                                            const char *charset, const void *data, size_t len);

/* Attachment options; a NULL pointer or zeroed struct means defaults. */
typedef struct smtpc_attachment_opts {
    const char *name;         /* file name shown to the reader; default: the file's base name
                                 (file), "attachment" (memory, callback) */
    const char *content_type; /* e.g. "application/pdf"; default: guessed from the name's
                                 extension, else application/octet-stream */
    bool is_inline;           /* Content-Disposition: inline (else attachment) */
    const char *content_id;   /* Content-ID without <> (inline images referenced as
                                 "cid:..."); implies is_inline */
} smtpc_attachment_opts;

/* An attachment read from path when the message is written (opened at each
 * write; its size is taken at add time and checked when written). A
 * message/rfc822 attachment (e.g. a ".eml" name) is read at once instead,
 * up to 64 MiB, since it is written unencoded.
 * Errors: SMTPC_ENOTFOUND / SMTPC_EIO (cannot stat or not a regular file),
 * SMTPC_ELIMIT, SMTPC_EINVAL, SMTPC_ENOMEM. */
SMTPC_API int smtpc_message_add_attachment_file(smtpc_message *m, const char *path,
                                                const smtpc_attachment_opts *opts);
/* An attachment from memory (copied). */
SMTPC_API int smtpc_message_add_attachment_mem(smtpc_message *m, const void *data, size_t len,
                                               const smtpc_attachment_opts *opts);
/* An attachment produced by cb when the message is written: cb(userdata,
 * buf, len) returns bytes (> 0), 0 at the end, or a negative SMTPC_E* code.
 * size is the exact length when known (it makes the message size known for
 * SIZE=; a mismatch fails the write), or -1. The callback can be read only
 * once: the first write also copies its bytes to an anonymous temporary
 * file (tmpfile(3), in $TMPDIR or /tmp) from which later writes read;
 * the file is deleted with the message. userdata is borrowed: it must stay
 * valid until the message is freed or fully written once. */
SMTPC_API int smtpc_message_add_attachment_cb(smtpc_message *m,
                                              ssize_t (*cb)(void *userdata, void *buf, size_t len),
                                              void *userdata, int64_t size,
                                              const smtpc_attachment_opts *opts);
/* An inline part (e.g. an image) the HTML refers to as "cid:<content_id>":
 * written in multipart/related with the HTML. content_type may be NULL
 * (guessed from path). */
SMTPC_API int smtpc_message_add_inline_file(smtpc_message *m, const char *path,
                                            const char *content_id, const char *content_type);
SMTPC_API int smtpc_message_add_inline_mem(smtpc_message *m, const void *data, size_t len,
                                           const char *content_id, const char *content_type);
/* An embedded message (message/rfc822 attachment) from its raw bytes (copied;
 * line ends normalised to CRLF). name may be NULL ("message.eml"). */
SMTPC_API int smtpc_message_add_message_mem(smtpc_message *m, const void *raw, size_t len,
                                            const char *name);

/* ---- envelope: what the send path gives MAIL FROM and RCPT TO ---- */

/* The envelope sender: Sender if set, else the (first) From; NULL if none.
 * Owned by m. */
SMTPC_API const char *smtpc_message_envelope_from(const smtpc_message *m);
/* The envelope recipients: To, Cc, then Bcc, duplicates removed. */
SMTPC_API size_t smtpc_message_rcpt_count(const smtpc_message *m);
SMTPC_API const char *smtpc_message_rcpt(const smtpc_message *m, size_t i);
/* True when the envelope or headers need SMTPUTF8 (a non-ASCII local part
 * in any address). The send path must fail before MAIL with
 * SMTPC_EUNSUPPORTED when the server lacks SMTPUTF8. */
SMTPC_API bool smtpc_message_needs_smtputf8(const smtpc_message *m);

/* ---- loading an existing RFC 5322 message (sendmail -t) ---- */

/* Reads the header block of a raw message from cb and keeps the rest for
 * streaming: the result is a message whose writer outputs the original
 * headers minus Bcc, then the body unchanged (line ends normalised to CRLF).
 * The envelope (smtpc_message_envelope_from / _rcpt) comes from
 * Sender/From and To/Cc/Bcc (Resent-* ignored). Headers are limited to
 * 1 MiB. The body is read from cb when written (and spooled as for
 * smtpc_message_add_attachment_cb); cb/userdata must outlive the message.
 * On the result, smtpc_message_add_to/_cc/_bcc add envelope recipients
 * (not written: the headers stay as loaded); other setters have no effect
 * on the output. Date and Message-ID are added when missing.
 * Errors: SMTPC_EINVAL (malformed header, bad address: detail in errbuf),
 * SMTPC_ELIMIT, SMTPC_ENOMEM, or cb's error. */
SMTPC_API int smtpc_message_load(smtpc_message **out,
                                 ssize_t (*cb)(void *userdata, void *buf, size_t len),
                                 void *userdata, char *errbuf, size_t errlen);
/* smtpc_message_load with flags (0 = the same):
 *   SMTPC_LOAD_NO_ENVELOPE  a message without From/Sender or without any
 *                           To/Cc/Bcc address is loaded too (then
 *                           smtpc_message_envelope_from is NULL or
 *                           smtpc_message_rcpt_count 0): the caller has the
 *                           envelope (a pickup file's X-Sender/X-Receiver lines);
 *   SMTPC_LOAD_AS_IS        Date and Message-ID are not added: the headers are
 *                           written as loaded, minus Bcc. */
#define SMTPC_LOAD_NO_ENVELOPE 0x1u
#define SMTPC_LOAD_AS_IS 0x2u
SMTPC_API int smtpc_message_load_with(smtpc_message **out,
                                      ssize_t (*cb)(void *userdata, void *buf, size_t len),
                                      void *userdata, unsigned flags, char *errbuf, size_t errlen);

/* ======================================================================
 * Writer: a pull stream of the message's bytes
 * ====================================================================== */

typedef struct smtpc_message_writer smtpc_message_writer;

#define SMTPC_WRITE_8BITMIME 0x1u /* the server offers 8BITMIME: 8bit text parts allowed */
#define SMTPC_WRITE_SMTPUTF8 0x2u /* the server offers SMTPUTF8: raw UTF-8 headers (RFC 6532) */
#define SMTPC_WRITE_NO_SPOOL 0x4u /* one-shot: callback streams are not copied to a spool
                                     file, so the message cannot be written again */

/* Prepares to write m. The first writer fixes the message's boundaries,
 * Date and Message-ID, so writing it again (with the same flags) gives the
 * same bytes. Output is CRLF only and no line exceeds 998 octets.
 * Errors: SMTPC_EINVAL (no From), SMTPC_EUNSUPPORTED (a non-ASCII local part
 * without SMTPC_WRITE_SMTPUTF8), SMTPC_EIO, SMTPC_ENOMEM; detail in
 * smtpc_message_errmsg(m). */
SMTPC_API int smtpc_message_writer_new(smtpc_message_writer **out, smtpc_message *m,
                                       unsigned flags);
/* Reads the next bytes into buf: returns the count (> 0; len 0 returns 0
 * and reads nothing), 0 at the end, or
 * a negative SMTPC_E* code (SMTPC_EIO: file error or size changed;
 * a callback's error; detail in smtpc_message_writer_errmsg). Has the
 * smtpc_read_cb signature: pass it with the writer as userdata. */
SMTPC_API ssize_t smtpc_message_writer_read(void *writer, void *buf, size_t len);
/* The exact total size in octets, or -1 when a part's size is unknown
 * (a callback without a size, first write). */
SMTPC_API int64_t smtpc_message_writer_size(const smtpc_message_writer *w);
SMTPC_API const char *smtpc_message_writer_errmsg(const smtpc_message_writer *w);
SMTPC_API void smtpc_message_writer_free(smtpc_message_writer *w);

/* ======================================================================
 * Sending a message over a session
 * ====================================================================== */

typedef struct smtpc_send_opts {
    bool all_or_nothing;     /* RSET and fail when any recipient is refused
                                (default: deliver to the accepted ones) */
    bool use_bdat;           /* BDAT (CHUNKING) when the server offers it */
    const char *dsn_ret;     /* "FULL" / "HDRS", NULL = omit */
    const char *dsn_envid;   /* ENVID, NULL = omit */
    const char *dsn_notify;  /* NOTIFY for every recipient, NULL = omit */
} smtpc_send_opts;

/* Sends m on an open session (after EHLO): the envelope comes from the
 * message (smtpc_message_envelope_from / _rcpt), and the message is written
 * to fit what the server offers: 8bit parts and BODY=8BITMIME only with
 * 8BITMIME, raw UTF-8 headers and the SMTPUTF8 parameter only when the
 * message needs SMTPUTF8 and the server offers it, SIZE= when the size is
 * known and the server has SIZE. opts may be NULL.
 * Per-recipient replies: smtpc_session_rcpt_count / _rcpt_status / _rcpt_reply.
 * Errors: SMTPC_EUNSUPPORTED before MAIL when the message needs SMTPUTF8
 * and the server lacks it (nothing is sent); SMTPC_EINVAL (no sender or no
 * recipient); the writer's errors (file vanished: SMTPC_EIO); otherwise as
 * smtpc_session_send. Detail in smtpc_session_errmsg. */
SMTPC_API int smtpc_session_send_message(smtpc_session *s, smtpc_message *m,
                                         const smtpc_send_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
