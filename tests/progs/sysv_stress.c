/*
 * sysv_stress: plain SysV calls under load, for libshmfs-preload.so.
 *
 *   sysv_stress many N          N attaches of one segment in one process,
 *                               a fork that inherits them all, detaches
 *   sysv_stress threads T I F   T threads each attach/detach I times while
 *                               the main thread forks F children that
 *                               detach what they inherited
 *   sysv_stress forkfail        fork keeps errno; a fork that fails (clone
 *                               refused by a seccomp filter) leaves nattch
 *                               as it was
 *   sysv_stress overlap         attaches mapped over other attachments
 *                               (after a munmap, with SHM_REMAP): the end
 *                               states the kernel and libshmfs agree on
 *   sysv_stress closeall        a child closes every descriptor >= 3 and
 *                               opens files of its own; its shm calls
 *                               still work and its files stay open
 *
 * Prints "FAIL ..." lines for anything wrong, "ok ..." at the end; exit 0
 * only if nothing failed.  The segment is removed before exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

static int failed;

#define FAIL(...)                                                              \
	do {                                                                   \
		printf("FAIL " __VA_ARGS__);                                   \
		putchar('\n');                                                 \
		failed = 1;                                                    \
	} while (0)

static unsigned long nattch(int id)
{
	struct shmid_ds ds;

	if (shmctl(id, IPC_STAT, &ds) < 0)
		return (unsigned long)-1;
	return (unsigned long)ds.shm_nattch;
}

static int many(int id, int n)
{
	char **at = calloc((size_t)n, sizeof(*at));
	int i, status, half = n / 2;
	pid_t pid;

	for (i = 0; i < n; i++) {
		at[i] = shmat(id, NULL, 0);
		if (at[i] == (void *)-1) {
			/* EMFILE past shmseg: undo, and say so */
			FAIL("shmat %d: %s", i, strerror(errno));
			while (i-- > 0)
				shmdt(at[i]);
			free(at);
			return 1;
		}
		at[i][i % 4096] = (char)i;
	}
	if (nattch(id) != (unsigned long)n)
		FAIL("nattch %lu after %d attaches", nattch(id), n);

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		/* Every inherited attach is counted, and each is detachable. */
		int bad = nattch(id) != 2UL * (unsigned long)n;

		for (i = 0; i < half; i++)
			bad |= shmdt(at[i]) != 0;
		bad |=
		    nattch(id) != 2UL * (unsigned long)n - (unsigned long)half;
		_exit(bad);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		FAIL("child with %d inherited attaches", n);
	if (nattch(id) != (unsigned long)n)
		FAIL("nattch %lu after the child exited, want %d", nattch(id),
		     n);
	for (i = 0; i < n; i++)
		if (shmdt(at[i]) != 0)
			FAIL("shmdt %d: %s", i, strerror(errno));
	if (nattch(id) != 0)
		FAIL("nattch %lu after detaching all", nattch(id));
	free(at);
	if (!failed)
		printf("ok many %d\n", n);
	return failed;
}

struct worker {
	pthread_t thread;
	int id;
	int iters;
	int errors;
	_Atomic(char *) current; /* non-NULL while attached */
};

static void *work(void *arg)
{
	struct worker *w = arg;
	int i;

	for (i = 0; i < w->iters; i++) {
		char *p = shmat(w->id, NULL, (i & 1) ? SHM_RDONLY : 0);

		if (p == (void *)-1) {
			w->errors++;
			continue;
		}
		atomic_store(&w->current, p);
		if (!(i & 1))
			p[4096 + i % 100] = 1;
		/* Cleared before shmdt: a fork that sees it set inherits p. */
		atomic_store(&w->current, NULL);
		if (shmdt(p) != 0)
			w->errors++;
	}
	return NULL;
}

static void *attach_and_exit(void *arg)
{
	return shmat(*(int *)arg, NULL, SHM_RDONLY);
}

static int threads(int id, int nthreads, int iters, int forks)
{
	struct worker *w = calloc((size_t)nthreads, sizeof(*w));
	int i, t, status;
	pthread_t th;
	void *held;
	pid_t pid;

	/* An attach made by a thread that is gone belongs to the process. */
	if (pthread_create(&th, NULL, attach_and_exit, &id) != 0 ||
	    pthread_join(th, &held) != 0 || held == (void *)-1) {
		FAIL("attach from a thread");
		return 1;
	}
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(nattch(id) == 2 && shmdt(held) == 0 && nattch(id) == 1
			  ? 0
			  : 1);
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		FAIL("child did not inherit, as counted, a thread's attach");
	if (nattch(id) != 1)
		FAIL("nattch %lu after the child, want 1", nattch(id));
	if (shmdt(held) != 0)
		FAIL("shmdt of a thread's attach: %s", strerror(errno));

	for (t = 0; t < nthreads; t++) {
		w[t].id = id;
		w[t].iters = iters;
		if (pthread_create(&w[t].thread, NULL, work, &w[t]) != 0) {
			FAIL("pthread_create");
			return 1;
		}
	}
	for (i = 0; i < forks; i++) {
		fflush(stdout);
		pid = fork();
		if (pid == 0) {
			int bad = 0;

			for (t = 0; t < nthreads; t++) {
				char *p = atomic_load(&w[t].current);

				if (p && shmdt(p) != 0)
					bad = 1;
			}
			_exit(bad);
		}
		if (pid < 0 || waitpid(pid, &status, 0) != pid ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			FAIL(
			    "fork %d: child could not detach what it inherited",
			    i);
	}
	for (t = 0; t < nthreads; t++) {
		pthread_join(w[t].thread, NULL);
		if (w[t].errors)
			FAIL("thread %d: %d failed calls", t, w[t].errors);
	}
	if (nattch(id) != 0)
		FAIL("nattch %lu after every thread and child is done",
		     nattch(id));
	free(w);
	if (!failed)
		printf("ok threads %d x %d, %d forks\n", nthreads, iters,
		       forks);
	return failed;
}

/* From here on clone and clone3 fail with EAGAIN, as under a pids limit. */
static int refuse_clone(void)
{
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		     offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 2, 0),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 1, 0),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return -1;
	return 0;
}

static int forkfail(int id)
{
	char *p = shmat(id, NULL, 0);
	int status;
	pid_t pid;

	if (p == (void *)-1) {
		FAIL("shmat: %s", strerror(errno));
		return 1;
	}
	fflush(stdout);
	errno = 1234;
	pid = fork();
	if (pid == 0)
		_exit(errno == 1234 && nattch(id) == 2 ? 0 : 1);
	if (errno != 1234)
		FAIL("errno %d after a fork that worked, was 1234", errno);
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		FAIL("child: errno or nattch wrong");
	if (refuse_clone() < 0) {
		FAIL("seccomp: %s", strerror(errno));
		return 1;
	}
	errno = 0;
	pid = fork();
	if (pid == 0)
		_exit(0);
	if (pid >= 0 || errno != EAGAIN)
		FAIL("fork gave %d errno %d, want -1 EAGAIN", (int)pid, errno);
	if (nattch(id) != 1)
		FAIL("nattch %lu after a failed fork, want 1", nattch(id));
	if (shmdt(p) != 0 || nattch(id) != 0)
		FAIL("shmdt after a failed fork");
	if (!failed)
		printf("ok forkfail\n");
	return failed;
}

static int overlap(int id)
{
	long page = sysconf(_SC_PAGESIZE);
	int small = shmget(IPC_PRIVATE, 100, IPC_CREAT | 0600);
	char *a, *b, *c;

	if (small < 0) {
		FAIL("shmget: %s", strerror(errno));
		return 1;
	}
	/* munmap()ed by the program, then attached over: A is detached. */
	a = shmat(id, NULL, 0);
	if (a == (void *)-1 || munmap(a, (size_t)(3 * page)) != 0) {
		FAIL("shmat/munmap: %s", strerror(errno));
		return 1;
	}
	c = shmat(small, a, 0);
	if (c != a)
		FAIL("shmat at a free address: %s", strerror(errno));
	if (nattch(id) != 0)
		FAIL("nattch %lu of the segment mapped over, want 0",
		     nattch(id));
	if (shmdt(a) != 0 || nattch(small) != 0)
		FAIL("shmdt detaches the new attachment at that address");

	/* SHM_REMAP into the middle of A: B survives A's shmdt. */
	a = shmat(id, NULL, 0);
	b = shmat(small, a + page, SHM_REMAP);
	if (a == (void *)-1 || b != a + page) {
		FAIL("SHM_REMAP into an attachment: %s", strerror(errno));
		return 1;
	}
	strcpy(b, "b");
	a[0] = 'a';
	if (shmdt(a) != 0)
		FAIL("shmdt of the outer attachment: %s", strerror(errno));
	if (strcmp(b, "b") != 0 || nattch(small) != 1)
		FAIL("the inner attachment lost");
	if (shmdt(b) != 0 || nattch(small) != 0 || nattch(id) != 0)
		FAIL("nattch %lu/%lu after both shmdt", nattch(id),
		     nattch(small));
	if (shmdt(a) == 0 || errno != EINVAL)
		FAIL("second shmdt of the outer attachment");
	shmctl(small, IPC_RMID, NULL);
	if (!failed)
		printf("ok overlap\n");
	return failed;
}

static int closeall(int id)
{
	char *a = shmat(id, NULL, 0);
	int status;
	pid_t pid;

	if (a == (void *)-1) {
		FAIL("shmat: %s", strerror(errno));
		return 1;
	}
	strcpy(a, "inherited");
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct shmid_ds ds;
		int mine[8], i, bad = 0;
		char *b;

		for (i = 3; i < 4096; i++)
			close(i);
		/* The program's own files take the numbers that are free. */
		for (i = 0; i < 8; i++)
			mine[i] = open("/dev/null", O_RDONLY);
		if (shmctl(id, IPC_STAT, &ds) != 0) {
			printf("FAIL child: IPC_STAT: %s\n", strerror(errno));
			bad = 1;
		}
		b = shmat(id, NULL, 0);
		if (b == (void *)-1 || strcmp(b, "inherited") != 0) {
			printf("FAIL child: shmat: %s\n", strerror(errno));
			bad = 1;
		} else if (shmdt(b) != 0) {
			printf("FAIL child: shmdt of its own: %s\n",
			       strerror(errno));
			bad = 1;
		}
		if (shmdt(a) != 0) {
			printf("FAIL child: shmdt of the inherited one: %s\n",
			       strerror(errno));
			bad = 1;
		}
		for (i = 0; i < 8; i++)
			if (mine[i] < 0 || fcntl(mine[i], F_GETFD) < 0) {
				printf("FAIL child: its file %d was closed\n",
				       i);
				bad = 1;
			}
		fflush(stdout);
		_exit(bad);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		FAIL("child that closed every descriptor");

	/*
	 * An attachment unmapped and its descriptor closed behind the
	 * library's back; the next attach likely gets the same address and
	 * descriptor number, and must survive the old record.
	 */
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		unsigned long n0;
		int i, bad = 0;
		char *b;

		/* Frees the lowest number for b, so the next attach gets it. */
		if (shmdt(a) != 0)
			_exit(2);
		b = shmat(id, NULL, 0);
		if (b == (void *)-1 || munmap(b, 4096 * 3) != 0)
			_exit(2);
		for (i = 3; i < 4096; i++)
			close(i);
		/* What is counted now differs (see libshmfs(3)); the steps not.
		 */
		n0 = nattch(id);
		b = shmat(id, NULL, 0);
		if (b == (void *)-1 || nattch(id) != n0 + 1) {
			printf("FAIL child: attach after munmap and close: "
			       "nattch %lu, was %lu\n",
			       nattch(id), n0);
			bad = 1;
		} else if (shmdt(b) != 0 || nattch(id) != n0) {
			printf("FAIL child: shmdt after munmap and close\n");
			bad = 1;
		}
		fflush(stdout);
		_exit(bad);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		FAIL("child that unmapped and closed an attachment");
	if (nattch(id) != 1)
		FAIL("nattch %lu after the child, want 1", nattch(id));
	if (shmdt(a) != 0 || nattch(id) != 0)
		FAIL("shmdt in the parent");
	if (!failed)
		printf("ok closeall\n");
	return failed;
}

int main(int argc, char **argv)
{
	int id, r;

	if (argc < 2) {
		fprintf(stderr, "usage: sysv_stress many N | threads T I F |"
				" forkfail | overlap | closeall\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	id = shmget(IPC_PRIVATE, 3 * 4096, IPC_CREAT | 0600);
	if (id < 0) {
		perror("shmget");
		return 1;
	}
	if (strcmp(argv[1], "forkfail") == 0)
		r = forkfail(id);
	else if (strcmp(argv[1], "overlap") == 0)
		r = overlap(id);
	else if (strcmp(argv[1], "closeall") == 0)
		r = closeall(id);
	else if (strcmp(argv[1], "many") == 0 && argc > 2)
		r = many(id, atoi(argv[2]));
	else if (strcmp(argv[1], "threads") == 0 && argc > 4)
		r = threads(id, atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	else
		r = 2;
	if (shmctl(id, IPC_RMID, NULL) != 0) {
		perror("shmctl IPC_RMID");
		r = 1;
	}
	return r;
}
