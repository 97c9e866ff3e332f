/* Runs every tests/data/transcripts/NAME.txt against the engine, feeding the
 * server's bytes whole, one byte at a time, and split in two at every offset.
 *
 * Format, one directive per line ('#' starts a comment line):
 *   > action args      call the engine (see run_action)
 *   S: text            server line, CRLF appended      R: text   raw server bytes
 *   C: text            the engine must have written exactly text CRLF next
 *   W: text            the engine must have written exactly these raw bytes next
 *   E: event           the next event: "REPLY <cmd> <code>", "TLS_READY <code>",
 *                      "TXN_RCPT <tag> <code>", "TXN_BODY", "TXN_DONE <status> <code> <cmd>"
 *   !: CODE [words]    the last action/feed failed with SMTPC_<CODE>; errmsg contains words
 *   = check args       state checks (see run_check)
 * Text accepts escapes \r \n \t \0 \\ \xNN and {N*c} (c repeated N times).
 * Consecutive S:/R: lines are fed as one block. At the end the output must
 * be empty and no event or error left unchecked. */
#include "engine/engine.h"
#include "t.h"
#include "transcript.h"


/* ---- one run ---------------------------------------------------------------- */
#define MAXEV 512
typedef struct {
    const script *sc;
    const char *mode;
    size_t split; /* 0 = whole; SIZE_MAX = byte by byte; else split at this offset */
    smtpc__engine *e;
    char *events[MAXEV];
    smtpc__reply *evreply[MAXEV];
    size_t nev, evpos;
    int err;          /* last unchecked error */
    char errmsg[600];
    const smtpc__reply *cur; /* reply of the last matched event */
    size_t lineno;
    int failed;
    char *bufs[8]; /* string storage for action args */
} run;

static void note_error(run *r, int rc)
{
    if (rc == 0) return;
    r->err = rc;
    snprintf(r->errmsg, sizeof r->errmsg, "%s", smtpc__engine_errmsg(r->e));
}

static void drain(run *r)
{
    smtpc__event ev;
    while (smtpc__engine_next_event(r->e, &ev) == 1) {
        char buf[128];
        int c = ev.reply ? ev.reply->code : 0;
        switch (ev.type) {
        case SMTPC__EV_REPLY: snprintf(buf, sizeof buf, "REPLY %s %d", smtpc__cmd_name(ev.cmd), c); break;
        case SMTPC__EV_TLS_READY: snprintf(buf, sizeof buf, "TLS_READY %d", c); break;
        case SMTPC__EV_TXN_RCPT: snprintf(buf, sizeof buf, "TXN_RCPT %u %d", (unsigned)ev.tag, c); break;
        case SMTPC__EV_TXN_BODY: snprintf(buf, sizeof buf, "TXN_BODY"); break;
        case SMTPC__EV_TXN_DONE:
            snprintf(buf, sizeof buf, "TXN_DONE %s %d %s", ev.status ? err_short(ev.status) : "OK", c,
                     smtpc__cmd_name(ev.cmd));
            break;
        default: snprintf(buf, sizeof buf, "?%d", (int)ev.type); break;
        }
        if (r->nev < MAXEV) {
            r->events[r->nev] = strdup(buf);
            r->evreply[r->nev] = ev.reply ? smtpc__reply_dup(ev.reply) : NULL;
            r->nev++;
        }
    }
}

static void feed_all(run *r, const uint8_t *d, size_t n)
{
    while (n > 0) {
        size_t used = 0;
        int rc = smtpc__engine_feed(r->e, d, n, &used);
        if (used > n) {
            RFAIL("consumed %zu of %zu", used, n);
            return;
        }
        drain(r);
        if (rc) {
            note_error(r, rc);
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
    if (r->err) {
        RFAIL("server data after an unchecked error %s", err_short(r->err));
        return;
    }
    const uint8_t *d = (const uint8_t *)b->data;
    if (r->split == 0) {
        feed_all(r, d, b->len);
    } else if (r->split == SIZE_MAX) {
        for (size_t i = 0; i < b->len && !r->err; i++) feed_all(r, d + i, 1);
    } else {
        size_t k = r->split < b->len ? r->split : b->len;
        feed_all(r, d, k);
        if (!r->err) feed_all(r, d + k, b->len - k);
    }
}

/* key=value lookup among the words of an action */
static const char *kv(char **w, int nw, const char *key)
{
    size_t kl = strlen(key);
    for (int i = 1; i < nw; i++)
        if (strncmp(w[i], key, kl) == 0 && w[i][kl] == '=') return w[i] + kl + 1;
    return NULL;
}

static bool has_word(char **w, int nw, const char *word)
{
    for (int i = 1; i < nw; i++)
        if (strcmp(w[i], word) == 0) return true;
    return false;
}

/* An unescaped copy owned by the run (freed at the end). */
static char *arg(run *r, const char *s)
{
    bytes b;
    if (unescape(s, &b)) return NULL;
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(r->bufs); i++)
        if (!r->bufs[i]) return r->bufs[i] = b.data;
    free(r->bufs[0]);
    memmove(r->bufs, r->bufs + 1, sizeof r->bufs - sizeof r->bufs[0]);
    return r->bufs[SMTPC__ARRAY_LEN(r->bufs) - 1] = b.data;
}

static void run_action(run *r, const char *line)
{
    char copy[8192];
    snprintf(copy, sizeof copy, "%s", line);
    char *w[64];
    int nw = split_words(copy, w, 64);
    if (nw == 0) return;
    const char *a = w[0];
    const char *rest = line;
    while (*rest == ' ') rest++;
    rest += strlen(a);
    if (*rest == ' ') rest++;
    int rc = 0;
    smtpc__engine *e = r->e;
    if (!strcmp(a, "greeting")) rc = smtpc__engine_expect_greeting(e);
    else if (!strcmp(a, "ehlo")) rc = smtpc__engine_ehlo(e, arg(r, rest));
    else if (!strcmp(a, "helo")) rc = smtpc__engine_helo(e, arg(r, rest));
    else if (!strcmp(a, "starttls")) rc = smtpc__engine_starttls(e);
    else if (!strcmp(a, "tls_started")) smtpc__engine_tls_started(e);
    else if (!strcmp(a, "auth")) rc = smtpc__engine_auth(e, arg(r, nw > 1 ? w[1] : ""), nw > 2 ? (strcmp(w[2], "=") ? arg(r, w[2]) : "") : NULL);
    else if (!strcmp(a, "auth_continue")) rc = smtpc__engine_auth_continue(e, arg(r, rest));
    else if (!strcmp(a, "mail") || !strcmp(a, "txn")) {
        smtpc__mail_params mp = {0};
        const char *v;
        if ((v = kv(w, nw, "size"))) mp.size = strtoull(v, NULL, 10);
        if ((v = kv(w, nw, "body"))) mp.body = !strcmp(v, "7bit") ? SMTPC__BODY_7BIT : !strcmp(v, "8bitmime") ? SMTPC__BODY_8BITMIME : SMTPC__BODY_BINARYMIME;
        mp.smtputf8 = has_word(w, nw, "smtputf8");
        mp.requiretls = has_word(w, nw, "requiretls");
        if ((v = kv(w, nw, "ret"))) mp.dsn_ret = arg(r, v);
        if ((v = kv(w, nw, "envid"))) mp.dsn_envid = arg(r, v);
        if ((v = kv(w, nw, "extra"))) mp.extra = arg(r, v);
        const char *from = kv(w, nw, "from");
        from = from ? arg(r, from) : NULL;
        if (!strcmp(a, "mail")) {
            rc = smtpc__engine_mail(e, from, &mp);
        } else {
            const char *to = kv(w, nw, "to");
            char tobuf[4096];
            snprintf(tobuf, sizeof tobuf, "%s", to ? to : "");
            const char *rcpts[64];
            smtpc__rcpt_params rp[64];
            memset(rp, 0, sizeof rp);
            size_t n = 0;
            for (char *p = tobuf, *c; p && n < 64; p = c ? c + 1 : NULL) {
                c = strchr(p, ',');
                if (c) *c = 0;
                bytes b;
                unescape(p, &b);
                rcpts[n++] = strdup(b.data);
                free(b.data);
            }
            const char *notify = kv(w, nw, "notify"), *orcpt = kv(w, nw, "orcpt");
            for (size_t i = 0; i < n; i++) {
                rp[i].dsn_notify = notify ? arg(r, notify) : NULL;
                rp[i].dsn_orcpt = orcpt;
            }
            smtpc__txn_opts o = {from, &mp, rcpts, (notify || orcpt) ? rp : NULL, n,
                                 has_word(w, nw, "strict") ? SMTPC__TXN_STRICT : SMTPC__TXN_CONTINUE,
                                 has_word(w, nw, "bdat")};
            rc = smtpc__engine_txn_begin(e, &o);
            for (size_t i = 0; i < n; i++) free((char *)rcpts[i]);
        }
    } else if (!strcmp(a, "rcpt")) {
        smtpc__rcpt_params rp = {0};
        const char *v;
        if ((v = kv(w, nw, "notify"))) rp.dsn_notify = arg(r, v);
        if ((v = kv(w, nw, "orcpt"))) rp.dsn_orcpt = arg(r, v);
        const char *to = kv(w, nw, "to");
        rc = smtpc__engine_rcpt(e, to ? arg(r, to) : NULL, &rp, 0);
    } else if (!strcmp(a, "data")) rc = smtpc__engine_data(e);
    else if (!strcmp(a, "rset")) rc = smtpc__engine_rset(e);
    else if (!strcmp(a, "noop")) rc = smtpc__engine_noop(e);
    else if (!strcmp(a, "quit")) rc = smtpc__engine_quit(e);
    else if (!strcmp(a, "raw")) rc = smtpc__engine_raw(e, arg(r, rest));
    else if (!strcmp(a, "bdat_begin")) rc = smtpc__engine_body_begin_bdat(e);
    else if (!strcmp(a, "body")) {
        bytes b;
        unescape(rest, &b);
        rc = smtpc__engine_body_write(e, b.data, b.len);
        free(b.data);
    } else if (!strcmp(a, "body_end")) rc = smtpc__engine_body_end(e);
    else if (!strcmp(a, "reset")) smtpc__engine_reset(e);
    else RFAIL("unknown action %s", a);
    note_error(r, rc);
}

static void run_check(run *r, const char *line)
{
    char copy[8192];
    snprintf(copy, sizeof copy, "%s", line);
    char *w[64];
    int nw = split_words(copy, w, 64);
    const char *rest = line;
    while (*rest == ' ') rest++;
    rest += nw ? strlen(w[0]) : 0;
    if (*rest == ' ') rest++;
    const smtpc__caps *c = smtpc__engine_caps(r->e);
    if (nw == 0) return;
    if (!strcmp(w[0], "cap") || !strcmp(w[0], "nocap")) {
        static const struct { const char *n; unsigned f; } fl[] = {
            {"PIPELINING", SMTPC_EXT_PIPELINING}, {"SIZE", SMTPC_EXT_SIZE}, {"8BITMIME", SMTPC_EXT_8BITMIME},
            {"SMTPUTF8", SMTPC_EXT_SMTPUTF8}, {"CHUNKING", SMTPC_EXT_CHUNKING}, {"BINARYMIME", SMTPC_EXT_BINARYMIME},
            {"DSN", SMTPC_EXT_DSN}, {"ENHANCEDSTATUSCODES", SMTPC_EXT_ENHANCEDSTATUSCODES},
            {"STARTTLS", SMTPC_EXT_STARTTLS}, {"AUTH", SMTPC_EXT_AUTH}, {"REQUIRETLS", SMTPC_EXT_REQUIRETLS}};
        for (int i = 1; i < nw; i++) {
            unsigned f = 0;
            for (size_t k = 0; k < SMTPC__ARRAY_LEN(fl); k++)
                if (!strcmp(fl[k].n, w[i])) f = fl[k].f;
            if (!f) RFAIL("unknown cap %s", w[i]);
            bool want = w[0][0] == 'c';
            if (((c->flags & f) != 0) != want) RFAIL("cap %s is %s", w[i], want ? "missing" : "present");
        }
    } else if (!strcmp(w[0], "esmtp")) {
        if (c->esmtp != (nw > 1 && !strcmp(w[1], "yes"))) RFAIL("esmtp is %d", c->esmtp);
    } else if (!strcmp(w[0], "size")) {
        unsigned long long want = strtoull(w[1], NULL, 10);
        if (c->size_max != want) RFAIL("size_max %llu", (unsigned long long)c->size_max);
    } else if (!strcmp(w[0], "auth")) {
        char got[1024] = "";
        for (size_t i = 0; i < c->nauth; i++) {
            if (i) strncat(got, " ", sizeof got - strlen(got) - 1);
            strncat(got, c->auth[i], sizeof got - strlen(got) - 1);
        }
        if (strcmp(got, rest)) RFAIL("auth is \"%s\"", got);
        if (c->auth && c->auth[c->nauth]) RFAIL("auth list not NULL-terminated");
    } else if (!strcmp(w[0], "param")) {
        const char *p = smtpc__caps_param(c, w[1]);
        const char *want = rest + strlen(w[1]);
        if (*want == ' ') want++;
        if (!p || strcmp(p, want)) RFAIL("param %s is \"%s\"", w[1], p ? p : "(null)");
    } else if (!strcmp(w[0], "noparam")) {
        if (smtpc__caps_param(c, w[1])) RFAIL("param %s present", w[1]);
    } else if (!strcmp(w[0], "pending")) {
        if (smtpc__engine_pending_replies(r->e) != strtoul(w[1], NULL, 10))
            RFAIL("pending %zu", smtpc__engine_pending_replies(r->e));
    } else if (!strcmp(w[0], "state")) {
        if (strcmp(smtpc__engine_state_name(r->e), w[1])) RFAIL("state %s", smtpc__engine_state_name(r->e));
    } else if (!strcmp(w[0], "closing")) {
        if (!smtpc__engine_closing(r->e)) RFAIL("not closing");
    } else if (!strcmp(w[0], "tls")) {
        if (!smtpc__engine_tls_active(r->e)) RFAIL("TLS not active");
    } else if (!strcmp(w[0], "enh") || !strcmp(w[0], "text") || !strcmp(w[0], "line") ||
               !strcmp(w[0], "nlines") || !strcmp(w[0], "code")) {
        if (!r->cur) {
            RFAIL("no reply to check");
            return;
        }
        bytes b;
        if (!strcmp(w[0], "enh")) {
            unescape(rest, &b);
            if (strcmp(smtpc_reply_enhanced(r->cur), b.data)) RFAIL("enhanced \"%s\"", smtpc_reply_enhanced(r->cur));
            free(b.data);
        } else if (!strcmp(w[0], "text")) {
            unescape(rest, &b);
            if (strcmp(smtpc_reply_text(r->cur), b.data)) RFAIL("text \"%s\"", smtpc_reply_text(r->cur));
            free(b.data);
        } else if (!strcmp(w[0], "nlines")) {
            if (smtpc_reply_line_count(r->cur) != strtoul(w[1], NULL, 10)) RFAIL("nlines %zu", smtpc_reply_line_count(r->cur));
        } else if (!strcmp(w[0], "code")) {
            if (smtpc_reply_code(r->cur) != (int)strtol(w[1], NULL, 10)) RFAIL("code %d", smtpc_reply_code(r->cur));
        } else {
            size_t i = strtoul(w[1], NULL, 10);
            const char *want = rest + strlen(w[1]);
            if (*want == ' ') want++;
            unescape(want, &b);
            const char *got = smtpc_reply_line(r->cur, i);
            if (!got || strcmp(got, b.data)) RFAIL("line %zu \"%s\"", i, got ? got : "(null)");
            free(b.data);
        }
    } else {
        RFAIL("unknown check %s", w[0]);
    }
}

static void check_leftovers(run *r)
{
    if (r->evpos < r->nev) RFAIL("unexpected event %s", r->events[r->evpos]);
    if (r->err) RFAIL("unexpected error %s: %s", err_short(r->err), r->errmsg);
    r->evpos = r->nev;
    r->err = 0;
}

static int run_script(const script *sc, const char *mode, size_t split)
{
    run rr;
    memset(&rr, 0, sizeof rr);
    run *r = &rr;
    r->sc = sc;
    r->mode = mode;
    r->split = split;
    smtpc__engine_opts opts = {0};
    opts.bdat_chunk_size = 16;
    smtpc__engine_new(&r->e, &opts);
    size_t i = 0;
    while (i < sc->nlines && !r->failed) {
        r->lineno = i;
        const char *l = sc->lines[i];
        if (!strncmp(l, "S: ", 3) || !strncmp(l, "S:", 3) || !strncmp(l, "R: ", 3)) {
            check_leftovers(r);
            /* gather the block */
            bytes blk = server_block(sc, &i);
            feed_block(r, &blk);
            free(blk.data);
            continue;
        }
        const char *t = l + 2;
        if (*t == ' ') t++;
        if (l[0] == '>') {
            check_leftovers(r);
            run_action(r, l + 1);
        } else if (!strncmp(l, "C:", 2) || !strncmp(l, "W:", 2)) {
            check_leftovers(r);
            bytes b;
            unescape(t, &b);
            if (l[0] == 'C') {
                b.data = realloc(b.data, b.len + 3);
                memcpy(b.data + b.len, "\r\n", 3);
                b.len += 2;
            }
            EXPECT_OUTPUT(r, &b);
            free(b.data);
        } else if (!strncmp(l, "E:", 2)) {
            if (r->evpos >= r->nev) RFAIL("missing event");
            else if (strcmp(r->events[r->evpos], t)) RFAIL("event is %s", r->events[r->evpos]);
            else r->cur = r->evreply[r->evpos++];
        } else if (!strncmp(l, "!:", 2)) {
            if (r->evpos < r->nev) RFAIL("unexpected event %s", r->events[r->evpos]);
            char code[64];
            size_t cl = strcspn(t, " ");
            snprintf(code, sizeof code, "%.*s", (int)cl, t);
            const char *words = t + cl;
            if (*words == ' ') words++;
            if (!r->err) RFAIL("no error");
            else if (strcmp(err_short(r->err), code)) RFAIL("error is %s: %s", err_short(r->err), r->errmsg);
            else if (*words && !strstr(r->errmsg, words)) RFAIL("errmsg is \"%s\"", r->errmsg);
            r->err = 0;
        } else if (l[0] == '=') {
            run_check(r, l + 1);
        } else {
            RFAIL("unknown directive");
        }
        i++;
    }
    if (!r->failed) {
        r->lineno = sc->nlines - 1;
        check_leftovers(r);
        EXPECT_OUTPUT(r, NULL);
    }
    for (size_t k = 0; k < r->nev; k++) {
        free(r->events[k]);
        smtpc__reply_free(r->evreply[k]);
    }
    for (size_t k = 0; k < SMTPC__ARRAY_LEN(r->bufs); k++) free(r->bufs[k]);
    smtpc__engine_free(r->e);
    return r->failed;
}

TEST(transcripts)
{
    run_dir("transcripts", run_script, 1);
}

int main(void)
{
    RUN(transcripts);
    T_DONE();
}
