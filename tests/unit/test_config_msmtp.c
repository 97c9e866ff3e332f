/* msmtp configuration files read by the library's loader: every key of
 * msmtp(1) smtpc maps, defaults and inheritance, "account default", what is
 * refused or warned about, detection, the search for ~/.msmtprc and the
 * permission rules. */
#include "t.h"

#include <smtpc/config.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static smtpc_config *parse(const char *text, int *rc, char *err, size_t errlen)
{
    smtpc_config *cfg = NULL;
    *rc = smtpc_config_parse(&cfg, text, strlen(text), "m.rc", SMTPC_CONFIG_NOENV, err, errlen);
    return cfg;
}

static const char *get(const smtpc_config *cfg, const char *acct, const char *key)
{
    return smtpc_account_get(smtpc_config_account(cfg, acct), key);
}

static bool has_warning(const smtpc_config *cfg, const char *needle)
{
    for (size_t i = 0; smtpc_config_warning_at(cfg, i); i++)
        if (strstr(smtpc_config_warning_at(cfg, i), needle)) return true;
    return false;
}

/* Every key the issue names, with msmtp's meaning. */
static const char every_key_text[] =
    "# msmtp file\n"
    "defaults\n"
    "tls on\n"
    "tls_trust_file /etc/ssl/certs/ca-certificates.crt\n"
    "timeout 20\n"
    "logfile ~/.msmtp.log\n"
    "\n"
    "account base\n"
    "host smtp.example.org\n"
    "port 587\n"
    "from me@example.org\n"
    "auth on\n"
    "user me\n"
    "password \"se cret\"\n"
    "domain client.example.org\n"
    "dsn_notify failure,delay\n"
    "dsn_return headers\n"
    "set_from_header auto\n"
    "auto_from off\n"
    "\n"
    "account implicit : base\n"
    "tls_starttls off\n"
    "port 465\n"
    "auth scram-sha-256\n"
    "passwordeval pass show mail\n"
    "tls_cert_file ~/client.pem\n"
    "tls_key_file ~/client.key\n"
    "proxy_host 127.0.0.1\n"
    "proxy_port 9050\n"
    "source_ip 192.0.2.7\n"
    "\n"
    "account plain\n"
    "host ::1\n"
    "tls off\n"
    "user nobody\n"
    "auth off\n"
    "timeout off\n"
    "\n"
    "account lax : base\n"
    "tls_certcheck off\n"
    "set_from_header on\n"
    "auto_from on\n"
    "\n"
    "account default : implicit\n";

TEST(every_key)
{
    int rc;
    char err[512] = "";
    setenv("HOME", "/home/u", 1);
    smtpc_config *cfg = parse(every_key_text, &rc, err, sizeof err);
    CHECK_INT(rc, 0);
    if (!cfg) {
        T_FAILF("%s", err);
        return;
    }
    CHECK_STR(smtpc_config_format(cfg), "msmtp");
    CHECK_INT(smtpc_config_account_count(cfg), 5);
    CHECK_STR(smtpc_account_name(smtpc_config_account(cfg, NULL)), "default");
    /* tls on + tls_starttls on (the default) = STARTTLS; defaults filled in */
    CHECK_STR(get(cfg, "base", "server"), "smtp.example.org");
    CHECK_STR(get(cfg, "base", "port"), "587");
    CHECK_STR(get(cfg, "base", "tls"), "starttls");
    CHECK_STR(get(cfg, "base", "from"), "me@example.org");
    CHECK_STR(get(cfg, "base", "user"), "me");
    CHECK_STR(get(cfg, "base", "password"), "se cret");
    CHECK(get(cfg, "base", "auth") == NULL); /* auth on: any mechanism */
    CHECK_STR(get(cfg, "base", "ca-file"), "/etc/ssl/certs/ca-certificates.crt");
    CHECK_STR(get(cfg, "base", "timeout"), "20s");
    CHECK_STR(get(cfg, "base", "ehlo-name"), "client.example.org");
    CHECK_STR(get(cfg, "base", "dsn-notify"), "failure,delay");
    CHECK_STR(get(cfg, "base", "dsn-ret"), "HDRS");
    CHECK_STR(get(cfg, "base", "delivery"), "smtp");
    CHECK(get(cfg, "base", "insecure") == NULL);
    /* inheritance: the parent's settings, then its own */
    CHECK_STR(get(cfg, "implicit", "tls"), "implicit");
    CHECK_STR(get(cfg, "implicit", "server"), "smtp.example.org");
    CHECK_STR(get(cfg, "implicit", "port"), "465");
    CHECK_STR(get(cfg, "implicit", "auth"), "scram-sha-256");
    CHECK_STR(get(cfg, "implicit", "password-cmd"), "pass show mail");
    CHECK_STR(get(cfg, "implicit", "cert"), "/home/u/client.pem");
    CHECK_STR(get(cfg, "implicit", "key"), "/home/u/client.key");
    CHECK_STR(get(cfg, "implicit", "proxy"), "socks5h://127.0.0.1:9050");
    CHECK_STR(get(cfg, "implicit", "bind"), "192.0.2.7");
    CHECK_STR(get(cfg, "implicit", "dsn-ret"), "HDRS");
    /* account default : implicit is a copy */
    CHECK_STR(get(cfg, NULL, "tls"), "implicit");
    CHECK_STR(get(cfg, NULL, "password-cmd"), "pass show mail");
    /* tls off (also msmtp's default when not said: the defaults said on here),
     * IPv6 host in brackets, default port 25, auth off: no login at all */
    CHECK_STR(get(cfg, "plain", "tls"), "none");
    CHECK_STR(get(cfg, "plain", "server"), "[::1]");
    CHECK_STR(get(cfg, "plain", "port"), "25");
    CHECK(get(cfg, "plain", "user") == NULL);
    CHECK(get(cfg, "plain", "timeout") == NULL);
    CHECK(has_warning(cfg, "credentials without \"auth on\""));
    CHECK(!has_warning(cfg, "auth without tls"));
    /* tls_certcheck off: honoured, loudly */
    CHECK_STR(get(cfg, "lax", "insecure"), "yes");
    CHECK(has_warning(cfg, "m.rc:40: account lax: tls_certcheck off: the server's certificate is NOT verified"));
    CHECK(has_warning(cfg, "account lax: set_from_header on: not supported"));
    CHECK(has_warning(cfg, "account lax: auto_from: not supported"));
    CHECK(!has_warning(cfg, "account base: set_from_header"));
    CHECK(has_warning(cfg, "account base: logfile: smtpc writes no log file"));
    /* sources name the msmtp line */
    char src[128];
    CHECK_STR(smtpc_account_source(smtpc_config_account(cfg, "implicit"), "port", src, sizeof src),
              "m.rc:23");
    /* an implied port: the tls line decided it */
    CHECK_STR(smtpc_account_source(smtpc_config_account(cfg, "plain"), "port", src, sizeof src),
              "m.rc:34");
    smtpc_config_free(cfg);
}

TEST(msmtp_defaults_and_ports)
{
    int rc;
    char err[512] = "";
    /* no tls line: msmtp's default is off; implicit TLS defaults to 465 */
    smtpc_config *cfg = parse("account a\nhost h.example\n"
                              "account b\nhost h.example\ntls\ntls_starttls off\n"
                              "account c\nhost h.example\ntls on\n",
                              &rc, err, sizeof err);
    CHECK_INT(rc, 0);
    CHECK_STR(get(cfg, "a", "tls"), "none");
    CHECK_STR(get(cfg, "a", "port"), "25");
    char src[128];
    CHECK_STR(smtpc_account_source(smtpc_config_account(cfg, "a"), "port", src, sizeof src),
              "m.rc (msmtp's default)");
    CHECK_STR(get(cfg, "b", "tls"), "implicit");
    CHECK_STR(get(cfg, "b", "port"), "465");
    CHECK_STR(get(cfg, "c", "tls"), "starttls");
    CHECK_STR(get(cfg, "c", "port"), "25");
    CHECK(!has_warning(cfg, "auth without tls"));
    /* several accounts, none called default: no account is chosen, and the
     * unnamed one never falls back to a pickup directory */
    CHECK_STR(smtpc_account_name(smtpc_config_account(cfg, NULL)), "");
    CHECK_STR(get(cfg, NULL, "delivery"), "smtp");
    CHECK(get(cfg, NULL, "server") == NULL);
    smtpc_config_free(cfg);
}

TEST(refused)
{
    static const struct {
        const char *text, *needle;
    } cases[] = {
        {"account a\nhost h\ntls on\ntls_fingerprint SHA256:01:02\n", "m.rc:4: account a: tls_fingerprint"},
        {"account a\nhost h\ntls on\ntls_trust_file\n", "empty tls_trust_file"},
        {"account a\nhost h\nauth gssapi\n", "auth gssapi: smtpc does not support"},
        {"account a\nhost h\nprotocol lmtp\n", "protocol lmtp"},
        {"account a\nhost h\nsocket /run/smtp.sock\n", "socket"},
        {"eval echo host x\n", "m.rc:1: eval"},
        {"account a : nosuch\n", "undefined account \"nosuch\""},
        {"account a\naccount a\n", "m.rc:2: account a defined twice"},
        {"account a\nhost h\ntls maybe\n", "tls: \"maybe\""},
        {"account a\nhost h\ntimeout soon\n", "timeout: \"soon\""},
        {"account a\nhost h\ndsn_return some\n", "dsn_return"},
        {"account a\nhost h\nport 99999\n", "m.rc:3: port"},
        {"account a\nhost h\nfrom %C@x\n", "%C is not supported"},
        {"account a\nhost h\nauth xoauth2\npassword tok\n", "fixed OAuth token"},
        {"account a\nhost h\npassword \"unterminated\n", "badly quoted"},
    };
    int rc0;
    char err0[512];
    smtpc_config *c0 = parse("account a\nhost h\nauth plain\nuser u\npasswordeval x\n", &rc0, err0, sizeof err0);
    CHECK_INT(rc0, 0);
    CHECK(has_warning(c0, "m.rc:3: account a: auth without tls: smtpc does not send credentials"));
    smtpc_config_free(c0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc;
        char err[512] = "";
        smtpc_config *cfg = parse(cases[i].text, &rc, err, sizeof err);
        if (rc != SMTPC_ECONFIG || !strstr(err, cases[i].needle))
            T_FAILF("case %zu: rc %d, \"%s\" lacks \"%s\"", i, rc, err, cases[i].needle);
        CHECK(cfg == NULL);
    }
}

TEST(warnings_and_mappings)
{
    int rc;
    char err[512] = "";
    smtpc_config *cfg = parse("syslog LOG_MAIL\nno_such_thing 1\n"
                              "account a\nhost h\ntls on\nauth xoauth2\nuser u\n"
                              "passwordeval get-token\ntls_host_override mx.example\n"
                              "tls_crl_file /x.crl\nfrom *@example.org\nfrom_dummy\n",
                              &rc, err, sizeof err);
    CHECK_INT(rc, 0);
    CHECK(has_warning(cfg, "m.rc:1: syslog: not supported by smtpc; ignored"));
    CHECK(has_warning(cfg, "m.rc:2: no_such_thing: unknown msmtp command; ignored"));
    CHECK(has_warning(cfg, "tls_crl_file"));
    CHECK(!has_warning(cfg, "auth without tls"));
    CHECK_STR(get(cfg, "a", "oauth-token-cmd"), "get-token");
    CHECK(get(cfg, "a", "password-cmd") == NULL);
    CHECK_STR(get(cfg, "a", "tls-server-name"), "mx.example");
    CHECK_STR(get(cfg, "a", "match-from"), "*@example.org");
    CHECK(get(cfg, "a", "from") == NULL);
    smtpc_config_free(cfg);
}

TEST(detection)
{
    int rc;
    char err[512] = "";
    /* smtpc's syntax stays smtpc's, also with comments first */
    smtpc_config *cfg = parse("# host x\n[account a]\nserver = h\n", &rc, err, sizeof err);
    CHECK_INT(rc, 0);
    CHECK_STR(smtpc_config_format(cfg), "smtpc");
    CHECK(smtpc_config_warning_at(cfg, 0) == NULL);
    smtpc_config_free(cfg);
    cfg = parse("timeout = 5\n", &rc, err, sizeof err);
    CHECK_INT(rc, 0);
    CHECK_STR(smtpc_config_format(cfg), "smtpc");
    smtpc_config_free(cfg);
    cfg = parse("\n  # c\n  host h.example\n", &rc, err, sizeof err);
    CHECK_INT(rc, 0);
    CHECK_STR(smtpc_config_format(cfg), "msmtp");
    smtpc_config_free(cfg);
    /* SMTPC_CONFIG_MSMTP refuses smtpc's syntax */
    cfg = NULL;
    rc = smtpc_config_parse(&cfg, "server = h\n", 11, "x.conf", SMTPC_CONFIG_MSMTP, err, sizeof err);
    CHECK_INT(rc, SMTPC_ECONFIG);
    CHECK(strstr(err, "not an msmtp configuration file") != NULL);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        T_FAILF("cannot write %s", path);
        return;
    }
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

/* With no smtpc file, ~/.msmtprc then $XDG_CONFIG_HOME/msmtp/config; an
 * smtpc file wins; the same permission rules. */
TEST(search_and_permissions)
{
    char home[512], p1[600], p2[600], p3[600], dir[600], err[512] = "";
    snprintf(home, sizeof home, "%s/home", tmpdir);
    mkdir(home, 0700);
    snprintf(dir, sizeof dir, "%s/xdg", tmpdir);
    mkdir(dir, 0700);
    snprintf(p1, sizeof p1, "%s/xdg/msmtp", tmpdir);
    mkdir(p1, 0700);
    snprintf(p1, sizeof p1, "%s/xdg/msmtp/config", tmpdir);
    snprintf(p2, sizeof p2, "%s/.msmtprc", home);
    snprintf(p3, sizeof p3, "%s/.smtpcrc", home);
    setenv("HOME", home, 1);
    setenv("XDG_CONFIG_HOME", dir, 1);
    unsetenv("SMTPC_CONFIG");
    write_file(p1, "account default\nhost xdg.example\n", 0644);
    smtpc_config *cfg = NULL;
    CHECK_INT(smtpc_config_load(&cfg, NULL, SMTPC_CONFIG_NOENV, err, sizeof err), 0);
    CHECK_STR(smtpc_config_path(cfg), p1);
    CHECK_STR(get(cfg, NULL, "server"), "xdg.example");
    smtpc_config_free(cfg);
    write_file(p2, "account default\nhost home.example\npassword x\n", 0644);
    cfg = NULL;
    /* a password in a file others can read: refused, as for smtpc's own */
    CHECK_INT(smtpc_config_load(&cfg, NULL, SMTPC_CONFIG_NOENV, err, sizeof err), SMTPC_ECONFIG);
    CHECK(strstr(err, ".msmtprc:3: password in a file accessible by group or others") != NULL);
    chmod(p2, 0600);
    CHECK_INT(smtpc_config_load(&cfg, NULL, SMTPC_CONFIG_NOENV, err, sizeof err), 0);
    CHECK_STR(smtpc_config_path(cfg), p2);
    CHECK_STR(get(cfg, NULL, "server"), "home.example");
    smtpc_config_free(cfg);
    chmod(p2, 0620);
    cfg = NULL;
    CHECK_INT(smtpc_config_load(&cfg, NULL, SMTPC_CONFIG_NOENV, err, sizeof err), SMTPC_ECONFIG);
    CHECK(strstr(err, "writable by group or others") != NULL);
    chmod(p2, 0600);
    write_file(p3, "server = smtpc.example\n", 0600);
    CHECK_INT(smtpc_config_load(&cfg, NULL, SMTPC_CONFIG_NOENV, err, sizeof err), 0);
    CHECK_STR(smtpc_config_path(cfg), p3);
    CHECK_STR(smtpc_config_format(cfg), "smtpc");
    smtpc_config_free(cfg);
    /* SMTPC_CONFIG_MSMTP looks at msmtp's places only */
    cfg = NULL;
    CHECK_INT(smtpc_config_load(&cfg, NULL, SMTPC_CONFIG_NOENV | SMTPC_CONFIG_MSMTP, err, sizeof err), 0);
    CHECK_STR(smtpc_config_path(cfg), p2);
    smtpc_config_free(cfg);
    unlink(p1);
    unlink(p2);
    unlink(p3);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/smtpc-test-msmtp-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(every_key);
    RUN(msmtp_defaults_and_ports);
    RUN(refused);
    RUN(warnings_and_mappings);
    RUN(detection);
    RUN(search_and_permissions);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) return 1;
    T_DONE();
}
