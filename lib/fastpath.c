/*
 * shmat and shmdt without a request (docs/attach-design.md 4.2, 4.3).
 *
 * The first shmat of a segment in a mode opens .id/<shmid>: the daemon
 * checks SysV permission, counts that attach as a ref and binds a record
 * of our tally to the segment.  We keep the descriptor.  While the
 * segment's perm_gen (the published table) has not moved, a later shmat
 * in that mode maps the kept descriptor and adds 1 to the record, and the
 * shmdt of such an attach takes 1 from it: no request.  A chmod, chown or
 * IPC_SET moves perm_gen, and the next shmat opens again, so the daemon
 * checks again.  shmdt asks the daemon only when it finds SHM_DEST set,
 * so that a removed segment whose last attach this was is freed before
 * shmdt returns.
 *
 * The record is bound only by an open; a freed shmid's record may be
 * bound again to another segment by a later open of ours.  bind_lock
 * keeps such an open from running while a shmat from a kept descriptor
 * is between its count and its check that the shmid still lives, so an
 * attach that finds its shmid gone takes its 1 back from the record it
 * added it to before the record can count anything else.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "client.h"

/* Kept descriptors, by (shmid, mode): a slot per hash value, the newest
 * wins.  Each holds a descriptor of the program's: a few, not many. */
#define KEPT_SLOTS 64

struct kept {
	int shmid; /* -1: empty */
	int fd;
	int ro;
	ino_t ino;
	uint64_t size;
	uint32_t perm_gen;
	uint32_t rec;
	unsigned int session;
	const struct my_tally *tm;
};

static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kept kept[KEPT_SLOTS];
static int kept_ready;
pthread_rwlock_t bind_lock = PTHREAD_RWLOCK_INITIALIZER;

static struct kept *kept_slot(int shmid, int ro)
{
	/* the top bits of a multiplicative hash: 64 slots */
	unsigned h = ((unsigned)shmid * 2u + (unsigned)ro) * 2654435761u >> 26;
	unsigned i;

	if (!kept_ready) {
		for (i = 0; i < KEPT_SLOTS; i++)
			kept[i].shmid = -1;
		kept_ready = 1;
	}
	return &kept[h % KEPT_SLOTS];
}

/* Still our file: the program may have closed the number and opened
 * something else there.  AT_STATX_DONT_SYNC: no GETATTR. */
static int kept_still(const struct kept *k)
{
	struct statx sx;

	return statx(k->fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_INO,
		     &sx) == 0 &&
	       makedev(sx.stx_dev_major, sx.stx_dev_minor) == id_ident.dev &&
	       sx.stx_ino == k->ino;
}

/* Under kept_lock. */
static void kept_drop(struct kept *k)
{
	if (k->shmid >= 0 && kept_still(k))
		close(k->fd);
	k->shmid = -1;
}

uint64_t tally_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void rec_call(const struct my_tally *tm, uint32_t rec, int attach)
{
	struct shmfs_tally_rec *r = &tm->t->rec[rec];
	uint32_t now = (uint32_t)time(NULL);

	__atomic_store_n(attach ? &r->atime : &r->dtime, now, __ATOMIC_RELAXED);
	__atomic_store_n(&r->stamp, tally_now_ns(), __ATOMIC_RELAXED);
}

/*
 * The kept descriptor of (shmid, ro), if it may serve: 0 with *k a copy,
 * and kept_lock held until kept_done (nobody closes it under the mmap);
 * 1: open instead.
 */
int kept_find(int shmid, int ro, struct kept_use *u)
{
	const struct my_tally *tm = tally_mine();
	uint32_t perm_gen, mode;
	struct kept *k;
	int r;

	if (!tm || tm->session != atomic_load(&session_gen))
		return 1;
	/* at shmseg the open says EMFILE (a racy read of att_count: a
	 * thread attaching meanwhile is one the daemon would count too) */
	if (__atomic_load_n(&att_count, __ATOMIC_RELAXED) >= table_shmseg())
		return 1;
	pthread_mutex_lock(&kept_lock);
	k = kept_slot(shmid, ro);
	if (k->shmid != shmid || k->ro != ro)
		goto miss;
	r = table_seg_state(shmid, &perm_gen, &mode);
	if (r != 0 || perm_gen != k->perm_gen || (mode & SHMFS_SHM_DEST) ||
	    k->session != tm->session || k->tm != tm) {
		kept_drop(k);
		goto miss;
	}
	if (!kept_still(k)) {
		k->shmid = -1; /* not ours any more: not closed */
		goto miss;
	}
	u->fd = k->fd;
	u->size = k->size;
	u->rec = k->rec;
	u->tm = tm;
	u->session = tm->session;
	return 0;
miss:
	pthread_mutex_unlock(&kept_lock);
	return 1;
}

void kept_done(void)
{
	pthread_mutex_unlock(&kept_lock);
}

/*
 * The attach mapped from a kept descriptor counts: 0, or 1 if shmid is
 * gone or removed meanwhile (the count is taken back, the mapping stays
 * the caller's to undo, and the open decides).  Under bind_lock (read).
 */
int kept_count(int shmid, const struct kept_use *u)
{
	uint32_t perm_gen, mode;

	rec_call(u->tm, u->rec, 1);
	__atomic_fetch_add(&u->tm->t->rec[u->rec].own, 1, __ATOMIC_SEQ_CST);
	if (table_seg_state(shmid, &perm_gen, &mode) == 0 &&
	    !(mode & SHMFS_SHM_DEST))
		return 0;
	(void)fast_detach(shmid, u->session, u->tm, u->rec);
	return 1;
}

/* After an open of (shmid, ro) that the daemon counted: keep fd if our
 * tally has a record of shmid (1: kept, the caller must not close it). */
int kept_keep(int shmid, int ro, int fd, ino_t ino, uint64_t size,
	      unsigned int session, uint32_t perm_gen)
{
	const struct my_tally *tm = tally_mine();
	struct kept *k;
	int rec;

	if (!tm || tm->session != session)
		return 0;
	rec = table_rec_of(shmid, tm->sid, tm->gen);
	if (rec < 0)
		return 0;
	pthread_mutex_lock(&kept_lock);
	k = kept_slot(shmid, ro);
	kept_drop(k);
	k->shmid = shmid;
	k->ro = ro;
	k->fd = fd;
	k->ino = ino;
	k->size = size;
	k->perm_gen = perm_gen;
	k->rec = (uint32_t)rec;
	k->session = session;
	k->tm = tm;
	pthread_mutex_unlock(&kept_lock);
	return 1;
}

/* shmid is gone (freed): its kept descriptors go too. */
void kept_gone(int shmid)
{
	uint32_t perm_gen, mode;
	int ro;

	if (table_seg_state(shmid, &perm_gen, &mode) >= 0)
		return;
	pthread_mutex_lock(&kept_lock);
	for (ro = 0; ro < 2; ro++) {
		struct kept *k = kept_slot(shmid, ro);

		if (k->shmid == shmid)
			kept_drop(k);
	}
	pthread_mutex_unlock(&kept_lock);
}

/* In a forked child: the descriptors stay open (they are the child's
 * own copies), but no tally of ours counts in the child. */
void kept_forget(void)
{
	unsigned i;

	for (i = 0; i < KEPT_SLOTS; i++)
		if (kept_ready && kept[i].shmid >= 0)
			kept_drop(&kept[i]);
	pthread_mutex_init(&kept_lock, NULL);
	pthread_rwlock_init(&bind_lock, NULL);
}

/*
 * shmdt's count, for an attach counted in record rec of tm: taken from
 * the record; if the segment was removed, the daemon settles it (frees
 * it if this was its last attach) before we return.  1 when the
 * table showed the segment live and not removed after the take (this
 * detach freed nothing), else 0.
 */
int fast_detach(int shmid, unsigned int session, const struct my_tally *tm,
		 uint32_t rec)
{
	struct shmfs_detach d = { .shmid = shmid, .flags = SHMFS_DETACH_TALLY };
	uint32_t perm_gen, mode;
	int fd, r;

	rec_call(tm, rec, 0);
	__atomic_fetch_sub(&tm->t->rec[rec].own, 1, __ATOMIC_SEQ_CST);
	r = table_seg_state(shmid, &perm_gen, &mode);
	if (r == 0 && !(mode & SHMFS_SHM_DEST))
		return 1;
	if (r < 0)
		return 0;
	fd = atomic_load_explicit(&ctl_fd, memory_order_acquire);
	if (fd < 0 || session != atomic_load(&session_gen))
		return 0;
	r = ctl_ioctl_fd(fd, SHMFS_IOC_DETACH, &d, 0);
	if (r < 0 && r != -EINVAL)
		dbg("shmid %d: settling a removed segment: %s", shmid,
		    strerror(-r));
	return 0;
}
