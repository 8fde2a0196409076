/*
 * FUSE low-level operations.  Translates node ids, names and file calls
 * into calls on the table (seg.c) and ipcperm (perm.c); holds no table
 * state.  Node ids:
 *   1..5                root, .ctl, .id, status, .table
 *   KEY_BASE + key      the directory of one key
 *   SEG_BASE + serial   a segment file (serials are never reused, so a
 *                       node id the kernel still caches never names a
 *                       later segment and never shows it stale pages)
 * A segment's st_ino is its shmid.
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

#include "names.h"
#include "ops.h"
#include "passthrough.h"
#include "perm.h"
#include "seg.h"
#include "shmfs_proto.h"
#include "sysinfo.h"

#define INO_ROOT FUSE_ROOT_ID
#define INO_CTL 2
#define INO_IDDIR 3
#define INO_STATUS 4
#define INO_TABLE 5
#define KEY_BASE (1ULL << 32)
#define SEG_BASE (1ULL << 33)

/* Names under the root and key directories change behind the kernel's
 * back (shmget, IPC_RMID through the control node): never cache them.
 * .id/<shmid> names are dropped explicitly when the shmid goes. */
#define TIMEOUT_NONE 0.0
#define TIMEOUT_LONG 86400.0

#define XATTR_PREFIX "user.shm."
#define REQUESTS_XATTR "user.shmfs.requests"
#define STATS_XATTR "user.shmfs.stats"

enum ofile_kind { OF_CTL, OF_STATUS, OF_SEG };

/* Requests served, by type: the root's user.shmfs.requests xattr. */
enum req_type {
	R_LOOKUP,
	R_FORGET,
	R_GETATTR,
	R_SETATTR,
	R_READDIR,
	R_OPEN,
	R_READ,
	R_WRITE,
	R_FLUSH,
	R_RELEASE,
	R_FSYNC,
	R_ACCESS,
	R_STATFS,
	R_GETXATTR,
	R_LISTXATTR,
	R_SETXATTR,
	R_NAMESPACE,
	R_IOCTL,
	R_NTYPES
};
static const char *const req_names[R_NTYPES] = {
	"lookup", "forget",   "getattr",   "setattr",  "readdir",   "open",
	"read",	  "write",    "flush",	   "release",  "fsync",	    "access",
	"statfs", "getxattr", "listxattr", "setxattr", "namespace", "ioctl",
};
static uint64_t req_count[R_NTYPES];

static void count_req(enum req_type t)
{
	__atomic_fetch_add(&req_count[t], 1, __ATOMIC_RELAXED);
}

struct ofile {
	enum ofile_kind kind;
	struct seg_handle *h;
	char *text;
	size_t len;
	uint64_t id; /* fi->fh */
	unsigned refs; /* the open, and each request using it */
	struct ofile *next; /* in its registry bucket */
};

/*
 * Open files by id.  fi->fh is an id, not a pointer: the kernel may send
 * RELEASE while a READ of the same file is still being answered (a
 * reader killed meanwhile), so a request finds its file here and holds
 * it until it is done, and a request that comes after RELEASE finds
 * nothing.  What RELEASE never reached (unmount with it still queued, a
 * lazy unmount with a mapping) is freed at destroy.
 */
#define OFILE_BUCKETS 1024
static struct {
	pthread_mutex_t lock;
	struct ofile *bucket[OFILE_BUCKETS];
	uint64_t next_id;
} OF = { .lock = PTHREAD_MUTEX_INITIALIZER, .next_id = 1 };

static struct ofile **ofile_slot(uint64_t id)
{
	struct ofile **pp = &OF.bucket[id % OFILE_BUCKETS];

	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

static uint64_t ofile_register(struct ofile *of)
{
	pthread_mutex_lock(&OF.lock);
	of->id = OF.next_id++;
	of->refs = 1;
	of->next = OF.bucket[of->id % OFILE_BUCKETS];
	OF.bucket[of->id % OFILE_BUCKETS] = of;
	pthread_mutex_unlock(&OF.lock);
	return of->id;
}

static void ofile_free(struct ofile *of)
{
	if (of->h)
		seg_release(of->h);
	free(of->text);
	free(of);
}

static struct ofile *ofile_get(struct fuse_file_info *fi)
{
	struct ofile *of;

	pthread_mutex_lock(&OF.lock);
	of = *ofile_slot(fi->fh);
	if (of)
		of->refs++;
	pthread_mutex_unlock(&OF.lock);
	return of;
}

static void ofile_put(struct ofile *of)
{
	unsigned left;

	if (!of)
		return;
	pthread_mutex_lock(&OF.lock);
	left = --of->refs;
	pthread_mutex_unlock(&OF.lock);
	if (!left)
		ofile_free(of);
}

static void ofile_putp(struct ofile **of)
{
	ofile_put(*of);
}

/* The open file of a request, held until the end of the block. */
#define OFILE_GET(of, fi) \
	struct ofile *of __attribute__((cleanup(ofile_putp))) = ofile_get(fi)

/* RELEASE: the id goes now, the file with its last user. */
static void ofile_unregister(uint64_t id)
{
	struct ofile **pp, *of;

	pthread_mutex_lock(&OF.lock);
	pp = ofile_slot(id);
	of = *pp;
	if (of)
		*pp = of->next;
	pthread_mutex_unlock(&OF.lock);
	ofile_put(of);
}

/* At destroy no request runs any more: free every file left. */
static void ofile_free_all(void)
{
	unsigned b;

	for (b = 0; b < OFILE_BUCKETS; b++)
		while (OF.bucket[b]) {
			struct ofile *of = OF.bucket[b];

			OF.bucket[b] = of->next;
			ofile_free(of);
		}
}

static struct {
	struct fuse_session *se;
	time_t mount_time;
	size_t page_size;
	int verbose;
	const char *table_path;
	pthread_t notifier;
	bool notifier_running;
	pthread_mutex_t qlock;
	pthread_cond_t qcond;
	int *queue;
	size_t qlen, qcap;
	bool stopping;
} O = {
	.qlock = PTHREAD_MUTEX_INITIALIZER,
	.qcond = PTHREAD_COND_INITIALIZER,
};

/* ---- node ids and names ---- */

static bool ino_is_key(fuse_ino_t ino)
{
	return ino >= KEY_BASE && ino < SEG_BASE;
}

static bool ino_is_seg(fuse_ino_t ino)
{
	return ino >= SEG_BASE;
}

static key_t ino_key(fuse_ino_t ino)
{
	return (key_t)(uint32_t)(ino - KEY_BASE);
}

/* ---- credentials ---- */

static int req_getgroups(void *arg, gid_t *list, int size)
{
	return fuse_req_getgroups(arg, size, list);
}

static void cred_of(fuse_req_t req, struct perm_cred *c, bool need_pid)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	perm_cred_init(c, ctx->uid, ctx->gid,
		       need_pid ? sysinfo_tgid(ctx->pid) : ctx->pid);
	c->getgroups = req_getgroups;
	c->arg = req;
}

static void verbose_err(fuse_req_t req, const char *what, int err)
{
	const struct fuse_ctx *ctx;

	if (!O.verbose || !err)
		return;
	ctx = fuse_req_ctx(req);
	fprintf(stderr, "shmfs: %s by pid %d uid %u: %s\n", what, (int)ctx->pid,
		(unsigned)ctx->uid, strerror(err));
}

static void reply_err(fuse_req_t req, const char *what, int err)
{
	verbose_err(req, what, err);
	fuse_reply_err(req, err);
}

/* ---- attributes ---- */

static void stat_dir(struct stat *st, fuse_ino_t ino, mode_t mode)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFDIR | mode;
	st->st_nlink = 2;
	st->st_blksize = (blksize_t)O.page_size;
	st->st_atime = st->st_mtime = st->st_ctime = O.mount_time;
}

static void stat_file(struct stat *st, fuse_ino_t ino, mode_t mode)
{
	stat_dir(st, ino, mode);
	st->st_mode = S_IFREG | mode;
	st->st_nlink = 1;
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
	st->st_blocks = (blkcnt_t)(v->bytes / 512);
	/* SysV leaves a time 0 until its event: ls -l would say "Jan 1
	 * 1970".  Show the creation (ctime) there instead; the xattrs keep
	 * the exact fields (shmfs.1, MAPPING). */
	st->st_ctime = (time_t)v->ds.ctime;
	st->st_atime = v->ds.atime ? (time_t)v->ds.atime : st->st_ctime;
	st->st_mtime = v->ds.dtime ? (time_t)v->ds.dtime : st->st_ctime;
}

/* Attributes of a node that is not a segment; -errno if there is none. */
static int stat_node(fuse_ino_t ino, struct stat *st, double *timeout)
{
	*timeout = TIMEOUT_LONG;
	switch (ino) {
	case INO_ROOT:
		stat_dir(st, ino, 0755);
		return 0;
	case INO_CTL:
		stat_file(st, ino, 0666);
		return 0;
	case INO_IDDIR:
		stat_dir(st, ino, 0755);
		return 0;
	case INO_STATUS:
		stat_file(st, ino, 0444);
		return 0;
	case INO_TABLE:
		if (!O.table_path)
			return -ENOENT;
		stat_file(st, ino, 0777);
		st->st_mode = S_IFLNK | 0777;
		st->st_size = (off_t)strlen(O.table_path);
		return 0;
	}
	if (ino_is_key(ino)) {
		*timeout = TIMEOUT_NONE;
		if (!seg_key_exists(ino_key(ino)))
			return -ENOENT;
		stat_dir(st, ino, 0755);
		return 0;
	}
	return -ENOENT;
}

/*
 * The segment behind a node id.  A freed shmid is gone at once, even
 * through a name the kernel still caches until the notifier drops it.
 */
static int seg_view_of(fuse_ino_t ino, struct seg_view *v)
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
		else if (names_parse_key(name, &key))
			reply_node_entry(req, KEY_BASE + (uint32_t)key);
		else
			fuse_reply_err(req, ENOENT);
		return;
	}
	if (!names_parse_shmid(name, &id)) {
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
	(void)fi;
	if (!ino_is_seg(ino)) {
		reply_err(req, "setattr", EPERM);
		return;
	}
	err = -seg_view_of(ino, &v);
	if (!err && (to_set & FUSE_SET_ATTR_SIZE) &&
	    (uint64_t)attr->st_size != v.ds.segsz)
		err = EPERM; /* a segment's size is fixed at shmget */
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
	err = seg_setattr(ino - SEG_BASE, &c, mode, uid, gid, &v);
	perm_cred_fini(&c);
	if (err) {
		reply_err(req, "chmod/chown", -err);
		return;
	}
	stat_seg(&st, &v);
	fuse_reply_attr(req, &st, TIMEOUT_NONE);
}

/* ---- directories ---- */

struct dirbuf {
	fuse_req_t req;
	bool plus; /* READDIRPLUS: entries of the root carry attributes */
	char *buf;
	size_t size, used;
	off_t base; /* position of slot 0 */
	key_t key; /* for key directories */
	bool full;
};

/*
 * Add one entry at position pos; false once the buffer is full.  With
 * READDIRPLUS, an entry of a node that is not a segment carries its
 * attributes, so `ls -l` of the root needs no lookup per key; segments
 * carry none (node id 0), so that no lookup is counted for them here.
 */
static bool dir_add(struct dirbuf *d, const char *name, fuse_ino_t ino,
		    mode_t type, off_t pos)
{
	struct fuse_entry_param e;
	double timeout;
	size_t need;

	memset(&e, 0, sizeof(e));
	e.attr.st_ino = ino;
	e.attr.st_mode = type;
	if (!d->plus) {
		need = fuse_add_direntry(d->req, NULL, 0, name, NULL, 0);
		if (d->used + need > d->size)
			goto full;
		fuse_add_direntry(d->req, d->buf + d->used, d->size - d->used,
				  name, &e.attr, pos + 1);
		d->used += need;
		return true;
	}
	/* Runs under seg_walk's table lock: nothing here may ask seg.c. */
	if (ino_is_key(ino)) {
		stat_dir(&e.attr, ino, 0755);
		e.ino = ino;
		e.generation = 1;
		e.entry_timeout = TIMEOUT_LONG;
		e.attr_timeout = TIMEOUT_NONE;
	} else if (!ino_is_seg(ino) && strcmp(name, ".") &&
		   strcmp(name, "..") &&
		   stat_node(ino, &e.attr, &timeout) == 0) {
		e.ino = ino;
		e.generation = 1;
		e.entry_timeout = TIMEOUT_LONG;
		e.attr_timeout = timeout;
	}
	need = fuse_add_direntry_plus(d->req, NULL, 0, name, NULL, 0);
	if (d->used + need > d->size)
		goto full;
	fuse_add_direntry_plus(d->req, d->buf + d->used, d->size - d->used,
			       name, &e, pos + 1);
	d->used += need;
	return true;
full:
	d->full = true;
	return false;
}

static int dir_add_root_seg(void *arg, const struct seg_view *v)
{
	struct dirbuf *d = arg;
	char name[16];

	if (v->removed || v->ds.key == IPC_PRIVATE)
		return 0;
	snprintf(name, sizeof(name), "0x%08x", (unsigned)v->ds.key);
	return !dir_add(d, name, KEY_BASE + (uint32_t)v->ds.key, S_IFDIR,
			d->base + v->slot);
}

static int dir_add_key_seg(void *arg, const struct seg_view *v)
{
	struct dirbuf *d = arg;
	char name[16];

	if (v->removed || v->ds.key != d->key)
		return 0;
	snprintf(name, sizeof(name), "%d", v->ds.shmid);
	return !dir_add(d, name, (fuse_ino_t)v->ds.shmid, S_IFREG,
			d->base + v->slot);
}

static int dir_add_id_seg(void *arg, const struct seg_view *v)
{
	struct dirbuf *d = arg;
	char name[16];

	snprintf(name, sizeof(name), "%d", v->ds.shmid);
	return !dir_add(d, name, (fuse_ino_t)v->ds.shmid, S_IFREG,
			d->base + v->slot);
}

static void dir_list(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     bool plus)
{
	struct dirbuf d = { .req = req, .size = size, .plus = plus };
	struct seg_view v;
	int (*walk)(void *, const struct seg_view *) = NULL;

	d.buf = malloc(size ? size : 1);
	if (!d.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (off <= 0 && !dir_add(&d, ".", ino, S_IFDIR, 0))
		goto out;
	if (off <= 1 && !dir_add(&d, "..", INO_ROOT, S_IFDIR, 1))
		goto out;
	if (ino == INO_ROOT) {
		if (off <= 2 &&
		    !dir_add(&d, SHMFS_CTL_NAME, INO_CTL, S_IFREG, 2))
			goto out;
		if (off <= 3 &&
		    !dir_add(&d, SHMFS_ID_DIR, INO_IDDIR, S_IFDIR, 3))
			goto out;
		if (off <= 4 &&
		    !dir_add(&d, SHMFS_STATUS_NAME, INO_STATUS, S_IFREG, 4))
			goto out;
		if (off <= 5 && O.table_path &&
		    !dir_add(&d, SHMFS_TABLE_NAME, INO_TABLE, S_IFLNK, 5))
			goto out;
		if (off <= 6 && seg_key_exists(IPC_PRIVATE) &&
		    !dir_add(&d, "0x00000000", KEY_BASE, S_IFDIR, 6))
			goto out;
		d.base = 7;
		walk = dir_add_root_seg;
	} else if (ino_is_key(ino)) {
		d.key = ino_key(ino);
		d.base = 2;
		if (d.key != IPC_PRIVATE) {
			/* one segment at most: no walk */
			off_t pos;

			if (seg_lookup_key(d.key, &v) == 0) {
				pos = d.base + v.slot;
				if (off <= pos)
					dir_add_key_seg(&d, &v);
			}
			goto out;
		}
		walk = dir_add_key_seg;
	} else if (ino == INO_IDDIR) {
		d.base = 2;
		walk = dir_add_id_seg;
	} else {
		free(d.buf);
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	seg_walk(off > d.base ? (int)(off - d.base) : 0, walk, &d);
out:
	fuse_reply_buf(req, d.buf, d.used);
	free(d.buf);
}

static void shmfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
			  off_t off, struct fuse_file_info *fi)
{
	count_req(R_READDIR);
	(void)fi;
	dir_list(req, ino, size, off, false);
}

static void shmfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			      off_t off, struct fuse_file_info *fi)
{
	count_req(R_READDIR);
	(void)fi;
	dir_list(req, ino, size, off, true);
}

/* A key directory whose key is gone (its name cached) lists nothing. */
static void shmfs_opendir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	count_req(R_OPEN);
	if (ino_is_key(ino) && !seg_key_exists(ino_key(ino)))
		fuse_reply_err(req, ENOENT);
	else
		fuse_reply_open(req, fi);
}

/* ---- names that cannot change ---- */

static void shmfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
			mode_t mode)
{
	count_req(R_NAMESPACE);
	(void)parent;
	(void)name;
	(void)mode;
	reply_err(req, "mkdir (segments are made by shmget)", EPERM);
}

static void shmfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
			mode_t mode, dev_t rdev)
{
	count_req(R_NAMESPACE);
	(void)parent;
	(void)name;
	(void)mode;
	(void)rdev;
	reply_err(req, "mknod (segments are made by shmget)", EPERM);
}

static void shmfs_create(fuse_req_t req, fuse_ino_t parent, const char *name,
			 mode_t mode, struct fuse_file_info *fi)
{
	count_req(R_NAMESPACE);
	(void)parent;
	(void)name;
	(void)mode;
	(void)fi;
	reply_err(req, "create (segments are made by shmget)", EPERM);
}

static void shmfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
			  const char *name)
{
	count_req(R_NAMESPACE);
	(void)link;
	(void)parent;
	(void)name;
	reply_err(req, "symlink", EPERM);
}

static void shmfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent,
		       const char *name)
{
	count_req(R_NAMESPACE);
	(void)ino;
	(void)parent;
	(void)name;
	reply_err(req, "link", EPERM);
}

static void shmfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
			 fuse_ino_t newparent, const char *newname,
			 unsigned int flags)
{
	count_req(R_NAMESPACE);
	(void)parent;
	(void)name;
	(void)newparent;
	(void)newname;
	(void)flags;
	reply_err(req, "rename (a segment's name is its key and shmid)", EPERM);
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
	err = seg_unlink(ino_key(parent), id, &c);
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
		seg_session_open(sysinfo_tgid(fuse_req_ctx(req)->pid));
	} else if (ino == INO_STATUS) {
		if (accmode != O_RDONLY || (fi->flags & O_TRUNC)) {
			free(of);
			reply_err(req, "open status for writing", EACCES);
			return;
		}
		of->kind = OF_STATUS;
		err = seg_status(&of->text, &of->len);
		if (err) {
			free(of);
			fuse_reply_err(req, -err);
			return;
		}
		fi->direct_io = 1;
		fi->noflush = 1;
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
		err = seg_open(ino - SEG_BASE, &c,
			       accmode == O_ACCMODE ? O_RDWR : accmode, attach,
			       &of->h);
		perm_cred_fini(&c);
		if (err) {
			free(of);
			reply_err(req, attach ? "shmat" : "open", -err);
			return;
		}
		/* One page cache for every opener: see FUSE-NOTES.  A
		 * passthrough open has none, and the kernel refuses it
		 * any flag but noflush and direct_io. */
		fi->keep_cache = !seg_handle_backing(of->h);
		fi->noflush = 1;
	} else {
		free(of);
		fuse_reply_err(req, EISDIR);
		return;
	}
	fi->fh = ofile_register(of);
	if (pt_reply_open(req, fi, of->h ? seg_handle_backing(of->h) : 0) != 0) {
		/* interrupted: the kernel will send no flush or release */
		if (of->kind == OF_CTL)
			seg_session_close(sysinfo_tgid(fuse_req_ctx(req)->pid));
		ofile_unregister(fi->fh);
	}
}

static void shmfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	OFILE_GET(of, fi);
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(0);
	uint64_t end;

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
		if ((size_t)off >= of->len) {
			fuse_reply_buf(req, NULL, 0);
			return;
		}
		fuse_reply_buf(req, of->text + off,
			       size < of->len - (size_t)off
				       ? size
				       : of->len - (size_t)off);
		return;
	case OF_SEG:
		break;
	}
	end = seg_handle_size(of->h);
	if ((uint64_t)off >= end) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > end - (uint64_t)off)
		size = (size_t)(end - (uint64_t)off);
	buf.buf[0].size = size;
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = seg_handle_fd(of->h);
	buf.buf[0].pos = (off_t)seg_handle_offset(of->h) + off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static void shmfs_write_buf(fuse_req_t req, fuse_ino_t ino,
			    struct fuse_bufvec *in, off_t off,
			    struct fuse_file_info *fi)
{
	OFILE_GET(of, fi);
	struct fuse_bufvec out = FUSE_BUFVEC_INIT(0);
	size_t size = fuse_buf_size(in);
	uint64_t end;
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
	end = seg_handle_size(of->h);
	if (off < 0 || (uint64_t)off >= end) {
		/* as the sealed memfd of a passthrough segment answers */
		reply_err(req, "write at or past the end of a segment", EPERM);
		return;
	}
	if (size > end - (uint64_t)off)
		size = (size_t)(end - (uint64_t)off);
	out.buf[0].size = size;
	out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	out.buf[0].fd = seg_handle_fd(of->h);
	out.buf[0].pos = (off_t)seg_handle_offset(of->h) + off;
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
	if (of && of->kind == OF_CTL)
		seg_session_close(sysinfo_tgid(fuse_req_ctx(req)->pid));
	fuse_reply_err(req, 0);
}

static void shmfs_release(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	count_req(R_RELEASE);
	(void)ino;
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
	struct perm_obj o;
	struct seg_view v;
	int want = 0, err;

	count_req(R_ACCESS);
	if (!ino_is_seg(ino)) {
		err = (ino == INO_STATUS || ino == INO_IDDIR) && (mask & W_OK)
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
	o = (struct perm_obj){ .uid = v.ds.uid,
			       .gid = v.ds.gid,
			       .cuid = v.ds.cuid,
			       .cgid = v.ds.cgid,
			       .mode = v.ds.mode & 0777 };
	cred_of(req, &c, false);
	err = -perm_check(&c, &o, want);
	perm_cred_fini(&c);
	fuse_reply_err(req, err);
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

/* ---- xattrs: the shmid_ds fields stat cannot show ---- */

static const char *const xattr_names[] = {
	"key",	"shmid", "segsz", "cpid",  "lpid", "nattch", "cuid",
	"cgid", "atime", "dtime", "ctime", "mode", "pids",
};
#define N_XATTRS (sizeof(xattr_names) / sizeof(xattr_names[0]))

static int xattr_value(const struct seg_view *v, const char *field, char *out,
		       size_t size)
{
	const struct shmfs_ds *d = &v->ds;

	if (!strcmp(field, "key"))
		return snprintf(out, size, "0x%08x", (unsigned)d->key);
	if (!strcmp(field, "shmid"))
		return snprintf(out, size, "%d", d->shmid);
	if (!strcmp(field, "segsz"))
		return snprintf(out, size, "%" PRIu64, d->segsz);
	if (!strcmp(field, "cpid"))
		return snprintf(out, size, "%d", d->cpid);
	if (!strcmp(field, "lpid"))
		return snprintf(out, size, "%d", d->lpid);
	if (!strcmp(field, "nattch"))
		return snprintf(out, size, "%" PRIu64, d->nattch);
	if (!strcmp(field, "cuid"))
		return snprintf(out, size, "%u", d->cuid);
	if (!strcmp(field, "cgid"))
		return snprintf(out, size, "%u", d->cgid);
	if (!strcmp(field, "atime"))
		return snprintf(out, size, "%" PRId64, d->atime);
	if (!strcmp(field, "dtime"))
		return snprintf(out, size, "%" PRId64, d->dtime);
	if (!strcmp(field, "ctime"))
		return snprintf(out, size, "%" PRId64, d->ctime);
	if (!strcmp(field, "mode"))
		return snprintf(out, size, "%#o", d->mode);
	return -ENODATA;
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
	err = seg_pids(ino - SEG_BASE, &c, &text);
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
		     "\npending_forks %" PRIu64 "\nattaches %" PRIu64
		     "\nmemory %" PRIu64 "\npassthrough %" PRIu64
		     "\narena %" PRIu64 "\nunmeasured %" PRIu64 "\n",
		     s.used, s.tot_pages, s.objects, s.handles, s.procs,
		     s.pending_forks, s.attaches, s.memory, s.passthrough,
		     s.arena, s.unmeasured);
	reply_xattr_buf(req, text, (size_t)n, size);
}

static void shmfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			   size_t size)
{
	struct seg_view v;
	char val[64];
	int n, err;

	count_req(R_GETXATTR);
	if (ino == INO_ROOT && !strcmp(name, REQUESTS_XATTR)) {
		reply_requests(req, size);
		return;
	}
	if (ino == INO_ROOT && !strcmp(name, STATS_XATTR)) {
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

static void shmfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char list[N_XATTRS * 24];
	size_t len = 0, i;

	count_req(R_LISTXATTR);
	if (ino == INO_ROOT) {
		len = (size_t)snprintf(list, sizeof(list), "%s",
				       REQUESTS_XATTR) +
		      1;
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s",
					STATS_XATTR) +
		       1;
	}
	if (ino_is_seg(ino))
		for (i = 0; i < N_XATTRS; i++)
			len += (size_t)snprintf(list + len, sizeof(list) - len,
						"%s%s", XATTR_PREFIX,
						xattr_names[i]) +
			       1;
	reply_xattr_buf(req, list, len, size);
}

static void shmfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			   const char *value, size_t size, int flags)
{
	count_req(R_SETXATTR);
	(void)ino;
	(void)value;
	(void)size;
	(void)flags;
	reply_err(req, "setxattr",
		  strncmp(name, XATTR_PREFIX, sizeof(XATTR_PREFIX) - 1)
			  ? ENOTSUP
			  : EPERM);
}

static void shmfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	count_req(R_SETXATTR);
	(void)ino;
	reply_err(req, "removexattr",
		  strncmp(name, XATTR_PREFIX, sizeof(XATTR_PREFIX) - 1)
			  ? ENOTSUP
			  : EPERM);
}

/* ---- the control node ---- */

static int ctl_hello(fuse_req_t req, void *io)
{
	struct shmfs_hello *h = io;

	(void)req;
	h->version = SHMFS_PROTO_VERSION;
	h->page_size = (uint32_t)O.page_size;
	return 0;
}

static int ctl_get(fuse_req_t req, void *io)
{
	struct shmfs_get *g = io;
	struct perm_cred c;
	int err, shmid = -1;

	cred_of(req, &c, true);
	err = seg_get((key_t)g->key, g->size, g->flags, &c, &shmid);
	perm_cred_fini(&c);
	g->shmid = shmid;
	return err;
}

static int ctl_ctl(fuse_req_t req, void *io)
{
	struct perm_cred c;
	int err;

	cred_of(req, &c, false);
	err = seg_ctl(&c, io);
	perm_cred_fini(&c);
	return err;
}

static int ctl_fork(fuse_req_t req, void *io)
{
	struct shmfs_fork *f = io;
	struct perm_cred c;
	int err;

	cred_of(req, &c, true);
	err = seg_fork(&c, &f->token, &f->count);
	perm_cred_fini(&c);
	return err;
}

static int ctl_fork_child(fuse_req_t req, void *io)
{
	struct shmfs_fork *f = io;
	struct perm_cred c;
	int err;

	cred_of(req, &c, true);
	err = seg_fork_child(&c, f->token);
	perm_cred_fini(&c);
	return err;
}

static int ctl_fork_abort(fuse_req_t req, void *io)
{
	struct shmfs_fork *f = io;
	struct perm_cred c;
	int err;

	cred_of(req, &c, true);
	err = seg_fork_abort(&c, f->token);
	perm_cred_fini(&c);
	return err;
}

/* A process that inherited .ctl without the fork protocol. */
static int ctl_session(fuse_req_t req, void *io)
{
	(void)io;
	seg_session_start(sysinfo_tgid(fuse_req_ctx(req)->pid));
	return 0;
}

static int ctl_detach(fuse_req_t req, void *io)
{
	struct shmfs_detach *d = io;

	return seg_detach(sysinfo_tgid(fuse_req_ctx(req)->pid), d->shmid);
}

static int ctl_access(fuse_req_t req, void *io)
{
	struct shmfs_access *a = io;
	struct perm_cred c;
	int err;

	cred_of(req, &c, false);
	err = seg_access(a->shmid, a->mask, &c);
	perm_cred_fini(&c);
	return err;
}

static const struct {
	unsigned int cmd;
	size_t size;
	const char *name;
	int (*fn)(fuse_req_t req, void *io);
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

static void shmfs_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd,
			void *arg, struct fuse_file_info *fi, unsigned flags,
			const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	union {
		struct shmfs_hello hello;
		struct shmfs_get get;
		struct shmfs_ctl ctl;
		struct shmfs_fork fork;
		struct shmfs_access access;
		struct shmfs_detach detach;
	} io;
	size_t i;
	int err;

	count_req(R_IOCTL);
	(void)arg;
	(void)fi;
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
	memcpy(&io, in_buf, in_bufsz);
	err = ctl_cmds[i].fn(req, &io);
	if (err) {
		reply_err(req, ctl_cmds[i].name, -err);
		return;
	}
	fuse_reply_ioctl(req, 0, &io, out_bufsz);
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
	ofile_free_all();
}

/* The kernel caches .id/<shmid> names: drop them when the shmid goes.
 * Done from a thread of its own because the kernel may wait for a
 * request in progress on the directory. */
void ops_shmid_freed(int shmid)
{
	pthread_mutex_lock(&O.qlock);
	if (O.qlen == O.qcap) {
		size_t cap = O.qcap ? O.qcap * 2 : 64;
		int *q = realloc(O.queue, cap * sizeof(*q));

		if (!q) { /* the name then times out on its own */
			pthread_mutex_unlock(&O.qlock);
			return;
		}
		O.queue = q;
		O.qcap = cap;
	}
	O.queue[O.qlen++] = shmid;
	pthread_cond_signal(&O.qcond);
	pthread_mutex_unlock(&O.qlock);
}

static void *notifier_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&O.qlock);
	for (;;) {
		while (!O.qlen && !O.stopping)
			pthread_cond_wait(&O.qcond, &O.qlock);
		if (O.stopping)
			break;
		int shmid = O.queue[--O.qlen];
		char name[16];

		pthread_mutex_unlock(&O.qlock);
		snprintf(name, sizeof(name), "%d", shmid);
		fuse_lowlevel_notify_inval_entry(O.se, INO_IDDIR, name,
						 strlen(name));
		pthread_mutex_lock(&O.qlock);
	}
	pthread_mutex_unlock(&O.qlock);
	return NULL;
}

int ops_start(struct fuse_session *se, int verbose, const char *table_path)
{
	O.se = se;
	O.verbose = verbose;
	O.table_path = table_path;
	O.page_size = (size_t)sysconf(_SC_PAGESIZE);
	O.mount_time = time(NULL);
	O.stopping = false;
	if (pthread_create(&O.notifier, NULL, notifier_main, NULL) != 0)
		return -EAGAIN;
	/* Named here, not by the thread when it first runs: the name is
	 * there before the first request is served (a loaded machine may run
	 * the thread later, and tests find it by its name). */
	pthread_setname_np(O.notifier, "shmfs-inval");
	O.notifier_running = true;
	return 0;
}

void ops_stop(void)
{
	if (!O.notifier_running)
		return;
	pthread_mutex_lock(&O.qlock);
	O.stopping = true;
	pthread_cond_signal(&O.qcond);
	pthread_mutex_unlock(&O.qlock);
	pthread_join(O.notifier, NULL);
	O.notifier_running = false;
	free(O.queue);
	O.queue = NULL;
	O.qlen = O.qcap = 0;
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
