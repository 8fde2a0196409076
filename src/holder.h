/*
 * The holder: a small child of the first server that keeps what must
 * outlive a server (the /dev/fuse descriptor, the persistent heap of the
 * table, every memfd the table refers to, the bytes of FUSE_INIT) and
 * starts a successor when the serving process dies or is upgraded (see
 * holder.c).  The server's side of it is here too.
 */
#ifndef SHMFS_HOLDER_H
#define SHMFS_HOLDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What a successor is handed, by descriptor number (holder_adopt). */
struct holder_handoff {
	int dev; /* /dev/fuse */
	int heap; /* the table's persistent heap */
	int sock; /* to the holder */
	int *kept; /* every other descriptor kept: the table's */
	int nkept;
	void *init; /* FUSE_INIT as the first server read it */
	size_t init_len;
	pid_t holder;
};

/*
 * The first server: fork the holder of the connection whose superblock is
 * dev and whose descriptor is devfd.  argv is what a successor is started
 * with (the first server's own arguments), exe the binary (its path as
 * the server started; NULL: /proc/self/exe, which under valgrind is
 * valgrind's).  Call it before any thread.  0 or -errno.
 */
int holder_start(dev_t dev, int devfd, char *const argv[], const char *exe);

/* A successor: take what the holder handed (the --adopt argument). */
int holder_adopt(const char *arg, struct holder_handoff *h);

/* The server's side: a descriptor to keep, one let go, INIT's bytes,
 * and the successor's word that it serves. */
void holder_keep(int fd);
void holder_drop(int fd);
void holder_note_init(const void *buf, size_t len);
void holder_ready(void);
/* The holder's pid, or 0 without one. */
pid_t holder_pid(void);

/*
 * shmfs --upgrade MOUNTPOINT: ask the holder of that mount to replace its
 * server with the binary this process runs.  The exit status.
 */
int holder_upgrade(const char *mountpoint);

/* Descriptor numbers above every one a server is handed. */
#define HOLDER_ADOPT_OPT "--adopt="

#endif
