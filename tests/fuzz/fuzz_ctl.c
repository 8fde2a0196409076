/*
 * Fuzz target for the control requests: arbitrary bytes become the ioctl
 * payloads of .ctl (struct shmfs_get, shmfs_ctl, shmfs_fork, shmfs_access,
 * shmfs_detach), handed to the seg.c entry points exactly as ops.c hands
 * them over, mixed with the other calls ops.c makes (lookups and forgets,
 * opens and attaches, releases, chmod/chown, unlink, sessions, status),
 * each under a caller made up from the input (uid, gid, supplementary
 * groups, pid), on a table with small limits taken from the input.
 *
 * Beside the table runs a reference model of what SysV and shmfs.1
 * promise: which segments exist, their ipcperm outcome, every process's
 * attaches and sessions, the pending forks, held lookups and open
 * handles.  After every step the table is checked against the model and
 * against itself: IPC_STAT, SHM_STAT_ANY, SHM_INFO, IPC_INFO, seg_walk,
 * the lookups, the status text, the published copy and seg_get_stats
 * must all tell the same story; nattch must equal the model's count of
 * attaches; a request that fails must change nothing; the errno of each
 * failure must be the one the model predicts.  At the end every caller
 * goes away (sessions closed, forks aborted, handles released, lookups
 * forgotten, segments removed) and the table must be empty with its
 * memory given back; then seg_fini, under ASan and UBSan.
 *
 * Input: 4 bytes of configuration, then operations.  Each operation is
 * one byte (low 5 bits: the operation; high 3 bits: which fields to
 * steer towards known shmids, small sizes and valid commands, so that
 * the fuzzer reaches deep states) followed by the caller and the raw
 * payload; a short input reads as zeros.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#include "seg.h"

#define PAGE 4096u
#define NPID 8			/* callers are processes 1..NPID */
#define MAXSEG 160		/* model entries: live + dead still referenced */
#define MAXFORK 32
#define MAXHANDLE 32
#define MAXHOLD 32
#define MAXPUBKEY 64
#define MAXSLOT 80		/* shmmni <= 72, so every slot is below this */
#define MAXOPS 400

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int op_no;
static const char *op_name = "setup";

static void fail(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz_ctl: op %d (%s): ", op_no, op_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond))                                                 \
			fail(__VA_ARGS__);                                   \
	} while (0)

/*
 * A bug of src/ that fuzzing found and that is not fixed yet: its input
 * goes into the corpus as known-NAME (replayed as an expected failure),
 * the check that finds it is skipped when tolerated("NAME"), and `make
 * fuzz` names it in FUZZ_TOLERATE (SHMFS_FUZZ_TOLERATE) so that the
 * fuzzer goes on looking for others.  seg_fini-nrefs was the first.
 */
static bool __attribute__((unused)) tolerated(const char *bug)
{
	const char *env = getenv("SHMFS_FUZZ_TOLERATE");

	return env && strstr(env, bug);
}

/* ---- input ---- */

static struct {
	const uint8_t *p;
	size_t n;
} in;

static void rd(void *out, size_t len)
{
	size_t k = len < in.n ? len : in.n;

	memcpy(out, in.p, k);
	memset((uint8_t *)out + k, 0, len - k);
	in.p += k;
	in.n -= k;
}

static uint8_t rd8(void)
{
	uint8_t v;

	rd(&v, 1);
	return v;
}

static uint32_t rd32(void)
{
	uint32_t v;

	rd(&v, 4);
	return v;
}

static uint64_t rd64(void)
{
	uint64_t v;

	rd(&v, 8);
	return v;
}

/* ---- the fake configuration ---- */

static int64_t clock_now;
static struct seg_limits lim;	/* in force: given, else the fake host's */

static int64_t fake_now(void)
{
	return clock_now;
}

static unsigned host_reads;

static void fake_host_limits(struct seg_limits *out, unsigned want)
{
	memset(out, 0, sizeof(*out));
	host_reads |= want;
	if (want & SEG_LIMIT_SHMMAX)
		out->shmmax = 1 << 16;
	if (want & SEG_LIMIT_SHMALL)
		out->shmall = 64;
	if (want & SEG_LIMIT_SHMMNI)
		out->shmmni = 8;
}

/* Process start times in ticks: a pid may be reused by a new process. */
static uint64_t ticks;
static uint64_t pstart[NPID];

static uint64_t fake_ticks_now(void)
{
	return ticks;
}

static uint64_t fake_start_time(pid_t tgid)
{
	return tgid >= 1 && tgid <= NPID ? pstart[tgid - 1] : 0;
}


static pid_t fake_parent_of(pid_t tgid)
{
	return tgid >= 2 && tgid <= NPID ? tgid - 1 : -1;
}

static int freed_calls;

static void fake_freed(int shmid, bool named)
{
	(void)shmid;
	(void)named;
	freed_calls++;
}

/* ---- the published copy, as pubtab.c would see it ---- */

static struct {
	bool live[MAXSLOT];
	struct shmfs_ds ds[MAXSLOT];
	struct {
		key_t key;
		int slot;
	} keys[MAXPUBKEY];
	int nkeys;
} pub;

static void pub_set(int slot, const struct shmfs_ds *ds, uint32_t perm_gen)
{
	(void)perm_gen;
	CHECK(slot >= 0 && slot < MAXSLOT, "published slot %d", slot);
	pub.live[slot] = true;
	pub.ds[slot] = *ds;
}

static void pub_clear(int slot)
{
	CHECK(slot >= 0 && slot < MAXSLOT, "cleared slot %d", slot);
	CHECK(pub.live[slot], "clear of slot %d never published", slot);
	pub.live[slot] = false;
}

static void pub_key_add(key_t key, int slot)
{
	int i;

	CHECK(key != IPC_PRIVATE, "IPC_PRIVATE published as a key");
	for (i = 0; i < pub.nkeys; i++)
		CHECK(pub.keys[i].key != key,
		      "key %#x published twice (slots %d and %d)",
		      (unsigned)key, pub.keys[i].slot, slot);
	CHECK(pub.nkeys < MAXPUBKEY, "too many published keys");
	pub.keys[pub.nkeys].key = key;
	pub.keys[pub.nkeys].slot = slot;
	pub.nkeys++;
}

static void pub_key_del(key_t key, int slot)
{
	int i;

	for (i = 0; i < pub.nkeys; i++)
		if (pub.keys[i].key == key && pub.keys[i].slot == slot) {
			pub.keys[i] = pub.keys[--pub.nkeys];
			return;
		}
	fail("key_del of key %#x slot %d that was never added", (unsigned)key,
	     slot);
}

static const struct seg_publisher publisher = {
	.set = pub_set,
	.clear = pub_clear,
	.key_add = pub_key_add,
	.key_del = pub_key_del,
};

/* ---- callers ---- */

struct persona {
	uid_t uid;
	gid_t gid;
	int ngroups;
	gid_t groups[40];
	bool groups_fail;	/* getgroups fails: only gid counts */
};

static const struct persona personas[7] = {
	{ .uid = 0, .gid = 0 },					/* root */
	{ .uid = 1000, .gid = 100 },				/* alice */
	{ .uid = 2000, .gid = 200, .ngroups = 1, .groups = { 100 } },
								/* bob, in alice's group too */
	{ .uid = 3000, .gid = 100 },				/* carol, alice's group */
	{ .uid = 4000, .gid = 400, .ngroups = 2, .groups = { 200, 300 } },
								/* dave, in bob's group */
	{ .uid = 1000, .gid = 999 },				/* alice, another group */
	{ .uid = (uid_t)-1, .gid = (gid_t)-1 },			/* the overflow ids */
};

struct caller {
	struct persona who;
	pid_t pid;		/* 1..NPID */
	struct perm_cred c;
};

static int fake_getgroups(void *arg, gid_t *list, int size)
{
	const struct persona *p = arg;
	int i;

	if (p->groups_fail)
		return -EIO;
	for (i = 0; i < p->ngroups && i < size; i++)
		list[i] = p->groups[i];
	return p->ngroups;
}

/* One byte: persona (7 means read uid, gid and groups raw) and pid. */
static void rd_caller(struct caller *k)
{
	uint8_t b = rd8();
	int i;

	memset(&k->who, 0, sizeof(k->who));
	if ((b & 7) == 7) {
		uint8_t g;

		k->who.uid = rd32();
		k->who.gid = rd32();
		g = rd8();
		k->who.ngroups = g % 4;
		for (i = 0; i < 3; i++)
			k->who.groups[i] = rd32();
		if (g & 0x80) {
			/* more groups than perm.c asks for at first */
			k->who.ngroups = 40;
			for (i = 3; i < 40; i++)
				k->who.groups[i] = k->who.groups[0] + (gid_t)i;
		}
		k->who.groups_fail = g & 0x40;
	} else {
		k->who = personas[b & 7];
	}
	k->pid = 1 + ((b >> 3) & (NPID - 1));
	perm_cred_init(&k->c, k->who.uid, k->who.gid, k->pid);
	k->c.getgroups = fake_getgroups;
	k->c.arg = &k->who;
}

static void caller_done(struct caller *k)
{
	perm_cred_fini(&k->c);
}

static struct caller root_caller(void)
{
	struct caller k;

	memset(&k, 0, sizeof(k));
	k.pid = 1;
	perm_cred_init(&k.c, 0, 0, 1);
	return k;
}

static bool in_group(const struct persona *p, gid_t g)
{
	int i;

	if (p->gid == g)
		return true;
	for (i = 0; i < p->ngroups && !p->groups_fail; i++)
		if (p->groups[i] == g)
			return true;
	return false;
}

/* ipcperm, written down from shmfs.1 (and Linux), not from perm.c. */
static bool oracle_perm(const struct persona *p, const struct shmfs_ds *d,
			int want)
{
	unsigned granted = d->mode & 0777;

	want &= 7;
	if (!want || p->uid == 0)
		return true;
	if (p->uid == d->uid || p->uid == d->cuid)
		granted >>= 6;
	else if (in_group(p, d->gid) || in_group(p, d->cgid))
		granted >>= 3;
	return (want & ~granted & 7) == 0;
}

static bool oracle_owner(const struct persona *p, const struct shmfs_ds *d)
{
	return p->uid == 0 || p->uid == d->uid || p->uid == d->cuid;
}

/* The reference model: what SysV and shmfs.1 promise (ctl_model.h). */
#include "ctl_model.h"

/* ---- the table as seen from outside ---- */

struct snap {
	int n;
	struct seg_view v[MAXSLOT];
	struct seg_stats st;
};

static int walk_collect(void *arg, const struct seg_view *v)
{
	struct snap *s = arg;

	CHECK(s->n < MAXSLOT, "walk returned more than %d segments", MAXSLOT);
	s->v[s->n++] = *v;
	return 0;
}

static void take_snap(struct snap *s)
{
	memset(s, 0, sizeof(*s));
	seg_walk(0, walk_collect, s);
	seg_get_stats(&s->st);
}

static bool views_equal(const struct seg_view *a, const struct seg_view *b)
{
	return a->serial == b->serial && a->removed == b->removed &&
	       a->freed == b->freed && a->slot == b->slot &&
	       !memcmp(&a->ds, &b->ds, sizeof(a->ds));
}

static void expect_unchanged(const struct snap *a, const char *why)
{
	struct snap b;
	int i;

	take_snap(&b);
	CHECK(a->n == b.n, "%s changed the number of shmids (%d -> %d)", why,
	      a->n, b.n);
	for (i = 0; i < a->n; i++)
		CHECK(views_equal(&a->v[i], &b.v[i]),
		      "%s changed shmid %d (mode %#o -> %#o, nattch %llu -> "
		      "%llu, uid %u -> %u)", why, a->v[i].ds.shmid,
		      a->v[i].ds.mode, b.v[i].ds.mode,
		      (unsigned long long)a->v[i].ds.nattch,
		      (unsigned long long)b.v[i].ds.nattch, a->v[i].ds.uid,
		      b.v[i].ds.uid);
	CHECK(a->st.used == b.st.used && a->st.tot_pages == b.st.tot_pages &&
	      a->st.objects == b.st.objects && a->st.handles == b.st.handles &&
	      a->st.procs == b.st.procs &&
	      a->st.pending_forks == b.st.pending_forks &&
	      a->st.attaches == b.st.attaches,
	      "%s changed the table's totals", why);
}

static const struct seg_view *snap_find(const struct snap *s, int shmid)
{
	int i;

	for (i = 0; i < s->n; i++)
		if (s->v[i].ds.shmid == shmid)
			return &s->v[i];
	return NULL;
}

static const struct seg_view *snap_slot(const struct snap *s, int slot)
{
	int i;

	for (i = 0; i < s->n; i++)
		if (s->v[i].slot == slot)
			return &s->v[i];
	return NULL;
}

static const struct seg_view *snap_key(const struct snap *s, key_t key)
{
	int i;

	for (i = 0; i < s->n; i++)
		if (!s->v[i].removed && s->v[i].ds.key == key)
			return &s->v[i];
	return NULL;
}

static void check_status_text(const struct snap *s)
{
	char *text = NULL, *line, *save = NULL;
	size_t len = 0;
	int n = 0, key, shmid;

	CHECK(seg_status(&text, &len) == 0, "seg_status failed");
	CHECK(text && strlen(text) == len, "status length %zu is wrong", len);
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save), n++) {
		if (!n) {
			CHECK(!strncmp(line, "       key      shmid perms", 26),
			      "status header: %s", line);
			continue;
		}
		CHECK(n <= s->n, "status has more lines than shmids");
		CHECK(sscanf(line, "%d %d", &key, &shmid) == 2 &&
		      key == s->v[n - 1].ds.key &&
		      shmid == s->v[n - 1].ds.shmid,
		      "status line %d is not shmid %d: %s", n,
		      s->v[n - 1].ds.shmid, line);
	}
	CHECK(n == s->n + 1, "status has %d lines for %d shmids", n, s->n);
	free(text);
}

/* Everything the table says about itself must agree, and with the model. */
static void check_table(void)
{
	struct caller rootk = root_caller();
	uint64_t pages = 0, attaches = 0, objects = 0;
	struct shmfs_ctl io;
	struct seg_view v;
	struct snap s;
	int i, j, maxslot = -1, nprocs = 0, nforks = 0, nlive = 0, npub = 0;
	bool private_named = false;

	take_snap(&s);
	for (i = 0; i < s.n; i++) {
		const struct seg_view *w = &s.v[i];
		const struct shmfs_ds *d = &w->ds;
		int m = m_find(d->shmid);

		CHECK(d->shmid > 0, "shmid %d is not positive", d->shmid);
		CHECK(w->slot == (d->shmid & (SHMFS_MAX_SLOTS - 1)),
		      "shmid %d in slot %d", d->shmid, w->slot);
		CHECK(i == 0 || s.v[i - 1].slot < w->slot,
		      "walk is not in slot order");
		CHECK(w->slot < (int)lim.shmmni,
		      "slot %d at or past shmmni %u", w->slot, lim.shmmni);
		CHECK(d->seq == (uint32_t)d->shmid >> SHMFS_ID_SHIFT &&
		      d->seq >= 1 && d->seq <= 0xffff,
		      "shmid %d has seq %u", d->shmid, d->seq);
		CHECK(!(d->mode & ~(0777u | SHMFS_SHM_DEST | SHMFS_SHM_LOCKED)),
		      "shmid %d has mode %#o", d->shmid, d->mode);
		CHECK(w->removed == !!(d->mode & SHMFS_SHM_DEST),
		      "shmid %d: removed %d but mode %#o", d->shmid,
		      w->removed, d->mode);
		CHECK(!w->removed || d->key == IPC_PRIVATE,
		      "removed shmid %d keeps key %#x", d->shmid,
		      (unsigned)d->key);
		CHECK(!w->freed, "walk shows freed shmid %d", d->shmid);
		CHECK(!w->removed || d->nattch,
		      "removed shmid %d has no attaches but still exists",
		      d->shmid);
		CHECK(d->segsz >= lim.shmmin && d->segsz <= lim.shmmax,
		      "shmid %d has size %llu", d->shmid,
		      (unsigned long long)d->segsz);
		CHECK(seg_view_bytes(w) <= (d->segsz + PAGE - 1) / PAGE * PAGE,
		      "shmid %d holds %llu bytes", d->shmid,
		      (unsigned long long)seg_view_bytes(w));
		CHECK(d->atime <= clock_now && d->dtime <= clock_now &&
		      d->ctime <= clock_now && d->ctime > 0,
		      "shmid %d has times from the future", d->shmid);
		CHECK(m >= 0, "shmid %d exists but the model has no such "
		      "segment", d->shmid);
		CHECK(M.seg[m].serial == w->serial,
		      "shmid %d changed its serial", d->shmid);
		CHECK(M.seg[m].removed == w->removed,
		      "shmid %d: removed is %d, model says %d", d->shmid,
		      w->removed, M.seg[m].removed);
		CHECK(d->nattch == m_nattch(m),
		      "shmid %d: nattch %llu, but %llu attaches were made and "
		      "not ended", d->shmid, (unsigned long long)d->nattch,
		      (unsigned long long)m_nattch(m));
		CHECK(w->removed || d->key == M.seg[m].key,
		      "shmid %d changed key", d->shmid);
		CHECK(M.seg[m].locked == !!(d->mode & SHMFS_SHM_LOCKED),
		      "shmid %d: SHM_LOCKED is %d, model says %d", d->shmid,
		      !!(d->mode & SHMFS_SHM_LOCKED), M.seg[m].locked);
		for (j = 0; j < i; j++) {
			CHECK(s.v[j].ds.shmid != d->shmid, "shmid %d twice",
			      d->shmid);
			CHECK(w->removed || s.v[j].removed ||
			      d->key == IPC_PRIVATE || s.v[j].ds.key != d->key,
			      "key %#x has two segments", (unsigned)d->key);
		}
		/* every way to read it gives the same */
		memset(&io, 0, sizeof(io));
		io.id = d->shmid;
		io.cmd = IPC_STAT;
		CHECK(seg_ctl(&rootk.c, &io) == 0 &&
		      !memcmp(&io.u.ds, d, sizeof(*d)),
		      "IPC_STAT of %d disagrees with the walk", d->shmid);
		memset(&io, 0, sizeof(io));
		io.id = w->slot;
		io.cmd = SHM_STAT_ANY;
		CHECK(seg_ctl(&rootk.c, &io) == 0 && io.ret == d->shmid &&
		      !memcmp(&io.u.ds, d, sizeof(*d)),
		      "SHM_STAT_ANY of slot %d disagrees", w->slot);
		CHECK(seg_lookup_id(d->shmid, false, &v) == 0 &&
		      views_equal(&v, w), "lookup of shmid %d disagrees",
		      d->shmid);
		CHECK(seg_lookup_serial(w->serial, &v) == 0 &&
		      views_equal(&v, w), "lookup of serial %llu disagrees",
		      (unsigned long long)w->serial);
		if (!w->removed && d->key != IPC_PRIVATE) {
			CHECK(seg_lookup_key(d->key, &v) == 0 &&
			      views_equal(&v, w), "lookup of key %#x disagrees",
			      (unsigned)d->key);
			CHECK(seg_key_exists(d->key), "key %#x does not exist",
			      (unsigned)d->key);
		}
		if (!w->removed && d->key == IPC_PRIVATE)
			private_named = true;
		CHECK(seg_lookup_name(d->key, d->shmid, false, &v) ==
		      (w->removed ? -ENOENT : 0),
		      "name lookup of %d in its key", d->shmid);
		/* the published copy */
		CHECK(w->slot < MAXSLOT && pub.live[w->slot] &&
		      !memcmp(&pub.ds[w->slot], d, sizeof(*d)),
		      "published entry of slot %d is stale", w->slot);
		if (!w->removed && d->key != IPC_PRIVATE) {
			for (j = 0; j < pub.nkeys; j++)
				if (pub.keys[j].key == d->key &&
				    pub.keys[j].slot == w->slot)
					break;
			CHECK(j < pub.nkeys, "key %#x not published",
			      (unsigned)d->key);
			npub++;
		}
		pages += (d->segsz + PAGE - 1) / PAGE;
		attaches += d->nattch;
		maxslot = w->slot;
	}
	CHECK(seg_lookup_key(IPC_PRIVATE, &v) == -ENOENT,
	      "IPC_PRIVATE found as a key");
	CHECK(seg_key_exists(IPC_PRIVATE) == private_named,
	      "IPC_PRIVATE directory exists: %d, named segments: %d",
	      seg_key_exists(IPC_PRIVATE), private_named);
	CHECK(npub == pub.nkeys, "%d keys published, %d exist", pub.nkeys,
	      npub);
	for (i = 0, j = 0; i < MAXSLOT; i++)
		j += pub.live[i];
	CHECK(j == s.n, "%d slots published, %d live", j, s.n);

	/* the model's side */
	for (i = 0; i < MAXSEG; i++) {
		if (!M.seg[i].used)
			continue;
		if (M.seg[i].live) {
			nlive++;
			CHECK(snap_find(&s, M.seg[i].shmid),
			      "shmid %d should exist (removed %d, %llu "
			      "attaches) but is gone", M.seg[i].shmid,
			      M.seg[i].removed,
			      (unsigned long long)m_nattch(i));
		}
		if (m_object(i))
			objects++;
		/* a freed shmid's memory counts until no handle holds it */
		if (!M.seg[i].live && m_handles(M.seg[i].serial))
			pages += M.seg[i].pages;
	}
	for (i = 1; i <= NPID; i++)
		nprocs += m_proc_exists(i);
	for (i = 0; i < MAXFORK; i++)
		nforks += M.fork[i].used;
	CHECK(s.st.used == (uint32_t)s.n && nlive == s.n,
	      "stats say %u shmids, walk %d, model %d", s.st.used, s.n, nlive);
	CHECK(s.st.tot_pages == pages,
	      "stats say %llu pages, segments and held memory %llu",
	      (unsigned long long)s.st.tot_pages, (unsigned long long)pages);
	CHECK(s.st.attaches == attaches,
	      "stats say %llu attaches, nattch adds up to %llu",
	      (unsigned long long)s.st.attaches, (unsigned long long)attaches);
	CHECK(s.st.handles == (uint64_t)M.nhandles,
	      "stats say %llu handles, %d are open",
	      (unsigned long long)s.st.handles, M.nhandles);
	CHECK(s.st.procs == (uint64_t)nprocs,
	      "stats say %llu processes, model %d",
	      (unsigned long long)s.st.procs, nprocs);
	CHECK(s.st.pending_forks == (uint64_t)nforks,
	      "stats say %llu pending forks, model %d",
	      (unsigned long long)s.st.pending_forks, nforks);
	CHECK(s.st.objects == objects,
	      "stats say %llu objects, model %llu (live, held or open)",
	      (unsigned long long)s.st.objects, (unsigned long long)objects);
	CHECK(freed_calls == M.nfreed,
	      "the front end was told of %d freed shmids, %d were freed",
	      freed_calls, M.nfreed);
	CHECK(s.st.tot_pages <= lim.shmall && s.st.used <= lim.shmmni,
	      "limits exceeded: %llu pages, %u shmids",
	      (unsigned long long)s.st.tot_pages, s.st.used);

	memset(&io, 0, sizeof(io));
	io.cmd = SHM_INFO;
	CHECK(seg_ctl(&rootk.c, &io) == 0 && io.u.shm_info.used_ids == s.n &&
	      io.u.shm_info.shm_tot == pages &&
	      io.ret == (maxslot < 0 ? 0 : maxslot),
	      "SHM_INFO disagrees (ids %d, pages %llu, ret %d)",
	      io.u.shm_info.used_ids,
	      (unsigned long long)io.u.shm_info.shm_tot, io.ret);
	memset(&io, 0, sizeof(io));
	io.cmd = IPC_INFO;
	CHECK(seg_ctl(&rootk.c, &io) == 0 &&
	      io.ret == (maxslot < 0 ? 0 : maxslot) &&
	      io.u.info.shmmax == lim.shmmax &&
	      io.u.info.shmmin == lim.shmmin &&
	      io.u.info.shmmni == lim.shmmni &&
	      io.u.info.shmseg == lim.shmseg &&
	      io.u.info.shmall == lim.shmall, "IPC_INFO disagrees");
	check_status_text(&s);
	caller_done(&rootk);
}

/* ---- the operations ---- */

enum {
	OP_GET, OP_CTL, OP_ACCESS, OP_DETACH, OP_FORK, OP_FORK_CHILD,
	OP_FORK_ABORT, OP_SESSION_OPEN, OP_SESSION_START, OP_SESSION_CLOSE,
	OP_LOOKUP_ID, OP_LOOKUP_NAME, OP_FORGET, OP_OPEN, OP_RELEASE,
	OP_SETATTR, OP_UNLINK, OP_WRITE, OP_CLOCK, OP_WALK, OP_LOOKUP_SERIAL,
	OP_ATTACH, OP_PIDS, OP_SPAWN, NOPS
};

static const char *const op_names[NOPS] = {
	"shmget", "shmctl", "access", "shmdt", "fork", "fork child",
	"fork abort", "session open", "session start", "session close",
	"lookup id", "lookup name", "forget", "open", "release", "setattr",
	"unlink", "write", "clock", "walk", "lookup serial", "attach",
	"pids", "spawn",
};

#define STEER_A 0x20
#define STEER_B 0x40
#define STEER_C 0x80

/* The control file an op goes through: the caller's own, its parent's
 * (the one a forked child inherits), or another's. */
static int op_file(uint8_t op, const struct caller *k)
{
	if ((op & STEER_A) && fake_parent_of(k->pid) > 0)
		return fake_parent_of(k->pid);
	if (op & STEER_B)
		return k->pid % NPID + 1;
	return k->pid;
}

static const key_t small_keys[8] = { IPC_PRIVATE, 1, 2, 0x1234, -1,
				     0x7fffffff, (key_t)0x80000000, 3 };

static void op_get(uint8_t op, struct caller *k)
{
	struct shmfs_get g;
	struct snap before;
	const struct seg_view *old;
	int err, shmid = -1, m;
	uint64_t pages;

	rd(&g, sizeof(g));
	if (op & STEER_A)
		g.key = small_keys[(uint32_t)g.key % 8];
	if (op & STEER_B)
		g.size = (g.size & 0xff) * 512;
	if (op & STEER_C)
		g.flags &= IPC_CREAT | IPC_EXCL | 0777;
	take_snap(&before);
	/* as ops.c's ctl_get */
	err = seg_get((key_t)g.key, g.size, g.flags, &k->c, &shmid);
	g.shmid = shmid;

	old = g.key == IPC_PRIVATE ? NULL : snap_key(&before, g.key);
	if (old) {
		int want = err;

		if ((g.flags & (IPC_CREAT | IPC_EXCL)) == (IPC_CREAT | IPC_EXCL))
			want = -EEXIST;
		else if (g.size > old->ds.segsz)
			want = -EINVAL;
		else if (!oracle_perm(&k->who, &old->ds,
				      perm_fold((unsigned)g.flags & 0777)))
			want = -EACCES;
		else
			want = 0;
		CHECK(err == want, "shmget of existing key %#x: %d, expected %d",
		      (unsigned)g.key, err, want);
		CHECK(err || shmid == old->ds.shmid,
		      "shmget of key %#x gave %d, the key has %d",
		      (unsigned)g.key, shmid, old->ds.shmid);
		expect_unchanged(&before, "shmget of an existing key");
		return;
	}
	if (g.key != IPC_PRIVATE && !(g.flags & IPC_CREAT)) {
		CHECK(err == -ENOENT, "shmget of missing key: %d", err);
		expect_unchanged(&before, "shmget of a missing key");
		return;
	}
	/* a creation */
	pages = (g.size + PAGE - 1) / PAGE;
	if (g.size < lim.shmmin || g.size > lim.shmmax) {
		CHECK(err == -EINVAL, "shmget of size %llu: %d",
		      (unsigned long long)g.size, err);
	} else if (before.st.tot_pages + pages > lim.shmall ||
		   before.st.used >= lim.shmmni) {
		CHECK(err == -ENOSPC, "shmget past shmall/shmmni: %d", err);
	} else {
		CHECK(err == 0, "shmget that fits the limits failed: %d", err);
	}
	if (err) {
		expect_unchanged(&before, "a failed creation");
		return;
	}
	CHECK(!snap_find(&before, shmid), "new segment reuses live shmid %d",
	      shmid);
	for (m = 0; m < MAXSEG && M.seg[m].used; m++)
		;
	CHECK(m < MAXSEG, "model full");
	memset(&M.seg[m], 0, sizeof(M.seg[m]));
	M.seg[m].used = M.seg[m].live = true;
	M.seg[m].shmid = shmid;
	M.seg[m].key = g.key;
	M.seg[m].pages = pages;
	{
		struct seg_view v;

		CHECK(seg_lookup_id(shmid, false, &v) == 0,
		      "new shmid %d cannot be looked up", shmid);
		M.seg[m].serial = v.serial;
		CHECK(v.ds.uid == k->who.uid && v.ds.cuid == k->who.uid &&
		      v.ds.gid == k->who.gid && v.ds.cgid == k->who.gid &&
		      v.ds.mode == ((uint32_t)g.flags & 0777) &&
		      v.ds.segsz == g.size && v.ds.cpid == k->pid &&
		      v.ds.nattch == 0 && v.ds.lpid == 0 && v.ds.atime == 0 &&
		      v.ds.dtime == 0 && v.ds.ctime == clock_now &&
		      v.ds.key == g.key && seg_view_bytes(&v) == 0,
		      "new shmid %d has the wrong shmid_ds", shmid);
	}
	note_known(shmid);
}

static const int valid_cmds[9] = { IPC_RMID, IPC_SET, IPC_STAT, IPC_INFO,
				   SHM_LOCK, SHM_UNLOCK, SHM_STAT,
				   SHM_INFO, SHM_STAT_ANY };

static void op_ctl(uint8_t op, struct caller *k)
{
	struct shmfs_ctl io, sent;
	struct snap before;
	const struct seg_view *s;
	int err, want, m;

	rd(&io, sizeof(io));
	if (op & STEER_A)
		io.id = pick_shmid((uint8_t)io.pad, io.id);
	if (op & STEER_B)
		io.cmd = valid_cmds[(uint32_t)io.cmd % 9];
	if ((op & STEER_C) && (io.cmd == SHM_STAT || io.cmd == SHM_STAT_ANY))
		io.id &= 31;
	if ((op & STEER_C) && io.cmd == IPC_SET) {
		io.u.ds.mode &= 07777;
		io.u.ds.uid = io.u.ds.uid & 1 ? (uint32_t)-1 : io.u.ds.uid & 0xff;
		io.u.ds.gid = io.u.ds.gid & 1 ? (uint32_t)-1 : io.u.ds.gid & 0xff;
	}
	sent = io;
	take_snap(&before);
	err = seg_ctl(&k->c, &io);

	if (sent.cmd < 0 || sent.id < 0) {
		CHECK(err == -EINVAL, "shmctl with negative cmd/id: %d", err);
		expect_unchanged(&before, "shmctl with negative cmd/id");
		return;
	}
	switch (sent.cmd) {
	case IPC_INFO:
	case SHM_INFO:
		CHECK(err == 0, "IPC_INFO/SHM_INFO failed: %d", err);
		expect_unchanged(&before, "IPC_INFO/SHM_INFO");
		return;
	case SHM_STAT:
	case SHM_STAT_ANY:
		s = snap_slot(&before, sent.id & (SHMFS_MAX_SLOTS - 1));
		want = !s ? -EINVAL :
		       sent.cmd == SHM_STAT &&
				       !oracle_perm(&k->who, &s->ds, PERM_R) ?
			       -EACCES : 0;
		CHECK(err == want, "SHM_STAT(_ANY) of index %d: %d, expected %d",
		      sent.id, err, want);
		CHECK(err || (io.ret == s->ds.shmid &&
			      !memcmp(&io.u.ds, &s->ds, sizeof(s->ds))),
		      "SHM_STAT of index %d returned the wrong segment",
		      sent.id);
		expect_unchanged(&before, "SHM_STAT");
		return;
	case IPC_STAT:
	case IPC_SET:
	case IPC_RMID:
	case SHM_LOCK:
	case SHM_UNLOCK:
		break;
	default:
		CHECK(err == -EINVAL, "unknown shmctl command %d: %d", sent.cmd,
		      err);
		expect_unchanged(&before, "an unknown shmctl command");
		return;
	}
	s = snap_find(&before, sent.id);
	if (!s) {
		CHECK(err == -EINVAL, "shmctl %d of missing shmid %d: %d",
		      sent.cmd, sent.id, err);
		expect_unchanged(&before, "shmctl of a missing shmid");
		return;
	}
	m = m_find(sent.id);
	if (sent.cmd == IPC_STAT) {
		want = oracle_perm(&k->who, &s->ds, PERM_R) ? 0 : -EACCES;
		CHECK(err == want, "IPC_STAT: %d, expected %d", err, want);
		CHECK(err || !memcmp(&io.u.ds, &s->ds, sizeof(s->ds)),
		      "IPC_STAT returned the wrong shmid_ds");
		expect_unchanged(&before, "IPC_STAT");
		return;
	}
	if (!oracle_owner(&k->who, &s->ds)) {
		CHECK(err == -EPERM, "shmctl %d by a stranger: %d", sent.cmd,
		      err);
		expect_unchanged(&before, "shmctl by a stranger");
		return;
	}
	switch (sent.cmd) {
	case IPC_SET:
		want = sent.u.ds.uid == (uint32_t)-1 ||
		       sent.u.ds.gid == (uint32_t)-1 ? -EINVAL : 0;
		CHECK(err == want, "IPC_SET: %d, expected %d", err, want);
		if (err) {
			expect_unchanged(&before, "a failed IPC_SET");
			return;
		}
		{
			struct seg_view v;

			CHECK(seg_lookup_id(sent.id, false, &v) == 0 &&
			      v.ds.uid == sent.u.ds.uid &&
			      v.ds.gid == sent.u.ds.gid &&
			      v.ds.mode == ((s->ds.mode & ~0777u) |
					    (sent.u.ds.mode & 0777)) &&
			      v.ds.cuid == s->ds.cuid &&
			      v.ds.cgid == s->ds.cgid &&
			      v.ds.ctime == clock_now,
			      "IPC_SET did not set uid/gid/mode as asked");
		}
		return;
	case IPC_RMID:
		CHECK(err == 0, "IPC_RMID by the owner: %d", err);
		m_rmid(m);
		return;
	case SHM_LOCK:
		/* as Linux: RLIMIT_MEMLOCK 0 is EPERM even for a segment that
		 * is locked already; then the user's charge is limited */
		CHECK(M.seg[m].locked == !!(s->ds.mode & SHMFS_SHM_LOCKED),
		      "SHM_LOCKED is %d, model says %d",
		      !!(s->ds.mode & SHMFS_SHM_LOCKED), M.seg[m].locked);
		if (k->who.uid != 0 && !sent.memlock)
			want = -EPERM;
		else if (M.seg[m].locked)
			want = 0;
		else if (k->who.uid != 0 &&
			 *m_charge(k->who.uid) + M.seg[m].pages >
				 sent.memlock / PAGE)
			want = -ENOMEM;
		else
			want = 0;
		CHECK(err == want, "SHM_LOCK (memlock %llu, charged %llu, %llu "
		      "pages): %d, expected %d",
		      (unsigned long long)sent.memlock,
		      (unsigned long long)*m_charge(k->who.uid),
		      (unsigned long long)M.seg[m].pages, err, want);
		if (err) {
			expect_unchanged(&before, "a failed SHM_LOCK");
			return;
		}
		if (!M.seg[m].locked) {
			M.seg[m].locked = true;
			M.seg[m].lock_uid = k->who.uid;
			*m_charge(k->who.uid) += M.seg[m].pages;
		}
		{
			struct seg_view v;

			CHECK(seg_lookup_id(sent.id, false, &v) == 0 &&
			      (v.ds.mode & SHMFS_SHM_LOCKED),
			      "SHM_LOCK did not set SHM_LOCKED");
		}
		return;
	default: /* SHM_UNLOCK */
		CHECK(err == 0, "SHM_UNLOCK by the owner: %d", err);
		m_unlock(m);
		{
			struct seg_view v;

			CHECK(seg_lookup_id(sent.id, false, &v) == 0 &&
			      !(v.ds.mode & SHMFS_SHM_LOCKED),
			      "SHM_UNLOCK did not clear SHM_LOCKED");
		}
		return;
	}
}

static void op_access(uint8_t op, struct caller *k)
{
	struct shmfs_access a;
	struct snap before;
	const struct seg_view *s;
	int err, want;

	rd(&a, sizeof(a));
	if (op & STEER_A)
		a.shmid = pick_shmid((uint8_t)a.mask, a.shmid);
	take_snap(&before);
	err = seg_access(a.shmid, a.mask, &k->c);
	s = snap_find(&before, a.shmid);
	want = !s ? -EINVAL :
	       oracle_perm(&k->who, &s->ds, a.mask) ? 0 : -EACCES;
	CHECK(err == want, "access %d mask %#x: %d, expected %d", a.shmid,
	      a.mask, err, want);
	expect_unchanged(&before, "SHMFS_IOC_ACCESS");
}

static void op_detach(uint8_t op, struct caller *k)
{
	struct shmfs_detach d;
	struct snap before;
	int err, m;

	rd(&d, sizeof(d));
	if (op & STEER_A)
		d.shmid = pick_shmid((uint8_t)d.flags, d.shmid);
	take_snap(&before);
	err = seg_detach(k->pid, d.shmid);
	m = m_find(d.shmid);
	if (m < 0 || !M.seg[m].refs[k->pid - 1]) {
		CHECK(err == -EINVAL, "shmdt of %d not attached by %d: %d",
		      d.shmid, k->pid, err);
		expect_unchanged(&before, "a failed shmdt");
		return;
	}
	CHECK(err == 0, "shmdt of %d attached by %d: %d", d.shmid, k->pid,
	      err);
	M.seg[m].refs[k->pid - 1]--;
	m_maybe_free(m);
}

static void op_fork(uint8_t op, struct caller *k)
{
	struct shmfs_fork f;
	struct snap before;
	uint64_t refs = m_proc_refs(k->pid);
	int err, i, slot, file = op_file(op, k);

	rd(&f, sizeof(f));	/* in: ignored by the daemon */
	take_snap(&before);
	for (slot = 0; slot < MAXFORK && M.fork[slot].used; slot++)
		;
	if (refs && slot == MAXFORK)
		return;		/* the model cannot follow more */
	err = seg_fork((uint64_t)file, &k->c, &f.token, &f.count);
	if (refs && !M.sess[file - 1][k->pid - 1]) {
		/* the child could not claim through a file without one */
		CHECK(err == -EPROTO, "fork through a file without a "
		      "session: %d", err);
		expect_unchanged(&before, "fork without a session");
		return;
	}
	CHECK(err == 0, "fork: %d", err);
	if (!refs) {
		CHECK(f.token == 0 && f.count == 0,
		      "fork with nothing attached gave token %llu count %u",
		      (unsigned long long)f.token, f.count);
		expect_unchanged(&before, "fork with nothing attached");
		return;
	}
	CHECK(f.token != 0 && f.count == refs,
	      "fork counted %u attaches for %llu held", f.count,
	      (unsigned long long)refs);
	for (i = 0; i < MAXFORK; i++)
		CHECK(!M.fork[i].used || M.fork[i].token != f.token,
		      "fork token %llu reused", (unsigned long long)f.token);
	memset(&M.fork[slot], 0, sizeof(M.fork[slot]));
	M.fork[slot].used = true;
	M.fork[slot].token = f.token;
	M.fork[slot].file = file;
	M.fork[slot].parent = k->pid;
	M.fork[slot].order = ++M.fork_order;
	M.fork[slot].since = ticks;
	for (i = 0; i < MAXSEG; i++)
		if (M.seg[i].used)
			M.fork[slot].cnt[i] = M.seg[i].refs[k->pid - 1];
}

static int fork_by_token(uint64_t token)
{
	int i;

	for (i = 0; i < MAXFORK; i++)
		if (M.fork[i].used && M.fork[i].token == token)
			return i;
	return -1;
}

static void op_fork_child(uint8_t op, struct caller *k, bool abort_it)
{
	struct shmfs_fork f;
	struct snap before;
	int err, i, slot, file = op_file(op & ~STEER_A, k);
	bool may;

	rd(&f, sizeof(f));
	if (op & STEER_A) {
		/* a pending token: the n-th used slot, through its file
		 * unless STEER_C */
		int want = f.count % MAXFORK, n = 0;

		for (i = 0; i < MAXFORK; i++)
			if (M.fork[i].used && n++ == want) {
				f.token = M.fork[i].token;
				if (!(op & STEER_C))
					file = M.fork[i].file;
			}
	}
	if (op & STEER_B)
		f.token &= 0xff;
	take_snap(&before);
	err = abort_it ? seg_fork_abort((uint64_t)file, &k->c, f.token) :
			 seg_fork_child((uint64_t)file, &k->c, f.token);
	slot = fork_by_token(f.token);
	may = slot >= 0 && M.fork[slot].file == file;
	if (may && abort_it)
		may = M.fork[slot].parent == k->pid;
	else if (may)	/* only the parent's child, born after the count */
		may = fake_parent_of(k->pid) == M.fork[slot].parent &&
		      (!M.timed ||
		       fake_start_time(k->pid) >= M.fork[slot].since);
	if (!may) {
		CHECK(err == -ESRCH, "fork %s of token %llu: %d",
		      abort_it ? "abort" : "child",
		      (unsigned long long)f.token, err);
		expect_unchanged(&before, "a fork request with a wrong token");
		return;
	}
	CHECK(err == 0, "fork %s of a pending token: %d",
	      abort_it ? "abort" : "child", err);
	if (abort_it) {
		m_fork_drop(slot);
		return;
	}
	/* the child holds the file it inherited: its session there */
	if (!M.sess[file - 1][k->pid - 1])
		M.sess[file - 1][k->pid - 1] = 1;
	for (i = 0; i < MAXSEG; i++) {
		M.seg[i].refs[k->pid - 1] += M.fork[slot].cnt[i];
		M.fork[slot].cnt[i] = 0;
	}
	M.fork[slot].used = false;
}

static void op_hold(uint64_t serial)
{
	int i;

	for (i = 0; i < M.nholds; i++)
		if (M.hold[i].serial == serial) {
			M.hold[i].n++;
			return;
		}
	CHECK(M.nholds < MAXHOLD, "too many holds");
	M.hold[M.nholds].serial = serial;
	M.hold[M.nholds].n = 1;
	M.nholds++;
}

static void op_lookup(uint8_t op, bool by_name)
{
	struct seg_view v;
	struct snap before;
	uint32_t raw = rd32(), rawkey = rd32();
	bool hold = (op & STEER_C) && M.nholds < MAXHOLD;
	int shmid = (op & STEER_A) ? pick_shmid((uint8_t)raw, (int)raw) :
				     (int)raw;
	const struct seg_view *s;
	key_t key = (key_t)rawkey;
	int err, want;

	take_snap(&before);
	s = snap_find(&before, shmid);
	if (by_name && (op & STEER_B) && s)
		key = s->ds.key;
	err = by_name ? seg_lookup_name(key, shmid, hold, &v) :
			seg_lookup_id(shmid, hold, &v);
	want = !s || (by_name && (s->removed || s->ds.key != key)) ? -ENOENT :
								      0;
	CHECK(err == want, "lookup of %d: %d, expected %d", shmid, err, want);
	CHECK(err || views_equal(&v, s), "lookup of %d: wrong view", shmid);
	if (!err && hold)
		op_hold(v.serial);
}

static void op_forget(uint8_t op)
{
	uint8_t which = rd8(), n = rd8();
	int i;

	if (op & STEER_B) {
		/* a serial that names nothing (any more): nothing happens */
		uint64_t serial = rd64();

		if (m_find_serial(serial) < 0) {
			struct snap before;

			take_snap(&before);
			seg_forget(serial, n);
			expect_unchanged(&before, "forget of an unknown serial");
		}
		return;
	}
	if (!M.nholds)
		return;
	i = which % M.nholds;
	/* the kernel never forgets more than it looked up */
	n = (op & STEER_A) ? (uint8_t)M.hold[i].n :
			     (uint8_t)(1 + n % M.hold[i].n);
	seg_forget(M.hold[i].serial, n);
	M.hold[i].n -= n;
	if (!M.hold[i].n)
		M.hold[i] = M.hold[--M.nholds];
	m_gc();
}

static uint64_t pick_serial(uint8_t op, uint8_t sel, uint64_t raw)
{
	int i, n = 0, want;

	if (!(op & STEER_A))
		return raw;
	for (i = 0; i < MAXSEG; i++)
		n += M.seg[i].used;
	if (!n)
		return raw;
	want = sel % n;
	for (i = 0, n = 0; i < MAXSEG; i++)
		if (M.seg[i].used && n++ == want)
			return M.seg[i].serial;
	return raw;
}

static void op_open(uint8_t op, struct caller *k, bool force_attach)
{
	uint8_t sel = rd8();
	uint32_t flags = rd32();
	uint64_t serial = pick_serial(op, sel, rd64());
	struct seg_handle *h = NULL;
	struct snap before;
	int accmode, want, err, m;
	bool attach;

	if (force_attach)
		flags |= SHMFS_ATTACH_FLAGS;
	if (flags & O_TRUNC)	/* ops.c refuses it before seg.c */
		return;
	if (M.nhandles == MAXHANDLE)
		return;
	accmode = (int)(flags & O_ACCMODE);
	attach = (flags & SHMFS_ATTACH_FLAGS) == SHMFS_ATTACH_FLAGS;
	take_snap(&before);
	/* as ops.c's shmfs_open */
	err = seg_open(serial, &k->c, accmode == O_ACCMODE ? O_RDWR : accmode,
		       attach, &h);
	m = m_find_serial(serial);
	if (m < 0 || !M.seg[m].live) {
		want = -ENOENT;
	} else {
		const struct seg_view *s = snap_find(&before, M.seg[m].shmid);
		int perm = accmode == O_RDONLY ? PERM_R :
			   accmode == O_WRONLY ? PERM_W : PERM_R | PERM_W;

		CHECK(s, "live model segment not in the table");
		if (!oracle_perm(&k->who, &s->ds, perm))
			want = -EACCES;
		else if (attach && !m_has_session(k->pid))
			want = -EPROTO;
		else if (attach && m_proc_refs(k->pid) >= lim.shmseg)
			want = -EMFILE;
		else
			want = 0;
	}
	CHECK(err == want, "open (flags %#x, attach %d) of serial %llu: %d, "
	      "expected %d", flags, attach, (unsigned long long)serial, err,
	      want);
	if (err) {
		expect_unchanged(&before, "a failed open");
		return;
	}
	CHECK(h && seg_handle_size(h) == snap_find(&before,
						   M.seg[m].shmid)->ds.segsz,
	      "open gave a handle of the wrong size");
	M.handle[M.nhandles].h = h;
	M.handle[M.nhandles].serial = serial;
	M.nhandles++;
	if (attach)
		M.seg[m].refs[k->pid - 1]++;
}

static void op_release(void)
{
	uint8_t which = rd8();
	int i;

	if (!M.nhandles)
		return;
	i = which % M.nhandles;
	seg_release(M.handle[i].h);
	M.handle[i] = M.handle[--M.nhandles];
	m_gc();
}

static void op_write(void)
{
	uint8_t which = rd8(), len = rd8() % 64;
	uint32_t off = rd32();
	uint8_t buf[64];
	struct seg_handle *h;
	uint64_t size;

	rd(buf, len);
	if (!M.nhandles || !len)
		return;
	h = M.handle[which % M.nhandles].h;
	size = seg_handle_size(h);
	off %= size;
	if (len > size - off)
		len = (uint8_t)(size - off);
	/* as the kernel's write-back through ops.c's write_buf */
	CHECK(pwrite(seg_handle_fd(h), buf, len,
		     (off_t)(seg_handle_offset(h) + off)) == len,
	      "write to the arena failed");
}

static void op_setattr(uint8_t op, struct caller *k)
{
	uint8_t sel = rd8();
	uint64_t serial = pick_serial(op, sel, rd64());
	int64_t mode = (int64_t)rd64(), uid = (int64_t)rd64(),
		gid = (int64_t)rd64();
	struct seg_view v;
	struct snap before;
	int err, want, m;

	/* ops.c passes 07777 bits of a mode and 32-bit ids, or -1 */
	mode = mode < 0 ? -1 : mode & ((op & STEER_B) ? 0777 : 07777);
	uid = uid < 0 ? -1 : (int64_t)(uint32_t)uid;
	gid = gid < 0 ? -1 : (int64_t)(uint32_t)gid;
	take_snap(&before);
	err = seg_setattr(serial, &k->c, mode, uid, gid, &v);
	m = m_find_serial(serial);
	if (m < 0 || !M.seg[m].live) {
		CHECK(err == -ENOENT, "chmod/chown of a gone segment: %d", err);
	} else {
		const struct seg_view *s = snap_find(&before, M.seg[m].shmid);

		if (!oracle_owner(&k->who, &s->ds))
			want = -EPERM;
		else if (mode >= 0 && (mode & ~0777))
			want = -EINVAL;
		else
			want = 0;
		CHECK(err == want, "chmod/chown: %d, expected %d", err, want);
		CHECK(err || (v.ds.mode == (mode < 0 ? s->ds.mode :
					    ((s->ds.mode & ~0777u) |
					     (uint32_t)mode)) &&
			      v.ds.uid == (uid < 0 ? s->ds.uid : (uint32_t)uid) &&
			      v.ds.gid == (gid < 0 ? s->ds.gid : (uint32_t)gid) &&
			      v.ds.ctime == clock_now),
		      "chmod/chown did not set what was asked");
	}
	if (err)
		expect_unchanged(&before, "a failed chmod/chown");
}

static void op_unlink(uint8_t op, struct caller *k)
{
	uint32_t raw = rd32(), rawkey = rd32();
	int shmid = (op & STEER_A) ? pick_shmid((uint8_t)raw, (int)raw) :
				     (int)raw;
	struct snap before;
	const struct seg_view *s;
	key_t key = (key_t)rawkey;
	int err, want;

	take_snap(&before);
	s = snap_find(&before, shmid);
	if ((op & STEER_B) && s)
		key = s->ds.key;
	err = seg_unlink(key, shmid, &k->c);
	want = !s || s->removed || s->ds.key != key ? -ENOENT :
	       !oracle_owner(&k->who, &s->ds) ? -EPERM : 0;
	CHECK(err == want, "unlink of %d in key %#x: %d, expected %d", shmid,
	      (unsigned)key, err, want);
	if (err)
		expect_unchanged(&before, "a failed unlink");
	else
		m_rmid(m_find(shmid));
}

static int walk_stop_after;

static int walk_partial(void *arg, const struct seg_view *v)
{
	struct snap *s = arg;

	CHECK(s->n < MAXSLOT, "walk overflow");
	s->v[s->n++] = *v;
	return s->n >= walk_stop_after;
}

static void op_walk(void)
{
	int32_t from = (int32_t)rd32();
	struct snap all, part;
	int i, j;

	walk_stop_after = 1 + rd8() % 8;
	take_snap(&all);
	memset(&part, 0, sizeof(part));
	seg_walk(from, walk_partial, &part);
	for (i = 0, j = 0; i < all.n && j < part.n; i++) {
		if (all.v[i].slot < from)
			continue;
		CHECK(views_equal(&all.v[i], &part.v[j]),
		      "walk from %d skipped or changed slot %d", from,
		      all.v[i].slot);
		j++;
	}
	CHECK(j == part.n, "walk from %d returned slots it should not", from);
	for (i = 0, j = 0; i < all.n; i++)
		j += all.v[i].slot >= from;
	CHECK(part.n == (j < walk_stop_after ? j : walk_stop_after),
	      "walk from %d stopped after %d of %d", from, part.n, j);
}

static void op_lookup_serial(uint8_t op)
{
	uint8_t sel = rd8();
	uint64_t serial = pick_serial(op, sel, rd64());
	struct seg_view v;
	int err = seg_lookup_serial(serial, &v), m = m_find_serial(serial);

	CHECK(err == ((m >= 0 && m_object(m)) ? 0 : -ENOENT),
	      "lookup of serial %llu: %d", (unsigned long long)serial, err);
	CHECK(err || v.freed == !M.seg[m].live,
	      "serial %llu: freed is %d", (unsigned long long)serial, v.freed);
}

/* user.shm.pids: "pid:count ..." by pid, a pending fork under its parent */
static void op_pids(uint8_t op, struct caller *k)
{
	uint8_t sel = rd8();
	uint64_t serial = pick_serial(op, sel, rd64());
	char want[NPID * 32] = "", *text = NULL;
	size_t len = 0;
	struct snap before;
	int err, m, p, f, i;

	take_snap(&before);
	err = seg_pids(serial, &k->c, &text);
	m = m_find_serial(serial);
	if (m < 0 || !M.seg[m].live) {
		CHECK(err == -ENOENT, "pids of a gone segment: %d", err);
	} else {
		const struct seg_view *s = snap_find(&before, M.seg[m].shmid);

		/* root and the owner only: the kernel shows no one pids */
		CHECK(err == (oracle_owner(&k->who, &s->ds) ? 0 : -EACCES),
		      "pids of %d: %d", s->ds.shmid, err);
	}
	expect_unchanged(&before, "user.shm.pids");
	if (err)
		return;
	for (p = 1; p <= NPID; p++) {
		uint64_t n = M.seg[m].refs[p - 1];

		for (f = 0; f < MAXFORK; f++)
			if (M.fork[f].used && M.fork[f].parent == p)
				n += M.fork[f].cnt[m];
		if (n)
			len += (size_t)snprintf(want + len, sizeof(want) - len,
						"%s%d:%llu", len ? " " : "", p,
						(unsigned long long)n);
	}
	CHECK(text && !strcmp(text, want), "pids of %d: \"%s\", expected \"%s\"",
	      M.seg[m].shmid, text ? text : "(null)", want);
	for (i = 0; text[i]; i++)
		CHECK(text[i] == ' ' || text[i] == ':' ||
		      (text[i] >= '0' && text[i] <= '9'), "pids text has %#x",
		      (unsigned)(uint8_t)text[i]);
	free(text);
}

static void run_op(uint8_t op)
{
	struct caller k;
	int code = (op & 0x1f) % NOPS;

	op_name = op_names[code];
	memset(&k, 0, sizeof(k));
	switch (code) {
	case OP_GET:
		rd_caller(&k);
		op_get(op, &k);
		break;
	case OP_CTL:
		rd_caller(&k);
		op_ctl(op, &k);
		break;
	case OP_ACCESS:
		rd_caller(&k);
		op_access(op, &k);
		break;
	case OP_DETACH:
		rd_caller(&k);
		op_detach(op, &k);
		break;
	case OP_FORK:
		rd_caller(&k);
		op_fork(op, &k);
		break;
	case OP_FORK_CHILD:
	case OP_FORK_ABORT:
		rd_caller(&k);
		op_fork_child(op, &k, code == OP_FORK_ABORT);
		break;
	case OP_SESSION_OPEN:
		rd_caller(&k);
		/* an open makes a file of its own: the caller's */
		CHECK(seg_session_open((uint64_t)k.pid, k.pid) == 0,
		      "session open failed");
		M.sess[k.pid - 1][k.pid - 1]++;
		break;
	case OP_SESSION_START:
		/* SHMFS_IOC_SESSION: a struct shmfs_hello, ignored */
		rd_caller(&k);
		(void)rd64();
		{
			int file = op_file(op, &k);

			CHECK(seg_session_start((uint64_t)file, k.pid) == 0,
			      "session start failed");
			if (!M.sess[file - 1][k.pid - 1])
				M.sess[file - 1][k.pid - 1] = 1;
		}
		break;
	case OP_SESSION_CLOSE:
		rd_caller(&k);
		seg_session_close((uint64_t)op_file(op, &k), k.pid);
		m_session_close(op_file(op, &k), k.pid);
		break;
	case OP_LOOKUP_ID:
	case OP_LOOKUP_NAME:
		op_lookup(op, code == OP_LOOKUP_NAME);
		break;
	case OP_FORGET:
		op_forget(op);
		break;
	case OP_OPEN:
	case OP_ATTACH:
		rd_caller(&k);
		op_open(op, &k, code == OP_ATTACH);
		break;
	case OP_RELEASE:
		op_release();
		break;
	case OP_SETATTR:
		rd_caller(&k);
		op_setattr(op, &k);
		break;
	case OP_UNLINK:
		rd_caller(&k);
		op_unlink(op, &k);
		break;
	case OP_WRITE:
		op_write();
		break;
	case OP_CLOCK:
		{
			uint8_t b = rd8();

			clock_now += 1 + b;
			ticks += (uint64_t)(b & 3);
		}
		break;
	case OP_PIDS:
		rd_caller(&k);
		op_pids(op, &k);
		break;
	case OP_SPAWN:
		/* the pid now names a process that started now */
		rd_caller(&k);
		pstart[k.pid - 1] = ticks;
		break;
	case OP_WALK:
		op_walk();
		break;
	case OP_LOOKUP_SERIAL:
		op_lookup_serial(op);
		break;
	}
	caller_done(&k);
	m_gc();
	check_table();
}

/* ---- setup and the end of every caller ---- */

static void configure(struct seg_config *cfg)
{
	static const uint64_t maxes[8] = { 0, 1, 4096, 4097, 65536, 1 << 20,
					   PAGE * 3, 100000 };
	static const uint64_t mins[4] = { 0, 1, 2, 4096 };
	uint8_t b0 = rd8(), b1 = rd8(), b2 = rd8(), b3 = rd8();

	memset(cfg, 0, sizeof(*cfg));
	cfg->given.shmmni = b0 % 17;		/* 0: the host's 8 */
	if (b0 & 0x80)	/* past one word of the slot bitmaps */
		cfg->given.shmmni = 64 + b0 % 9;
	cfg->given.shmseg = b1 % 9;		/* 0: shmmni */
	cfg->given.shmall = b2 % 3 ? b2 : 0;	/* pages; 0: the host's */
	cfg->given.shmmax = maxes[b3 & 7];
	cfg->given.shmmin = mins[(b3 >> 3) & 3];
	if (cfg->given.shmmin > (cfg->given.shmmax ? cfg->given.shmmax :
						     1 << 16))
		cfg->given.shmmin = 0;
	cfg->host_limits = fake_host_limits;
	cfg->parent_of = fake_parent_of;
	M.timed = !(b3 & 0x40);
	if (M.timed) {
		cfg->born = fake_start_time;
		cfg->next_born = fake_ticks_now;
	}
	cfg->freed = fake_freed;
	cfg->now = fake_now;
	cfg->page_size = PAGE;
	cfg->pub = &publisher;
}

/* Every caller goes away; the table must end empty, its memory freed. */
static void drain(void)
{
	struct caller rootk = root_caller();
	struct seg_stats st;
	struct snap s;
	int i, p, f;
	uint32_t n;

	op_name = "drain: fork aborts";
	for (i = 0; i < MAXFORK; i++) {
		struct caller k;

		if (!M.fork[i].used)
			continue;
		memset(&k, 0, sizeof(k));
		k.pid = M.fork[i].parent;
		perm_cred_init(&k.c, 4000, 400, k.pid);
		CHECK(seg_fork_abort((uint64_t)M.fork[i].file, &k.c,
				     M.fork[i].token) == 0,
		      "abort of pending fork %llu failed",
		      (unsigned long long)M.fork[i].token);
		m_fork_drop(i);
		caller_done(&k);
	}
	check_table();
	op_name = "drain: sessions end";
	for (p = 1; p <= NPID; p++)
		for (f = 1; f <= NPID; f++)
			for (n = M.sess[f - 1][p - 1]; n > 0; n--) {
				seg_session_close((uint64_t)f, p);
				m_session_close(f, p);
			}
	m_gc();
	check_table();
	op_name = "drain: handles released";
	while (M.nhandles) {
		seg_release(M.handle[M.nhandles - 1].h);
		M.nhandles--;
	}
	m_gc();
	check_table();
	op_name = "drain: lookups forgotten";
	while (M.nholds) {
		seg_forget(M.hold[M.nholds - 1].serial, M.hold[M.nholds - 1].n);
		M.nholds--;
	}
	m_gc();
	check_table();
	op_name = "drain: IPC_RMID of everything";
	take_snap(&s);
	for (i = 0; i < s.n; i++) {
		struct shmfs_ctl io;

		memset(&io, 0, sizeof(io));
		io.id = s.v[i].ds.shmid;
		io.cmd = IPC_RMID;
		CHECK(seg_ctl(&rootk.c, &io) == 0, "IPC_RMID of %d failed",
		      io.id);
		m_rmid(m_find(io.id));
	}
	m_gc();
	check_table();
	seg_get_stats(&st);
	CHECK(!st.used && !st.tot_pages && !st.objects && !st.handles &&
	      !st.procs && !st.pending_forks && !st.attaches,
	      "table not empty after every caller went: %u shmids, %llu "
	      "objects, %llu handles, %llu processes, %llu forks, %llu "
	      "attaches", st.used, (unsigned long long)st.objects,
	      (unsigned long long)st.handles, (unsigned long long)st.procs,
	      (unsigned long long)st.pending_forks,
	      (unsigned long long)st.attaches);
	CHECK(st.memory == 0, "%llu bytes of arena still held after every "
	      "segment went", (unsigned long long)st.memory);
	CHECK(pub.nkeys == 0, "%d keys still published", pub.nkeys);

	/* No SHM_LOCK charge outlives its segment: each user can lock one
	 * page again with a limit of one page. */
	op_name = "drain: SHM_LOCK charges";
	for (i = 1; i <= 4; i++) {
		struct caller k;
		struct shmfs_ctl io;
		int shmid, err;

		memset(&k, 0, sizeof(k));
		k.who = personas[i];
		k.pid = 1;
		perm_cred_init(&k.c, k.who.uid, k.who.gid, 1);
		err = seg_get(IPC_PRIVATE, lim.shmmin, 0600, &k.c, &shmid);
		if (!err) {
			memset(&io, 0, sizeof(io));
			io.id = shmid;
			io.cmd = SHM_LOCK;
			io.memlock = PAGE;
			err = seg_ctl(&k.c, &io);
			CHECK(err == 0,
			      "uid %u cannot lock one page after the drain: "
			      "%d (a charge was leaked)", k.who.uid, err);
			io.cmd = IPC_RMID;
			CHECK(seg_ctl(&k.c, &io) == 0, "IPC_RMID failed");
		}
		caller_done(&k);
	}
	seg_get_stats(&st);
	CHECK(!st.used && !st.objects && !st.memory, "lock probe left data");
	caller_done(&rootk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seg_config cfg;
	struct seg_stats st;
	bool fini_early;
	int err;

	in.p = data;
	in.n = size;
	memset(&M, 0, sizeof(M));
	memset(&pub, 0, sizeof(pub));
	op_no = 0;
	op_name = "setup";
	clock_now = 1000;
	ticks = 0;
	memset(pstart, 0, sizeof(pstart));
	freed_calls = 0;
	host_reads = 0;
	configure(&cfg);
	fini_early = cfg.given.shmseg == 8;
	err = seg_init(&cfg);
	CHECK(err == 0, "seg_init: %d", err);
	seg_get_stats(&st);
	CHECK(!st.attaches, "a new table counts %llu attaches",
	      (unsigned long long)st.attaches);
	seg_limits_now(&lim);
	check_table();
	while (in.n && op_no < MAXOPS) {
		op_no++;
		run_op(rd8());
	}
	op_no++;
	if (fini_early) {
		/* seg_fini with everything still in use must free it all
		 * (LeakSanitizer) and leave a fresh table behind */
		op_name = "seg_fini with callers left";
		seg_fini();
		err = seg_init(&cfg);
		CHECK(err == 0, "seg_init again: %d", err);
		seg_get_stats(&st);
		CHECK(!st.used && !st.tot_pages && !st.objects && !st.handles &&
		      !st.procs && !st.pending_forks && !st.attaches &&
		      !st.memory,
		      "a new table after seg_fini is not empty: %u shmids, "
		      "%llu pages, %llu objects, %llu handles, %llu processes,"
		      " %llu forks, %llu attaches, %llu bytes", st.used,
		      (unsigned long long)st.tot_pages,
		      (unsigned long long)st.objects,
		      (unsigned long long)st.handles,
		      (unsigned long long)st.procs,
		      (unsigned long long)st.pending_forks,
		      (unsigned long long)st.attaches,
		      (unsigned long long)st.memory);
		memset(&M, 0, sizeof(M));
		memset(&pub, 0, sizeof(pub));
		freed_calls = 0;
		check_table();
	} else {
		drain();
	}
	/* a limit given on the command line is never read from the host */
	CHECK(!(host_reads & ((cfg.given.shmmax ? SEG_LIMIT_SHMMAX : 0) |
			      (cfg.given.shmall ? SEG_LIMIT_SHMALL : 0) |
			      (cfg.given.shmmni ? SEG_LIMIT_SHMMNI : 0))),
	      "host limits %#x read although given", host_reads);
	seg_fini();
	return 0;
}
