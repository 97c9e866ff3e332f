/* Internal utilities shared by every module: growable bounded buffers,
 * string helpers, monotonic time, error-message formatting, base64. */
#ifndef SMTPC_UTIL_H
#define SMTPC_UTIL_H

#include <smtpc/errors.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTPC__UNUSED(x) ((void)(x))
#define SMTPC__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- byte buffer ------------------------------------------------------
 * A growable buffer with a hard limit: data[off .. len) is live. Appending
 * past `limit` fails with SMTPC_ELIMIT and leaves the buffer unchanged. */
typedef struct smtpc__buf {
    uint8_t *data;
    size_t off;   /* start of unconsumed data */
    size_t len;   /* end of data */
    size_t cap;
    size_t limit; /* 0 = SIZE_MAX */
    bool secure;  /* smtpc__buf_init_secure: every byte wiped before release */
} smtpc__buf;

void smtpc__buf_init(smtpc__buf *b, size_t limit);
void smtpc__buf_free(smtpc__buf *b);          /* wipes nothing; see _free_secure */
void smtpc__buf_free_secure(smtpc__buf *b);   /* zeroes the memory first */
int smtpc__buf_reserve(smtpc__buf *b, size_t extra);
int smtpc__buf_append(smtpc__buf *b, const void *p, size_t n);
int smtpc__buf_append_str(smtpc__buf *b, const char *s);
/* v in decimal, without printf (one per message and column on hot paths). */
int smtpc__buf_append_u64(smtpc__buf *b, uint64_t v);
int smtpc__buf_append_int(smtpc__buf *b, int64_t v);
int smtpc__buf_printf(smtpc__buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline size_t smtpc__buf_size(const smtpc__buf *b) { return b->len - b->off; }
/* Never NULL: an empty, never-grown buffer gives a valid empty pointer
 * (NULL + 0 is undefined behaviour, and memcpy/memcmp reject NULL). */
static inline const uint8_t *smtpc__buf_ptr(const smtpc__buf *b)
{
    return b->data ? b->data + b->off : (const uint8_t *)"";
}
void smtpc__buf_consume(smtpc__buf *b, size_t n);
void smtpc__buf_reset(smtpc__buf *b);
/* A buffer for secrets (AUTH lines, SASL responses, passwords read from a
 * command): as smtpc__buf_init, and no byte it held is left behind in
 * memory it gives up or stops using: growth copies into a new block and
 * wipes the old one (realloc could leave a copy in freed memory),
 * compaction wipes the tail it vacates, consume and reset wipe what they
 * drop, free wipes the block. Stays secure after smtpc__buf_free. */
void smtpc__buf_init_secure(smtpc__buf *b, size_t limit);
/* Tests only: when set, called with each block a secure buffer releases,
 * after the wipe and before free(). */
extern void (*smtpc__buf_release_hook)(const void *p, size_t n);
/* Tests only: when set, called with every block any buffer gives back
 * (secure or not, after a secure one's wipe, before free()); growth then
 * copies instead of realloc so that the old block passes here too. */
extern void (*smtpc__buf_scan_hook)(const void *p, size_t n);

/* ---- strings ---------------------------------------------------------- */
char *smtpc__strdup(const char *s);                 /* NULL in -> NULL out */
char *smtpc__strndup(const char *s, size_t n);
/* Copies at most size-1 bytes and NUL-terminates; returns strlen(src). */
size_t smtpc__strlcpy(char *dst, const char *src, size_t size);
bool smtpc__has_crlfnul(const char *s, size_t n);   /* any CR, LF or NUL in s[0..n) */
bool smtpc__has_ctl(const char *s);                 /* any byte < 0x20 or 0x7f */
int smtpc__strcasecmp(const char *a, const char *b);
int smtpc__strncasecmp(const char *a, const char *b, size_t n);
/* Parses a non-negative decimal integer; fails on overflow, sign, junk. */
int smtpc__parse_u64(const char *s, size_t n, uint64_t *out);
/* Frees and zeroes a secret string. */
void smtpc__free_secret(char *s);
void smtpc__secure_zero(void *p, size_t n);
/* Some byte of p[0..n) has the high bit set. */
bool smtpc__has_8bit(const void *p, size_t n);

/* ---- error messages ----------------------------------------------------
 * A fixed-size per-handle message buffer: "what failed, where, the server's
 * words". Formatting truncates, never overflows. */
#define SMTPC__ERRMSG_MAX 512
typedef struct smtpc__errmsg {
    char text[SMTPC__ERRMSG_MAX];
} smtpc__errmsg;
/* Sets the message and returns code, so `return smtpc__err(&h->err, SMTPC_EINVAL, "...")`. */
int smtpc__err(smtpc__errmsg *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void smtpc__err_clear(smtpc__errmsg *e);
/* Copies s escaping control characters (\r \n \xNN) so hostile server text
 * cannot drive a terminal; always NUL-terminates. */
void smtpc__escape_into(char *dst, size_t dstsz, const char *s, size_t n);

/* ---- time --------------------------------------------------------------- */
int64_t smtpc__now_ms(void);   /* CLOCK_MONOTONIC, milliseconds */
int64_t smtpc__now_us(void);

/* ---- base64 (RFC 4648) -------------------------------------------------- */
static inline size_t smtpc__b64_encoded_len(size_t n) { return ((n + 2) / 3) * 4; }
/* Writes exactly smtpc__b64_encoded_len(n) bytes (no NUL). */
void smtpc__b64_encode(char *dst, const uint8_t *src, size_t n);
/* Strict decode: padding required where due, no whitespace, no junk.
 * dst must hold at least (n/4)*3 bytes. Returns decoded length or -1. */
long smtpc__b64_decode(uint8_t *dst, const char *src, size_t n);
/* MIME body form: lines of 76 characters, each (and the last) ended by CRLF.
 * Returns the bytes written, always smtpc__b64_lines_len(n). */
size_t smtpc__b64_lines_len(size_t n);
size_t smtpc__b64_encode_lines(char *dst, const uint8_t *src, size_t n);

#endif
