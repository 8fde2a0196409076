/* A child that aborts the daemon's FUSE connection if the daemon dies
 * with a thread it cannot end (see reaper.c). */
#ifndef SHMFS_REAPER_H
#define SHMFS_REAPER_H

#include <sys/types.h>

/* Fork the reaper for the connection whose superblock is dev.  Call it
 * once the serving process is final and before it starts any thread. */
int reaper_start(dev_t dev);

#endif
