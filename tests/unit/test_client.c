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

/* A .msg file written by hand: an envelope header whose blank line ends
 * at octet total (a padding line the reader ignores), nrcpts recipients,
 * and a NUL in the padding when nul. */
static void put_msg(const char *dir, const char *name, size_t total, int nrcpts, bool nul)
{
    char p[512];
    snprintf(p, sizeof p, "%s/queue/%s.msg", dir, name);
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL);
    size_t n = (size_t)fprintf(f, "smtpc-outbox 1\nfrom a@example.org\n");
    for (int i = 0; i < nrcpts; i++) n += (size_t)fprintf(f, "rcpt r%05d@example.org\n", i);
    CHECK(total >= n + 3);
    for (size_t i = n; i < total - 2; i++) fputc(nul && i == n + 1 ? '\0' : 'p', f);
    fputs("\n\nbody\n", f);
    fclose(f);
}

typedef struct {
    int n;
    size_t rcpts;
} seen;

static int seen_cb(void *ud, const smtpc_outbox_entry *e)
{
    seen *s = ud;
    s->n++;
    s->rcpts += e->nrcpts;
    CHECK_STR(e->from, "a@example.org");
    CHECK_STR(e->first_rcpt, "r00000@example.org");
    return 0;
}

/* The envelope header is read in pieces (4 KiB, doubling): a blank line
 * that straddles two reads, a header of 100 KiB recipients, and the limit
 * of 256 KiB (past it, or with a NUL in it, the file is not an entry). */
TEST(outbox_envelope_in_pieces)
{
    char dir[] = "/tmp/smtpc-test-outbox-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    smtpc_outbox *ob;
    CHECK_INT(smtpc_outbox_open(&ob, dir, NULL, 0), 0);
    static const size_t at[] = {4095, 4096, 4097, 4098, 12287, 12288, 12289, 28673, 262144};
    char name[32];
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        snprintf(name, sizeof name, "t%zu", at[i]);
        put_msg(dir, name, at[i], 1, false);
    }
    put_msg(dir, "many", 5000 * 24 + 100, 5000, false);
    put_msg(dir, "over", 262145, 1, false);
    put_msg(dir, "nul", 5000, 1, true);
    seen s = {0};
    CHECK_INT(smtpc_outbox_list(ob, false, seen_cb, &s), 0);
    CHECK_INT(s.n, 10);
    CHECK_INT((int)s.rcpts, 9 + 5000);
    smtpc_outbox_free(ob);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_INT(system(cmd), 0);
}

/* The session's namesakes judge the values: the client refuses what a
 * session refuses, and keeps the session's message. */
/* The new whole-object setters: NULLs, copies, the client's stricter
 * strings (its pool key separates fields with control characters). */
TEST(conn_opts_setters)
{
    smtpc_conn_opts *o;
    CHECK_INT(smtpc_conn_opts_new(&o), 0);
    smtpc_session *s;
    CHECK_INT(smtpc_session_new(&s), 0);
    smtpc_client *c;
    CHECK_INT(smtpc_client_new(&c), 0);
    CHECK_INT(smtpc_session_set_conn_opts(NULL, o), SMTPC_EINVAL);
    CHECK_INT(smtpc_session_set_conn_opts(s, NULL), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_conn_opts(NULL, o), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_conn_opts(c, NULL), SMTPC_EINVAL);
    /* open with a NULL host: the options' server, none set here */
    CHECK_INT(smtpc_session_set_conn_opts(s, o), 0);
    CHECK_INT(smtpc_session_open(s, NULL, 0), SMTPC_EINVAL);
    CHECK(strstr(smtpc_session_errmsg(s), "no server") != NULL);
    /* a tab in the user name: the options take it, the client does not */
    CHECK_INT(smtpc_conn_opts_set_credentials(o, "al\tice", "pw"), 0);
    CHECK_INT(smtpc_client_set_conn_opts(c, o), SMTPC_EINVAL);
    CHECK_INT(smtpc_conn_opts_set_credentials(o, "alice", "pw"), 0);
    CHECK_INT(smtpc_client_set_conn_opts(c, o), 0);
    /* a session setter's refusal carries the options' detail */
    CHECK_INT(smtpc_session_set_tls_versions(s, SMTPC_TLS_1_3, SMTPC_TLS_1_2, false), SMTPC_EINVAL);
    CHECK(strstr(smtpc_session_errmsg(s), "invalid TLS versions") != NULL);
    CHECK_INT(smtpc_session_set_ehlo_name(s, "two words"), SMTPC_EINVAL);
    CHECK(strstr(smtpc_session_errmsg(s), "EHLO") != NULL);
    CHECK_INT(smtpc_client_set_tls_versions(c, SMTPC_TLS_1_3, SMTPC_TLS_1_2, false), SMTPC_EINVAL);
    CHECK(strstr(smtpc_client_errmsg(c), "invalid TLS versions") != NULL);
    smtpc_conn_opts_free(o);
    smtpc_client_free(c);
    smtpc_session_free(s);
}

static int g_ident_calls;

static int count_ident(void *ud, char *user, size_t ulen, char *secret, size_t slen)
{
    (void)ud;
    g_ident_calls++;
    snprintf(user, ulen, "cb-user");
    snprintf(secret, slen, "cb-secret");
    return 0;
}

/* Options with a user name replace an identity callback (as
 * set_credentials does); options without one keep it. The identity is
 * asked before connecting: a refused connect (port 1) shows the call. */
TEST(conn_opts_and_identity_callback)
{
    static const char *const to[] = {"b@example.org"};
    smtpc_conn_opts *o;
    CHECK_INT(smtpc_conn_opts_new(&o), 0);
    CHECK_INT(smtpc_conn_opts_set_server(o, "127.0.0.1", 1), 0);
    CHECK_INT(smtpc_conn_opts_set_tls_mode(o, SMTPC_TLS_MODE_NONE), 0);
    CHECK_INT(smtpc_conn_opts_set_allow_plaintext_auth(o, true), 0);
    smtpc_client *c;
    CHECK_INT(smtpc_client_new(&c), 0);
    CHECK_INT(smtpc_client_set_identity_cb(c, count_ident, NULL), 0);
    CHECK_INT(smtpc_client_set_conn_opts(c, o), 0); /* no user: the callback stays */
    g_ident_calls = 0;
    CHECK_INT(smtpc_client_send_mem(c, "a@example.org", to, 1, "x\r\n", 3, NULL), SMTPC_ENETWORK);
    CHECK_INT(g_ident_calls, 1);
    CHECK_INT(smtpc_conn_opts_set_credentials(o, "alice", "pw"), 0);
    CHECK_INT(smtpc_client_set_conn_opts(c, o), 0); /* a user: it replaces the callback */
    CHECK_INT(smtpc_client_send_mem(c, "a@example.org", to, 1, "x\r\n", 3, NULL), SMTPC_ENETWORK);
    CHECK_INT(g_ident_calls, 1);
    smtpc_client_free(c);
    smtpc_conn_opts_free(o);
}

TEST(session_like_setters)
{
    smtpc_client *c;
    CHECK_INT(smtpc_client_new(&c), 0);
    /* NULL client */
    CHECK_INT(smtpc_client_set_tls_mode(NULL, SMTPC_TLS_MODE_NONE), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_ca_path(NULL, "/etc/ssl/certs"), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_add_pin(NULL, NULL), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_deadline_ms(NULL, 1), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_bind(NULL, "127.0.0.1", 0), SMTPC_EINVAL);
    /* modes */
    CHECK_INT(smtpc_client_set_tls_mode(c, SMTPC_TLS_MODE_AUTO), 0);
    CHECK_INT(smtpc_client_set_tls_mode(c, (smtpc_tls_mode)-1), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_family(c, SMTPC_FAMILY_IPV6), 0);
    CHECK_INT(smtpc_client_set_family(c, (smtpc_family)5), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_family(c, SMTPC_FAMILY_ANY), 0);
    /* mechanisms: names are checked now (the old setter took anything) */
    CHECK_INT(smtpc_client_set_auth_mechanisms(c, "SCRAM-SHA-256,PLAIN"), 0);
    CHECK_INT(smtpc_client_set_auth_mechanisms(c, "SCRAM-SHA-256 BOGUS"), SMTPC_EINVAL);
    CHECK(strstr(smtpc_client_errmsg(c), "BOGUS") != NULL);
    CHECK_INT(smtpc_client_set_auth_mechanisms(c, NULL), 0);
    /* strings: CR/LF/NUL-free, not empty where the session says so */
    CHECK_INT(smtpc_client_set_credentials(c, NULL, "secret"), SMTPC_EINVAL); /* as the session */
    CHECK_INT(smtpc_client_set_credentials(c, "me\r\n", "secret"), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_credentials(c, NULL, NULL), 0);
    CHECK_INT(smtpc_client_set_authzid(c, "boss@example.org"), 0);
    CHECK_INT(smtpc_client_set_authzid(c, "boss\r\nQUIT"), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_authzid(c, NULL), 0);
    CHECK_INT(smtpc_client_set_ehlo_name(c, "two words"), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_ehlo_name(c, "client.example"), 0);
    CHECK_INT(smtpc_client_set_ca_file(c, ""), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_ca_file(c, "/a\nb"), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_ca_file(c, NULL), 0);
    CHECK_INT(smtpc_client_set_ca_path(c, "/etc/ssl\r/certs"), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_ca_path(c, "/etc/ssl/certs"), 0);
    CHECK_INT(smtpc_client_set_ca_path(c, NULL), 0);
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_INT(smtpc_client_set_tls_server_name(c, longname), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_tls_server_name(c, "mx\n.example"), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_tls_server_name(c, "mx.example.org"), 0);
    CHECK_INT(smtpc_client_set_tls_server_name(c, NULL), 0);
    /* bind: address and port like the session's */
    CHECK_INT(smtpc_client_set_bind(c, "", 0), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_bind(c, "127.0.0.1\r\n", 0), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_bind(c, "127.0.0.1", 2525), 0);
    CHECK_INT(smtpc_client_set_bind(c, NULL, 0), 0);
    /* client certificate: a key needs a certificate; files are read at connect */
    CHECK_INT(smtpc_client_set_client_cert(c, NULL, "/k.pem"), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_client_cert(c, "/c\n.pem", NULL), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_client_cert(c, "/c.pem", "/k.pem"), 0);
    CHECK_INT(smtpc_client_set_client_cert(c, NULL, NULL), 0);
    /* TLS versions with the session's validation */
    CHECK_INT(smtpc_client_set_tls_versions(c, SMTPC_TLS_1_3, SMTPC_TLS_1_2, false), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_tls_versions(c, 99, 0, false), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_tls_versions(c, 0, 99, true), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_tls_versions(c, SMTPC_TLS_1_2, SMTPC_TLS_1_3, true), 0);
    CHECK_INT(smtpc_client_set_tls_versions(c, 0, 0, false), 0);
    /* pins: one per call, the session's syntax and limit */
    static const char pin[] = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    CHECK_INT(smtpc_client_add_pin(c, "sha256//notbase64"), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_add_pin(c, "md5//AAAA"), SMTPC_EINVAL);
    char two[200];
    snprintf(two, sizeof two, "%s;%s", pin, pin);
    CHECK_INT(smtpc_client_add_pin(c, two), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_add_pin(c, pin), 0);
    int rc = 0, n = 0;
    while (n < 200 && (rc = smtpc_client_add_pin(c, pin)) == 0) n++;
    CHECK_INT(rc, SMTPC_ELIMIT); /* the session's bound, not an unbounded list */
    CHECK(n > 10);
    CHECK_INT(smtpc_client_add_pin(c, NULL), 0);
    CHECK_INT(smtpc_client_add_pin(c, pin), 0); /* room again after clearing */
    CHECK_INT(smtpc_client_add_pin(c, NULL), 0);
    /* timeouts */
    CHECK_INT(smtpc_client_set_greeting_timeout_ms(c, -1), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_auto_timeout_ms(c, -1), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_deadline_ms(c, -5), SMTPC_EINVAL);
    CHECK_INT(smtpc_client_set_greeting_timeout_ms(c, 1000), 0);
    CHECK_INT(smtpc_client_set_auto_timeout_ms(c, 0), 0);
    CHECK_INT(smtpc_client_set_deadline_ms(c, 0), 0);
    CHECK_INT(smtpc_client_set_insecure(c, true), 0);
    CHECK_INT(smtpc_client_set_insecure(c, false), 0);
    /* proxies: a URL (malformed: the reason, never the password) or a configuration */
    CHECK_INT(smtpc_client_set_proxy_url(c, "socks5://me:s3cr3t@[::1:1080"), SMTPC_EINVAL);
    CHECK(strstr(smtpc_client_errmsg(c), "s3cr3t") == NULL);
    CHECK(smtpc_client_errmsg(c)[0] != '\0');
    CHECK_INT(smtpc_client_set_proxy_url(c, ""), 0);
    smtpc_proxy *p;
    CHECK_INT(smtpc_proxy_parse_url(&p, "http://127.0.0.1:3128", NULL, 0), 0);
    CHECK_INT(smtpc_client_set_proxy(c, p), 0);
    smtpc_proxy_free(p); /* copied */
    CHECK_INT(smtpc_client_set_proxy(c, NULL), 0);
    smtpc_client_free(c);
}

static int send_one(smtpc_client *c)
{
    const char *rc[] = {"b@example.org"};
    smtpc_result *r = NULL;
    int st = smtpc_client_send_mem(c, "a@example.org", rc, 1, "x\r\n", 3, &r);
    smtpc_result_free(r);
    return st;
}

/* The TLS files reach the session: an unreadable one fails the send with
 * SMTPC_ECONFIG before any network activity (port 1: nothing listens, so
 * reaching the network would be SMTPC_ENETWORK instead). */
TEST(tls_files_reach_the_session)
{
    smtpc_client *c;
    CHECK_INT(smtpc_client_new(&c), 0);
    CHECK_INT(smtpc_client_set_host(c, "127.0.0.1", 1), 0);
    CHECK_INT(smtpc_client_set_tls_mode(c, SMTPC_TLS_MODE_IMPLICIT), 0);
    CHECK_INT(send_one(c), SMTPC_ENETWORK);
    CHECK_INT(smtpc_client_set_ca_file(c, "/nonexistent/ca.pem"), 0);
    CHECK_INT(send_one(c), SMTPC_ECONFIG);
    CHECK_INT(smtpc_client_set_ca_file(c, NULL), 0);
    CHECK_INT(smtpc_client_set_client_cert(c, "/nonexistent/client.pem", NULL), 0);
    CHECK_INT(send_one(c), SMTPC_ECONFIG);
    CHECK_INT(smtpc_client_set_client_cert(c, NULL, NULL), 0);
    CHECK_INT(send_one(c), SMTPC_ENETWORK);
    smtpc_client_free(c);
}

/* Configuration keys the client takes now, with the client's checks. */
static int use_cfg(smtpc_client *c, const char *text)
{
    smtpc_config *cfg;
    char err[256];
    int rc = smtpc_config_parse(&cfg, text, strlen(text), "test", SMTPC_CONFIG_NOENV, err, sizeof err);
    if (rc) return 1000 + rc;
    rc = smtpc_client_use_config(c, cfg, NULL);
    smtpc_config_free(cfg);
    return rc;
}

TEST(config_keys)
{
    smtpc_client *c;
    CHECK_INT(smtpc_client_new(&c), 0);
    CHECK_INT(use_cfg(c, "server = 127.0.0.1:1\ntls = implicit\nca-path = /etc/ssl/certs\n"
                         "tls-server-name = mx.example.org\ntls-min = 1.2\ntls-max = 1.3\n"
                         "pin = sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=, "
                         "sha256//BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=\n"
                         "bind = 127.0.0.1\ngreeting-timeout = 5s\n"),
              0);
    CHECK_INT(send_one(c), SMTPC_ENETWORK);
    CHECK_INT(use_cfg(c, "pin = sha256//bogus\n"), SMTPC_ECONFIG);
    CHECK(strstr(smtpc_client_errmsg(c), "pin") != NULL);
    CHECK_INT(use_cfg(c, "tls-min = 1.3\ntls-max = 1.2\n"), SMTPC_ECONFIG);
    smtpc_client_free(c);
    CHECK_INT(smtpc_client_new(&c), 0);
    CHECK_INT(use_cfg(c, "key = /k.pem\n"), SMTPC_ECONFIG); /* a key needs a certificate */
    CHECK_INT(use_cfg(c, "server = 127.0.0.1:1\ntls = implicit\ncert = /nonexistent/c.pem\n"), 0);
    CHECK_INT(send_one(c), SMTPC_ECONFIG); /* the certificate reached the session */
    smtpc_client_free(c);
}

int main(void)
{
    RUN(queue_ids);
    RUN(setters);
    RUN(no_server_is_config_error);
    RUN(conn_opts_setters);
    RUN(conn_opts_and_identity_callback);
    RUN(session_like_setters);
    RUN(tls_files_reach_the_session);
    RUN(config_keys);
    RUN(outbox_local);
    RUN(outbox_envelope_in_pieces);
    T_DONE();
}
