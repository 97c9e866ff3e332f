/* smtpc probe: connect, print the greeting and the EHLO capabilities, quit. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void print_reply_text(const char *label, const smtpc_reply *rep)
{
    char esc[1024];
    size_t n = smtpc_reply_line_count(rep);
    for (size_t i = 0; i < n; i++) {
        const char *l = smtpc_reply_line(rep, i);
        smtpc__escape_into(esc, sizeof esc, l, strlen(l));
        if (i == 0) printf("%s: %d %s\n", label, smtpc_reply_code(rep), esc);
        else printf("  %s\n", esc);
    }
}

static void json_reply(smtpc__buf *b, const char *name, const smtpc_reply *rep)
{
    smtpc__buf_printf(b, ",\"%s\":", name);
    if (!rep || !smtpc_reply_code(rep)) {
        smtpc__buf_append_str(b, "null");
        return;
    }
    smtpc__buf_printf(b, "{\"code\":%d,\"lines\":[", smtpc_reply_code(rep));
    for (size_t i = 0; i < smtpc_reply_line_count(rep); i++) {
        if (i) smtpc__buf_append(b, ",", 1);
        cli_json_str(b, smtpc_reply_line(rep, i));
    }
    smtpc__buf_append_str(b, "]}");
}

int cmd_probe(const char *prog, int argc, char **argv)
{
    cli_ctx c;
    memset(&c, 0, sizeof c);
    c.prog = prog;
    c.cmdname = "probe";
    c.cmd = CMD_PROBE;
    smtpc_session *s = NULL;
    smtpc__buf greet, js;
    smtpc__buf_init(&greet, 0);
    smtpc__buf_init(&js, 0);
    cli_result r;
    cli_result_init(&r);
    int ex = cli_parse(prog, "probe", CMD_PROBE, argc, argv, &c.o);
    if (ex) goto out;
    if (c.o.val[O_HELP]) { ex = cmd_help("probe", stdout); goto out; }
    if (c.o.pos.n > 1 || (c.o.pos.n == 1 && c.o.val[O_SERVER])) {
        fprintf(stderr, "%s probe: one server only (--server HOST[:PORT] or HOST[:PORT])\n", prog);
        ex = EX_USAGE;
        goto out;
    }
    if (c.o.pos.n == 1) c.o.val[O_SERVER] = c.o.pos.v[0];
    c.json = c.o.val[O_JSON] != NULL;
    if ((ex = cli_ctx_load_config(&c, NULL))) goto out;
    if (!cli_get(&c, O_SERVER)) {
        fprintf(stderr, "%s probe: which server? (--server HOST[:PORT])\n", prog);
        ex = EX_USAGE;
        goto out;
    }
    if (c.o.val[O_AUTH_TEST] && !cli_get(&c, O_USER) && !cli_get(&c, O_OAUTH_TOKEN_CMD)) {
        fprintf(stderr, "%s probe: --auth-test needs credentials (--user and --password-env/-file/-cmd, "
                        "or --oauth-token-cmd; or an account with them)\n", prog);
        ex = EX_USAGE;
        goto out;
    }
    if ((ex = cli_check_supported(&c, DELIVER_SMTP))) goto out;
    r.delivery = "smtp";
    char host[256];
    uint16_t port;
    int rc = cli_session_open(&c, &r, &s, host, sizeof host, &port);
    if (!rc) {
        /* the whole opening as send does it: TLS per mode, EHLO again, AUTH
         * when credentials are given (so probe also checks them) */
        rc = smtpc_session_open(s, host, port);
        const smtpc_reply *g = smtpc_session_greeting(s);
        if (g && smtpc_reply_code(g)) {
            if (c.json) json_reply(&greet, "greeting", g);
            else print_reply_text("greeting", g);
        }
        if (rc) cli_result_fail(&r, rc, "%s", smtpc_session_errmsg(s));
        cli_result_security(&r, s);
    }
    /* the reply is valid until the next command: render it before QUIT */
    const smtpc_reply *e = !rc ? smtpc_session_reply(s) : NULL;
    smtpc__buf ehlo;
    smtpc__buf_init(&ehlo, 0);
    const smtpc_tls_info *ti = s ? smtpc_session_tls_info(s) : NULL;
    if (!c.json && ti) {
        /* certificate names come from the server: escaped like its replies */
        char e1[1024], e2[1024], e3[512];
        smtpc__escape_into(e1, sizeof e1, ti->subject, strlen(ti->subject));
        smtpc__escape_into(e2, sizeof e2, ti->issuer, strlen(ti->issuer));
        smtpc__escape_into(e3, sizeof e3, ti->verify_message, strlen(ti->verify_message));
        printf("tls: %s (%s)\n", ti->version, r.tls);
        printf("cipher: %s\n", ti->cipher);
        printf("subject: %s\nissuer: %s\nexpires: %s\n", e1, e2, ti->not_after);
        printf("verified: %s%s%s%s\n", ti->verified ? "yes" : "no", ti->verified ? "" : " (",
               ti->verified ? "" : e3, ti->verified ? "" : ")");
        printf("pin: %s\n", ti->pin_sha256);
    } else if (!c.json && s && !rc) {
        printf("tls: none\n");
    }
    if (!c.json && e) print_reply_text("ehlo", e);
    if (!c.json && e) {
        printf("features:\n");
        cli_probe_features(s, false, NULL);
    }
    const char *offered = s && e ? smtpc_session_auth_offered(s) : "";
    char *mechs = smtpc__strdup(offered);
    if (!c.json && e) printf("auth: %s\n", mechs && mechs[0] ? mechs : "(none offered)");
    if (!c.json && r.auth) printf("authenticated: %s\n", r.auth);
    if (!c.json && c.o.val[O_AUTH_TEST] && !rc) {
        char eu[512];
        const char *u = cli_get(&c, O_USER);
        smtpc__escape_into(eu, sizeof eu, u ? u : "", u ? strlen(u) : 0);
        printf("auth test: OK, logged in%s%s with %s (no mail sent)\n", u ? " as " : "", eu, r.auth ? r.auth : "?");
    }
    json_reply(&ehlo, "ehlo", e);
    if (e) cli_probe_features(s, true, &ehlo);
    else smtpc__buf_append_str(&ehlo, ",\"features\":null");
    smtpc__buf_append_str(&ehlo, ",\"extensions\":[");
    for (size_t i = 1; e && i < smtpc_reply_line_count(e); i++) {
        if (i > 1) smtpc__buf_append(&ehlo, ",", 1);
        cli_json_str(&ehlo, smtpc_reply_line(e, i));
    }
    smtpc__buf_append_str(&ehlo, "],\"auth_mechanisms\":[");
    for (char *p = mechs, *q; p && *p; p = q) {
        q = strchr(p, ' ');
        if (q) *q++ = '\0';
        else q = p + strlen(p);
        if (p != mechs) smtpc__buf_append(&ehlo, ",", 1);
        cli_json_str(&ehlo, p);
    }
    free(mechs);
    if (c.o.val[O_AUTH_TEST]) smtpc__buf_printf(&ehlo, "],\"auth_test\":%s", rc == 0 && r.auth ? "true" : "false");
    else smtpc__buf_append_str(&ehlo, "],\"auth_test\":null");
    smtpc__buf_append_str(&ehlo, ",\"authenticated\":");
    cli_json_str(&ehlo, r.auth);
    smtpc__buf_append_str(&ehlo, ",\"tls_info\":");
    if (ti) {
        smtpc__buf_append_str(&ehlo, "{\"version\":");
        cli_json_str(&ehlo, ti->version);
        smtpc__buf_append_str(&ehlo, ",\"cipher\":");
        cli_json_str(&ehlo, ti->cipher);
        smtpc__buf_append_str(&ehlo, ",\"subject\":");
        cli_json_str(&ehlo, ti->subject);
        smtpc__buf_append_str(&ehlo, ",\"issuer\":");
        cli_json_str(&ehlo, ti->issuer);
        smtpc__buf_append_str(&ehlo, ",\"not_before\":");
        cli_json_str(&ehlo, ti->not_before);
        smtpc__buf_append_str(&ehlo, ",\"not_after\":");
        cli_json_str(&ehlo, ti->not_after);
        smtpc__buf_printf(&ehlo, ",\"verified\":%s,\"verify_message\":", ti->verified ? "true" : "false");
        cli_json_str(&ehlo, ti->verify_message);
        smtpc__buf_append_str(&ehlo, ",\"pin\":");
        cli_json_str(&ehlo, ti->pin_sha256);
        smtpc__buf_append_str(&ehlo, "}");
    } else {
        smtpc__buf_append_str(&ehlo, "null");
    }
    if (s && smtpc_session_is_connected(s)) smtpc_session_quit(s);
    r.ok = rc == 0;
    if (c.json) {
        smtpc__buf_printf(&js, "{\"ok\":%s,\"server\":", r.ok ? "true" : "false");
        cli_json_str(&js, r.server[0] ? r.server : NULL);
        smtpc__buf_append_str(&js, ",\"tls\":");
        cli_json_str(&js, r.tls);
        if (smtpc__buf_size(&greet)) smtpc__buf_append(&js, smtpc__buf_ptr(&greet), smtpc__buf_size(&greet));
        else smtpc__buf_append_str(&js, ",\"greeting\":null");
        smtpc__buf_append(&js, smtpc__buf_ptr(&ehlo), smtpc__buf_size(&ehlo));
        smtpc__buf_append_str(&js, ",\"error\":");
        if (r.ok) {
            smtpc__buf_append_str(&js, "null");
        } else {
            smtpc__buf_append_str(&js, "{\"class\":");
            cli_json_str(&js, cli_error_class_name(r.err));
            smtpc__buf_append_str(&js, ",\"code\":");
            cli_json_str(&js, smtpc_err_name(r.err));
            smtpc__buf_printf(&js, ",\"exit\":%d,\"message\":", cli_exit_code(r.err));
            cli_json_str(&js, r.errmsg);
            smtpc__buf_append_str(&js, ",\"hint\":");
            cli_json_str(&js, cli_hint(&r));
            smtpc__buf_append_str(&js, "}");
        }
        smtpc__buf_append_str(&js, "}\n");
        fwrite(smtpc__buf_ptr(&js), 1, smtpc__buf_size(&js), stdout);
    } else if (!r.ok) {
        char esc[1024];
        smtpc__escape_into(esc, sizeof esc, r.errmsg, strlen(r.errmsg));
        const char *hint = cli_hint(&r);
        fprintf(stderr, "%s probe: %s%s%s%s\n", prog, c.o.val[O_AUTH_TEST] && rc == SMTPC_EAUTH ? "auth test FAILED: " : "",
                esc, hint ? " \xe2\x80\x94 " : "", hint ? hint : "");
    }
    smtpc__buf_free(&ehlo);
    ex = cli_exit_code(rc);
out:
    smtpc_session_free(s);
    smtpc__buf_free(&greet);
    smtpc__buf_free(&js);
    cli_result_free(&r);
    cli_ctx_free(&c);
    return ex;
}
