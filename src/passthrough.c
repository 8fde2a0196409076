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
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "passthrough.h"

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

static ssize_t pt_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	return read(fd, buf, len);
}

static ssize_t pt_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	const struct pt_out_header *h = iov[0].iov_base;

	(void)userdata;
	if (count == 2 && iov[0].iov_len == sizeof(*h) && !h->error) {
		if (open_backing &&
		    iov[1].iov_len == sizeof(struct pt_open_out)) {
			struct pt_open_out *o = iov[1].iov_base;

			o->open_flags |= PT_FOPEN_PASSTHROUGH;
			o->backing_id = open_backing;
		} else if (init_reply && iov[1].iov_len == PT_INIT_OUT_SIZE) {
			struct pt_init_out_head *o = iov[1].iov_base;

			o->flags |= PT_INIT_EXT;
			o->flags2 |= PT_PASSTHROUGH_FLAGS2;
			o->max_stack_depth = PT_STACK_DEPTH;
			init_reply = false;
		}
	}
	return writev(fd, iov, count);
}

int pt_install(struct fuse_session *se, int want)
{
	static const struct fuse_custom_io io = {
		.read = pt_read,
		.writev = pt_writev,
	};

	dev_fd = fuse_session_fd(se);
	wanted = want;
	return fuse_session_custom_io(se, &io, dev_fd);
}

void pt_init(void)
{
	init_reply = wanted;
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
