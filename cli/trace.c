/* --trace / --trace-body: the SMTP dialogue on stderr, one line per command
 * or reply line, "HH:MM:SS.mmm C: ..." / "S: ..." / "* ..." (TLS and other
 * events). The library redacts AUTH before the callback sees it. Of the
 * message (the library's message lines) the header lines are shown, and
 * with --trace-body every line. Control characters are escaped: a server
 * cannot drive the terminal. */
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

void cli_trace_start(cli_trace *t, bool full)
{
    memset(t, 0, sizeof *t);
    t->full = full;
    t->in_header = true;
}

/* The body lines that were not shown, once, in the dialogue's place. */
static void body_note(cli_trace *t)
{
    if (t->full || t->noted || t->in_header) return;
    t->noted = true;
    char note[160];
    int k = snprintf(note, sizeof note, "[message body: %llu bytes not shown; --trace-body shows them]",
                     (unsigned long long)t->hidden);
    cli_trace_line("C:", note, (size_t)k);
}

void cli_trace_cb(void *ud, smtpc_trace_dir dir, const char *line, size_t len)
{
    cli_trace *t = ud;
    if (dir == SMTPC_TRACE_BODY && t) {
        if (t->in_header || t->full) cli_trace_line("C:", line, len);
        else t->hidden += len + 2; /* as sent: with its CR LF */
        if (t->in_header && len == 0) t->in_header = false; /* the blank line: the body starts */
        return;
    }
    if (t) body_note(t);
    cli_trace_line(dir == SMTPC_TRACE_SENT || dir == SMTPC_TRACE_BODY ? "C:"
                   : dir == SMTPC_TRACE_RECEIVED                     ? "S:"
                                                                     : "*",
                   line, len);
}

void cli_trace_end(cli_trace *t)
{
    body_note(t);
}
