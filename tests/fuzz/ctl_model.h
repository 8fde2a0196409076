/*
 * The reference model of fuzz_ctl.c, in a file of its own: which
 * segments exist, every process's attaches and its sessions per control
 * file, the pending forks, held lookups and open handles, SHM_LOCK
 * charges, and the rules that change them (a detach that frees a removed
 * segment, the end of a session, a child killed before its claim).  It
 * is part of fuzz_ctl.c's one translation unit, included after the
 * fake host it asks (fake_parent_of, fake_start_time) and CHECK.
 */
#ifndef SHMFS_FUZZ_CTL_MODEL_H
#define SHMFS_FUZZ_CTL_MODEL_H

struct mseg {
	bool used;		/* entry in use */
	bool live;		/* the shmid exists */
	bool removed;
	int shmid;
	key_t key;		/* as created */
	uint64_t serial;
	uint64_t pages;
	uint32_t refs[NPID];	/* attaches held by process i+1 */
	bool locked;		/* SHM_LOCKed, its pages charged to lock_uid */
	uid_t lock_uid;
};

struct mfork {
	bool used;
	uint64_t token;
	int file;		/* the control file it was counted on */
	pid_t parent;
	uint64_t order;
	uint64_t since;		/* ticks at the fork */
	uint32_t cnt[MAXSEG];
};

static struct {
	struct mseg seg[MAXSEG];
	struct mfork fork[MAXFORK];
	uint64_t fork_order;
	/* opens of control file f (process f's own) by process p not yet
	 * closed: sess[f - 1][p - 1]; a session while non-zero */
	uint32_t sess[NPID][NPID];
	struct {
		struct seg_handle *h;
		uint64_t serial;
	} handle[MAXHANDLE];
	int nhandles;
	struct {
		uint64_t serial;
		uint64_t n;
	} hold[MAXHOLD];
	int nholds;
	int known[64];		/* shmids seen, for steering */
	int nknown;
	bool timed;		/* born and next_born are given */
	struct {
		uid_t uid;
		uint64_t pages;
	} charge[16];		/* SHM_LOCK charges by user */
	int ncharges;
	int nfreed;		/* shmids gone for good */
} M;

static int m_find(int shmid)
{
	int i;

	for (i = 0; i < MAXSEG; i++)
		if (M.seg[i].used && M.seg[i].live && M.seg[i].shmid == shmid)
			return i;
	return -1;
}

static int m_find_serial(uint64_t serial)
{
	int i;

	for (i = 0; i < MAXSEG; i++)
		if (M.seg[i].used && M.seg[i].serial == serial)
			return i;
	return -1;
}

static uint64_t m_nattch(int i)
{
	uint64_t n = 0;
	int p, f;

	for (p = 0; p < NPID; p++)
		n += M.seg[i].refs[p];
	for (f = 0; f < MAXFORK; f++)
		if (M.fork[f].used)
			n += M.fork[f].cnt[i];
	return n;
}

static uint64_t m_proc_refs(int pid)
{
	uint64_t n = 0;
	int i;

	for (i = 0; i < MAXSEG; i++)
		if (M.seg[i].used)
			n += M.seg[i].refs[pid - 1];
	return n;
}

static bool m_has_session(int pid)
{
	int f;

	for (f = 0; f < NPID; f++)
		if (M.sess[f][pid - 1])
			return true;
	return false;
}

static bool m_proc_exists(int pid)
{
	return m_has_session(pid) || m_proc_refs(pid);
}

static uint64_t m_holds(uint64_t serial)
{
	int i;

	for (i = 0; i < M.nholds; i++)
		if (M.hold[i].serial == serial)
			return M.hold[i].n;
	return 0;
}

static int m_handles(uint64_t serial)
{
	int i, n = 0;

	for (i = 0; i < M.nhandles; i++)
		if (M.handle[i].serial == serial)
			n++;
	return n;
}

/* Is the object behind entry i still there (live, held or open)? */
static bool m_object(int i)
{
	return M.seg[i].live || m_holds(M.seg[i].serial) ||
	       m_handles(M.seg[i].serial);
}

/* A dead entry nobody refers to any more is forgotten. */
static void m_gc(void)
{
	int i;

	for (i = 0; i < MAXSEG; i++)
		if (M.seg[i].used && !m_object(i))
			memset(&M.seg[i], 0, sizeof(M.seg[i]));
}

static uint64_t *m_charge(uid_t uid)
{
	int i;

	for (i = 0; i < M.ncharges; i++)
		if (M.charge[i].uid == uid)
			return &M.charge[i].pages;
	CHECK(M.ncharges < 16, "too many users lock");
	M.charge[M.ncharges].uid = uid;
	M.charge[M.ncharges].pages = 0;
	return &M.charge[M.ncharges++].pages;
}

static void m_unlock(int i)
{
	if (!M.seg[i].locked)
		return;
	M.seg[i].locked = false;
	*m_charge(M.seg[i].lock_uid) -= M.seg[i].pages;
}

static void m_maybe_free(int i)
{
	if (M.seg[i].live && M.seg[i].removed && !m_nattch(i)) {
		M.seg[i].live = false;
		M.nfreed++;
		m_unlock(i);	/* the charge goes with the shmid */
	}
}

static void m_rmid(int i)
{
	M.seg[i].removed = true;
	m_maybe_free(i);
}

static void m_fork_drop(int f)
{
	int i;

	M.fork[f].used = false;
	for (i = 0; i < MAXSEG; i++) {
		M.fork[f].cnt[i] = 0;
		if (M.seg[i].used)
			m_maybe_free(i);
	}
}

/* Process pid closes control file file. */
static void m_session_close(int file, int pid)
{
	int i, f, best = -1;
	pid_t parent;

	if (M.sess[file - 1][pid - 1]) {
		if (--M.sess[file - 1][pid - 1])
			return;
		/* its pending forks there are orphans; with no children_of,
		 * none has a child that could claim it: all go */
		for (f = 0; f < MAXFORK; f++)
			if (M.fork[f].used && M.fork[f].parent == pid &&
			    M.fork[f].file == file)
				m_fork_drop(f);
		if (m_has_session(pid))
			return;
		for (i = 0; i < MAXSEG; i++) {
			M.seg[i].refs[pid - 1] = 0;
			if (M.seg[i].used)
				m_maybe_free(i);
		}
		return;
	}
	/* no session there: a child killed before it claimed, its parent's
	 * oldest pending fork on that file that it is not older than */
	parent = fake_parent_of(pid);
	for (f = 0; f < MAXFORK; f++)
		if (M.fork[f].used && M.fork[f].parent == parent &&
		    M.fork[f].file == file &&
		    (!M.timed || fake_start_time(pid) >= M.fork[f].since) &&
		    (best < 0 || M.fork[f].order < M.fork[best].order))
			best = f;
	if (best >= 0)
		m_fork_drop(best);
}

static void note_known(int shmid)
{
	M.known[M.nknown % 64] = shmid;
	M.nknown++;
}

/* A shmid to steer a request to: a known one (live or not) or raw. */
static int pick_shmid(uint8_t sel, int raw)
{
	int n = M.nknown < 64 ? M.nknown : 64;

	if (!n)
		return raw;
	return M.known[sel % n];
}

#endif
