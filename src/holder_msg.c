/*
 * The messages between the holder and the other ends of its sockets, both
 * sides' (takeover.c carries them): one sent or received with the
 * descriptor it carries, and the abstract name at which a holder listens
 * for `shmfs --upgrade`.  Their format is in holder_impl.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "holder_impl.h"
#include "takeover.h"

int msg_send(int sock, const struct hmsg *m, const void *data, size_t len,
	     int fd)
{
	char small[sizeof(*m) + 256], *buf = small;
	int err;

	if (len > HMSG_MAX - sizeof(*m))
		return -EMSGSIZE;
	if (len > sizeof(small) - sizeof(*m) && !(buf = malloc(HMSG_MAX)))
		return -ENOMEM;
	memcpy(buf, m, sizeof(*m));
	if (len)
		memcpy(buf + sizeof(*m), data, len);
	err = takeover_send(sock, fd, buf, sizeof(*m) + len);
	if (buf != small)
		free(buf);
	return err;
}

ssize_t msg_recv(int sock, struct hmsg *m, void *data, size_t cap, int *fd)
{
	char *buf = malloc(HMSG_MAX);
	ssize_t n;

	*fd = -1;
	if (!buf)
		return -ENOMEM;
	n = takeover_recv(sock, fd, buf, HMSG_MAX);
	if (n > 0 && ((size_t)n < sizeof(*m) || (size_t)n - sizeof(*m) > cap)) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		n = -EPROTO;
	}
	if (n > 0) {
		memcpy(m, buf, sizeof(*m));
		if ((size_t)n > sizeof(*m))
			memcpy(data, buf + sizeof(*m), (size_t)n - sizeof(*m));
	}
	free(buf);
	return n;
}

void abstract_name(struct sockaddr_un *a, socklen_t *len, pid_t pid)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
			   (size_t)snprintf(a->sun_path + 1,
					    sizeof(a->sun_path) - 1,
					    "shmfs-holder.%d", (int)pid));
}
