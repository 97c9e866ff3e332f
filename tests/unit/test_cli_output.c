/* The CLI's pure pieces: SMTPC_E* -> sysexits mapping, the JSON string
 * escaper, queue-id extraction, hints. They live in
 * cli/ (not the library), so the sources are compiled into this test. */
#include "t.h"

#include "../../cli/output.c"
#include "../../cli/args.c"
#include "../../cli/hints.c"
#include "../../cli/progress.c"
#include "../../cli/util.c"

TEST(exit_codes)
{
    CHECK_INT(cli_exit_code(SMTPC_OK), 0);
    CHECK_INT(cli_exit_code(SMTPC_EINVAL), 65);
    CHECK_INT(cli_exit_code(SMTPC_ELIMIT), 65);
    CHECK_INT(cli_exit_code(SMTPC_ENOHOST), 68);
    CHECK_INT(cli_exit_code(SMTPC_EPERMFAIL), 69);
    CHECK_INT(cli_exit_code(SMTPC_EUNSUPPORTED), 69);
    CHECK_INT(cli_exit_code(SMTPC_ESTATE), 70);
    CHECK_INT(cli_exit_code(-9999), 70);
    CHECK_INT(cli_exit_code(SMTPC_EIO), 74);
    CHECK_INT(cli_exit_code(SMTPC_ETEMPFAIL), 75);
    CHECK_INT(cli_exit_code(SMTPC_ENETWORK), 75);
    CHECK_INT(cli_exit_code(SMTPC_ETIMEDOUT), 75);
    CHECK_INT(cli_exit_code(SMTPC_ECLOSED), 75);
    CHECK_INT(cli_exit_code(SMTPC_EUNKNOWN), 75);
    CHECK_INT(cli_exit_code(SMTPC_EPROTO), 76);
    CHECK_INT(cli_exit_code(SMTPC_ETLS), 76);
    CHECK_INT(cli_exit_code(SMTPC_EAUTH), 77);
    CHECK_INT(cli_exit_code(SMTPC_ECONFIG), 78);
    /* ELIMIT from the reply parser is the server's protocol error */
    CHECK_INT(cli_exit_code(cli_err_origin(SMTPC_ELIMIT, "server reply line longer than 2048 octets")), 76);
    CHECK_INT(cli_exit_code(cli_err_origin(SMTPC_ELIMIT, "message body line longer than 998 octets")), 65);
    CHECK_STR(cli_error_class_name(SMTPC_ETEMPFAIL), "transient");
    CHECK_STR(cli_error_class_name(SMTPC_EPERMFAIL), "permanent");
}

static void json_is(const char *in, const char *want)
{
    cli_buf b;
    cli_buf_init(&b, 0);
    cli_json_str(&b, in);
    cli_buf_append(&b, "", 1);
    if (strcmp((const char *)cli_buf_ptr(&b), want) != 0)
        T_FAILF("json(%s) = %s, want %s", in ? in : "NULL", (const char *)cli_buf_ptr(&b), want);
    cli_buf_free(&b);
}

TEST(json_escape)
{
    json_is(NULL, "null");
    json_is("", "\"\"");
    json_is("a\"b\\c", "\"a\\\"b\\\\c\"");
    json_is("l1\r\nl2\t\x01\x1b[31m\x7f", "\"l1\\r\\nl2\\t\\u0001\\u001b[31m\\u007f\"");
    json_is("h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    /* invalid UTF-8: lone continuation, truncated sequence, overlong, surrogate */
    json_is("a\x80z", "\"a\\ufffdz\"");
    json_is("a\xe2\x82", "\"a\\ufffd\\ufffd\"");
    json_is("\xc0\xaf", "\"\\ufffd\\ufffd\"");
    json_is("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");
    json_is("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
    /* C1 controls (U+0080..U+009F): valid UTF-8, but U+009B is a terminal's CSI */
    json_is("a\xc2\x9b" "31mz\xc2\x80\xc2\x9f\xc2\xa0", "\"a\\u009b31mz\\u0080\\u009f\xc2\xa0\"");
}

static void esc_is(const char *in, size_t n, size_t dstsz, const char *want)
{
    char out[256];
    cli_escape_into(out, dstsz, in, n ? n : strlen(in)); /* 0: all of in */
    if (strcmp(out, want) != 0) T_FAILF("escape(%s) = %s, want %s", in, out, want);
}

/* The terminal: C0, DEL, C1 and bytes that are not UTF-8 never reach it as is. */
TEST(text_escape)
{
    esc_is("ok h\xc3\xa9 \xe2\x82\xac", 0, 256, "ok h\xc3\xa9 \xe2\x82\xac");
    esc_is("a\r\n\x1b[2J\x7f", 0, 256, "a\\r\\n\\x1b[2J\\x7f");
    esc_is("x\xc2\x9b" "31m\xc2\x85", 0, 256, "x\\u009b31m\\u0085");
    esc_is("\xc2\xa0", 0, 256, "\xc2\xa0"); /* U+00A0 is text */
    esc_is("\x9b\xc0\xaf\xe2\x82", 0, 256, "\\x9b\\xc0\\xaf\\xe2\\x82");
    /* a sequence cut by n is not UTF-8: the bytes before n only */
    esc_is("\xc3\xa9", 1, 256, "\\xc3");
    /* what does not fit is left out whole, never half an escape */
    esc_is("ab\xc2\x9b", 0, 5, "ab");
}

TEST(queue_id)
{
    char *q = cli_queue_id_from_text("2.0.0 Ok: queued as 4ABC12DEF.");
    CHECK_STR(q, "4ABC12DEF");
    free(q);
    q = cli_queue_id_from_text("OK id=1qXyZ-0001Ab-Cd");
    CHECK_STR(q, "1qXyZ-0001Ab-Cd");
    free(q);
    CHECK(cli_queue_id_from_text("Message accepted for delivery") == NULL);
    CHECK(cli_queue_id_from_text("guid=abc") == NULL);
    CHECK(cli_queue_id_from_text(NULL) == NULL);
}

/* The hints table: the right advice for each class, never --insecure. */
static const char *hint_for(int err, int code, const char *enh, const char *msg)
{
    static cli_result r;
    static cli_rcpt x;
    memset(&r, 0, sizeof r);
    memset(&x, 0, sizeof x);
    r.err = err;
    cli_strlcpy(r.errmsg, msg, sizeof r.errmsg);
    x.address = "b@example.org";
    x.code = code;
    cli_strlcpy(x.enhanced, enh, sizeof x.enhanced);
    r.rcpts = &x;
    r.nrcpts = 1;
    const char *h = cli_hint(&r);
    return h ? h : "";
}

TEST(hints)
{
    CHECK(strstr(hint_for(SMTPC_EAUTH, 0, "", "AUTH: server replied 535 5.7.8 bad"), "user name and password"));
    CHECK(strstr(hint_for(SMTPC_EAUTH, 0, "", "AUTH: server replied 535 5.7.8 bad"), "--auth LOGIN"));
    CHECK(strstr(hint_for(SMTPC_ENETWORK, 0, "", "connect to 127.0.0.1:1: Connection refused"), "--tls mode"));
    CHECK(strstr(hint_for(SMTPC_ETLS, 0, "", "certificate verify failed: unable to get local issuer certificate"), "--ca-file"));
    CHECK(strstr(hint_for(SMTPC_ETLS, 0, "", "the server does not offer STARTTLS"), "--tls none only if you trust"));
    CHECK(strstr(hint_for(SMTPC_ETEMPFAIL, 450, "4.2.1", "1 of 1 recipient refused"), "try again later"));
    CHECK(strstr(hint_for(SMTPC_EPERMFAIL, 550, "5.1.1", "1 of 1 recipient refused"), "check the recipient address"));
    CHECK(strstr(hint_for(SMTPC_ETIMEDOUT, 0, "", "greeting timed out after 1 s"), "--timeout"));
    CHECK(strstr(hint_for(SMTPC_ENOHOST, 0, "", "cannot resolve x.invalid"), "server name"));
    CHECK(strstr(hint_for(SMTPC_EUNKNOWN, 0, "", "connection lost after the end of data"), "may have been delivered"));
    int errs[] = {SMTPC_EAUTH, SMTPC_ETLS, SMTPC_ENETWORK, SMTPC_ETIMEDOUT, SMTPC_EPERMFAIL, SMTPC_EPROTO};
    for (size_t i = 0; i < CLI_ARRAY_LEN(errs); i++)
        CHECK(!strstr(hint_for(errs[i], 0, "", "certificate verify failed"), "--insecure"));
    /* no ENHANCEDSTATUSCODES announced: the code at the start of the text counts */
    {
        cli_result r;
        cli_rcpt x;
        memset(&r, 0, sizeof r);
        memset(&x, 0, sizeof x);
        char text[] = "5.1.1 <b@example.org>: no such user";
        x.address = "b@example.org";
        x.code = 550;
        x.text = text;
        r.err = SMTPC_EPERMFAIL;
        r.rcpts = &x;
        r.nrcpts = 1;
        CHECK(cli_hint(&r) && strstr(cli_hint(&r), "check the recipient address"));
        char text2[] = "5.1 short";
        x.text = text2;
        CHECK(cli_hint(&r) && strstr(cli_hint(&r), "permanent refusal"));
    }
    cli_result ok;
    memset(&ok, 0, sizeof ok);
    ok.ok = true;
    CHECK(cli_hint(&ok) == NULL);
}

int main(void)
{
    RUN(exit_codes);
    RUN(json_escape);
    RUN(text_escape);
    RUN(queue_id);
    RUN(hints);
    T_DONE();
}
