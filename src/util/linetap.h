/* The message lines of a protocol trace: a body's bytes, in pieces of any
 * size, cut into lines (without CR LF) for a trace callback. Used by the
 * client and the bulk driver alike, so both show a body the same way. */
#ifndef SMTPC_UTIL_LINETAP_H
#define SMTPC_UTIL_LINETAP_H

#include <stdbool.h>
#include <stddef.h>

/* A longer line reaches the callback cut to this many bytes. */
#define SMTPC__LINETAP_MAX 1024

typedef void (*smtpc__line_fn)(void *ud, const char *line, size_t len);

typedef struct smtpc__linetap {
    size_t len;
    bool open; /* bytes of a line not ended yet were fed (len may be 0: a cut line) */
    char line[SMTPC__LINETAP_MAX];
} smtpc__linetap;

/* Calls fn once per line ended in p[0..n) (LF, with a CR before it dropped). */
void smtpc__linetap_feed(smtpc__linetap *t, const void *p, size_t n, smtpc__line_fn fn, void *ud);
/* The end of the body: a last line without LF, then the tap is empty again. */
void smtpc__linetap_end(smtpc__linetap *t, smtpc__line_fn fn, void *ud);

#endif
