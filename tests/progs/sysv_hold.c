/*
 * sysv_hold: make a segment and hold it in a given state while other
 * programs look at it; built with no knowledge of shmfs, for running
 * under LD_PRELOAD=libshmfs-preload.so.
 *
 *   sysv_hold KEY SIZE MODE [STEPS]
 *
 * shmget(KEY, SIZE, IPC_CREAT | IPC_EXCL | MODE) (KEY 0 is IPC_PRIVATE;
 * numbers in C notation), then each letter of STEPS in turn: a = shmat,
 * l = SHM_LOCK, u = SHM_UNLOCK, r = IPC_RMID, d = shmdt.  Prints
 * "shmid N" and "ready", waits for a line (or end of file) on stdin, and
 * exits 0, detaching whatever is still attached.  On a failed step it
 * prints "FAIL step: error" and exits 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>

static int fail(const char *what)
{
	printf("FAIL %s: %s\n", what, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	const char *steps = argc > 4 ? argv[4] : "";
	char line[64];
	void *mem = NULL;
	int id;

	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: sysv_hold KEY SIZE MODE [STEPS]\n");
		return 2;
	}
	id = shmget((key_t)strtol(argv[1], NULL, 0),
		    (size_t)strtoull(argv[2], NULL, 0),
		    IPC_CREAT | IPC_EXCL | (int)strtol(argv[3], NULL, 8));
	if (id < 0)
		return fail("shmget");
	for (; *steps; steps++) {
		switch (*steps) {
		case 'a':
			mem = shmat(id, NULL, 0);
			if (mem == (void *)-1)
				return fail("shmat");
			break;
		case 'l':
			if (shmctl(id, SHM_LOCK, NULL) < 0)
				return fail("SHM_LOCK");
			break;
		case 'u':
			if (shmctl(id, SHM_UNLOCK, NULL) < 0)
				return fail("SHM_UNLOCK");
			break;
		case 'r':
			if (shmctl(id, IPC_RMID, NULL) < 0)
				return fail("IPC_RMID");
			break;
		case 'd':
			if (!mem || shmdt(mem) < 0)
				return fail("shmdt");
			mem = NULL;
			break;
		default:
			fprintf(stderr, "sysv_hold: unknown step %c\n", *steps);
			return 2;
		}
	}
	printf("shmid %d\nready\n", id);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin) && ferror(stdin))
		return fail("stdin");
	return 0;
}
