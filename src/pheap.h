/*
 * The persistent heap: the memory the table lives in, so that it outlives
 * the daemon.  It is one sparse memfd mapped MAP_SHARED at PHEAP_BASE in
 * every server process; pointers stored in it stay valid in a successor
 * that maps the same memfd (a holder process keeps it open), also one
 * exec'd from a newer binary.
 *
 * Every change happens inside a transaction, all or nothing even if the
 * process is SIGKILLed at any instruction.  No store is instrumented:
 * outside a transaction's dirty pages the region is read-only, the first
 * store to a page faults, and the SIGSEGV handler copies the page into an
 * undo log in the same memfd before it makes the page writable and lets
 * the store run again.  Commit is one store (the log's count to 0);
 * adoption rolls back whatever log is left.
 *
 * Rules for callers:
 *  - One transaction at a time, by one thread: the holder of the caller's
 *    own lock (the table lock).  Only that thread may store to the region,
 *    and only between ptx_begin and ptx_commit; any other store aborts the
 *    process with a message naming the address.  Reads need no
 *    transaction (but do need the lock, to see no half-made change).
 *  - Never let the kernel write into the region: a read(2), recv(2),
 *    stat(2)... whose output buffer is region memory fails with EFAULT on
 *    a read-only page instead of faulting.  Copy into a local buffer
 *    first.  Region memory as an *input* buffer (write(2)) is fine.
 *  - Another SIGSEGV handler must be installed before pheap_create or
 *    pheap_adopt: pheap passes it every fault that is not its own, but
 *    one installed later would take pheap's faults too.
 *  - One server at a time: the holder hands the memfd to a successor only
 *    once the server before is dead.  A child made by fork shares the
 *    region (MAP_SHARED) and must not store to it either.
 *  - No lock, and nothing else the kernel writes (a futex word), lives in
 *    the region.
 *
 * pheap is not thread-safe by itself: the caller's lock orders every call
 * but pheap_active and pheap_stats' process counters.
 */
#ifndef SHMFS_PHEAP_H
#define SHMFS_PHEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/*
 * Where the region is mapped, in every process.  x86_64 gives user space
 * 128 TiB (47 bits); this is 95.4 TiB up, in a range nothing else takes:
 * PIE programs load at 0x5555_5555_4000 plus their ASLR offset (under
 * 1 TiB with the default vm.mmap_rnd_bits of 28), their brk heap just
 * above, and mmap() hands out addresses top-down from below the stack
 * (0x7fxx_xxxx_xxxx less the same offset), so neither comes within
 * 8 TiB.  Only vm.mmap_rnd_bits raised to 32 (16 TiB of offset) could
 * load a program here (for a 1 GiB region, once in 16000 runs or so).
 * ASan's shadow ends at 0x1000_7fff_7fff and its allocator starts at
 * 0x6000_0000_0000, which PHEAP_BASE + PHEAP_MAX_RESERVE stays below;
 * MSan allows 0x5100_0000_0000 to 0x6000_0000_0000 too (TSan does not:
 * it keeps this range unmapped).  The mapping is made with
 * MAP_FIXED_NOREPLACE and its address checked: a clash is an error
 * (-EEXIST), never a mapping replaced.
 */
#define PHEAP_BASE ((uintptr_t)0x5f5e00000000ULL)
#define PHEAP_MIN_RESERVE (32ULL << 20)
#define PHEAP_MAX_RESERVE (64ULL << 30)
/* Pages one transaction may dirty (16 MiB): more is a caller's bug. */
#define PHEAP_UNDO_PAGES 4096
/* Most pages pheap_set_hot may keep writable. */
#define PHEAP_HOT_MAX 32
/* Reply records kept (the newest) and the largest reply recorded. */
#define PHEAP_REPLY_SLOTS 64
#define PHEAP_REPLY_MAX 256

/*
 * Make a new region: a sealed sparse memfd named "shmfs-table" of
 * `reserve` bytes (rounded up to pages; PHEAP_MIN_RESERVE to
 * PHEAP_MAX_RESERVE; only pages touched cost memory) mapped at
 * PHEAP_BASE, with `format`, the caller's version of what it keeps in
 * the region, in its header.  The last 16 MiB are the undo log.  Returns
 * the memfd (O_CLOEXEC; the caller hands it to the holder and may close
 * it: pheap keeps a descriptor of its own) or -errno: -EBUSY when a
 * region is active already, -EINVAL for a reserve out of bounds, -EEXIST
 * when something else is mapped at PHEAP_BASE, -ENOTSUP when this process
 * cannot resume a store after a write fault (see pheap_adopt).
 */
int pheap_create(size_t reserve, uint64_t format);

/*
 * Map a region another process made, from its memfd (left open for the
 * caller), and roll back a transaction it did not finish.  Returns 0 or
 * -errno, with nothing mapped on error:
 *   -EPROTO   a region of another format (the caller's `format`, or
 *             pheap's own layout): a newer or older daemon's table
 *   -EINVAL   not a region at all (magic or size wrong)
 *   -EUCLEAN  a region whose undo log is out of bounds: corrupted
 *   -EBUSY    a region is active already in this process
 *   -EEXIST   something else is mapped at PHEAP_BASE
 *   -ENOTSUP  this process cannot resume a store after a write fault:
 *             under valgrind without --px-default=allregs-at-mem-access
 *             (by default valgrind does not keep every register exact at
 *             a store that faults, and the store would run again with a
 *             stale one), or the SIGSEGV handler was refused (ASan with
 *             handle_segv=2)
 * An adopter killed in the middle of the rollback leaves the undo log
 * whole: the next adopter rolls back again, from the start.
 */
int pheap_adopt(int fd, uint64_t format);

/* Unmap the region and close pheap's descriptor of it: teardown, and
 * tests.  The memfd lives on in the holder.  Not inside a transaction. */
void pheap_close(void);

/* Whether a region is mapped in this process. */
bool pheap_active(void);

/* The one pointer the owner keeps in the header (its table), or NULL. */
void *pheap_root(void);

/* Set the root pointer; inside a transaction. */
void pheap_set_root(void *p);

/*
 * Allocation in the region, inside a transaction (else the process
 * aborts: a caller's bug).  Memory is 16-byte aligned; the allocator's
 * state lives in the region too, so it commits and rolls back with the
 * rest.  NULL with errno ENOMEM when the region is full or the size
 * overflows; the heap is then as it was.  pmalloc(0) and prealloc(p, 0)
 * give a smallest object, not NULL.  prealloc(NULL, n) is pmalloc(n);
 * prealloc grows in place when it can, and keeps p on failure.
 * pfree(NULL) does nothing; freeing anything else that pmalloc did not
 * give, or twice, aborts with a message.
 *
 * Memory that has never been allocated costs no undo log: pcalloc of a
 * large array from the top of the heap is nearly free.
 */
void *pmalloc(size_t n);
void *pcalloc(size_t nmemb, size_t size);
void *prealloc(void *p, size_t n);
void pfree(void *p);

/*
 * Transactions.  The caller holds its own lock from ptx_begin to
 * ptx_commit; the calling thread becomes the only one that may store to
 * the region.  A transaction begun while one is open aborts the process.
 */
void ptx_begin(void);

/* Whether the calling thread is in a transaction (for assertions). */
bool ptx_active(void);

/* Whether this transaction has changed a page (or allocated one) yet. */
bool ptx_dirty(void);

/*
 * Up to `pages` pages (0, the default, .. PHEAP_HOT_MAX) that
 * transactions keep dirtying stay writable between transactions, and
 * ptx_begin copies them into the undo log instead of taking a write
 * fault (about 10 us) for each in each transaction: what a busy table
 * keeps changing costs a memcpy, and only when the last transaction
 * changed it.  The price: a store to a hot page outside a transaction is
 * no longer caught (0 keeps every page read-only, to find such stores),
 * and the commit compares the hot pages with their copies.  A hot page
 * that 256 transactions in a row changing anything left alone goes back
 * to read-only, after 16 while `pages` are hot.  Outside a transaction.
 */
void pheap_set_hot(int pages);  /* again after each create or adopt */

/* Make the transaction's changes durable, at one store: a process killed
 * before it leaves the state as ptx_begin found it, one killed after it
 * leaves it whole. */
void ptx_commit(void);

/* Undo the transaction's changes in place, as if it had not begun.
 * Pointers into the region that the caller keeps elsewhere may now point
 * at freed memory. */
void ptx_abort(void);

/*
 * Record the reply built for the request `id`, inside its transaction, so
 * that it commits with the state it describes: a server that meets the
 * same request again (a resend after a restart) answers it with
 * pheap_find_reply instead of applying it twice.  The newest
 * PHEAP_REPLY_SLOTS records are kept, each up to PHEAP_REPLY_MAX bytes;
 * the same id recorded twice finds the newer.  Returns 0, -EMSGSIZE for a
 * reply too large, -EINVAL for a negative iovcnt.
 */
int ptx_record_reply(uint64_t id, const struct iovec *iov, int iovcnt);

/*
 * The recorded reply of `id`: its length (which may be more than cap:
 * then only cap bytes were copied into buf), or -ENOENT.  Reads only.
 */
ssize_t pheap_find_reply(uint64_t id, void *buf, size_t cap);

/* For a stats xattr.  The first group is the region's (the table's), the
 * rest count what this process did. */
struct pheap_stats {
	uint64_t reserve; /* bytes of the memfd */
	uint64_t heap_size; /* bytes of heap ever allocated */
	uint64_t in_use; /* bytes in live objects, headers too */
	uint64_t objects; /* live objects */
	uint64_t replies; /* reply records held */
	uint64_t last_tx_pages; /* pages the last transaction dirtied */
	uint64_t max_tx_pages; /* ... and the most any did */
	uint64_t faults; /* write faults taken */
	uint64_t commits;
	uint64_t aborts; /* ptx_abort */
	uint64_t rollbacks; /* transactions rolled back at adopt */
	uint64_t rollback_pages; /* pages they restored */
	uint64_t hot; /* pages kept writable now (pheap_set_hot) */
};
void pheap_stats(struct pheap_stats *st);

/*
 * For tests: called by a rollback (pheap_adopt's, ptx_abort's) after each
 * page restored, `done` of `total`, so that a test can kill an adopter in
 * the middle of it.  NULL (the default) for none.
 */
void pheap_set_rollback_hook(void (*hook)(uint64_t done, uint64_t total));

#endif
