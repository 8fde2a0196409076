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
#include <string.h>
#include <sys/mman.h>
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

void session_free(struct session *s)
{
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
