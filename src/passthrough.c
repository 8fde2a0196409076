/*
 * FUSE passthrough for libfuse 3.14, which predates it (see passthrough.h).
 * The protocol pieces (Linux 6.9 and later, include/uapi/linux/fuse.h):
 * the kernel offers FUSE_PASSTHROUGH in INIT's flags2; the reply asks for
 * it in its own flags2 together with a max_stack_depth (asked for
 * whatever was offered: a kernel ignores flags it does not know, and
 * libfuse reads the offer with splice, past the read hook); FUSE_DEV_IOC_
 * BACKING_OPEN on /dev/fuse turns a descriptor into a backing id; an open
 * reply carrying FOPEN_PASSTHROUGH and that id has the kernel send reads,
 * writes and mmap of the open file to the backing file.  The kernel keeps
 * the backing file referenced until BACKING_CLOSE and while any open file
 * uses it, so the daemon need not keep a descriptor of its own.
 */
#include <errno.h>
#include <stdlib.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "holder.h"
#include "killpoint.h"
#include "passthrough.h"
#include "seg.h"
#include "takeover.h"
#include "uring.h"

#define PT_INIT_EXT (1u << 30) /* in flags: flags2 is meaningful */
#define PT_PASSTHROUGH_FLAGS2 (1u << (37 - 32)) /* FUSE_PASSTHROUGH */
#define PT_FOPEN_PASSTHROUGH (1u << 7)
#define PT_STACK_DEPTH 1 /* memfds stack on nothing */
#define PT_INIT_OUT_SIZE 64 /* what libfuse sends to kernels since 7.23 */

struct pt_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};

#define PT_IOC_BACKING_OPEN _IOW(229, 1, struct pt_backing_map)
#define PT_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

/* The parts of the kernel's headers that are read or patched here. */
struct pt_out_header {
	uint32_t len;
	int32_t error;
	uint64_t unique;
};

struct pt_init_out_head {
	uint32_t major, minor, max_readahead, flags;
	uint16_t max_background, congestion_threshold;
	uint32_t max_write, time_gran;
	uint16_t max_pages, map_alignment;
	uint32_t flags2;
	uint32_t max_stack_depth;
};

struct pt_open_out {
	uint64_t fh;
	uint32_t open_flags;
	int32_t backing_id;
};

static int dev_fd = -1;
static bool wanted;
static __thread bool init_reply; /* from pt_init to INIT's reply */
static __thread int open_backing; /* set around pt_reply_open */

struct pt_in_header {
	uint32_t len;
	uint32_t opcode;
	uint64_t unique;
};

#define PT_FUSE_INIT 26
#define PT_UNIQUE_RESEND (1ULL << 63)
#define PT_RECORD_MAX 4096 /* more than any reply recorded (pheap.h) */

static void (*abandoned)(uint64_t fh);

void pt_on_abandoned(void (*fn)(uint64_t fh))
{
	abandoned = fn;
}

/*
 * A request the kernel sends again (a server died after reading it) that
 * the table has a recorded reply for: it was applied, and its answer is
 * the one its first try built.  Sent here: 1, or 0 without a record, or
 * -1 when the kernel no longer wants it (its caller died meanwhile).
 */
static int pt_answer_recorded(int fd, uint64_t unique)
{
	char rec[PT_RECORD_MAX] __attribute__((aligned(8)));
	struct pt_out_header *h;
	ssize_t n;

	n = table_recorded_reply(unique, rec, PT_RECORD_MAX);
	if (n < (ssize_t)sizeof(*h) || n > PT_RECORD_MAX)
		return 0;
	h = (struct pt_out_header *)(void *)rec;
	h->unique = unique; /* the resent request's own id */
	if (write(fd, rec, (size_t)n) < 0)
		return errno == ENOENT ? -1 : 0;
	return 1;
}

/*
 * Each request as a worker reads it: the table learns which request the
 * thread serves (its changes commit with the reply), the holder gets
 * FUSE_INIT's bytes, and a resent request already applied is answered
 * from its record without reaching libfuse.
 */
static ssize_t pt_read(int fd, void *buf, size_t len, void *userdata)
{
	const struct pt_in_header *h = buf;
	ssize_t n;

	(void)userdata;
	for (;;) {
		n = read(fd, buf, len);
		if (n < (ssize_t)sizeof(*h))
			return n;
		if (h->opcode == PT_FUSE_INIT) {
			holder_note_init(buf, (size_t)n);
			uring_note_init(buf, (size_t)n);
		}
		if (h->unique & PT_UNIQUE_RESEND) {
			/* confirmed before it is answered: table_settle
			 * must not take it for abandoned meanwhile */
			uint64_t fh = table_confirm(h->unique);
			int r = pt_answer_recorded(fd, h->unique);

			if (r < 0 && fh && abandoned)
				abandoned(fh);
			if (r)
				continue;
		}
		table_request(h->unique, h->opcode);
		killpoint("read"); /* read, not applied */
		return n;
	}
}

static ssize_t pt_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	const struct pt_out_header *h = iov[0].iov_base;
	bool rings = false; /* INIT's reply asks for them */

	(void)userdata;
	if (count == 2 && iov[0].iov_len == sizeof(*h) && !h->error) {
		if (open_backing &&
		    iov[1].iov_len == sizeof(struct pt_open_out)) {
			struct pt_open_out *o = iov[1].iov_base;

			o->open_flags |= PT_FOPEN_PASSTHROUGH;
			o->backing_id = open_backing;
		} else if (init_reply && iov[1].iov_len == PT_INIT_OUT_SIZE) {
			struct pt_init_out_head *o = iov[1].iov_base;

			if (wanted) {
				o->flags2 |= PT_PASSTHROUGH_FLAGS2;
				o->max_stack_depth = PT_STACK_DEPTH;
			}
			o->flags2 |= uring_init_flags2();
			if (o->flags2)
				o->flags |= PT_INIT_EXT;
			uring_init_sizes(o->max_write, o->max_pages);
			init_reply = false;
			rings = uring_init_flags2() != 0;
		}
	}
	if (count >= 1 && iov[0].iov_len == sizeof(*h) && h->unique) {
		ssize_t ret;

		if (takeover_swallow(iov, count, &ret))
			return ret;
		/* the request's change commits with these very bytes */
		table_reply(h->unique, iov, count);
		if (!uring_reply(iov, count, &ret))
			ret = writev(fd, iov, count);
		if (ret >= 0)
			table_delivered();
		if (rings && ret >= 0)
			uring_start(); /* the kernel has taken INIT's reply */
		return ret;
	}
	return writev(fd, iov, count);
}

int pt_install(struct fuse_session *se, int fd, int want)
{
	static const struct fuse_custom_io io = {
		.read = pt_read,
		.writev = pt_writev,
	};

	dev_fd = fd;
	wanted = want;
	return fuse_session_custom_io(se, &io, dev_fd);
}

void pt_init(void)
{
	init_reply = true;
}

void pt_uninstall(void)
{
	dev_fd = -1;
}

int pt_backing_open(int fd)
{
	struct pt_backing_map map = { .fd = fd };
	int id;

	if (!wanted || dev_fd < 0)
		return -EOPNOTSUPP;
	id = ioctl(dev_fd, PT_IOC_BACKING_OPEN, &map);
	if (id < 0)
		return -errno;
	return id ? id : -EIO; /* 0 is never a valid id */
}

void pt_backing_close(int id)
{
	uint32_t v = (uint32_t)id;

	if (dev_fd >= 0 && id > 0)
		ioctl(dev_fd, PT_IOC_BACKING_CLOSE, &v);
}

int pt_reply_open(fuse_req_t req, const struct fuse_file_info *fi, int id)
{
	int ret;

	open_backing = id;
	ret = fuse_reply_open(req, fi);
	open_backing = 0;
	return ret;
}
