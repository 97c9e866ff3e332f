/* The option table and its parser: long options "--name VALUE" and
 * "--name=VALUE", repeatable options, flags. No global state. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#define S CMD_SEND
#define P CMD_PROBE
#define Q CMD_QUEUE
#define M CMD_SENDMAIL
#define C CMD_CONFIG
#define B CMD_BULK
#define NET (S | P | Q | M | B) /* everything that may talk to a server */

const cli_opt_def cli_opt_table[] = {
    /* where to */
    {"--server", O_SERVER, OK_VALUE, S | P | Q | B, "server", "HOST[:PORT]", "SMTP server ([::1]:2525 for IPv6)"},
    {"--tls", O_TLS, OK_VALUE, S | P | Q | B, "tls", "MODE", "auto, implicit (tls), starttls, starttls-optional or none"},
    {"--pickup-dir", O_PICKUP_DIR, OK_VALUE, S | M, "pickup-dir", "DIR", "write the message into DIR instead of sending"},
    {"--outbox", O_OUTBOX, OK_VALUE, S | Q | M, "outbox", "DIR|URL", "queue the message in an outbox (a directory or postgresql://)"},
    {"--ehlo-name", O_EHLO_NAME, OK_VALUE, S | P | Q | B, "ehlo-name", "NAME", "name sent in EHLO"},
    /* the message */
    {"--from", O_FROM, OK_VALUE, S, "from", "ADDR", "sender (envelope and From:)"},
    {"--to", O_TO, OK_LIST, S, NULL, "ADDR", "recipient (repeatable)"},
    {"--cc", O_CC, OK_LIST, S, NULL, "ADDR", "copy recipient (repeatable)"},
    {"--bcc", O_BCC, OK_LIST, S, NULL, "ADDR", "blind copy recipient (repeatable)"},
    {"--reply-to", O_REPLY_TO, OK_VALUE, S, NULL, "ADDR", "Reply-To: address"},
    {"--subject", O_SUBJECT, OK_VALUE, S, NULL, "TEXT", "subject"},
    {"--text", O_TEXT, OK_VALUE, S, NULL, "TEXT", "plain-text body"},
    {"--text-file", O_TEXT_FILE, OK_VALUE, S, NULL, "FILE", "plain-text body from FILE (- = stdin)"},
    {"--html", O_HTML, OK_VALUE, S, NULL, "HTML", "HTML body"},
    {"--html-file", O_HTML_FILE, OK_VALUE, S, NULL, "FILE", "HTML body from FILE"},
    {"--attach", O_ATTACH, OK_LIST, S, NULL, "FILE[;name=NAME][;type=TYPE]", "attachment (repeatable)"},
    {"--inline", O_INLINE, OK_LIST, S, NULL, "FILE[;cid=ID][;type=TYPE]", "inline image, cid:ID in the HTML (repeatable)"},
    {"--header", O_HEADER, OK_LIST, S, NULL, "'NAME: VALUE'", "extra header field (repeatable)"},
    {"--priority", O_PRIORITY, OK_VALUE, S, NULL, "LEVEL", "high, normal or low"},
    {"--message", O_MESSAGE, OK_VALUE, S, NULL, "FILE", "send FILE (a complete message) as is (- = stdin)"},
    {"--dump", O_DUMP, OK_FLAG, S, NULL, NULL, "print the message instead of sending it"},
    {"--count", O_COUNT, OK_VALUE, S, NULL, "N", "send the message N times"},
    {"--connections", O_CONNECTIONS, OK_VALUE, S | Q | B, NULL, "K", "send over K connections at once, pipelined (default 1)"},
    {"--max-per-connection", O_MAX_PER_CONNECTION, OK_VALUE, S | B, NULL, "N", "with --count/bulk: messages per connection before a new one"},
    {"--rate", O_RATE, OK_VALUE, S | B | Q, NULL, "R", "with --count/bulk: at most R messages per second (queue worker: for the fleet)"},
    {"--lease", O_LEASE, OK_VALUE, Q, NULL, "DUR", "queue worker: lease of a claimed message, renewed while working (60s)"},
    {"--quiet", O_QUIET, OK_FLAG, S | B, NULL, NULL, "with --connections/bulk: no progress or summary line"},
    {"--dir", O_DIR, OK_VALUE, B, NULL, "DIR", "bulk: send every .eml file of DIR"},
    {"--rcpt-allowfails", O_RCPT_ALLOWFAILS, OK_FLAG, S | B, "rcpt-allowfails", NULL,
     "when some recipients are refused, send to the accepted ones (exit 0 if one was accepted)"},
    /* envelope extensions */
    {"--dsn-notify", O_DSN_NOTIFY, OK_VALUE, S | M | B, NULL, "WHEN", "NEVER or SUCCESS,FAILURE,DELAY"},
    {"--dsn-ret", O_DSN_RET, OK_VALUE, S | M | B, NULL, "FULL|HDRS", "what a bounce returns"},
    {"--envid", O_ENVID, OK_VALUE, S | M | B, NULL, "ID", "envelope identifier for DSNs"},
    /* authentication (never a password on the command line) */
    {"--user", O_USER, OK_VALUE, S | P | Q | B | C, "user", "NAME", "user name for AUTH"},
    {"--password-env", O_PASSWORD_ENV, OK_VALUE, S | P | Q | B | C, "password-env", "VAR", "password from environment variable VAR"},
    {"--password-file", O_PASSWORD_FILE, OK_VALUE, S | P | Q | B | C, "password-file", "FILE", "password from FILE (first line)"},
    {"--password-cmd", O_PASSWORD_CMD, OK_VALUE, S | P | Q | B | C, "password-cmd", "CMD", "password from CMD's output"},
    {"--oauth-token-cmd", O_OAUTH_TOKEN_CMD, OK_VALUE, S | P | Q | B | C, "oauth-token-cmd", "CMD", "OAuth 2 token from CMD's output"},
    {"--auth", O_AUTH, OK_VALUE, S | P | Q | B, "auth", "MECHS", "allowed mechanisms (plain,login,...)"},
    {"--allow-plaintext-auth", O_ALLOW_PLAINTEXT_AUTH, OK_FLAG, S | P | Q | B, "allow-plaintext-auth", NULL, "allow AUTH without TLS"},
    /* TLS */
    {"--ca-file", O_CA_FILE, OK_VALUE, S | P | Q | B, "ca-file", "FILE", "trusted CA certificates"},
    {"--ca-path", O_CA_PATH, OK_VALUE, S | P | Q | B, "ca-path", "DIR", "directory of trusted CA certificates"},
    {"--pin", O_PIN, OK_VALUE, S | P | Q | B, "pin", "SHA256", "pin the server's public key"},
    {"--cert", O_CERT, OK_VALUE, S | P | Q | B, "cert", "FILE", "client certificate"},
    {"--key", O_KEY, OK_VALUE, S | P | Q | B, "key", "FILE", "client certificate's key"},
    {"--tls-server-name", O_TLS_SERVER_NAME, OK_VALUE, S | P | Q | B, "tls-server-name", "NAME", "name the server's certificate must match (default: the server's host)"},
    {"--insecure", O_INSECURE, OK_FLAG, S | P | Q | B, "insecure", NULL, "do not verify the server's certificate"},
    {"--tls-min", O_TLS_MIN, OK_VALUE, S | P | Q | B, "tls-min", "VER", "lowest TLS version (1.2)"},
    {"--tls-max", O_TLS_MAX, OK_VALUE, S | P | Q | B, "tls-max", "VER", "highest TLS version"},
    {"--tls-strict-version", O_TLS_STRICT_VERSION, OK_FLAG, S | P | Q | B, NULL, NULL, "fail rather than fall back"},
    /* connection */
    {"--connect-timeout", O_CONNECT_TIMEOUT, OK_VALUE, S | P | Q | B, "connect-timeout", "DUR", "connect timeout (30s, 500ms)"},
    {"--greeting-timeout", O_GREETING_TIMEOUT, OK_VALUE, S | P | Q | B, "greeting-timeout", "DUR", "greeting timeout"},
    {"--timeout", O_TIMEOUT, OK_VALUE, S | P | Q | B, "timeout", "DUR", "command timeout"},
    {"--proxy", O_PROXY, OK_VALUE, S | P | Q | B, "proxy", "URL", "through a proxy: socks5h://[USER:PASS@]HOST[:PORT], socks5://, socks4a://, socks4://, http://, https://"},
    {"--bind", O_BIND, OK_VALUE, S | P | Q | B, "bind", "ADDR[:PORT]", "local address (and port) to connect from"},
    {"-4", O_IPV4, OK_FLAG, S | P | Q | B, NULL, NULL, "IPv4 only"},
    {"-6", O_IPV6, OK_FLAG, S | P | Q | B, NULL, NULL, "IPv6 only"},
    /* DKIM and one-click unsubscribe (cli/cmd_dkim.c) */
    {"--dkim-key", O_DKIM_KEY, OK_LIST, S | Q | M | B, "dkim-key", "FILE", "sign with the private key in FILE (repeatable: one signature each)"},
    {"--dkim-selector", O_DKIM_SELECTOR, OK_LIST, S | Q | M | B, "dkim-selector", "SEL", "selector of each --dkim-key, in order"},
    {"--dkim-domain", O_DKIM_DOMAIN, OK_VALUE, S | Q | M | B, "dkim-domain", "DOMAIN", "signing domain (d=)"},
    {"--dkim-algorithm", O_DKIM_ALGORITHM, OK_LIST, S | Q | M | B, "dkim-algorithm", "ALG", "rsa-sha256 or ed25519-sha256: what each key must be"},
    {"--dkim-headers", O_DKIM_HEADERS, OK_VALUE, S | Q | M | B, "dkim-headers", "LIST", "header fields to sign (From:To:+Subject; + over-signs)"},
    {"--list-unsubscribe", O_LIST_UNSUBSCRIBE, OK_LIST, S | B, NULL, "URL", "List-Unsubscribe URL, https: or mailto: (repeatable; https: adds one-click)"},
    /* configuration and output */
    {"--account", O_ACCOUNT, OK_VALUE, NET | C, NULL, "NAME", "account from the configuration file"},
    {"--config", O_CONFIG, OK_VALUE, NET | C, NULL, "FILE", "configuration file"},
    {"--delivery", O_DELIVERY, OK_VALUE, S | M, "delivery", "HOW", "smtp, pickup or outbox"},
    {"--repair", O_REPAIR, OK_FLAG, Q, NULL, NULL, "queue check: remove leftovers, move damaged files aside"},
    {"--json", O_JSON, OK_FLAG, S | P | Q, NULL, NULL, "one JSON object per message"},
    {"--trace", O_TRACE, OK_FLAG, NET, NULL, NULL, "print the SMTP dialogue on stderr (AUTH redacted; message headers only)"},
    {"--trace-body", O_TRACE_BODY, OK_FLAG, NET, NULL, NULL, "--trace, with the whole message"},
    {"--auth-test", O_AUTH_TEST, OK_FLAG, P, NULL, NULL, "log in with the credentials (no mail is sent) and say whether it worked"},
    {"--check-password", O_CHECK_PASSWORD, OK_FLAG, C, NULL, NULL, "obtain the password (never printed) to check it works"},
    {"--help", O_HELP, OK_FLAG, NET | C, NULL, NULL, "this help"},
};
const size_t cli_opt_table_len = sizeof cli_opt_table / sizeof cli_opt_table[0];

const cli_opt_def *cli_opt_find_id(cli_opt_id id)
{
    for (size_t i = 0; i < cli_opt_table_len; i++)
        if (cli_opt_table[i].id == id) return &cli_opt_table[i];
    return NULL;
}

int cli_list_push(cli_list *l, const char *s)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 8;
        const char **nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return SMTPC_ENOMEM;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = s;
    return 0;
}

void cli_list_free_strings(cli_list *l)
{
    for (size_t i = 0; i < l->n; i++) free((void *)l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

void cli_opts_free(cli_opts *o)
{
    for (size_t i = 0; i < O__COUNT; i++) free(o->list[i].v);
    free(o->pos.v);
    memset(o, 0, sizeof *o);
}

static const cli_opt_def *find_name(const char *name, size_t n)
{
    for (size_t i = 0; i < cli_opt_table_len; i++)
        if (strlen(cli_opt_table[i].name) == n && !strncmp(cli_opt_table[i].name, name, n))
            return &cli_opt_table[i];
    return NULL;
}

/* what: "unknown option", arg: the option; prints "smtpc send: unknown option --x". */
static int usage_err(const char *prog, const char *cmdname, const char *what, const char *arg)
{
    fprintf(stderr, "%s %s: %s %s\n(see '%s help %s')\n", prog, cmdname, what, arg, prog, cmdname);
    return EX_USAGE;
}

int cli_parse(const char *prog, const char *cmdname, cli_cmd cmd, int argc, char **argv,
              cli_opts *o)
{
    bool only_pos = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || !strcmp(a, "-")) {
            if (cli_list_push(&o->pos, a)) return EX_OSERR;
            continue;
        }
        if (!strcmp(a, "--")) { only_pos = true; continue; }
        const char *eq = !strncmp(a, "--", 2) ? strchr(a, '=') : NULL;
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        if ((nlen == 10 && !strncmp(a, "--password", 10)) || (nlen == 6 && !strncmp(a, "--pass", 6))) {
            fprintf(stderr,
                    "%s %s: --password is not accepted: a password on the command line is "
                    "visible to every user of this machine; use --password-env VAR, "
                    "--password-file FILE or --password-cmd CMD\n",
                    prog, cmdname);
            return EX_USAGE;
        }
        const cli_opt_def *d = find_name(a, nlen);
        if (!d) {
            char name[128];
            cli_strlcpy(name, a, nlen + 1 < sizeof name ? nlen + 1 : sizeof name);
            return usage_err(prog, cmdname, "unknown option", name);
        }
        if (!(d->cmds & cmd)) return usage_err(prog, cmdname, "not an option of this command:", d->name);
        const char *v;
        if (d->kind == OK_FLAG) {
            if (eq) return usage_err(prog, cmdname, "takes no value:", d->name);
            v = "1";
        } else if (eq) {
            v = eq + 1;
        } else {
            if (i + 1 >= argc) return usage_err(prog, cmdname, "missing value for", d->name);
            v = argv[++i];
        }
        if (d->kind == OK_VALUE && o->val[d->id] && d->id != O_CONFIG && d->id != O_ACCOUNT) {
            /* a repeated single-valued option is almost always a mistake */
            return usage_err(prog, cmdname, "given twice:", d->name);
        }
        o->val[d->id] = v;
        if (cli_list_push(&o->list[d->id], v)) return EX_OSERR;
    }
    return 0;
}

void cli_print_options(FILE *f, cli_cmd cmd)
{
    for (size_t i = 0; i < cli_opt_table_len; i++) {
        const cli_opt_def *d = &cli_opt_table[i];
        if (!(d->cmds & cmd)) continue;
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", d->name, d->meta ? " " : "", d->meta ? d->meta : "");
        fprintf(f, "  %-28s %s\n", left, d->help);
    }
}
