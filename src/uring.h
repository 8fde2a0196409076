/*
 * FUSE over io_uring (-o uring): requests come through one ring per CPU,
 * answered on the CPU that asked, instead of through /dev/fuse, where
 * each round trip waits for a sleeping CPU to wake.  libfuse 3.14 cannot
 * drive it, so this module registers the rings, rebuilds each request as
 * /dev/fuse would have given it, hands it to libfuse, and takes the reply
 * back from the I/O hooks (passthrough.c).  /dev/fuse still carries
 * FUSE_INIT, forgets, interrupts and notifications.
 */
#ifndef SHMFS_URING_H
#define SHMFS_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct fuse_session;

/* Before the mount: turn on the fuse module's enable_uring (the whole
 * machine's, left on), so that FUSE_INIT offers rings.  0 or -errno. */
int uring_enable(void);
/* The session whose requests the rings will carry, and /dev/fuse. */
void uring_prepare(struct fuse_session *se, int devfd);
/* The mount's connection (its superblock's dev_t), to abort if a queue
 * cannot take requests (see uring.c). */
void uring_conn(dev_t dev);
/* FUSE_INIT as read: if the kernel offers rings, every queue's is made. */
void uring_note_init(const void *buf, size_t len);
/* For INIT's reply: the flags2 bit to ask for rings with (0: none), and
 * the largest request the reply allows (max_write, max_pages). */
uint32_t uring_init_flags2(void);
void uring_init_sizes(uint32_t max_write, uint32_t max_pages);
/* INIT's reply has reached the kernel: register the rings. */
void uring_start(void);
/* A reply: taken into this thread's ring entry if it answers the request
 * the thread serves (true, *ret its length). */
bool uring_reply(const struct iovec *iov, int count, ssize_t *ret);
/* Before the session goes: no request reaches libfuse any more. */
void uring_stop(void);
/* Requests served through the rings so far. */
uint64_t uring_served(void);

#endif
