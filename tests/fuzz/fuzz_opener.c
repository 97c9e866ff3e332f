/* libFuzzer: the connection opener (src/engine/opener.h) driven directly,
 * as the blocking session and bulk drive it, against a hostile server and
 * with every configuration: greeting -> EHLO/HELO -> STARTTLS -> EHLO ->
 * AUTH (every mechanism, SASL steps, token refresh), or the session's
 * single steps.
 *
 * Input: 10 control bytes, then everything the server says.
 *   c0  bits 0-2 TLS mode (NONE, STARTTLS_OPTIONAL, STARTTLS, IMPLICIT,
 *               AUTO; 5-7 wrap); bit 3 the driver reads the greeting
 *               itself (cfg.greeted); bit 4 step-wise (the session's
 *               smtpc_session_ehlo/_starttls/_auth: c7 says which steps);
 *               bit 5 HELO for the EHLO step; bit 6 pieces end at a line's
 *               LF too; bit 7 TLS is on from the start (implicit TLS
 *               always is)
 *   c1  bit 0 credentials (AUTH is due); bit 1 plaintext AUTH allowed;
 *       bits 2-3 user name ("user", none, "", "us,er=x"); bits 4-5
 *       password ("pencil", none, non-ASCII, with a CR); bit 6 authzid;
 *       bit 7 a client certificate is set up
 *   c2  the mechanisms allowed on TLS (bit i: mechanism i+1, EXTERNAL ..
 *       SCRAM-SHA-256)      c3  ... on a plaintext connection
 *   c4  bits 0-1 OAuth token (none, fixed, the policy's provider, the
 *       driver's provider cfg.token_fn); bits 2-3 the provider (gives
 *       tokens, fails at once, fails to refresh, gives a token too long
 *       for SASL-IR); bit 4 OAUTHBEARER host=; bit 5 SCRAM minimum 1
 *       iteration (else the default 4096); bits 6-7 the STARTTLS
 *       handshake (ok and verified, ok unverified, failed, ok)
 *   c5  bits 0-1 EHLO name ("client.example", none: "localhost", with
 *       CRLF, 600 octets); bits 2-7 the driver gives up after that many
 *       events (0: never) and frees the opener mid-way
 *   c6  piece size - 1 (server bytes fed, client bytes written at a time)
 *   c7  step-wise: three steps, 2 bits each (EHLO, STARTTLS, AUTH, an
 *       invalid one), one opener each, stopping at the first failure
 *   c8  bit 0 once opened, the session goes on with single commands (MAIL,
 *       RCPT, DATA or BDAT, then pipelined RSET, 21 NOOPs and HELP, QUIT),
 *       waiting for their replies; bits 1-3 the MAIL parameters and bits
 *       4-5 the RCPT ones (some refused: then the plain command); bit 6
 *       BDAT instead of DATA; bit 7 reply lines up to 32 KiB (else the
 *       engine's default)
 *   c9  bits 0-1 another password (when not 0: with a TAB, 400 octets,
 *       with characters SASLprep maps); bit 2 BDAT chunks of 8 octets;
 *       bits 3-7 variants of the refused MAIL and RCPT arguments
 * The input ends like a closed connection. SCRAM: the client nonce is
 * fixed (fyko+d2lbbFgONRv9qkxdawL) so a transcript can carry a valid
 * server proof, and the harness lowers an iteration count over 16 to
 * 1..16 (exec/s; the counts the client refuses stay as they are).
 *
 * Checked: no AUTH command (and no credential) goes out in plaintext
 * unless plaintext AUTH is allowed, nor at all before TLS when TLS is
 * required; AUTH lines (SASL-IR) within 512 octets; EHLO first after
 * TLS; every command line the client writes is CRLF-terminated
 * with no CR, LF or NUL inside; STARTTLS never with mode NONE nor twice;
 * the opener ends in exactly one of done / failed and stays there (the
 * same answer to every later call); done: the engine owes no reply, is
 * idle and (unless a 421 came) takes MAIL, the credentials were used (a mechanism the server
 * offered) when AUTH was due, TLS is on when required; failed: a message;
 * fatal only with a failure; an AUTH that fails on a 334 it leaves
 * unanswered or on a positive reply of the wrong kind is broken (the
 * server's state is unknown); nothing can be queued between the 220 to
 * STARTTLS and the handshake; a command the engine refuses queues nothing;
 * a trace redacts every secret line. */
#include "engine/opener.h"
#include "engine/sasl/sasl_int.h"

/* The library in the fuzz build is not compiled with coverage, so the code
 * under test is compiled into this target (the archive's copies are then
 * never linked in). */
#include "engine/reply.c"
#include "engine/caps.c"
#include "engine/dotstuff.c"
#include "engine/engine.c"
#include "engine/sasl/sasl.c"
#include "engine/sasl/crypto.c"

/* The opener's SASL contexts get the fixed SCRAM nonce, and the server's
 * iteration counts are capped (see fz_sasl_reply). */
static int fz_sasl_new(smtpc__sasl **out, smtpc__sasl_mech mech, const smtpc__sasl_creds *creds,
                       smtpc__errmsg *err);
static int fz_sasl_reply(smtpc__sasl *s, int code, const char *text, size_t len, smtpc__sasl_line *resp);
#define smtpc__sasl_new fz_sasl_new
#define smtpc__sasl_reply fz_sasl_reply
#include "engine/opener.c"
#undef smtpc__sasl_new
#undef smtpc__sasl_reply

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FZ_NONCE "fyko+d2lbbFgONRv9qkxdawL"
#define FZ_MAX_ITER 16u

#define CHECK(x)                                                                                     \
    do {                                                                                             \
        if (!(x)) {                                                                                  \
            fprintf(stderr, "fuzz_opener: check failed at line %d: %s\n", __LINE__, #x);            \
            abort();                                                                                 \
        }                                                                                            \
    } while (0)

static int fz_sasl_new(smtpc__sasl **out, smtpc__sasl_mech mech, const smtpc__sasl_creds *creds,
                       smtpc__errmsg *err)
{
    int rc = smtpc__sasl_new(out, mech, creds, err);
    if (rc == 0 && (mech == SMTPC__SASL_SCRAM_SHA_1 || mech == SMTPC__SASL_SCRAM_SHA_256)) {
        rc = smtpc__sasl_set_nonce(*out, FZ_NONCE);
        if (rc) {
            smtpc__sasl_free(*out);
            *out = NULL;
        }
    }
    return rc;
}

/* The SCRAM server-first-message as crypto.c reads it (attr_at, the third
 * attribute "i="): a count in (16, the limit] is rewritten to 1..16 (the
 * server never asks for more), so PBKDF2 stays cheap. Others pass as they
 * are: crypto.c refuses them before deriving anything. */
static int fz_sasl_reply(smtpc__sasl *s, int code, const char *text, size_t len, smtpc__sasl_line *resp)
{
    bool scram = s->mech == SMTPC__SASL_SCRAM_SHA_1 || s->mech == SMTPC__SASL_SCRAM_SHA_256;
    if (code != 334 || !scram || !text) return smtpc__sasl_reply(s, code, text, len, resp);
    size_t tl = len;
    while (tl && (text[tl - 1] == ' ' || text[tl - 1] == '\t')) tl--;
    uint8_t *d = NULL;
    size_t n = 0;
    if (tl > SMTPC__SASL_MAX_CHALLENGE || smtpc__sasl_decode(text, tl, &d, &n) != 0)
        return smtpc__sasl_reply(s, code, text, len, resp);
    const char *msg = (const char *)d, *iter;
    size_t ilen;
    uint64_t it = 0;
    int rc;
    if (strlen(msg) == n && attr_at(msg, 2, 'i', &iter, &ilen) && smtpc__parse_u64(iter, ilen, &it) == 0 &&
        it > FZ_MAX_ITER && it <= SMTPC__SASL_MAX_SCRAM_ITER) {
        smtpc__buf m;
        smtpc__buf_init(&m, 0);
        size_t pre = (size_t)(iter - msg);
        int brc = smtpc__buf_append(&m, msg, pre);
        if (!brc) brc = smtpc__buf_printf(&m, "%u", (unsigned)(it % FZ_MAX_ITER) + 1);
        if (!brc) brc = smtpc__buf_append(&m, iter + ilen, n - pre - ilen);
        char *b64 = brc ? NULL : malloc(smtpc__b64_encoded_len(smtpc__buf_size(&m)) + 1);
        if (b64) {
            size_t bl = smtpc__b64_encoded_len(smtpc__buf_size(&m));
            smtpc__b64_encode(b64, smtpc__buf_ptr(&m), smtpc__buf_size(&m));
            b64[bl] = '\0';
            rc = smtpc__sasl_reply(s, code, b64, bl, resp);
            free(b64);
        } else {
            rc = smtpc__sasl_reply(s, code, text, len, resp);
        }
        smtpc__buf_free(&m);
    } else {
        rc = smtpc__sasl_reply(s, code, text, len, resp);
    }
    free(d);
    return rc;
}

/* ---- the driver's side ----------------------------------------------------------------------- */

typedef struct fz {
    const uint8_t *data;
    size_t len, off, piece;
    bool line_pieces;
    /* configuration */
    bool allow_plain, tls_required, mode_none, have_creds, stepwise;
    int token_mode; /* provider: 0 ok, 1 fails at once, 2 fails to refresh, 3 long token */
    unsigned token_calls;
    /* state */
    bool tls_on;       /* encrypted now */
    bool in_auth;      /* an AUTH exchange is open (its continuation lines are secret) */
    unsigned starttls_sent, quit_sent, auth_sent;
    bool cr; /* the client's last byte written was a CR */
    unsigned lines_since_event; /* client lines (QUIT aside) since the last event the opener saw */
    bool tls_fresh;    /* TLS just started: the next command must be EHLO (RFC 3207 4.2) */
} fz;

static fz F;
static int verbose = -1; /* FUZZ_OPENER_TRACE=1: the client's lines and each outcome on stderr */
static char long_token[700];

static int fz_token_fn(void *ud, bool refresh, const char **tok, size_t *len)
{
    (void)ud;
    F.token_calls++;
    if (F.token_mode == 1 || (F.token_mode == 2 && refresh)) return F.token_calls & 1 ? SMTPC_ETEMPFAIL : 1;
    if (F.token_mode == 3) {
        *tok = long_token;
        *len = sizeof long_token - 1;
        return 0;
    }
    *tok = refresh ? "fresh-token" : "token";
    *len = strlen(*tok);
    return 0;
}

static void fz_trace(void *ud, smtpc__trace_dir dir, const char *line, size_t len, bool secret)
{
    (void)ud;
    if (verbose > 0) fprintf(stderr, "%s %.*s\n", dir == SMTPC__TRACE_CLIENT ? "C:" : "S:", (int)len, line);
    if (dir != SMTPC__TRACE_CLIENT) return;
    if (secret) {
        /* a trace shows "AUTH MECH ********" or "********" */
        char red[96];
        size_t rl = smtpc__trace_redact(line, len, red, sizeof red);
        CHECK(rl == strlen(red) && rl >= 8 && memcmp(red + rl - 8, "********", 8) == 0);
        CHECK(rl - 8 <= len);
    }
    bool auth = len >= 5 && strncasecmp(line, "AUTH ", 5) == 0;
    if (auth) F.auth_sent++;
    /* credentials never travel in clear unless allowed, never before TLS when it is required */
    if (auth || secret || F.in_auth) {
        CHECK(F.tls_on || F.allow_plain);
        CHECK(F.tls_on || !F.tls_required || F.stepwise);
    }
    if (auth) {
        F.in_auth = true;
        CHECK(len + 2 <= 512); /* SASL-IR only within 512 octets */
    }
    if (F.tls_fresh) {
        CHECK(len > 5 && strncasecmp(line, "EHLO ", 5) == 0);
        F.tls_fresh = false;
    }
    if (len == 8 && strncasecmp(line, "STARTTLS", 8) == 0) {
        CHECK(!F.mode_none || F.stepwise);
        CHECK(!F.tls_on);
        F.starttls_sent++;
        CHECK(F.starttls_sent == 1);
    }
    if (len == 4 && strncasecmp(line, "QUIT", 4) == 0) F.quit_sent++;
    else F.lines_since_event++;
    if ((len == 4 && strncasecmp(line, "EHLO", 4) == 0) || (len > 4 && strncasecmp(line, "EHLO ", 5) == 0) ||
        (len > 4 && strncasecmp(line, "HELO ", 5) == 0))
        F.in_auth = false;
}

/* Everything the engine has to write, in pieces; every line CRLF-terminated,
 * no CR, LF or NUL inside one. */
static void fz_flush(smtpc__engine *e)
{
    const uint8_t *p;
    size_t n;
    while ((n = smtpc__engine_output(e, &p)) > 0) {
        if (n > F.piece) n = F.piece;
        for (size_t i = 0; i < n; i++) {
            uint8_t c = p[i];
            CHECK(c != 0);
            if (F.cr) {
                CHECK(c == '\n');
                F.cr = false;
                continue;
            }
            CHECK(c != '\n');
            if (c == '\r') F.cr = true;
        }
        smtpc__engine_output_advance(e, n);
    }
}

/* The next piece of what the server says: 0 fed, 1 nothing left (the
 * connection closed), < 0 the engine's error (the driver reports it). */
static int fz_feed(smtpc__engine *e)
{
    if (F.off == F.len) return 1;
    size_t n = F.len - F.off;
    if (n > F.piece) n = F.piece;
    if (F.line_pieces) {
        const uint8_t *lf = memchr(F.data + F.off, '\n', n);
        if (lf) n = (size_t)(lf - (F.data + F.off)) + 1;
    }
    size_t used = 0;
    int rc = smtpc__engine_feed(e, F.data + F.off, n, &used);
    CHECK(used <= n);
    CHECK(rc < 0 || used == n);
    F.off += rc < 0 ? n : used;
    return rc < 0 ? rc : 0;
}

static void fz_info(void *ud, const char *msg)
{
    (void)ud;
    CHECK(msg && msg[0]);
    if (verbose > 0) fprintf(stderr, "info: %s\n", msg);
}

/* A command the engine refused queued nothing. */
typedef struct mark {
    size_t out, pending;
} mark;

static mark fz_mark(smtpc__engine *e)
{
    const uint8_t *p;
    mark m = {smtpc__engine_output(e, &p), smtpc__engine_pending_replies(e)};
    return m;
}

static int refused_nothing_queued(smtpc__engine *e, mark m, int rc)
{
    if (rc < 0) {
        mark n = fz_mark(e);
        CHECK(n.out == m.out && n.pending == m.pending);
        CHECK(smtpc__engine_errmsg(e)[0] != '\0');
    }
    return rc;
}

/* Writes, then reads until the next event: 1 with *ev, 0 when the input
 * ended or the engine failed. */
static int fz_next(smtpc__engine *e, smtpc__event *ev)
{
    for (;;) {
        fz_flush(e);
        if (smtpc__engine_next_event(e, ev) == 1) return 1;
        if (fz_feed(e) != 0) return 0;
    }
}

/* After the opening, the blocking session's single commands: each waits
 * for its reply, whatever it says; refused arguments queue nothing. */
static void fz_session(smtpc__engine *e, uint8_t c8, uint8_t c9)
{
    smtpc__event ev;
    mark m = fz_mark(e);
    CHECK(strcmp(smtpc__engine_state_name(e), "IDLE") == 0);
    static char long_path[600], long_envid[102], long_extra[1030], long_orcpt[1030];
    if (!long_path[0]) {
        memset(long_path, 'a', sizeof long_path - 1);
        memset(long_envid, 'e', sizeof long_envid - 1);
        memset(long_extra, 'v', sizeof long_extra - 1);
        memcpy(long_extra, "X-LONG=", 7);
        memset(long_orcpt, 'o', sizeof long_orcpt - 1);
    }
    /* the engine's other commands refuse what cannot be right now (nothing queued) */
    const char *r8[] = {"r\xc3\xa9@example.org"};
    smtpc__txn_opts t;
    memset(&t, 0, sizeof t);
    t.from = "s@example.org";
    t.rcpts = r8;
    CHECK(refused_nothing_queued(e, m, smtpc__engine_txn_begin(e, &t)) == SMTPC_EINVAL); /* no recipient */
    t.nrcpts = (size_t)UINT32_MAX + 1;
    if (t.nrcpts > UINT32_MAX) CHECK(refused_nothing_queued(e, m, smtpc__engine_txn_begin(e, &t)) == SMTPC_ELIMIT);
    t.nrcpts = 1;
    CHECK(refused_nothing_queued(e, m, smtpc__engine_txn_begin(e, &t)) == SMTPC_EINVAL); /* no SMTPUTF8 */
    CHECK(refused_nothing_queued(e, m, smtpc__engine_txn_chain(e)) == SMTPC_ESTATE);
    CHECK(refused_nothing_queued(e, m, smtpc__engine_auth(e, "PLAIN", "not base64!")) == SMTPC_EINVAL);
    CHECK(refused_nothing_queued(e, m, smtpc__engine_auth_continue(e, "AAAA")) == SMTPC_ESTATE);
    if (smtpc__engine_tls_active(e))
        CHECK(refused_nothing_queued(e, m, smtpc__engine_starttls(e)) == SMTPC_ESTATE);
    CHECK(!smtpc__caps_has_auth(smtpc__engine_caps(e), "NO-SUCH-MECH"));
    smtpc__mail_params mp;
    memset(&mp, 0, sizeof mp);
    const char *from = "s@example.org";
    switch ((c8 >> 1) & 7) {
    case 0: break;
    case 1:
        mp.size = 12345;
        mp.body = SMTPC__BODY_8BITMIME;
        mp.smtputf8 = true;
        mp.dsn_ret = "hdrs";
        mp.dsn_envid = "id+=x y";
        mp.requiretls = true;
        mp.extra = (c9 & 8) ? long_extra : "X-A=1 X-B";
        from = "";
        break;
    case 2: mp.dsn_ret = "ALL"; break;
    case 3: mp.dsn_envid = long_envid; break;
    case 4: mp.dsn_envid = "caf\xc3\xa9"; break;
    case 5: mp.extra = (c9 & 8) ? "X=1  Y" : (c9 & 16) ? "=bad" : (c9 & 32) ? "X!" : "X=a=b"; break;
    case 6: from = (c9 & 8) ? "<s@example.org>" : "s@exa\tmple.org"; break;
    default: from = (c9 & 8) ? long_path : "s@example.org"; mp.body = (smtpc__body_type)99; mp.dsn_ret = "FULL"; break;
    }
    int rc = refused_nothing_queued(e, m, smtpc__engine_mail(e, from, &mp));
    if (rc == 0) CHECK(smtpc__engine_pending_replies(e) == 1);
    if (rc < 0 && (rc = smtpc__engine_mail(e, "s@example.org", NULL)) != 0) return;
    if (!fz_next(e, &ev)) return;
    CHECK(ev.type == SMTPC__EV_REPLY);
    if (ev.cmd == SMTPC__CMD_NONE || smtpc__engine_closing(e)) return;
    CHECK(ev.cmd == SMTPC__CMD_MAIL);

    smtpc__rcpt_params rp;
    memset(&rp, 0, sizeof rp);
    switch ((c8 >> 4) & 3) {
    case 0: break;
    case 1:
        rp.dsn_notify = "SUCCESS,FAILURE,DELAY";
        rp.dsn_orcpt = "rfc822;a+b=c@example.org";
        break;
    case 2:
        rp.dsn_notify = "never";
        rp.dsn_orcpt = "a@example.org";
        break;
    default: {
        /* refused, one after the other */
        static const char *const bad_orcpt[] = {"bad type;x@y", ";x@y", "rfc822;", "a\x01b"};
        rp.dsn_notify = "SOMETIMES";
        m = fz_mark(e);
        refused_nothing_queued(e, m, smtpc__engine_rcpt(e, "r@example.org", &rp, 0));
        rp.dsn_notify = "SUCCESS,";
        refused_nothing_queued(e, m, smtpc__engine_rcpt(e, "r@example.org", &rp, 0));
        rp.dsn_notify = "SUCCESS, FAILURE";
        refused_nothing_queued(e, m, smtpc__engine_rcpt(e, "r@example.org", &rp, 0));
        rp.dsn_notify = NULL;
        rp.dsn_orcpt = long_orcpt;
        refused_nothing_queued(e, m, smtpc__engine_rcpt(e, "r@example.org", &rp, 0));
        rp.dsn_notify = NULL;
        rp.dsn_orcpt = bad_orcpt[c9 >> 6];
        refused_nothing_queued(e, m, smtpc__engine_rcpt(e, "r@example.org", &rp, 0));
        refused_nothing_queued(e, m, smtpc__engine_rcpt(e, "", NULL, 0));
        refused_nothing_queued(e, m, smtpc__engine_rcpt(e, long_path, NULL, 0));
        rp.dsn_orcpt = NULL;
        break;
    }
    }
    m = fz_mark(e);
    rc = refused_nothing_queued(e, m, smtpc__engine_rcpt(e, "r@example.org", &rp, 7));
    if (rc || !fz_next(e, &ev)) return;
    if (ev.cmd == SMTPC__CMD_NONE || smtpc__engine_closing(e)) return;
    CHECK(ev.type == SMTPC__EV_REPLY && ev.cmd == SMTPC__CMD_RCPT && ev.tag == 7);

    static const char body[] = "Subject: x\r\n\r\n.dot\nbare lf\rbare cr\r\n..two\r\n";
    static char long_line[1001];
    if (!long_line[0]) memset(long_line, 'x', sizeof long_line - 1);
    if (c8 & 0x40) {
        if (smtpc__engine_body_begin_bdat(e) != 0) return;
        if (smtpc__engine_body_write(e, body, sizeof body - 1) != 0) return;
        if (smtpc__engine_body_end(e) != 0) return;
        /* one reply per chunk */
        while (smtpc__engine_pending_replies(e) > 0) {
            if (!fz_next(e, &ev)) return;
            if (ev.cmd == SMTPC__CMD_NONE || smtpc__engine_closing(e)) return;
            CHECK(ev.type == SMTPC__EV_REPLY && ev.cmd == SMTPC__CMD_BDAT);
        }
    } else {
        m = fz_mark(e);
        CHECK(refused_nothing_queued(e, m, smtpc__engine_body_write(e, "x", 1)) == SMTPC_ESTATE);
        if (smtpc__engine_data(e) != 0 || !fz_next(e, &ev)) return;
        if (ev.cmd == SMTPC__CMD_NONE || smtpc__engine_closing(e)) return;
        CHECK(ev.type == SMTPC__EV_REPLY && ev.cmd == SMTPC__CMD_DATA);
        if (ev.reply->code == 354) {
            m = fz_mark(e);
            CHECK(smtpc__engine_noop(e) == SMTPC_ESTATE); /* not while the body is sent */
            if (smtpc__engine_body_write(e, body, sizeof body - 1) != 0) return;
            m = fz_mark(e);
            CHECK(refused_nothing_queued(e, m, smtpc__engine_body_write(e, long_line, sizeof long_line - 1)) ==
                  SMTPC_ELIMIT);
            if (smtpc__engine_body_end(e) != 0 || !fz_next(e, &ev)) return;
            if (ev.cmd == SMTPC__CMD_NONE || smtpc__engine_closing(e)) return;
            CHECK(ev.type == SMTPC__EV_REPLY && ev.cmd == SMTPC__CMD_DATA_END);
        }
    }
    m = fz_mark(e);
    refused_nothing_queued(e, m, smtpc__engine_raw(e, "HELP\r\nQUIT"));
    refused_nothing_queued(e, m, smtpc__engine_raw(e, long_path));
    /* pipelined: RSET and 10 NOOPs, 5 replies, 11 NOOPs more and HELP (the
     * queue of expected replies moves down), then the rest; in order */
    smtpc__cmd want[23];
    size_t nw = 0, got = 0;
    if (smtpc__engine_rset(e)) return;
    want[nw++] = SMTPC__CMD_RSET;
    for (int i = 0; i < 10; i++) {
        if (smtpc__engine_noop(e)) return;
        want[nw++] = SMTPC__CMD_NOOP;
    }
    while (got < nw) {
        if (got == 5) {
            for (int i = 0; i < 11; i++) {
                if (smtpc__engine_noop(e)) return;
                want[nw++] = SMTPC__CMD_NOOP;
            }
            if (smtpc__engine_raw(e, "HELP")) return;
            want[nw++] = SMTPC__CMD_RAW;
        }
        /* replies already parsed wait as events: at most the commands not yet answered */
        CHECK(smtpc__engine_pending_replies(e) <= nw - got);
        if (!fz_next(e, &ev)) return;
        if (ev.cmd == SMTPC__CMD_NONE || smtpc__engine_closing(e)) return;
        /* events of earlier commands (a BDAT's replies parsed ahead) may still
         * come first: the pipelined block's order is only checked from a
         * clean start, so stop here */
        if (!(ev.type == SMTPC__EV_REPLY && ev.cmd == want[got])) return;
        got++;
    }
    if (smtpc__engine_quit(e) != 0) return;
    m = fz_mark(e);
    CHECK(refused_nothing_queued(e, m, smtpc__engine_noop(e)) == SMTPC_ESTATE); /* closing */
    if (fz_next(e, &ev)) CHECK(ev.cmd == SMTPC__CMD_QUIT || ev.cmd == SMTPC__CMD_NONE);
}

static const smtpc_tls_mode MODES[] = {SMTPC_TLS_MODE_NONE, SMTPC_TLS_MODE_STARTTLS_OPTIONAL,
                                       SMTPC_TLS_MODE_STARTTLS, SMTPC_TLS_MODE_IMPLICIT, SMTPC_TLS_MODE_AUTO};

/* One opener from start to its end (or the input's). Returns true when the
 * next step may follow (step-wise: done). */
static bool fz_run_opener(smtpc__engine *e, const smtpc__opener_cfg *cfg, int step, int tls_outcome,
                       unsigned *give_up)
{
    smtpc__opener *o = NULL;
    if (smtpc__opener_new(&o, e, cfg)) return false;
    int rc = step < 0 ? smtpc__opener_start(o) : smtpc__opener_start_step(o, (smtpc__open_step)step);
    CHECK(rc <= 0);
    bool lost = false; /* the driver ended it: closed, engine error, TLS failed, gave up */
    smtpc__cmd last_cmd = SMTPC__CMD_NONE;
    int last_code = 0;
    while (rc == SMTPC__OPEN_WAIT || rc == SMTPC__OPEN_TLS) {
        fz_flush(e);
        if (rc == SMTPC__OPEN_TLS) {
            CHECK(smtpc__opener_step(o) == SMTPC__OPEN_STEP_TLS);
            CHECK(F.starttls_sent == 1);
            /* nothing may follow STARTTLS before the handshake */
            mark m = fz_mark(e);
            CHECK(refused_nothing_queued(e, m, smtpc__engine_noop(e)) == SMTPC_ESTATE);
            if (tls_outcome == 2) { /* the handshake failed: the driver closes */
                lost = true;
                break;
            }
            F.tls_on = true; /* verified or not, the driver decided to go on */
            F.tls_fresh = true;
            rc = smtpc__opener_tls_started(o);
            CHECK(rc <= 0);
            CHECK(smtpc__opener_did_starttls(o) || rc < 0);
            continue;
        }
        smtpc__event ev;
        if (smtpc__engine_next_event(e, &ev) == 1) {
            if (*give_up && --*give_up == 0) {
                /* the driver gives up; a handshake nobody asked for is refused first */
                if (!smtpc__opener_errmsg(o)[0] && smtpc__opener_step(o) != SMTPC__OPEN_STEP_TLS)
                    CHECK(smtpc__opener_tls_started(o) == SMTPC_ESTATE);
                lost = true;
                break;
            }
            if (ev.reply) {
                last_cmd = ev.cmd;
                last_code = ev.reply->code;
            }
            F.lines_since_event = 0;
            rc = smtpc__opener_event(o, &ev);
            CHECK(rc <= SMTPC__OPEN_DONE);
            if (rc == SMTPC__OPEN_TLS) CHECK(ev.type == SMTPC__EV_TLS_READY);
            continue;
        }
        if (fz_feed(e) != 0) {
            lost = true;
            break;
        }
    }
    fz_flush(e);
    /* a step that does not exist is the caller's mistake: refused, nothing else changes */
    bool misuse = step == SMTPC__OPEN_STEP_GREETING;
    if (misuse) CHECK(rc == SMTPC_EINVAL && smtpc__engine_pending_replies(e) == 0);
    if (!lost && !misuse) {
        CHECK(rc == SMTPC__OPEN_DONE || rc < 0);
        /* sticky: the same answer to every later call */
        smtpc__event none;
        memset(&none, 0, sizeof none);
        none.type = SMTPC__EV_REPLY;
        CHECK(smtpc__opener_event(o, &none) == rc);
        if (rc < 0) CHECK(smtpc__opener_tls_started(o) == rc);
    }
    if (!lost && rc == SMTPC__OPEN_DONE) {
        CHECK(smtpc__opener_step(o) == SMTPC__OPEN_STEP_OPEN);
        CHECK(!smtpc__opener_fatal(o) && !smtpc__opener_broken(o));
        CHECK(smtpc__engine_pending_replies(e) == 0);
        CHECK(F.quit_sent == 0);
        if (step < 0 || step == SMTPC__OPEN_STEP_AUTH) {
            CHECK((smtpc__opener_mech(o) != SMTPC__SASL_NONE) == F.have_creds);
            if (F.have_creds) CHECK(F.tls_on || F.allow_plain);
            /* the mechanism used is one the server offered */
            if (F.have_creds)
                CHECK(smtpc__caps_has_auth(smtpc__engine_caps(e), smtpc__sasl_mech_name(smtpc__opener_mech(o))));
        }
        if (step < 0 && !cfg->greeted) CHECK(smtpc__opener_greeting(o) && smtpc__opener_greeting(o)->code == 220);
        if (step < 0 && F.tls_required) CHECK(F.tls_on);
        if (step == SMTPC__OPEN_STEP_STARTTLS) CHECK(F.tls_on && smtpc__opener_did_starttls(o));
        F.in_auth = false;
    }
    if (verbose > 0)
        fprintf(stderr, "== step %d: %s rc %d: %s (mech %s, starttls %d, fatal %d, broken %d)\n", step,
                lost ? "lost" : "ended", rc, smtpc__opener_errmsg(o),
                smtpc__sasl_mech_name(smtpc__opener_mech(o)) ? smtpc__sasl_mech_name(smtpc__opener_mech(o)) : "-",
                smtpc__opener_did_starttls(o), smtpc__opener_fatal(o), smtpc__opener_broken(o));
    if (!lost && rc < 0 && last_cmd == SMTPC__CMD_AUTH && smtpc__opener_step(o) == SMTPC__OPEN_STEP_AUTH) {
        /* AUTH failed on a reply that leaves the server waiting for a line
         * it does not get (a 334 left unanswered), or on a positive reply
         * of the wrong kind: the state is unknown, the connection broken */
        bool waits = last_code == 334 && F.lines_since_event == 0;
        bool wrong_kind = last_code / 100 < 4 && last_code != 235 && last_code != 334;
        if (waits || wrong_kind) CHECK(smtpc__opener_broken(o));
    }
    if (!lost && rc < 0) {
        CHECK(smtpc__opener_errmsg(o)[0] != '\0');
        const char *mn = smtpc__sasl_mech_name(smtpc__opener_mech(o));
        if (mn) {
            /* the message says "AUTH MECH: " once */
            char twice[64];
            snprintf(twice, sizeof twice, "AUTH %s: AUTH %s", mn, mn);
            CHECK(strncmp(smtpc__opener_errmsg(o), twice, strlen(twice)) != 0);
        }
        const smtpc__reply *r = smtpc__opener_reply(o);
        if (r) {
            /* what a driver shows of it (the public accessors) */
            CHECK(smtpc_reply_code(r) == r->code && r->code >= 100 && r->code <= 999);
            CHECK(smtpc_reply_line_count(r) >= 1 && smtpc_reply_line(r, smtpc_reply_line_count(r)) == NULL);
            CHECK(smtpc_reply_line(r, 0) != NULL && smtpc_reply_text(r) && smtpc_reply_enhanced(r));
        }
    }
    if (lost || rc < 0) CHECK(!smtpc__opener_fatal(o) || rc < 0);
    smtpc__opener_free(o);
    return !lost && rc == SMTPC__OPEN_DONE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 10) return 0;
    if (verbose < 0) verbose = getenv("FUZZ_OPENER_TRACE") != NULL;
    const uint8_t c0 = data[0], c1 = data[1], c2 = data[2], c3 = data[3], c4 = data[4], c5 = data[5],
                  c6 = data[6], c7 = data[7], c8 = data[8], c9 = data[9];
    memset(&F, 0, sizeof F);
    F.data = data + 10;
    F.len = size - 10;
    F.piece = 1 + (size_t)c6;
    F.line_pieces = c0 & 0x40;
    if (!long_token[0]) memset(long_token, 'T', sizeof long_token - 1);

    smtpc_tls_mode mode = MODES[(c0 & 7) % 5];
    bool greeted = c0 & 0x08;
    F.stepwise = c0 & 0x10;
    bool encrypted = mode == SMTPC_TLS_MODE_IMPLICIT || (c0 & 0x80);
    F.tls_on = encrypted;
    F.mode_none = mode == SMTPC_TLS_MODE_NONE;

    static const char *const USERS[] = {"user", NULL, "", "us,er=x"};
    static const char *const PASSWORDS[] = {"pencil", NULL, "caf\xc3\xa9", "pass\rword"};
    smtpc__opener_policy pol;
    memset(&pol, 0, sizeof pol);
    pol.have_creds = c1 & 1;
    pol.allow_plain_auth = c1 & 2;
    pol.creds.username = USERS[(c1 >> 2) & 3];
    static char long_password[401];
    if (!long_password[0]) memset(long_password, 'p', sizeof long_password - 1);
    static const char *const PASSWORDS2[] = {NULL, "pass\tword", long_password, "\xc2\xa0sp\xc2\xad" "ace\xe2\x80\x8b"};
    pol.creds.password = c9 & 3 ? PASSWORDS2[c9 & 3] : PASSWORDS[(c1 >> 4) & 3];
    pol.creds.authzid = c1 & 0x40 ? "admin" : NULL;
    pol.creds.client_cert = c1 & 0x80;
    pol.allowed_tls = (smtpc__sasl_mask)c2 << 1;
    pol.allowed_plain = (smtpc__sasl_mask)c3 << 1;
    int tok = c4 & 3;
    F.token_mode = (c4 >> 2) & 3;
    if (tok == 1) pol.creds.oauth_token = "fixed-token";
    if (tok == 2) pol.creds.token_fn = fz_token_fn;
    pol.creds.scram_min_iterations = c4 & 0x20 ? 1 : 0;
    F.have_creds = pol.have_creds;
    F.allow_plain = pol.allow_plain_auth;
    F.tls_required = mode == SMTPC_TLS_MODE_STARTTLS || mode == SMTPC_TLS_MODE_IMPLICIT ||
                     (pol.have_creds && !pol.allow_plain_auth);

    static char long_name[601];
    if (!long_name[0]) memset(long_name, 'h', sizeof long_name - 1);
    static const char *const NAMES[] = {"client.example", NULL, "bad\r\nname", long_name};
    smtpc__opener_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.policy = &pol;
    cfg.mode = mode;
    cfg.encrypted = encrypted;
    cfg.greeted = greeted || F.stepwise;
    cfg.helo = c0 & 0x20;
    cfg.ehlo_name = NAMES[c5 & 3];
    cfg.server = "mx.example.org:587";
    cfg.sasl_host = c4 & 0x10 ? "mx.example.org" : NULL;
    cfg.port = 587;
    if (tok == 3) cfg.token_fn = fz_token_fn;
    cfg.info = fz_info;
    unsigned give_up = c5 >> 2;
    int tls_outcome = c4 >> 6;

    smtpc__engine_opts eo;
    memset(&eo, 0, sizeof eo);
    if (c8 & 0x80) {
        eo.limits.max_line = 32768;
        eo.limits.max_bytes = 65536;
    }
    if (c9 & 4) eo.bdat_chunk_size = 8;
    smtpc__engine *e = NULL;
    if (smtpc__engine_new(&e, &eo)) return 0;
    smtpc__engine_set_trace(e, fz_trace, NULL);
    bool go = true;
    if (cfg.greeted) {
        /* the driver reads the greeting itself */
        smtpc__engine_expect_greeting(e);
        smtpc__event ev;
        for (;;) {
            if (smtpc__engine_next_event(e, &ev) == 1) {
                go = ev.type == SMTPC__EV_REPLY && ev.cmd == SMTPC__CMD_GREETING && ev.reply->code == 220;
                break;
            }
            if (fz_feed(e) != 0) {
                go = false;
                break;
            }
        }
    }
    bool opened = false;
    if (go && !F.stepwise) {
        opened = fz_run_opener(e, &cfg, -1, tls_outcome, &give_up);
    } else if (go) {
        static const int STEPS[] = {SMTPC__OPEN_STEP_EHLO, SMTPC__OPEN_STEP_STARTTLS, SMTPC__OPEN_STEP_AUTH,
                                    SMTPC__OPEN_STEP_GREETING};
        opened = true;
        for (int i = 0; i < 3 && opened; i++) {
            cfg.encrypted = F.tls_on;
            opened = fz_run_opener(e, &cfg, STEPS[(c7 >> (2 * i)) & 3], tls_outcome, &give_up);
        }
    }
    if (opened) {
        /* open: the engine owes no reply (a 421 that came with the last
         * reply may still wait as an event: then the engine is closing) */
        mark m = fz_mark(e);
        CHECK(m.pending == 0);
        if ((c8 & 1) && !smtpc__engine_closing(e)) fz_session(e, c8, c9);
    }
    if (!F.have_creds) CHECK(F.auth_sent == 0);
    smtpc__engine_free(e);
    return 0;
}
