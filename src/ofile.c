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

uint64_t ofile_register(struct ofile *of)
{
	pthread_mutex_lock(&OF.lock);
	of->id = OF.next_id++;
	of->refs = 1;
	of->next = OF.bucket[of->id % OFILE_BUCKETS];
	OF.bucket[of->id % OFILE_BUCKETS] = of;
	pthread_mutex_unlock(&OF.lock);
	return of->id;
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
	return of;
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
	struct ofile **pp, *of;

	pthread_mutex_lock(&OF.lock);
	pp = ofile_slot(id);
	of = *pp;
	if (of)
		*pp = of->next;
	pthread_mutex_unlock(&OF.lock);
	ofile_put(of);
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
