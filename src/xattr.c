/*
 * Extended attributes: the shmid_ds fields stat cannot show (user.shm.*),
 * who is attached (user.shm.pids), and the daemon's own counters on the
 * root (user.shmfs.requests, user.shmfs.stats).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "front.h"
#include "killpoint.h"
#include "uring.h"

/* user.shm.<name>, each field of shmid_ds as /proc/sysvipc/shm prints it:
 * x hexadecimal, d signed, u unsigned, o octal (pids: xattr_pids). */
static const char *const xattr_names[] = {
	"key",	"shmid", "segsz", "cpid",  "lpid", "nattch", "cuid",
	"cgid", "atime", "dtime", "ctime", "mode", "pids",
};
static const char xattr_fmt[] = "xdudduuudddo";
#define N_XATTRS (sizeof(xattr_names) / sizeof(xattr_names[0]))

static int xattr_value(const struct seg_view *v, const char *field, char *out,
		       size_t size)
{
	const struct shmfs_ds *d = &v->ds;
	const uint64_t val[] = {
		(uint32_t)d->key,
		(uint64_t)(int64_t)d->shmid,
		d->segsz,
		(uint64_t)(int64_t)d->cpid,
		(uint64_t)(int64_t)d->lpid,
		d->nattch,
		d->cuid,
		d->cgid,
		(uint64_t)d->atime,
		(uint64_t)d->dtime,
		(uint64_t)d->ctime,
		d->mode,
	};
	size_t i;

	for (i = 0; i < sizeof(val) / sizeof(val[0]); i++)
		if (!strcmp(field, xattr_names[i]))
			break;
	switch (i < sizeof(val) / sizeof(val[0]) ? xattr_fmt[i] : 0) {
	case 'x':
		return snprintf(out, size, "0x%08" PRIx64, val[i]);
	case 'd':
		return snprintf(out, size, "%" PRId64, (int64_t)val[i]);
	case 'u':
		return snprintf(out, size, "%" PRIu64, val[i]);
	case 'o':
		return snprintf(out, size, "%#" PRIo64, val[i]);
	default:
		return -ENODATA;
	}
}

static void reply_xattr_buf(fuse_req_t req, const char *buf, size_t len,
			    size_t size)
{
	if (!size)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, buf, len);
}

/* "lookup 12\ngetattr 3\n...": what the daemon has served so far. */
static void reply_requests(fuse_req_t req, size_t size)
{
	char text[R_NTYPES * 40];
	size_t len = 0;
	int t;

	for (t = 0; t < R_NTYPES; t++)
		len += (size_t)snprintf(
			text + len, sizeof(text) - len, "%s %" PRIu64 "\n",
			req_names[t],
			__atomic_load_n(&req_count[t], __ATOMIC_RELAXED));
	reply_xattr_buf(req, text, len, size);
}

static void reply_pids(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct perm_cred c;
	char *text = NULL;
	int err;

	cred_of(req, &c, false);
	err = WITH_GROUPS(&c, seg_pids(ino - SEG_BASE, &c, &text));
	perm_cred_fini(&c);
	if (err) {
		reply_err(req, "getxattr user.shm.pids", -err);
		return;
	}
	if (strlen(text) > 65536)
		fuse_reply_err(req, E2BIG);
	else
		reply_xattr_buf(req, text, strlen(text), size);
	free(text);
}

/* The table's totals, for checking invariants after a load test. */
static void reply_stats(fuse_req_t req, size_t size)
{
	struct seg_stats s;
	char text[512];
	int n;

	seg_get_stats(&s);
	n = snprintf(text, sizeof(text),
		     "shmids %u\npages %" PRIu64 "\nobjects %" PRIu64
		     "\nhandles %" PRIu64 "\nprocesses %" PRIu64
		     "\nsessions %" PRIu64 "\npending_forks %" PRIu64
		     "\nattaches %" PRIu64 "\nmemory %" PRIu64
		     "\npassthrough %" PRIu64 "\narena %" PRIu64
		     "\nunmeasured %" PRIu64 "\nheap_bytes %" PRIu64
		     "\ntx_commits %" PRIu64 "\ntx_pages %" PRIu64
		     "\nhot_pages %" PRIu64 "\nring_requests %" PRIu64
		     "\nchildren_reads %" PRIu64 "\n",
		     s.used, s.tot_pages, s.objects, s.handles, s.procs,
		     s.sessions, s.pending_forks, s.attaches, s.memory,
		     s.passthrough, s.arena, s.unmeasured, s.heap_bytes,
		     s.tx_commits, s.tx_pages, s.hot_pages, uring_served(),
		     s.kids_reads);
	reply_xattr_buf(req, text, (size_t)n, size);
}

void shmfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    size_t size)
{
	struct seg_view v;
	char val[64];
	int n, err;

	count_req(R_GETXATTR);
	if (ino == INO_ROOT &&
	    (!strcmp(name, PID_XATTR) || !strcmp(name, HOLDER_XATTR))) {
		/* who serves, and who keeps the mount for the next server:
		 * anyone's to know, as ps tells */
		n = snprintf(val, sizeof(val), "%d",
			     !strcmp(name, PID_XATTR) ? (int)getpid()
						      : (int)O.holder);
		reply_xattr_buf(req, val, (size_t)n, size);
		return;
	}
	if (ino == INO_ROOT &&
	    (!strcmp(name, REQUESTS_XATTR) || !strcmp(name, STATS_XATTR))) {
		/* What the daemon holds and serves, across every user:
		 * root's to know, as the kernel's own counters are. */
		if (fuse_req_ctx(req)->uid != 0)
			reply_err(req, "getxattr of the daemon's counters",
				  EACCES);
		else if (!strcmp(name, REQUESTS_XATTR))
			reply_requests(req, size);
		else
			reply_stats(req, size);
		return;
	}
	if (!ino_is_seg(ino) ||
	    strncmp(name, XATTR_PREFIX, sizeof(XATTR_PREFIX) - 1)) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	err = seg_view_of(ino, &v);
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	if (!strcmp(name, XATTR_PREFIX "pids")) {
		reply_pids(req, ino, size);
		return;
	}
	n = xattr_value(&v, name + sizeof(XATTR_PREFIX) - 1, val, sizeof(val));
	if (n < 0)
		fuse_reply_err(req, -n);
	else
		reply_xattr_buf(req, val, (size_t)n, size);
}

/*
 * Only names the caller may read, as the kernel lists trusted.* only to
 * whoever may read them: getfattr -d shows anyone no error.
 */
void shmfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	uid_t uid = fuse_req_ctx(req)->uid;
	char list[N_XATTRS * 24];
	size_t len = 0, i;
	struct seg_view v;
	bool owner = uid == 0;

	count_req(R_LISTXATTR);
	if (ino == INO_ROOT) {
		len = (size_t)snprintf(list, sizeof(list), "%s", PID_XATTR) + 1;
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s",
					HOLDER_XATTR) +
		       1;
	}
	if (ino == INO_ROOT && uid == 0) {
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s",
					REQUESTS_XATTR) +
		       1;
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s",
					STATS_XATTR) +
		       1;
	}
	if (ino_is_seg(ino) && !owner && seg_view_of(ino, &v) == 0)
		owner = uid == v.ds.uid || uid == v.ds.cuid;
	if (ino_is_seg(ino))
		for (i = 0; i < N_XATTRS; i++)
			if (owner || strcmp(xattr_names[i], "pids"))
				len += (size_t)snprintf(list + len,
							sizeof(list) - len,
							"%s%s", XATTR_PREFIX,
							xattr_names[i]) +
				       1;
	reply_xattr_buf(req, list, len, size);
}

void shmfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    const char *value, size_t size, int flags)
{
	count_req(R_SETXATTR);
	if (ino == INO_ROOT && !strcmp(name, KILLPOINT_XATTR) &&
	    killpoint_enabled()) {
		int err = fuse_req_ctx(req)->uid ? -EPERM
						 : killpoint_arm(value, size);

		fuse_reply_err(req, -err);
		return;
	}
	(void)value;
	(void)size;
	(void)flags;
	reply_err(req, "setxattr",
		  strncmp(name, XATTR_PREFIX, sizeof(XATTR_PREFIX) - 1)
			  ? ENOTSUP
			  : EPERM);
}

void shmfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	count_req(R_SETXATTR);
	(void)ino;
	reply_err(req, "removexattr",
		  strncmp(name, XATTR_PREFIX, sizeof(XATTR_PREFIX) - 1)
			  ? ENOTSUP
			  : EPERM);
}
