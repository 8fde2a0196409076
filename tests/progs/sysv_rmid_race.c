/*
 * sysv_rmid_race: shmat and shmdt in a loop against an IPC_RMID at a
 * random moment, for the counts kept without a request (lib/fastpath.c):
 * each round, a child attaches and detaches a segment as fast as it can
 * (after the first attach, from the library's kept descriptor) while the
 * parent removes the segment; then the child detaches what it holds and
 * ends.  After every round the removed segment must be gone (its shmid
 * EINVAL), never left with no attach and nobody to free it, and no shmat
 * may have succeeded on a segment already freed.  Built with no
 * knowledge of shmfs, for LD_PRELOAD=libshmfs-preload.so; the same
 * program runs on the kernel.
 *
 *   sysv_rmid_race ROUNDS      prints "ok ROUNDS" or "FAIL ..." and
 *                              exits 1
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HELD 4

static int child(int id, int hold, int ready, int go)
{
	struct shmid_ds ds;
	void *held[HELD];
	int n = 0, i, loops;
	char c;

	/* a round in four, one attach held throughout and more
	 * on the way: the parent's IPC_RMID finds it attached and leaves
	 * the free to our last detach; the others, attaches that end
	 * at once, until the child sees the removal */
	if (hold) {
		held[n] = shmat(id, NULL, 0);
		if (held[n] == (void *)-1)
			return 2;
		n++;
	}
	/* the parent removes the segment from now on */
	if (write(ready, "r", 1) != 1)
		return 3;
	for (loops = 0; loops < 3000; loops++) {
		void *p = shmat(id, NULL, 0);

		if (p == (void *)-1) {
			/* removed and freed: the only error there may be */
			if (errno != EINVAL && errno != EIDRM)
				return 4;
			break;
		}
		*(volatile char *)p = 1;
		if (hold && n < HELD && loops % 7 == 0) {
			held[n++] = p;
			continue;
		}
		if (shmdt(p) < 0)
			return 5;
		/* as a program that stops using a segment once it sees it
		 * removed: its last detach is then the one nearest the
		 * removal */
		if (!hold && shmctl(id, IPC_STAT, &ds) == 0 &&
		    (ds.shm_perm.mode & SHM_DEST))
			break;
	}
	for (i = 0; i < n; i++)
		if (shmdt(held[i]) < 0)
			return 6;
	/* done, and alive: the end of our session settles nothing the
	 * parent then looks at */
	if (write(ready, "d", 1) != 1 || read(go, &c, 1) != 1)
		return 7;
	return 0;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 100, r;

	srand((unsigned)time(NULL));
	for (r = 0; r < rounds; r++) {
		struct shmid_ds ds = { 0 };
		int p[2], q[2], id, status = 0, gone;
		pid_t pid;
		char c;

		id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
		if (id < 0 || pipe(p) < 0 || pipe(q) < 0) {
			printf("FAIL round %d: shmget or pipe: %s\n", r,
			       strerror(errno));
			return 1;
		}
		fflush(stdout);
		pid = fork();
		if (pid < 0) {
			printf("FAIL fork: %s\n", strerror(errno));
			return 1;
		}
		if (pid == 0) {
			close(p[0]);
			close(q[1]);
			_exit(child(id, r % 4 == 3, p[1], q[0]));
		}
		close(p[1]);
		close(q[0]);
		if (read(p[0], &c, 1) != 1)
			return 1;
		usleep((useconds_t)(rand() % 3000));
		if (shmctl(id, IPC_RMID, NULL) < 0) {
			printf("FAIL round %d: IPC_RMID: %s\n", r,
			       strerror(errno));
			return 1;
		}
		/* every attach ended, the segment was removed: it is gone,
		 * while the child still lives */
		gone = read(p[0], &c, 1) == 1 &&
		       shmctl(id, IPC_STAT, &ds) < 0 && errno == EINVAL;
		if (write(q[1], "x", 1) != 1)
			return 1;
		close(p[0]);
		close(q[1]);
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
		    WEXITSTATUS(status)) {
			printf("FAIL round %d: the child ended with status "
			       "%#x\n",
			       r, status);
			return 1;
		}
		if (!gone) {
			printf("FAIL round %d: shmid %d still there after its "
			       "removal and last detach (nattch %lu)\n",
			       r, id, (unsigned long)ds.shm_nattch);
			return 1;
		}
	}
	printf("ok %d\n", rounds);
	return 0;
}
