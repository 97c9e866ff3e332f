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
        cli_escape_into(esc, sizeof esc, l, strlen(l));
        if (i == 0) printf("%s: %d %s\n", label, smtpc_reply_code(rep), esc);
        else printf("  %s\n", esc);
    }
}

static void json_reply(cli_buf *b, const char *name, const smtpc_reply *rep)
{
    cli_buf_printf(b, ",\"%s\":", name);
    if (!rep || !smtpc_reply_code(rep)) {
        cli_buf_append_str(b, "null");
        return;
    }
    cli_buf_printf(b, "{\"code\":%d,\"lines\":[", smtpc_reply_code(rep));
    for (size_t i = 0; i < smtpc_reply_line_count(rep); i++) {
        if (i) cli_buf_append(b, ",", 1);
        cli_json_str(b, smtpc_reply_line(rep, i));
    }
    cli_buf_append_str(b, "]}");
}

int cmd_probe(const char *prog, int argc, char **argv)
{
    cli_ctx c;
    memset(&c, 0, sizeof c);
    c.prog = prog;
    c.cmdname = "probe";
    c.cmd = CMD_PROBE;
    smtpc_session *s = NULL;
    cli_buf greet, js;
    cli_buf_init(&greet, 0);
    cli_buf_init(&js, 0);
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
    int rc = cli_session_open(&c, &r, &s);
    if (!rc) {
        /* the whole opening as send does it: TLS per mode, EHLO again, AUTH
         * when credentials are given (so probe also checks them) */
        rc = smtpc_session_open(s, NULL, 0);
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
    cli_buf ehlo;
    cli_buf_init(&ehlo, 0);
    const smtpc_tls_info *ti = s ? smtpc_session_tls_info(s) : NULL;
    if (!c.json && ti) {
        /* certificate names come from the server: escaped like its replies */
        char e1[1024], e2[1024], e3[512];
        cli_escape_into(e1, sizeof e1, ti->subject, strlen(ti->subject));
        cli_escape_into(e2, sizeof e2, ti->issuer, strlen(ti->issuer));
        cli_escape_into(e3, sizeof e3, ti->verify_message, strlen(ti->verify_message));
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
    char *mechs = strdup(offered ? offered : "");
    if (!c.json && e) printf("auth: %s\n", mechs && mechs[0] ? mechs : "(none offered)");
    if (!c.json && r.auth) printf("authenticated: %s\n", r.auth);
    if (!c.json && c.o.val[O_AUTH_TEST] && !rc) {
        char eu[512];
        const char *u = cli_get(&c, O_USER);
        cli_escape_into(eu, sizeof eu, u ? u : "", u ? strlen(u) : 0);
        printf("auth test: OK, logged in%s%s with %s (no mail sent)\n", u ? " as " : "", eu, r.auth ? r.auth : "?");
    }
    json_reply(&ehlo, "ehlo", e);
    if (e) cli_probe_features(s, true, &ehlo);
    else cli_buf_append_str(&ehlo, ",\"features\":null");
    cli_buf_append_str(&ehlo, ",\"extensions\":[");
    for (size_t i = 1; e && i < smtpc_reply_line_count(e); i++) {
        if (i > 1) cli_buf_append(&ehlo, ",", 1);
        cli_json_str(&ehlo, smtpc_reply_line(e, i));
    }
    cli_buf_append_str(&ehlo, "],\"auth_mechanisms\":[");
    for (char *p = mechs, *q; p && *p; p = q) {
        q = strchr(p, ' ');
        if (q) *q++ = '\0';
        else q = p + strlen(p);
        if (p != mechs) cli_buf_append(&ehlo, ",", 1);
        cli_json_str(&ehlo, p);
    }
    free(mechs);
    if (c.o.val[O_AUTH_TEST]) cli_buf_printf(&ehlo, "],\"auth_test\":%s", rc == 0 && r.auth ? "true" : "false");
    else cli_buf_append_str(&ehlo, "],\"auth_test\":null");
    cli_buf_append_str(&ehlo, ",\"authenticated\":");
    cli_json_str(&ehlo, r.auth);
    cli_buf_append_str(&ehlo, ",\"tls_info\":");
    if (ti) {
        cli_buf_append_str(&ehlo, "{\"version\":");
        cli_json_str(&ehlo, ti->version);
        cli_buf_append_str(&ehlo, ",\"cipher\":");
        cli_json_str(&ehlo, ti->cipher);
        cli_buf_append_str(&ehlo, ",\"subject\":");
        cli_json_str(&ehlo, ti->subject);
        cli_buf_append_str(&ehlo, ",\"issuer\":");
        cli_json_str(&ehlo, ti->issuer);
        cli_buf_append_str(&ehlo, ",\"not_before\":");
        cli_json_str(&ehlo, ti->not_before);
        cli_buf_append_str(&ehlo, ",\"not_after\":");
        cli_json_str(&ehlo, ti->not_after);
        cli_buf_printf(&ehlo, ",\"verified\":%s,\"verify_message\":", ti->verified ? "true" : "false");
        cli_json_str(&ehlo, ti->verify_message);
        cli_buf_append_str(&ehlo, ",\"pin\":");
        cli_json_str(&ehlo, ti->pin_sha256);
        cli_buf_append_str(&ehlo, "}");
    } else {
        cli_buf_append_str(&ehlo, "null");
    }
    if (s && smtpc_session_is_connected(s)) smtpc_session_quit(s);
    r.ok = rc == 0;
    if (c.json) {
        cli_buf_printf(&js, "{\"ok\":%s,\"server\":", r.ok ? "true" : "false");
        cli_json_str(&js, r.server[0] ? r.server : NULL);
        cli_buf_append_str(&js, ",\"tls\":");
        cli_json_str(&js, r.tls);
        if (cli_buf_size(&greet)) cli_buf_append(&js, cli_buf_ptr(&greet), cli_buf_size(&greet));
        else cli_buf_append_str(&js, ",\"greeting\":null");
        cli_buf_append(&js, cli_buf_ptr(&ehlo), cli_buf_size(&ehlo));
        cli_buf_append_str(&js, ",\"error\":");
        if (r.ok) {
            cli_buf_append_str(&js, "null");
        } else {
            cli_buf_append_str(&js, "{\"class\":");
            cli_json_str(&js, cli_error_class_name(r.err));
            cli_buf_append_str(&js, ",\"code\":");
            cli_json_str(&js, smtpc_err_name(r.err));
            cli_buf_printf(&js, ",\"exit\":%d,\"message\":", cli_exit_code(r.err));
            cli_json_str(&js, r.errmsg);
            cli_buf_append_str(&js, ",\"hint\":");
            cli_json_str(&js, cli_hint(&r));
            cli_buf_append_str(&js, "}");
        }
        cli_buf_append_str(&js, "}\n");
        fwrite(cli_buf_ptr(&js), 1, cli_buf_size(&js), stdout);
    } else if (!r.ok) {
        char esc[1024];
        cli_escape_into(esc, sizeof esc, r.errmsg, strlen(r.errmsg));
        const char *hint = cli_hint(&r);
        fprintf(stderr, "%s probe: %s%s%s%s\n", prog, c.o.val[O_AUTH_TEST] && rc == SMTPC_EAUTH ? "auth test FAILED: " : "",
                esc, hint ? " \xe2\x80\x94 " : "", hint ? hint : "");
    }
    cli_buf_free(&ehlo);
    ex = cli_exit_code(rc ? r.err : 0); /* r.err: cli_err_origin's view of rc */
out:
    smtpc_session_free(s);
    cli_buf_free(&greet);
    cli_buf_free(&js);
    cli_result_free(&r);
    cli_ctx_free(&c);
    return ex;
}
