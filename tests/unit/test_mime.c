/* Message model and writer: structure, envelope, determinism, errors. */
#include "mime/mime.h"
#include "t.h"

#include <smtpc/message.h>

/* Writes m with flags into a malloc'ed NUL-terminated string; reads in
 * steps of `step` bytes to exercise every boundary of the pull interface. */
static char *write_all(smtpc_message *m, unsigned flags, size_t step, size_t *len, int64_t *size)
{
    smtpc_message_writer *w = NULL;
    if (smtpc_message_writer_new(&w, m, flags) != 0) return NULL;
    if (size) *size = smtpc_message_writer_size(w);
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    char tmp[8192];
    ssize_t k;
    while ((k = smtpc_message_writer_read(w, tmp, step)) > 0) smtpc__buf_append(&b, tmp, (size_t)k);
    smtpc_message_writer_free(w);
    if (k < 0) {
        smtpc__buf_free(&b);
        return NULL;
    }
    *len = smtpc__buf_size(&b);
    smtpc__buf_append(&b, "", 1);
    return (char *)b.data;
}

/* CRLF only, no line over 998 octets. */
static int check_lines(const char *s, size_t n)
{
    size_t line = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            if (i + 1 >= n || s[i + 1] != '\n') return 0;
            i++;
            line = 0;
            continue;
        }
        if (s[i] == '\n') return 0;
        if (++line > 998) return 0;
    }
    return 1;
}

static const char *header_block_end(const char *s)
{
    const char *e = strstr(s, "\r\n\r\n");
    return e ? e : s + strlen(s);
}

/* true when a header named name (case-sensitive, at a line start) is in the header block */
static int has_header(const char *s, const char *name)
{
    const char *end = header_block_end(s);
    size_t n = strlen(name);
    for (const char *p = s; p && p < end; p = strstr(p, "\r\n"), p = p ? p + 2 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == ':') return 1;
    return 0;
}

TEST(minimal_message)
{
    smtpc_message *m = NULL;
    CHECK_INT(smtpc_message_new(&m), 0);
    CHECK_INT(smtpc_message_set_from(m, "Alice <alice@example.org>"), 0);
    CHECK_INT(smtpc_message_add_to(m, "bob@example.com"), 0);
    CHECK_INT(smtpc_message_add_bcc(m, "hidden@example.net"), 0);
    CHECK_INT(smtpc_message_set_subject(m, "Hello"), 0);
    CHECK_INT(smtpc_message_set_text(m, "line1\nline2\n", (size_t)-1), 0);
    size_t n = 0;
    int64_t size = -2;
    char *s = write_all(m, 0, 7, &n, &size);
    CHECK(s != NULL);
    if (!s) return;
    CHECK_INT(size, (int64_t)n);
    CHECK(check_lines(s, n));
    CHECK(has_header(s, "Date"));
    CHECK(has_header(s, "Message-ID"));
    CHECK(has_header(s, "From"));
    CHECK(has_header(s, "To"));
    CHECK(!has_header(s, "Bcc"));
    CHECK(strstr(s, "hidden@") == NULL);
    CHECK(strstr(s, "Subject: Hello\r\n") != NULL);
    CHECK(strstr(s, "Content-Transfer-Encoding: 7bit\r\n\r\nline1\r\nline2\r\n") != NULL);
    CHECK(strstr(smtpc_message_message_id(m), "@example.org>") != NULL);
    /* envelope */
    CHECK_STR(smtpc_message_envelope_from(m), "alice@example.org");
    CHECK_INT(smtpc_message_rcpt_count(m), 2);
    CHECK_STR(smtpc_message_rcpt(m, 0), "bob@example.com");
    CHECK_STR(smtpc_message_rcpt(m, 1), "hidden@example.net");
    CHECK(smtpc_message_rcpt(m, 2) == NULL);
    /* same bytes the second time, whatever the read size */
    size_t n2 = 0;
    char *s2 = write_all(m, 0, 4096, &n2, NULL);
    CHECK(s2 && n2 == n && memcmp(s, s2, n) == 0);
    free(s);
    free(s2);
    smtpc_message_free(m);
}

TEST(sender_and_dedup)
{
    smtpc_message *m = NULL;
    smtpc_message_new(&m);
    smtpc_message_set_from(m, "a@example.org");
    smtpc_message_set_sender(m, "bounces@example.org");
    smtpc_message_add_to(m, "x@example.com, y@example.com");
    smtpc_message_add_cc(m, "x@example.com");
    CHECK_STR(smtpc_message_envelope_from(m), "bounces@example.org");
    CHECK_INT(smtpc_message_rcpt_count(m), 2);
    smtpc_message_free(m);
}

TEST(errors)
{
    smtpc_message *m = NULL;
    smtpc_message_new(&m);
    smtpc_message_writer *w = NULL;
    CHECK_INT(smtpc_message_writer_new(&w, m, 0), SMTPC_EINVAL); /* no From */
    CHECK(strstr(smtpc_message_errmsg(m), "From") != NULL);
    CHECK_INT(smtpc_message_set_from(m, "a@b@c"), SMTPC_EINVAL);
    CHECK(strstr(smtpc_message_errmsg(m), "more than one '@'") != NULL);
    CHECK_INT(smtpc_message_add_to(m, "ok@example.org, bad"), SMTPC_EINVAL);
    CHECK_INT(smtpc_message_rcpt_count(m), 0); /* nothing added */
    CHECK_INT(smtpc_message_add_header(m, "X-Bad Name", "v"), SMTPC_EINVAL);
    CHECK_INT(smtpc_message_add_header(m, "X-Ok", "v\r\nBcc: evil@example.org"), SMTPC_EINVAL);
    CHECK_INT(smtpc_message_add_header(m, "X-Ok", "v\nx"), SMTPC_EINVAL);
    CHECK_INT(smtpc_message_add_header(m, "Content-Type", "text/evil"), SMTPC_EINVAL);
    CHECK_INT(smtpc_message_add_header(m, "bcc", "a@b"), SMTPC_EINVAL);
    CHECK_INT(smtpc_message_add_header(m, "X-Ok", "fine"), 0);
    CHECK_INT(smtpc_message_set_subject(m, "\xc3"), SMTPC_EINVAL);
    CHECK_INT(smtpc_message_set_message_id(m, "no-at-sign"), SMTPC_EINVAL);
    CHECK_INT(smtpc_message_set_message_id(m, "<a@b>\r\nX: y"), SMTPC_EINVAL);
    CHECK_INT(smtpc_message_set_in_reply_to(m, "<a@b> junk"), SMTPC_EINVAL);
    CHECK_INT(smtpc_message_add_attachment_file(m, "/nonexistent/file", NULL), SMTPC_ENOTFOUND);
    /* a UTF-8 local part needs SMTPUTF8 */
    CHECK_INT(smtpc_message_set_from(m, "ü@example.org"), 0);
    CHECK(smtpc_message_needs_smtputf8(m));
    CHECK_INT(smtpc_message_writer_new(&w, m, 0), SMTPC_EUNSUPPORTED);
    CHECK_INT(smtpc_message_writer_new(&w, m, SMTPC_WRITE_SMTPUTF8), 0);
    smtpc_message_writer_free(w);
    smtpc_message_free(m);
    smtpc_message_free(NULL);
}

int main(void)
{
    RUN(minimal_message);
    RUN(sender_and_dedup);
    RUN(errors);
    T_DONE();
}
