/*
 * The fork protocol: the daemon counts a child's inherited attaches
 * before fork() returns (SHMFS_IOC_FORK in the prepare handler), the
 * child claims them before its first request, the parent gives them back
 * if fork failed.
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
#include <sys/ioctl.h>

#include "client.h"

/*
 * fork must never see an attach half made or half undone: the daemon's
 * count for the child has to match the descriptors the child inherits.
 * So each shmat and shmdt is "active" from start to end, and fork waits
 * until none is and keeps new ones from starting (a stream of attaches
 * cannot hold a fork off) by holding fork_lock across fork.  This is a
 * shared/exclusive lock in effect; it is not a pthread_rwlock because
 * glibc cannot unlock one in the child, where the thread id of the
 * forking thread has changed.  att_lock guards the tree itself.
 */
static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fork_cond = PTHREAD_COND_INITIALIZER;
static unsigned int active_calls;
static unsigned int forks_waiting;
/* Some thread waited on fork_cond since it last started afresh. */
static int cond_waited;
/* Carried from the prepare handler to the parent and child handlers. */
static struct shmfs_fork fork_msg;
static int fork_counted;
static int fork_saved_errno;

void active_enter(void)
{
	pthread_mutex_lock(&fork_lock);
	while (forks_waiting) {
		cond_waited = 1;
		pthread_cond_wait(&fork_cond, &fork_lock);
	}
	active_calls++;
	pthread_mutex_unlock(&fork_lock);
}

void active_leave(void)
{
	pthread_mutex_lock(&fork_lock);
	if (--active_calls == 0 && forks_waiting)
		pthread_cond_broadcast(&fork_cond);
	pthread_mutex_unlock(&fork_lock);
}

/*
 * A child's part waits for its first call into us: the claim of what its
 * fork counted for it (a child that only runs and exits, or execs, never
 * crosses for it, and its close of the .ctl it inherited ends the fork),
 * and letting go of its parent's tally and kept descriptors.  The child
 * handler only unlocks and flags: every page a child writes, or runs code
 * from, is a fault of its own after fork.  Whatever the child sends
 * first, the claim goes before: a session started otherwise could not
 * claim.
 */
static struct shmfs_fork claim_msg;
static int claim_counted;
static atomic_int child_pending;
static pthread_mutex_t claim_lock = PTHREAD_MUTEX_INITIALIZER;
static const pthread_mutex_t mutex_fresh = PTHREAD_MUTEX_INITIALIZER;
static const pthread_cond_t cond_fresh = PTHREAD_COND_INITIALIZER;

void fork_claim(void)
{
	int fd, e;

	if (!atomic_load_explicit(&child_pending, memory_order_acquire))
		return;
	e = errno;
	pthread_mutex_lock(&claim_lock);
	if (atomic_load_explicit(&child_pending, memory_order_relaxed)) {
		tally_forget(); /* its mapping stayed with the parent */
		kept_forget();
		fd = atomic_load_explicit(&ctl_fd, memory_order_acquire);
		/* closed by the program: that close ended the fork */
		if (claim_counted && fd_still(fd, &ctl_ident) &&
		    ioctl(fd, SHMFS_IOC_FORK_CHILD, &claim_msg) < 0)
			dbg("fork: SHMFS_IOC_FORK_CHILD: errno %d", errno);
		claim_counted = 0;
		atomic_store_explicit(&child_pending, 0, memory_order_release);
	}
	pthread_mutex_unlock(&claim_lock);
	errno = e;
}

static void atfork_prepare(void)
{
	int saved = errno;
	int fd, r;

	fork_claim(); /* what we inherited is ours before we hand it on */

	/* fork_lock stays locked until the parent or child handler. */
	pthread_mutex_lock(&fork_lock);
	forks_waiting++;
	while (active_calls) {
		cond_waited = 1;
		pthread_cond_wait(&fork_cond, &fork_lock);
	}
	forks_waiting--;
	pthread_mutex_lock(&init_lock);
	fork_counted = 0;
	fd = atomic_load_explicit(&ctl_fd, memory_order_relaxed);
	if (fd >= 0 && att_count > 0) {
		memset(&fork_msg, 0, sizeof(fork_msg));
		r = ctl_ioctl_fd(fd, SHMFS_IOC_FORK, &fork_msg, 1);
		if (r == 0) {
			fork_counted = 1;
			if (fork_msg.count != att_count)
				dbg("fork: daemon counted %u attaches, we hold"
				    " %zu",
				    fork_msg.count, att_count);
		} else {
			char eb[128];

			dbg("fork: SHMFS_IOC_FORK: %s; the child's attaches"
			    " are not counted",
			    errtext(-r, eb, sizeof(eb)));
		}
	}
	fork_saved_errno = saved;
	/*
	 * fork() leaves errno alone when it succeeds: that is how the parent
	 * handler tells success from failure.
	 */
	errno = 0;
}

static void atfork_parent(void)
{
	int e = errno;
	int fd = atomic_load_explicit(&ctl_fd, memory_order_relaxed);

	if (e != 0) {
		if (fork_counted && ioctl(fd, SHMFS_IOC_FORK_ABORT, &fork_msg))
			dbg("fork: SHMFS_IOC_FORK_ABORT: errno %d", errno);
		errno = e;
	} else {
		errno = fork_saved_errno;
	}
	fork_counted = 0;
	pthread_mutex_unlock(&init_lock);
	/* Calls that waited for this fork may start. */
	pthread_cond_broadcast(&fork_cond);
	pthread_mutex_unlock(&fork_lock);
}

static void atfork_child(void)
{
	int fd = atomic_load_explicit(&ctl_fd, memory_order_relaxed);

	/*
	 * Plain mutexes may be unlocked here by the thread that locked them
	 * before fork.  Locks another thread held (or waited on) at the fork
	 * start afresh, by assignment: no call, no page of code to fault in.
	 * The rest waits for the child's first call (fork_claim).
	 */
	if (cond_waited) {
		fork_cond = cond_fresh;
		cond_waited = 0;
	}
	if (forks_waiting)
		forks_waiting = 0;
	pthread_mutex_unlock(&init_lock);
	pthread_mutex_unlock(&fork_lock);
	claim_lock = mutex_fresh;
	if (fork_counted && fd >= 0) {
		claim_msg = fork_msg;
		claim_counted = 1;
	}
	atomic_store_explicit(&child_pending, 1, memory_order_release);
	fork_counted = 0;
	errno = fork_saved_errno;
}

/*
 * Registered at load rather than at first use: prepare handlers run in
 * reverse order of registration and parent handlers in order, so being
 * early makes ours the last to touch errno before fork and the first to
 * read it after.
 */
__attribute__((constructor)) static void shmfs_lib_init(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}
