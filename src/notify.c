/*
 * The kernel caches .id/<shmid> names: drop them when the shmid goes.
 * Done from a thread of its own because the kernel may wait for a
 * request in progress on the directory.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "front.h"

static struct {
	struct fuse_session *se;
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int *queue;
	size_t len, cap;
	bool stopping;
} N = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
};

/*
 * At most this many names wait: beyond, a name stays cached until it
 * times out, which only matters if its shmid comes back (a whole cycle of
 * its slot's sequence) before that.
 */
#define NOTIFY_QUEUE_MAX (1u << 16)

void ops_shmid_freed(int shmid, bool named)
{
	/* a name the kernel never looked up is not cached: nothing to drop
	 * (and a private segment's create and IPC_RMID wake no thread) */
	if (!named)
		return;
	pthread_mutex_lock(&N.lock);
	if (N.len == N.cap) {
		size_t cap = N.cap ? N.cap * 2 : 64;
		int *q = cap <= NOTIFY_QUEUE_MAX
				 ? realloc(N.queue, cap * sizeof(*q))
				 : NULL;

		if (!q) { /* the name then times out on its own */
			pthread_mutex_unlock(&N.lock);
			return;
		}
		N.queue = q;
		N.cap = cap;
	}
	N.queue[N.len++] = shmid;
	pthread_cond_signal(&N.cond);
	pthread_mutex_unlock(&N.lock);
}

static void *notifier_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&N.lock);
	for (;;) {
		while (!N.len && !N.stopping)
			pthread_cond_wait(&N.cond, &N.lock);
		if (N.stopping)
			break;
		int shmid = N.queue[--N.len];
		char name[16];

		pthread_mutex_unlock(&N.lock);
		snprintf(name, sizeof(name), "%d", shmid);
		fuse_lowlevel_notify_inval_entry(N.se, INO_IDDIR, name,
						 strlen(name));
		pthread_mutex_lock(&N.lock);
	}
	pthread_mutex_unlock(&N.lock);
	return NULL;
}

int notify_start(struct fuse_session *se)
{
	N.se = se;
	N.stopping = false;
	if (pthread_create(&N.thread, NULL, notifier_main, NULL) != 0)
		return -EAGAIN;
	/* Named here, not by the thread when it first runs: the name is
	 * there before the first request is served (a loaded machine may run
	 * the thread later, and tests find it by its name). */
	pthread_setname_np(N.thread, "shmfs-inval");
	N.running = true;
	return 0;
}

void notify_stop(void)
{
	if (!N.running)
		return;
	pthread_mutex_lock(&N.lock);
	N.stopping = true;
	pthread_cond_signal(&N.cond);
	pthread_mutex_unlock(&N.lock);
	pthread_join(N.thread, NULL);
	N.running = false;
	free(N.queue);
	N.queue = NULL;
	N.len = N.cap = 0;
}
