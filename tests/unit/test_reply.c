/* The reply parser's own interface: one reply per call, exact consumption,
 * sticky errors, limits, copies and the public accessors. */
#include "engine/reply.h"
#include "engine/sasl.h"
#include "t.h"

#include <time.h>

static int feed_str(smtpc__reply_parser *p, const char *s, size_t *used, smtpc__reply **r,
                    smtpc__errmsg *err)
{
    return smtpc__reply_parser_feed(p, (const uint8_t *)s, strlen(s), used, r, err);
}

TEST(one_reply_per_call)
{
    smtpc__reply_parser *p = NULL;
    CHECK_INT(smtpc__reply_parser_new(&p, NULL), 0);
    smtpc__errmsg err;
    smtpc__reply *r = NULL;
    size_t used = 0;
    const char *in = "250-a\r\n250 b\r\n354 go\r\n221";
    CHECK_INT(feed_str(p, in, &used, &r, &err), 1);
    CHECK_INT(used, 14);
    CHECK_INT(smtpc_reply_code(r), 250);
    CHECK_STR(smtpc_reply_text(r), "a\nb");
    CHECK_INT(smtpc_reply_line_count(r), 2);
    CHECK(smtpc_reply_line(r, 2) == NULL);
    smtpc__reply *d = smtpc__reply_dup(r);
    smtpc__reply_free(r);
    CHECK_STR(smtpc_reply_line(d, 1), "b");
    CHECK_STR(smtpc_reply_text(d), "a\nb");
    smtpc__reply_free(d);
    r = NULL;
    CHECK_INT(feed_str(p, in + 14, &used, &r, &err), 1);
    CHECK_INT(used, 8);
    CHECK_INT(smtpc_reply_code(r), 354);
    smtpc__reply_free(r);
    r = NULL;
    CHECK(!smtpc__reply_parser_mid_reply(p));
    CHECK_INT(feed_str(p, in + 22, &used, &r, &err), 0);
    CHECK_INT(used, 3);
    CHECK(r == NULL);
    CHECK(smtpc__reply_parser_mid_reply(p));
    CHECK_INT(feed_str(p, " bye\n", &used, &r, &err), 1);
    CHECK_INT(smtpc_reply_code(r), 221);
    CHECK_STR(smtpc_reply_text(r), "bye");
    smtpc__reply_free(r);
    smtpc__reply_parser_free(p);
}

TEST(sticky_error_and_reset)
{
    smtpc__reply_parser *p = NULL;
    CHECK_INT(smtpc__reply_parser_new(&p, NULL), 0);
    smtpc__errmsg err;
    smtpc__reply *r = NULL;
    size_t used = 0;
    CHECK_INT(feed_str(p, "250-a\r\n251 b\r\n", &used, &r, &err), SMTPC_EPROTO);
    CHECK(strstr(err.text, "251 b") != NULL);
    CHECK_INT(feed_str(p, "250 ok\r\n", &used, &r, &err), SMTPC_EPROTO);
    CHECK_INT(used, 0);
    smtpc__reply_parser_reset(p);
    CHECK_INT(feed_str(p, "250 ok\r\n", &used, &r, &err), 1);
    smtpc__reply_free(r);
    smtpc__reply_parser_free(p);
}

TEST(error_text_is_escaped)
{
    smtpc__reply_parser *p = NULL;
    CHECK_INT(smtpc__reply_parser_new(&p, NULL), 0);
    smtpc__errmsg err;
    smtpc__reply *r = NULL;
    size_t used = 0;
    CHECK_INT(feed_str(p, "2\x1b[2J0 x\r\n", &used, &r, &err), SMTPC_EPROTO);
    CHECK(strchr(err.text, '\x1b') == NULL);
    smtpc__reply_parser_free(p);
}

TEST(custom_limits)
{
    smtpc__reply_limits lim = {10, 30, 3};
    smtpc__reply_parser *p = NULL;
    CHECK_INT(smtpc__reply_parser_new(&p, &lim), 0);
    smtpc__errmsg err;
    smtpc__reply *r = NULL;
    size_t used = 0;
    CHECK_INT(feed_str(p, "250 123456\r\n", &used, &r, &err), 1); /* 10 octets */
    smtpc__reply_free(r);
    r = NULL;
    CHECK_INT(feed_str(p, "250 1234567\r\n", &used, &r, &err), SMTPC_ELIMIT);
    smtpc__reply_parser_reset(p);
    CHECK_INT(feed_str(p, "250-a\r\n250-b\r\n250-c\r\n250 d\r\n", &used, &r, &err), SMTPC_ELIMIT);
    CHECK(strstr(err.text, "3 lines") != NULL);
    smtpc__reply_parser_reset(p);
    CHECK_INT(feed_str(p, "250-123456\r\n250-123456\r\n250-123456\r\n", &used, &r, &err),
              SMTPC_ELIMIT);
    smtpc__reply_parser_free(p);
}

TEST(enhanced_setting)
{
    smtpc__reply_parser *p = NULL;
    CHECK_INT(smtpc__reply_parser_new(&p, NULL), 0);
    smtpc__errmsg err;
    smtpc__reply *r = NULL;
    size_t used = 0;
    smtpc__reply_parser_set_enhanced(p, true);
    CHECK_INT(feed_str(p, "354 2.0.0 go\r\n", &used, &r, &err), 1);
    CHECK_STR(smtpc_reply_enhanced(r), "2.0.0");
    CHECK_STR(smtpc_reply_text(r), "go");
    smtpc__reply_free(r);
    smtpc__reply_parser_free(p);
    CHECK_INT(smtpc_reply_code(NULL), 0);
    CHECK_STR(smtpc_reply_enhanced(NULL), "");
    CHECK_STR(smtpc_reply_text(NULL), "");
    CHECK(smtpc_reply_line(NULL, 0) == NULL);
    smtpc__reply_free(NULL);
    smtpc__reply_parser_free(NULL);
}

TEST(caps_direct)
{
    smtpc__reply_parser *p = NULL;
    CHECK_INT(smtpc__reply_parser_new(&p, NULL), 0);
    smtpc__errmsg err;
    smtpc__reply *r = NULL;
    size_t used = 0;
    CHECK_INT(feed_str(p, "250-mx\r\n250-size 42\r\n250-auth plain PLAIN Login\r\n250 x-unknown a b\r\n",
                       &used, &r, &err), 1);
    smtpc__caps c = {0};
    CHECK_INT(smtpc__caps_parse(&c, r, &err), 0);
    CHECK(c.esmtp);
    CHECK(c.flags & SMTPC_EXT_SIZE);
    CHECK(c.size_max == 42);
    CHECK_INT(c.nauth, 2);
    CHECK_STR(c.auth[0], "PLAIN");
    CHECK_STR(c.auth[1], "LOGIN");
    CHECK(c.auth[2] == NULL);
    CHECK(smtpc__caps_has_auth(&c, "login"));
    CHECK(!smtpc__caps_has_auth(&c, "CRAM-MD5"));
    CHECK_STR(smtpc__caps_param(&c, "X-UNKNOWN"), "a b");
    CHECK(smtpc__caps_param(&c, "mx") == NULL); /* the greeting line is no keyword */
    CHECK_INT(c.nlines, 3);
    smtpc__caps_clear(&c);
    CHECK(c.flags == 0 && c.auth == NULL);
    smtpc__reply_free(r);
    smtpc__reply_parser_free(p);
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The whole of in as one reply (default limits); NULL on failure. */
static smtpc__reply *one_reply(const smtpc__buf *in)
{
    smtpc__reply_parser *p = NULL;
    CHECK_INT(smtpc__reply_parser_new(&p, NULL), 0);
    smtpc__errmsg err;
    smtpc__reply *r = NULL;
    size_t used = 0;
    CHECK_INT(smtpc__reply_parser_feed(p, smtpc__buf_ptr(in), smtpc__buf_size(in), &used, &r, &err), 1);
    CHECK_INT(used, smtpc__buf_size(in));
    smtpc__reply_parser_free(p);
    return r;
}

/* A hostile EHLO reply at the parser's default limits (64 KiB, 4 KiB lines):
 * "250-AUTH" lines full of distinct short tokens (~13,600 of them). Parsing
 * it used to compare every token with every one kept before (0.63 s of CPU,
 * stalling every connection of a bulk loop); it must be linear. The bound
 * is generous (a loaded machine, sanitizers): the point is the class. */
TEST(caps_many_auth_tokens_linear)
{
    smtpc__buf in;
    smtpc__buf_init(&in, 1 << 17);
    smtpc__buf_printf(&in, "250-mx.example\r\n");
    size_t budget = 65536 - 16 - 32, ntok = 0, line = 0; /* greeting, last line */
    static const char a36[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    smtpc__buf_printf(&in, "250-AUTH");
    line = 8;
    for (size_t k = 0;; k++) {
        char tok[8];
        size_t n = 0, v = k;
        do {
            tok[n++] = a36[v % 36];
            v /= 36;
        } while (v && n < 7);
        if (line + 1 + n + 2 > 4000) { /* next line */
            if (budget < line + 2 + 16) break;
            budget -= line + 2;
            smtpc__buf_printf(&in, "\r\n250-AUTH");
            line = 8;
        }
        if (budget < line + 1 + n + 2 + 16) break;
        smtpc__buf_printf(&in, " %.*s", (int)n, tok);
        line += 1 + n;
        ntok++;
    }
    smtpc__buf_printf(&in, "\r\n250 AUTH PLAIN SCRAM-SHA-256\r\n");
    CHECK(ntok > 13000);
    smtpc__reply *r = one_reply(&in);
    smtpc__errmsg err;
    smtpc__caps c = {0};
    double t0 = cpu_ms();
    CHECK_INT(smtpc__caps_parse(&c, r, &err), 0);
    double ms = cpu_ms() - t0;
    printf("caps_parse: %zu AUTH tokens, %zu bytes: %.2f ms CPU\n", ntok, smtpc__buf_size(&in), ms);
    CHECK(ms < 50);
    CHECK(c.flags & SMTPC_EXT_AUTH);
    /* the mechanisms the library implements are never crowded out */
    CHECK(smtpc__caps_has_auth(&c, "PLAIN"));
    CHECK(smtpc__caps_has_auth(&c, "SCRAM-SHA-256"));
    CHECK(c.auth[c.nauth] == NULL);
    CHECK(c.nauth <= SMTPC__SASL_MECH_COUNT + SMTPC__CAPS_MAX_OTHER_AUTH);
    smtpc__caps_clear(&c);
    smtpc__reply_free(r);
    smtpc__buf_free(&in);
}

/* What the AUTH list keeps: implemented mechanisms once each, other names
 * up to the cap, nothing longer than a mechanism name can be (20). */
TEST(caps_auth_list_bounds)
{
    smtpc__buf in;
    smtpc__buf_init(&in, 1 << 14);
    smtpc__buf_printf(&in, "250-mx\r\n250-AUTH GSSAPI X-ABCDEFGHIJKLMNOPQRSTU NTLM gssapi");
    for (int i = 0; i < 100; i++) smtpc__buf_printf(&in, " X%d", i);
    smtpc__buf_printf(&in, "\r\n250 AUTH=login PLAIN Login CRAM-MD5\r\n");
    smtpc__reply *r = one_reply(&in);
    smtpc__errmsg err;
    smtpc__caps c = {0};
    CHECK_INT(smtpc__caps_parse(&c, r, &err), 0);
    CHECK_INT(c.nauth, SMTPC__CAPS_MAX_OTHER_AUTH + 3);
    CHECK_STR(c.auth[0], "GSSAPI");
    CHECK_STR(c.auth[1], "NTLM");
    CHECK_STR(c.auth[2], "X0");
    CHECK(!smtpc__caps_has_auth(&c, "X-ABCDEFGHIJKLMNOPQRSTU")); /* 21 characters */
    CHECK(smtpc__caps_has_auth(&c, "X29"));
    CHECK(!smtpc__caps_has_auth(&c, "X30"));
    CHECK(smtpc__caps_has_auth(&c, "LOGIN"));
    CHECK(smtpc__caps_has_auth(&c, "PLAIN"));
    CHECK(smtpc__caps_has_auth(&c, "CRAM-MD5"));
    CHECK_STR(c.auth[c.nauth - 3], "LOGIN");
    CHECK(c.auth[c.nauth] == NULL);
    smtpc__caps_clear(&c);
    smtpc__reply_free(r);
    smtpc__buf_free(&in);
}

/* Feeds all of in (split once at cut) through one mode; the replies (and the
 * first error) are written to out as "code|enhanced|text|lines\n". */
static void run_mode(bool view, bool enhanced, const smtpc__reply_limits *lim, const char *in,
                     size_t cut, smtpc__buf *out)
{
    smtpc__reply_parser *p = NULL;
    CHECK_INT(smtpc__reply_parser_new(&p, lim), 0);
    smtpc__reply_parser_set_enhanced(p, enhanced);
    size_t len = strlen(in), chunks[2][2] = {{0, cut}, {cut, len - cut}};
    for (int k = 0; k < 2; k++) {
        const uint8_t *d = (const uint8_t *)in + chunks[k][0];
        size_t n = chunks[k][1];
        while (n) {
            size_t used = 0;
            smtpc__errmsg err;
            smtpc__reply *own = NULL;
            const smtpc__reply *r = NULL;
            int rc = view ? smtpc__reply_parser_feed_view(p, d, n, &used, &r, &err)
                          : smtpc__reply_parser_feed(p, d, n, &used, &own, &err);
            if (!view) r = own;
            CHECK(used <= n);
            d += used;
            n -= used;
            if (rc < 0) {
                smtpc__buf_printf(out, "error %d %s\n", rc, err.text);
                goto done;
            }
            if (rc == 0) break;
            smtpc__buf_printf(out, "%d|%s|%s|%zu", smtpc_reply_code(r), smtpc_reply_enhanced(r),
                              smtpc_reply_text(r), smtpc_reply_line_count(r));
            for (size_t i = 0; i < smtpc_reply_line_count(r); i++)
                smtpc__buf_printf(out, "|%s", smtpc_reply_line(r, i));
            smtpc__buf_printf(out, "\n");
            smtpc__reply_free(own);
        }
    }
done:
    smtpc__reply_parser_free(p);
}

TEST(feed_view_matches_feed_at_every_split)
{
    static const char *const cases[] = {
        "220 mx.example ESMTP\r\n250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
        "250 ENHANCEDSTATUSCODES\r\n250 2.1.0 ok\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n"
        "354 go\r\n250\r\n221 2.0.0 bye\n",
        "250-a\r\n250-b\r\n250 c\r\n250-1234567890\r\n250 x\r\n",   /* then: line too long */
        "250-a\r\n251 b\r\n",                                       /* code changes */
        "250-a\r\n250-b\r\n250-c\r\n250 d\r\n",                     /* too many lines */
        "2x0 bad\r\n",
    };
    smtpc__reply_limits lim = {12, 64, 3};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        for (int enh = 0; enh < 2; enh++) {
            size_t len = strlen(cases[c]);
            for (size_t cut = 0; cut <= len; cut++) {
                smtpc__buf a, b;
                smtpc__buf_init(&a, 1 << 16);
                smtpc__buf_init(&b, 1 << 16);
                run_mode(false, enh, c ? &lim : NULL, cases[c], cut, &a);
                run_mode(true, enh, c ? &lim : NULL, cases[c], cut, &b);
                CHECK(smtpc__buf_size(&a) > 0);
                CHECK_MEM(smtpc__buf_ptr(&b), smtpc__buf_size(&b), smtpc__buf_ptr(&a),
                          smtpc__buf_size(&a));
                smtpc__buf_free(&a);
                smtpc__buf_free(&b);
            }
        }
    }
}

TEST(feed_view_reuses_and_refuses_mixing)
{
    smtpc__reply_parser *p = NULL;
    CHECK_INT(smtpc__reply_parser_new(&p, NULL), 0);
    smtpc__errmsg err;
    const smtpc__reply *r = NULL;
    smtpc__reply *own = NULL;
    size_t used = 0;
    const uint8_t *in = (const uint8_t *)"250-a\r\n250 b\r\n354 go\r\n";
    CHECK_INT(smtpc__reply_parser_feed_view(p, in, 14, &used, &r, &err), 1);
    const smtpc__reply *first = r;
    CHECK_STR(smtpc_reply_text(r), "a\nb");
    CHECK_INT(smtpc__reply_parser_feed_view(p, in + 14, 8, &used, &r, &err), 1);
    CHECK(r == first); /* the same storage */
    CHECK_STR(smtpc_reply_text(r), "go");
    /* a whole reply by feed after view replies is fine; mid-reply is not */
    CHECK_INT(smtpc__reply_parser_feed(p, in + 14, 8, &used, &own, &err), 1);
    CHECK_STR(smtpc_reply_text(own), "go");
    smtpc__reply_free(own);
    CHECK_INT(smtpc__reply_parser_feed_view(p, in, 7, &used, &r, &err), 0);
    CHECK_INT(smtpc__reply_parser_feed(p, in + 7, 7, &used, &own, &err), SMTPC_EINVAL);
    CHECK_INT(smtpc__reply_parser_feed_view(p, in + 7, 7, &used, &r, &err), 1);
    CHECK_STR(smtpc_reply_text(r), "a\nb");
    smtpc__reply_parser_free(p);
}

int main(void)
{
    RUN(one_reply_per_call);
    RUN(sticky_error_and_reset);
    RUN(error_text_is_escaped);
    RUN(custom_limits);
    RUN(enhanced_setting);
    RUN(caps_direct);
    RUN(caps_many_auth_tokens_linear);
    RUN(caps_auth_list_bounds);
    RUN(feed_view_matches_feed_at_every_split);
    RUN(feed_view_reuses_and_refuses_mixing);
    T_DONE();
}
