/*
 * What the holder (holder.c) and the other ends of its sockets share, and
 * nothing else includes: the format of their messages (holder_msg.c sends
 * and receives them), the name at which a holder listens for upgraders,
 * and how the first server takes up its end when it forks its holder.
 * The server's end is holder_client.c, `shmfs --upgrade` holder_upgrade.c.
 */
#ifndef SHMFS_HOLDER_IMPL_H
#define SHMFS_HOLDER_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

enum hmsg_type {
	H_KEEP = 1, /* server: keep this descriptor (a: role) */
	H_DROP, /* server: descriptor num is let go */
	H_INIT, /* server: FUSE_INIT's bytes follow */
	H_READY, /* successor: serving */
	H_KEPT, /* holder to successor: the numbers kept follow */
	H_QUERY, /* upgrader: may I (a: my table format)? */
	H_INFO, /* holder: a: the table's format, b: server pid */
	H_GO, /* upgrader: start the binary whose descriptor comes */
	H_DONE, /* holder: a: 0 or errno, b: new pid, c: pause in us */
};

enum keep_role { ROLE_FD, ROLE_DEV, ROLE_HEAP };

struct hmsg {
	uint32_t type;
	int32_t num;
	uint64_t a, b, c;
};

/* The largest message: INIT's bytes, or a piece of the numbers kept. */
#define KEPT_PIECE 16384
#define HMSG_MAX (sizeof(struct hmsg) + KEPT_PIECE * sizeof(int))

/* One message: the header, then len bytes of data; a descriptor with it
 * when fd >= 0. */
int msg_send(int sock, const struct hmsg *m, const void *data, size_t len,
	     int fd);
/* One message: its length (0 at the peer's end, -errno), its data past
 * the header in data (up to cap bytes), a descriptor (close-on-exec) in
 * *fd or -1. */
ssize_t msg_recv(int sock, struct hmsg *m, void *data, size_t cap, int *fd);
/* The abstract name at which holder pid listens for upgraders. */
void abstract_name(struct sockaddr_un *a, socklen_t *len, pid_t pid);

/* The first server, its holder (pid holder) forked: sock is its end of
 * the socket between them, devfd its /dev/fuse (holder_client.c). */
void holder_client_start(int sock, pid_t holder, int devfd);

#endif
