/* --dsn-notify / --dsn-ret / --envid (sendmail -N -R -V): checked and
 * written the way RFC 3461 spells them, whatever case the user typed
 * ("success,failure" -> "SUCCESS,FAILURE"). */
#include "cli.h"

#include <ctype.h>
#include <string.h>

static char g_notify[64], g_ret[8];

static void upper(char *dst, size_t len, const char *s)
{
    size_t i = 0;
    for (; s[i] && i + 1 < len; i++) dst[i] = (char)toupper((unsigned char)s[i]);
    dst[i] = '\0';
}

int cli_dsn_normalize(cli_ctx *c)
{
    const char *n = c->o.val[O_DSN_NOTIFY];
    if (n) {
        if (strlen(n) >= sizeof g_notify) goto bad_notify;
        upper(g_notify, sizeof g_notify, n);
        if (strcmp(g_notify, "NEVER") != 0) {
            unsigned seen = 0;
            for (const char *p = g_notify;;) {
                size_t l = strcspn(p, ",");
                unsigned bit = l == 7 && !strncmp(p, "SUCCESS", 7)   ? 1u
                               : l == 7 && !strncmp(p, "FAILURE", 7) ? 2u
                               : l == 5 && !strncmp(p, "DELAY", 5)   ? 4u
                                                                     : 0u;
                if (!bit || (seen & bit)) goto bad_notify;
                seen |= bit;
                if (!p[l]) break;
                p += l + 1;
            }
        }
        c->o.val[O_DSN_NOTIFY] = g_notify;
    }
    const char *r = c->o.val[O_DSN_RET];
    if (r) {
        upper(g_ret, sizeof g_ret, r);
        if (strlen(r) >= sizeof g_ret || (strcmp(g_ret, "FULL") && strcmp(g_ret, "HDRS"))) {
            cli_err(c, "--dsn-ret: \"%s\" is not full or hdrs", r);
            return EX_USAGE;
        }
        c->o.val[O_DSN_RET] = g_ret;
    }
    const char *e = c->o.val[O_ENVID];
    if (e) {
        bool ok = *e && strlen(e) <= 100;
        for (const char *p = e; ok && *p; p++) ok = (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f;
        if (!ok) {
            cli_err(c, "--envid: 1 to 100 printable US-ASCII characters without spaces");
            return EX_USAGE;
        }
    }
    return 0;
bad_notify:
    cli_err(c, "--dsn-notify: \"%s\" is not never, or a list of success, failure and delay", n);
    return EX_USAGE;
}
