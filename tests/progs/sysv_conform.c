/*
 * sysv_conform: a differential conformance transcript for SysV shared
 * memory.  It drives shmget/shmat/shmdt/shmctl through plain libc (so the
 * same binary runs on the kernel, or on shmfs under libshmfs-preload.so)
 * and prints only what must be identical on both: results, errno names
 * and relations ("same shmid", "lpid is me", "atime set"), never raw ids,
 * keys, pids, addresses or times.  tests/test_conform.py runs it both ways
 * and compares the transcripts; this program itself always exits 0 once it
 * has finished.
 *
 * usage: sysv_conform BASEKEY      (keys BASEKEY .. BASEKEY+NKEYS-1 are used)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NKEYS 48
#define PG 4096UL
#define OTHER_UID 1000
#define OTHER_GID 1000
#define SUPP_GID 2000 /* a supplementary group of the second user */
#define CGRP_GID 3000 /* ... and another, used as a creator's group */

static key_t base_key;
static pid_t main_pid;

/* Also used: the base with the high bit flipped, a negative key_t. */
#define KNEG ((key_t)((unsigned)base_key ^ 0x80000000u))

static key_t K(int n)
{
	return base_key + n;
}

/* ---- output: one write(2) per line, so forked children never duplicate
 * buffered text and lines from different processes never interleave. */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char b[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(b, sizeof(b) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(b) - 2)
		n = (int)sizeof(b) - 2;
	b[n++] = '\n';
	for (int off = 0; off < n;) {
		ssize_t w = write(1, b + off, (size_t)(n - off));

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		off += (int)w;
	}
}

/* say() with a call whose out-parameter the later arguments read: C leaves
 * the order of argument evaluation open, so the call must come first. */
#define SAYR(fmt, call, ...)                                                   \
	do {                                                                   \
		const char *r_ = (call);                                       \
		say(fmt, r_, __VA_ARGS__);                                     \
	} while (0)

static const char *yesno(int v)
{
	return v ? "yes" : "no";
}

static const char *ename(int e)
{
	static char buf[8][32];
	static int slot;

	switch (e) {
	case 0:
		return "ok";
	case EINVAL:
		return "errno EINVAL";
	case EACCES:
		return "errno EACCES";
	case EPERM:
		return "errno EPERM";
	case ENOENT:
		return "errno ENOENT";
	case EEXIST:
		return "errno EEXIST";
	case EFAULT:
		return "errno EFAULT";
	case ENOMEM:
		return "errno ENOMEM";
	case ENOSPC:
		return "errno ENOSPC";
	case EMFILE:
		return "errno EMFILE";
	case ENFILE:
		return "errno ENFILE";
	case EIDRM:
		return "errno EIDRM";
	case ENOSYS:
		return "errno ENOSYS";
	case EBADF:
		return "errno EBADF";
	case EIO:
		return "errno EIO";
	case ENOTCONN:
		return "errno ENOTCONN";
	case EBUSY:
		return "errno EBUSY";
	case EAGAIN:
		return "errno EAGAIN";
	case EOVERFLOW:
		return "errno EOVERFLOW";
	case EFBIG:
		return "errno EFBIG";
	case ENODEV:
		return "errno ENODEV";
	case ENXIO:
		return "errno ENXIO";
	case ENOTSUP:
		return "errno ENOTSUP";
	case E2BIG:
		return "errno E2BIG";
	}
	slot = (slot + 1) % 8;
	snprintf(buf[slot], sizeof(buf[slot]), "errno %d", e);
	return buf[slot];
}

/* ---- bookkeeping of what we created, so that every exit path removes it */

static int tracked[4096];
static int ntracked;

static void track(int id)
{
	if (id < 0 || getpid() != main_pid)
		return;
	for (int i = 0; i < ntracked; i++)
		if (tracked[i] == id)
			return;
	if (ntracked < (int)(sizeof(tracked) / sizeof(tracked[0])))
		tracked[ntracked++] = id;
}

static void cleanup(void)
{
	if (getpid() != main_pid)
		return;
	for (int i = 0; i < ntracked; i++)
		shmctl(tracked[i], IPC_RMID, NULL);
	ntracked = 0;
	for (int n = 0; n <= NKEYS; n++)
		for (int j = 0; j < 8; j++) {
			int id = shmget(n < NKEYS ? K(n) : KNEG, 0, 0);

			if (id < 0 || shmctl(id, IPC_RMID, NULL) < 0)
				break;
		}
}

static void on_fatal(int sig)
{
	static const char m[] =
	    "sysv_conform: killed by a signal (watchdog?)\n";

	if (write(2, m, sizeof(m) - 1) < 0) {
		/* nothing to do */
	}
	cleanup();
	_exit(128 + sig);
}

/* ---- the calls, each returning "ok" or "errno NAME" captured at once */

static const char *get(int *out, key_t k, size_t size, int flg)
{
	int id = shmget(k, size, flg);
	int e = errno;

	if (out)
		*out = id;
	if (id >= 0) {
		track(id);
		return "ok";
	}
	return ename(e);
}

static const char *at(char **out, int id, const void *addr, int flg)
{
	void *p = shmat(id, addr, flg);
	int e = errno;

	if (out)
		*out = p == (void *)-1 ? NULL : p;
	return p == (void *)-1 ? ename(e) : "ok";
}

static const char *dt(const void *addr)
{
	int r = shmdt(addr);

	return r < 0 ? ename(errno) : "ok";
}

static const char *ctl(int id, int cmd, void *buf)
{
	int r = shmctl(id, cmd, (struct shmid_ds *)buf);

	return r < 0 ? ename(errno) : "ok";
}

static const char *ctlv(int *ret, int id, int cmd, void *buf)
{
	int r = shmctl(id, cmd, (struct shmid_ds *)buf);
	int e = errno;

	*ret = r;
	return r < 0 ? ename(e) : "ok";
}

static const char *sys(int r)
{
	return r < 0 ? ename(errno) : "ok";
}

static void rm(int id)
{
	shmctl(id, IPC_RMID, NULL);
}

/* ---- relations */

static struct {
	pid_t pid;
	const char *name;
} named[64];
static int nnamed;

static void name_pid(pid_t p, const char *name)
{
	for (int i = 0; i < nnamed; i++)
		if (named[i].pid == p) {
			named[i].name = name;
			return;
		}
	if (nnamed < 64) {
		named[nnamed].pid = p;
		named[nnamed++].name = name;
	}
}

static const char *pid_rel(pid_t p)
{
	if (p == 0)
		return "0";
	if (p == getpid())
		return "me";
	for (int i = 0; i < nnamed; i++)
		if (named[i].pid == p)
			return named[i].name;
	return "other";
}

static const char *uid_rel(uid_t u)
{
	static char buf[4][24];
	static int slot;

	if (u == geteuid())
		return "me";
	slot = (slot + 1) % 4;
	snprintf(buf[slot], sizeof(buf[slot]), "%u", (unsigned)u);
	return buf[slot];
}

static const char *gid_rel(gid_t g)
{
	static char buf[4][24];
	static int slot;

	if (g == getegid())
		return "mine";
	slot = (slot + 1) % 4;
	snprintf(buf[slot], sizeof(buf[slot]), "%u", (unsigned)g);
	return buf[slot];
}

static const char *key_rel(key_t have, key_t want)
{
	if (have == IPC_PRIVATE)
		return "private";
	return have == want ? "matches" : "other";
}

/* One IPC_STAT, printed as relations.  want_key: the key it was made with. */
static int st(const char *what, int id, key_t want_key, struct shmid_ds *out)
{
	struct shmid_ds ds;

	memset(&ds, 0, sizeof(ds));
	if (shmctl(id, IPC_STAT, &ds) < 0) {
		say("%s: IPC_STAT %s", what, ename(errno));
		return -1;
	}
	say("%s: key %s uid %s gid %s cuid %s cgid %s mode %04o segsz %zu "
	    "cpid %s lpid %s nattch %lu atime %s dtime %s ctime %s",
	    what, key_rel(ds.shm_perm.__key, want_key),
	    uid_rel(ds.shm_perm.uid), gid_rel(ds.shm_perm.gid),
	    uid_rel(ds.shm_perm.cuid), gid_rel(ds.shm_perm.cgid),
	    (unsigned)ds.shm_perm.mode, (size_t)ds.shm_segsz,
	    pid_rel(ds.shm_cpid), pid_rel(ds.shm_lpid),
	    (unsigned long)ds.shm_nattch, ds.shm_atime ? "set" : "0",
	    ds.shm_dtime ? "set" : "0", ds.shm_ctime ? "set" : "0");
	if (out)
		*out = ds;
	return 0;
}

static long nattch(int id)
{
	struct shmid_ds ds;

	if (shmctl(id, IPC_STAT, &ds) < 0)
		return -errno;
	return (long)ds.shm_nattch;
}

/* nattch as text, or the IPC_STAT error */
static const char *natt(int id)
{
	static char buf[4][32];
	static int slot;
	long n = nattch(id);

	if (n < 0)
		return ename((int)-n);
	slot = (slot + 1) % 4;
	snprintf(buf[slot], sizeof(buf[slot]), "%ld", n);
	return buf[slot];
}

static void say_nattch(const char *what, int id)
{
	long n = nattch(id);

	if (n < 0)
		say("%s: IPC_STAT %s", what, ename((int)-n));
	else
		say("%s: nattch %ld", what, n);
}

static struct shmid_ds stat_quiet(int id)
{
	struct shmid_ds ds;

	memset(&ds, 0, sizeof(ds));
	shmctl(id, IPC_STAT, &ds);
	return ds;
}

/* ---- memory probes: does touching p fault?  sigsetjmp, so that it also
 * works under AddressSanitizer, which would turn a child's crash into a
 * report instead of a signal. */

static sigjmp_buf probe_env;
static volatile sig_atomic_t probe_sig;

static void probe_handler(int sig)
{
	probe_sig = sig;
	siglongjmp(probe_env, 1);
}

static const char *probe(volatile char *p, int store)
{
	struct sigaction sa, old_segv, old_bus;
	const char *res;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = probe_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old_segv);
	sigaction(SIGBUS, &sa, &old_bus);
	probe_sig = 0;
	if (sigsetjmp(probe_env, 1) == 0) {
		if (store)
			*p = 0x5a;
		else
			(void)*p;
		res = "ok";
	} else {
		res = probe_sig == SIGSEGV  ? "SIGSEGV"
		      : probe_sig == SIGBUS ? "SIGBUS"
					    : "signal";
	}
	sigaction(SIGSEGV, &old_segv, NULL);
	sigaction(SIGBUS, &old_bus, NULL);
	return res;
}

/* The VMA of /proc/self/maps that holds addr. */
static int map_of(const void *addr, char perms[5], uintptr_t *start,
		  size_t *len)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[1024];
	int found = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		char p[5];

		if (sscanf(line, "%lx-%lx %4s", &s, &e, p) != 3)
			continue;
		if (s <= (uintptr_t)addr && (uintptr_t)addr < e) {
			memcpy(perms, p, 5);
			*start = s;
			*len = e - s;
			found = 1;
			break;
		}
	}
	fclose(f);
	return found;
}

static void say_map(const char *what, const void *addr)
{
	char perms[5];
	uintptr_t start;
	size_t len;

	if (!map_of(addr, perms, &start, &len)) {
		say("%s: no mapping", what);
		return;
	}
	say("%s: maps perms %s, starts at the address: %s, length %zu", what,
	    perms, yesno(start == (uintptr_t)addr), len);
}

/* An address range nobody has mapped: we reserve it and give it back, and
 * use its low end (new mappings are placed top-down, at the high end). */
static char *free_area(void)
{
	size_t len = 256 * PG;
	void *p =
	    mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	munmap(p, len);
	return (char *)p + PG;
}

static void next_second(time_t after)
{
	while (time(NULL) <= after)
		usleep(20000);
}

static const char *wstatus(int status)
{
	static char buf[48];

	if (WIFEXITED(status))
		snprintf(buf, sizeof(buf), "exited %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, sizeof(buf), "killed by %s",
			 WTERMSIG(status) == SIGKILL   ? "SIGKILL"
			 : WTERMSIG(status) == SIGSEGV ? "SIGSEGV"
						       : "a signal");
	else
		snprintf(buf, sizeof(buf), "status %#x", status);
	return buf;
}

static int reap(pid_t pid)
{
	int status = 0;

	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

static int all_bytes(const char *p, size_t n, char v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return 0;
	return 1;
}

/* ======================================================================== */

static void sec_shmget(void)
{
	int p1, p2, p3, p4, a, b, r;
	struct shmid_ds ds;
	char *m;

	say("== shmget");
	say("IPC_PRIVATE, IPC_CREAT|0600, 4096: %s",
	    get(&p1, IPC_PRIVATE, 4096, IPC_CREAT | 0600));
	SAYR("again: %s, a new shmid: %s",
	     get(&p2, IPC_PRIVATE, 4096, IPC_CREAT | 0600), yesno(p2 != p1));
	SAYR("IPC_PRIVATE without IPC_CREAT: %s, a new shmid: %s",
	     get(&p3, IPC_PRIVATE, 4096, 0600), yesno(p3 != p1 && p3 != p2));
	SAYR("IPC_PRIVATE with IPC_CREAT|IPC_EXCL: %s, a new shmid: %s",
	     get(&p4, IPC_PRIVATE, 4096, IPC_CREAT | IPC_EXCL | 0600),
	     yesno(p4 != p1 && p4 != p2 && p4 != p3));
	say("shmids are >= 0: %s",
	    yesno(p1 >= 0 && p2 >= 0 && p3 >= 0 && p4 >= 0));
	st("IPC_PRIVATE segment", p1, IPC_PRIVATE, NULL);
	st("IPC_PRIVATE without IPC_CREAT", p3, IPC_PRIVATE, NULL);
	say("IPC_PRIVATE size 0: %s",
	    get(NULL, IPC_PRIVATE, 0, IPC_CREAT | 0600));
	say("IPC_PRIVATE size SIZE_MAX: %s",
	    get(NULL, IPC_PRIVATE, SIZE_MAX, IPC_CREAT | 0600));
	rm(p1), rm(p2), rm(p3), rm(p4);

	say("-- a key");
	say("absent key, no IPC_CREAT: %s", get(NULL, K(0), 4096, 0600));
	say("absent key, size 0, no IPC_CREAT: %s", get(NULL, K(0), 0, 0));
	say("absent key, size 0, IPC_CREAT: %s",
	    get(NULL, K(0), 0, IPC_CREAT | 0600));
	say("absent key, size SIZE_MAX, IPC_CREAT: %s",
	    get(NULL, K(0), SIZE_MAX, IPC_CREAT | 0600));
	say("absent key, IPC_EXCL without IPC_CREAT: %s",
	    get(NULL, K(0), 4096, IPC_EXCL | 0600));
	say("create 8192 IPC_CREAT|0640: %s",
	    get(&a, K(0), 8192, IPC_CREAT | 0640));
	SAYR("same call again: %s, same shmid: %s",
	     get(&b, K(0), 8192, IPC_CREAT | 0640), yesno(a == b));
	SAYR("size 0, flags 0: %s, same shmid: %s", get(&b, K(0), 0, 0),
	     yesno(a == b));
	SAYR("smaller size 4096: %s, same shmid: %s", get(&b, K(0), 4096, 0),
	     yesno(a == b));
	say("size 8193 (larger): %s", get(NULL, K(0), 8193, 0));
	say("size 8193, IPC_CREAT: %s",
	    get(NULL, K(0), 8193, IPC_CREAT | 0640));
	say("size 8193, IPC_CREAT|IPC_EXCL: %s",
	    get(NULL, K(0), 8193, IPC_CREAT | IPC_EXCL | 0640));
	say("size 4096, IPC_CREAT|IPC_EXCL: %s",
	    get(NULL, K(0), 4096, IPC_CREAT | IPC_EXCL | 0600));
	SAYR("size 4096, IPC_EXCL only: %s, same shmid: %s",
	     get(&b, K(0), 4096, IPC_EXCL | 0600), yesno(a == b));
	SAYR("other mode bits asked (0777): %s, same shmid: %s",
	     get(&b, K(0), 0, 0777), yesno(a == b));
	st("created 8192 0640", a, K(0), NULL);
	r = 0;
	if (!strcmp(at(&m, a, NULL, 0), "ok")) {
		r = all_bytes(m, 8192, 0);
		shmdt(m);
	}
	say("new segment reads as zeros: %s", yesno(r));
	rm(a);
	say("after IPC_RMID (nothing attached), by key: %s",
	    get(NULL, K(0), 0, 0));
	say("by the old shmid: IPC_STAT %s", ctl(a, IPC_STAT, &ds));
	SAYR("re-create: %s, a new shmid: %s",
	     get(&b, K(0), 4096, IPC_CREAT | 0600), yesno(a != b));
	rm(b);

	say("-- a key with the high bit set (negative key_t)");
	say("create: %s", get(&a, KNEG, 4096, IPC_CREAT | 0600));
	st("negative key", a, KNEG, NULL);
	SAYR("by key: %s, same shmid: %s", get(&b, KNEG, 0, 0), yesno(a == b));
	say("IPC_CREAT|IPC_EXCL: %s",
	    get(NULL, KNEG, 4096, IPC_CREAT | IPC_EXCL | 0600));
	say("IPC_RMID: %s", ctl(a, IPC_RMID, NULL));
	say("then by key: %s", get(NULL, KNEG, 0, 0));

	say("-- sizes and modes");
	say("size 4097: %s", get(&a, K(1), 4097, IPC_CREAT | 0600));
	st("size 4097", a, K(1), NULL);
	say("size 1: %s", get(&b, IPC_PRIVATE, 1, IPC_CREAT | 0600));
	st("size 1", b, IPC_PRIVATE, NULL);
	rm(a), rm(b);
	say("mode 0777|SHM_NORESERVE: %s",
	    get(&a, K(2), 4096, IPC_CREAT | SHM_NORESERVE | 0777));
	st("mode 0777", a, K(2), NULL);
	say("mode 0: %s", get(&b, K(3), 4096, IPC_CREAT));
	st("mode 0", b, K(3), NULL);
	say("mode 0: get by key as root: %s", get(&r, K(3), 0, 0600));
	say("mode 0: attach as root: %s", at(&m, b, NULL, 0));
	if (m)
		shmdt(m);
	rm(a), rm(b);
}

static void sec_times(void)
{
	int id;
	struct shmid_ds ds, ds2;
	time_t t0, t1, c0;
	char *a, *b;

	say("== IPC_STAT fields and times");
	t0 = time(NULL);
	say("create 4097 0640: %s", get(&id, K(4), 4097, IPC_CREAT | 0640));
	t1 = time(NULL);
	ds = stat_quiet(id);
	say("__key matches: %s", yesno(ds.shm_perm.__key == K(4)));
	say("uid is my euid: %s, gid is my egid: %s",
	    yesno(ds.shm_perm.uid == geteuid()),
	    yesno(ds.shm_perm.gid == getegid()));
	say("cuid is my euid: %s, cgid is my egid: %s",
	    yesno(ds.shm_perm.cuid == geteuid()),
	    yesno(ds.shm_perm.cgid == getegid()));
	say("mode %04o, segsz %zu, nattch %lu", (unsigned)ds.shm_perm.mode,
	    (size_t)ds.shm_segsz, (unsigned long)ds.shm_nattch);
	say("cpid is me: %s, lpid is 0: %s", yesno(ds.shm_cpid == getpid()),
	    yesno(ds.shm_lpid == 0));
	say("atime == 0: %s, dtime == 0: %s", yesno(ds.shm_atime == 0),
	    yesno(ds.shm_dtime == 0));
	say("ctime set at create (within the call): %s",
	    yesno(ds.shm_ctime >= t0 - 1 && ds.shm_ctime <= t1 + 1));
	c0 = ds.shm_ctime;

	next_second(c0 > t1 ? c0 : t1);
	t0 = time(NULL);
	say("attach: %s", at(&a, id, NULL, 0));
	t1 = time(NULL);
	ds = stat_quiet(id);
	say("after attach: nattch %lu, lpid is me: %s, atime set: %s, atime in "
	    "the call: %s, "
	    "dtime == 0: %s, ctime unchanged: %s",
	    (unsigned long)ds.shm_nattch, yesno(ds.shm_lpid == getpid()),
	    yesno(ds.shm_atime != 0),
	    yesno(ds.shm_atime >= t0 - 1 && ds.shm_atime <= t1 + 1),
	    yesno(ds.shm_dtime == 0), yesno(ds.shm_ctime == c0));
	say("atime later than ctime: %s", yesno(ds.shm_atime > ds.shm_ctime));
	say("detach: %s", dt(a));
	ds2 = stat_quiet(id);
	say("after detach: nattch %lu, lpid is me: %s, dtime set: %s, dtime >= "
	    "atime: %s, "
	    "atime unchanged: %s, ctime unchanged: %s",
	    (unsigned long)ds2.shm_nattch, yesno(ds2.shm_lpid == getpid()),
	    yesno(ds2.shm_dtime != 0), yesno(ds2.shm_dtime >= ds2.shm_atime),
	    yesno(ds2.shm_atime == ds.shm_atime), yesno(ds2.shm_ctime == c0));
	say("attach again: %s", at(&b, id, NULL, 0));
	say("SHM_LOCK: %s", ctl(id, SHM_LOCK, NULL));
	say("SHM_UNLOCK: %s", ctl(id, SHM_UNLOCK, NULL));
	say("IPC_RMID while attached: %s", ctl(id, IPC_RMID, NULL));
	ds = stat_quiet(id);
	say("ctime unchanged by attach, detach, lock, unlock and IPC_RMID: %s",
	    yesno(ds.shm_ctime == c0));
	t0 = time(NULL);
	say("IPC_SET (same values) on the removed segment: %s",
	    ctl(id, IPC_SET, &ds));
	t1 = time(NULL);
	ds2 = stat_quiet(id);
	say("IPC_SET changed ctime: %s, to now: %s", yesno(ds2.shm_ctime != c0),
	    yesno(ds2.shm_ctime >= t0 - 1 && ds2.shm_ctime <= t1 + 1));
	say("mode after IPC_SET keeps SHM_DEST: %04o",
	    (unsigned)ds2.shm_perm.mode);
	say("IPC_STAT does not change ctime/atime/dtime: %s",
	    yesno(stat_quiet(id).shm_ctime == ds2.shm_ctime &&
		  stat_quiet(id).shm_atime == ds2.shm_atime &&
		  stat_quiet(id).shm_dtime == ds2.shm_dtime));
	say("detach the last attachment: %s", dt(b));
	say("then IPC_STAT: %s", ctl(id, IPC_STAT, &ds));
}

static void sec_shmat(void)
{
	int id, dead, r;
	char *a, *b, *c, *f, *m, *ro;

	say("== shmat");
	say("create 3 pages: %s", get(&id, K(5), 3 * PG, IPC_CREAT | 0600));
	say("NULL address: %s", at(&a, id, NULL, 0));
	if (!a) {
		say("cannot go on without an attachment");
		rm(id);
		return;
	}
	say("page aligned (SHMLBA): %s", yesno((uintptr_t)a % SHMLBA == 0));
	say_map("NULL address", a);
	a[0] = 'x';
	a[3 * PG - 1] = 'y';
	say("second attach: %s", at(&b, id, NULL, 0));
	if (b) {
		say("different address: %s, sees the first one's data: %s",
		    yesno(b != a), yesno(b[0] == 'x' && b[3 * PG - 1] == 'y'));
		b[5] = 'z';
		say("a store through the second is seen through the first: %s",
		    yesno(a[5] == 'z'));
		say_nattch("two attachments", id);
		say("detach the second: %s", dt(b));
	}

	f = free_area();
	SAYR("given page-aligned address: %s, at that address: %s",
	     at(&c, id, f, 0), yesno(c == f));
	if (c) {
		say("sees the data: %s", yesno(c[0] == 'x'));
		say_map("given address", c);
		say("detach: %s", dt(c));
	}
	say("unaligned address without SHM_RND: %s", at(&c, id, f + 123, 0));
	SAYR("unaligned address with SHM_RND: %s, rounded down to SHMLBA: %s",
	     at(&c, id, f + PG + 123, SHM_RND), yesno(c == f + PG));
	if (c)
		say("detach: %s", dt(c));
	{
		/* Rounded down to NULL, the address is still taken as given
		 * (MAP_FIXED at 0): root may map there, others may not
		 * (mmap_min_addr).  Not the same as a NULL shmaddr. */
		void *p = shmat(id, (void *)1, SHM_RND);
		int e = errno;

		say("address 1 with SHM_RND (rounds to NULL): %s, mapped at "
		    "NULL: %s",
		    p == (void *)-1 ? ename(e) : "ok", yesno(p == NULL));
		if (p != (void *)-1) {
			/* read page 0 through the kernel: a load of NULL is UB
			 */
			int pp[2];
			char ch = 0;

			if (pipe(pp) == 0) {
				if (write(pp[1], p, 1) != 1 ||
				    read(pp[0], &ch, 1) != 1)
					ch = 0;
				close(pp[0]);
				close(pp[1]);
			}
			say("reads the data: %s", yesno(ch == 'x'));
			say("detach: %s", dt(p));
		}
		p = shmat(id, (void *)PG, 0);
		e = errno;
		say("address 4096 (the page above NULL): %s, at that address: "
		    "%s",
		    p == (void *)-1 ? ename(e) : "ok", yesno(p == (void *)PG));
		if (p != (void *)-1)
			say("detach: %s", dt(p));
	}
	say("address 1 with SHM_RND|SHM_REMAP: %s",
	    at(&c, id, (void *)1, SHM_RND | SHM_REMAP));
	say("NULL address with SHM_REMAP: %s", at(&c, id, NULL, SHM_REMAP));
	say("address above the user address space: %s",
	    at(&c, id, (void *)0x800000000000UL, 0));

	say("-- SHM_REMAP and overlaps");
	m = mmap(f, 4 * PG, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (m == MAP_FAILED) {
		say("mmap failed");
	} else {
		memset(m, 0xaa, 4 * PG);
		say("over an anonymous mapping without SHM_REMAP: %s",
		    at(&c, id, m, 0));
		SAYR("over an anonymous mapping with SHM_REMAP: %s, at that "
		     "address: %s",
		     at(&c, id, m, SHM_REMAP), yesno(c == m));
		if (c) {
			say("sees the segment, not the old bytes: %s",
			    yesno(c[0] == 'x' && c[3 * PG - 1] == 'y'));
			say("the page past it is still the old mapping: %s",
			    yesno(all_bytes(m + 3 * PG, PG, (char)0xaa)));
			say_map("remapped", c);
			say("detach: %s", dt(c));
			say("the remapped range faults after detach: %s",
			    probe(m, 0));
			say("the page past it survives: %s",
			    yesno(all_bytes(m + 3 * PG, PG, (char)0xaa)));
		}
		munmap(m, 4 * PG);
	}
	m = mmap(f, 4 * PG, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (m != MAP_FAILED) {
		munmap(m, 3 * PG); /* leaves one page at m + 3 pages */
		say("overlapping the last page of a mapping, no SHM_REMAP: %s",
		    at(&c, id, m + PG, 0));
		SAYR("fitting exactly below it: %s, at that address: %s",
		     at(&c, id, m, 0), yesno(c == m));
		if (c)
			say("detach: %s", dt(c));
		munmap(m + 3 * PG, PG);
	}
	say("onto an existing attachment, no SHM_REMAP: %s", at(&c, id, a, 0));
	say("overlapping an existing attachment, no SHM_REMAP: %s",
	    at(&c, id, a + PG, 0));
	say_nattch("after the failed attaches", id);
	{
		int other;
		char *x, *y;

		get(&other, IPC_PRIVATE, 3 * PG, IPC_CREAT | 0600);
		say("attach another segment at a given address: %s",
		    at(&x, other, f, 0));
		if (x) {
			x[0] = 'o';
			say_nattch("the other segment", other);
			SAYR("SHM_REMAP of this segment over it: %s, at that "
			     "address: %s",
			     at(&y, id, f, SHM_REMAP), yesno(y == f));
			if (y)
				say("sees this segment: %s",
				    yesno(y[0] == 'x'));
			say_nattch("the other segment, replaced", other);
			say_nattch("this segment", id);
			say("shmdt at the address: %s", dt(f));
			say_nattch("the other segment", other);
			say_nattch("this segment", id);
			say("shmdt at the address again: %s", dt(f));
			say_nattch("the other segment", other);
		}
		rm(other);
	}
	{
		char *x, *g = f + 64 * PG;
		void *moved;

		say("-- mremap of an attachment");
		say("attach: %s", at(&x, id, NULL, 0));
		if (x) {
			moved = mremap(x, 3 * PG, 3 * PG,
				       MREMAP_MAYMOVE | MREMAP_FIXED, g);
			say("mremap to another address: %s, sees the data "
			    "there: %s",
			    moved == MAP_FAILED ? ename(errno) : "ok",
			    yesno(moved == g && g[0] == 'x'));
			say("the old address faults: %s", probe(x, 0));
			say_nattch("after the move", id);
			say("shmdt at the old address: %s", dt(x));
			say_nattch("then", id);
			say("shmdt at the new address: %s", dt(g));
			say_nattch("then", id);
			if (moved != MAP_FAILED && !strcmp(probe(g, 0), "ok"))
				munmap(g, 3 * PG);
		}
	}

	say("-- SHM_RDONLY and SHM_EXEC");
	say("SHM_RDONLY: %s", at(&ro, id, NULL, SHM_RDONLY));
	if (ro) {
		say("reads the data: %s",
		    yesno(ro[0] == 'x' && ro[3 * PG - 1] == 'y'));
		say_map("SHM_RDONLY", ro);
		say("load: %s", probe(ro + 10, 0));
		say("store: %s", probe(ro + 10, 1));
		say("mprotect PROT_READ|PROT_WRITE: %s",
		    sys(mprotect(ro, PG, PROT_READ | PROT_WRITE)));
		say("mprotect PROT_READ (whole): %s",
		    sys(mprotect(ro, 3 * PG, PROT_READ)));
		a[7] = 'w';
		say("a store through a writable attachment is seen: %s",
		    yesno(ro[7] == 'w'));
		say("detach: %s", dt(ro));
	}
	say("SHM_EXEC: %s", at(&c, id, NULL, SHM_EXEC));
	if (c) {
		say_map("SHM_EXEC", c);
		say("detach: %s", dt(c));
	}
	say("SHM_RDONLY|SHM_EXEC: %s", at(&c, id, NULL, SHM_RDONLY | SHM_EXEC));
	if (c) {
		say_map("SHM_RDONLY|SHM_EXEC", c);
		say("store: %s", probe(c + 10, 1));
		say("detach: %s", dt(c));
	}
	say("mprotect PROT_READ|PROT_WRITE|PROT_EXEC on a plain attachment: %s",
	    sys(mprotect(a, 3 * PG, PROT_READ | PROT_WRITE | PROT_EXEC)));
	say("mprotect back to PROT_READ|PROT_WRITE: %s",
	    sys(mprotect(a, 3 * PG, PROT_READ | PROT_WRITE)));
	say_map("plain after mprotect", a);

	say("-- bad shmids");
	say("shmid -1: %s", at(&c, -1, NULL, 0));
	say("shmid with another sequence number (+32768): %s",
	    at(&c, id + 32768, NULL, 0));
	say("shmid INT_MAX: %s", at(&c, INT_MAX, NULL, 0));
	get(&dead, IPC_PRIVATE, 4096, IPC_CREAT | 0600);
	rm(dead);
	say("removed (freed) shmid: %s", at(&c, dead, NULL, 0));
	say_nattch("only the first attachment left", id);
	say("detach it: %s", dt(a));
	say_nattch("none left", id);

	say("-- many attachments of one segment");
	{
		enum { MANY = 1100 };
		static char *v[MANY];
		struct rlimit old, lim;
		int ok = 0, first_err = 0;

		/* A program under the usual "ulimit -n 1024" attaches more
		 * times than it could open files. */
		getrlimit(RLIMIT_NOFILE, &old);
		lim = old;
		lim.rlim_cur = 1024;
		if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < 1024)
			lim.rlim_cur = lim.rlim_max;
		setrlimit(RLIMIT_NOFILE, &lim);
		for (int i = 0; i < MANY; i++) {
			void *p = shmat(id, NULL, 0);

			if (p == (void *)-1) {
				if (!first_err)
					first_err = errno;
				v[i] = NULL;
			} else {
				v[i] = p;
				ok++;
			}
		}
		say("%d attaches with RLIMIT_NOFILE 1024: %d ok, first error "
		    "%s",
		    MANY, ok, first_err ? ename(first_err) : "none");
		say_nattch("all attached", id);
		r = 0;
		for (int i = 0; i < MANY; i++)
			if (v[i] && shmdt(v[i]) < 0)
				r++;
		say("detach them all: %d failed", r);
		say_nattch("all detached", id);
		setrlimit(RLIMIT_NOFILE, &old);
	}
	{
		/* IPC_INFO's shmseg is only reported by Linux, not enforced */
		struct shminfo si;
		struct rlimit old, lim;
		char **v;
		int n, ok = 0, first_err = 0, r = 0;

		memset(&si, 0, sizeof(si));
		shmctl(0, IPC_INFO, (struct shmid_ds *)&si);
		n = si.shmseg < 8192 ? (int)si.shmseg + 1 : 8193;
		v = calloc((size_t)n, sizeof(*v));
		getrlimit(RLIMIT_NOFILE, &old);
		lim = old;
		lim.rlim_cur = lim.rlim_max;
		setrlimit(RLIMIT_NOFILE, &lim);
		for (int i = 0; v && i < n; i++) {
			void *p = shmat(id, NULL, 0);

			if (p == (void *)-1) {
				if (!first_err)
					first_err = errno;
			} else {
				v[i] = p;
				ok++;
			}
		}
		say("shmseg+1 (or 8193) attaches, RLIMIT_NOFILE at its hard "
		    "limit: "
		    "all ok: %s, first error %s",
		    yesno(ok == n), first_err ? ename(first_err) : "none");
		for (int i = 0; v && i < n; i++)
			if (v[i] && shmdt(v[i]) < 0)
				r++;
		say("detach them all: %d failed", r);
		say_nattch("all detached", id);
		free(v);
		setrlimit(RLIMIT_NOFILE, &old);
	}
	rm(id);
}

static void sec_shmdt(void)
{
	int id;
	char *a, *m;

	say("== shmdt");
	say("create 3 pages: %s", get(&id, K(6), 3 * PG, IPC_CREAT | 0600));
	/*
	 * On Linux shm_nattch counts mappings (VMAs): splitting an attachment
	 * with mprotect or a partial munmap changes nattch on the kernel while
	 * the attachment is split.  So nattch is only printed after shmdt.
	 */
	say("attach: %s", at(&a, id, NULL, 0));
	if (a) {
		say("mprotect the middle page PROT_READ: %s",
		    sys(mprotect(a + PG, PG, PROT_READ)));
		say("shmdt of the split attachment: %s", dt(a));
		say("pages fault: %s %s %s", probe(a, 0), probe(a + PG, 0),
		    probe(a + 2 * PG, 0));
		say_nattch("after detach", id);
	}
	say("attach: %s", at(&a, id, NULL, 0));
	if (a) {
		say("munmap the middle page: %s", sys(munmap(a + PG, PG)));
		say("shmdt: %s", dt(a));
		say("pages fault: %s %s", probe(a, 0), probe(a + 2 * PG, 0));
		say_nattch("after detach", id);
	}
	say("attach: %s", at(&a, id, NULL, 0));
	if (a) {
		say("munmap the last page: %s", sys(munmap(a + 2 * PG, PG)));
		say("shmdt: %s", dt(a));
		say("pages fault: %s %s", probe(a, 0), probe(a + PG, 0));
		say_nattch("after detach", id);
	}
	say("attach: %s", at(&a, id, NULL, 0));
	if (a) {
		say("munmap the first page: %s", sys(munmap(a, PG)));
		say("shmdt at the (now unmapped) start: %s", dt(a));
		say("pages fault: %s %s", probe(a + PG, 0),
		    probe(a + 2 * PG, 0));
		say_nattch("after detach", id);
		if (!strcmp(probe(a + PG, 0), "ok"))
			munmap(a + PG, 2 * PG);
	}
	say("attach: %s", at(&a, id, NULL, 0));
	if (a) {
		say("shmdt of the second page: %s", dt(a + PG));
		say("shmdt of an unaligned address: %s", dt(a + 1));
		say_nattch("still attached", id);
		a[0] = 'q';
		say("shmdt: %s", dt(a));
		say("load after detach: %s", probe(a, 0));
		say("store after detach: %s", probe(a, 1));
		say("second shmdt: %s", dt(a));
		say_nattch("after detach", id);
	}
	say("shmdt(NULL): %s", dt(NULL));
	m = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		 -1, 0);
	if (m != MAP_FAILED) {
		say("shmdt of a shared anonymous mmap: %s", dt(m));
		say("it is still mapped: %s", probe(m, 1));
		munmap(m, PG);
	}
	say("attach: %s", at(&a, id, NULL, 0));
	if (a) {
		say_nattch("attached", id);
		say("munmap of the whole attachment (no shmdt): %s",
		    sys(munmap(a, 3 * PG)));
		say_nattch("after munmap", id);
		say("then shmdt: %s", dt(a));
	}
	rm(id);
}

static void sec_ipcset(void)
{
	int id;
	struct shmid_ds ds;

	say("== IPC_SET");
	say("create 0600: %s", get(&id, K(7), 4096, IPC_CREAT | 0600));
	ds = stat_quiet(id);
	ds.shm_perm.uid = OTHER_UID;
	ds.shm_perm.gid = OTHER_GID;
	ds.shm_perm.mode = 0640;
	say("IPC_SET uid 1000 gid 1000 mode 0640: %s", ctl(id, IPC_SET, &ds));
	st("after", id, K(7), NULL);
	ds = stat_quiet(id);
	ds.shm_perm.uid = geteuid();
	ds.shm_perm.gid = getegid();
	ds.shm_perm.mode = 07777;
	say("IPC_SET mode 07777 (uid, gid back): %s", ctl(id, IPC_SET, &ds));
	st("after", id, K(7), NULL);
	ds.shm_perm.mode = SHM_DEST | SHM_LOCKED | 0604;
	say("IPC_SET mode SHM_DEST|SHM_LOCKED|0604: %s", ctl(id, IPC_SET, &ds));
	st("after", id, K(7), NULL);
	ds.shm_perm.mode = 0;
	say("IPC_SET mode 0: %s", ctl(id, IPC_SET, &ds));
	st("after", id, K(7), NULL);
	ds = stat_quiet(id);
	ds.shm_perm.mode = 0600;
	ds.shm_perm.cuid = OTHER_UID;
	ds.shm_perm.cgid = OTHER_GID;
	ds.shm_perm.__key = K(8);
	ds.shm_segsz = 1;
	ds.shm_cpid = 1;
	ds.shm_lpid = 1;
	ds.shm_nattch = 7;
	ds.shm_atime = 1;
	ds.shm_dtime = 1;
	say("IPC_SET with other fields changed too: %s", ctl(id, IPC_SET, &ds));
	st("only uid/gid/mode taken", id, K(7), NULL);
	ds = stat_quiet(id);
	ds.shm_perm.uid = (uid_t)-1;
	say("IPC_SET uid -1: %s", ctl(id, IPC_SET, &ds));
	ds = stat_quiet(id);
	ds.shm_perm.gid = (gid_t)-1;
	say("IPC_SET gid -1: %s", ctl(id, IPC_SET, &ds));
	st("unchanged", id, K(7), NULL);
	say("IPC_SET NULL buf: %s", ctl(id, IPC_SET, NULL));
	ds = stat_quiet(id);
	say("IPC_SET shmid -1: %s", ctl(-1, IPC_SET, &ds));
	say("IPC_SET stale shmid: %s", ctl(id + 32768, IPC_SET, &ds));
	say("SHM_LOCK: %s", ctl(id, SHM_LOCK, NULL));
	ds.shm_perm.mode = 0644;
	say("IPC_SET mode 0644 on a locked segment: %s", ctl(id, IPC_SET, &ds));
	st("keeps SHM_LOCKED", id, K(7), NULL);
	say("SHM_UNLOCK: %s", ctl(id, SHM_UNLOCK, NULL));
	st("unlocked", id, K(7), NULL);
	rm(id);
}

static void sec_rmid(void)
{
	int id, id2, id3;
	char *a, *b, *c;
	struct shmid_ds ds;

	say("== IPC_RMID");
	say("create 8192 0600: %s", get(&id, K(9), 8192, IPC_CREAT | 0600));
	say("attach: %s", at(&a, id, NULL, 0));
	if (!a) {
		rm(id);
		return;
	}
	memset(a, 'D', 8192);
	say("IPC_RMID while attached: %s", ctl(id, IPC_RMID, NULL));
	st("removed, attached", id, K(9), NULL);
	say("by key, no IPC_CREAT: %s", get(NULL, K(9), 0, 0));
	SAYR("by key, IPC_CREAT|IPC_EXCL: %s, a new shmid: %s",
	     get(&id2, K(9), 4096, IPC_CREAT | IPC_EXCL | 0640),
	     yesno(id2 != id));
	st("the new segment", id2, K(9), NULL);
	SAYR("by key again: %s, the new one: %s", get(&id3, K(9), 0, 0),
	     yesno(id3 == id2));
	say("attach by the old shmid: %s", at(&b, id, NULL, 0));
	if (b) {
		say("data kept: %s", yesno(all_bytes(b, 8192, 'D')));
		b[1] = 'E';
		say("shared with the first attachment: %s", yesno(a[1] == 'E'));
	}
	st("removed, attached twice", id, K(9), NULL);
	say("IPC_RMID again: %s", ctl(id, IPC_RMID, NULL));
	say("SHM_LOCK on the removed segment: %s", ctl(id, SHM_LOCK, NULL));
	st("removed and locked", id, K(9), NULL);
	say("SHM_UNLOCK: %s", ctl(id, SHM_UNLOCK, NULL));
	say("detach one: %s", dt(b));
	st("one left", id, K(9), NULL);
	say("detach the last: %s", dt(a));
	say("old shmid: IPC_STAT %s", ctl(id, IPC_STAT, &ds));
	say("old shmid: shmat %s", at(&c, id, NULL, 0));
	say("old shmid: IPC_RMID %s", ctl(id, IPC_RMID, NULL));
	say("old shmid: IPC_SET %s", ctl(id, IPC_SET, &ds));
	say("old shmid: SHM_LOCK %s", ctl(id, SHM_LOCK, NULL));
	say("old address: shmdt %s", dt(a));
	SAYR("the new segment by key still: %s, same: %s",
	     get(&id3, K(9), 0, 0), yesno(id3 == id2));
	say("IPC_RMID, nothing attached: %s", ctl(id2, IPC_RMID, NULL));
	say("at once gone: IPC_STAT %s, by key %s", ctl(id2, IPC_STAT, &ds),
	    get(NULL, K(9), 0, 0));
	say("IPC_RMID shmid -1: %s", ctl(-1, IPC_RMID, NULL));
}

/* SHM_INFO's used_ids goes up by one at a create and back at IPC_RMID.  Other
 * users of the kernel's table may create or remove at the same time, so
 * try a few times and take any clean measurement. */
static int used_ids_exact(void)
{
	for (int t = 0; t < 20; t++) {
		struct shm_info a, b, c;
		int id;

		shmctl(0, SHM_INFO, (struct shmid_ds *)&a);
		id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
		if (id < 0)
			return 0;
		track(id);
		shmctl(0, SHM_INFO, (struct shmid_ds *)&b);
		shmctl(id, IPC_RMID, NULL);
		shmctl(0, SHM_INFO, (struct shmid_ds *)&c);
		if (b.used_ids == a.used_ids + 1 && c.used_ids == a.used_ids)
			return 1;
	}
	return 0;
}

static void sec_info(void)
{
	struct shminfo si;
	struct shm_info sinfo, sinfo2;
	struct shmid_ds ds, ds2;
	int r, r2, id, idx = -1, found = 0, rs;
	unsigned long pages;

	say("== IPC_INFO, SHM_INFO, SHM_STAT");
	memset(&si, 0, sizeof(si));
	SAYR("IPC_INFO: %s, return value >= 0: %s", ctlv(&r, 0, IPC_INFO, &si),
	     yesno(r >= 0));
	say("shmmax %lu shmmin %lu shmmni %lu shmseg %lu shmall %lu",
	    (unsigned long)si.shmmax, (unsigned long)si.shmmin,
	    (unsigned long)si.shmmni, (unsigned long)si.shmseg,
	    (unsigned long)si.shmall);
	say("shmmin == 1: %s, shmmax > 0: %s, shmseg <= shmmni: %s",
	    yesno(si.shmmin == 1), yesno(si.shmmax > 0),
	    yesno(si.shmseg <= si.shmmni));
	if (si.shmmax < SIZE_MAX)
		say("size shmmax+1: %s",
		    get(NULL, IPC_PRIVATE, si.shmmax + 1, IPC_CREAT | 0600));
	say("IPC_INFO shmid -1: %s", ctlv(&r, -1, IPC_INFO, &si));
	say("IPC_INFO NULL buf: %s", ctlv(&r, 0, IPC_INFO, NULL));
	memset(&sinfo, 0, sizeof(sinfo));
	SAYR("SHM_INFO: %s, return value >= 0: %s",
	     ctlv(&r, 0, SHM_INFO, &sinfo), yesno(r >= 0));
	say("SHM_INFO NULL buf: %s", ctlv(&r2, 0, SHM_INFO, NULL));
	say("SHM_INFO shmid -1: %s", ctlv(&r2, -1, SHM_INFO, &sinfo2));

	say("create 5 pages + 1: %s",
	    get(&id, K(10), 5 * PG + 1, IPC_CREAT | 0640));
	pages = 6;
	memset(&sinfo2, 0, sizeof(sinfo2));
	say("SHM_INFO: %s", ctlv(&r, 0, SHM_INFO, &sinfo2));
	say("used_ids >= 1: %s, shm_tot >= my pages: %s, shm_rss + shm_swp <= "
	    "shm_tot: %s",
	    yesno(sinfo2.used_ids >= 1), yesno(sinfo2.shm_tot >= pages),
	    yesno(sinfo2.shm_rss + sinfo2.shm_swp <= sinfo2.shm_tot));
	say("swap_attempts %lu swap_successes %lu",
	    (unsigned long)sinfo2.swap_attempts,
	    (unsigned long)sinfo2.swap_successes);
	for (int i = 0; i <= r && !found; i++) {
		int got = shmctl(i, SHM_STAT_ANY, &ds);

		if (got == id) {
			idx = i;
			found = 1;
		}
	}
	say("my segment found by scanning SHM_STAT_ANY 0..SHM_INFO's value: %s",
	    yesno(found));
	say("SHM_INFO value >= its index: %s", yesno(found && r >= idx));
	say("IPC_INFO value >= its index: %s",
	    yesno(shmctl(0, IPC_INFO, (void *)&si) >= idx));
	say("shmid mod 32768 is the index: %s",
	    yesno(found && (id & 0x7fff) == idx));
	ds = stat_quiet(id);
	say("shmid / 32768 is __seq: %s",
	    yesno((id >> 15) == (int)ds.shm_perm.__seq));
	if (found) {
		memset(&ds2, 0, sizeof(ds2));
		rs = shmctl(idx, SHM_STAT, &ds2);
		say("SHM_STAT at its index: %s, returns my shmid: %s",
		    rs < 0 ? ename(errno) : "ok", yesno(rs == id));
		say("SHM_STAT buffer equals IPC_STAT's: %s",
		    yesno(ds2.shm_perm.__key == ds.shm_perm.__key &&
			  ds2.shm_perm.mode == ds.shm_perm.mode &&
			  ds2.shm_perm.uid == ds.shm_perm.uid &&
			  ds2.shm_perm.cuid == ds.shm_perm.cuid &&
			  ds2.shm_segsz == ds.shm_segsz &&
			  ds2.shm_cpid == ds.shm_cpid &&
			  ds2.shm_lpid == ds.shm_lpid &&
			  ds2.shm_nattch == ds.shm_nattch &&
			  ds2.shm_ctime == ds.shm_ctime));
		memset(&ds2, 0, sizeof(ds2));
		rs = shmctl(idx, SHM_STAT_ANY, &ds2);
		say("SHM_STAT_ANY at its index: %s, returns my shmid: %s",
		    rs < 0 ? ename(errno) : "ok", yesno(rs == id));
		say("SHM_STAT NULL buf: %s", ctlv(&rs, idx, SHM_STAT, NULL));
		rs = shmctl(idx + 32768, SHM_STAT, &ds2);
		say("SHM_STAT at its index + 32768 gives my shmid too: %s",
		    yesno(rs == id));
		rs = shmctl(r + 1, SHM_STAT, &ds2);
		say("SHM_STAT at SHM_INFO's value + 1: %s",
		    rs < 0 ? ename(errno) : "ok");
	}
	say("SHM_STAT index -1: %s", ctlv(&rs, -1, SHM_STAT, &ds2));
	say("SHM_STAT index INT_MAX: %s", ctlv(&rs, INT_MAX, SHM_STAT, &ds2));
	say("SHM_STAT_ANY index INT_MAX: %s",
	    ctlv(&rs, INT_MAX, SHM_STAT_ANY, &ds2));
	say("IPC_RMID: %s", ctl(id, IPC_RMID, NULL));
	if (found) {
		/* someone else may take the index at once: only "not mine" */
		rs = shmctl(idx, SHM_STAT, &ds2);
		say("SHM_STAT at the freed index no longer gives my shmid: %s",
		    yesno(rs != id));
	}
	say("used_ids counts a create and an IPC_RMID exactly: %s",
	    yesno(used_ids_exact()));

	say("-- removed but attached segments in SHM_STAT");
	{
		char *a;

		get(&id, K(10), 4096, IPC_CREAT | 0600);
		at(&a, id, NULL, 0);
		rm(id);
		ctlv(&r, 0, SHM_INFO, &sinfo2);
		found = 0;
		for (int i = 0; i <= r && !found; i++)
			if (shmctl(i, SHM_STAT_ANY, &ds) == id)
				found = 1;
		say("a removed, attached segment is still listed by SHM_STAT: "
		    "%s",
		    yesno(found));
		if (found)
			say("its SHM_STAT key %s, mode %04o",
			    key_rel(ds.shm_perm.__key, K(10)),
			    (unsigned)ds.shm_perm.mode);
		if (a)
			shmdt(a);
	}

	say("-- other commands");
	say("IPC_STAT NULL buf: %s", ctl(0x7fffffff, IPC_STAT, NULL));
	get(&id, K(10), 4096, IPC_CREAT | 0600);
	say("IPC_STAT NULL buf on a live segment: %s", ctl(id, IPC_STAT, NULL));
	say("IPC_STAT shmid -1: %s", ctl(-1, IPC_STAT, &ds));
	say("IPC_STAT stale shmid: %s", ctl(id + 32768, IPC_STAT, &ds));
	say("unknown cmd 99: %s", ctl(id, 99, &ds));
	say("unknown cmd 99, shmid -1: %s", ctl(-1, 99, &ds));
	say("cmd -1: %s", ctl(id, -1, &ds));
	rm(id);
}

static void sec_lock(void)
{
	int id;

	say("== SHM_LOCK / SHM_UNLOCK");
	say("create 0600: %s", get(&id, K(11), 4096, IPC_CREAT | 0600));
	say("SHM_UNLOCK when not locked: %s", ctl(id, SHM_UNLOCK, NULL));
	say("SHM_LOCK: %s", ctl(id, SHM_LOCK, NULL));
	st("locked", id, K(11), NULL);
	say("SHM_LOCK again: %s", ctl(id, SHM_LOCK, NULL));
	st("locked twice", id, K(11), NULL);
	say("SHM_UNLOCK: %s", ctl(id, SHM_UNLOCK, NULL));
	st("unlocked", id, K(11), NULL);
	say("SHM_LOCK shmid -1: %s", ctl(-1, SHM_LOCK, NULL));
	say("SHM_UNLOCK stale shmid: %s", ctl(id + 32768, SHM_UNLOCK, NULL));
	say("SHM_LOCK: %s", ctl(id, SHM_LOCK, NULL));
	say("then IPC_RMID with nothing attached: %s", ctl(id, IPC_RMID, NULL));
	say("gone: %s", ctl(id, SHM_UNLOCK, NULL));
}

/* ---- nattch across fork, exit, exec and threads */

static void fork_case(const char *how, int id, char *a)
{
	pid_t pid;
	int status, up[2], down[2];
	char ch = 0;
	struct shmid_ds ds;

	if (pipe(up) < 0 || pipe(down) < 0)
		return;
	a[100] = 0;
	pid = fork();
	if (pid == 0) {
		close(up[0]);
		close(down[1]);
		/* wait until the parent has looked at nattch after fork */
		if (read(down[0], &ch, 1) != 1)
			_exit(1);
		a[100] = how[1];
		if (!strcmp(how, "exit")) {
			exit(0);
		} else if (!strcmp(how, "_exit")) {
			_exit(0);
		} else if (!strcmp(how, "SIGKILL")) {
			if (write(up[1], "k", 1) < 0)
				_exit(1);
			for (;;)
				pause();
		} else if (!strcmp(how, "exec /bin/true")) {
			execl("/bin/true", "true", (char *)NULL);
			_exit(127);
		} else if (!strcmp(how, "shmdt, then _exit")) {
			int r = shmdt(a);

			if (write(up[1], r == 0 ? "d" : "e", 1) < 0)
				_exit(1);
			while (read(down[0], &ch, 1) > 0)
				;
			_exit(0);
		}
		_exit(2);
	}
	close(up[1]);
	close(down[0]);
	name_pid(pid, "child");
	say("-- child: %s", how);
	ds = stat_quiet(id);
	say("after fork: nattch %lu, lpid %s", (unsigned long)ds.shm_nattch,
	    pid_rel(ds.shm_lpid));
	if (write(down[1], "g", 1) != 1)
		say("cannot start the child");
	if (!strcmp(how, "SIGKILL")) {
		if (read(up[0], &ch, 1) != 1)
			say("child did not start");
		say("child running: nattch %s", natt(id));
		kill(pid, SIGKILL);
	} else if (!strcmp(how, "shmdt, then _exit")) {
		if (read(up[0], &ch, 1) != 1)
			ch = '?';
		say("child's shmdt: %s", ch == 'd' ? "ok" : "failed");
		ds = stat_quiet(id);
		say("child alive, after its shmdt: nattch %lu, lpid %s",
		    (unsigned long)ds.shm_nattch, pid_rel(ds.shm_lpid));
	}
	close(down[1]);
	status = reap(pid);
	close(up[0]);
	ds = stat_quiet(id);
	say("child %s; after waitpid: nattch %lu, lpid %s, dtime set: %s, "
	    "child's store seen: %s",
	    wstatus(status), (unsigned long)ds.shm_nattch, pid_rel(ds.shm_lpid),
	    yesno(ds.shm_dtime != 0), yesno(a[100] == how[1]));
}

/* A child running /bin/true that shares our memory until its exec (vfork,
 * and posix_spawn, which glibc builds on CLONE_VM|CLONE_VFORK). */
static pid_t spawn_true(int use_posix_spawn)
{
	static char *const argv[] = {"true", NULL};
	pid_t pid = -1;

	if (use_posix_spawn) {
		if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) !=
		    0)
			return -1;
		return pid;
	}
	pid = vfork();
	if (pid == 0) {
		execv("/bin/true", argv);
		_exit(127);
	}
	return pid;
}

static void sec_fork(void)
{
	int id, pp[2], status, ok;
	char *a;
	pid_t kids[20];
	struct shmid_ds ds;

	say("== nattch across fork, exit, exec");
	say("create 4096: %s", get(&id, K(12), 4096, IPC_CREAT | 0600));
	say("attach: %s", at(&a, id, NULL, 0));
	if (!a) {
		rm(id);
		return;
	}
	say_nattch("attached", id);
	if (pipe(pp) < 0)
		return;
	for (int i = 0; i < 20; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			char ch;

			close(pp[1]);
			while (read(pp[0], &ch, 1) > 0)
				;
			_exit(0);
		}
		name_pid(kids[i], "one of the 20 children");
	}
	close(pp[0]);
	ds = stat_quiet(id);
	say("right after 20 forks: nattch %lu, lpid %s",
	    (unsigned long)ds.shm_nattch, pid_rel(ds.shm_lpid));
	close(pp[1]);
	ok = 0;
	for (int i = 0; i < 20; i++) {
		status = reap(kids[i]);
		ok += WIFEXITED(status) && WEXITSTATUS(status) == 0;
	}
	ds = stat_quiet(id);
	say("%d children exited; after waitpid: nattch %lu, lpid %s, dtime "
	    "set: %s",
	    ok, (unsigned long)ds.shm_nattch, pid_rel(ds.shm_lpid),
	    yesno(ds.shm_dtime != 0));

	fork_case("exit", id, a);
	fork_case("_exit", id, a);
	fork_case("SIGKILL", id, a);
	fork_case("exec /bin/true", id, a);
	fork_case("shmdt, then _exit", id, a);

	say("-- a child that attaches by shmid and exits without shmdt");
	{
		int p2[2], q2[2];
		pid_t pid;
		char ch = 0;

		if (pipe(p2) < 0 || pipe(q2) < 0)
			return;
		pid = fork();
		if (pid == 0) {
			char *b = shmat(id, NULL, 0);

			close(p2[0]);
			close(q2[1]);
			if (b != (void *)-1)
				b[200] = 'C';
			if (write(p2[1], b != (void *)-1 ? "a" : "e", 1) < 0)
				_exit(1);
			if (read(q2[0], &ch, 1) < 0)
				_exit(1);
			_exit(0);
		}
		close(p2[1]);
		close(q2[0]);
		name_pid(pid, "child");
		if (read(p2[0], &ch, 1) != 1)
			ch = '?';
		say("child's shmat: %s", ch == 'a' ? "ok" : "failed");
		ds = stat_quiet(id);
		say("child alive with its own attachment: nattch %lu, lpid %s, "
		    "store seen: %s",
		    (unsigned long)ds.shm_nattch, pid_rel(ds.shm_lpid),
		    yesno(a[200] == 'C'));
		close(q2[1]);
		status = reap(pid);
		close(p2[0]);
		ds = stat_quiet(id);
		say("child %s; after waitpid: nattch %lu, lpid %s",
		    wstatus(status), (unsigned long)ds.shm_nattch,
		    pid_rel(ds.shm_lpid));
	}

	say("-- a child that closes every descriptor >= 3 (as daemons do)");
	{
		pid_t pid = fork();

		if (pid == 0) {
			char *b;

			for (int fd = 3; fd < 65536; fd++)
				close(fd);
			a[400] = 'F';
			say("child after closing: nattch %s", natt(id));
			say("child: shmat %s", at(&b, id, NULL, 0));
			say("child: nattch %s", natt(id));
			if (b)
				say("child: shmdt of the new one %s", dt(b));
			say("child: shmdt of the inherited one %s", dt(a));
			say("child: nattch %s", natt(id));
			_exit(0);
		}
		name_pid(pid, "child");
		status = reap(pid);
		ds = stat_quiet(id);
		say("child %s; after waitpid: nattch %lu, lpid %s, its store "
		    "seen: %s",
		    wstatus(status), (unsigned long)ds.shm_nattch,
		    pid_rel(ds.shm_lpid), yesno(a[400] == 'F'));
	}

	say("-- vfork + exec, posix_spawn (no copy of the attachments)");
	{
		pid_t pid = spawn_true(0);

		status = reap(pid);
		say("vfork+exec /bin/true %s; after waitpid: nattch %s",
		    wstatus(status), natt(id));
		pid = spawn_true(1);
		status = reap(pid);
		say("posix_spawn /bin/true %s; after waitpid: nattch %s",
		    wstatus(status), natt(id));
	}

	say("-- a child of a child");
	{
		pid_t pid = fork();

		if (pid == 0) {
			pid_t g = fork();
			int gs;

			if (g == 0) {
				a[300] = 'G';
				_exit(0);
			}
			gs = reap(g);
			_exit(WIFEXITED(gs) ? WEXITSTATUS(gs) : 3);
		}
		status = reap(pid);
		say("child and grandchild %s; after waitpid: nattch %s, "
		    "grandchild's store seen: %s",
		    wstatus(status), natt(id), yesno(a[300] == 'G'));
	}

	say("detach: %s", dt(a));
	ds = stat_quiet(id);
	say("after detach: nattch %lu, lpid %s", (unsigned long)ds.shm_nattch,
	    pid_rel(ds.shm_lpid));
	rm(id);
}

static volatile sig_atomic_t ticks;

static void tick(int sig)
{
	(void)sig;
	ticks++;
}

struct thr_arg {
	int id;
	int iters;
	int errors;
	int index;
	volatile int *stop;
};

static void *thr_main(void *p)
{
	struct thr_arg *t = p;

	for (int i = 0; i < t->iters || (t->stop && !*t->stop); i++) {
		char *m = shmat(t->id, NULL, 0);

		if (m == (void *)-1) {
			t->errors++;
			continue;
		}
		m[t->index] = (char)(i + 1);
		if (m[t->index] != (char)(i + 1))
			t->errors++;
		if (shmdt(m) < 0)
			t->errors++;
		if (t->stop && i > 100000)
			break;
	}
	return NULL;
}

static void sec_fork_times(void)
{
	int id, status, up[2], down[2];
	char *a, ch;
	struct shmid_ds ds, ds2;
	pid_t pid;

	say("== fork, exit and times; fork of a removed segment");
	say("create 4096: %s", get(&id, K(14), 4096, IPC_CREAT | 0600));
	say("attach: %s", at(&a, id, NULL, 0));
	if (!a || pipe(up) < 0 || pipe(down) < 0) {
		rm(id);
		return;
	}
	ds = stat_quiet(id);
	next_second(ds.shm_atime);
	pid = fork();
	if (pid == 0) {
		close(up[0]);
		close(down[1]);
		if (write(up[1], "r", 1) < 0)
			_exit(1);
		while (read(down[0], &ch, 1) > 0)
			;
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	name_pid(pid, "child");
	if (read(up[0], &ch, 1) != 1)
		say("child did not start");
	ds2 = stat_quiet(id);
	say("a second later, fork: nattch %lu, lpid %s, atime moved: %s, dtime "
	    "moved: %s",
	    (unsigned long)ds2.shm_nattch, pid_rel(ds2.shm_lpid),
	    yesno(ds2.shm_atime > ds.shm_atime),
	    yesno(ds2.shm_dtime != ds.shm_dtime));
	say("IPC_RMID while the parent and the child are attached: %s",
	    ctl(id, IPC_RMID, NULL));
	say("parent detaches: %s", dt(a));
	ds = stat_quiet(id);
	say("child still attached: nattch %lu, mode %04o, key %s",
	    (unsigned long)ds.shm_nattch, (unsigned)ds.shm_perm.mode,
	    key_rel(ds.shm_perm.__key, K(14)));
	say("attach again by shmid while the child holds it: %s",
	    at(&a, id, NULL, 0));
	if (a)
		say("detach: %s", dt(a));
	close(down[1]);
	status = reap(pid);
	close(up[0]);
	say("child %s; then IPC_STAT: %s", wstatus(status),
	    ctl(id, IPC_STAT, &ds));

	say("-- a removed segment whose last holder is a child that execs");
	get(&id, K(14), 4096, IPC_CREAT | 0600);
	at(&a, id, NULL, 0);
	if (!a || pipe(up) < 0 || pipe(down) < 0) {
		rm(id);
		return;
	}
	pid = fork();
	if (pid == 0) {
		close(up[0]);
		close(down[1]);
		if (write(up[1], "r", 1) < 0)
			_exit(1);
		while (read(down[0], &ch, 1) > 0)
			;
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	close(up[1]);
	close(down[0]);
	if (read(up[0], &ch, 1) != 1)
		say("child did not start");
	say("IPC_RMID: %s", ctl(id, IPC_RMID, NULL));
	say("parent detaches: %s", dt(a));
	say_nattch("the child holds it", id);
	close(down[1]);
	status = reap(pid);
	close(up[0]);
	say("child %s; then IPC_STAT: %s, by key: %s", wstatus(status),
	    ctl(id, IPC_STAT, &ds), get(NULL, K(14), 0, 0));
}

static void sec_data(void)
{
	enum { SZ = 3 * PG + 1 };
	int id, id2, ok, status;
	char *a, *b, *ro;
	pid_t pid;

	say("== data");
	say("create 3 pages + 1: %s", get(&id, K(15), SZ, IPC_CREAT | 0600));
	say("attach: %s", at(&a, id, NULL, 0));
	if (!a) {
		rm(id);
		return;
	}
	say("zero, including the rest of the last page: %s",
	    yesno(all_bytes(a, 4 * PG, 0)));
	say("SHM_RDONLY attach: %s", at(&ro, id, NULL, SHM_RDONLY));
	for (int i = 0; i < SZ; i++)
		a[i] = (char)(i * 7 + 1);
	a[SZ + 100] = 't'; /* past shm_segsz, inside the last page */
	say("second attach: %s", at(&b, id, NULL, 0));
	ok = 1;
	for (int i = 0; b && i < SZ; i++)
		ok &= b[i] == (char)(i * 7 + 1);
	say("a second attachment sees every byte: %s", yesno(b && ok));
	ok = 1;
	for (int i = 0; ro && i < SZ; i++)
		ok &= ro[i] == (char)(i * 7 + 1);
	say("the SHM_RDONLY attachment sees every byte: %s", yesno(ro && ok));
	say("the byte past segsz is shared: %s, %s",
	    yesno(b && b[SZ + 100] == 't'), yesno(ro && ro[SZ + 100] == 't'));
	if (b)
		dt(b);
	if (ro)
		dt(ro);
	say("detach all: %s", dt(a));
	say_nattch("none attached", id);
	pid = fork();
	if (pid == 0) {
		char *c = shmat(id, NULL, 0);
		int good = c != (void *)-1;

		for (int i = 0; good && i < SZ; i++)
			good = c[i] == (char)(i * 7 + 1);
		if (good)
			c[0] = 'K';
		_exit(good ? 0 : 1);
	}
	status = reap(pid);
	say("a child attaching by shmid sees every byte: %s",
	    yesno(WIFEXITED(status) && WEXITSTATUS(status) == 0));
	say("attach again: %s", at(&a, id, NULL, 0));
	if (a) {
		ok = a[0] == 'K';
		for (int i = 1; i < SZ; i++)
			ok &= a[i] == (char)(i * 7 + 1);
		say("data kept with nothing attached, and the child's store: "
		    "%s",
		    yesno(ok));
		say("the byte past segsz kept: %s", yesno(a[SZ + 100] == 't'));
		dt(a);
	}
	rm(id);
	say("re-create at the key: %s", get(&id2, K(15), SZ, IPC_CREAT | 0600));
	say("attach: %s", at(&a, id2, NULL, 0));
	if (a) {
		say("reads zeros, including the rest of the last page: %s",
		    yesno(all_bytes(a, 4 * PG, 0)));
		dt(a);
	}
	rm(id2);

	say("-- a 64 MiB segment");
	say("create: %s", get(&id, K(15), 64UL << 20, IPC_CREAT | 0600));
	say("attach: %s", at(&a, id, NULL, 0));
	say("second attach: %s", at(&b, id, NULL, 0));
	if (a && b) {
		a[0] = 'h';
		a[(64UL << 20) - 1] = 't';
		a[33UL << 20] = 'm';
		say("first, middle and last byte seen through the second: %s",
		    yesno(b[0] == 'h' && b[(64UL << 20) - 1] == 't' &&
			  b[33UL << 20] == 'm'));
		say("untouched bytes are zero: %s",
		    yesno(b[1] == 0 && b[(64UL << 20) - 2] == 0 &&
			  b[17UL << 20] == 0));
	}
	if (a)
		dt(a);
	if (b)
		dt(b);
	st("64 MiB", id, K(15), NULL);
	rm(id);
}

static void sec_threads(void)
{
	enum { NT = 8, ITERS = 200 };
	pthread_t th[NT];
	struct thr_arg ta[NT];
	int id, errors = 0;
	char *a;
	volatile int stop = 0;

	say("== threads");
	say("create 4096: %s", get(&id, K(13), 4096, IPC_CREAT | 0600));
	say("attach: %s", at(&a, id, NULL, 0));
	say_nattch("start", id);
	for (int i = 0; i < NT; i++) {
		ta[i] = (struct thr_arg){.id = id, .iters = ITERS, .index = i};
		pthread_create(&th[i], NULL, thr_main, &ta[i]);
	}
	for (int i = 0; i < NT; i++) {
		pthread_join(th[i], NULL);
		errors += ta[i].errors;
	}
	say("%d threads x %d shmat/store/shmdt: %d errors", NT, ITERS, errors);
	say_nattch("after join", id);

	say("-- fork while threads attach and detach");
	errors = 0;
	for (int i = 0; i < NT; i++) {
		ta[i] = (struct thr_arg){
		    .id = id, .iters = ITERS, .index = i, .stop = &stop};
		pthread_create(&th[i], NULL, thr_main, &ta[i]);
	}
	{
		int status, ok = 0;

		for (int k = 0; k < 4; k++) {
			pid_t pid;

			usleep(2000);
			pid = fork();
			if (pid == 0) {
				char *m = shmat(id, NULL, 0);
				int bad = m == (void *)-1;

				if (!bad) {
					m[100] = 'T';
					bad = shmdt(m) < 0;
				}
				_exit(bad);
			}
			status = reap(pid);
			ok += WIFEXITED(status) && WEXITSTATUS(status) == 0;
		}
		stop = 1;
		for (int i = 0; i < NT; i++) {
			pthread_join(th[i], NULL);
			errors += ta[i].errors;
		}
		say("4 children forked mid-run did shmat/shmdt: %d ok; thread "
		    "errors %d",
		    ok, errors);
	}
	say_nattch("after join and waitpid", id);
	say("detach: %s", dt(a));
	say_nattch("end", id);

	say("-- processes attaching and detaching at once");
	{
		enum { NP = 6, PITERS = 200 };
		pid_t pids[NP];
		int ok = 0, status;

		for (int i = 0; i < NP; i++) {
			pids[i] = fork();
			if (pids[i] == 0) {
				int bad = 0;

				for (int k = 0; k < PITERS; k++) {
					char *m = shmat(id, NULL,
							k % 3 ? 0 : SHM_RDONLY);

					if (m == (void *)-1) {
						bad++;
						continue;
					}
					if (k % 3)
						m[i] = (char)k;
					bad += shmdt(m) < 0;
				}
				_exit(bad ? 1 : 0);
			}
		}
		for (int i = 0; i < NP; i++) {
			status = reap(pids[i]);
			ok += WIFEXITED(status) && WEXITSTATUS(status) == 0;
		}
		say("%d processes x %d shmat/shmdt: %d without error", NP,
		    PITERS, ok);
		say_nattch("after waitpid", id);
	}

	say("-- calls under a 50 us interval timer (signal handler without "
	    "SA_RESTART)");
	{
		struct sigaction sa, old;
		struct sigevent sev;
		struct itimerspec its;
		timer_t tm;
		int errs = 0, first = 0;
		struct shmid_ds ds;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = tick;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGUSR1, &sa, &old);
		memset(&sev, 0, sizeof(sev));
		sev.sigev_notify = SIGEV_SIGNAL;
		sev.sigev_signo = SIGUSR1;
		if (timer_create(CLOCK_MONOTONIC, &sev, &tm) == 0) {
			its.it_value.tv_sec = 0;
			its.it_value.tv_nsec = 50000;
			its.it_interval = its.it_value;
			timer_settime(tm, 0, &its, NULL);
			for (int k = 0; k < 2000; k++) {
				char *m = shmat(id, NULL, 0);
				int e;

				if (m == (void *)-1) {
					e = errno;
					errs++;
					first = first ? first : e;
					continue;
				}
				m[0] = 1;
				if (shmctl(id, IPC_STAT, &ds) < 0) {
					e = errno;
					errs++;
					first = first ? first : e;
				}
				if (shmget(K(13), 0, 0) != id) {
					e = errno;
					errs++;
					first = first ? first : e;
				}
				if (shmdt(m) < 0) {
					e = errno;
					errs++;
					first = first ? first : e;
				}
			}
			timer_delete(tm);
		}
		sigaction(SIGUSR1, &old, NULL);
		say("2000 rounds of shmat/IPC_STAT/shmget/shmdt: %d errors, "
		    "first %s",
		    errs, first ? ename(first) : "none");
		say_nattch("after", id);
	}
	rm(id);
}

/* ---- permissions as a second user */

struct pseg {
	const char *label;
	key_t key;
	int id;
	int idx;
};

static int find_index(int id)
{
	struct shm_info si;
	struct shmid_ds ds;
	int max = shmctl(0, SHM_INFO, (struct shmid_ds *)&si);

	for (int i = 0; i <= max; i++)
		if (shmctl(i, SHM_STAT_ANY, &ds) == id)
			return i;
	return -1;
}

static void perm_ops(const struct pseg *s)
{
	int r;
	char *m;
	struct shmid_ds ds;

	say("-- %s", s->label);
	SAYR("  shmget size 0 flags 0: %s, its shmid: %s",
	     get(&r, s->key, 0, 0), yesno(r == s->id));
	say("  shmget mode 0400: %s", get(&r, s->key, 0, 0400));
	say("  shmget mode 0600: %s", get(&r, s->key, 0, 0600));
	say("  shmget mode 0040: %s", get(&r, s->key, 0, 0040));
	say("  shmget mode 0060: %s", get(&r, s->key, 0, 0060));
	say("  shmget mode 0004: %s", get(&r, s->key, 0, 0004));
	say("  shmget mode 0006: %s", get(&r, s->key, 0, 0006));
	say("  shmget mode 0100: %s", get(&r, s->key, 0, 0100));
	say("  shmget IPC_CREAT|0600: %s",
	    get(&r, s->key, 4096, IPC_CREAT | 0600));
	say("  shmget IPC_CREAT|IPC_EXCL|0600: %s",
	    get(&r, s->key, 4096, IPC_CREAT | IPC_EXCL | 0600));
	say("  shmget too large, mode 0600: %s",
	    get(&r, s->key, 1 << 20, 0600));
	say("  shmat SHM_RDONLY: %s", at(&m, s->id, NULL, SHM_RDONLY));
	if (m)
		shmdt(m);
	say("  shmat read-write: %s", at(&m, s->id, NULL, 0));
	if (m)
		shmdt(m);
	say("  shmat SHM_RDONLY|SHM_EXEC: %s",
	    at(&m, s->id, NULL, SHM_RDONLY | SHM_EXEC));
	if (m)
		shmdt(m);
	say("  IPC_STAT: %s", ctl(s->id, IPC_STAT, &ds));
	say("  SHM_STAT: %s", ctlv(&r, s->idx, SHM_STAT, &ds));
	memset(&ds, 0, sizeof(ds));
	SAYR("  SHM_STAT_ANY: %s, its shmid: %s",
	     ctlv(&r, s->idx, SHM_STAT_ANY, &ds), yesno(r == s->id));
	say("  IPC_SET (same values): %s", ctl(s->id, IPC_SET, &ds));
	say("  SHM_LOCK: %s", ctl(s->id, SHM_LOCK, NULL));
	say("  SHM_UNLOCK: %s", ctl(s->id, SHM_UNLOCK, NULL));
	say("  IPC_RMID: %s", ctl(s->id, IPC_RMID, NULL));
}

static int become_other(int ngroups, const gid_t *groups)
{
	if (setgroups((size_t)ngroups, groups) < 0)
		return -1;
	if (setresgid(OTHER_GID, OTHER_GID, OTHER_GID) < 0)
		return -1;
	if (setresuid(OTHER_UID, OTHER_UID, OTHER_UID) < 0)
		return -1;
	return 0;
}

static void perm_child(struct pseg *segs, int nsegs, struct pseg *owner)
{
	gid_t groups[] = {SUPP_GID, CGRP_GID};
	struct rlimit ml = {0, 1 << 20};
	struct shmid_ds ds;
	int r, id;
	char *m;

	setrlimit(RLIMIT_MEMLOCK, &ml);
	if (become_other(2, groups) < 0) {
		say("cannot become uid %d: %s", OTHER_UID, ename(errno));
		return;
	}
	say("now uid 1000 gid 1000, groups 2000 and 3000");
	for (int i = 0; i < nsegs; i++)
		perm_ops(&segs[i]);

	say("-- low addresses as uid 1000 (mode 0666 segment)");
	for (int i = 0; i < nsegs; i++) {
		void *p;
		int e;

		if (strncmp(segs[i].label, "mode 0666", 9))
			continue;
		p = shmat(segs[i].id, (void *)1, SHM_RND);
		e = errno;
		say("  address 1 with SHM_RND: %s",
		    p == (void *)-1 ? ename(e) : "ok");
		if (p != (void *)-1)
			shmdt(p);
		p = shmat(segs[i].id, (void *)PG, 0);
		e = errno;
		say("  address 4096: %s", p == (void *)-1 ? ename(e) : "ok");
		if (p != (void *)-1)
			shmdt(p);
		break;
	}

	say("-- owner by IPC_SET (uid 1000, created by root)");
	st("  segment", owner->id, owner->key, NULL);
	say("  shmat read-write: %s", at(&m, owner->id, NULL, 0));
	if (m)
		shmdt(m);
	ds = stat_quiet(owner->id);
	ds.shm_perm.mode = 0640;
	say("  IPC_SET mode 0640: %s", ctl(owner->id, IPC_SET, &ds));
	say("  SHM_LOCK with RLIMIT_MEMLOCK 0: %s",
	    ctl(owner->id, SHM_LOCK, NULL));
	ml.rlim_cur = 1 << 20;
	setrlimit(RLIMIT_MEMLOCK, &ml);
	say("  SHM_LOCK with RLIMIT_MEMLOCK 1 MiB: %s",
	    ctl(owner->id, SHM_LOCK, NULL));
	st("  locked", owner->id, owner->key, NULL);
	say("  SHM_UNLOCK: %s", ctl(owner->id, SHM_UNLOCK, NULL));
	ds.shm_perm.uid = 0;
	ds.shm_perm.mode = 0640;
	say("  IPC_SET uid 0 (give it away): %s", ctl(owner->id, IPC_SET, &ds));
	say("  then IPC_STAT: %s", ctl(owner->id, IPC_STAT, &ds));
	ds.shm_perm.uid = OTHER_UID;
	say("  then IPC_SET uid 1000: %s", ctl(owner->id, IPC_SET, &ds));
	say("  then SHM_LOCK: %s", ctl(owner->id, SHM_LOCK, NULL));
	say("  then IPC_RMID: %s", ctl(owner->id, IPC_RMID, NULL));

	say("-- created by uid 1000");
	say("  shmget IPC_CREAT|0600: %s",
	    get(&id, K(40), 4096, IPC_CREAT | 0600));
	st("  segment", id, K(40), NULL);
	ds = stat_quiet(id);
	ds.shm_perm.uid = 0;
	ds.shm_perm.gid = 0;
	ds.shm_perm.mode = 0600;
	say("  IPC_SET uid 0 gid 0 mode 0600: %s", ctl(id, IPC_SET, &ds));
	st("  given away", id, K(40), NULL);
	say("  as creator: IPC_STAT %s", ctl(id, IPC_STAT, &ds));
	say("  as creator: shmat read-write %s", at(&m, id, NULL, 0));
	if (m)
		shmdt(m);
	ds.shm_perm.mode = 0604;
	say("  as creator: IPC_SET mode 0604 %s", ctl(id, IPC_SET, &ds));
	say("  as creator: SHM_LOCK %s", ctl(id, SHM_LOCK, NULL));
	say("  as creator: SHM_UNLOCK %s", ctl(id, SHM_UNLOCK, NULL));
	say("  as creator: IPC_RMID %s", ctl(id, IPC_RMID, NULL));
	say("  gone: %s", ctl(id, IPC_STAT, &ds));

	say("-- created by uid 1000 with mode 0");
	say("  shmget IPC_CREAT|0: %s", get(&id, K(41), 4096, IPC_CREAT));
	say("  shmget again mode 0: %s", get(&r, K(41), 0, 0));
	say("  shmget again mode 0400: %s", get(&r, K(41), 0, 0400));
	say("  shmat SHM_RDONLY: %s", at(&m, id, NULL, SHM_RDONLY));
	if (m)
		shmdt(m);
	say("  IPC_STAT: %s", ctl(id, IPC_STAT, &ds));
	ds = stat_quiet(id);
	ds.shm_perm.uid = OTHER_UID;
	ds.shm_perm.gid = OTHER_GID;
	ds.shm_perm.mode = 0400;
	say("  IPC_SET mode 0400: %s", ctl(id, IPC_SET, &ds));
	say("  IPC_STAT: %s", ctl(id, IPC_STAT, &ds));
	say("  shmat SHM_RDONLY: %s", at(&m, id, NULL, SHM_RDONLY));
	if (m) {
		say("  store: %s", probe(m, 1));
		shmdt(m);
	}
	say("  shmat read-write: %s", at(&m, id, NULL, 0));
	say("  IPC_RMID: %s", ctl(id, IPC_RMID, NULL));

	say("-- IPC_PRIVATE as uid 1000");
	say("  shmget: %s", get(&id, IPC_PRIVATE, 4096, IPC_CREAT | 0600));
	st("  segment", id, IPC_PRIVATE, NULL);
	say("  IPC_RMID: %s", ctl(id, IPC_RMID, NULL));

	say("-- info as uid 1000");
	{
		struct shminfo si;
		struct shm_info sinfo;

		say("  IPC_INFO: %s", ctlv(&r, 0, IPC_INFO, &si));
		say("  SHM_INFO: %s", ctlv(&r, 0, SHM_INFO, &sinfo));
	}
}

static void sec_perm(void)
{
	static const unsigned modes[] = {0600, 0640, 0644, 0666,
					 0604, 0660, 0777};
	enum { NM = sizeof(modes) / sizeof(modes[0]) };
	static char labels[2 * NM + 2][64];
	struct pseg segs[2 * NM + 2], owner;
	struct shmid_ds ds;
	int n = 0, status;
	pid_t pid;

	say("== permissions as a second user");
	if (geteuid() != 0) {
		say("not root: skipped");
		return;
	}
	for (int g = 0; g < 2; g++)
		for (unsigned i = 0; i < NM; i++) {
			struct pseg *s = &segs[n];

			snprintf(labels[n], sizeof(labels[n]), "mode %04o, %s",
				 modes[i],
				 g ? "gid 1000 (group)" : "gid 0 (other)");
			s->label = labels[n];
			s->key = K(20 + n);
			get(&s->id, s->key, 4096, IPC_CREAT | modes[i]);
			if (g) {
				ds = stat_quiet(s->id);
				ds.shm_perm.gid = OTHER_GID;
				shmctl(s->id, IPC_SET, &ds);
			}
			n++;
		}
	/* group access through a supplementary group */
	segs[n].label = "mode 0640, gid 2000 (a supplementary group)";
	segs[n].key = K(20 + n);
	get(&segs[n].id, segs[n].key, 4096, IPC_CREAT | 0640);
	ds = stat_quiet(segs[n].id);
	ds.shm_perm.gid = SUPP_GID;
	shmctl(segs[n].id, IPC_SET, &ds);
	n++;
	/* group access through the creator's group (cgid 3000, gid 0) */
	segs[n].label = "mode 0640, cgid 3000 gid 0 (creator's group)";
	segs[n].key = K(20 + n);
	pid = fork();
	if (pid == 0) {
		if (setresgid(CGRP_GID, CGRP_GID, CGRP_GID) < 0)
			_exit(1);
		_exit(shmget(segs[n].key, 4096, IPC_CREAT | 0640) < 0);
	}
	name_pid(pid, "a root child with gid 3000");
	reap(pid);
	get(&segs[n].id, segs[n].key, 0, 0);
	ds = stat_quiet(segs[n].id);
	ds.shm_perm.gid = 0;
	shmctl(segs[n].id, IPC_SET, &ds);
	n++;

	owner.label = "owner";
	owner.key = K(38);
	get(&owner.id, owner.key, 4096, IPC_CREAT | 0600);
	ds = stat_quiet(owner.id);
	ds.shm_perm.uid = OTHER_UID;
	shmctl(owner.id, IPC_SET, &ds);
	owner.idx = find_index(owner.id);

	for (int i = 0; i < n; i++) {
		segs[i].idx = find_index(segs[i].id);
		if (segs[i].idx < 0)
			say("%s: index not found", segs[i].label);
	}
	pid = fork();
	if (pid == 0) {
		perm_child(segs, n, &owner);
		_exit(0);
	}
	name_pid(pid, "the uid-1000 child");
	status = reap(pid);
	say("uid-1000 child %s", wstatus(status));
	say("-- back as root");
	for (int i = 0; i < n; i++) {
		char what[96];

		snprintf(what, sizeof(what), "  %s", segs[i].label);
		st(what, segs[i].id, segs[i].key, NULL);
	}
	st("  owner segment", owner.id, owner.key, NULL);
	for (int i = 0; i < n; i++)
		rm(segs[i].id);
	rm(owner.id);
	say("uid-1000 keys left: %s %s", get(NULL, K(40), 0, 0),
	    get(NULL, K(41), 0, 0));
}

int main(int argc, char **argv)
{
	char *end;
	unsigned long b;

	if (argc != 2) {
		fprintf(stderr, "usage: %s BASEKEY\n", argv[0]);
		return 2;
	}
	errno = 0;
	b = strtoul(argv[1], &end, 0);
	if (errno || *end || b == 0 || b > 0x7fffffffUL - NKEYS) {
		fprintf(stderr, "%s: bad BASEKEY %s\n", argv[0], argv[1]);
		return 2;
	}
	base_key = (key_t)b;
	main_pid = getpid();
	name_pid(main_pid, "parent");
	atexit(cleanup);
	signal(SIGALRM, on_fatal);
	signal(SIGINT, on_fatal);
	signal(SIGTERM, on_fatal);
	signal(SIGHUP, on_fatal);
	signal(SIGPIPE, SIG_IGN);
	alarm(240);
	/* never touch someone else's segments: our keys must all be free */
	for (int n = 0; n <= NKEYS; n++)
		if (shmget(n < NKEYS ? K(n) : KNEG, 0, 0) >= 0) {
			fprintf(stderr,
				"%s: key %#x is in use; pick another BASEKEY\n",
				argv[0], (unsigned)(n < NKEYS ? K(n) : KNEG));
			ntracked = 0;
			main_pid = 0; /* and do not clean up on exit */
			return 3;
		}

	say("sysv_conform: SysV shm transcript (SHMLBA %lu, page %ld)",
	    (unsigned long)SHMLBA, sysconf(_SC_PAGESIZE));
	sec_shmget();
	sec_times();
	sec_shmat();
	sec_shmdt();
	sec_ipcset();
	sec_rmid();
	sec_info();
	sec_lock();
	sec_fork();
	sec_fork_times();
	sec_data();
	sec_threads();
	sec_perm();
	cleanup();
	say("== done");
	return 0;
}
