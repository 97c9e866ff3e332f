/* Helpers shared by the transcript-driven unit tests (test_engine_transcripts.c,
 * test_opener.c): script loading and the text escapes of tests/data/transcripts.
 * Text accepts escapes \r \n \t \0 \\ \xNN and {N*text} (text repeated N times). */
#ifndef SMTPC_TESTS_TRANSCRIPT_H
#define SMTPC_TESTS_TRANSCRIPT_H

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *data;
    size_t len;
} bytes;

static int unescape(const char *s, bytes *out)
{
    size_t cap = 64, n = 0;
    char *d = malloc(cap);
    if (!d) return -1;
    while (*s) {
        char tmp[1];
        const char *src = tmp;
        size_t cnt = 1, plen = 1;
        bytes inner = {NULL, 0};
        if (*s == '\\' && s[1]) {
            s++;
            switch (*s) {
            case 'r': tmp[0] = '\r'; break;
            case 'n': tmp[0] = '\n'; break;
            case 't': tmp[0] = '\t'; break;
            case '0': tmp[0] = '\0'; break;
            case 'x': {
                char h[3] = {s[1], s[1] ? s[2] : 0, 0};
                tmp[0] = (char)strtol(h, NULL, 16);
                s += 2;
                break;
            }
            default: tmp[0] = *s; break;
            }
            s++;
        } else if (*s == '{' && isdigit((unsigned char)s[1])) {
            /* {N*text}: text (escapes allowed, no '}') repeated N times */
            char *end;
            unsigned long rep = strtoul(s + 1, &end, 10);
            const char *close = *end == '*' ? strchr(end, '}') : NULL;
            if (!close) {
                tmp[0] = *s++;
            } else {
                char piece[256];
                snprintf(piece, sizeof piece, "%.*s", (int)(close - end - 1), end + 1);
                unescape(piece, &inner);
                src = inner.data;
                plen = inner.len;
                cnt = rep;
                s = close + 1;
            }
        } else {
            tmp[0] = *s++;
        }
        while (n + cnt * plen + 1 > cap) {
            cap *= 2;
            d = realloc(d, cap);
            if (!d) return -1;
        }
        for (size_t i = 0; i < cnt; i++) {
            memcpy(d + n, src, plen);
            n += plen;
        }
        free(inner.data);
    }
    d[n] = 0;
    out->data = d;
    out->len = n;
    return 0;
}

typedef struct {
    const char *file;
    char **lines;
    size_t nlines;
} script;

static int load(const char *path, script *sc)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t r;
    sc->lines = NULL;
    sc->nlines = 0;
    while ((r = getline(&line, &cap, f)) >= 0) {
        while (r > 0 && (line[r - 1] == '\n' || line[r - 1] == '\r')) line[--r] = 0;
        if (r == 0 || line[0] == '#') continue;
        sc->lines = realloc(sc->lines, (sc->nlines + 1) * sizeof *sc->lines);
        sc->lines[sc->nlines++] = strdup(line);
    }
    free(line);
    fclose(f);
    return 0;
}

/* Frees what load() read. */
static void script_free(script *sc)
{
    for (size_t i = 0; i < sc->nlines; i++) free(sc->lines[i]);
    free(sc->lines);
}

/* The longest run of server bytes (S:/R: lines) in one block. */
static size_t max_block(const script *sc)
{
    size_t best = 0, cur = 0;
    for (size_t i = 0; i < sc->nlines; i++) {
        if (!strncmp(sc->lines[i], "S:", 2) || !strncmp(sc->lines[i], "R:", 2)) {
            bytes b;
            unescape(sc->lines[i] + 2, &b);
            cur += b.len + 2;
            free(b.data);
            if (cur > best) best = cur;
        } else {
            cur = 0;
        }
    }
    return best;
}

/* qsort on file names. */
static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The consecutive S: (a line, CRLF added) and R: (raw) lines from *i on, as
 * one block of server bytes; *i is left after them. */
static bytes server_block(const script *sc, size_t *i)
{
    bytes blk = {malloc(1), 0};
    while (*i < sc->nlines && (!strncmp(sc->lines[*i], "S:", 2) || !strncmp(sc->lines[*i], "R:", 2))) {
        const char *t = sc->lines[*i] + 2;
        if (*t == ' ') t++;
        bytes b;
        unescape(t, &b);
        blk.data = realloc(blk.data, blk.len + b.len + 3);
        memcpy(blk.data + blk.len, b.data, b.len);
        blk.len += b.len;
        if (sc->lines[*i][0] == 'S') memcpy(blk.data + blk.len, "\r\n", 2), blk.len += 2;
        free(b.data);
        (*i)++;
    }
    return blk;
}

/* Reports a failed directive of run r (fields sc, mode, split, lineno, failed), once. */
#define RFAIL(...)                                                                         \
    do {                                                                                   \
        if (!r->failed) {                                                                  \
            fprintf(stderr, "%s [%s split=%zu] directive %zu (%s): ", r->sc->file, r->mode,  \
                    r->split, r->lineno + 1, r->sc->lines[r->lineno]);                     \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
        }                                                                                  \
        r->failed = 1;                                                                     \
    } while (0)

static const char *err_short(int code)
{
    const char *n = smtpc_err_name(code);
    return strncmp(n, "SMTPC_", 6) == 0 ? n + 6 : n;
}

/* The engine r->e must have written want (a bytes *) next, which is
 * taken off its output; want NULL: nothing is left. */
#define EXPECT_OUTPUT(r, want)                                                                     \
    do {                                                                                           \
        const bytes *x_w = (want);                                                                 \
        const uint8_t *x_out;                                                                      \
        size_t x_n = smtpc__engine_output((r)->e, &x_out);                                         \
        size_t x_l = x_w ? x_w->len : 0;                                                           \
        if (x_w ? (x_n < x_l || memcmp(x_out, x_w->data, x_l) != 0) : x_n != 0) {                 \
            char x_shown[300];                                                                     \
            smtpc__escape_into(x_shown, sizeof x_shown, (const char *)x_out, x_n < 120 ? x_n : 120); \
            RFAIL("%s \"%s\"", x_w ? "output is" : "unchecked output at the end:", x_shown);        \
        } else {                                                                                   \
            smtpc__engine_output_advance((r)->e, x_l);                                             \
        }                                                                                          \
    } while (0)

/* Splits s in place at spaces into at most max words. */
static int split_words(char *s, char **w, int max)
{
    int n = 0;
    while (*s && n < max) {
        while (*s == ' ') s++;
        if (!*s) break;
        w[n++] = s;
        while (*s && *s != ' ') s++;
        if (*s) *s++ = 0;
    }
    return n;
}

/* Runs every .txt file of $SMTPC_TEST_DATA/<sub> (or those whose name contains
 * $SMTPC_TRANSCRIPT) with the server's bytes fed whole, one byte at a time
 * and split in two at every offset of each block (for big blocks, the edges
 * and a stride). run(sc, mode, split): split 0 = whole, SIZE_MAX = bytes;
 * non-zero = failed. Needs t.h. */
static void run_dir(const char *sub, int (*run)(const script *, const char *, size_t), size_t min_files)
{
    const char *data = getenv("SMTPC_TEST_DATA");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", data ? data : "tests/data", sub);
    DIR *d = opendir(dir);
    if (!d) {
        T_FAILF("cannot open %s: %s", dir, strerror(errno));
        return;
    }
    char *names[512];
    size_t nn = 0;
    struct dirent *de;
    while ((de = readdir(d)) && nn < 512) {
        size_t l = strlen(de->d_name);
        if (l > 4 && !strcmp(de->d_name + l - 4, ".txt")) names[nn++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, nn, sizeof *names, cmp);
    CHECK(nn >= min_files);
    const char *only = getenv("SMTPC_TRANSCRIPT");
    for (size_t k = 0; k < nn; k++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        script sc;
        sc.file = names[k];
        if (only && !strstr(names[k], only)) {
            free(names[k]);
            continue;
        }
        if (load(path, &sc)) {
            T_FAILF("cannot read %s", path);
            free(names[k]);
            continue;
        }
        int bad = run(&sc, "whole", 0);
        if (!bad) bad = run(&sc, "bytes", SIZE_MAX);
        size_t mb = max_block(&sc);
        for (size_t s = 1; !bad && s < mb; s++) {
            if (mb > 1024 && s > 300 && s + 300 < mb && s % 97 != 0) continue;
            bad = run(&sc, "split", s);
        }
        if (bad) T_FAILF("transcript %s failed", names[k]);
        script_free(&sc);
        free(names[k]);
    }
}

#endif
