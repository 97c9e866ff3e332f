/* Building a message from flags. A minimal text/plain builder until the
 * MIME library (include/smtpc/message.h) is merged; it then takes over HTML,
 * attachments and header encoding. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cli_slurp(const char *path, smtpc__buf *out, size_t limit)
{
    int fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char tmp[65536];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { rc = -1; break; }
        if (n == 0) break;
        if (smtpc__buf_size(out) + (size_t)n > limit) { errno = EFBIG; rc = -1; break; }
        if (smtpc__buf_append(out, tmp, (size_t)n)) { errno = ENOMEM; rc = -1; break; }
    }
    int e = errno;
    if (fd) close(fd);
    errno = e;
    return rc;
}

static bool is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return false;
    return true;
}

int cli_check_address(const cli_ctx *c, const char *what, const char *a)
{
    if (!*a || smtpc__has_ctl(a)) {
        cli_err(c, "%s: empty address or control characters in \"%s\"", what, a);
        return EX_DATAERR;
    }
    /* a bare addr-spec: no blanks or angle brackets; one '@' with text on both sides */
    const char *at = strrchr(a, '@');
    if (strpbrk(a, " <>(),;\"") || !at || at == a || !at[1]) {
        cli_err(c, "%s: \"%s\" is not an address like user@example.org", what, a);
        return EX_DATAERR;
    }
    if (!is_ascii(a)) {
        cli_err(c, "%s: \"%s\": internationalised addresses (SMTPUTF8) are not supported yet",
                what, a);
        return EX_UNAVAILABLE;
    }
    return 0;
}

/* RFC 2047 "B" encoding for a non-ASCII Subject, split on UTF-8 character
 * boundaries so each encoded word stays within 75 characters. */
static int encode_subject(smtpc__buf *m, const char *s)
{
    if (is_ascii(s)) return smtpc__buf_printf(m, "Subject: %s\r\n", s);
    int rc = smtpc__buf_append_str(m, "Subject:");
    size_t len = strlen(s), i = 0;
    while (!rc && i < len) {
        size_t n = 0;
        /* 39 input bytes -> 52 base64 chars + 12 of "=?UTF-8?B??=" + "Subject: " = 73 */
        while (i + n < len) {
            size_t cl = 1;
            unsigned char ch = (unsigned char)s[i + n];
            if (ch >= 0xf0) cl = 4;
            else if (ch >= 0xe0) cl = 3;
            else if (ch >= 0xc0) cl = 2;
            if (n + cl > 39) break;
            n += cl;
        }
        if (n == 0) n = len - i < 4 ? len - i : 4;
        if (i + n > len) n = len - i;
        char enc[64];
        smtpc__b64_encode(enc, (const uint8_t *)s + i, n);
        rc = smtpc__buf_printf(m, "%s=?UTF-8?B?%.*s?=", i ? "\r\n " : " ",
                               (int)smtpc__b64_encoded_len(n), enc);
        i += n;
    }
    if (!rc) rc = smtpc__buf_append(m, "\r\n", 2);
    return rc;
}

static int addr_header(smtpc__buf *m, const char *name, const cli_list *l)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < l->n; i++)
        rc = i ? smtpc__buf_printf(m, ",\r\n %s", l->v[i]) : smtpc__buf_printf(m, "%s: %s", name, l->v[i]);
    if (!rc && l->n) rc = smtpc__buf_append(m, "\r\n", 2);
    return rc;
}

static int header_ok(const cli_ctx *c, const char *name, const char *v)
{
    if (v && smtpc__has_crlfnul(v, strlen(v))) {
        cli_err(c, "%s must not contain CR, LF or NUL", name);
        return 0;
    }
    return 1;
}

int cli_compose(const cli_ctx *c, const char *from, smtpc__buf *msg)
{
    const cli_opts *o = &c->o;
    if (o->val[O_MESSAGE]) {
        if (cli_slurp(o->val[O_MESSAGE], msg, CLI_MAX_MESSAGE) < 0) {
            cli_err(c, "cannot read %s: %s", o->val[O_MESSAGE], strerror(errno));
            return errno == EFBIG ? EX_DATAERR : EX_NOINPUT;
        }
        return 0;
    }
    const char *subject = o->val[O_SUBJECT];
    if (!header_ok(c, "--subject", subject) || !header_ok(c, "--reply-to", o->val[O_REPLY_TO]))
        return EX_DATAERR;
    if (subject && smtpc__has_ctl(subject)) {
        cli_err(c, "--subject must not contain control characters");
        return EX_DATAERR;
    }
    for (size_t i = 0; i < o->list[O_HEADER].n; i++) {
        const char *h = o->list[O_HEADER].v[i];
        const char *colon = strchr(h, ':');
        bool ok = colon && colon > h && !smtpc__has_crlfnul(h, strlen(h)) && is_ascii(h);
        for (const char *p = h; ok && p < colon; p++)
            if ((unsigned char)*p <= 0x20 || *p == 0x7f) ok = false;
        if (!ok) {
            cli_err(c, "--header \"%s\": expected \"Name: value\" in ASCII on one line", h);
            return EX_DATAERR;
        }
    }
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", &tm);
    const char *dom = strrchr(from, '@');
    int rc = smtpc__buf_printf(msg, "Date: %s\r\nFrom: %s\r\n", date, from);
    if (!rc) rc = addr_header(msg, "To", &o->list[O_TO]);
    if (!rc) rc = addr_header(msg, "Cc", &o->list[O_CC]);
    if (!rc && o->val[O_REPLY_TO]) rc = smtpc__buf_printf(msg, "Reply-To: %s\r\n", o->val[O_REPLY_TO]);
    if (!rc && subject) rc = encode_subject(msg, subject);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (!rc)
        rc = smtpc__buf_printf(msg, "Message-ID: <%lld.%ld.%ld@%s>\r\n", (long long)ts.tv_sec,
                               ts.tv_nsec, (long)getpid(), dom ? dom + 1 : "localhost");
    const char *prio = o->val[O_PRIORITY];
    if (!rc && prio) {
        if (!strcmp(prio, "high")) rc = smtpc__buf_append_str(msg, "X-Priority: 1\r\nImportance: high\r\n");
        else if (!strcmp(prio, "low")) rc = smtpc__buf_append_str(msg, "X-Priority: 5\r\nImportance: low\r\n");
        else if (strcmp(prio, "normal") != 0) {
            cli_err(c, "--priority: \"%s\" is not high, normal or low", prio);
            return EX_USAGE;
        }
    }
    for (size_t i = 0; !rc && i < o->list[O_HEADER].n; i++)
        rc = smtpc__buf_printf(msg, "%s\r\n", o->list[O_HEADER].v[i]);
    if (!rc)
        rc = smtpc__buf_append_str(msg, "MIME-Version: 1.0\r\n"
                                        "Content-Type: text/plain; charset=utf-8\r\n\r\n");
    if (rc) return EX_SOFTWARE;
    if (o->val[O_TEXT_FILE]) {
        if (cli_slurp(o->val[O_TEXT_FILE], msg, CLI_MAX_MESSAGE) < 0) {
            cli_err(c, "cannot read %s: %s", o->val[O_TEXT_FILE], strerror(errno));
            return errno == EFBIG ? EX_DATAERR : EX_NOINPUT;
        }
    } else if (o->val[O_TEXT]) {
        if (smtpc__buf_append_str(msg, o->val[O_TEXT]) || smtpc__buf_append(msg, "\r\n", 2))
            return EX_SOFTWARE;
    }
    return 0;
}
