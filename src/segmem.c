/*
 * The segments' memory.  A segment's memory is a memfd of its own when
 * the front end can hand memfds to the kernel as backing files (FUSE
 * passthrough): the kernel then serves reads, writes and mappings of the
 * segment file from it, and holds it for as long as anything uses it.
 * The memfd is sealed at the segment's size.  The daemon keeps the
 * descriptor while it has descriptors to spare, to measure the memory in
 * use, and lets it go beyond that; the backing id alone keeps the memfd.
 *
 * Without passthrough, the memory of a segment is a range of one sparse
 * memfd, the arena: one descriptor however many segments there are.
 * Ranges are taken first fit and given back (punched out: zeros again)
 * when the segment's memory goes; a segment too large for the arena gets
 * a memfd of its own, served the same way.  Either way the memory is
 * given back when the shmid is gone and no handle (open file) is left.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "seg_impl.h"

#define ARENA_SIZE (1ULL << 62)
/* Larger segments get a memfd of their own: a few of them (SHM_NORESERVE
 * makes them cheap) must never fill the arena for everyone. */
#define ARENA_SOLO_MIN (ARENA_SIZE >> 10)
/* Extents of an arena range measured before the rest counts as in use. */
#define ARENA_MEASURE_MAX 1024

static void keep_fd(int fd)
{
	if (Tcfg.keep_fd)
		Tcfg.keep_fd(fd);
}

int segmem_init(void)
{
	T.no_backing = false;
	T.memfds = 0;
	T.arena = memfd_create("shmfs", MFD_CLOEXEC);
	if (T.arena < 0)
		return -errno;
	T.arena_free = pcalloc(1, sizeof(*T.arena_free));
	if (!T.arena_free || ftruncate(T.arena, (off_t)ARENA_SIZE) < 0) {
		int err = T.arena_free ? -errno : -ENOMEM;

		pfree(T.arena_free);
		T.arena_free = NULL;
		close(T.arena);
		T.arena = -1;
		return err;
	}
	T.arena_free->len = ARENA_SIZE;
	keep_fd(T.arena);
	return 0;
}

/*
 * A successor's reckoning of the memory: the free ranges of the arena
 * read as zeros again (a dead server may have died between a free's
 * commit and its punch), and the backing ids it let go are closed.
 */
void segmem_adopt(void)
{
	const struct extent *e;
	uint32_t i;

	for (e = T.arena_free; T.arena >= 0 && e; e = e->next)
		fallocate(T.arena, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  (off_t)e->off, (off_t)e->len);
	for (i = 0; i < T.nclose_ids; i++)
		if (Tcfg.backing_close)
			Tcfg.backing_close((int)T.close_ids[i]);
	T.nclose_ids = 0;
}

int seg_fds(int *fds, int max)
{
	unsigned b;
	int n = 0;
	TABLE_READ();

	if (T.arena >= 0 && n++ < max)
		fds[n - 1] = T.arena;
	for (b = 0; b < SERIAL_BUCKETS; b++) {
		const struct seg *s;

		for (s = T.by_serial[b]; s; s = s->serial_next)
			if (s->has_memory && s->memfd >= 0 && n++ < max)
				fds[n - 1] = s->memfd;
	}
	return tally_fds(fds, max, n);
}

int seg_fd_lost(int fd)
{
	unsigned b;
	int lost = 0;
	TABLE_LOCK();

	if (fd == T.arena)
		return -EBADF;
	if (tally_fd_lost(fd))
		return 0; /* its backing id still serves the clients */
	for (b = 0; b < SERIAL_BUCKETS; b++) {
		struct seg *s;

		for (s = T.by_serial[b]; s; s = s->serial_next) {
			if (!s->has_memory || s->memfd != fd)
				continue;
			/* a backing id still holds the memory: only its
			 * measure is gone; a solo memfd's bytes are */
			lost = s->backing ? 0 : -EIO;
			s->memfd = -1;
			T.memfds--;
		}
	}
	return lost;
}

void segmem_fini(void)
{
	table_after_close(T.arena);
	T.arena = -1;
	while (T.arena_free) {
		struct extent *e = T.arena_free;

		T.arena_free = e->next;
		pfree(e);
	}
}

static void arena_give(struct seg *s);

void seg_release_memory(struct seg *s)
{
	if (!s->has_memory)
		return;
	s->has_memory = false;
	/* as Linux: a segment counts against shmall until it is freed */
	T.tot_pages -= s->pages;
	if (s->unmade) {
		s->unmade = false;
		return;
	}
	if (s->backing || s->solo) {
		/* no room to wait for the commit: close it now (a server
		 * killed before the commit then leaves a dead id) */
		if (s->backing && table_after_backing_close(s->backing))
			Tcfg.backing_close(s->backing);
		s->backing = 0;
		s->solo = false;
		if (s->memfd >= 0) {
			table_after_close(s->memfd);
			s->memfd = -1;
			T.memfds--;
		}
		return;
	}
	/* holes read as zeros: the range is a new segment's as it is, once
	 * the free has committed (it is not a new segment's before) */
	table_after_punch(T.arena, s->offset, s->pages * Tcfg.page_size);
	arena_give(s);
}

/*
 * A freed shmid's memory goes once no open file can still use it.  The
 * descriptor libshmfs keeps for its next shmat (lib/fastpath.c) is one
 * that cannot, while the session it was opened in runs: its process maps
 * it only after finding the shmid in the table, which no longer shows
 * it, and the daemon never reads or writes through an attach file the
 * kernel serves from a backing file.  When every open file left is such
 * a descriptor, the memory is punched out of the memfd after the commit
 * (whatever its holders still have open holds nothing) and stops
 * counting against shmall.  Any other open file keeps it, counted, until
 * it closes: a reader of the file, a file the daemon serves from the
 * arena, or an attach file whose session is over (a process it was
 * passed to may map it).  Nor is it punched once an attach ended
 * uncounted while its process may still map it (astray): a program that
 * closed every descriptor keeps its mappings, and the kernel's passthrough
 * holds those on the memfd, not on any file the daemon sees.
 */
static bool seg_only_kept(const struct seg *s)
{
	const struct seg_handle *h;

	if (!s->backing || s->memfd < 0 || s->astray ||
	    s->handles != s->attach_handles)
		return false;
	for (h = s->attaches; h; h = h->a_next)
		if (!session_live(h->sid, h->gen))
			return false;
	return true;
}

void seg_memory_settle(struct seg *s)
{
	if (!s->has_memory)
		return;
	if (s->handles) {
		if (!seg_only_kept(s))
			return;
		table_after_punch(s->memfd, 0, s->pages * Tcfg.page_size);
	}
	seg_release_memory(s);
}

/*
 * A sealed memfd of the segment's exact size, as the kernel's own shm
 * file: stores into the rest of the last page stay, and nothing can grow
 * or shrink it.  0, or -ENOTSUP when the front end takes no backing files
 * (from then on, every segment goes to the arena), or another -errno.
 */
static int seg_backing_new(struct seg *s)
{
	int fd, id, err;

	if (T.no_backing || !Tcfg.backing_open)
		return -ENOTSUP;
	fd = memfd_create("shmfs", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) /* out of descriptors, say: this one goes to the arena */
		return errno == ENOMEM ? -ENOMEM : -ENOTSUP;
	if (ftruncate(fd, (off_t)s->ds.segsz) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) <
		    0) {
		err = -errno;
		close(fd);
		return err == -EFBIG || err == -EINVAL ? -ENOMEM : err;
	}
	id = Tcfg.backing_open(fd);
	if (id < 0) {
		close(fd);
		if (id != -ENOMEM && id != -ENFILE && id != -EMFILE) {
			T.no_backing = true;
			return -ENOTSUP;
		}
		return id;
	}
	s->backing = id;
	if (T.memfds < Tcfg.memfd_budget) {
		s->memfd = fd;
		T.memfds++;
		keep_fd(fd);
	} else {
		close(fd);
	}
	return 0;
}

/*
 * The arena's ranges are taken first fit from a list of free ones and
 * given back when a segment's memory goes, so that what one caller frees
 * serves the next.  A segment takes its free-list node at once, so that
 * giving the range back can never fail.
 */
static int arena_take(struct seg *s)
{
	uint64_t len = s->pages * Tcfg.page_size;
	struct extent **pp, *e;

	if (T.arena < 0 || len >= ARENA_SOLO_MIN)
		return -ENOSPC;
	s->spare = pmalloc(sizeof(*s->spare));
	if (!s->spare)
		return -ENOMEM;
	for (pp = &T.arena_free; (e = *pp); pp = &e->next)
		if (e->len >= len)
			break;
	if (!e) {
		pfree(s->spare);
		s->spare = NULL;
		return -ENOSPC;
	}
	s->offset = e->off;
	e->off += len;
	e->len -= len;
	if (!e->len) {
		*pp = e->next;
		pfree(e);
	}
	return 0;
}

static void arena_give(struct seg *s)
{
	uint64_t off = s->offset, len = s->pages * Tcfg.page_size;
	struct extent **pp, *prev = NULL, *e, *n = s->spare;

	s->spare = NULL;
	for (pp = &T.arena_free; (e = *pp) && e->off < off; pp = &e->next)
		prev = e;
	if (prev && prev->off + prev->len == off) {
		prev->len += len;
		if (e && off + len == e->off) {
			prev->len += e->len;
			prev->next = e->next;
			pfree(e);
		}
		pfree(n);
		return;
	}
	if (e && off + len == e->off) {
		e->off = off;
		e->len += len;
		pfree(n);
		return;
	}
	n->off = off;
	n->len = len;
	n->next = e;
	*pp = n;
}

/* Beyond the arena: a memfd of the segment's size, served as the arena. */
static int seg_solo_new(struct seg *s)
{
	int fd = memfd_create("shmfs", MFD_CLOEXEC);

	if (fd < 0)
		return errno == ENOMEM ? -ENOMEM : -ENOSPC;
	if (ftruncate(fd, (off_t)s->ds.segsz) < 0) {
		close(fd);
		return -ENOMEM;
	}
	s->memfd = fd;
	s->solo = true;
	s->offset = 0;
	T.memfds++;
	keep_fd(fd);
	return 0;
}

/*
 * A segment's memory, made at its first open: backing when it can, else
 * the arena.  Nothing changes on error (-ENOMEM: out of memory or of
 * descriptors), and the next open tries again.
 */
int seg_alloc_memory(struct seg *s)
{
	int err;

	if (!s->unmade)
		return 0;
	err = seg_backing_new(s);
	if (err == -ENOTSUP) {
		err = arena_take(s);
		if (err == -ENOSPC)
			err = seg_solo_new(s);
	}
	if (err)
		return err == -ENOSPC || err == -EMFILE || err == -ENFILE
			       ? -ENOMEM
			       : err;
	s->unmade = false;
	return 0;
}

/*
 * Memory in use of a range of the arena: its data extents.  The first
 * ARENA_MEASURE_MAX of them are measured, the rest of the range counts as
 * in use, so that a range written in a million pieces costs no more than
 * one in a thousand.  The arena itself lasts as long as the daemon, so
 * this may run without the table lock (a range freed meanwhile is
 * measured as it is then: zero).
 */
static uint64_t arena_bytes(uint64_t off, uint64_t len)
{
	off_t pos = (off_t)off, end = (off_t)(off + len);
	uint64_t bytes = 0;
	int n;

	for (n = 0; pos < end; n++) {
		off_t data, hole;

		if (n == ARENA_MEASURE_MAX)
			return bytes + (uint64_t)(end - pos);
		data = lseek(T.arena, pos, SEEK_DATA);
		if (data < 0 || data >= end)
			break;
		hole = lseek(T.arena, data, SEEK_HOLE);
		if (hole < 0 || hole > end)
			hole = end;
		bytes += (uint64_t)(hole - data);
		pos = hole;
	}
	return bytes;
}

/*
 * Memory in use of a segment with a memfd: its pages, an fstat away.  A
 * backing memfd the daemon did not keep cannot be measured: it counts as
 * all of its pages.
 */
static uint64_t memfd_bytes(const struct seg *s)
{
	struct stat st;

	if (s->memfd >= 0 && fstat(s->memfd, &st) == 0)
		return (uint64_t)st.st_blocks * 512;
	return s->pages * Tcfg.page_size;
}

static uint64_t seg_bytes(const struct seg *s)
{
	if (!s->has_memory || s->unmade)
		return 0;
	if (s->backing || s->solo)
		return memfd_bytes(s);
	return arena_bytes(s->offset, s->pages * Tcfg.page_size);
}

/*
 * A view's memory, under the table lock: a memfd's pages now (an
 * fstat), an arena range's later, by seg_view_bytes(), without the lock.
 */
void segmem_view(const struct seg *s, struct seg_view *v)
{
	bool arena = s->has_memory && !s->unmade && !s->backing && !s->solo;

	v->bytes = arena ? 0 : seg_bytes(s);
	v->arena_off = arena ? s->offset : 0;
	v->arena_len = arena ? s->pages * Tcfg.page_size : 0;
}

uint64_t seg_view_bytes(const struct seg_view *v)
{
	return v->bytes +
	       (v->arena_len ? arena_bytes(v->arena_off, v->arena_len) : 0);
}

/*
 * shm_rss: the arena's pages in one fstat (its ranges of freed shmids
 * still open count too, until they go), and each memfd's: no range is
 * walked under the lock.
 */
uint64_t segmem_rss(void)
{
	uint64_t rss = 0;
	struct stat st;
	int idx;

	if (T.arena >= 0 && fstat(T.arena, &st) == 0)
		rss = (uint64_t)st.st_blocks * 512;
	for (idx = slot_next_used(0); idx >= 0; idx = slot_next_used(idx + 1)) {
		const struct seg *s = T.slots[idx].seg;

		if (s->has_memory && (s->backing || s->solo))
			rss += memfd_bytes(s);
	}
	return rss;
}

/* The memory totals of seg_get_stats. */
void segmem_stats(struct seg_stats *st)
{
	const struct seg *s;
	struct stat ast;
	unsigned b;

	st->memory = 0;
	if (T.arena >= 0 && fstat(T.arena, &ast) == 0)
		st->memory = (uint64_t)ast.st_blocks * 512;
	st->passthrough = st->arena = st->unmeasured = 0;
	for (b = 0; b < SERIAL_BUCKETS; b++)
		for (s = T.by_serial[b]; s; s = s->serial_next) {
			if (!s->has_memory || s->unmade)
				continue;
			if (!s->backing) { /* served by the daemon */
				st->arena++;
				if (s->solo)
					st->memory += memfd_bytes(s);
				continue;
			}
			st->passthrough++;
			st->unmeasured += s->memfd < 0;
			st->memory += memfd_bytes(s);
		}
}

int seg_handle_fd(const struct seg_handle *h)
{
	return h->seg->backing || h->seg->solo ? h->seg->memfd : T.arena;
}

int seg_handle_backing(const struct seg_handle *h)
{
	return h->seg->backing;
}

uint64_t seg_handle_offset(const struct seg_handle *h)
{
	return h->seg->offset;
}

uint64_t seg_handle_size(const struct seg_handle *h)
{
	return h->seg->ds.segsz;
}
