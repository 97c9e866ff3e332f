/* Exit statuses, the reports (one line or one JSON object per message), JSON
 * string escaping. */
#include "cli.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_exit_code(int e)
{
    switch (e) {
    case SMTPC_OK: return EX_OK;
    case SMTPC_EINVAL:
    case SMTPC_ELIMIT: return EX_DATAERR;        /* bad address, bad or oversized message */
    case SMTPC_ENOHOST: return EX_NOHOST;
    case SMTPC_EPERMFAIL:
    case SMTPC_EUNSUPPORTED: return EX_UNAVAILABLE; /* 5xx; server lacks what we need */
    case SMTPC_ENOMEM:
    case SMTPC_ENETWORK:
    case SMTPC_ETIMEDOUT:
    case SMTPC_ECANCELED:
    case SMTPC_ETEMPFAIL:
    case SMTPC_ECLOSED:
    case SMTPC_EAGAIN:
    case SMTPC_EPROXY:
    /* outcome unknown: a retry may duplicate, giving up may lose; duplicate wins */
    case SMTPC_EUNKNOWN: return EX_TEMPFAIL;
    case SMTPC_EPROTO:
    case SMTPC_ETLS: return EX_PROTOCOL;
    case SMTPC_EAUTH: return EX_NOPERM;
    case SMTPC_EIO: return EX_IOERR;
    case SMTPC_ECONFIG:
    case SMTPC_ENOTFOUND: return EX_CONFIG;
    case SMTPC_ELIBRARY: return EX_OSFILE;      /* OpenSSL or libidn2 missing or broken */
    case SMTPC_EBUSY:
    case SMTPC_ESTATE:
    default: return EX_SOFTWARE;
    }
}

const char *cli_error_class_name(int e)
{
    switch (smtpc_error_classify(e)) {
    case SMTPC_CLASS_OK: return "ok";
    case SMTPC_CLASS_TRANSIENT: return "transient";
    case SMTPC_CLASS_PERMANENT: return "permanent";
    case SMTPC_CLASS_CANCELED: return "canceled";
    case SMTPC_CLASS_CONFIG: return "config";
    case SMTPC_CLASS_PROTOCOL: return "protocol";
    case SMTPC_CLASS_UNKNOWN: return "unknown";
    }
    return "unknown";
}

void cli_result_init(cli_result *r) { memset(r, 0, sizeof *r); }

void cli_result_free(cli_result *r)
{
    for (size_t i = 0; i < r->nrcpts; i++) free(r->rcpts[i].text);
    free(r->rcpts);
    free(r->final_text);
    free(r->queue_id);
    free(r->path);
    memset(r, 0, sizeof *r);
}

int cli_err_origin(int err, const char *msg)
{
    if (err == SMTPC_ELIMIT && msg && strstr(msg, "server reply")) return SMTPC_EPROTO;
    return err;
}

int cli_result_fail(cli_result *r, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
    va_end(ap);
    code = cli_err_origin(code, r->errmsg);
    r->err = code;
    r->ok = false;
    return code;
}

char *cli_queue_id_from_text(const char *t)
{
    if (!t) return NULL;
    const char *p = NULL;
    for (const char *s = t; *s && !p; s++) {
        if (!strncasecmp(s, "queued as ", 10)) p = s + 10;
        else if (!strncasecmp(s, "id=", 3) && (s == t || !isalnum((unsigned char)s[-1]))) p = s + 3;
    }
    if (!p) return NULL;
    size_t n = 0;
    while (p[n] && (isalnum((unsigned char)p[n]) || strchr("-._@", p[n]))) n++;
    while (n && p[n - 1] == '.') n--; /* "queued as ABC." */
    return n ? strndup(p, n) : NULL;
}

/* ---- JSON ------------------------------------------------------------------ */

int cli_json_str(cli_buf *b, const char *s)
{
    if (!s) return cli_buf_append_str(b, "null");
    int rc = cli_buf_append(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    while (!rc && left) {
        size_t n;
        int cls = cli_text_class(p, left, &n);
        unsigned c = *p;
        if (cls == CLI_TEXT_OK && (c == '"' || c == '\\')) {
            char e[2] = {'\\', (char)c};
            rc = cli_buf_append(b, e, 2);
        } else if (cls == CLI_TEXT_OK) {
            rc = cli_buf_append(b, p, n);
        } else if (cls == CLI_TEXT_C0) {
            if (c == '\n') rc = cli_buf_append(b, "\\n", 2);
            else if (c == '\r') rc = cli_buf_append(b, "\\r", 2);
            else if (c == '\t') rc = cli_buf_append(b, "\\t", 2);
            else rc = cli_buf_printf(b, "\\u%04x", c);
        } else if (cls == CLI_TEXT_C1) { /* valid JSON as is, but a terminal takes U+009B as CSI */
            rc = cli_buf_printf(b, "\\u%04x", p[1]);
        } else { /* not UTF-8: JSON text must be */
            rc = cli_buf_append(b, "\\ufffd", 6);
        }
        p += n;
        left -= n;
    }
    if (!rc) rc = cli_buf_append(b, "\"", 1);
    return rc;
}

static void json_result(cli_buf *b, const cli_result *r)
{
    cli_buf_printf(b, "{\"ok\":%s,\"delivery\":", r->ok ? "true" : "false");
    cli_json_str(b, r->delivery);
    cli_buf_append_str(b, ",\"server\":");
    cli_json_str(b, r->server[0] ? r->server : NULL);
    cli_buf_append_str(b, ",\"tls\":");
    if (r->tls_used) {
        cli_buf_append_str(b, "{\"version\":");
        cli_json_str(b, r->tls_version);
        cli_buf_append_str(b, ",\"cipher\":");
        cli_json_str(b, r->tls_cipher);
        cli_buf_printf(b, ",\"verified\":%s,\"mode\":", r->tls_verified ? "true" : "false");
        cli_json_str(b, r->tls);
        cli_buf_append_str(b, "}");
    } else {
        cli_buf_append_str(b, "null");
    }
    cli_buf_append_str(b, ",\"auth\":");
    cli_json_str(b, r->auth);
    cli_buf_append_str(b, ",\"recipients\":[");
    for (size_t i = 0; i < r->nrcpts; i++) {
        const cli_rcpt *x = &r->rcpts[i];
        cli_buf_append_str(b, i ? ",{\"address\":" : "{\"address\":");
        cli_json_str(b, x->address);
        if (x->code) cli_buf_printf(b, ",\"code\":%d", x->code);
        else cli_buf_append_str(b, ",\"code\":null");
        cli_buf_append_str(b, ",\"enhanced\":");
        cli_json_str(b, x->enhanced[0] ? x->enhanced : NULL);
        cli_buf_append_str(b, ",\"text\":");
        cli_json_str(b, x->text);
        cli_buf_printf(b, ",\"accepted\":%s}", x->accepted ? "true" : "false");
    }
    cli_buf_append_str(b, "],\"final\":");
    if (r->final_code) {
        cli_buf_printf(b, "{\"code\":%d,\"enhanced\":", r->final_code);
        cli_json_str(b, r->final_enhanced[0] ? r->final_enhanced : NULL);
        cli_buf_append_str(b, ",\"text\":");
        cli_json_str(b, r->final_text);
        cli_buf_append_str(b, ",\"queue_id\":");
        cli_json_str(b, r->queue_id);
        cli_buf_append_str(b, "}");
    } else {
        cli_buf_append_str(b, "null");
    }
    cli_buf_append_str(b, ",\"path\":");
    cli_json_str(b, r->path);
    cli_buf_append_str(b, ",\"error\":");
    if (r->ok) {
        cli_buf_append_str(b, "null");
    } else {
        cli_buf_append_str(b, "{\"class\":");
        cli_json_str(b, cli_error_class_name(r->err));
        cli_buf_append_str(b, ",\"code\":");
        cli_json_str(b, smtpc_err_name(r->err));
        cli_buf_printf(b, ",\"exit\":%d,\"message\":", cli_exit_code(r->err));
        cli_json_str(b, r->errmsg);
        cli_buf_append_str(b, ",\"hint\":");
        cli_json_str(b, cli_hint(r));
        cli_buf_append_str(b, "}");
    }
    cli_buf_append_str(b, "}\n");
}

void cli_print_result(const cli_ctx *c, const cli_result *r)
{
    if (c->json) {
        cli_buf b;
        cli_buf_init(&b, 0);
        json_result(&b, r);
        fwrite(cli_buf_ptr(&b), 1, cli_buf_size(&b), stdout);
        cli_buf_free(&b);
        fflush(stdout);
        return;
    }
    char esc[1024];
    cli_progress_clear();
    if (!r->ok) {
        cli_escape_into(esc, sizeof esc, r->errmsg, strlen(r->errmsg));
        const char *hint = cli_hint(r);
        fprintf(stderr, "%s: %s%s%s\n", c->prog, esc, hint ? " \xe2\x80\x94 " : "", hint ? hint : "");
        for (size_t i = 0; i < r->nrcpts; i++) {
            const cli_rcpt *x = &r->rcpts[i];
            if (x->accepted || !x->code) continue;
            char t[512];
            cli_escape_into(t, sizeof t, x->text ? x->text : "", x->text ? strlen(x->text) : 0);
            cli_escape_into(esc, sizeof esc, x->address, strlen(x->address));
            fprintf(stderr, "%s:   %s: %d%s%s %s\n", c->prog, esc, x->code, x->enhanced[0] ? " " : "",
                    x->enhanced, t);
        }
        return;
    }
    if (c->cmd == CMD_SENDMAIL) return; /* sendmail is silent on success */
    if (!strcmp(r->delivery, "outbox") && !r->path && r->queue_id) { /* a database outbox */
        printf("queued in the outbox as %s\n", r->queue_id);
        return;
    }
    if (!strcmp(r->delivery, "pickup") || !strcmp(r->delivery, "outbox")) {
        cli_escape_into(esc, sizeof esc, r->path ? r->path : "", r->path ? strlen(r->path) : 0);
        printf("written to %s directory: %s\n", r->delivery, esc);
        return;
    }
    size_t acc = 0;
    for (size_t i = 0; i < r->nrcpts; i++) acc += r->rcpts[i].accepted;
    printf("sent to %zu recipient%s via %s", acc, acc == 1 ? "" : "s", r->server);
    if (r->tls_used) {
        cli_escape_into(esc, sizeof esc, r->tls_version, strlen(r->tls_version));
        printf(" (%s%s%s%s)", esc, r->tls_verified ? "" : ", certificate NOT verified",
               r->auth ? ", AUTH " : "", r->auth ? r->auth : "");
    } else if (r->auth) {
        printf(" (no TLS, AUTH %s)", r->auth);
    }
    if (r->queue_id) {
        cli_escape_into(esc, sizeof esc, r->queue_id, strlen(r->queue_id));
        printf(", queued as %s", esc);
    } else if (r->final_text) {
        cli_escape_into(esc, sizeof esc, r->final_text, strlen(r->final_text));
        printf(": %d %s", r->final_code, esc);
    }
    if (acc < r->nrcpts) printf(" (%zu refused)", r->nrcpts - acc);
    putchar('\n');
    for (size_t i = 0; i < r->nrcpts; i++) {
        const cli_rcpt *x = &r->rcpts[i];
        if (x->accepted) continue;
        char t[512];
        cli_escape_into(t, sizeof t, x->text ? x->text : "", x->text ? strlen(x->text) : 0);
        cli_escape_into(esc, sizeof esc, x->address, strlen(x->address));
        fprintf(stderr, "%s: refused %s: %d%s%s %s\n", c->prog, esc, x->code,
                x->enhanced[0] ? " " : "", x->enhanced, t);
    }
}
