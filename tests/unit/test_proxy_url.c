/* The proxy URL parser and the configuration API (include/smtpc/proxy.h). */
#include "t.h"

#include "net/proxy_internal.h"
#include "util/util.h"

#include <smtpc/proxy.h>

static smtpc_proxy *parse_ok(const char *url)
{
    smtpc_proxy *p = NULL;
    char why[256];
    int rc = smtpc_proxy_parse_url(&p, url, why, sizeof why);
    if (rc) T_FAILF("parse(%s) = %d: %s", url, rc, why);
    return p;
}

TEST(full_socks5h)
{
    smtpc_proxy *p = parse_ok("socks5h://user:pass@proxy.example:1081");
    if (!p) return;
    CHECK_INT(smtpc_proxy_get_type(p), SMTPC_PROXY_SOCKS5H);
    CHECK_STR(smtpc_proxy_get_host(p), "proxy.example");
    CHECK_INT(smtpc_proxy_get_port(p), 1081);
    CHECK_STR(smtpc_proxy_get_user(p), "user");
    CHECK_STR(p->pass, "pass");
    CHECK_STR(smtpc_proxy_redacted(p), "socks5h://user:***@proxy.example:1081");
    smtpc_proxy_free(p);
}

TEST(schemes_and_default_ports)
{
    static const struct {
        const char *url;
        smtpc_proxy_type type;
        unsigned port;
        const char *redacted;
    } cases[] = {
        {"socks4://h", SMTPC_PROXY_SOCKS4, 1080, "socks4://h:1080"},
        {"socks4a://h", SMTPC_PROXY_SOCKS4A, 1080, "socks4a://h:1080"},
        {"socks5://h", SMTPC_PROXY_SOCKS5, 1080, "socks5://h:1080"},
        {"socks5h://h/", SMTPC_PROXY_SOCKS5H, 1080, "socks5h://h:1080"},
        {"http://h", SMTPC_PROXY_HTTP, 80, "http://h:80"},
        {"https://h", SMTPC_PROXY_HTTPS, 443, "https://h:443"},
        {"HTTP://H.Example:3128", SMTPC_PROXY_HTTP, 3128, "http://H.Example:3128"},
        {"SoCkS5://10.0.0.1:65535", SMTPC_PROXY_SOCKS5, 65535, "socks5://10.0.0.1:65535"},
    };
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(cases); i++) {
        smtpc_proxy *p = parse_ok(cases[i].url);
        if (!p) continue;
        CHECK_INT(smtpc_proxy_get_type(p), cases[i].type);
        CHECK_INT(smtpc_proxy_get_port(p), cases[i].port);
        CHECK_STR(smtpc_proxy_redacted(p), cases[i].redacted);
        CHECK(smtpc_proxy_get_user(p) == NULL);
        smtpc_proxy_free(p);
    }
}

TEST(ipv6_literal)
{
    smtpc_proxy *p = parse_ok("socks5://[::1]:9050");
    if (!p) return;
    CHECK_STR(smtpc_proxy_get_host(p), "::1");
    CHECK_INT(smtpc_proxy_get_port(p), 9050);
    CHECK_STR(smtpc_proxy_redacted(p), "socks5://[::1]:9050");
    smtpc_proxy_free(p);
    p = parse_ok("http://u:p@[2001:db8::7]");
    if (!p) return;
    CHECK_STR(smtpc_proxy_get_host(p), "2001:db8::7");
    CHECK_INT(smtpc_proxy_get_port(p), 80);
    CHECK_STR(smtpc_proxy_redacted(p), "http://u:***@[2001:db8::7]:80");
    smtpc_proxy_free(p);
}

TEST(percent_decoding)
{
    smtpc_proxy *p = parse_ok("http://us%40er:p%3Ass%2fw%25@h:3128");
    if (!p) return;
    CHECK_STR(smtpc_proxy_get_user(p), "us@er");
    CHECK_STR(p->pass, "p:ss/w%");
    CHECK_STR(smtpc_proxy_redacted(p), "http://us%40er:***@h:3128");
    smtpc_proxy_free(p);
    /* an unencoded '@' in the password: the last '@' ends the userinfo */
    p = parse_ok("socks5://me:a@b@h");
    if (!p) return;
    CHECK_STR(smtpc_proxy_get_user(p), "me");
    CHECK_STR(p->pass, "a@b");
    CHECK_STR(smtpc_proxy_get_host(p), "h");
    smtpc_proxy_free(p);
}

TEST(user_without_password)
{
    smtpc_proxy *p = parse_ok("http://me@h:8080");
    if (!p) return;
    CHECK_STR(smtpc_proxy_get_user(p), "me");
    CHECK(p->pass == NULL);
    CHECK_STR(smtpc_proxy_redacted(p), "http://me@h:8080");
    smtpc_proxy_free(p);
    p = parse_ok("socks4://ident@h");
    if (!p) return;
    CHECK_STR(smtpc_proxy_get_user(p), "ident");
    smtpc_proxy_free(p);
    /* empty userinfo = no credentials */
    p = parse_ok("http://:@h");
    if (!p) return;
    CHECK(smtpc_proxy_get_user(p) == NULL);
    CHECK_STR(smtpc_proxy_redacted(p), "http://h:80");
    smtpc_proxy_free(p);
}

static void parse_bad(const char *url, const char *expect_sub)
{
    smtpc_proxy *p = (smtpc_proxy *)(uintptr_t)0x1; /* must stay untouched */
    char why[256];
    int rc = smtpc_proxy_parse_url(&p, url, why, sizeof why);
    if (rc != SMTPC_EINVAL) T_FAILF("parse(%s) = %d, expected EINVAL", url, rc);
    if (p != (smtpc_proxy *)(uintptr_t)0x1) T_FAILF("parse(%s) touched *out", url);
    if (!strstr(why, expect_sub)) T_FAILF("parse(%s): \"%s\" lacks \"%s\"", url, why, expect_sub);
    if (strncmp(why, "proxy URL: ", 11) != 0) T_FAILF("parse(%s): \"%s\"", url, why);
    /* the secrets used below never show */
    if (strstr(why, "s3cr3t") || strstr(why, "alice")) T_FAILF("secret in \"%s\"", why);
}

TEST(errors)
{
    parse_bad("proxy.example:1080", "no scheme");
    parse_bad("://h", "no scheme");
    parse_bad("ftp://h", "unknown scheme");
    parse_bad("socks6://h", "unknown scheme");
    parse_bad("socks5://", "host is empty");
    parse_bad("socks5://:1080", "host is empty");
    parse_bad("socks5://h:", "invalid port");
    parse_bad("socks5://h:0", "invalid port");
    parse_bad("socks5://h:65536", "invalid port");
    parse_bad("socks5://h:99999999999999999999999", "invalid port");
    parse_bad("socks5://h:-1", "invalid port");
    parse_bad("socks5://h:1a", "invalid port");
    parse_bad("socks5://[::1", "unterminated");
    parse_bad("socks5://[::1]x", "after ']'");
    parse_bad("socks5://[1.2.3.4]:1", "only for IPv6");
    parse_bad("socks5://[::g]:1", "invalid IPv6");
    parse_bad("socks5://[fe80::1%25eth0]:1", "zone");
    parse_bad("socks5://::1:1080", "must be in brackets");
    parse_bad("socks5://h/path", "path");
    parse_bad("socks5://h?q", "path");
    parse_bad("socks5://h#f", "path");
    parse_bad("socks5://h h", "spaces");
    parse_bad("socks5://h\r\n", "control");
    parse_bad("socks5://h\x7f", "control");
    parse_bad("socks5://h\xc3\xa9t\xc3\xa9", "non-ASCII");
    parse_bad("socks5://h!x", "not allowed in a host");
    parse_bad("socks4://alice:s3cr3t@h", "SOCKS4 carries a user id");
    parse_bad("socks5://:s3cr3t@h", "non-empty user");
    parse_bad("socks5h://alice:s3cr%zzt@h", "percent-encoding");
    parse_bad("socks5h://alice:s3cr3t%4@h", "percent-encoding");
    parse_bad("socks5h://alice:s3cr3t%00@h", "control characters");
    parse_bad("http://al%0aice:s3cr3t@h", "control characters");
    parse_bad("http://al%3aice:s3cr3t@h", "cannot contain ':'");
    /* a password with an unencoded '/' or ':' must not leak as "path"/"port" */
    parse_bad("http://alice:s3cr3t/x@h", "path");
    parse_bad("http://alice:s3/cr3t@h", "path");
    parse_bad("socks5h://alice:s3cr3t@h:s3cr3t", "invalid port");
    char big[600];
    snprintf(big, sizeof big, "socks5://%0300d:s3cr3t@h", 0);
    parse_bad(big, "user name is longer than 255");
    snprintf(big, sizeof big, "socks5://alice:%0300d@h", 0);
    parse_bad(big, "password is longer than 255");
    char host[300];
    memset(host, 'a', 256);
    host[256] = '\0';
    snprintf(big, sizeof big, "socks5://%s:1", host);
    parse_bad(big, "longer than 255");
    smtpc_proxy *p = NULL;
    CHECK_INT(smtpc_proxy_parse_url(&p, NULL, NULL, 0), SMTPC_EINVAL);
    CHECK_INT(smtpc_proxy_parse_url(NULL, "socks5://h", NULL, 0), SMTPC_EINVAL);
    /* a tiny error buffer is truncated and terminated */
    char tiny[8];
    CHECK_INT(smtpc_proxy_parse_url(&p, "nope", tiny, sizeof tiny), SMTPC_EINVAL);
    CHECK_INT(strlen(tiny), 7);
}

TEST(limits_exact)
{
    /* 255-byte credentials are the SOCKS5 maximum and are accepted */
    char u[256], url[700];
    memset(u, 'u', 255);
    u[255] = '\0';
    snprintf(url, sizeof url, "socks5://%s:%s@h", u, u);
    smtpc_proxy *p = parse_ok(url);
    if (!p) return;
    CHECK_INT(strlen(smtpc_proxy_get_user(p)), 255);
    CHECK_INT(strlen(p->pass), 255);
    smtpc_proxy_free(p);
    char host[256];
    memset(host, 'a', 255);
    host[255] = '\0';
    snprintf(url, sizeof url, "socks5://%s:1", host);
    p = parse_ok(url);
    smtpc_proxy_free(p);
}

TEST(new_set_auth_dup)
{
    smtpc_proxy *p = NULL;
    CHECK_INT(smtpc_proxy_new(&p, SMTPC_PROXY_HTTP, "::1", 0), 0);
    if (!p) return;
    CHECK_INT(smtpc_proxy_get_port(p), 80);
    CHECK_STR(smtpc_proxy_redacted(p), "http://[::1]:80");
    CHECK_INT(smtpc_proxy_set_auth(p, "a b", "pw"), 0);
    CHECK_STR(smtpc_proxy_redacted(p), "http://a%20b:***@[::1]:80");
    CHECK_INT(smtpc_proxy_set_auth(p, "x\n", "pw"), SMTPC_EINVAL);
    CHECK_INT(smtpc_proxy_set_auth(p, NULL, "pw"), SMTPC_EINVAL);
    CHECK_STR(smtpc_proxy_get_user(p), "a b"); /* unchanged on failure */
    smtpc_proxy *d = NULL;
    CHECK_INT(smtpc_proxy_dup(&d, p), 0);
    if (d) {
        CHECK_STR(smtpc_proxy_get_user(d), "a b");
        CHECK_STR(d->pass, "pw");
        CHECK_STR(smtpc_proxy_redacted(d), smtpc_proxy_redacted(p));
    }
    CHECK_INT(smtpc_proxy_set_auth(p, NULL, NULL), 0);
    CHECK(smtpc_proxy_get_user(p) == NULL);
    CHECK_STR(smtpc_proxy_redacted(p), "http://[::1]:80");
    smtpc_proxy_free(p);
    smtpc_proxy_free(d);
    smtpc_proxy_free(NULL);

    smtpc_proxy *q = (smtpc_proxy *)(uintptr_t)0x1;
    CHECK_INT(smtpc_proxy_new(&q, (smtpc_proxy_type)99, "h", 1), SMTPC_EINVAL);
    CHECK_INT(smtpc_proxy_new(&q, SMTPC_PROXY_SOCKS5, "", 1), SMTPC_EINVAL);
    CHECK_INT(smtpc_proxy_new(&q, SMTPC_PROXY_SOCKS5, "h\r\n", 1), SMTPC_EINVAL);
    CHECK(q == (smtpc_proxy *)(uintptr_t)0x1);
    CHECK_INT(smtpc_proxy_new(&q, SMTPC_PROXY_SOCKS4, "h", 1), 0);
    CHECK_INT(smtpc_proxy_set_auth(q, "id", "pw"), SMTPC_EINVAL);
    CHECK_INT(smtpc_proxy_set_auth(q, "id", NULL), 0);
    smtpc_proxy_free(q);
    CHECK_STR(smtpc_proxy_type_name(SMTPC_PROXY_SOCKS4A), "socks4a");
    CHECK_STR(smtpc_proxy_type_name((smtpc_proxy_type)0), "?");
}

int main(void)
{
    RUN(full_socks5h);
    RUN(schemes_and_default_ports);
    RUN(ipv6_literal);
    RUN(percent_decoding);
    RUN(user_without_password);
    RUN(errors);
    RUN(limits_exact);
    RUN(new_set_auth_dup);
    T_DONE();
}
