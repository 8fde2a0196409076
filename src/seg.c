/*
 * The shmid_ds table.  A segment lives in a slot; its shmid is the slot's
 * sequence number shifted over the slot index, so a stale shmid never
 * names a later segment in the same slot.  Keys and shmids are found
 * through a hash and the slot array; two-level bitmaps give the lowest
 * free slot and the highest used one without a scan.
 *
 * Attaches are counted per process: a ref is "this process holds one
 * attach of this segment".  Refs are made by an attach open and by fork
 * (the child's, pending until the child claims them), and go at shmdt
 * (seg_detach) or when the process ends its session: a process has a
 * session while it holds the control node open, and the kernel tells us
 * synchronously when it closes it, also at exit and exec.
 * nattch is the number of refs.
 *
 * A segment's memory is a memfd of its own when the front end can hand
 * memfds to the kernel as backing files (FUSE passthrough): the kernel
 * then serves reads, writes and mappings of the segment file from it, and
 * holds it for as long as anything uses it.  The memfd is sealed at the
 * segment's size.  The daemon keeps the descriptor while it has
 * descriptors to spare, to measure the memory in use, and lets it go
 * beyond that; the backing id alone keeps the memfd.
 *
 * Without passthrough, the memory of every segment is a range of one
 * sparse memfd, the arena: one descriptor however many segments there
 * are.  Ranges are handed out in order and never reused (the arena's 2^62
 * bytes of offsets outlast any daemon), so a new segment always starts as
 * holes, that is zeros.  Either way the memory is given back when the
 * shmid is gone and no handle (open file) is left.  The object itself also
 * stays while the front end holds lookups on it (seg_forget), so that its
 * serial never names another.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "seg.h"

/* One key hash, the published table's (shmfs_proto.h). */
#define KEY_BUCKETS SHMFS_TABLE_BUCKETS
#define SERIAL_BUCKETS (1u << 16)
#define PROC_BUCKETS (1u << 12)
#define SESSION_BUCKETS (1u << 12)
#define SLOT_WORDS (SHMFS_MAX_SLOTS / 64)
#define SUM_WORDS (SLOT_WORDS / 64)
#define SEQ_MAX 0xffff
#define DEFAULT_SHMMAX (~0ULL - (1ULL << 24))
#define DEFAULT_SHMALL (~0ULL - (1ULL << 24))
#define DEFAULT_SHMMNI 4096

struct seg_handle;
struct fork_pending;
struct proc;

struct ref {
	struct seg *seg;
	struct proc *proc; /* owner, or NULL while pending */
	struct fork_pending *fp; /* set while the child has not claimed */
	struct ref *o_next; /* in the owner's (or fork's) list */
	struct ref *o_prev;
	struct ref *s_next; /* in the segment's list */
	struct ref *s_prev;
};

/*
 * A session: one process's use of one open file of the control node.
 * It is made by an open of the node, by a fork claim or SHMFS_IOC_SESSION
 * on a descriptor the process holds, and ends at that process's close of
 * that file (FLUSH), or when the file itself goes (RELEASE).  A close of
 * a file the process has no session on (one passed to it over a socket,
 * say) ends nothing of its own.
 */
struct session {
	uint64_t file;
	struct proc *proc;
	uint32_t opens; /* its opens of the file, not yet closed */
	struct session *p_next; /* in the process's list */
	struct session *f_next; /* in the file's bucket */
};

struct proc {
	pid_t tgid;
	uint32_t nsessions;
	struct session *sessions;
	uint32_t nrefs;
	struct ref *refs;
	struct proc *next;
};

struct fork_pending {
	uint64_t token;
	uint64_t file; /* the control file it was counted on */
	pid_t parent;
	uint64_t since; /* next_born() when it was counted */
	/* The parent's session is over: only a child in kids can claim. */
	bool orphan;
	bool scanned; /* kids is known */
	pid_t *kids;
	int nkids;
	struct ref *refs;
	struct fork_pending *next;
};

struct seg {
	uint64_t serial;
	struct shmfs_ds ds;
	uint64_t pages;
	uint64_t handles;
	uint64_t nlookup;
	int slot;
	bool has_memory; /* not given back yet */
	uint64_t offset; /* of its range in the arena */
	struct extent *spare; /* its range's free-list node, for the free */
	int backing; /* passthrough backing id, or 0: served by the daemon */
	int memfd; /* the backing memfd when kept, or its own; else -1 */
	bool solo; /* no backing, and a memfd of its own, not the arena */
	uid_t lock_uid; /* charged for SHM_LOCK */
	bool removed;
	bool freed;
	struct seg *key_next;
	struct seg *serial_next;
	struct ref *refs; /* its attaches, for user.shm.pids */
};

/* A free range of the arena, in a list sorted by offset. */
struct extent {
	uint64_t off, len;
	struct extent *next;
};

struct seg_handle {
	struct seg *seg;
	struct seg_handle *next;
	struct seg_handle *prev;
};

struct slot {
	struct seg *seg;
	uint16_t seq;
};

/* Pages one user has SHM_LOCKed. */
struct lock_user {
	uid_t uid;
	uint64_t pages;
	struct lock_user *next;
};
static struct lock_user *lock_users;

static struct {
	pthread_mutex_t lock;
	struct seg_config cfg;
	struct slot slots[SHMFS_MAX_SLOTS];
	uint64_t used[SLOT_WORDS];
	uint64_t any_used[SUM_WORDS]; /* word i has a used slot */
	uint64_t all_used[SUM_WORDS]; /* word i is full */
	struct seg *by_key[KEY_BUCKETS];
	struct seg *by_serial[SERIAL_BUCKETS];
	struct proc *procs[PROC_BUCKETS];
	struct session *by_file[SESSION_BUCKETS];
	struct fork_pending *forks;
	struct seg_handle *handles;
	int arena; /* the memfd behind most segments without backing */
	struct extent *arena_free; /* its free ranges */
	bool no_backing; /* the front end cannot take backing files */
	uint64_t memfds; /* backing memfds kept open */
	uint64_t next_serial;
	uint32_t nused;
	uint32_t nprivate; /* IPC_PRIVATE segments that still have a name */
	uint64_t tot_pages;
	uint64_t nobjects;
	uint64_t nhandles;
	uint64_t nprocs;
	uint64_t nsessions;
	uint64_t npending;
	uint64_t nrefs;
} T = { .lock = PTHREAD_MUTEX_INITIALIZER, .arena = -1 };

#define ARENA_SIZE (1ULL << 62)
/* Larger segments get a memfd of their own: a few of them (SHM_NORESERVE
 * makes them cheap) must never fill the arena for everyone. */
#define ARENA_SOLO_MIN (ARENA_SIZE >> 10)
/* Extents of an arena range measured before the rest counts as in use. */
#define ARENA_MEASURE_MAX 1024

static inline void unlockp(pthread_mutex_t **m)
{
	if (*m)
		pthread_mutex_unlock(*m);
}

/* Holds the table lock until the end of the enclosing block. */
#define TABLE_LOCK()                                                     \
	pthread_mutex_t *table_lock_ __attribute__((cleanup(unlockp))) = \
		(pthread_mutex_lock(&T.lock), &T.lock)

static int64_t seg_now(void)
{
	return T.cfg.now();
}

static int64_t default_now(void)
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
static int slot_next_used(int idx)
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
	if (T.cfg.pub)
		T.cfg.pub->key_add(s->ds.key, s->slot);
}

static void key_remove(struct seg *s)
{
	struct seg **p;

	for (p = &T.by_key[key_bucket(s->ds.key)]; *p; p = &(*p)->key_next)
		if (*p == s) {
			*p = s->key_next;
			break;
		}
	if (T.cfg.pub)
		T.cfg.pub->key_del(s->ds.key, s->slot);
}

static struct seg *serial_find(uint64_t serial)
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

static struct seg *seg_find_id(int shmid)
{
	struct seg *s;

	if (shmid < 0)
		return NULL;
	s = T.slots[shmid & (SHMFS_MAX_SLOTS - 1)].seg;
	return s && s->ds.shmid == shmid ? s : NULL;
}

/* ---- publishing ---- */

static void publish(const struct seg *s)
{
	if (T.cfg.pub && !s->freed)
		T.cfg.pub->set(s->slot, &s->ds);
}

/* ---- limits ---- */

void seg_limits_for(struct seg_limits *l, unsigned want)
{
	struct seg_limits host = { 0 };
	const struct seg_limits *g = &T.cfg.given;
	unsigned read = 0;

	if (!g->shmmax && (want & SEG_LIMIT_SHMMAX))
		read |= SEG_LIMIT_SHMMAX;
	if (!g->shmall && (want & SEG_LIMIT_SHMALL))
		read |= SEG_LIMIT_SHMALL;
	/* shmseg follows shmmni when it is not given */
	if (!g->shmmni && (want & SEG_LIMIT_SHMMNI))
		read |= SEG_LIMIT_SHMMNI;
	if (read && T.cfg.host_limits)
		T.cfg.host_limits(&host, read);
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
}

void seg_limits_now(struct seg_limits *l)
{
	seg_limits_for(l, SEG_LIMIT_ALL);
}

/* ---- processes and refs ---- */

static struct proc *proc_find(pid_t tgid)
{
	struct proc *p;

	for (p = T.procs[(unsigned)tgid & (PROC_BUCKETS - 1)]; p; p = p->next)
		if (p->tgid == tgid)
			return p;
	return NULL;
}

static struct proc *proc_get(pid_t tgid)
{
	struct proc *p = proc_find(tgid);
	unsigned b = (unsigned)tgid & (PROC_BUCKETS - 1);

	if (p)
		return p;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->tgid = tgid;
	p->next = T.procs[b];
	T.procs[b] = p;
	T.nprocs++;
	return p;
}

static void proc_drop_if_empty(struct proc *p)
{
	struct proc **pp;

	if (p->nrefs || p->nsessions)
		return;
	for (pp = &T.procs[(unsigned)p->tgid & (PROC_BUCKETS - 1)]; *pp;
	     pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	free(p);
	T.nprocs--;
}

static void olist_insert(struct ref **head, struct ref *r)
{
	r->o_prev = NULL;
	r->o_next = *head;
	if (*head)
		(*head)->o_prev = r;
	*head = r;
}

static void olist_remove(struct ref **head, struct ref *r)
{
	if (r->o_prev)
		r->o_prev->o_next = r->o_next;
	else
		*head = r->o_next;
	if (r->o_next)
		r->o_next->o_prev = r->o_prev;
	r->o_next = r->o_prev = NULL;
}

static void fork_unlink(struct fork_pending *fp)
{
	struct fork_pending **pp;

	for (pp = &T.forks; *pp; pp = &(*pp)->next)
		if (*pp == fp) {
			*pp = fp->next;
			break;
		}
	free(fp->kids);
	free(fp);
	T.npending--;
}

static struct fork_pending *fork_find(uint64_t token)
{
	struct fork_pending *fp;

	for (fp = T.forks; fp; fp = fp->next)
		if (fp->token == token)
			return fp;
	return NULL;
}

static void arena_give(struct seg *s);

static void seg_release_memory(struct seg *s)
{
	if (!s->has_memory)
		return;
	s->has_memory = false;
	/* as Linux: a segment counts against shmall until it is freed */
	T.tot_pages -= s->pages;
	if (s->backing || s->solo) {
		if (s->backing)
			T.cfg.backing_close(s->backing);
		s->backing = 0;
		s->solo = false;
		if (s->memfd >= 0) {
			close(s->memfd);
			s->memfd = -1;
			T.memfds--;
		}
		return;
	}
	/* holes read as zeros: the range is a new segment's as it is */
	fallocate(T.arena, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		  (off_t)s->offset, (off_t)(s->pages * T.cfg.page_size));
	arena_give(s);
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

	if (T.no_backing || !T.cfg.backing_open)
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
	id = T.cfg.backing_open(fd);
	if (id < 0) {
		close(fd);
		if (id != -ENOMEM && id != -ENFILE && id != -EMFILE) {
			T.no_backing = true;
			return -ENOTSUP;
		}
		return id;
	}
	s->backing = id;
	if (T.memfds < T.cfg.memfd_budget) {
		s->memfd = fd;
		T.memfds++;
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
	uint64_t len = s->pages * T.cfg.page_size;
	struct extent **pp, *e;

	if (T.arena < 0 || len >= ARENA_SOLO_MIN)
		return -ENOSPC;
	s->spare = malloc(sizeof(*s->spare));
	if (!s->spare)
		return -ENOMEM;
	for (pp = &T.arena_free; (e = *pp); pp = &e->next)
		if (e->len >= len)
			break;
	if (!e) {
		free(s->spare);
		s->spare = NULL;
		return -ENOSPC;
	}
	s->offset = e->off;
	e->off += len;
	e->len -= len;
	if (!e->len) {
		*pp = e->next;
		free(e);
	}
	return 0;
}

static void arena_give(struct seg *s)
{
	uint64_t off = s->offset, len = s->pages * T.cfg.page_size;
	struct extent **pp, *prev = NULL, *e, *n = s->spare;

	s->spare = NULL;
	for (pp = &T.arena_free; (e = *pp) && e->off < off; pp = &e->next)
		prev = e;
	if (prev && prev->off + prev->len == off) {
		prev->len += len;
		if (e && off + len == e->off) {
			prev->len += e->len;
			prev->next = e->next;
			free(e);
		}
		free(n);
		return;
	}
	if (e && off + len == e->off) {
		e->off = off;
		e->len += len;
		free(n);
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
	return 0;
}

/* The memory of a new segment: backing when it can, else the arena. */
static int seg_alloc_memory(struct seg *s)
{
	int err = seg_backing_new(s);

	if (err == -ENOTSUP) {
		err = arena_take(s);
		if (err == -ENOSPC)
			err = seg_solo_new(s);
	}
	s->has_memory = !err;
	return err;
}

static void seg_maybe_destroy(struct seg *s)
{
	if (!s->freed || s->handles || s->nlookup)
		return;
	seg_release_memory(s);
	serial_remove(s);
	free(s);
	T.nobjects--;
}

static void seg_munlock(struct seg *s);

/* The shmid goes: as shm_destroy on Linux. */
static void seg_sysv_free(struct seg *s)
{
	seg_munlock(s);
	if (!s->removed) {
		if (s->ds.key != IPC_PRIVATE)
			key_remove(s);
		else
			T.nprivate--;
		s->removed = true;
	}
	if (T.cfg.pub)
		T.cfg.pub->clear(s->slot);
	T.slots[s->slot].seg = NULL;
	slot_mark(s->slot, false);
	T.nused--;
	s->slot = -1;
	s->freed = true;
	if (T.cfg.freed)
		T.cfg.freed(s->ds.shmid);
	if (!s->handles)
		seg_release_memory(s);
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
	if (!s->ds.nattch)
		seg_sysv_free(s);
	else
		publish(s);
}

/* One detach: as shm_close on Linux. */
static void ref_detach(struct ref *r, pid_t lpid)
{
	struct seg *s = r->seg;

	if (r->fp) {
		struct fork_pending *fp = r->fp;

		olist_remove(&fp->refs, r);
		if (!fp->refs)
			fork_unlink(fp);
	} else if (r->proc) {
		struct proc *p = r->proc;

		olist_remove(&p->refs, r);
		p->nrefs--;
		proc_drop_if_empty(p);
	}
	if (r->s_prev)
		r->s_prev->s_next = r->s_next;
	else
		s->refs = r->s_next;
	if (r->s_next)
		r->s_next->s_prev = r->s_prev;
	free(r);
	T.nrefs--;
	s->ds.nattch--;
	s->ds.dtime = seg_now();
	s->ds.lpid = lpid;
	if (!s->ds.nattch && s->removed && !s->freed)
		seg_sysv_free(s);
	else
		publish(s);
}

/* Undo a pending fork: each of its refs is a detach. */
static void fork_drop(struct fork_pending *fp, pid_t lpid)
{
	if (!fp->refs) {
		fork_unlink(fp);
		return;
	}
	while (fp->refs) {
		bool last = fp->refs->o_next == NULL;

		ref_detach(fp->refs, lpid); /* the last one frees fp */
		if (last)
			return;
	}
}

/* ---- views ---- */

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
	return s->pages * T.cfg.page_size;
}

static uint64_t seg_bytes(const struct seg *s)
{
	if (!s->has_memory)
		return 0;
	if (s->backing || s->solo)
		return memfd_bytes(s);
	return arena_bytes(s->offset, s->pages * T.cfg.page_size);
}

/*
 * A view, taken under the table lock: memory in the arena is measured
 * later, by seg_view_bytes(), outside it.
 */
static void seg_fill_view(const struct seg *s, struct seg_view *v)
{
	bool arena = s->has_memory && !s->backing && !s->solo;

	v->serial = s->serial;
	v->ds = s->ds;
	v->bytes = arena ? 0 : seg_bytes(s);
	v->arena_off = arena ? s->offset : 0;
	v->arena_len = arena ? s->pages * T.cfg.page_size : 0;
	v->removed = s->removed;
	v->freed = s->freed;
	v->slot = s->slot;
}

uint64_t seg_view_bytes(const struct seg_view *v)
{
	return v->bytes +
	       (v->arena_len ? arena_bytes(v->arena_off, v->arena_len) : 0);
}

static struct perm_obj seg_perm(const struct seg *s)
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

int seg_init(const struct seg_config *cfg)
{
	T.cfg = *cfg;
	if (!T.cfg.now)
		T.cfg.now = default_now;
	if (!T.cfg.page_size)
		T.cfg.page_size = (size_t)sysconf(_SC_PAGESIZE);
	T.next_serial = 1;
	T.no_backing = false;
	T.memfds = 0;
	T.arena = memfd_create("shmfs", MFD_CLOEXEC);
	if (T.arena < 0)
		return -errno;
	T.arena_free = calloc(1, sizeof(*T.arena_free));
	if (!T.arena_free || ftruncate(T.arena, (off_t)ARENA_SIZE) < 0) {
		int err = T.arena_free ? -errno : -ENOMEM;

		free(T.arena_free);
		T.arena_free = NULL;
		close(T.arena);
		T.arena = -1;
		return err;
	}
	T.arena_free->len = ARENA_SIZE;
	return 0;
}

void seg_fini(void)
{
	unsigned b;
	TABLE_LOCK();

	while (T.handles) {
		struct seg_handle *h = T.handles;

		T.handles = h->next;
		free(h);
	}
	while (T.forks) {
		while (T.forks->refs) {
			struct ref *r = T.forks->refs;

			olist_remove(&T.forks->refs, r);
			free(r);
		}
		fork_unlink(T.forks);
	}
	for (b = 0; b < PROC_BUCKETS; b++)
		while (T.procs[b]) {
			struct proc *p = T.procs[b];

			while (p->refs) {
				struct ref *r = p->refs;

				olist_remove(&p->refs, r);
				free(r);
			}
			while (p->sessions) {
				struct session *s = p->sessions;

				p->sessions = s->p_next;
				free(s);
			}
			T.procs[b] = p->next;
			free(p);
		}
	for (b = 0; b < SERIAL_BUCKETS; b++)
		while (T.by_serial[b]) {
			struct seg *s = T.by_serial[b];

			T.by_serial[b] = s->serial_next;
			seg_release_memory(s);
			free(s);
		}
	while (lock_users) {
		struct lock_user *u = lock_users;

		lock_users = u->next;
		free(u);
	}
	memset(T.slots, 0, sizeof(T.slots));
	memset(T.used, 0, sizeof(T.used));
	memset(T.any_used, 0, sizeof(T.any_used));
	memset(T.all_used, 0, sizeof(T.all_used));
	memset(T.by_key, 0, sizeof(T.by_key));
	memset(T.by_file, 0, sizeof(T.by_file));
	T.nused = T.nprivate = 0;
	if (T.arena >= 0)
		close(T.arena);
	T.arena = -1;
	while (T.arena_free) {
		struct extent *e = T.arena_free;

		T.arena_free = e->next;
		free(e);
	}
	T.tot_pages = T.nobjects = T.nhandles = T.nprocs = T.npending = 0;
	T.nsessions = 0;
	T.nrefs = 0;
}

/* ---- shmget ---- */

static int seg_create(key_t key, uint64_t size, int flags,
		      const struct perm_cred *c, int *shmid)
{
	struct seg_limits l;
	uint64_t page = T.cfg.page_size, pages;
	struct seg *s;
	int slot, err;
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
	if (!(flags & SHM_NORESERVE) && T.cfg.commit_room &&
	    pages > T.cfg.commit_room())
		return -ENOMEM;
	if (T.nused >= l.shmmni)
		return -ENOSPC;
	slot = slot_lowest_free();
	if (slot < 0)
		return -ENOSPC;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->memfd = -1;
	s->pages = pages;
	s->ds.segsz = size;
	err = seg_alloc_memory(s);
	if (err) {
		free(s);
		return err;
	}

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

	for (u = lock_users; u; u = u->next)
		if (u->uid == uid)
			return u;
	return NULL;
}

static int seg_mlock(struct seg *s, const struct perm_cred *c, uint64_t memlock)
{
	uint64_t limit = memlock / T.cfg.page_size;
	struct lock_user *u;

	if (!perm_is_root(c) && !memlock)
		return -EPERM;
	if (s->ds.mode & SHMFS_SHM_LOCKED)
		return 0;
	u = lock_user_find(c->uid);
	if (!perm_is_root(c) && (u ? u->pages : 0) + s->pages > limit)
		return -ENOMEM;
	if (!u) {
		u = calloc(1, sizeof(*u));
		if (!u)
			return -ENOMEM;
		u->uid = c->uid;
		u->next = lock_users;
		lock_users = u;
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
	for (pp = &lock_users; *pp; pp = &(*pp)->next)
		if (*pp == u) {
			*pp = u->next;
			break;
		}
	free(u);
}

/* ---- shmctl ---- */

/*
 * shm_rss: the arena's pages in one fstat (its ranges of freed shmids
 * still open count too, until they go), and each memfd's: no range is
 * walked under the lock.
 */
static void seg_shm_info(struct shmfs_shm_info *si)
{
	uint64_t rss = 0;
	struct stat st;
	int idx;

	memset(si, 0, sizeof(*si));
	si->used_ids = (int32_t)T.nused;
	si->shm_tot = T.tot_pages;
	if (T.arena >= 0 && fstat(T.arena, &st) == 0)
		rss = (uint64_t)st.st_blocks * 512;
	for (idx = slot_next_used(0); idx >= 0; idx = slot_next_used(idx + 1)) {
		const struct seg *s = T.slots[idx].seg;

		if (s->has_memory && (s->backing || s->solo))
			rss += memfd_bytes(s);
	}
	si->shm_rss = rss / T.cfg.page_size;
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
		io->u.ds = s->ds;
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
		io->u.ds = s->ds;
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
	TABLE_LOCK();

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

int seg_lookup_name(key_t key, int shmid, bool hold, struct seg_view *v)
{
	struct seg *s;
	TABLE_LOCK();

	s = seg_find_id(shmid);
	if (!s || s->removed || s->ds.key != key)
		return -ENOENT;
	seg_hold(s, hold);
	seg_fill_view(s, v);
	return 0;
}

int seg_lookup_key(key_t key, struct seg_view *v)
{
	struct seg *s;
	TABLE_LOCK();

	s = key == IPC_PRIVATE ? NULL : key_find(key);
	if (!s)
		return -ENOENT;
	seg_fill_view(s, v);
	return 0;
}

int seg_lookup_id(int shmid, bool hold, struct seg_view *v)
{
	struct seg *s;
	TABLE_LOCK();

	s = seg_find_id(shmid);
	if (!s)
		return -ENOENT;
	seg_hold(s, hold);
	seg_fill_view(s, v);
	return 0;
}

int seg_lookup_serial(uint64_t serial, struct seg_view *v)
{
	struct seg *s;
	TABLE_LOCK();

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

bool seg_key_exists(key_t key)
{
	TABLE_LOCK();
	if (key == IPC_PRIVATE)
		return T.nprivate > 0;
	return key_find(key) != NULL;
}

void seg_walk(int from, int (*fn)(void *arg, const struct seg_view *v),
	      void *arg)
{
	struct seg_view v;
	int idx;
	TABLE_LOCK();

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

/* ---- opens and attaches ---- */

static struct ref *ref_new(struct seg *s)
{
	struct ref *r = calloc(1, sizeof(*r));

	if (r) {
		r->seg = s;
		r->s_next = s->refs;
		if (s->refs)
			s->refs->s_prev = r;
		s->refs = r;
		s->ds.nattch++;
		T.nrefs++;
	}
	return r;
}

static void ref_own(struct ref *r, struct proc *p)
{
	r->proc = p;
	r->fp = NULL;
	olist_insert(&p->refs, r);
	p->nrefs++;
}

int seg_open(uint64_t serial, struct perm_cred *c, int accmode, bool attach,
	     struct seg_handle **hp)
{
	struct seg_limits l;
	struct seg_handle *h;
	struct perm_obj o;
	struct proc *p = NULL;
	struct seg *s;
	struct ref *r = NULL;
	int want, err;
	TABLE_LOCK();

	s = serial_find(serial);
	if (!s || s->freed)
		return -ENOENT;
	want = accmode == O_RDONLY   ? PERM_R
	       : accmode == O_WRONLY ? PERM_W
				     : PERM_R | PERM_W;
	o = seg_perm(s);
	if ((err = perm_check(c, &o, want)))
		return err;
	if (attach) {
		/* without a session nothing would ever end the attach */
		p = proc_find(c->pid);
		if (!p || !p->nsessions)
			return -EPROTO;
		seg_limits_for(&l, T.cfg.given.shmseg ? 0 : SEG_LIMIT_SHMMNI);
		if (p->nrefs >= l.shmseg)
			return -EMFILE;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	if (attach) {
		r = ref_new(s);
		if (!r) {
			free(h);
			return -ENOMEM;
		}
		ref_own(r, p);
		s->ds.atime = seg_now();
		s->ds.lpid = c->pid;
		publish(s);
	}
	h->seg = s;
	h->next = T.handles;
	if (T.handles)
		T.handles->prev = h;
	T.handles = h;
	s->handles++;
	T.nhandles++;
	*hp = h;
	return 0;
}

int seg_detach(pid_t tgid, int shmid)
{
	struct proc *p;
	struct ref *r;
	TABLE_LOCK();

	p = proc_find(tgid);
	if (!p)
		return -EINVAL;
	for (r = p->refs; r; r = r->o_next)
		if (r->seg->ds.shmid == shmid && !r->seg->freed) {
			ref_detach(r, tgid);
			return 0;
		}
	return -EINVAL;
}

/* ---- sessions ---- */

static unsigned file_bucket(uint64_t file)
{
	return (unsigned)((file * 0x9e3779b97f4a7c15ULL) >> 52) &
	       (SESSION_BUCKETS - 1);
}

static struct session *session_find(const struct proc *p, uint64_t file)
{
	struct session *s;

	for (s = p ? p->sessions : NULL; s; s = s->p_next)
		if (s->file == file)
			return s;
	return NULL;
}

/* The session of tgid on file, made (with no opens yet) if missing. */
static struct session *session_get(pid_t tgid, uint64_t file)
{
	struct proc *p = proc_get(tgid);
	struct session *s;
	unsigned b;

	if (!p)
		return NULL;
	s = session_find(p, file);
	if (s)
		return s;
	s = calloc(1, sizeof(*s));
	if (!s) {
		proc_drop_if_empty(p);
		return NULL;
	}
	s->file = file;
	s->proc = p;
	s->p_next = p->sessions;
	p->sessions = s;
	p->nsessions++;
	b = file_bucket(file);
	s->f_next = T.by_file[b];
	T.by_file[b] = s;
	T.nsessions++;
	return s;
}

/*
 * A process holds a descriptor of file (it sent a request through it):
 * it has a session there, whose end is that descriptor's close.
 */
static int session_hold(pid_t tgid, uint64_t file)
{
	struct session *s = session_get(tgid, file);

	if (!s)
		return -ENOMEM;
	if (!s->opens)
		s->opens = 1;
	return 0;
}

/*
 * A session ends.  The forks its process counted through that file
 * become orphans (no abort can come through it any more); with the
 * process's last session, every attach it holds ends, as at exit.
 * True when there are orphans whose children must be read.
 */
static bool session_end(struct session *s)
{
	struct proc *p = s->proc;
	struct session **pp;
	struct fork_pending *fp;
	uint64_t file = s->file;
	bool orphans = false;

	for (pp = &p->sessions; *pp != s; pp = &(*pp)->p_next)
		;
	*pp = s->p_next;
	for (pp = &T.by_file[file_bucket(file)]; *pp != s; pp = &(*pp)->f_next)
		;
	*pp = s->f_next;
	free(s);
	p->nsessions--;
	T.nsessions--;
	for (fp = T.forks; fp; fp = fp->next)
		if (fp->parent == p->tgid && fp->file == file && !fp->orphan)
			orphans = fp->orphan = true;
	if (p->nsessions)
		return orphans;
	while (p->refs) {
		bool last = p->nrefs == 1;

		ref_detach(p->refs, p->tgid); /* the last one frees p */
		if (last)
			return orphans;
	}
	proc_drop_if_empty(p);
	return orphans;
}

int seg_session_open(uint64_t file, pid_t tgid)
{
	struct session *s;
	TABLE_LOCK();

	s = session_get(tgid, file);
	if (!s)
		return -ENOMEM;
	s->opens++;
	return 0;
}

int seg_session_start(uint64_t file, pid_t tgid)
{
	TABLE_LOCK();
	return session_hold(tgid, file);
}

/*
 * Pending forks and the processes that can still claim them.
 *
 * A fork is counted through one control file, which the child inherits;
 * only a child of the counting process, born after the count, can claim
 * it, through that same file, with the token, which is random.  A child
 * killed before it could claim closes the file it inherited without a
 * session there (a "stranger's" close): that close is matched to the
 * fork through the closer's parent and its place in the order processes
 * are born, so that an older child of the same parent (a posix_spawn
 * child, say) is never taken for it.
 *
 * When the parent's session on the file ends (exit, exec, its last close
 * of it), its pending forks there become orphans: no abort can come any
 * more, and the parent's children are read once; those born after the
 * fork are the only ones that can still claim.  An orphan with none is
 * dropped at once (the parent died between the fork request and fork(2),
 * or fork(2) never made the child); one with some is dropped at the
 * first claim or close of the file by one of them.  Their parent may be
 * another process by then (reparented), so orphans match by pid, not
 * parent.  When nobody holds the file any more, nothing can claim
 * through it: its forks go.
 *
 * What the host tells (parent_of, children_of, born) is asked without
 * the table lock: the closer may be in the middle of execve, waiting for
 * this very close, and must never be waited on by a lock holder.
 */
static bool fork_has_kid(const struct fork_pending *fp, pid_t tgid)
{
	int i;

	for (i = 0; i < fp->nkids; i++)
		if (fp->kids[i] == tgid)
			return true;
	return false;
}

static bool born_after(const struct fork_pending *fp, uint64_t born)
{
	return !T.cfg.born || !T.cfg.next_born || born >= fp->since;
}

/* Can tgid (whose parent and birth are given) be fp's child? */
static bool fork_may_be_child(const struct fork_pending *fp, pid_t tgid,
			      pid_t parent, uint64_t born)
{
	bool kin = fp->orphan && fp->scanned
			   ? fork_has_kid(fp, tgid)
			   : parent > 0 && fp->parent == parent;

	return kin && born_after(fp, born);
}

/* The oldest fork counted on file that tgid can be the child of. */
static struct fork_pending *fork_of_child(uint64_t file, pid_t tgid,
					  pid_t parent, uint64_t born)
{
	struct fork_pending *fp, *oldest = NULL;

	for (fp = T.forks; fp; fp = fp->next)
		if (fp->file == file &&
		    fork_may_be_child(fp, tgid, parent, born))
			oldest = fp; /* the list is newest first */
	return oldest;
}

/* A close of file by a process without a session there. */
static void seg_stranger_closed(uint64_t file, pid_t tgid)
{
	struct fork_pending *fp;
	pid_t parent = T.cfg.parent_of(tgid);
	uint64_t born = T.cfg.born ? T.cfg.born(tgid) : 0;
	TABLE_LOCK();

	fp = fork_of_child(file, tgid, parent, born);
	if (fp)
		fork_drop(fp, tgid);
}

/* The children of a process and their births, read without the lock. */
struct kid {
	pid_t pid;
	uint64_t born;
};

static int kids_of(pid_t parent, struct kid **out)
{
	pid_t *pids = NULL;
	struct kid *kids;
	int n, i;

	*out = NULL;
	if (!T.cfg.children_of)
		return -ENOSYS;
	n = T.cfg.children_of(parent, &pids);
	if (n <= 0)
		return n;
	kids = calloc((size_t)n, sizeof(*kids));
	if (!kids) {
		free(pids);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		kids[i].pid = pids[i];
		kids[i].born = T.cfg.born ? T.cfg.born(pids[i]) : 0;
	}
	free(pids);
	*out = kids;
	return n;
}

/* The parent's session on file is over: its forks there are orphans. */
static void seg_forks_orphaned(uint64_t file, pid_t parent)
{
	struct fork_pending *fp, *next;
	struct kid *kids;
	int n = kids_of(parent, &kids), i;
	TABLE_LOCK();

	for (fp = T.forks; fp; fp = next) {
		next = fp->next;
		if (fp->parent != parent || fp->file != file || !fp->orphan ||
		    fp->scanned)
			continue;
		fp->scanned = true;
		fp->kids = n > 0 ? calloc((size_t)n, sizeof(*fp->kids)) : NULL;
		for (i = 0; fp->kids && i < n; i++)
			if (born_after(fp, kids[i].born))
				fp->kids[fp->nkids++] = kids[i].pid;
		if (!fp->nkids)
			fork_drop(fp, parent);
	}
	free(kids);
}

void seg_session_close(uint64_t file, pid_t tgid)
{
	bool stranger = false, orphans = false;
	struct session *s;

	{
		TABLE_LOCK();
		s = session_find(proc_find(tgid), file);
		if (!s)
			stranger = T.forks && T.cfg.parent_of;
		else if (s->opens <= 1)
			orphans = session_end(s);
		else
			s->opens--;
	}
	/* Closes by vfork children and other strangers find no fork. */
	if (stranger)
		seg_stranger_closed(file, tgid);
	if (orphans)
		seg_forks_orphaned(file, tgid);
}

void seg_file_released(uint64_t file)
{
	struct fork_pending *fp, *next;
	struct session *s;
	TABLE_LOCK();

	/* A session whose close never came: its process sent a request
	 * through the file while another of its threads closed it. */
	for (s = T.by_file[file_bucket(file)]; s;) {
		if (s->file != file) {
			s = s->f_next;
			continue;
		}
		session_end(s);
		s = T.by_file[file_bucket(file)];
	}
	for (fp = T.forks; fp; fp = next) {
		next = fp->next;
		if (fp->file == file)
			fork_drop(fp, fp->parent);
	}
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
	free(h);
	T.nhandles--;
	s->handles--;
	if (s->freed && !s->handles)
		seg_release_memory(s);
	seg_maybe_destroy(s);
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

/* ---- fork ---- */

static bool forks_pending(pid_t parent)
{
	struct fork_pending *fp;
	TABLE_LOCK();

	for (fp = T.forks; fp; fp = fp->next)
		if (fp->parent == parent && !fp->orphan)
			return true;
	return false;
}

static int cmp_born_desc(const void *a, const void *b)
{
	uint64_t x = ((const struct kid *)a)->born;
	uint64_t y = ((const struct kid *)b)->born;

	return (x < y) - (x > y);
}

static int cmp_since_desc(const void *a, const void *b)
{
	uint64_t x = (*(struct fork_pending *const *)a)->since;
	uint64_t y = (*(struct fork_pending *const *)b)->since;

	return (x < y) - (x > y);
}

/*
 * Each fork still pending needs a child of its own that can still claim
 * it: born after the fork was counted, and with no session yet (a child
 * that claimed has one).  The parent asks again only once its last
 * fork(2) has returned, so a fork left without such a child was never
 * made (asked for, then not done, and not aborted): its counts go, so
 * that nattch never counts a child that cannot exist, and a process has
 * no more forks pending than children.  Newest first: a child born
 * after the newest fork could be any fork's, an older one only an older
 * fork's.
 */
static void forks_prune(pid_t parent, struct kid *kids, int nkids)
{
	struct fork_pending *fp, **forks;
	int n = 0, i, j = 0, free_kids = 0, ncand = 0;

	for (fp = T.forks; fp; fp = fp->next)
		n += fp->parent == parent && !fp->orphan;
	if (!n)
		return;
	forks = calloc((size_t)n, sizeof(*forks));
	if (!forks)
		return;
	n = 0;
	for (fp = T.forks; fp; fp = fp->next)
		if (fp->parent == parent && !fp->orphan)
			forks[n++] = fp;
	for (i = 0; i < nkids; i++) {
		struct proc *p = proc_find(kids[i].pid);

		if (!p || !p->nsessions)
			kids[ncand++] = kids[i];
	}
	qsort(kids, (size_t)ncand, sizeof(*kids), cmp_born_desc);
	qsort(forks, (size_t)n, sizeof(*forks), cmp_since_desc);
	for (i = 0; i < n; i++) {
		while (j < ncand && born_after(forks[i], kids[j].born)) {
			free_kids++;
			j++;
		}
		if (free_kids)
			free_kids--;
		else
			fork_drop(forks[i], parent);
	}
	free(forks);
}

/* A token nobody can guess: getrandom, never 0 (no fork) nor in use. */
static int fork_token(uint64_t *token)
{
	if (getrandom(token, sizeof(*token), 0) != sizeof(*token))
		return errno ? -errno : -EAGAIN;
	return *token ? 0 : -EAGAIN;
}

int seg_fork(uint64_t file, struct perm_cred *c, uint64_t *token,
	     uint32_t *count)
{
	struct fork_pending *fp;
	struct kid *kids = NULL;
	struct proc *p;
	struct ref *r;
	int64_t now;
	int nkids = -1, err;
	uint64_t tok = 0;
	/* before the lock: the host is asked nothing under it */
	uint64_t since = T.cfg.next_born ? T.cfg.next_born() : 0;

	*token = 0;
	*count = 0;
	if ((err = fork_token(&tok)))
		return err;
	if (forks_pending(c->pid))
		nkids = kids_of(c->pid, &kids);
	TABLE_LOCK();

	p = proc_find(c->pid);
	if (nkids >= 0)
		forks_prune(c->pid, kids, nkids);
	free(kids);
	if (!p || !p->nrefs)
		return 0;
	/* the child claims through the file it inherits: this one */
	if (!session_find(p, file))
		return -EPROTO;
	if (fork_find(tok))
		return -EAGAIN;
	fp = calloc(1, sizeof(*fp));
	if (!fp)
		return -ENOMEM;
	fp->token = tok;
	fp->file = file;
	fp->parent = c->pid;
	fp->since = since;
	fp->next = T.forks;
	T.forks = fp;
	T.npending++;
	now = seg_now();
	for (r = p->refs; r; r = r->o_next) {
		struct ref *child = ref_new(r->seg);

		if (!child) {
			fork_drop(fp, c->pid);
			*count = 0;
			return -ENOMEM;
		}
		child->fp = fp;
		olist_insert(&fp->refs, child);
		r->seg->ds.atime = now;
		r->seg->ds.lpid = c->pid;
		publish(r->seg);
		(*count)++;
	}
	*token = fp->token;
	return 0;
}

int seg_fork_child(uint64_t file, struct perm_cred *c, uint64_t token)
{
	struct fork_pending *fp;
	struct proc *p;
	/* who the caller is, asked before the lock */
	pid_t parent = T.cfg.parent_of ? T.cfg.parent_of(c->pid) : -1;
	uint64_t born = T.cfg.born ? T.cfg.born(c->pid) : 0;
	TABLE_LOCK();

	fp = fork_find(token);
	if (!fp || fp->file != file ||
	    !fork_may_be_child(fp, c->pid, parent, born))
		return -ESRCH;
	/* the child holds the control file it inherited: its session */
	if (session_hold(c->pid, file))
		return -ENOMEM;
	p = proc_find(c->pid);
	while (fp->refs) {
		struct ref *r = fp->refs;

		olist_remove(&fp->refs, r);
		ref_own(r, p);
	}
	fork_unlink(fp);
	return 0;
}

int seg_fork_abort(uint64_t file, struct perm_cred *c, uint64_t token)
{
	struct fork_pending *fp;
	TABLE_LOCK();

	fp = fork_find(token);
	if (!fp || fp->parent != c->pid || fp->file != file)
		return -ESRCH;
	fork_drop(fp, c->pid);
	return 0;
}

/* ---- who is attached ---- */

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

/*
 * "pid:count pid:count": every process holding an attach, by pid.  A
 * child that has not yet claimed what it inherited at fork is counted
 * under its parent, for the moment in between.
 */
int seg_pids(uint64_t serial, struct perm_cred *c, char **text)
{
	struct perm_obj o;
	struct seg *s;
	struct ref *r;
	pid_t *pids;
	size_t n = 0, i, len = 0, size;
	char *out;
	TABLE_LOCK();

	s = serial_find(serial);
	if (!s || s->freed)
		return -ENOENT;
	/* Who is attached is not part of what IPC_STAT shows (the kernel
	 * shows no attacher's pid to anyone): the owner's and root's. */
	o = seg_perm(s);
	if (perm_owner(c, &o))
		return -EACCES;
	pids = malloc(sizeof(*pids) * (s->ds.nattch + 1));
	size = 24 * (s->ds.nattch + 1);
	out = malloc(size);
	if (!pids || !out) {
		free(pids);
		free(out);
		return -ENOMEM;
	}
	for (r = s->refs; r; r = r->s_next)
		pids[n++] = r->proc ? r->proc->tgid : r->fp->parent;
	qsort(pids, n, sizeof(*pids), cmp_pid);
	out[0] = '\0';
	for (i = 0; i < n;) {
		size_t j = i;

		while (j < n && pids[j] == pids[i])
			j++;
		len += (size_t)snprintf(out + len, size - len, "%s%d:%zu",
					len ? " " : "", (int)pids[i], j - i);
		i = j;
	}
	free(pids);
	*text = out;
	return 0;
}

/* ---- status ---- */

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
	TABLE_LOCK();

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

void seg_get_stats(struct seg_stats *st)
{
	const struct seg *s;
	struct stat ast;
	unsigned b;

	TABLE_LOCK();
	st->used = T.nused;
	st->tot_pages = T.tot_pages;
	st->objects = T.nobjects;
	st->handles = T.nhandles;
	st->procs = T.nprocs;
	st->sessions = T.nsessions;
	st->pending_forks = T.npending;
	st->attaches = T.nrefs;
	st->memory = 0;
	if (T.arena >= 0 && fstat(T.arena, &ast) == 0)
		st->memory = (uint64_t)ast.st_blocks * 512;
	st->passthrough = st->arena = st->unmeasured = 0;
	for (b = 0; b < SERIAL_BUCKETS; b++)
		for (s = T.by_serial[b]; s; s = s->serial_next) {
			if (!s->has_memory)
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
