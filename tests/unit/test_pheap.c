/*
 * Unit tests of the persistent heap (src/pheap*.c): the allocator,
 * transactions that commit, abort, or die half-way (a child SIGKILLed in
 * the middle; an adopter killed while it rolls back), reply records,
 * adoption refused, and the stores that must crash the process.  The
 * region is shared with children (MAP_SHARED): a child's transaction is
 * the dead server, and the parent adopts after it (unmapping its own
 * view first, as a successor starts with none).
 *
 * `test_pheap bench` measures instead of testing.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pheap.h"
#include "unit.h"

#define PG 4096
#define FORMAT 0x73686d6673740001ULL
#define RESERVE (64ULL << 20)
/* The heap ends below the undo log (16 MiB and its head). */
#define HEAP_LIMIT (PHEAP_BASE + RESERVE - (17ULL << 20))

static int region_fd = -1;

/* A fresh, empty region for each test. */
static bool setup(void)
{
	/* a test that failed in the middle of one */
	if (ptx_active())
		ptx_abort();
	pheap_close();
	if (region_fd >= 0)
		close(region_fd);
	region_fd = pheap_create(RESERVE, FORMAT);
	return CHECK(region_fd >= 0);
}

/* What a successor does: map the region anew, rolling back. */
static int readopt(void)
{
	pheap_close();
	return pheap_adopt(region_fd, FORMAT);
}

static struct pheap_stats stats(void)
{
	struct pheap_stats st;

	pheap_stats(&st);
	return st;
}

/* ---- children ---- */

struct outcome {
	int status;
	char err[8192]; /* its stderr */
};

/* Run fn in a child whose stderr we keep; it exits 0 if fn returns. */
static void in_child(void (*fn)(void *), void *arg, struct outcome *out)
{
	size_t len = 0;
	ssize_t n;
	int p[2];
	pid_t pid;

	memset(out, 0, sizeof(*out));
	if (pipe(p) < 0)
		abort();
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		abort();
	if (pid == 0) {
		close(p[0]);
		dup2(p[1], STDERR_FILENO);
		alarm(60); /* a fault that loops fails the test, not hangs it */
		fn(arg);
		_exit(0);
	}
	close(p[1]);
	while ((n = read(p[0], out->err + len, sizeof(out->err) - 1 - len)) > 0)
		len += (size_t)n;
	close(p[0]);
	waitpid(pid, &out->status, 0);
}

static bool killed_by(const struct outcome *o, int sig)
{
	if (WIFSIGNALED(o->status) && WTERMSIG(o->status) == sig)
		return true;
	printf("  child: status %#x, stderr: %s\n", o->status, o->err);
	return false;
}

/* ---- a small table: items in a list, and an array ---- */

struct item {
	uint64_t key;
	uint64_t val[29];
	struct item *next;
}; /* 248 bytes: a 272-byte chunk, 15 to a page */

struct table {
	struct item *head;
	uint64_t nitems;
	uint64_t *arr;
	uint64_t arrlen;
};

static uint64_t mix(uint64_t h, uint64_t v)
{
	return (h ^ v) * 0x100000001b3ULL;
}

static uint64_t checksum(const struct table *t)
{
	uint64_t h = 0xcbf29ce484222325ULL, i;
	const struct item *it;

	if (!t)
		return 0;
	h = mix(h, t->nitems);
	for (it = t->head; it; it = it->next) {
		h = mix(h, it->key);
		for (i = 0; i < 29; i++)
			h = mix(h, it->val[i]);
	}
	for (i = 0; i < t->arrlen; i++)
		h = mix(h, t->arr[i]);
	return h;
}

/* A committed table of n items and an array of arrlen words: the state
 * a dead server's successor must find again. */
static struct table *build(uint64_t n, uint64_t arrlen)
{
	struct table *t;
	struct item *it;
	uint64_t i, j;

	ptx_begin();
	t = pcalloc(1, sizeof(*t));
	if (!t)
		abort();
	for (i = 0; i < n; i++) {
		it = pmalloc(sizeof(*it));
		if (!it)
			abort();
		it->key = i;
		for (j = 0; j < 29; j++)
			it->val[j] = i * 100 + j;
		it->next = t->head;
		t->head = it;
		t->nitems++;
	}
	t->arr = pcalloc(arrlen, sizeof(*t->arr));
	if (!t->arr)
		abort();
	t->arrlen = arrlen;
	for (i = 0; i < arrlen; i++)
		t->arr[i] = i ^ 0x5a5a;
	pheap_set_root(t);
	ptx_commit();
	return t;
}

/* Change a bit of everything, inside the caller's transaction: items,
 * every page of the array, new items, freed items, a grown array. */
static void mutate(struct table *t, uint64_t salt)
{
	struct item *it, *gone;
	uint64_t i;

	for (it = t->head; it; it = it->next)
		it->val[3] += salt;
	for (i = 0; i < t->arrlen; i += PG / sizeof(*t->arr))
		t->arr[i] = salt + i;
	for (i = 0; i < 10; i++) {
		it = pcalloc(1, sizeof(*it));
		if (!it)
			abort();
		it->key = 1000 + i;
		it->next = t->head;
		t->head = it;
		t->nitems++;
	}
	gone = t->head->next;
	t->head->next = gone->next;
	pfree(gone);
	t->nitems--;
	t->arr = prealloc(t->arr, t->arrlen * 2 * sizeof(*t->arr));
	if (!t->arr)
		abort();
	memset(t->arr + t->arrlen, 0xee, t->arrlen * sizeof(*t->arr));
	t->arrlen *= 2;
}

/* Whether the heap is read-only everywhere (no page left writable by a
 * transaction), from /proc/self/maps. */
static bool heap_read_only(void)
{
	unsigned long lo, hi;
	char line[512], perms[8];
	bool ok = true, seen = false;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3)
			continue;
		if (hi <= PHEAP_BASE || lo >= HEAP_LIMIT)
			continue;
		seen = true;
		if (strcmp(perms, "r--s") != 0) {
			printf("  writable: %s", line);
			ok = false;
		}
	}
	fclose(f);
	return seen && ok;
}

/* Whether anything is mapped at PHEAP_BASE. */
static bool base_mapped(void)
{
	unsigned long lo, hi;
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		return true;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 &&
		    lo <= PHEAP_BASE && hi > PHEAP_BASE)
			found = true;
	fclose(f);
	return found;
}

static bool all_bytes(const void *p, int c, size_t n)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < n; i++)
		if (b[i] != (unsigned char)c)
			return false;
	return true;
}

/* ---- the region ---- */

static void test_create_gives_an_empty_read_only_region(void)
{
	struct pheap_stats st;
	int seals;

	REQUIRE(setup());
	CHECK(pheap_active());
	CHECK(pheap_root() == NULL);
	st = stats();
	CHECK_UEQ(st.reserve, RESERVE);
	CHECK_UEQ(st.in_use, 0);
	CHECK_UEQ(st.objects, 0);
	CHECK_UEQ(st.replies, 0);
	CHECK(heap_read_only());
	CHECK(fcntl(region_fd, F_GETFD) & FD_CLOEXEC);
	seals = fcntl(region_fd, F_GET_SEALS);
	CHECK((seals & (F_SEAL_SHRINK | F_SEAL_GROW)) ==
	      (F_SEAL_SHRINK | F_SEAL_GROW));
	CHECK_EQ(ftruncate(region_fd, PG), -1);
	/* one region per process */
	CHECK_EQ(pheap_create(RESERVE, FORMAT), -EBUSY);
	CHECK_EQ(pheap_adopt(region_fd, FORMAT), -EBUSY);
	pheap_close();
	CHECK(!pheap_active());
	CHECK(!base_mapped());
	CHECK_EQ(pheap_create(PHEAP_MIN_RESERVE - 1, FORMAT), -EINVAL);
	CHECK_EQ(pheap_create(PHEAP_MAX_RESERVE + 1, FORMAT), -EINVAL);
	CHECK(!base_mapped());
	/* the memfd outlives the mapping: the holder's copy */
	CHECK_EQ(pheap_adopt(region_fd, FORMAT), 0);
	CHECK(heap_read_only());
}

static void test_create_refuses_an_address_in_use(void)
{
	void *p;

	REQUIRE(setup());
	pheap_close();
	p = mmap((void *)PHEAP_BASE + 5 * PG, PG, PROT_READ,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	REQUIRE(CHECK(p == (void *)PHEAP_BASE + 5 * PG));
	CHECK_EQ(pheap_create(RESERVE, FORMAT), -EEXIST);
	CHECK_EQ(pheap_adopt(region_fd, FORMAT), -EEXIST);
	CHECK(!pheap_active());
	munmap(p, PG);
	CHECK_EQ(pheap_adopt(region_fd, FORMAT), 0);
}

static void test_adopt_refuses_another_format(void)
{
	char junk[PG];
	int fd;

	REQUIRE(setup());
	pheap_close();
	CHECK_EQ(pheap_adopt(region_fd, FORMAT + 1), -EPROTO);
	CHECK(!pheap_active());
	CHECK(!base_mapped());
	/* not a region at all */
	fd = memfd_create("junk", MFD_CLOEXEC);
	REQUIRE(CHECK(fd >= 0));
	memset(junk, 0x42, sizeof(junk));
	CHECK_EQ(pwrite(fd, junk, sizeof(junk), 0), PG);
	CHECK_EQ(pheap_adopt(fd, FORMAT), -EINVAL);
	CHECK_EQ(ftruncate(fd, (off_t)RESERVE), 0);
	CHECK_EQ(pheap_adopt(fd, FORMAT), -EINVAL);
	CHECK_EQ(ftruncate(fd, 0), 0);
	CHECK_EQ(pheap_adopt(fd, FORMAT), -EINVAL);
	close(fd);
	CHECK(!base_mapped());
	CHECK_EQ(pheap_adopt(region_fd, FORMAT), 0);
}

/* ---- the allocator ---- */

static void test_alloc_reuses_and_merges_freed_chunks(void)
{
	char *a, *b, *c, *d, *e, *z;
	struct pheap_stats st;

	REQUIRE(setup());
	ptx_begin();
	a = pmalloc(40);
	b = pmalloc(40);
	c = pmalloc(40);
	REQUIRE(CHECK(a && b && c));
	CHECK_UEQ((uintptr_t)a % 16, 0);
	CHECK_UEQ((uintptr_t)b % 16, 0);
	CHECK(a >= (char *)PHEAP_BASE && c < (char *)HEAP_LIMIT);
	CHECK(b >= a + 40 && c >= b + 40);
	memset(a, 'a', 40);
	memset(b, 'b', 40);
	memset(c, 'c', 40);
	st = stats();
	CHECK_UEQ(st.objects, 3);
	CHECK_UEQ(st.in_use, 3 * 64);
	/* the same size again: the chunk just freed */
	pfree(b);
	d = pmalloc(33);
	CHECK(d == b);
	CHECK(all_bytes(a, 'a', 40) && all_bytes(c, 'c', 40));
	/* two neighbours freed make one chunk */
	pfree(a);
	pfree(d);
	e = pmalloc(100);
	CHECK(e == a);
	CHECK(all_bytes(c, 'c', 40));
	z = pmalloc(0);
	CHECK(z != NULL);
	pfree(NULL);
	pfree(z);
	pfree(e);
	pfree(c);
	st = stats();
	CHECK_UEQ(st.objects, 0);
	CHECK_UEQ(st.in_use, 0);
	/* everything merged back into one: the first address again */
	e = pmalloc(200);
	CHECK(e == a);
	pfree(e);
	ptx_commit();
}

static void test_prealloc_grows_in_place_or_moves(void)
{
	char *p, *q, *r, *s, *x, *y, *z;
	uint64_t *arr = NULL;
	size_t n, i, old = 0;

	REQUIRE(setup());
	/* the free chunk after it is the last one: into the top behind it */
	ptx_begin();
	x = pmalloc(64);
	z = pmalloc(64);
	REQUIRE(CHECK(x && z));
	memset(x, 'x', 64);
	pfree(z);
	CHECK(prealloc(x, 4000) == x);
	CHECK(all_bytes(x, 'x', 64));
	ptx_commit();

	REQUIRE(setup());
	ptx_begin();
	p = pmalloc(100);
	REQUIRE(CHECK(p));
	memset(p, 'p', 100);
	/* the last chunk grows into the top */
	q = prealloc(p, 5000);
	CHECK(q == p);
	CHECK(all_bytes(q, 'p', 100));
	memset(q, 'q', 5000);
	r = pmalloc(16);
	/* blocked by r: moves, keeps its bytes */
	p = prealloc(q, 20000);
	REQUIRE(CHECK(p && p != q));
	CHECK(all_bytes(p, 'q', 5000));
	/* shrinks in place, and the rest is taken again */
	CHECK(prealloc(p, 50) == p);
	s = pmalloc(15000);
	CHECK(s > p && s < p + 20000);
	/* into the free chunk after it */
	x = pmalloc(64);
	y = pmalloc(256);
	z = pmalloc(64);
	pfree(y);
	memset(x, 'x', 64);
	CHECK(prealloc(x, 300) == x);
	CHECK(all_bytes(x, 'x', 64));
	pfree(z);
	CHECK(prealloc(NULL, 10) != NULL);
	pfree(r);
	ptx_commit();

	/* an array doubling over many transactions, as the table's do */
	for (n = 16; n <= (4 << 20) / sizeof(*arr); n *= 2) {
		ptx_begin();
		arr = prealloc(arr, n * sizeof(*arr));
		REQUIRE(CHECK(arr != NULL));
		for (i = 0; i < old; i++)
			if (arr[i] != i * 7)
				break;
		CHECK_UEQ(i, old);
		for (i = old; i < n; i++)
			arr[i] = i * 7;
		ptx_commit();
		old = n;
	}
}

static void test_exhaustion_gives_null_and_no_harm(void)
{
	char *big[64], *small[PG], *p;
	size_t nbig = 0, nsmall = 0, i;
	struct pheap_stats st;

	REQUIRE(setup());
	ptx_begin();
	p = pmalloc(100);
	REQUIRE(CHECK(p));
	memset(p, 'k', 100);
	while (nbig < 64 && (big[nbig] = pmalloc(1 << 20)))
		nbig++;
	CHECK_EQ(errno, ENOMEM);
	/* 64 MiB less 2 MiB of replies and 16 MiB of undo */
	CHECK(nbig >= 40 && nbig < 64);
	while (nsmall < PG && (small[nsmall] = pmalloc(1000)))
		nsmall++;
	CHECK(nsmall > 0 && nsmall < PG);
	/* the last bytes, in the smallest chunks */
	while (nsmall < PG && (small[nsmall] = pmalloc(1)))
		nsmall++;
	CHECK(nsmall < PG);
	CHECK(pmalloc(0) == NULL);
	CHECK(pmalloc(SIZE_MAX) == NULL);
	CHECK(pmalloc(SIZE_MAX - 8) == NULL);
	errno = 0;
	CHECK(pcalloc(SIZE_MAX / 2, 4) == NULL);
	CHECK_EQ(errno, ENOMEM);
	CHECK(prealloc(p, SIZE_MAX) == NULL);
	CHECK(prealloc(p, 1 << 20) == NULL);
	CHECK(all_bytes(p, 'k', 100));
	st = stats();
	CHECK_UEQ(st.objects, 1 + nbig + nsmall);
	for (i = 0; i < nsmall; i++)
		pfree(small[i]);
	for (i = 0; i < nbig; i++)
		pfree(big[i]);
	pfree(p);
	CHECK_UEQ(stats().in_use, 0);
	ptx_commit();
	/* all of it merged: one allocation of (nearly) the whole heap */
	ptx_begin();
	p = pmalloc(nbig << 20);
	CHECK(p != NULL);
	pfree(p);
	ptx_commit();
}

static void test_pcalloc_zeroes_reused_memory(void)
{
	char *p, *q;
	uint64_t faults;

	REQUIRE(setup());
	ptx_begin();
	p = pmalloc(256);
	memset(p, 0xab, 256);
	pfree(p);
	q = pcalloc(1, 256);
	CHECK(q == p);
	CHECK(all_bytes(q, 0, 256));
	p = pmalloc(1 << 20);
	memset(p, 0xcd, 1 << 20);
	pfree(p);
	q = pcalloc(1 << 10, 1 << 10);
	CHECK(q == p);
	CHECK(all_bytes(q, 0, 1 << 20));
	ptx_commit();

	/* never-used memory is zero already: no undo copy, no faults */
	ptx_begin();
	faults = stats().faults;
	q = pcalloc(4 << 20, 1);
	REQUIRE(CHECK(q != NULL));
	CHECK(all_bytes(q, 0, 4 << 20));
	memset(q, 1, 4 << 20);
	CHECK(stats().faults - faults <= 2);
	ptx_commit();
	CHECK(stats().last_tx_pages >= 1024);
	CHECK(heap_read_only());
}

/* ---- transactions ---- */

static void test_commit_keeps_changes_and_protects_again(void)
{
	struct table *t;
	uint64_t sum, faults, rollbacks;

	REQUIRE(setup());
	t = build(40, 4096);
	sum = checksum(t);
	CHECK(pheap_root() == t);
	CHECK(heap_read_only());
	ptx_begin();
	CHECK(!ptx_dirty());
	faults = stats().faults;
	t->arr[0] = 1;
	t->arr[1] = 2; /* the same page: no second fault */
	t->arr[PG / 8] = 3;
	t->arr[3 * PG / 8] = 4;
	CHECK(ptx_dirty());
	CHECK_UEQ(stats().faults - faults, 3);
	ptx_commit();
	CHECK_UEQ(stats().last_tx_pages, 3);
	CHECK(!ptx_dirty());
	CHECK(heap_read_only());
	CHECK(checksum(t) != sum);
	sum = checksum(t);
	rollbacks = stats().rollbacks;
	/* a successor sees it all, and rolls nothing back */
	REQUIRE(CHECK_EQ(readopt(), 0));
	CHECK(pheap_root() == t);
	CHECK_UEQ(checksum(pheap_root()), sum);
	CHECK_UEQ(stats().rollbacks, rollbacks);
}

static void test_abort_undoes_in_place(void)
{
	struct table *t;
	uint64_t sum, in_use, objects;
	void *fresh, *again;

	REQUIRE(setup());
	t = build(40, 8192);
	sum = checksum(t);
	in_use = stats().in_use;
	objects = stats().objects;
	ptx_begin();
	mutate(t, 77);
	fresh = pmalloc(1 << 20);
	REQUIRE(CHECK(fresh != NULL));
	memset(fresh, 0x77, 1 << 20);
	pheap_set_root(NULL);
	ptx_abort();
	CHECK(pheap_root() == t);
	CHECK_UEQ(checksum(t), sum);
	CHECK_UEQ(stats().in_use, in_use);
	CHECK_UEQ(stats().objects, objects);
	CHECK(heap_read_only());
	CHECK_UEQ(stats().aborts, 1);
	/* the heap the aborted one took is there again, and zero */
	ptx_begin();
	mutate(t, 77);
	again = pcalloc(1, 1 << 20);
	CHECK(again == fresh);
	CHECK(again && all_bytes(again, 0, 1 << 20));
	ptx_commit();
}

struct kill_args {
	struct table *t;
	uint64_t salt;
	int ready; /* pipe to say "stop me here" */
};

/* A server that dies in the middle of a transaction. */
static void die_in_tx(void *arg)
{
	struct kill_args *a = arg;
	struct iovec iov = { .iov_base = "half-made", .iov_len = 9 };
	void *fresh;

	ptx_begin();
	mutate(a->t, a->salt);
	fresh = pmalloc(1 << 20);
	if (fresh)
		memset(fresh, 0xee, 1 << 20);
	ptx_record_reply(2, &iov, 1);
	pheap_set_root(NULL);
	raise(SIGKILL);
}

/* A server that commits, then is killed by the parent. */
static void die_after_commit(void *arg)
{
	struct kill_args *a = arg;

	ptx_begin();
	mutate(a->t, a->salt);
	ptx_commit();
	if (write(a->ready, "x", 1) != 1)
		_exit(1);
	pause();
}

static void test_killed_transaction_rolls_back(void)
{
	struct kill_args a = { .salt = 5 };
	struct outcome o;
	struct iovec iov = { .iov_base = "done", .iov_len = 4 };
	uint64_t sum, in_use, objects, rollbacks, pages;
	char buf[16];
	void *p;

	REQUIRE(setup());
	a.t = build(100, 16384);
	ptx_begin();
	ptx_record_reply(1, &iov, 1);
	ptx_commit();
	sum = checksum(a.t);
	in_use = stats().in_use;
	objects = stats().objects;
	rollbacks = stats().rollbacks;
	pages = stats().rollback_pages;

	in_child(die_in_tx, &a, &o);
	REQUIRE(CHECK(killed_by(&o, SIGKILL)));
	/* the child did store (the memory is shared): the test means it */
	CHECK(pheap_root() == NULL);
	CHECK_EQ(pheap_find_reply(2, buf, sizeof(buf)), 9);
	REQUIRE(CHECK_EQ(readopt(), 0));
	CHECK(pheap_root() == a.t);
	CHECK_UEQ(checksum(a.t), sum);
	CHECK_UEQ(stats().in_use, in_use);
	CHECK_UEQ(stats().objects, objects);
	CHECK_EQ(pheap_find_reply(2, buf, sizeof(buf)), -ENOENT);
	CHECK_EQ(pheap_find_reply(1, buf, sizeof(buf)), 4);
	CHECK_UEQ(stats().rollbacks, rollbacks + 1);
	CHECK(stats().rollback_pages > pages + 16);
	CHECK(heap_read_only());
	/* what the dead one took from the top is zero again */
	ptx_begin();
	p = pcalloc(1, 1 << 20);
	CHECK(p && all_bytes(p, 0, 1 << 20));
	pfree(p);
	ptx_commit();

	/* committed, then killed: a successor keeps it all */
	{
		int pp[2];
		pid_t pid;
		int status;

		REQUIRE(CHECK_EQ(pipe(pp), 0));
		a.ready = pp[1];
		a.salt = 9;
		fflush(stdout);
		pid = fork();
		if (pid == 0) {
			close(pp[0]);
			die_after_commit(&a);
			_exit(0);
		}
		close(pp[1]);
		CHECK_EQ(read(pp[0], buf, 1), 1);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		close(pp[0]);
		CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	}
	sum = checksum(a.t);
	rollbacks = stats().rollbacks;
	REQUIRE(CHECK_EQ(readopt(), 0));
	CHECK_UEQ(checksum(a.t), sum);
	CHECK_UEQ(stats().rollbacks, rollbacks);
	CHECK(a.t->head->key == 1009 && a.t->arrlen == 16384 * 2);
}

static void kill_at_half(uint64_t done, uint64_t total)
{
	if (done == total / 2)
		raise(SIGKILL);
}

/* A successor that dies half-way through its rollback. */
static void adopt_and_die(void *arg)
{
	(void)arg;
	pheap_close();
	pheap_set_rollback_hook(kill_at_half);
	pheap_adopt(region_fd, FORMAT);
	_exit(3); /* the hook did not kill it */
}

static void test_adopter_killed_in_rollback_rolls_back_next_time(void)
{
	struct kill_args a = { .salt = 11 };
	struct outcome o;
	uint64_t sum, mutated, rollbacks = stats().rollbacks;

	REQUIRE(setup());
	a.t = build(60, 64 * PG / 8);
	sum = checksum(a.t);
	in_child(die_in_tx, &a, &o);
	REQUIRE(CHECK(killed_by(&o, SIGKILL)));
	/* the view here shows the dead transaction's stores */
	mutated = a.t->arr[0];
	CHECK_UEQ(mutated, 11);
	in_child(adopt_and_die, NULL, &o);
	REQUIRE(CHECK(killed_by(&o, SIGKILL)));
	/* half of the pages are back, the newest first: the header (first
	 * stored to late, by an allocation) is, the array's first page
	 * (among the first) is not */
	CHECK(pheap_root() == a.t);
	CHECK_UEQ(a.t->arr[0], mutated);
	REQUIRE(CHECK_EQ(readopt(), 0));
	CHECK(pheap_root() == a.t);
	CHECK_UEQ(checksum(a.t), sum);
	CHECK_UEQ(a.t->arr[0], 0x5a5a);
	CHECK_UEQ(stats().rollbacks, rollbacks + 1);
}

/*
 * Killed at random instants, over and over: inside the fault handler,
 * the allocator, the commit.  Each transaction stores the checksum of
 * what it leaves, and the reply record of its generation, so that any
 * successor can tell a committed state from a torn one.
 */
struct rtable {
	uint64_t gen;
	uint64_t sum;
	uint64_t nitems;
	struct item *head;
	uint64_t *arr;
	uint64_t arrlen;
};

static uint64_t rsum(const struct rtable *t)
{
	struct table view = { t->head, t->nitems, t->arr, t->arrlen };

	return mix(checksum(&view), t->gen);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* One random transaction's changes. */
static void random_change(struct rtable *t, uint64_t *seed)
{
	struct item *it, **pp;
	uint64_t i, k, n;

	for (k = rnd(seed) % 8; k > 0; k--) {
		it = pmalloc(sizeof(*it));
		if (!it)
			break;
		memset(it, 0, sizeof(*it));
		it->key = rnd(seed);
		it->next = t->head;
		t->head = it;
		t->nitems++;
	}
	for (k = rnd(seed) % 8; k > 0 && t->head; k--) {
		n = rnd(seed) % t->nitems;
		for (pp = &t->head; n-- > 0 && (*pp)->next;)
			pp = &(*pp)->next;
		it = *pp;
		*pp = it->next;
		pfree(it);
		t->nitems--;
	}
	for (k = rnd(seed) % 6; k > 0; k--)
		t->arr[rnd(seed) % t->arrlen] = rnd(seed);
	if (rnd(seed) % 4 == 0) {
		n = 512 + rnd(seed) % 16384;
		t->arr = prealloc(t->arr, n * sizeof(*t->arr));
		if (!t->arr)
			abort();
		for (i = t->arrlen; i < n; i++)
			t->arr[i] = i;
		t->arrlen = n;
	}
}

static void change_forever(void *arg)
{
	struct rtable *t = pheap_root();
	uint64_t seed = (uint64_t)getpid() * 2654435761u + 1;
	int ready = *(int *)arg;
	struct iovec iov;

	for (;;) {
		ptx_begin();
		random_change(t, &seed);
		t->gen++;
		t->sum = rsum(t);
		iov.iov_base = &t->gen;
		iov.iov_len = sizeof(t->gen);
		ptx_record_reply(t->gen, &iov, 1);
		ptx_commit();
		if (ready >= 0) {
			if (write(ready, "x", 1) != 1)
				_exit(1);
			close(ready);
			ready = -1;
		}
	}
}

static void random_kills(int hot)
{
	struct rtable *t;
	uint64_t seed = 42, gen = 0, got;
	int round, rounds = 100, pp[2], status;
	struct item *it;
	pid_t pid;
	char c;

	REQUIRE(setup());
	pheap_set_hot(hot);
	ptx_begin();
	t = pcalloc(1, sizeof(*t));
	t->arrlen = 1024;
	t->arr = pcalloc(t->arrlen, sizeof(*t->arr));
	t->sum = rsum(t);
	pheap_set_root(t);
	ptx_commit();
	for (round = 0; round < rounds; round++) {
		REQUIRE(CHECK_EQ(pipe(pp), 0));
		fflush(stdout);
		pid = fork();
		if (pid == 0) {
			close(pp[0]);
			alarm(60);
			change_forever(&pp[1]);
		}
		close(pp[1]);
		CHECK_EQ(read(pp[0], &c, 1), 1);
		close(pp[0]);
		usleep((useconds_t)(rnd(&seed) % 3000));
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		REQUIRE(CHECK(WIFSIGNALED(status) &&
			      WTERMSIG(status) == SIGKILL));
		REQUIRE(CHECK_EQ(readopt(), 0));
		pheap_set_hot(hot); /* for the next child */
		REQUIRE(CHECK(pheap_root() == t));
		REQUIRE(CHECK_UEQ(rsum(t), t->sum));
		CHECK(t->gen > gen);
		gen = t->gen;
		CHECK_UEQ(stats().objects, t->nitems + 2);
		CHECK_EQ(pheap_find_reply(gen, &got, sizeof(got)), sizeof(got));
		CHECK_UEQ(got, gen);
		CHECK_EQ(pheap_find_reply(gen + 1, &got, sizeof(got)), -ENOENT);
		CHECK(heap_read_only());
	}
	/* the allocator's books balance: everything freed, nothing in use */
	ptx_begin();
	while ((it = t->head)) {
		t->head = it->next;
		pfree(it);
	}
	pfree(t->arr);
	pfree(t);
	pheap_set_root(NULL);
	ptx_commit();
	CHECK_UEQ(stats().objects, 0);
	CHECK_UEQ(stats().in_use, 0);
	printf("  %d kills, %llu transactions, %llu pages rolled back%s\n",
	       rounds, (unsigned long long)gen,
	       (unsigned long long)stats().rollback_pages,
	       hot ? " (hot pages)" : "");
}

static void test_random_kills_leave_a_committed_state(void)
{
	random_kills(0);
}

/* The same with pages left writable between transactions: what they
 * held at ptx_begin is what a rollback gives back. */
static void test_random_kills_with_hot_pages_leave_a_committed_state(void)
{
	random_kills(PHEAP_HOT_MAX);
}

static void write_three_and_die(void *arg)
{
	ptx_begin();
	strcpy(arg, "three");
	raise(SIGKILL);
}

/*
 * A hot page: a transaction that stores to it takes no fault, one that
 * does not is not dirty, and a kill or an abort gives back what it held
 * when the transaction began.  Without pheap_set_hot, every page goes
 * back to read-only at commit (the other tests).
 */
static void test_hot_pages_take_no_fault_and_still_roll_back(void)
{
	struct outcome o;
	uint64_t faults;
	char *p;

	REQUIRE(setup());
	pheap_set_hot(PHEAP_HOT_MAX);
	ptx_begin();
	p = pmalloc(64);
	REQUIRE(CHECK(p != NULL));
	strcpy(p, "one");
	ptx_commit();
	ptx_begin();
	strcpy(p, "two"); /* a fault: the page becomes hot */
	CHECK(ptx_dirty());
	ptx_commit();
	faults = stats().faults;
	ptx_begin();
	CHECK(!ptx_dirty()); /* nothing stored yet */
	p[0] = 't'; /* the same byte: no change */
	CHECK(!ptx_dirty());
	strcpy(p, "TWO");
	CHECK(ptx_dirty());
	CHECK_UEQ(stats().faults, faults); /* hot: no fault */
	ptx_abort();
	CHECK(strcmp(p, "two") == 0);
	in_child(write_three_and_die, p, &o);
	REQUIRE(CHECK(killed_by(&o, SIGKILL)));
	CHECK(strcmp(p, "three") == 0); /* the child's store, uncommitted */
	REQUIRE(CHECK_EQ(readopt(), 0));
	CHECK(strcmp(p, "two") == 0);
	CHECK(heap_read_only()); /* a successor starts with none hot */
}

/*
 * A hot page is copied into its slot only when the slot may not hold it
 * any more: after a commit that changed it, or once it moved to another
 * entry (an older hot page aged out).  Either way an abort or a kill
 * gives back what the page held when the transaction began.
 */
static void test_hot_pages_copied_again_only_when_changed(void)
{
	struct outcome o;
	char *a, *b, *c;
	int i;

	REQUIRE(setup());
	pheap_set_hot(PHEAP_HOT_MAX);
	ptx_begin();
	a = pmalloc(64);
	b = pmalloc(PG) ? pmalloc(64) : NULL; /* a page apart */
	c = pmalloc(PG) ? pmalloc(64) : NULL;
	REQUIRE(CHECK(a && b && c && (uintptr_t)a / PG != (uintptr_t)b / PG &&
		      (uintptr_t)b / PG != (uintptr_t)c / PG));
	strcpy(a, "a0");
	strcpy(b, "b0");
	strcpy(c, "c0");
	ptx_commit();
	ptx_begin();
	strcpy(a, "a1"); /* faults: a's page becomes hot */
	ptx_commit();
	ptx_begin(); /* copies it; nothing changes: still copied */
	ptx_commit();
	ptx_begin();
	strcpy(a, "a2"); /* its slot is stale from here on */
	ptx_commit();
	ptx_begin();
	strcpy(a, "a3");
	ptx_abort();
	CHECK(strcmp(a, "a2") == 0);
	in_child(write_three_and_die, a, &o);
	REQUIRE(CHECK(killed_by(&o, SIGKILL)));
	REQUIRE(CHECK_EQ(readopt(), 0));
	CHECK(strcmp(a, "a2") == 0);

	/* b's page (entry 0) ages out first, and a's (entry 2), left as
	 * it was, moves into its entry: slot 0 holds b's page, not a's */
	pheap_set_hot(PHEAP_HOT_MAX);
	ptx_begin();
	strcpy(b, "b1");
	strcpy(c, "c1");
	strcpy(a, "a4");
	ptx_commit();
	ptx_begin();
	strcpy(a, "a5");
	strcpy(c, "c2");
	ptx_commit();
	REQUIRE(CHECK_UEQ(stats().hot, 3));
	for (i = 0; i < 1000 && stats().hot == 3; i++) {
		ptx_begin();
		c[1] = (char)('0' + i % 10); /* changes c only */
		ptx_commit();
	}
	REQUIRE(CHECK_UEQ(stats().hot, 2));
	ptx_begin();
	strcpy(a, "a6");
	ptx_abort();
	CHECK(strcmp(a, "a5") == 0);
	CHECK(strcmp(b, "b1") == 0);
}

/*
 * A hot page no transaction changes stays hot for a long time while
 * there is room for more (it costs a compare), and goes back to
 * read-only soon once there is none, so that pages of other work can
 * take its place.
 */
static void test_hot_pages_age_slowly_unless_the_set_is_full(void)
{
	uint64_t faults, hot;
	char *a, *b, *c;
	int i;

	REQUIRE(setup());
	ptx_begin();
	a = pmalloc(64);
	b = pmalloc(PG) ? pmalloc(64) : NULL;
	c = pmalloc(PG) ? pmalloc(64) : NULL;
	REQUIRE(CHECK(a && b && c));
	ptx_commit();
	pheap_set_hot(PHEAP_HOT_MAX);
	ptx_begin();
	strcpy(a, "a");
	strcpy(b, "b");
	strcpy(c, "c");
	ptx_commit();
	hot = stats().hot;
	REQUIRE(CHECK_UEQ(hot, 3));
	for (i = 0; i < 100; i++) {
		ptx_begin();
		c[0] = (char)('0' + i % 10);
		ptx_commit();
	}
	CHECK_UEQ(stats().hot, hot); /* room: a and b stay */

	/* no room (two hot pages at most): a and b give way to c */
	pheap_set_hot(2);
	ptx_begin();
	strcpy(a, "A");
	strcpy(b, "B");
	ptx_commit();
	faults = stats().faults;
	for (i = 0; i < 40; i++) {
		ptx_begin();
		c[0] = (char)('0' + i % 10);
		ptx_commit();
	}
	CHECK(stats().faults - faults < 30); /* c turned hot on the way */
	ptx_begin();
	faults = stats().faults;
	c[0] = 'x';
	ptx_commit();
	CHECK_UEQ(stats().faults, faults);
}

/* ---- reply records ---- */

static void record(uint64_t id, const char *s)
{
	struct iovec iov = { .iov_base = (void *)s, .iov_len = strlen(s) };

	CHECK_EQ(ptx_record_reply(id, &iov, 1), 0);
}

static void record_and_die(void *arg)
{
	(void)arg;
	ptx_begin();
	record(5000, "never");
	raise(SIGKILL);
}

static void test_reply_records(void)
{
	static char big[PHEAP_REPLY_MAX + 1], back[PHEAP_REPLY_MAX + 1];
	struct iovec iov[2] = { { "hello, ", 7 }, { "world", 5 } };
	struct outcome o;
	char buf[64], want[64];
	uint64_t id;

	REQUIRE(setup());
	ptx_begin();
	CHECK_EQ(ptx_record_reply(7, iov, 2), 0);
	CHECK_EQ(ptx_record_reply(8, iov, -1), -EINVAL);
	memset(big, 'B', sizeof(big));
	iov[0] = (struct iovec){ big, PHEAP_REPLY_MAX };
	iov[1] = (struct iovec){ big, 1 };
	CHECK_EQ(ptx_record_reply(9, iov, 2), -EMSGSIZE);
	iov[1] = (struct iovec){ (void *)-1, SIZE_MAX };
	CHECK_EQ(ptx_record_reply(9, iov, 2), -EMSGSIZE);
	CHECK_EQ(ptx_record_reply(10, iov, 1), 0);
	CHECK_EQ(ptx_record_reply(11, NULL, 0), 0);
	iov[0] = (struct iovec){ NULL, 0 };
	iov[1] = (struct iovec){ "x", 1 };
	CHECK_EQ(ptx_record_reply(12, iov, 2), 0);
	ptx_commit();

	memset(buf, '-', sizeof(buf));
	CHECK_EQ(pheap_find_reply(7, buf, sizeof(buf)), 12);
	CHECK(memcmp(buf, "hello, world-", 13) == 0);
	CHECK_EQ(pheap_find_reply(8, buf, sizeof(buf)), -ENOENT);
	CHECK_EQ(pheap_find_reply(9, buf, sizeof(buf)), -ENOENT);
	CHECK_EQ(pheap_find_reply(11, buf, sizeof(buf)), 0);
	CHECK_EQ(pheap_find_reply(12, NULL, 0), 1);
	/* the length, and no more than cap bytes */
	memset(buf, '-', sizeof(buf));
	CHECK_EQ(pheap_find_reply(7, buf, 5), 12);
	CHECK(memcmp(buf, "hello-", 6) == 0);
	CHECK_EQ(pheap_find_reply(10, back, sizeof(back)), PHEAP_REPLY_MAX);
	CHECK(all_bytes(back, 'B', PHEAP_REPLY_MAX));

	/* the same id again: the newer answers */
	ptx_begin();
	record(7, "again");
	ptx_commit();
	CHECK_EQ(pheap_find_reply(7, buf, sizeof(buf)), 5);

	/* aborted and killed transactions leave none */
	ptx_begin();
	record(4000, "aborted");
	CHECK_EQ(pheap_find_reply(4000, buf, sizeof(buf)), 7);
	ptx_abort();
	CHECK_EQ(pheap_find_reply(4000, buf, sizeof(buf)), -ENOENT);
	in_child(record_and_die, NULL, &o);
	REQUIRE(CHECK(killed_by(&o, SIGKILL)));
	CHECK_EQ(pheap_find_reply(5000, buf, sizeof(buf)), 5);
	REQUIRE(CHECK_EQ(readopt(), 0));
	CHECK_EQ(pheap_find_reply(5000, buf, sizeof(buf)), -ENOENT);
	CHECK_EQ(pheap_find_reply(7, buf, sizeof(buf)), 5);

	/* the newest PHEAP_REPLY_SLOTS are kept */
	ptx_begin();
	for (id = 100; id < 100 + PHEAP_REPLY_SLOTS + 44; id++) {
		snprintf(buf, sizeof(buf), "reply %llu",
			 (unsigned long long)id);
		record(id, buf);
	}
	ptx_commit();
	CHECK_UEQ(stats().replies, PHEAP_REPLY_SLOTS);
	CHECK_EQ(pheap_find_reply(7, buf, sizeof(buf)), -ENOENT);
	/* SLOTS + 44 made, from 100: the last SLOTS are kept */
	id = 100 + PHEAP_REPLY_SLOTS + 44;
	CHECK_EQ(pheap_find_reply(143, buf, sizeof(buf)), -ENOENT);
	CHECK_EQ(pheap_find_reply(144, buf, sizeof(buf)), 9);
	CHECK(memcmp(buf, "reply 144", 9) == 0);
	snprintf(want, sizeof(want), "reply %llu", (unsigned long long)(id - 1));
	CHECK_EQ(pheap_find_reply(id - 1, buf, sizeof(buf)),
		 (ssize_t)strlen(want));
	CHECK(memcmp(buf, want, strlen(want)) == 0);
}

/* ---- what must crash ---- */

static void store_outside_tx(void *arg)
{
	*(volatile char *)arg = 1;
}

static void test_store_outside_a_transaction_aborts(void)
{
	struct outcome o;
	char *p, want[64];

	REQUIRE(setup());
	ptx_begin();
	p = pmalloc(100);
	ptx_commit();
	in_child(store_outside_tx, p + 17, &o);
	REQUIRE(CHECK(killed_by(&o, SIGABRT)));
	snprintf(want, sizeof(want), "store to %p ", (void *)(p + 17));
	CHECK(strstr(o.err, want) != NULL);
	CHECK(strstr(o.err, "outside a transaction") != NULL);
	/* and once read-only again after a commit */
	ptx_begin();
	p[17] = 2;
	ptx_commit();
	in_child(store_outside_tx, p + 17, &o);
	CHECK(killed_by(&o, SIGABRT));
}

static void *store_from_thread(void *arg)
{
	*(volatile char *)arg = 1;
	return NULL;
}

static void other_thread_stores(void *arg)
{
	pthread_t th;

	ptx_begin();
	pthread_create(&th, NULL, store_from_thread, arg);
	pthread_join(th, NULL);
}

static void test_store_by_another_thread_aborts(void)
{
	struct outcome o;
	char *p;

	REQUIRE(setup());
	ptx_begin();
	p = pmalloc(100);
	ptx_commit();
	in_child(other_thread_stores, p, &o);
	REQUIRE(CHECK(killed_by(&o, SIGABRT)));
	CHECK(strstr(o.err, "not the one in the transaction") != NULL);
}

static void alloc_outside_tx(void *arg)
{
	(void)arg;
	pmalloc(10);
}

static void free_twice(void *arg)
{
	ptx_begin();
	pfree(arg);
	pfree(arg);
}

static void free_inside(void *arg)
{
	ptx_begin();
	pfree((char *)arg + 16);
}

static void test_misuse_aborts_with_a_message(void)
{
	struct outcome o;
	char *p;

	REQUIRE(setup());
	ptx_begin();
	p = pmalloc(100);
	ptx_commit();
	in_child(alloc_outside_tx, NULL, &o);
	CHECK(killed_by(&o, SIGABRT));
	CHECK(strstr(o.err, "pmalloc outside a transaction") != NULL);
	in_child(free_twice, p, &o);
	CHECK(killed_by(&o, SIGABRT));
	CHECK(strstr(o.err, "freed already") != NULL);
	/* the child died in its transaction: as its successor */
	REQUIRE(CHECK_EQ(readopt(), 0));
	in_child(free_inside, p, &o);
	CHECK(killed_by(&o, SIGABRT));
	CHECK(strstr(o.err, "pheap: pfree: ") != NULL);
}

static void dirty_too_much(void *arg)
{
	char *p = arg;
	size_t i;

	ptx_begin();
	for (i = 0; i <= PHEAP_UNDO_PAGES; i++)
		p[i * PG] = 1;
}

static void test_transaction_too_large_aborts(void)
{
	struct outcome o;
	char *p;

	REQUIRE(setup());
	ptx_begin();
	p = pmalloc((PHEAP_UNDO_PAGES + 2) * PG);
	ptx_commit();
	REQUIRE(CHECK(p != NULL));
	in_child(dirty_too_much, p, &o);
	CHECK(killed_by(&o, SIGABRT));
	CHECK(strstr(o.err, "more than 4096 pages") != NULL);
}

static void store_elsewhere(void *arg)
{
	*(volatile char *)arg = 1;
}

/* A fault that is not pheap's goes where it went before: a crash with a
 * core, or ASan's report. */
static void test_other_faults_still_crash(void)
{
	struct outcome o;
	char *ro;

	REQUIRE(setup());
	ro = mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(CHECK(ro != MAP_FAILED));
	in_child(store_elsewhere, ro, &o);
#ifdef __SANITIZE_ADDRESS__
	CHECK(strstr(o.err, "AddressSanitizer") != NULL ||
	      (WIFSIGNALED(o.status) && WTERMSIG(o.status) == SIGSEGV));
#else
	CHECK(killed_by(&o, SIGSEGV));
#endif
	in_child(store_elsewhere, (char *)PHEAP_BASE - PG, &o);
#ifndef __SANITIZE_ADDRESS__
	CHECK(killed_by(&o, SIGSEGV));
#else
	CHECK(o.status != 0);
#endif
	munmap(ro, PG);
}

/* ---- measurements: test_pheap bench ---- */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bench_tx(int pages, int rounds)
{
	static char plain[16 * PG], copy[16 * PG];
	char *p;
	double t0, tx, base, cp;
	int r, i;

	ptx_begin();
	p = pmalloc(16 * PG);
	ptx_commit();
	t0 = now();
	for (r = 0; r < rounds; r++) {
		ptx_begin();
		for (i = 0; i < pages; i++)
			p[i * PG + r % PG] = (char)r;
		ptx_commit();
	}
	tx = (now() - t0) / rounds;
	t0 = now();
	for (r = 0; r < rounds; r++) {
		for (i = 0; i < pages; i++)
			plain[i * PG + r % PG] = (char)r;
		__asm__ volatile("" : : "r"(plain) : "memory");
	}
	base = (now() - t0) / rounds;
	t0 = now();
	for (r = 0; r < rounds; r++) {
		memcpy(copy, plain, (size_t)pages * PG);
		__asm__ volatile("" : : "r"(copy) : "memory");
	}
	cp = (now() - t0) / rounds;
	printf("tx dirtying %2d pages: %7.2f us (%5.2f us/page); the same "
	       "stores in plain memory %.3f us; memcpy of the pages %.2f us\n",
	       pages, tx * 1e6, tx * 1e6 / pages, base * 1e6, cp * 1e6);
}

/* Dies with 256 pages of the array changed. */
static void die_in_small_tx(void *arg)
{
	struct kill_args *a = arg;
	uint64_t i;

	ptx_begin();
	for (i = 0; i < 256; i++)
		a->t->arr[i * PG / 8] = i;
	raise(SIGKILL);
}

static void bench_adopt(void)
{
	struct kill_args a = { .salt = 3 };
	struct outcome o;
	struct item *it;
	double t0, t1, t2;
	uint64_t i, sum;

	pheap_close();
	close(region_fd);
	region_fd = pheap_create(1ULL << 30, FORMAT);
	if (region_fd < 0)
		return;
	a.t = build(0, 1 << 20); /* an 8 MiB array */
	/* 168000 items of 272 bytes: 45.7 MB, + 8 MiB: about 54 MB in use */
	for (i = 0; i < 168; i++) {
		uint64_t j;

		ptx_begin();
		for (j = 0; j < 1000; j++) {
			it = pmalloc(sizeof(*it));
			it->key = i * 1000 + j;
			it->next = a.t->head;
			a.t->head = it;
			a.t->nitems++;
		}
		ptx_commit();
	}
	sum = checksum(a.t);
	printf("region: %.1f MB in use\n", (double)stats().in_use / 1e6);
	t0 = now();
	pheap_close();
	t1 = now();
	if (pheap_adopt(region_fd, FORMAT))
		return;
	t2 = now();
	printf("close %.1f us, adopt (clean) %.1f us\n", (t1 - t0) * 1e6,
	       (t2 - t1) * 1e6);
	t0 = now();
	if (checksum(a.t) != sum)
		printf("CHECKSUM WRONG\n");
	printf("first walk of every object after adopt: %.1f ms\n",
	       (now() - t0) * 1e3);
	in_child(die_in_small_tx, &a, &o);
	pheap_close();
	t0 = now();
	if (pheap_adopt(region_fd, FORMAT))
		return;
	t1 = now();
	printf("adopt after a killed tx: %.1f us, %llu pages rolled back, "
	       "checksum %s\n",
	       (t1 - t0) * 1e6, (unsigned long long)stats().rollback_pages,
	       checksum(a.t) == sum ? "same" : "WRONG");
}

static void bench(void)
{
	int pages[] = { 1, 4, 16 };
	unsigned i;

	if (!setup())
		return;
	for (i = 0; i < 3; i++)
		bench_tx(pages[i], 20000);
	bench_adopt();
}

int main(int argc, char **argv)
{
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	fd = pheap_create(RESERVE, FORMAT);
	if (fd < 0) {
		printf("pheap_create: %s%s\n", strerror(-fd),
		       fd == -ENOTSUP ? ": a store that faults cannot run "
					"again here (under valgrind: add "
					"--px-default=allregs-at-mem-access)"
				      : "");
		return 1;
	}
	region_fd = fd;
	if (argc > 1 && strcmp(argv[1], "bench") == 0) {
		bench();
		return 0;
	}
	UNIT_RUN(test_create_gives_an_empty_read_only_region);
	UNIT_RUN(test_create_refuses_an_address_in_use);
	UNIT_RUN(test_adopt_refuses_another_format);
	UNIT_RUN(test_alloc_reuses_and_merges_freed_chunks);
	UNIT_RUN(test_prealloc_grows_in_place_or_moves);
	UNIT_RUN(test_exhaustion_gives_null_and_no_harm);
	UNIT_RUN(test_pcalloc_zeroes_reused_memory);
	UNIT_RUN(test_commit_keeps_changes_and_protects_again);
	UNIT_RUN(test_abort_undoes_in_place);
	UNIT_RUN(test_killed_transaction_rolls_back);
	UNIT_RUN(test_adopter_killed_in_rollback_rolls_back_next_time);
	UNIT_RUN(test_random_kills_leave_a_committed_state);
	UNIT_RUN(test_random_kills_with_hot_pages_leave_a_committed_state);
	UNIT_RUN(test_hot_pages_take_no_fault_and_still_roll_back);
	UNIT_RUN(test_hot_pages_copied_again_only_when_changed);
	UNIT_RUN(test_hot_pages_age_slowly_unless_the_set_is_full);
	UNIT_RUN(test_reply_records);
	UNIT_RUN(test_store_outside_a_transaction_aborts);
	UNIT_RUN(test_store_by_another_thread_aborts);
	UNIT_RUN(test_misuse_aborts_with_a_message);
	UNIT_RUN(test_transaction_too_large_aborts);
	UNIT_RUN(test_other_faults_still_crash);
	pheap_close();
	close(region_fd);
	return unit_done();
}
