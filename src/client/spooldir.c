/* The directory rule of spooldir.h. */
#include "client/spooldir.h"

#include <smtpc/errors.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int smtpc__spool_dir_check(const char *what, const char *path, bool shared, char *why, size_t len)
{
    struct stat st;
    int e = stat(path, &st) < 0 ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR : 0;
    if (e) { /* an I/O failure, as creating a file there would have been */
        if (why && len) snprintf(why, len, "%s %s: %s", what, path, strerror(e));
        return SMTPC_EIO;
    }
    const char *bad = NULL;
    uid_t me = geteuid();
    if (st.st_uid != me && !(shared && st.st_uid == 0))
        bad = shared ? "owned by another user (only yours or root's are used)" : "owned by another user";
    else if (!shared && (st.st_mode & (S_IWGRP | S_IWOTH)))
        bad = "writable by group or others (chmod 700)";
    else if (shared && (st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX))
        bad = "writable by others without the sticky bit (chmod o-w or +t)";
    if (!bad) return 0;
    if (why && len) snprintf(why, len, "%s %s: %s", what, path, bad);
    return SMTPC_ECONFIG;
}
