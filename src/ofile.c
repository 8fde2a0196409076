/*
 * Open files by id.  fi->fh is an id, not a pointer: the kernel may send
 * RELEASE while a READ of the same file is still being answered (a
 * reader killed meanwhile), so a request finds its file here and holds
 * it until it is done, and a request that comes after RELEASE finds
 * nothing.  What RELEASE never reached (unmount with it still queued, a
 * lazy unmount with a mapping) is freed at destroy.
 */
#include <pthread.h>
#include <stdlib.h>

#include "ofile.h"

#define OFILE_BUCKETS 1024
static struct {
	pthread_mutex_t lock;
	struct ofile *bucket[OFILE_BUCKETS];
	uint64_t next_id;
} OF = { .lock = PTHREAD_MUTEX_INITIALIZER, .next_id = 1 };

static struct ofile **ofile_slot(uint64_t id)
{
	struct ofile **pp = &OF.bucket[id % OFILE_BUCKETS];

	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

static void ofile_insert(struct ofile *of)
{
	of->next = OF.bucket[of->id % OFILE_BUCKETS];
	OF.bucket[of->id % OFILE_BUCKETS] = of;
}

uint64_t ofile_register(struct ofile *of)
{
	/* the table keeps it too, for a successor (files.c) */
	of->id = seg_file_add((int)of->kind, of->h);
	if (!of->id)
		return 0;
	pthread_mutex_lock(&OF.lock);
	of->refs = 1;
	ofile_insert(of);
	pthread_mutex_unlock(&OF.lock);
	return of->id;
}

/*
 * A file opened under a server that is gone: made again from the
 * table's record of it (a status file's cursor starts anew; a read goes
 * on from where it asks).  NULL when the table has no such file.
 */
static struct ofile *ofile_adopt(uint64_t id)
{
	struct seg_handle *h;
	struct ofile *of, *other;
	int kind;

	if (seg_file_find(id, &kind, &h))
		return NULL;
	of = calloc(1, sizeof(*of));
	if (!of)
		return NULL;
	of->kind = (enum ofile_kind)kind;
	of->h = h;
	of->id = id;
	if (of->kind == OF_STATUS && seg_status_open(&of->status)) {
		free(of);
		return NULL;
	}
	pthread_mutex_lock(&OF.lock);
	other = *ofile_slot(id);
	if (other) { /* another request made it meanwhile */
		other->refs++;
		pthread_mutex_unlock(&OF.lock);
		seg_status_close(of->status);
		free(of);
		return other;
	}
	of->refs = 2; /* the open, and this request */
	ofile_insert(of);
	pthread_mutex_unlock(&OF.lock);
	return of;
}

static void ofile_free(struct ofile *of)
{
	if (of->h)
		seg_release(of->h);
	seg_status_close(of->status);
	free(of);
}

struct ofile *ofile_get(struct fuse_file_info *fi)
{
	struct ofile *of;

	pthread_mutex_lock(&OF.lock);
	of = *ofile_slot(fi->fh);
	if (of)
		of->refs++;
	pthread_mutex_unlock(&OF.lock);
	return of ? of : ofile_adopt(fi->fh);
}

void ofile_put(struct ofile *of)
{
	unsigned left;

	if (!of)
		return;
	pthread_mutex_lock(&OF.lock);
	left = --of->refs;
	pthread_mutex_unlock(&OF.lock);
	if (!left)
		ofile_free(of);
}

void ofile_putp(struct ofile **of)
{
	ofile_put(*of);
}

void ofile_unregister(uint64_t id)
{
	struct fuse_file_info fi = { .fh = id };
	/* a file opened under a dead server is made here first, so that
	 * its handle goes with it */
	struct ofile **pp, *got = ofile_get(&fi), *of = got;

	seg_file_remove(id);
	if (!got)
		return;
	pthread_mutex_lock(&OF.lock);
	pp = ofile_slot(id);
	if (*pp == got)
		*pp = got->next;
	else
		of = NULL; /* unregistered meanwhile: its open's hold went */
	pthread_mutex_unlock(&OF.lock);
	ofile_put(of); /* the open's hold */
	ofile_put(got); /* ours */
}

void ofile_free_all(void)
{
	unsigned b;

	for (b = 0; b < OFILE_BUCKETS; b++)
		while (OF.bucket[b]) {
			struct ofile *of = OF.bucket[b];

			OF.bucket[b] = of->next;
			ofile_free(of);
		}
}
