/*
 * The keeper word of the published table (alive.h).  A reader trusts the
 * table only while the process that names it (daemon_pid: the holder,
 * or the daemon without one) lives.  Asking the kernel at each read (a
 * pidfd's poll) costs a system call per IPC_STAT, more than the rest of
 * the read; instead, one thread of that process registers the word as
 * the only entry of its robust futex list, with its TID in it.  When the
 * thread exits, the kernel, in its exit and before anyone can reap the
 * process, writes FUTEX_OWNER_DIED there (futex(2), set_robust_list(2)).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "alive.h"
#include "shmfs_proto.h"

static struct robust_list_head head;
static struct robust_list entry;

int alive_hold(uint32_t *word)
{
	head.list.next = &entry;
	entry.next = &head.list;
	head.futex_offset = (long)((char *)word - (char *)&entry);
	head.list_op_pending = NULL;
	__atomic_store_n(word, (uint32_t)gettid(), __ATOMIC_RELEASE);
	if (syscall(SYS_set_robust_list, &head, sizeof(head)) < 0) {
		int err = -errno;

		__atomic_store_n(word, 0, __ATOMIC_RELEASE);
		return err;
	}
	return 0;
}

static void *hold_forever(void *word)
{
	int ready[2] = { -1, -1 };
	char c;

	if (alive_hold(word) < 0)
		return NULL;
	/* nothing ever comes: the thread ends with the process */
	if (pipe2(ready, O_CLOEXEC) < 0)
		for (;;)
			pause();
	for (;;)
		if (read(ready[0], &c, 1) < 0 && errno != EINTR)
			pause();
}

int alive_hold_thread(uint32_t *word)
{
	pthread_attr_t a;
	pthread_t t;
	int err;

	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 64 * 1024);
	err = pthread_create(&t, &a, hold_forever, word);
	pthread_attr_destroy(&a);
	if (!err)
		pthread_setname_np(t, "shmfs-alive");
	return -err;
}

void alive_holder_tick(const char *dir)
{
	static struct shmfs_table *tab;
	char path[4096];
	struct stat st;
	void *m;
	int fd;

	if (tab)
		return;
	snprintf(path, sizeof(path), "%s/table.%d", dir, (int)getpid());
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size != sizeof(*tab)) {
		close(fd);
		return;
	}
	m = mmap(NULL, sizeof(*tab), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return;
	if (__atomic_load_n(&((struct shmfs_table *)m)->magic,
			    __ATOMIC_ACQUIRE) != SHMFS_TABLE_MAGIC ||
	    ((struct shmfs_table *)m)->daemon_pid != (int32_t)getpid() ||
	    alive_hold(&((struct shmfs_table *)m)->alive) < 0) {
		munmap(m, sizeof(*tab));
		return;
	}
	tab = m;
}
