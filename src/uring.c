/*
 * FUSE over io_uring (see uring.h).  The protocol (Linux 6.14 and later,
 * FUSE 7.42; this machine's <linux/fuse.h> predates it, so its pieces are
 * declared here): the kernel offers FUSE_OVER_IO_URING in INIT's flags2
 * while the fuse module's enable_uring is on; INIT's reply asks for it;
 * then each CPU's queue needs a ring entry, registered with
 * FUSE_IO_URING_CMD_REGISTER (an io_uring command on /dev/fuse, with a
 * header buffer and a payload buffer).  Once every queue has one, the
 * kernel puts each request of a process into an entry of its CPU's
 * queue and completes the command; the server answers in the same
 * buffers with FUSE_IO_URING_CMD_COMMIT_AND_FETCH, which also waits for
 * the entry's next request.
 *
 * One thread per queue, kept on that CPU, with one entry: a request is
 * served on the CPU of the process that made it, by a thread that went
 * to sleep there.  The thread rebuilds the request as /dev/fuse would
 * have given it and hands it to libfuse; libfuse's reply comes back
 * through the I/O hooks (pt_writev), which give it to uring_reply.
 *
 * Not with a holder (shmfs_main.c refuses -o uring with failover): a
 * request a dead server took from its ring can be neither answered nor
 * sent again (FUSE_NOTIFY_RESEND requeues only what /dev/fuse gave out),
 * and its caller would wait until the mount ends.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include "reaper.h"
#include "seg.h"
#include "uring.h"

#define UR_PARAM "/sys/module/fuse/parameters/enable_uring"
#define UR_FLAGS2 (1u << (41 - 32)) /* FUSE_OVER_IO_URING */
#define UR_CMD_REGISTER 1
#define UR_CMD_COMMIT_AND_FETCH 2
/* The largest request libfuse 3.14 lets INIT allow: 256 pages. */
#define UR_PAYLOAD (256u * 4096u)
#define UR_IN_HEADER 40 /* struct fuse_in_header */
#define UR_OUT_HEADER 16 /* struct fuse_out_header */

struct ur_ent_in_out {
	uint64_t flags;
	uint64_t commit_id;
	uint32_t payload_sz;
	uint32_t padding;
	uint64_t reserved;
};

/* struct fuse_uring_req_header */
struct ur_header {
	char in_out[128]; /* fuse_in_header, then fuse_out_header */
	char op_in[128]; /* the opcode's own struct (its first argument) */
	struct ur_ent_in_out ent;
};

/* struct fuse_uring_cmd_req, in the SQE's command area */
struct ur_cmd {
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

struct ur_queue {
	int qid;
	int ringfd;
	unsigned *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	unsigned char *sqes; /* 128-byte entries (IORING_SETUP_SQE128) */
	struct io_uring_cqe *cqes;
	struct ur_header *hdr;
	char *payload;
	char *buf; /* the request as /dev/fuse would give it */
	uint64_t unique; /* the request being served */
	bool replied;
	struct ur_queue *next;
};

static struct fuse_session *U_se;
static int U_dev = -1;
static dev_t U_conn;
static bool U_wanted, U_ready, U_fits;
static atomic_bool U_started, U_stopping, U_reenabled;
static atomic_int U_busy; /* threads inside libfuse */
static struct ur_queue *U_queues;
static size_t U_payload = UR_PAYLOAD;
static atomic_uint_fast64_t U_served;
static __thread struct ur_queue *U_mine;

int uring_enable(void)
{
	char v = 0;
	int fd = open(UR_PARAM, O_RDWR | O_CLOEXEC);
	int err = 0;

	if (fd < 0)
		return -errno;
	if (read(fd, &v, 1) != 1)
		err = -errno;
	else if (v != 'Y' && (lseek(fd, 0, SEEK_SET) < 0 ||
			      write(fd, "Y", 1) != 1))
		err = -errno;
	close(fd);
	return err;
}

void uring_prepare(struct fuse_session *se, int devfd)
{
	U_se = se;
	U_dev = devfd;
	U_wanted = true;
}

void uring_conn(dev_t dev)
{
	U_conn = dev;
}

static int q_setup(struct ur_queue *q)
{
	struct io_uring_params p;
	size_t sqsz, cqsz;
	char *sq;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128;
	q->ringfd = (int)syscall(__NR_io_uring_setup, 4, &p);
	if (q->ringfd < 0)
		return -errno;
	if (!(p.features & IORING_FEAT_SINGLE_MMAP))
		return -ENOTSUP;
	sqsz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	cqsz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	sq = mmap(NULL, sqsz > cqsz ? sqsz : cqsz, PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_POPULATE, q->ringfd, IORING_OFF_SQ_RING);
	if (sq == MAP_FAILED)
		return -errno;
	q->sqes = mmap(NULL, p.sq_entries * 128, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, q->ringfd, IORING_OFF_SQES);
	if (q->sqes == MAP_FAILED)
		return -errno;
	q->sq_tail = (unsigned *)(void *)(sq + p.sq_off.tail);
	q->sq_mask = (unsigned *)(void *)(sq + p.sq_off.ring_mask);
	q->sq_array = (unsigned *)(void *)(sq + p.sq_off.array);
	q->cq_head = (unsigned *)(void *)(sq + p.cq_off.head);
	q->cq_tail = (unsigned *)(void *)(sq + p.cq_off.tail);
	q->cq_mask = (unsigned *)(void *)(sq + p.cq_off.ring_mask);
	q->cqes = (struct io_uring_cqe *)(void *)(sq + p.cq_off.cqes);
	q->hdr = aligned_alloc(4096, 4096);
	q->payload = aligned_alloc(4096, U_payload);
	q->buf = malloc(UR_IN_HEADER + 128 + U_payload);
	if (!q->hdr || !q->payload || !q->buf)
		return -ENOMEM;
	/* the kernel fills them: defined for valgrind, which cannot see it */
	memset(q->hdr, 0, 4096);
	memset(q->payload, 0, U_payload);
	return 0;
}

/*
 * Every queue's ring and buffers are made as FUSE_INIT is read, before
 * its reply asks for rings: once it has, the kernel holds every request
 * until each CPU's queue has an entry, so no queue may be missing then.
 */
static bool queues_make(void)
{
	long i, ncpu = sysconf(_SC_NPROCESSORS_CONF);
	int r;

	for (i = 0; i < ncpu; i++) {
		struct ur_queue *q = calloc(1, sizeof(*q));

		if (!q)
			return false;
		q->qid = (int)i;
		q->ringfd = -1;
		q->next = U_queues;
		U_queues = q;
		r = q_setup(q);
		if (r < 0) {
			fprintf(stderr,
				"shmfs: warning: -o uring: no ring for CPU "
				"%ld: %s; requests go through /dev/fuse\n",
				i, strerror(-r));
			return false;
		}
	}
	return true;
}

void uring_note_init(const void *buf, size_t len)
{
	uint32_t flags2;

	/* fuse_init_in: major, minor, max_readahead, flags, flags2 */
	if (!U_wanted || U_ready || len < UR_IN_HEADER + 20)
		return;
	memcpy(&flags2, (const char *)buf + UR_IN_HEADER + 16, 4);
	if (!(flags2 & UR_FLAGS2)) {
		fprintf(stderr, "shmfs: warning: -o uring: the kernel offers "
				"no rings; requests go through /dev/fuse\n");
		return;
	}
	U_ready = queues_make();
}

uint32_t uring_init_flags2(void)
{
	return U_ready && U_fits ? UR_FLAGS2 : 0;
}

void uring_init_sizes(uint32_t max_write, uint32_t max_pages)
{
	size_t need = (size_t)max_pages * (size_t)sysconf(_SC_PAGESIZE);

	if (max_write > need)
		need = max_write;
	U_fits = need <= U_payload;
	if (U_ready && !U_fits)
		fprintf(stderr,
			"shmfs: warning: -o uring: requests of %zu bytes "
			"would not fit a ring entry; requests go through "
			"/dev/fuse\n",
			need);
}

/* One command on q's entry, then its completion's result (a request came
 * when it is 0), or -errno. */
static int q_cmd(struct ur_queue *q, unsigned op, uint64_t commit_id)
{
	unsigned tail = *q->sq_tail, idx = tail & *q->sq_mask;
	unsigned char *sqe = q->sqes + (size_t)idx * 128;
	struct io_uring_sqe *s = (struct io_uring_sqe *)(void *)sqe;
	struct ur_cmd *c = (struct ur_cmd *)(void *)(sqe + 48);
	struct iovec iov[2] = { { q->hdr, sizeof(*q->hdr) },
				{ q->payload, U_payload } };

	memset(sqe, 0, 128);
	s->opcode = IORING_OP_URING_CMD;
	s->fd = U_dev;
	s->cmd_op = op;
	if (op == UR_CMD_REGISTER) {
		s->addr = (uint64_t)(uintptr_t)iov;
		s->len = 2;
	}
	c->qid = (uint16_t)q->qid;
	c->commit_id = commit_id;
	q->sq_array[idx] = idx;
	__atomic_store_n(q->sq_tail, tail + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, q->ringfd, 1, 0, 0, NULL, 0) < 0)
		return -errno;
	/* waits in poll(2), not in io_uring_enter: valgrind lets the other
	 * threads run only through calls it knows to block */
	for (;;) {
		unsigned head = *q->cq_head;
		struct pollfd p = { .fd = q->ringfd, .events = POLLIN };

		if (head != __atomic_load_n(q->cq_tail, __ATOMIC_ACQUIRE)) {
			int res = q->cqes[head & *q->cq_mask].res;

			__atomic_store_n(q->cq_head, head + 1,
					 __ATOMIC_RELEASE);
			return res;
		}
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			return -errno;
	}
}

/*
 * The entry's request as /dev/fuse gives it: the in header, the opcode's
 * struct (what the length leaves beside the payload, at most 128 bytes),
 * the payload.  Its length, or 0 for a request that makes no sense.
 */
static size_t q_rebuild(struct ur_queue *q)
{
	uint32_t len, plen = q->hdr->ent.payload_sz;
	size_t oplen;

	memcpy(&len, q->hdr->in_out, sizeof(len));
	if (len < UR_IN_HEADER || plen > U_payload ||
	    len - UR_IN_HEADER < plen || len - UR_IN_HEADER - plen > 128)
		return 0;
	oplen = len - UR_IN_HEADER - plen;
	memcpy(q->buf, q->hdr->in_out, UR_IN_HEADER);
	memcpy(q->buf + UR_IN_HEADER, q->hdr->op_in, oplen);
	memcpy(q->buf + UR_IN_HEADER + oplen, q->payload, plen);
	return len;
}

/* A reply of error alone, for a request libfuse did not answer. */
static void q_error(struct ur_queue *q, int err)
{
	struct {
		uint32_t len;
		int32_t error;
		uint64_t unique;
	} oh = { UR_OUT_HEADER, -err, q->unique };

	memcpy(q->hdr->in_out, &oh, sizeof(oh));
	q->hdr->ent.payload_sz = 0;
}

static void q_serve(struct ur_queue *q)
{
	struct fuse_buf fbuf = { .mem = q->buf };
	uint32_t opcode;

	fbuf.size = q_rebuild(q);
	memcpy(&q->unique, q->hdr->in_out + 8, sizeof(q->unique));
	q->replied = false;
	atomic_fetch_add(&U_busy, 1);
	if (fbuf.size && !atomic_load(&U_stopping)) {
		memcpy(&opcode, q->hdr->in_out + 4, sizeof(opcode));
		table_request(q->unique, opcode);
		U_mine = q;
		fuse_session_process_buf(U_se, &fbuf);
		U_mine = NULL;
	}
	atomic_fetch_sub(&U_busy, 1);
	if (!q->replied)
		q_error(q, !fbuf.size ? EINVAL
			   : atomic_load(&U_stopping) ? ENOTCONN : EIO);
	atomic_fetch_add_explicit(&U_served, 1, memory_order_relaxed);
}

/*
 * A queue without an entry after INIT asked for rings: the kernel would
 * hold every request of the mount for ever.  Its connection is aborted
 * instead, so that callers get ENOTCONN, and the daemon ends.
 */
static void queue_lost(const struct ur_queue *q, int err)
{
	int dir = U_conn ? fusectl_dir(U_conn) : -ENOENT;
	int r = fusectl_abort(dir);

	fprintf(stderr,
		"shmfs: -o uring: queue %d cannot take requests: %s; %s\n",
		q->qid, strerror(-err),
		r ? "no request can be served (fusectl's abort failed)"
		  : "the connection is aborted");
	if (dir >= 0)
		close(dir);
}

static void *q_thread(void *arg)
{
	struct ur_queue *q = arg;
	unsigned op = UR_CMD_REGISTER;
	cpu_set_t set;
	char name[16];
	int r, tries = 0;

	snprintf(name, sizeof(name), "shmfs-ring%d", q->qid);
	pthread_setname_np(pthread_self(), name);
	CPU_ZERO(&set);
	CPU_SET(q->qid, &set);
	(void)sched_setaffinity(0, sizeof(set), &set);
	for (;;) {
		r = q_cmd(q, op, q->hdr->ent.commit_id);
		/* The kernel refuses every command while enable_uring is off:
		 * somebody turned it off under the mount.  Nothing changed
		 * yet, so the same command goes again once it is back on. */
		if (r == -EOPNOTSUPP && tries++ < 3 && !uring_enable()) {
			if (!atomic_exchange(&U_reenabled, true))
				fprintf(stderr,
					"shmfs: warning: -o uring: %s was "
					"turned off; turned on again, as "
					"this mount needs it\n",
					UR_PARAM);
			continue;
		}
		tries = 0;
		/* still refused at the first register: the connection took
		 * no rings (enable_uring was off as INIT's reply came), and
		 * /dev/fuse carries every request */
		if (r == -EOPNOTSUPP && op == UR_CMD_REGISTER) {
			fprintf(stderr, "shmfs: warning: -o uring: the "
					"connection took no rings; requests go "
					"through /dev/fuse\n");
			break;
		}
		if (r < 0) {
			if (r != -ENOTCONN) /* ENOTCONN: unmounted */
				queue_lost(q, r);
			break;
		}
		q_serve(q);
		op = UR_CMD_COMMIT_AND_FETCH;
	}
	return NULL;
}

void uring_start(void)
{
	struct ur_queue *q;
	pthread_attr_t a;
	pthread_t t;

	if (!uring_init_flags2() || atomic_exchange(&U_started, true))
		return;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	for (q = U_queues; q; q = q->next)
		if (pthread_create(&t, &a, q_thread, q) != 0)
			queue_lost(q, -EAGAIN);
	pthread_attr_destroy(&a);
}

bool uring_reply(const struct iovec *iov, int count, ssize_t *ret)
{
	struct ur_queue *q = U_mine;
	size_t off = 0, n;
	uint64_t unique;
	int i;

	if (!q || q->replied || count < 1 ||
	    iov[0].iov_len != UR_OUT_HEADER)
		return false;
	memcpy(&unique, (const char *)iov[0].iov_base + 8, sizeof(unique));
	if (unique != q->unique)
		return false;
	for (i = 1; i < count; i++) {
		n = iov[i].iov_len;
		if (n > U_payload - off) { /* libfuse never builds one */
			q_error(q, EIO);
			q->replied = true;
			*ret = -1;
			errno = EINVAL;
			return true;
		}
		memcpy(q->payload + off, iov[i].iov_base, n);
		off += n;
	}
	memcpy(q->hdr->in_out, iov[0].iov_base, UR_OUT_HEADER);
	q->hdr->ent.payload_sz = (uint32_t)off;
	q->replied = true;
	*ret = (ssize_t)(UR_OUT_HEADER + off);
	return true;
}

void uring_stop(void)
{
	int i;

	atomic_store(&U_stopping, true);
	/* the session goes next: no thread may be using it by then (a
	 * thread blocked in io_uring_enter never reaches it again) */
	for (i = 0; i < 1000 && atomic_load(&U_busy); i++)
		usleep(1000);
}

uint64_t uring_served(void)
{
	return atomic_load_explicit(&U_served, memory_order_relaxed);
}
