/* libFuzzer: the whole engine against a hostile server. The client runs a
 * fixed script (greeting, EHLO, a pipelined transaction with a body) and
 * (optionally STARTTLS and AUTH first) and the fuzz input is everything the server says, fed in pieces.
 * The reply limits are small (a 256-octet line, 4 KiB / 64 lines a reply)
 * so that they are reached with small inputs, and only the first
 * MAX_INPUT octets are used: with the default 64 KiB / 1000-line replies,
 * inputs of 64 KiB (EHLO replies of thousands of AUTH names) were needed
 * to reach the limits and made most of the time of a run. */
#include "engine/engine.h"

/* The library in the fuzz build is not compiled with coverage, so the code
 * under test is compiled into this target (the archive's copies are then
 * never linked in). */
#include "engine/reply.c"
#include "engine/caps.c"
#include "engine/dotstuff.c"
#include "engine/engine.c"

#include <stdlib.h>
#include <string.h>

#define MAX_INPUT 16384

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (size > MAX_INPUT) size = MAX_INPUT;
    uint8_t ctl = data[0];
    data++;
    size--;
    smtpc__engine_opts o = {0};
    o.bdat_chunk_size = 8;
    o.limits.max_line = 256;
    o.limits.max_bytes = 4096;
    o.limits.max_lines = 64;
    smtpc__engine *e = NULL;
    if (smtpc__engine_new(&e, &o)) return 0;
    smtpc__engine_expect_greeting(e);
    smtpc__engine_ehlo(e, "client.example");
    size_t piece = 1 + (ctl & 0x1f);
    bool bdat = ctl & 0x20;
    int step = 0;
    for (size_t i = 0; i < size;) {
        size_t n = size - i < piece ? size - i : piece, used = 0;
        int rc = smtpc__engine_feed(e, data + i, n, &used);
        if (used > n) abort();
        i += used;
        smtpc__event ev;
        while (smtpc__engine_next_event(e, &ev) == 1) {
            if (ev.type == SMTPC__EV_REPLY && ev.cmd == SMTPC__CMD_EHLO && (ctl & 0x80) &&
                !smtpc__engine_tls_active(e)) {
                smtpc__engine_starttls(e);
            } else if (ev.type == SMTPC__EV_REPLY && ev.cmd == SMTPC__CMD_EHLO && step == 0) {
                step = 1;
                smtpc__engine_auth(e, "PLAIN", "");
            } else if (ev.type == SMTPC__EV_REPLY && ev.cmd == SMTPC__CMD_AUTH) {
                if (ev.reply->code == 334) {
                    smtpc__engine_auth_continue(e, "AGEAYg==");
                    continue;
                }
                const char *rcpts[] = {"a@x", "b@x", "c@x"};
                smtpc__txn_opts t = {"s@x", NULL, rcpts, NULL, 3, (ctl & 0x40) ? SMTPC__TXN_STRICT : 0, bdat};
                smtpc__engine_txn_begin(e, &t);
            } else if (ev.type == SMTPC__EV_TXN_BODY) {
                smtpc__engine_body_write(e, "hello\n.\r\nworld", 14);
                smtpc__engine_body_end(e);
            } else if (ev.type == SMTPC__EV_TXN_DONE) {
                smtpc__engine_quit(e);
            } else if (ev.type == SMTPC__EV_TLS_READY) {
                smtpc__engine_tls_started(e);
                smtpc__engine_ehlo(e, "client.example");
            }
            if (ev.type != SMTPC__EV_TXN_BODY && !ev.reply) abort();
        }
        const uint8_t *out;
        size_t ol = smtpc__engine_output(e, &out);
        smtpc__engine_output_advance(e, ol);
        if (rc < 0) break;
        if (used == 0 && n) break; /* stopped after STARTTLS 220 */
    }
    smtpc__engine_free(e);
    return 0;
}
