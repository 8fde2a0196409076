/*
 * Listings: the root (its own nodes and a directory per key), a key's
 * directory and .id, read from the table in slot order, so that an
 * offset is a slot and a listing resumes where it stopped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>

#include "front.h"
#include "shmfs_proto.h"

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
		if (off <= 6 &&
		    !dir_add(&d, SHMFS_TALLY_DIR, INO_TALLYDIR, S_IFDIR, 6))
			goto out;
		if (off <= 7 && seg_key_exists(IPC_PRIVATE) &&
		    !dir_add(&d, "0x00000000", KEY_BASE, S_IFDIR, 7))
			goto out;
		d.base = 8;
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
	} else if (ino == INO_TALLYDIR) {
		goto out; /* tallies are found by name only */
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

void shmfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	count_req(R_READDIR);
	(void)fi;
	dir_list(req, ino, size, off, false);
}

void shmfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	count_req(R_READDIR);
	(void)fi;
	dir_list(req, ino, size, off, true);
}

/* A key directory whose key is gone (its name cached) lists nothing. */
void shmfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	count_req(R_OPEN);
	if (ino_is_key(ino) && !seg_key_exists(ino_key(ino)))
		fuse_reply_err(req, ENOENT);
	else
		fuse_reply_open(req, fi);
}
