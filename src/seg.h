/*
 * The shmid_ds table, as the front end sees it: segments by key and by
 * shmid, limits, attaches and the memory behind each segment (seg.c,
 * attach.c, segmem.c, status.c; seg_impl.h is theirs alone).  Nothing
 * here knows about FUSE; every function takes the table lock itself and
 * returns 0 or -errno.
 */
#ifndef SHMFS_SEG_H
#define SHMFS_SEG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "perm.h"
#include "shmfs_proto.h"

struct seg_limits {
	uint64_t shmmax;
	uint64_t shmmin;
	uint64_t shmall; /* pages */
	uint32_t shmmni;
	uint32_t shmseg;
};

/* Told of every change a client may read without asking (pubtab.c). */
struct seg_publisher {
	void (*set)(int slot, const struct shmfs_ds *ds, uint32_t perm_gen);
	/* Optional: the counts part of slot's next set (which applies
	 * both at once): base, the CLOCK_BOOTTIME ns of ds.lpid's call,
	 * and the records listed as its holders. */
	void (*holders)(int slot, uint64_t base, uint64_t stamp,
			const struct shmfs_table_holder *h, uint32_t n);
	void (*clear)(int slot);
	/* Optional: the shmseg limit now in force */
	void (*limits)(uint64_t shmseg);
	void (*key_add)(key_t key, int slot);
	void (*key_del)(key_t key, int slot);
	/* A session's sid now names generation gen of process pid (gen 0:
	 * no session). */
	void (*session)(uint32_t sid, uint32_t gen, pid_t pid);
	/* Optional: forget everything, readers told to wait, until
	 * rebuilt (key_add, set) and done (a successor's republish). */
	void (*reset)(void);
	void (*reset_done)(void);
};

#define SEG_LIMIT_SHMMAX 1u
#define SEG_LIMIT_SHMALL 2u
#define SEG_LIMIT_SHMMNI 4u
#define SEG_LIMIT_ALL 7u

struct seg_config {
	/* Limits from the command line; 0 means "follow the host". */
	struct seg_limits given;
	/* Reads the host's live shmmax, shmall and shmmni, those of them
	 * that `want` names (0 where unknown). */
	void (*host_limits)(struct seg_limits *out, unsigned want);
	/*
	 * What the host says of processes, asked only for pending forks
	 * (see seg_session_close) and never under the table lock; none of
	 * them may wait for a process (it may be waiting for the daemon).
	 * Parent of a process, or -1.
	 */
	pid_t (*parent_of)(pid_t tgid);
	/* Optional: every child of a process, in *out (malloc'd); their
	 * number, or -errno. */
	int (*children_of)(pid_t tgid, pid_t **out);
	/* Optional: where a process stands in the order processes are
	 * born, and the place the next one to be born will take; a child
	 * born before a fork was counted is not that fork's child (a
	 * posix_spawn child, say). */
	uint64_t (*born)(pid_t tgid);
	uint64_t (*next_born)(void);
	/* Optional: the thread's memory is gone (it is exiting, past
	 * freeing its mappings); false when unsure. */
	bool (*mm_gone)(pid_t tid);
	/* Optional: a successor's births go on from the latest place a
	 * dead server counted a fork at (births count pid wraps since the
	 * first server began: process state that the table keeps). */
	void (*born_resume)(uint64_t at);
	/* Told (under the table lock; must not block) that a shmid is gone
	 * for good, so the front end can drop names the kernel caches;
	 * named: the kernel holds a lookup of it (else it caches no name). */
	void (*freed)(int shmid, bool named);
	/* Optional: pages one new segment may reserve (unless created
	 * with SHM_NORESERVE), as the host's overcommit policy allows. */
	uint64_t (*commit_room)(void);
	/* Optional: hand a segment's memfd to the kernel as a backing file
	 * (an id > 0, or -errno; -ENOMEM, -ENFILE and -EMFILE fail the
	 * shmget, any other error sends every later segment to the arena),
	 * and take it back.  Must not block. */
	int (*backing_open)(int fd);
	void (*backing_close)(int id);
	/* How many backing memfds the daemon may keep open to measure. */
	uint64_t memfd_budget;
	/* Optional: a descriptor the table now holds (a memfd; the arena)
	 * and one it let go, so that the holder keeps for a successor
	 * exactly what the table refers to. */
	void (*keep_fd)(int fd);
	void (*drop_fd)(int fd);
	/* Pages of the table's heap kept writable between transactions
	 * (pheap_set_hot): 0 keeps all read-only, to catch a stray store. */
	int hot_pages;
	/* Clock in whole seconds (tests may replace it). */
	int64_t (*now)(void);
	size_t page_size;
	const struct seg_publisher *pub; /* may be NULL */
};

/* What the front end may see of one segment. */
struct seg_view {
	uint64_t serial; /* unique for the life of the daemon */
	struct shmfs_ds ds;
	/* Memory in use: seg_view_bytes(), which measures what lies in the
	 * arena (arena_len bytes from arena_off) outside the table lock. */
	uint64_t bytes;
	uint64_t arena_off, arena_len;
	bool removed; /* IPC_RMID'd: no name any more */
	bool freed; /* the shmid no longer exists */
	int slot;
};

struct seg_handle;

uint64_t seg_view_bytes(const struct seg_view *v);

/*
 * The table's layout: a successor adopts only a table of its own format
 * (shmfs_proto.h's version too: the published table and the protocol
 * are part of what it takes over).
 */
#ifndef SHMFS_TEST_OTHER_FORMAT
#define SEG_TABLE_FORMAT (0x73686d7400060000ULL | SHMFS_PROTO_VERSION)
#else /* build/progs/shmfs_other_format, which the tests try to upgrade to */
#define SEG_TABLE_FORMAT (0x73686d74ff060000ULL | SHMFS_PROTO_VERSION)
#endif

/* A new table, in a new persistent heap (its memfd: seg_heap_fd). */
int seg_init(const struct seg_config *cfg);
/*
 * Take over the table in the persistent heap behind fd, left by a server
 * that died or handed over: a change it did not commit is undone, the
 * published table made again, what it let go and did not close closed.
 * -EPROTO for a heap of another format (nothing is touched).
 */
int seg_adopt(const struct seg_config *cfg, int fd);
int seg_heap_fd(void);
/* The descriptors the table refers to, for the holder's reckoning: up
 * to max of them in fds; how many there are (more than max: some left
 * out). */
int seg_fds(int *fds, int max);
/* A successor: descriptor fd, which the table names, was not kept: its
 * segment's memory goes unmeasured (a backing id holds it), or is lost
 * (-EIO), or it is the arena (-EBADF: nothing can be served). */
int seg_fd_lost(int fd);
/* The published table made again from the table (a new publisher). */
void seg_republish(void);
/* The end: everything is freed, then the heap is let go. */
void seg_fini(void);

/*
 * Requests (table_tx.c): a worker thread says which request it serves;
 * a change the request makes to the table commits with its reply, whose
 * bytes are recorded with it, just before they are written; a request
 * without a reply says when it is done.  A request the kernel sends
 * again after a server died finds its recorded reply: the answer its
 * first try got, without applying it twice.
 */
void table_request(uint64_t unique, uint32_t opcode);
void table_reply(uint64_t unique, const struct iovec *iov, int n);
/* The reply just committed reached the kernel (its writev succeeded). */
void table_delivered(void);
void table_request_done(void);
ssize_t table_recorded_reply(uint64_t unique, void *buf, size_t cap);
/*
 * A successor: a resent request is answered from its record; and, once
 * every request resent has been read, the file ids of opens the dead
 * server answered that the kernel never took (their callers died before
 * the resend was read: nothing will close them).  malloc'd.
 */
uint64_t table_confirm(uint64_t unique); /* the open's file id, or 0 */
size_t table_settle(uint64_t **fhs);

/*
 * The front end's open files, kept in the table so that a successor
 * finds every file the kernel still has open (files.c): an id (fi->fh,
 * never reused), the front end's kind of file, and the handle of a
 * segment file.  A handle no file holds when a successor adopts the
 * table (its file's RELEASE was answered, a request still used it) is
 * released then.
 */
uint64_t seg_file_add(int kind, struct seg_handle *h);
int seg_file_find(uint64_t id, int *kind, struct seg_handle **h);
void seg_file_remove(uint64_t id);
void seg_limits_now(struct seg_limits *out);
/* The same, reading from the host only what `want` needs. */
void seg_limits_for(struct seg_limits *out, unsigned want);

/* shmget */
int seg_get(key_t key, uint64_t size, int flags, struct perm_cred *c,
	    int *shmid);
/* shmctl: every command; io as in shmfs_proto.h */
int seg_ctl(struct perm_cred *c, struct shmfs_ctl *io);
/* ipcperm on a live shmid without attaching */
int seg_access(int shmid, int mask, struct perm_cred *c);

/*
 * Lookups for names.  With hold, the object stays findable by its serial
 * until seg_forget() gives the hold back.
 */
int seg_lookup_name(key_t key, int shmid, bool hold, struct seg_view *v);
int seg_lookup_id(int shmid, bool hold, struct seg_view *v);
/* The one segment of a key other than IPC_PRIVATE. */
int seg_lookup_key(key_t key, struct seg_view *v);
int seg_lookup_serial(uint64_t serial, struct seg_view *v);
void seg_forget(uint64_t serial, uint64_t n);
bool seg_key_exists(key_t key);

/*
 * Walk the live segments in slot order from slot `from`; fn returns
 * nonzero to stop.  Runs under the table lock: fn must not block.
 */
void seg_walk(int from, int (*fn)(void *arg, const struct seg_view *v),
	      void *arg);

/* IPC_SET of single fields, as chmod/chown do it (-1: unchanged). */
int seg_setattr(uint64_t serial, struct perm_cred *c, long mode, long uid,
		long gid, struct seg_view *v);
/* IPC_RMID through a name: only a segment that still has one. */
int seg_unlink(key_t key, int shmid, struct perm_cred *c);

/*
 * Opens and attaches.  An attach needs a session: a process has one on
 * an open file of the control node from its open of it (or its claim of
 * a fork, or SHMFS_IOC_SESSION, through a descriptor of it) until its
 * close of that file (exit and exec close it too), or until the file
 * itself goes; the end of a process's last session detaches all.  Files
 * are named by the front end's ids, never reused.
 */
int seg_open(uint64_t serial, struct perm_cred *c, int accmode, bool attach,
	     struct seg_handle **h);
void seg_release(struct seg_handle *h);
/* The segment's backing id (its opens go to the kernel), or 0. */
int seg_handle_backing(const struct seg_handle *h);
/* Otherwise its bytes are at seg_handle_offset() in seg_handle_fd(). */
int seg_handle_fd(const struct seg_handle *h);
uint64_t seg_handle_offset(const struct seg_handle *h);
uint64_t seg_handle_size(const struct seg_handle *h);
int seg_detach(pid_t tgid, int shmid);
/* shmdt by tgid, which took the attach from its tally's record already. */
int seg_detach_tally(pid_t tgid, int shmid);
int seg_session_open(uint64_t file, pid_t tgid);
/* A session for a process that holds file but has none there. */
int seg_session_start(uint64_t file, pid_t tgid);
/* The sid and generation of tgid's session on file (0, 0: none). */
void seg_session_id(uint64_t file, pid_t tgid, uint32_t *sid, uint32_t *gen);
/* The tally of session sid, generation gen: its process and backing id
 * (0: none, it cannot be opened); -ENOENT when there is no such
 * session. */
int seg_tally_find(uint32_t sid, uint32_t gen, pid_t *tgid, int *backing);
/* Its process opened it for writing: its attaches count there from now. */
void seg_tally_opened(uint32_t sid, uint32_t gen);
/* tgid closed file (FLUSH); the file itself is gone (RELEASE). */
void seg_session_close(uint64_t file, pid_t tgid);
/* The same, with the thread that closes (asked whether its process's
 * memory is gone: a close at exit). */
void seg_session_close_by(uint64_t file, pid_t tgid, pid_t tid);
void seg_file_released(uint64_t file);

/*
 * fork: count the child's inherited attaches before fork returns, through
 * the control file the child inherits; only a child of the caller, born
 * after the count, can claim them, through that file, with the token.
 */
int seg_fork(uint64_t file, struct perm_cred *c, uint64_t *token,
	     uint32_t *count);
int seg_fork_child(uint64_t file, struct perm_cred *c, uint64_t token);
int seg_fork_abort(uint64_t file, struct perm_cred *c, uint64_t token);

/* Who is attached: "pid:count ..." (malloc'd), for root and the owner
 * (uid or cuid); -EACCES for anyone else. */
int seg_pids(uint64_t serial, struct perm_cred *c, char **text);

/*
 * The /proc/sysvipc/shm text of the table, read a piece at a time, as
 * seq_file serves /proc: an open costs a cursor (the next offset, the
 * next slot, at most one line sent in part), not a copy of the table.
 * A read at the cursor goes on from it; a read anywhere else makes the
 * text again from the start up to there.  seg_status_read gives up to
 * size bytes at off into buf, and 0 at the end.
 */
struct seg_status;
int seg_status_open(struct seg_status **st);
void seg_status_close(struct seg_status *st);
size_t seg_status_read(struct seg_status *st, uint64_t off, char *buf,
		       size_t size);
/* The whole text at once, malloc'd and NUL-terminated (for tests). */
int seg_status(char **text, size_t *len);

/* For tests and the stress checker. */
struct seg_stats {
	uint32_t used; /* live shmids */
	uint64_t tot_pages; /* pages of live shmids */
	uint64_t objects; /* segment objects, freed ones included */
	uint64_t handles;
	uint64_t procs;
	uint64_t sessions;
	uint64_t pending_forks;
	uint64_t attaches; /* the sum of every nattch: refs and records */
	uint64_t memory; /* bytes of segment data held */
	uint64_t passthrough; /* segments with memory of their own */
	uint64_t arena; /* segments with memory in the arena */
	uint64_t unmeasured; /* backing memfds not kept: counted as full */
	uint64_t heap_bytes; /* the persistent heap's bytes in use */
	uint64_t tx_commits; /* transactions that changed the table */
	uint64_t tx_pages; /* pages they dirtied (write faults) */
	uint64_t hot_pages; /* heap pages kept writable (copied per tx) */
	uint64_t kids_reads; /* children lists read from the host */
};
void seg_get_stats(struct seg_stats *s);

#endif
