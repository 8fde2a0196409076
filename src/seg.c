/*
 * The shmid_ds table: the index and the SysV rules.  A segment lives in a
 * slot; its shmid is the slot's sequence number shifted over the slot
 * index, so a stale shmid never names a later segment in the same slot.
 * Keys and shmids are found through a hash and the slot array; two-level
 * bitmaps give the lowest free slot and the highest used one without a
 * scan.  The object itself stays while the front end holds lookups on it
 * (seg_forget), so that its serial never names another.  Attaches are
 * attach.c's, memory segmem.c's (seg_impl.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <time.h>
#include <unistd.h>

#include "killpoint.h"
#include "seg_impl.h"

int64_t seg_default_now(void)
{
	return (int64_t)time(NULL);
}

/* ---- slots ---- */

static void slot_mark(int idx, bool used)
{
	int w = idx / 64, s = w / 64;
	uint64_t bit = 1ULL << (idx % 64), sbit = 1ULL << (w % 64);

	if (used)
		T.used[w] |= bit;
	else
		T.used[w] &= ~bit;
	if (T.used[w])
		T.any_used[s] |= sbit;
	else
		T.any_used[s] &= ~sbit;
	if (T.used[w] == ~0ULL)
		T.all_used[s] |= sbit;
	else
		T.all_used[s] &= ~sbit;
}

static int slot_lowest_free(void)
{
	int s;

	for (s = 0; s < SUM_WORDS; s++) {
		uint64_t notfull = ~T.all_used[s];

		if (notfull) {
			int w = s * 64 + __builtin_ctzll(notfull);

			return w * 64 + __builtin_ctzll(~T.used[w]);
		}
	}
	return -1;
}

static int slot_highest_used(void)
{
	int s;

	for (s = SUM_WORDS - 1; s >= 0; s--) {
		if (T.any_used[s]) {
			int w = s * 64 + 63 - __builtin_clzll(T.any_used[s]);

			return w * 64 + 63 - __builtin_clzll(T.used[w]);
		}
	}
	return -1;
}

/* The next used slot at or after idx, or -1. */
int slot_next_used(int idx)
{
	int w;

	if (idx < 0)
		idx = 0;
	for (w = idx / 64; w < SLOT_WORDS; w++) {
		uint64_t bits = T.used[w];

		if (w == idx / 64)
			bits &= ~0ULL << (idx % 64);
		if (!bits) {
			/* skip whole empty summary words */
			int s = w / 64;
			uint64_t rest = T.any_used[s] & (~0ULL << (w % 64)) &
					~(1ULL << (w % 64));

			if (!rest) {
				w = (s + 1) * 64 - 1;
				continue;
			}
			w = s * 64 + __builtin_ctzll(rest) - 1;
			continue;
		}
		return w * 64 + __builtin_ctzll(bits);
	}
	return -1;
}

/* ---- hashes ---- */

static unsigned key_bucket(key_t key)
{
	return shmfs_table_bucket(key);
}

static struct seg *key_find(key_t key)
{
	struct seg *s;

	for (s = T.by_key[key_bucket(key)]; s; s = s->key_next)
		if (s->ds.key == key)
			return s;
	return NULL;
}

static void key_insert(struct seg *s)
{
	unsigned b = key_bucket(s->ds.key);

	s->key_next = T.by_key[b];
	T.by_key[b] = s;
	if (Tcfg.pub)
		Tcfg.pub->key_add(s->ds.key, s->slot);
}

static void key_remove(struct seg *s)
{
	struct seg **p;

	for (p = &T.by_key[key_bucket(s->ds.key)]; *p; p = &(*p)->key_next)
		if (*p == s) {
			*p = s->key_next;
			break;
		}
	if (Tcfg.pub)
		Tcfg.pub->key_del(s->ds.key, s->slot);
}

struct seg *serial_find(uint64_t serial)
{
	struct seg *s;

	for (s = T.by_serial[serial & (SERIAL_BUCKETS - 1)]; s;
	     s = s->serial_next)
		if (s->serial == serial)
			return s;
	return NULL;
}

static void serial_insert(struct seg *s)
{
	unsigned b = s->serial & (SERIAL_BUCKETS - 1);

	s->serial_next = T.by_serial[b];
	T.by_serial[b] = s;
}

static void serial_remove(struct seg *s)
{
	struct seg **p = &T.by_serial[s->serial & (SERIAL_BUCKETS - 1)];

	for (; *p; p = &(*p)->serial_next)
		if (*p == s) {
			*p = s->serial_next;
			return;
		}
}

struct seg *seg_find_id(int shmid)
{
	struct seg *s;

	if (shmid < 0)
		return NULL;
	s = T.slots[shmid & (SHMFS_MAX_SLOTS - 1)].seg;
	return s && s->ds.shmid == shmid ? s : NULL;
}

/* ---- publishing ---- */

void publish(const struct seg *s)
{
	if (Tcfg.pub && !s->freed) {
		holds_publish(s);
		Tcfg.pub->set(s->slot, &s->ds, s->perm_gen);
	}
}

/* ---- limits ---- */

void seg_limits_for(struct seg_limits *l, unsigned want)
{
	struct seg_limits host = { 0 };
	const struct seg_limits *g = &Tcfg.given;
	unsigned read = 0;

	if (!g->shmmax && (want & SEG_LIMIT_SHMMAX))
		read |= SEG_LIMIT_SHMMAX;
	if (!g->shmall && (want & SEG_LIMIT_SHMALL))
		read |= SEG_LIMIT_SHMALL;
	/* shmseg follows shmmni when it is not given */
	if (!g->shmmni && (want & SEG_LIMIT_SHMMNI))
		read |= SEG_LIMIT_SHMMNI;
	if (read && Tcfg.host_limits)
		Tcfg.host_limits(&host, read);
	l->shmmax = g->shmmax	  ? g->shmmax
		    : host.shmmax ? host.shmmax
				  : DEFAULT_SHMMAX;
	l->shmall = g->shmall	  ? g->shmall
		    : host.shmall ? host.shmall
				  : DEFAULT_SHMALL;
	l->shmmni = g->shmmni	  ? g->shmmni
		    : host.shmmni ? host.shmmni
				  : DEFAULT_SHMMNI;
	if (l->shmmni > SHMFS_MAX_SLOTS)
		l->shmmni = SHMFS_MAX_SLOTS;
	l->shmmin = g->shmmin ? g->shmmin : 1;
	l->shmseg = g->shmseg ? g->shmseg : l->shmmni;
	if ((g->shmseg || g->shmmni || (want & SEG_LIMIT_SHMMNI)) && Tcfg.pub &&
	    Tcfg.pub->limits)
		Tcfg.pub->limits(l->shmseg);
}

void seg_limits_now(struct seg_limits *l)
{
	seg_limits_for(l, SEG_LIMIT_ALL);
}

void seg_maybe_destroy(struct seg *s)
{
	if (!s->freed || s->handles || s->nlookup)
		return;
	seg_release_memory(s);
	serial_remove(s);
	pfree(s);
	T.nobjects--;
}

static void seg_munlock(struct seg *s);

/* The shmid goes: as shm_destroy on Linux. */
void seg_sysv_free(struct seg *s)
{
	hold_unlink_seg(s);
	seg_munlock(s);
	if (!s->removed) {
		if (s->ds.key != IPC_PRIVATE)
			key_remove(s);
		else
			T.nprivate--;
		s->removed = true;
	}
	if (Tcfg.pub)
		Tcfg.pub->clear(s->slot);
	T.slots[s->slot].seg = NULL;
	slot_mark(s->slot, false);
	T.nused--;
	s->slot = -1;
	s->freed = true;
	if (Tcfg.freed)
		Tcfg.freed(s->ds.shmid, s->nlookup > 0);
	seg_memory_settle(s);
	seg_maybe_destroy(s);
}

static void seg_rmid(struct seg *s)
{
	if (!s->removed) {
		if (s->ds.key != IPC_PRIVATE)
			key_remove(s);
		else
			T.nprivate--;
		s->ds.key = IPC_PRIVATE;
		s->ds.mode |= SHMFS_SHM_DEST;
		s->removed = true;
	}
	/* SHM_DEST is out before the sum (seg_nattch) */
	publish(s);
	killpoint("rmid"); /* nameless, not freed yet */
	if (!seg_nattch(s))
		seg_sysv_free(s);
}

/*
 * A view, taken under the table lock: memory in the arena is measured
 * later, by seg_view_bytes(), outside it.
 */
void seg_fill_view(const struct seg *s, struct seg_view *v)
{
	v->serial = s->serial;
	seg_ds(s, &v->ds);
	segmem_view(s, v);
	v->removed = s->removed;
	v->freed = s->freed;
	v->slot = s->slot;
}

struct perm_obj seg_perm(const struct seg *s)
{
	struct perm_obj o = {
		.uid = s->ds.uid,
		.gid = s->ds.gid,
		.cuid = s->ds.cuid,
		.cgid = s->ds.cgid,
		.mode = s->ds.mode & 0777,
	};
	return o;
}

/* ---- life cycle ---- */

/* Everything goes, in one transaction: the walk checks the counts. */
static void table_free_all(void)
{
	unsigned b;
	TABLE_LOCK();

	attach_fini();
	for (b = 0; b < SERIAL_BUCKETS; b++)
		while (T.by_serial[b]) {
			struct seg *s = T.by_serial[b];

			T.by_serial[b] = s->serial_next;
			seg_release_memory(s);
			pfree(s);
		}
	while (T.lock_users) {
		struct lock_user *u = T.lock_users;

		T.lock_users = u->next;
		pfree(u);
	}
	memset(T.slots, 0, sizeof(T.slots));
	memset(T.used, 0, sizeof(T.used));
	memset(T.any_used, 0, sizeof(T.any_used));
	memset(T.all_used, 0, sizeof(T.all_used));
	memset(T.by_key, 0, sizeof(T.by_key));
	T.nused = T.nprivate = 0;
	segmem_fini();
	T.tot_pages = T.nobjects = 0;
	files_fini();
}

void seg_fini(void)
{
	if (!seg_T)
		return;
	table_free_all();
	table_close();
}

/*
 * A successor's first act: the published table shows the table as the
 * last commit left it, whatever the dead server had published of a
 * change it did not commit.
 */
void seg_republish(void)
{
	int slot;
	TABLE_LOCK();

	if (!Tcfg.pub)
		return;
	if (Tcfg.pub->reset)
		Tcfg.pub->reset();
	for (slot = slot_next_used(0); slot >= 0;
	     slot = slot_next_used(slot + 1)) {
		struct seg *s = T.slots[slot].seg;

		if (!s->removed && s->ds.key != IPC_PRIVATE)
			Tcfg.pub->key_add(s->ds.key, slot);
		publish(s);
	}
	tally_republish();
	if (Tcfg.pub->reset_done)
		Tcfg.pub->reset_done();
}

/* ---- shmget ---- */

static int seg_create(key_t key, uint64_t size, int flags,
		      const struct perm_cred *c, int *shmid)
{
	struct seg_limits l;
	uint64_t page = Tcfg.page_size, pages;
	struct seg *s;
	int slot;
	uint16_t seq;

	seg_limits_now(&l);
	if (size < l.shmmin || size > l.shmmax)
		return -EINVAL;
	if (size > UINT64_MAX - (page - 1))
		return -ENOSPC;
	pages = (size + page - 1) / page;
	if (T.tot_pages + pages < T.tot_pages || T.tot_pages + pages > l.shmall)
		return -ENOSPC;
	/* as shmem_kernel_file_setup: the largest file, then the commit */
	if (size > (uint64_t)INT64_MAX)
		return -EINVAL;
	if (!(flags & SHM_NORESERVE) && Tcfg.commit_room &&
	    pages > Tcfg.commit_room())
		return -ENOMEM;
	if (T.nused >= l.shmmni)
		return -ENOSPC;
	slot = slot_lowest_free();
	if (slot < 0)
		return -ENOSPC;

	s = pcalloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->memfd = -1;
	s->pages = pages;
	s->ds.segsz = size;
	s->has_memory = s->unmade = true; /* made at the first open */

	seq = T.slots[slot].seq % SEQ_MAX + 1; /* 1..SEQ_MAX: never id 0 */
	T.slots[slot].seq = seq;
	T.slots[slot].seg = s;
	slot_mark(slot, true);
	s->serial = T.next_serial++;
	s->slot = slot;
	s->ds.key = key;
	s->ds.shmid =
		(int32_t)((uint32_t)seq << SHMFS_ID_SHIFT | (uint32_t)slot);
	s->ds.uid = s->ds.cuid = c->uid;
	s->ds.gid = s->ds.cgid = c->gid;
	s->ds.mode = (uint32_t)flags & 0777;
	s->ds.seq = seq;
	s->ds.ctime = seg_now();
	s->ds.cpid = c->pid;
	serial_insert(s);
	publish(s);
	killpoint("create"); /* in the slot, not under its key yet */
	if (key != IPC_PRIVATE)
		key_insert(s);
	else
		T.nprivate++;
	T.nused++;
	T.tot_pages += pages;
	T.nobjects++;
	*shmid = s->ds.shmid;
	return 0;
}

int seg_get(key_t key, uint64_t size, int flags, struct perm_cred *c,
	    int *shmid)
{
	struct seg *s;
	TABLE_LOCK();

	if (key == IPC_PRIVATE)
		return seg_create(key, size, flags, c, shmid);
	s = key_find(key);
	if (!s) {
		if (!(flags & IPC_CREAT))
			return -ENOENT;
		return seg_create(key, size, flags, c, shmid);
	}
	if ((flags & (IPC_CREAT | IPC_EXCL)) == (IPC_CREAT | IPC_EXCL))
		return -EEXIST;
	if (size > s->ds.segsz)
		return -EINVAL;
	struct perm_obj o = seg_perm(s);
	int err = perm_check(c, &o, perm_fold((unsigned)flags & 0777));
	if (err)
		return err;
	*shmid = s->ds.shmid;
	return 0;
}

/* ---- SHM_LOCK ---- */

/*
 * Locked pages are charged to the user who locked them and limited by
 * that caller's RLIMIT_MEMLOCK, as Linux's user_shm_lock does; root is
 * charged but not limited.  The pages themselves are not pinned: the
 * data lives in the daemon's memfd and the clients' page cache.
 */
static struct lock_user *lock_user_find(uid_t uid)
{
	struct lock_user *u;

	for (u = T.lock_users; u; u = u->next)
		if (u->uid == uid)
			return u;
	return NULL;
}

static int seg_mlock(struct seg *s, const struct perm_cred *c, uint64_t memlock)
{
	uint64_t limit = memlock / Tcfg.page_size;
	struct lock_user *u;

	if (!perm_is_root(c) && !memlock)
		return -EPERM;
	if (s->ds.mode & SHMFS_SHM_LOCKED)
		return 0;
	u = lock_user_find(c->uid);
	if (!perm_is_root(c) && (u ? u->pages : 0) + s->pages > limit)
		return -ENOMEM;
	if (!u) {
		u = pcalloc(1, sizeof(*u));
		if (!u)
			return -ENOMEM;
		u->uid = c->uid;
		u->next = T.lock_users;
		T.lock_users = u;
	}
	u->pages += s->pages;
	s->lock_uid = c->uid;
	s->ds.mode |= SHMFS_SHM_LOCKED;
	return 0;
}

static void seg_munlock(struct seg *s)
{
	struct lock_user *u, **pp;

	if (!(s->ds.mode & SHMFS_SHM_LOCKED))
		return;
	s->ds.mode &= ~(uint32_t)SHMFS_SHM_LOCKED;
	u = lock_user_find(s->lock_uid);
	if (!u)
		return;
	u->pages -= s->pages < u->pages ? s->pages : u->pages;
	if (u->pages)
		return;
	for (pp = &T.lock_users; *pp; pp = &(*pp)->next)
		if (*pp == u) {
			*pp = u->next;
			break;
		}
	pfree(u);
}

/* ---- shmctl ---- */

static void seg_shm_info(struct shmfs_shm_info *si)
{
	memset(si, 0, sizeof(*si));
	si->used_ids = (int32_t)T.nused;
	si->shm_tot = T.tot_pages;
	si->shm_rss = segmem_rss() / Tcfg.page_size;
}

static int seg_ctl_locked(struct perm_cred *c, struct shmfs_ctl *io)
{
	struct seg_limits l;
	struct perm_obj o;
	struct seg *s;
	int err, max;

	/* as ksys_shmctl: before anything else */
	if (io->cmd < 0 || io->id < 0)
		return -EINVAL;
	switch (io->cmd) {
	case IPC_INFO:
		seg_limits_now(&l);
		memset(&io->u.info, 0, sizeof(io->u.info));
		io->u.info.shmmax = l.shmmax;
		io->u.info.shmmin = l.shmmin;
		io->u.info.shmmni = l.shmmni;
		io->u.info.shmseg = l.shmseg;
		io->u.info.shmall = l.shmall;
		max = slot_highest_used();
		io->ret = max < 0 ? 0 : max;
		return 0;
	case SHM_INFO:
		seg_shm_info(&io->u.shm_info);
		max = slot_highest_used();
		io->ret = max < 0 ? 0 : max;
		return 0;
	case SHM_STAT:
	case SHM_STAT_ANY:
		/* the index is taken modulo the slot count, as Linux does */
		s = T.slots[io->id & (SHMFS_MAX_SLOTS - 1)].seg;
		if (!s)
			return -EINVAL;
		o = seg_perm(s);
		if (io->cmd == SHM_STAT && (err = perm_check(c, &o, PERM_R)))
			return err;
		seg_ds(s, &io->u.ds);
		io->ret = s->ds.shmid;
		return 0;
	case IPC_STAT:
	case IPC_SET:
	case IPC_RMID:
	case SHM_LOCK:
	case SHM_UNLOCK:
		break;
	default:
		return -EINVAL;
	}

	s = seg_find_id(io->id);
	if (!s)
		return -EINVAL;
	o = seg_perm(s);
	io->ret = 0;
	switch (io->cmd) {
	case IPC_STAT:
		if ((err = perm_check(c, &o, PERM_R)))
			return err;
		seg_ds(s, &io->u.ds);
		return 0;
	case IPC_SET:
		if ((err = perm_owner(c, &o)))
			return err;
		if (io->u.ds.uid == (uint32_t)-1 ||
		    io->u.ds.gid == (uint32_t)-1)
			return -EINVAL;
		s->ds.uid = io->u.ds.uid;
		s->ds.gid = io->u.ds.gid;
		s->ds.mode = (s->ds.mode & ~0777u) | (io->u.ds.mode & 0777u);
		s->ds.ctime = seg_now();
		s->perm_gen++;
		publish(s);
		return 0;
	case IPC_RMID:
		if ((err = perm_owner(c, &o)))
			return err;
		seg_rmid(s);
		return 0;
	default: /* SHM_LOCK, SHM_UNLOCK: owner, creator or root */
		if ((err = perm_owner(c, &o)))
			return err;
		if (io->cmd == SHM_LOCK)
			err = seg_mlock(s, c, io->memlock);
		else
			seg_munlock(s);
		if (!err)
			publish(s);
		return err;
	}
}

int seg_ctl(struct perm_cred *c, struct shmfs_ctl *io)
{
	TABLE_LOCK();
	return seg_ctl_locked(c, io);
}

int seg_access(int shmid, int mask, struct perm_cred *c)
{
	struct perm_obj o;
	struct seg *s;
	TABLE_READ();

	s = seg_find_id(shmid);
	if (!s)
		return -EINVAL;
	o = seg_perm(s);
	return perm_check(c, &o, mask);
}

/* ---- names ---- */

static void seg_hold(struct seg *s, bool hold)
{
	if (hold)
		s->nlookup++;
}

/* The segment of shmid; with a key, only while it has that name. */
static int lookup_locked(int shmid, const key_t *key, bool hold,
			 struct seg_view *v)
{
	struct seg *s = seg_find_id(shmid);

	if (!s || (key && (s->removed || s->ds.key != *key)))
		return -ENOENT;
	seg_hold(s, hold);
	seg_fill_view(s, v);
	return 0;
}

static int lookup_shmid(int shmid, const key_t *key, bool hold,
			struct seg_view *v)
{
	if (hold) {
		TABLE_LOCK();
		return lookup_locked(shmid, key, hold, v);
	}
	TABLE_READ();
	return lookup_locked(shmid, key, hold, v);
}

int seg_lookup_name(key_t key, int shmid, bool hold, struct seg_view *v)
{
	return lookup_shmid(shmid, &key, hold, v);
}

int seg_lookup_key(key_t key, struct seg_view *v)
{
	struct seg *s;
	TABLE_READ();

	s = key == IPC_PRIVATE ? NULL : key_find(key);
	if (!s)
		return -ENOENT;
	seg_fill_view(s, v);
	return 0;
}

int seg_lookup_id(int shmid, bool hold, struct seg_view *v)
{
	return lookup_shmid(shmid, NULL, hold, v);
}

int seg_lookup_serial(uint64_t serial, struct seg_view *v)
{
	struct seg *s;
	TABLE_READ();

	s = serial_find(serial);
	if (!s)
		return -ENOENT;
	seg_fill_view(s, v);
	return 0;
}

void seg_forget(uint64_t serial, uint64_t n)
{
	struct seg *s;
	TABLE_LOCK();

	s = serial_find(serial);
	if (!s)
		return;
	s->nlookup = s->nlookup > n ? s->nlookup - n : 0;
	seg_maybe_destroy(s);
}

/*
 * A successor's reckoning of the objects: one whose shmid is gone waits
 * for nothing but the kernel's FORGET of its lookups, and the dead server
 * may have lost that (a FORGET has no reply: one read and not applied is
 * never sent again) or the drop of its .id name that brings it.  Its name
 * is dropped again, and it goes now: serials are never reused, and a
 * FORGET or a request naming a serial that is gone finds nothing.
 */
void seg_objects_adopt(void)
{
	unsigned b;

	if (Tcfg.born_resume && T.born_hint)
		Tcfg.born_resume(T.born_hint);
	for (b = 0; b < SERIAL_BUCKETS; b++) {
		struct seg *s, *next;

		for (s = T.by_serial[b]; s; s = next) {
			next = s->serial_next;
			if (!s->freed || !s->nlookup)
				continue;
			if (Tcfg.freed)
				Tcfg.freed(s->ds.shmid, true);
			s->nlookup = 0;
			seg_maybe_destroy(s);
		}
	}
}

bool seg_key_exists(key_t key)
{
	TABLE_READ();
	if (key == IPC_PRIVATE)
		return T.nprivate > 0;
	return key_find(key) != NULL;
}

void seg_walk(int from, int (*fn)(void *arg, const struct seg_view *v),
	      void *arg)
{
	struct seg_view v;
	int idx;
	TABLE_READ();

	for (idx = slot_next_used(from); idx >= 0;
	     idx = slot_next_used(idx + 1)) {
		seg_fill_view(T.slots[idx].seg, &v);
		if (fn(arg, &v))
			break;
	}
}

int seg_setattr(uint64_t serial, struct perm_cred *c, long mode, long uid,
		long gid, struct seg_view *v)
{
	struct perm_obj o;
	struct seg *s;
	int err;
	TABLE_LOCK();

	s = serial_find(serial);
	if (!s || s->freed)
		return -ENOENT;
	o = seg_perm(s);
	if ((err = perm_owner(c, &o)))
		return err;
	if (mode >= 0 && (mode & ~0777L))
		return -EINVAL;
	if (mode >= 0)
		s->ds.mode = (s->ds.mode & ~0777u) | (uint32_t)mode;
	if (uid >= 0)
		s->ds.uid = (uint32_t)uid;
	if (gid >= 0)
		s->ds.gid = (uint32_t)gid;
	s->ds.ctime = seg_now();
	s->perm_gen++;
	publish(s);
	seg_fill_view(s, v);
	return 0;
}

int seg_unlink(key_t key, int shmid, struct perm_cred *c)
{
	struct perm_obj o;
	struct seg *s;
	int err;
	TABLE_LOCK();

	s = seg_find_id(shmid);
	if (!s || s->removed || s->ds.key != key)
		return -ENOENT;
	o = seg_perm(s);
	if ((err = perm_owner(c, &o)))
		return err;
	seg_rmid(s);
	return 0;
}

void seg_get_stats(struct seg_stats *st)
{
	TABLE_READ();
	st->used = T.nused;
	st->tot_pages = T.tot_pages;
	st->objects = T.nobjects;
	st->handles = T.nhandles;
	st->procs = T.nprocs;
	st->sessions = T.nsessions;
	st->pending_forks = T.npending;
	st->attaches = T.nrefs + tally_attaches();
	st->kids_reads = kids_read_count();
	segmem_stats(st);
	{
		struct pheap_stats ph;

		pheap_stats(&ph);
		st->heap_bytes = ph.in_use;
		st->tx_commits = ph.commits;
		st->tx_pages = ph.faults;
		st->hot_pages = ph.hot;
	}
}
