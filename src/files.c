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
