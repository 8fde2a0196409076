/*
 * What the rooms of the table share, and nothing outside them includes:
 * seg.c (the index and the SysV rules), attach.c (processes, sessions,
 * attaches, forks), segmem.c (the segments' memory) and status.c (the
 * /proc/sysvipc/shm text).  One lock guards all of it.
 */
#ifndef SHMFS_SEG_IMPL_H
#define SHMFS_SEG_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "seg.h"

/* One key hash, the published table's (shmfs_proto.h). */
#define KEY_BUCKETS SHMFS_TABLE_BUCKETS
#define SERIAL_BUCKETS (1u << 16)
#define PROC_BUCKETS (1u << 12)
#define SESSION_BUCKETS (1u << 12)
#define SLOT_WORDS (SHMFS_MAX_SLOTS / 64)
#define SUM_WORDS (SLOT_WORDS / 64)
#define SEQ_MAX 0xffff
#define DEFAULT_SHMMAX (~0ULL - (1ULL << 24))
#define DEFAULT_SHMALL (~0ULL - (1ULL << 24))
#define DEFAULT_SHMMNI 4096

struct seg_handle;
struct fork_pending;
struct proc;

struct ref {
	struct seg *seg;
	struct proc *proc; /* owner, or NULL while pending */
	struct fork_pending *fp; /* set while the child has not claimed */
	struct ref *o_next; /* in the owner's (or fork's) list */
	struct ref *o_prev;
	struct ref *s_next; /* in the segment's list */
	struct ref *s_prev;
};

/*
 * A session: one process's use of one open file of the control node.
 * It is made by an open of the node, by a fork claim or SHMFS_IOC_SESSION
 * on a descriptor the process holds, and ends at that process's close of
 * that file (FLUSH), or when the file itself goes (RELEASE).  A close of
 * a file the process has no session on (one passed to it over a socket,
 * say) ends nothing of its own.
 */
struct session {
	uint64_t file;
	struct proc *proc;
	uint32_t opens; /* its opens of the file, not yet closed */
	struct session *p_next; /* in the process's list */
	struct session *f_next; /* in the file's bucket */
};

struct proc {
	pid_t tgid;
	uint32_t nsessions;
	struct session *sessions;
	uint32_t nrefs;
	struct ref *refs;
	struct proc *next;
};

struct fork_pending {
	uint64_t token;
	uint64_t file; /* the control file it was counted on */
	pid_t parent;
	uint64_t since; /* next_born() when it was counted */
	/* The parent's session is over: only a child in kids can claim. */
	bool orphan;
	bool scanned; /* kids is known */
	pid_t *kids;
	int nkids;
	struct ref *refs;
	struct fork_pending *next;
};

struct seg {
	uint64_t serial;
	struct shmfs_ds ds;
	uint64_t pages;
	uint64_t handles;
	uint64_t nlookup;
	int slot;
	bool has_memory; /* not given back yet */
	uint64_t offset; /* of its range in the arena */
	struct extent *spare; /* its range's free-list node, for the free */
	int backing; /* passthrough backing id, or 0: served by the daemon */
	int memfd; /* the backing memfd when kept, or its own; else -1 */
	bool solo; /* no backing, and a memfd of its own, not the arena */
	uid_t lock_uid; /* charged for SHM_LOCK */
	bool removed;
	bool freed;
	struct seg *key_next;
	struct seg *serial_next;
	struct ref *refs; /* its attaches, for user.shm.pids */
};

/* A free range of the arena, in a list sorted by offset. */
struct extent {
	uint64_t off, len;
	struct extent *next;
};

struct seg_handle {
	struct seg *seg;
	struct seg_handle *next;
	struct seg_handle *prev;
};

struct slot {
	struct seg *seg;
	uint16_t seq;
};

/* Pages one user has SHM_LOCKed. */
struct lock_user {
	uid_t uid;
	uint64_t pages;
	struct lock_user *next;
};
struct seg_table {
	pthread_mutex_t lock;
	struct seg_config cfg;
	struct slot slots[SHMFS_MAX_SLOTS];
	uint64_t used[SLOT_WORDS];
	uint64_t any_used[SUM_WORDS]; /* word i has a used slot */
	uint64_t all_used[SUM_WORDS]; /* word i is full */
	struct seg *by_key[KEY_BUCKETS];
	struct seg *by_serial[SERIAL_BUCKETS];
	struct proc *procs[PROC_BUCKETS];
	struct session *by_file[SESSION_BUCKETS];
	struct fork_pending *forks;
	struct seg_handle *handles;
	int arena; /* the memfd behind most segments without backing */
	struct extent *arena_free; /* its free ranges */
	bool no_backing; /* the front end cannot take backing files */
	uint64_t memfds; /* backing memfds kept open */
	uint64_t next_serial;
	uint32_t nused;
	uint32_t nprivate; /* IPC_PRIVATE segments that still have a name */
	uint64_t tot_pages;
	uint64_t nobjects;
	uint64_t nhandles;
	uint64_t nprocs;
	uint64_t nsessions;
	uint64_t npending;
	uint64_t nrefs;
};

/* The table: defined in seg.c. */
extern struct seg_table T;

static inline void unlockp(pthread_mutex_t **m)
{
	if (*m)
		pthread_mutex_unlock(*m);
}

/* Holds the table lock until the end of the enclosing block. */
#define TABLE_LOCK()                                                     \
	pthread_mutex_t *table_lock_ __attribute__((cleanup(unlockp))) = \
		(pthread_mutex_lock(&T.lock), &T.lock)

static inline int64_t seg_now(void)
{
	return T.cfg.now();
}

/* seg.c: the index */
int slot_next_used(int idx);
struct seg *serial_find(uint64_t serial);
struct seg *seg_find_id(int shmid);
struct perm_obj seg_perm(const struct seg *s);
/* Tell the publisher (pubtab.c) of a change clients read without asking. */
void publish(const struct seg *s);
/* The shmid goes (as shm_destroy on Linux); the object with its last
 * hold. */
void seg_sysv_free(struct seg *s);
void seg_maybe_destroy(struct seg *s);
void seg_fill_view(const struct seg *s, struct seg_view *v);

/* attach.c */
void attach_fini(void);

/* segmem.c */
int segmem_init(void);
void segmem_fini(void);
int seg_alloc_memory(struct seg *s);
void seg_release_memory(struct seg *s);
/* The memory part of a view: measured now, or (arena) left to
 * seg_view_bytes(). */
void segmem_view(const struct seg *s, struct seg_view *v);
/* Bytes of every live segment's memory, with no range walked. */
uint64_t segmem_rss(void);
void segmem_stats(struct seg_stats *st);

#endif
