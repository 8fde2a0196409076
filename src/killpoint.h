/*
 * Fault injection for the failover tests: a server started with
 * SHMFS_TEST_KILLPOINTS=1 in its environment lets root arm a point by
 * name (the root's xattr user.shmfs.killpoint, "NAME" or "NAME:N"); the
 * Nth time a request reaches that point afterwards, the server SIGKILLs
 * itself there.  Without the variable the xattr is refused and every
 * point is one load and a branch.
 */
#ifndef SHMFS_KILLPOINT_H
#define SHMFS_KILLPOINT_H

#include <stdbool.h>

/* Read the environment (once, before any thread). */
void killpoint_init(void);
bool killpoint_enabled(void);
/* Arm NAME[:N]; -EINVAL for a malformed value, -EPERM when disabled. */
int killpoint_arm(const char *value, unsigned long len);
void killpoint(const char *name);

#endif
