/* smtpc — the configuration file: named accounts and a default account.
 *
 *   # ~/.smtpcrc
 *   timeout = 30s            # keys before the first section apply to every account
 *   default = work
 *   [account work]
 *   server = smtp.example.org:587
 *   tls = starttls
 *   user = me@example.org
 *   password-cmd = pass show mail
 *   from = me@example.org
 *
 * The format (docs/smtpc-config.5): one "key = value" per line; lines whose
 * first non-blank character is '#' are comments (a '#' inside a value is part
 * of the value, so passwords may contain it); a value may be written in double
 * quotes, with \" and \\ escapes, to keep leading or trailing blanks.
 * "[account NAME]" starts an account. Unknown keys, duplicate keys in one
 * section, duplicate account names and invalid values are errors that name
 * the file and line.
 *
 *   smtpc_config *cfg;
 *   char err[512];
 *   if (smtpc_config_load(&cfg, NULL, 0, err, sizeof err) != 0) { puts(err); ... }
 *   const smtpc_account *a = smtpc_config_account(cfg, NULL);      // the default
 *   const char *server = smtpc_account_get(a, "server");           // NULL if unset
 *   smtpc_config_free(cfg);
 *
 * Lookup of a key in an account: the environment variable (SMTPC_ + the key in
 * upper case with '-' as '_', e.g. SMTPC_SERVER, SMTPC_PASSWORD_CMD; read once
 * at load time, unless SMTPC_CONFIG_NOENV), then the account's own value, then
 * the value before the first section. The "password" key is never taken from
 * the environment (use password-env to name a variable that holds it). */
#ifndef SMTPC_CONFIG_H
#define SMTPC_CONFIG_H

#include "common.h"
#include "errors.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct smtpc_config smtpc_config;
typedef struct smtpc_account smtpc_account;

enum {
    SMTPC_CONFIG_NOENV = 1u << 0,   /* ignore SMTPC_* environment overrides */
    SMTPC_CONFIG_NOSEARCH = 1u << 1, /* path NULL: load nothing (environment only) */
    SMTPC_CONFIG_MSMTP = 1u << 2     /* an msmtp file only: path NULL searches msmtp's
                                        places only; a file in smtpc's syntax is refused */
};

/* Loads the configuration file at path, or with path NULL the first file that
 * exists of: $SMTPC_CONFIG, $XDG_CONFIG_HOME/smtpc/config (or
 * ~/.config/smtpc/config), ~/.smtpcrc, /etc/smtpc.conf, then msmtp's
 * ~/.msmtprc, $XDG_CONFIG_HOME/msmtp/config (or ~/.config/msmtp/config),
 * /etc/msmtprc. When none exists the result is an empty configuration (only
 * environment overrides), not an error.
 *
 * A file written in msmtp's syntax ("host smtp.example.org", "account
 * work : base", "defaults") is read with msmtp's meaning: each msmtp account
 * becomes an account with smtpc's keys (docs/smtpc-config.5, MSMTP FILES),
 * "account default" is the default account, and what smtpc cannot do
 * exactly is a warning (smtpc_config_warning_at) or, when ignoring it would
 * weaken the connection's security (tls_fingerprint), an error.
 *
 * A file is refused with SMTPC_ECONFIG (errbuf names the file, the rule and
 * the chmod to run) when it is writable by group or others, or owned by
 * another user than the effective one and root: any key can send the mail
 * and the credentials elsewhere (server, proxy, insecure) or run a command.
 * A file with a key that holds or obtains a credential (password,
 * password-file, password-cmd, oauth-token-cmd, a proxy URL with a
 * password) must moreover be readable by its owner alone and owned by the
 * effective user. /dev/null (no configuration) is accepted.
 *
 * errbuf receives "FILE:LINE: problem" on a parse error.
 * Errors: SMTPC_ENOTFOUND (path given, or $SMTPC_CONFIG set, and missing),
 * SMTPC_EIO (cannot read), SMTPC_ECONFIG (syntax, unknown key, bad value,
 * unsafe permissions, unknown default account), SMTPC_ELIMIT (file over
 * 1 MiB, line over 4096 bytes), SMTPC_ENOMEM. *out is untouched on failure. */
SMTPC_API int smtpc_config_load(smtpc_config **out, const char *path, unsigned flags,
                                char *errbuf, size_t errbuf_len);
/* Parses a configuration from memory; name is used in error messages. No
 * permission check is made (there is no file). Same errors as load. */
SMTPC_API int smtpc_config_parse(smtpc_config **out, const char *text, size_t len,
                                 const char *name, unsigned flags, char *errbuf,
                                 size_t errbuf_len);
/* Frees cfg, zeroing every value first (they may hold secrets). NULL is a no-op. */
SMTPC_API void smtpc_config_free(smtpc_config *cfg);

/* The file that was loaded, or NULL (nothing found / parsed from memory). */
SMTPC_API const char *smtpc_config_path(const smtpc_config *cfg);
/* "msmtp" when the configuration was written in msmtp's syntax, else "smtpc". */
SMTPC_API const char *smtpc_config_format(const smtpc_config *cfg);
/* The i-th warning about the file ("FILE:LINE: account a: logfile: ...
 * ignored"), NULL past the end: settings of an msmtp file that smtpc does
 * not honour, or honours with a risk (tls_certcheck off). */
SMTPC_API const char *smtpc_config_warning_at(const smtpc_config *cfg, size_t i);
/* The number of [account] sections and the i-th one (NULL past the end). */
SMTPC_API size_t smtpc_config_account_count(const smtpc_config *cfg);
SMTPC_API const smtpc_account *smtpc_config_account_at(const smtpc_config *cfg, size_t i);

/* The account called name. With name NULL: the "default = NAME" account,
 * else the only account if there is exactly one, else the unnamed account
 * made of the keys before the first section (and the environment). NULL when
 * no account has that name. Owned by cfg. */
SMTPC_API const smtpc_account *smtpc_config_account(const smtpc_config *cfg, const char *name);
/* The account for a sender address (sendmail -f): the first account whose
 * "from" equals addr (case-insensitive), else the first whose "match-from"
 * patterns (blank-separated shell globs, e.g. "*@example.org") match addr,
 * else the default account as smtpc_config_account(cfg, NULL). Never NULL. */
SMTPC_API const smtpc_account *smtpc_config_account_by_from(const smtpc_config *cfg,
                                                            const char *addr);

/* The account's name ("" for the unnamed account). */
SMTPC_API const char *smtpc_account_name(const smtpc_account *a);
/* The value of key (see the lookup order above), or NULL if unset or key is
 * not a known key. The string is owned by the configuration. */
SMTPC_API const char *smtpc_account_get(const smtpc_account *a, const char *key);
/* Where a value came from, for messages: "FILE:LINE", "environment SMTPC_X",
 * or NULL if unset. Written into buf. */
SMTPC_API const char *smtpc_account_source(const smtpc_account *a, const char *key, char *buf,
                                           size_t len);
/* key as a boolean (yes/no, true/false, on/off, 1/0). Returns dflt if unset. */
SMTPC_API bool smtpc_account_get_bool(const smtpc_account *a, const char *key, bool dflt);
/* key as a duration in milliseconds; returns dflt if unset. */
SMTPC_API int64_t smtpc_account_get_ms(const smtpc_account *a, const char *key, int64_t dflt);

/* The i-th configuration key ("server", "port", ...), NULL past the end:
 * for listing settings. */
SMTPC_API const char *smtpc_config_key_at(size_t i);
/* true if key is a configuration key (see docs/smtpc-config.5). */
SMTPC_API bool smtpc_config_key_valid(const char *key);
/* Checks value for key as the parser does; 0 or SMTPC_ECONFIG with the
 * problem in errbuf (without file or line). */
SMTPC_API int smtpc_config_check_value(const char *key, const char *value, char *errbuf,
                                       size_t errbuf_len);
/* Parses a duration: "30" (seconds), "30s", "500ms", "2m", "1h". 0 or
 * SMTPC_ECONFIG. */
SMTPC_API int smtpc_config_parse_duration_ms(const char *s, int64_t *ms_out);
/* Splits "host", "host:port", "[v6]" or "[v6]:port" into host (without the
 * brackets) and port (0 if absent). 0 or SMTPC_ECONFIG (bad syntax, port out
 * of 1..65535, host longer than hostlen - 1). */
SMTPC_API int smtpc_config_parse_server(const char *s, char *host, size_t hostlen,
                                        uint16_t *port_out);

#ifdef __cplusplus
}
#endif
#endif
