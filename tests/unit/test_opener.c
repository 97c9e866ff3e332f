/* Runs every tests/data/transcripts/opener/NAME.txt through the connection
 * opener (src/engine/opener.c) over a real engine, feeding the server's
 * bytes whole, one byte at a time, and split in two at every offset.
 *
 * Format (text escapes as in the engine transcripts, see transcript.h):
 *   > mode M            TLS mode: none implicit starttls starttls-optional auto
 *   > user U [P]        credentials          > token T    a fixed OAuth token
 *   > provider T1 T2    a token provider: T1 first, T2 on refresh (refreshes counted; "-" fails)
 *   > mechs LIST        allowed mechanisms   > allow_plain   plaintext AUTH allowed
 *   > encrypted         TLS is on from the start (implicit)
 *   > greeted           the driver read the greeting itself: the opener starts at EHLO
 *   > start             smtpc__opener_start  > tls_started   the handshake succeeded
 *                                            (TLS is on for the openers made after it)
 *   > step S            step-wise: a new opener over the same engine (the previous one
 *                       freed), smtpc__opener_start_step with S = ehlo, helo (HELO
 *                       only), starttls or auth - as the session's single steps do
 *   S: text / R: text   server line (CRLF added) / raw bytes; consecutive ones are one block
 *   C: text             the client must have written text CRLF next
 *   E: OUTCOME          the opener said TLS, DONE, or FAIL <CODE> [words of the message];
 *                       ENGINE <CODE>: the engine refused the server's bytes
 *   = check args        mech NAME, fatal yes|no, step NAME, reply CODE, starttls yes|no,
 *                       refreshes N, greeting CODE,
 *                       broken yes|no
 * At the end every output byte and every outcome must have been checked. */
#include "conn/conn_opts.h"
#include "engine/engine.h"
#include "engine/opener.h"
#include "t.h"
#include "transcript.h"


#define MAXOUT 32

typedef struct run {
    const script *sc;
    const char *mode;
    size_t split;
    smtpc__engine *e;
    smtpc__opener *o;
    smtpc_conn_opts *opts;
    smtpc_tls_mode tls_mode;
    bool encrypted, greeted, helo;
    char *outcomes[MAXOUT];
    size_t nout, outpos;
    char tokens[2][256];
    int refreshes;
    size_t lineno;
    int failed;
    bool stopped; /* the opener or the engine failed */
} run;

static void outcome(run *r, const char *a, const char *b, const char *c)
{
    char buf[SMTPC__ERRMSG_MAX + 64];
    snprintf(buf, sizeof buf, "%s%s%s%s%s", a, *b ? " " : "", b, *c ? " " : "", c);
    if (r->nout < MAXOUT) r->outcomes[r->nout++] = strdup(buf);
}

static void note(run *r, int rc)
{
    if (rc == SMTPC__OPEN_TLS) outcome(r, "TLS", "", "");
    else if (rc == SMTPC__OPEN_DONE) outcome(r, "DONE", "", "");
    else if (rc < 0) {
        outcome(r, "FAIL", err_short(rc), smtpc__opener_errmsg(r->o));
        r->stopped = true;
    }
}

static int provider(void *ud, bool refresh, const char **token, size_t *len)
{
    run *r = ud;
    if (refresh) r->refreshes++;
    const char *t = r->tokens[r->refreshes ? 1 : 0];
    if (!*t || !strcmp(t, "-")) return SMTPC_EAUTH; /* "-": the provider fails */
    *token = t;
    *len = strlen(t);
    return 0;
}

static void drain(run *r)
{
    smtpc__event ev;
    while (!r->stopped && smtpc__engine_next_event(r->e, &ev) == 1) note(r, smtpc__opener_event(r->o, &ev));
}

static void feed_all(run *r, const uint8_t *d, size_t n)
{
    while (n > 0 && !r->stopped) {
        size_t used = 0;
        int rc = smtpc__engine_feed(r->e, d, n, &used);
        drain(r);
        if (rc) {
            outcome(r, "ENGINE", err_short(rc), "");
            r->stopped = true;
            return;
        }
        if (used == 0) {
            RFAIL("feed made no progress on %zu bytes", n);
            return;
        }
        d += used;
        n -= used;
    }
}

static void feed_block(run *r, const bytes *b)
{
    const uint8_t *d = (const uint8_t *)b->data;
    if (r->stopped) {
        RFAIL("server data after the opening ended");
        return;
    }
    if (r->split == 0) {
        feed_all(r, d, b->len);
    } else if (r->split == SIZE_MAX) {
        for (size_t i = 0; i < b->len; i++) feed_all(r, d + i, 1);
    } else {
        size_t k = r->split < b->len ? r->split : b->len;
        feed_all(r, d, k);
        feed_all(r, d + k, b->len - k);
    }
}

static int make_opener(run *r)
{
    smtpc__opener_policy pol;
    smtpc__conn_opts_opener_policy(r->opts, false, &pol);
    smtpc__opener_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.policy = &pol;
    cfg.mode = r->tls_mode;
    cfg.encrypted = r->encrypted;
    cfg.greeted = r->greeted;
    cfg.helo = r->helo;
    cfg.ehlo_name = "client.example";
    cfg.server = "mx.example:587";
    cfg.sasl_host = "mx.example";
    cfg.port = 587;
    smtpc__opener_free(r->o);
    r->o = NULL;
    if (smtpc__opener_new(&r->o, r->e, &cfg)) {
        RFAIL("opener_new");
        return -1;
    }
    return 0;
}

static void start(run *r)
{
    if (make_opener(r) == 0) note(r, smtpc__opener_start(r->o));
}

/* A single step on the same engine, as smtpc_session_ehlo/_helo/_starttls/_auth. */
static void step(run *r, const char *name)
{
    smtpc__open_step st = SMTPC__OPEN_STEP_EHLO;
    r->helo = name && !strcmp(name, "helo");
    if (!name || (strcmp(name, "ehlo") && !r->helo)) {
        if (name && !strcmp(name, "starttls")) st = SMTPC__OPEN_STEP_STARTTLS;
        else if (name && !strcmp(name, "auth")) st = SMTPC__OPEN_STEP_AUTH;
        else {
            RFAIL("unknown step %s", name ? name : "(none)");
            return;
        }
    }
    r->stopped = false; /* a failed step may leave the connection usable */
    if (make_opener(r) == 0) note(r, smtpc__opener_start_step(r->o, st));
}

static void action(run *r, const char *line)
{
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", line);
    char *w[8] = {0};
    int nw = split_words(copy, w, 8);
    if (!nw) return;
    int rc = 0;
    if (!strcmp(w[0], "mode")) rc = smtpc_tls_mode_parse(w[1], &r->tls_mode);
    else if (!strcmp(w[0], "user")) rc = smtpc_conn_opts_set_credentials(r->opts, w[1], w[2]);
    else if (!strcmp(w[0], "token")) rc = smtpc_conn_opts_set_oauth_token(r->opts, w[1]);
    else if (!strcmp(w[0], "provider")) {
        snprintf(r->tokens[0], sizeof r->tokens[0], "%s", w[1] ? w[1] : "");
        snprintf(r->tokens[1], sizeof r->tokens[1], "%s", w[2] ? w[2] : "");
        rc = smtpc_conn_opts_set_token_cb(r->opts, provider, r);
    } else if (!strcmp(w[0], "mechs")) rc = smtpc_conn_opts_set_auth_mechanisms(r->opts, w[1]);
    else if (!strcmp(w[0], "allow_plain")) rc = smtpc_conn_opts_set_allow_plaintext_auth(r->opts, true);
    else if (!strcmp(w[0], "encrypted")) r->encrypted = true;
    else if (!strcmp(w[0], "greeted")) r->greeted = true;
    else if (!strcmp(w[0], "start")) start(r);
    else if (!strcmp(w[0], "step")) step(r, w[1]);
    else if (!strcmp(w[0], "tls_started")) {
        r->encrypted = true;
        note(r, smtpc__opener_tls_started(r->o));
        drain(r);
    } else RFAIL("unknown action %s", w[0]);
    if (rc) RFAIL("action failed: %s", err_short(rc));
}

static void check(run *r, const char *line)
{
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", line);
    char *w[4] = {0};
    int nw = split_words(copy, w, 4);
    if (nw < 2 || !r->o) {
        RFAIL("bad check");
        return;
    }
    static const char *const steps[] = {"GREETING", "EHLO", "STARTTLS", "TLS", "AUTH", "OPEN"};
    const smtpc__reply *rep = smtpc__opener_reply(r->o), *g = smtpc__opener_greeting(r->o);
    if (!strcmp(w[0], "mech")) {
        const char *m = smtpc__sasl_mech_name(smtpc__opener_mech(r->o));
        if (strcmp(m ? m : "NONE", w[1])) RFAIL("mech is %s", m ? m : "NONE");
    } else if (!strcmp(w[0], "fatal")) {
        if (smtpc__opener_fatal(r->o) != !strcmp(w[1], "yes")) RFAIL("fatal is %d", smtpc__opener_fatal(r->o));
    } else if (!strcmp(w[0], "starttls")) {
        if (smtpc__opener_did_starttls(r->o) != !strcmp(w[1], "yes")) RFAIL("starttls differs");
    } else if (!strcmp(w[0], "step")) {
        if (strcmp(steps[smtpc__opener_step(r->o)], w[1])) RFAIL("step is %s", steps[smtpc__opener_step(r->o)]);
    } else if (!strcmp(w[0], "reply")) {
        if ((rep ? rep->code : 0) != (int)strtol(w[1], NULL, 10)) RFAIL("reply is %d", rep ? rep->code : 0);
    } else if (!strcmp(w[0], "greeting")) {
        if ((g ? g->code : 0) != (int)strtol(w[1], NULL, 10)) RFAIL("greeting is %d", g ? g->code : 0);
    } else if (!strcmp(w[0], "broken")) {
        if (smtpc__opener_broken(r->o) != !strcmp(w[1], "yes")) RFAIL("broken is %d", smtpc__opener_broken(r->o));
    } else if (!strcmp(w[0], "refreshes")) {
        if (r->refreshes != (int)strtol(w[1], NULL, 10)) RFAIL("refreshes %d", r->refreshes);
    } else {
        RFAIL("unknown check %s", w[0]);
    }
}

static void leftovers(run *r)
{
    if (r->outpos < r->nout) RFAIL("unexpected outcome %s", r->outcomes[r->outpos]);
    r->outpos = r->nout;
}

static int run_script(const script *sc, const char *mode, size_t split)
{
    run rr;
    memset(&rr, 0, sizeof rr);
    run *r = &rr;
    r->sc = sc;
    r->mode = mode;
    r->split = split;
    r->tls_mode = SMTPC_TLS_MODE_NONE;
    smtpc__engine_new(&r->e, NULL);
    smtpc_conn_opts_new(&r->opts);
    size_t i = 0;
    while (i < sc->nlines && !r->failed) {
        r->lineno = i;
        const char *l = sc->lines[i];
        if (!strncmp(l, "S:", 2) || !strncmp(l, "R:", 2)) {
            leftovers(r);
            bytes blk = server_block(sc, &i);
            feed_block(r, &blk);
            free(blk.data);
            continue;
        }
        const char *t = l + 2;
        if (*t == ' ') t++;
        if (l[0] == '>') {
            leftovers(r);
            action(r, l + 1 + (l[1] == ' '));
        } else if (!strncmp(l, "C:", 2)) {
            bytes b;
            unescape(t, &b);
            b.data = realloc(b.data, b.len + 3);
            memcpy(b.data + b.len, "\r\n", 3);
            b.len += 2;
            EXPECT_OUTPUT(r, &b);
            free(b.data);
        } else if (!strncmp(l, "E:", 2)) {
            size_t cl = strcspn(t, " ");
            const char *words = t[cl] ? t + cl + 1 : "";
            if (r->outpos >= r->nout) RFAIL("missing outcome");
            else if (!strncmp(t, "FAIL", 4) && strncmp(r->outcomes[r->outpos], t, strcspn(words, " ") + cl + 1))
                RFAIL("outcome is %s", r->outcomes[r->outpos]);
            else if (!strncmp(t, "FAIL", 4) && !strstr(r->outcomes[r->outpos], words + strcspn(words, " ")))
                RFAIL("outcome is %s", r->outcomes[r->outpos]);
            else if (strncmp(t, "FAIL", 4) && strcmp(r->outcomes[r->outpos], t))
                RFAIL("outcome is %s", r->outcomes[r->outpos]);
            r->outpos++;
        } else if (l[0] == '=') {
            check(r, l + 1 + (l[1] == ' '));
        } else {
            RFAIL("unknown directive");
        }
        i++;
    }
    if (!r->failed) {
        r->lineno = sc->nlines - 1;
        leftovers(r);
        EXPECT_OUTPUT(r, NULL);
    }
    for (size_t k = 0; k < r->nout; k++) free(r->outcomes[k]);
    smtpc__opener_free(r->o);
    smtpc__engine_free(r->e);
    smtpc_conn_opts_free(r->opts);
    return r->failed;
}

TEST(opener_transcripts)
{
    run_dir("transcripts/opener", run_script, 10);
}

int main(void)
{
    RUN(opener_transcripts);
    T_DONE();
}
