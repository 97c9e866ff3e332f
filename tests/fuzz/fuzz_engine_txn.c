/* libFuzzer: the engine's transactions with every MAIL/RCPT parameter
 * (SIZE, BODY, SMTPUTF8, DSN RET/ENVID/NOTIFY/ORCPT, REQUIRETLS, extra
 * parameters), HELO instead of EHLO, RSET/NOOP between transactions and
 * cross-message pipelining (txn_chain), against a hostile server.
 * Input: [ctl][sel][server bytes...]:
 *   ctl: piece size 1 + (ctl & 0x1f), 0x20 BDAT, 0x40 strict, 0x80 HELO;
 *   sel: bits 0-2 the MAIL parameter set, bits 3-5 the RCPT parameter
 *        set, 0x40 a second transaction chained behind the first dot,
 *        0x80 RSET and NOOP before the first transaction.
 * Invalid parameters must be refused before anything is queued (the
 * engine's own checks; ASan/UBSan catch the rest). */
#include "engine/engine.h"

/* compiled in, as fuzz_engine.c does (coverage of the code under test) */
#include "engine/reply.c"
#include "engine/caps.c"
#include "engine/dotstuff.c"
#include "engine/engine.c"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const smtpc__mail_params MAILS[8] = {
    {0, SMTPC__BODY_DEFAULT, false, NULL, NULL, false, NULL},
    {1234, SMTPC__BODY_8BITMIME, false, "FULL", "env+id=1", false, NULL},
    {99999999, SMTPC__BODY_7BIT, true, "HDRS", NULL, false, "MT-PRIORITY=3"},
    {10, SMTPC__BODY_BINARYMIME, false, NULL, "\xc3\xa9t\xc3\xa9 =+ x", false, NULL},
    {0, SMTPC__BODY_DEFAULT, true, NULL, NULL, true, NULL},
    {1, SMTPC__BODY_DEFAULT, false, "bogus", NULL, false, "X=1 Y"},
    {0, SMTPC__BODY_DEFAULT, false, NULL, "", false, "BAD PARAM\r\n"},
    {5, SMTPC__BODY_8BITMIME, true, "FULL", "id", true, "A=B C=D"},
};

static const smtpc__rcpt_params RCPTS[8][3] = {
    {{NULL, NULL}, {NULL, NULL}, {NULL, NULL}},
    {{"SUCCESS,FAILURE", "a@x"}, {"NEVER", NULL}, {"DELAY", "rfc822;c@x"}},
    {{"NEVER,SUCCESS", NULL}, {"", "b+=x@x"}, {"FAILURE", "\xc3\xa9@x"}},
    {{"success,delay", "x"}, {"BOGUS", NULL}, {NULL, "a\r\nb"}},
    {{"FAILURE", NULL}, {"FAILURE", NULL}, {"FAILURE", NULL}},
    {{NULL, "rfc822;a@x"}, {NULL, "utf-8;\xc3\xa9@x"}, {NULL, ""}},
    {{"SUCCESS,SUCCESS", NULL}, {",", NULL}, {"DELAY,", NULL}},
    {{"NEVER", "z"}, {NULL, NULL}, {"SUCCESS,FAILURE,DELAY", "rfc822;a+b@x"}},
};

static const char *const TO_LISTS[2][3] = {
    {"a@x", "b@x", "c@x"},
    {"\xc3\xa9l\xc3\xa8ve@x", "", "d@\xe4\xbe\x8b.x"},
};

static void begin(smtpc__engine *e, uint8_t ctl, uint8_t sel, int k)
{
    size_t mi = sel & 7, ri = (sel >> 3) & 7;
    smtpc__txn_opts t;
    memset(&t, 0, sizeof t);
    t.from = (mi == 4 || mi == 7) ? "\xc3\xa9@x" : k ? "" : "s@x";
    t.mail = mi ? &MAILS[mi] : NULL;
    t.rcpts = TO_LISTS[(mi == 2 || mi == 7) && ri == 7];
    t.rcpt = ri ? RCPTS[ri] : NULL;
    t.nrcpts = 3;
    t.policy = (ctl & 0x40) ? SMTPC__TXN_STRICT : SMTPC__TXN_CONTINUE;
    t.use_bdat = (ctl & 0x20) != 0;
    smtpc__engine_txn_begin(e, &t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint8_t ctl = data[0], sel = data[1];
    data += 2;
    size -= 2;
    smtpc__engine_opts o = {0};
    o.bdat_chunk_size = 16;
    o.limits.max_line = 512;
    smtpc__engine *e = NULL;
    if (smtpc__engine_new(&e, &o)) return 0;
    smtpc__engine_expect_greeting(e);
    if (ctl & 0x80) smtpc__engine_helo(e, "client.example");
    else smtpc__engine_ehlo(e, "client.example");
    size_t piece = 1 + (ctl & 0x1f);
    int txns = 0;
    bool chained = false;
    for (size_t i = 0; i < size;) {
        size_t n = size - i < piece ? size - i : piece, used = 0;
        int rc = smtpc__engine_feed(e, data + i, n, &used);
        if (used > n) abort();
        i += used;
        smtpc__event ev;
        while (smtpc__engine_next_event(e, &ev) == 1) {
            if (ev.type == SMTPC__EV_REPLY && (ev.cmd == SMTPC__CMD_EHLO || ev.cmd == SMTPC__CMD_HELO)) {
                if (sel & 0x80) {
                    smtpc__engine_rset(e);
                    smtpc__engine_noop(e);
                } else {
                    begin(e, ctl, sel, txns++);
                }
            } else if (ev.type == SMTPC__EV_REPLY && ev.cmd == SMTPC__CMD_NOOP && txns == 0) {
                begin(e, ctl, sel, txns++);
            } else if (ev.type == SMTPC__EV_TXN_BODY) {
                smtpc__engine_body_write(e, "Subject: x\r\n\r\n.dot\nbare\rcr\r\n", 28);
                smtpc__engine_body_end(e);
                if ((sel & 0x40) && !chained && smtpc__engine_txn_chain(e) == 0) {
                    chained = true;
                    begin(e, ctl, sel, txns++);
                }
            } else if (ev.type == SMTPC__EV_TXN_DONE) {
                if (!chained && txns < 2 && (sel & 0x40)) begin(e, ctl, sel, txns++);
                else smtpc__engine_quit(e);
            }
        }
        const uint8_t *out;
        smtpc__engine_output_advance(e, smtpc__engine_output(e, &out));
        if (rc < 0) break;
        if (used == 0 && n) break;
    }
    smtpc__engine_free(e);
    return 0;
}
