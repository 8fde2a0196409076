/*
 * FUSE low-level file operations: node ids, names and file calls onto the
 * table (seg.c) and ipcperm (perm.c); holds no table state.  Listings,
 * extended attributes and the control node's protocol have files of
 * their own (front.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "front.h"
#include "names.h"
#include "ofile.h"
#include "passthrough.h"
#include "shmfs_proto.h"
#include "sysinfo.h"

const char *const req_names[R_NTYPES] = {
	"lookup", "forget",   "getattr",   "setattr",  "readdir",   "open",
	"read",	  "write",    "flush",	   "release",  "fsync",	    "access",
	"statfs", "getxattr", "listxattr", "setxattr", "namespace", "ioctl",
};
uint64_t req_count[R_NTYPES];

struct front O;

/* ---- credentials ---- */

static int req_getgroups(void *arg, gid_t *list, int size)
{
	return fuse_req_getgroups(arg, size, list);
}

void cred_of(fuse_req_t req, struct perm_cred *c, bool need_pid)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	perm_cred_init(c, ctx->uid, ctx->gid,
		       need_pid ? sysinfo_tgid(ctx->pid) : ctx->pid);
	c->getgroups = req_getgroups;
	c->arg = req;
	c->defer_groups = true;
}

/*
 * -o verbose logs each refused request, and any user can send refused
 * requests as fast as it likes: a burst of LOG_BURST lines, then
 * LOG_PER_SEC a second, and a count of what was left out.
 */
#define LOG_BURST 100
#define LOG_PER_SEC 20

static bool log_allowed(uint64_t *dropped)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static double tokens = LOG_BURST, last;
	static uint64_t left_out;
	struct timespec ts;
	double now;
	bool ok;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	pthread_mutex_lock(&lock);
	tokens += (now - last) * LOG_PER_SEC;
	if (tokens > LOG_BURST)
		tokens = LOG_BURST;
	last = now;
	ok = tokens >= 1;
	if (ok) {
		tokens -= 1;
		*dropped = left_out;
		left_out = 0;
	} else {
		left_out++;
	}
	pthread_mutex_unlock(&lock);
	return ok;
}

static void verbose_err(fuse_req_t req, const char *what, int err)
{
	const struct fuse_ctx *ctx;
	uint64_t dropped = 0;

	if (!O.verbose || !err || !log_allowed(&dropped))
		return;
	ctx = fuse_req_ctx(req);
	if (dropped)
		fprintf(stderr,
			"shmfs: %" PRIu64 " refused requests not logged\n",
			dropped);
	fprintf(stderr, "shmfs: %s by pid %d uid %u: %s\n", what, (int)ctx->pid,
		(unsigned)ctx->uid, strerror(err));
}

void reply_err(fuse_req_t req, const char *what, int err)
{
	verbose_err(req, what, err);
	fuse_reply_err(req, err);
}

/* ---- attributes ---- */

void stat_dir(struct stat *st, fuse_ino_t ino, mode_t mode)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFDIR | mode;
	st->st_nlink = 2;
	st->st_blksize = (blksize_t)O.page_size;
	st->st_atime = st->st_mtime = st->st_ctime = O.mount_time;
}

static void stat_seg(struct stat *st, const struct seg_view *v)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = (ino_t)v->ds.shmid;
	st->st_mode = S_IFREG | (v->ds.mode & 0777);
	st->st_nlink = v->removed ? 0 : 1;
	st->st_uid = v->ds.uid;
	st->st_gid = v->ds.gid;
	st->st_size = (off_t)v->ds.segsz;
	st->st_blksize = (blksize_t)O.page_size;
	/* never under the table lock: an arena range is measured here */
	st->st_blocks = (blkcnt_t)(seg_view_bytes(v) / 512);
	/* SysV leaves a time 0 until its event: ls -l would say "Jan 1
	 * 1970".  Show the creation (ctime) there instead; the xattrs keep
	 * the exact fields (shmfs.1, MAPPING). */
	st->st_ctime = (time_t)v->ds.ctime;
	st->st_atime = v->ds.atime ? (time_t)v->ds.atime : st->st_ctime;
	st->st_mtime = v->ds.dtime ? (time_t)v->ds.dtime : st->st_ctime;
}

int stat_node(fuse_ino_t ino, struct stat *st, double *timeout)
{
	/* the root's own nodes, by node id (INO_ROOT .. INO_TABLE) */
	static const mode_t modes[] = { 0,
					S_IFDIR | 0755,
					S_IFREG | 0666,
					S_IFDIR | 0755,
					S_IFREG | 0444,
					S_IFLNK | 0777 };

	if (ino == INO_TALLYDIR || ino_is_tally(ino))
		return tallyfs_stat(ino, st, timeout);
	*timeout = TIMEOUT_LONG;
	if (ino_is_key(ino)) {
		*timeout = TIMEOUT_NONE;
		if (!seg_key_exists(ino_key(ino)))
			return -ENOENT;
		stat_dir(st, ino, 0755);
		return 0;
	}
	if (ino < INO_ROOT || ino > INO_TABLE ||
	    (ino == INO_TABLE && !O.table_path))
		return -ENOENT;
	stat_dir(st, ino, modes[ino] & 0777);
	st->st_mode = modes[ino];
	if (!S_ISDIR(modes[ino]))
		st->st_nlink = 1;
	if (ino == INO_TABLE)
		st->st_size = (off_t)strlen(O.table_path);
	return 0;
}

/*
 * The segment behind a node id.  A freed shmid is gone at once, even
 * through a name the kernel still caches until the notifier drops it.
 */
int seg_view_of(fuse_ino_t ino, struct seg_view *v)
{
	int err = seg_lookup_serial(ino - SEG_BASE, v);

	return !err && v->freed ? -ENOENT : err;
}

static void reply_seg_entry(fuse_req_t req, const struct seg_view *v,
			    double entry_timeout)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = SEG_BASE + v->serial;
	e.generation = 1;
	e.entry_timeout = entry_timeout;
	e.attr_timeout = TIMEOUT_NONE;
	stat_seg(&e.attr, v);
	if (fuse_reply_entry(req, &e) != 0)
		seg_forget(v->serial, 1); /* the kernel never got it */
}

static void reply_node_entry(fuse_req_t req, fuse_ino_t ino)
{
	struct fuse_entry_param e;
	double timeout;
	int err;

	memset(&e, 0, sizeof(e));
	err = stat_node(ino, &e.attr, &timeout);
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	e.ino = ino;
	e.generation = 1;
	/* A key directory's node id is its key: a cached name is right
	 * whenever the key exists, and its getattr says when it does not. */
	e.entry_timeout = ino_is_key(ino) ? TIMEOUT_LONG : timeout;
	e.attr_timeout = timeout;
	fuse_reply_entry(req, &e);
}

/* ---- lookup, forget, getattr ---- */

static void shmfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	count_req(R_LOOKUP);
	struct seg_view v;
	key_t key;
	int id, err;

	if (parent == INO_ROOT) {
		if (!strcmp(name, SHMFS_CTL_NAME))
			reply_node_entry(req, INO_CTL);
		else if (!strcmp(name, SHMFS_ID_DIR))
			reply_node_entry(req, INO_IDDIR);
		else if (!strcmp(name, SHMFS_STATUS_NAME))
			reply_node_entry(req, INO_STATUS);
		else if (!strcmp(name, SHMFS_TABLE_NAME))
			reply_node_entry(req, INO_TABLE);
		else if (!strcmp(name, SHMFS_TALLY_DIR))
			reply_node_entry(req, INO_TALLYDIR);
		else if (names_parse_key(name, &key))
			reply_node_entry(req, KEY_BASE + (uint32_t)key);
		else
			fuse_reply_err(req, ENOENT);
		return;
	}
	if (parent == INO_TALLYDIR && tallyfs_ino(name)) {
		reply_node_entry(req, tallyfs_ino(name));
		return;
	}
	if (parent == INO_TALLYDIR || !names_parse_shmid(name, &id)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (ino_is_key(parent)) {
		err = seg_lookup_name(ino_key(parent), id, true, &v);
		if (err)
			fuse_reply_err(req, -err);
		else
			reply_seg_entry(req, &v, TIMEOUT_NONE);
	} else if (parent == INO_IDDIR) {
		err = seg_lookup_id(id, true, &v);
		if (err)
			fuse_reply_err(req, -err);
		else
			reply_seg_entry(req, &v, TIMEOUT_LONG);
	} else {
		fuse_reply_err(req, ENOTDIR);
	}
}

static void shmfs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	count_req(R_GETATTR);
	if (ino == INO_TABLE && O.table_path)
		fuse_reply_readlink(req, O.table_path);
	else
		fuse_reply_err(req, EINVAL);
}

static void shmfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	count_req(R_FORGET);
	if (ino_is_seg(ino))
		seg_forget(ino - SEG_BASE, nlookup);
	fuse_reply_none(req);
	table_request_done(); /* no reply to commit with */
}

static void shmfs_forget_multi(fuse_req_t req, size_t count,
			       struct fuse_forget_data *forgets)
{
	size_t i;

	count_req(R_FORGET);
	for (i = 0; i < count; i++)
		if (ino_is_seg(forgets[i].ino))
			seg_forget(forgets[i].ino - SEG_BASE,
				   forgets[i].nlookup);
	fuse_reply_none(req);
	table_request_done();
}

static void shmfs_getattr(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct seg_view v;
	struct stat st;
	double timeout;
	int err;

	count_req(R_GETATTR);
	(void)fi;
	if (ino_is_seg(ino)) {
		err = seg_view_of(ino, &v);
		if (err) {
			fuse_reply_err(req, -err);
			return;
		}
		stat_seg(&st, &v);
		fuse_reply_attr(req, &st, TIMEOUT_NONE);
		return;
	}
	err = stat_node(ino, &st, &timeout);
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_attr(req, &st, timeout);
}

/* ---- setattr: chmod, chown ---- */

static void shmfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
			  int to_set, struct fuse_file_info *fi)
{
	long mode = -1, uid = -1, gid = -1;
	struct perm_cred c;
	struct seg_view v;
	struct stat st;
	int err;

	count_req(R_SETATTR);
	if (!ino_is_seg(ino)) {
		reply_err(req, "setattr", EPERM);
		return;
	}
	err = -seg_view_of(ino, &v);
	if (!err && (to_set & FUSE_SET_ATTR_SIZE) &&
	    (uint64_t)attr->st_size != v.ds.segsz)
		err = EPERM; /* a segment's size is fixed at shmget */
	else if (!err && (to_set & FUSE_SET_ATTR_SIZE) && !fi) {
		/* A no-op, but a change all the same: truncate(2) by name
		 * needs write permission, as every other change needs its
		 * own; ftruncate's descriptor was checked at open. */
		cred_of(req, &c, false);
		err = -WITH_GROUPS(&c, seg_access(v.ds.shmid, PERM_W, &c));
		perm_cred_fini(&c);
		if (err == EINVAL)
			err = ENOENT; /* the shmid went meanwhile */
	}
	if (!err &&
	    (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
		       FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW)))
		err = EPERM; /* the SysV times record attach and detach */
	if (err) {
		reply_err(req, "setattr", err);
		return;
	}
	if (to_set & FUSE_SET_ATTR_MODE)
		mode = (long)(attr->st_mode & 07777);
	if (to_set & FUSE_SET_ATTR_UID)
		uid = (long)attr->st_uid;
	if (to_set & FUSE_SET_ATTR_GID)
		gid = (long)attr->st_gid;
	if (mode < 0 && uid < 0 && gid < 0) {
		stat_seg(&st, &v);
		fuse_reply_attr(req, &st, TIMEOUT_NONE);
		return;
	}
	cred_of(req, &c, false);
	err = WITH_GROUPS(&c,
			  seg_setattr(ino - SEG_BASE, &c, mode, uid, gid, &v));
	perm_cred_fini(&c);
	if (err) {
		reply_err(req, "chmod/chown", -err);
		return;
	}
	stat_seg(&st, &v);
	fuse_reply_attr(req, &st, TIMEOUT_NONE);
}

/* ---- names that cannot change ---- */

/* A call with no SysV meaning: EPERM, logged under -o verbose. */
static void refuse(fuse_req_t req, const char *what)
{
	count_req(R_NAMESPACE);
	reply_err(req, what, EPERM);
}

static void shmfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
			mode_t mode)
{
	(void)parent, (void)name, (void)mode;
	refuse(req, "mkdir (segments are made by shmget)");
}

static void shmfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
			mode_t mode, dev_t rdev)
{
	(void)parent, (void)name, (void)mode, (void)rdev;
	refuse(req, "mknod (segments are made by shmget)");
}

static void shmfs_create(fuse_req_t req, fuse_ino_t parent, const char *name,
			 mode_t mode, struct fuse_file_info *fi)
{
	(void)parent, (void)name, (void)mode, (void)fi;
	refuse(req, "create (segments are made by shmget)");
}

static void shmfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
			  const char *name)
{
	(void)link, (void)parent, (void)name;
	refuse(req, "symlink");
}

static void shmfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent,
		       const char *name)
{
	(void)ino, (void)parent, (void)name;
	refuse(req, "link");
}

static void shmfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
			 fuse_ino_t newparent, const char *newname,
			 unsigned int flags)
{
	(void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
	refuse(req, "rename (a segment's name is its key and shmid)");
}

static void shmfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	count_req(R_NAMESPACE);
	struct perm_cred c;
	int id, err;

	if (!ino_is_key(parent)) {
		reply_err(req, "unlink",
			  parent == INO_IDDIR || parent == INO_ROOT ? EPERM
								    : ENOENT);
		return;
	}
	if (!names_parse_shmid(name, &id)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	cred_of(req, &c, false);
	err = WITH_GROUPS(&c, seg_unlink(ino_key(parent), id, &c));
	perm_cred_fini(&c);
	if (err)
		reply_err(req, "unlink (IPC_RMID)", -err);
	else
		fuse_reply_err(req, 0);
}

static void shmfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	count_req(R_NAMESPACE);
	key_t key;

	if (parent == INO_ROOT && names_parse_key(name, &key))
		reply_err(req, "rmdir",
			  seg_key_exists(key) ? ENOTEMPTY : ENOENT);
	else if (parent == INO_ROOT && !strcmp(name, SHMFS_ID_DIR))
		reply_err(req, "rmdir", EPERM);
	else
		fuse_reply_err(req, ENOENT);
}

/* ---- files ---- */

static void shmfs_open(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct ofile *of;
	struct perm_cred c;
	int accmode = fi->flags & O_ACCMODE, err;
	pid_t tgid;
	bool attach;

	count_req(R_OPEN);
	of = calloc(1, sizeof(*of));
	if (!of) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (ino == INO_CTL) {
		/* its close ends the session: keep FLUSH */
		of->kind = OF_CTL;
		fi->direct_io = 1;
	} else if (ino == INO_STATUS) {
		if (accmode != O_RDONLY || (fi->flags & O_TRUNC)) {
			free(of);
			reply_err(req, "open status for writing", EACCES);
			return;
		}
		of->kind = OF_STATUS;
		err = seg_status_open(&of->status);
		if (err) {
			free(of);
			fuse_reply_err(req, -err);
			return;
		}
		fi->direct_io = 1;
		fi->noflush = 1;
	} else if (ino_is_tally(ino)) {
		free(of);
		tallyfs_open(req, ino, fi);
		return;
	} else if (ino_is_seg(ino)) {
		if (fi->flags & O_TRUNC) {
			free(of);
			reply_err(req,
				  "open O_TRUNC (a segment's size is fixed)",
				  EPERM);
			return;
		}
		attach = (fi->flags & SHMFS_ATTACH_FLAGS) == SHMFS_ATTACH_FLAGS;
		of->kind = OF_SEG;
		cred_of(req, &c, attach);
		err = WITH_GROUPS(
			&c, seg_open(ino - SEG_BASE, &c,
				     accmode == O_ACCMODE ? O_RDWR : accmode,
				     attach, &of->h));
		perm_cred_fini(&c);
		if (err) {
			free(of);
			reply_err(req, attach ? "shmat" : "open", -err);
			return;
		}
		/* One page cache for every opener (shmfs(7), DATA).  A
		 * passthrough open has none, and the kernel refuses it
		 * any flag but noflush and direct_io. */
		fi->keep_cache = !seg_handle_backing(of->h);
		fi->noflush = 1;
	} else {
		free(of);
		fuse_reply_err(req, EISDIR);
		return;
	}
	/* asked of /proc before the table changes: it is held from then
	 * until the reply (table_tx.c) */
	tgid = of->kind == OF_CTL ? sysinfo_tgid(fuse_req_ctx(req)->pid) : 0;
	fi->fh = ofile_register(of);
	if (!fi->fh) {
		if (of->h)
			seg_release(of->h);
		seg_status_close(of->status);
		free(of);
		reply_err(req, "open (no room for the file)", ENOMEM);
		return;
	}
	if (of->kind == OF_CTL && (err = seg_session_open(fi->fh, tgid))) {
		ofile_unregister(fi->fh);
		reply_err(req, "open .ctl", -err);
		return;
	}
	if (pt_reply_open(req, fi, of->h ? seg_handle_backing(of->h) : 0) !=
	    0) {
		/* interrupted: the kernel will send no flush or release */
		if (of->kind == OF_CTL)
			seg_file_released(fi->fh);
		ofile_unregister(fi->fh);
	}
}

/* A buffer per read, the size the kernel asked for, gone with the reply. */
static void reply_status(fuse_req_t req, struct seg_status *st, size_t size,
			 off_t off)
{
	char *buf = malloc(size ? size : 1);

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fuse_reply_buf(req, buf, seg_status_read(st, (uint64_t)off, buf, size));
	free(buf);
}

/*
 * Where size bytes at off of a segment are in the daemon's memory (cut at
 * the segment's end): false when off is at or past the end.
 */
static bool seg_span(const struct seg_handle *h, off_t off, size_t size,
		     struct fuse_bufvec *v)
{
	uint64_t end = seg_handle_size(h);

	if (off < 0 || (uint64_t)off >= end)
		return false;
	if (size > end - (uint64_t)off)
		size = (size_t)(end - (uint64_t)off);
	v->buf[0].size = size;
	v->buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	v->buf[0].fd = seg_handle_fd(h);
	v->buf[0].pos = (off_t)seg_handle_offset(h) + off;
	return true;
}

static void shmfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	OFILE_GET(of, fi);
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(0);

	count_req(R_READ);
	(void)ino;
	if (!of) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	switch (of->kind) {
	case OF_CTL:
		fuse_reply_buf(req, NULL, 0);
		return;
	case OF_STATUS:
		reply_status(req, of->status, size, off);
		return;
	case OF_SEG:
		break;
	}
	if (!seg_span(of->h, off, size, &buf))
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static void shmfs_write_buf(fuse_req_t req, fuse_ino_t ino,
			    struct fuse_bufvec *in, off_t off,
			    struct fuse_file_info *fi)
{
	OFILE_GET(of, fi);
	struct fuse_bufvec out = FUSE_BUFVEC_INIT(0);
	size_t size = fuse_buf_size(in);
	ssize_t n;

	count_req(R_WRITE);
	(void)ino;
	if (!of) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (of->kind != OF_SEG) {
		reply_err(req, "write", of->kind == OF_STATUS ? EBADF : EINVAL);
		return;
	}
	if (!seg_span(of->h, off, size, &out)) {
		/* as the sealed memfd of a passthrough segment answers */
		reply_err(req, "write at or past the end of a segment", EPERM);
		return;
	}
	n = fuse_buf_copy(&out, in, 0);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void shmfs_flush(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	OFILE_GET(of, fi);

	count_req(R_FLUSH);
	(void)ino;
	/* only the closer's session on this very file ends */
	if (of && of->kind == OF_CTL) {
		pid_t tid = fuse_req_ctx(req)->pid;

		seg_session_close_by(of->id, sysinfo_tgid(tid), tid);
	}
	fuse_reply_err(req, 0);
}

static void shmfs_release(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	count_req(R_RELEASE);
	if (ino == INO_CTL)
		seg_file_released(fi->fh);
	ofile_unregister(fi->fh);
	fuse_reply_err(req, 0);
}

static void shmfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	count_req(R_FSYNC);
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0); /* the daemon's copy is the segment */
}

static void shmfs_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct perm_cred c;
	struct seg_view v;
	int want = 0, err;

	count_req(R_ACCESS);
	if (!ino_is_seg(ino)) {
		err = (ino == INO_STATUS || ino == INO_IDDIR ||
		       ino == INO_TALLYDIR) &&
				      (mask & W_OK)
			      ? EACCES
			      : 0;
		fuse_reply_err(req, err);
		return;
	}
	err = -seg_view_of(ino, &v);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	want |= mask & R_OK ? PERM_R : 0;
	want |= mask & W_OK ? PERM_W : 0;
	want |= mask & X_OK ? PERM_X : 0;
	cred_of(req, &c, false);
	err = -WITH_GROUPS(&c, seg_access(v.ds.shmid, want, &c));
	perm_cred_fini(&c);
	/* the shmid went meanwhile */
	fuse_reply_err(req, err == EINVAL ? ENOENT : err);
}

static void shmfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct seg_limits l;
	struct seg_stats s;
	struct statvfs sv;
	long phys;

	count_req(R_STATFS);
	(void)ino;
	seg_limits_now(&l);
	seg_get_stats(&s);
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = O.page_size;
	sv.f_frsize = O.page_size;
	/* The default shmall is near 2^64 pages: df would overflow on it,
	 * so show no more than the machine's memory. */
	phys = sysconf(_SC_PHYS_PAGES);
	if (phys > 0 && l.shmall > (uint64_t)phys)
		l.shmall = (uint64_t)phys;
	sv.f_blocks = l.shmall;
	sv.f_bfree = l.shmall > s.tot_pages ? l.shmall - s.tot_pages : 0;
	sv.f_bavail = sv.f_bfree;
	sv.f_files = l.shmmni;
	sv.f_ffree = l.shmmni > s.used ? l.shmmni - s.used : 0;
	sv.f_favail = sv.f_ffree;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

/* ---- session ---- */

static void shmfs_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Attributes change with attaches; that must never drop data. */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO; /* always plus */
	pt_init();
	O.mount_time = time(NULL);
}

static void shmfs_destroy(void *userdata)
{
	(void)userdata;
	/* a server handing over leaves every file to its successor */
	if (!O.handing_over)
		ofile_free_all();
}

int ops_start(struct fuse_session *se, int verbose, const char *table_path,
	      pid_t holder)
{
	O.se = se;
	O.holder = holder;
	O.table_pid = holder ? holder : getpid();
	O.verbose = verbose;
	O.table_path = table_path;
	O.page_size = (size_t)sysconf(_SC_PAGESIZE);
	O.mount_time = time(NULL);
	return notify_start(se);
}

void ops_handover(void)
{
	O.handing_over = 1;
	if (O.se)
		fuse_session_exit(O.se);
}

void ops_abandoned_open(uint64_t fh)
{
	struct fuse_file_info fi = { .fh = fh };
	struct ofile *of = ofile_get(&fi);

	if (!of)
		return;
	/* as its RELEASE would have */
	if (of->kind == OF_CTL)
		seg_file_released(fh);
	ofile_unregister(fh);
	ofile_put(of);
}

bool ops_handing_over(void)
{
	return O.handing_over;
}

void ops_stop(void)
{
	notify_stop();
}

const struct fuse_lowlevel_ops shmfs_ops = {
	.init = shmfs_init,
	.destroy = shmfs_destroy,
	.lookup = shmfs_lookup,
	.forget = shmfs_forget,
	.forget_multi = shmfs_forget_multi,
	.getattr = shmfs_getattr,
	.readlink = shmfs_readlink,
	.setattr = shmfs_setattr,
	.opendir = shmfs_opendir,
	.readdir = shmfs_readdir,
	.readdirplus = shmfs_readdirplus,
	.mkdir = shmfs_mkdir,
	.mknod = shmfs_mknod,
	.create = shmfs_create,
	.symlink = shmfs_symlink,
	.link = shmfs_link,
	.rename = shmfs_rename,
	.unlink = shmfs_unlink,
	.rmdir = shmfs_rmdir,
	.open = shmfs_open,
	.read = shmfs_read,
	.write_buf = shmfs_write_buf,
	.flush = shmfs_flush,
	.release = shmfs_release,
	.fsync = shmfs_fsync,
	.access = shmfs_access,
	.statfs = shmfs_statfs,
	.getxattr = shmfs_getxattr,
	.listxattr = shmfs_listxattr,
	.setxattr = shmfs_setxattr,
	.removexattr = shmfs_removexattr,
	.ioctl = shmfs_ioctl,
};
