/* What to do about a failure: a table of hints by error class, reply code,
 * enhanced status code and a few words of the error message. The first
 * matching row wins, so the specific rows come first. Never suggests
 * --insecure: a certificate problem is solved with --ca-file or --pin. */
#include "cli.h"

#include <ctype.h>
#include <string.h>

typedef struct hint_row {
    int err;             /* SMTPC_E*, 0 = any */
    int code;            /* reply code, 0 = any; 1..9 = its first digit */
    const char *enh;     /* enhanced code prefix ("5.1.1", "5.7."), NULL = any */
    const char *needle;  /* words in the error message (case-insensitive), NULL = any */
    const char *hint;
} hint_row;

static const hint_row rows[] = {
    /* authentication */
    {SMTPC_EAUTH, 0, NULL, "no common mechanism",
     "the server offers none of the allowed mechanisms: see 'smtpc probe' for what it offers and adjust --auth"},
    {SMTPC_EAUTH, 0, NULL, "unencrypted",
     "credentials are only sent over TLS: use --tls starttls or --tls tls (--allow-plaintext-auth only on a network you trust)"},
    {SMTPC_EAUTH, 0, NULL, "plaintext",
     "credentials are only sent over TLS: use --tls starttls or --tls tls (--allow-plaintext-auth only on a network you trust)"},
    {SMTPC_EAUTH, 0, NULL, "not offer",
     "the server does not offer AUTH here: it may need STARTTLS first (--tls starttls), or no login at all (drop --user)"},
    {SMTPC_EAUTH, 0, NULL, NULL,
     "check the user name and password (--user, --password-env/-file/-cmd), or try --auth LOGIN"},
    {SMTPC_EPERMFAIL, 530, NULL, NULL,
     "the server requires authentication: give --user and --password-env VAR (or --password-file, --password-cmd)"},
    {SMTPC_EPERMFAIL, 0, "5.7.0", "auth",
     "the server requires authentication: give --user and --password-env VAR (or --password-file, --password-cmd)"},
    /* TLS */
    {SMTPC_ETLS, 0, NULL, "starttls",
     "the server does not offer (or refused) STARTTLS: check the port and --tls mode; use --tls none only if you trust the network"},
    {SMTPC_ETLS, 0, NULL, "certificate",
     "if the server uses a private CA, give it with --ca-file FILE (or pin its key with --pin); check that --server names the host in the certificate"},
    {SMTPC_ETLS, 0, NULL, "verif",
     "if the server uses a private CA, give it with --ca-file FILE (or pin its key with --pin); check that --server names the host in the certificate"},
    {SMTPC_ETLS, 0, NULL, "pin",
     "the server's key does not match --pin: the certificate changed, or someone is in the middle"},
    {SMTPC_ETLS, 0, NULL, NULL,
     "check the --tls mode for this port (465: --tls tls; 587: --tls starttls) and --tls-min/--tls-max"},
    /* reaching the server */
    {SMTPC_ENOHOST, 0, NULL, NULL, "check the server name in --server HOST[:PORT] (and DNS)"},
    {SMTPC_ENETWORK, 0, NULL, "refused",
     "nothing listens there: check the host and port, and the --tls mode (465: tls, 587: starttls, 25: starttls-optional)"},
    {SMTPC_ENETWORK, 0, NULL, NULL, "check the network, the firewall and --proxy; then try again"},
    {SMTPC_EPROXY, 0, NULL, NULL, "check --proxy (URL, credentials) and that the proxy allows this port"},
    {SMTPC_ETIMEDOUT, 0, NULL, "connect to",
     "the server could not be reached in time: check the host, the port and the firewall, or raise --connect-timeout"},
    {SMTPC_ETIMEDOUT, 0, NULL, NULL,
     "the server did not answer in time: raise --timeout (or --connect-timeout), or check the port and --tls mode "
     "(a TLS port waits silently for a plaintext client)"},
    {SMTPC_ECLOSED, 0, NULL, NULL,
     "the server closed the connection: check the port and --tls mode, or try again later"},
    /* the outcome is unknown */
    {SMTPC_EUNKNOWN, 0, NULL, NULL,
     "the message may have been delivered: check with the recipient before sending it again"},
    /* refusals by enhanced status code */
    {0, 5, "5.1.1", NULL, "check the recipient address (the mailbox does not exist)"},
    {0, 5, "5.1.2", NULL, "check the recipient's domain"},
    {0, 5, "5.1.3", NULL, "check the recipient address's syntax"},
    {0, 5, "5.1.7", NULL, "check the sender address (--from)"},
    {0, 5, "5.1.8", NULL, "check the sender address (--from): its domain is refused"},
    {0, 5, "5.1.0", NULL, "check the sender address (--from): the server may allow only your own addresses"},
    {0, 5, "5.7.1", "relay",
     "the server does not relay for you: authenticate (--user, --password-*) or use your provider's submission server"},
    {0, 5, "5.2.2", NULL, "the recipient's mailbox is full: try again much later or reach them another way"},
    {0, 5, "5.3.4", NULL, "the message is too big for this server: send a smaller one or share the file by a link"},
    {0, 5, "5.2.3", NULL, "the message is too big for this server: send a smaller one or share the file by a link"},
    {0, 5, "5.7.", NULL, "the server refused it by policy (spam filter, sender not allowed); its words above say why"},
    {0, 553, NULL, NULL, "check the sender address (--from): the server may allow only your own addresses"},
    {0, 550, NULL, "relay",
     "the server does not relay for you: authenticate (--user, --password-*) or use your provider's submission server"},
    {0, 552, NULL, NULL, "the message is too big for this server, or the mailbox is full"},
    {0, 554, NULL, NULL, "the server refused it; its words above say why"},
    {SMTPC_ETEMPFAIL, 0, NULL, NULL,
     "a temporary refusal: try again later (or queue it with --outbox DIR and 'smtpc queue flush')"},
    {SMTPC_EPERMFAIL, 0, NULL, NULL, "a permanent refusal: sending it again as is will not help"},
    {SMTPC_EPROTO, 0, NULL, NULL,
     "the server broke the SMTP protocol (or this is not an SMTP port): --trace shows the dialogue"},
    {SMTPC_EUNSUPPORTED, 0, NULL, "smtputf8",
     "this server cannot take internationalized (non-ASCII) addresses: use an ASCII address or another server"},
    {SMTPC_EUNSUPPORTED, 0, NULL, "DSN",
     "the server does not offer DSN ('smtpc probe' shows it): leave out --dsn-notify, --dsn-ret and --envid"},
    {SMTPC_EUNSUPPORTED, 0, NULL, "CHUNKING", "the server does not offer CHUNKING (BDAT)"},
    {SMTPC_EIO, 0, NULL, NULL, "check that the directory exists, is writable and the disk is not full"},
};

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (!strncasecmp(hay, needle, n)) return true;
    return false;
}

/* The reply that decided the failure: the first refused recipient's, else
 * the final one. */
static void deciding_reply(const cli_result *r, int *code, const char **enh, const char **text)
{
    for (size_t i = 0; i < r->nrcpts; i++)
        if (!r->rcpts[i].accepted && r->rcpts[i].code >= 400) {
            *code = r->rcpts[i].code;
            *enh = r->rcpts[i].enhanced;
            *text = r->rcpts[i].text;
            return;
        }
    *code = r->final_code;
    *enh = r->final_enhanced;
    *text = r->final_text;
}

/* "5.1.1 no such user" from a server that does not announce
 * ENHANCEDSTATUSCODES (the code is then only text): the leading code. */
static void enhanced_from_text(const char *t, char *out, size_t len)
{
    out[0] = '\0';
    if (!t || (t[0] != '4' && t[0] != '5') || t[1] != '.') return;
    size_t i = 2, dots = 0;
    while (t[i] && (isdigit((unsigned char)t[i]) || (t[i] == '.' && ++dots == 1))) i++;
    if (dots != 1 || i >= len || (t[i] && t[i] != ' ') || t[i - 1] == '.') return;
    memcpy(out, t, i);
    out[i] = '\0';
}

const char *cli_hint(const cli_result *r)
{
    if (r->ok || !r->err) return NULL;
    int code;
    const char *enh, *text;
    char from_text[16];
    deciding_reply(r, &code, &enh, &text);
    if (!enh[0]) {
        enhanced_from_text(text, from_text, sizeof from_text);
        enh = from_text;
    }
    for (size_t i = 0; i < CLI_ARRAY_LEN(rows); i++) {
        const hint_row *h = &rows[i];
        if (h->err && h->err != r->err) continue;
        if (!h->err && r->err != SMTPC_EPERMFAIL && r->err != SMTPC_ETEMPFAIL) continue;
        if (h->code >= 1 && h->code <= 9 && code / 100 != h->code) continue;
        if (h->code > 9 && code != h->code) continue;
        if (h->enh && strncmp(enh, h->enh, strlen(h->enh)) != 0) continue;
        if (h->needle && !contains_ci(r->errmsg, h->needle) &&
            !(r->final_text && contains_ci(r->final_text, h->needle)))
            continue;
        return h->hint;
    }
    return NULL;
}
