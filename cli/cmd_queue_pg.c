/* smtpc queue init|worker|stats: the actions of a PostgreSQL outbox
 * (smtpc-queue(7)); the others (list, flush, retry, drop) are cmd_queue.c's
 * and work on both kinds of outbox. */
#include "cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool cli_queue_is_pg(const char *s)
{
    return s && (!strncmp(s, "postgresql://", 13) || !strncmp(s, "postgres://", 11));
}

int cli_queue_init(cli_ctx *c, smtpc_outbox *ob)
{
    int rc = smtpc_outbox_init(ob);
    if (rc) {
        cli_err(c, "%s", smtpc_outbox_errmsg(ob));
        return cli_exit_code(rc);
    }
    if (c->json) printf("{\"ok\":true}\n");
    return 0;
}

static smtpc_outbox *volatile g_ob;

static void on_stop(int sig)
{
    (void)sig;
    if (g_ob) smtpc_outbox_stop(g_ob);
}

int cli_queue_worker(cli_ctx *c, smtpc_outbox *ob)
{
    smtpc_outbox_worker_opts wo;
    memset(&wo, 0, sizeof wo);
    const char *v;
    if ((v = c->o.val[O_RATE])) {
        char *end;
        wo.rate = strtod(v, &end);
        if (*end || !(wo.rate > 0)) {
            cli_err(c, "--rate: \"%s\" is not a positive number of messages per second", v);
            return EX_USAGE;
        }
    }
    if ((v = c->o.val[O_LEASE]) && (smtpc_config_parse_duration_ms(v, &wo.lease_ms) || wo.lease_ms < 1000)) {
        cli_err(c, "--lease: \"%s\" is not a duration of 1s or more", v);
        return EX_USAGE;
    }
    uint64_t k;
    smtpc_conn_opts *o = NULL;
    int ex = cli_queue_conn_opts(c, 10000, &k, &o);
    if (ex) return ex;
    wo.connections = (unsigned)k;
    g_ob = ob;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    smtpc_outbox_stats st;
    int rc = smtpc_outbox_work(ob, o, &wo, &st);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    g_ob = NULL;
    smtpc_conn_opts_free(o);
    if (rc) cli_err(c, "%s", smtpc_outbox_errmsg(ob));
    if (c->json)
        printf("{\"ok\":%s,\"sent\":%u,\"deferred\":%u,\"failed\":%u}\n", rc ? "false" : "true", st.sent,
               st.deferred, st.failed);
    else
        printf("sent %u, deferred %u, failed %u\n", st.sent, st.deferred, st.failed);
    return rc ? cli_exit_code(rc) : 0;
}

static int print_worker(void *ud, const smtpc_outbox_worker_info *w)
{
    cli_ctx *c = ud;
    char when[32];
    time_t t = (time_t)w->heartbeat;
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    if (c->json) {
        cli_buf b;
        cli_buf_init(&b, 1 << 16);
        cli_buf_append_str(&b, "{\"worker\":");
        cli_json_str(&b, w->name);
        cli_buf_printf(&b, ",\"started\":%lld,\"heartbeat\":%lld,\"sent\":%llu,\"failed\":%llu,\"live\":%s}\n",
                       (long long)w->started, (long long)w->heartbeat, (unsigned long long)w->sent,
                       (unsigned long long)w->failed, w->live ? "true" : "false");
        fwrite(cli_buf_ptr(&b), 1, cli_buf_size(&b), stdout);
        cli_buf_free(&b);
    } else {
        char name[300];
        cli_escape_into(name, sizeof name, w->name, strlen(w->name));
        printf("worker %s  %s  heartbeat %s  sent %llu  failed %llu\n", name, w->live ? "live" : "gone", when,
               (unsigned long long)w->sent, (unsigned long long)w->failed);
    }
    return 0;
}

int cli_queue_stats(cli_ctx *c, smtpc_outbox *ob)
{
    smtpc_outbox_counts n;
    int rc = smtpc_outbox_count(ob, &n);
    if (rc) {
        cli_err(c, "%s", rc == SMTPC_EINVAL ? "queue stats: only a postgresql:// outbox has them"
                                            : smtpc_outbox_errmsg(ob));
        return rc == SMTPC_EINVAL ? EX_USAGE : cli_exit_code(rc);
    }
    if (c->json)
        printf("{\"queued\":%llu,\"due\":%llu,\"sending\":%llu,\"sent\":%llu,\"failed\":%llu,"
               "\"sent_last_minute\":%llu,\"oldest_due_s\":%lld,\"workers\":%u}\n",
               (unsigned long long)n.queued, (unsigned long long)n.due, (unsigned long long)n.sending,
               (unsigned long long)n.sent, (unsigned long long)n.failed, (unsigned long long)n.sent_last_minute,
               (long long)n.oldest_due_s, n.workers);
    else
        printf("queued %llu (due %llu, oldest due %llds), sending %llu, sent %llu (last minute %llu), failed %llu, "
               "live workers %u\n",
               (unsigned long long)n.queued, (unsigned long long)n.due, (long long)n.oldest_due_s,
               (unsigned long long)n.sending, (unsigned long long)n.sent, (unsigned long long)n.sent_last_minute,
               (unsigned long long)n.failed, n.workers);
    rc = smtpc_outbox_workers(ob, print_worker, c);
    if (rc) cli_err(c, "%s", smtpc_outbox_errmsg(ob));
    return rc ? cli_exit_code(rc) : 0;
}
