/* Builds a message from command-line options and writes it to stdout (or
 * --out FILE) through the pull writer. Driven by tests/integration/test_mime*.py.
 *
 *   --from A --sender A --to L --cc L --bcc L --reply-to L --subject S
 *   --subject-file F --text-file F --html-file F --alt CTYPE:FILE
 *   --attach PATH[:NAME[:CTYPE]]     from a file
 *   --attach-mem PATH:NAME[:CTYPE]   the file's bytes given from memory
 *   --attach-cb N:SEED:NAME[:known]  N pseudo-random bytes from a callback
 *   --inline PATH:CID[:CTYPE]        --message FILE (message/rfc822)
 *   --header NAME:VALUE  --priority high|low  --date T  --msgid ID
 *   --in-reply-to IDS  --references IDS  --8bit  --utf8
 *   --twice   write twice and fail unless identical (and equal to the size)
 *   --bufsize N  read in N-byte steps   --print-envelope (to stderr)
 *   --load FILE  load a raw message (sendmail -t) instead of building one
 *   --send HOST:PORT  send it with smtpc_session_send_message (--bdat: use CHUNKING)
 *                     instead of writing it; prints SEND:<err name> and the session error */
#include <smtpc/message.h>
#include <smtpc/session.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    size_t k;
    while ((k = fread(b + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) b = realloc(b, (cap *= 2) + 1);
    }
    fclose(f);
    b[n] = 0;
    *len = n;
    return b;
}

typedef struct rnd {
    uint64_t left, state;
} rnd;

static ssize_t rnd_cb(void *ud, void *buf, size_t len)
{
    rnd *r = ud;
    size_t n = len < r->left ? len : (size_t)r->left;
    uint8_t *p = buf;
    for (size_t i = 0; i < n; i++) {
        r->state = r->state * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = (uint8_t)(r->state >> 56);
    }
    r->left -= n;
    return (ssize_t)n;
}

static ssize_t file_cb(void *ud, void *buf, size_t len)
{
    size_t k = fread(buf, 1, len, (FILE *)ud);
    return ferror((FILE *)ud) ? SMTPC_EIO : (ssize_t)k;
}

static void die(smtpc_message *m, int rc, const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", what, smtpc_err_name(rc), m ? smtpc_message_errmsg(m) : "");
    exit(1);
}

static char *split(char *s)
{
    char *c = strchr(s, ':');
    if (!c) return NULL;
    *c = 0;
    return c + 1;
}

int main(int argc, char **argv)
{
    smtpc_message *m = NULL;
    unsigned flags = 0;
    int twice = 0, print_env = 0;
    size_t bufsize = 65536;
    const char *outpath = NULL, *sendto = NULL;
    int bdat = 0;
    rnd rnds[16];
    int nrnd = 0;
    FILE *loadf = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--load")) {
            char eb[256] = "";
            loadf = fopen(argv[++i], "rb");
            int rc = smtpc_message_load(&m, file_cb, loadf, eb, sizeof eb);
            if (rc) {
                fprintf(stderr, "load: %s: %s\n", smtpc_err_name(rc), eb);
                return 1;
            }
        }
    }
    if (!m && smtpc_message_new(&m)) return 1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(o, "--8bit")) { flags |= SMTPC_WRITE_8BITMIME; continue; }
        if (!strcmp(o, "--utf8")) { flags |= SMTPC_WRITE_SMTPUTF8; continue; }
        if (!strcmp(o, "--twice")) { twice = 1; continue; }
        if (!strcmp(o, "--bdat")) { bdat = 1; continue; }
        if (!strcmp(o, "--print-envelope")) { print_env = 1; continue; }
        if (!v) { fprintf(stderr, "missing value for %s\n", o); return 2; }
        i++;
        if (!strcmp(o, "--load")) continue;
        else if (!strcmp(o, "--from")) rc = smtpc_message_set_from(m, v);
        else if (!strcmp(o, "--sender")) rc = smtpc_message_set_sender(m, v);
        else if (!strcmp(o, "--to")) rc = smtpc_message_add_to(m, v);
        else if (!strcmp(o, "--cc")) rc = smtpc_message_add_cc(m, v);
        else if (!strcmp(o, "--bcc")) rc = smtpc_message_add_bcc(m, v);
        else if (!strcmp(o, "--reply-to")) rc = smtpc_message_add_reply_to(m, v);
        else if (!strcmp(o, "--subject")) rc = smtpc_message_set_subject(m, v);
        else if (!strcmp(o, "--subject-file")) {
            size_t n;
            char *s = slurp(v, &n);
            rc = smtpc_message_set_subject(m, s);
            free(s);
        } else if (!strcmp(o, "--text-file") || !strcmp(o, "--html-file")) {
            size_t n;
            char *s = slurp(v, &n);
            rc = o[2] == 't' ? smtpc_message_set_text(m, s, n) : smtpc_message_set_html(m, s, n);
            free(s);
        } else if (!strcmp(o, "--alt")) {
            char *f = strrchr(v, ':');
            *f++ = 0;
            size_t n;
            char *s = slurp(f, &n);
            rc = smtpc_message_add_alternative(m, v, NULL, s, n);
            free(s);
        } else if (!strcmp(o, "--attach")) {
            char *name = split(v), *ct = name ? split(name) : NULL;
            smtpc_attachment_opts ao = {name, ct, false, NULL};
            rc = smtpc_message_add_attachment_file(m, v, &ao);
        } else if (!strcmp(o, "--attach-mem")) {
            char *name = split(v), *ct = name ? split(name) : NULL;
            smtpc_attachment_opts ao = {name, ct, false, NULL};
            size_t n;
            char *s = slurp(v, &n);
            rc = smtpc_message_add_attachment_mem(m, s, n, &ao);
            free(s);
        } else if (!strcmp(o, "--attach-cb")) {
            char *seed = split(v), *name = split(seed), *known = split(name);
            rnd *r = &rnds[nrnd++];
            r->left = strtoull(v, NULL, 10);
            r->state = strtoull(seed, NULL, 10);
            smtpc_attachment_opts ao = {name, NULL, false, NULL};
            rc = smtpc_message_add_attachment_cb(m, rnd_cb, r, known ? (int64_t)r->left : -1, &ao);
        } else if (!strcmp(o, "--inline")) {
            char *cid = split(v), *ct = split(cid);
            rc = smtpc_message_add_inline_file(m, v, cid, ct);
        } else if (!strcmp(o, "--message")) {
            size_t n;
            char *s = slurp(v, &n);
            rc = smtpc_message_add_message_mem(m, s, n, NULL);
            free(s);
        } else if (!strcmp(o, "--header")) {
            char *val = split(v);
            rc = smtpc_message_add_header(m, v, val ? val : "");
        } else if (!strcmp(o, "--priority")) {
            rc = smtpc_message_set_priority(m, !strcmp(v, "high") ? SMTPC_PRIORITY_HIGH : SMTPC_PRIORITY_LOW);
        } else if (!strcmp(o, "--date")) rc = smtpc_message_set_date(m, strtoll(v, NULL, 10));
        else if (!strcmp(o, "--msgid")) rc = smtpc_message_set_message_id(m, v);
        else if (!strcmp(o, "--in-reply-to")) rc = smtpc_message_set_in_reply_to(m, v);
        else if (!strcmp(o, "--references")) rc = smtpc_message_set_references(m, v);
        else if (!strcmp(o, "--out")) outpath = v;
        else if (!strcmp(o, "--send")) sendto = v;
        else if (!strcmp(o, "--bufsize")) bufsize = strtoull(v, NULL, 10);
        else { fprintf(stderr, "unknown option %s\n", o); return 2; }
        if (rc) die(m, rc, o);
    }
    if (print_env) {
        const char *f = smtpc_message_envelope_from(m);
        fprintf(stderr, "MAIL:%s\n", f ? f : "");
        for (size_t i = 0; i < smtpc_message_rcpt_count(m); i++)
            fprintf(stderr, "RCPT:%s\n", smtpc_message_rcpt(m, i));
        fprintf(stderr, "SMTPUTF8:%d\n", smtpc_message_needs_smtputf8(m));
    }
    if (sendto) {
        char host[256];
        const char *colon = strrchr(sendto, ':');
        if (!colon || (size_t)(colon - sendto) >= sizeof host) return 2;
        memcpy(host, sendto, (size_t)(colon - sendto));
        host[colon - sendto] = 0;
        smtpc_session *s;
        if (smtpc_session_new(&s)) return 1;
        smtpc_send_opts so;
        memset(&so, 0, sizeof so);
        so.use_bdat = bdat;
        int rc = smtpc_session_connect(s, host, (uint16_t)strtoul(colon + 1, NULL, 10));
        if (!rc) rc = smtpc_session_ehlo(s, NULL);
        if (!rc) rc = smtpc_session_send_message(s, m, &so);
        printf("SEND:%s\n%s\n", smtpc_err_name(rc), smtpc_session_errmsg(s));
        for (size_t i = 0; i < smtpc_session_rcpt_count(s); i++)
            printf("RCPT:%zu:%d\n", i, smtpc_reply_code(smtpc_session_rcpt_reply(s, i)));
        smtpc_session_quit(s);
        smtpc_session_free(s);
        smtpc_message_free(m);
        if (loadf) fclose(loadf);
        return rc ? 1 : 0;
    }
    FILE *out = outpath ? fopen(outpath, "wb") : stdout;
    char *buf = malloc(bufsize);
    char *first = NULL;
    size_t firstlen = 0;
    for (int pass = 0; pass < (twice ? 2 : 1); pass++) {
        smtpc_message_writer *w;
        int rc = smtpc_message_writer_new(&w, m, flags);
        if (rc) die(m, rc, "writer_new");
        int64_t size = smtpc_message_writer_size(w);
        char *all = NULL;
        size_t alen = 0, acap = 0;
        ssize_t k;
        while ((k = smtpc_message_writer_read(w, buf, bufsize)) > 0) {
            if (pass == 0) fwrite(buf, 1, (size_t)k, out);
            if (twice) {
                if (alen + (size_t)k > acap) all = realloc(all, acap = (alen + (size_t)k) * 2);
                memcpy(all + alen, buf, (size_t)k);
            }
            alen += (size_t)k;
        }
        if (k < 0) {
            fprintf(stderr, "read: %s: %s\n", smtpc_err_name((int)k), smtpc_message_writer_errmsg(w));
            return 1;
        }
        fprintf(stderr, "SIZE:%lld:%zu\n", (long long)size, alen);
        if (size >= 0 && (size_t)size != alen) {
            fprintf(stderr, "size mismatch: announced %lld, wrote %zu\n", (long long)size, alen);
            return 1;
        }
        smtpc_message_writer_free(w);
        if (twice && pass == 0) {
            first = all;
            firstlen = alen;
        } else if (twice) {
            if (alen != firstlen || memcmp(all, first, alen)) {
                fprintf(stderr, "second write differs\n");
                return 1;
            }
            free(all);
            free(first);
        }
    }
    if (outpath) fclose(out);
    free(buf);
    smtpc_message_free(m);
    if (loadf) fclose(loadf);
    return 0;
}
