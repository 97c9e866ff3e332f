/* Settings: command-line flags over SMTPC_* environment over the
 * configuration file (the last two merged by the library's config reader). */
#include "cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void cli_err(const cli_ctx *c, const char *fmt, ...)
{
    /* library messages may quote the server: escaped like every server text */
    char msg[2048], esc[sizeof msg * 4];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    cli_escape_into(esc, sizeof esc, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    fprintf(stderr, "%s: %s\n", c->prog, esc);
}

int cli_ctx_load_config(cli_ctx *c, const char *from_hint)
{
    char err[1024];
    const char *path = c->o.val[O_CONFIG];
    int rc = smtpc_config_load(&c->cfg, path, 0, err, sizeof err);
    if (rc) {
        cli_err(c, "%s", err[0] ? err : smtpc_strerror(rc));
        return rc == SMTPC_ENOTFOUND || rc == SMTPC_EIO ? (path ? EX_NOINPUT : EX_CONFIG) : EX_CONFIG;
    }
    for (size_t i = 0; smtpc_config_warning_at(c->cfg, i); i++)
        fprintf(stderr, "%s: warning: %s\n", c->prog, smtpc_config_warning_at(c->cfg, i));
    const char *name = c->o.val[O_ACCOUNT];
    if (!name) {
        const char *e = getenv("SMTPC_ACCOUNT");
        if (e && *e) name = e;
    }
    if (name) {
        c->acct = smtpc_config_account(c->cfg, name);
        if (!c->acct) {
            cli_err(c, "no account \"%s\" in %s", name,
                    smtpc_config_path(c->cfg) ? smtpc_config_path(c->cfg) : "(no configuration file found)");
            return EX_CONFIG;
        }
    } else if (from_hint) {
        c->acct = smtpc_config_account_by_from(c->cfg, from_hint);
    } else {
        c->acct = smtpc_config_account(c->cfg, NULL);
    }
    /* DSN requests of the account (msmtp's dsn_notify, dsn_return) unless
     * the command line has its own */
    if (c->acct && (c->cmd & (CMD_SEND | CMD_SENDMAIL))) {
        bool more = false;
        if (!c->o.val[O_DSN_NOTIFY] && (c->o.val[O_DSN_NOTIFY] = smtpc_account_get(c->acct, "dsn-notify")))
            more = true;
        if (!c->o.val[O_DSN_RET] && (c->o.val[O_DSN_RET] = smtpc_account_get(c->acct, "dsn-ret")))
            more = true;
        if (more && cli_dsn_normalize(c)) return EX_CONFIG;
    }
    /* flags are checked with the same rules as configuration values */
    for (size_t i = 0; i < cli_opt_table_len; i++) {
        const cli_opt_def *d = &cli_opt_table[i];
        /* --from is an address: checked later, as data (exit 65), like --to */
        if (!d->cfgkey || !c->o.val[d->id] || d->kind == OK_FLAG || d->id == O_FROM) continue;
        if (smtpc_config_check_value(d->cfgkey, c->o.val[d->id], err, sizeof err)) {
            fprintf(stderr, "%s %s: %s: %s\n", c->prog, c->cmdname, d->name,
                    strchr(err, ':') ? strchr(err, ':') + 2 : err);
            return EX_USAGE;
        }
    }
    return 0;
}

void cli_ctx_free(cli_ctx *c)
{
    smtpc_config_free(c->cfg);
    c->cfg = NULL;
    cli_opts_free(&c->o);
}

const char *cli_get(const cli_ctx *c, cli_opt_id id)
{
    if (c->o.val[id]) return c->o.val[id];
    const cli_opt_def *d = cli_opt_find_id(id);
    if (!d || !d->cfgkey || !c->acct) return NULL;
    return smtpc_account_get(c->acct, d->cfgkey);
}

bool cli_get_bool(const cli_ctx *c, cli_opt_id id)
{
    if (c->o.val[id]) return true;
    const cli_opt_def *d = cli_opt_find_id(id);
    if (!d || !d->cfgkey || !c->acct) return false;
    return smtpc_account_get_bool(c->acct, d->cfgkey, false);
}

int cli_delivery_choose(const cli_ctx *c, cli_delivery *out)
{
    const cli_opts *o = &c->o;
    int n = !!o->val[O_SERVER] + !!o->val[O_PICKUP_DIR] + !!o->val[O_OUTBOX];
    if (n > 1) {
        cli_err(c, "choose one of --server, --pickup-dir and --outbox");
        return EX_USAGE;
    }
    const char *how = o->val[O_DELIVERY];
    if (!how) {
        if (o->val[O_SERVER]) how = "smtp";
        else if (o->val[O_PICKUP_DIR]) how = "pickup";
        else if (o->val[O_OUTBOX]) how = "outbox";
    }
    if (!how) how = cli_get(c, O_DELIVERY);
    if (!how) how = cli_get(c, O_SERVER) ? "smtp" : "pickup";
    if (!strcmp(how, "smtp")) *out = DELIVER_SMTP;
    else if (!strcmp(how, "pickup")) *out = DELIVER_PICKUP;
    else if (!strcmp(how, "outbox")) *out = DELIVER_OUTBOX;
    else {
        cli_err(c, "unknown delivery \"%s\" (smtp, pickup or outbox)", how);
        return EX_USAGE;
    }
    if (*out == DELIVER_SMTP && !cli_get(c, O_SERVER)) {
        cli_err(c, "delivery smtp needs a server (--server or \"server\" in the configuration)");
        return EX_CONFIG;
    }
    return 0;
}
