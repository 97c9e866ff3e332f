/* Reading an msmtp configuration file (msmtp(1), "CONFIGURATION FILES")
 * as smtpc accounts: config.c calls this when a file has msmtp's syntax.
 * Internal to the library. */
#ifndef SMTPC_CLIENT_MSMTP_H
#define SMTPC_CLIENT_MSMTP_H

#include <stdbool.h>
#include <stddef.h>

/* What the translation produces, in order: for each msmtp account, account()
 * then set() for each smtpc key; warn() for what smtpc cannot honour
 * exactly; dflt() names the default account ("default" when defined). Each
 * callback returns 0 or a negative SMTPC_E* that stops the parse (the sink
 * fills errbuf then). An account name of NULL is the section before any
 * account. */
typedef struct smtpc__msmtp_sink {
    int (*account)(void *ud, const char *name, unsigned line, char *errbuf, size_t errlen);
    int (*set)(void *ud, const char *key, const char *value, unsigned line, char *errbuf,
               size_t errlen);
    int (*warn)(void *ud, const char *msg);
    int (*dflt)(void *ud, const char *name);
    /* a line that holds or obtains a credential (password, passwordeval),
     * whether or not an account uses it: the file must be private */
    void (*secret)(void *ud, const char *cmd, unsigned line);
} smtpc__msmtp_sink;

/* true if the first command of text is written the msmtp way ("host
 * example.org", "account work", "defaults") rather than smtpc's
 * "key = value" or "[account NAME]". */
bool smtpc__msmtp_detect(const char *text, size_t len);

/* Parses text (msmtp syntax) and feeds the sink. name is used in messages
 * ("FILE:LINE: ..."). Errors: SMTPC_ECONFIG (syntax, a setting smtpc
 * cannot honour safely, e.g. tls_fingerprint), SMTPC_ELIMIT, SMTPC_ENOMEM,
 * or what the sink returns. */
int smtpc__msmtp_parse(const char *text, size_t len, const char *name,
                       const smtpc__msmtp_sink *sink, void *ud, char *errbuf, size_t errlen);

/* Shared with config.c: "..." unquoting (\" and \\ escapes; -1 when badly
 * quoted) and a formatted message into errbuf. */
int smtpc__config_unquote(char *v);
void smtpc__config_seterr(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
