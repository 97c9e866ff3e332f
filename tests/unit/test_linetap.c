/* The message lines of a trace (util/linetap.h): lines across any split of
 * the bytes, CR LF or bare LF, a long line cut, the last line without LF. */
#include "t.h"
#include "util/linetap.h"

#include <string.h>

static char got[8][2048];
static size_t glen[8], ngot;

static void on_line(void *ud, const char *line, size_t len)
{
    (void)ud;
    if (ngot < 8) {
        memcpy(got[ngot], line, len);
        glen[ngot++] = len;
    }
}

static void feed_split(const char *s, size_t n, size_t piece)
{
    smtpc__linetap t;
    memset(&t, 0, sizeof t);
    ngot = 0;
    for (size_t i = 0; i < n; i += piece)
        smtpc__linetap_feed(&t, s + i, n - i < piece ? n - i : piece, on_line, NULL);
    smtpc__linetap_end(&t, on_line, NULL);
}

TEST(lines_any_split)
{
    static const char msg[] = "Subject: x\r\n\r\n.dot\nlast";
    for (size_t piece = 1; piece <= sizeof msg; piece++) {
        feed_split(msg, sizeof msg - 1, piece);
        CHECK_INT(ngot, 4);
        CHECK_MEM(got[0], glen[0], "Subject: x", 10);
        CHECK_INT(glen[1], 0);
        CHECK_MEM(got[2], glen[2], ".dot", 4);
        CHECK_MEM(got[3], glen[3], "last", 4); /* no LF at the end: still a line */
    }
    feed_split("a\r\n", 3, 3); /* ended with LF: no empty line after it */
    CHECK_INT(ngot, 1);
}

TEST(long_line_cut)
{
    static char big[3000];
    memset(big, 'x', sizeof big);
    big[2000] = '\n';
    memcpy(big + 2001, "next\n", 5);
    feed_split(big, 2006, 500);
    CHECK_INT(ngot, 2);
    CHECK_INT(glen[0], SMTPC__LINETAP_MAX);
    CHECK_MEM(got[1], glen[1], "next", 4);
}

int main(void)
{
    RUN(lines_any_split);
    RUN(long_line_cut);
    T_DONE();
}
