/*
 * shmbench: one measurement of SysV shared memory, run either on the
 * kernel's own shmget/shmat/shmdt/shmctl or on a shmfs mount through
 * libshmfs (same calls, same arguments).  bench/run.py mounts the daemon,
 * runs this program for each side in alternating rounds and builds the
 * table; see bench/README.md for what each mode measures.
 *
 * Results go to stdout as "name value" lines.  A line "@name" is a sync
 * point: the program waits there for one line on stdin (run.py reads the
 * daemon's request counters or memory at that moment); at end of file it
 * just goes on, so every mode also runs on its own.  Progress and errors
 * go to stderr.  Segments this program creates are removed before it
 * exits, also on SIGINT/SIGTERM/SIGHUP and on error.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmfs.h"

#define MIB (1024.0 * 1024.0)
#define CHUNK (2u << 20) /* rewrite loops look at the clock once per chunk */

struct backend {
	const char *name;
	int (*get)(key_t key, size_t size, int flags);
	void *(*at)(int shmid, const void *addr, int flags);
	int (*dt)(const void *addr);
	int (*ctl)(int shmid, int cmd, struct shmid_ds *buf);
};

static const struct backend backends[] = {
	{ "kernel", shmget, shmat, shmdt, shmctl },
	{ "shmfs", shmfs_shmget, shmfs_shmat, shmfs_shmdt, shmfs_shmctl },
};

static const struct backend *B;
static key_t key_base = 0x5b3c0000;
static pid_t daemon_pid;
static size_t page;

/* ---- segments we own, removed on any exit ---- */

static int *owned;
static size_t nowned, owned_cap;
static volatile sig_atomic_t in_child;

static void remove_owned(void)
{
	size_t i;

	if (in_child)
		return;
	for (i = 0; i < nowned; i++)
		if (owned[i] >= 0)
			B->ctl(owned[i], IPC_RMID, NULL);
	nowned = 0;
}

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt,
								...)
{
	va_list ap;
	int e = errno;

	fprintf(stderr, "shmbench[%s]: ", B ? B->name : "?");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (e)
		fprintf(stderr, ": %s", strerror(e));
	fputc('\n', stderr);
	remove_owned();
	exit(1);
}

static void on_signal(int sig)
{
	remove_owned();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Returns the slot that track_drop takes. */
static size_t track(int shmid)
{
	if (nowned == owned_cap) {
		size_t cap = owned_cap ? 2 * owned_cap : 64;
		int *n = realloc(owned, cap * sizeof(*n));

		if (!n)
			die("realloc");
		owned = n;
		owned_cap = cap;
	}
	owned[nowned] = shmid;
	return nowned++;
}

static void track_drop(size_t slot)
{
	owned[slot] = -1;
	while (nowned && owned[nowned - 1] < 0)
		nowned--;
}

struct seg {
	int id;
	size_t slot;
};

static int seg_try_create(key_t key, size_t size, struct seg *s)
{
	int id = B->get(key, size, IPC_CREAT | IPC_EXCL | 0600);

	if (id < 0)
		return -errno;
	s->id = id;
	s->slot = track(id);
	return 0;
}

static struct seg seg_create(key_t key, size_t size)
{
	struct seg s;
	int r = seg_try_create(key, size, &s);

	if (r < 0) {
		errno = -r;
		die("shmget(%#x, %zu, IPC_CREAT|IPC_EXCL)", (unsigned)key,
		    size);
	}
	return s;
}

static void seg_remove(struct seg *s)
{
	if (B->ctl(s->id, IPC_RMID, NULL) < 0)
		die("shmctl(%d, IPC_RMID)", s->id);
	track_drop(s->slot);
	s->id = -1;
}

static void *attach(int id)
{
	void *p = B->at(id, NULL, 0);

	if (p == (void *)-1)
		die("shmat(%d)", id);
	return p;
}

static void detach(const void *p)
{
	if (B->dt(p) < 0)
		die("shmdt(%p)", p);
}

/* ---- time, output, sync points ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double since_s(uint64_t t0)
{
	return (double)(now_ns() - t0) / 1e9;
}

__attribute__((format(printf, 2, 3))) static void result(const char *name,
							 const char *fmt, ...)
{
	va_list ap;

	printf("%s ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

__attribute__((format(printf, 1, 2))) static void progress(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "  shmbench[%s]: ", B->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void sync_point(const char *name)
{
	char line[64];

	printf("@%s\n", name);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		clearerr(stdin);
}

/* utime + stime of the daemon (all its threads), in seconds. */
static double daemon_cpu_s(void)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	FILE *f;
	int i;

	if (daemon_pid <= 0)
		return -1.0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)daemon_pid);
	f = fopen(path, "r");
	if (!f)
		die("%s", path);
	if (!fgets(buf, sizeof(buf), f))
		die("read %s", path);
	fclose(f);
	/* The name in parentheses may hold spaces: count from its end. */
	p = strrchr(buf, ')');
	if (!p)
		die("parse %s", path);
	p++;
	for (i = 3; i <= 13 && p; i++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p, " %llu %llu", &ut, &st) != 2)
		die("parse %s", path);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Keeps the compiler from dropping stores nobody reads. */
static void clobber(void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
}

static unsigned long parse_ul(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		goto bad;
	switch (*end) {
	case 'K':
		v <<= 10;
		end++;
		break;
	case 'M':
		v <<= 20;
		end++;
		break;
	case 'G':
		v <<= 30;
		end++;
		break;
	}
	if (*end || v > ULONG_MAX)
		goto bad;
	return (unsigned long)v;
bad:
	fprintf(stderr, "shmbench: bad %s '%s'\n", what, s);
	exit(2);
}

/* ---- 1. control path ---- */

enum ctl_kind {
	K_GET,
	K_PRIVATE_RMID,
	K_AT_DT,
	K_AT_STORE_DT,
	K_STAT,
	K_SET,
	K_FORK,
	K_NKINDS
};

static const char *const ctl_names[K_NKINDS] = {
	"get_existing", "private_rmid", "at_dt",	  "at_store_dt",
	"ipc_stat",	"ipc_set",	"fork_exit_wait",
};

static void ctl_call(enum ctl_kind k, const struct seg *s, key_t key,
		     unsigned long i)
{
	struct shmid_ds ds;
	struct seg t;
	pid_t pid;
	char *p;

	switch (k) {
	case K_GET:
		if (B->get(key, 0, 0) != s->id)
			die("shmget(existing %#x)", (unsigned)key);
		break;
	case K_PRIVATE_RMID:
		t = seg_create(IPC_PRIVATE, page);
		seg_remove(&t);
		break;
	case K_AT_DT:
		detach(attach(s->id));
		break;
	case K_AT_STORE_DT:
		p = attach(s->id);
		memset(p, (int)(i & 0xff), page);
		detach(p);
		break;
	case K_STAT:
		if (B->ctl(s->id, IPC_STAT, &ds) < 0)
			die("shmctl(%d, IPC_STAT)", s->id);
		break;
	case K_SET:
		memset(&ds, 0, sizeof(ds));
		ds.shm_perm.uid = getuid();
		ds.shm_perm.gid = getgid();
		ds.shm_perm.mode = 0600;
		if (B->ctl(s->id, IPC_SET, &ds) < 0)
			die("shmctl(%d, IPC_SET)", s->id);
		break;
	case K_FORK:
		/* the caller holds an attachment: the child inherits it */
		pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0)
			_exit(0);
		if (waitpid(pid, NULL, 0) != pid)
			die("waitpid");
		break;
	default:
		break;
	}
}

/* µs per call of each control operation, n timed calls after a warm-up. */
static void mode_ctl(unsigned long n)
{
	key_t key = key_base + 1;
	struct seg s = seg_create(key, page);
	unsigned long warm = n / 10 < 1000 ? n / 10 : 1000, i;
	char name[64];
	int k;

	for (k = 0; k < K_NKINDS; k++) {
		/* fork+exit+wait takes ~100 µs: a tenth of the calls */
		unsigned long m = k == K_FORK ? n / 10 + 1 : n;
		void *held = k == K_FORK ? attach(s.id) : NULL;
		uint64_t t0;

		for (i = 0; i < warm && i < m; i++)
			ctl_call(k, &s, key, i);
		t0 = now_ns();
		for (i = 0; i < m; i++)
			ctl_call(k, &s, key, i);
		snprintf(name, sizeof(name), "ctl.%s", ctl_names[k]);
		result(name, "%.4f", (double)(now_ns() - t0) / 1e3 / (double)m);
		if (held)
			detach(held);
	}
	seg_remove(&s);
}

/*
 * ns per IPC_STAT of a segment that h processes hold (h in COUNTS): each
 * holder is a process of its own, forked before anyone attached, so
 * that each attaches in a session (and on shmfs a tally) of its own.
 * The first calls map the holders' tallies (shmfs); only later ones are
 * timed.
 */
static void holders_once(unsigned long h, unsigned long n)
{
	struct seg s = seg_create(key_base + 3, page);
	unsigned long i, warm = n / 10 < 1000 ? n / 10 : 1000;
	struct shmid_ds ds;
	pid_t *kids = calloc(h, sizeof(*kids));
	char name[64], c;
	int go[2], ready[2];
	uint64_t t0;
	void *mine;

	if (!kids || pipe(go) < 0 || pipe(ready) < 0)
		die("holders: setup");
	for (i = 1; i < h; i++) {
		kids[i] = fork();
		if (kids[i] < 0)
			die("fork");
		if (kids[i] == 0) {
			void *p;

			in_child = 1;
			close(go[1]);
			p = B->at(s.id, NULL, 0);
			c = p == (void *)-1 ? 'f' : 'r';
			if (write(ready[1], &c, 1) != 1)
				_exit(1);
			/* hold until the parent closes go */
			while (read(go[0], &c, 1) > 0)
				;
			_exit(0);
		}
	}
	for (i = 1; i < h; i++)
		if (read(ready[0], &c, 1) != 1 || c != 'r')
			die("holders: a child could not attach");
	mine = attach(s.id);
	for (i = 0; i < warm; i++)
		if (B->ctl(s.id, IPC_STAT, &ds) < 0)
			die("shmctl(IPC_STAT)");
	if (ds.shm_nattch != h) {
		errno = 0;
		die("holders: nattch %lu, not %lu",
		    (unsigned long)ds.shm_nattch, h);
	}
	t0 = now_ns();
	for (i = 0; i < n; i++)
		B->ctl(s.id, IPC_STAT, &ds);
	snprintf(name, sizeof(name), "holders.%lu.ipc_stat", h);
	result(name, "%.1f", (double)(now_ns() - t0) / (double)n);
	close(go[1]);
	close(go[0]);
	for (i = 1; i < h; i++)
		waitpid(kids[i], NULL, 0);
	close(ready[0]);
	close(ready[1]);
	free(kids);
	detach(mine);
	seg_remove(&s);
}

static void mode_holders(const char *counts, unsigned long n)
{
	char *list = strdup(counts), *tok, *save = NULL;

	if (!list)
		die("strdup");
	for (tok = strtok_r(list, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save))
		holders_once(parse_ul(tok, "COUNT"), n);
	free(list);
}

/* ---- 2. exactly n calls of one kind between @ready and @done ---- */

enum count_op { C_GET, C_CREATE, C_AT, C_DT, C_DTDIRTY, C_RMID, C_CTL };

static const struct {
	const char *name;
	enum count_op op;
	int cmd; /* for C_CTL */
} count_kinds[] = {
	{ "get", C_GET, 0 },
	{ "create", C_CREATE, 0 },
	{ "at", C_AT, 0 },
	{ "dt", C_DT, 0 },
	{ "dtdirty", C_DTDIRTY, 0 },
	{ "rmid", C_RMID, 0 },
	{ "stat", C_CTL, IPC_STAT },
	{ "set", C_CTL, IPC_SET },
	{ "info", C_CTL, IPC_INFO },
	{ "shminfo", C_CTL, SHM_INFO },
	{ "shmstat", C_CTL, SHM_STAT },
	{ "lock", C_CTL, SHM_LOCK },
	{ "unlock", C_CTL, SHM_UNLOCK },
};

/*
 * Everything a call needs is made before @ready and undone after @done,
 * so that run.py's counter readings bracket exactly the n calls.
 */
static void mode_count(const char *kind, unsigned long n)
{
	key_t key = key_base + 2;
	struct seg s, *segs;
	struct shmid_ds ds;
	enum count_op op = C_CTL;
	void **addrs;
	unsigned long i;
	int cmd = -1, arg = 0;
	size_t k;

	for (k = 0; k < sizeof(count_kinds) / sizeof(*count_kinds); k++)
		if (!strcmp(kind, count_kinds[k].name))
			break;
	if (k == sizeof(count_kinds) / sizeof(*count_kinds)) {
		fprintf(stderr, "shmbench: unknown count kind '%s'\n", kind);
		exit(2);
	}
	op = count_kinds[k].op;
	cmd = count_kinds[k].cmd;
	segs = calloc(n, sizeof(*segs));
	addrs = calloc(n, sizeof(*addrs));
	if (!segs || !addrs)
		die("calloc");

	s = seg_create(key, page);
	if (B->ctl(s.id, IPC_STAT, &ds) < 0)
		die("shmctl(IPC_STAT)");
	if (op == C_CTL) {
		arg = s.id;
		if (cmd == IPC_INFO || cmd == SHM_INFO)
			arg = 0;
		/* Linux and shmfs both make an id as seq << 15 | index. */
		if (cmd == SHM_STAT)
			arg = s.id & 0x7fff;
		if (cmd == SHM_STAT && B->ctl(arg, SHM_STAT, &ds) != s.id) {
			errno = 0;
			die("SHM_STAT(%d) does not give shmid %d", arg, s.id);
		}
		if (cmd == IPC_SET)
			ds.shm_perm.mode = 0600;
	}
	for (i = 0; i < n; i++) {
		if (op == C_RMID || op == C_DTDIRTY)
			segs[i] = seg_create(IPC_PRIVATE, page);
		if (op == C_DT)
			addrs[i] = attach(s.id);
		/* One dirty page in each of n segments. */
		if (op == C_DTDIRTY) {
			addrs[i] = attach(segs[i].id);
			memset(addrs[i], 0x11, page);
		}
	}

	sync_point("ready");
	for (i = 0; i < n; i++) {
		switch (op) {
		case C_GET:
			if (B->get(key, 0, 0) != s.id)
				die("shmget(existing)");
			break;
		case C_CREATE:
			segs[i] = seg_create(IPC_PRIVATE, page);
			break;
		case C_AT:
			addrs[i] = attach(s.id);
			break;
		case C_DT:
		case C_DTDIRTY:
			detach(addrs[i]);
			break;
		case C_RMID:
			seg_remove(&segs[i]);
			break;
		case C_CTL:
			if (B->ctl(arg, cmd, &ds) < 0)
				die("shmctl(%d, %d)", arg, cmd);
			break;
		}
	}
	sync_point("done");

	for (i = 0; i < n; i++) {
		if (op == C_AT)
			detach(addrs[i]);
		if (op == C_CREATE || op == C_DTDIRTY)
			seg_remove(&segs[i]);
	}
	if (cmd == SHM_LOCK && B->ctl(s.id, SHM_UNLOCK, NULL) < 0)
		die("SHM_UNLOCK");
	seg_remove(&s);
	free(segs);
	free(addrs);
}

/* ---- 3. data path ---- */

static double gbps(double bytes, double s)
{
	return bytes / s / 1e9;
}

/* Stores into every byte of a fresh segment; then the detach of it. */
static void mode_firsttouch(size_t size)
{
	struct seg s = seg_create(IPC_PRIVATE, size);
	char *p = attach(s.id);
	uint64_t t0 = now_ns();
	double dt;

	memset(p, 0x5a, size);
	clobber(p);
	dt = since_s(t0);
	result("firsttouch.gbps", "%.4f", gbps((double)size, dt));
	t0 = now_ns();
	detach(p);
	result("firsttouch.detach_ms", "%.4f", since_s(t0) * 1e3);
	seg_remove(&s);
}

/* memcpy into and out of a faulted segment, each for at least min_s. */
static void mode_memcpy(size_t size, double min_s)
{
	struct seg s = seg_create(IPC_PRIVATE, size);
	char *p = attach(s.id), *buf = aligned_alloc(4096, size);
	unsigned long reps;
	uint64_t t0;
	int dir;

	if (!buf)
		die("aligned_alloc(%zu)", size);
	memset(buf, 0x33, size);
	memset(p, 0x44, size);
	for (dir = 0; dir < 2; dir++) {
		t0 = now_ns();
		reps = 0;
		do {
			if (dir == 0)
				memcpy(p, buf, size);
			else
				memcpy(buf, p, size);
			clobber(dir ? buf : p);
			reps++;
		} while (reps < 3 || since_s(t0) < min_s);
		result(dir ? "memcpy.out_gbps" : "memcpy.in_gbps", "%.4f",
		       gbps((double)size * (double)reps, since_s(t0)));
	}
	free(buf);
	detach(p);
	seg_remove(&s);
}

/*
 * Rewrites the segment chunk by chunk for `seconds`, after one pass that
 * faults it in (capped at `seconds` too: if the hot set is slow enough
 * that one pass does not finish, the window starts anyway).
 */
static void mode_rewrite(size_t size, double seconds)
{
	struct seg s = seg_create(IPC_PRIVATE, size);
	char *p = attach(s.id);
	double bytes = 0, cpu0, cpu1, el;
	size_t off = 0, len;
	uint64_t t0 = now_ns();
	int val = 1;

	while (off < size && since_s(t0) < seconds) {
		len = size - off < CHUNK ? size - off : CHUNK;
		memset(p + off, val, len);
		off += len;
	}
	clobber(p);
	result("rewrite.prefault_s", "%.4f", since_s(t0));
	result("rewrite.prefault_complete", "%d", off >= size);
	progress("rewrite %.0f MiB: faulted in %.2f s%s, now %.0f s window",
		 (double)size / MIB, since_s(t0),
		 off >= size ? "" : " (incomplete)", seconds);

	off = 0;
	cpu0 = daemon_cpu_s();
	t0 = now_ns();
	do {
		len = size - off < CHUNK ? size - off : CHUNK;
		memset(p + off, val, len);
		clobber(p + off);
		bytes += (double)len;
		off += len;
		if (off >= size) {
			off = 0;
			val = (val + 1) & 0xff;
		}
	} while ((el = since_s(t0)) < seconds);
	cpu1 = daemon_cpu_s();
	result("rewrite.gbps", "%.4f", gbps(bytes, el));
	result("rewrite.seconds", "%.4f", el);
	if (daemon_pid > 0)
		result("rewrite.daemon_cpu_s", "%.4f", cpu1 - cpu0);
	t0 = now_ns();
	detach(p);
	result("rewrite.detach_ms", "%.4f", since_s(t0) * 1e3);
	seg_remove(&s);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

struct line {
	uint64_t ping;
	uint64_t pong;
	uint64_t ready;
};

/* Waits until *w == v; gives up if the peer is gone. */
static void spin_until(uint64_t *w, uint64_t v, pid_t peer)
{
	unsigned long spins = 0;

	while (__atomic_load_n(w, __ATOMIC_ACQUIRE) != v) {
		cpu_relax();
		if (++spins % (1ul << 22) == 0) {
			if (peer > 0 && waitpid(peer, NULL, WNOHANG) != 0) {
				errno = 0;
				die("ping-pong peer %d is gone", (int)peer);
			}
			if (peer == 0 && getppid() == 1)
				_exit(1);
		}
	}
}

/*
 * Pins the caller to the which-th CPU it may run on (0 or 1), so that the
 * two ping-pong processes spin on different CPUs.  With one CPU, no pin.
 */
static int pin_cpu(int which)
{
	cpu_set_t set, one;
	int cpu, seen = 0;

	if (sched_getaffinity(0, sizeof(set), &set) < 0 || CPU_COUNT(&set) < 2)
		return -1;
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &set) || seen++ != which)
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		if (sched_setaffinity(0, sizeof(one), &one) < 0)
			die("sched_setaffinity(%d)", cpu);
		return cpu;
	}
	return -1;
}

#define PP_BATCHES 10

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/*
 * Two processes bounce a counter through one cache line of a segment: the
 * parent attaches, forks, and the child uses the attach it inherited (as
 * a parent handing a segment to its workers does).
 */
static void mode_pingpong(unsigned long n)
{
	struct seg s = seg_create(IPC_PRIVATE, page);
	unsigned long per, warm, total, i;
	double batch[PP_BATCHES];
	uint64_t t0 = 0, t1, tb = 0;
	struct line *l;
	int status;
	size_t b = 0;
	pid_t pid;

	per = n / PP_BATCHES ? n / PP_BATCHES : 1;
	n = per * PP_BATCHES;
	warm = n / 10 + 1000;
	total = warm + n;

	l = attach(s.id);
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		in_child = 1;
		pin_cpu(1);
		__atomic_store_n(&l->ready, 1, __ATOMIC_RELEASE);
		for (i = 1; i <= total; i++) {
			spin_until(&l->ping, i, 0);
			__atomic_store_n(&l->pong, i, __ATOMIC_RELEASE);
		}
		detach(l);
		_exit(0);
	}
	if (pin_cpu(0) < 0)
		progress("fewer than two CPUs: ping-pong not pinned");
	spin_until(&l->ready, 1, pid);
	for (i = 1; i <= total; i++) {
		if (i > warm && (i - warm - 1) % per == 0) {
			t1 = now_ns();
			if (i > warm + 1)
				batch[b++] = (double)(t1 - tb) / (double)per;
			else
				t0 = t1;
			tb = t1;
		}
		__atomic_store_n(&l->ping, i, __ATOMIC_RELEASE);
		spin_until(&l->pong, i, pid);
	}
	t1 = now_ns();
	batch[b++] = (double)(t1 - tb) / (double)per;
	qsort(batch, b, sizeof(*batch), cmp_double);
	/* The median batch: a neighbour's burst on the host spoils one or two
	 * batches, not the result. */
	result("pingpong.ns", "%.2f", batch[b / 2]);
	result("pingpong.mean_ns", "%.2f", (double)(t1 - t0) / (double)n);
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		errno = 0;
		die("ping-pong child failed (status %#x)", status);
	}
	detach(l);
	seg_remove(&s);
}

/* ---- 4. scale ---- */

static double lat_get_us(const struct seg *segs, size_t count, key_t base,
			 unsigned long n)
{
	unsigned long i, warm = n / 10;
	uint64_t t0 = 0;
	size_t j;

	/* A stride through every live key, not one hot key. */
	for (i = 0; i < warm + n; i++) {
		if (i == warm)
			t0 = now_ns();
		j = (size_t)((i * 7919ul) % count);
		if (B->get(base + (key_t)j, 0, 0) != segs[j].id)
			die("shmget(existing %#x)", (unsigned)(base + j));
	}
	return (double)(now_ns() - t0) / 1e3 / (double)n;
}

static double lat_stat_us(const struct seg *segs, size_t count, unsigned long n)
{
	unsigned long i, warm = n / 10;
	struct shmid_ds ds;
	uint64_t t0 = 0;
	size_t j;

	for (i = 0; i < warm + n; i++) {
		if (i == warm)
			t0 = now_ns();
		j = (size_t)((i * 7919ul) % count);
		if (B->ctl(segs[j].id, IPC_STAT, &ds) < 0)
			die("shmctl(%d, IPC_STAT)", segs[j].id);
	}
	return (double)(now_ns() - t0) / 1e3 / (double)n;
}

/*
 * counts: ascending, comma-separated.  One-page segments with keys from
 * key_base + 0x100 up; at each count, shmget and IPC_STAT latency over
 * all live segments.  Sync points @start (nothing created yet) and @full
 * (all created) let run.py measure memory, `ls -l` and `cat status`.
 */
static void mode_scale(const char *counts, unsigned long n)
{
	key_t base = key_base + 0x100;
	size_t have = 0, cap = 0, want, i;
	struct seg *segs = NULL;
	struct shmid_ds ds;
	const char *c = counts;
	char name[64], *end;
	double create_s = 0;
	int full = 0;

	/* Let the library find its mount before the first sync point. */
	if (B->ctl(0, IPC_INFO, &ds) < 0)
		die("shmctl(IPC_INFO)");
	sync_point("start");
	while (*c && !full) {
		uint64_t t0;

		want = strtoul(c, &end, 10);
		if (end == c || (*end && *end != ',')) {
			fprintf(stderr, "shmbench: bad counts '%s'\n", counts);
			exit(2);
		}
		c = *end ? end + 1 : end;
		if (want > cap) {
			struct seg *ns = realloc(segs, want * sizeof(*ns));

			if (!ns)
				die("realloc");
			segs = ns;
			cap = want;
		}
		t0 = now_ns();
		for (; have < want; have++) {
			int r = seg_try_create(base + (key_t)have, page,
					       &segs[have]);

			if (r == -ENOSPC || r == -ENOMEM) {
				progress("table full at %zu segments (%s)",
					 have, strerror(-r));
				result("scale.full_errno", "%d", -r);
				full = 1;
				break;
			}
			if (r < 0) {
				errno = -r;
				die("shmget(%#x, create)",
				    (unsigned)(base + have));
			}
		}
		create_s += since_s(t0);
		if (!have)
			die("no segment created");
		snprintf(name, sizeof(name), "scale.%zu.created", want);
		result(name, "%zu", have);
		snprintf(name, sizeof(name), "scale.%zu.get_us", want);
		result(name, "%.4f", lat_get_us(segs, have, base, n));
		snprintf(name, sizeof(name), "scale.%zu.stat_us", want);
		result(name, "%.4f", lat_stat_us(segs, have, n));
		progress("%zu live segments measured", have);
	}
	result("scale.created", "%zu", have);
	result("scale.create_us", "%.4f", create_s * 1e6 / (double)have);
	sync_point("full");
	for (i = 0; i < have; i++)
		seg_remove(&segs[i]);
	free(segs);
}

/* ---- 5. memory ---- */

/* One segment written in full and attached, held at @written. */
static void mode_mem(size_t size)
{
	struct seg s = seg_create(IPC_PRIVATE, size);
	char *p = attach(s.id);
	uint64_t t0 = now_ns();

	memset(p, 0x77, size);
	clobber(p);
	result("mem.write_s", "%.4f", since_s(t0));
	sync_point("written");
	detach(p);
	seg_remove(&s);
}

/* ---- main ---- */

static void usage(void)
{
	fprintf(stderr,
		"usage: shmbench -b kernel|shmfs [-k KEYBASE] [-p DAEMONPID] "
		"MODE ARGS\n"
		"  ctl N                   µs per call of each control call\n"
		"  holders COUNTS N        ns per IPC_STAT with each count of "
		"holding processes\n"
		"  count KIND N            N calls of KIND (get create at dt "
		"dtdirty stat set rmid\n"
		"                          info shminfo shmstat lock unlock) "
		"between @ready, @done\n"
		"  firsttouch BYTES        first-touch GB/s, then shmdt ms\n"
		"  memcpy BYTES SECONDS    memcpy in/out GB/s\n"
		"  rewrite BYTES SECONDS   rewrite GB/s, daemon CPU s (-p)\n"
		"  pingpong N              ns per round trip\n"
		"  scale COUNTS N          shmget/IPC_STAT µs at each count "
		"(10,1000,...)\n"
		"  mem BYTES               write, attach, hold at @written\n"
		"BYTES take K, M, G.  SHMFS_ROOT names the shmfs mount.\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *mode;
	size_t i;
	int opt;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "b:k:p:h")) != -1) {
		switch (opt) {
		case 'b':
			for (i = 0; i < sizeof(backends) / sizeof(*backends);
			     i++)
				if (!strcmp(optarg, backends[i].name))
					B = &backends[i];
			if (!B)
				usage();
			break;
		case 'k':
			key_base = (key_t)parse_ul(optarg, "key base");
			break;
		case 'p':
			daemon_pid = (pid_t)parse_ul(optarg, "pid");
			break;
		default:
			usage();
		}
	}
	if (!B || optind >= argc)
		usage();
	page = (size_t)sysconf(_SC_PAGESIZE);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	signal(SIGPIPE, on_signal);

	mode = argv[optind++];
	argc -= optind;
	argv += optind;
	if (!strcmp(mode, "ctl") && argc == 1)
		mode_ctl(parse_ul(argv[0], "N"));
	else if (!strcmp(mode, "holders") && argc == 2)
		mode_holders(argv[0], parse_ul(argv[1], "N"));
	else if (!strcmp(mode, "count") && argc == 2)
		mode_count(argv[0], parse_ul(argv[1], "N"));
	else if (!strcmp(mode, "firsttouch") && argc == 1)
		mode_firsttouch(parse_ul(argv[0], "BYTES"));
	else if (!strcmp(mode, "memcpy") && argc == 2)
		mode_memcpy(parse_ul(argv[0], "BYTES"), atof(argv[1]));
	else if (!strcmp(mode, "rewrite") && argc == 2)
		mode_rewrite(parse_ul(argv[0], "BYTES"), atof(argv[1]));
	else if (!strcmp(mode, "pingpong") && argc == 1)
		mode_pingpong(parse_ul(argv[0], "N"));
	else if (!strcmp(mode, "scale") && argc == 2)
		mode_scale(argv[0], parse_ul(argv[1], "N"));
	else if (!strcmp(mode, "mem") && argc == 1)
		mode_mem(parse_ul(argv[0], "BYTES"));
	else
		usage();
	remove_owned();
	return 0;
}
