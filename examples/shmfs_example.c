/*
 * shmfs_example: the life of one segment through libshmfs.  It creates a
 * segment under a key, attaches it, writes a string, forks a child that
 * reads the string through its inherited attachment, shows shm_nattch as
 * IPC_STAT reports it along the way, detaches and removes the segment.
 *
 *   SHMFS_ROOT=/shm ./shmfs_example [key]
 *
 * Built against the installed library with
 *   cc shmfs_example.c $(pkg-config --cflags --libs shmfs)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shmfs.h>

#define MESSAGE "hello through shmfs"

static void die(const char *what)
{
	fprintf(stderr, "shmfs_example: %s: %s\n", what, strerror(errno));
	exit(1);
}

static unsigned long nattch(int id)
{
	struct shmid_ds ds;

	if (shmfs_shmctl(id, IPC_STAT, &ds) < 0)
		die("shmctl IPC_STAT");
	return (unsigned long)ds.shm_nattch;
}

int main(int argc, char **argv)
{
	key_t key = argc > 1 ? (key_t)strtoul(argv[1], NULL, 0) : 0x5348464d;
	int id, status;
	char *mem;
	pid_t pid;

	id = shmfs_shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0600);
	if (id < 0)
		die("shmget");
	printf("created key %#010x shmid %d\n", (unsigned)key, id);

	mem = shmfs_shmat(id, NULL, 0);
	if (mem == (void *)-1)
		die("shmat");
	strcpy(mem, MESSAGE);
	printf("parent wrote: %s\n", mem);
	printf("nattch after shmat: %lu\n", nattch(id));

	/* Nothing buffered may be printed twice by the child. */
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		/* The child inherited the attachment: fork counted it. */
		printf("child read: %s\n", mem);
		printf("nattch in the child: %lu\n", nattch(id));
		fflush(stdout);
		_exit(strcmp(mem, MESSAGE) == 0 ? 0 : 1);
	}
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "shmfs_example: child failed\n");
		return 1;
	}
	/* The child's exit was its detach. */
	printf("nattch after the child exited: %lu\n", nattch(id));

	if (shmfs_shmdt(mem) < 0)
		die("shmdt");
	printf("nattch after shmdt: %lu\n", nattch(id));
	if (shmfs_shmctl(id, IPC_RMID, NULL) < 0)
		die("shmctl IPC_RMID");
	printf("removed shmid %d\n", id);
	return 0;
}
