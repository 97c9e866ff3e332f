/* bench_loop M [--stdin FILE] CMD [ARGS...]: runs CMD M times in sequence
 * (each with FILE as standard input, stdout to /dev/null) and prints
 * "LOOP wall_s cpu_s max_rss_kib" on stderr: the wall time of the whole loop,
 * the children's summed user+sys CPU and the largest child peak RSS (wait4).
 * A small launcher, so that the children's peak RSS is theirs (Linux carries
 * a forking parent's across exec) and the per-process overhead is small.
 * Exits 1 at the first child that fails, with its status. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fputs("usage: bench_loop M [--stdin FILE] CMD [ARGS...]\n", stderr);
        return 64;
    }
    char *end;
    unsigned long m = strtoul(argv[1], &end, 10);
    if (*end || m == 0) return 64;
    int a = 2;
    const char *in = NULL;
    if (!strcmp(argv[a], "--stdin") && a + 2 < argc) {
        in = argv[a + 1];
        a += 2;
    }
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) return 71;
    struct timespec t0, t1;
    double cpu = 0;
    long maxrss = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned long i = 0; i < m; i++) {
        int fd = in ? open(in, O_RDONLY | O_CLOEXEC) : devnull;
        if (fd < 0) return 66;
        pid_t pid = fork();
        if (pid < 0) return 71;
        if (pid == 0) {
            dup2(fd, 0);
            dup2(devnull, 1);
            execvp(argv[a], argv + a);
            _exit(127);
        }
        if (in) close(fd);
        int status;
        struct rusage ru;
        if (wait4(pid, &status, 0, &ru) < 0) return 71;
        cpu += (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        if (ru.ru_maxrss > maxrss) maxrss = ru.ru_maxrss;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "bench_loop: %s: run %lu: status %d\n", argv[a], i + 1, status);
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "\nLOOP %.6f %.6f %ld\n", wall, cpu, maxrss);
    return 0;
}
