/* Lines of a body for a trace (linetap.h). */
#include "util/linetap.h"

#include <string.h>

static void emit(smtpc__linetap *t, smtpc__line_fn fn, void *ud)
{
    size_t n = t->len;
    if (n && t->line[n - 1] == '\r') n--;
    fn(ud, t->line, n);
    t->len = 0;
    t->open = false;
}

void smtpc__linetap_feed(smtpc__linetap *t, const void *p, size_t n, smtpc__line_fn fn, void *ud)
{
    const char *s = p;
    while (n) {
        const char *lf = memchr(s, '\n', n);
        size_t take = lf ? (size_t)(lf - s) : n;
        size_t room = sizeof t->line - t->len;
        size_t k = take < room ? take : room; /* the rest of a long line is dropped */
        memcpy(t->line + t->len, s, k);
        t->len += k;
        t->open = true;
        if (!lf) return;
        emit(t, fn, ud);
        s = lf + 1;
        n -= take + 1;
    }
}

void smtpc__linetap_end(smtpc__linetap *t, smtpc__line_fn fn, void *ud)
{
    if (t->open) emit(t, fn, ud);
}
