/* smtpc — DKIM signing (RFC 6376, RFC 8463) and a verifier.
 *
 *   smtpc_dkim_signer *sg;
 *   smtpc_dkim_signer_new(&sg);
 *   smtpc_dkim_signer_set_domain(sg, "example.org");
 *   smtpc_dkim_signer_add_key_file(sg, "rsa2026", "/etc/smtpc/dkim-rsa.pem");
 *   smtpc_dkim_signer_add_key_file(sg, "ed2026", "/etc/smtpc/dkim-ed.pem");
 *
 *   smtpc_dkim_sign *ctx;                      // one per message
 *   smtpc_dkim_sign_begin(sg, &ctx);
 *   smtpc_dkim_sign_update(ctx, bytes, n);     // the whole message, any split
 *   ...                                        // (or smtpc_dkim_sign_read)
 *   const char *fields; size_t len;
 *   smtpc_dkim_sign_final(ctx, &fields, &len); // "DKIM-Signature: ...\r\n" x keys
 *   // send fields, then the same message bytes again
 *   smtpc_dkim_sign_free(ctx);
 *
 * The signature must precede the message, and its body hash needs the whole
 * body: a sender streams the message twice, once through the signing
 * context and once to the server after the returned fields (the message
 * writer is deterministic; a file is read twice; standard input is spooled).
 * A context keeps the header section (at most SMTPC_DKIM_MAX_HEADER octets)
 * and a running hash of the body: its memory does not depend on the
 * message's size.
 *
 * Input line ends may be CRLF or a bare LF: the message is signed as it is
 * sent, with CRLF line ends. The signature covers the body as canonicalized
 * (never an l= length), t= is always written (the signer's clock), x= and
 * i= when set.
 *
 * Threads: configure a signer on one thread; once configured it may be used
 * by any number of contexts on any threads at once (it is only read). A
 * context is used by one thread at a time, and may be finished on another
 * thread than the one that fed it (e.g. a signing pool).
 *
 * Conventions as everywhere in smtpc: 0 or a negative SMTPC_E* code, the
 * detail in smtpc_dkim_signer_errmsg / smtpc_dkim_sign_errmsg; `_new(&out)`
 * leaves *out untouched on failure; `_free(NULL)` is a no-op. */
#ifndef SMTPC_DKIM_H
#define SMTPC_DKIM_H

#include "common.h"
#include "errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The largest header section a context accepts (SMTPC_ELIMIT beyond). */
#define SMTPC_DKIM_MAX_HEADER (1024u * 1024u)
/* The most keys (signatures) one signer holds. */
#define SMTPC_DKIM_MAX_KEYS 8

typedef enum smtpc_dkim_canon {
    SMTPC_DKIM_RELAXED = 0, /* the default for both header and body */
    SMTPC_DKIM_SIMPLE = 1
} smtpc_dkim_canon;

typedef struct smtpc_dkim_signer smtpc_dkim_signer;

/* A signer with no key, relaxed/relaxed, the default header list, no i=,
 * no x=, the system clock. Errors: SMTPC_ENOMEM. */
SMTPC_API int smtpc_dkim_signer_new(smtpc_dkim_signer **out);
/* Frees the signer and its private keys (wiped by OpenSSL). No context made
 * from it may be in use. */
SMTPC_API void smtpc_dkim_signer_free(smtpc_dkim_signer *sg);
/* The detail of the last failure on sg (empty string if none). Never NULL. */
SMTPC_API const char *smtpc_dkim_signer_errmsg(const smtpc_dkim_signer *sg);

/* Adds a private key: each key makes one DKIM-Signature field, with its
 * own selector (s=; the DNS record is "<selector>._domainkey.<domain>").
 * Accepted: RSA of 1024 to 4096 bits (PEM "RSA PRIVATE KEY" (PKCS#1) or
 * "PRIVATE KEY" (PKCS#8), signing rsa-sha256) and Ed25519 ("PRIVATE KEY",
 * PKCS#8, signing ed25519-sha256). Refused with SMTPC_EINVAL and the reason:
 * other key types and sizes, encrypted keys, public keys, malformed PEM.
 * A key file must be a regular file not accessible by group or others
 * (like any file holding a secret): otherwise SMTPC_ECONFIG.
 * Errors also: SMTPC_ENOTFOUND / SMTPC_EIO (cannot read the file),
 * SMTPC_ELIMIT (more than SMTPC_DKIM_MAX_KEYS keys, a file over 64 KiB),
 * SMTPC_ENOMEM. */
SMTPC_API int smtpc_dkim_signer_add_key_file(smtpc_dkim_signer *sg, const char *selector,
                                             const char *path);
/* The same from PEM text in memory (copied, and the copy wiped). */
SMTPC_API int smtpc_dkim_signer_add_key_pem(smtpc_dkim_signer *sg, const char *selector,
                                            const void *pem, size_t len);

/* The signing domain (d=), ASCII (an IDN in its A-label form). Required.
 * Errors: SMTPC_EINVAL (syntax), SMTPC_ENOMEM. */
SMTPC_API int smtpc_dkim_signer_set_domain(smtpc_dkim_signer *sg, const char *domain);
/* The agent or user identifier (i=), e.g. "@example.org" or
 * "news@mail.example.org": its domain must be the signing domain or a
 * subdomain of it (checked when a context begins). NULL removes it.
 * Errors: SMTPC_EINVAL, SMTPC_ENOMEM. */
SMTPC_API int smtpc_dkim_signer_set_identity(smtpc_dkim_signer *sg, const char *auid);
/* x=: signatures expire this many seconds after t=. 0 (the default) writes
 * no x=. */
SMTPC_API int smtpc_dkim_signer_set_expiry(smtpc_dkim_signer *sg, uint32_t seconds);
/* Canonicalization of the header and of the body (c=). */
SMTPC_API int smtpc_dkim_signer_set_canon(smtpc_dkim_signer *sg, smtpc_dkim_canon header,
                                          smtpc_dkim_canon body);
/* The header fields to sign, a colon-separated list of names, e.g.
 * "From:To:Subject:+Date". Every instance of a listed field present in the
 * message is signed; a name written with a leading '+' is also over-signed:
 * listed once more than it occurs, so that adding one more instance (or the
 * first one) later breaks the signature. From is always signed and
 * over-signed, whether listed or not. NULL restores the default:
 *   From, Sender, Reply-To, Subject, Date, Message-ID, To, Cc, MIME-Version,
 *   Content-Type, Content-Transfer-Encoding, Content-Language, In-Reply-To,
 *   References, List-Id, List-Help, List-Unsubscribe, List-Unsubscribe-Post,
 *   List-Subscribe, List-Post, List-Owner, List-Archive, Resent-Date,
 *   Resent-From, Resent-Sender, Resent-To, Resent-Cc, Resent-Message-ID,
 * all of them over-signed except the Resent-* ones (a forwarder adds those).
 * Errors: SMTPC_EINVAL (an invalid name, an empty list), SMTPC_ENOMEM. */
SMTPC_API int smtpc_dkim_signer_set_headers(smtpc_dkim_signer *sg, const char *names);
/* The clock for t= (seconds since the epoch): NULL restores time(). For
 * tests and reproducible output. */
SMTPC_API int smtpc_dkim_signer_set_clock(smtpc_dkim_signer *sg,
                                          int64_t (*now)(void *userdata), void *userdata);
/* A copy of sg with its own key objects, for a thread that signs a lot:
 * threads sharing one RSA key share its blinding state, under a lock;
 * each with its copy, they do not. Errors: SMTPC_EINVAL, SMTPC_ENOMEM. */
SMTPC_API int smtpc_dkim_signer_dup(const smtpc_dkim_signer *sg, smtpc_dkim_signer **out);
/* The number of keys added. */
SMTPC_API size_t smtpc_dkim_signer_key_count(const smtpc_dkim_signer *sg);
/* The algorithm key i signs with, "rsa-sha256" or "ed25519-sha256"; NULL
 * when there is no such key. */
SMTPC_API const char *smtpc_dkim_signer_key_algorithm(const smtpc_dkim_signer *sg, size_t i);
/* The text of the DNS TXT record that publishes key i (at
 * "<selector>._domainkey.<domain>"): "v=DKIM1; k=rsa; p=..." (p= the
 * SubjectPublicKeyInfo of an RSA key) or "v=DKIM1; k=ed25519; p=..." (the
 * raw 32 octets, RFC 8463), NUL-terminated in buf. Errors: SMTPC_EINVAL (no
 * such key), SMTPC_ELIMIT (buf too small: 1024 octets always do),
 * SMTPC_EIO. */
SMTPC_API int smtpc_dkim_signer_key_txt(const smtpc_dkim_signer *sg, size_t i, char *buf,
                                        size_t buflen);
/* Makes a new private key for algorithm "rsa-sha256" (bits: 1024 to 4096,
 * 0 = 2048) or "ed25519-sha256" (bits ignored), written into pem as PKCS#8
 * PEM ("PRIVATE KEY"), NUL-terminated: what smtpc_dkim_signer_add_key_pem
 * takes (8192 octets always do). The caller wipes pem after use. Errors:
 * SMTPC_EINVAL, SMTPC_ELIMIT (pem too small), SMTPC_EIO, SMTPC_ELIBRARY. */
SMTPC_API int smtpc_dkim_keygen(const char *algorithm, unsigned bits, char *pem, size_t pemlen);

/* ---- signing one message ---- */

typedef struct smtpc_dkim_sign smtpc_dkim_sign;

/* Starts signing one message with every key of sg (taking the time for t=
 * now). sg must outlive the context and not change while it exists.
 * Errors: SMTPC_ESTATE (no key or no domain), SMTPC_EINVAL (i= outside the
 * domain), SMTPC_ENOMEM; detail in smtpc_dkim_signer_errmsg (the one thing
 * written on the signer: these are configuration errors, found before a
 * signer is shared). */
SMTPC_API int smtpc_dkim_sign_begin(const smtpc_dkim_signer *sg, smtpc_dkim_sign **out);
/* Feeds the next n octets of the message (header section, blank line,
 * body), in any split. Errors: SMTPC_ELIMIT (header section too long),
 * SMTPC_EINVAL (a header line that is no field), SMTPC_ESTATE (after
 * final), SMTPC_ENOMEM. After an error the context only fails. */
SMTPC_API int smtpc_dkim_sign_update(smtpc_dkim_sign *ctx, const void *p, size_t n);
/* Feeds the whole message from a pull source until it returns 0: read has
 * the smtpc_read_cb signature, so a message writer signs as
 *   smtpc_dkim_sign_read(ctx, smtpc_message_writer_read, writer);
 * (then a second writer on the same message, same flags, gives the same
 * bytes to send after the fields). Errors: read's negative code, or
 * smtpc_dkim_sign_update's. */
SMTPC_API int smtpc_dkim_sign_read(smtpc_dkim_sign *ctx,
                                   ssize_t (*read)(void *userdata, void *buf, size_t len),
                                   void *userdata);
/* Ends the message and signs it: *fields receives the DKIM-Signature
 * fields (one per key, in the order the keys were added, folded, each
 * ending with CRLF) to put before the message, *len their length. The
 * string is owned by ctx and lives until smtpc_dkim_sign_free; it is
 * NUL-terminated. Errors: SMTPC_EINVAL (no From field), SMTPC_ESTATE
 * (called twice), SMTPC_ENOMEM, SMTPC_EIO (the crypto library failed). */
SMTPC_API int smtpc_dkim_sign_final(smtpc_dkim_sign *ctx, const char **fields, size_t *len);
SMTPC_API const char *smtpc_dkim_sign_errmsg(const smtpc_dkim_sign *ctx);
SMTPC_API void smtpc_dkim_sign_free(smtpc_dkim_sign *ctx);

/* ---- a signed message as a reader ---- */

/* A pull reader giving the DKIM-Signature fields, then the message: what a
 * sender passes where it would pass the message's own reader. Making it
 * signs: it reads the whole message from read (the first pass), then calls
 * rewind and later reads pass the message through again (the second). A
 * source without rewind (NULL) is copied during the first pass to an
 * unlinked temporary file (tmpfile(3), so TMPDIR), which the second reads:
 * memory never depends on the message's size. For a message of the
 * message API, read and rewind may be a writer's (a second writer of the
 * same message gives the same bytes).
 *   smtpc_dkim_reader *r;
 *   smtpc_dkim_reader_new(&r, sg, read, rewind, ud, err, sizeof err);
 *   smtpc_session_send(s, &env, smtpc_dkim_reader_read, r);
 *   smtpc_dkim_reader_free(r);
 * t= is the time the reader was made. The source is read on the thread
 * that makes the reader. Errors: those of smtpc_dkim_sign_begin,
 * smtpc_dkim_sign_update and smtpc_dkim_sign_final, the source's negative
 * code, SMTPC_EIO (spool file, or rewind failed); detail in errbuf. */
typedef struct smtpc_dkim_reader smtpc_dkim_reader;
SMTPC_API int smtpc_dkim_reader_new(smtpc_dkim_reader **out, const smtpc_dkim_signer *sg,
                                    ssize_t (*read)(void *userdata, void *buf, size_t len),
                                    int (*rewind)(void *userdata), void *userdata, char *errbuf,
                                    size_t errlen);
/* The smtpc_read_cb signature (reader as userdata): the fields, then the
 * message; 0 at its end; a negative code (the source's) on failure. */
SMTPC_API ssize_t smtpc_dkim_reader_read(void *reader, void *buf, size_t len);
/* Back to the start (the same fields: a retry of the same message). */
SMTPC_API int smtpc_dkim_reader_rewind(void *reader);
/* The fields and their length (e.g. to add to a declared SIZE). */
SMTPC_API const char *smtpc_dkim_reader_fields(const smtpc_dkim_reader *r, size_t *len);
SMTPC_API const char *smtpc_dkim_reader_errmsg(const smtpc_dkim_reader *r);
SMTPC_API void smtpc_dkim_reader_free(smtpc_dkim_reader *r);

/* ---- signing everything a client or a bulk sender sends ---- */

typedef struct smtpc_client smtpc_client;

/* Every message c sends (smtpc_client_send and its variants, batches,
 * asynchronous sends, and an outbox flushed through c) is signed with sg
 * at send time (a fresh t= for each attempt): a message of the message
 * API in two writer passes, a memory body in place, a callback body with
 * its rewind or through a temporary file. Pickup delivery
 * (smtpc_client_set_delivery) signs the file the same way (t= is the time
 * it is written: its relay will not sign it); outbox delivery writes an
 * unsigned file, signed when it is flushed. sg is borrowed: it must outlive c (or the next call) and
 * not change meanwhile; NULL stops signing. Errors: SMTPC_EINVAL,
 * SMTPC_EBUSY (a send is running), SMTPC_ESTATE (sg has no key or no
 * domain). */
SMTPC_API int smtpc_client_set_dkim(smtpc_client *c, const smtpc_dkim_signer *sg);

typedef struct smtpc_bulk smtpc_bulk;

/* Every message of the bulk sender b is signed with sg on a pool of
 * threads (threads: 0 = the number of CPUs online, at most 256): messages
 * are taken from the source ahead of need (a window of four per thread
 * plus one per connection), signed on the workers and handed back to the
 * loop through a file descriptor it watches, so the loop never waits for
 * a signature. A body in memory is sent as one buffer of the fields and
 * the message (SIZE= and BODY=8BITMIME as without signing); a pulled body
 * is read twice, its first pass (read, then rewind) on a worker thread
 * (without rewind: through a temporary file). The result callback sees
 * each message as the source gave it. A message that cannot be signed is
 * reported FAILED with the reason; messages still being signed when b is
 * freed are reported CANCELED then. t= is the time a worker signed it.
 * sg is borrowed until b is freed; NULL stops signing. Before the run.
 * Errors: SMTPC_EINVAL, SMTPC_ESTATE (started; or sg has no key or no
 * domain), SMTPC_ENOMEM, SMTPC_EIO. */
SMTPC_API int smtpc_bulk_set_dkim(smtpc_bulk *b, const smtpc_dkim_signer *sg, unsigned threads);

/* ---- verifying (tests, `smtpc dkim verify`) ---- */

/* Looks up the TXT record at name (e.g. "sel._domainkey.example.org", no
 * trailing dot): writes its text (the strings of the record joined) into
 * buf, NUL-terminated, and returns 0; SMTPC_ENOTFOUND when there is none;
 * another negative code for a temporary failure. */
typedef int (*smtpc_dkim_txt_cb)(void *userdata, const char *name, char *buf, size_t buflen);

typedef enum smtpc_dkim_status {
    SMTPC_DKIM_PASS = 0,
    SMTPC_DKIM_FAIL = 1,      /* body hash or signature does not match */
    SMTPC_DKIM_PERMERROR = 2, /* malformed signature, no key, key revoked or unusable */
    SMTPC_DKIM_TEMPERROR = 3  /* the key lookup failed temporarily */
} smtpc_dkim_status;

typedef struct smtpc_dkim_result {
    smtpc_dkim_status status;
    char domain[256];   /* d= */
    char selector[128]; /* s= */
    char algorithm[32]; /* a= */
    char reason[160];   /* why it did not pass (empty on pass) */
} smtpc_dkim_result;

/* Verifies every DKIM-Signature field of the message msg[0..len) (CRLF or
 * LF line ends), rsa-sha256 and ed25519-sha256, fetching keys through txt.
 * now is the time for x= (0: time()). results[0..max) receive the first
 * max signatures' outcomes in the order they appear; *count (may be NULL)
 * receives how many signatures there are. Returns 0 when the message could
 * be examined (each signature's outcome is in results), or SMTPC_EINVAL
 * (no header/body structure), SMTPC_ELIMIT (header section over
 * SMTPC_DKIM_MAX_HEADER), SMTPC_ENOMEM; detail in errbuf. */
SMTPC_API int smtpc_dkim_verify(const void *msg, size_t len, smtpc_dkim_txt_cb txt,
                                void *userdata, int64_t now, smtpc_dkim_result *results,
                                size_t max, size_t *count, char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
