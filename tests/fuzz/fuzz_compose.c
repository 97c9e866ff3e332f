/* libFuzzer: composing a message from untrusted parts (what a web form or
 * a mail merge hands to the library) and writing it with the pull writer.
 * Input: fields separated by NUL; each field's first byte picks a setter
 * (byte % 20), the rest is its argument. The message is then written
 * twice (plain, and 8BITMIME+SMTPUTF8), in pieces of 1 + (first byte % 97)
 * octets. Checks (smtpc_message_writer_new's promise): CRLF only, no line
 * longer than 998 octets, the same bytes when written again with the
 * same flags, and the size announced, when known, is the size written. */
#define _GNU_SOURCE
#include <smtpc/smtpc.h>

#include "t.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The writer spools a streamed attachment (case 18) to tmpfile(): in this
 * program, an anonymous memory file rather than glibc's file in /tmp (a
 * disk file system here, an inode made and freed per input). The same
 * stdio and descriptor operations work on it. */
FILE *tmpfile(void)
{
    int fd = memfd_create("smtpc-fuzz-spool", MFD_CLOEXEC);
    if (fd < 0) abort(); /* not a finding: the target needs memfd_create */
    FILE *f = fdopen(fd, "w+b");
    if (!f) close(fd);
    return f;
}

/* The checks on every octet written: not the code under test, so not
 * instrumented for coverage (a trace call per comparison per octet, three
 * writes per input, made them a seventh of a run), still under ASan. Not
 * inlined: the optimiser would otherwise fold the loop into write_msg before
 * coverage is instrumented, and the attribute would be lost (10 % of a run). */
__attribute__((no_sanitize("coverage"), noinline)) static void check_lines(const char *out, size_t n)
{
    size_t line = 0;
    for (size_t i = 0; i < n; i++) {
        if (out[i] == '\r') {
            if (i + 1 >= n || out[i + 1] != '\n') abort(); /* bare CR */
            i++;
            line = 0;
        } else if (out[i] == '\n') {
            abort(); /* bare LF */
        } else if (++line > 998) {
            abort();
        }
    }
}

/* Writes m; returns the bytes (malloc'd) and their length, or NULL. */
static char *write_msg(smtpc_message *m, unsigned flags, size_t piece, size_t *len)
{
    smtpc_message_writer *w = NULL;
    if (smtpc_message_writer_new(&w, m, flags)) return NULL;
    int64_t announced = smtpc_message_writer_size(w);
    size_t cap = 4096, n = 0;
    char *out = malloc(cap);
    if (!out) abort();
    for (;;) {
        if (cap - n < piece) {
            cap = cap * 2 + piece;
            if (!(out = realloc(out, cap))) abort();
        }
        ssize_t k = smtpc_message_writer_read(w, out + n, piece);
        if (k < 0) {
            free(out);
            smtpc_message_writer_free(w);
            return NULL;
        }
        if (k == 0) break;
        n += (size_t)k;
    }
    smtpc_message_writer_free(w);
    if (announced >= 0 && (size_t)announced != n) abort();
    check_lines(out, n);
    *len = n;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536) return 0;
    size_t piece = 1 + data[0] % 97u;
    char *buf = malloc(size + 1);
    if (!buf) abort();
    memcpy(buf, data, size);
    buf[size] = '\0';
    smtpc_message *m = NULL;
    if (smtpc_message_new(&m)) abort();
    smtpc_message_set_date(m, 1700000000);
    t_memsrc srcs[8];
    size_t nsrc = 0;
    for (char *f = buf + 1; f < buf + size;) {
        size_t fl = strlen(f);
        char *next = f + fl + 1;
        if (fl == 0) {
            f = next;
            continue;
        }
        unsigned op = (unsigned char)f[0] % 20u;
        char *a = f + 1;
        size_t al = fl - 1;
        smtpc_attachment_opts ao = {0};
        char *colon = strchr(a, ':');
        switch (op) {
        case 0: smtpc_message_set_from(m, a); break;
        case 1: smtpc_message_set_sender(m, a); break;
        case 2: smtpc_message_add_to(m, a); break;
        case 3: smtpc_message_add_cc(m, a); break;
        case 4: smtpc_message_add_bcc(m, a); break;
        case 5: smtpc_message_add_reply_to(m, a); break;
        case 6: smtpc_message_set_subject(m, a); break;
        case 7: smtpc_message_set_message_id(m, a); break;
        case 8: smtpc_message_set_in_reply_to(m, a); break;
        case 9: smtpc_message_set_references(m, a); break;
        case 10:
            if (colon) {
                *colon = '\0';
                smtpc_message_add_header(m, a, colon + 1);
            }
            break;
        case 11: smtpc_message_set_text(m, a, al); break;
        case 12: smtpc_message_set_html(m, a, al); break;
        case 13: smtpc_message_add_alternative(m, "text/calendar; method=REQUEST", al & 1 ? NULL : "utf-8", a, al); break;
        case 14:
            ao.name = colon ? colon + 1 : NULL;
            ao.content_type = (al & 3) == 1 ? "text/plain" : NULL;
            smtpc_message_add_attachment_mem(m, a, al, &ao);
            break;
        case 15: smtpc_message_add_inline_mem(m, a, al, colon ? colon + 1 : "cid", NULL); break;
        case 16: smtpc_message_add_message_mem(m, a, al, al & 1 ? "fwd.eml" : NULL); break;
        case 17: smtpc_message_set_priority(m, (smtpc_priority)(al % 3)); break;
        case 18:
            if (nsrc < 8) {
                srcs[nsrc] = (t_memsrc){a, al, 0};
                ao.name = "stream.bin";
                smtpc_message_add_attachment_cb(m, t_mem_read, &srcs[nsrc], al & 1 ? (int64_t)al : -1, &ao);
                nsrc++;
            }
            break;
        default: {
            smtpc_address_list *l = NULL;
            char err[128];
            if (smtpc_address_list_parse(&l, a, err, sizeof err) == 0) {
                for (size_t i = 0; i < smtpc_address_list_count(l); i++) {
                    char *x = smtpc_address_format(smtpc_address_list_get(l, i), 0);
                    if (x) smtpc_message_add_to_address(m, smtpc_address_list_get(l, i));
                    free(x);
                }
                smtpc_address_list_free(l);
            }
            break;
        }
        }
        f = next;
    }
    size_t l1 = 0, l2 = 0, l3 = 0;
    char *w1 = write_msg(m, 0, piece, &l1);
    char *w2 = write_msg(m, 0, 4096, &l2);
    if (w1 && (!w2 || l1 != l2 || memcmp(w1, w2, l1))) abort(); /* written again: same bytes */
    char *w3 = write_msg(m, SMTPC_WRITE_8BITMIME | SMTPC_WRITE_SMTPUTF8, piece, &l3);
    free(w1);
    free(w2);
    free(w3);
    smtpc_message_free(m);
    free(buf);
    return 0;
}
