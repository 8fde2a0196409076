/*
 * The connection: finding the mount and checking that a shmfs daemon
 * answers there (lazy, retried on every call until it works), the two
 * descriptors kept on it (.ctl, whose open file is the process's session,
 * and .id), recovering them when the program closes them, and the
 * library's debug lines.
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
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>

#include "client.h"

/*
 * Set by a successful init (and replaced if the program closes one of
 * ours), then read without the lock; the rest changes only under
 * init_lock.
 */
atomic_int ctl_fd = -1;
atomic_int id_fd = -1;
size_t page_size;
atomic_int debug;
char root_path[PATH_MAX];
pid_t daemon_pid; /* as HELLO gave it */
struct fd_ident ctl_ident, id_ident;
/*
 * Bumped whenever our session with the daemon starts again (the program
 * closed the control node, which ended the old one and with it the
 * daemon's count of every attach made in it).
 */
atomic_uint session_gen;
pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * Debug lines go straight to fd 2 with one write(): no stdio lock, so the
 * fork handlers may use it too.
 */
__attribute__((format(printf, 1, 2))) void dbg(const char *fmt, ...)
{
	char buf[768];
	va_list ap;
	size_t n;
	ssize_t w;
	int e = errno;

	if (!debug)
		return;
	n = (size_t)snprintf(buf, sizeof(buf), LIBNAME "[%d]: ", (int)getpid());
	va_start(ap, fmt);
	n += (size_t)vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	va_end(ap);
	if (n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	w = write(STDERR_FILENO, buf, n);
	(void)w;
	errno = e;
}

const char *errtext(int e, char *buf, size_t size)
{
	return strerror_r(e, buf, size);
}

/*
 * Our variables, read with secure_getenv: a setuid or setgid program
 * ignores them, so its caller can neither point it at a mount of the
 * caller's choosing nor make it write to stderr.
 */
static const char *env_get(const char *name)
{
	return secure_getenv(name);
}

static int env_flag(const char *name)
{
	const char *v = env_get(name);

	return v && *v && strcmp(v, "0") != 0;
}

/* Fails with the reason in the debug line; the caller turns it into ENOSYS. */
int init_fail(const char *path, const char *what, int e)
{
	char eb[128];

	dbg("%s: %s: %s; shm calls fail with ENOSYS (shmfs root from %s)", path,
	    what, errtext(e, eb, sizeof(eb)),
	    env_get("SHMFS_ROOT") ? "SHMFS_ROOT"
				  : "the default, SHMFS_ROOT unset or ignored");
	return -ENOSYS;
}

/* Without a round trip: device and inode do not need fresh attributes. */
static int fd_ident_of(int fd, struct fd_ident *id)
{
	struct statx sx;

	if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_INO, &sx) <
	    0)
		return -errno;
	id->dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
	id->ino = sx.stx_ino;
	return 0;
}

int fd_still(int fd, const struct fd_ident *want)
{
	struct fd_ident now = { 0, 0 };

	return fd >= 0 && fd_ident_of(fd, &now) == 0 && now.dev == want->dev &&
	       now.ino == want->ino;
}

/* Opens and checks ROOT/.ctl: 0, or -ENOSYS with the reason in debug. */
static int open_ctl(const char *root, int *out, struct fd_ident *ident,
		    struct shmfs_hello *sess)
{
	struct shmfs_hello hello;
	char path[PATH_MAX];
	struct statfs sfs;
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s", root, SHMFS_CTL_NAME) >=
	    (int)sizeof(path))
		return init_fail(root, "path too long", ENAMETOOLONG);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return init_fail(path, "open", errno);
	if (fstatfs(fd, &sfs) < 0) {
		init_fail(path, "fstatfs", errno);
		goto fail;
	}
	if (sfs.f_type != FUSE_SUPER_MAGIC) {
		dbg("%s: not on a FUSE file system (f_type %#lx), so %s is not"
		    " a shmfs mount; shm calls fail with ENOSYS",
		    path, (unsigned long)sfs.f_type, root);
		goto fail;
	}
	memset(&hello, 0, sizeof(hello));
	if (ioctl(fd, SHMFS_IOC_HELLO, &hello) < 0) {
		init_fail(path, "SHMFS_IOC_HELLO", errno);
		goto fail;
	}
	if (hello.version != SHMFS_PROTO_VERSION) {
		dbg("%s: daemon speaks protocol %u, this library %u; shm calls"
		    " fail with ENOSYS",
		    path, hello.version, SHMFS_PROTO_VERSION);
		goto fail;
	}
	if (hello.page_size != page_size)
		dbg("daemon page size %u differs from ours (%zu)",
		    hello.page_size, page_size);
	daemon_pid = hello.daemon_pid;
	*sess = hello;
	if (fd_ident_of(fd, ident) < 0) {
		init_fail(path, "statx", errno);
		goto fail;
	}
	*out = fd;
	return 0;
fail:
	close(fd);
	return -ENOSYS;
}

/* Attaches open relative to ROOT/.id: no walk from / each time. */
static int open_id_dir(const char *root, int *out, struct fd_ident *ident)
{
	char path[PATH_MAX];
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s", root, SHMFS_ID_DIR) >=
	    (int)sizeof(path))
		return init_fail(root, "path too long", ENAMETOOLONG);
	fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return init_fail(path, "open", errno);
	if (fd_ident_of(fd, ident) < 0) {
		init_fail(path, "statx", errno);
		close(fd);
		return -ENOSYS;
	}
	*out = fd;
	return 0;
}

/* Returns the new control descriptor, or -ENOSYS. */
static int init_locked(void)
{
	const char *root = env_get("SHMFS_ROOT");
	long ps = sysconf(_SC_PAGESIZE);
	struct shmfs_hello h;
	int fd = -1, dfd = -1;

	debug = env_flag("SHMFS_DEBUG");
	page_size = ps > 0 ? (size_t)ps : 4096;
	if (!root || !*root)
		root = DEFAULT_ROOT;
	if (strlen(root) >= sizeof(root_path))
		return init_fail(root, "path too long", ENAMETOOLONG);
	if (open_ctl(root, &fd, &ctl_ident, &h) < 0)
		return -ENOSYS;
	if (open_id_dir(root, &dfd, &id_ident) < 0) {
		close(fd);
		return -ENOSYS;
	}
	strcpy(root_path, root);
	dbg("using %s%s", root,
	    table_open(root) ? ", with its published table" : "");
	tally_start(&h, atomic_load(&session_gen));
	atomic_store_explicit(&id_fd, dfd, memory_order_release);
	/* Publishes the rest along with the descriptor. */
	atomic_store_explicit(&ctl_fd, fd, memory_order_release);
	return fd;
}

/*
 * A call on `used`, one of our two descriptors, failed, and it may be
 * because the program closed it (a close-all loop after fork, say) and
 * the number is now free or another file's.  Opens again whichever of
 * the two is no longer ours; the old number is left alone, it may be the
 * program's now.  Returns 1 when the caller should retry, 0 when both
 * are still ours (the error was real), -ENOSYS when the mount cannot be
 * opened again.
 */
static int recover_locked(int used)
{
	int ctl = atomic_load_explicit(&ctl_fd, memory_order_relaxed);
	int idd = atomic_load_explicit(&id_fd, memory_order_relaxed);
	int fd = -1, replaced = 0;
	struct shmfs_hello h;

	if (ctl < 0)
		return -ENOSYS;
	/* Another thread replaced it already. */
	if (used != ctl && used != idd)
		return 1;
	if (!fd_still(idd, &id_ident)) {
		if (open_id_dir(root_path, &fd, &id_ident) < 0)
			goto lost;
		atomic_store_explicit(&id_fd, fd, memory_order_release);
		replaced = 1;
	}
	if (!fd_still(ctl, &ctl_ident)) {
		/* The old session ended with that close: the daemon has
		 * counted every attach of ours as detached. */
		if (open_ctl(root_path, &fd, &ctl_ident, &h) < 0)
			goto lost;
		tally_start(&h, atomic_fetch_add(&session_gen, 1) + 1);
		atomic_store_explicit(&ctl_fd, fd, memory_order_release);
		replaced = 1;
	}
	if (replaced)
		dbg("%s: reopened a descriptor the program closed", root_path);
	return replaced;
lost:
	/* Start from scratch at the next call. */
	atomic_store_explicit(&ctl_fd, -1, memory_order_release);
	return -ENOSYS;
}

int recover(int used)
{
	int r;

	pthread_mutex_lock(&init_lock);
	r = recover_locked(used);
	pthread_mutex_unlock(&init_lock);
	return r;
}

/* Returns the control descriptor, or -ENOSYS while no daemon answers. */
int ensure_init(void)
{
	int fd;

	fork_claim(); /* a child's first call: before any of its own state */
	fd = atomic_load_explicit(&ctl_fd, memory_order_acquire);
	if (fd >= 0)
		return fd;
	pthread_mutex_lock(&init_lock);
	fd = atomic_load_explicit(&ctl_fd, memory_order_relaxed);
	if (fd < 0)
		fd = init_locked();
	pthread_mutex_unlock(&init_lock);
	return fd;
}

/*
 * An ioctl on the control node, with the errno the SysV call gives.  On
 * an error, a cheap check that the descriptor is still ours; if the
 * program closed it, the ioctl runs once more on a new one, with the
 * request as it was (a foreign file may have written to it).
 */
int ctl_ioctl_fd(int fd, unsigned long cmd, void *arg, int locked)
{
	union shmfs_ioc saved;
	size_t size = _IOC_SIZE(cmd);
	int e, r, tries;

	if (size > sizeof(saved))
		return -EINVAL;
	memcpy(&saved, arg, size);
	fork_claim();
	for (tries = 0;; tries++) {
		if (ioctl(fd, cmd, arg) == 0)
			return 0;
		e = errno;
		if (tries)
			return -e;
		r = locked ? recover_locked(fd) : recover(fd);
		if (r < 0)
			return r;
		if (r == 0)
			return -e;
		fd = atomic_load_explicit(&ctl_fd, memory_order_acquire);
		memcpy(arg, &saved, size);
	}
}

int ctl_ioctl(unsigned long cmd, void *arg)
{
	int fd = ensure_init();

	if (fd < 0)
		return fd;
	return ctl_ioctl_fd(fd, cmd, arg, 0);
}

/*
 * The daemon knows no session for us: we inherited the control node from
 * a parent that had nothing attached when it forked (so sent no fork
 * request), or the program closed ours.  1: try again; -errno: give up.
 */
int start_session(void)
{
	struct shmfs_hello h;
	int fd = atomic_load_explicit(&ctl_fd, memory_order_acquire);
	int r;

	memset(&h, 0, sizeof(h));
	r = ctl_ioctl_fd(fd, SHMFS_IOC_SESSION, &h, 0);
	if (r == 0) {
		tally_start(&h, atomic_fetch_add(&session_gen, 1) + 1);
		return 1;
	}
	r = recover(fd);
	return r == 0 ? -EPROTO : r;
}
