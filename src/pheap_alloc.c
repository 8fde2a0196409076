/*
 * The persistent heap's allocator (pheap.h): chunks in bins, carved from
 * free chunks or from the top of the heap; pmalloc, pcalloc, prealloc and
 * pfree.  Its state (the bins, the top) is in the region's struct header
 * (pheap_impl.h): a transaction rolled back takes it back too.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "pheap_impl.h"

/* Chunks of a ranged bin looked at before a higher bin is taken. */
#define FIRST_FIT_SCAN 32

static inline uint64_t csize(const struct pchunk *c)
{
	return c->head & ~C_FLAGS;
}

static inline struct pchunk *at(void *p, uint64_t off)
{
	return (struct pchunk *)((char *)p + off);
}

static inline struct pchunk *before(void *p, uint64_t off)
{
	return (struct pchunk *)((char *)p - off);
}

static unsigned bin_of(uint64_t size)
{
	unsigned lg;

	if (size <= SMALL_MAX)
		return (unsigned)(size / 16 - 2);
	lg = 63 - (unsigned)__builtin_clzll(size);
	return SMALL_BINS + (lg - 10) * 4 + (unsigned)((size >> (lg - 2)) & 3);
}

static void bin_insert(struct pchunk *c)
{
	struct header *h = ph.h;
	unsigned b = bin_of(csize(c));

	c->next = h->bins[b];
	c->prev = NULL;
	if (c->next)
		c->next->prev = c;
	else
		h->binmap[b / 64] |= 1ULL << (b % 64);
	h->bins[b] = c;
}

static void bin_remove(struct pchunk *c)
{
	struct header *h = ph.h;
	unsigned b = bin_of(csize(c));

	if (c->prev)
		c->prev->next = c->next;
	else
		h->bins[b] = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (!h->bins[b])
		h->binmap[b / 64] &= ~(1ULL << (b % 64));
}

/* The lowest non-empty bin above b, or NBINS. */
static unsigned bin_above(unsigned b)
{
	unsigned w = (b + 1) / 64;
	uint64_t bits;

	if (b + 1 >= NBINS)
		return NBINS;
	bits = ph.h->binmap[w] & (~0ULL << ((b + 1) % 64));
	while (!bits && ++w < BINMAP_WORDS)
		bits = ph.h->binmap[w];
	return bits ? w * 64 + (unsigned)__builtin_ctzll(bits) : NBINS;
}

static struct pchunk *bin_find(uint64_t need)
{
	unsigned b = bin_of(need), k;
	struct pchunk *c = ph.h->bins[b];

	if (b < SMALL_BINS && c)
		return c;
	for (k = 0; c && k < FIRST_FIT_SCAN; c = c->next, k++)
		if (csize(c) >= need)
			return c;
	b = bin_above(b);
	return b < NBINS ? ph.h->bins[b] : NULL;
}

/* Tell the chunk after c whether c is free.  Only stores what changes: a
 * store dirties a page. */
static void tell_next(struct pchunk *c, bool c_free)
{
	struct pchunk *n = at(c, csize(c));

	if ((char *)n == ph.h->top) {
		if (ph.h->top_prev_free != (c_free ? c : NULL))
			ph.h->top_prev_free = c_free ? c : NULL;
	} else if (c_free) {
		n->prev_size = csize(c);
		n->head &= ~C_PREV_INUSE;
	} else if (!(n->head & C_PREV_INUSE)) {
		n->head |= C_PREV_INUSE;
	}
}

/* Give c (free, out of its bin) need bytes; the rest, if it can be a
 * chunk, goes back to a bin. */
static void carve(struct pchunk *c, uint64_t need)
{
	uint64_t s = csize(c);
	struct pchunk *r;

	if (s - need < MIN_CHUNK) {
		c->head |= C_INUSE;
		tell_next(c, false);
		return;
	}
	c->head = need | C_INUSE | (c->head & C_PREV_INUSE);
	r = at(c, need);
	r->head = (s - need) | C_PREV_INUSE;
	tell_next(r, true);
	bin_insert(r);
}

/* Make the heap writable up to new_top: pages that were above the top
 * when the transaction began hold zeros and need no undo copy. */
static int grow_fresh(char *new_top)
{
	char *want = page_up(new_top);

	if (want <= ph.fresh_hi)
		return 0;
	if (mprotect(ph.fresh_hi, (size_t)(want - ph.fresh_hi),
		     PROT_READ | PROT_WRITE) < 0)
		return -1;
	ph.fresh_hi = want;
	return 0;
}

/* A chunk from the top, merged with the free chunk below it if any.
 * *dirty: bytes of the caller's part that may not be zero. */
static struct pchunk *from_top(uint64_t need, uint64_t *dirty)
{
	struct header *h = ph.h;
	struct pchunk *c = h->top_prev_free;
	char *start = c ? (char *)c : h->top;

	/* bin_find may have stopped looking before it */
	if (c && csize(c) >= need) {
		bin_remove(c);
		carve(c, need);
		*dirty = csize(c) - HDR;
		return c;
	}
	if (need > (uint64_t)(ph.heap_end - start) ||
	    grow_fresh(start + need) < 0)
		return NULL;
	if (c) {
		bin_remove(c);
		*dirty = (uint64_t)(h->top - (char *)c) - HDR;
		c->head = need | C_INUSE | (c->head & C_PREV_INUSE);
		h->top_prev_free = NULL;
	} else {
		/* prev_size: above the top, zero already */
		c = (struct pchunk *)h->top;
		c->head = need | C_INUSE | C_PREV_INUSE;
		*dirty = 0;
	}
	h->top = start + need;
	return c;
}

/* Chunk size for n bytes, or 0 when no heap could hold it. */
static uint64_t chunk_for(size_t n)
{
	uint64_t heap = (uint64_t)(ph.heap_end - (BASE + HEAP_OFF));

	if (n > heap)
		return 0;
	n = (n + HDR + 15) & ~(uint64_t)15;
	return n < MIN_CHUNK ? MIN_CHUNK : n;
}

static void *alloc(size_t n, uint64_t *dirty)
{
	uint64_t need = chunk_for(n);
	struct pchunk *c = NULL;

	if (need)
		c = bin_find(need);
	if (c) {
		bin_remove(c);
		carve(c, need);
		*dirty = csize(c) - HDR;
	} else if (need) {
		c = from_top(need, dirty);
	}
	if (!c) {
		errno = ENOMEM;
		return NULL;
	}
	ph.h->in_use += csize(c);
	ph.h->objects++;
	return (char *)c + HDR;
}

static void corrupt(const char *who, const void *p)
{
	die(who, p,
	    ": not an object of the persistent heap, freed already, "
	    "or the heap is corrupted");
}

/* The chunk of an object the caller gives back, checked. */
static struct pchunk *chunk_of(void *p, const char *who)
{
	char *cp = (char *)p - HDR;
	struct pchunk *c = (struct pchunk *)cp;
	uint64_t s;

	if ((uintptr_t)p % 16 || cp < BASE + HEAP_OFF || cp >= ph.h->top ||
	    !(c->head & C_INUSE))
		corrupt(who, p);
	s = csize(c);
	if (s < MIN_CHUNK || s > (uint64_t)(ph.h->top - cp))
		corrupt(who, p);
	return c;
}

static void chunk_free(struct pchunk *c)
{
	struct header *h = ph.h;
	uint64_t s = csize(c);
	struct pchunk *n = at(c, s), *p;

	h->in_use -= s;
	h->objects--;
	if (!(c->head & C_PREV_INUSE)) {
		p = before(c, c->prev_size);
		if ((char *)p < BASE + HEAP_OFF || csize(p) != c->prev_size ||
		    (p->head & C_INUSE))
			corrupt("pheap: pfree: the chunk before ",
				(char *)c + HDR);
		bin_remove(p);
		s += csize(p);
		c = p;
	}
	if ((char *)n != h->top && !(n->head & C_INUSE)) {
		if (csize(n) < MIN_CHUNK ||
		    csize(n) > (uint64_t)(h->top - (char *)n))
			corrupt("pheap: pfree: the chunk after ",
				(char *)c + HDR);
		bin_remove(n);
		s += csize(n);
	}
	c->head = s | C_PREV_INUSE;
	tell_next(c, true);
	bin_insert(c);
}

void *pmalloc(size_t n)
{
	uint64_t dirty;

	need_tx("pmalloc outside a transaction");
	return alloc(n, &dirty);
}

void *pcalloc(size_t nmemb, size_t size)
{
	uint64_t dirty;
	size_t n;
	void *p;

	need_tx("pcalloc outside a transaction");
	if (__builtin_mul_overflow(nmemb, size, &n)) {
		errno = ENOMEM;
		return NULL;
	}
	p = alloc(n, &dirty);
	if (p && dirty)
		memset(p, 0, dirty < n ? dirty : n);
	return p;
}

/* c, which ends at the top, grows to need from the heap above. */
static bool grow_at_top(struct pchunk *c, uint64_t need)
{
	char *end = (char *)c + need;

	if (need > (uint64_t)(ph.heap_end - (char *)c) || grow_fresh(end) < 0)
		return false;
	c->head = need | (c->head & C_FLAGS);
	ph.h->top = end;
	return true;
}

static bool grow_in_place(struct pchunk *c, uint64_t need)
{
	struct header *h = ph.h;
	uint64_t s = csize(c), total;
	struct pchunk *n = at(c, s), *r;

	if ((char *)n == h->top)
		return grow_at_top(c, need);
	if (n->head & C_INUSE)
		return false;
	total = s + csize(n);
	if (total < need) {
		/* the free chunk after c is the last: the top is behind it */
		if (n != h->top_prev_free)
			return false;
		c->head = total | (c->head & C_FLAGS);
		if (!grow_at_top(c, need)) {
			c->head = s | (c->head & C_FLAGS);
			return false;
		}
		bin_remove(n);
		h->top_prev_free = NULL;
		return true;
	}
	bin_remove(n);
	if (total - need < MIN_CHUNK) {
		c->head = total | (c->head & C_FLAGS);
		tell_next(c, false);
		return true;
	}
	c->head = need | (c->head & C_FLAGS);
	r = at(c, need);
	r->head = (total - need) | C_PREV_INUSE;
	tell_next(r, true);
	bin_insert(r);
	return true;
}

/* c keeps need bytes; the rest, if it can be a chunk, is freed. */
static void shrink(struct pchunk *c, uint64_t need)
{
	uint64_t s = csize(c);
	struct pchunk *r;

	if (s - need < MIN_CHUNK)
		return;
	c->head = need | (c->head & C_FLAGS);
	r = at(c, need);
	r->head = (s - need) | C_INUSE | C_PREV_INUSE;
	ph.h->objects++; /* chunk_free counts it out again */
	chunk_free(r);
}

void *prealloc(void *p, size_t n)
{
	struct pchunk *c;
	uint64_t need, s;
	void *q;

	need_tx("prealloc outside a transaction");
	if (!p)
		return pmalloc(n);
	c = chunk_of(p, "pheap: prealloc: ");
	need = chunk_for(n);
	if (!need) {
		errno = ENOMEM;
		return NULL;
	}
	s = csize(c);
	if (need <= s) {
		shrink(c, need);
		return p;
	}
	if (grow_in_place(c, need)) {
		ph.h->in_use += csize(c) - s;
		return p;
	}
	q = pmalloc(n);
	if (!q)
		return NULL;
	memcpy(q, p, s - HDR);
	pfree(p);
	return q;
}

void pfree(void *p)
{
	need_tx("pfree outside a transaction");
	if (p)
		chunk_free(chunk_of(p, "pheap: pfree: "));
}
