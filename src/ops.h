/* The FUSE front end: paths and file calls onto seg.c and perm.c. */
#ifndef SHMFS_OPS_H
#define SHMFS_OPS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <stdbool.h>

extern const struct fuse_lowlevel_ops shmfs_ops;

/* Start and stop the thread that drops names the kernel caches; holder:
 * the holder's pid, or 0. */
int ops_start(struct fuse_session *se, int verbose, const char *table_path,
	      pid_t holder);
/* From a signal handler: stop serving for a successor (no unmount, no
 * file released). */
void ops_handover(void);
bool ops_handing_over(void);
/* An open the kernel never took (its caller died during a failover):
 * released as its RELEASE would have released it. */
void ops_abandoned_open(uint64_t fh);
void ops_stop(void);
/* Given to seg.c: a shmid is gone for good. */
void ops_shmid_freed(int shmid, bool named);

#endif
