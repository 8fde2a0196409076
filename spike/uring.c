/*
 * spike/uring.c: how far FUSE over io_uring gets on this kernel (tsrv -u).
 * What it shows: after tsrv answered INIT offering FUSE_OVER_IO_URING
 * (flags2 bit 9), one io_uring (SQE128) per CPU queue, one thread pinned
 * to that CPU, each registering one ring entry (FUSE_IO_URING_CMD_REGISTER
 * with a header and a payload buffer) and then serving requests with
 * FUSE_IO_URING_CMD_COMMIT_AND_FETCH.  Once every queue has an entry the
 * kernel sends requests through the rings instead of /dev/fuse; the
 * stats page records the stage reached and the first error.
 * /usr/include/linux/fuse.h here predates io_uring, so the uapi pieces
 * (Linux 6.14+, FUSE 7.42) are declared below.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "tsrv.h"

#define URING_CMD_REGISTER 1
#define URING_CMD_COMMIT_AND_FETCH 2

struct ring_ent_in_out {
	uint64_t flags;
	uint64_t commit_id;
	uint32_t payload_sz;
	uint32_t padding;
	uint64_t reserved;
};

struct ring_req_header {
	char in_out[128]; /* fuse_in_header / fuse_out_header */
	char op_in[128]; /* the per-opcode struct (in_args[0]) */
	struct ring_ent_in_out ent;
};

struct uring_cmd_req {
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

struct tsrv_sink {
	void *hdr;
	void *payload;
	size_t cap;
	uint32_t len;
};
void tsrv_set_sink(struct tsrv_sink *s);
void tsrv_handle(const char *buf, size_t n);

#define PAYLOAD (256 * 1024)

struct q {
	int qid, devfd, ringfd;
	struct tsrv_stats *st;
	struct io_uring_params p;
	unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes; /* 128-byte entries */
	struct io_uring_cqe *cqes;
	struct ring_req_header *hdr;
	char *payload;
	char *buf; /* a request rebuilt as /dev/fuse would give it */
};

static void note(struct tsrv_stats *st, int stage, const char *fmt, int e)
{
	if (stage > st->uring_stage)
		st->uring_stage = stage;
	if (!st->uring_note[0])
		snprintf(st->uring_note, sizeof(st->uring_note), fmt, e,
			 strerror(e < 0 ? -e : e));
}

static int q_setup(struct q *q)
{
	void *sq, *cq;
	size_t sqsz, cqsz;

	memset(&q->p, 0, sizeof(q->p));
	q->p.flags = IORING_SETUP_SQE128;
	q->ringfd = (int)syscall(__NR_io_uring_setup, 4, &q->p);
	if (q->ringfd < 0)
		return -errno;
	sqsz = q->p.sq_off.array + q->p.sq_entries * sizeof(unsigned);
	cqsz = q->p.cq_off.cqes + q->p.cq_entries * sizeof(struct io_uring_cqe);
	if (cqsz > sqsz)
		sqsz = cqsz;
	sq = mmap(NULL, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		  q->ringfd, IORING_OFF_SQ_RING);
	if (sq == MAP_FAILED)
		return -errno;
	cq = sq; /* IORING_FEAT_SINGLE_MMAP */
	q->sqes = mmap(NULL, q->p.sq_entries * 128, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, q->ringfd, IORING_OFF_SQES);
	if (q->sqes == MAP_FAILED)
		return -errno;
	q->sq_tail = (unsigned *)((char *)sq + q->p.sq_off.tail);
	q->sq_mask = (unsigned *)((char *)sq + q->p.sq_off.ring_mask);
	q->sq_array = (unsigned *)((char *)sq + q->p.sq_off.array);
	q->cq_head = (unsigned *)((char *)cq + q->p.cq_off.head);
	q->cq_tail = (unsigned *)((char *)cq + q->p.cq_off.tail);
	q->cq_mask = (unsigned *)((char *)cq + q->p.cq_off.ring_mask);
	q->cqes = (struct io_uring_cqe *)((char *)cq + q->p.cq_off.cqes);
	q->hdr = aligned_alloc(4096, 4096);
	q->payload = aligned_alloc(4096, PAYLOAD);
	q->buf = malloc(PAYLOAD + 4096);
	memset(q->hdr, 0, 4096);
	return 0;
}

/* Queue one URING_CMD and wait for a completion (0 = none needed). */
static int q_submit(struct q *q, unsigned cmd, uint64_t commit_id,
		    struct io_uring_cqe *out)
{
	unsigned tail = *q->sq_tail, idx = tail & *q->sq_mask;
	unsigned char *sqe = (unsigned char *)q->sqes + (size_t)idx * 128;
	struct io_uring_sqe *s = (struct io_uring_sqe *)sqe;
	struct iovec iov[2] = { { q->hdr, sizeof(*q->hdr) },
				{ q->payload, PAYLOAD } };
	struct uring_cmd_req *req = (struct uring_cmd_req *)(sqe + 48);
	int r;

	memset(sqe, 0, 128);
	s->opcode = IORING_OP_URING_CMD;
	s->fd = q->devfd;
	s->cmd_op = cmd;
	if (cmd == URING_CMD_REGISTER) {
		s->addr = (uint64_t)(uintptr_t)iov;
		s->len = 2;
	}
	s->user_data = (uint64_t)q->qid;
	req->qid = (uint16_t)q->qid;
	req->commit_id = commit_id;
	q->sq_array[idx] = idx;
	__atomic_store_n(q->sq_tail, tail + 1, __ATOMIC_RELEASE);
	r = (int)syscall(__NR_io_uring_enter, q->ringfd, 1, 0, 0, NULL, 0);
	if (r < 0)
		return -errno;
	for (;;) {
		unsigned head = *q->cq_head;

		if (head != __atomic_load_n(q->cq_tail, __ATOMIC_ACQUIRE)) {
			*out = q->cqes[head & *q->cq_mask];
			__atomic_store_n(q->cq_head, head + 1, __ATOMIC_RELEASE);
			return 1;
		}
		r = (int)syscall(__NR_io_uring_enter, q->ringfd, 0, 1,
				 IORING_ENTER_GETEVENTS, NULL, 0);
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

static void *q_thread(void *arg)
{
	struct q *q = arg;
	struct io_uring_cqe cqe;
	unsigned cmd = URING_CMD_REGISTER;
	uint64_t commit = 0;
	cpu_set_t set;
	int r;

	CPU_ZERO(&set);
	CPU_SET(q->qid, &set);
	sched_setaffinity(0, sizeof(set), &set);
	for (;;) {
		struct tsrv_sink sk;
		size_t oplen, len;
		uint32_t hlen;

		r = q_submit(q, cmd, commit, &cqe);
		if (r < 0) {
			note(q->st, 2, "io_uring_enter: %d (%s)", r);
			return NULL;
		}
		if (cqe.res < 0) {
			if (cmd == URING_CMD_REGISTER)
				q->st->uring_register_result = cqe.res;
			note(q->st, cmd == URING_CMD_REGISTER ? 3 : 5,
			     "uring cmd completion: %d (%s)", cqe.res);
			return NULL;
		}
		if (cmd == URING_CMD_REGISTER) {
			q->st->uring_register_result = 0;
			note(q->st, 4, "", 0);
		}
		/* a request: rebuild it as /dev/fuse would have given it */
		memcpy(&hlen, q->hdr->in_out, 4);
		len = q->hdr->ent.payload_sz;
		oplen = hlen > 40 + len ? hlen - 40 - len : 0;
		if (oplen > 128)
			oplen = 128;
		memcpy(q->buf, q->hdr->in_out, 40);
		memcpy(q->buf + 40, q->hdr->op_in, oplen);
		memcpy(q->buf + 40 + oplen, q->payload, len);
		sk.hdr = q->hdr->in_out;
		sk.payload = q->payload;
		sk.cap = PAYLOAD;
		sk.len = 0;
		commit = q->hdr->ent.commit_id;
		tsrv_set_sink(&sk);
		tsrv_handle(q->buf, 40 + oplen + len);
		tsrv_set_sink(NULL);
		q->hdr->ent.payload_sz = sk.len;
		__atomic_fetch_add(&q->st->ops[63], 1, __ATOMIC_RELAXED);
		cmd = URING_CMD_COMMIT_AND_FETCH;
	}
}

int tsrv_uring_try(int devfd, struct tsrv_stats *st)
{
	long ncpu = sysconf(_SC_NPROCESSORS_CONF);
	pthread_t t;
	int i, r;

	st->uring_stage = 0;
	for (i = 0; i < ncpu; i++) {
		struct q *q = calloc(1, sizeof(*q));

		q->qid = i;
		q->devfd = devfd;
		q->st = st;
		r = q_setup(q);
		if (r < 0) {
			note(st, 1, "io_uring_setup: %d (%s)", r);
			return r;
		}
		note(st, 1, "", 0);
		pthread_create(&t, NULL, q_thread, q);
		pthread_detach(t);
	}
	return 0;
}
