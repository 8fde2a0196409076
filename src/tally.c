/*
 * Sessions as readers of the published table know them
 * (docs/attach-design.md): each session has a sid, the lowest free one,
 * and a generation that grows with every session the sid names, so that
 * (sid, gen) never names two sessions.  The table publishes
 * sessions[sid] = {gen, pid} while the session lives and {0, 0} after.
 *
 * Each session has a tally: a memfd of SHMFS_TALLY_SIZE bytes, sealed so
 * that nobody can grow or shrink it under a reader, handed to the kernel
 * as a backing file (the front end serves it as .tally/<sid>.<gen>) and
 * kept by the holder as segment memfds are.  A session whose tally could
 * not be made works without one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "seg_impl.h"

static void sid_publish(uint32_t sid, uint32_t gen, pid_t pid)
{
	if (Tcfg.pub && Tcfg.pub->session)
		Tcfg.pub->session(sid, gen, pid);
}

static void sid_mark(uint32_t sid, bool used)
{
	uint64_t bit = 1ULL << (sid % 64);

	if (used)
		T.sid_used[sid / 64] |= bit;
	else
		T.sid_used[sid / 64] &= ~bit;
}

/* The lowest free sid, or 0 when all are taken. */
static uint32_t sid_lowest_free(void)
{
	uint32_t w;

	for (w = 0; w < SID_WORDS; w++) {
		/* sid 0 is none: never free */
		uint64_t free = ~T.sid_used[w] & (w ? ~0ULL : ~1ULL);

		if (free)
			return w * 64 + (uint32_t)__builtin_ctzll(free);
	}
	return 0;
}

/* Descriptors run out, say: the session goes on without a tally. */
static void tally_make(struct session *s)
{
	struct shmfs_tally_head head = { SHMFS_TALLY_MAGIC, s->sid };
	int fd, id;

	s->memfd = -1;
	s->backing = 0;
	fd = memfd_create("shmfs-tally", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return;
	if (ftruncate(fd, SHMFS_TALLY_SIZE) < 0 ||
	    pwrite(fd, &head, sizeof(head), 0) != (ssize_t)sizeof(head) ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) <
		    0) {
		close(fd);
		return;
	}
	if (!T.no_backing && Tcfg.backing_open) {
		id = Tcfg.backing_open(fd);
		s->backing = id > 0 ? id : 0;
	}
	s->memfd = fd;
	if (Tcfg.keep_fd)
		Tcfg.keep_fd(fd);
}

/* After the change commits, as a segment's memory goes (segmem.c). */
static void tally_drop(struct session *s)
{
	if (s->backing && table_after_backing_close(s->backing))
		Tcfg.backing_close(s->backing);
	table_after_close(s->memfd);
	s->backing = 0;
	s->memfd = -1;
}

struct session *session_new(pid_t tgid)
{
	uint32_t sid = sid_lowest_free();
	struct session *s;

	if (!sid)
		return NULL;
	s = pcalloc(1, sizeof(*s));
	if (!s)
		return NULL;
	sid_mark(sid, true);
	/* gen 0 is none; a name's parts are at most INT_MAX (names.c) */
	if (++T.sid_gen[sid] > INT32_MAX)
		T.sid_gen[sid] = 1;
	s->sid = sid;
	s->gen = T.sid_gen[sid];
	T.by_sid[sid] = s;
	tally_make(s);
	sid_publish(sid, s->gen, tgid);
	return s;
}

bool session_live(uint32_t sid, uint32_t gen)
{
	const struct session *s;

	s = sid < SHMFS_TABLE_SESSIONS ? T.by_sid[sid] : NULL;
	return s && s->gen == gen;
}

static void hold_unlink(struct hold *h);
static void tally_unmap(const struct session *s);

void session_free(struct session *s)
{
	while (s->holds) /* at seg_fini: nothing to publish */
		hold_unlink(s->holds);
	tally_unmap(s);
	tally_drop(s);
	sid_mark(s->sid, false);
	T.by_sid[s->sid] = NULL;
	sid_publish(s->sid, 0, 0);
	pfree(s);
}

int seg_tally_find(uint32_t sid, uint32_t gen, pid_t *tgid, int *backing)
{
	const struct session *s;
	TABLE_READ();

	s = sid < SHMFS_TABLE_SESSIONS ? T.by_sid[sid] : NULL;
	if (!s || s->gen != gen)
		return -ENOENT;
	*tgid = s->proc->tgid;
	*backing = s->backing;
	return 0;
}

int tally_fds(int *fds, int max, int n)
{
	const struct session *s;
	uint32_t sid;

	for (sid = 1; sid < SHMFS_TABLE_SESSIONS; sid++) {
		s = T.by_sid[sid];
		if (s && s->memfd >= 0 && n++ < max)
			fds[n - 1] = s->memfd;
	}
	return n;
}

bool tally_fd_lost(int fd)
{
	uint32_t sid;

	for (sid = 1; sid < SHMFS_TABLE_SESSIONS; sid++)
		if (T.by_sid[sid] && T.by_sid[sid]->memfd == fd) {
			T.by_sid[sid]->memfd = -1;
			return true;
		}
	return false;
}

void tally_republish(void)
{
	const struct session *s;
	unsigned b;

	for (b = 0; b < SESSION_BUCKETS; b++)
		for (s = T.by_file[b]; s; s = s->f_next)
			sid_publish(s->sid, s->gen, s->proc->tgid);
}

void seg_session_id(uint64_t file, pid_t tgid, uint32_t *sid, uint32_t *gen)
{
	const struct session *s;
	TABLE_READ();

	*sid = *gen = 0;
	for (s = T.by_file[file_bucket(file)]; s; s = s->f_next)
		if (s->file == file && s->proc->tgid == tgid) {
			*sid = s->sid;
			*gen = s->gen;
			return;
		}
}

void seg_tally_opened(uint32_t sid, uint32_t gen)
{
	struct session *s;
	TABLE_LOCK();

	s = sid < SHMFS_TABLE_SESSIONS ? T.by_sid[sid] : NULL;
	if (s && s->gen == gen && s->memfd >= 0)
		s->counting = true;
}

/*
 * The daemon's own mapping of each tally, made at its first need: not in
 * the heap (a successor maps the memfds it adopted again), and never
 * unmapped while the session lives, so a read needs no check.
 */
static struct {
	uint32_t gen;
	struct shmfs_tally *map;
} maps[SHMFS_TABLE_SESSIONS];

static struct shmfs_tally *tally_map(const struct session *s)
{
	void *m;

	if (maps[s->sid].map && maps[s->sid].gen == s->gen)
		return maps[s->sid].map;
	if (maps[s->sid].map)
		munmap(maps[s->sid].map, SHMFS_TALLY_SIZE);
	maps[s->sid].map = NULL;
	if (s->memfd < 0)
		return NULL;
	m = mmap(NULL, SHMFS_TALLY_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
		 s->memfd, 0);
	if (m == MAP_FAILED)
		return NULL;
	maps[s->sid].map = m;
	maps[s->sid].gen = s->gen;
	return m;
}

static void tally_unmap(const struct session *s)
{
	if (maps[s->sid].map) {
		munmap(maps[s->sid].map, SHMFS_TALLY_SIZE);
		maps[s->sid].map = NULL;
	}
}

/* A value its process wrote: only ever read once, and clamped. */
uint32_t hold_own(const struct hold *h)
{
	const struct shmfs_tally *t = tally_map(h->sess);
	uint32_t own;

	if (!t)
		return 0;
	own = __atomic_load_n(&t->rec[h->rec].own, __ATOMIC_ACQUIRE);
	return own < SHMFS_TALLY_OWN_MAX ? own : SHMFS_TALLY_OWN_MAX;
}

static uint64_t boottime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void seg_set_lpid(struct seg *s, pid_t pid)
{
	s->ds.lpid = pid;
	s->lpid_ns = boottime_ns();
}

/*
 * The times a record's process wrote at its shmat and shmdt calls made
 * without a request, clamped to now: a process can make them no later
 * than a call of its own at this moment would.
 */
struct rec_times {
	int64_t atime, dtime;
	uint64_t stamp;
};

static void hold_times(const struct hold *h, int64_t now, uint64_t now_ns,
		       struct rec_times *rt)
{
	const struct shmfs_tally *t = tally_map(h->sess);
	const struct shmfs_tally_rec *r;
	uint32_t a, d;
	uint64_t st;

	rt->atime = rt->dtime = 0;
	rt->stamp = 0;
	if (!t)
		return;
	r = &t->rec[h->rec];
	a = __atomic_load_n(&r->atime, __ATOMIC_RELAXED);
	d = __atomic_load_n(&r->dtime, __ATOMIC_RELAXED);
	st = __atomic_load_n(&r->stamp, __ATOMIC_RELAXED);
	rt->atime = (int64_t)a < now ? (int64_t)a : now;
	rt->dtime = (int64_t)d < now ? (int64_t)d : now;
	rt->stamp = st < now_ns ? st : now_ns;
}

/* What the holds add to s->ds: the latest times, and the pid of the
 * latest call among the daemon's own and the records'. */
static void holds_merge(const struct seg *s, struct shmfs_ds *ds,
			uint64_t *lpid_ns)
{
	int64_t now = seg_now();
	uint64_t now_ns = boottime_ns();
	const struct hold *h;
	struct rec_times rt;

	for (h = s->holds; h; h = h->s_next) {
		hold_times(h, now, now_ns, &rt);
		if (rt.atime > ds->atime)
			ds->atime = rt.atime;
		if (rt.dtime > ds->dtime)
			ds->dtime = rt.dtime;
		if (rt.stamp > *lpid_ns) {
			*lpid_ns = rt.stamp;
			ds->lpid = h->sess->proc->tgid;
		}
	}
}

void seg_ds(const struct seg *s, struct shmfs_ds *ds)
{
	uint64_t ns = s->lpid_ns;

	*ds = s->ds;
	ds->nattch = seg_nattch(s);
	holds_merge(s, ds, &ns);
}

/* After a detach by lpid (0: none, a record that counted nothing went):
 * a removed segment nobody holds any more goes, as on Linux. */
void seg_detached(struct seg *s, pid_t lpid)
{
	if (lpid) {
		s->ds.dtime = seg_now();
		seg_set_lpid(s, lpid);
	}
	if (s->removed && !s->freed && !seg_nattch(s))
		seg_sysv_free(s);
	else
		publish(s);
}

uint64_t seg_nattch(const struct seg *s)
{
	uint64_t n = s->ds.nattch;
	const struct hold *h;

	/*
	 * A process that counts an attach in its record, then reads
	 * SHM_DEST, and the daemon that publishes SHM_DEST, then sums, see
	 * each other's store in at least one order (docs/attach-design.md
	 * 4.7): a removed segment is never left with no one to free it.
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	for (h = s->holds; h; h = h->s_next)
		n += hold_own(h);
	return n;
}

uint64_t proc_tally_attaches(const struct proc *p)
{
	const struct session *s;
	const struct hold *h;
	uint64_t n = 0;

	for (s = p->sessions; s; s = s->p_next)
		for (h = s->holds; h; h = h->h_next)
			n += hold_own(h);
	return n;
}

/* Every record's count, as the sums of every segment give it. */
uint64_t tally_attaches(void)
{
	const struct session *s;
	const struct hold *h;
	uint64_t n = 0;
	uint32_t sid;

	for (sid = 1; sid < SHMFS_TABLE_SESSIONS; sid++)
		for (s = T.by_sid[sid], h = s ? s->holds : NULL; h;
		     h = h->h_next)
			n += hold_own(h);
	return n;
}

struct hold *hold_find(const struct proc *p, const struct seg *s)
{
	const struct session *ss;
	struct hold *h;

	for (ss = p->sessions; ss; ss = ss->p_next)
		for (h = ss->holds; h; h = h->h_next)
			if (h->seg == s)
				return h;
	return NULL;
}

static int rec_alloc(struct session *s)
{
	uint32_t w;

	for (w = 0; w < REC_WORDS; w++) {
		uint64_t free = ~s->rec_used[w];
		uint32_t rec;

		if (!free)
			continue;
		rec = w * 64 + (uint32_t)__builtin_ctzll(free);
		if (rec >= SHMFS_TALLY_RECS)
			return -1;
		s->rec_used[w] |= 1ULL << (rec % 64);
		return (int)rec;
	}
	return -1;
}

/* The hold of p on s, bound now if p counts in a tally and has room. */
struct hold *hold_get(struct proc *p, struct seg *s)
{
	struct shmfs_tally *t;
	struct session *ss;
	struct hold *h = hold_find(p, s);
	int rec;

	if (h)
		return h;
	for (ss = p->sessions; ss && !ss->counting; ss = ss->p_next)
		;
	if (!ss || !(t = tally_map(ss)))
		return NULL;
	h = pcalloc(1, sizeof(*h));
	if (!h)
		return NULL;
	rec = rec_alloc(ss);
	if (rec < 0) {
		pfree(h);
		return NULL;
	}
	/* whatever its process left there (its counts and times of a
	 * segment the record was bound to before) counts for nothing */
	memset(&t->rec[rec], 0, sizeof(t->rec[rec]));
	h->seg = s;
	h->sess = ss;
	h->rec = (uint32_t)rec;
	h->h_next = ss->holds;
	ss->holds = h;
	h->s_next = s->holds;
	if (s->holds)
		s->holds->s_prev = h;
	s->holds = h;
	return h;
}

static void hold_unlink(struct hold *h)
{
	struct session *ss = h->sess;
	struct hold **pp;

	for (pp = &ss->holds; *pp != h; pp = &(*pp)->h_next)
		;
	*pp = h->h_next;
	if (h->s_prev)
		h->s_prev->s_next = h->s_next;
	else
		h->seg->holds = h->s_next;
	if (h->s_next)
		h->s_next->s_prev = h->s_prev;
	ss->rec_used[h->rec / 64] &= ~(1ULL << (h->rec % 64));
	pfree(h);
}

/* The segment's shmid is freed: no record counts for it any more. */
void hold_unlink_seg(struct seg *s)
{
	while (s->holds)
		hold_unlink(s->holds);
}

/* The segments its records still count attaches of are left astray. */
void holds_astray(const struct session *ss)
{
	const struct hold *h;

	for (h = ss->holds; h; h = h->h_next)
		if (hold_own(h) > 0)
			h->seg->astray = true;
}

void holds_drop(struct session *ss)
{
	pid_t tgid = ss->proc->tgid;

	while (ss->holds) {
		struct hold *h = ss->holds;
		struct seg *s = h->seg;
		bool had = hold_own(h) > 0;

		/* its shmat and shmdt calls stay in the times */
		holds_merge(s, &s->ds, &s->lpid_ns);
		hold_unlink(h);
		seg_detached(s, had ? tgid : 0);
	}
	tally_unmap(ss);
}

/* The counts part of a publish: base and the holders of s. */
void holds_publish(const struct seg *s)
{
	struct shmfs_table_holder list[64], *big = NULL, *l = list;
	const struct hold *h;
	uint32_t n = 0, i = 0;

	if (!Tcfg.pub || !Tcfg.pub->holders)
		return;
	for (h = s->holds; h; h = h->s_next)
		n++;
	if (n > 64) {
		big = calloc(n, sizeof(*big));
		if (!big)
			n = 64; /* the rest are not shown: never more */
		else
			l = big;
	}
	for (h = s->holds; h && i < n; h = h->s_next, i++) {
		l[i].sid = h->sess->sid;
		l[i].gen = h->sess->gen;
		l[i].rec = h->rec;
		l[i].next = 0;
	}
	Tcfg.pub->holders(s->slot, s->ds.nattch, s->lpid_ns, l, n);
	free(big);
}

/* The daemon takes one from the record: for a process that could not
 * tell which record counts its attach. */
static bool hold_take(const struct hold *h)
{
	struct shmfs_tally *t = tally_map(h->sess);
	uint32_t v;
	int tries;

	if (!t)
		return false;
	v = __atomic_load_n(&t->rec[h->rec].own, __ATOMIC_RELAXED);
	/* bounded: its process may keep writing the word under us */
	for (tries = 0; v && tries < 64; tries++)
		if (__atomic_compare_exchange_n(&t->rec[h->rec].own, &v, v - 1,
						false, __ATOMIC_ACQ_REL,
						__ATOMIC_RELAXED))
			return true;
	return false;
}

/* shmdt of shmid by p, counted in its record (taken: it took the attach
 * from the record already). */
int hold_detach(const struct proc *p, int shmid, bool taken)
{
	struct seg *s = seg_find_id(shmid);
	struct hold *h = s && !s->freed ? hold_find(p, s) : NULL;

	if (!h || (!taken && !hold_take(h)))
		return -EINVAL;
	seg_detached(s, p->tgid);
	return 0;
}

int seg_detach_tally(pid_t tgid, int shmid)
{
	const struct proc *p;
	TABLE_LOCK();

	for (p = T.procs[(unsigned)tgid & (PROC_BUCKETS - 1)];
	     p && p->tgid != tgid; p = p->next)
		;
	return p ? hold_detach(p, shmid, true) : -EINVAL;
}

/* ---- who is attached ---- */

struct pid_count {
	pid_t pid;
	uint64_t n;
};

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = ((const struct pid_count *)a)->pid;
	pid_t y = ((const struct pid_count *)b)->pid;

	return (x > y) - (x < y);
}

static int pids_may(struct seg *s, struct perm_cred *c)
{
	struct perm_obj o;

	if (!s || s->freed)
		return -ENOENT;
	/* Who is attached is not part of what IPC_STAT shows (the kernel
	 * shows no attacher's pid to anyone): the owner's and root's. */
	o = seg_perm(s);
	return perm_owner(c, &o) ? -EACCES : 0;
}

/*
 * "pid:count pid:count": every process holding an attach, by pid.  A
 * child that has not yet claimed what it inherited at fork is counted
 * under its own pid once births tell which child a pending fork is for
 * (forkkids.c), else under its parent.  A record's count is its
 * process's own, clamped: it can change no one else's.
 */
static int pids_locked(uint64_t serial, struct perm_cred *c, char **text,
		       const struct fork_kids *fk)
{
	struct fork_guess *g = NULL;
	struct pid_count *pc;
	const struct hold *h;
	struct seg *s;
	struct ref *r;
	size_t n = 0, i, len = 0, size;
	char *out;
	int ng, err;
	TABLE_READ();

	s = serial_find(serial);
	err = pids_may(s, c);
	if (err)
		return err;
	for (h = s->holds; h; h = h->s_next)
		n++;
	n += s->ds.nattch;
	pc = malloc(sizeof(*pc) * (n + 1));
	size = 32 * (n + 1);
	out = malloc(size);
	if (!pc || !out) {
		free(pc);
		free(out);
		return -ENOMEM;
	}
	/* a pending fork's attaches are its child's, once births tell
	 * which child that is (else its parent's, for the moment) */
	ng = fork_guesses(fk, &g);
	n = 0;
	for (r = s->refs; r; r = r->s_next) {
		pc[n].pid =
			r->proc ? r->proc->tgid : fork_guess_of(r->fp, g, ng);
		pc[n++].n = 1;
	}
	free(g);
	for (h = s->holds; h; h = h->s_next)
		if ((pc[n].n = hold_own(h)))
			pc[n++].pid = h->sess->proc->tgid;
	qsort(pc, n, sizeof(*pc), cmp_pid);
	out[0] = '\0';
	for (i = 0; i < n;) {
		uint64_t sum = 0;
		size_t j = i;

		for (; j < n && pc[j].pid == pc[i].pid; j++)
			sum += pc[j].n;
		len += (size_t)snprintf(out + len, size - len, "%s%d:%llu",
					len ? " " : "", (int)pc[i].pid,
					(unsigned long long)sum);
		i = j;
	}
	free(pc);
	*text = out;
	return 0;
}

int seg_pids(uint64_t serial, struct perm_cred *c, char **text)
{
	struct fork_kids fk;
	int err;

	/* Refused before the host's process table is read (and again
	 * below, where the answer is made: the mode may change between). */
	{
		TABLE_READ();

		err = pids_may(serial_find(serial), c);
		if (err)
			return err;
	}
	fork_kids_get(serial, &fk);
	err = pids_locked(serial, c, text, &fk);
	fork_kids_free(&fk);
	return err;
}
