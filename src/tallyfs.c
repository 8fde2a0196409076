/*
 * The tallies' nodes (shmfs_proto.h): the directory .tally, and in it
 * <sid>.<gen>, a session's tally, served by passthrough from its sealed
 * memfd (tally.c), so that reads, writes and mappings never reach the
 * daemon.  Only the session's own process may open its tally for
 * writing; anyone may open it read-only.  The seals refuse a write past
 * its end; a change of size or times is refused as every SETATTR of a
 * node that is not a segment is (ops.c).  The directory lists nothing:
 * a tally is found by the name its session was told (HELLO).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "front.h"
#include "names.h"
#include "passthrough.h"
#include "shmfs_proto.h"
#include "sysinfo.h"

static void tally_of(fuse_ino_t ino, uint32_t *sid, uint32_t *gen)
{
	*sid = (uint32_t)(ino & 0xffff);
	*gen = (uint32_t)((ino - TALLY_BASE) >> 16);
}

fuse_ino_t tallyfs_ino(const char *name)
{
	char part[16];
	const char *dot = strchr(name, '.');
	int sid, gen;

	if (!dot || (size_t)(dot - name) >= sizeof(part))
		return 0;
	memcpy(part, name, (size_t)(dot - name));
	part[dot - name] = '\0';
	if (!names_parse_shmid(part, &sid) || !names_parse_shmid(dot + 1, &gen) ||
	    sid <= 0 || sid >= (int)SHMFS_TABLE_SESSIONS || gen <= 0)
		return 0;
	return TALLY_BASE + ((fuse_ino_t)gen << 16) + (fuse_ino_t)sid;
}

int tallyfs_stat(fuse_ino_t ino, struct stat *st, double *timeout)
{
	uint32_t sid, gen;
	int backing, err;
	pid_t tgid;

	*timeout = TIMEOUT_LONG;
	if (ino == INO_TALLYDIR) {
		stat_dir(st, ino, 0755);
		return 0;
	}
	tally_of(ino, &sid, &gen);
	err = seg_tally_find(sid, gen, &tgid, &backing);
	if (err)
		return err;
	/* it goes with its session: ask each time */
	*timeout = TIMEOUT_NONE;
	stat_dir(st, ino, 0);
	st->st_mode = S_IFREG | 0644;
	st->st_nlink = 1;
	st->st_size = SHMFS_TALLY_SIZE;
	st->st_blocks = SHMFS_TALLY_SIZE / 512;
	return 0;
}

void tallyfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int accmode = fi->flags & O_ACCMODE, backing, err;
	uint32_t sid, gen;
	pid_t tgid;

	tally_of(ino, &sid, &gen);
	err = -seg_tally_find(sid, gen, &tgid, &backing);
	if (!err && (fi->flags & O_TRUNC))
		err = EPERM; /* its size is sealed */
	else if (!err && accmode != O_RDONLY &&
		 sysinfo_tgid(fuse_req_ctx(req)->pid) != tgid)
		err = EACCES; /* only its own process writes its counts */
	else if (!err && !backing)
		err = EOPNOTSUPP; /* no passthrough: served nowhere */
	if (err) {
		reply_err(req, "open of a tally", err);
		return;
	}
	fi->fh = 0; /* nothing of the daemon's: RELEASE finds no file */
	fi->noflush = 1;
	if (accmode != O_RDONLY)
		seg_tally_opened(sid, gen);
	pt_reply_open(req, fi, backing);
}
