/*
 * sysv_random: a seeded, randomized sequence of SysV shared memory
 * operations over a few keys and a few processes, printed as a relational
 * transcript (segments are named seg#N in order of creation, processes
 * main and child#N, never raw ids, keys, pids, addresses or times).  The
 * same seed gives the same transcript on the kernel; tests/test_conform.py
 * runs it on the kernel and on shmfs (through libshmfs-preload.so) and
 * compares.
 *
 * usage: sysv_random SEED BASEKEY [N]     (keys BASEKEY .. BASEKEY+3)
 *
 * Processes: main forks children at random points; a child then runs the
 * operations main hands it, one at a time (main waits for each, so the
 * order is fixed), until main makes it exit, _exit, exec /bin/true or
 * kills it.  When run as root some children drop to uid 1000 first.
 * Every process keeps its own table of attachments, inherited at fork as
 * the attachments themselves are; segment labels and the expected
 * contents of every segment live in a MAP_SHARED anonymous mapping.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
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
#include <unistd.h>

#define NKEYS 4
#define MAXSEGS 400
#define MAXSZ 16384
#define MAXATT 8
#define MAXKIDS 3
#define MAXACTORS 256
#define PG 4096UL
#define OTHER_UID 1000
#define OTHER_GID 1000

enum op {
	OP_GET,
	OP_AT,
	OP_DT,
	OP_WRITE,
	OP_READ,
	OP_STAT,
	OP_SET,
	OP_RMID,
	OP_LOCK,
	OP_FORK,
	OP_END,
	OP_NOPS
};

struct cmd {
	int op;
	int seq;
	uint64_t r[4];
};

struct seg {
	int shmid;
	int keyidx; /* -1: IPC_PRIVATE */
	size_t size;
	int removed; /* an IPC_RMID of it succeeded */
	unsigned char shadow[MAXSZ];
};

struct shared {
	int nsegs;
	int nactors;
	pid_t actor_pid[MAXACTORS];
	struct seg segs[MAXSEGS];
};

struct att {
	int label;
	char *addr;
	int ro;
};

static struct shared *sh;
static key_t base_key;
static pid_t main_pid;
static int me;		 /* my actor number: 0 main, k child#k */
static int my_uid_other; /* this child runs as uid 1000 */
static struct att atts[MAXATT];
static int natts;

static struct {
	pid_t pid;
	int actor;
	int cmd_w; /* main -> child */
	int ack_r; /* child -> main */
} kids[MAXKIDS];
static int nkids;

static uint64_t rng;

static uint64_t next_rand(void)
{
	/* splitmix64 */
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char b[1024];
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

static const char *ename(int e)
{
	static char buf[32];

	switch (e) {
	case EINVAL:
		return "EINVAL";
	case EACCES:
		return "EACCES";
	case EPERM:
		return "EPERM";
	case ENOENT:
		return "ENOENT";
	case EEXIST:
		return "EEXIST";
	case EFAULT:
		return "EFAULT";
	case ENOMEM:
		return "ENOMEM";
	case ENOSPC:
		return "ENOSPC";
	case EMFILE:
		return "EMFILE";
	case EIDRM:
		return "EIDRM";
	case ENOSYS:
		return "ENOSYS";
	case EBADF:
		return "EBADF";
	case EIO:
		return "EIO";
	case ENOTCONN:
		return "ENOTCONN";
	}
	snprintf(buf, sizeof(buf), "errno%d", e);
	return buf;
}

static const char *actor_name(int a)
{
	static char buf[4][24];
	static int slot;

	if (a == 0)
		return "main";
	slot = (slot + 1) % 4;
	snprintf(buf[slot], sizeof(buf[slot]), "child#%d", a);
	return buf[slot];
}

static const char *pid_rel(pid_t p)
{
	if (p == 0)
		return "0";
	for (int a = 0; a < sh->nactors; a++)
		if (sh->actor_pid[a] == p)
			return actor_name(a);
	return "other";
}

static const char *label_of(int shmid)
{
	static char buf[4][24];
	static int slot;

	for (int i = sh->nsegs - 1; i >= 0; i--)
		if (sh->segs[i].shmid == shmid) {
			slot = (slot + 1) % 4;
			snprintf(buf[slot], sizeof(buf[slot]), "seg#%d", i);
			return buf[slot];
		}
	return "an unknown shmid";
}

static key_t key_of(int keyidx)
{
	return keyidx < 0 ? IPC_PRIVATE : base_key + keyidx;
}

static void cleanup(void)
{
	if (getpid() != main_pid)
		return;
	for (int i = 0; sh && i < sh->nsegs; i++)
		shmctl(sh->segs[i].shmid, IPC_RMID, NULL);
	for (int k = 0; k < NKEYS; k++)
		for (int j = 0; j < 8; j++) {
			int id = shmget(base_key + k, 0, 0);

			if (id < 0 || shmctl(id, IPC_RMID, NULL) < 0)
				break;
		}
}

static void on_fatal(int sig)
{
	static const char m[] = "sysv_random: killed by a signal (watchdog?)\n";

	if (write(2, m, sizeof(m) - 1) < 0) {
		/* nothing to do */
	}
	for (int i = 0; i < nkids; i++)
		kill(kids[i].pid, SIGKILL);
	cleanup();
	_exit(128 + sig);
}

/* ---- the operations, run by whichever actor main picked */

static const size_t sizes[] = {0, 1, 100, 4096, 4097, 8192, 12289, 16384};
static const int modes[] = {0600, 0640, 0644, 0666, 0400, 0000, 0777, 0604};
#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const char *kname(int keyidx)
{
	static char buf[16];

	if (keyidx < 0)
		return "IPC_PRIVATE";
	snprintf(buf, sizeof(buf), "key%d", keyidx);
	return buf;
}

static void flags_str(char *buf, size_t len, int flg)
{
	snprintf(buf, len, "%s%s%04o", flg & IPC_CREAT ? "IPC_CREAT|" : "",
		 flg & IPC_EXCL ? "IPC_EXCL|" : "", flg & 0777);
}

static void do_get(const char *who, int seq, const uint64_t *r)
{
	int keyidx = r[0] % 8 == 0 ? -1 : (int)(r[0] % NKEYS);
	size_t size = sizes[r[1] % NELEM(sizes)];
	int flg = modes[r[2] % NELEM(modes)];
	char fs[48];
	int id, e, known = 0;

	if (r[3] % 2)
		flg |= IPC_CREAT;
	if (r[3] % 5 == 1)
		flg |= IPC_EXCL;
	flags_str(fs, sizeof(fs), flg);
	id = shmget(key_of(keyidx), size, flg);
	e = errno;
	if (id < 0) {
		say("%5d %s: shmget %s size %zu %s -> %s", seq, who,
		    kname(keyidx), size, fs, ename(e));
		return;
	}
	for (int i = 0; i < sh->nsegs; i++)
		known |= sh->segs[i].shmid == id;
	if (!known && sh->nsegs < MAXSEGS) {
		struct seg *s = &sh->segs[sh->nsegs++];

		s->shmid = id;
		s->keyidx = keyidx;
		s->size = size;
		s->removed = 0;
		memset(s->shadow, 0, sizeof(s->shadow));
	}
	say("%5d %s: shmget %s size %zu %s -> %s%s", seq, who, kname(keyidx),
	    size, fs, label_of(id), known ? "" : " (new)");
}

static int pick_label(uint64_t r)
{
	int live[MAXSEGS], nlive = 0;

	/* mostly segments not yet removed; sometimes any, or a bogus shmid */
	if (sh->nsegs == 0 || r % 16 == 0)
		return -1;
	for (int i = 0; i < sh->nsegs; i++)
		if (!sh->segs[i].removed)
			live[nlive++] = i;
	if (nlive > 0 && r % 4 != 1)
		return live[(r >> 8) % (uint64_t)nlive];
	if (r % 3 == 0)
		return (int)((r >> 8) % (uint64_t)sh->nsegs);
	{
		int lo = sh->nsegs > 6 ? sh->nsegs - 6 : 0;

		return lo + (int)((r >> 8) % (uint64_t)(sh->nsegs - lo));
	}
}

static int label_id(int label)
{
	return label < 0 ? -1 : sh->segs[label].shmid;
}

static const char *lname(int label)
{
	static char buf[4][24];
	static int slot;

	if (label < 0)
		return "shmid -1";
	slot = (slot + 1) % 4;
	snprintf(buf[slot], sizeof(buf[slot]), "seg#%d", label);
	return buf[slot];
}

static void do_dt(const char *who, int seq, const uint64_t *r);
static void do_at(const char *who, int seq, const uint64_t *r);

static void do_at(const char *who, int seq, const uint64_t *r)
{
	int label = pick_label(r[0]);
	int ro = r[1] % 4 == 0;
	void *p;
	int e;

	if (natts == MAXATT) {
		do_dt(who, seq, r);
		return;
	}
	p = shmat(label_id(label), NULL, ro ? SHM_RDONLY : 0);
	e = errno;
	if (p == (void *)-1) {
		say("%5d %s: shmat %s%s -> %s", seq, who, lname(label),
		    ro ? " SHM_RDONLY" : "", ename(e));
		return;
	}
	atts[natts++] = (struct att){.label = label, .addr = p, .ro = ro};
	say("%5d %s: shmat %s%s -> ok, page aligned: %s", seq, who,
	    lname(label), ro ? " SHM_RDONLY" : "",
	    (uintptr_t)p % PG == 0 ? "yes" : "no");
}

static void do_dt(const char *who, int seq, const uint64_t *r)
{
	struct att *a;
	int i, rc, e;

	if (natts == 0) {
		static char local[1];

		rc = shmdt(local);
		e = errno;
		say("%5d %s: shmdt of a non-shm address -> %s", seq, who,
		    rc < 0 ? ename(e) : "ok");
		return;
	}
	i = (int)(r[2] % (uint64_t)natts);
	a = &atts[i];
	if (r[3] % 10 == 0) {
		int second = sh->segs[a->label].size > PG;
		char *bad = a->addr + (second ? PG : 1);

		rc = shmdt(bad);
		e = errno;
		say("%5d %s: shmdt inside the attachment of %s (%s) -> %s", seq,
		    who, lname(a->label), second ? "second page" : "unaligned",
		    rc < 0 ? ename(e) : "ok");
		return;
	}
	rc = shmdt(a->addr);
	e = errno;
	say("%5d %s: shmdt %s%s -> %s", seq, who, lname(a->label),
	    a->ro ? " (read-only)" : "", rc < 0 ? ename(e) : "ok");
	if (rc == 0)
		atts[i] = atts[--natts];
}

static void do_write(const char *who, int seq, const uint64_t *r)
{
	int cand[MAXATT], n = 0;
	struct att *a;
	struct seg *s;
	size_t off;
	unsigned char v = (unsigned char)(r[2] % 255 + 1);

	for (int i = 0; i < natts; i++)
		if (!atts[i].ro)
			cand[n++] = i;
	if (n == 0) {
		do_at(who, seq, r);
		return;
	}
	a = &atts[cand[r[0] % (uint64_t)n]];
	s = &sh->segs[a->label];
	off = (size_t)(r[1] % s->size);
	if (r[3] % 3 == 0) {
		/* a run of bytes, possibly across pages */
		size_t len = (size_t)(r[3] % 5000) + 1;

		if (off + len > s->size)
			len = s->size - off;
		for (size_t j = 0; j < len; j++) {
			a->addr[off + j] = (char)(v + j);
			s->shadow[off + j] = (unsigned char)(v + j);
		}
		say("%5d %s: write %s [%zu, +%zu)", seq, who, lname(a->label),
		    off, len);
		return;
	}
	a->addr[off] = (char)v;
	s->shadow[off] = v;
	say("%5d %s: write %s [%zu] = 0x%02x", seq, who, lname(a->label), off,
	    v);
}

static void do_read(const char *who, int seq, const uint64_t *r)
{
	struct att *a;
	struct seg *s;
	size_t off;
	unsigned char v;

	if (natts == 0) {
		do_at(who, seq, r);
		return;
	}
	a = &atts[r[0] % (uint64_t)natts];
	s = &sh->segs[a->label];
	off = (size_t)(r[1] % s->size);
	if (r[2] % 3 == 0) {
		size_t len = s->size - off, bad = 0;

		for (size_t j = 0; j < len; j++)
			bad += (unsigned char)a->addr[off + j] !=
			       s->shadow[off + j];
		say("%5d %s: read %s [%zu, +%zu): %s", seq, who,
		    lname(a->label), off, len, bad ? "MISMATCH" : "as written");
		return;
	}
	v = (unsigned char)a->addr[off];
	say("%5d %s: read %s [%zu] = 0x%02x%s", seq, who, lname(a->label), off,
	    v, v == s->shadow[off] ? "" : " MISMATCH");
}

static void do_stat(const char *who, int seq, const uint64_t *r)
{
	int label = pick_label(r[0]);
	struct shmid_ds ds;
	const char *k;

	if (shmctl(label_id(label), IPC_STAT, &ds) < 0) {
		say("%5d %s: IPC_STAT %s -> %s", seq, who, lname(label),
		    ename(errno));
		return;
	}
	if (ds.shm_perm.__key == IPC_PRIVATE)
		k = "private";
	else
		k = ds.shm_perm.__key == key_of(sh->segs[label].keyidx)
			? "its key"
			: "other";
	say("%5d %s: IPC_STAT %s -> nattch %lu segsz %zu mode %04o dest %s "
	    "locked %s "
	    "key %s uid %u gid %u cuid %u cpid %s lpid %s atime %s dtime %s",
	    seq, who, lname(label), (unsigned long)ds.shm_nattch,
	    (size_t)ds.shm_segsz, (unsigned)ds.shm_perm.mode,
	    ds.shm_perm.mode & SHM_DEST ? "yes" : "no",
	    ds.shm_perm.mode & SHM_LOCKED ? "yes" : "no", k,
	    (unsigned)ds.shm_perm.uid, (unsigned)ds.shm_perm.gid,
	    (unsigned)ds.shm_perm.cuid, pid_rel(ds.shm_cpid),
	    pid_rel(ds.shm_lpid), ds.shm_atime ? "set" : "0",
	    ds.shm_dtime ? "set" : "0");
}

static void do_set(const char *who, int seq, const uint64_t *r)
{
	int label = pick_label(r[0]);
	struct shmid_ds ds;
	int mode = modes[r[1] % NELEM(modes)];
	int rc, e;
	const char *uidtxt = "";

	memset(&ds, 0, sizeof(ds));
	if (label >= 0)
		shmctl(label_id(label), IPC_STAT, &ds);
	ds.shm_perm.mode = (unsigned short)mode;
	if (r[2] % 4 == 0) {
		ds.shm_perm.uid = OTHER_UID;
		uidtxt = " uid 1000";
	} else if (r[2] % 4 == 1) {
		ds.shm_perm.uid = 0;
		uidtxt = " uid 0";
	}
	rc = shmctl(label_id(label), IPC_SET, &ds);
	e = errno;
	say("%5d %s: IPC_SET %s mode %04o%s -> %s", seq, who, lname(label),
	    mode, uidtxt, rc < 0 ? ename(e) : "ok");
}

static void do_rmid(const char *who, int seq, const uint64_t *r)
{
	int label = pick_label(r[0]);
	int rc = shmctl(label_id(label), IPC_RMID, NULL);

	if (rc == 0)
		sh->segs[label].removed = 1;
	say("%5d %s: IPC_RMID %s -> %s", seq, who, lname(label),
	    rc < 0 ? ename(errno) : "ok");
}

static void do_lock(const char *who, int seq, const uint64_t *r)
{
	int label = pick_label(r[0]);
	int cmd = r[1] % 2 ? SHM_LOCK : SHM_UNLOCK;
	int rc = shmctl(label_id(label), cmd, NULL);

	say("%5d %s: %s %s -> %s", seq, who,
	    cmd == SHM_LOCK ? "SHM_LOCK" : "SHM_UNLOCK", lname(label),
	    rc < 0 ? ename(errno) : "ok");
}

static void run_op(const struct cmd *c)
{
	const char *who = actor_name(me);

	switch (c->op) {
	case OP_GET:
		do_get(who, c->seq, c->r);
		break;
	case OP_AT:
		do_at(who, c->seq, c->r);
		break;
	case OP_DT:
		do_dt(who, c->seq, c->r);
		break;
	case OP_WRITE:
		do_write(who, c->seq, c->r);
		break;
	case OP_READ:
		do_read(who, c->seq, c->r);
		break;
	case OP_STAT:
		do_stat(who, c->seq, c->r);
		break;
	case OP_SET:
		do_set(who, c->seq, c->r);
		break;
	case OP_RMID:
		do_rmid(who, c->seq, c->r);
		break;
	case OP_LOCK:
		do_lock(who, c->seq, c->r);
		break;
	default:
		break;
	}
}

/* ---- children */

static int read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

static void child_loop(int cmd_r, int ack_w)
{
	struct cmd c;

	while (read_full(cmd_r, &c, sizeof(c)) == 0) {
		if (c.op == OP_END) {
			const char *who = actor_name(me);

			switch (c.r[0]) {
			case 0:
				say("%5d %s: exit", c.seq, who);
				exit(0);
			case 1:
				say("%5d %s: _exit", c.seq, who);
				_exit(0);
			default:
				say("%5d %s: exec /bin/true", c.seq, who);
				execl("/bin/true", "true", (char *)NULL);
				_exit(127);
			}
		}
		run_op(&c);
		if (write(ack_w, "a", 1) != 1)
			_exit(1);
	}
	_exit(0);
}

static void fork_child(int seq, uint64_t r)
{
	int cmdp[2], ackp[2], actor;
	int as_other = geteuid() == 0 && r % 4 == 0;
	pid_t pid;

	if (nkids == MAXKIDS || sh->nactors == MAXACTORS)
		return;
	if (pipe(cmdp) < 0 || pipe(ackp) < 0) {
		say("%5d main: pipe failed", seq);
		return;
	}
	actor = sh->nactors++;
	pid = fork();
	if (pid < 0) {
		say("%5d main: fork failed", seq);
		sh->nactors--;
		return;
	}
	if (pid == 0) {
		me = actor;
		my_uid_other = as_other;
		for (int i = 0; i < nkids; i++) {
			close(kids[i].cmd_w);
			close(kids[i].ack_r);
		}
		nkids = 0;
		close(cmdp[1]);
		close(ackp[0]);
		if (as_other) {
			struct rlimit ml = {1 << 20, 1 << 20};

			setrlimit(RLIMIT_MEMLOCK, &ml);
			if (setgroups(0, NULL) < 0 ||
			    setresgid(OTHER_GID, OTHER_GID, OTHER_GID) < 0 ||
			    setresuid(OTHER_UID, OTHER_UID, OTHER_UID) < 0)
				_exit(3);
		}
		child_loop(cmdp[0], ackp[1]);
	}
	sh->actor_pid[actor] = pid;
	close(cmdp[0]);
	close(ackp[1]);
	kids[nkids].pid = pid;
	kids[nkids].actor = actor;
	kids[nkids].cmd_w = cmdp[1];
	kids[nkids].ack_r = ackp[0];
	nkids++;
	say("%5d main: fork %s%s (inherits %d attachments)", seq,
	    actor_name(actor), as_other ? " as uid 1000" : "", natts);
}

static void end_child(int seq, int i, uint64_t how)
{
	int status = 0;
	char name[24];

	snprintf(name, sizeof(name), "%s", actor_name(kids[i].actor));
	if (how % 4 == 3) {
		kill(kids[i].pid, SIGKILL);
		say("%5d main: kill %s", seq, name);
	} else {
		struct cmd c = {.op = OP_END, .seq = seq, .r = {how % 4}};

		if (write(kids[i].cmd_w, &c, sizeof(c)) != (ssize_t)sizeof(c))
			kill(kids[i].pid, SIGKILL);
	}
	while (waitpid(kids[i].pid, &status, 0) < 0 && errno == EINTR)
		;
	close(kids[i].cmd_w);
	close(kids[i].ack_r);
	say("%5d main: reaped %s: %s", seq, name,
	    WIFEXITED(status)
		? (WEXITSTATUS(status) == 0 ? "exited 0" : "exited non-zero")
	    : WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL
		? "killed"
		: "other status");
	kids[i] = kids[--nkids];
}

static void run_on(int i, struct cmd *c)
{
	char ack;

	if (write(kids[i].cmd_w, c, sizeof(*c)) != (ssize_t)sizeof(*c) ||
	    read(kids[i].ack_r, &ack, 1) != 1) {
		say("%5d main: %s is gone", c->seq, actor_name(kids[i].actor));
		kill(kids[i].pid, SIGKILL);
		waitpid(kids[i].pid, NULL, 0);
		close(kids[i].cmd_w);
		close(kids[i].ack_r);
		kids[i] = kids[--nkids];
	}
}

static int pick_op(uint64_t r)
{
	/* weights */
	static const int w[OP_NOPS] = {
	    [OP_GET] = 14,  [OP_AT] = 16,   [OP_DT] = 13, [OP_WRITE] = 12,
	    [OP_READ] = 12, [OP_STAT] = 12, [OP_SET] = 5, [OP_RMID] = 5,
	    [OP_LOCK] = 3,  [OP_FORK] = 3,  [OP_END] = 3,
	};
	int total = 0, x;

	for (int i = 0; i < OP_NOPS; i++)
		total += w[i];
	x = (int)(r % (uint64_t)total);
	for (int i = 0; i < OP_NOPS; i++) {
		if (x < w[i])
			return i;
		x -= w[i];
	}
	return OP_GET;
}

int main(int argc, char **argv)
{
	unsigned long long seed;
	unsigned long b;
	long n = 2000;
	char *end;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: %s SEED BASEKEY [N]\n", argv[0]);
		return 2;
	}
	errno = 0;
	seed = strtoull(argv[1], &end, 0);
	if (errno || *end) {
		fprintf(stderr, "%s: bad SEED %s\n", argv[0], argv[1]);
		return 2;
	}
	b = strtoul(argv[2], &end, 0);
	if (errno || *end || b == 0 || b > 0x7fffffffUL - NKEYS) {
		fprintf(stderr, "%s: bad BASEKEY %s\n", argv[0], argv[2]);
		return 2;
	}
	if (argc == 4) {
		n = strtol(argv[3], &end, 0);
		if (errno || *end || n < 0) {
			fprintf(stderr, "%s: bad N %s\n", argv[0], argv[3]);
			return 2;
		}
	}
	base_key = (key_t)b;
	rng = seed;
	main_pid = getpid();
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	sh->nactors = 1;
	sh->actor_pid[0] = main_pid;
	atexit(cleanup);
	signal(SIGALRM, on_fatal);
	signal(SIGINT, on_fatal);
	signal(SIGTERM, on_fatal);
	signal(SIGHUP, on_fatal);
	signal(SIGPIPE, SIG_IGN);
	alarm(300);
	/* never touch someone else's segments: our keys must all be free */
	for (int k = 0; k < NKEYS; k++)
		if (shmget(base_key + k, 0, 0) >= 0) {
			fprintf(stderr,
				"%s: key %#x is in use; pick another BASEKEY\n",
				argv[0], (unsigned)(base_key + k));
			main_pid = 0; /* and do not clean up on exit */
			return 3;
		}

	say("sysv_random seed %llu, %ld operations", seed, n);
	for (int seq = 1; seq <= n; seq++) {
		struct cmd c = {.seq = seq};
		uint64_t who = next_rand();

		c.op = pick_op(next_rand());
		for (int i = 0; i < 4; i++)
			c.r[i] = next_rand();
		if (c.op == OP_FORK) {
			if (nkids < MAXKIDS)
				fork_child(seq, c.r[0]);
			else
				end_child(seq, (int)(c.r[0] % (uint64_t)nkids),
					  c.r[1]);
			continue;
		}
		if (c.op == OP_END) {
			if (nkids > 0)
				end_child(seq, (int)(c.r[0] % (uint64_t)nkids),
					  c.r[1]);
			else
				fork_child(seq, c.r[0]);
			continue;
		}
		if (nkids > 0 && who % 2) {
			run_on((int)((who >> 8) % (uint64_t)nkids), &c);
			continue;
		}
		run_op(&c);
	}
	while (nkids > 0)
		end_child((int)n + 1, 0, 1);
	for (int i = 0; i < natts; i++)
		shmdt(atts[i].addr);
	natts = 0;
	say("final: %d segments made", sh->nsegs);
	for (int i = 0; i < sh->nsegs; i++) {
		struct shmid_ds ds;

		if (shmctl(sh->segs[i].shmid, IPC_STAT, &ds) < 0)
			continue;
		say("final seg#%d: nattch %lu segsz %zu mode %04o key %s", i,
		    (unsigned long)ds.shm_nattch, (size_t)ds.shm_segsz,
		    (unsigned)ds.shm_perm.mode,
		    ds.shm_perm.__key == IPC_PRIVATE ? "private" : "its key");
	}
	cleanup();
	say("done");
	return 0;
}
