/*
 * What the parts of the persistent heap share, and nothing outside them
 * includes: pheap.c (the region, the SIGSEGV handler that keeps the undo
 * log, transactions), pheap_alloc.c (the allocator) and pheap_reply.c
 * (the reply records).  The region's layout, offsets from PHEAP_BASE:
 *
 *   0            header: geometry, root, allocator state
 *   PAGE         reply index, one entry per slot
 *   2 * PAGE     reply slots, PHEAP_REPLY_MAX bytes each
 *   HEAP_OFF     the heap, up to its top; zeros above the top
 *   undo_off     the undo log: count and page numbers, then the old pages
 *   reserve      end of the memfd
 *
 * Everything below undo_off is read-only except the pages the open
 * transaction has dirtied; the undo log is always writable, so the
 * handler never faults on it.
 */
#ifndef SHMFS_PHEAP_IMPL_H
#define SHMFS_PHEAP_IMPL_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pheap.h"

#define PAGE 4096UL
#define BASE ((char *)PHEAP_BASE)
/* "shmfs-ph" read as a little-endian word. */
#define PHEAP_MAGIC 0x68702d73666d6873ULL
/* pheap's own layout, for adopters of another version: a change of the
 * structures or constants of this file or of the pheap*.c files bumps it. */
#define PHEAP_LAYOUT 3 /* 3: 64 reply records of 256 bytes */

#define REPLY_INDEX_OFF PAGE
#define REPLY_DATA_OFF (2 * PAGE)
#define HEAP_OFF \
	(REPLY_DATA_OFF + (uint64_t)PHEAP_REPLY_SLOTS * PHEAP_REPLY_MAX)

/*
 * A chunk of the heap: its header, then the caller's bytes.  prev_size is
 * the size of the chunk before, kept only while that one is free, so that
 * a free can merge with it; C_PREV_INUSE says which.  A free chunk links
 * into its bin through its first bytes.  No two free chunks are ever
 * neighbours.
 */
struct pchunk {
	uint64_t prev_size;
	uint64_t head; /* size | C_INUSE | C_PREV_INUSE */
	struct pchunk *next, *prev;
};
#define HDR offsetof(struct pchunk, next)
#define MIN_CHUNK sizeof(struct pchunk)
#define C_INUSE 1ULL
#define C_PREV_INUSE 2ULL
#define C_FLAGS 15ULL

/*
 * Bins: one per chunk size up to 1 KiB (exact fit, the table's objects),
 * then four per power of two (first fit within, any chunk of a higher
 * bin fits) up to 2^36, beyond PHEAP_MAX_RESERVE.
 */
#define SMALL_MAX 1024
#define SMALL_BINS (SMALL_MAX / 16 - 1)
#define NBINS (SMALL_BINS + (36 - 10) * 4)
#define BINMAP_WORDS ((NBINS + 63) / 64)

struct header {
	uint64_t magic;
	uint32_t layout;
	uint32_t page;
	uint64_t format;
	uint64_t base;
	uint64_t reserve;
	uint64_t heap_off;
	uint64_t undo_off;
	/* Changed by transactions, and rolled back with them. */
	void *root;
	char *top; /* heap above it: never allocated, zero */
	struct pchunk *top_prev_free; /* the free chunk just below top */
	uint64_t in_use;
	uint64_t objects;
	uint64_t reply_next; /* records ever made; slot = reply_next % SLOTS */
	uint64_t binmap[BINMAP_WORDS];
	struct pchunk *bins[NBINS];
};
_Static_assert(sizeof(struct header) <= PAGE, "header larger than a page");

struct undo;

/* This process's view.  The handler reads base, probe, undo, prot_end;
 * they change only while no fault of the region can happen. */
struct ph_view {
	char *base; /* PHEAP_BASE while a region is mapped, else NULL */
	size_t reserve;
	size_t prot_end; /* [base, base + prot_end) is read-only outside tx */
	struct header *h;
	struct undo *undo;
	char *slots;
	char *heap_end;
	int fd;
	bool tx;
	/* Pages above the top when the transaction began, made writable as
	 * the heap grows into them: zero before, so they need no undo. */
	char *fresh_lo, *fresh_hi;
	char *probe;
	void (*hook)(uint64_t done, uint64_t total);
	struct sigaction prev;
	uint64_t faults, commits, aborts, rollbacks, rollback_pages;
	uint64_t last_tx_pages, max_tx_pages;
	/* Hot pages (pheap_set_hot): left writable after the transactions
	 * that dirtied them, and logged (entry i for hot[i]) at every
	 * ptx_begin instead of faulting again.  hot_logged: how many of the
	 * log's first entries are theirs in the open transaction. */
	struct hot {
		uint64_t page; /* page number from PHEAP_BASE */
		uint64_t last; /* the last commit that changed it */
		/* undo slot i still holds what the page holds: the last
		 * commit compared them equal, so ptx_begin need not copy */
		bool copied;
	} hot[PHEAP_HOT_MAX];
	int nhot, hot_limit;
	uint64_t hot_logged;
	uint64_t changes; /* transactions that changed anything: hot ages */
};
extern struct ph_view ph;

static inline char *page_down(const void *p)
{
	return (char *)((uintptr_t)p & ~(PAGE - 1));
}

static inline char *page_up(const void *p)
{
	return (char *)(((uintptr_t)p + PAGE - 1) & ~(PAGE - 1));
}

/* In pheap.c: a message by write(2) alone, then abort: the signal
 * handler's way too. */
__attribute__((noreturn)) void die(const char *pre, const void *addr,
				   const char *post);
void need_tx(const char *who);

/* In pheap_reply.c: the records held, for pheap_stats. */
uint64_t reply_count(void);

#endif
