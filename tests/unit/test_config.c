/* The configuration file reader: syntax, values, accounts, lookup order,
 * environment overrides, permission refusal for passwords. */
#include "t.h"

#include <smtpc/config.h>

#include "util/util.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static smtpc_config *parse(const char *text, int *rc, char *err, size_t errlen)
{
    smtpc_config *cfg = NULL;
    *rc = smtpc_config_parse(&cfg, text, strlen(text), "t.conf", SMTPC_CONFIG_NOENV, err, errlen);
    return cfg;
}

static const char sample[] =
    "# comment\n"
    "timeout = 30s\n"
    "default = work\n"
    "\n"
    "[account work]\n"
    "server = smtp.example.org:587\n"
    "tls = starttls\n"
    "user = me@example.org\n"
    "password-cmd = pass show mail\n"
    "from = me@example.org\n"
    "  [ account  home ]  \r\n"
    "server = [::1]:2525\n"
    "from = me@home.example\n"
    "match-from = *@home.example *@family.example\n"
    "timeout = 5\n"
    "password = \" has # and spaces \"\n";

TEST(accounts_and_default)
{
    int rc;
    char err[512] = "";
    smtpc_config *cfg = parse(sample, &rc, err, sizeof err);
    CHECK_INT(rc, 0);
    if (rc) { fprintf(stderr, "%s\n", err); return; }
    CHECK_INT(smtpc_config_account_count(cfg), 2);
    const smtpc_account *a = smtpc_config_account(cfg, NULL);
    CHECK_STR(smtpc_account_name(a), "work");
    CHECK_STR(smtpc_account_get(a, "server"), "smtp.example.org:587");
    CHECK_STR(smtpc_account_get(a, "password-cmd"), "pass show mail");
    CHECK(smtpc_account_get(a, "password") == NULL);
    /* global keys are inherited, account keys win */
    CHECK_INT(smtpc_account_get_ms(a, "timeout", -1), 30000);
    const smtpc_account *h = smtpc_config_account(cfg, "home");
    CHECK(h != NULL);
    CHECK_INT(smtpc_account_get_ms(h, "timeout", -1), 5000);
    CHECK_STR(smtpc_account_get(h, "password"), " has # and spaces ");
    CHECK(smtpc_config_account(cfg, "nope") == NULL);
    CHECK(smtpc_account_get(a, "no-such-key") == NULL);
    char src[128];
    CHECK_STR(smtpc_account_source(h, "timeout", src, sizeof src), "t.conf:15");
    CHECK_STR(smtpc_account_source(a, "timeout", src, sizeof src), "t.conf:2");
    smtpc_config_free(cfg);
}

TEST(by_from)
{
    int rc;
    char err[512];
    smtpc_config *cfg = parse(sample, &rc, err, sizeof err);
    CHECK_INT(rc, 0);
    if (rc) return;
    CHECK_STR(smtpc_account_name(smtpc_config_account_by_from(cfg, "ME@home.example")), "home");
    CHECK_STR(smtpc_account_name(smtpc_config_account_by_from(cfg, "kid@Family.example")), "home");
    CHECK_STR(smtpc_account_name(smtpc_config_account_by_from(cfg, "me@example.org")), "work");
    CHECK_STR(smtpc_account_name(smtpc_config_account_by_from(cfg, "x@other.example")), "work");
    CHECK_STR(smtpc_account_name(smtpc_config_account_by_from(cfg, NULL)), "work");
    smtpc_config_free(cfg);
}

TEST(single_account_is_default_and_empty_config)
{
    int rc;
    char err[512];
    smtpc_config *cfg = parse("[account only]\nserver = h\n", &rc, err, sizeof err);
    CHECK_INT(rc, 0);
    CHECK_STR(smtpc_account_name(smtpc_config_account(cfg, NULL)), "only");
    smtpc_config_free(cfg);
    cfg = parse("server = g\n[account a]\n[account b]\n", &rc, err, sizeof err);
    CHECK_INT(rc, 0);
    const smtpc_account *d = smtpc_config_account(cfg, NULL);
    CHECK_STR(smtpc_account_name(d), "");
    CHECK_STR(smtpc_account_get(d, "server"), "g");
    CHECK_STR(smtpc_account_get(smtpc_config_account(cfg, "b"), "server"), "g");
    smtpc_config_free(cfg);
    cfg = parse("", &rc, err, sizeof err);
    CHECK_INT(rc, 0);
    CHECK(smtpc_config_account(cfg, NULL) != NULL);
    CHECK(smtpc_config_path(cfg) == NULL);
    smtpc_config_free(cfg);
}

static void expect_error(const char *text, const char *needle)
{
    int rc;
    char err[512] = "";
    smtpc_config *cfg = parse(text, &rc, err, sizeof err);
    if (rc != SMTPC_ECONFIG && rc != SMTPC_ELIMIT) T_FAILF("\"%s\": rc %d", text, rc);
    if (!strstr(err, needle)) T_FAILF("\"%s\": message \"%s\" lacks \"%s\"", text, err, needle);
    smtpc_config_free(cfg);
}

TEST(errors_name_file_and_line)
{
    expect_error("server = a\nbogus = 1\n", "t.conf:2: unknown key \"bogus\"");
    expect_error("\n\nserver a\n", "t.conf:3: expected \"key = value\"");
    expect_error("[account a]\ntls = maybe\n", "t.conf:2: tls: \"maybe\" is not one of auto, implicit (tls), starttls, starttls-optional, none");
    expect_error("port = 70000\n", "t.conf:1: port");
    expect_error("server = ::1\n", "t.conf:1: server");
    expect_error("server = [::1]:0\n", "t.conf:1: server");
    expect_error("timeout = 3 weeks\n", "t.conf:1: timeout");
    expect_error("insecure = perhaps\n", "insecure");
    expect_error("delivery = pigeon\n", "delivery");
    expect_error("tls-min = 1.4\n", "tls-min");
    expect_error("[account a]\n[account a]\n", "t.conf:2: account \"a\" defined twice");
    expect_error("[account a]\nserver = x\nserver = y\n", "t.conf:3: server already set on line 2");
    expect_error("[acount a]\n", "t.conf:1: expected [account NAME]");
    expect_error("[account a\n", "t.conf:1: section header must end");
    expect_error("[account a b]\n", "invalid account name");
    expect_error("default = nope\n[account a]\n", "default account \"nope\" is not defined");
    expect_error("[account a]\ndefault = a\n", "t.conf:2: \"default\" belongs before");
    expect_error("user = \"abc\n", "t.conf:1: user: badly quoted");
    expect_error("from = a b@c\n", "from: value must not contain blanks");
    expect_error("server =\n", "server: empty value");
}

TEST(password_never_echoed)
{
    int rc;
    char err[512] = "";
    smtpc_config *cfg = parse("password = s3cr\x01t\n", &rc, err, sizeof err);
    CHECK_INT(rc, SMTPC_ECONFIG);
    CHECK(strstr(err, "s3cr") == NULL);
    CHECK(strstr(err, "t.conf:1") != NULL);
    smtpc_config_free(cfg);
}

TEST(line_limit)
{
    char *big = malloc(6000);
    memcpy(big, "user = ", 7);
    memset(big + 7, 'x', 5000);
    memcpy(big + 5007, "\n", 2);
    int rc;
    char err[512] = "";
    smtpc_config *cfg = parse(big, &rc, err, sizeof err);
    CHECK_INT(rc, SMTPC_ELIMIT);
    CHECK(strstr(err, "t.conf:1: line longer") != NULL);
    smtpc_config_free(cfg);
    free(big);
}

TEST(environment_overrides)
{
    setenv("SMTPC_SERVER", "env.example:2525", 1);
    setenv("SMTPC_PASSWORD", "never-used", 1);
    smtpc_config *cfg = NULL;
    char err[512] = "";
    const char *text = "[account a]\nserver = file.example\nuser = u\n";
    CHECK_INT(smtpc_config_parse(&cfg, text, strlen(text), "t.conf", 0, err, sizeof err), 0);
    const smtpc_account *a = smtpc_config_account(cfg, NULL);
    CHECK_STR(smtpc_account_get(a, "server"), "env.example:2525");
    CHECK_STR(smtpc_account_get(a, "user"), "u");
    CHECK(smtpc_account_get(a, "password") == NULL);
    char src[128];
    CHECK_STR(smtpc_account_source(a, "server", src, sizeof src), "environment SMTPC_SERVER");
    smtpc_config_free(cfg);
    /* NOENV ignores it */
    cfg = NULL;
    CHECK_INT(smtpc_config_parse(&cfg, text, strlen(text), "t.conf", SMTPC_CONFIG_NOENV, err,
                                 sizeof err), 0);
    CHECK_STR(smtpc_account_get(smtpc_config_account(cfg, NULL), "server"), "file.example");
    smtpc_config_free(cfg);
    /* a bad value in the environment is reported with the variable's name */
    setenv("SMTPC_TLS", "bogus", 1);
    cfg = NULL;
    CHECK_INT(smtpc_config_parse(&cfg, text, strlen(text), "t.conf", 0, err, sizeof err),
              SMTPC_ECONFIG);
    CHECK(strstr(err, "SMTPC_TLS") != NULL);
    CHECK(cfg == NULL);
    unsetenv("SMTPC_TLS");
    unsetenv("SMTPC_SERVER");
    unsetenv("SMTPC_PASSWORD");
}

static char tmpdir[256];

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (!f) { T_FAILF("cannot write %s", path); return; }
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

TEST(load_permissions_and_search)
{
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/rc", tmpdir);
    write_file(path, "[account a]\npassword = x\n", 0644);
    smtpc_config *cfg = NULL;
    CHECK_INT(smtpc_config_load(&cfg, path, SMTPC_CONFIG_NOENV, err, sizeof err), SMTPC_ECONFIG);
    CHECK(strstr(err, "chmod 600") != NULL);
    CHECK(cfg == NULL);
    chmod(path, 0600);
    CHECK_INT(smtpc_config_load(&cfg, path, SMTPC_CONFIG_NOENV, err, sizeof err), 0);
    CHECK_STR(smtpc_config_path(cfg), path);
    smtpc_config_free(cfg);
    cfg = NULL;
    /* without a password, a world-readable file is fine */
    write_file(path, "[account a]\nserver = h\n", 0644);
    CHECK_INT(smtpc_config_load(&cfg, path, SMTPC_CONFIG_NOENV, err, sizeof err), 0);
    smtpc_config_free(cfg);
    cfg = NULL;
    char missing[512];
    snprintf(missing, sizeof missing, "%s/missing", tmpdir);
    CHECK_INT(smtpc_config_load(&cfg, missing, 0, err, sizeof err), SMTPC_ENOTFOUND);

    /* search order: $SMTPC_CONFIG, XDG, ~/.smtpcrc */
    char xdgdir[512], xdg[600], rc[600];
    snprintf(xdgdir, sizeof xdgdir, "%s/xdg/smtpc", tmpdir);
    char d1[512];
    snprintf(d1, sizeof d1, "%s/xdg", tmpdir);
    mkdir(d1, 0700);
    mkdir(xdgdir, 0700);
    snprintf(xdg, sizeof xdg, "%s/config", xdgdir);
    snprintf(rc, sizeof rc, "%s/.smtpcrc", tmpdir);
    write_file(rc, "server = from-rc\n", 0600);
    unsetenv("SMTPC_CONFIG");
    setenv("HOME", tmpdir, 1);
    setenv("XDG_CONFIG_HOME", d1, 1);
    CHECK_INT(smtpc_config_load(&cfg, NULL, SMTPC_CONFIG_NOENV, err, sizeof err), 0);
    CHECK_STR(smtpc_config_path(cfg), rc);
    smtpc_config_free(cfg);
    write_file(xdg, "server = from-xdg\n", 0600);
    CHECK_INT(smtpc_config_load(&cfg, NULL, SMTPC_CONFIG_NOENV, err, sizeof err), 0);
    CHECK_STR(smtpc_account_get(smtpc_config_account(cfg, NULL), "server"), "from-xdg");
    smtpc_config_free(cfg);
    setenv("SMTPC_CONFIG", path, 1);
    CHECK_INT(smtpc_config_load(&cfg, NULL, SMTPC_CONFIG_NOENV, err, sizeof err), 0);
    CHECK_STR(smtpc_config_path(cfg), path);
    smtpc_config_free(cfg);
    setenv("SMTPC_CONFIG", missing, 1);
    cfg = NULL;
    CHECK_INT(smtpc_config_load(&cfg, NULL, SMTPC_CONFIG_NOENV, err, sizeof err), SMTPC_ENOTFOUND);
    unsetenv("SMTPC_CONFIG");
    unlink(xdg);
    unlink(rc);
    unlink(path);
    rmdir(xdgdir);
    rmdir(d1);
}

/* Any key can send mail and credentials elsewhere (server, proxy, insecure)
 * or run a command (password-cmd): a file others can write is refused
 * whatever it holds, and every key that holds or obtains a credential needs
 * a private file, not only a literal password. */
/* Loads path (no environment) and frees the result: the return code. */
static int load_rc(const char *path, char *err, size_t errlen)
{
    smtpc_config *cfg = NULL;
    int rc = smtpc_config_load(&cfg, path, SMTPC_CONFIG_NOENV, err, errlen);
    if (rc && cfg) T_FAILF("out set on failure");
    smtpc_config_free(cfg);
    return rc;
}

TEST(load_refuses_unsafe_files)
{
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/perm.conf", tmpdir);
    static const char *const writable[] = {"server = h\n", "[account a]\npassword-cmd = cat /x\n"};
    static const mode_t wmodes[] = {0666, 0664, 0646, 0620};
    for (size_t i = 0; i < 2; i++)
        for (size_t m = 0; m < 4; m++) {
            write_file(path, writable[i], wmodes[m]);
            err[0] = '\0';
            int rc = load_rc(path, err, sizeof err);
            if (rc != SMTPC_ECONFIG) T_FAILF("mode %03o: rc %d", (unsigned)wmodes[m], rc);
            CHECK(strstr(err, path) != NULL);
            CHECK(strstr(err, "writable by group or others") != NULL);
            CHECK(strstr(err, "chmod go-w") != NULL);
        }
    /* secret-bearing keys: not readable by group or others either */
    static const struct { const char *text, *key; } secret[] = {
        {"server = h\n[account a]\npassword-cmd = pass show mail\n", ":3: password-cmd"},
        {"password-file = /home/me/.pw\n", ":1: password-file"},
        {"[account a]\n\noauth-token-cmd = get-token\n", ":3: oauth-token-cmd"},
        {"[account a]\npassword = x\n", ":2: password"},
        {"proxy = socks5h://u:hunter2@127.0.0.1:1080\n", ":1: proxy"},
        {"proxy = http://me:pw@proxy.example/\n", ":1: proxy"},
    };
    for (size_t i = 0; i < sizeof secret / sizeof *secret; i++)
        for (mode_t mode = 0640; mode <= 0644; mode += 4) {
            write_file(path, secret[i].text, mode);
            err[0] = '\0';
            int rc = load_rc(path, err, sizeof err);
            if (rc != SMTPC_ECONFIG) T_FAILF("case %zu mode %03o: rc %d", i, (unsigned)mode, rc);
            if (!strstr(err, secret[i].key) || !strstr(err, "chmod 600") || !strstr(err, "group or others"))
                T_FAILF("case %zu: %s", i, err);
            CHECK(strstr(err, "hunter2") == NULL);
            write_file(path, secret[i].text, 0600);
            CHECK_INT(load_rc(path, err, sizeof err), 0);
        }
    /* no secret: readable by all is fine (a proxy without a password too) */
    write_file(path, "server = h\nproxy = socks5h://u@127.0.0.1:1080\npassword-env = PW\n", 0644);
    CHECK_INT(load_rc(path, err, sizeof err), 0);
    /* /dev/null is no configuration, not a world-writable one */
    CHECK_INT(load_rc("/dev/null", err, sizeof err), 0);

    /* ownership: needs root to make files of other users */
    if (geteuid() != 0) {
        printf("load_refuses_unsafe_files: not root, ownership cases skipped\n");
        unlink(path);
        return;
    }
    chmod(tmpdir, 0755);
    write_file(path, "server = h\n", 0644);
    /* root's file (/etc/smtpc.conf) is fine for another user ... */
    CHECK_INT(seteuid(65534), 0);
    CHECK_INT(load_rc(path, err, sizeof err), 0);
    CHECK_INT(seteuid(0), 0);
    /* ... a file of another user is not, even for root */
    CHECK_INT(chown(path, 65534, 65534), 0);
    CHECK_INT(load_rc(path, err, sizeof err), SMTPC_ECONFIG);
    CHECK(strstr(err, "owned by another user (uid 65534)") != NULL);
    CHECK(strstr(err, path) != NULL);
    /* root's file with a secret, for another user: the secret rule applies */
    write_file(path, "[account a]\npassword-cmd = x\n", 0600);
    CHECK_INT(chown(path, 0, 0), 0);
    chmod(path, 0644);
    CHECK_INT(seteuid(65534), 0);
    CHECK_INT(load_rc(path, err, sizeof err), SMTPC_ECONFIG);
    CHECK(strstr(err, "chmod 600") != NULL);
    CHECK_INT(seteuid(0), 0);
    chmod(tmpdir, 0700);
    unlink(path);
}

static size_t released, released_nonzero;

static void on_release(const void *p, size_t n)
{
    released++;
    for (size_t i = 0; i < n; i++) released_nonzero += ((const uint8_t *)p)[i] != 0;
}

/* The file is read in pieces into a buffer that grows: a password in it
 * must not stay behind in the blocks given up on the way. */
TEST(load_leaves_no_copy_of_the_file)
{
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/big.conf", tmpdir);
    FILE *f = fopen(path, "w");
    if (!f) {
        T_FAILF("cannot write %s", path);
        return;
    }
    fputs("[account a]\npassword = s3cret\n", f);
    for (int i = 0; i < 600; i++) fputs("# a comment line to make the file larger\n", f);
    fclose(f);
    chmod(path, 0600);
    smtpc__buf_release_hook = on_release;
    released = released_nonzero = 0;
    CHECK_INT(load_rc(path, err, sizeof err), 0);
    smtpc__buf_release_hook = NULL;
    CHECK(released >= 3); /* grown from 8 KiB to 32 KiB, then freed */
    CHECK_INT(released_nonzero, 0);
    unlink(path);
}

TEST(helpers)
{
    char host[64];
    uint16_t port = 1;
    CHECK_INT(smtpc_config_parse_server("[::1]:2525", host, sizeof host, &port), 0);
    CHECK_STR(host, "::1");
    CHECK_INT(port, 2525);
    CHECK_INT(smtpc_config_parse_server("mail.example.org", host, sizeof host, &port), 0);
    CHECK_STR(host, "mail.example.org");
    CHECK_INT(port, 0);
    CHECK_INT(smtpc_config_parse_server("h:65536", host, sizeof host, &port), SMTPC_ECONFIG);
    CHECK_INT(smtpc_config_parse_server("h:", host, sizeof host, &port), SMTPC_ECONFIG);
    CHECK_INT(smtpc_config_parse_server(":25", host, sizeof host, &port), SMTPC_ECONFIG);
    CHECK_INT(smtpc_config_parse_server("[::1]x", host, sizeof host, &port), SMTPC_ECONFIG);
    int64_t ms;
    CHECK_INT(smtpc_config_parse_duration_ms("500ms", &ms), 0);
    CHECK_INT(ms, 500);
    CHECK_INT(smtpc_config_parse_duration_ms("2m", &ms), 0);
    CHECK_INT(ms, 120000);
    CHECK_INT(smtpc_config_parse_duration_ms("-1", &ms), SMTPC_ECONFIG);
    CHECK_INT(smtpc_config_parse_duration_ms("", &ms), SMTPC_ECONFIG);
    CHECK(smtpc_config_key_valid("password-cmd"));
    CHECK(!smtpc_config_key_valid("default"));
    char err[128];
    CHECK_INT(smtpc_config_check_value("tls", "tls", err, sizeof err), 0);
    CHECK_INT(smtpc_config_check_value("tls", "ssl", err, sizeof err), SMTPC_ECONFIG);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/smtpc-test-config-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(accounts_and_default);
    RUN(by_from);
    RUN(single_account_is_default_and_empty_config);
    RUN(errors_name_file_and_line);
    RUN(password_never_echoed);
    RUN(line_limit);
    RUN(environment_overrides);
    RUN(load_permissions_and_search);
    RUN(load_refuses_unsafe_files);
    RUN(load_leaves_no_copy_of_the_file);
    RUN(helpers);
    rmdir(tmpdir);
    T_DONE();
}
