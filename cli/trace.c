/* --trace / --trace-body: the SMTP dialogue on stderr, one line per command
 * or reply line, "HH:MM:SS.mmm C: ..." / "S: ..." / "* ..." (TLS and other
 * events). The library redacts AUTH before the callback sees it. The message
 * itself is not in the library's trace: a tap on the body reader shows its
 * header lines (and, with --trace-body, every line). Control characters are
 * escaped: a server cannot drive the terminal. */
#include "cli.h"

#include <string.h>
#include <sys/time.h>
#include <time.h>

#define TRACE_LINE_MAX 1000 /* longer lines are cut in the trace (not on the wire) */

static void stamp(char *out, size_t len)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    time_t t = tv.tv_sec;
    localtime_r(&t, &tm);
    snprintf(out, len, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
}

void cli_trace_line(const char *prefix, const char *line, size_t len)
{
    char esc[TRACE_LINE_MAX * 4 + 8], ts[32];
    bool cut = len > TRACE_LINE_MAX;
    cli_escape_into(esc, sizeof esc, line, cut ? TRACE_LINE_MAX : len);
    stamp(ts, sizeof ts);
    cli_progress_clear();
    fprintf(stderr, "%s %s %s%s\n", ts, prefix, esc, cut ? " [...]" : "");
}

void cli_trace_cb(void *ud, smtpc_trace_dir dir, const char *line, size_t len)
{
    (void)ud;
    cli_trace_line(dir == SMTPC_TRACE_SENT ? "C:" : dir == SMTPC_TRACE_RECEIVED ? "S:" : "*", line, len);
}

/* ---- the body tap ------------------------------------------------------------ */

void cli_tap_init(cli_tap *t, smtpc_read_cb inner, void *ud, bool trace, bool trace_body,
                  cli_progress *pg)
{
    memset(t, 0, sizeof *t);
    t->inner = inner;
    t->ud = ud;
    t->trace = trace || trace_body;
    t->full = trace_body;
    t->in_header = true;
    t->pg = pg;
}

static void tap_flush_line(cli_tap *t)
{
    size_t n = t->len;
    if (n && t->line[n - 1] == '\r') n--;
    if (t->in_header || t->full) cli_trace_line("C:", t->line, n);
    if (t->in_header && n == 0) t->in_header = false; /* the blank line: the body starts */
    t->len = 0;
    t->cut = false;
}

ssize_t cli_tap_read(void *ud, void *buf, size_t len)
{
    cli_tap *t = ud;
    ssize_t n = t->inner(t->ud, buf, len);
    if (n <= 0) return n;
    t->bytes += (uint64_t)n;
    if (t->pg) cli_progress_update(t->pg, t->bytes);
    if (!t->trace) return n;
    const char *p = buf;
    for (ssize_t i = 0; i < n; i++) {
        if (!t->in_header && !t->full) {
            t->body_bytes += (uint64_t)(n - i);
            break;
        }
        if (p[i] == '\n') {
            tap_flush_line(t);
            continue;
        }
        if (!t->in_header) t->body_bytes++;
        if (t->len < sizeof t->line) t->line[t->len++] = p[i];
        else t->cut = true;
    }
    return n;
}

void cli_tap_done(cli_tap *t)
{
    if (!t->trace) return;
    if (t->len) tap_flush_line(t);
    if (!t->full) {
        char note[160];
        int k = snprintf(note, sizeof note, "[message body: %llu bytes not shown; --trace-body shows them]",
                         (unsigned long long)t->body_bytes);
        cli_trace_line("C:", note, (size_t)k);
    }
}
