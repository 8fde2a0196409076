/* A child that aborts the daemon's FUSE connection if the daemon dies
 * with a thread it cannot end (see reaper.c). */
#ifndef SHMFS_REAPER_H
#define SHMFS_REAPER_H

#include <stdbool.h>
#include <sys/types.h>

/* Fork the reaper for the connection whose superblock is dev.  Call it
 * once the serving process is final and before it starts any thread.
 * With a holder (its pid, else 0), the reaper leaves the connection to
 * it while it lives: the holder's successor answers what is stuck. */
int reaper_start(dev_t dev, pid_t holder);

/* Also the holder's (holder.c): */
/* Threads of a process: 0 when it is gone, -1 when unknown; and whether
 * its main thread is gone (a zombie leader), when leader_gone is given. */
int proc_threads(pid_t pid, bool *leader_gone);
/* The fusectl directory of the connection whose superblock is dev
 * (mounting fusectl if need be), or -errno. */
int fusectl_dir(dev_t dev);
/* fusectl's abort through that directory; -ENOENT when the connection
 * is gone already. */
int fusectl_abort(int dir);

#endif
