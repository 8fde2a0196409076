/*
 * The LD_PRELOAD interposer: shmget, shmat, shmdt and shmctl defined here
 * come before glibc's in symbol lookup, so an unmodified program's SysV
 * shared memory goes to the shmfs mount.  Nothing here falls back to the
 * kernel: with no daemon the calls fail with ENOSYS (see libshmfs(3)),
 * because a program whose segments silently went to the kernel would not
 * share them with its shmfs peers.
 */
#include "shmfs.h"

int shmget(key_t key, size_t size, int shmflg)
{
	return shmfs_shmget(key, size, shmflg);
}

void *shmat(int shmid, const void *shmaddr, int shmflg)
{
	return shmfs_shmat(shmid, shmaddr, shmflg);
}

int shmdt(const void *shmaddr)
{
	return shmfs_shmdt(shmaddr);
}

int shmctl(int shmid, int cmd, struct shmid_ds *buf)
{
	return shmfs_shmctl(shmid, cmd, buf);
}
