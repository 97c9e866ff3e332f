/* Message model and writer: structure, envelope, determinism, errors. */
#include "mime/mime.h"
#include "t.h"

#include <smtpc/message.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

typedef struct gen {
    size_t left;
    int fail_at; /* return an error when left reaches this (-1: never) */
    int calls;
} gen;

static ssize_t gen_cb(void *ud, void *buf, size_t len)
{
    gen *g = ud;
    g->calls++;
    if (g->fail_at >= 0 && g->left <= (size_t)g->fail_at) return SMTPC_EIO;
    size_t n = len < g->left ? len : g->left;
    for (size_t i = 0; i < n; i++) ((uint8_t *)buf)[i] = (uint8_t)(g->left - i);
    g->left -= n;
    return (ssize_t)n;
}

static smtpc_message *basic(void)
{
    smtpc_message *m = NULL;
    smtpc_message_new(&m);
    smtpc_message_set_from(m, "a@example.org");
    smtpc_message_add_to(m, "b@example.org");
    smtpc_message_set_text(m, "hi", (size_t)-1);
    return m;
}

TEST(callback_spool_and_replay)
{
    smtpc_message *m = basic();
    gen g = {100000, -1, 0};
    CHECK_INT(smtpc_message_add_attachment_cb(m, gen_cb, &g, -1, NULL), 0);
    size_t n1 = 0, n2 = 0;
    int64_t size1 = 0, size2 = 0;
    char *a = write_all(m, 0, 1000, &n1, &size1);
    int calls = g.calls;
    char *b = write_all(m, 0, 333, &n2, &size2);
    CHECK(a && b);
    CHECK_INT(size1, -1);          /* unknown before the first write */
    CHECK_INT(size2, (int64_t)n2); /* known from the spool afterwards */
    CHECK(a && b && n1 == n2 && memcmp(a, b, n1) == 0);
    CHECK_INT(g.calls, calls); /* the second write read the spool, not the callback */
    free(a);
    free(b);
    smtpc_message_free(m);

    /* one-shot: without a spool the stream cannot be written twice */
    m = basic();
    gen g2 = {5000, -1, 0};
    smtpc_message_add_attachment_cb(m, gen_cb, &g2, 5000, NULL);
    a = write_all(m, SMTPC_WRITE_NO_SPOOL, 4096, &n1, NULL);
    CHECK(a != NULL);
    free(a);
    smtpc_message_writer *w = NULL;
    CHECK_INT(smtpc_message_writer_new(&w, m, 0), 0);
    char buf[65536];
    ssize_t k;
    while ((k = smtpc_message_writer_read(w, buf, sizeof buf)) > 0) {}
    CHECK_INT(k, SMTPC_ESTATE);
    CHECK(strstr(smtpc_message_writer_errmsg(w), "consumed") != NULL);
    smtpc_message_writer_free(w);
    smtpc_message_free(m);
}

TEST(callback_errors)
{
    /* an error from the callback reaches the reader */
    smtpc_message *m = basic();
    gen g = {100000, 50000, 0};
    smtpc_message_add_attachment_cb(m, gen_cb, &g, -1, NULL);
    smtpc_message_writer *w = NULL;
    CHECK_INT(smtpc_message_writer_new(&w, m, 0), 0);
    char buf[4096];
    ssize_t k;
    while ((k = smtpc_message_writer_read(w, buf, sizeof buf)) > 0) {}
    CHECK_INT(k, SMTPC_EIO);
    CHECK_INT(smtpc_message_writer_read(w, buf, sizeof buf), SMTPC_EIO); /* sticky */
    smtpc_message_writer_free(w);
    smtpc_message_free(m);

    /* a declared size that the callback does not honour fails the write */
    m = basic();
    gen g2 = {1000, -1, 0};
    smtpc_message_add_attachment_cb(m, gen_cb, &g2, 2000, NULL);
    CHECK_INT(smtpc_message_writer_new(&w, m, 0), 0);
    CHECK(smtpc_message_writer_size(w) > 2000);
    while ((k = smtpc_message_writer_read(w, buf, sizeof buf)) > 0) {}
    CHECK_INT(k, SMTPC_EIO);
    CHECK(strstr(smtpc_message_writer_errmsg(w), "expected 2000") != NULL);
    smtpc_message_writer_free(w);
    smtpc_message_free(m);
}

TEST(file_changed_size)
{
    char path[] = "/tmp/smtpc-mime-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK_INT(write(fd, "0123456789", 10), 10);
    smtpc_message *m = basic();
    CHECK_INT(smtpc_message_add_attachment_file(m, path, NULL), 0);
    CHECK_INT(write(fd, "more", 4), 4); /* grows after it was added */
    close(fd);
    smtpc_message_writer *w = NULL;
    CHECK_INT(smtpc_message_writer_new(&w, m, 0), 0);
    char buf[4096];
    ssize_t k;
    while ((k = smtpc_message_writer_read(w, buf, sizeof buf)) > 0) {}
    CHECK_INT(k, SMTPC_EIO);
    CHECK(strstr(smtpc_message_writer_errmsg(w), path) != NULL);
    smtpc_message_writer_free(w);
    smtpc_message_free(m);
    unlink(path);
}

TEST(headers_written)
{
    smtpc_message *m = basic();
    smtpc_message_set_date(m, 0);
    smtpc_message_set_message_id(m, "fixed@example.org");
    smtpc_message_set_in_reply_to(m, "<p@example.org>");
    smtpc_message_set_references(m, "<r@example.org>   <p@example.org>");
    smtpc_message_set_priority(m, SMTPC_PRIORITY_LOW);
    smtpc_message_add_reply_to(m, "Help Desk <help@example.org>");
    smtpc_message_set_sender(m, "list@example.org");
    size_t n;
    char *s = write_all(m, 0, 100, &n, NULL);
    CHECK(s != NULL);
    if (!s) return;
    CHECK(strstr(s, "Message-ID: <fixed@example.org>\r\n") != NULL);
    CHECK(strstr(s, "In-Reply-To: <p@example.org>\r\n") != NULL);
    CHECK(strstr(s, "References: <r@example.org> <p@example.org>\r\n") != NULL);
    CHECK(strstr(s, "X-Priority: 5 (Lowest)\r\nImportance: low\r\n") != NULL);
    CHECK(strstr(s, "Reply-To: Help Desk <help@example.org>\r\n") != NULL);
    CHECK(strstr(s, "Sender: list@example.org\r\n") != NULL);
    CHECK(strstr(s, "Date: Thu, 1 Jan 1970 ") != NULL || strstr(s, "Date: Wed, 31 Dec 1969 ") != NULL);
    CHECK_STR(smtpc_message_message_id(m), "<fixed@example.org>");
    free(s);
    smtpc_message_free(m);
}

TEST(type_guess_and_names)
{
    CHECK_STR(smtpc__mime_guess_type("report.PDF"), "application/pdf");
    CHECK_STR(smtpc__mime_guess_type("a.tar.gz"), "application/gzip");
    CHECK_STR(smtpc__mime_guess_type("noext"), "application/octet-stream");
    CHECK_STR(smtpc__mime_guess_type("photo.jpeg"), "image/jpeg");
    smtpc_message *m = basic();
    smtpc_attachment_opts o = {"x\r\nContent-Type: text/evil", NULL, false, NULL};
    CHECK_INT(smtpc_message_add_attachment_mem(m, "a", 1, &o), SMTPC_EINVAL);
    smtpc_attachment_opts o2 = {"a.png", NULL, false, "bad id"};
    CHECK_INT(smtpc_message_add_attachment_mem(m, "a", 1, &o2), SMTPC_EINVAL);
    smtpc_attachment_opts o3 = {"a.png", "text/plain\r\nX: y", false, NULL};
    CHECK_INT(smtpc_message_add_attachment_mem(m, "a", 1, &o3), SMTPC_EINVAL);
    smtpc_message_free(m);
}

TEST(b_words_unpadded)
{
    /* mixed 1-, 2- and 3-byte characters force B words split at odd places */
    smtpc_message *m = basic();
    smtpc__buf subj;
    smtpc__buf_init(&subj, 0);
    for (int i = 0; i < 40; i++) smtpc__buf_append_str(&subj, i % 3 ? "\xc3\xa9\xe6\x97\xa5" : "a\xc3\xa9");
    smtpc__buf_append(&subj, "", 1);
    smtpc_message_set_subject(m, (const char *)subj.data);
    size_t n;
    char *s = write_all(m, 0, 4096, &n, NULL);
    CHECK(s != NULL);
    int words = 0;
    for (const char *p = s ? strstr(s, "Subject:") : NULL; p && (p = strstr(p, "?B?")) != NULL;) {
        const char *e = strstr(p + 3, "?=");
        words++;
        bool last = strncmp(e + 2, "\r\nMessage-ID", 12) == 0;
        if (!last && e[-1] == '=') T_FAILF("padding in a non-final B word");
        p = e;
        if (last) break;
    }
    CHECK(words > 3);
    free(s);
    smtpc__buf_free(&subj);
    smtpc_message_free(m);
}

TEST(date_local_zone)
{
    char d[64];
    setenv("TZ", "ABC-1", 1); /* POSIX TZ: UTC+1, no zoneinfo needed */
    tzset();
    smtpc__rfc5322_date(d, sizeof d, 1700000000);
    CHECK_STR(d, "Tue, 14 Nov 2023 23:13:20 +0100");
    setenv("TZ", "NST+3:30", 1);
    tzset();
    smtpc__rfc5322_date(d, sizeof d, 1700000000);
    CHECK_STR(d, "Tue, 14 Nov 2023 18:43:20 -0330");
    setenv("TZ", "UTC0", 1);
    tzset();
    smtpc__rfc5322_date(d, sizeof d, 0);
    CHECK_STR(d, "Thu, 1 Jan 1970 00:00:00 +0000");
}

TEST(rfc2047_decoder)
{
    static const struct {
        const char *in, *out;
    } v[] = {
        /* RFC 2047 section 8 */
        {"=?ISO-8859-1?Q?a?=", "a"},
        {"=?ISO-8859-1?Q?a?= b", "a b"},
        {"=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=", "ab"},
        {"=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=", "ab"},
        {"=?ISO-8859-1?Q?a?= \t =?ISO-8859-1?Q?b?=", "ab"},
        {"=?ISO-8859-1?Q?a_b?=", "a b"},
        {"=?ISO-8859-1?Q?Andr=E9?= Pirard", "Andr\xc3\xa9 Pirard"},
        {"=?utf-8?B?w6k=?=", "\xc3\xa9"},
        {"=?UTF-8?b?w6k=?= x", "\xc3\xa9 x"},
        {"x  =?utf-8?q?y?=", "x  y"},
        /* left alone: unknown charset, invalid UTF-8, NUL, bad base64, not a word */
        {"=?koi8-r?Q?a?=", "=?koi8-r?Q?a?="},
        {"=?utf-8?Q?=FF?=", "=?utf-8?Q?=FF?="},
        {"=?utf-8?Q?a=00?=", "=?utf-8?Q?a=00?="},
        {"=?utf-8?B?w6k?=", "=?utf-8?B?w6k?="},
        {"a=?utf-8?Q?b?=", "a=?utf-8?Q?b?="},
        {"=?utf-8?Q?a", "=?utf-8?Q?a"},
    };
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(v); i++) {
        char *d = smtpc__rfc2047_decode(v[i].in, strlen(v[i].in));
        CHECK_STR(d, v[i].out);
        free(d);
    }
}

/* smtpc_message_load reads in growing pieces: a header block whose blank
 * line straddles the first read, one of 300 KiB over many reads, and one
 * past the 1 MiB limit (refused) all come out right. */
static char *load_and_write(const char *raw, size_t len, int *rc, size_t *outlen)
{
    t_memsrc src = {raw, len, 0};
    smtpc_message *m = NULL;
    char eb[200];
    *rc = smtpc_message_load(&m, t_mem_read, &src, eb, sizeof eb);
    if (*rc) return NULL;
    smtpc_message_writer *w = NULL;
    char *out = NULL;
    size_t n = 0, cap = 0;
    if (smtpc_message_writer_new(&w, m, 0) == 0) {
        char tmp[4096];
        ssize_t k;
        while ((k = smtpc_message_writer_read(w, tmp, sizeof tmp)) > 0) {
            if (n + (size_t)k + 1 > cap) {
                cap = (n + (size_t)k + 1) * 2;
                char *nb = realloc(out, cap);
                if (!nb) break;
                out = nb;
            }
            memcpy(out + n, tmp, (size_t)k);
            n += (size_t)k;
        }
        smtpc_message_writer_free(w);
    }
    smtpc_message_free(m);
    if (out) out[n] = 0;
    *outlen = n;
    return out;
}

TEST(load_in_pieces)
{
    static const char head[] = "From: a@example.org\r\nTo: b@example.org\r\nSubject: pieces\r\n";
    static const char tail[] = "\r\nthe body\r\n";
    size_t sizes[] = {4094, 4095, 4096, 4097, 300 * 1024, (1 << 20) + 4096};
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        size_t want = sizes[t]; /* where the blank line starts */
        size_t cap = want + sizeof tail + 100;
        char *raw = malloc(cap);
        if (!raw) return;
        size_t n = strlen(head), pads = 0;
        memcpy(raw, head, n);
        while (n < want) {
            size_t room = want - n; /* a field line of exactly room bytes, or a full one */
            size_t len = room >= 200 + 14 ? 200 : room;
            if (len < 14 && room > len) len = room;
            if (len < 14) { /* too short for a field: widen the previous one */
                memmove(raw + n - 2 + len, raw + n - 2, 2);
                memset(raw + n - 2, 'z', len);
                n += len;
                break;
            }
            int k = snprintf(raw + n, cap - n, "X-Pad-%05zu: ", pads++);
            memset(raw + n + k, 'y', len - (size_t)k - 2);
            memcpy(raw + n + len - 2, "\r\n", 2);
            n += len;
        }
        CHECK_INT(n, want);
        memcpy(raw + n, tail, sizeof tail - 1);
        n += sizeof tail - 1;
        int rc;
        size_t outlen = 0;
        char *out = load_and_write(raw, n, &rc, &outlen);
        if (want > (1 << 20)) {
            CHECK_INT(rc, SMTPC_ELIMIT);
            CHECK(out == NULL);
        } else {
            CHECK_INT(rc, 0);
            CHECK(out != NULL);
            if (out) {
                CHECK(outlen >= 10 && memcmp(out + outlen - 10, "the body\r\n", 10) == 0);
                CHECK(strstr(out, "Subject: pieces\r\n") != NULL);
                char last[32];
                snprintf(last, sizeof last, "X-Pad-%05zu: ", pads - 1);
                CHECK(strstr(out, last) != NULL);
                CHECK(strstr(out, "\r\n\r\nthe body\r\n") != NULL);
            }
        }
        free(out);
        free(raw);
    }
}

/* A reader that returns at most `piece` octets per call, as a pipe may. */
typedef struct {
    t_memsrc m;
    size_t piece;
} piece_src;

static ssize_t piece_read(void *ud, void *buf, size_t len)
{
    piece_src *s = ud;
    return t_mem_read(&s->m, buf, len < s->piece ? len : s->piece);
}

/* The blank line is found when it straddles reads of 1, 2 or 3 octets,
 * whatever its line ends (LF LF, CRLF CRLF, LF CRLF, CRLF LF); a header
 * block of 64 KiB read an octet at a time is scanned once, not once per
 * read. */
TEST(load_by_octet)
{
    static const char *const ends[] = {"\n\n", "\r\n\r\n", "\n\r\n", "\r\n\n"};
    for (size_t e = 0; e < SMTPC__ARRAY_LEN(ends); e++)
        for (size_t piece = 1; piece <= 3; piece++)
            for (size_t pad = 0; pad < 3; pad++) {
                char raw[256];
                int n = snprintf(raw, sizeof raw, "From: a@example.org\nTo: b@example.org\nSubject: %.*s%sthe body\n",
                                 (int)pad + 1, "xyz", ends[e]);
                piece_src src = {{raw, (size_t)n, 0}, piece};
                smtpc_message *m = NULL;
                char eb[200];
                CHECK_INT(smtpc_message_load(&m, piece_read, &src, eb, sizeof eb), 0);
                smtpc_message_writer *w = NULL;
                char out[1024];
                size_t len = 0;
                ssize_t k;
                CHECK_INT(smtpc_message_writer_new(&w, m, 0), 0);
                while (w && (k = smtpc_message_writer_read(w, out + len, sizeof out - 1 - len)) > 0) len += (size_t)k;
                out[len] = '\0';
                CHECK(len >= 14 && strcmp(out + len - 14, "\r\n\r\nthe body\r\n") == 0);
                smtpc_message_writer_free(w);
                smtpc_message_free(m);
            }
    size_t big = 64 * 1024;
    char *raw = malloc(big + 64);
    CHECK(raw != NULL);
    if (!raw) return;
    size_t n = (size_t)snprintf(raw, 64, "From: a@example.org\nTo: b@example.org\n");
    while (n + 100 < big) {
        n += (size_t)snprintf(raw + n, 16, "X-Pad: ");
        memset(raw + n, 'p', 80);
        n += 80;
        raw[n++] = '\n';
    }
    memcpy(raw + n, "\nbody\n", 7);
    n += 7;
    piece_src src = {{raw, n, 0}, 1};
    smtpc_message *m = NULL;
    char eb[200];
    CHECK_INT(smtpc_message_load(&m, piece_read, &src, eb, sizeof eb), 0);
    smtpc_message_free(m);
    free(raw);
}

int main(void)
{
    RUN(minimal_message);
    RUN(sender_and_dedup);
    RUN(errors);
    RUN(callback_spool_and_replay);
    RUN(callback_errors);
    RUN(load_in_pieces);
    RUN(load_by_octet);
    RUN(file_changed_size);
    RUN(headers_written);
    RUN(type_guess_and_names);
    RUN(rfc2047_decoder);
    RUN(date_local_zone);
    RUN(b_words_unpadded);
    T_DONE();
}
