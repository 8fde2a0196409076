/*
 * The LD_PRELOAD interposer: shmget, shmat, shmdt and shmctl defined here
 * come before glibc's in symbol lookup, so an unmodified program's SysV
 * shared memory goes to the shmfs mount.  Nothing here falls back to the
 * kernel: with no daemon the calls fail with ENOSYS (see libshmfs(3)),
 * because a program whose segments silently went to the kernel would not
 * share them with its shmfs peers.
 *
 * The same holds for what a program reads about the table: ipcs(1) and
 * lsipc(1) read /proc/sysvipc/shm and /proc/sys/kernel/shm{max,all,mni}
 * rather than call shmctl, so opening one of those four files for
 * reading gives a descriptor of the shmfs answer instead (ROOT/status,
 * and the limits of IPC_INFO): a sealed memfd reopened read-only, which
 * reads, seeks and fstat()s as a regular file.  Only those exact absolute
 * paths are served, through the entry points programs reach them by
 * (open, openat, fopen, their 64-bit names and the _FORTIFY_SOURCE
 * variants); every other open goes to the next definition untouched.
 */
/* open and fopen are defined here, not wrapped by fortify inlines. */
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"

#define DEFAULT_ROOT "/shm"

SHMFS_EXPORT int shmget(key_t key, size_t size, int shmflg)
{
	return shmfs_shmget(key, size, shmflg);
}

SHMFS_EXPORT void *shmat(int shmid, const void *shmaddr, int shmflg)
{
	return shmfs_shmat(shmid, shmaddr, shmflg);
}

SHMFS_EXPORT int shmdt(const void *shmaddr)
{
	return shmfs_shmdt(shmaddr);
}

SHMFS_EXPORT int shmctl(int shmid, int cmd, struct shmid_ds *buf)
{
	return shmfs_shmctl(shmid, cmd, buf);
}

/* ---- the next definitions of what we interpose ---- */

typedef int open_fn(const char *, int, ...);
typedef int openat_fn(int, const char *, int, ...);
typedef int open2_fn(const char *, int);
typedef int openat2_fn(int, const char *, int);
typedef FILE *fopen_fn(const char *, const char *);

enum next_sym {
	NEXT_OPEN,
	NEXT_OPEN64,
	NEXT_OPENAT,
	NEXT_OPENAT64,
	NEXT_OPEN_2,
	NEXT_OPEN64_2,
	NEXT_OPENAT_2,
	NEXT_OPENAT64_2,
	NEXT_FOPEN,
	NEXT_FOPEN64,
	NEXT_COUNT
};

static const char *const next_name[NEXT_COUNT] = {
	[NEXT_OPEN] = "open",		[NEXT_OPEN64] = "open64",
	[NEXT_OPENAT] = "openat",	[NEXT_OPENAT64] = "openat64",
	[NEXT_OPEN_2] = "__open_2",	[NEXT_OPEN64_2] = "__open64_2",
	[NEXT_OPENAT_2] = "__openat_2", [NEXT_OPENAT64_2] = "__openat64_2",
	[NEXT_FOPEN] = "fopen",		[NEXT_FOPEN64] = "fopen64",
};

static void *next_ptr[NEXT_COUNT];

/*
 * Looked up at load time, so that an open made later (from a signal
 * handler, say) never runs dlsym; looked up on first use as well in case
 * another library's constructor opens a file before ours has run.
 */
static void *next(enum next_sym s)
{
	void *p = __atomic_load_n(&next_ptr[s], __ATOMIC_ACQUIRE);

	if (!p) {
		p = dlsym(RTLD_NEXT, next_name[s]);
		__atomic_store_n(&next_ptr[s], p, __ATOMIC_RELEASE);
	}
	return p;
}

__attribute__((constructor)) static void preload_init(void)
{
	int s, e = errno;

	for (s = 0; s < NEXT_COUNT; s++)
		next((enum next_sym)s);
	errno = e;
}

/* ---- the files we answer ---- */

enum served { NOT_SERVED, SYSVIPC_SHM, SHMMAX, SHMALL, SHMMNI };

static enum served served_path(const char *path)
{
	static const char sys[] = "/proc/sys/kernel/";

	if (!path)
		return NOT_SERVED;
	if (strcmp(path, "/proc/sysvipc/shm") == 0)
		return SYSVIPC_SHM;
	if (strncmp(path, sys, sizeof(sys) - 1) != 0)
		return NOT_SERVED;
	path += sizeof(sys) - 1;
	if (strcmp(path, "shmmax") == 0)
		return SHMMAX;
	if (strcmp(path, "shmall") == 0)
		return SHMALL;
	if (strcmp(path, "shmmni") == 0)
		return SHMMNI;
	return NOT_SERVED;
}

/*
 * Only an open for reading is answered.  Writing a limit (sysctl -w) goes
 * to the kernel's file, as do O_PATH opens and opens that must fail there
 * anyway (O_DIRECTORY, O_CREAT|O_EXCL).
 */
static enum served served_open(const char *path, int flags)
{
	if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_PATH | O_DIRECTORY)))
		return NOT_SERVED;
	if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
		return NOT_SERVED;
	return served_path(path);
}

static enum served served_fopen(const char *path, const char *mode)
{
	if (!mode || mode[0] != 'r' || strchr(mode, '+'))
		return NOT_SERVED;
	return served_path(path);
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ROOT/status is the table in the kernel's format already: copy it. */
static int fill_status(int out)
{
	open_fn *real_open = (open_fn *)next(NEXT_OPEN);
	/* as libshmfs: a setuid or setgid program ignores it */
	const char *root = secure_getenv("SHMFS_ROOT");
	char path[4096];
	size_t bufsize = 128 * 1024;
	char *buf;
	int in, err = 0;

	if (!root || !*root)
		root = DEFAULT_ROOT;
	if ((size_t)snprintf(path, sizeof(path), "%s/" SHMFS_STATUS_NAME,
			     root) >= sizeof(path))
		return -ENAMETOOLONG;
	if (!real_open)
		return -ENOSYS;
	buf = malloc(bufsize);
	if (!buf)
		return -ENOMEM;
	in = real_open(path, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		err = -errno;
		free(buf);
		return err;
	}
	for (;;) {
		ssize_t n = read(in, buf, bufsize);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			err = -errno;
		if (n <= 0)
			break;
		err = write_all(out, buf, (size_t)n);
		if (err)
			break;
	}
	close(in);
	free(buf);
	return err;
}

/* As the kernel prints a ulong sysctl: the number and a newline. */
static int fill_limit(int out, enum served which, const struct shminfo *info)
{
	unsigned long v = which == SHMMAX   ? info->shmmax
			  : which == SHMALL ? info->shmall
					    : info->shmmni;
	char text[32];
	int n = snprintf(text, sizeof(text), "%lu\n", v);

	return write_all(out, text, (size_t)n);
}

static const char *const memfd_name[] = {
	[SYSVIPC_SHM] = "shmfs:/proc/sysvipc/shm",
	[SHMMAX] = "shmfs:/proc/sys/kernel/shmmax",
	[SHMALL] = "shmfs:/proc/sys/kernel/shmall",
	[SHMMNI] = "shmfs:/proc/sys/kernel/shmmni",
};

/*
 * A read-only descriptor of a memfd holding the answer, at offset 0 and
 * in the descriptor slot the open would have had.  Returns it, or -errno.
 */
static int serve(enum served which, int flags)
{
	open_fn *real_open = (open_fn *)next(NEXT_OPEN);
	struct shminfo info;
	char self[64];
	int mfd, fd, err;

	/*
	 * Ask the daemon first, for both kinds: no daemon gives the errno
	 * every other call gives (ENOSYS, ENOTCONN), and a status file that
	 * is not shmfs's is never read.
	 */
	memset(&info, 0, sizeof(info));
	if (shmfs_shmctl(0, IPC_INFO, (struct shmid_ds *)(void *)&info) < 0)
		return -errno;

	mfd = memfd_create(memfd_name[which], MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (mfd < 0)
		return -errno;
	err = which == SYSVIPC_SHM ? fill_status(mfd)
				   : fill_limit(mfd, which, &info);
	if (!err && (fchmod(mfd, 0444) < 0 ||
		     fcntl(mfd, F_ADD_SEALS,
			   F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW |
				   F_SEAL_WRITE) < 0 ||
		     lseek(mfd, 0, SEEK_SET) < 0))
		err = -errno;
	if (err) {
		close(mfd);
		return err;
	}

	/*
	 * Reopened through /proc so that the descriptor is O_RDONLY, as the
	 * /proc file's would be (write gives EBADF); then moved to the
	 * memfd's slot, the lowest free one, where open would have put it.
	 */
	snprintf(self, sizeof(self), "/proc/self/fd/%d", mfd);
	fd = real_open ? real_open(self,
				   O_RDONLY | O_CLOEXEC | (flags & O_NONBLOCK))
		       : -1;
	if (fd >= 0) {
		if (dup3(fd, mfd, flags & O_CLOEXEC) < 0) {
			err = -errno;
			close(fd);
			close(mfd);
			return err;
		}
		close(fd);
	} else if (!(flags & O_CLOEXEC)) {
		/* No /proc: keep the memfd itself; the seals refuse writes. */
		fcntl(mfd, F_SETFD, 0);
	}
	return mfd;
}

static int serve_open(enum served which, int flags)
{
	int e = errno;
	int fd = serve(which, flags);

	if (fd < 0) {
		errno = -fd;
		return -1;
	}
	errno = e;
	return fd;
}

/* fopen's "e" flag, which comes before any ",ccs=" part of the mode. */
static int fopen_cloexec(const char *mode)
{
	for (; *mode && *mode != ','; mode++)
		if (*mode == 'e')
			return O_CLOEXEC;
	return 0;
}

static FILE *serve_fopen(enum served which, const char *mode)
{
	int e = errno;
	int fd = serve(which, fopen_cloexec(mode));
	FILE *f;

	if (fd < 0) {
		errno = -fd;
		return NULL;
	}
	f = fdopen(fd, mode);
	if (!f) {
		e = errno;
		close(fd);
		errno = e;
		return NULL;
	}
	errno = e;
	return f;
}

/* ---- the entry points ---- */

/* The mode argument exists only with O_CREAT or O_TMPFILE. */
#define OPEN_MODE(flags, mode)                     \
	do {                                       \
		va_list ap;                        \
		if (__OPEN_NEEDS_MODE(flags)) {    \
			va_start(ap, flags);       \
			mode = va_arg(ap, mode_t); \
			va_end(ap);                \
		}                                  \
	} while (0)

static int call_open(enum next_sym s, const char *path, int flags, mode_t mode)
{
	open_fn *f = (open_fn *)next(s);
	enum served which = served_open(path, flags);

	if (which != NOT_SERVED)
		return serve_open(which, flags);
	if (!f) {
		errno = ENOSYS;
		return -1;
	}
	return f(path, flags, mode);
}

static int call_openat(enum next_sym s, int dirfd, const char *path, int flags,
		       mode_t mode)
{
	openat_fn *f = (openat_fn *)next(s);
	enum served which = served_open(path, flags);

	/* served_path matches only absolute paths, where dirfd is unused */
	if (which != NOT_SERVED)
		return serve_open(which, flags);
	if (!f) {
		errno = ENOSYS;
		return -1;
	}
	return f(dirfd, path, flags, mode);
}

SHMFS_EXPORT int open(const char *path, int flags, ...)
{
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	return call_open(NEXT_OPEN, path, flags, mode);
}

SHMFS_EXPORT int open64(const char *path, int flags, ...)
{
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	return call_open(NEXT_OPEN64, path, flags, mode);
}

SHMFS_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	return call_openat(NEXT_OPENAT, dirfd, path, flags, mode);
}

SHMFS_EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	return call_openat(NEXT_OPENAT64, dirfd, path, flags, mode);
}

/* What _FORTIFY_SOURCE turns an open without a mode argument into. */
static int call_open_2(enum next_sym s, const char *path, int flags)
{
	open2_fn *f = (open2_fn *)next(s);
	enum served which = served_open(path, flags);

	if (which != NOT_SERVED)
		return serve_open(which, flags);
	if (!f) {
		errno = ENOSYS;
		return -1;
	}
	return f(path, flags);
}

static int call_openat_2(enum next_sym s, int dirfd, const char *path,
			 int flags)
{
	openat2_fn *f = (openat2_fn *)next(s);
	enum served which = served_open(path, flags);

	if (which != NOT_SERVED)
		return serve_open(which, flags);
	if (!f) {
		errno = ENOSYS;
		return -1;
	}
	return f(dirfd, path, flags);
}

SHMFS_EXPORT int __open_2(const char *path, int flags)
{
	return call_open_2(NEXT_OPEN_2, path, flags);
}

SHMFS_EXPORT int __open64_2(const char *path, int flags)
{
	return call_open_2(NEXT_OPEN64_2, path, flags);
}

SHMFS_EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	return call_openat_2(NEXT_OPENAT_2, dirfd, path, flags);
}

SHMFS_EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	return call_openat_2(NEXT_OPENAT64_2, dirfd, path, flags);
}

static FILE *call_fopen(enum next_sym s, const char *path, const char *mode)
{
	fopen_fn *f = (fopen_fn *)next(s);
	enum served which = served_fopen(path, mode);

	if (which != NOT_SERVED)
		return serve_fopen(which, mode);
	if (!f) {
		errno = ENOSYS;
		return NULL;
	}
	return f(path, mode);
}

SHMFS_EXPORT FILE *fopen(const char *path, const char *mode)
{
	return call_fopen(NEXT_FOPEN, path, mode);
}

SHMFS_EXPORT FILE *fopen64(const char *path, const char *mode)
{
	return call_fopen(NEXT_FOPEN64, path, mode);
}
