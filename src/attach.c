/*
 * Attach accounting.  Attaches are counted per process: a ref is "this
 * process holds one attach of this segment".  Refs are made by an attach
 * open and by fork (the child's, pending until the child claims them),
 * and go at shmdt (seg_detach) or when the process's last session ends:
 * a session is one process's use of one open file of the control node,
 * and the kernel tells us synchronously when the process closes it, also
 * at exit and exec.  nattch is the number of refs and the attaches
 * counted in tallies' records (tally.c).  Opens of segment
 * files (handles) keep a segment's memory while they last.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "killpoint.h"
#include "seg_impl.h"

/* ---- processes and refs ---- */

struct proc *proc_find(pid_t tgid)
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
	p = pcalloc(1, sizeof(*p));
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
	pfree(p);
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
	pfree(fp->kids);
	pfree(fp);
	T.npending--;
}

static struct fork_pending *fork_find(uint64_t token)
{
	struct fork_pending *fp = T.forks;

	while (fp && fp->token != token)
		fp = fp->next;
	return fp;
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
	pfree(r);
	T.nrefs--;
	s->ds.nattch--;
	seg_detached(s, lpid);
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

/* ---- opens and attaches ---- */

static struct ref *ref_new(struct seg *s)
{
	struct ref *r = pcalloc(1, sizeof(*r));

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
		seg_limits_for(&l, Tcfg.given.shmseg ? 0 : SEG_LIMIT_SHMMNI);
		if (p->nrefs + proc_tally_attaches(p) >= l.shmseg)
			return -EMFILE;
	}
	if ((err = seg_alloc_memory(s)))
		return err;
	h = pcalloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	if (attach) {
		/*
		 * The open's attach is a ref.  The session's record of s is
		 * bound now, if it has a tally, so that its process can count
		 * later attaches of s there without a request.
		 */
		r = ref_new(s);
		if (!r) {
			pfree(h);
			return -ENOMEM;
		}
		ref_own(r, p);
		(void)hold_get(p, s);
		s->ds.atime = seg_now();
		seg_set_lpid(s, c->pid);
		publish(s);
	}
	handle_add(h, s, attach ? p->sessions : NULL);
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
	return hold_detach(p, shmid, false);
}

/* ---- sessions ---- */

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
	s = session_new(tgid);
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
 * Unless its process's memory is known to be gone (mm_gone), what those
 * attaches mapped may still be mapped: their segments are left astray.
 * True when there are orphans whose children must be read.
 */
static void refs_astray(const struct ref *r)
{
	for (; r; r = r->o_next)
		r->seg->astray = true;
}

static bool session_end(struct session *s, bool mm_gone)
{
	struct proc *p = s->proc;
	struct session **pp;
	struct fork_pending *fp;
	uint64_t file = s->file;
	bool orphans = false;

	if (!mm_gone) {
		holds_astray(s);
		if (p->nsessions == 1)
			refs_astray(p->refs);
	}

	for (pp = &p->sessions; *pp != s; pp = &(*pp)->p_next)
		;
	*pp = s->p_next;
	for (pp = &T.by_file[file_bucket(file)]; *pp != s; pp = &(*pp)->f_next)
		;
	*pp = s->f_next;
	holds_drop(s);
	session_free(s);
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
	return !Tcfg.born || !Tcfg.next_born || born >= fp->since;
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

/*
 * The fork counted on file that tgid is the child of: of those it can be
 * the child of, the last counted before its birth.  (The oldest would be
 * wrong as soon as children end out of order: the youngest would take
 * the first fork, and the first child would find none.)
 */
static struct fork_pending *fork_of_child(uint64_t file, pid_t tgid,
					  pid_t parent, uint64_t born)
{
	struct fork_pending *fp, *last = NULL;

	for (fp = T.forks; fp; fp = fp->next)
		if (fp->file == file &&
		    fork_may_be_child(fp, tgid, parent, born) &&
		    (!last || fp->since > last->since))
			last = fp;
	return last;
}

/* A close of file by a process without a session there (its parent and
 * birth asked of the host before the lock), at its exit if mm_gone. */
static void stranger_closed(uint64_t file, pid_t tgid, pid_t parent,
			    uint64_t born, bool mm_gone)
{
	struct fork_pending *fp = fork_of_child(file, tgid, parent, born);

	if (fp) {
		if (!mm_gone) /* a child may map what it inherited */
			refs_astray(fp->refs);
		fork_drop(fp, tgid);
	}
}

/*
 * The parent's session on file is over: its forks there are orphans,
 * which only its children born after them (n of them in kids, asked of
 * the host before the lock; n < 0: not asked) may claim.
 */
static void forks_orphaned(uint64_t file, pid_t parent, const struct kid *kids,
			   int n)
{
	struct fork_pending *fp, *next;
	int i;

	for (fp = T.forks; fp; fp = next) {
		next = fp->next;
		if (fp->parent != parent || fp->file != file || !fp->orphan ||
		    fp->scanned)
			continue;
		if (n == -EAGAIN)
			continue; /* not asked: its parent's children may */
		fp->scanned = true;
		fp->kids = n > 0 ? pcalloc((size_t)n, sizeof(*fp->kids)) : NULL;
		for (i = 0; fp->kids && i < n; i++)
			if (born_after(fp, kids[i].born))
				fp->kids[fp->nkids++] = kids[i].pid;
		if (!fp->nkids)
			fork_drop(fp, parent);
	}
}

static bool forks_exist(void)
{
	TABLE_READ();
	return T.forks != NULL;
}

static bool forks_pending(pid_t parent);

/*
 * What the host says that a close may need, asked before the lock and
 * only while forks are pending: the closer's parent and birth (a child
 * that never claimed, closing), its children (a parent whose forks become
 * orphans).  The close is then one transaction, which a resend after a
 * server's death applies whole or finds applied.
 */
/* Does the session of tgid on file count any attach (or, forks pending,
 * has it none: a child that may close what a fork counts for it)? */
static bool session_counts(uint64_t file, pid_t tgid, bool forks)
{
	const struct session *s;
	const struct hold *h;
	TABLE_READ();

	s = session_find(proc_find(tgid), file);
	if (!s)
		return forks;
	if (s->proc->nsessions == 1 && s->proc->refs)
		return true;
	for (h = s->holds; h; h = h->h_next)
		if (hold_own(h) > 0)
			return true;
	return false;
}

void seg_session_close(uint64_t file, pid_t tgid)
{
	seg_session_close_by(file, tgid, tgid);
}

void seg_session_close_by(uint64_t file, pid_t tgid, pid_t tid)
{
	struct kid *kids = NULL;
	int nkids = -EAGAIN;
	pid_t parent = -1;
	uint64_t born = 0;
	bool forks = forks_exist();
	bool mm_gone = false;
	struct session *s;

	/* A process closing at its exit has no memory left by then: what
	 * it attached is mapped no more (asked only if it counts any). */
	if (Tcfg.mm_gone && session_counts(file, tgid, forks))
		mm_gone = Tcfg.mm_gone(tid);
	if (forks && Tcfg.parent_of) {
		parent = Tcfg.parent_of(tgid);
		born = Tcfg.born ? Tcfg.born(tgid) : 0;
	}
	if (forks && forks_pending(tgid))
		nkids = kids_of(tgid, &kids);
	{
		TABLE_LOCK();
		s = session_find(proc_find(tgid), file);
		/* Closes by vfork children and other strangers find no
		 * fork. */
		if (!s && T.forks && Tcfg.parent_of)
			stranger_closed(file, tgid, parent, born, mm_gone);
		else if (s && s->opens <= 1) {
			bool orphans = session_end(s, mm_gone);

			killpoint("close"); /* detached, not committed */
			if (orphans)
				forks_orphaned(file, tgid, kids, nkids);
		} else if (s) {
			s->opens--;
		}
	}
	free(kids);
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
		session_end(s, false);
		s = T.by_file[file_bucket(file)];
	}
	for (fp = T.forks; fp; fp = next) {
		next = fp->next;
		if (fp->file == file) {
			refs_astray(fp->refs);
			fork_drop(fp, fp->parent);
		}
	}
}

/* ---- fork ---- */

static bool forks_pending(pid_t parent)
{
	struct fork_pending *fp;
	TABLE_READ();

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
	if (ncand) /* kids is NULL when there are none */
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

/* One attach of s counted for fp's child (on failure, none of fp's). */
static int fork_ref(struct fork_pending *fp, struct seg *s, pid_t parent,
		    int64_t now, uint32_t *count)
{
	struct ref *child = ref_new(s);

	if (!child) {
		fork_drop(fp, parent);
		*count = 0;
		return -ENOMEM;
	}
	child->fp = fp;
	olist_insert(&fp->refs, child);
	s->ds.atime = now;
	seg_set_lpid(s, parent);
	publish(s);
	(*count)++;
	return 0;
}

int seg_fork(uint64_t file, struct perm_cred *c, uint64_t *token,
	     uint32_t *count)
{
	struct fork_pending *fp;
	struct kid *kids = NULL;
	struct seg_limits l;
	struct session *ss;
	struct hold *hd;
	struct proc *p;
	struct ref *r;
	uint32_t n;
	int64_t now;
	int nkids = -1, err;
	uint64_t tok = 0;
	/* before the lock: the host is asked nothing under it */
	uint64_t since = Tcfg.next_born ? Tcfg.next_born() : 0;

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
	if (!p || (!p->nrefs && !proc_tally_attaches(p)))
		return 0;
	/* the child claims through the file it inherits: this one */
	if (!session_find(p, file))
		return -EPROTO;
	if (fork_find(tok))
		return -EAGAIN;
	fp = pcalloc(1, sizeof(*fp));
	if (!fp)
		return -ENOMEM;
	fp->token = tok;
	fp->file = file;
	fp->parent = c->pid;
	fp->since = since;
	/* a successor's count of pid wraps goes on from here */
	if (since > T.born_hint)
		T.born_hint = since;
	fp->next = T.forks;
	T.forks = fp;
	killpoint("fork"); /* pending, its refs not counted yet */
	T.npending++;
	now = seg_now();
	for (r = p->refs; r; r = r->o_next)
		if ((err = fork_ref(fp, r->seg, c->pid, now, count)))
			return err;
	/* what a process wrote in its records buys no more than shmseg */
	seg_limits_for(&l, Tcfg.given.shmseg ? 0 : SEG_LIMIT_SHMMNI);
	for (ss = p->sessions; ss; ss = ss->p_next)
		for (hd = ss->holds; hd; hd = hd->h_next)
			for (n = hold_own(hd); n && *count < l.shmseg; n--)
				if ((err = fork_ref(fp, hd->seg, c->pid, now,
						    count)))
					return err;
	*token = fp->token;
	return 0;
}

int seg_fork_child(uint64_t file, struct perm_cred *c, uint64_t token)
{
	struct fork_pending *fp;
	struct proc *p;
	/* who the caller is, asked before the lock */
	pid_t parent = Tcfg.parent_of ? Tcfg.parent_of(c->pid) : -1;
	uint64_t born = Tcfg.born ? Tcfg.born(c->pid) : 0;
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
		killpoint("claim"); /* some refs the child's, some not */
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

/* At seg_fini: every handle, pending fork and process goes. */
void attach_fini(void)
{
	unsigned b;

	while (T.handles) {
		struct seg_handle *h = T.handles;

		T.handles = h->next;
		pfree(h);
	}
	while (T.forks) {
		while (T.forks->refs) {
			struct ref *r = T.forks->refs;

			olist_remove(&T.forks->refs, r);
			pfree(r);
		}
		fork_unlink(T.forks);
	}
	for (b = 0; b < PROC_BUCKETS; b++)
		while (T.procs[b]) {
			struct proc *p = T.procs[b];

			while (p->refs) {
				struct ref *r = p->refs;

				olist_remove(&p->refs, r);
				pfree(r);
			}
			while (p->sessions) {
				struct session *s = p->sessions;

				p->sessions = s->p_next;
				session_free(s);
			}
			T.procs[b] = p->next;
			pfree(p);
		}
	memset(T.by_file, 0, sizeof(T.by_file));
	T.nhandles = T.nprocs = T.npending = T.nsessions = T.nrefs = 0;
}
