/* Peak resident memory of one program, measured cleanly.
 *
 *   drv_rss OUTFILE PROGRAM [ARGS...]
 *
 * Runs PROGRAM (stdin/stdout/stderr inherited), waits for it and writes
 * "MAXRSS_KIB EXIT_STATUS\n" to OUTFILE; exits with PROGRAM's status
 * (128+N for a signal). Needed because a child's ru_maxrss includes the
 * high-water mark of the process that forked it (kept across exec): from
 * pytest that is the test's own memory; from this small program, about 1 MiB. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: drv_rss OUTFILE PROGRAM [ARGS...]\n");
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    int st;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) != pid) { perror("wait4"); return 2; }
    int ex = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    FILE *f = fopen(argv[1], "w");
    if (!f || fprintf(f, "%ld %d\n", ru.ru_maxrss, ex) < 0 || fclose(f)) { perror(argv[1]); return 2; }
    return ex;
}
