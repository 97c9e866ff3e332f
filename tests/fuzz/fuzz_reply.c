/* libFuzzer: the reply parser and EHLO capabilities on hostile input.
 * Byte 0 picks the enhanced-code mode and the feed piece size; the rest is
 * the server's bytes. Small limits so limit paths are reached. A second
 * parser in _feed_view mode is fed the same pieces and must agree exactly. */
#include "engine/reply.h"

/* The library in the fuzz build is not compiled with coverage, so the code
 * under test is compiled into this target (the archive's copies are then
 * never linked in). */
#include "engine/reply.c"
#include "engine/caps.c"

#include <stdlib.h>
#include <string.h>

static int same_reply(const smtpc__reply *a, const smtpc__reply *b)
{
    if (a->code != b->code || a->nlines != b->nlines || strcmp(a->enhanced, b->enhanced) ||
        strcmp(a->text, b->text))
        return 0;
    for (size_t k = 0; k < a->nlines; k++)
        if (strcmp(a->lines[k], b->lines[k])) return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t ctl = data[0];
    data++;
    size--;
    smtpc__reply_limits lim = {64 + (ctl & 0x3f) * 4, 2048, 16};
    smtpc__reply_parser *p = NULL;
    smtpc__reply_parser *pv = NULL;
    if (smtpc__reply_parser_new(&p, &lim)) return 0;
    if (smtpc__reply_parser_new(&pv, &lim)) {
        smtpc__reply_parser_free(p);
        return 0;
    }
    smtpc__reply_parser_set_enhanced(p, ctl & 0x40);
    smtpc__reply_parser_set_enhanced(pv, ctl & 0x40);
    size_t piece = (ctl & 0x80) ? 1 : size ? size : 1;
    size_t i = 0;
    smtpc__errmsg err;
    while (i < size) {
        size_t n = size - i < piece ? size - i : piece, used = 0;
        smtpc__reply *r = NULL;
        int rc = smtpc__reply_parser_feed(p, data + i, n, &used, &r, &err);
        if (used > n) abort();
        size_t usedv = 0;
        const smtpc__reply *rv = NULL;
        smtpc__errmsg errv;
        int rcv = smtpc__reply_parser_feed_view(pv, data + i, n, &usedv, &rv, &errv);
        if (rcv != rc || usedv != used) abort();
        if (rc < 0 && rc != SMTPC_ENOMEM && strcmp(err.text, errv.text)) abort();
        if (rc == 1 && !same_reply(r, rv)) abort();
        i += used;
        if (rc < 0) break;
        if (rc == 1) {
            if (r->code < 200 || r->code > 599 || r->nlines == 0 || r->nlines > lim.max_lines) abort();
            if (strlen(r->text) > lim.max_bytes) abort();
            smtpc__caps c = {0};
            smtpc__caps_parse(&c, r, &err);
            if (c.nauth && c.auth[c.nauth]) abort();
            smtpc__caps_param(&c, "SIZE");
            smtpc__caps_param(&c, "AUTH");
            smtpc__caps_clear(&c);
            smtpc__reply_free(r);
        } else if (used == 0) {
            abort(); /* no progress without a reply or an error */
        }
    }
    smtpc__reply_parser_free(p);
    smtpc__reply_parser_free(pv);
    return 0;
}
