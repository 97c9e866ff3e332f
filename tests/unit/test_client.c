/* Client unit tests: queue id parsing, setter validation, results and
 * outbox bookkeeping without a server. */
#include <smtpc/smtpc.h>

#include "t.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *qid(const char *text)
{
    static char out[128];
    if (!smtpc_parse_queue_id(text, out, sizeof out)) return "(none)";
    return out;
}

TEST(queue_ids)
{
    CHECK_STR(qid("2.0.0 Ok: queued as 4FxYz1Q2k3"), "4FxYz1Q2k3");
    CHECK_STR(qid("OK queued as 1234"), "1234");
    CHECK_STR(qid("2.0.0 OK id=1tP6Xq-0003Kd-2V"), "1tP6Xq-0003Kd-2V");
    CHECK_STR(qid("2.6.0 <a@b> [InternalId=12345678, Hostname=EX01.corp] Queued mail for delivery"), "12345678");
    CHECK_STR(qid("2.0.0 4AN1cd02 Message accepted for delivery"), "4AN1cd02");
    CHECK_STR(qid("2.0.0 OK  1700000000 x12si345abc.67 - gsmtp"), "x12si345abc.67");
    CHECK_STR(qid("Ok: queued as <ABC.DEF>."), "ABC.DEF");
    CHECK_STR(qid("OK"), "(none)");
    CHECK_STR(qid("Queued mail for delivery"), "(none)");
    CHECK_STR(qid("valid=yes"), "(none)"); /* "id=" inside a word is not an id */
    char small[4];
    CHECK(smtpc_parse_queue_id("queued as ABCDEFG", small, sizeof small));
    CHECK_STR(small, "ABC");
    CHECK(!smtpc_parse_queue_id(NULL, small, sizeof small));
}

TEST(setters)
{
    smtpc_client *c;
    CHECK_INT(smtpc_client_new(&c), 0);
    CHECK_INT(smtpc_client_set_host(c, "", 25), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_host(c, "a\r\nb", 25), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_host(c, "mail.example.org", 0), 0);
    CHECK_INT(smtpc_client_set_tls_mode(c, (smtpc_tls_mode)99), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_credentials(c, "me", "pw\r\nQUIT"), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_credentials(c, "me", "secret"), 0);
    CHECK_INT(smtpc_client_set_proxy_url(c, "gopher://x"), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_proxy_url(c, "socks5h://127.0.0.1:1080"), 0);
    CHECK_INT(smtpc_client_set_delivery(c, SMTPC_DELIVERY_PICKUP, NULL), SMTPC_EINVAL);
    smtpc_retry_policy bad = {0, 10, 2.0, 100};
    CHECK_INT(smtpc_client_set_retry(c, &bad), SMTPC_EINVAL);
    bad.attempts = 2;
    bad.backoff_factor = 0.5;
    CHECK_INT(smtpc_client_set_retry(c, &bad), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_timeout_ms(c, -1), SMTPC_EINVAL);
    /* The proxy is used: an unreachable proxy (port 1, nothing listens) fails
     * the connect with a network error that names the proxy. */
    CHECK_INT(smtpc_client_set_proxy_url(c, "socks5h://127.0.0.1:1"), 0);
    smtpc_message *m;
    CHECK_INT(smtpc_message_new(&m), 0);
    smtpc_message_set_from(m, "a@example.org");
    smtpc_message_add_to(m, "b@example.org");
    smtpc_message_set_text(m, "x\n", (size_t)-1);
    smtpc_result *r = NULL;
    int src = smtpc_client_send(c, m, &r);
    CHECK(src == SMTPC_ENETWORK || src == SMTPC_EPROXY);
    CHECK(r != NULL);
    CHECK_INT(smtpc_result_status(r), src);
    CHECK(strstr(smtpc_result_errmsg(r), "127.0.0.1:1") != NULL);
    CHECK_INT(smtpc_result_rcpt_count(r), 1);
    CHECK_STR(smtpc_result_rcpt_address(r, 0), "b@example.org");
    CHECK(!smtpc_result_rcpt_accepted(r, 0));
    CHECK_STR(smtpc_result_rcpt_address(r, 5), "");
    smtpc_result_free(r);
    smtpc_message_free(m);
    smtpc_client_free(c);
    smtpc_client_free(NULL);
    smtpc_result_free(NULL);
    smtpc_pool_free(NULL);
    CHECK_STR(smtpc_result_queue_id(NULL), "");
}

TEST(no_server_is_config_error)
{
    smtpc_client *c;
    CHECK_INT(smtpc_client_new(&c), 0);
    const char *rc[] = {"b@example.org"};
    smtpc_result *r = NULL;
    CHECK_INT(smtpc_client_send_mem(c, "a@example.org", rc, 1, "x", 1, &r), SMTPC_ECONFIG);
    CHECK_INT(smtpc_result_class(r), SMTPC_CLASS_CONFIG);
    smtpc_result_free(r);
    CHECK_INT(smtpc_client_send_mem(c, "a@example.org", rc, 0, "x", 1, &r), SMTPC_EINVAL);
    CHECK(r == NULL);
    smtpc_client_free(c);
}

static int count_cb(void *ud, const smtpc_outbox_entry *e)
{
    (void)e;
    (*(int *)ud)++;
    return 0;
}

TEST(outbox_local)
{
    char dir[] = "/tmp/smtpc-test-outbox-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    /* Through the client: delivery OUTBOX queues and reports the id. */
    smtpc_client *c;
    CHECK_INT(smtpc_client_new(&c), 0);
    CHECK_INT(smtpc_client_set_delivery(c, SMTPC_DELIVERY_OUTBOX, dir), 0);
    smtpc_message *m;
    CHECK_INT(smtpc_message_new(&m), 0);
    smtpc_message_set_from(m, "a@example.org");
    smtpc_message_add_to(m, "b@example.org, c@example.org");
    smtpc_message_set_text(m, "queued\n", (size_t)-1);
    smtpc_result *r = NULL;
    CHECK_INT(smtpc_client_send(c, m, &r), 0);
    CHECK(smtpc_result_queue_id(r)[0] != '\0');
    CHECK(smtpc_result_rcpt_accepted(r, 1));
    char id[64];
    snprintf(id, sizeof id, "%s", smtpc_result_queue_id(r));
    smtpc_result_free(r);
    smtpc_message_free(m);
    smtpc_client_free(c);

    smtpc_outbox *ob;
    CHECK_INT(smtpc_outbox_open(&ob, dir, NULL, 0), 0);
    int n = 0;
    CHECK_INT(smtpc_outbox_list(ob, true, count_cb, &n), 0);
    CHECK_INT(n, 1);
    /* A leftover temporary file (crash while writing) is not an entry. */
    char p[512];
    snprintf(p, sizeof p, "%s/tmp/x.msg", dir);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    fputs("partial", f);
    fclose(f);
    n = 0;
    smtpc_outbox_list(ob, true, count_cb, &n);
    CHECK_INT(n, 1);
    /* A second flush while one holds the lock: EBUSY. (Lock by hand.) */
    CHECK_INT(smtpc_outbox_retry(ob, "nope"), SMTPC_ENOTFOUND);
    CHECK_INT(smtpc_outbox_retry(ob, id), 0);
    CHECK_INT(smtpc_outbox_drop(ob, id), 0);
    CHECK_INT(smtpc_outbox_drop(ob, id), SMTPC_ENOTFOUND);
    n = 0;
    smtpc_outbox_list(ob, true, count_cb, &n);
    CHECK_INT(n, 0);
    smtpc_outbox_free(ob);
    unlink(p);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_INT(system(cmd), 0);
}

int main(void)
{
    RUN(queue_ids);
    RUN(setters);
    RUN(no_server_is_config_error);
    RUN(outbox_local);
    T_DONE();
}
