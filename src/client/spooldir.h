/* The rule for a directory the library writes files into: the outbox (and
 * its queue/, failed/, tmp/) and a pickup directory. Whoever can write
 * into it can plant symbolic links or files under the names the writer
 * uses, swap messages and envelopes, or read what is spooled. */
#ifndef SMTPC_CLIENT_SPOOLDIR_H
#define SMTPC_CLIENT_SPOOLDIR_H

#include <stdbool.h>
#include <stddef.h>

/* 0, or SMTPC_ECONFIG with why ("outbox DIR: owned by another user") in
 * why[0..len), or SMTPC_EIO when it cannot be examined or is not a
 * directory (symbolic links to one are followed). Private (the outbox):
 * owned by the effective user, not writable by group or others. Shared (a
 * pickup directory, which a relay reads): owned by the effective user or
 * root; group-writable allowed; writable by others only with the sticky
 * bit (like /tmp: others then cannot rename or remove what we wrote). */
int smtpc__spool_dir_check(const char *what, const char *path, bool shared, char *why, size_t len);

#endif
