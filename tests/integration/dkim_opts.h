/* The signer options the DKIM test drivers share:
 *   --domain D  --key SEL=PEMFILE  --canon H/B  --headers LIST
 *   --identity AUID  --expiry SECONDS
 * dkim_signer_opt returns 0 (applied), 1 (not a signer option), or a
 * negative code (a bad value: SMTPC_EINVAL; or the setter's error). */
#ifndef DRV_DKIM_OPTS_H
#define DRV_DKIM_OPTS_H

#include <smtpc/smtpc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int dkim_parse_canon(const char *s, smtpc_dkim_canon *c)
{
    if (!strcmp(s, "relaxed")) *c = SMTPC_DKIM_RELAXED;
    else if (!strcmp(s, "simple")) *c = SMTPC_DKIM_SIMPLE;
    else return -1;
    return 0;
}

static int dkim_signer_opt(smtpc_dkim_signer *sg, const char *a, const char *v)
{
    if (!strcmp(a, "--domain")) return smtpc_dkim_signer_set_domain(sg, v);
    if (!strcmp(a, "--headers")) return smtpc_dkim_signer_set_headers(sg, v);
    if (!strcmp(a, "--identity")) return smtpc_dkim_signer_set_identity(sg, v);
    if (!strcmp(a, "--expiry")) return smtpc_dkim_signer_set_expiry(sg, (uint32_t)strtoul(v, NULL, 10));
    if (!strcmp(a, "--key")) {
        char sel[128];
        const char *eq = strchr(v, '=');
        if (!eq || (size_t)(eq - v) >= sizeof sel) return SMTPC_EINVAL;
        memcpy(sel, v, (size_t)(eq - v));
        sel[eq - v] = '\0';
        return smtpc_dkim_signer_add_key_file(sg, sel, eq + 1);
    }
    if (!strcmp(a, "--canon")) {
        char h[16] = "", b[16] = "relaxed";
        const char *sl = strchr(v, '/');
        size_t hl = sl ? (size_t)(sl - v) : strlen(v);
        if (hl >= sizeof h) return SMTPC_EINVAL;
        memcpy(h, v, hl);
        if (sl) snprintf(b, sizeof b, "%s", sl + 1);
        smtpc_dkim_canon hc, bc;
        if (dkim_parse_canon(h, &hc) || dkim_parse_canon(b, &bc)) return SMTPC_EINVAL;
        return smtpc_dkim_signer_set_canon(sg, hc, bc);
    }
    return 1;
}

#endif
