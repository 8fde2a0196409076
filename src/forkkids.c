/*
 * Who a pending fork's children are, as far as the host's process table
 * tells: a process's children and their births (asked outside the lock),
 * and, for user.shm.pids, the child each pending fork counts attaches
 * for.  A child that has not claimed its fork yet (it made no request:
 * libshmfs claims at the first) is named by its own pid, as the kernel
 * would count its inherited mappings as its own.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include "seg.h"
#include "seg_impl.h"

/* How many children lists were read, for the stats (each one a read of
 * /proc per thread of the parent, and one birth read per child). */
static _Atomic uint64_t kids_reads;

uint64_t kids_read_count(void)
{
	return kids_reads;
}

int kids_of(pid_t parent, struct kid **out)
{
	pid_t *pids = NULL;
	struct kid *kids;
	int n, i;

	*out = NULL;
	if (!Tcfg.children_of)
		return -ENOSYS;
	kids_reads++;
	n = Tcfg.children_of(parent, &pids);
	if (n <= 0)
		return n;
	kids = calloc((size_t)n, sizeof(*kids));
	if (!kids) {
		free(pids);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		kids[i].pid = pids[i];
		kids[i].born = Tcfg.born ? Tcfg.born(pids[i]) : 0;
	}
	free(pids);
	*out = kids;
	return n;
}

/* A pending fork whose parent's session ended is matched to the children
 * it read then; the others to their parent's children now. */
static bool orphaned(const struct fork_pending *fp)
{
	return fp->orphan && fp->scanned;
}

static int group_of(struct fork_kids *fk, const struct fork_pending *fp)
{
	int j;

	for (j = 0; j < fk->n; j++)
		if (fk->p[j].parent == fp->parent &&
		    fk->p[j].orphan == orphaned(fp))
			return j;
	if (fk->n == FORK_KIDS_PARENTS)
		return -1;
	fk->p[fk->n].parent = fp->parent;
	fk->p[fk->n].orphan = orphaned(fp);
	fk->p[fk->n].kids = NULL;
	fk->p[fk->n].nkids = 0;
	return fk->n++;
}

/* An orphan fork's children, as it read them, joined to its group's. */
static void group_add_kids(struct fork_kids *fk, int j,
			   const struct fork_pending *fp)
{
	struct kid *more;
	int i, n = fk->p[j].nkids;

	if (!fp->nkids || n + fp->nkids > FORK_KIDS_MAX)
		return;
	more = realloc(fk->p[j].kids, sizeof(*more) * (size_t)(n + fp->nkids));
	if (!more)
		return;
	for (i = 0; i < fp->nkids; i++)
		more[n + i].pid = fp->kids[i];
	fk->p[j].kids = more;
	fk->p[j].nkids = n + fp->nkids;
}

static int cmp_kid_pid(const void *a, const void *b)
{
	pid_t x = ((const struct kid *)a)->pid;
	pid_t y = ((const struct kid *)b)->pid;

	return (x > y) - (x < y);
}

/* An orphan group's children: once each, those still there, born when
 * (asked of the host, outside the lock). */
static void orphan_kids_settle(struct kid *kids, int *nkids)
{
	int i, n = 0;

	qsort(kids, (size_t)*nkids, sizeof(*kids), cmp_kid_pid);
	for (i = 0; i < *nkids; i++) {
		if (n && kids[n - 1].pid == kids[i].pid)
			continue;
		if (kill(kids[i].pid, 0) < 0 && errno != EPERM)
			continue;
		kids[n].pid = kids[i].pid;
		kids[n++].born = Tcfg.born ? Tcfg.born(kids[i].pid) : 0;
	}
	*nkids = n;
}

void fork_kids_get(uint64_t serial, struct fork_kids *fk)
{
	int j;

	fk->n = 0;
	{
		const struct seg *s;
		const struct ref *r;
		TABLE_READ();

		s = serial_find(serial);
		for (r = s ? s->refs : NULL; r; r = r->s_next) {
			if (!r->fp || (r->fp->orphan && !r->fp->scanned))
				continue;
			j = group_of(fk, r->fp);
			if (j >= 0 && orphaned(r->fp))
				group_add_kids(fk, j, r->fp);
		}
	}
	for (j = 0; j < fk->n; j++) {
		if (fk->p[j].orphan) {
			orphan_kids_settle(fk->p[j].kids, &fk->p[j].nkids);
			continue;
		}
		fk->p[j].nkids = kids_of(fk->p[j].parent, &fk->p[j].kids);
		if (fk->p[j].nkids < 0)
			fk->p[j].nkids = 0;
	}
}

void fork_kids_free(struct fork_kids *fk)
{
	int i;

	for (i = 0; i < fk->n; i++)
		free(fk->p[i].kids);
	fk->n = 0;
}

static int cmp_kid_born(const void *a, const void *b)
{
	uint64_t x = ((const struct kid *)a)->born;
	uint64_t y = ((const struct kid *)b)->born;

	return (x > y) - (x < y);
}

static int cmp_fork_since(const void *a, const void *b)
{
	uint64_t x = (*(struct fork_pending *const *)a)->since;
	uint64_t y = (*(struct fork_pending *const *)b)->since;

	return (x > y) - (x < y);
}

static int cmp_guess(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)((const struct fork_guess *)a)->fp;
	uintptr_t y = (uintptr_t)((const struct fork_guess *)b)->fp;

	return (x > y) - (x < y);
}

/*
 * One parent's children against its pending forks, both in order of
 * time: a child belongs to the last fork counted before its birth, and
 * a fork's child is the first such child that has no session (has not
 * claimed, nor started one of its own).  guess[k] of forks[k].
 */
static void match_parent(struct kid *kids, int nkids,
			 struct fork_pending **forks, int nforks, pid_t *guess)
{
	int k = -1, i;

	qsort(kids, (size_t)nkids, sizeof(*kids), cmp_kid_born);
	qsort(forks, (size_t)nforks, sizeof(*forks), cmp_fork_since);
	for (i = 0; i < nkids; i++) {
		const struct proc *p;

		while (k + 1 < nforks && forks[k + 1]->since <= kids[i].born)
			k++;
		if (k < 0 || guess[k])
			continue;
		p = proc_find(kids[i].pid);
		if (!p || !p->nsessions)
			guess[k] = kids[i].pid;
	}
}

static bool in_group(const struct fork_kids *fk, int i,
		     const struct fork_pending *fp)
{
	return fp->parent == fk->p[i].parent &&
	       (fp->orphan ? fp->scanned && fk->p[i].orphan : !fk->p[i].orphan);
}

/*
 * The child of each pending fork of fk's parents, as fork_guess pairs
 * (malloc'd, NULL when none, sorted for fork_guess_of); their number.  Under
 * the lock, which fk's reading was not.
 */
int fork_guesses(const struct fork_kids *fk, struct fork_guess **out)
{
	struct fork_pending **forks = NULL, *fp;
	struct fork_guess *g = NULL;
	pid_t *guess = NULL;
	int ng = 0, n, i, k;

	*out = NULL;
	for (i = 0; i < fk->n; i++) {
		n = 0;
		for (fp = T.forks; fp; fp = fp->next)
			n += in_group(fk, i, fp);
		if (!n || !fk->p[i].nkids)
			continue;
		free(forks);
		free(guess);
		forks = malloc(sizeof(*forks) * (size_t)n);
		guess = calloc((size_t)n, sizeof(*guess));
		{
			struct fork_guess *more =
				realloc(g, sizeof(*g) * (size_t)(ng + n));

			if (more)
				g = more;
			if (!forks || !guess || !more)
				break;
		}
		n = 0;
		for (fp = T.forks; fp; fp = fp->next)
			if (in_group(fk, i, fp))
				forks[n++] = fp;
		match_parent(fk->p[i].kids, fk->p[i].nkids, forks, n, guess);
		for (k = 0; k < n; k++)
			if (guess[k]) {
				g[ng].fp = forks[k];
				g[ng++].child = guess[k];
			}
	}
	free(forks);
	free(guess);
	if (ng)
		qsort(g, (size_t)ng, sizeof(*g), cmp_guess);
	*out = g;
	return ng;
}

/* The child fp counts for, by the guesses (its parent when unknown). */
pid_t fork_guess_of(const struct fork_pending *fp, const struct fork_guess *g,
		    int ng)
{
	struct fork_guess key = { .fp = fp };
	const struct fork_guess *hit =
		ng ? bsearch(&key, g, (size_t)ng, sizeof(*g), cmp_guess) : NULL;

	return hit ? hit->child : fp->parent;
}
