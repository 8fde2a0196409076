/* What the daemon asks of the host: limits, processes, the mount's bdi. */
#ifndef SHMFS_SYSINFO_H
#define SHMFS_SYSINFO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "seg.h"

int sysinfo_init(void);
void sysinfo_fini(void);
void sysinfo_host_limits(struct seg_limits *out, unsigned want);
/* The thread group of a thread id (FUSE reports thread ids). */
pid_t sysinfo_tgid(pid_t tid);
pid_t sysinfo_parent(pid_t tgid);
bool sysinfo_mm_gone(pid_t tid);
int sysinfo_children(pid_t tgid, pid_t **out);
/* A process's RLIMIT_MEMLOCK soft limit, read from the host, not asked. */
uint64_t sysinfo_memlock(pid_t pid);
/* A process's place in the order of births, and the next one's. */
uint64_t sysinfo_born(pid_t tgid);
uint64_t sysinfo_next_born(void);
/* A successor: births go on from at, a next_born() of a dead server. */
void sysinfo_born_resume(uint64_t at);
uint64_t sysinfo_commit_room(void);
/* A mount point as mountinfo escapes it (\\040 for a space) names path. */
bool sysinfo_mountinfo_path_is(const char *field, const char *path);
/* The device of the FUSE mount at mountpoint, without asking the mount. */
int sysinfo_mount_dev(const char *mountpoint, dev_t *dev);
/* Lift the per-mount dirty limit of that device (shmfs(7), DATA). */
int sysinfo_lift_bdi(dev_t dev);

#endif
