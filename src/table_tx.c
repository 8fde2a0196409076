/*
 * The table's life across servers: it lives in a persistent heap
 * (pheap.h) that the holder keeps, and every change to it is a
 * transaction of that heap, so that a server killed at any instruction
 * leaves it as the last committed change left it, for a successor to
 * adopt (seg_adopt).
 *
 * A transaction is one hold of the table lock (TABLE_LOCK).  Inside a
 * request (table_request, from the front end's read of it), a hold that
 * changed the table is not committed at the end of its block: the thread
 * keeps the lock until the request's reply is about to be written
 * (table_reply), and the reply's bytes are recorded in the same
 * transaction.  A request the kernel sends again after a server died is
 * then either not applied at all (rolled back) or answered from that
 * record, never applied twice.
 *
 * What a change does outside the heap waits for its commit: a descriptor
 * the table let go is closed, and a range of the arena punched, only
 * then (a rolled-back free must find its memory intact); backing ids to
 * close are kept in the heap itself until closed, so that a successor
 * closes those a dead server did not.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "killpoint.h"
#include "pheap.h"
#include "seg_impl.h"

/* Room for the table; only what is touched costs memory. */
#define HEAP_RESERVE (1ULL << 30)
#define REQ_RESEND (1ULL << 63)

struct seg_table *seg_T;
struct seg_config Tcfg;
static int heap_fd = -1;
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
/* This thread's holds of the lock, nested; a request's hold kept past
 * its blocks for the reply; the request it serves. */
static __thread unsigned depth;
static __thread bool held;
static __thread uint64_t req_id;
static __thread bool req_open; /* it is an OPEN */
static __thread uint64_t req_mark; /* an open recorded, to mark delivered */
/* A successor's opens the dead server answered and the kernel may never
 * have had: unconfirmed until resent, abandoned after (table_settle). */
static pthread_mutex_t unconfirmed_lock = PTHREAD_MUTEX_INITIALIZER;
static struct inflight *unconfirmed;
static size_t nunconfirmed;

#define FUSE_OPEN_OPCODE 14

enum after_kind { AFTER_CLOSE, AFTER_PUNCH };

struct after {
	enum after_kind kind;
	int fd;
	uint64_t off, len;
};

/* Under the table lock: this transaction's deeds for after its commit. */
static struct after *afters;
static size_t nafters, cap_afters;

static void after_run(const struct after *a)
{
	if (a->kind == AFTER_CLOSE) {
		if (Tcfg.drop_fd)
			Tcfg.drop_fd(a->fd);
		close(a->fd);
	} else {
		fallocate(a->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  (off_t)a->off, (off_t)a->len);
	}
}

static void after_add(const struct after *a)
{
	if (nafters == cap_afters) {
		size_t cap = cap_afters ? 2 * cap_afters : 64;
		struct after *more = realloc(afters, cap * sizeof(*more));

		if (!more) {
			/* no room to wait: do it now, as before this file */
			after_run(a);
			return;
		}
		afters = more;
		cap_afters = cap;
	}
	afters[nafters++] = *a;
}

void table_after_close(int fd)
{
	struct after a = { .kind = AFTER_CLOSE, .fd = fd };

	if (fd >= 0)
		after_add(&a);
}

void table_after_punch(int fd, uint64_t off, uint64_t len)
{
	struct after a = {
		.kind = AFTER_PUNCH, .fd = fd, .off = off, .len = len
	};

	after_add(&a);
}

int table_after_backing_close(int id)
{
	if (T.nclose_ids == T.cap_close_ids) {
		uint32_t cap = T.cap_close_ids ? 2 * T.cap_close_ids : 64;
		uint32_t *more = prealloc(T.close_ids, cap * sizeof(*more));

		if (!more)
			return -ENOMEM;
		T.close_ids = more;
		T.cap_close_ids = cap;
	}
	T.close_ids[T.nclose_ids++] = (uint32_t)id;
	return 0;
}

/* Backing ids the committed table no longer uses: closed, then
 * forgotten in a transaction of their own (closing one twice after a
 * crash in between is harmless: the kernel does not reuse ids soon). */
static void close_backing_ids(void)
{
	uint32_t i;

	if (!seg_T || !T.nclose_ids)
		return;
	for (i = 0; i < T.nclose_ids; i++)
		if (Tcfg.backing_close)
			Tcfg.backing_close((int)T.close_ids[i]);
	ptx_begin();
	T.nclose_ids = 0;
	ptx_commit();
}

/* Commit (with the reply's bytes when there is one), do what waited for
 * it, and let the lock go. */
/*
 * An open's reply recorded: the table notes it, and that it was
 * delivered once the kernel took it (table_delivered).  A server that
 * dies between the two leaves an open its successor cannot know the
 * kernel has: the kernel resends it, or the caller died meanwhile and
 * nobody ever will (table_settle).
 */
static void note_open(const struct iovec *iov, int n)
{
	const int32_t *err = (const int32_t *)iov[0].iov_base + 1;
	struct inflight *f;

	if (!req_open || n < 2 || *err || iov[1].iov_len < 8 || !T.inflight)
		return;
	f = &T.inflight[(req_id >> 1) % INFLIGHT_SLOTS];
	f->unique = req_id;
	memcpy(&f->fh, iov[1].iov_base, sizeof(f->fh));
	req_mark = req_id;
}

static void table_commit(const struct iovec *iov, int n)
{
	bool dirty = ptx_dirty();
	size_t i;

	if (dirty && iov && req_id) {
		note_open(iov, n);
		ptx_record_reply(req_id, iov, n);
	}
	ptx_commit();
	if (dirty) {
		for (i = 0; i < nafters; i++)
			after_run(&afters[i]);
		close_backing_ids();
	}
	nafters = 0;
	held = false;
	pthread_mutex_unlock(&table_lock);
}

/* The outermost hold of this thread only reads: it has no transaction. */
static __thread bool reading;

void table_enter(void)
{
	if (depth++ || held)
		return;
	pthread_mutex_lock(&table_lock);
	ptx_begin();
}

void table_enter_read(void)
{
	if (depth++ || held)
		return;
	pthread_mutex_lock(&table_lock);
	reading = true;
}

void table_leave(int *unused)
{
	(void)unused;
	if (--depth)
		return;
	if (reading) {
		reading = false;
		pthread_mutex_unlock(&table_lock);
		return;
	}
	if (req_id && ptx_dirty()) {
		held = true; /* until the reply: table_reply */
		return;
	}
	if (!held)
		table_commit(NULL, 0);
}

void table_request(uint64_t unique, uint32_t opcode)
{
	if (held)
		table_commit(NULL, 0);
	req_id = unique & ~REQ_RESEND;
	req_open = opcode == FUSE_OPEN_OPCODE;
}

void table_delivered(void)
{
	uint64_t u = req_mark;
	off_t off;

	if (!u || !seg_T)
		return;
	req_mark = 0;
	/* through the file, not the mapping: this page is in no
	 * transaction, and the write needs none */
	off = (off_t)((uintptr_t)&T.marks[(u >> 1) % INFLIGHT_SLOTS] -
		      PHEAP_BASE);
	if (pwrite(heap_fd, &u, sizeof(u), off) != sizeof(u))
		return; /* then a successor takes it for undelivered */
}

uint64_t table_confirm(uint64_t unique)
{
	uint64_t fh = 0;
	size_t i;

	unique &= ~REQ_RESEND;
	pthread_mutex_lock(&unconfirmed_lock);
	for (i = 0; i < nunconfirmed; i++)
		if (unconfirmed[i].unique == unique) {
			fh = unconfirmed[i].fh;
			unconfirmed[i] = unconfirmed[--nunconfirmed];
			break;
		}
	pthread_mutex_unlock(&unconfirmed_lock);
	return fh;
}

size_t table_settle(uint64_t **fhs)
{
	size_t i, n;

	pthread_mutex_lock(&unconfirmed_lock);
	n = nunconfirmed;
	*fhs = n ? malloc(n * sizeof(**fhs)) : NULL;
	for (i = 0; *fhs && i < n; i++)
		(*fhs)[i] = unconfirmed[i].fh;
	free(unconfirmed);
	unconfirmed = NULL;
	nunconfirmed = 0;
	pthread_mutex_unlock(&unconfirmed_lock);
	return *fhs ? n : 0;
}

/* A successor: the opens the dead server recorded and did not see
 * delivered wait for their resend. */
static void inflight_adopt(void)
{
	size_t i;

	if (!T.inflight || !T.marks)
		return;
	unconfirmed = calloc(INFLIGHT_SLOTS, sizeof(*unconfirmed));
	for (i = 0; unconfirmed && i < INFLIGHT_SLOTS; i++) {
		struct inflight *f = &T.inflight[i];

		if (f->unique && T.marks[i] != f->unique)
			unconfirmed[nunconfirmed++] = *f;
		f->unique = 0;
	}
}

/* Room for the opens in flight, and their marks on pages of their own. */
static int inflight_init(void)
{
	char *p;

	T.inflight = pcalloc(INFLIGHT_SLOTS, sizeof(*T.inflight));
	p = pmalloc(INFLIGHT_SLOTS * sizeof(uint64_t) + 4096);
	if (!T.inflight || !p)
		return -ENOMEM;
	T.marks = (uint64_t *)(((uintptr_t)p + 4095) & ~(uintptr_t)4095);
	return 0;
}

void table_reply(uint64_t unique, const struct iovec *iov, int n)
{
	if (held && (unique & ~REQ_RESEND) == req_id) {
		killpoint("commit"); /* applied, not committed */
		table_commit(iov, n);
		killpoint("reply"); /* committed, not answered */
	}
	req_id = 0;
}

void table_request_done(void)
{
	if (held)
		table_commit(NULL, 0);
	req_id = 0;
}

ssize_t table_recorded_reply(uint64_t unique, void *buf, size_t cap)
{
	/* records are written by other threads' commits */
	TABLE_READ();

	if (!seg_T)
		return -ENOENT;
	return pheap_find_reply(unique & ~REQ_RESEND, buf, cap);
}

int seg_heap_fd(void)
{
	return heap_fd;
}

/* The pages a busy table keeps changing stay writable (pheap_set_hot):
 * a fault each, each time, would cost more than the request. */
static void heap_tune(void)
{
	pheap_set_hot(Tcfg.hot_pages);
}

static void config_set(const struct seg_config *cfg)
{
	Tcfg = *cfg;
	if (!Tcfg.now)
		Tcfg.now = seg_default_now;
	if (!Tcfg.page_size)
		Tcfg.page_size = (size_t)sysconf(_SC_PAGESIZE);
}

int seg_init(const struct seg_config *cfg)
{
	int err;

	config_set(cfg);
	heap_fd = pheap_create(HEAP_RESERVE, SEG_TABLE_FORMAT);
	if (heap_fd < 0)
		return heap_fd;
	heap_tune();
	TABLE_LOCK();
	seg_T = pcalloc(1, sizeof(*seg_T));
	if (!seg_T) {
		err = -ENOMEM;
		goto fail;
	}
	pheap_set_root(seg_T);
	T.format = SEG_TABLE_FORMAT;
	T.next_serial = 1;
	T.front.next_id = 1;
	err = inflight_init();
	if (!err)
		err = segmem_init();
	if (!err)
		return 0;
fail:
	seg_T = NULL;
	return err;
}

/* After seg_fini's walk: the heap goes with this process's use of it. */
void table_close(void)
{
	pheap_close();
	if (heap_fd >= 0)
		close(heap_fd);
	heap_fd = -1;
	seg_T = NULL;
	free(afters);
	afters = NULL;
	nafters = cap_afters = 0;
	free(unconfirmed);
	unconfirmed = NULL;
	nunconfirmed = 0;
}

int seg_adopt(const struct seg_config *cfg, int fd)
{
	int err;

	config_set(cfg);
	err = pheap_adopt(fd, SEG_TABLE_FORMAT);
	if (err)
		return err;
	heap_fd = fd;
	heap_tune();
	seg_T = pheap_root();
	if (!seg_T || T.format != SEG_TABLE_FORMAT) {
		pheap_close();
		heap_fd = -1;
		seg_T = NULL;
		return -EPROTO;
	}
	TABLE_LOCK();
	seg_republish();
	segmem_adopt();
	files_adopt();
	seg_objects_adopt();
	inflight_adopt();
	return 0;
}
