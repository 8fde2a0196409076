/*
 * This process's attachments: address -> shmid and length, in a treap
 * ordered by address, and the detach requests that end their counts.
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

#include "client.h"

pthread_mutex_t att_lock = PTHREAD_MUTEX_INITIALIZER;
static struct attach *att_root;
size_t att_count;
uint32_t prio_state = 0x9e3779b9;

static uint32_t next_prio(void)
{
	uint32_t x = prio_state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	prio_state = x;
	return x;
}

/* *l gets the records below key, *r those at or above it. */
static void tree_split(struct attach *t, uintptr_t key, struct attach **l,
		       struct attach **r)
{
	if (!t) {
		*l = *r = NULL;
	} else if (t->addr < key) {
		tree_split(t->right, key, &t->right, r);
		*l = t;
	} else {
		tree_split(t->left, key, l, &t->left);
		*r = t;
	}
}

/* Every key in l is below every key in r. */
static struct attach *tree_merge(struct attach *l, struct attach *r)
{
	if (!l)
		return r;
	if (!r)
		return l;
	if (l->prio > r->prio) {
		l->right = tree_merge(l->right, r);
		return l;
	}
	r->left = tree_merge(l, r->left);
	return r;
}

/* Turns a subtree into a list chained through ->right. */
static struct attach *tree_to_list(struct attach *t, struct attach *list)
{
	if (!t)
		return list;
	list = tree_to_list(t->right, list);
	t->right = list;
	list = tree_to_list(t->left, t);
	t->left = NULL;
	return list;
}

static struct attach *att_find(uintptr_t addr)
{
	struct attach *t = att_root;

	while (t && t->addr != addr)
		t = addr < t->addr ? t->left : t->right;
	return t;
}

struct attach *att_take(uintptr_t addr)
{
	struct attach *l, *m, *r;

	if (!att_find(addr))
		return NULL;
	tree_split(att_root, addr, &l, &r);
	tree_split(r, addr + 1, &m, &r);
	att_root = tree_merge(l, r);
	if (m)
		att_count--;
	return m;
}

/*
 * Records a new mapping and returns, as a list, the records whose start
 * it now covers: their memory is gone (the program unmapped it, or
 * SHM_REMAP replaced it) and no shmdt can name them any more, so the
 * caller detaches them, as the kernel did when their mapping went.  A record
 * that begins below the new mapping and runs into it is cut short, so that its
 * shmdt unmaps only what is still its own.
 */
struct attach *att_insert(struct attach *a)
{
	uintptr_t end = a->addr + a->len;
	struct attach *l, *m, *r, *p, *gone;
	size_t n = 0;

	if (end < a->addr)
		end = UINTPTR_MAX;
	tree_split(att_root, a->addr, &l, &r);
	tree_split(r, end, &m, &r);
	gone = tree_to_list(m, NULL);
	for (p = gone; p; p = p->right)
		n++;
	for (p = l; p && p->right; p = p->right)
		;
	if (p && p->addr + p->len > a->addr)
		p->len = a->addr - p->addr;
	a->prio = next_prio();
	a->left = a->right = NULL;
	att_root = tree_merge(tree_merge(l, a), r);
	att_count = att_count + 1 - n;
	return gone;
}

/*
 * One attach of shmid ends.  Counted in record rec of our tally (an
 * attach from a kept descriptor, fastpath.c): taken from the record, and
 * the daemon asked only to settle a removed segment.  Otherwise the
 * daemon counted it, as a ref, and takes it back before the ioctl
 * returns.  Its error is not shmdt's: the memory is detached either way.
 * EINVAL means the daemon no longer counted it (the program closed our
 * control node, which ended the session); ENOTCONN, that the daemon is
 * gone.
 */
void detach_count(int shmid, unsigned int session, const struct my_tally *tm,
		  int rec, int locked)
{
	struct shmfs_detach d = { .shmid = shmid };
	int fd = atomic_load_explicit(&ctl_fd, memory_order_acquire);
	char eb[128];
	int r;

	/* an attach of an ended session is no longer counted */
	if (fd < 0 || session != atomic_load(&session_gen))
		return;
	/* in a forked child, the daemon counts the parent's records' share
	 * as refs of the child's: a plain detach */
	if (rec >= 0 && tm && tm == tally_mine()) {
		if (fast_detach(shmid, session, tm, (uint32_t)rec))
			return; /* live and not removed: nothing freed */
	} else {
		r = ctl_ioctl_fd(fd, SHMFS_IOC_DETACH, &d, locked);
		if (r < 0)
			dbg("shmid %d: SHMFS_IOC_DETACH: %s", shmid,
			    errtext(-r, eb, sizeof(eb)));
	}
	/* a removed segment this freed keeps nothing of ours open */
	kept_gone(shmid);
}

void detach_list(struct attach *list)
{
	struct attach *next;

	for (; list; list = next) {
		next = list->right;
		dbg("detaching shmid %d at %#lx: its start was mapped over",
		    list->shmid, (unsigned long)list->addr);
		detach_count(list->shmid, list->session, list->tm, list->rec,
			     0);
		free(list);
	}
}
