/*
 * The persistent heap (pheap.h): the region (made, adopted, closed), the
 * SIGSEGV handler that keeps the undo log, transactions and their hot
 * pages, and the stats.  The layout: pheap_impl.h.  The allocator is in
 * pheap_alloc.c, the reply records in pheap_reply.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "pheap_impl.h"

/* Undo pages kept populated after a commit; the rest are punched out, so
 * that one large transaction does not hold 16 MiB for good. */
#define UNDO_KEEP 64

/* The head of the undo log.  Entry i is valid while i < count: page[i]
 * (a page number from PHEAP_BASE) had, before the transaction, the
 * contents of the i-th page after this head. */
struct undo {
	uint64_t count;
	uint64_t pad[7];
	uint64_t page[PHEAP_UNDO_PAGES];
};
#define UNDO_HEAD_SIZE ((sizeof(struct undo) + PAGE - 1) & ~(PAGE - 1))
#define UNDO_SIZE (UNDO_HEAD_SIZE + (uint64_t)PHEAP_UNDO_PAGES * PAGE)

struct ph_view ph = { .fd = -1 };

/* The thread in the transaction: the one that may store to the region.
 * initial-exec: read in a signal handler, where a lazily allocated TLS
 * block could not be. */
static __thread bool tx_mine __attribute__((tls_model("initial-exec")));

/* ---- messages, also from the signal handler: write(2) and no stdio ---- */

static void say(const char *pre, const void *addr, const char *post)
{
	char buf[400], *p = buf, *end = buf + sizeof(buf) - 1;
	uintptr_t v = (uintptr_t)addr;
	int shift;

	while (*pre && p < end)
		*p++ = *pre++;
	if (addr && p + 18 < end) {
		*p++ = '0';
		*p++ = 'x';
		for (shift = 60; shift > 0 && !(v >> shift); shift -= 4)
			;
		for (; shift >= 0; shift -= 4)
			*p++ = "0123456789abcdef"[(v >> shift) & 15];
	}
	while (*post && p < end)
		*p++ = *post++;
	*p++ = '\n';
	if (write(STDERR_FILENO, buf, (size_t)(p - buf)) < 0)
		return;
}

__attribute__((noreturn)) void die(const char *pre, const void *addr,
				   const char *post)
{
	say(pre, addr, post);
	abort();
}

/* Every call that changes the region: a caller's bug otherwise, and
 * going on would break the all-or-nothing promise. */
void need_tx(const char *who)
{
	if (!tx_mine)
		die("pheap: ", NULL, who);
}

/* ---- the undo log ---- */

static inline char *undo_slot(uint64_t i)
{
	return (char *)ph.undo + UNDO_HEAD_SIZE + i * PAGE;
}

static int hot_find(uint64_t page)
{
	int i;

	for (i = 0; i < ph.nhot; i++)
		if (ph.hot[i].page == page)
			return i;
	return -1;
}

/* A page the transaction dirtied by a fault becomes hot, while there is
 * room: it stays writable from the commit on. */
static void hot_add(uint64_t page)
{
	if (ph.nhot < ph.hot_limit && hot_find(page) < 0)
		ph.hot[ph.nhot++] = (struct hot){ page, ph.changes + 1, false };
}

/* Whether hot page i differs from its copy in the undo log (entry i,
 * made at ptx_begin: i < hot_logged). */
static bool hot_changed(int i)
{
	return memcmp(BASE + ph.hot[i].page * PAGE, undo_slot((uint64_t)i),
		      PAGE) != 0;
}

/*
 * The first store of the transaction to a page: keep the page as it was,
 * then let the store through.  The order is what makes a SIGKILL at any
 * instruction safe: the copy is complete before count covers it, and the
 * page is writable only once count does.  (Killed between the two, the
 * entry restores what the page still holds.)
 */
static void undo_page(char *addr)
{
	char *page = page_down(addr);
	uint64_t n = __atomic_load_n(&ph.undo->count, __ATOMIC_RELAXED);

	if (n >= PHEAP_UNDO_PAGES)
		die("pheap: a transaction dirtied more than 4096 pages "
		    "(16 MiB, the undo log) at ",
		    addr, ": a bug of the caller, not of the user");
	memcpy(undo_slot(n), page, PAGE);
	ph.undo->page[n] = (uint64_t)(page - BASE) / PAGE;
	__atomic_store_n(&ph.undo->count, n + 1, __ATOMIC_RELEASE);
	if (mprotect(page, PAGE, PROT_READ | PROT_WRITE) < 0)
		die("pheap: cannot make the page of ", addr,
		    " writable (mprotect failed: vm.max_map_count?)");
	hot_add((uint64_t)(page - BASE) / PAGE);
	__atomic_fetch_add(&ph.faults, 1, __ATOMIC_RELAXED);
}

/* Put back the pages of the first n entries, newest first: the oldest
 * copy of a page is the one from before the transaction. */
static void undo_restore(uint64_t n)
{
	uint64_t i;

	for (i = n; i-- > 0;) {
		memcpy(BASE + ph.undo->page[i] * PAGE, undo_slot(i), PAGE);
		if (ph.hook)
			ph.hook(n - i, n);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void protect(char *lo, char *hi)
{
	if (hi > lo && mprotect(lo, (size_t)(hi - lo), PROT_READ) < 0)
		die("pheap: cannot make the pages from ", lo,
		    " read-only again (mprotect failed)");
}

/*
 * Make the transaction's pages read-only again: the n pages of the undo
 * log (read after count went to 0; the numbers are still there) and the
 * fresh ones, in as few runs as they allow.  Before the next transaction
 * may begin: a page left writable would change without an undo copy.
 */
static void protect_dirty(uint64_t n)
{
	uint64_t *pg = ph.undo->page, i, j;
	char *lo, *hi;

	/* hot pages stay writable: only the others go back */
	for (i = j = 0; i < n; i++)
		if (hot_find(pg[i]) < 0)
			pg[j++] = pg[i];
	n = j;
	qsort(pg, n, sizeof(*pg), cmp_u64);
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && pg[j] == pg[j - 1] + 1; j++)
			;
		lo = BASE + pg[i] * PAGE;
		hi = BASE + (pg[j - 1] + 1) * PAGE;
		/* runs that touch the fresh range go with it */
		if (hi == ph.fresh_lo && ph.fresh_hi > ph.fresh_lo)
			ph.fresh_lo = lo;
		else if (lo == ph.fresh_hi && ph.fresh_hi > ph.fresh_lo)
			ph.fresh_hi = hi;
		else
			protect(lo, hi);
	}
	protect(ph.fresh_lo, ph.fresh_hi);
}

static void punch(uint64_t off, uint64_t len)
{
	if (len)
		fallocate(ph.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  (off_t)off, (off_t)len);
}

/* ---- the SIGSEGV handler ---- */

/* What the fault would have done without pheap: the handler there was
 * before, or the default action (a core). */
static void pass_on(int sig, siginfo_t *si, void *uc)
{
	struct sigaction dfl;

	if (ph.prev.sa_flags & SA_SIGINFO) {
		ph.prev.sa_sigaction(sig, si, uc);
		return;
	}
	if (ph.prev.sa_handler != SIG_DFL && ph.prev.sa_handler != SIG_IGN) {
		ph.prev.sa_handler(sig);
		return;
	}
	/* a SIGSEGV sent by kill(2) that was to be ignored */
	if (ph.prev.sa_handler == SIG_IGN && si->si_code <= 0)
		return;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(sig, &dfl, NULL);
	/* a fault happens again on return, now fatal; a sent signal is
	 * blocked here and delivered on return */
	if (si->si_code <= 0)
		raise(sig);
}

static void pheap_segv(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	char *addr = si->si_addr;
	char *base = __atomic_load_n(&ph.base, __ATOMIC_ACQUIRE);
	char *probe = __atomic_load_n(&ph.probe, __ATOMIC_ACQUIRE);

	if (si->si_code != SEGV_ACCERR)
		goto other;
#ifdef __x86_64__
	/* a jump into the region is no store to log */
	if ((uintptr_t)addr ==
	    (uintptr_t)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP])
		goto other;
#endif
	if (probe && addr >= probe && addr < probe + PAGE) {
		mprotect(probe, PAGE, PROT_READ | PROT_WRITE);
		errno = saved;
		return;
	}
	if (!base || addr < base || addr >= base + ph.prot_end)
		goto other;
	if (!tx_mine) {
		if (__atomic_load_n(&ph.tx, __ATOMIC_RELAXED))
			die("pheap: store to ", addr,
			    " in the persistent heap by a thread that is not "
			    "the one in the transaction");
		die("pheap: store to ", addr,
		    " in the persistent heap outside a transaction (it is "
		    "read-only outside ptx_begin/ptx_commit)");
	}
	undo_page(addr);
	errno = saved;
	return;
other:
	errno = saved;
	pass_on(sig, si, uc);
}

/* Ours, whatever came before (which we keep, to pass faults on to). */
static int install_handler(void)
{
	struct sigaction sa, cur;

	if (sigaction(SIGSEGV, NULL, &cur) < 0)
		return -errno;
	if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == pheap_segv)
		return 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = pheap_segv;
	/* SA_ONSTACK as the handler we pass faults on to had it: ASan's
	 * reports a stack overflow from its alternate stack.  Not always:
	 * valgrind cannot deliver a signal with it and no alternate stack. */
	sa.sa_flags = SA_SIGINFO | SA_RESTART | (cur.sa_flags & SA_ONSTACK);
	/* Every signal blocked: a handler that interrupted the copy could
	 * store to the region and take the same undo entry. */
	sigfillset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &ph.prev) < 0)
		return -errno;
	/* ASan with handle_segv=2 says yes and keeps its own */
	if (sigaction(SIGSEGV, NULL, &cur) < 0 ||
	    !(cur.sa_flags & SA_SIGINFO) || cur.sa_sigaction != pheap_segv)
		return -ENOTSUP;
	return 0;
}

#ifdef __x86_64__
#define PROBE_VALUE 0x5eed5eed5eed5eedULL
/*
 * Whether a store that faults runs again with every register as it was.
 * valgrind by default keeps only the stack and frame registers exact at
 * a memory access: a register set just before the store and set again
 * later in the same block of code is stale when the handler returns, and
 * the store then writes the wrong value, or to the wrong address.  The
 * probe makes that case with a value (rdx, 0 before the syscall, which
 * ends valgrind's block) and an address that is safe either way.
 */
static int probe_resume(void)
{
	uint64_t *slot;
	bool ok;

	slot = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (slot == MAP_FAILED)
		return -errno;
	__atomic_store_n(&ph.probe, (char *)slot, __ATOMIC_RELEASE);
	__asm__ volatile(
		"xor %%edx, %%edx\n\t"
		"mov %[nr], %%eax\n\t"
		"syscall\n\t"
		"movabs %[val], %%rdx\n\t"
		"mov %%rdx, (%[slot])\n\t"
		"mov $1, %%edx\n\t"
		:
		: [slot] "r"(slot), [nr] "i"(SYS_getpid), [val] "i"(PROBE_VALUE)
		: "rax", "rcx", "r11", "rdx", "memory");
	ok = __atomic_load_n(slot, __ATOMIC_RELAXED) == PROBE_VALUE;
	__atomic_store_n(&ph.probe, NULL, __ATOMIC_RELEASE);
	munmap(slot, PAGE);
	return ok ? 0 : -ENOTSUP;
}
#else
static int probe_resume(void)
{
	return 0;
}
#endif

/* The handler, and proof that it works here: before any mapping. */
static int arm(void)
{
	int err;

	if (sysconf(_SC_PAGESIZE) != (long)PAGE)
		return -ENOTSUP;
	err = install_handler();
	return err ? err : probe_resume();
}

/* ---- the region ---- */

static int map_region(int fd, size_t reserve)
{
	void *p = mmap((void *)PHEAP_BASE, reserve, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);

	if (p == MAP_FAILED)
		return -errno;
	/* a kernel before 4.17, or valgrind, takes the address as a hint */
	if (p != (void *)PHEAP_BASE) {
		munmap(p, reserve);
		return -EEXIST;
	}
	return 0;
}

static void set_view(size_t reserve, uint64_t undo_off)
{
	char *base = (char *)PHEAP_BASE;

	ph.reserve = reserve;
	ph.prot_end = undo_off;
	ph.h = (struct header *)base;
	ph.undo = (struct undo *)(base + undo_off);
	ph.slots = base + REPLY_DATA_OFF;
	ph.heap_end = base + undo_off;
}

/* Read-only from here on but for transactions; then the handler's. */
static int activate(int fd)
{
	int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	if (own < 0)
		return -errno;
	if (mprotect((void *)PHEAP_BASE, ph.prot_end, PROT_READ) < 0) {
		int err = -errno;

		close(own);
		return err;
	}
	ph.fd = own;
	__atomic_store_n(&ph.base, (char *)PHEAP_BASE, __ATOMIC_RELEASE);
	return 0;
}

int pheap_create(size_t reserve, uint64_t format)
{
	struct header *h;
	int fd, err;

	if (ph.base)
		return -EBUSY;
	if (reserve < PHEAP_MIN_RESERVE || reserve > PHEAP_MAX_RESERVE)
		return -EINVAL;
	reserve = (reserve + PAGE - 1) & ~(PAGE - 1);
	err = arm();
	if (err)
		return err;
	fd = memfd_create("shmfs-table", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	/* nobody may shrink it under a mapping (SIGBUS) */
	if (ftruncate(fd, (off_t)reserve) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) <
		    0) {
		err = -errno;
		goto fail;
	}
	err = map_region(fd, reserve);
	if (err)
		goto fail;
	set_view(reserve, reserve - UNDO_SIZE);
	h = ph.h;
	h->layout = PHEAP_LAYOUT;
	h->page = PAGE;
	h->format = format;
	h->base = PHEAP_BASE;
	h->reserve = reserve;
	h->heap_off = HEAP_OFF;
	h->undo_off = reserve - UNDO_SIZE;
	h->top = (char *)PHEAP_BASE + HEAP_OFF;
	h->magic = PHEAP_MAGIC;
	err = activate(fd);
	if (err) {
		munmap((void *)PHEAP_BASE, reserve);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return err;
}

/* The fields that never change after pheap_create, read with pread:
 * nothing is mapped before they are known to fit. */
static int check_header(const struct header *h, off_t size, uint64_t format)
{
	if (h->magic != PHEAP_MAGIC)
		return -EINVAL;
	if (h->layout != PHEAP_LAYOUT || h->page != PAGE ||
	    h->base != PHEAP_BASE || h->format != format)
		return -EPROTO;
	if (h->reserve != (uint64_t)size || h->reserve < PHEAP_MIN_RESERVE ||
	    h->reserve > PHEAP_MAX_RESERVE || h->reserve % PAGE ||
	    h->heap_off != HEAP_OFF || h->undo_off != h->reserve - UNDO_SIZE)
		return -EINVAL;
	return 0;
}

/*
 * Undo what a dead process's transaction did.  count goes to 0 only
 * once every page is back: an adopter killed on the way leaves the log
 * whole for the next one.  Then the heap above the restored top is zero
 * again (a transaction writes fresh pages without undo copies).
 */
static int roll_back(void)
{
	struct header *h = ph.h;
	uint64_t n = __atomic_load_n(&ph.undo->count, __ATOMIC_ACQUIRE), i;
	char *top;

	if (n > PHEAP_UNDO_PAGES)
		return -EUCLEAN;
	for (i = 0; i < n; i++)
		if (ph.undo->page[i] >= ph.prot_end / PAGE)
			return -EUCLEAN;
	undo_restore(n);
	__atomic_store_n(&ph.undo->count, 0, __ATOMIC_SEQ_CST);
	top = h->top;
	if (top < BASE + HEAP_OFF || top > ph.heap_end || (uintptr_t)top % 16)
		return -EUCLEAN;
	punch((uint64_t)(page_up(top) - BASE),
	      (uint64_t)(ph.heap_end - page_up(top)));
	if (n) {
		ph.rollbacks++;
		ph.rollback_pages += n;
	}
	return 0;
}

int pheap_adopt(int fd, uint64_t format)
{
	union {
		struct header h;
		char page[PAGE];
	} hd;
	struct stat st;
	int err;

	if (ph.base)
		return -EBUSY;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (pread(fd, &hd, sizeof(hd), 0) != (ssize_t)sizeof(hd))
		return -EINVAL;
	err = check_header(&hd.h, st.st_size, format);
	if (err)
		return err;
	err = arm();
	if (err)
		return err;
	err = map_region(fd, hd.h.reserve);
	if (err)
		return err;
	set_view(hd.h.reserve, hd.h.undo_off);
	ph.fd = fd; /* for roll_back's punch; activate takes its own */
	err = roll_back();
	if (!err)
		err = activate(fd);
	if (err) {
		ph.fd = -1;
		munmap((void *)PHEAP_BASE, hd.h.reserve);
	}
	return err;
}

void pheap_close(void)
{
	if (!ph.base)
		return;
	if (ph.tx)
		die("pheap: pheap_close inside a transaction", NULL, "");
	__atomic_store_n(&ph.base, NULL, __ATOMIC_RELEASE);
	ph.nhot = ph.hot_limit = 0; /* the next region's user says */
	ph.changes = 0;
	munmap((void *)PHEAP_BASE, ph.reserve);
	close(ph.fd);
	ph.fd = -1;
	ph.h = NULL;
	ph.undo = NULL;
}

bool pheap_active(void)
{
	return __atomic_load_n(&ph.base, __ATOMIC_ACQUIRE) != NULL;
}

void *pheap_root(void)
{
	return ph.base ? ph.h->root : NULL;
}

void pheap_set_root(void *p)
{
	need_tx("pheap_set_root outside a transaction");
	if (ph.h->root != p)
		ph.h->root = p;
}

/* ---- transactions ---- */

void ptx_begin(void)
{
	int i;

	if (!ph.base)
		die("pheap: ptx_begin without a region", NULL, "");
	if (ph.tx)
		die("pheap: ptx_begin inside a transaction", NULL, "");
	/* another process stored to the region (a child of fork?) */
	if (__atomic_load_n(&ph.undo->count, __ATOMIC_RELAXED))
		die("pheap: ptx_begin: the undo log is not empty", NULL, "");
	ph.fresh_lo = ph.fresh_hi = page_up(ph.h->top);
	/* the hot pages, as they are now, before any store of this
	 * transaction: what a fault would have copied (a slot that still
	 * holds it is not copied again) */
	for (i = 0; i < ph.nhot; i++) {
		if (!ph.hot[i].copied)
			memcpy(undo_slot((uint64_t)i),
			       BASE + ph.hot[i].page * PAGE, PAGE);
		ph.undo->page[i] = ph.hot[i].page;
		__atomic_store_n(&ph.undo->count, (uint64_t)i + 1,
				 __ATOMIC_RELEASE);
	}
	ph.hot_logged = (uint64_t)ph.nhot;
	tx_mine = true;
	__atomic_store_n(&ph.tx, true, __ATOMIC_RELAXED);
}

bool ptx_active(void)
{
	return tx_mine;
}

bool ptx_dirty(void)
{
	int i;

	if (!ph.tx)
		return false;
	if (__atomic_load_n(&ph.undo->count, __ATOMIC_RELAXED) >
		    ph.hot_logged ||
	    ph.fresh_hi > ph.fresh_lo)
		return true;
	for (i = 0; (uint64_t)i < ph.hot_logged; i++)
		if (hot_changed(i))
			return true;
	return false;
}

/*
 * At the end of a transaction that logged n pages: hot pages it changed
 * are fresh again; one that no transaction changing anything changed in
 * HOT_AGE of them goes back to read-only, in HOT_AGE_FULL of them while
 * there are as many hot pages as allowed (the pages of other work take
 * its place).  Transactions that only read do not age anything.  A hot
 * page the transaction left as it was still has its copy in its slot
 * (it costs a compare, not a copy); one that moves to another entry, or
 * came during the transaction, has not.
 */
#define HOT_AGE 256
#define HOT_AGE_FULL 16
static void hot_age(uint64_t n)
{
	bool changed = n > ph.hot_logged || ph.fresh_hi > ph.fresh_lo;
	uint64_t age = ph.nhot < ph.hot_limit ? HOT_AGE : HOT_AGE_FULL;
	int i;

	for (i = 0; (uint64_t)i < ph.hot_logged; i++) {
		ph.hot[i].copied = !hot_changed(i);
		if (!ph.hot[i].copied) {
			ph.hot[i].last = ph.changes + 1;
			changed = true;
		}
	}
	if (!changed)
		return;
	ph.changes++;
	for (i = 0; i < ph.nhot;)
		if (ph.changes - ph.hot[i].last > age) {
			char *p = BASE + ph.hot[i].page * PAGE;

			protect(p, p + PAGE);
			ph.hot[i] = ph.hot[--ph.nhot];
			ph.hot[i].copied = false;
		} else {
			i++;
		}
}

void pheap_set_hot(int pages)
{
	int i;

	if (pages < 0)
		pages = 0;
	if (pages > PHEAP_HOT_MAX)
		pages = PHEAP_HOT_MAX;
	if (ph.tx)
		die("pheap: pheap_set_hot inside a transaction", NULL, "");
	for (i = pages; i < ph.nhot; i++) {
		char *p = BASE + ph.hot[i].page * PAGE;

		protect(p, p + PAGE);
	}
	if (ph.nhot > pages)
		ph.nhot = pages;
	ph.hot_limit = pages;
}

static void end_tx(uint64_t logged)
{
	uint64_t pages = logged + (uint64_t)(ph.fresh_hi - ph.fresh_lo) / PAGE;

	protect_dirty(logged);
	ph.last_tx_pages = pages;
	if (pages > ph.max_tx_pages)
		ph.max_tx_pages = pages;
	if (logged > UNDO_KEEP)
		punch((uint64_t)(undo_slot(UNDO_KEEP) - BASE),
		      (logged - UNDO_KEEP) * PAGE);
	ph.fresh_lo = ph.fresh_hi = NULL;
	ph.hot_logged = 0;
	__atomic_store_n(&ph.tx, false, __ATOMIC_RELAXED);
	tx_mine = false;
}

void ptx_commit(void)
{
	uint64_t n;

	need_tx("ptx_commit outside a transaction");
	n = __atomic_load_n(&ph.undo->count, __ATOMIC_RELAXED);
	/* hot pages compare with their copies before anything reuses them */
	ph.commits++;
	hot_age(n);
	/* the commit point: every store of the transaction is before it */
	__atomic_store_n(&ph.undo->count, 0, __ATOMIC_SEQ_CST);
	end_tx(n);
}

void ptx_abort(void)
{
	uint64_t n;

	need_tx("ptx_abort outside a transaction");
	n = __atomic_load_n(&ph.undo->count, __ATOMIC_RELAXED);
	/* hot page i comes back as slot i has it: a copy still */
	undo_restore(n);
	__atomic_store_n(&ph.undo->count, 0, __ATOMIC_SEQ_CST);
	/* the heap grew into them: zero again, as above any top */
	punch((uint64_t)(ph.fresh_lo - BASE),
	      (uint64_t)(ph.fresh_hi - ph.fresh_lo));
	end_tx(n);
	ph.aborts++;
}

/* ---- the rest ---- */

void pheap_stats(struct pheap_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (ph.base) {
		st->reserve = ph.reserve;
		st->heap_size = (uint64_t)(ph.h->top - (BASE + HEAP_OFF));
		st->in_use = ph.h->in_use;
		st->objects = ph.h->objects;
		st->replies = reply_count();
	}
	st->last_tx_pages = ph.last_tx_pages;
	st->max_tx_pages = ph.max_tx_pages;
	st->faults = __atomic_load_n(&ph.faults, __ATOMIC_RELAXED);
	st->commits = ph.commits;
	st->aborts = ph.aborts;
	st->rollbacks = ph.rollbacks;
	st->rollback_pages = ph.rollback_pages;
	st->hot = (uint64_t)ph.nhot;
}

void pheap_set_rollback_hook(void (*hook)(uint64_t done, uint64_t total))
{
	ph.hook = hook;
}
