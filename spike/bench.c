/*
 * spike/bench.c: what the pieces of issue 14's attach path cost on this
 * machine, against tsrv (spike/with_server.sh sets MNT and STATS).
 * Each subcommand prints the median of R runs of the per-call median
 * (or, for sub-microsecond operations, the per-call mean of a batch).
 *
 *   shm      the kernel's shmat+shmdt of an 8 KiB segment
 *   mmap     mmap+munmap of an already open passthrough descriptor
 *            (MAP_SHARED, RW): what shmat+shmdt would cost with the
 *            descriptor kept per process; no FUSE request at all
 *   oldpath  open+mmap+close+munmap (today's shmat+shmdt minus the
 *            detach ioctl): an OPEN round trip and a RELEASE
 *   atomic   an atomic add on a MAP_SHARED memfd page, uncontended
 *   pingpong two processes taking turns on one shared counter: the cost
 *            of a cache line moving between the CPUs, per turn
 *   rt       one FUSE round trip: an ioctl on ctl answered at once
 *   kctl     the kernel's IPC_STAT, IPC_SET, shmget(IPC_PRIVATE)+IPC_RMID
 *            and shmget of an existing key: the targets' denominators
 *   fork     fork+_exit+waitpid of a process holding: k = a kernel SysV
 *            attach; p = a passthrough mapping, no ctl descriptor;
 *            c = a passthrough mapping and an inherited ctl descriptor
 *            (its exit sends FLUSH, which waitpid waits for)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int R = 5, N = 2000;

static inline uint64_t ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmpd);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef void (*op_fn)(void *);

/* median over R runs of the per-call median (µs) of N calls */
static void run(const char *name, op_fn fn, void *arg, int n)
{
	double *t = malloc(sizeof(double) * (size_t)n), runs[32];
	int r, i;

	for (i = 0; i < n / 10 + 1; i++) /* warm up */
		fn(arg);
	for (r = 0; r < R; r++) {
		for (i = 0; i < n; i++) {
			uint64_t a = ns();

			fn(arg);
			t[i] = (double)(ns() - a) / 1000.0;
		}
		runs[r] = median(t, n);
	}
	printf("%-34s", name);
	for (r = 0; r < R; r++)
		printf(" %7.2f", runs[r]);
	printf("   median %7.2f us\n", median(runs, R));
	free(t);
}

static int shmid;
static void op_shm(void *a)
{
	void *p = shmat(shmid, NULL, 0);

	(void)a;
	if (p == (void *)-1 || shmdt(p))
		abort();
}

static void op_stat(void *a)
{
	struct shmid_ds ds;

	(void)a;
	if (shmctl(shmid, IPC_STAT, &ds))
		abort();
}

static void op_set(void *a)
{
	struct shmid_ds ds;

	(void)a;
	if (shmctl(shmid, IPC_STAT, &ds))
		abort();
	ds.shm_perm.mode = 0600;
	if (shmctl(shmid, IPC_SET, &ds))
		abort();
}

static void op_private(void *a)
{
	int id = shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0600);

	(void)a;
	if (id < 0 || shmctl(id, IPC_RMID, NULL))
		abort();
}

static void op_getkey(void *a)
{
	(void)a;
	if (shmget(0x1414, 8192, 0600) < 0)
		abort();
}

static int segfd;
static void op_mmap(void *a)
{
	void *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, segfd, 0);

	(void)a;
	if (p == MAP_FAILED || munmap(p, 8192))
		abort();
}

static char segpath[512], ctlpath[512];
static void op_oldpath(void *a)
{
	int fd = open(segpath, O_RDWR | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	void *p;

	(void)a;
	if (fd < 0)
		abort();
	p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED || munmap(p, 8192))
		abort();
}

struct ioc16 {
	uint64_t a, b;
};
static int ctlfd;
static void op_rt(void *a)
{
	struct ioc16 v = { 1, 2 };

	(void)a;
	if (ioctl(ctlfd, _IOWR('S', 1, struct ioc16), &v) < 0)
		abort();
}

static int fork_mode;
static void op_fork(void *a)
{
	pid_t p = fork();
	int s;

	(void)a;
	if (p == 0)
		_exit(0);
	if (p < 0 || waitpid(p, &s, 0) != p)
		abort();
}

static void paths(void)
{
	const char *mnt = getenv("MNT");

	if (!mnt) {
		fprintf(stderr, "run under spike/with_server.sh\n");
		exit(2);
	}
	snprintf(segpath, sizeof(segpath), "%s/seg", mnt);
	snprintf(ctlpath, sizeof(ctlpath), "%s/ctl", mnt);
}

static void b_atomic(void)
{
	int fd = memfd_create("pg", 0), r;
	uint64_t *p, t0;
	double runs[32];
	const int M = 2000000;

	if (ftruncate(fd, 4096) < 0)
		abort();
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	for (r = 0; r < R; r++) {
		t0 = ns();
		for (int i = 0; i < M; i++)
			__atomic_fetch_add(p, 1, __ATOMIC_SEQ_CST);
		runs[r] = (double)(ns() - t0) / M;
	}
	printf("%-34s median %7.2f ns per add\n", "atomic add, shared page",
	       median(runs, R));
}

static void b_pingpong(void)
{
	int fd = memfd_create("pg", 0), r;
	volatile uint64_t *p;
	const uint64_t M = 200000;
	double runs[32];

	if (ftruncate(fd, 4096) < 0)
		abort();
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	for (r = 0; r < R; r++) {
		pid_t c;
		uint64_t t0;

		*p = 0;
		c = fork();
		if (c == 0) {
			for (uint64_t i = 1; i < 2 * M; i += 2) {
				while (__atomic_load_n(p, __ATOMIC_ACQUIRE) != i)
					;
				__atomic_fetch_add(p, 1, __ATOMIC_SEQ_CST);
			}
			_exit(0);
		}
		t0 = ns();
		for (uint64_t i = 0; i < 2 * M; i += 2) {
			while (__atomic_load_n(p, __ATOMIC_ACQUIRE) != i)
				;
			__atomic_fetch_add(p, 1, __ATOMIC_SEQ_CST);
		}
		runs[r] = (double)(ns() - t0) / (2.0 * M);
		waitpid(c, NULL, 0);
	}
	printf("%-34s median %7.2f ns per turn\n",
	       "atomic add, line bouncing 2 CPUs", median(runs, R));
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "";

	if (getenv("BENCH_R"))
		R = atoi(getenv("BENCH_R"));
	if (getenv("BENCH_N"))
		N = atoi(getenv("BENCH_N"));
	if (!strcmp(what, "shm")) {
		shmid = shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0600);
		run("kernel shmat+shmdt", op_shm, NULL, N);
		shmctl(shmid, IPC_RMID, NULL);
	} else if (!strcmp(what, "kctl")) {
		shmid = shmget(0x1414, 8192, IPC_CREAT | 0600);
		run("kernel IPC_STAT", op_stat, NULL, N);
		run("kernel IPC_STAT+IPC_SET", op_set, NULL, N);
		run("kernel shmget(IPC_PRIVATE)+RMID", op_private, NULL, N);
		run("kernel shmget(existing key)", op_getkey, NULL, N);
		shmctl(shmid, IPC_RMID, NULL);
	} else if (!strcmp(what, "mmap")) {
		paths();
		segfd = open(segpath, O_RDWR);
		run("mmap+munmap, open passthrough fd", op_mmap, NULL, N);
		close(segfd);
	} else if (!strcmp(what, "oldpath")) {
		paths();
		run("open+mmap+close+munmap (today)", op_oldpath, NULL, N);
	} else if (!strcmp(what, "atomic")) {
		b_atomic();
	} else if (!strcmp(what, "pingpong")) {
		b_pingpong();
	} else if (!strcmp(what, "rt")) {
		paths();
		ctlfd = open(ctlpath, O_RDWR);
		run(argc > 2 ? argv[2] : "FUSE round trip (ioctl)", op_rt, NULL,
		    N);
		close(ctlfd);
	} else if (!strcmp(what, "fork")) {
		char m = argc > 2 ? argv[2][0] : 'k';
		void *p = NULL;
		int fd = -1, n = N / 4;

		paths();
		fork_mode = m;
		if (m == 'k') {
			shmid = shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0600);
			p = shmat(shmid, NULL, 0);
			shmctl(shmid, IPC_RMID, NULL);
			run("fork+exit+wait, kernel attach", op_fork, NULL, n);
		} else {
			fd = open(segpath, O_RDWR);
			p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED,
				 fd, 0);
			close(fd);
			if (m == 'c')
				ctlfd = open(ctlpath, O_RDWR);
			run(m == 'c' ? "fork+exit+wait, pt map + ctl fd"
				     : "fork+exit+wait, pt map, no ctl",
			    op_fork, NULL, n);
		}
		(void)p;
	} else {
		fprintf(stderr, "usage: bench shm|mmap|oldpath|atomic|pingpong|"
				"rt [label]|fork k|p|c\n");
		return 2;
	}
	return 0;
}
