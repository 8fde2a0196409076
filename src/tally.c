/*
 * Sessions as readers of the published table know them
 * (docs/attach-design.md): each session has a sid, the lowest free one,
 * and a generation that grows with every session the sid names, so that
 * (sid, gen) never names two sessions.  The table publishes
 * sessions[sid] = {gen, pid} while the session lives and {0, 0} after.
 */
#include <errno.h>
#include <string.h>

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
	if (!++T.sid_gen[sid])
		T.sid_gen[sid] = 1; /* gen 0 is none */
	s->sid = sid;
	s->gen = T.sid_gen[sid];
	sid_publish(sid, s->gen, tgid);
	return s;
}

void session_free(struct session *s)
{
	sid_mark(s->sid, false);
	sid_publish(s->sid, 0, 0);
	pfree(s);
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
