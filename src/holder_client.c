/*
 * The serving process's end of its socket to the holder: the first
 * server's, from the fork of its holder (holder_start), or a successor's,
 * from what the holder handed it (holder_adopt).  Over it the server
 * tells the holder each descriptor to keep and each it lets go, the bytes
 * of FUSE_INIT, and that it serves.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "holder.h"
#include "holder_impl.h"
#include "seg.h"

/* A server's end of its socket to the holder: room for the messages of
 * many requests between two of the holder's ticks (holder_main). */
static void big_sndbuf(int sock)
{
	int buf = 4 << 20;

	if (setsockopt(sock, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)) < 0)
		setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
}

/* ---- the server's side ---- */

static int hsock = -1;
static pid_t hpid;

static void keep_role(int fd, enum keep_role role)
{
	struct hmsg m = { .type = H_KEEP, .num = fd, .a = role };

	if (hsock >= 0 && fd >= 0)
		msg_send(hsock, &m, NULL, 0, fd);
}

void holder_keep(int fd)
{
	keep_role(fd, ROLE_FD);
}

void holder_drop(int fd)
{
	struct hmsg m = { .type = H_DROP, .num = fd };

	if (hsock >= 0 && fd >= 0)
		msg_send(hsock, &m, NULL, 0, -1);
}

void holder_note_init(const void *buf, size_t len)
{
	static bool sent;
	struct hmsg m = { .type = H_INIT };

	if (hsock < 0 || sent || len > 65536)
		return;
	sent = true;
	msg_send(hsock, &m, buf, len, -1);
}

void holder_ready(void)
{
	struct hmsg m = { .type = H_READY, .num = (int32_t)getpid() };

	if (hsock >= 0)
		msg_send(hsock, &m, NULL, 0, -1);
}

pid_t holder_pid(void)
{
	return hpid;
}

void holder_client_start(int sock, pid_t holder, int devfd)
{
	int i, n;

	big_sndbuf(sock);
	hsock = sock;
	hpid = holder;
	/* what the table holds already, and the connection */
	keep_role(devfd, ROLE_DEV);
	keep_role(seg_heap_fd(), ROLE_HEAP);
	{
		int fds[4096];

		n = seg_fds(fds, 4096);
		for (i = 0; i < n && i < 4096; i++)
			holder_keep(fds[i]);
	}
}

/* ---- a successor's side ---- */

int holder_adopt(const char *arg, struct holder_handoff *h)
{
	static char buf[HMSG_MAX];
	int dev, heap, sock, holder, got = 0;
	struct hmsg m;
	ssize_t n;
	int fd;

	memset(h, 0, sizeof(*h));
	if (sscanf(arg, "%d,%d,%d,%d", &dev, &heap, &sock, &holder) != 4 ||
	    dev < 0 || heap < 0 || sock < 0 || holder <= 0)
		return -EINVAL;
	/* what we were handed must not reach a program we start */
	fcntl(dev, F_SETFD, FD_CLOEXEC);
	fcntl(heap, F_SETFD, FD_CLOEXEC);
	fcntl(sock, F_SETFD, FD_CLOEXEC);
	h->dev = dev;
	h->heap = heap;
	h->sock = sock;
	h->holder = holder;
	while (got != 3) {
		n = msg_recv(sock, &m, buf, sizeof(buf), &fd);
		if (fd >= 0)
			close(fd);
		if (n <= 0)
			return n ? (int)n : -ECONNRESET;
		n -= (ssize_t)sizeof(m);
		if (m.type == H_INIT && !(got & 1)) {
			h->init = malloc((size_t)n);
			if (!h->init)
				return -ENOMEM;
			memcpy(h->init, buf, (size_t)n);
			h->init_len = (size_t)n;
			got |= 1;
		} else if (m.type == H_KEPT && !(got & 2)) {
			int more = (int)((size_t)n / sizeof(int));
			int *k = realloc(h->kept,
					 ((size_t)h->nkept + (size_t)more + 1) *
						 sizeof(int));

			if (!k)
				return -ENOMEM;
			h->kept = k;
			memcpy(h->kept + h->nkept, buf, (size_t)n);
			h->nkept += more;
			if (m.a)
				got |= 2;
		}
	}
	for (n = 0; n < h->nkept; n++)
		fcntl(h->kept[n], F_SETFD, FD_CLOEXEC);
	big_sndbuf(sock);
	hsock = sock;
	hpid = holder;
	return 0;
}
