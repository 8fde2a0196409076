/*
 * The fixture of the table's unit tests (test_table.c, test_attach.c,
 * test_segmem.c): an empty table with a fake configuration: limits the
 * test chooses, a host_limits that counts its calls, a clock it sets, a
 * freed callback that records shmids, and the host facts forks ask for
 * (parents, children, births); and helpers that call the table as the
 * front end does.
 */
#ifndef SHMFS_SEG_FIXTURE_H
#define SHMFS_SEG_FIXTURE_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>

#include "seg.h"
#include "unit.h"

#define PAGE 4096
#define ALICE 1000
#define AGRP 100
#define BOB 2000
#define BGRP 200
#define CAROL 3000		/* in AGRP, owns nothing */
#define KEY 0x1234
#define ID(seq, slot) ((int)((unsigned)(seq) << SHMFS_ID_SHIFT | (slot)))
#define SLOT(id) ((id) & (SHMFS_MAX_SLOTS - 1))

/* ---- the fake configuration ---- */

static struct {
	struct seg_limits host;		/* what host_limits reports */
	int host_calls;
	int64_t clock;
	int freed[64];			/* the first shmids freed */
	int nfreed;
	int last_freed;
	int nnamed;			/* of those, freed with a lookup held */
	struct {
		pid_t child, parent;
	} parents[8];
	int nparents;
} fake;

static inline void fake_host_limits(struct seg_limits *out, unsigned want)
{
	fake.host_calls++;
	if (want & SEG_LIMIT_SHMMAX)
		out->shmmax = fake.host.shmmax;
	if (want & SEG_LIMIT_SHMALL)
		out->shmall = fake.host.shmall;
	if (want & SEG_LIMIT_SHMMNI)
		out->shmmni = fake.host.shmmni;
}

static inline int64_t fake_now(void)
{
	return fake.clock;
}

static inline void fake_freed(int shmid, bool named)
{
	fake.nnamed += named;
	if (fake.nfreed < (int)(sizeof(fake.freed) / sizeof(fake.freed[0])))
		fake.freed[fake.nfreed] = shmid;
	fake.nfreed++;
	fake.last_freed = shmid;
}

/* A process's own open of the control node: its file id is its pid.  A
 * forked child inherits its parent's (and claims, closes through it). */
#define CTL(pid) ((uint64_t)(pid))

static inline pid_t fake_parent_of(pid_t tgid)
{
	int i;

	for (i = 0; i < fake.nparents; i++)
		if (fake.parents[i].child == tgid)
			return fake.parents[i].parent;
	return -1;
}

/* Start times in ticks; 0 means "not told". */
static uint64_t fake_starts[1024];
static uint64_t fake_ticks;

static inline uint64_t fake_start_time(pid_t tgid)
{
	return tgid >= 0 && tgid < 1024 ? fake_starts[tgid] : 0;
}

static inline uint64_t fake_ticks_now(void)
{
	return fake_ticks;
}

static inline void fake_parent(pid_t child, pid_t parent)
{
	fake.parents[fake.nparents].child = child;
	fake.parents[fake.nparents].parent = parent;
	fake.nparents++;
}

static const struct seg_limits std_limits = {
	.shmmax = 1 << 24,
	.shmmin = 1,
	.shmall = 1 << 20,
	.shmmni = 128,
	.shmseg = 64,
};

/*
 * An empty table with these limits given (0: follow the fake host), and
 * a publisher if pub is set.
 */
static inline void setup_pub(const struct seg_limits *given,
		      const struct seg_publisher *pub)
{
	struct seg_config cfg = {
		.given = *given,
		.host_limits = fake_host_limits,
		.parent_of = fake_parent_of,
		.freed = fake_freed,
		.now = fake_now,
		.page_size = PAGE,
		.pub = pub,
	};

	seg_fini();
	memset(&fake, 0, sizeof(fake));
	fake.host.shmmax = 1 << 20;
	fake.host.shmall = 1 << 20;
	fake.host.shmmni = 4096;
	fake.clock = 1000;
	CHECK_EQ(seg_init(&cfg), 0);
}

static inline void setup(const struct seg_limits *given)
{
	setup_pub(given, NULL);
}

/* ---- helpers ---- */

static inline struct perm_cred who(uid_t uid, gid_t gid, pid_t pid)
{
	struct perm_cred c;

	perm_cred_init(&c, uid, gid, pid);
	return c;
}

static struct perm_cred root_cred = { .uid = 0, .gid = 0, .pid = 1,
				      .ngroups = -1 };

/* shmget as uid/gid with pid; the shmid, or -errno. */
static inline int get_as(uid_t uid, gid_t gid, pid_t pid, key_t key, uint64_t size,
		  int flags)
{
	struct perm_cred c = who(uid, gid, pid);
	int id = -12345, err;

	err = seg_get(key, size, flags, &c, &id);
	perm_cred_fini(&c);
	if (err)
		return err;
	return id;
}

static inline int get(key_t key, uint64_t size, int flags)
{
	return get_as(ALICE, AGRP, 501, key, size, flags);
}

static inline int ctl_as(struct perm_cred *c, int cmd, int id, struct shmfs_ctl *io)
{
	memset(io, 0, sizeof(*io));
	io->id = id;
	io->cmd = cmd;
	io->ret = -777;
	return seg_ctl(c, io);
}

static inline int ctl(int cmd, int id, struct shmfs_ctl *io)
{
	return ctl_as(&root_cred, cmd, id, io);
}

/* IPC_STAT as root. */
static inline int stat_id(int id, struct shmfs_ds *ds)
{
	struct shmfs_ctl io;
	int err = ctl(IPC_STAT, id, &io);

	*ds = io.u.ds;
	return err;
}

static inline int rmid(int id)
{
	struct shmfs_ctl io;

	return ctl(IPC_RMID, id, &io);
}

static inline uint64_t nattch(int id)
{
	struct shmfs_ds ds;

	if (stat_id(id, &ds))
		return (uint64_t)-1;
	return ds.nattch;
}

static inline uint64_t serial_of(int id)
{
	struct seg_view v;

	if (seg_lookup_id(id, false, &v))
		return 0;
	return v.serial;
}

/* Open the segment of id as root with this tgid; attach or plain. */
static inline int open_id(int id, pid_t pid, bool attach, struct seg_handle **h)
{
	struct perm_cred c = who(0, 0, pid);
	uint64_t serial = serial_of(id);

	*h = NULL;
	if (!serial)
		return -ENOENT;
	return seg_open(serial, &c, O_RDWR, attach, h);
}

/*
 * shmat as the client does it: open with a session, then close the
 * descriptor (the mapping would keep the memory; the attach stays).
 */
static inline int attach(int id, pid_t pid)
{
	struct seg_handle *h;
	int err = open_id(id, pid, true, &h);

	if (!err)
		seg_release(h);
	return err;
}

static inline struct shmfs_shm_info shm_info(void)
{
	struct shmfs_ctl io;

	CHECK_EQ(ctl(SHM_INFO, 0, &io), 0);
	return io.u.shm_info;
}

static inline struct seg_stats stats(void)
{
	struct seg_stats s;

	seg_get_stats(&s);
	return s;
}

static inline int ipc_set(struct perm_cred *c, int id, uint32_t uid, uint32_t gid,
		   uint32_t mode)
{
	struct shmfs_ctl io;

	memset(&io, 0, sizeof(io));
	io.id = id;
	io.cmd = IPC_SET;
	io.u.ds.uid = uid;
	io.u.ds.gid = gid;
	io.u.ds.mode = mode;
	return seg_ctl(c, &io);
}

/* Children of a process, for the orphan tests. */
static pid_t fake_kids[8];
static int fake_nkids;

static inline int fake_children_of(pid_t tgid, pid_t **out)
{
	int i;

	(void)tgid;
	*out = NULL; /* as the host says "none" */
	if (!fake_nkids)
		return 0;
	*out = calloc(8, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (i = 0; i < fake_nkids; i++)
		(*out)[i] = fake_kids[i];
	return i;
}

/* The table with every host fact forks ask for: parents, children and
 * births, as the test sets them in fake, fake_kids and fake_starts. */
static inline void setup_forks(const struct seg_limits *l)
{
	struct seg_config cfg = {
		.given = *l,
		.host_limits = fake_host_limits,
		.parent_of = fake_parent_of,
		.children_of = fake_children_of,
		.born = fake_start_time,
		.next_born = fake_ticks_now,
		.freed = fake_freed,
		.now = fake_now,
		.page_size = PAGE,
	};

	setup(l);
	seg_fini();
	REQUIRE(CHECK_EQ(seg_init(&cfg), 0));
	memset(fake_starts, 0, sizeof(fake_starts));
	fake_ticks = 0;
	fake_nkids = 0;
}

/*
 * Process 100 with a session on its own control file, attached once to
 * a 0600 segment of KEY (its shmid, or -1), on the fork table.
 */
static inline int fork_setup(void)
{
	int a;

	setup_forks(&std_limits);
	seg_session_open(CTL(100), 100);
	a = get(KEY, 100, IPC_CREAT | 0600);
	if (a <= 0 || attach(a, 100) != 0)
		return -1;
	return a;
}

#endif
