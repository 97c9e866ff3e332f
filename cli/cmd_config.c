/* smtpc config: which file, which account, the effective settings and where
 * each comes from; optionally checks that the password can be obtained.
 * Secrets are never printed. */
#include "cli.h"

#include <string.h>

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
    if (c.o.pos.n > 1 || (c.o.pos.n == 1 && strcmp(c.o.pos.v[0], "check") != 0)) {
        fprintf(stderr, "%s config: unexpected argument \"%s\" (see '%s help config')\n", prog,
                c.o.pos.v[0], prog);
        ex = EX_USAGE;
        goto out;
    }
    if ((ex = cli_ctx_load_config(&c, NULL))) goto out;
    const char *path = smtpc_config_path(c.cfg);
    printf("file: %s\n", path ? path : "(none found)");
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
