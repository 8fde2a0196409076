/*
 * libshmfs: System V shared memory served by a shmfs mount instead of the
 * kernel.  The four calls take the arguments of shmget(2), shmat(2),
 * shmdt(2) and shmctl(2) and give the same results and errno (Linux
 * semantics); see libshmfs(3) for where the mount is found and for the
 * few differences from the kernel.
 */
#ifndef SHMFS_H
#define SHMFS_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/ipc.h>
#include <sys/shm.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHMFS_LIB_VERSION_MAJOR 0
#define SHMFS_LIB_VERSION_MINOR 1

int shmfs_shmget(key_t key, size_t size, int shmflg);
void *shmfs_shmat(int shmid, const void *shmaddr, int shmflg);
int shmfs_shmdt(const void *shmaddr);
int shmfs_shmctl(int shmid, int cmd, struct shmid_ds *buf);

#ifdef __cplusplus
}
#endif

#endif
