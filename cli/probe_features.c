/* smtpc probe: what the server's EHLO keywords mean for a sender, in plain
 * words (text) or as a "features" object (JSON). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const struct { const char *kw, *name, *yes, *no; } feats[] = {
    {"PIPELINING", "pipelining", "commands are sent in groups (fewer round trips)", "one command at a time"},
    {"CHUNKING", "chunking", "BDAT offered (the message can go in binary-safe chunks)", "no BDAT: DATA only"},
    {"8BITMIME", "8bitmime", "8-bit text is taken as is", "8-bit text is encoded to 7 bits first"},
    {"SMTPUTF8", "smtputf8", "internationalized (UTF-8) addresses accepted", "ASCII addresses only"},
    {"DSN", "dsn", "delivery notifications (--dsn-notify, --dsn-ret, --envid) accepted", "no delivery notifications: --dsn-* cannot be used"},
    {"ENHANCEDSTATUSCODES", "enhancedstatuscodes", "replies carry detailed codes (5.1.1 ...)", "replies carry only the basic code"},
    {"REQUIRETLS", "requiretls", "REQUIRETLS offered (TLS can be demanded on every hop)", "no REQUIRETLS"},
    {"STARTTLS", "starttls", "STARTTLS offered", NULL},
};

void cli_probe_features(smtpc_session *s, bool json, cli_buf *js)
{
    const char *size = smtpc_session_ext_param(s, "SIZE");
    uint64_t lim = smtpc_session_size_limit(s);
    if (json) {
        cli_buf_append_str(js, ",\"features\":{\"size\":");
        if (!size) cli_buf_append_str(js, "null");
        else cli_buf_printf(js, "%llu", (unsigned long long)lim); /* 0 = no limit stated */
        for (size_t i = 0; i < CLI_ARRAY_LEN(feats); i++)
            cli_buf_printf(js, ",\"%s\":%s", feats[i].name, smtpc_session_has_ext(s, feats[i].kw) ? "true" : "false");
        cli_buf_append_str(js, "}");
        return;
    }
    if (!size) printf("  size: no limit announced (SIZE not offered)\n");
    else if (!lim) printf("  size: SIZE offered, no fixed limit\n");
    else printf("  size: messages up to %llu bytes (%.1f MiB)\n", (unsigned long long)lim, (double)lim / 1048576.0);
    for (size_t i = 0; i < CLI_ARRAY_LEN(feats); i++) {
        bool has = smtpc_session_has_ext(s, feats[i].kw);
        if (!has && !feats[i].no) continue;
        printf("  %s: %s\n", feats[i].name, has ? feats[i].yes : feats[i].no);
    }
}
