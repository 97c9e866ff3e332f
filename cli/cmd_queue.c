/* smtpc queue list|flush|retry|drop|check: the offline outbox (smtpc/outbox.h),
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
    int rc = cli_deliver_stored(c, SMTPC_DELIVERY_OUTBOX, dir, env, src, r);
    if (!rc && !cli_queue_is_pg(dir)) cli_result_path(r, dir, "queue/", r->queue_id, ".msg");
    return rc;
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

int cli_queue_conn_opts(cli_ctx *c, uint64_t kmax, uint64_t *k, smtpc_conn_opts **o)
{
    *k = 1;
    const char *kv = c->o.val[O_CONNECTIONS];
    if (kv && (cli_parse_u64(kv, k) || *k < 1 || *k > kmax)) {
        cli_err(c, "--connections: \"%s\" is not a number from 1 to %llu", kv, (unsigned long long)kmax);
        return EX_USAGE;
    }
    /* the connection settings of `smtpc send`, built once (a --password-cmd
     * runs once however many clients the flush uses) */
    cli_result r;
    cli_result_init(&r);
    if (cli_conn_opts(c, &r, NULL, NULL, o)) {
        cli_err(c, "%s", r.errmsg);
        int ex = r.err == SMTPC_ETEMPFAIL ? EX_TEMPFAIL : EX_CONFIG;
        cli_result_free(&r);
        return ex;
    }
    cli_result_free(&r);
    return 0;
}

/* queue flush [--connections K]: K clients with the same settings, each
 * with its own pool of one connection: a worker closes its connection
 * (QUIT) before it opens the next, so never more than K are open. */
static int queue_flush(cli_ctx *c, smtpc_outbox *ob)
{
    uint64_t k;
    smtpc_conn_opts *o = NULL;
    int cex = cli_queue_conn_opts(c, 100, &k, &o);
    if (cex) return cex;
    smtpc_client *cl[100] = {NULL};
    int ex = 0;
    for (size_t i = 0; !ex && i < k; i++) {
        int rc = smtpc_client_new(&cl[i]);
        if (!rc && (rc = smtpc_client_set_conn_opts(cl[i], o)))
            cli_err(c, "%s", smtpc_client_errmsg(cl[i]));
        if (rc) ex = rc == SMTPC_ENOMEM ? EX_OSERR : EX_CONFIG;
        if (!ex) ex = cli_dkim_client(c, cl[i]); /* signed as it is sent */
    }
    smtpc_conn_opts_free(o);
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

static void print_finding(void *ud, const char *path, const char *problem, bool repaired)
{
    cli_ctx *c = ud;
    char ep[2048];
    cli_escape_into(ep, sizeof ep, path, strlen(path));
    if (c->json) {
        cli_buf b;
        cli_buf_init(&b, 1 << 16);
        cli_buf_append_str(&b, "{\"path\":");
        cli_json_str(&b, path);
        cli_buf_append_str(&b, ",\"problem\":");
        cli_json_str(&b, problem);
        cli_buf_printf(&b, ",\"repaired\":%s}\n", repaired ? "true" : "false");
        fwrite(cli_buf_ptr(&b), 1, cli_buf_size(&b), stdout);
        cli_buf_free(&b);
    } else {
        printf("%s: %s%s\n", ep, problem, repaired ? " (repaired)" : "");
    }
}

/* queue check [--repair]: exit 0 consistent, 1 problems found and all
 * repaired, 4 problems left (as fsck(8)); 75 while a flush runs. */
static int queue_check(cli_ctx *c, smtpc_outbox *ob)
{
    smtpc_outbox_check_report rep;
    int rc = smtpc_outbox_check(ob, c->o.val[O_REPAIR] != NULL, &rep, print_finding, c);
    if (rc == SMTPC_EUNSUPPORTED) {
        cli_err(c, "check is for a directory outbox: a PostgreSQL outbox is kept consistent by its "
                   "transactions, and workers take over expired leases (see queue stats)");
        return cli_exit_code(rc);
    }
    if (rc) {
        cli_err(c, "%s", smtpc_outbox_errmsg(ob)[0] ? smtpc_outbox_errmsg(ob) : smtpc_strerror(rc));
        return rc == SMTPC_EBUSY ? EX_TEMPFAIL : cli_exit_code(rc);
    }
    unsigned problems = rep.leftovers + rep.orphans + rep.damaged;
    if (c->json)
        printf("{\"ok\":%s,\"entries\":%u,\"in_progress\":%u,\"leftovers\":%u,\"orphans\":%u,"
               "\"damaged\":%u,\"repaired\":%u}\n",
               problems == rep.repaired ? "true" : "false", rep.entries, rep.in_progress, rep.leftovers,
               rep.orphans, rep.damaged, rep.repaired);
    else
        printf("%s: %u entries, %u writes in progress, %u leftovers, %u orphaned states, %u damaged, %u repaired\n",
               !problems ? "consistent" : problems == rep.repaired ? "repaired" : "inconsistent", rep.entries,
               rep.in_progress, rep.leftovers, rep.orphans, rep.damaged, rep.repaired);
    return !problems ? 0 : problems == rep.repaired ? 1 : 4;
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
    bool pgact = action && (!strcmp(action, "init") || !strcmp(action, "worker") || !strcmp(action, "stats"));
    if (!action || c.o.pos.n > 2 ||
        (strcmp(action, "list") && strcmp(action, "flush") && strcmp(action, "retry") && strcmp(action, "drop") &&
         strcmp(action, "check") && !pgact) ||
        (!strcmp(action, "drop") && !id) ||
        ((!strcmp(action, "list") || !strcmp(action, "flush") || !strcmp(action, "check") || pgact) && id) ||
        (c.o.val[O_CONNECTIONS] && strcmp(action, "flush") && strcmp(action, "worker")) ||
        ((c.o.val[O_RATE] || c.o.val[O_LEASE]) && strcmp(action, "worker")) ||
        (c.o.val[O_REPAIR] && strcmp(action, "check"))) {
        fprintf(stderr,
                "usage: %s queue list|flush [--connections K]|retry [ID]|drop ID|check [--repair] "
                "[--outbox DIR|URL] [options]\n"
                "       %s queue init|stats|worker [--connections K] [--rate R] [--lease DUR] --outbox URL\n",
                prog, prog);
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
    if (!cli_queue_is_pg(dir) && pgact && strcmp(action, "init")) {
        cli_err(&c, "queue %s: only a postgresql:// outbox has it", action);
        cli_ctx_free(&c);
        return EX_USAGE;
    }
    smtpc_outbox *ob;
    char err[512] = "";
    int rc = smtpc_outbox_open(&ob, dir, err, sizeof err);
    if (rc) {
        cli_err(&c, "%s", err);
        cli_ctx_free(&c);
        /* a directory: ECONFIG when others can write it; a database: by its error */
        return cli_queue_is_pg(dir) ? cli_exit_code(rc) : rc == SMTPC_ECONFIG ? EX_CONFIG : EX_IOERR;
    }
    if (pgact) {
        ex = !strcmp(action, "init")     ? cli_queue_init(&c, ob)
             : !strcmp(action, "worker") ? cli_queue_worker(&c, ob)
                                         : cli_queue_stats(&c, ob);
    } else if (!strcmp(action, "list")) {
        rc = smtpc_outbox_list(ob, true, print_entry, &c);
        if (rc) cli_err(&c, "%s", smtpc_outbox_errmsg(ob));
        ex = rc ? cli_exit_code(rc) : 0;
    } else if (!strcmp(action, "retry") || !strcmp(action, "drop")) {
        rc = !strcmp(action, "drop") ? smtpc_outbox_drop(ob, id) : smtpc_outbox_retry(ob, id);
        if (rc) cli_err(&c, "%s", smtpc_outbox_errmsg(ob)[0] ? smtpc_outbox_errmsg(ob) : smtpc_strerror(rc));
        /* EBUSY: a flush holds the outbox; try again later, as for flush */
        ex = rc == SMTPC_ENOTFOUND ? EX_DATAERR : rc == SMTPC_EBUSY ? EX_TEMPFAIL : rc ? cli_exit_code(rc) : 0;
    } else if (!strcmp(action, "check")) {
        ex = queue_check(&c, ob);
    } else {
        ex = queue_flush(&c, ob);
    }
    smtpc_outbox_free(ob);
    cli_ctx_free(&c);
    return ex;
}
