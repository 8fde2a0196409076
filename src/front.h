/*
 * What the files of the FUSE front end share (ops.c: the file operations;
 * dir.c: listings; xattr.c: extended attributes; ctl.c: the control
 * node's protocol; ofile.c: open files).  Node ids:
 *   1..6                root, .ctl, .id, status, .table, .tally
 *   KEY_BASE + key      the directory of one key
 *   SEG_BASE + serial   a segment file (serials are never reused, so a
 *                       node id the kernel still caches never names a
 *                       later segment and never shows it stale pages)
 *   TALLY_BASE + gen << 16 + sid
 *                       a session's tally (tallyfs.c)
 * A segment's st_ino is its shmid.
 */
#ifndef SHMFS_FRONT_H
#define SHMFS_FRONT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "ops.h"
#include "perm.h"
#include "seg.h"

#define INO_ROOT FUSE_ROOT_ID
#define INO_CTL 2
#define INO_IDDIR 3
#define INO_STATUS 4
#define INO_TABLE 5
#define INO_TALLYDIR 6
#define KEY_BASE (1ULL << 32)
#define SEG_BASE (1ULL << 33)
#define TALLY_BASE (1ULL << 62)

/* Names under the root and key directories change behind the kernel's
 * back (shmget, IPC_RMID through the control node): never cache them.
 * .id/<shmid> names are dropped explicitly when the shmid goes. */
#define TIMEOUT_NONE 0.0
#define TIMEOUT_LONG 86400.0

#define XATTR_PREFIX "user.shm."
#define REQUESTS_XATTR "user.shmfs.requests"
#define STATS_XATTR "user.shmfs.stats"
#define PID_XATTR "user.shmfs.pid"
#define HOLDER_XATTR "user.shmfs.holder_pid"
#define KILLPOINT_XATTR "user.shmfs.killpoint" /* tests: killpoint.h */

/* Requests served, by type: the root's user.shmfs.requests xattr. */
enum req_type {
	R_LOOKUP,
	R_FORGET,
	R_GETATTR,
	R_SETATTR,
	R_READDIR,
	R_OPEN,
	R_READ,
	R_WRITE,
	R_FLUSH,
	R_RELEASE,
	R_FSYNC,
	R_ACCESS,
	R_STATFS,
	R_GETXATTR,
	R_LISTXATTR,
	R_SETXATTR,
	R_NAMESPACE,
	R_IOCTL,
	R_NTYPES
};
extern const char *const req_names[R_NTYPES];
extern uint64_t req_count[R_NTYPES];

static inline void count_req(enum req_type t)
{
	__atomic_fetch_add(&req_count[t], 1, __ATOMIC_RELAXED);
}

/* The front end's state: defined in ops.c. */
struct front {
	struct fuse_session *se;
	time_t mount_time;
	size_t page_size;
	int verbose;
	const char *table_path;
	pid_t holder; /* the holder's pid, or 0 without one */
	/* whose life the published table follows: the holder's, which
	 * outlives servers, or this server's */
	pid_t table_pid;
	volatile int handing_over; /* stopping for a successor */
};
extern struct front O;

static inline bool ino_is_key(fuse_ino_t ino)
{
	return ino >= KEY_BASE && ino < SEG_BASE;
}

static inline bool ino_is_seg(fuse_ino_t ino)
{
	return ino >= SEG_BASE && ino < TALLY_BASE;
}

static inline bool ino_is_tally(fuse_ino_t ino)
{
	return ino >= TALLY_BASE;
}

static inline key_t ino_key(fuse_ino_t ino)
{
	return (key_t)(uint32_t)(ino - KEY_BASE);
}

/* The caller of a request; need_pid: its process, not its thread. */
void cred_of(fuse_req_t req, struct perm_cred *c, bool need_pid);

/*
 * A call whose permission check needs the caller's supplementary groups
 * runs again once they are fetched, here, without the table lock (the
 * check comes before any change, so the first run changed nothing).
 */
#define WITH_GROUPS(c, call)                      \
	__extension__({                           \
		int err_ = (call);                \
		if (err_ == PERM_NEED_GROUPS) {   \
			perm_cred_load_groups(c); \
			err_ = (call);            \
		}                                 \
		err_;                             \
	})

/* fuse_reply_err, logged under -o verbose (rate-limited). */
void reply_err(fuse_req_t req, const char *what, int err);

void stat_dir(struct stat *st, fuse_ino_t ino, mode_t mode);
/* Attributes of a node that is not a segment; -errno if there is none. */
int stat_node(fuse_ino_t ino, struct stat *st, double *timeout);
/* The segment behind a node id; a freed shmid is gone at once. */
int seg_view_of(fuse_ino_t ino, struct seg_view *v);

/* dir.c */
void shmfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void shmfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi);
void shmfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi);

/* xattr.c */
void shmfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    size_t size);
void shmfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void shmfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    const char *value, size_t size, int flags);
void shmfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/* notify.c: the thread that drops .id names (ops_shmid_freed feeds it) */
int notify_start(struct fuse_session *se);
void notify_stop(void);

/* tallyfs.c: the node id of a tally's name (0: not one), its (and
 * .tally's) attributes, an open of it */
fuse_ino_t tallyfs_ino(const char *name);
int tallyfs_stat(fuse_ino_t ino, struct stat *st, double *timeout);
void tallyfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

/* ctl.c */
void shmfs_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
		 struct fuse_file_info *fi, unsigned flags, const void *in_buf,
		 size_t in_bufsz, size_t out_bufsz);

#endif
