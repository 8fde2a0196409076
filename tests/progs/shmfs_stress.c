/*
 * shmfs_stress: a seeded random load of plain SysV calls, to be run with
 * LD_PRELOAD=libshmfs-preload.so SHMFS_ROOT=MNT (tests/stress.py does,
 * and checks the daemon's table afterwards).  Also runs on the kernel.
 *
 *   shmfs_stress [-m MODE] [-n PROCS] [-t SECONDS] [-s SEED] [-k KEYS]
 *                [-b KEYBASE] [-u] [-P PHASEFILE] [-X] [-F]
 *
 * Modes:
 *   mix      (default) PROCS workers for SECONDS doing a random mix on
 *            KEYS keys: shmget with every flag combination, shmat and
 *            shmdt (SHM_RDONLY too), IPC_STAT/IPC_SET/IPC_RMID, SHM_LOCK,
 *            IPC_INFO/SHM_INFO/SHM_STAT, fork with attachments (children
 *            that check, write, detach, exec, _exit or are SIGKILLed at a
 *            random moment), threads attaching and detaching at once
 *            while the process forks, and stores and loads checked
 *            against what the writers stored.  With -u every odd worker
 *            runs as uid/gid 1000.
 *   victim   one worker in this very process, no deadline, for a test that
 *            SIGKILLs it at a random moment; with -P it records in
 *            PHASEFILE (one byte) which call it is in.
 *   exhaust  PROCS workers drive the daemon into its shmall, shmmni and
 *            shmseg limits at once (ENOSPC, EMFILE), fill every page they
 *            hold, free everything and show that it all works again.
 *   hold     a client driven by lines on stdin, for fault tests (see
 *            hold_main).
 * -F: no fork at all (in mix and victim modes).
 *
 * Data: every 8-byte word i >= 2 of segment S is 0 or pat(S, i, r) for
 * some r, so any word checks itself wherever it is read; word 0 is a
 * counter every writer increments, and a witness outside the segment
 * (anonymous shared memory) records the highest value each writer saw,
 * so a reader that finds less has found a lost store; word 1 is the
 * shmid stamp.  -X stores one wrong word on purpose (a self-test).
 *
 * Prints the operation counts, the errors by errno (each marked expected
 * or UNEXPECTED) and every violation; "RESULT {json}" on the last line.
 * Exit 0 only when nothing was violated.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SHM_STAT_ANY
#define SHM_STAT_ANY 15
#endif
#ifndef SHM_NORESERVE
#define SHM_NORESERVE 010000
#endif
#ifndef SHM_HUGETLB
#define SHM_HUGETLB 04000
#endif

extern char **environ;
static char **exec_env;

#define MAX_WORKERS 256
#define MAX_ATT 12
#define MAX_KNOWN 64
#define MAX_PRIV 16
#define MAX_ERRNO 134
#define MAX_MSGS 40
#define MSG_LEN 200
#define SLOTS 32768
#define PAGE 4096

/* The calls whose outcomes are counted. */
enum call {
	C_GET,
	C_AT,
	C_DT,
	C_STAT,
	C_SET,
	C_RMID,
	C_LOCK,
	C_UNLOCK,
	C_INFO,
	C_SHMINFO,
	C_SHMSTAT,
	C_FORK,
	C_DATA,
	NCALLS
};
static const char *const call_names[NCALLS] = {
	"shmget",   "shmat",	"shmdt",      "IPC_STAT", "IPC_SET",
	"IPC_RMID", "SHM_LOCK", "SHM_UNLOCK", "IPC_INFO", "SHM_INFO",
	"SHM_STAT", "fork",	"data",
};

/* Outcomes that a concurrent peer legitimately causes (see expected()). */
enum mode { M_MIX, M_VICTIM, M_EXHAUST, M_HOLD };

struct shared {
	atomic_ulong calls[NCALLS];
	atomic_ulong errs[NCALLS][MAX_ERRNO];
	atomic_ulong violations;
	atomic_ulong children, children_killed, children_exec, threads_runs;
	atomic_ulong words_checked, words_written;
	atomic_int nmsgs;
	char msgs[MAX_MSGS][MSG_LEN];
	/* shmid << 32 | highest counter value seen, per slot */
	_Atomic uint64_t witness[SLOTS];
	/* each worker's own segment: nobody else touches it */
	atomic_int reserved[MAX_WORKERS];
	/* exhaust mode */
	atomic_int barrier_count, barrier_gen;
	atomic_ulong enospc, emfile, exhaust_pages, exhaust_segs;
	atomic_ulong enospc_shmmni, enospc_shmall;
};

static struct shared *S;
static enum mode mode = M_MIX;
static int nworkers = 16, seconds = 60, nkeys = 8, as_users, corrupt, no_fork;
static unsigned long long seed;
static key_t keybase = 0x5354000;
static volatile unsigned char *phase; /* victim: where it is */
static double deadline;
static const char *self_path;

/* ---- small helpers ---- */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	r->s += 0x9e3779b97f4a7c15ULL;
	return mix64(r->s);
}

static unsigned rndn(struct rng *r, unsigned n)
{
	return n ? (unsigned)(rnd(r) % n) : 0;
}

static void set_phase(int p)
{
	if (phase)
		*phase = (unsigned char)p;
}

/* Output from many processes: one write() per line, no stdio buffers. */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(STDOUT_FILENO, buf, (size_t)n) < 0)
		return;
}

__attribute__((format(printf, 1, 2))) static void violation(const char *fmt,
							    ...)
{
	char buf[MSG_LEN];
	va_list ap;
	int i, n;

	n = snprintf(buf, sizeof(buf), "pid %d: ", (int)getpid());
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	atomic_fetch_add(&S->violations, 1);
	i = atomic_fetch_add(&S->nmsgs, 1);
	if (i < MAX_MSGS)
		memcpy(S->msgs[i], buf, MSG_LEN);
	say("VIOLATION %s", buf);
}

static void count(enum call c, int err)
{
	atomic_fetch_add(&S->calls[c], 1);
	if (err)
		atomic_fetch_add(
			&S->errs[c][err > 0 && err < MAX_ERRNO ? err : 0], 1);
}

/*
 * The errors a call may give in this load without anything being wrong:
 * a peer removed the segment (EINVAL, ENOENT; EIDRM on the kernel while
 * the removal is under way), created the key first
 * (EEXIST), asked for a size the live segment does not have (EINVAL),
 * changed its mode or owner (EACCES, EPERM), or a non-root user ran into
 * RLIMIT_MEMLOCK (EPERM, ENOMEM).  In exhaust mode the limits are the
 * point (ENOSPC, EMFILE).  Everything else is a violation.
 */
static int expected(enum call c, int err)
{
	/* Linux's answer for a shmid whose removal is under way */
	if (err == EIDRM && c != C_GET && c != C_DT && c != C_FORK &&
	    c != C_INFO && c != C_SHMINFO)
		return 1;
	switch (c) {
	case C_GET:
		return err == ENOENT || err == EEXIST || err == EINVAL ||
		       err == EACCES || (mode == M_EXHAUST && err == ENOSPC);
	case C_AT:
		return err == EINVAL || err == EACCES ||
		       (mode == M_EXHAUST && err == EMFILE);
	case C_STAT:
	case C_SHMSTAT:
		return err == EINVAL || err == EACCES;
	case C_SET:
	case C_RMID:
		return err == EINVAL || err == EPERM;
	case C_LOCK:
	case C_UNLOCK:
		return err == EINVAL || err == EPERM || err == ENOMEM;
	case C_FORK:
		return err == EAGAIN;
	default:
		return 0;
	}
}

/* Counts the outcome and flags an unexpected errno; returns err. */
static int outcome(enum call c, int ok, int err)
{
	err = ok ? 0 : err;
	count(c, err);
	if (err && !expected(c, err))
		violation("%s failed with unexpected errno %d (%s)",
			  call_names[c], err, strerror(err));
	return err;
}

/* ---- the witness of word 0 ---- */

static void witness_raise(int shmid, uint64_t v)
{
	_Atomic uint64_t *w = &S->witness[shmid & (SLOTS - 1)];
	uint64_t old = atomic_load(w), nw;

	if (v > 0xffffffffULL)
		v = 0xffffffffULL;
	for (;;) {
		uint32_t os = (uint32_t)(old >> 32);

		if (os == (uint32_t)shmid) {
			if ((old & 0xffffffffULL) >= v)
				return;
		} else if (os > (uint32_t)shmid) {
			return; /* a later segment of the slot */
		}
		nw = (uint64_t)(uint32_t)shmid << 32 | v;
		if (atomic_compare_exchange_weak(w, &old, nw))
			return;
	}
}

static uint64_t witness_get(int shmid)
{
	uint64_t w = atomic_load(&S->witness[shmid & (SLOTS - 1)]);

	return (uint32_t)(w >> 32) == (uint32_t)shmid ? (w & 0xffffffffULL) : 0;
}

/* ---- the data pattern ---- */

static uint64_t pat(int shmid, size_t i, uint32_t r)
{
	uint64_t tag = mix64((uint64_t)(uint32_t)shmid << 32 ^ (uint64_t)i ^
			     (uint64_t)r << 21) |
		       1;

	return (tag & 0xffffffff00000000ULL) | r;
}

struct att {
	int shmid;
	_Atomic uint64_t *w; /* the attach address */
	size_t nwords; /* whole words inside shm_segsz */
	int rdonly;
};

static int check_word(const struct att *a, size_t i, const char *where)
{
	uint64_t v = atomic_load_explicit(&a->w[i], memory_order_relaxed);

	atomic_fetch_add(&S->words_checked, 1);
	if (v == 0 || v == pat(a->shmid, i, (uint32_t)v))
		return 0;
	violation("wrong data (%s): shmid %d word %zu is %#llx, not a word "
		  "any writer of this segment stores",
		  where, a->shmid, i, (unsigned long long)v);
	return -1;
}

/* Word 0 must not have gone back below what a writer saw. */
static int check_counter(const struct att *a, const char *where)
{
	uint64_t seen, v;

	if (a->nwords < 2)
		return 0;
	seen = witness_get(a->shmid); /* read before the counter */
	v = atomic_load(&a->w[0]);
	if (v >= seen)
		return 0;
	violation(
		"lost store (%s): shmid %d counter is %llu, a writer saw %llu",
		where, a->shmid, (unsigned long long)v,
		(unsigned long long)seen);
	return -1;
}

static int check_stamp(const struct att *a, const char *where)
{
	uint64_t v;

	if (a->nwords < 2)
		return 0;
	v = atomic_load(&a->w[1]);
	if (v == 0 || v == (uint64_t)(uint32_t)a->shmid)
		return 0;
	violation("wrong data (%s): shmid %d stamp is %#llx", where, a->shmid,
		  (unsigned long long)v);
	return -1;
}

/* Checks n random words, the first ones and the last. */
static int check_att(const struct att *a, struct rng *r, int n,
		     const char *where)
{
	int bad = 0, k;

	count(C_DATA, 0);
	bad |= check_stamp(a, where);
	bad |= check_counter(a, where);
	if (a->nwords > 2) {
		bad |= check_word(a, 2, where);
		if (a->nwords > 3)
			bad |= check_word(a, 3, where); /* the one -X spoils */
		bad |= check_word(a, a->nwords - 1, where);
		for (k = 0; k < n; k++)
			bad |= check_word(
				a, 2 + rndn(r, (unsigned)a->nwords - 2), where);
	}
	return bad;
}

static void write_att(struct att *a, struct rng *r, int n)
{
	uint64_t expect = 0, v;
	int k;

	if (a->rdonly || a->nwords < 2)
		return;
	atomic_compare_exchange_strong(&a->w[1], &expect,
				       (uint64_t)(uint32_t)a->shmid);
	v = atomic_fetch_add(&a->w[0], 1) + 1;
	witness_raise(a->shmid, v);
	for (k = 0; k < n && a->nwords > 2; k++) {
		size_t i = 2 + rndn(r, (unsigned)a->nwords - 2);
		uint32_t x = (uint32_t)rnd(r);

		atomic_store_explicit(&a->w[i], pat(a->shmid, i, x),
				      memory_order_relaxed);
		atomic_fetch_add(&S->words_written, 1);
	}
	/* sometimes whole pages: write-back of many dirty pages at shmdt */
	if (n && !rndn(r, 8) && a->nwords > 2) {
		size_t from = 2 + rndn(r, (unsigned)a->nwords - 2), i;
		size_t len = 1 + rndn(r, 4 * PAGE / 8);

		for (i = from; i < a->nwords && i < from + len; i++)
			atomic_store_explicit(
				&a->w[i], pat(a->shmid, i, (uint32_t)rnd(r)),
				memory_order_relaxed);
		atomic_fetch_add(&S->words_written, i - from);
	}
	if (corrupt && a->nwords > 3) {
		corrupt = 0;
		atomic_store(&a->w[3], 0x5eed5eed5eed5eedULL);
		/* checked at once too: a slow run (valgrind) may remove the
		 * segment before any other reader comes */
		check_att(a, r, 0, "after -X");
	}
}

/* ---- the SysV calls, counted ---- */

static int do_stat(int id, struct shmid_ds *ds)
{
	int r;

	set_phase(5);
	r = shmctl(id, IPC_STAT, ds);
	return outcome(C_STAT, r == 0, errno);
}

static long nattch_of(int id)
{
	struct shmid_ds ds;

	if (do_stat(id, &ds))
		return -1;
	return (long)ds.shm_nattch;
}

/* shmat (at addr, if given) and learn the size; 0 or the errno. */
static int attach_at(int id, int rdonly, void *addr, struct att *a)
{
	struct shmid_ds ds;
	void *p;
	int err;

	set_phase(2);
	p = shmat(id, addr, rdonly ? SHM_RDONLY : 0);
	err = outcome(C_AT, p != (void *)-1, errno);
	set_phase(0);
	if (err)
		return err;
	a->shmid = id;
	a->w = p;
	a->rdonly = rdonly;
	a->nwords = 0;
	/* Attached: the shmid cannot be gone, whoever removed it. */
	err = do_stat(id, &ds);
	if (err == EINVAL)
		violation("IPC_STAT of shmid %d right after attaching it: "
			  "EINVAL",
			  id);
	if (!err)
		a->nwords = ds.shm_segsz / 8;
	if (addr && p != addr)
		violation("shmat(%d, %p) attached at %p", id, addr, p);
	return 0;
}

static int attach(int id, int rdonly, struct att *a)
{
	return attach_at(id, rdonly, NULL, a);
}

static void detach(struct att *a)
{
	int r;

	set_phase(4);
	r = shmdt((void *)a->w);
	if (outcome(C_DT, r == 0, errno))
		violation("shmdt of shmid %d at %p: %s", a->shmid, (void *)a->w,
			  strerror(errno));
	set_phase(0);
}

/* ---- a worker ---- */

struct worker {
	int idx;
	struct rng r;
	struct att att[MAX_ATT];
	int natt;
	int known[MAX_KNOWN];
	int nknown;
	int priv[MAX_PRIV];
	int npriv;
	int mine; /* a segment nobody else touches */
	int mine_parent; /* in a child: the parent's attaches of it */
	void *freed_addr; /* where the last shmdt left a hole */
	int is_child;
};

static int mine_count(const struct worker *w)
{
	int i, n = 0;

	for (i = 0; i < w->natt; i++)
		n += w->att[i].shmid == w->mine;
	return n;
}

/* nattch of our own segment is exactly what we hold (and `more`). */
static void check_mine(const struct worker *w, int more, const char *when)
{
	long n;

	if (w->mine < 0)
		return;
	/* a victim's child: its parent may be killed (and detached) any time */
	if (w->is_child && mode == M_VICTIM)
		return;
	n = nattch_of(w->mine);
	if (n != mine_count(w) + w->mine_parent + more)
		violation("nattch of our own shmid %d is %ld %s, want %d",
			  w->mine, n, when,
			  mine_count(w) + w->mine_parent + more);
}

static int reserved(int id)
{
	int i;

	for (i = 0; i < nworkers && i < MAX_WORKERS; i++)
		if (atomic_load(&S->reserved[i]) == id)
			return 1;
	return 0;
}

static void learn(struct worker *w, int id)
{
	int i;

	if (id < 0 || id == w->mine || reserved(id))
		return;
	for (i = 0; i < w->nknown; i++)
		if (w->known[i] == id)
			return;
	if (w->nknown < MAX_KNOWN)
		w->known[w->nknown++] = id;
	else
		w->known[rndn(&w->r, MAX_KNOWN)] = id;
}

static void forget_id(struct worker *w, int id)
{
	int i;

	for (i = 0; i < w->nknown; i++)
		if (w->known[i] == id) {
			w->known[i] = w->known[--w->nknown];
			return;
		}
}

/* The key of each worker's own segment in mix mode. */
static key_t mine_key(int idx)
{
	return keybase + 0x100 + (key_t)idx;
}

static int mine_key_range(key_t key)
{
	return key >= mine_key(0) && key < mine_key(MAX_WORKERS);
}

static int pick_known(struct worker *w)
{
	int id;

	if (!w->nknown)
		return -1;
	id = w->known[rndn(&w->r, (unsigned)w->nknown)];
	/* learnt before its owner had registered it */
	if (reserved(id)) {
		forget_id(w, id);
		return -1;
	}
	return id;
}

static const size_t sizes[] = {
	1, 15, 16, 100, 4095, 4096, 4097, 8192, 12288 + 40, 65536, 200000,
};
static const int modes[] = { 0600, 0640, 0644, 0660, 0666, 0400, 0444 };

static void op_get(struct worker *w)
{
	int flags = modes[rndn(&w->r, sizeof(modes) / sizeof(modes[0]))];
	size_t size = sizes[rndn(&w->r, sizeof(sizes) / sizeof(sizes[0]))];
	key_t key = keybase + (key_t)rndn(&w->r, (unsigned)nkeys);
	int id, err, priv = rndn(&w->r, 10) == 0;
	struct shmid_ds ds;

	if (rndn(&w->r, 2)) /* every combination */
		flags |= IPC_CREAT;
	if (rndn(&w->r, 2))
		flags |= IPC_EXCL;
	if (!rndn(&w->r, 16))
		flags |= SHM_NORESERVE;
	if (!rndn(&w->r, 4) && !(flags & IPC_CREAT))
		size = 0; /* a plain lookup */
	if (priv) {
		if (w->npriv >= MAX_PRIV)
			return;
		key = IPC_PRIVATE;
		flags |= IPC_CREAT;
		if (size == 0)
			size = 4096;
	}
	set_phase(1);
	id = shmget(key, size, flags);
	err = outcome(C_GET, id >= 0, errno);
	set_phase(0);
	if (err)
		return;
	if (priv)
		w->priv[w->npriv++] = id;
	else
		learn(w, id);
	/* The size of a shmid never changes. */
	if (do_stat(id, &ds))
		return;
	if (ds.shm_segsz < size)
		violation("shmget(%#x, %zu) gave shmid %d of %zu bytes",
			  (unsigned)key, size, id, (size_t)ds.shm_segsz);
	if ((priv ||
	     (flags & (IPC_CREAT | IPC_EXCL)) == (IPC_CREAT | IPC_EXCL)) &&
	    ds.shm_segsz != size)
		violation("new shmid %d has %zu bytes, %zu asked for", id,
			  (size_t)ds.shm_segsz, size);
}

static void op_at(struct worker *w)
{
	int id, rdonly = rndn(&w->r, 3) == 0;
	struct att *a;

	if (w->natt >= MAX_ATT)
		return;
	id = (w->mine >= 0 && rndn(&w->r, 4) == 0) ? w->mine : pick_known(w);
	if (id < 0)
		return;
	a = &w->att[w->natt];
	/* at a fixed address: where the last detach left room, perhaps
	 * taken again since (EINVAL then, as on Linux) */
	if (attach_at(id, rdonly, rndn(&w->r, 6) ? NULL : w->freed_addr, a)) {
		if (id != w->mine && rndn(&w->r, 2))
			forget_id(w, id);
		return;
	}
	w->natt++;
	check_att(a, &w->r, 16, "after shmat");
	if (id == w->mine)
		check_mine(w, 0, "after shmat");
}

static void drop_att(struct worker *w, int i)
{
	int was_mine = w->att[i].shmid == w->mine;

	w->freed_addr = (void *)w->att[i].w;
	detach(&w->att[i]);
	w->att[i] = w->att[--w->natt];
	if (was_mine)
		check_mine(w, 0, "after shmdt");
}

static void op_dt(struct worker *w)
{
	if (w->natt)
		drop_att(w, (int)rndn(&w->r, (unsigned)w->natt));
}

static void op_rw(struct worker *w)
{
	struct att *a;

	if (!w->natt)
		return;
	a = &w->att[rndn(&w->r, (unsigned)w->natt)];
	set_phase(3);
	write_att(a, &w->r, 1 + (int)rndn(&w->r, 16));
	check_att(a, &w->r, 8, "load");
	set_phase(0);
}

static void op_stat(struct worker *w)
{
	struct shmid_ds ds;
	int i, id, err, own = 0;

	if (w->natt && rndn(&w->r, 2)) {
		id = w->att[rndn(&w->r, (unsigned)w->natt)].shmid;
	} else {
		id = pick_known(w);
		if (id < 0)
			return;
	}
	for (i = 0; i < w->natt; i++)
		own += w->att[i].shmid == id;
	err = do_stat(id, &ds);
	if (err) {
		if (own && err == EINVAL)
			violation("IPC_STAT of attached shmid %d: EINVAL", id);
		return;
	}
	if (ds.shm_nattch < (shmatt_t)own)
		violation("shmid %d: nattch %lu, but this process alone holds "
			  "%d attaches",
			  id, (unsigned long)ds.shm_nattch, own);
	if (ds.shm_perm.mode & ~(0777 | 01000 | 02000))
		violation("shmid %d: mode %#o", id, (unsigned)ds.shm_perm.mode);
}

static void op_set(struct worker *w)
{
	struct shmid_ds ds;
	int id = pick_known(w), r;

	if (id < 0 || do_stat(id, &ds))
		return;
	ds.shm_perm.mode = (unsigned short)
		modes[rndn(&w->r, sizeof(modes) / sizeof(modes[0]))];
	/* An owner may give a segment away. */
	if (geteuid() == 0 && as_users && !rndn(&w->r, 4))
		ds.shm_perm.uid = ds.shm_perm.gid = 1000;
	r = shmctl(id, IPC_SET, &ds);
	outcome(C_SET, r == 0, errno);
}

static void op_rmid(struct worker *w)
{
	int id = pick_known(w), r;

	if (id < 0)
		return;
	set_phase(6);
	r = shmctl(id, IPC_RMID, NULL);
	outcome(C_RMID, r == 0, errno);
	set_phase(0);
	forget_id(w, id);
}

static void op_lock(struct worker *w)
{
	int id = pick_known(w), r;

	if (id < 0)
		return;
	r = shmctl(id, SHM_LOCK, NULL);
	outcome(C_LOCK, r == 0, errno);
	r = shmctl(id, SHM_UNLOCK, NULL);
	outcome(C_UNLOCK, r == 0, errno);
}

/* IPC_INFO, SHM_INFO, and a SHM_STAT walk that learns shmids. */
static void op_scan(struct worker *w)
{
	struct shminfo si;
	struct shm_info sh;
	struct shmid_ds ds;
	int max, i, id;

	max = shmctl(0, IPC_INFO, (struct shmid_ds *)(void *)&si);
	if (outcome(C_INFO, max >= 0, errno))
		return;
	i = shmctl(0, SHM_INFO, (struct shmid_ds *)(void *)&sh);
	if (!outcome(C_SHMINFO, i >= 0, errno) &&
	    (unsigned long)sh.used_ids > si.shmmni)
		violation("SHM_INFO: %d ids in use, shmmni %lu", sh.used_ids,
			  (unsigned long)si.shmmni);
	for (i = 0; i <= max && i < SLOTS; i++) {
		id = shmctl(i, rndn(&w->r, 2) ? SHM_STAT : SHM_STAT_ANY, &ds);
		if (outcome(C_SHMSTAT, id >= 0, errno))
			continue;
		/* not another worker's own segment; in victim mode, whose
		 * peers are other processes, no private segment at all */
		if (!mine_key_range(ds.shm_perm.__key) &&
		    !(mode == M_VICTIM && ds.shm_perm.__key == IPC_PRIVATE))
			learn(w, id);
	}
}

/*
 * A child of fork: it inherited every attach (the daemon counted them
 * before fork returned), so our own segment shows the parent's attaches
 * and the child's.  Then one of: _exit with everything attached, detach
 * first, attach once more, exec, wait for SIGKILL, or store through a
 * read-only attach (SIGSEGV).
 */
enum { K_EXIT, K_DETACH, K_MORE, K_EXEC, K_SLEEP, K_RDONLY_STORE, K_N };

static void child_body(struct worker *w, int action)
{
	int i;

	w->mine_parent = mine_count(w);
	w->is_child = 1;
	check_mine(w, 0, "in a child after fork");
	for (i = 0; i < w->natt; i++) {
		write_att(&w->att[i], &w->r, 4);
		check_att(&w->att[i], &w->r, 8, "in a child after fork");
	}
	switch (action) {
	case K_DETACH:
		while (w->natt)
			drop_att(w, w->natt - 1);
		break;
	case K_MORE:
		if (w->mine >= 0 && w->natt < MAX_ATT &&
		    !attach(w->mine, 0, &w->att[w->natt])) {
			w->natt++;
			check_att(&w->att[w->natt - 1], &w->r, 8,
				  "child's own shmat");
		}
		break;
	case K_EXEC: {
		char *argv[] = { "true", NULL };

		execve("/bin/true", argv, exec_env);
		execve("/usr/bin/true", argv, exec_env);
		break;
	}
	case K_SLEEP:
		for (;;)
			pause();
	case K_RDONLY_STORE:
		for (i = 0; i < w->natt; i++)
			if (w->att[i].rdonly) {
				*(volatile char *)w->att[i].w = 1;
				violation("a store through a SHM_RDONLY attach "
					  "of shmid %d did not fault",
					  w->att[i].shmid);
			}
		break;
	}
	_exit(0);
}

static void op_fork(struct worker *w)
{
	int action = (int)rndn(&w->r, K_N), kill_it = rndn(&w->r, 4) == 0;
	int status, i, has_ro = 0;
	pid_t pid, me = getpid();
	struct rng cr = { rnd(&w->r) };

	if (no_fork)
		return;
	for (i = 0; i < w->natt; i++)
		has_ro |= w->att[i].rdonly;
	set_phase(7);
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != me)
			_exit(0);
		phase = NULL;
		w->r = cr;
		child_body(w, action);
	}
	set_phase(0);
	if (outcome(C_FORK, pid > 0, errno))
		return;
	atomic_fetch_add(&S->children, 1);
	if (action == K_SLEEP || kill_it) {
		/* anywhere: in a check, in a shmdt, in the fork protocol */
		usleep(rndn(&w->r, 3000));
		kill(pid, SIGKILL);
		atomic_fetch_add(&S->children_killed, 1);
	}
	if (action == K_EXEC)
		atomic_fetch_add(&S->children_exec, 1);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);

		if (!(sig == SIGKILL && (action == K_SLEEP || kill_it)) &&
		    !(sig == SIGSEGV && action == K_RDONLY_STORE && has_ro))
			violation("child %d (action %d) died of signal %d (%s)",
				  (int)pid, action, sig, strsignal(sig));
	} else if (WEXITSTATUS(status) != 0) {
		violation("child %d (action %d) exited with %d", (int)pid,
			  action, WEXITSTATUS(status));
	}
	/* When waitpid returns, the child's attaches are gone. */
	check_mine(w, 0, "after the child was reaped");
}

struct thr {
	struct worker *w;
	struct rng r;
	int ids[MAX_KNOWN + 1];
	int nids;
	int iters;
};

static void *thread_main(void *arg)
{
	struct thr *t = arg;
	int k;

	for (k = 0; k < t->iters; k++) {
		struct att a;

		if (attach(t->ids[rndn(&t->r, (unsigned)t->nids)],
			   rndn(&t->r, 3) == 0, &a))
			continue;
		write_att(&a, &t->r, 2);
		check_att(&a, &t->r, 4, "in a thread");
		if (rndn(&t->r, 2))
			sched_yield();
		detach(&a);
	}
	return NULL;
}

/* Threads attach and detach at once while this thread forks. */
static void op_threads(struct worker *w)
{
	struct thr t[4];
	pthread_t th[4];
	int n = 2 + (int)rndn(&w->r, 3), i, k, started = 0, status;
	pid_t pid, me = getpid();

	for (i = 0; i < n; i++) {
		t[i].w = w;
		t[i].r.s = rnd(&w->r);
		t[i].nids = 0;
		if (w->mine >= 0)
			t[i].ids[t[i].nids++] = w->mine;
		for (k = 0; k < w->nknown; k++)
			if (!reserved(w->known[k]))
				t[i].ids[t[i].nids++] = w->known[k];
		t[i].iters = 5 + (int)rndn(&w->r, 20);
		if (!t[i].nids)
			return;
	}
	for (i = 0; i < n; i++)
		if (pthread_create(&th[i], NULL, thread_main, &t[i]) == 0)
			started++;
		else
			break;
	atomic_fetch_add(&S->threads_runs, 1);
	usleep(rndn(&w->r, 500));
	pid = no_fork ? -2 : fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != me)
			_exit(0);
		phase = NULL;
		usleep(rndn(&w->r, 300));
		_exit(0);
	}
	if (pid != -2 && !outcome(C_FORK, pid > 0, errno)) {
		atomic_fetch_add(&S->children, 1);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			violation("child forked among threads: status %#x",
				  status);
	}
	for (i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	check_mine(w, 0, "after the threads and the child");
}

static void op_mine(struct worker *w)
{
	int i;

	if (w->mine < 0)
		return;
	/* detach one of ours, or attach one more */
	for (i = 0; i < w->natt; i++)
		if (w->att[i].shmid == w->mine && rndn(&w->r, 2)) {
			drop_att(w, i);
			return;
		}
	if (w->natt < MAX_ATT &&
	    !attach(w->mine, rndn(&w->r, 4) == 0, &w->att[w->natt])) {
		w->natt++;
		check_mine(w, 0, "after shmat of our own");
	}
}

static const struct {
	void (*fn)(struct worker *w);
	int weight;
} ops[] = {
	{ op_get, 20 },	   { op_at, 16 },  { op_dt, 12 },  { op_rw, 24 },
	{ op_stat, 8 },	   { op_set, 4 },  { op_rmid, 2 }, { op_fork, 3 },
	{ op_threads, 1 }, { op_scan, 2 }, { op_lock, 1 }, { op_mine, 6 },
};

static void one_op(struct worker *w)
{
	int total = 0, x;
	size_t i;

	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		total += ops[i].weight;
	x = (int)rndn(&w->r, (unsigned)total);
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (x < ops[i].weight) {
			ops[i].fn(w);
			return;
		}
		x -= ops[i].weight;
	}
}

static void worker_init(struct worker *w, int idx)
{
	int id;

	memset(w, 0, sizeof(*w));
	w->idx = idx;
	w->r.s = seed ^ mix64((uint64_t)idx + 1);
	w->mine = -1;
	if (as_users && (idx & 1)) {
		if (setgroups(0, NULL) || setgid(1000) || setuid(1000)) {
			violation("cannot become uid 1000: %s",
				  strerror(errno));
			_exit(1);
		}
		/* a change of credentials clears it */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	}
	set_phase(1);
	if (mode == M_MIX) {
		size_t size = 4096 * (1 + rndn(&w->r, 3)) + 24;

		id = shmget(mine_key(idx), size, IPC_CREAT | IPC_EXCL | 0600);
		if (id < 0 && errno == EEXIST) {
			/* left over from a killed run on the same table */
			id = shmget(mine_key(idx), 0, 0);
			if (id >= 0)
				shmctl(id, IPC_RMID, NULL);
			id = shmget(mine_key(idx), size,
				    IPC_CREAT | IPC_EXCL | 0600);
		}
	} else {
		id = shmget(IPC_PRIVATE, 4096 * (1 + rndn(&w->r, 3)) + 24,
			    0600);
	}
	set_phase(0);
	if (outcome(C_GET, id >= 0, errno))
		return;
	w->mine = id;
	if (idx < MAX_WORKERS)
		atomic_store(&S->reserved[idx], id);
}

static void worker_exit_checks(struct worker *w)
{
	int i;

	while (w->natt)
		drop_att(w, w->natt - 1);
	for (i = 0; i < w->npriv; i++) {
		int r = shmctl(w->priv[i], IPC_RMID, NULL);

		outcome(C_RMID, r == 0, errno);
	}
	if (w->mine >= 0) {
		check_mine(w, 0, "at the end");
		if (outcome(C_RMID, shmctl(w->mine, IPC_RMID, NULL) == 0,
			    errno))
			violation("IPC_RMID of our own shmid %d: %s", w->mine,
				  strerror(errno));
	}
}

static void worker_run(int idx, int forever)
{
	struct worker w;
	unsigned long n = 0;

	worker_init(&w, idx);
	while (forever || (n++ & 15) || now() < deadline)
		one_op(&w);
	worker_exit_checks(&w);
}

/* ---- exhaust mode ---- */

static void barrier(void)
{
	int gen = atomic_load(&S->barrier_gen);

	if (atomic_fetch_add(&S->barrier_count, 1) + 1 == nworkers) {
		atomic_store(&S->barrier_count, 0);
		atomic_fetch_add(&S->barrier_gen, 1);
		return;
	}
	while (atomic_load(&S->barrier_gen) == gen)
		usleep(200);
}

/*
 * Why did shmget say ENOSPC?  Only creations run in this phase, so the
 * table can only have grown since: if neither shmmni nor shmall explains
 * it now, nothing did.
 */
static void classify_enospc(const struct shminfo *si, size_t size)
{
	struct shm_info sh;
	unsigned long pages = (size + 4095) / 4096;

	if (outcome(C_SHMINFO,
		    shmctl(0, SHM_INFO, (struct shmid_ds *)(void *)&sh) >= 0,
		    errno))
		return;
	if ((unsigned long)sh.used_ids >= si->shmmni)
		atomic_fetch_add(&S->enospc_shmmni, 1);
	else if (sh.shm_tot + pages > si->shmall)
		atomic_fetch_add(&S->enospc_shmall, 1);
	else
		violation(
			"ENOSPC for %zu bytes with %d of %lu shmids and %lu of "
			"%lu pages in use",
			size, sh.used_ids, (unsigned long)si->shmmni,
			(unsigned long)sh.shm_tot, (unsigned long)si->shmall);
}

/* Worker 0 lets the driver look at the daemon while everything is held. */
static void exhaust_hold(int idx, int round)
{
	char line[64];

	if (idx == 0) {
		say("exhaust: holding round %d", round);
		if (!fgets(line, sizeof(line), stdin))
			clearerr(stdin);
	}
	barrier();
}

static void exhaust_round(int idx, int round, const struct shminfo *si,
			  struct rng *r)
{
	struct att att[256];
	int ids[256], nids = 0, natt = 0, i, id, err, misses = 0;
	unsigned long pages = 0;
	/* even rounds run into shmmni with small segments, odd ones into
	 * shmall with large ones */
	size_t unit = round & 1 ? (size_t)si->shmall * 4096 / 8 : 4096;

	barrier();
	while (misses < 6 && nids < 256) {
		size_t size = unit / 2 + rndn(r, (unsigned)unit) + 1;
		key_t key = rndn(r, 4) ? IPC_PRIVATE
				       : keybase + 0x1000 +
						 (key_t)(idx * 256 + nids);

		id = shmget(key, size, IPC_CREAT | IPC_EXCL | 0600);
		err = outcome(C_GET, id >= 0, errno);
		if (err == ENOSPC) {
			atomic_fetch_add(&S->enospc, 1);
			classify_enospc(si, size);
			misses++;
			usleep(rndn(r, 1000));
			continue;
		}
		if (err)
			continue;
		ids[nids++] = id;
		pages += (size + 4095) / 4096;
	}
	barrier();
	/* attach round-robin until shmseg says no */
	for (i = 0; nids && natt < 256; i = (i + 1) % nids) {
		err = attach(ids[i], 0, &att[natt]);
		if (err == EMFILE) {
			atomic_fetch_add(&S->emfile, 1);
			if ((unsigned long)natt != si->shmseg)
				violation("EMFILE with %d attaches, shmseg %lu",
					  natt, (unsigned long)si->shmseg);
			break;
		}
		if (err) {
			violation("shmat of our own shmid %d: %s", ids[i],
				  strerror(err));
			break;
		}
		if ((unsigned long)natt >= si->shmseg)
			violation("attach number %d allowed, shmseg %lu",
				  natt + 1, (unsigned long)si->shmseg);
		natt++;
	}
	/* fill every page we hold, then check it all */
	for (i = 0; i < natt; i++) {
		size_t k;

		for (k = 2; k < att[i].nwords; k++)
			atomic_store_explicit(
				&att[i].w[k],
				pat(att[i].shmid, k, (uint32_t)rnd(r) | 1),
				memory_order_relaxed);
		write_att(&att[i], r, 0);
	}
	for (i = 0; i < natt; i++)
		check_att(&att[i], r, 64, "full segment");
	atomic_fetch_add(&S->exhaust_pages, pages);
	atomic_fetch_add(&S->exhaust_segs, (unsigned long)nids);
	barrier();
	exhaust_hold(idx, round);
	for (i = 0; i < natt; i++)
		detach(&att[i]);
	for (i = 0; i < nids; i++)
		if (outcome(C_RMID, shmctl(ids[i], IPC_RMID, NULL) == 0, errno))
			violation("IPC_RMID of our own shmid %d", ids[i]);
	barrier();
}

static void exhaust_run(int idx)
{
	struct rng r = { seed ^ mix64((uint64_t)idx + 77) };
	struct shminfo si;
	int round, id;

	if (outcome(C_INFO, shmctl(0, IPC_INFO, (void *)&si) >= 0, errno))
		_exit(1);
	for (round = 0; round < 4; round++)
		exhaust_round(idx, round, &si, &r);
	/* it all works again, up to the same share of the limit */
	{
		size_t size =
			(size_t)(si.shmall * 4096 / (unsigned)nworkers) / 2;
		struct att a;

		if (size < 4096)
			size = 4096;
		id = shmget(IPC_PRIVATE, size, IPC_CREAT | 0600);
		if (outcome(C_GET, id >= 0, errno)) {
			violation("shmget of %zu bytes after everything was "
				  "freed: %s",
				  size, strerror(errno));
			return;
		}
		if (attach(id, 0, &a)) {
			violation("shmat after everything was freed");
		} else {
			write_att(&a, &r, 64);
			check_att(&a, &r, 64, "after the limits");
			detach(&a);
		}
		outcome(C_RMID, shmctl(id, IPC_RMID, NULL) == 0, errno);
	}
}

/* ---- hold mode: a client driven line by line, for fault tests ---- */

/*
 * Commands on stdin, one answer line each on stdout:
 *   create SIZE      shmget(IPC_PRIVATE) and shmat -> "id N"
 *   touch N          store the pattern in the first N pages
 *   check N          verify the first N pages -> "ok" or "bad WORD"
 *   probe PAGE       a child loads one byte of PAGE -> "exit 0" or
 *                    "signal N"
 *   calls            shmget, shmat, IPC_STAT, IPC_RMID, each timed ->
 *                    "NAME ERRNO SECONDS" fields
 *   stat             IPC_STAT -> "nattch N" or "errno E"
 *   dt               shmdt -> "dt R ERRNO"
 *   quit
 */
static int hold_main(void)
{
	char line[256];
	struct att a = { .shmid = -1 };

	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		char cmd[32];
		long n = 0;

		if (sscanf(line, "%31s %ld", cmd, &n) < 1)
			continue;
		if (!strcmp(cmd, "create")) {
			int id = shmget(IPC_PRIVATE, (size_t)n,
					IPC_CREAT | 0600);
			void *p = id < 0 ? (void *)-1 : shmat(id, NULL, 0);

			if (p == (void *)-1) {
				printf("errno %d\n", errno);
				continue;
			}
			a.shmid = id;
			a.w = p;
			a.nwords = (size_t)n / 8;
			printf("id %d\n", id);
		} else if (!strcmp(cmd, "touch") || !strcmp(cmd, "check")) {
			size_t k, end = (size_t)n * PAGE / 8, bad = 0;

			if (end > a.nwords)
				end = a.nwords;
			for (k = 0; k < end; k++) {
				uint64_t want = pat(a.shmid, k, (uint32_t)k);

				if (cmd[0] == 't')
					a.w[k] = want;
				else if (a.w[k] != want && !bad)
					bad = k + 1;
			}
			if (bad)
				printf("bad %zu\n", bad - 1);
			else
				printf("ok\n");
		} else if (!strcmp(cmd, "probe")) {
			int status;
			pid_t pid = fork();

			if (pid == 0) {
				volatile char c =
					((volatile char *)a.w)[n * PAGE];

				(void)c;
				_exit(0);
			}
			waitpid(pid, &status, 0);
			if (WIFSIGNALED(status))
				printf("signal %d\n", WTERMSIG(status));
			else
				printf("exit %d\n", WEXITSTATUS(status));
		} else if (!strcmp(cmd, "calls")) {
			struct shmid_ds ds;
			double t;
			void *p;
			int r;

			t = now();
			errno = 0;
			r = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
			printf("shmget %d %.3f", r < 0 ? errno : 0, now() - t);
			t = now();
			errno = 0;
			p = shmat(a.shmid, NULL, 0);
			printf(" shmat %d %.3f", p == (void *)-1 ? errno : 0,
			       now() - t);
			t = now();
			errno = 0;
			r = shmctl(a.shmid, IPC_STAT, &ds);
			printf(" IPC_STAT %d %.3f", r < 0 ? errno : 0,
			       now() - t);
			t = now();
			errno = 0;
			r = shmctl(a.shmid, IPC_RMID, NULL);
			printf(" IPC_RMID %d %.3f\n", r < 0 ? errno : 0,
			       now() - t);
		} else if (!strcmp(cmd, "stat")) {
			struct shmid_ds ds;

			if (shmctl(a.shmid, IPC_STAT, &ds) < 0)
				printf("errno %d\n", errno);
			else
				printf("nattch %lu\n",
				       (unsigned long)ds.shm_nattch);
		} else if (!strcmp(cmd, "dt")) {
			double t = now();
			int r;

			errno = 0;
			r = shmdt((void *)a.w);
			printf("dt %d %d %.3f\n", r, r ? errno : 0, now() - t);
		} else if (!strcmp(cmd, "quit")) {
			break;
		}
	}
	return 0;
}

/* ---- the report ---- */

static const char *errno_name(int e)
{
	static const struct {
		int e;
		const char *n;
	} names[] = {
		{ EPERM, "EPERM" },	  { ENOENT, "ENOENT" },
		{ EINTR, "EINTR" },	  { EIO, "EIO" },
		{ EBADF, "EBADF" },	  { EAGAIN, "EAGAIN" },
		{ ENOMEM, "ENOMEM" },	  { EACCES, "EACCES" },
		{ EFAULT, "EFAULT" },	  { EBUSY, "EBUSY" },
		{ EEXIST, "EEXIST" },	  { EINVAL, "EINVAL" },
		{ ENFILE, "ENFILE" },	  { EMFILE, "EMFILE" },
		{ ENOSPC, "ENOSPC" },	  { ENOSYS, "ENOSYS" },
		{ EIDRM, "EIDRM" },	  { EPROTO, "EPROTO" },
		{ ENOTCONN, "ENOTCONN" }, { ESRCH, "ESRCH" },
		{ ENOTTY, "ENOTTY" },
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].e == e)
			return names[i].n;
	return "E?";
}

static void report(double secs, unsigned long crashes)
{
	unsigned long total = 0, errs = 0, unexpected = 0;
	char json[8192];
	size_t jl = 0;
	int c, e, i, first = 1;

	for (c = 0; c < NCALLS; c++)
		total += atomic_load(&S->calls[c]);
	say("operations: %lu in %.1f s (%.0f/s); forked children %lu (%lu "
	    "SIGKILLed, %lu exec), thread bursts %lu; words written %lu, "
	    "checked %lu",
	    total, secs, secs > 0 ? (double)total / secs : 0.0,
	    atomic_load(&S->children), atomic_load(&S->children_killed),
	    atomic_load(&S->children_exec), atomic_load(&S->threads_runs),
	    atomic_load(&S->words_written), atomic_load(&S->words_checked));
	for (c = 0; c < NCALLS; c++)
		if (atomic_load(&S->calls[c]))
			say("  %-10s %lu", call_names[c],
			    atomic_load(&S->calls[c]));
	jl += (size_t)snprintf(json + jl, sizeof(json) - jl,
			       "{\"seed\": %llu, \"ops\": %lu, \"errors\": {",
			       seed, total);
	say("errors by errno:");
	for (e = 0; e < MAX_ERRNO; e++) {
		unsigned long n = 0;
		char per[512];
		size_t pl = 0;
		int bad = 0;

		for (c = 0; c < NCALLS; c++) {
			unsigned long k = atomic_load(&S->errs[c][e]);

			if (!k)
				continue;
			n += k;
			bad |= !expected((enum call)c, e);
			pl += (size_t)snprintf(per + pl, sizeof(per) - pl,
					       "%s%s %lu", pl ? ", " : "",
					       call_names[c], k);
		}
		if (!n)
			continue;
		errs += n;
		if (bad)
			unexpected += n;
		say("  %-8s %8lu  %s  (%s)", errno_name(e), n,
		    bad ? "UNEXPECTED" : "expected", per);
		if (jl < sizeof(json) - 64)
			jl += (size_t)snprintf(
				json + jl, sizeof(json) - jl, "%s\"%s\": %lu",
				first ? "" : ", ", errno_name(e), n);
		first = 0;
	}
	if (!errs)
		say("  none");
	i = atomic_load(&S->nmsgs);
	say("violations: %lu%s", atomic_load(&S->violations),
	    i > MAX_MSGS ? " (first ones below)" : "");
	for (c = 0; c < i && c < MAX_MSGS; c++)
		say("  %s", S->msgs[c]);
	if (jl < sizeof(json) - 200)
		snprintf(json + jl, sizeof(json) - jl,
			 "}, \"unexpected\": %lu, \"violations\": %lu, "
			 "\"crashes\": %lu, \"children\": %lu, "
			 "\"children_killed\": %lu, \"seconds\": %.2f, "
			 "\"enospc\": %lu, \"enospc_shmmni\": %lu, "
			 "\"enospc_shmall\": %lu, \"emfile\": %lu}",
			 unexpected, atomic_load(&S->violations), crashes,
			 atomic_load(&S->children),
			 atomic_load(&S->children_killed), secs,
			 atomic_load(&S->enospc),
			 atomic_load(&S->enospc_shmmni),
			 atomic_load(&S->enospc_shmall),
			 atomic_load(&S->emfile));
	say("RESULT %s", json);
}

/* A worker still running long after the end: where is it stuck? */
static void report_hang(int i, pid_t pid, double late)
{
	char path[64], wchan[64] = "?";
	ssize_t k;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/wchan", (int)pid);
	fd = open(path, O_RDONLY);
	if (fd >= 0) {
		k = read(fd, wchan, sizeof(wchan) - 1);
		wchan[k > 0 ? k : 0] = 0;
		close(fd);
	}
	violation(
		"hang: worker %d (pid %d) still running %.0f s after the end, "
		"waiting in %s",
		i, (int)pid, late, wchan);
	kill(pid, SIGKILL);
}

/* The workers; a hang shows as a worker still running at the deadline. */
static int run_workers(void)
{
	pid_t pids[MAX_WORKERS];
	double start = now(), limit, give_up = 0;
	unsigned long crashes = 0;
	int i, left, status, hung = 0;

	deadline = start + seconds;
	/* tests/stress.py aborts the mount 15 s after this (hang_limit) */
	limit = deadline + 45 + seconds / 2.0;
	for (i = 0; i < nworkers; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			violation("fork of worker %d: %s", i, strerror(errno));
			nworkers = i;
			break;
		}
		if (pids[i] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (mode == M_EXHAUST)
				exhaust_run(i);
			else
				worker_run(i, 0);
			_exit(0);
		}
	}
	for (left = nworkers; left > 0;) {
		pid_t pid = waitpid(-1, &status, WNOHANG);

		if (pid < 0)
			break;
		if (pid == 0) {
			if (!hung && now() > limit) {
				hung = 1;
				give_up = now() + 30;
				for (i = 0; i < nworkers; i++)
					if (pids[i] > 0)
						report_hang(i, pids[i],
							    limit - deadline);
			} else if (hung && now() > give_up) {
				/* in the D state (a deadlocked daemon) they
				 * never die: report what there is */
				violation("%d workers do not die after SIGKILL",
					  left);
				break;
			}
			usleep(20000);
			continue;
		}
		for (i = 0; i < nworkers; i++)
			if (pids[i] == pid) {
				pids[i] = -1;
				left--;
			}
		if (WIFSIGNALED(status)) {
			crashes++;
			violation("worker pid %d died of signal %d (%s)",
				  (int)pid, WTERMSIG(status),
				  strsignal(WTERMSIG(status)));
		} else if (WEXITSTATUS(status)) {
			violation("worker pid %d exited with status %d",
				  (int)pid, WEXITSTATUS(status));
		}
	}
	report(now() - start, crashes);
	return atomic_load(&S->violations) ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: %s [-m mix|victim|exhaust|hold] [-n PROCS] [-t "
		"SECONDS] "
		"[-s SEED] [-k KEYS] [-b KEYBASE] [-u] [-P PHASEFILE] [-X] "
		"[-F]\n",
		self_path);
	exit(2);
}

/*
 * The environment of exec'd children: `true` runs without LeakSanitizer
 * (make check-asan preloads ASan into it).  Its parent may SIGKILL it at
 * any moment, and a leak check of a process being killed cannot stop its
 * threads and writes a report saying so; `true` has nothing to leak.
 * Nor does it load the preload library: the exec itself is the detach
 * (the control node is O_CLOEXEC), and a worker that became uid 1000
 * may not be able to read a build in root's 0700 directory.
 */
static void make_exec_env(void)
{
	size_t n = 0, i, j = 0;

	while (environ[n])
		n++;
	exec_env = calloc(n + 1, sizeof(*exec_env));
	if (!exec_env) {
		exec_env = environ;
		return;
	}
	for (i = 0; i < n; i++) {
		if (!strncmp(environ[i], "LD_PRELOAD=", 11))
			continue;
		if (strncmp(environ[i], "ASAN_OPTIONS=", 13) ||
		    asprintf(&exec_env[j], "%s:detect_leaks=0", environ[i]) < 0)
			exec_env[j] = environ[i];
		j++;
	}
}

int main(int argc, char **argv)
{
	const char *phase_file = NULL;
	int opt;

	self_path = argv[0];
	make_exec_env();
	while ((opt = getopt(argc, argv, "m:n:t:s:k:b:uP:XF")) != -1) {
		switch (opt) {
		case 'm':
			if (!strcmp(optarg, "mix"))
				mode = M_MIX;
			else if (!strcmp(optarg, "victim"))
				mode = M_VICTIM;
			else if (!strcmp(optarg, "exhaust"))
				mode = M_EXHAUST;
			else if (!strcmp(optarg, "hold"))
				mode = M_HOLD;
			else
				usage();
			break;
		case 'n':
			nworkers = atoi(optarg);
			break;
		case 't':
			seconds = atoi(optarg);
			break;
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'k':
			nkeys = atoi(optarg);
			break;
		case 'b':
			keybase = (key_t)strtol(optarg, NULL, 0);
			break;
		case 'u':
			as_users = 1;
			break;
		case 'P':
			phase_file = optarg;
			break;
		case 'X':
			corrupt = 1;
			break;
		case 'F':
			no_fork = 1;
			break;
		default:
			usage();
		}
	}
	if (nworkers < 1 || nworkers > MAX_WORKERS || seconds < 0 || nkeys < 1)
		usage();
	if (!seed) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		seed = mix64((uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32) %
			       1000000000ULL +
		       1;
	}
	S = mmap(NULL, sizeof(*S), PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (S == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	if (phase_file) {
		int fd = open(phase_file, O_RDWR | O_CREAT, 0644);

		if (fd < 0 || ftruncate(fd, 1) < 0)
			return 2;
		phase = mmap(NULL, 1, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
			     0);
		close(fd);
		if (phase == MAP_FAILED)
			return 2;
	}
	switch (mode) {
	case M_HOLD:
		return hold_main();
	case M_VICTIM:
		worker_run(0, 1);
		return 0;
	default:
		say("shmfs_stress: mode %s, seed %llu, %d processes, %d s, %d "
		    "keys "
		    "from %#x%s",
		    mode == M_EXHAUST ? "exhaust" : "mix", seed, nworkers,
		    seconds, nkeys, (unsigned)keybase,
		    as_users ? ", odd workers as uid 1000" : "");
		return run_workers();
	}
}
