/* DKIM driver for test_dkim.py.
 *
 *   drv_dkim sign --domain D --key SEL=PEMFILE [--key ...] [--canon H/B]
 *            [--headers LIST] [--identity I] [--expiry N] [--time T]
 *            [--step N] [--rss] FILE
 *     Signs FILE the way a sender streams it: a first pass through the
 *     signing context in pieces of --step octets (default 65536), then the
 *     fields and a second pass of the file to standard output. --rss prints
 *     "maxrss_kib N" (peak resident memory) on standard error at the end.
 *   drv_dkim compose [sign options] [--8bit]
 *     The same for a message composed with the message API (UTF-8 subject,
 *     text with trailing spaces, HTML, an attachment, List-Unsubscribe and
 *     List-Unsubscribe-Post): signed from a first writer through
 *     smtpc_dkim_sign_read, sent from a second writer on the same message.
 *   drv_dkim verify [--txt NAME=RECORD ...] [--now T] FILE
 *     Prints one line per signature: "status algorithm selector domain reason".
 * Exit 0 on success, 1 on an error (message on standard error), 2 on usage. */
#include <smtpc/dkim.h>
#include <smtpc/message.h>

#include "dkim_opts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t fixed_time;
static int64_t clock_cb(void *ud)
{
    (void)ud;
    return fixed_time;
}

static int usage(void)
{
    fprintf(stderr, "usage: drv_dkim sign|compose|verify [options] [FILE]\n");
    return 2;
}

static smtpc_message *compose(void)
{
    smtpc_message *m = NULL;
    if (smtpc_message_new(&m)) return NULL;
    static uint8_t blob[3000];
    for (size_t i = 0; i < sizeof blob; i++) blob[i] = (uint8_t)(i * 37);
    smtpc_attachment_opts ao = {.name = "data.bin", .content_type = "application/octet-stream"};
    if (smtpc_message_set_from(m, "Zo\xc3\xab <zoe@example.org>") ||
        smtpc_message_add_to(m, "bob@example.com, \"Carol C.\" <carol@example.net>") ||
        smtpc_message_set_subject(m, "Report for Q3 \xe2\x80\x94 caf\xc3\xa9") ||
        smtpc_message_set_date(m, 1765000000) || smtpc_message_set_message_id(m, "<dkim-1@example.org>") ||
        smtpc_message_set_text(m, "Hello  \nd\xc3\xa9j\xc3\xa0 vu\t\n\n\n", (size_t)-1) ||
        smtpc_message_set_html(m, "<p>Hello</p>", (size_t)-1) ||
        smtpc_message_add_attachment_mem(m, blob, sizeof blob, &ao) ||
        smtpc_message_add_header(m, "List-Unsubscribe", "<https://example.org/u/1>, <mailto:u@example.org>") ||
        smtpc_message_add_header(m, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click")) {
        smtpc_message_free(m);
        return NULL;
    }
    return m;
}

static int do_sign(int argc, char **argv)
{
    bool composed = !strcmp(argv[1], "compose");
    unsigned wflags = 0;
    smtpc_dkim_signer *sg = NULL;
    if (smtpc_dkim_signer_new(&sg)) return 1;
    const char *file = NULL;
    size_t step = 65536;
    int rss = 0, rc = 0;
    for (int i = 2; i < argc && !rc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--rss")) {
            rss = 1;
            continue;
        }
        if (!strcmp(a, "--8bit")) {
            wflags = SMTPC_WRITE_8BITMIME;
            continue;
        }
        if (a[0] != '-') {
            file = a;
            continue;
        }
        if (!v) return usage();
        i++;
        int o = dkim_signer_opt(sg, a, v);
        if (o <= 0) {
            rc = o;
            if (rc == SMTPC_EINVAL && !smtpc_dkim_signer_errmsg(sg)[0]) return usage();
        } else if (!strcmp(a, "--time")) {
            fixed_time = strtoll(v, NULL, 10);
            rc = smtpc_dkim_signer_set_clock(sg, clock_cb, NULL);
        } else if (!strcmp(a, "--step")) {
            step = strtoul(v, NULL, 10);
            if (!step) return usage();
        } else {
            return usage();
        }
    }
    if (rc) {
        fprintf(stderr, "drv_dkim: %s: %s\n", smtpc_err_name(rc), smtpc_dkim_signer_errmsg(sg));
        smtpc_dkim_signer_free(sg);
        return 1;
    }
    if (composed) {
        smtpc_message *m = compose();
        smtpc_message_writer *w = NULL;
        smtpc_dkim_sign *ctx = NULL;
        const char *fields = NULL;
        size_t fl = 0;
        rc = m ? smtpc_message_writer_new(&w, m, wflags) : SMTPC_ENOMEM;
        if (!rc) rc = smtpc_dkim_sign_begin(sg, &ctx);
        if (!rc) rc = smtpc_dkim_sign_read(ctx, smtpc_message_writer_read, w); /* first pass */
        if (!rc) rc = smtpc_dkim_sign_final(ctx, &fields, &fl);
        smtpc_message_writer_free(w);
        w = NULL;
        if (!rc) rc = smtpc_message_writer_new(&w, m, wflags); /* second pass: the same bytes */
        if (!rc) {
            fwrite(fields, 1, fl, stdout);
            char buf[4096];
            ssize_t n;
            while ((n = smtpc_message_writer_read(w, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)n, stdout);
            if (n < 0) rc = (int)n;
        }
        if (rc) fprintf(stderr, "drv_dkim: compose: %s\n", smtpc_err_name(rc));
        smtpc_message_writer_free(w);
        smtpc_dkim_sign_free(ctx);
        smtpc_message_free(m);
        smtpc_dkim_signer_free(sg);
        return rc || fflush(stdout) ? 1 : 0;
    }
    if (!file) return usage();
    FILE *f = fopen(file, "rb");
    if (!f) {
        perror(file);
        return 1;
    }
    char *buf = malloc(step);
    smtpc_dkim_sign *ctx = NULL;
    rc = smtpc_dkim_sign_begin(sg, &ctx);
    if (rc) fprintf(stderr, "drv_dkim: %s: %s\n", smtpc_err_name(rc), smtpc_dkim_signer_errmsg(sg));
    size_t n;
    while (!rc && (n = fread(buf, 1, step, f)) > 0) rc = smtpc_dkim_sign_update(ctx, buf, n);
    const char *fields = NULL;
    size_t fl = 0;
    if (!rc) rc = smtpc_dkim_sign_final(ctx, &fields, &fl);
    if (rc && ctx) fprintf(stderr, "drv_dkim: %s: %s\n", smtpc_err_name(rc), smtpc_dkim_sign_errmsg(ctx));
    if (!rc) {
        fwrite(fields, 1, fl, stdout);
        rewind(f); /* the second pass: the message itself */
        while ((n = fread(buf, 1, step, f)) > 0) fwrite(buf, 1, n, stdout);
    }
    fclose(f);
    free(buf);
    smtpc_dkim_sign_free(ctx);
    smtpc_dkim_signer_free(sg);
    if (fflush(stdout)) return 1;
    if (rss) {
        /* VmHWM, not getrusage's ru_maxrss: Linux carries that one over
         * exec from the (big) process that forked us */
        FILE *st = fopen("/proc/self/status", "r");
        char line[256];
        while (st && fgets(line, sizeof line, st))
            if (!strncmp(line, "VmHWM:", 6)) fprintf(stderr, "maxrss_kib %ld\n", strtol(line + 6, NULL, 10));
        if (st) fclose(st);
    }
    return rc ? 1 : 0;
}

typedef struct txtrec {
    const char *name[8];
    const char *val[8];
    size_t n;
} txtrec;

static int txt_cb(void *ud, const char *name, char *out, size_t len)
{
    const txtrec *t = ud;
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->name[i], name)) {
            snprintf(out, len, "%s", t->val[i]);
            return 0;
        }
    return SMTPC_ENOTFOUND;
}

static int do_verify(int argc, char **argv)
{
    txtrec t = {.n = 0};
    const char *file = NULL;
    int64_t now = 0;
    static char names[8][256];
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--txt") && i + 1 < argc) {
            const char *v = argv[++i], *eq = strchr(v, '=');
            if (!eq || t.n == 8 || (size_t)(eq - v) >= sizeof names[0]) return usage();
            memcpy(names[t.n], v, (size_t)(eq - v));
            names[t.n][eq - v] = '\0';
            t.name[t.n] = names[t.n];
            t.val[t.n++] = eq + 1;
        } else if (!strcmp(argv[i], "--now") && i + 1 < argc) {
            now = strtoll(argv[++i], NULL, 10);
        } else if (argv[i][0] != '-') {
            file = argv[i];
        } else {
            return usage();
        }
    }
    if (!file) return usage();
    FILE *f = fopen(file, "rb");
    if (!f) {
        perror(file);
        return 1;
    }
    size_t cap = 1 << 16, len = 0, n;
    char *msg = malloc(cap);
    while ((n = fread(msg + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) msg = realloc(msg, cap *= 2);
    }
    fclose(f);
    smtpc_dkim_result r[16];
    size_t count = 0;
    char err[256];
    int rc = smtpc_dkim_verify(msg, len, txt_cb, &t, now, r, 16, &count, err, sizeof err);
    free(msg);
    if (rc) {
        fprintf(stderr, "drv_dkim: %s: %s\n", smtpc_err_name(rc), err);
        return 1;
    }
    static const char *const st[] = {"pass", "fail", "permerror", "temperror"};
    for (size_t i = 0; i < count && i < 16; i++)
        printf("%s %s %s %s %s\n", st[r[i].status], r[i].algorithm, r[i].selector, r[i].domain,
               r[i].reason[0] ? r[i].reason : "-");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) return usage();
    if (!strcmp(argv[1], "sign") || !strcmp(argv[1], "compose")) return do_sign(argc, argv);
    if (!strcmp(argv[1], "verify")) return do_verify(argc, argv);
    return usage();
}
