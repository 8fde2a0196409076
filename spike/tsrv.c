/*
 * spike/tsrv.c: a tiny FUSE server written straight on /dev/fuse (no
 * libfuse), for the issue-14 experiments.  What it is for: to see what
 * THIS kernel sends and when, with nothing in between.
 *
 *   tsrv MNT STATS [-b per|one] [-n] [-d MS] [-t N] [-v] [-u]
 *
 * Nodes: MNT/seg (regular, 0666, 8192 bytes; every open is answered with
 * FOPEN_PASSTHROUGH), MNT/ctl (regular, 0666, size 0; no passthrough, no
 * FOPEN_NOFLUSH, so every close(2) of it sends FLUSH), MNT/plain (a
 * regular file served without passthrough, to mix opens).
 *   -b per  each OPEN of seg gets a memfd of its own (byte 0 = open seq)
 *   -b one  every OPEN of seg shares one memfd, registered once (default)
 *   -n      open seg with FOPEN_NOFLUSH too
 *   -d MS   answer each FLUSH of ctl only after MS milliseconds
 *   -t N    N threads read /dev/fuse (default 1)
 *   -v      log every request to stderr (opcode, pid, nodeid, fh, owner)
 *   -u      offer FUSE_OVER_IO_URING in the INIT reply (see uring.c)
 * STATS is a file the server maps (struct tsrv_stats, tsrv.h); the tests
 * map it too, to see counts and the pid of the last FLUSH.  The server
 * mounts MNT itself (root), writes "ready" to stdout, and serves until
 * the mount goes (fusermount3 -u MNT) or it gets SIGTERM.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "tsrv.h"

#define INO_SEG 2
#define INO_CTL 3
#define INO_PLAIN 4
#define SEG_SIZE 8192

struct backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define IOC_BACKING_OPEN _IOW(229, 1, struct backing_map)
#define IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)
#define FOPEN_PASSTHROUGH_ (1u << 7)
#define FLAGS2_PASSTHROUGH (1u << (37 - 32))
#define FLAGS2_OVER_IO_URING (1u << (41 - 32))

static int devfd = -1;
static struct tsrv_stats *st;
static int per_open, noflush, flush_delay_ms, verbose, want_uring;
static int one_backing; /* -b one: the shared backing id, 0 = none yet */
static int one_opens;
static pthread_mutex_t lk = PTHREAD_MUTEX_INITIALIZER;
static atomic_int open_seq;

static void fill_attr(uint64_t ino, struct fuse_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->ino = ino;
	a->nlink = 1;
	a->blksize = 4096;
	if (ino == FUSE_ROOT_ID) {
		a->mode = S_IFDIR | 0755;
		a->nlink = 2;
	} else {
		a->mode = S_IFREG | 0666;
		a->size = ino == INO_CTL ? 0 : SEG_SIZE;
	}
}

/* Where a reply goes when the request came through io_uring (uring.c). */
struct tsrv_sink {
	void *hdr; /* fuse_uring_req_header.in_out: the fuse_out_header */
	void *payload;
	size_t cap;
	uint32_t len; /* bytes of payload written */
};
static __thread struct tsrv_sink *sink;

void tsrv_set_sink(struct tsrv_sink *s)
{
	sink = s;
}

static void reply(uint64_t unique, int err, const void *p, size_t n)
{
	struct fuse_out_header h = { .len = sizeof(h) + (err ? 0 : n),
				     .error = err, .unique = unique };
	struct iovec v[2] = { { &h, sizeof(h) }, { (void *)p, n } };

	if (sink) {
		if (err || n > sink->cap)
			n = 0;
		memcpy(sink->hdr, &h, sizeof(h));
		if (n)
			memcpy(sink->payload, p, n);
		sink->len = (uint32_t)n;
		return;
	}

	if (writev(devfd, v, err || !n ? 1 : 2) < 0 && verbose)
		fprintf(stderr, "tsrv: reply %llu: %s\n",
			(unsigned long long)unique, strerror(errno));
}

static int new_memfd(int marker)
{
	int fd = memfd_create("tsrv-seg", MFD_CLOEXEC);

	if (fd < 0 || ftruncate(fd, SEG_SIZE) < 0)
		return -1;
	char c = (char)marker;
	if (pwrite(fd, &c, 1, 0) != 1)
		return -1;
	return fd;
}

static int backing_open(int fd)
{
	struct backing_map m = { .fd = fd };

	return ioctl(devfd, IOC_BACKING_OPEN, &m);
}

static void backing_close(int id)
{
	uint32_t v = (uint32_t)id;

	ioctl(devfd, IOC_BACKING_CLOSE, &v);
}

/* OPEN of seg: passthrough, per open or one shared memfd. */
static int open_seg(struct fuse_open_out *o)
{
	int id, fd, seq = atomic_fetch_add(&open_seq, 1) + 1;

	if (per_open) {
		fd = new_memfd('A' + (seq - 1) % 26);
		if (fd < 0)
			return -errno;
		id = backing_open(fd);
		close(fd); /* the backing id keeps it */
		if (id <= 0)
			return id < 0 ? -errno : -EIO;
	} else {
		pthread_mutex_lock(&lk);
		if (!one_backing) {
			fd = new_memfd('S');
			id = fd < 0 ? -1 : backing_open(fd);
			if (fd >= 0)
				close(fd);
			if (id <= 0) {
				pthread_mutex_unlock(&lk);
				return -EIO;
			}
			one_backing = id;
		}
		id = one_backing;
		one_opens++;
		pthread_mutex_unlock(&lk);
	}
	o->fh = (uint64_t)id;
	o->open_flags = FOPEN_PASSTHROUGH_ | (noflush ? FOPEN_NOFLUSH : 0);
	o->padding = (uint32_t)id; /* backing_id */
	return 0;
}

static void release_seg(uint64_t fh)
{
	if (per_open) {
		backing_close((int)fh);
		return;
	}
	/* -b one keeps its backing for the server's life */
	pthread_mutex_lock(&lk);
	one_opens--;
	pthread_mutex_unlock(&lk);
}

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static void do_init(const struct fuse_in_header *h, const void *arg)
{
	const struct fuse_init_in *in = arg;
	struct fuse_init_out o;

	memset(&o, 0, sizeof(o));
	o.major = FUSE_KERNEL_VERSION;
	o.minor = 44; /* the kernel takes the lower of its own and this */
	o.max_readahead = in->max_readahead;
	o.flags = FUSE_INIT_EXT | FUSE_MAX_PAGES |
		  (in->flags & (FUSE_ASYNC_READ | FUSE_BIG_WRITES));
	o.max_background = 16;
	o.congestion_threshold = 12;
	o.max_write = 65536;
	o.max_pages = 16;
	o.flags2 = FLAGS2_PASSTHROUGH | (want_uring ? FLAGS2_OVER_IO_URING : 0);
	o.unused[0] = 1; /* max_stack_depth */
	st->init_flags = in->flags;
	st->init_flags2 = in->flags2;
	st->init_minor = in->minor;
	reply(h->unique, 0, &o, sizeof(o));
}

void tsrv_handle(const char *buf, size_t n)
{
	const struct fuse_in_header *h = (const void *)buf;
	const char *arg = buf + sizeof(*h);
	unsigned op = h->opcode;

	(void)n;
	if (op < TSRV_MAXOP)
		atomic_fetch_add(&st->ops[op], 1);
	if (verbose)
		fprintf(stderr, "tsrv: op %u pid %u node %llu\n", op, h->pid,
			(unsigned long long)h->nodeid);
	switch (op) {
	case FUSE_INIT:
		do_init(h, arg);
		return;
	case FUSE_LOOKUP: {
		struct fuse_entry_out e;
		uint64_t ino = !strcmp(arg, "seg")   ? INO_SEG
			       : !strcmp(arg, "ctl") ? INO_CTL
			       : !strcmp(arg, "plain") ? INO_PLAIN
						       : 0;

		if (h->nodeid != FUSE_ROOT_ID || !ino) {
			reply(h->unique, -ENOENT, NULL, 0);
			return;
		}
		memset(&e, 0, sizeof(e));
		e.nodeid = ino;
		e.generation = 1;
		e.entry_valid = 3600;
		e.attr_valid = 3600;
		fill_attr(ino, &e.attr);
		reply(h->unique, 0, &e, sizeof(e));
		return;
	}
	case FUSE_GETATTR: {
		struct fuse_attr_out a;

		memset(&a, 0, sizeof(a));
		a.attr_valid = 3600;
		fill_attr(h->nodeid, &a.attr);
		reply(h->unique, 0, &a, sizeof(a));
		return;
	}
	case FUSE_OPEN: {
		const struct fuse_open_in *in = (const void *)arg;
		struct fuse_open_out o;
		int r = 0;

		memset(&o, 0, sizeof(o));
		if (h->nodeid == INO_SEG)
			r = open_seg(&o);
		else if (h->nodeid == INO_PLAIN)
			o.open_flags = FOPEN_KEEP_CACHE;
		if (verbose)
			fprintf(stderr, "tsrv: open node %llu flags %#o -> %d "
				"backing %u\n", (unsigned long long)h->nodeid,
				in->flags, r, o.padding);
		if (r)
			atomic_fetch_add(&st->open_errors, 1);
		reply(h->unique, r, &o, sizeof(o));
		return;
	}
	case FUSE_OPENDIR: {
		struct fuse_open_out o;

		memset(&o, 0, sizeof(o));
		reply(h->unique, 0, &o, sizeof(o));
		return;
	}
	case FUSE_READ: {
		static const char zero[4096];
		const struct fuse_read_in *in = (const void *)arg;
		size_t len = in->size < sizeof(zero) ? in->size : sizeof(zero);

		if (h->nodeid != INO_PLAIN || in->offset >= SEG_SIZE)
			len = 0;
		reply(h->unique, 0, zero, len);
		return;
	}
	case FUSE_READDIR:
		reply(h->unique, 0, NULL, 0);
		return;
	case FUSE_RELEASE: {
		const struct fuse_release_in *in = (const void *)arg;

		if (h->nodeid == INO_SEG)
			release_seg(in->fh);
		reply(h->unique, 0, NULL, 0);
		return;
	}
	case FUSE_RELEASEDIR:
	case FUSE_ACCESS:
	case FUSE_FSYNC:
		reply(h->unique, 0, NULL, 0);
		return;
	case FUSE_FLUSH: {
		const struct fuse_flush_in *in = (const void *)arg;

		if (h->nodeid == INO_CTL && flush_delay_ms)
			msleep(flush_delay_ms);
		st->last_flush_pid = h->pid;
		st->last_flush_node = h->nodeid;
		st->last_flush_owner = in->lock_owner;
		/* seen by the test after its waitpid: the reply follows */
		atomic_fetch_add(&st->flushes_done, 1);
		reply(h->unique, 0, NULL, 0);
		return;
	}
	case FUSE_IOCTL: {
		const struct fuse_ioctl_in *in = (const void *)arg;
		struct {
			struct fuse_ioctl_out o;
			char data[256];
		} out;
		size_t len = in->out_size < 256 ? in->out_size : 256;

		st->last_ioctl_node = h->nodeid;
		st->last_ioctl_cmd = in->cmd;
		memset(&out, 0, sizeof(out));
		out.o.result = h->nodeid == INO_SEG ? 4242 : 0;
		if (in->in_size && in->in_size <= 256)
			memcpy(out.data, arg + sizeof(*in), in->in_size);
		reply(h->unique, 0, &out, sizeof(out.o) + len);
		return;
	}
	case FUSE_STATFS: {
		struct fuse_statfs_out s;

		memset(&s, 0, sizeof(s));
		s.st.bsize = 4096;
		s.st.namelen = 255;
		reply(h->unique, 0, &s, sizeof(s));
		return;
	}
	case FUSE_FORGET:
	case FUSE_BATCH_FORGET:
	case FUSE_INTERRUPT:
		return; /* no reply */
	case FUSE_DESTROY:
		reply(h->unique, 0, NULL, 0);
		return;
	default:
		reply(h->unique, -ENOSYS, NULL, 0);
	}
}

#define BUFSZ (1 << 20)

static void *worker(void *unused)
{
	char *buf = malloc(BUFSZ + 4096);

	(void)unused;
	for (;;) {
		ssize_t n = read(devfd, buf, BUFSZ + 4096);

		if (n < 0) {
			if (errno == EINTR || errno == ENOENT || errno == EAGAIN)
				continue;
			break; /* ENODEV: unmounted */
		}
		tsrv_handle(buf, (size_t)n);
	}
	free(buf);
	return NULL;
}

int tsrv_uring_try(int devfd, struct tsrv_stats *st); /* uring.c */

int main(int argc, char **argv)
{
	const char *mnt, *stats;
	char opts[256];
	int nthreads = 1, i, sfd;
	pthread_t t;

	if (argc < 3) {
		fprintf(stderr, "usage: tsrv MNT STATS [options]\n");
		return 2;
	}
	mnt = argv[1];
	stats = argv[2];
	for (i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "-b") && i + 1 < argc)
			per_open = !strcmp(argv[++i], "per");
		else if (!strcmp(argv[i], "-n"))
			noflush = 1;
		else if (!strcmp(argv[i], "-d") && i + 1 < argc)
			flush_delay_ms = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-t") && i + 1 < argc)
			nthreads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-v"))
			verbose = 1;
		else if (!strcmp(argv[i], "-u"))
			want_uring = 1;
	}
	sfd = open(stats, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (sfd < 0 || ftruncate(sfd, sizeof(*st)) < 0)
		return perror("stats"), 1;
	st = mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE, MAP_SHARED, sfd,
		  0);
	if (st == MAP_FAILED)
		return perror("mmap stats"), 1;
	st->server_pid = getpid();
	devfd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (devfd < 0)
		return perror("/dev/fuse"), 1;
	snprintf(opts, sizeof(opts),
		 "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other",
		 devfd);
	if (mount("tsrv", mnt, "fuse.tsrv", MS_NOSUID | MS_NODEV, opts) < 0)
		return perror("mount"), 1;
	signal(SIGPIPE, SIG_IGN);
	printf("ready\n");
	fflush(stdout);
	if (want_uring) {
		/* INIT must be answered first: serve it on a thread */
		pthread_create(&t, NULL, worker, NULL);
		while (!st->ops[FUSE_INIT])
			msleep(1);
		tsrv_uring_try(devfd, st);
		pthread_join(t, NULL);
		return 0;
	}
	for (i = 1; i < nthreads; i++)
		pthread_create(&t, NULL, worker, NULL);
	worker(NULL);
	return 0;
}
