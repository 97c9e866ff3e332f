/* Property tests: random subjects, display names, header values and
 * bodies (any Unicode, CR/LF inside, very long words, 10,000-char lines).
 * For every message: CRLF only, no line over 998 octets, exactly the
 * expected header fields (nothing injected), and each header decodes back
 * to its input (RFC 2047 decoder in src/mime, unfolding done here). */
#include "mime/mime.h"
#include "t.h"

#include <smtpc/message.h>

static uint64_t rs = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (uint32_t)(rs >> 11);
}

static void put_cp(smtpc__buf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | cp >> 12);
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | cp >> 18);
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    smtpc__buf_append(b, u, n);
}

/* A random UTF-8 string (no NUL). crlf: may contain CR/LF/controls. */
static char *rand_text(size_t maxlen, bool crlf)
{
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    size_t target = rnd() % (maxlen + 1);
    int style = (int)(rnd() % 8);
    while (smtpc__buf_size(&b) < target) {
        uint32_t r = rnd() % 100;
        if (style == 0 && r < 50) { /* a very long word */
            size_t n = 500 + rnd() % 2000;
            for (size_t i = 0; i < n; i++) put_cp(&b, 'a' + rnd() % 26);
        } else if (r < 45) {
            put_cp(&b, 0x21 + rnd() % 94);
        } else if (r < 60) {
            put_cp(&b, ' ');
        } else if (r < 63) {
            size_t n = 1 + rnd() % 80;
            for (size_t i = 0; i < n; i++) put_cp(&b, rnd() % 2 ? ' ' : '\t');
        } else if (r < 70) {
            smtpc__buf_append_str(&b, (const char *[]){"=?", "?=", "=?utf-8?q?x?=", "_", "=", "\"", "(", "<a@b>", ",", ":"}[rnd() % 10]);
        } else if (r < 78) {
            put_cp(&b, 0xa0 + rnd() % 0x60);
        } else if (r < 86) {
            put_cp(&b, 0x4e00 + rnd() % 0x5000);
        } else if (r < 90) {
            put_cp(&b, 0x1f300 + rnd() % 0x300);
        } else if (r < 96) {
            if (crlf) smtpc__buf_append_str(&b, (const char *[]){"\r\n", "\n", "\r", "\r\nBcc: evil@example.org\r\n", "\x01", "\x7f"}[rnd() % 6]);
        } else {
            put_cp(&b, 0x80 + rnd() % 0x780);
        }
    }
    smtpc__buf_append(&b, "", 1);
    return (char *)b.data;
}

/* Returns the unfolded value of header `name` (first occurrence) in the
 * header block, without the one space after the colon; NULL if absent. */
static char *header_value(const char *msg, const char *name)
{
    const char *end = strstr(msg, "\r\n\r\n");
    size_t nl = strlen(name);
    const char *p = msg;
    while (p && p < end) {
        if (strncmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            smtpc__buf b;
            smtpc__buf_init(&b, 0);
            for (;;) {
                const char *e = strstr(v, "\r\n");
                smtpc__buf_append(&b, v, (size_t)(e - v));
                if (e[2] == ' ' || e[2] == '\t') {
                    v = e + 2;
                    continue;
                }
                break;
            }
            smtpc__buf_append(&b, "", 1);
            char *s = (char *)b.data;
            if (s[0] == ' ') memmove(s, s + 1, strlen(s));
            return s;
        }
        p = strstr(p, "\r\n");
        if (p) p += 2;
    }
    return NULL;
}

/* Field names at line starts of the header block, joined by ','. */
static void field_names(const char *msg, char *out, size_t outsz)
{
    const char *end = strstr(msg, "\r\n\r\n");
    out[0] = 0;
    size_t o = 0;
    for (const char *p = msg; p && p <= end; p = strstr(p, "\r\n"), p = p ? p + 2 : NULL) {
        if (*p == ' ' || *p == '\t') continue;
        const char *c = strchr(p, ':');
        if (!c) break;
        o += (size_t)snprintf(out + o, outsz - o, "%.*s,", (int)(c - p), p);
        if (o >= outsz) break;
    }
}

static char *write_all(smtpc_message *m, unsigned flags, size_t *len)
{
    smtpc_message_writer *w = NULL;
    if (smtpc_message_writer_new(&w, m, flags) != 0) return NULL;
    smtpc__buf b;
    smtpc__buf_init(&b, 0);
    char tmp[4096];
    ssize_t k;
    size_t step = 1 + rnd() % sizeof tmp;
    while ((k = smtpc_message_writer_read(w, tmp, step)) > 0) smtpc__buf_append(&b, tmp, (size_t)k);
    smtpc_message_writer_free(w);
    *len = smtpc__buf_size(&b);
    smtpc__buf_append(&b, "", 1);
    return (char *)b.data;
}

static int lines_ok(const char *s, size_t n)
{
    size_t line = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            if (i + 1 >= n || s[i + 1] != '\n') return 0;
            i++;
            line = 0;
        } else if (s[i] == '\n' || ++line > 998) {
            return 0;
        }
    }
    return 1;
}

TEST(random_headers_and_bodies)
{
    for (int iter = 0; iter < 400; iter++) {
        unsigned flags = (rnd() % 4 == 0 ? SMTPC_WRITE_SMTPUTF8 : 0) | (rnd() % 3 == 0 ? SMTPC_WRITE_8BITMIME : 0);
        char *subject = rand_text(iter % 10 == 0 ? 12000 : 300, true);
        char *name = rand_text(120, false);
        char *hval = rand_text(iter % 10 == 1 ? 12000 : 200, false);
        char *body = rand_text(iter % 5 == 0 ? 30000 : 2000, true);
        if (iter % 7 == 0) { /* a 10,000-character line */
            free(body);
            body = malloc(10001);
            memset(body, 'z', 10000);
            body[10000] = 0;
        }
        smtpc_message *m = NULL;
        smtpc_message_new(&m);
        smtpc_address *from = NULL;
        char eb[256];
        int rc = smtpc_address_new(&from, name, "sender@example.org", eb, sizeof eb);
        if (rc) {
            T_FAILF("address_new: %s", eb);
            goto next;
        }
        char *ffmt = smtpc_address_format(from, 0);
        CHECK_INT(smtpc_message_set_from(m, ffmt), 0);
        free(ffmt);
        smtpc_address_free(from);
        CHECK_INT(smtpc_message_add_to(m, "to@example.org"), 0);
        CHECK_INT(smtpc_message_set_subject(m, subject), 0);
        CHECK_INT(smtpc_message_add_header(m, "X-Test", hval), 0);
        CHECK_INT(smtpc_message_set_text(m, body, (size_t)-1), 0);
        size_t n = 0;
        char *out = write_all(m, flags, &n);
        if (!out) {
            T_FAILF("write failed: %s", smtpc_message_errmsg(m));
            goto next;
        }
        if (!lines_ok(out, n)) T_FAILF("iteration %d: bare CR/LF or a line over 998 octets", iter);
        char names[512];
        field_names(out, names, sizeof names);
        CHECK_STR(names, "Date,From,To,Subject,Message-ID,X-Test,MIME-Version,Content-Type,Content-Transfer-Encoding,");
        char *sv = header_value(out, "Subject");
        char *sd = sv ? smtpc__rfc2047_decode(sv, strlen(sv)) : NULL;
        if (!sd || strcmp(sd, subject) != 0) T_FAILF("iteration %d: Subject does not decode back", iter);
        char *hv = header_value(out, "X-Test");
        char *hd = hv ? smtpc__rfc2047_decode(hv, strlen(hv)) : NULL;
        if (!hd || strcmp(hd, hval) != 0) T_FAILF("iteration %d: X-Test does not decode back", iter);
        char *fv = header_value(out, "From");
        smtpc_address *fa = NULL;
        if (!fv || smtpc_address_parse(&fa, fv, eb, sizeof eb) != 0) {
            T_FAILF("iteration %d: From does not parse: %s", iter, eb);
        } else {
            const char *dn = smtpc_address_display_name(fa);
            if (strcmp(dn ? dn : "", name) != 0) T_FAILF("iteration %d: display name differs", iter);
            smtpc_address_free(fa);
        }
        free(sv);
        free(sd);
        free(hv);
        free(hd);
        free(fv);
        free(out);
    next:
        smtpc_message_free(m);
        free(subject);
        free(name);
        free(hval);
        free(body);
        if (t_cur_failed) break;
    }
}

TEST(qp_properties)
{
    for (int iter = 0; iter < 300; iter++) {
        char *t = rand_text(3000, true);
        size_t n;
        uint8_t *c = smtpc__crlf_normalize((const uint8_t *)t, strlen(t), &n);
        smtpc__buf out;
        smtpc__buf_init(&out, 0);
        CHECK_INT(smtpc__qp_encode(&out, c, n), 0);
        /* every line <= 76, only printable ASCII, no trailing whitespace; decode == input */
        const char *s = (const char *)smtpc__bptr(&out);
        size_t len = smtpc__buf_size(&out), line = 0;
        smtpc__buf dec;
        smtpc__buf_init(&dec, 0);
        for (size_t i = 0; i < len; i++) {
            char ch = s[i];
            if (ch == '\r') {
                if (line && (s[i - 1] == ' ' || s[i - 1] == '\t')) T_FAILF("trailing whitespace");
                smtpc__buf_append(&dec, "\r\n", 2);
                i++;
                line = 0;
                continue;
            }
            if (++line > 76) T_FAILF("QP line over 76");
            if ((unsigned char)ch < 0x20 && ch != '\t') T_FAILF("control in QP output");
            if ((unsigned char)ch >= 0x7f) T_FAILF("8-bit in QP output");
            if (ch == '=') {
                if (i + 1 < len && s[i + 1] == '\r') {
                    i += 2;
                    line = 0;
                    continue;
                }
                char hx[3] = {s[i + 1], s[i + 2], 0};
                char b = (char)strtol(hx, NULL, 16);
                smtpc__buf_append(&dec, &b, 1);
                i += 2;
                line += 2;
            } else {
                smtpc__buf_append(&dec, &ch, 1);
            }
        }
        CHECK_MEM(smtpc__bptr(&dec), smtpc__buf_size(&dec), c, n);
        smtpc__buf_free(&dec);
        smtpc__buf_free(&out);
        free(c);
        free(t);
        if (t_cur_failed) break;
    }
}

int main(void)
{
    RUN(random_headers_and_bodies);
    RUN(qp_properties);
    T_DONE();
}
