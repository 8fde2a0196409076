/*
 * What the files of libshmfs share, and nothing else sees: conn.c (the
 * mount, its two descriptors, the session, the debug lines), table.c
 * (the published table), attachments.c (this process's attachments),
 * fork.c (the fork protocol) and shm.c (the four calls).  Everything
 * here is hidden: the library exports the four calls alone (and the
 * preload library its interposers).
 */
#ifndef SHMFS_CLIENT_H
#define SHMFS_CLIENT_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shmfs.h"
#include "shmfs_proto.h"

#ifdef SHMFS_PRELOAD
#define LIBNAME "libshmfs-preload"
#else
#define LIBNAME "libshmfs"
#endif

#define DEFAULT_ROOT "/shm"
#define FUSE_SUPER_MAGIC 0x65735546
#ifndef SHM_STAT_ANY
#define SHM_STAT_ANY 15
#endif

/* What the library exports; every other name is hidden. */
#define SHMFS_EXPORT __attribute__((visibility("default")))

/* tally.c: our own tally (docs/attach-design.md 3.3) */
struct my_tally {
	struct shmfs_tally *t;
	uint32_t sid, gen;
	unsigned int session; /* session_gen's value when it began */
	/* every one this process made, which attachments may still name:
	 * never freed (a few bytes per session) */
	struct my_tally *older;
};

/*
 * One attachment.  The table is a treap ordered by address rather than a
 * hash: shmat must find every record that the new mapping overlaps (left
 * behind when a program munmap()ed an attachment itself, or replaced by
 * SHM_REMAP), and a hash can only answer that with one probe per page.
 */
struct attach {
	uintptr_t addr;
	size_t len; /* whole pages, as mapped */
	int shmid;
	unsigned int session; /* the daemon counts it only in this session */
	/* the record of our tally tm that counts it, or -1 */
	const struct my_tally *tm;
	int rec;
	uint32_t prio;
	struct attach *left, *right;
};

/* Which file a descriptor of ours must still be. */
struct fd_ident {
	dev_t dev;
	ino_t ino;
};

/* conn.c */
extern atomic_int ctl_fd, id_fd;
extern size_t page_size;
extern atomic_int debug;
extern char root_path[PATH_MAX];
extern pid_t daemon_pid;
extern struct fd_ident ctl_ident, id_ident;
extern atomic_uint session_gen;
extern pthread_mutex_t init_lock;

__attribute__((format(printf, 1, 2))) void dbg(const char *fmt, ...);
const char *errtext(int e, char *buf, size_t size);
int fd_still(int fd, const struct fd_ident *want);
/* The control descriptor, or -ENOSYS while no daemon answers. */
int ensure_init(void);
/* 1: retry (a descriptor of ours was replaced), 0: the error was real,
 * -ENOSYS: the mount is gone. */
int recover(int used);
int ctl_ioctl_fd(int fd, unsigned long cmd, void *arg, int locked);
int ctl_ioctl(unsigned long cmd, void *arg);
int start_session(void);

/* table.c */
int table_open(const char *root);
int table_shmget(key_t key, size_t size, int shmflg, int *id);
int table_stat(int id, int cmd, struct shmfs_ds *d, int *ret);
/* The record of session sid.gen that counts its attaches of shmid, or
 * -1. */
int table_rec_of(int shmid, uint32_t sid, uint32_t gen);
int table_seg_state(int shmid, uint32_t *perm_gen, uint32_t *mode);
uint32_t table_shmseg(void);

/* tally.c */
void tally_start(const struct shmfs_hello *h, unsigned int session);
void tally_forget(void);
const struct my_tally *tally_mine(void);
const struct shmfs_tally *tally_peer(uint32_t sid, uint32_t gen);

/* fastpath.c: shmat and shmdt from kept descriptors */
struct kept_use {
	int fd;
	uint64_t size;
	uint32_t rec;
	unsigned int session;
	const struct my_tally *tm;
};
extern pthread_rwlock_t bind_lock;
uint64_t tally_now_ns(void);
int kept_find(int shmid, int ro, struct kept_use *u);
void kept_done(void);
int kept_count(int shmid, const struct kept_use *u);
int kept_keep(int shmid, int ro, int fd, ino_t ino, uint64_t size,
	      unsigned int session, uint32_t perm_gen);
void kept_forget(void);
void kept_gone(int shmid);
int fast_detach(int shmid, unsigned int session, const struct my_tally *tm,
		 uint32_t rec);

/* attachments.c: callers hold att_lock */
extern pthread_mutex_t att_lock;
extern size_t att_count;
struct attach *att_take(uintptr_t addr);
struct attach *att_insert(struct attach *a);
void detach_count(int shmid, unsigned int session, const struct my_tally *tm,
		  int rec, int locked);
void detach_list(struct attach *list);

/* fork.c: a shmat or shmdt in progress holds off fork */
void active_enter(void);
void active_leave(void);
/* In a child, at its first call: lets go of its parent's tally and kept
 * descriptors, and claims what the fork counted. */
void fork_claim(void);

#endif
