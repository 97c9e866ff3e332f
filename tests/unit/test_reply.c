/* The reply parser's own interface: one reply per call, exact consumption,
 * sticky errors, limits, copies and the public accessors. */
#include "engine/reply.h"
#include "t.h"

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

int main(void)
{
    RUN(one_reply_per_call);
    RUN(sticky_error_and_reset);
    RUN(error_text_is_escaped);
    RUN(custom_limits);
    RUN(enhanced_setting);
    RUN(caps_direct);
    T_DONE();
}
