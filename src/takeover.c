/*
 * The takeover pieces of the FUSE protocol (see takeover.h): the INIT
 * request and its reply as this process saw them, the replay of that
 * INIT into a fresh libfuse session, the resend notification, and
 * descriptor passing.  libfuse 3.14 reads INIT with read(2) through the
 * custom I/O read hook (no splice on receive), which is where the bytes
 * are taken.
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "takeover.h"

#define TK_NOTIFY_RESEND 7 /* FUSE_NOTIFY_RESEND, Linux 6.9 */
#define TK_INIT_MAX 4096 /* an INIT is 104 bytes today */

static struct {
	pthread_mutex_t lock;
	unsigned char *init;
	size_t init_len;
	uint64_t init_unique;
	unsigned char *reply;
	size_t reply_len;
	bool replaying; /* swallow INIT's reply rather than record a send */
} T = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

/* From INIT's arrival to its reply: keeps the writev hook's usual path
 * to one load. */
static atomic_bool awaiting_reply;

static bool is_init(const void *buf, size_t len, uint64_t *unique)
{
	struct fuse_in_header h;

	if (len < sizeof(h) || len > TK_INIT_MAX)
		return false;
	memcpy(&h, buf, sizeof(h));
	if (h.opcode != FUSE_INIT || h.len != len)
		return false;
	*unique = h.unique;
	return true;
}

/* Under T.lock. */
static int keep_init(const void *buf, size_t len, uint64_t unique)
{
	unsigned char *copy = malloc(len);

	if (!copy)
		return -ENOMEM;
	memcpy(copy, buf, len);
	free(T.init);
	free(T.reply);
	T.init = copy;
	T.init_len = len;
	T.init_unique = unique;
	T.reply = NULL;
	T.reply_len = 0;
	atomic_store(&awaiting_reply, true);
	return 0;
}

void takeover_note_request(const void *buf, size_t len)
{
	uint64_t unique;

	if (!is_init(buf, len, &unique))
		return;
	pthread_mutex_lock(&T.lock);
	if (!T.init) /* the kernel sends one INIT; keep the first regardless */
		keep_init(buf, len, unique);
	pthread_mutex_unlock(&T.lock);
}

static const void *kept(unsigned char *const *p, const size_t *n, size_t *len)
{
	const void *ret;

	pthread_mutex_lock(&T.lock);
	ret = *p;
	*len = *n;
	pthread_mutex_unlock(&T.lock);
	return ret;
}

const void *takeover_init_bytes(size_t *len)
{
	return kept(&T.init, &T.init_len, len);
}

const void *takeover_init_reply(size_t *len)
{
	return kept(&T.reply, &T.reply_len, len);
}

static size_t iov_total(const struct iovec *iov, int count)
{
	size_t n = 0;

	for (int i = 0; i < count; i++)
		n += iov[i].iov_len;
	return n;
}

bool takeover_swallow(const struct iovec *iov, int count, ssize_t *ret)
{
	struct fuse_out_header oh;
	unsigned char *copy;
	size_t total, off = 0;
	bool swallow;

	if (!atomic_load(&awaiting_reply))
		return false;
	if (count < 1 || iov[0].iov_len < sizeof(oh))
		return false;
	memcpy(&oh, iov[0].iov_base, sizeof(oh));
	total = iov_total(iov, count);
	pthread_mutex_lock(&T.lock);
	if (!T.init || T.reply || oh.unique != T.init_unique) {
		pthread_mutex_unlock(&T.lock);
		return false;
	}
	copy = malloc(total);
	if (copy) {
		for (int i = 0; i < count; i++) {
			memcpy(copy + off, iov[i].iov_base, iov[i].iov_len);
			off += iov[i].iov_len;
		}
		T.reply = copy;
		T.reply_len = total;
	}
	swallow = T.replaying;
	atomic_store(&awaiting_reply, false);
	pthread_mutex_unlock(&T.lock);
	if (swallow)
		*ret = (ssize_t)total;
	return swallow;
}

int takeover_replay_init(struct fuse_session *se, const void *init, size_t len)
{
	struct fuse_out_header oh;
	struct fuse_buf fbuf = { .size = len };
	uint64_t unique;
	void *mem;
	int err;

	if (!is_init(init, len, &unique))
		return -EINVAL;
	mem = malloc(len); /* libfuse's buffer, apart from the kept copy */
	if (!mem)
		return -ENOMEM;
	memcpy(mem, init, len);
	pthread_mutex_lock(&T.lock);
	err = keep_init(init, len, unique);
	T.replaying = true;
	pthread_mutex_unlock(&T.lock);
	if (err) {
		free(mem);
		return err;
	}
	fbuf.mem = mem;
	/* do_init runs here, in this thread: the init callback and the
	 * reply's writev both happen before this returns. */
	fuse_session_process_buf(se, &fbuf);
	free(mem);
	pthread_mutex_lock(&T.lock);
	T.replaying = false;
	atomic_store(&awaiting_reply, false);
	if (!T.reply || T.reply_len < sizeof(oh)) {
		err = -EIO;
	} else {
		memcpy(&oh, T.reply, sizeof(oh));
		err = oh.error < 0 ? oh.error : 0;
	}
	pthread_mutex_unlock(&T.lock);
	return err;
}

int takeover_notify_resend(int devfd)
{
	/* A notification: unique 0, the code in error, no payload. */
	struct fuse_out_header oh = {
		.len = sizeof(oh),
		.error = TK_NOTIFY_RESEND,
		.unique = 0,
	};
	ssize_t n = write(devfd, &oh, sizeof(oh));

	if (n < 0)
		return -errno;
	return n == sizeof(oh) ? 0 : -EIO;
}

int takeover_send(int sock, int fd, const void *buf, size_t len)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = sizeof(ctl.buf);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	for (;;) {
		ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);

		if (n >= 0)
			return (size_t)n == len ? 0 : -EMSGSIZE;
		if (errno != EINTR)
			return -errno;
	}
}

ssize_t takeover_recv(int sock, int *fd, void *buf, size_t cap)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = cap };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf),
	};
	ssize_t n;

	*fd = -1;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c;
	     c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	}
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return -EMSGSIZE;
	}
	return n;
}
