/* Property tests of the body encoder: thousands of random bodies made of the
 * dangerous bytes (CR, LF, '.'), written in random pieces. */
#include "engine/engine.h"
#include "t.h"

#include <stdint.h>

/* CHECK_MEM without handing memcmp a NULL pointer for an empty buffer */
#define CHECK_BYTES(a, al, b, bl)                                                          \
    do {                                                                                   \
        size_t cb_al = (al), cb_bl = (bl);                                                 \
        if (cb_al == 0 || cb_bl == 0) CHECK_INT(cb_al, cb_bl);                             \
        else CHECK_MEM(a, cb_al, b, cb_bl);                                                \
    } while (0)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    /* xorshift64*: deterministic, so a failure reproduces */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

/* A random body: short lines of the bytes that matter, now and then a
 * known-nasty sequence. */
static size_t gen_body(uint8_t *b, size_t max)
{
    static const char *const nasty[] = {"\n.\n", "\r.\r", "\r\n.\r\n", ".\r\n", "\r\n.", "..",
                                        "\r\r\n", "\n\r", ".\n", "\r.\n", "\n.\r\n"};
    size_t n = rnd() % max;
    size_t i = 0, line = 0;
    while (i < n) {
        if (rnd() % 8 == 0) {
            const char *s = nasty[rnd() % SMTPC__ARRAY_LEN(nasty)];
            size_t l = strlen(s);
            if (i + l > n) break;
            memcpy(b + i, s, l);
            i += l;
            line = 0;
            continue;
        }
        static const char alpha[] = "ab.\r\n \x80\x00";
        uint8_t c = (uint8_t)alpha[rnd() % (sizeof alpha - 1)];
        if (c != '\r' && c != '\n' && line >= 990) c = '\n';
        line = (c == '\r' || c == '\n') ? 0 : line + 1;
        b[i++] = c;
    }
    return i;
}

/* The input with every CR, LF or CRLF as CRLF, and a final CRLF if missing. */
static size_t normalise(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\r' || in[i] == '\n') {
            out[o++] = '\r';
            out[o++] = '\n';
            if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n') i++;
        } else {
            out[o++] = in[i];
        }
    }
    if (o && !(o >= 2 && out[o - 2] == '\r' && out[o - 1] == '\n')) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    return o;
}

/* Writes in in random pieces through the encoder into out. */
static int encode(bool stuff, const uint8_t *in, size_t n, smtpc__buf *out)
{
    smtpc__dotstuff d;
    smtpc__dotstuff_init(&d);
    size_t i = 0;
    while (i < n) {
        size_t k = 1 + rnd() % 7;
        if (rnd() % 4 == 0) k = rnd() % 200;
        if (k > n - i) k = n - i;
        int rc = smtpc__dotstuff_write(&d, stuff, in + i, k, out);
        if (rc) return rc;
        i += k;
    }
    return smtpc__dotstuff_finish(&d, stuff, out);
}

static bool wire_ok(const uint8_t *w, size_t n, bool stuffed, char *why, size_t whysz)
{
    size_t line = 0;
    bool at_start = true, dotted = false;
    for (size_t i = 0; i < n; i++) {
        if (w[i] == '\r' && (i + 1 >= n || w[i + 1] != '\n')) {
            snprintf(why, whysz, "bare CR at %zu", i);
            return false;
        }
        if (w[i] == '\n' && (i == 0 || w[i - 1] != '\r')) {
            snprintf(why, whysz, "bare LF at %zu", i);
            return false;
        }
        if (w[i] == '\n') {
            /* RFC 5321 4.5.3.1.6: 1000 with CRLF, the stuffed dot not counted */
            if (line + 1 - (dotted ? 1 : 0) > 1000) {
                snprintf(why, whysz, "line of %zu octets", line + 1);
                return false;
            }
            line = 0;
            at_start = true;
            dotted = false;
            continue;
        }
        if (at_start && stuffed && w[i] == '.') dotted = true;
        at_start = false;
        line++;
    }
    if (stuffed) {
        /* exactly one end of data: "\r\n.\r\n" seen with DATA's CRLF in front */
        size_t ends = 0, last = 0;
        for (size_t i = 0; i + 3 <= n; i++) {
            bool start = i == 0 || (i >= 2 && w[i - 2] == '\r' && w[i - 1] == '\n');
            if (start && w[i] == '.' && w[i + 1] == '\r' && w[i + 2] == '\n') ends++, last = i;
        }
        if (ends != 1 || last + 3 != n) {
            snprintf(why, whysz, "%zu end-of-data markers, last at %zu of %zu", ends, last, n);
            return false;
        }
    }
    return true;
}

/* Removes the final ".\r\n" and one leading dot of every line. */
static size_t unstuff(const uint8_t *w, size_t n, uint8_t *out)
{
    size_t o = 0;
    bool at_start = true;
    n -= 3;
    for (size_t i = 0; i < n; i++) {
        if (at_start && w[i] == '.') {
            at_start = false;
            continue;
        }
        at_start = w[i] == '\n';
        out[o++] = w[i];
    }
    return o;
}

#define MAXB 3000

TEST(data_mode_properties)
{
    static uint8_t in[MAXB], norm[2 * MAXB + 2], back[4 * MAXB + 8];
    for (int iter = 0; iter < 20000 && !t_cur_failed; iter++) {
        size_t n = gen_body(in, iter % 10 == 0 ? MAXB : 64);
        smtpc__buf out;
        smtpc__buf_init(&out, 0);
        int rc = encode(true, in, n, &out);
        CHECK_INT(rc, 0);
        char why[128];
        if (!wire_ok(smtpc__buf_ptr(&out), smtpc__buf_size(&out), true, why, sizeof why))
            T_FAILF("iteration %d: %s", iter, why);
        size_t nl = normalise(in, n, norm);
        size_t bl = unstuff(smtpc__buf_ptr(&out), smtpc__buf_size(&out), back);
        CHECK_BYTES(back, bl, norm, nl);
        smtpc__buf_free(&out);
    }
}

TEST(bdat_mode_properties)
{
    static uint8_t in[MAXB], norm[2 * MAXB + 2];
    for (int iter = 0; iter < 20000 && !t_cur_failed; iter++) {
        size_t n = gen_body(in, iter % 10 == 0 ? MAXB : 64);
        smtpc__buf out;
        smtpc__buf_init(&out, 0);
        CHECK_INT(encode(false, in, n, &out), 0);
        char why[128];
        if (!wire_ok(smtpc__buf_ptr(&out), smtpc__buf_size(&out), false, why, sizeof why))
            T_FAILF("iteration %d: %s", iter, why);
        size_t nl = normalise(in, n, norm);
        CHECK_BYTES(smtpc__buf_ptr(&out), smtpc__buf_size(&out), norm, nl);
        smtpc__buf_free(&out);
    }
}

TEST(examples)
{
    static const struct {
        const char *in, *want;
    } ex[] = {
        {"", ".\r\n"},
        {".", "..\r\n.\r\n"},
        {"\n.\n", "\r\n..\r\n.\r\n"},
        {"\r.\r", "\r\n..\r\n.\r\n"},
        {"a\r\n.\r\nb", "a\r\n..\r\nb\r\n.\r\n"},
        {"a\r\r\nb", "a\r\n\r\nb\r\n.\r\n"},
        {"a\n\rb", "a\r\n\r\nb\r\n.\r\n"},
        {"x.y\n..z", "x.y\r\n...z\r\n.\r\n"},
    };
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(ex); i++) {
        size_t n = strlen(ex[i].in);
        /* every way to cut the input in two */
        for (size_t cut = 0; cut <= n; cut++) {
            smtpc__dotstuff d;
            smtpc__dotstuff_init(&d);
            smtpc__buf out;
            smtpc__buf_init(&out, 0);
            CHECK_INT(smtpc__dotstuff_write(&d, true, (const uint8_t *)ex[i].in, cut, &out), 0);
            CHECK_INT(smtpc__dotstuff_write(&d, true, (const uint8_t *)ex[i].in + cut, n - cut, &out), 0);
            CHECK_INT(smtpc__dotstuff_finish(&d, true, &out), 0);
            CHECK_BYTES(smtpc__buf_ptr(&out), smtpc__buf_size(&out), ex[i].want, strlen(ex[i].want));
            smtpc__buf_free(&out);
        }
    }
}

TEST(line_limit)
{
    static uint8_t line[1200];
    memset(line, 'x', sizeof line);
    for (int stuff = 0; stuff < 2; stuff++) {
        smtpc__dotstuff d;
        smtpc__dotstuff_init(&d);
        smtpc__buf out;
        smtpc__buf_init(&out, 0);
        CHECK_INT(smtpc__dotstuff_write(&d, stuff, line, 998, &out), 0);
        CHECK_INT(smtpc__dotstuff_write(&d, stuff, (const uint8_t *)"\r", 1, &out), 0);
        CHECK_INT(smtpc__dotstuff_write(&d, stuff, line, 500, &out), 0);
        size_t before = smtpc__buf_size(&out);
        /* 999 in pieces: refused, and nothing of the failing write is kept */
        CHECK_INT(smtpc__dotstuff_write(&d, stuff, line, 499, &out), SMTPC_ELIMIT);
        CHECK_INT(smtpc__buf_size(&out), before);
        CHECK_INT(smtpc__dotstuff_write(&d, stuff, line, 498, &out), 0);
        CHECK_INT(smtpc__dotstuff_write(&d, stuff, line, 1, &out), SMTPC_ELIMIT);
        smtpc__buf_free(&out);
    }
}

/* The engine's BDAT framing: chunk sizes add up, each declared size is the
 * bytes that follow, exactly one LAST, at the end. */
TEST(engine_bdat_framing)
{
    static uint8_t in[MAXB], norm[2 * MAXB + 2], data[2 * MAXB + 2];
    for (int iter = 0; iter < 3000 && !t_cur_failed; iter++) {
        smtpc__engine_opts o = {0};
        o.bdat_chunk_size = 1 + rnd() % 700;
        smtpc__engine *e = NULL;
        CHECK_INT(smtpc__engine_new(&e, &o), 0);
        if (!e) return;
        size_t n = gen_body(in, MAXB);
        CHECK_INT(smtpc__engine_body_begin_bdat(e), 0);
        size_t i = 0;
        while (i < n) {
            size_t k = 1 + rnd() % 300;
            if (k > n - i) k = n - i;
            CHECK_INT(smtpc__engine_body_write(e, in + i, k), 0);
            i += k;
        }
        CHECK_INT(smtpc__engine_body_end(e), 0);
        const uint8_t *w;
        size_t wl = smtpc__engine_output(e, &w), pos = 0, dl = 0, chunks = 0, lasts = 0;
        bool last_seen_at_end = false;
        while (pos < wl) {
            const uint8_t *crlf = memchr(w + pos, '\n', wl - pos);
            if (!crlf) {
                T_FAILF("unterminated BDAT line");
                break;
            }
            char hdr[64];
            size_t hl = (size_t)(crlf - (w + pos)) + 1;
            snprintf(hdr, sizeof hdr, "%.*s", (int)(hl < 60 ? hl : 60), (const char *)w + pos);
            unsigned long sz = 0;
            char rest[16] = "";
            if (sscanf(hdr, "BDAT %lu%15[^\r]", &sz, rest) < 1) {
                T_FAILF("bad BDAT line %s", hdr);
                break;
            }
            bool last = strcmp(rest, " LAST") == 0;
            if (!last && rest[0]) T_FAILF("bad BDAT suffix %s", rest);
            if (!last && sz != o.bdat_chunk_size) T_FAILF("chunk %lu of %zu", sz, o.bdat_chunk_size);
            pos += hl;
            if (sz > wl - pos) {
                T_FAILF("chunk size %lu beyond the output", sz);
                break;
            }
            memcpy(data + dl, w + pos, sz);
            dl += sz;
            pos += sz;
            chunks++;
            if (last) lasts++;
            last_seen_at_end = last && pos == wl;
        }
        CHECK_INT(lasts, 1);
        CHECK(last_seen_at_end);
        CHECK_INT(smtpc__engine_pending_replies(e), chunks);
        size_t nl = normalise(in, n, norm);
        CHECK_BYTES(data, dl, norm, nl);
        smtpc__engine_free(e);
    }
}

/* The byte-at-a-time encoder the fast one replaced: the specification the
 * line-at-a-time version must match exactly, output, state and errors. */
typedef struct {
    int state; /* 0 line start, 1 mid, 2 after CR */
    size_t line_len;
} ref_ds;

static int ref_write(ref_ds *d, bool dot_stuff, const uint8_t *in, size_t n, uint8_t *out,
                     size_t *olen)
{
    ref_ds saved = *d;
    size_t o = *olen;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = in[i];
        if (c == '\n' && d->state == 2) {
            d->state = 0;
            continue;
        }
        if (c == '\r' || c == '\n') {
            out[o++] = '\r';
            out[o++] = '\n';
            d->line_len = 0;
            d->state = c == '\r' ? 2 : 0;
            continue;
        }
        if (d->line_len >= 998) {
            *d = saved;
            return SMTPC_ELIMIT;
        }
        if (dot_stuff && c == '.' && d->state != 1) out[o++] = '.';
        out[o++] = c;
        d->line_len++;
        d->state = 1;
    }
    *olen = o;
    return 0;
}

/* Random bodies with long lines around the 998 limit, cut at random points,
 * through both encoders: same bytes, same errors, same state after. */
TEST(matches_reference)
{
    static uint8_t in[6000], ref[12000 + 8];
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = rnd() % sizeof in;
        for (size_t i = 0; i < n; i++) {
            uint32_t r = rnd() % 64;
            in[i] = r == 0 ? '\r' : r == 1 ? '\n' : r == 2 ? '.' : r == 3 ? 0x80 : (uint8_t)('a' + r % 26);
        }
        if (iter % 3 == 0) { /* sparse line ends: lines near and over the limit */
            for (size_t i = 0; i < n; i++)
                if ((in[i] == '\r' || in[i] == '\n') && rnd() % 40) in[i] = 'x';
        }
        bool stuff = iter % 2 == 0;
        smtpc__dotstuff d;
        smtpc__dotstuff_init(&d);
        ref_ds rd = {0, 0};
        smtpc__buf out;
        smtpc__buf_init(&out, 0);
        size_t rl = 0, pos = 0;
        while (pos < n) {
            size_t piece = 1 + rnd() % (iter % 5 == 0 ? 8 : 2000);
            if (piece > n - pos) piece = n - pos;
            size_t before = out.len;
            int a = smtpc__dotstuff_write(&d, stuff, in + pos, piece, &out);
            int b = ref_write(&rd, stuff, in + pos, piece, ref, &rl);
            CHECK_INT(a, b);
            if (a) CHECK_INT(out.len, before);
            CHECK_INT(d.line_len, rd.line_len);
            CHECK_INT(d.state, rd.state);
            if (a) break;
            pos += piece;
        }
        CHECK_BYTES(out.data, out.len, ref, rl);
        smtpc__buf_free(&out);
    }
}

/* The encoder may store whole 16-byte blocks past what it copies: never past
 * the 2n it reserves. Each write gets exactly 2n of room followed by a
 * canary, with inputs that use the room (dots at line starts, bare line
 * ends) and long runs that take the block path. */
TEST(stays_in_reserved_room)
{
    static uint8_t in[400], mem[800 + 64];
    for (int iter = 0; iter < 20000 && !t_cur_failed; iter++) {
        size_t n = 1 + rnd() % sizeof in;
        for (size_t i = 0; i < n; i++) {
            uint32_t r = rnd() % (iter % 2 ? 40 : 6);
            in[i] = r == 0 ? '\r' : r == 1 ? '\n' : r == 2 ? '.' : (uint8_t)('a' + r % 26);
        }
        memset(mem, 0xA5, sizeof mem);
        smtpc__buf out;
        smtpc__buf_init(&out, 0);
        out.data = mem;
        out.cap = 2 * n;
        smtpc__dotstuff d;
        smtpc__dotstuff_init(&d);
        d.state = (int)(rnd() % 3);
        int rc = smtpc__dotstuff_write(&d, iter % 3 != 0, in, n, &out);
        CHECK(rc == 0 || rc == SMTPC_ELIMIT);
        CHECK(out.data == mem); /* no growth: the room was there */
        for (size_t i = 2 * n; i < sizeof mem; i++)
            if (mem[i] != 0xA5) {
                T_FAILF("iteration %d: byte %zu written with room for %zu", iter, i, 2 * n);
                break;
            }
    }
}

int main(void)
{
    RUN(examples);
    RUN(line_limit);
    RUN(data_mode_properties);
    RUN(bdat_mode_properties);
    RUN(engine_bdat_framing);
    RUN(matches_reference);
    RUN(stays_in_reserved_room);
    T_DONE();
}
