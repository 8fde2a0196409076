/* The FUSE front end: paths and file calls onto seg.c and perm.c. */
#ifndef SHMFS_OPS_H
#define SHMFS_OPS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

extern const struct fuse_lowlevel_ops shmfs_ops;

/* Start and stop the thread that drops names the kernel caches. */
int ops_start(struct fuse_session *se, int verbose, const char *table_path);
void ops_stop(void);
/* Given to seg.c: a shmid is gone for good. */
void ops_shmid_freed(int shmid);

#endif
