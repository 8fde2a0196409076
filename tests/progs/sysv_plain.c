/*
 * sysv_plain: an ordinary System V shared memory program, built with no
 * knowledge of shmfs, for running under LD_PRELOAD=libshmfs-preload.so.
 *
 *   sysv_plain life KEY     create, attach, fork a reader, stat, detach,
 *                           remove; prints one line per step, exit 0 if
 *                           every step gave what the kernel would
 *   sysv_plain keep KEY TEXT  create KEY (4096 bytes), write TEXT at offset
 *                           0, detach, leave it; prints the shmid
 *   sysv_plain get KEY      shmget(KEY, 4096, IPC_CREAT | 0600); prints
 *                           "shmid N" or "errno NAME"
 *   sysv_plain pause KEY    create and attach KEY, write to it, print
 *                           "ready", wait for a line on stdin, then try
 *                           each call again and print what each gave
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

static int failed;

static void check(int ok, const char *what)
{
	printf("%s %s\n", ok ? "ok" : "FAIL", what);
	if (!ok)
		failed = 1;
}

static unsigned long nattch(int id)
{
	struct shmid_ds ds;

	if (shmctl(id, IPC_STAT, &ds) < 0)
		return (unsigned long)-1;
	return (unsigned long)ds.shm_nattch;
}

static int life(key_t key)
{
	struct shmid_ds ds;
	int id, status;
	char *mem;
	pid_t pid;

	id = shmget(key, 10000, IPC_CREAT | IPC_EXCL | 0640);
	check(id >= 0, "shmget creates the key");
	if (id < 0)
		return 1;
	check(shmget(key, 0, 0) == id, "shmget finds the key");
	check(shmget(key, 20000, 0) < 0 && errno == EINVAL,
	      "shmget bigger than the segment: EINVAL");
	mem = shmat(id, NULL, 0);
	check(mem != (void *)-1, "shmat");
	if (mem == (void *)-1)
		return 1;
	strcpy(mem, "written by the parent");
	check(nattch(id) == 1, "nattch 1 after shmat");

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		int ok = strcmp(mem, "written by the parent") == 0 &&
			 nattch(id) == 2;

		strcpy(mem + 5000, "written by the child");
		_exit(ok ? 0 : 1);
	}
	check(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
		  WEXITSTATUS(status) == 0,
	      "child saw the data and nattch 2");
	check(strcmp(mem + 5000, "written by the child") == 0,
	      "parent sees the child's write");
	check(nattch(id) == 1, "nattch 1 after the child exited");

	check(shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_segsz == 10000 &&
		  (ds.shm_perm.mode & 0777) == 0640 &&
		  ds.shm_perm.__key == key && ds.shm_cpid == getpid(),
	      "IPC_STAT fields");
	check(shmdt(mem + 1) < 0 && errno == EINVAL, "shmdt unaligned: EINVAL");
	check(shmdt(mem) == 0, "shmdt");
	check(shmdt(mem) < 0 && errno == EINVAL, "second shmdt: EINVAL");
	check(nattch(id) == 0, "nattch 0 after shmdt");
	check(shmctl(id, IPC_RMID, NULL) == 0, "IPC_RMID");
	check(shmctl(id, IPC_STAT, &ds) < 0 && errno == EINVAL,
	      "IPC_STAT after IPC_RMID: EINVAL");
	check(shmget(key, 0, 0) < 0 && errno == ENOENT,
	      "key gone after IPC_RMID: ENOENT");
	return failed;
}

static int keep(key_t key, const char *text)
{
	int id = shmget(key, 4096, IPC_CREAT | 0600);
	char *mem;

	if (id < 0) {
		perror("shmget");
		return 1;
	}
	mem = shmat(id, NULL, 0);
	if (mem == (void *)-1) {
		perror("shmat");
		return 1;
	}
	strcpy(mem, text);
	if (shmdt(mem) < 0) {
		perror("shmdt");
		return 1;
	}
	printf("%d\n", id);
	return 0;
}

static void result(const char *what, int r)
{
	if (r < 0)
		printf("%s: %s\n", what, strerrorname_np(errno));
	else
		printf("%s: ok\n", what);
}

static int pause_then_retry(key_t key)
{
	struct shmid_ds ds;
	char line[16];
	int id = shmget(key, 4096, IPC_CREAT | 0600);
	char *mem = id < 0 ? (void *)-1 : shmat(id, NULL, 0);

	if (mem == (void *)-1) {
		perror("shmget/shmat");
		return 1;
	}
	strcpy(mem, "cached");
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	printf("memory: %s\n", mem);
	result("shmget", shmget(key, 0, 0));
	result("shmctl", shmctl(id, IPC_STAT, &ds));
	result("shmat", shmat(id, NULL, 0) == (void *)-1 ? -1 : 0);
	result("shmdt", shmdt(mem));
	return 0;
}

static int get(key_t key)
{
	int id = shmget(key, 4096, IPC_CREAT | 0600);

	if (id < 0) {
		int e = errno;

		printf("errno %s\n", e == ENOSYS ? "ENOSYS" : strerror(e));
		return 1;
	}
	printf("shmid %d\n", id);
	return 0;
}

int main(int argc, char **argv)
{
	key_t key;

	if (argc < 3) {
		fprintf(stderr,
			"usage: sysv_plain life|keep|get|pause KEY [TEXT]\n");
		return 2;
	}
	key = (key_t)strtoul(argv[2], NULL, 0);
	if (strcmp(argv[1], "life") == 0)
		return life(key);
	if (strcmp(argv[1], "keep") == 0 && argc > 3)
		return keep(key, argv[3]);
	if (strcmp(argv[1], "get") == 0)
		return get(key);
	if (strcmp(argv[1], "pause") == 0)
		return pause_then_retry(key);
	fprintf(stderr, "sysv_plain: unknown mode %s\n", argv[1]);
	return 2;
}
