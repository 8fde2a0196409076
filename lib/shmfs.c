/*
 * libshmfs: the client side of shmfs.  It owns three things: finding the
 * mount and checking that a shmfs daemon answers there (lazy, retried on
 * every call until it works; the open control node is also the process's
 * session, whose end the daemon counts as the detach of everything), the
 * per-process table of attachments (address -> shmid and length), and
 * the fork protocol that makes the daemon count a child's inherited
 * attaches before fork() returns.  Everything the SysV calls decide (keys, ids,
 * permissions, limits) is decided by the daemon; this file only checks
 * what Linux checks before it looks at the segment, and converts structs.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "shmfs.h"
#include "shmfs_proto.h"

#define PERM_API static __attribute__((unused))
#include "../src/perm.c"

#ifdef SHMFS_PRELOAD
#define LIBNAME "libshmfs-preload"
#else
#define LIBNAME "libshmfs"
#endif

#define DEFAULT_ROOT "/shm"
#define FUSE_SUPER_MAGIC 0x65735546
#ifndef SHM_STAT_ANY
#define SHM_STAT_ANY 15
#endif

/*
 * One attachment.  The table is a treap ordered by address rather than a
 * hash: shmat must find every record that the new mapping overlaps (left
 * behind when a program munmap()ed an attachment itself, or replaced by
 * SHM_REMAP), and a hash can only answer that with one probe per page.
 */
struct attach {
	uintptr_t addr;
	size_t len; /* whole pages, as mapped */
	int shmid;
	unsigned int session; /* the daemon counts it only in this session */
	uint32_t prio;
	struct attach *left, *right;
};

/* Which file a descriptor of ours must still be. */
struct fd_ident {
	dev_t dev;
	ino_t ino;
};

/*
 * Set by a successful init (and replaced if the program closes one of
 * ours), then read without the lock; the rest changes only under
 * init_lock.
 */
static atomic_int ctl_fd = -1;
static atomic_int id_fd = -1;
static size_t page_size;
static atomic_int debug;
static char root_path[PATH_MAX];
static pid_t daemon_pid; /* as HELLO gave it */
static struct fd_ident ctl_ident, id_ident;
/*
 * Bumped whenever our session with the daemon starts again (the program
 * closed the control node, which ended the old one and with it the
 * daemon's count of every attach made in it).
 */
static atomic_uint session_gen;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * fork must never see an attach half made or half undone: the daemon's
 * count for the child has to match the descriptors the child inherits.
 * So each shmat and shmdt is "active" from start to end, and fork waits
 * until none is and keeps new ones from starting (a stream of attaches
 * cannot hold a fork off) by holding fork_lock across fork.  This is a
 * shared/exclusive lock in effect; it is not a pthread_rwlock because
 * glibc cannot unlock one in the child, where the thread id of the
 * forking thread has changed.  table_lock guards the tree itself.
 */
static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fork_cond = PTHREAD_COND_INITIALIZER;
static unsigned int active_calls;
static unsigned int forks_waiting;
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct attach *table_root;
static size_t table_count;
static uint32_t prio_state = 0x9e3779b9;

/* Carried from the prepare handler to the parent and child handlers. */
static struct shmfs_fork fork_msg;
static int fork_counted;
static int fork_saved_errno;

/*
 * Debug lines go straight to fd 2 with one write(): no stdio lock, so the
 * fork handlers may use it too.
 */
__attribute__((format(printf, 1, 2))) static void dbg(const char *fmt, ...)
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

static const char *errtext(int e, char *buf, size_t size)
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
static int init_fail(const char *path, const char *what, int e)
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

static int fd_still(int fd, const struct fd_ident *want)
{
	struct fd_ident now = { 0, 0 };

	return fd >= 0 && fd_ident_of(fd, &now) == 0 && now.dev == want->dev &&
	       now.ino == want->ino;
}

/* Opens and checks ROOT/.ctl: 0, or -ENOSYS with the reason in debug. */
static int open_ctl(const char *root, int *out, struct fd_ident *ident)
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

/* ---- the published table: answers without a request ---- */

static const struct shmfs_table *table;
static int table_pidfd = -1;

/*
 * The table is the daemon's if the daemon that answered HELLO on .ctl
 * says it is (daemon_pid) and its user owns the file: whoever can name
 * the .table we open (a symlink, another directory) cannot make us
 * answer from a file of their own.  pfd watches daemon_pid, so the
 * owner of /proc/<pid> is that of the same process.
 */
static int table_is_daemons(const struct shmfs_table *t, const struct stat *st,
			    int pfd)
{
	struct pollfd p = { .fd = pfd, .events = POLLIN };
	char proc[32];
	struct stat ps;

	if (t->daemon_pid != daemon_pid) {
		dbg("%s names daemon %d, not %d that serves the mount: unused",
		    SHMFS_TABLE_NAME, (int)t->daemon_pid, (int)daemon_pid);
		return 0;
	}
	snprintf(proc, sizeof(proc), "/proc/%d", (int)daemon_pid);
	if (stat(proc, &ps) < 0 || poll(&p, 1, 0) != 0 ||
	    st->st_uid != ps.st_uid) {
		dbg("%s is not the daemon's own file (owner %u): unused",
		    SHMFS_TABLE_NAME, (unsigned)st->st_uid);
		return 0;
	}
	return 1;
}

/* Maps ROOT/.table if the daemon publishes one; without it, every call
 * asks the daemon, which is slower but the same. */
static void table_open(const char *root)
{
	char path[PATH_MAX];
	struct stat st;
	const struct shmfs_table *t;
	int fd, pfd;

	snprintf(path, sizeof(path), "%s/%s", root, SHMFS_TABLE_NAME);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size != sizeof(*t)) {
		close(fd);
		return;
	}
	t = mmap(NULL, sizeof(*t), PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (t == MAP_FAILED)
		return;
	if (__atomic_load_n(&t->magic, __ATOMIC_ACQUIRE) != SHMFS_TABLE_MAGIC ||
	    t->version != SHMFS_TABLE_VERSION ||
	    t->max_slots != SHMFS_MAX_SLOTS ||
	    (pfd = (int)syscall(SYS_pidfd_open, t->daemon_pid, 0)) < 0) {
		munmap((void *)t, sizeof(*t));
		return;
	}
	if (!table_is_daemons(t, &st, pfd)) {
		close(pfd);
		munmap((void *)t, sizeof(*t));
		return;
	}
	table_pidfd = pfd;
	table = t;
}

/* Only a table whose daemon still runs says anything. */
static const struct shmfs_table *table_live(void)
{
	struct pollfd p = { .fd = table_pidfd, .events = POLLIN };

	if (!table ||
	    __atomic_load_n(&table->magic, __ATOMIC_ACQUIRE) !=
		    SHMFS_TABLE_MAGIC ||
	    poll(&p, 1, 0) != 0)
		return NULL;
	return table;
}

/* One entry, consistent, or -EAGAIN while the daemon keeps writing it. */
static int table_entry(const struct shmfs_table *t, int slot,
		       struct shmfs_ds *ds, uint32_t *live)
{
	const struct shmfs_table_entry *e = &t->entries[slot];
	const uint64_t *src = (const uint64_t *)(const void *)&e->ds;
	uint64_t words[sizeof(*ds) / 8];
	int tries;
	size_t i;

	for (tries = 0; tries < 1000; tries++) {
		uint32_t s1 = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);

		if (s1 & 1)
			continue;
		*live = __atomic_load_n(&e->live, __ATOMIC_RELAXED);
		for (i = 0; i < sizeof(words) / 8; i++)
			words[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&e->seq, __ATOMIC_RELAXED) == s1) {
			memcpy(ds, words, sizeof(*ds));
			return 0;
		}
	}
	return -EAGAIN;
}

/* The slot of a live key, -ENOENT, or -EAGAIN. */
static int table_key_slot(const struct shmfs_table *t, key_t key)
{
	int tries;

	for (tries = 0; tries < 1000; tries++) {
		uint32_t s1 = __atomic_load_n(&t->key_seq, __ATOMIC_ACQUIRE);
		uint32_t idx, n = 0;
		int found = -ENOENT;

		if (s1 & 1)
			continue;
		idx = __atomic_load_n(&t->buckets[shmfs_table_bucket(key)],
				      __ATOMIC_RELAXED);
		while (idx && idx <= SHMFS_MAX_SLOTS && n++ < SHMFS_MAX_SLOTS) {
			const struct shmfs_table_entry *e =
				&t->entries[idx - 1];

			if (__atomic_load_n(&e->ds.key, __ATOMIC_RELAXED) ==
			    key) {
				found = (int)idx - 1;
				break;
			}
			idx = __atomic_load_n(&e->key_next, __ATOMIC_RELAXED);
		}
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&t->key_seq, __ATOMIC_RELAXED) == s1)
			return found;
	}
	return -EAGAIN;
}

/* getgroups(2) as perm.c asks: how many there are, even when more than
 * size. */
static int own_groups(void *arg, gid_t *list, int size)
{
	int n = getgroups(0, NULL);

	(void)arg;
	if (n < 0 || n > size)
		return n < 0 ? -errno : n;
	n = getgroups(size, list);
	return n < 0 ? -errno : n;
}

/* ipcperm, the daemon's own (perm.c), with our own credentials. */
static int table_perm(const struct shmfs_ds *d, int want)
{
	struct perm_obj o = {
		.uid = d->uid,
		.gid = d->gid,
		.cuid = d->cuid,
		.cgid = d->cgid,
		.mode = d->mode & 0777,
	};
	struct perm_cred c;
	int r;

	perm_cred_init(&c, geteuid(), getegid(), getpid());
	c.getgroups = own_groups;
	r = perm_check(&c, &o, want);
	perm_cred_fini(&c);
	return r;
}

/*
 * shmget of a key that exists, from the table: 0 with *id, or 1 when
 * the daemon must decide (no such key, creation, or no table).
 */
static int table_shmget(key_t key, size_t size, int shmflg, int *id)
{
	const struct shmfs_table *t = table_live();
	struct shmfs_ds d;
	uint32_t live;
	int slot, r;

	if (!t || key == IPC_PRIVATE)
		return 1;
	slot = table_key_slot(t, key);
	if (slot < 0 || table_entry(t, slot, &d, &live) < 0 || !live ||
	    d.key != key)
		return 1;
	if ((shmflg & (IPC_CREAT | IPC_EXCL)) == (IPC_CREAT | IPC_EXCL))
		return -EEXIST;
	if (size > d.segsz)
		return -EINVAL;
	r = table_perm(&d, (shmflg >> 6 | shmflg >> 3 | shmflg) & 7);
	if (r < 0)
		return r;
	*id = d.shmid;
	return 0;
}

/*
 * IPC_STAT, SHM_STAT, SHM_STAT_ANY from the table: 0, -errno, or 1 when
 * the daemon must answer.
 */
static int table_stat(int id, int cmd, struct shmfs_ds *d, int *ret)
{
	const struct shmfs_table *t = table_live();
	uint32_t live;
	int r;

	if (!t || table_entry(t, id & (SHMFS_MAX_SLOTS - 1), d, &live) < 0)
		return 1;
	if (!live || (cmd == IPC_STAT && d->shmid != id))
		return -EINVAL;
	if (cmd != SHM_STAT_ANY && (r = table_perm(d, 4)) < 0)
		return r;
	*ret = cmd == IPC_STAT ? 0 : d->shmid;
	return 0;
}

/* Returns the new control descriptor, or -ENOSYS. */
static int init_locked(void)
{
	const char *root = env_get("SHMFS_ROOT");
	long ps = sysconf(_SC_PAGESIZE);
	int fd = -1, dfd = -1;

	debug = env_flag("SHMFS_DEBUG");
	page_size = ps > 0 ? (size_t)ps : 4096;
	if (!root || !*root)
		root = DEFAULT_ROOT;
	if (strlen(root) >= sizeof(root_path))
		return init_fail(root, "path too long", ENAMETOOLONG);
	if (open_ctl(root, &fd, &ctl_ident) < 0)
		return -ENOSYS;
	if (open_id_dir(root, &dfd, &id_ident) < 0) {
		close(fd);
		return -ENOSYS;
	}
	strcpy(root_path, root);
	table_open(root);
	dbg("using %s%s", root, table ? ", with its published table" : "");
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
		if (open_ctl(root_path, &fd, &ctl_ident) < 0)
			goto lost;
		atomic_fetch_add(&session_gen, 1);
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

static int recover(int used)
{
	int r;

	pthread_mutex_lock(&init_lock);
	r = recover_locked(used);
	pthread_mutex_unlock(&init_lock);
	return r;
}

/* Returns the control descriptor, or -ENOSYS while no daemon answers. */
static int ensure_init(void)
{
	int fd = atomic_load_explicit(&ctl_fd, memory_order_acquire);

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
static int ctl_ioctl_fd(int fd, unsigned long cmd, void *arg, int locked)
{
	union shmfs_ioc saved;
	size_t size = _IOC_SIZE(cmd);
	int e, r, tries;

	if (size > sizeof(saved))
		return -EINVAL;
	memcpy(&saved, arg, size);
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

static int ctl_ioctl(unsigned long cmd, void *arg)
{
	int fd = ensure_init();

	if (fd < 0)
		return fd;
	return ctl_ioctl_fd(fd, cmd, arg, 0);
}

static void active_enter(void)
{
	pthread_mutex_lock(&fork_lock);
	while (forks_waiting)
		pthread_cond_wait(&fork_cond, &fork_lock);
	active_calls++;
	pthread_mutex_unlock(&fork_lock);
}

static void active_leave(void)
{
	pthread_mutex_lock(&fork_lock);
	if (--active_calls == 0 && forks_waiting)
		pthread_cond_broadcast(&fork_cond);
	pthread_mutex_unlock(&fork_lock);
}

/* ---- the attachment table (callers hold table_lock) ---- */

static uint32_t next_prio(void)
{
	uint32_t x = prio_state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	prio_state = x;
	return x;
}

/* *l gets the records below key, *r those at or above it. */
static void tree_split(struct attach *t, uintptr_t key, struct attach **l,
		       struct attach **r)
{
	if (!t) {
		*l = *r = NULL;
	} else if (t->addr < key) {
		tree_split(t->right, key, &t->right, r);
		*l = t;
	} else {
		tree_split(t->left, key, l, &t->left);
		*r = t;
	}
}

/* Every key in l is below every key in r. */
static struct attach *tree_merge(struct attach *l, struct attach *r)
{
	if (!l)
		return r;
	if (!r)
		return l;
	if (l->prio > r->prio) {
		l->right = tree_merge(l->right, r);
		return l;
	}
	r->left = tree_merge(l, r->left);
	return r;
}

/* Turns a subtree into a list chained through ->right. */
static struct attach *tree_to_list(struct attach *t, struct attach *list)
{
	if (!t)
		return list;
	list = tree_to_list(t->right, list);
	t->right = list;
	list = tree_to_list(t->left, t);
	t->left = NULL;
	return list;
}

static struct attach *table_find(uintptr_t addr)
{
	struct attach *t = table_root;

	while (t && t->addr != addr)
		t = addr < t->addr ? t->left : t->right;
	return t;
}

static struct attach *table_take(uintptr_t addr)
{
	struct attach *l, *m, *r;

	if (!table_find(addr))
		return NULL;
	tree_split(table_root, addr, &l, &r);
	tree_split(r, addr + 1, &m, &r);
	table_root = tree_merge(l, r);
	if (m)
		table_count--;
	return m;
}

/*
 * Records a new mapping and returns, as a list, the records whose start
 * it now covers: their memory is gone (the program unmapped it, or
 * SHM_REMAP replaced it) and no shmdt can name them any more, so the
 * caller detaches them, as the kernel did when their mapping went.  A record
 * that begins below the new mapping and runs into it is cut short, so that its
 * shmdt unmaps only what is still its own.
 */
static struct attach *table_insert(struct attach *a)
{
	uintptr_t end = a->addr + a->len;
	struct attach *l, *m, *r, *p, *gone;
	size_t n = 0;

	if (end < a->addr)
		end = UINTPTR_MAX;
	tree_split(table_root, a->addr, &l, &r);
	tree_split(r, end, &m, &r);
	gone = tree_to_list(m, NULL);
	for (p = gone; p; p = p->right)
		n++;
	for (p = l; p && p->right; p = p->right)
		;
	if (p && p->addr + p->len > a->addr)
		p->len = a->addr - p->addr;
	a->prio = next_prio();
	a->left = a->right = NULL;
	table_root = tree_merge(tree_merge(l, a), r);
	table_count = table_count + 1 - n;
	return gone;
}

/*
 * Tells the daemon one attach of shmid ended.  Its error is not shmdt's:
 * the memory is detached either way.  EINVAL means the daemon no longer
 * counted it (the program closed our control node, which ended the
 * session); ENOTCONN, that the daemon is gone.
 */
static void detach_count(int shmid, unsigned int session, int locked)
{
	struct shmfs_detach d = { .shmid = shmid };
	int fd = atomic_load_explicit(&ctl_fd, memory_order_acquire);
	char eb[128];
	int r;

	/* an attach of an ended session is no longer counted */
	if (fd < 0 || session != atomic_load(&session_gen))
		return;
	r = ctl_ioctl_fd(fd, SHMFS_IOC_DETACH, &d, locked);
	if (r < 0)
		dbg("shmid %d: SHMFS_IOC_DETACH: %s", shmid,
		    errtext(-r, eb, sizeof(eb)));
}

static void detach_list(struct attach *list)
{
	struct attach *next;

	for (; list; list = next) {
		next = list->right;
		dbg("detaching shmid %d at %#lx: its start was mapped over",
		    list->shmid, (unsigned long)list->addr);
		detach_count(list->shmid, list->session, 0);
		free(list);
	}
}

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
 * The daemon knows no session for us: we inherited the control node from
 * a parent that had nothing attached when it forked (so sent no fork
 * request), or the program closed ours.  1: try again; -errno: give up.
 */
static int start_session(void)
{
	struct shmfs_hello h;
	int fd = atomic_load_explicit(&ctl_fd, memory_order_acquire);
	int r;

	memset(&h, 0, sizeof(h));
	r = ctl_ioctl_fd(fd, SHMFS_IOC_SESSION, &h, 0);
	if (r == 0) {
		atomic_fetch_add(&session_gen, 1);
		return 1;
	}
	r = recover(fd);
	return r == 0 ? -EPROTO : r;
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
				detach_count(shmid, session, 0);
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

/* The part of shmat that fork must not cut in two: open, map, record. */
static int attach_active(int shmid, uintptr_t addr, int fixed, int shmflg,
			 void **out)
{
	int oflags = SHMFS_ATTACH_FLAGS | O_CLOEXEC;
	int prot = PROT_READ, mflags = MAP_SHARED;
	struct attach *a, *gone;
	unsigned int a_session = 0;
	uint64_t size = 0;
	ino_t ino = 0;
	void *p;
	size_t len;
	int fd = -1, r;

	if (shmflg & SHM_RDONLY) {
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

	r = open_attach(shmid, oflags, &fd, &size, &ino, &a_session);
	if (r < 0)
		return r;
	if (size > SIZE_MAX - page_size) {
		r = -ENOMEM;
		goto out_close;
	}
	len = ((size_t)size + page_size - 1) & ~(page_size - 1);
	/* Linux refuses a fixed address whose range wraps around. */
	if (fixed && !(shmflg & SHM_REMAP) && addr + len < addr) {
		r = -EINVAL;
		goto out_close;
	}
	/* Allocate before mapping so that nothing can fail after it. */
	a = malloc(sizeof(*a));
	if (!a) {
		r = -ENOMEM;
		goto out_close;
	}
	p = mmap((void *)addr, len, prot, mflags, fd, 0);
	if (p == MAP_FAILED) {
		/* Something is mapped there: Linux says EINVAL for overlap. */
		r = errno == EEXIST ? -EINVAL : -errno;
		goto out_free;
	}
	/* A kernel before 4.17 treats MAP_FIXED_NOREPLACE as a mere hint. */
	if (fixed && (uintptr_t)p != addr) {
		munmap(p, len);
		r = -EINVAL;
		goto out_free;
	}
	/* The mapping holds the file open; the descriptor is not needed. */
	close(fd);
	a->addr = (uintptr_t)p;
	a->len = len;
	a->shmid = shmid;
	a->session = a_session;
	pthread_mutex_lock(&table_lock);
	gone = table_insert(a);
	pthread_mutex_unlock(&table_lock);
	/* Detaching is a request to the daemon: never under table_lock. */
	detach_list(gone);
	*out = p;
	return 0;

out_free:
	free(a);
out_close:
	close(fd);
	/* the open was counted as an attach */
	detach_count(shmid, a_session, 0);
	return r;
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
	pthread_mutex_lock(&table_lock);
	a = table_take(addr);
	pthread_mutex_unlock(&table_lock);
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
		pthread_mutex_lock(&table_lock);
		gone = table_insert(a);
		pthread_mutex_unlock(&table_lock);
		detach_list(gone);
		goto out;
	}
	/* The daemon counts the detach before the ioctl returns. */
	detach_count(a->shmid, a->session, 0);
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

/* ---- fork ---- */

static void atfork_prepare(void)
{
	int saved = errno;
	int fd, r;

	/* fork_lock stays locked until the parent or child handler. */
	pthread_mutex_lock(&fork_lock);
	forks_waiting++;
	while (active_calls)
		pthread_cond_wait(&fork_cond, &fork_lock);
	forks_waiting--;
	pthread_mutex_lock(&init_lock);
	fork_counted = 0;
	fd = atomic_load_explicit(&ctl_fd, memory_order_relaxed);
	if (fd >= 0 && table_count > 0) {
		memset(&fork_msg, 0, sizeof(fork_msg));
		r = ctl_ioctl_fd(fd, SHMFS_IOC_FORK, &fork_msg, 1);
		if (r == 0) {
			fork_counted = 1;
			if (fork_msg.count != table_count)
				dbg("fork: daemon counted %u attaches, we hold"
				    " %zu",
				    fork_msg.count, table_count);
		} else {
			char eb[128];

			dbg("fork: SHMFS_IOC_FORK: %s; the child's attaches"
			    " are not counted",
			    errtext(-r, eb, sizeof(eb)));
		}
	}
	fork_saved_errno = saved;
	/*
	 * fork() leaves errno alone when it succeeds: that is how the parent
	 * handler tells success from failure.
	 */
	errno = 0;
}

static void atfork_parent(void)
{
	int e = errno;
	int fd = atomic_load_explicit(&ctl_fd, memory_order_relaxed);

	if (e != 0) {
		if (fork_counted && ioctl(fd, SHMFS_IOC_FORK_ABORT, &fork_msg))
			dbg("fork: SHMFS_IOC_FORK_ABORT: errno %d", errno);
		errno = e;
	} else {
		errno = fork_saved_errno;
	}
	fork_counted = 0;
	pthread_mutex_unlock(&init_lock);
	/* Calls that waited for this fork may start. */
	pthread_cond_broadcast(&fork_cond);
	pthread_mutex_unlock(&fork_lock);
}

static void atfork_child(void)
{
	int fd = atomic_load_explicit(&ctl_fd, memory_order_relaxed);

	/*
	 * Plain mutexes may be unlocked here by the thread that locked them
	 * before fork; the condition variable may hold waiters that stayed
	 * in the parent, so it starts afresh.
	 */
	pthread_cond_init(&fork_cond, NULL);
	forks_waiting = 0;
	active_calls = 0;
	pthread_mutex_unlock(&init_lock);
	pthread_mutex_unlock(&fork_lock);
	if (fork_counted && ioctl(fd, SHMFS_IOC_FORK_CHILD, &fork_msg) < 0)
		dbg("fork: SHMFS_IOC_FORK_CHILD: errno %d", errno);
	fork_counted = 0;
	errno = fork_saved_errno;
}

/*
 * Registered at load rather than at first use: prepare handlers run in
 * reverse order of registration and parent handlers in order, so being
 * early makes ours the last to touch errno before fork and the first to
 * read it after.
 */
__attribute__((constructor)) static void shmfs_lib_init(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ---- the public calls ---- */

int shmfs_shmget(key_t key, size_t size, int shmflg)
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

void *shmfs_shmat(int shmid, const void *shmaddr, int shmflg)
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

int shmfs_shmdt(const void *shmaddr)
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

int shmfs_shmctl(int shmid, int cmd, struct shmid_ds *buf)
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
