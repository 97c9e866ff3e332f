/* Passwords and tokens: from an environment variable, a file or a command,
 * never from the command line. The first line is the secret (without its
 * line end); buffers that held it are wiped. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SECRET_MAX 8192

static int first_line(cli_buf *b, char **out)
{
    size_t n = cli_buf_size(b), l = 0;
    const char *p = n ? (const char *)cli_buf_ptr(b) : ""; /* an empty buffer has no data */
    while (l < n && p[l] != '\n' && p[l] != '\r') l++;
    if (memchr(p, '\0', l)) return SMTPC_EINVAL;
    *out = strndup(p, l);
    return *out ? 0 : SMTPC_ENOMEM;
}

static int read_fd(int fd, cli_buf *b)
{
    char tmp[1024];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { rc = SMTPC_EIO; break; }
        if (n == 0) break;
        if (cli_buf_append(b, tmp, (size_t)n)) { rc = SMTPC_ELIMIT; break; }
    }
    explicit_bzero(tmp, sizeof tmp);
    return rc;
}

/* Runs cmd with /bin/sh, stdin from /dev/null, stdout captured, stderr
 * passed through (pass(1) and gpg talk there). */
static int run_cmd(const char *cmd, cli_buf *b, char *err, size_t errlen)
{
    int pfd[2];
    if (pipe(pfd) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return SMTPC_EIO;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return SMTPC_EIO;
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) dup2(nul, 0);
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        signal(SIGPIPE, SIG_DFL);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    int rc = read_fd(pfd[0], b);
    close(pfd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (!rc && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        /* 75 is EX_TEMPFAIL: "not now" (a locked keyring, an unreachable
         * token service), a temporary failure and not a configuration one */
        bool later = WIFEXITED(st) && WEXITSTATUS(st) == 75;
        snprintf(err, errlen, "command failed (%s %d%s)", WIFEXITED(st) ? "exit status" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), later ? ": try again later" : "");
        rc = later ? SMTPC_ETEMPFAIL : SMTPC_ECONFIG;
    }
    return rc;
}

int cli_secret(const cli_ctx *c, bool token, char **out, const char **source, char *err,
               size_t errlen)
{
    *out = NULL;
    *source = NULL;
    if (errlen) err[0] = '\0';
    cli_buf b; /* grows as the secret comes in: no copy of it may stay behind */
    cli_buf_init_secure(&b, SECRET_MAX);
    int rc = 0;
    const char *v;
    if (token) {
        if ((v = cli_get(c, O_OAUTH_TOKEN_CMD))) {
            *source = "oauth-token-cmd";
            rc = run_cmd(v, &b, err, errlen);
        } else {
            return SMTPC_ENOTFOUND;
        }
    } else if ((v = cli_get(c, O_PASSWORD_ENV))) {
        *source = "password-env";
        const char *e = getenv(v);
        if (!e) {
            snprintf(err, errlen, "environment variable %s is not set", v);
            return SMTPC_ECONFIG;
        }
        rc = cli_buf_append_str(&b, e);
    } else if ((v = cli_get(c, O_PASSWORD_FILE))) {
        *source = "password-file";
        int fd = open(v, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            snprintf(err, errlen, "%s: %s", v, strerror(errno));
            return SMTPC_ECONFIG;
        }
        rc = read_fd(fd, &b);
        close(fd);
    } else if ((v = cli_get(c, O_PASSWORD_CMD))) {
        *source = "password-cmd";
        rc = run_cmd(v, &b, err, errlen);
    } else if (c->acct && (v = smtpc_account_get(c->acct, "password"))) {
        *source = "password";
        rc = cli_buf_append_str(&b, v);
    } else {
        return SMTPC_ENOTFOUND;
    }
    if (!rc) rc = first_line(&b, out);
    if (!rc && !**out) {
        cli_free_secret(*out);
        *out = NULL;
        snprintf(err, errlen, "%s gave an empty secret", *source);
        rc = SMTPC_ECONFIG;
    }
    if (rc == SMTPC_ELIMIT) snprintf(err, errlen, "%s: longer than %d bytes", *source, SECRET_MAX);
    else if (rc == SMTPC_EINVAL) snprintf(err, errlen, "%s: NUL byte in the secret", *source);
    else if (rc && !err[0]) snprintf(err, errlen, "%s: %s", *source, smtpc_strerror(rc));
    cli_buf_free_secure(&b);
    return rc;
}
