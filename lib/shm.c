/*
 * libshmfs: the four calls.  The connection, the published table, this
 * process's attachments and the fork protocol have files of their own
 * (client.h).  Everything the SysV calls decide (keys, ids,
 * permissions, limits) is decided by the daemon; this file only checks
 * what Linux checks before it looks at the segment, and converts structs.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "client.h"

/* ---- the four calls, returning 0 or -errno ---- */

static int do_shmget(key_t key, size_t size, int shmflg, int *id)
{
	struct shmfs_get g;
	int r = ensure_init();

	if (r < 0)
		return r;
	r = table_shmget(key, size, shmflg, id);
	if (r <= 0)
		return r;
	memset(&g, 0, sizeof(g));
	g.key = key;
	g.flags = shmflg;
	g.size = size;
	r = ctl_ioctl(SHMFS_IOC_GET, &g);
	if (r < 0)
		return r;
	*id = g.shmid;
	return 0;
}

/*
 * shm_segsz of an attach descriptor, or -EXDEV if the file is not on our
 * mount.  A segment's size never changes, so the size the kernel cached
 * when the open looked the name up is right, and asking for it without
 * a round trip to the daemon saves a GETATTR (the daemon sets no
 * attribute timeout).  fstat is the fallback.
 */
static int seg_stat(int fd, uint64_t *size, ino_t *ino)
{
	const int cached = AT_EMPTY_PATH | AT_STATX_DONT_SYNC;
	struct statx sx;
	struct stat st;

	if (statx(fd, "", cached, STATX_SIZE | STATX_INO, &sx) < 0)
		return -errno;
	if (makedev(sx.stx_dev_major, sx.stx_dev_minor) != id_ident.dev)
		return -EXDEV;
	*ino = sx.stx_ino;
	if ((sx.stx_mask & STATX_SIZE) && sx.stx_size > 0) {
		*size = sx.stx_size;
		return 0;
	}
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size <= 0)
		return -EINVAL;
	*size = (uint64_t)st.st_size;
	return 0;
}

/*
 * Opens .id/<shmid>: the attach itself.  If the open fails, or opens a
 * file elsewhere, because the program closed our directory descriptor
 * (or our control node, which ended the session: EPROTO), the open runs
 * once more on new ones.
 */
static int open_attach(int shmid, int oflags, int *out, uint64_t *size,
		       ino_t *ino, unsigned int *sessionp)
{
	unsigned int session;
	char name[16];
	int idd, fd, r, tried, tries;

	snprintf(name, sizeof(name), "%d", shmid);
	for (tries = 0;; tries++) {
		idd = atomic_load_explicit(&id_fd, memory_order_acquire);
		session = atomic_load(&session_gen);
		fd = openat(idd, name, oflags);
		if (fd < 0) {
			r = -errno;
		} else {
			r = seg_stat(fd, size, ino);
			if (r == 0) {
				*out = fd;
				*sessionp = session;
				return 0;
			}
			close(fd);
			/* the attach was counted: undo it */
			if (r != -EXDEV)
				detach_count(shmid, session, NULL, -1, 0);
		}
		if (tries)
			break;
		if (r == -EPROTO)
			tried = start_session();
		else if (r != -EXDEV && fd_still(idd, &id_ident))
			break;
		else
			tried = recover(idd);
		if (tried < 0)
			return tried;
		if (tried == 0)
			break;
	}
	/* No such name: the id is not (or no longer) live. */
	return r == -ENOENT ? -EINVAL : r;
}

/*
 * Maps fd (size bytes) for shmat: *pp the mapping, *ap a record for it,
 * not yet filled in.  Everything that can fail fails here, before the
 * attach counts.
 */
static int attach_map(int fd, uint64_t size, uintptr_t addr, int fixed,
		      int prot, int mflags, void **pp, struct attach **ap)
{
	struct attach *a;
	size_t len;
	void *p;

	if (size > SIZE_MAX - page_size)
		return -ENOMEM;
	len = ((size_t)size + page_size - 1) & ~(page_size - 1);
	/* Linux refuses a fixed address whose range wraps around. */
	if (fixed && !(mflags & MAP_FIXED) && addr + len < addr)
		return -EINVAL;
	/* Allocate before mapping so that nothing can fail after it. */
	a = malloc(sizeof(*a));
	if (!a)
		return -ENOMEM;
	p = mmap((void *)addr, len, prot, mflags, fd, 0);
	if (p == MAP_FAILED) {
		/* Something is mapped there: Linux says EINVAL for overlap. */
		int r = errno == EEXIST ? -EINVAL : -errno;

		free(a);
		return r;
	}
	/* A kernel before 4.17 treats MAP_FIXED_NOREPLACE as a mere hint. */
	if (fixed && (uintptr_t)p != addr) {
		munmap(p, len);
		free(a);
		return -EINVAL;
	}
	a->addr = (uintptr_t)p;
	a->len = len;
	*pp = p;
	*ap = a;
	return 0;
}

static void attach_record(struct attach *a, int shmid, unsigned int session,
			  const struct my_tally *tm, int rec)
{
	struct attach *gone;

	a->shmid = shmid;
	a->session = session;
	a->tm = tm;
	a->rec = rec;
	pthread_mutex_lock(&att_lock);
	gone = att_insert(a);
	pthread_mutex_unlock(&att_lock);
	/* Detaching is a request to the daemon: never under att_lock. */
	detach_list(gone);
}

/*
 * shmat from a kept descriptor (fastpath.c): 0, -errno, or 1 when the
 * segment must be opened.
 */
static int attach_kept(int shmid, int ro, uintptr_t addr, int fixed, int prot,
		       int mflags, void **out)
{
	struct kept_use u;
	struct attach *a;
	void *p;
	int r = 1;

	pthread_rwlock_rdlock(&bind_lock);
	if (kept_find(shmid, ro, &u) != 0)
		goto out;
	r = attach_map(u.fd, u.size, addr, fixed, prot, mflags, &p, &a);
	kept_done();
	if (r < 0)
		goto out;
	if (kept_count(shmid, &u) != 0) {
		/* removed or gone meanwhile: the open decides */
		munmap(p, a->len);
		free(a);
		r = 1;
		goto out;
	}
	attach_record(a, shmid, u.session, u.tm, (int)u.rec);
	*out = p;
out:
	pthread_rwlock_unlock(&bind_lock);
	return r;
}

/* The part of shmat that fork must not cut in two: open, map, record. */
static int attach_active(int shmid, uintptr_t addr, int fixed, int shmflg,
			 void **out)
{
	int oflags = SHMFS_ATTACH_FLAGS | O_CLOEXEC;
	int prot = PROT_READ, mflags = MAP_SHARED;
	int ro = !!(shmflg & SHM_RDONLY);
	unsigned int a_session = 0;
	uint32_t perm_gen = 0, mode;
	int kept_ok, fd = -1, r;
	uint64_t size = 0;
	struct attach *a;
	ino_t ino = 0;
	void *p;

	if (ro) {
		oflags |= O_RDONLY;
	} else {
		oflags |= O_RDWR;
		prot |= PROT_WRITE;
	}
	if (shmflg & SHM_EXEC)
		prot |= PROT_EXEC;
	/* Without SHM_REMAP, Linux refuses to map over anything. */
	if (fixed && (shmflg & SHM_REMAP))
		mflags |= MAP_FIXED;
	else if (fixed)
		mflags |= MAP_FIXED_NOREPLACE;

	r = attach_kept(shmid, ro, addr, fixed, prot, mflags, out);
	if (r <= 0)
		return r;
	/* the perm_gen the daemon's check below is at least as new as */
	kept_ok = table_seg_state(shmid, &perm_gen, &mode) == 0;
	pthread_rwlock_wrlock(&bind_lock);
	r = open_attach(shmid, oflags, &fd, &size, &ino, &a_session);
	pthread_rwlock_unlock(&bind_lock);
	if (r < 0)
		return r;
	r = attach_map(fd, size, addr, fixed, prot, mflags, &p, &a);
	if (r < 0) {
		close(fd);
		/* the open was counted as an attach */
		detach_count(shmid, a_session, NULL, -1, 0);
		return r;
	}
	/* The mapping holds the file open; the descriptor serves the
	 * next shmat of shmid in this mode, or goes. */
	if (!kept_ok ||
	    !kept_keep(shmid, ro, fd, ino, size, a_session, perm_gen))
		close(fd);
	attach_record(a, shmid, a_session, NULL, -1);
	*out = p;
	return 0;
}

static int do_shmat(int shmid, const void *shmaddr, int shmflg, void **out)
{
	uintptr_t addr = (uintptr_t)shmaddr;
	int ctl = ensure_init();
	int fixed = 0, r;

	if (ctl < 0)
		return ctl;
	/*
	 * Everything Linux's do_shmat rejects before it looks the id up is
	 * rejected here before the open, because the open is the attach.
	 * SHMLBA is the page size on x86_64.
	 */
	if (shmid < 0)
		return -EINVAL;
	if (addr) {
		if (addr & (page_size - 1)) {
			if (!(shmflg & SHM_RND))
				return -EINVAL;
			addr &= ~(uintptr_t)(page_size - 1);
			if (!addr && (shmflg & SHM_REMAP))
				return -EINVAL;
		}
		fixed = 1;
	} else if (shmflg & SHM_REMAP) {
		return -EINVAL;
	}
	if (shmflg & SHM_EXEC) {
		/* The open checks r and w; only an explicit check covers x. */
		struct shmfs_access acc = {
			.shmid = shmid,
			.mask = 4 | 1 | ((shmflg & SHM_RDONLY) ? 0 : 2),
		};

		r = ctl_ioctl(SHMFS_IOC_ACCESS, &acc);
		if (r < 0)
			return r == -ENOENT ? -EINVAL : r;
	}
	active_enter();
	r = attach_active(shmid, addr, fixed, shmflg, out);
	active_leave();
	return r;
}

static int do_shmdt(const void *shmaddr)
{
	uintptr_t addr = (uintptr_t)shmaddr;
	struct attach *a, *gone;
	int r = ensure_init();

	if (r < 0)
		return r;
	if (addr & (page_size - 1))
		return -EINVAL;
	active_enter();
	pthread_mutex_lock(&att_lock);
	a = att_take(addr);
	pthread_mutex_unlock(&att_lock);
	if (!a) {
		r = -EINVAL;
		goto out;
	}
	/*
	 * The whole recorded length, whatever the program did to it since
	 * (mprotect splits, partial munmap): one attach, one detach.
	 */
	if (munmap((void *)addr, a->len) < 0) {
		r = -errno;
		pthread_mutex_lock(&att_lock);
		gone = att_insert(a);
		pthread_mutex_unlock(&att_lock);
		detach_list(gone);
		goto out;
	}
	/* Counted before shmdt returns: in our record, or by the daemon. */
	detach_count(a->shmid, a->session, a->tm, a->rec, 0);
	free(a);
	r = 0;
out:
	active_leave();
	return r;
}

static void ds_to_user(const struct shmfs_ds *d, struct shmid_ds *buf)
{
	memset(buf, 0, sizeof(*buf));
	buf->shm_perm.__key = d->key;
	buf->shm_perm.uid = d->uid;
	buf->shm_perm.gid = d->gid;
	buf->shm_perm.cuid = d->cuid;
	buf->shm_perm.cgid = d->cgid;
	buf->shm_perm.mode = d->mode;
	buf->shm_perm.__seq = (unsigned short)d->seq;
	buf->shm_segsz = d->segsz;
	buf->shm_atime = d->atime;
	buf->shm_dtime = d->dtime;
	buf->shm_ctime = d->ctime;
	buf->shm_cpid = d->cpid;
	buf->shm_lpid = d->lpid;
	buf->shm_nattch = d->nattch;
}

static void info_to_user(const struct shmfs_info *i, struct shminfo *buf)
{
	memset(buf, 0, sizeof(*buf));
	buf->shmmax = i->shmmax;
	buf->shmmin = i->shmmin;
	buf->shmmni = i->shmmni;
	buf->shmseg = i->shmseg;
	buf->shmall = i->shmall;
}

static void shm_info_to_user(const struct shmfs_shm_info *i,
			     struct shm_info *buf)
{
	memset(buf, 0, sizeof(*buf));
	buf->used_ids = i->used_ids;
	buf->shm_tot = i->shm_tot;
	buf->shm_rss = i->shm_rss;
	buf->shm_swp = i->shm_swp;
	buf->swap_attempts = i->swap_attempts;
	buf->swap_successes = i->swap_successes;
}

static int do_shmctl(int shmid, int cmd, struct shmid_ds *buf, int *ret)
{
	struct shmfs_ctl c;
	int r = ensure_init();

	if (r < 0)
		return r;
	/* Linux's first check, before a NULL buf for IPC_SET. */
	if (cmd < 0 || shmid < 0)
		return -EINVAL;
	/*
	 * IPC_64 (0x100) stays in cmd: x86_64 has only the 64-bit layout,
	 * and its shmctl rejects cmd | IPC_64 as an unknown command.
	 */
	memset(&c, 0, sizeof(c));
	c.id = shmid;
	c.cmd = cmd;
	if (cmd == IPC_SET) {
		/* Linux reads the caller's buffer before anything else. */
		if (!buf)
			return -EFAULT;
		c.u.ds.uid = buf->shm_perm.uid;
		c.u.ds.gid = buf->shm_perm.gid;
		/* Linux's IPC_SET takes the permission bits, ignores more. */
		c.u.ds.mode = buf->shm_perm.mode & 0777;
	}
	if (cmd == SHM_LOCK) {
		struct rlimit rl;

		c.memlock = getrlimit(RLIMIT_MEMLOCK, &rl) < 0 ? 0
			    : rl.rlim_cur == RLIM_INFINITY
				    ? UINT64_MAX
				    : (uint64_t)rl.rlim_cur;
	}
	if (cmd == IPC_STAT || cmd == SHM_STAT || cmd == SHM_STAT_ANY)
		r = table_stat(shmid, cmd, &c.u.ds, &c.ret);
	else
		r = 1;
	if (r > 0)
		r = ctl_ioctl(SHMFS_IOC_CTL, &c);
	if (r < 0)
		return r;
	/* Linux copies results out last, so a bad id wins over a NULL buf. */
	switch (cmd) {
	case IPC_STAT:
	case SHM_STAT:
	case SHM_STAT_ANY:
		if (!buf)
			return -EFAULT;
		ds_to_user(&c.u.ds, buf);
		break;
	case IPC_INFO:
		if (!buf)
			return -EFAULT;
		info_to_user(&c.u.info, (struct shminfo *)(void *)buf);
		break;
	case SHM_INFO:
		if (!buf)
			return -EFAULT;
		shm_info_to_user(&c.u.shm_info, (struct shm_info *)(void *)buf);
		break;
	}
	*ret = c.ret;
	return 0;
}

/* ---- the public calls ---- */

SHMFS_EXPORT int shmfs_shmget(key_t key, size_t size, int shmflg)
{
	char eb[128];
	int id = -1;
	int r = do_shmget(key, size, shmflg, &id);

	if (r < 0) {
		dbg("shmget(%#x, %zu, %#o): %s", (unsigned)key, size,
		    (unsigned)shmflg, errtext(-r, eb, sizeof(eb)));
		errno = -r;
		return -1;
	}
	return id;
}

SHMFS_EXPORT void *shmfs_shmat(int shmid, const void *shmaddr, int shmflg)
{
	char eb[128];
	void *p = NULL;
	int r = do_shmat(shmid, shmaddr, shmflg, &p);

	if (r < 0) {
		dbg("shmat(%d, %p, %#o): %s", shmid, shmaddr, (unsigned)shmflg,
		    errtext(-r, eb, sizeof(eb)));
		errno = -r;
		return (void *)-1;
	}
	return p;
}

SHMFS_EXPORT int shmfs_shmdt(const void *shmaddr)
{
	char eb[128];
	int r = do_shmdt(shmaddr);

	if (r < 0) {
		dbg("shmdt(%p): %s", shmaddr, errtext(-r, eb, sizeof(eb)));
		errno = -r;
		return -1;
	}
	return 0;
}

SHMFS_EXPORT int shmfs_shmctl(int shmid, int cmd, struct shmid_ds *buf)
{
	char eb[128];
	int ret = -1;
	int r = do_shmctl(shmid, cmd, buf, &ret);

	if (r < 0) {
		dbg("shmctl(%d, %d, %p): %s", shmid, cmd, (void *)buf,
		    errtext(-r, eb, sizeof(eb)));
		errno = -r;
		return -1;
	}
	return ret;
}
