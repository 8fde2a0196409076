/*
 * This process's tally and the tallies of others (docs/attach-design.md
 * 3.3): its own, mapped writable once its session starts, in which the
 * daemon counts its attach opens and from which shmdt takes them; the
 * others', mapped read-only at a reader's first need, for the nattch of
 * IPC_STAT from the published table.  A mapping is never unmapped while
 * the process lives (a reader in another thread may be in it): one made
 * for a session that has ended stays, a page per session ever read.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "client.h"

struct peer {
	uint32_t gen;
	const struct shmfs_tally *t;
};

static _Atomic(struct my_tally *) mine;
static _Atomic(struct my_tally *) made;
static _Atomic(struct peer *) peers[SHMFS_TABLE_SESSIONS];

static void *tally_open(uint32_t sid, uint32_t gen, int oflags, int prot)
{
	char path[PATH_MAX];
	void *m;
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s/%u.%u", root_path,
		     SHMFS_TALLY_DIR, sid, gen) >= (int)sizeof(path))
		return NULL;
	fd = open(path, oflags | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	m = mmap(NULL, SHMFS_TALLY_SIZE, prot, MAP_SHARED, fd, 0);
	close(fd);
	return m == MAP_FAILED ? NULL : m;
}

/*
 * Session `session` (session_gen's value) is h's sid.gen: count in its
 * tally.  Without one (no passthrough, say) the daemon counts, as before.  The
 * daemon counts in it from its open, so the mapping must be made before
 * any attach: a failed mmap after a successful open leaves attaches the
 * daemon counts here that only the daemon's fallback can take back.
 */
void tally_start(const struct shmfs_hello *h, unsigned int session)
{
	uint32_t sid = h->sid, gen = h->gen;
	struct my_tally *m;
	void *t;

	atomic_store(&mine, NULL);
	if (!(h->flags & SHMFS_HELLO_TALLY) || !sid || !gen ||
	    sid >= SHMFS_TABLE_SESSIONS)
		return;
	m = malloc(sizeof(*m));
	if (!m)
		return;
	t = tally_open(sid, gen, O_RDWR, PROT_READ | PROT_WRITE);
	if (!t) {
		dbg("tally %u.%u: not opened (errno %d): the daemon counts",
		    sid, gen, errno);
		free(m);
		return;
	}
	/* a child never writes its parent's counts */
	madvise(t, SHMFS_TALLY_SIZE, MADV_DONTFORK);
	m->t = t;
	m->sid = sid;
	m->gen = gen;
	m->session = session;
	m->older = atomic_exchange(&made, m);
	atomic_store(&mine, m);
}

/* In a child: the mapping is gone (MADV_DONTFORK). */
void tally_forget(void)
{
	atomic_store(&mine, NULL);
}

const struct my_tally *tally_mine(void)
{
	return atomic_load_explicit(&mine, memory_order_acquire);
}

/* The tally sid.gen, read-only, or NULL if it cannot be had. */
const struct shmfs_tally *tally_peer(uint32_t sid, uint32_t gen)
{
	const struct my_tally *m = tally_mine();
	struct peer *p, *n;

	if (m && m->sid == sid && m->gen == gen)
		return m->t;
	if (!sid || sid >= SHMFS_TABLE_SESSIONS)
		return NULL;
	p = atomic_load_explicit(&peers[sid], memory_order_acquire);
	if (p && p->gen == gen)
		return p->t;
	n = malloc(sizeof(*n));
	if (!n)
		return NULL;
	n->gen = gen;
	n->t = tally_open(sid, gen, O_RDONLY, PROT_READ);
	if (!n->t) {
		free(n);
		return NULL;
	}
	/* the one it replaces stays mapped: a reader may be in it */
	if (!atomic_compare_exchange_strong(&peers[sid], &p, n)) {
		munmap((void *)n->t, SHMFS_TALLY_SIZE);
		free(n);
		return p && p->gen == gen ? p->t : NULL;
	}
	return n->t;
}
