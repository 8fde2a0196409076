/*
 * The table as /proc/sysvipc/shm shows it (MNT/status), served from a
 * cursor per open file, never from a copy of the table.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seg_impl.h"

#define STATUS_HEADER                                                      \
	"       key      shmid perms                  size  cpid  lpid "   \
	"nattch   uid   gid  cuid  cgid      atime      dtime      ctime " \
	"                  rss                  swap\n"

/* Longer than the header and than any line, whatever the numbers. */
#define STATUS_LINE_MAX 320
#define STATUS_HEADER_SLOT (-1)

/*
 * A reader's place in the text: the next byte's offset, the slot whose
 * line comes next, and at most one line it has been sent only part of.
 * That is all an open of status costs, however large the table.
 */
struct seg_status {
	pthread_mutex_t lock; /* two reads of one open file may race */
	uint64_t off;
	int slot; /* STATUS_HEADER_SLOT first, SHMFS_MAX_SLOTS at the end */
	uint16_t line_len;
	uint16_t line_pos;
	char line[STATUS_LINE_MAX];
};

static int status_line(const struct seg_view *v, char *buf, size_t size)
{
	const struct shmfs_ds *d = &v->ds;

	return snprintf(buf, size,
			"%10d %10d  %4o %21llu %5d %5d  %5llu %5u %5u %5u %5u "
			"%10lld %10lld %10lld %21llu %21llu\n",
			d->key, d->shmid, d->mode, (unsigned long long)d->segsz,
			d->cpid, d->lpid, (unsigned long long)d->nattch, d->uid,
			d->gid, d->cuid, d->cgid, (long long)d->atime,
			(long long)d->dtime, (long long)d->ctime,
			(unsigned long long)seg_view_bytes(v), 0ULL);
}

/* Views of up to max segments from *slot on; *slot moves past them. */
static int status_views(int *slot, struct seg_view *v, int max)
{
	int idx, n = 0;
	TABLE_READ();

	for (idx = slot_next_used(*slot); idx >= 0 && n < max;
	     idx = slot_next_used(idx + 1)) {
		seg_fill_view(T.slots[idx].seg, &v[n++]);
		*slot = idx + 1;
	}
	if (idx < 0)
		*slot = SHMFS_MAX_SLOTS;
	return n;
}

#define STATUS_BATCH 32

/*
 * Whole lines from *slot on into buf, at most max of them and only
 * while a line of any length still fits; *slot moves past them.  The
 * table lock is held only to copy a batch of views, never to measure
 * memory in the arena or across a reply.
 */
static size_t status_lines(int *slot, char *buf, size_t size, unsigned max)
{
	struct seg_view v[STATUS_BATCH];
	size_t len = 0;
	int i, n, want;

	if (*slot == STATUS_HEADER_SLOT && max && size >= STATUS_LINE_MAX) {
		len = (size_t)snprintf(buf, size, "%s", STATUS_HEADER);
		max--;
		*slot = 0;
	}
	if (*slot < 0)
		return len;
	while (max && *slot < SHMFS_MAX_SLOTS &&
	       size - len >= STATUS_LINE_MAX) {
		want = (int)((size - len) / STATUS_LINE_MAX);
		if (want > STATUS_BATCH)
			want = STATUS_BATCH;
		if ((unsigned)want > max)
			want = (int)max;
		n = status_views(slot, v, want);
		for (i = 0; i < n; i++)
			len += (size_t)status_line(&v[i], buf + len,
						   size - len);
		max -= (unsigned)n;
		if (n < want)
			break;
	}
	return len;
}

static void status_rewind(struct seg_status *st)
{
	st->off = 0;
	st->slot = STATUS_HEADER_SLOT;
	st->line_len = st->line_pos = 0;
}

/* From the start to off (as seq_file does on a seek): O(table), rare. */
static void status_skip(struct seg_status *st, uint64_t off)
{
	char batch[4096];
	size_t n;
	int from;

	status_rewind(st);
	while (st->off < off) {
		from = st->slot;
		n = status_lines(&st->slot, batch, sizeof(batch), UINT_MAX);
		if (!n)
			return; /* off is past the end */
		if (st->off + n <= off) {
			st->off += n;
			continue;
		}
		/* off is in this batch: again one line at a time, keeping
		 * the one that holds it */
		st->slot = from;
		while (st->off < off) {
			n = status_lines(&st->slot, st->line, sizeof(st->line),
					 1);
			if (!n)
				return;
			if (st->off + n <= off) {
				st->off += n;
				continue;
			}
			st->line_len = (uint16_t)n;
			st->line_pos = (uint16_t)(off - st->off);
			st->off = off;
		}
	}
}

int seg_status_open(struct seg_status **out)
{
	struct seg_status *st = malloc(sizeof(*st));

	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	status_rewind(st);
	*out = st;
	return 0;
}

void seg_status_close(struct seg_status *st)
{
	if (!st)
		return;
	pthread_mutex_destroy(&st->lock);
	free(st);
}

size_t seg_status_read(struct seg_status *st, uint64_t off, char *buf,
		       size_t size)
{
	size_t len = 0, n;

	pthread_mutex_lock(&st->lock);
	if (off != st->off)
		status_skip(st, off);
	if (off != st->off) {
		pthread_mutex_unlock(&st->lock);
		return 0;
	}
	while (len < size) {
		if (st->line_pos < st->line_len) {
			n = st->line_len - st->line_pos;
			if (n > size - len)
				n = size - len;
			memcpy(buf + len, st->line + st->line_pos, n);
			st->line_pos = (uint16_t)(st->line_pos + n);
			len += n;
			continue;
		}
		if (size - len >= STATUS_LINE_MAX) {
			n = status_lines(&st->slot, buf + len, size - len,
					 UINT_MAX);
			len += n;
		} else {
			/* what does not fit waits in the cursor */
			n = status_lines(&st->slot, st->line, sizeof(st->line),
					 1);
			st->line_len = (uint16_t)n;
			st->line_pos = 0;
		}
		if (!n)
			break;
	}
	st->off += len;
	pthread_mutex_unlock(&st->lock);
	return len;
}

int seg_status(char **text, size_t *len)
{
	struct seg_status *st;
	char *buf = NULL;
	size_t size = 0, n;
	int err;

	if ((err = seg_status_open(&st)))
		return err;
	do {
		char *more = realloc(buf, size + 65536);

		if (!more) {
			free(buf);
			seg_status_close(st);
			return -ENOMEM;
		}
		buf = more;
		n = seg_status_read(st, size, buf + size, 65536);
		size += n;
	} while (n);
	seg_status_close(st);
	buf[size] = '\0';
	*text = buf;
	*len = size;
	return 0;
}
