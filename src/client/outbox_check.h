/* What the outbox's consistency check (outbox_check.c) uses of outbox.c. */
#ifndef SMTPC_CLIENT_OUTBOX_CHECK_H
#define SMTPC_CLIENT_OUTBOX_CHECK_H

#include <smtpc/outbox.h>

#include "util/util.h"

const char *smtpc__outbox_dir(const smtpc_outbox *ob);
smtpc__errmsg *smtpc__outbox_err(smtpc_outbox *ob);
/* The directory lock of flush, retry and drop (SMTPC_EBUSY while held). */
int smtpc__outbox_lock(smtpc_outbox *ob, int *fd_out);
int smtpc__outbox_fsync_dir(const char *path);
/* 0 when sub/id.msg reads as an outbox message (envelope and all). */
int smtpc__outbox_entry_check(smtpc_outbox *ob, const char *sub, const char *id);

#endif
