/* smtpc queue list|flush|retry|drop: the offline outbox (smtpc/outbox.h),
 * and the outbox delivery of `smtpc send --outbox DIR`. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_deliver_outbox(const cli_ctx *c, const cli_envelope *env, const cli_source *src, cli_result *r)
{
    r->delivery = "outbox";
    const char *dir = cli_get(c, O_OUTBOX);
    if (!dir) return cli_result_fail(r, SMTPC_ECONFIG, "outbox delivery needs --outbox DIR");
    smtpc_outbox *ob;
    char err[512] = "";
    int rc = smtpc_outbox_open(&ob, dir, err, sizeof err);
    if (rc) return cli_result_fail(r, rc, "%s", err[0] ? err : smtpc_strerror(rc));
    char id[128];
    smtpc_message_writer *w = NULL;
    cli_source_reader ms;
    cli_source_reader_init(&ms, src);
    if (src->msg && (rc = smtpc_message_writer_new(&w, src->msg, SMTPC_WRITE_8BITMIME | SMTPC_WRITE_SMTPUTF8))) {
        cli_result_fail(r, rc, "%s", smtpc_message_errmsg(src->msg));
    } else {
        rc = smtpc_outbox_add_raw(ob, env->from, env->rcpts, env->nrcpts,
                                  w ? smtpc_message_writer_read : cli_source_read, w ? (void *)w : (void *)&ms, id,
                                  sizeof id);
        if (rc) cli_result_fail(r, rc, "%s", cli_source_reader_error(&ms) ? cli_source_reader_error(&ms)
                                                                         : smtpc_outbox_errmsg(ob));
    }
    smtpc_message_writer_free(w);
    smtpc_outbox_free(ob);
    if (rc) return rc;
    free(r->queue_id);
    r->queue_id = strdup(id);
    cli_buf pb;
    cli_buf_init(&pb, 8192);
    if (!cli_buf_printf(&pb, "%s/queue/%s.msg", dir, id) && !cli_buf_append(&pb, "", 1)) {
        free(r->path);
        r->path = (char *)pb.data;
    } else {
        cli_buf_free(&pb);
    }
    for (size_t i = 0; i < r->nrcpts; i++) r->rcpts[i].accepted = true;
    r->ok = true;
    return 0;
}

/* Progress line for queue flush (drawn only on a terminal). */
typedef struct flush_progress {
    cli_progress pg;
    bool started;
} flush_progress;

static void on_flush_progress(void *ud, size_t done, size_t total, const smtpc_outbox_stats *st)
{
    (void)st;
    flush_progress *fp = ud;
    if (!fp->started) {
        cli_progress_start(&fp->pg, "messages", total, false);
        fp->started = true;
    }
    cli_progress_update(&fp->pg, done);
}

/* A client configured like `smtpc send` would be: the account, then flags.
 * The password (pw, may be NULL) is obtained once by the caller, so a
 * --password-cmd runs once however many clients a parallel flush uses. */
static int make_client(cli_ctx *c, const char *pw, smtpc_client **out)
{
    smtpc_client *cl;
    if (smtpc_client_new(&cl)) return EX_SOFTWARE;
    int rc = 0;
    if (c->acct) {
        const char *an = smtpc_account_name(c->acct);
        rc = smtpc_client_use_config(cl, c->cfg, an && *an ? an : NULL);
    }
    const char *v;
    if (!rc && c->o.val[O_SERVER]) {
        char host[256];
        uint16_t port = 0;
        if (smtpc_config_parse_server(c->o.val[O_SERVER], host, sizeof host, &port)) rc = SMTPC_ECONFIG;
        else rc = smtpc_client_set_host(cl, host, port);
    }
    if (!rc && (v = c->o.val[O_TLS])) {
        smtpc_tls_mode m;
        rc = smtpc_tls_mode_parse(v, &m) ? SMTPC_ECONFIG : smtpc_client_set_tls_mode(cl, m);
    }
    if (!rc && (v = cli_get(c, O_CA_FILE))) rc = smtpc_client_set_ca_file(cl, v);
    if (!rc && (v = cli_get(c, O_CA_PATH))) rc = smtpc_client_set_ca_path(cl, v);
    if (!rc && (v = cli_get(c, O_TLS_SERVER_NAME))) rc = smtpc_client_set_tls_server_name(cl, v);
    if (!rc && (v = cli_get(c, O_CERT))) rc = smtpc_client_set_client_cert(cl, v, cli_get(c, O_KEY));
    if (!rc && (v = cli_get(c, O_PIN))) {
        /* several pins: separated by ';' ',' or spaces (as for send) */
        char buf[1024];
        cli_strlcpy(buf, v, sizeof buf);
        rc = smtpc_client_add_pin(cl, NULL);
        for (char *p = buf; !rc && *p;) {
            size_t n = strcspn(p, ";, ");
            char save = p[n];
            p[n] = '\0';
            if (n) rc = smtpc_client_add_pin(cl, p);
            p += n + (save ? 1 : 0);
        }
    }
    if (!rc && cli_get_bool(c, O_INSECURE)) rc = smtpc_client_set_insecure(cl, true);
    if (!rc && (cli_get(c, O_TLS_MIN) || cli_get(c, O_TLS_MAX) || c->o.val[O_TLS_STRICT_VERSION])) {
        int vers[2] = {0, 0};
        const char *vv[2] = {cli_get(c, O_TLS_MIN), cli_get(c, O_TLS_MAX)};
        for (int i = 0; i < 2 && !rc; i++) {
            if (!vv[i]) continue;
            if (!strcmp(vv[i], "1.0")) vers[i] = SMTPC_TLS_1_0;
            else if (!strcmp(vv[i], "1.1")) vers[i] = SMTPC_TLS_1_1;
            else if (!strcmp(vv[i], "1.2")) vers[i] = SMTPC_TLS_1_2;
            else if (!strcmp(vv[i], "1.3")) vers[i] = SMTPC_TLS_1_3;
            else rc = SMTPC_ECONFIG;
        }
        if (!rc) rc = smtpc_client_set_tls_versions(cl, vers[0], vers[1], c->o.val[O_TLS_STRICT_VERSION] != NULL);
    }
    if (!rc && (v = cli_get(c, O_EHLO_NAME))) rc = smtpc_client_set_ehlo_name(cl, v);
    if (!rc && (v = cli_get(c, O_BIND))) {
        /* ADDR, ADDR:PORT, [IPv6]:PORT or a bare IPv6 address */
        char addr[256];
        uint16_t bport = 0;
        const char *colon = strchr(v, ':');
        if (colon && v[0] != '[' && strchr(colon + 1, ':')) cli_strlcpy(addr, v, sizeof addr);
        else if (smtpc_config_parse_server(v, addr, sizeof addr, &bport)) rc = SMTPC_ECONFIG;
        if (!rc) rc = smtpc_client_set_bind(cl, addr, bport);
    }
    if (!rc && cli_get_bool(c, O_IPV4) && cli_get_bool(c, O_IPV6)) rc = SMTPC_ECONFIG; /* exclude each other */
    if (!rc && cli_get_bool(c, O_IPV4)) rc = smtpc_client_set_family(cl, SMTPC_FAMILY_IPV4);
    if (!rc && cli_get_bool(c, O_IPV6)) rc = smtpc_client_set_family(cl, SMTPC_FAMILY_IPV6);
    if (!rc && (v = cli_get(c, O_PROXY))) rc = smtpc_client_set_proxy_url(cl, v);
    if (!rc && (v = cli_get(c, O_AUTH))) rc = smtpc_client_set_auth_mechanisms(cl, v);
    if (!rc && cli_get_bool(c, O_ALLOW_PLAINTEXT_AUTH)) rc = smtpc_client_set_allow_plaintext_auth(cl, true);
    if (!rc && (v = cli_get(c, O_CONNECT_TIMEOUT))) {
        int64_t ms;
        rc = smtpc_config_parse_duration_ms(v, &ms);
        if (!rc) rc = smtpc_client_set_connect_timeout_ms(cl, ms);
    }
    if (!rc && (v = cli_get(c, O_TIMEOUT))) {
        int64_t ms;
        rc = smtpc_config_parse_duration_ms(v, &ms);
        if (!rc) rc = smtpc_client_set_command_timeout_ms(cl, ms);
        if (!rc) rc = smtpc_client_set_data_timeout_ms(cl, ms);
        /* as for send: the greeting's too, unless --greeting-timeout says otherwise */
        if (!rc && !cli_get(c, O_GREETING_TIMEOUT)) rc = smtpc_client_set_greeting_timeout_ms(cl, ms);
    }
    if (!rc && (v = cli_get(c, O_GREETING_TIMEOUT))) {
        int64_t ms;
        rc = smtpc_config_parse_duration_ms(v, &ms);
        if (!rc) rc = smtpc_client_set_greeting_timeout_ms(cl, ms);
        if (!rc) rc = smtpc_client_set_auto_timeout_ms(cl, ms);
    }
    if (!rc && (v = cli_get(c, O_USER))) rc = smtpc_client_set_credentials(cl, v, pw);
    if (rc) {
        cli_err(c, "%s", smtpc_client_errmsg(cl)[0] ? smtpc_client_errmsg(cl) : smtpc_strerror(rc));
        smtpc_client_free(cl);
        return EX_CONFIG;
    }
    *out = cl;
    return 0;
}

/* queue flush [--connections K]: K clients with the same settings, each
 * with its own pool of one connection: a worker closes its connection
 * (QUIT) before it opens the next, so never more than K are open. */
static int queue_flush(cli_ctx *c, smtpc_outbox *ob)
{
    uint64_t k = 1;
    const char *kv = c->o.val[O_CONNECTIONS];
    if (kv && (cli_parse_u64(kv, &k) || k < 1 || k > 100)) {
        cli_err(c, "--connections: \"%s\" is not a number from 1 to 100", kv);
        return EX_USAGE;
    }
    char *pw = NULL;
    if (cli_get(c, O_USER)) {
        char err[256];
        const char *srcname;
        int sr = cli_secret(c, false, &pw, &srcname, err, sizeof err);
        if (sr && sr != SMTPC_ENOTFOUND) {
            cli_err(c, "%s", err);
            return sr == SMTPC_ETEMPFAIL ? EX_TEMPFAIL : EX_CONFIG;
        }
    }
    smtpc_client *cl[100] = {NULL};
    int ex = 0;
    for (size_t i = 0; !ex && i < k; i++) ex = make_client(c, pw, &cl[i]);
    cli_free_secret(pw);
    if (!ex) {
        smtpc_outbox_stats st;
        flush_progress fp = {.started = false};
        smtpc_outbox_set_progress(ob, on_flush_progress, &fp);
        int rc = smtpc_outbox_flush_parallel(ob, cl, (size_t)k, &st);
        if (fp.started) cli_progress_end(&fp.pg);
        if (rc) cli_err(c, "%s", smtpc_outbox_errmsg(ob));
        if (c->json)
            printf("{\"ok\":%s,\"sent\":%u,\"deferred\":%u,\"failed\":%u,\"not_due\":%u}\n",
                   !rc && !st.deferred && !st.failed ? "true" : "false", st.sent, st.deferred, st.failed,
                   st.not_due);
        else
            printf("sent %u, deferred %u, failed %u, not due %u\n", st.sent, st.deferred, st.failed, st.not_due);
        /* another flush of the outbox is running: try again later */
        ex = rc == SMTPC_EBUSY ? EX_TEMPFAIL
             : rc              ? cli_exit_code(rc)
             : st.deferred     ? EX_TEMPFAIL
             : st.failed       ? EX_UNAVAILABLE
                               : 0;
    }
    for (size_t i = 0; i < k; i++) smtpc_client_free(cl[i]);
    return ex;
}

static int print_entry(void *ud, const smtpc_outbox_entry *e)
{
    cli_ctx *c = ud;
    char when[32] = "now";
    if (e->failed) snprintf(when, sizeof when, "failed");
    else if (e->next_attempt > (int64_t)time(NULL)) {
        time_t t = (time_t)e->next_attempt;
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    }
    if (c->json) {
        cli_buf b;
        cli_buf_init(&b, 1 << 20);
        cli_buf_append_str(&b, "{\"id\":");
        cli_json_str(&b, e->id);
        cli_buf_append_str(&b, ",\"from\":");
        cli_json_str(&b, e->from);
        cli_buf_printf(&b, ",\"recipients\":%zu,\"attempts\":%u,\"next_attempt\":%lld,\"failed\":%s,\"last_error\":",
                          e->nrcpts, e->attempts, (long long)e->next_attempt, e->failed ? "true" : "false");
        cli_json_str(&b, e->last_error);
        cli_buf_append_str(&b, "}\n");
        fwrite(cli_buf_ptr(&b), 1, cli_buf_size(&b), stdout);
        cli_buf_free(&b);
    } else {
        /* the last error holds the server's words: escaped like every server text */
        char ef[640], er[640], ee[1024];
        cli_escape_into(ef, sizeof ef, e->from, strlen(e->from));
        cli_escape_into(er, sizeof er, e->first_rcpt, strlen(e->first_rcpt));
        cli_escape_into(ee, sizeof ee, e->last_error, strlen(e->last_error));
        printf("%s  %-19s  attempts %u  %s -> %s%s", e->id, when, e->attempts, ef, er,
               e->nrcpts > 1 ? " (+more)" : "");
        if (e->last_error[0]) printf("  [%s]", ee);
        putchar('\n');
    }
    return 0;
}

int cmd_queue(const char *prog, int argc, char **argv)
{
    cli_ctx c;
    memset(&c, 0, sizeof c);
    c.prog = prog;
    c.cmdname = "queue";
    c.cmd = CMD_QUEUE;
    int ex = cli_parse(prog, "queue", CMD_QUEUE, argc, argv, &c.o);
    if (ex) return ex;
    if (c.o.val[O_HELP]) {
        cli_opts_free(&c.o);
        return cmd_help("queue", stdout);
    }
    c.json = c.o.val[O_JSON] != NULL;
    const char *action = c.o.pos.n ? c.o.pos.v[0] : NULL;
    const char *id = c.o.pos.n > 1 ? c.o.pos.v[1] : NULL;
    if (!action || c.o.pos.n > 2 ||
        (strcmp(action, "list") && strcmp(action, "flush") && strcmp(action, "retry") && strcmp(action, "drop")) ||
        (!strcmp(action, "drop") && !id) || ((!strcmp(action, "list") || !strcmp(action, "flush")) && id) ||
        (c.o.val[O_CONNECTIONS] && strcmp(action, "flush"))) {
        fprintf(stderr, "usage: %s queue list|flush [--connections K]|retry [ID]|drop ID [--outbox DIR] [options]\n",
                prog);
        cli_opts_free(&c.o);
        return EX_USAGE;
    }
    ex = cli_ctx_load_config(&c, NULL);
    if (ex) {
        cli_ctx_free(&c);
        return ex;
    }
    const char *dir = cli_get(&c, O_OUTBOX);
    if (!dir) {
        cli_err(&c, "which outbox? --outbox DIR (or \"outbox\" in the configuration)");
        cli_ctx_free(&c);
        return EX_USAGE;
    }
    smtpc_outbox *ob;
    char err[512] = "";
    int rc = smtpc_outbox_open(&ob, dir, err, sizeof err);
    if (rc) {
        cli_err(&c, "%s", err);
        cli_ctx_free(&c);
        return EX_IOERR;
    }
    if (!strcmp(action, "list")) {
        rc = smtpc_outbox_list(ob, true, print_entry, &c);
        ex = rc ? cli_exit_code(rc) : 0;
    } else if (!strcmp(action, "retry") || !strcmp(action, "drop")) {
        rc = !strcmp(action, "drop") ? smtpc_outbox_drop(ob, id) : smtpc_outbox_retry(ob, id);
        if (rc) cli_err(&c, "%s", smtpc_outbox_errmsg(ob)[0] ? smtpc_outbox_errmsg(ob) : smtpc_strerror(rc));
        ex = rc == SMTPC_ENOTFOUND ? EX_DATAERR : rc ? cli_exit_code(rc) : 0;
    } else {
        ex = queue_flush(&c, ob);
    }
    smtpc_outbox_free(ob);
    cli_ctx_free(&c);
    return ex;
}
