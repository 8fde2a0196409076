/*
 * The control node's protocol (shmfs_proto.h): one ioctl per request,
 * whose handlers hold only their own logic; the dispatcher checks the
 * request's number and size and builds the caller's credentials once,
 * before any handler takes the table lock.
 */
#include <errno.h>
#include <string.h>
#include <sys/shm.h>
#include <unistd.h>

#include "front.h"
#include "shmfs_proto.h"
#include "sysinfo.h"

/* One request on the control node: who asks, through which open file. */
struct ctl_req {
	fuse_req_t req;
	uint64_t file;
	struct perm_cred c;
};

static int ctl_hello(struct ctl_req *r, void *io)
{
	struct shmfs_hello *h = io;
	int backing = 0;
	pid_t tgid;

	h->version = SHMFS_PROTO_VERSION;
	h->page_size = (uint32_t)O.page_size;
	h->daemon_pid = (int32_t)O.table_pid; /* the published table's too */
	seg_session_id(r->file, r->c.pid, &h->sid, &h->gen);
	h->flags = h->sid && !seg_tally_find(h->sid, h->gen, &tgid, &backing) &&
				   backing
			   ? SHMFS_HELLO_TALLY
			   : 0;
	return 0;
}

static int ctl_get(struct ctl_req *r, void *io)
{
	struct shmfs_get *g = io;
	int err, shmid = -1;

	err = seg_get((key_t)g->key, g->size, g->flags, &r->c, &shmid);
	g->shmid = shmid;
	return err;
}

static int ctl_ctl(struct ctl_req *r, void *io)
{
	struct shmfs_ctl *ctl = io;

	/* The caller's own limit, as the kernel reads it: never its word. */
	if (ctl->cmd == SHM_LOCK)
		ctl->memlock = sysinfo_memlock(r->c.pid);
	return seg_ctl(&r->c, ctl);
}

static int ctl_fork(struct ctl_req *r, void *io)
{
	struct shmfs_fork *f = io;

	return seg_fork(r->file, &r->c, &f->token, &f->count);
}

static int ctl_fork_child(struct ctl_req *r, void *io)
{
	struct shmfs_fork *f = io;

	return seg_fork_child(r->file, &r->c, f->token);
}

static int ctl_fork_abort(struct ctl_req *r, void *io)
{
	struct shmfs_fork *f = io;

	return seg_fork_abort(r->file, &r->c, f->token);
}

/* A process that inherited .ctl without the fork protocol. */
static int ctl_session(struct ctl_req *r, void *io)
{
	int err = seg_session_start(r->file, r->c.pid);

	return err ? err : ctl_hello(r, io);
}

static int ctl_detach(struct ctl_req *r, void *io)
{
	struct shmfs_detach *d = io;

	if (d->flags & SHMFS_DETACH_TALLY)
		return seg_detach_tally(r->c.pid, d->shmid);
	return seg_detach(r->c.pid, d->shmid);
}

static int ctl_access(struct ctl_req *r, void *io)
{
	struct shmfs_access *a = io;

	return seg_access(a->shmid, a->mask, &r->c);
}

static const struct {
	unsigned int cmd;
	size_t size;
	const char *name;
	int (*fn)(struct ctl_req *r, void *io);
} ctl_cmds[] = {
	{ SHMFS_IOC_HELLO, sizeof(struct shmfs_hello), "hello", ctl_hello },
	{ SHMFS_IOC_GET, sizeof(struct shmfs_get), "shmget", ctl_get },
	{ SHMFS_IOC_CTL, sizeof(struct shmfs_ctl), "shmctl", ctl_ctl },
	{ SHMFS_IOC_FORK, sizeof(struct shmfs_fork), "fork", ctl_fork },
	{ SHMFS_IOC_FORK_CHILD, sizeof(struct shmfs_fork), "fork child",
	  ctl_fork_child },
	{ SHMFS_IOC_FORK_ABORT, sizeof(struct shmfs_fork), "fork abort",
	  ctl_fork_abort },
	{ SHMFS_IOC_ACCESS, sizeof(struct shmfs_access), "access", ctl_access },
	{ SHMFS_IOC_DETACH, sizeof(struct shmfs_detach), "shmdt", ctl_detach },
	{ SHMFS_IOC_SESSION, sizeof(struct shmfs_hello), "session",
	  ctl_session },
};

/*
 * Every request on the control node: the caller's credentials (its
 * process, not its thread) are built here once, before any handler
 * takes the table lock.
 */
void shmfs_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
		 struct fuse_file_info *fi, unsigned flags, const void *in_buf,
		 size_t in_bufsz, size_t out_bufsz)
{
	union shmfs_ioc io;
	struct ctl_req r = { .req = req };
	size_t i;
	int err;

	count_req(R_IOCTL);
	(void)arg;
	if (ino != INO_CTL || (flags & FUSE_IOCTL_COMPAT)) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	for (i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++)
		if (ctl_cmds[i].cmd == cmd)
			break;
	if (i == sizeof(ctl_cmds) / sizeof(ctl_cmds[0]) ||
	    in_bufsz != ctl_cmds[i].size || out_bufsz != ctl_cmds[i].size) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	r.file = fi->fh;
	cred_of(req, &r.c, true);
	memcpy(&io, in_buf, in_bufsz);
	err = ctl_cmds[i].fn(&r, &io);
	if (err == PERM_NEED_GROUPS) {
		/* as WITH_GROUPS, from the request as it came */
		perm_cred_load_groups(&r.c);
		memcpy(&io, in_buf, in_bufsz);
		err = ctl_cmds[i].fn(&r, &io);
	}
	perm_cred_fini(&r.c);
	if (err) {
		reply_err(req, ctl_cmds[i].name, -err);
		return;
	}
	fuse_reply_ioctl(req, 0, &io, out_bufsz);
}
