/*
 * The front end's open files, as the table keeps them: what a successor
 * server needs to serve a file the kernel opened under a server that is
 * gone (its id, its kind, a segment file's handle).  The front end keeps
 * its own registry of them too (ofile.c: who is using a file right now),
 * made again from these records, file by file, as requests name them.
 */
#include <errno.h>

#include "pheap.h"
#include "seg_impl.h"

static struct file_rec **file_slot(uint64_t id)
{
	struct file_rec **pp = &T.front.by_id[id % FILE_BUCKETS];

	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

uint64_t seg_file_add(int kind, struct seg_handle *h)
{
	struct file_rec *f;
	TABLE_LOCK();

	f = pcalloc(1, sizeof(*f));
	if (!f)
		return 0;
	f->id = T.front.next_id++;
	f->kind = kind;
	f->h = h;
	f->next = T.front.by_id[f->id % FILE_BUCKETS];
	T.front.by_id[f->id % FILE_BUCKETS] = f;
	T.front.nfiles++;
	if (h)
		h->filed = true;
	return f->id;
}

int seg_file_find(uint64_t id, int *kind, struct seg_handle **h)
{
	struct file_rec *f;
	TABLE_READ();

	f = *file_slot(id);
	if (!f)
		return -ENOENT;
	*kind = f->kind;
	*h = f->h;
	return 0;
}

void seg_file_remove(uint64_t id)
{
	struct file_rec **pp, *f;
	TABLE_LOCK();

	pp = file_slot(id);
	f = *pp;
	if (!f)
		return;
	*pp = f->next;
	if (f->h)
		f->h->filed = false;
	pfree(f);
	T.front.nfiles--;
}

/*
 * A segment file's handle joins the table's list, and an attach open's
 * (made in session sess) the segment's list of them too.
 */
void handle_add(struct seg_handle *h, struct seg *s,
		const struct session *sess)
{
	h->seg = s;
	h->attach = sess != NULL;
	if (sess) {
		h->sid = sess->sid;
		h->gen = sess->gen;
		h->a_next = s->attaches;
		if (s->attaches)
			s->attaches->a_prev = h;
		s->attaches = h;
		s->attach_handles++;
	}
	h->next = T.handles;
	if (T.handles)
		T.handles->prev = h;
	T.handles = h;
	s->handles++;
	T.nhandles++;
}

void seg_release(struct seg_handle *h)
{
	struct seg *s = h->seg;
	TABLE_LOCK();

	if (h->prev)
		h->prev->next = h->next;
	else
		T.handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	if (h->attach) {
		if (h->a_prev)
			h->a_prev->a_next = h->a_next;
		else
			s->attaches = h->a_next;
		if (h->a_next)
			h->a_next->a_prev = h->a_prev;
		s->attach_handles--;
	}
	pfree(h);
	T.nhandles--;
	s->handles--;
	if (s->freed)
		seg_memory_settle(s);
	seg_maybe_destroy(s);
}

/*
 * A successor's reckoning: a handle no file holds any more was being
 * released by the dead server (its file's RELEASE answered, a request
 * still using it) and goes now.
 */
void files_adopt(void)
{
	struct seg_handle *h, *next;

	for (h = T.handles; h; h = next) {
		next = h->next;
		if (!h->filed)
			seg_release(h);
	}
}

void files_fini(void)
{
	unsigned b;

	for (b = 0; b < FILE_BUCKETS; b++)
		while (T.front.by_id[b]) {
			struct file_rec *f = T.front.by_id[b];

			T.front.by_id[b] = f->next;
			pfree(f);
		}
	T.front.nfiles = 0;
}
