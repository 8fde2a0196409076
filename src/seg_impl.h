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

#include "pheap.h"
#include "seg.h"

/* One key hash, the published table's (shmfs_proto.h). */
#define KEY_BUCKETS SHMFS_TABLE_BUCKETS
#define SERIAL_BUCKETS (1u << 16)
#define PROC_BUCKETS (1u << 12)
#define SESSION_BUCKETS (1u << 12)
#define SID_WORDS (SHMFS_TABLE_SESSIONS / 64)
#define SLOT_WORDS (SHMFS_MAX_SLOTS / 64)
#define SUM_WORDS (SLOT_WORDS / 64)
#define SEQ_MAX 0xffff
#define DEFAULT_SHMMAX (~0ULL - (1ULL << 24))
#define DEFAULT_SHMALL (~0ULL - (1ULL << 24))
#define DEFAULT_SHMMNI 4096

struct seg_handle;
struct fork_pending;
struct proc;
struct session;

/*
 * A session's record in its tally, bound to a segment (tally.c): the
 * attaches it counts are the record's own, which its process writes.
 */
struct hold {
	struct seg *seg;
	struct session *sess;
	uint32_t rec;
	struct hold *s_next; /* in the segment's list */
	struct hold *s_prev;
	struct hold *h_next; /* in the session's list */
};
#define REC_WORDS ((SHMFS_TALLY_RECS + 63) / 64)

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
	uint32_t sid; /* 1 .. SHMFS_TABLE_SESSIONS - 1 (tally.c) */
	uint32_t gen;
	int memfd; /* its tally, or -1 (none could be made, or lost) */
	int backing; /* the tally's backing id, or 0: it cannot be opened */
	uint32_t opens; /* its opens of the file, not yet closed */
	/* Its process opened the tally for writing: attaches count there. */
	bool counting;
	uint64_t rec_used[REC_WORDS];
	struct hold *holds;
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
	bool has_memory; /* counted in tot_pages, not given back yet */
	/* Its memory (a memfd, a range of the arena) is made at its first
	 * open, so that a segment nobody opens costs no memfd. */
	bool unmade;
	uint64_t offset; /* of its range in the arena */
	struct extent *spare; /* its range's free-list node, for the free */
	int backing; /* passthrough backing id, or 0: served by the daemon */
	int memfd; /* the backing memfd when kept, or its own; else -1 */
	bool solo; /* no backing, and a memfd of its own, not the arena */
	uid_t lock_uid; /* charged for SHM_LOCK */
	uint32_t perm_gen; /* IPC_SETs, chmods and chowns so far */
	/* CLOCK_BOOTTIME ns of the call that made ds.lpid: against the
	 * records' stamps, which call was the last (seg_ds) */
	uint64_t lpid_ns;
	uint32_t attach_handles; /* of handles, the attach opens' */
	struct seg_handle *attaches; /* their list */
	/* An attach of it ended uncounted while its process may still map
	 * it (its session ended with the process's memory still there,
	 * say after it closed every descriptor): its memory is never
	 * punched from under a mapping nobody counts (seg_memory_settle). */
	bool astray;
	bool removed;
	bool freed;
	struct seg *key_next;
	struct seg *serial_next;
	struct ref *refs; /* its attaches, for user.shm.pids */
	struct hold *holds; /* the records counting its other attaches */
};

/* A free range of the arena, in a list sorted by offset. */
struct extent {
	uint64_t off, len;
	struct extent *next;
};

struct seg_handle {
	struct seg *seg;
	bool filed; /* a file record holds it (files.c) */
	bool attach; /* an attach open's: a descriptor libshmfs keeps */
	/* An attach open's: the session it was made in, and its place in
	 * the segment's list of them (seg_memory_settle). */
	uint32_t sid, gen;
	struct seg_handle *a_next;
	struct seg_handle *a_prev;
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
/*
 * The table lives in the persistent heap (pheap.h), so that a successor
 * server adopts it as it is: nothing here may be a pointer outside the
 * heap, a descriptor the holder does not keep, or a lock.
 */
struct file_rec;

/* An open whose reply was recorded, by its request's unique. */
struct inflight {
	uint64_t unique;
	uint64_t fh;
};
#define INFLIGHT_SLOTS 1024

/* The front end's open files (files.c). */
struct table_front {
	uint64_t next_id;
	uint64_t nfiles;
	struct file_rec *by_id[1024];
};

struct seg_table {
	uint64_t format; /* TABLE_FORMAT of the server that made it */
	struct slot slots[SHMFS_MAX_SLOTS];
	uint64_t used[SLOT_WORDS];
	uint64_t any_used[SUM_WORDS]; /* word i has a used slot */
	uint64_t all_used[SUM_WORDS]; /* word i is full */
	struct seg *by_key[KEY_BUCKETS];
	struct seg *by_serial[SERIAL_BUCKETS];
	struct proc *procs[PROC_BUCKETS];
	struct session *by_file[SESSION_BUCKETS];
	uint64_t sid_used[SID_WORDS]; /* bit sid: taken (sid 0 never) */
	uint32_t sid_gen[SHMFS_TABLE_SESSIONS]; /* the latest of each sid */
	struct session *by_sid[SHMFS_TABLE_SESSIONS];
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
	struct lock_user *lock_users;
	uint64_t born_hint; /* the latest next_born() a fork was counted at */
	/* Backing ids whose segments are gone, to close once that change
	 * has committed (a rolled-back free must find its id still open). */
	uint32_t *close_ids;
	uint32_t nclose_ids, cap_close_ids;
	struct table_front front; /* the front end's part (seg.h) */
	/* Opens answered and not known delivered (table_tx.c). */
	struct inflight *inflight;
	uint64_t *marks; /* page-aligned; written with pwrite only */
};

/* The table, in the persistent heap, and what this process was told
 * (callbacks: never in the heap): table_tx.c. */
extern struct seg_table *seg_T;
#define T (*seg_T)
extern struct seg_config Tcfg;

/*
 * Holds the table lock until the end of the enclosing block, as one
 * transaction of the persistent heap (table_tx.c): a server killed inside
 * it leaves the table as it was before.  Inside a request, a block that
 * changed the table keeps the lock until the request's reply, so that the
 * change and the reply commit together.
 */
void table_enter(void);
void table_leave(int *unused);
#define TABLE_LOCK()                                                    \
	int table_hold_ __attribute__((cleanup(table_leave), unused)) = \
		(table_enter(), 0)
/*
 * The same lock for a block that only reads: no transaction, so no copy
 * of the heap's hot pages.  A store in it is a bug (with
 * SHMFS_STRICT_HEAP=1 the daemon aborts at it).
 */
void table_enter_read(void);
#define TABLE_READ()                                                    \
	int table_hold_ __attribute__((cleanup(table_leave), unused)) = \
		(table_enter_read(), 0)

/* After the change commits: close a descriptor the table let go (and
 * tell the holder), punch a range of the arena, close a backing id. */
void table_after_close(int fd);
void table_after_punch(int fd, uint64_t off, uint64_t len);
int table_after_backing_close(int id);

static inline int64_t seg_now(void)
{
	return Tcfg.now();
}

/* table_tx.c */
void table_close(void);
int64_t seg_default_now(void);
void seg_republish(void);
void seg_objects_adopt(void);

/* files.c */
#define FILE_BUCKETS 1024
struct file_rec {
	uint64_t id;
	int kind;
	struct seg_handle *h;
	struct file_rec *next;
};
void handle_add(struct seg_handle *h, struct seg *s,
		const struct session *sess);
void files_adopt(void);
void files_fini(void);

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
struct proc *proc_find(pid_t tgid);

/* forkkids.c: a process's children and their births, asked of the host
 * (never under the lock); n, or -errno. */
struct kid {
	pid_t pid;
	uint64_t born;
};
int kids_of(pid_t parent, struct kid **out);
uint64_t kids_read_count(void);
/* For user.shm.pids: the children of the parents whose pending forks
 * count attaches of serial's segment (read before the lock), then under
 * it the child each such fork counts for. */
#define FORK_KIDS_PARENTS 16
#define FORK_KIDS_MAX 65536
struct fork_kids {
	int n;
	struct {
		pid_t parent;
		bool orphan; /* forks whose parent's session ended */
		struct kid *kids;
		int nkids;
	} p[FORK_KIDS_PARENTS];
};
struct fork_guess {
	const struct fork_pending *fp;
	pid_t child;
};
void fork_kids_get(uint64_t serial, struct fork_kids *fk);
void fork_kids_free(struct fork_kids *fk);
int fork_guesses(const struct fork_kids *fk, struct fork_guess **out);
pid_t fork_guess_of(const struct fork_pending *fp,
		    const struct fork_guess *g, int ng);

static inline unsigned file_bucket(uint64_t file)
{
	return (unsigned)((file * 0x9e3779b97f4a7c15ULL) >> 52) &
	       (SESSION_BUCKETS - 1);
}

/* tally.c: a session's sid and generation, published (NULL: none
 * free, or no memory), and their end. */
struct session *session_new(pid_t tgid);
bool session_live(uint32_t sid, uint32_t gen);
void session_free(struct session *s);
void tally_republish(void);
/* Attaches counted in tallies (under the lock): a session's record of
 * s, made and bound if it may count there (NULL: count a ref); the
 * holders' sum, clamped; its end. */
struct hold *hold_get(struct proc *p, struct seg *s);
struct hold *hold_find(const struct proc *p, const struct seg *s);
uint32_t hold_own(const struct hold *h);
uint64_t seg_nattch(const struct seg *s);
/* s->ds with what the records add: nattch, atime, dtime, lpid */
void seg_ds(const struct seg *s, struct shmfs_ds *ds);
/* ds.lpid is pid, as of now */
void seg_set_lpid(struct seg *s, pid_t pid);
void seg_detached(struct seg *s, pid_t lpid);
uint64_t proc_tally_attaches(const struct proc *p);
uint64_t tally_attaches(void);
int hold_detach(const struct proc *p, int shmid, bool taken);
/* The session's records go (before session_free); the segments whose
 * count may have reached 0 are published or freed. */
void holds_drop(struct session *s);
/* Its records that count attaches leave their segments astray. */
void holds_astray(const struct session *s);
void hold_unlink_seg(struct seg *s);
void holds_publish(const struct seg *s);
/* seg_fds and seg_fd_lost for the tallies' memfds (under the lock). */
int tally_fds(int *fds, int max, int n);
bool tally_fd_lost(int fd);

/* segmem.c */
int segmem_init(void);
void segmem_fini(void);
void segmem_adopt(void);
int seg_alloc_memory(struct seg *s);
void seg_release_memory(struct seg *s);
/* A freed shmid's memory goes, if no open file can still use it. */
void seg_memory_settle(struct seg *s);
/* The memory part of a view: measured now, or (arena) left to
 * seg_view_bytes(). */
void segmem_view(const struct seg *s, struct seg_view *v);
/* Bytes of every live segment's memory, with no range walked. */
uint64_t segmem_rss(void);
void segmem_stats(struct seg_stats *st);

#endif
