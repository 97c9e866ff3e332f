/* smtpc config: which file, which account, the effective settings and where
 * each comes from; optionally checks that the password can be obtained.
 * Secrets are never printed. */
#include "cli.h"

#include <string.h>

/* A value as the smtpc parser reads it back: quoted when blanks at either
 * end or a leading quote would change it. */
static void put_value(const char *v)
{
    size_t n = strlen(v);
    if (n && v[0] != '"' && v[0] != ' ' && v[0] != '\t' && v[n - 1] != ' ' && v[n - 1] != '\t') {
        printf("%s\n", v);
        return;
    }
    putchar('"');
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\') putchar('\\');
        putchar(*p);
    }
    puts("\"");
}

/* smtpc config import-msmtp [FILE]: the msmtp file as smtpc's configuration. */
static int import_msmtp(cli_ctx *c, const char *file)
{
    char err[1024];
    smtpc_config *cfg = NULL;
    int rc = smtpc_config_load(&cfg, file, SMTPC_CONFIG_NOENV | SMTPC_CONFIG_MSMTP, err, sizeof err);
    if (rc) {
        cli_err(c, "%s", err[0] ? err : smtpc_strerror(rc));
        return rc == SMTPC_ENOTFOUND || rc == SMTPC_EIO ? EX_NOINPUT : EX_CONFIG;
    }
    const char *path = smtpc_config_path(cfg);
    if (!path) {
        cli_err(c, "no msmtp configuration found (~/.msmtprc, $XDG_CONFIG_HOME/msmtp/config, "
                   "/etc/msmtprc)");
        smtpc_config_free(cfg);
        return EX_NOINPUT;
    }
    char esc[1024];
    cli_escape_into(esc, sizeof esc, path, strlen(path));
    printf("# smtpc configuration (smtpc-config(5)) made by smtpc config import-msmtp\n"
           "# from %s. It may hold a password: keep it private (chmod 600).\n",
           esc);
    for (size_t i = 0; smtpc_config_warning_at(cfg, i); i++) {
        const char *w = smtpc_config_warning_at(cfg, i);
        cli_escape_into(esc, sizeof esc, w, strlen(w));
        printf("# warning: %s\n", esc);
        fprintf(stderr, "%s: warning: %s\n", c->prog, w);
    }
    /* an msmtp account always sends to its host, also when none is chosen */
    printf("delivery = smtp\n");
    const smtpc_account *dflt = smtpc_config_account(cfg, NULL);
    size_t n = smtpc_config_account_count(cfg);
    if (n > 1 && dflt && *smtpc_account_name(dflt)) printf("default = %s\n", smtpc_account_name(dflt));
    for (size_t i = 0; i < n; i++) {
        const smtpc_account *a = smtpc_config_account_at(cfg, i);
        printf("\n[account %s]\n", smtpc_account_name(a));
        for (size_t k = 0; smtpc_config_key_at(k); k++) {
            const char *key = smtpc_config_key_at(k);
            const char *v = smtpc_account_get(a, key);
            if (!v || !strcmp(key, "delivery")) continue;
            printf("%s = ", key);
            put_value(v);
        }
    }
    smtpc_config_free(cfg);
    return 0;
}

int cmd_config(const char *prog, int argc, char **argv)
{
    cli_ctx c;
    memset(&c, 0, sizeof c);
    c.prog = prog;
    c.cmdname = "config";
    c.cmd = CMD_CONFIG;
    int ex = cli_parse(prog, "config", CMD_CONFIG, argc, argv, &c.o);
    if (ex) goto out;
    if (c.o.val[O_HELP]) { ex = cmd_help("config", stdout); goto out; }
    if (c.o.pos.n >= 1 && !strcmp(c.o.pos.v[0], "import-msmtp")) {
        if (c.o.pos.n > 2) {
            fprintf(stderr, "%s config import-msmtp: one FILE at most\n", prog);
            ex = EX_USAGE;
            goto out;
        }
        ex = import_msmtp(&c, c.o.pos.n == 2 ? c.o.pos.v[1] : c.o.val[O_CONFIG]);
        goto out;
    }
    if (c.o.pos.n > 1 || (c.o.pos.n == 1 && strcmp(c.o.pos.v[0], "check") != 0)) {
        fprintf(stderr, "%s config: unexpected argument \"%s\" (see '%s help config')\n", prog,
                c.o.pos.v[0], prog);
        ex = EX_USAGE;
        goto out;
    }
    if ((ex = cli_ctx_load_config(&c, NULL))) goto out;
    const char *path = smtpc_config_path(c.cfg);
    printf("file: %s%s\n", path ? path : "(none found)",
           !strcmp(smtpc_config_format(c.cfg), "msmtp") ? " (msmtp)" : "");
    size_t n = smtpc_config_account_count(c.cfg);
    const smtpc_account *dflt = smtpc_config_account(c.cfg, NULL);
    printf("accounts:");
    for (size_t i = 0; i < n; i++) {
        const smtpc_account *a = smtpc_config_account_at(c.cfg, i);
        printf(" %s%s", smtpc_account_name(a), a == dflt ? " (default)" : "");
    }
    printf("%s\n", n ? "" : " (none)");
    const char *an = smtpc_account_name(c.acct);
    printf("account: %s\n", an && *an ? an : "(keys outside any account)");
    for (size_t k = 0; smtpc_config_key_at(k); k++) {
        const char *key = smtpc_config_key_at(k);
        const char *v = smtpc_account_get(c.acct, key);
        char src[512];
        const char *from = smtpc_account_source(c.acct, key, src, sizeof src);
        /* flags given to this command override as they would for send */
        for (size_t i = 0; i < cli_opt_table_len; i++) {
            const cli_opt_def *d = &cli_opt_table[i];
            if (d->cfgkey && !strcmp(d->cfgkey, key) && c.o.val[d->id] && (d->cmds & CMD_CONFIG)) {
                v = c.o.val[d->id];
                from = "command line";
            }
        }
        if (!v) continue;
        char esc[1024];
        cli_escape_into(esc, sizeof esc, v, strlen(v));
        printf("  %-18s %-36s %s\n", key, !strcmp(key, "password") ? "(set, not shown)" : esc, from);
    }
    cli_delivery d;
    if ((ex = cli_delivery_choose(&c, &d))) goto out;
    printf("delivery: %s\n", d == DELIVER_SMTP ? "smtp" : d == DELIVER_PICKUP ? "pickup" : "outbox");
    if (c.o.val[O_CHECK_PASSWORD]) {
        char *secret = NULL, err[512];
        const char *source = NULL;
        int rc = cli_secret(&c, false, &secret, &source, err, sizeof err);
        cli_free_secret(secret);
        if (rc == SMTPC_ENOTFOUND) {
            printf("password: none configured\n");
        } else if (rc) {
            cli_err(&c, "password: %s", err);
            ex = rc == SMTPC_ETEMPFAIL ? EX_TEMPFAIL : EX_CONFIG;
        } else {
            printf("password: ok (from %s)\n", source);
        }
    }
out:
    cli_ctx_free(&c);
    return ex;
}
