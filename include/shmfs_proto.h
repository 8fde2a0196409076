/*
 * The wire protocol between libshmfs and the shmfs daemon.  Both sides
 * include this header; nothing in it is part of the public API.
 *
 * Names inside a mount (never of the form 0x%08x, so no key directory
 * can clash with them):
 *   .ctl          control node; a client opens it once and issues the
 *                 ioctls below on that descriptor
 *   .id/<shmid>   the segment file of <shmid>, found without a scan; the
 *                 same inode as /<key>/<shmid>
 *   status        the table in the format of /proc/sysvipc/shm
 *   .table        symlink to the published table (below), when there is one
 *   .tally/<sid>.<gen>
 *                 the tally of session sid, generation gen (see HELLO):
 *                 SHMFS_TALLY_SIZE bytes, sealed at that size; only the
 *                 session's process may open it for writing, anyone may
 *                 open it read-only (docs/attach-design.md, 3.1)
 *
 * Sessions: a process has a session from its first open of .ctl until it
 * has closed every descriptor of .ctl it opened; the kernel tells the
 * daemon of each close synchronously (FLUSH), also at exit and at exec
 * (open it O_CLOEXEC), so the end of a session detaches everything the
 * process still had attached before exit or exec returns to anyone.
 *
 * Attach: with a session, open .id/<shmid> with SHMFS_ATTACH_FLAGS added
 * to O_RDONLY (SHM_RDONLY) or O_RDWR; the daemon checks SysV read (and
 * write) permission and counts one attach for the calling process (in a
 * record of its tally once it has opened that for writing: struct
 * shmfs_tally below); mmap
 * the descriptor and close it (the mapping keeps the memory).  Without a
 * session the open fails with EPROTO: a process that inherited .ctl
 * without the fork protocol (forked before it had attachments) starts
 * one with SHMFS_IOC_SESSION on the inherited descriptor.  Detach:
 * SHMFS_IOC_DETACH after munmap.  Before fork(2) the client sends
 * SHMFS_IOC_FORK so that the daemon counts the child's inherited attaches
 * before fork returns; the child claims them (and a session for the .ctl it
 * inherited) with SHMFS_IOC_FORK_CHILD; the parent undoes them with
 * SHMFS_IOC_FORK_ABORT if fork failed.
 *
 * All integers are native-endian; every ioctl is _IOWR so that the reply
 * comes back in the same buffer.  An ioctl fails with the errno the SysV
 * call would give.
 */
#ifndef SHMFS_PROTO_H
#define SHMFS_PROTO_H

#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>

#define SHMFS_PROTO_VERSION 3

#define SHMFS_CTL_NAME ".ctl"
#define SHMFS_ID_DIR ".id"
#define SHMFS_STATUS_NAME "status"
#define SHMFS_TABLE_NAME ".table"
#define SHMFS_TALLY_DIR ".tally"

/*
 * A tally: its head, 8 fork slots (unused so far) and records.  The
 * daemon binds record rec to a segment at the session's first attach
 * open of it (the published holders list says which; the open itself is
 * counted in base), and the process adds to own at each shmat from its
 * kept descriptor and subtracts at each shmdt of such an attach, storing
 * the time in atime or dtime and a CLOCK_BOOTTIME stamp.  Readers
 * add min(own, SHMFS_TALLY_OWN_MAX) of every listed record to the
 * entry's base; nothing else in a tally is trusted.  The daemon binds
 * records only once the session's process has opened its tally for
 * writing (docs/attach-design.md, 3.1, 4.2).
 */
#define SHMFS_TALLY_SIZE 4096
#define SHMFS_TALLY_MAGIC 0x53484d43u /* "SHMC" */
#define SHMFS_TALLY_SLOTS 8
#define SHMFS_TALLY_OWN_MAX 65535u
struct shmfs_tally_head {
	uint32_t magic;
	uint32_t sid; /* informational only */
};

struct shmfs_tally_slot {
	uint32_t state;
	int32_t child;
	uint64_t armed_ns;
};

struct shmfs_tally_rec {
	uint32_t own; /* attaches held now */
	uint16_t pending[SHMFS_TALLY_SLOTS];
	uint32_t atime, dtime;
	uint32_t pad;
	uint64_t stamp;
};

struct shmfs_tally {
	struct shmfs_tally_head head;
	struct shmfs_tally_slot slot[SHMFS_TALLY_SLOTS];
	struct shmfs_tally_rec rec[];
};

#define SHMFS_TALLY_RECS                                   \
	((SHMFS_TALLY_SIZE - sizeof(struct shmfs_tally)) / \
	 sizeof(struct shmfs_tally_rec))

/* Open flags that mark an open of a segment file as a SysV attach. */
#define SHMFS_ATTACH_FLAGS (O_NONBLOCK | O_NOFOLLOW)

/* Mode bits beyond 0777, as Linux reports them in shm_perm.mode. */
#define SHMFS_SHM_DEST 01000
#define SHMFS_SHM_LOCKED 02000

/* shmid = seq << SHMFS_ID_SHIFT | slot, as Linux builds ids. */
#define SHMFS_ID_SHIFT 15
#define SHMFS_MAX_SLOTS (1 << SHMFS_ID_SHIFT)

struct shmfs_hello {
	uint32_t version; /* out: SHMFS_PROTO_VERSION */
	uint32_t page_size; /* out: the daemon's page size */
	/* out: the daemon's pid; a client trusts only the published
	 * table whose daemon_pid this is (see below) */
	int32_t daemon_pid;
	/* out: the caller's session on this descriptor (0: none yet) and
	 * its generation, as the published table's sessions[sid] shows */
	uint32_t sid;
	uint32_t gen;
	uint32_t flags; /* out: SHMFS_HELLO_TALLY */
};

/* The session has a tally its process can open (passthrough). */
#define SHMFS_HELLO_TALLY 1

struct shmfs_get {
	int32_t key; /* in */
	int32_t flags; /* in: shmflg as given to shmget */
	uint64_t size; /* in */
	int32_t shmid; /* out */
	int32_t pad;
};

/* One shmid_ds, fixed width; mode carries SHMFS_SHM_DEST/_LOCKED. */
struct shmfs_ds {
	int32_t key;
	int32_t shmid;
	uint32_t uid;
	uint32_t gid;
	uint32_t cuid;
	uint32_t cgid;
	uint32_t mode;
	uint32_t seq;
	uint64_t segsz;
	int64_t atime;
	int64_t dtime;
	int64_t ctime;
	int32_t cpid;
	int32_t lpid;
	uint64_t nattch;
};

/* IPC_INFO */
struct shmfs_info {
	uint64_t shmmax;
	uint64_t shmmin;
	uint64_t shmmni;
	uint64_t shmseg;
	uint64_t shmall;
};

/* SHM_INFO */
struct shmfs_shm_info {
	int32_t used_ids;
	int32_t pad;
	uint64_t shm_tot; /* pages of all live segments */
	uint64_t shm_rss; /* pages resident */
	uint64_t shm_swp;
	uint64_t swap_attempts;
	uint64_t swap_successes;
};

/*
 * shmctl.  cmd is the Linux command number (IPC_STAT, SHM_STAT, ...).
 * In: id (shmid, or slot index for SHM_STAT/SHM_STAT_ANY), cmd, for
 * IPC_SET u.ds.uid/gid/mode, for SHM_LOCK the caller's RLIMIT_MEMLOCK
 * soft limit in bytes (UINT64_MAX: unlimited).  Out: ret, the value
 * shmctl returns, and u filled as the command defines.
 */
struct shmfs_ctl {
	int32_t id;
	int32_t cmd;
	int32_t ret;
	int32_t pad;
	uint64_t memlock;
	union {
		struct shmfs_ds ds;
		struct shmfs_info info;
		struct shmfs_shm_info shm_info;
	} u;
};

struct shmfs_fork {
	uint64_t token; /* out of FORK, in to FORK_CHILD/_ABORT */
	uint32_t count; /* out of FORK: attaches counted for the child */
	uint32_t pad;
};

/* shmdt: one attach of shmid by the calling process ends.  With
 * SHMFS_DETACH_TALLY the caller has taken it from its tally's record
 * already: the daemon only updates dtime and lpid, and frees a removed
 * segment that no one holds any more. */
#define SHMFS_DETACH_TALLY 1
struct shmfs_detach {
	int32_t shmid;
	int32_t flags;
};

/* SysV permission check without an attach: mask of 4 (r), 2 (w), 1 (x). */
struct shmfs_access {
	int32_t shmid;
	int32_t mask;
};

/*
 * The published table: a read-only file the daemon keeps up to date, so
 * that shmget of an existing key and IPC_STAT need no request.  It holds
 * what /proc/sysvipc/shm shows anyone, nothing more.  Readers use the
 * seqlocks: a count that is odd, or that changed while reading, means
 * "read again".  key_seq guards the key chains, each entry's seq guards
 * the entry (its holder chain and base included).  Chains link slot + 1
 * (holder + 1) values; 0 ends a chain.
 *
 * Version 2 adds what counting in tallies (docs/attach-design.md) needs;
 * readers may ignore it until then:
 *   perm_gen     bumped by every IPC_SET, chmod and chown of the shmid:
 *                a descriptor opened before a change is checked again
 *   base, base_lpid, base_stamp
 *                attaches the daemon counts itself (forks, and sessions
 *                without a tally); ds.nattch is base as well
 *   holders      the first of the sessions holding a record of the
 *                segment: nattch is base plus each listed record's own,
 *                clamped (struct shmfs_tally)
 *   sessions[sid]  {gen, pid} of a live session, {0, 0} of none; written
 *                whole, as one 64-bit store
 */
#define SHMFS_TABLE_MAGIC 0x53484d54u /* "SHMT" */
#define SHMFS_TABLE_VERSION 2
#define SHMFS_TABLE_BUCKETS (1u << 16)
#define SHMFS_TABLE_SESSIONS (1u << 16) /* sid 0 is none */
#define SHMFS_TABLE_HOLDERS (1u << 20)

struct shmfs_table_entry {
	uint32_t seq;
	uint32_t live; /* 1 while the shmid exists */
	uint32_t key_next; /* next slot + 1 in the key's chain */
	uint32_t perm_gen;
	struct shmfs_ds ds;
	uint64_t base;
	uint64_t base_stamp; /* CLOCK_BOOTTIME ns of base_lpid's call */
	int32_t base_lpid;
	uint32_t holders; /* first holder + 1 */
};

/* One session's record of one segment: tally sid.gen, record rec. */
struct shmfs_table_holder {
	uint32_t sid;
	uint32_t gen;
	uint32_t rec;
	uint32_t next; /* holder + 1 */
};

struct shmfs_table_session {
	uint32_t gen;
	int32_t pid; /* the daemon's view of its process */
} __attribute__((aligned(8)));

struct shmfs_table {
	uint32_t magic;
	uint32_t version;
	uint32_t page_size;
	uint32_t max_slots;
	/* Readers trust the table only if this is the pid the daemon
	 * gives in its HELLO reply and the file belongs to the daemon's
	 * user, and stop trusting it when the process exits. */
	int32_t daemon_pid;
	uint32_t key_seq;
	/* the shmseg limit as of the daemon's latest attach open (0: not
	 * yet known): a client attaching without a request keeps to it */
	uint32_t shmseg;
	/* A robust futex word (src/alive.c): the TID of a thread of
	 * daemon_pid's process while that thread lives; the kernel sets
	 * FUTEX_OWNER_DIED (0x40000000) in it as the thread dies, so a
	 * reader knows without a system call.  0: not set yet (a reader
	 * asks the kernel instead). */
	uint32_t alive;
	uint32_t buckets[SHMFS_TABLE_BUCKETS];
	struct shmfs_table_entry entries[SHMFS_MAX_SLOTS];
	struct shmfs_table_session sessions[SHMFS_TABLE_SESSIONS];
	struct shmfs_table_holder holders[SHMFS_TABLE_HOLDERS];
};

static inline uint32_t shmfs_table_bucket(int32_t key)
{
	return ((uint32_t)key * 2654435761u) >> 16 & (SHMFS_TABLE_BUCKETS - 1);
}

/* Room for the payload of any of the requests below. */
union shmfs_ioc {
	struct shmfs_hello hello;
	struct shmfs_get get;
	struct shmfs_ctl ctl;
	struct shmfs_fork fork;
	struct shmfs_access access;
	struct shmfs_detach detach;
};

#define SHMFS_IOC_MAGIC 'S'
#define SHMFS_IOC_HELLO _IOWR(SHMFS_IOC_MAGIC, 1, struct shmfs_hello)
#define SHMFS_IOC_GET _IOWR(SHMFS_IOC_MAGIC, 2, struct shmfs_get)
#define SHMFS_IOC_CTL _IOWR(SHMFS_IOC_MAGIC, 3, struct shmfs_ctl)
#define SHMFS_IOC_FORK _IOWR(SHMFS_IOC_MAGIC, 4, struct shmfs_fork)
#define SHMFS_IOC_FORK_CHILD _IOWR(SHMFS_IOC_MAGIC, 5, struct shmfs_fork)
#define SHMFS_IOC_FORK_ABORT _IOWR(SHMFS_IOC_MAGIC, 6, struct shmfs_fork)
#define SHMFS_IOC_ACCESS _IOWR(SHMFS_IOC_MAGIC, 7, struct shmfs_access)
#define SHMFS_IOC_DETACH _IOWR(SHMFS_IOC_MAGIC, 8, struct shmfs_detach)
#define SHMFS_IOC_SESSION _IOWR(SHMFS_IOC_MAGIC, 9, struct shmfs_hello)

#endif
