/*
 * The persistent heap's reply records (pheap.h): the reply to a request,
 * recorded in its transaction, so that a server that meets the request
 * again answers it instead of applying it twice.  A ring of slots below
 * the heap, with an index page (pheap_impl.h).
 */
#include <errno.h>
#include <string.h>

#include "pheap_impl.h"

struct reply_ent {
	uint64_t id;
	uint32_t len;
	uint32_t used;
};
_Static_assert(PHEAP_REPLY_SLOTS * sizeof(struct reply_ent) <= PAGE,
	       "reply index larger than a page");

static inline struct reply_ent *reply_index(void)
{
	return (struct reply_ent *)(BASE + REPLY_INDEX_OFF);
}

int ptx_record_reply(uint64_t id, const struct iovec *iov, int iovcnt)
{
	struct reply_ent *e;
	size_t len = 0, off = 0;
	uint64_t slot;
	int i;

	need_tx("ptx_record_reply outside a transaction");
	if (iovcnt < 0)
		return -EINVAL;
	for (i = 0; i < iovcnt; i++)
		if (__builtin_add_overflow(len, iov[i].iov_len, &len) ||
		    len > PHEAP_REPLY_MAX)
			return -EMSGSIZE;
	slot = ph.h->reply_next % PHEAP_REPLY_SLOTS;
	for (i = 0; i < iovcnt; i++) {
		if (!iov[i].iov_len)
			continue;
		memcpy(ph.slots + slot * PHEAP_REPLY_MAX + off, iov[i].iov_base,
		       iov[i].iov_len);
		off += iov[i].iov_len;
	}
	e = &reply_index()[slot];
	e->id = id;
	e->len = (uint32_t)len;
	e->used = 1;
	ph.h->reply_next++;
	return 0;
}

/* Records held: all made, up to the number of slots. */
uint64_t reply_count(void)
{
	uint64_t next = ph.h->reply_next;

	return next < PHEAP_REPLY_SLOTS ? next : PHEAP_REPLY_SLOTS;
}

ssize_t pheap_find_reply(uint64_t id, void *buf, size_t cap)
{
	uint64_t next, held, k, slot;
	struct reply_ent *e;

	if (!ph.base)
		return -ENOENT;
	next = ph.h->reply_next;
	held = reply_count();
	/* newest first: a request recorded twice answers as the last time */
	for (k = 1; k <= held; k++) {
		slot = (next - k) % PHEAP_REPLY_SLOTS;
		e = &reply_index()[slot];
		if (!e->used || e->id != id)
			continue;
		if (cap)
			memcpy(buf, ph.slots + slot * PHEAP_REPLY_MAX,
			       e->len < cap ? e->len : cap);
		return e->len;
	}
	return -ENOENT;
}
