/* What the daemon asks of the host: limits, processes, the mount's bdi. */
#ifndef SHMFS_SYSINFO_H
#define SHMFS_SYSINFO_H

#include <sys/types.h>

#include "seg.h"

int sysinfo_init(void);
void sysinfo_fini(void);
void sysinfo_host_limits(struct seg_limits *out, unsigned want);
/* The thread group of a thread id (FUSE reports thread ids). */
pid_t sysinfo_tgid(pid_t tid);
pid_t sysinfo_parent(pid_t tgid);
/* Start of a process and the time now, in clock ticks since boot. */
uint64_t sysinfo_start_time(pid_t tgid);
uint64_t sysinfo_ticks_now(void);
uint64_t sysinfo_commit_room(void);
/* Lift the per-mount dirty limit of the mount at path (see FUSE-NOTES). */
int sysinfo_lift_bdi(const char *mountpoint);

#endif
