/*
 * spike/facts.c: the kernel facts issue 14's design stands on, each a
 * subcommand run against tsrv (spike/with_server.sh sets MNT and STATS).
 *
 *   backing   Two OPENs of one inode answered with two different memfds
 *             (tsrv -b per): does each open file get its own backing
 *             file?  And after the first is released, does a new one?
 *   ioctl     ioctl(2) on a passthrough-opened file: sent to the server
 *             (FUSE_IOCTL), refused, or passed to the backing memfd?
 *   rdonly    A passthrough file opened O_RDONLY: mmap PROT_WRITE with
 *             MAP_SHARED, mprotect to writable afterwards, and a write
 *             through /proc/self/mem (FOLL_FORCE) must all fail.
 *   release   open, mmap, close of a passthrough file: when does RELEASE
 *             come (at close(2), or only at munmap), and what file does
 *             /proc/self/maps name for the mapping?
 *   flush     (tsrv -d 100) A forked child that inherited a descriptor
 *             of ctl: is FLUSH sent at its _exit, at its death by
 *             SIGKILL, before waitpid returns, with which pid?  Also a
 *             child whose main thread exits first (the last thread to go
 *             is then not the leader).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tsrv.h"

static const char *mnt;
static volatile struct tsrv_stats *st;
static char seg[512], ctl[512];

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void setup(void)
{
	const char *sp = getenv("STATS");
	int fd;

	mnt = getenv("MNT");
	if (!mnt || !sp) {
		fprintf(stderr, "run under spike/with_server.sh\n");
		exit(2);
	}
	fd = open(sp, O_RDONLY);
	st = mmap(NULL, sizeof(struct tsrv_stats), PROT_READ, MAP_SHARED, fd,
		  0);
	if (st == MAP_FAILED)
		exit(2);
	snprintf(seg, sizeof(seg), "%s/seg", mnt);
	snprintf(ctl, sizeof(ctl), "%s/ctl", mnt);
}

static char byte0(int fd)
{
	char c = '?';

	if (pread(fd, &c, 1, 0) != 1)
		return '!';
	return c;
}

static int t_backing(void)
{
	int a, b, c;
	char *ma, *mb;

	a = open(seg, O_RDWR);
	if (a < 0)
		return perror("open a"), 1;
	printf("open #1: ok, byte0 '%c'\n", byte0(a));
	b = open(seg, O_RDWR);
	if (b < 0) {
		printf("open #2 of the same inode with another memfd while "
		       "#1 is open: %s\n", strerror(errno));
	} else {
		printf("open #2: ok, byte0 '%c' (own backing: %s)\n", byte0(b),
		       byte0(a) != byte0(b) ? "yes" : "no");
		ma = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, a, 0);
		mb = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, b, 0);
		if (ma != MAP_FAILED && mb != MAP_FAILED) {
			ma[100] = 'x';
			printf("mmap: store via #1 seen via #2's mapping: %s\n",
			       mb[100] == 'x' ? "yes" : "no");
		}
		close(b);
	}
	close(a);
	usleep(20000); /* RELEASE is asynchronous */
	c = open(seg, O_RDWR);
	if (c < 0)
		printf("open #3 after #1,#2 closed: %s\n", strerror(errno));
	else
		printf("open #3 after #1,#2 closed: ok, byte0 '%c'\n", byte0(c));
	/* a mapping outlives the close: a 4th open while only it remains */
	if (c >= 0) {
		char *m = mmap(NULL, 8192, PROT_READ, MAP_SHARED, c, 0);
		int d;

		close(c);
		usleep(20000);
		d = open(seg, O_RDWR);
		printf("open #4 while only #3's mapping is left: %s",
		       d < 0 ? strerror(errno) : "ok");
		if (d >= 0)
			printf(", byte0 '%c'", byte0(d));
		printf("\n");
		if (d >= 0)
			close(d);
		munmap(m, 8192);
	}
	printf("open errors counted by tsrv: %u\n", st->open_errors);
	return 0;
}

struct ioc16 {
	uint64_t a, b;
};
#define TIOC _IOWR('S', 1, struct ioc16)

static int t_ioctl(void)
{
	struct ioc16 v = { 1, 2 };
	int fd = open(seg, O_RDWR), r;
	uint32_t before = st->ops[39];

	if (fd < 0)
		return perror("open seg"), 1;
	r = ioctl(fd, TIOC, &v);
	printf("ioctl on a passthrough-opened file: returns %d (%s); "
	       "FUSE_IOCTL requests seen: %u (node %llu)\n",
	       r, r < 0 ? strerror(errno) : "ok", st->ops[39] - before,
	       (unsigned long long)st->last_ioctl_node);
	r = ioctl(fd, FIONREAD, &v);
	printf("FIONREAD on it: %d (%s)\n", r, r < 0 ? strerror(errno) : "ok");
	close(fd);
	fd = open(seg, O_RDONLY);
	r = ioctl(fd, TIOC, &v);
	printf("same on an O_RDONLY passthrough open: %d (%s)\n", r,
	       r < 0 ? strerror(errno) : "ok");
	close(fd);
	return 0;
}

static int t_rdonly(void)
{
	int fd = open(seg, O_RDONLY), mfd;
	char *p, path[64];
	long r;

	if (fd < 0)
		return perror("open"), 1;
	p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	printf("O_RDONLY: mmap(PROT_READ|PROT_WRITE, MAP_SHARED): %s\n",
	       p == MAP_FAILED ? strerror(errno) : "SUCCEEDED");
	p = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return perror("mmap ro"), 1;
	r = mprotect(p, 8192, PROT_READ | PROT_WRITE);
	printf("O_RDONLY: mprotect(PROT_READ|PROT_WRITE) of a MAP_SHARED "
	       "read-only mapping: %s\n", r ? strerror(errno) : "SUCCEEDED");
	snprintf(path, sizeof(path), "/proc/self/mem");
	mfd = open(path, O_RDWR);
	r = pwrite(mfd, "Z", 1, (off_t)(uintptr_t)(p + 10));
	printf("O_RDONLY: write through /proc/self/mem into it: %s\n",
	       r < 0 ? strerror(errno) : "SUCCEEDED");
	close(mfd);
	r = write(fd, "Z", 1);
	printf("O_RDONLY: write(2) on the descriptor: %s\n",
	       r < 0 ? strerror(errno) : "SUCCEEDED");
	munmap(p, 8192);
	p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	printf("O_RDONLY: MAP_PRIVATE writable (copy on write, private): %s\n",
	       p == MAP_FAILED ? strerror(errno) : "allowed");
	if (p != MAP_FAILED) {
		p[0] = 'P';
		printf("  store in it reaches the file: %s\n",
		       byte0(fd) == 'P' ? "YES" : "no");
		munmap(p, 8192);
	}
	close(fd);
	return 0;
}

static int t_release(void)
{
	int fd = open(seg, O_RDWR);
	uint32_t r0 = st->ops[18];
	char *p, line[512];
	FILE *m;

	p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	usleep(20000);
	printf("RELEASE after close(2) with the mapping still there: %s\n",
	       st->ops[18] != r0 ? "yes" : "no");
	m = fopen("/proc/self/maps", "r");
	while (fgets(line, sizeof(line), m))
		if (strtoul(line, NULL, 16) == (uintptr_t)p)
			printf("maps: %s", line);
	fclose(m);
	munmap(p, 8192);
	return 0;
}

static void *late_thread(void *arg)
{
	(void)arg;
	usleep(30000);
	syscall(SYS_exit, 0); /* this thread only: it is the group's last */
	return NULL;
}

/* mode 0: _exit, 1: SIGKILL, 2: leader exits first, 3: exec (CLOEXEC) */
static void one_child(int mode, int fd)
{
	uint32_t before = st->flushes_done;
	double t0, t1;
	pid_t pid;
	int status;
	pthread_t t;

	pid = fork();
	if (pid == 0) {
		if (mode == 0)
			_exit(0);
		if (mode == 1)
			pause();
		if (mode == 2) {
			pthread_create(&t, NULL, late_thread, NULL);
			syscall(SYS_exit, 0); /* the leader alone */
		}
		if (mode == 3) {
			execl("/bin/true", "true", (char *)NULL);
			_exit(1);
		}
		_exit(0);
	}
	if (mode == 1)
		usleep(20000);
	t0 = now_ms();
	if (mode == 1)
		kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	t1 = now_ms();
	printf("%-22s FLUSH done before waitpid returned: %s; pid in "
	       "header %u (child %d); waitpid took %.1f ms; lock_owner %#llx\n",
	       mode == 0 ? "child _exit:" : mode == 1 ? "child SIGKILL:"
				       : mode == 2 ? "child, leader first:"
						   : "child execve(CLOEXEC):",
	       st->flushes_done != before ? "yes" : "NO",
	       st->last_flush_pid, pid, t1 - t0,
	       (unsigned long long)st->last_flush_owner);
	(void)fd;
}

static int t_flush(void)
{
	int fd = open(ctl, O_RDWR), fd2;
	uint32_t before;

	if (fd < 0)
		return perror("open ctl"), 1;
	printf("parent pid %d (FLUSH answered after the server's delay)\n",
	       getpid());
	one_child(0, fd);
	one_child(1, fd);
	one_child(2, fd);
	/* exec: the descriptor must be close-on-exec */
	fd2 = open(ctl, O_RDWR | O_CLOEXEC);
	close(fd);
	usleep(150000);
	one_child(3, fd2);
	before = st->flushes_done;
	close(fd2);
	printf("parent close: FLUSH %s, pid %u\n",
	       st->flushes_done != before ? "yes" : "NO", st->last_flush_pid);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	setup();
	if (!strcmp(argv[1], "backing"))
		return t_backing();
	if (!strcmp(argv[1], "ioctl"))
		return t_ioctl();
	if (!strcmp(argv[1], "rdonly"))
		return t_rdonly();
	if (!strcmp(argv[1], "flush"))
		return t_flush();
	if (!strcmp(argv[1], "release"))
		return t_release();
	if (!strcmp(argv[1], "uring")) {
		/* tsrv -u: how far the io_uring setup got */
		printf("uring: stage %d (1 rings made, 3 REGISTER failed, "
		       "4 a request came through a ring), register result %d, "
		       "requests served through rings %u, first error: %s\n",
		       st->uring_stage, st->uring_register_result, st->ops[63],
		       st->uring_note[0] ? st->uring_note : "none");
		return 0;
	}
	return 2;
}
