/*
 * The published table: a read-only mapping of what the daemon shows
 * anyone, so that shmget of an existing key and IPC_STAT need no request.
 * ipcperm is the daemon's own (src/perm.c, compiled in here).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <poll.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "client.h"

#define PERM_API static __attribute__((unused))
#include "../src/perm.c"

static const struct shmfs_table *table;
static int table_pidfd = -1;

/*
 * The table is the daemon's if the daemon that answered HELLO on .ctl
 * says it is (daemon_pid) and its user owns the file: whoever can name
 * the .table we open (a symlink, another directory) cannot make us
 * answer from a file of their own.  pfd watches daemon_pid, so the
 * owner of /proc/<pid> is that of the same process.
 */
static int table_is_daemons(const struct shmfs_table *t, const struct stat *st,
			    int pfd)
{
	struct pollfd p = { .fd = pfd, .events = POLLIN };
	char proc[32];
	struct stat ps;

	if (t->daemon_pid != daemon_pid) {
		dbg("%s names daemon %d, not %d that serves the mount: unused",
		    SHMFS_TABLE_NAME, (int)t->daemon_pid, (int)daemon_pid);
		return 0;
	}
	snprintf(proc, sizeof(proc), "/proc/%d", (int)daemon_pid);
	if (stat(proc, &ps) < 0 || poll(&p, 1, 0) != 0 ||
	    st->st_uid != ps.st_uid) {
		dbg("%s is not the daemon's own file (owner %u): unused",
		    SHMFS_TABLE_NAME, (unsigned)st->st_uid);
		return 0;
	}
	return 1;
}

/* Maps ROOT/.table if the daemon publishes one (1); without it (0),
 * every call asks the daemon, which is slower but the same. */
int table_open(const char *root)
{
	char path[PATH_MAX];
	struct stat st;
	const struct shmfs_table *t;
	int fd, pfd;

	snprintf(path, sizeof(path), "%s/%s", root, SHMFS_TABLE_NAME);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size != sizeof(*t)) {
		close(fd);
		return 0;
	}
	t = mmap(NULL, sizeof(*t), PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (t == MAP_FAILED)
		return 0;
	if (__atomic_load_n(&t->magic, __ATOMIC_ACQUIRE) != SHMFS_TABLE_MAGIC ||
	    t->version != SHMFS_TABLE_VERSION ||
	    t->max_slots != SHMFS_MAX_SLOTS ||
	    (pfd = (int)syscall(SYS_pidfd_open, t->daemon_pid, 0)) < 0) {
		munmap((void *)t, sizeof(*t));
		return 0;
	}
	if (!table_is_daemons(t, &st, pfd)) {
		close(pfd);
		munmap((void *)t, sizeof(*t));
		return 0;
	}
	table_pidfd = pfd;
	table = t;
	return 1;
}

/* Only a table whose daemon still runs says anything. */
static const struct shmfs_table *table_live(void)
{
	struct pollfd p = { .fd = table_pidfd, .events = POLLIN };
	uint32_t alive;

	if (!table || __atomic_load_n(&table->magic, __ATOMIC_ACQUIRE) !=
			      SHMFS_TABLE_MAGIC)
		return NULL;
	/* the keeper's robust futex word (src/alive.c): no system call */
	alive = __atomic_load_n(&table->alive, __ATOMIC_ACQUIRE);
	if (alive & FUTEX_OWNER_DIED)
		return NULL;
	if (!alive && poll(&p, 1, 0) != 0)
		return NULL;
	return table;
}

/*
 * What the listed records add to an entry (docs/attach-design.md 4.6):
 * nattch is base plus each record's own, clamped; atime and dtime the
 * latest of the entry's and the records', clamped to now; lpid the
 * process of the latest call by stamp.  Inside the entry's seq section:
 * a torn chain is caught by the caller's second look at seq.  -ENOENT:
 * a listed tally cannot be read here.
 */
static int entry_counts(const struct shmfs_table *t,
			const struct shmfs_table_entry *e, struct shmfs_ds *ds)
{
	uint32_t idx = __atomic_load_n(&e->holders, __ATOMIC_RELAXED);
	uint64_t sum = __atomic_load_n(&e->base, __ATOMIC_RELAXED);
	uint64_t best = __atomic_load_n(&e->base_stamp, __ATOMIC_RELAXED);
	uint32_t steps = 0, lsid = 0, lgen = 0;
	uint64_t now_ns = 0;
	int64_t now = 0;

	while (idx && idx <= SHMFS_TABLE_HOLDERS &&
	       steps++ < SHMFS_TABLE_SESSIONS) {
		const struct shmfs_table_holder *h = &t->holders[idx - 1];
		uint32_t sid = __atomic_load_n(&h->sid, __ATOMIC_RELAXED);
		uint32_t gen = __atomic_load_n(&h->gen, __ATOMIC_RELAXED);
		uint32_t rec = __atomic_load_n(&h->rec, __ATOMIC_RELAXED);
		const struct shmfs_tally_rec *r;
		const struct shmfs_tally *tl;
		uint32_t own;
		uint64_t st;
		int64_t a, d;

		idx = __atomic_load_n(&h->next, __ATOMIC_RELAXED);
		if (rec >= SHMFS_TALLY_RECS)
			return -EAGAIN;
		tl = tally_peer(sid, gen);
		if (!tl)
			return -ENOENT;
		r = &tl->rec[rec];
		own = __atomic_load_n(&r->own, __ATOMIC_ACQUIRE);
		sum += own < SHMFS_TALLY_OWN_MAX ? own : SHMFS_TALLY_OWN_MAX;
		st = __atomic_load_n(&r->stamp, __ATOMIC_RELAXED);
		if (!st)
			continue; /* no call of its own yet */
		if (!now_ns) {
			now_ns = tally_now_ns();
			now = (int64_t)time(NULL);
		}
		a = __atomic_load_n(&r->atime, __ATOMIC_RELAXED);
		d = __atomic_load_n(&r->dtime, __ATOMIC_RELAXED);
		if (a > ds->atime)
			ds->atime = a < now ? a : now;
		if (d > ds->dtime)
			ds->dtime = d < now ? d : now;
		if (st > best) {
			best = st < now_ns ? st : now_ns;
			lsid = sid;
			lgen = gen;
		}
	}
	if (lsid) {
		uint64_t w = __atomic_load_n(
			(const uint64_t *)(const void *)&t->sessions[lsid],
			__ATOMIC_RELAXED);
		struct shmfs_table_session ss;

		memcpy(&ss, &w, sizeof(ss));
		if (ss.gen == lgen)
			ds->lpid = ss.pid;
	}
	ds->nattch = sum;
	return 0;
}

/*
 * One entry, consistent, or -EAGAIN while the daemon keeps writing it;
 * with nattch, its sum too (1: the daemon must answer).
 */
static int table_entry(const struct shmfs_table *t, int slot,
		       struct shmfs_ds *ds, uint32_t *live, int counts)
{
	const struct shmfs_table_entry *e = &t->entries[slot];
	const uint64_t *src = (const uint64_t *)(const void *)&e->ds;
	uint64_t words[sizeof(*ds) / 8];
	int tries, counted = 0;
	size_t i;

	for (tries = 0; tries < 1000; tries++) {
		uint32_t s1 = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);

		if (s1 & 1)
			continue;
		*live = __atomic_load_n(&e->live, __ATOMIC_RELAXED);
		for (i = 0; i < sizeof(words) / 8; i++)
			words[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
		memcpy(ds, words, sizeof(*ds));
		if (counts)
			counted = entry_counts(t, e, ds);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&e->seq, __ATOMIC_RELAXED) != s1 ||
		    counted == -EAGAIN)
			continue;
		return counted < 0 ? 1 : 0;
	}
	return -EAGAIN;
}

int table_rec_of(int shmid, uint32_t sid, uint32_t gen)
{
	const struct shmfs_table *t = table_live();
	const struct shmfs_table_entry *e;
	int tries;

	if (!t || shmid < 0)
		return -1;
	e = &t->entries[shmid & (SHMFS_MAX_SLOTS - 1)];
	for (tries = 0; tries < 1000; tries++) {
		uint32_t s1 = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);
		uint32_t idx, steps = 0;
		int rec = -1;

		if (s1 & 1)
			continue;
		if (__atomic_load_n(&e->ds.shmid, __ATOMIC_RELAXED) != shmid)
			return -1;
		idx = __atomic_load_n(&e->holders, __ATOMIC_RELAXED);
		while (idx && idx <= SHMFS_TABLE_HOLDERS &&
		       steps++ < SHMFS_TABLE_SESSIONS) {
			const struct shmfs_table_holder *h =
				&t->holders[idx - 1];

			if (__atomic_load_n(&h->sid, __ATOMIC_RELAXED) == sid &&
			    __atomic_load_n(&h->gen, __ATOMIC_RELAXED) == gen) {
				rec = (int)__atomic_load_n(&h->rec,
							   __ATOMIC_RELAXED);
				break;
			}
			idx = __atomic_load_n(&h->next, __ATOMIC_RELAXED);
		}
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&e->seq, __ATOMIC_RELAXED) == s1)
			return rec >= 0 && (uint32_t)rec < SHMFS_TALLY_RECS
				       ? rec
				       : -1;
	}
	return -1;
}

/*
 * What a kept descriptor of shmid needs to know (fastpath.c): 0 with
 * its perm_gen and mode while shmid lives, -EINVAL when it does not,
 * 1 without a table.  Every load is seq_cst: the caller's count in its
 * record before it, and the daemon's SHM_DEST after its own, are seen
 * in one order (docs/attach-design.md 4.7).
 */
int table_seg_state(int shmid, uint32_t *perm_gen, uint32_t *mode)
{
	const struct shmfs_table *t = table_live();
	const struct shmfs_table_entry *e;
	int tries;

	if (!t || shmid < 0)
		return 1;
	e = &t->entries[shmid & (SHMFS_MAX_SLOTS - 1)];
	for (tries = 0; tries < 1000; tries++) {
		uint32_t s1 = __atomic_load_n(&e->seq, __ATOMIC_SEQ_CST);
		uint32_t live = __atomic_load_n(&e->live, __ATOMIC_SEQ_CST);
		int32_t id = __atomic_load_n(&e->ds.shmid, __ATOMIC_SEQ_CST);

		if (s1 & 1)
			continue;
		*perm_gen = __atomic_load_n(&e->perm_gen, __ATOMIC_SEQ_CST);
		*mode = __atomic_load_n(&e->ds.mode, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&e->seq, __ATOMIC_SEQ_CST) != s1)
			continue;
		return live && id == shmid ? 0 : -EINVAL;
	}
	return 1;
}

/* The daemon's shmseg limit, or 0 when not known. */
uint32_t table_shmseg(void)
{
	const struct shmfs_table *t = table_live();

	return t ? __atomic_load_n(&t->shmseg, __ATOMIC_ACQUIRE) : 0;
}

/* The slot of a live key, -ENOENT, or -EAGAIN. */
static int table_key_slot(const struct shmfs_table *t, key_t key)
{
	int tries;

	for (tries = 0; tries < 1000; tries++) {
		uint32_t s1 = __atomic_load_n(&t->key_seq, __ATOMIC_ACQUIRE);
		uint32_t idx, n = 0;
		int found = -ENOENT;

		if (s1 & 1)
			continue;
		idx = __atomic_load_n(&t->buckets[shmfs_table_bucket(key)],
				      __ATOMIC_RELAXED);
		while (idx && idx <= SHMFS_MAX_SLOTS && n++ < SHMFS_MAX_SLOTS) {
			const struct shmfs_table_entry *e =
				&t->entries[idx - 1];

			if (__atomic_load_n(&e->ds.key, __ATOMIC_RELAXED) ==
			    key) {
				found = (int)idx - 1;
				break;
			}
			idx = __atomic_load_n(&e->key_next, __ATOMIC_RELAXED);
		}
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&t->key_seq, __ATOMIC_RELAXED) == s1)
			return found;
	}
	return -EAGAIN;
}

/* getgroups(2) as perm.c asks: how many there are, even when more than
 * size. */
static int own_groups(void *arg, gid_t *list, int size)
{
	int n = getgroups(0, NULL);

	(void)arg;
	if (n < 0 || n > size)
		return n < 0 ? -errno : n;
	n = getgroups(size, list);
	return n < 0 ? -errno : n;
}

/* ipcperm, the daemon's own (perm.c), with our own credentials. */
static int table_perm(const struct shmfs_ds *d, int want)
{
	struct perm_obj o = {
		.uid = d->uid,
		.gid = d->gid,
		.cuid = d->cuid,
		.cgid = d->cgid,
		.mode = d->mode & 0777,
	};
	struct perm_cred c;
	uid_t uid = geteuid();
	int r;

	/* A table read costs no more system calls than it needs: the
	 * group only counts for a caller who is neither root nor owner. */
	perm_cred_init(&c, uid,
		       uid && uid != d->uid && uid != d->cuid ? getegid() : 0,
		       0);
	c.getgroups = own_groups;
	r = perm_check(&c, &o, want);
	perm_cred_fini(&c);
	return r;
}

/*
 * shmget of a key that exists, from the table: 0 with *id, or 1 when
 * the daemon must decide (no such key, creation, or no table).
 */
int table_shmget(key_t key, size_t size, int shmflg, int *id)
{
	const struct shmfs_table *t = table_live();
	struct shmfs_ds d;
	uint32_t live;
	int slot, r;

	if (!t || key == IPC_PRIVATE)
		return 1;
	slot = table_key_slot(t, key);
	if (slot < 0 || table_entry(t, slot, &d, &live, 0) < 0 || !live ||
	    d.key != key)
		return 1;
	if ((shmflg & (IPC_CREAT | IPC_EXCL)) == (IPC_CREAT | IPC_EXCL))
		return -EEXIST;
	if (size > d.segsz)
		return -EINVAL;
	r = table_perm(&d, (shmflg >> 6 | shmflg >> 3 | shmflg) & 7);
	if (r < 0)
		return r;
	*id = d.shmid;
	return 0;
}

/*
 * IPC_STAT, SHM_STAT, SHM_STAT_ANY from the table: 0, -errno, or 1 when
 * the daemon must answer.
 */
int table_stat(int id, int cmd, struct shmfs_ds *d, int *ret)
{
	const struct shmfs_table *t = table_live();
	uint32_t live;
	int r;

	if (!t || table_entry(t, id & (SHMFS_MAX_SLOTS - 1), d, &live, 1) != 0)
		return 1;
	if (!live || (cmd == IPC_STAT && d->shmid != id))
		return -EINVAL;
	if (cmd != SHM_STAT_ANY && (r = table_perm(d, 4)) < 0)
		return r;
	*ret = cmd == IPC_STAT ? 0 : d->shmid;
	return 0;
}
