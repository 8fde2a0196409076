/*
 * Taking over a live FUSE connection from a dead server.  A holder keeps
 * a descriptor of the connection's /dev/fuse file open (requests queue
 * while no server runs) and hands it to a successor together with the
 * FUSE_INIT request the first server read: the kernel sends INIT once per
 * connection.  The successor makes libfuse process that INIT again
 * without the kernel hearing a reply, then asks the kernel to resend
 * what the dead server had read and not answered (FUSE_NOTIFY_RESEND,
 * Linux 6.9).  tests/progs/fuse_takeover_demo.c shows the whole dance.
 *
 * The hooks: the server's custom I/O read hook calls takeover_note_request
 * on every request it read; its writev hook calls takeover_swallow before
 * writing (after any patching of the reply, so that the INIT reply kept
 * and compared is the one the kernel got).
 */
#ifndef SHMFS_TAKEOVER_H
#define SHMFS_TAKEOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct fuse_session;

/* Set by the kernel in the unique of a request it resends. */
#define TAKEOVER_UNIQUE_RESEND (1ULL << 63)

/* Read hook: keeps the first FUSE_INIT it is shown (len bytes as read). */
void takeover_note_request(const void *buf, size_t len);
/* The connection's INIT as read, or as replayed; NULL before it. */
const void *takeover_init_bytes(size_t *len);
/* The reply that answered it: as written by the first server, as
 * swallowed on a successor; NULL before it. */
const void *takeover_init_reply(size_t *len);

/* Successor, before its loop: libfuse processes init (len bytes, as
 * takeover_init_bytes gave them to the first server) and negotiates as
 * it did then; the writev hook swallows the reply.  0, -EINVAL (not an
 * INIT), or the reply's error (-EIO: libfuse answered nothing or had
 * already seen an INIT). */
int takeover_replay_init(struct fuse_session *se, const void *init, size_t len);
/* Successor, after the replay: the kernel moves every request read and
 * not answered through a still-open descriptor of the connection back to
 * its queue, marked TAKEOVER_UNIQUE_RESEND.  0, or -errno (-EINVAL:
 * kernel older than 6.9). */
int takeover_notify_resend(int devfd);
/* Writev hook: true if the reply was INIT's during a replay; then *ret
 * is what writev would have returned. */
bool takeover_swallow(const struct iovec *iov, int count, ssize_t *ret);

static inline bool takeover_is_resend(uint64_t unique)
{
	return unique >> 63;
}

/* Holder and servers: one message on a SOCK_SEQPACKET socket, carrying
 * descriptor fd when fd >= 0.  0 or -errno. */
int takeover_send(int sock, int fd, const void *buf, size_t len);
/* Receive one message into buf: its length or -errno; *fd is the
 * descriptor it carried (close-on-exec) or -1. */
ssize_t takeover_recv(int sock, int *fd, void *buf, size_t cap);

#endif
