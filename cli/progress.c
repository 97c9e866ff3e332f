/* A progress line on stderr for long work (a big upload, --count, queue
 * flush): done/total, rate, ETA. Only when stderr is a terminal: a pipe or a
 * log file never gets carriage returns. Redrawn at most ten times a second. */
#include "cli.h"

#include <string.h>
#include <unistd.h>

static cli_progress *g_shown; /* the bar on screen, cleared before other output */

void cli_progress_start(cli_progress *p, const char *what, uint64_t total, bool bytes)
{
    memset(p, 0, sizeof *p);
    p->on = isatty(STDERR_FILENO) == 1;
    p->what = what;
    p->total = total;
    p->bytes = bytes;
    p->start_ms = cli_now_ms();
}

static void human(char *out, size_t len, double v, bool bytes)
{
    if (!bytes) {
        snprintf(out, len, "%.0f", v);
        return;
    }
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) { v /= 1024; u++; }
    snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void draw(cli_progress *p, int64_t now)
{
    double secs = (double)(now - p->start_ms) / 1000.0;
    double rate = secs > 0 ? (double)p->done / secs : 0;
    char d[32], t[32], r[32], eta[32] = "";
    human(d, sizeof d, (double)p->done, p->bytes);
    human(t, sizeof t, (double)p->total, p->bytes);
    human(r, sizeof r, rate, p->bytes);
    if (rate > 0 && p->total > p->done) {
        long left = (long)((double)(p->total - p->done) / rate + 0.5);
        snprintf(eta, sizeof eta, ", ETA %ld:%02ld", left / 60, left % 60);
    }
    int pct = p->total ? (int)(p->done * 100 / p->total) : 0;
    fprintf(stderr, "\r\033[K%s: %s / %s (%d%%), %s%s/s%s", p->what, d, t, pct, r,
            p->bytes ? "" : (p->what && strstr(p->what, "message") ? " msg" : ""), eta);
    fflush(stderr);
    p->drawn = true;
    g_shown = p;
}

void cli_progress_update(cli_progress *p, uint64_t done)
{
    p->done = done;
    if (!p->on) return;
    int64_t now = cli_now_ms();
    /* nothing for short work: only after a third of a second */
    if (now - p->start_ms < 300) return;
    if (p->drawn && now - p->last_ms < 100 && done < p->total) return;
    p->last_ms = now;
    draw(p, now);
}

void cli_progress_clear(void)
{
    if (!g_shown) return;
    fputs("\r\033[K", stderr);
    g_shown->drawn = false;
    g_shown = NULL;
}

void cli_progress_end(cli_progress *p)
{
    if (g_shown == p) cli_progress_clear();
    p->on = false;
}
