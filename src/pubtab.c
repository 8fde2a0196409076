/*
 * The published table: a file on a tmpfs, mode 0444, mapped here and read
 * by every client.  Only this file writes it, always under the table lock
 * (seg.c calls in with it held), so each entry has one writer; readers
 * follow the seqlock protocol in shmfs_proto.h.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alive.h"
#include "pubtab.h"
#include "shmfs_proto.h"

static struct shmfs_table *tab;
static char tab_path[PATH_MAX];
/* Rebuilding (a successor's republish): key_seq stays odd throughout. */
static bool rebuilding;

static void seq_begin(uint32_t *seq)
{
	__atomic_store_n(seq, *seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void seq_end(uint32_t *seq)
{
	__atomic_store_n(seq, *seq + 1, __ATOMIC_RELEASE);
}

/*
 * Holder entries: a free list threaded through the entries themselves
 * (next), and those never used yet from hnext.  Not in the heap: a
 * successor's republish writes every chain again.
 */
static uint32_t hfree, hnext;

static uint32_t holder_alloc(void)
{
	uint32_t i = hfree;

	if (i) {
		hfree = tab->holders[i - 1].next;
		return i;
	}
	return hnext < SHMFS_TABLE_HOLDERS ? ++hnext : 0;
}

static void holders_free(uint32_t i)
{
	while (i) {
		uint32_t next = tab->holders[i - 1].next;

		tab->holders[i - 1].next = hfree;
		hfree = i;
		i = next;
	}
}

/* The counts part of slot's next pub_set: staged here until then. */
static struct {
	int slot;
	uint64_t base;
	uint64_t stamp;
	uint32_t head;
} staged = { -1, 0, 0, 0 };

static void pub_holders(int slot, uint64_t base, uint64_t stamp,
			const struct shmfs_table_holder *h, uint32_t n)
{
	uint32_t head = 0, i;

	if (!tab)
		return;
	holders_free(staged.slot >= 0 ? staged.head : 0);
	/* newest first is the daemon's order: build from the end */
	for (i = n; i-- > 0;) {
		uint32_t x = holder_alloc();

		if (!x)
			break; /* 1 << 20 records listed: the rest unseen */
		tab->holders[x - 1] = h[i];
		tab->holders[x - 1].next = head;
		head = x;
	}
	staged.slot = slot;
	staged.base = base;
	staged.stamp = stamp;
	staged.head = head;
}

static void pub_set(int slot, const struct shmfs_ds *ds, uint32_t perm_gen)
{
	struct shmfs_table_entry *e;
	uint32_t old = 0;

	if (!tab)
		return;
	e = &tab->entries[slot];
	seq_begin(&e->seq);
	e->ds = *ds;
	e->perm_gen = perm_gen;
	e->live = 1;
	if (staged.slot == slot) {
		old = e->holders;
		e->base = staged.base;
		e->base_stamp = staged.stamp;
		e->base_lpid = ds->lpid;
		e->holders = staged.head;
		staged.slot = -1;
	}
	seq_end(&e->seq);
	/* a reader still in the old chain sees seq move and reads again */
	holders_free(old);
}

static void pub_clear(int slot)
{
	struct shmfs_table_entry *e;
	uint32_t old;

	if (!tab)
		return;
	e = &tab->entries[slot];
	/* Nothing of a freed shmid stays for anyone to read: /proc/sysvipc/shm
	 * no longer shows it either.  key_next is the chains' (key_seq), and
	 * key_del has unlinked the slot already. */
	seq_begin(&e->seq);
	e->live = 0;
	memset(&e->ds, 0, sizeof(e->ds));
	e->perm_gen = 0;
	e->base = e->base_stamp = 0;
	e->base_lpid = 0;
	old = e->holders;
	e->holders = 0;
	seq_end(&e->seq);
	if (!rebuilding)
		holders_free(old);
}

static void pub_key_add(key_t key, int slot)
{
	uint32_t *head;

	if (!tab)
		return;
	head = &tab->buckets[shmfs_table_bucket(key)];
	if (!rebuilding)
		seq_begin(&tab->key_seq);
	tab->entries[slot].key_next = *head;
	*head = (uint32_t)slot + 1;
	if (!rebuilding)
		seq_end(&tab->key_seq);
}

static void pub_key_del(key_t key, int slot)
{
	uint32_t *link;

	if (!tab)
		return;
	seq_begin(&tab->key_seq);
	for (link = &tab->buckets[shmfs_table_bucket(key)]; *link;
	     link = &tab->entries[*link - 1].key_next)
		if (*link == (uint32_t)slot + 1) {
			*link = tab->entries[slot].key_next;
			tab->entries[slot].key_next = 0;
			break;
		}
	seq_end(&tab->key_seq);
}

static void pub_limits(uint64_t shmseg)
{
	if (tab)
		__atomic_store_n(&tab->shmseg,
				 shmseg < UINT32_MAX ? (uint32_t)shmseg
						     : UINT32_MAX,
				 __ATOMIC_RELEASE);
}

static void pub_session(uint32_t sid, uint32_t gen, pid_t pid)
{
	struct shmfs_table_session v = { .gen = gen, .pid = (int32_t)pid };

	if (tab && sid < SHMFS_TABLE_SESSIONS)
		__atomic_store(&tab->sessions[sid], &v, __ATOMIC_RELEASE);
}

/*
 * Forget everything, readers told to wait (key_seq odd, and each entry's
 * seq made even again: a dead server may have left one odd), until
 * pub_reset_done.
 */
static void pub_reset(void)
{
	uint32_t i;

	if (!tab)
		return;
	if (!(__atomic_load_n(&tab->key_seq, __ATOMIC_RELAXED) & 1))
		seq_begin(&tab->key_seq);
	rebuilding = true;
	hfree = hnext = 0;
	staged.slot = -1;
	memset(tab->buckets, 0, sizeof(tab->buckets));
	for (i = 0; i < SHMFS_MAX_SLOTS; i++) {
		struct shmfs_table_entry *e = &tab->entries[i];

		if (e->seq & 1)
			seq_end(&e->seq);
		e->key_next = 0;
		if (e->live)
			pub_clear((int)i);
	}
	for (i = 0; i < SHMFS_TABLE_SESSIONS; i++)
		if (tab->sessions[i].gen)
			pub_session(i, 0, 0);
}

static void pub_reset_done(void)
{
	if (!tab)
		return;
	rebuilding = false;
	seq_end(&tab->key_seq);
}

const struct seg_publisher pubtab_publisher = {
	.set = pub_set,
	.holders = pub_holders,
	.clear = pub_clear,
	.key_add = pub_key_add,
	.key_del = pub_key_del,
	.session = pub_session,
	.limits = pub_limits,
	.reset = pub_reset,
	.reset_done = pub_reset_done,
};

/* Tables of daemons that died without cleaning up. */
static void pubtab_sweep(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((de = readdir(d))) {
		char path[PATH_MAX];
		int pid;

		if (sscanf(de->d_name, "table.%d", &pid) != 1 || pid <= 0)
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
}

/* Map the table file and close it: the map, or NULL with errno set (the
 * file closed all the same). */
static struct shmfs_table *map_and_close(int fd)
{
	void *map = mmap(NULL, sizeof(struct shmfs_table),
			 PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	int err = errno;

	close(fd);
	errno = err;
	return map == MAP_FAILED ? NULL : map;
}

int pubtab_open(const char *dir, pid_t owner)
{
	size_t size = sizeof(struct shmfs_table);
	void *map;
	int fd, err;

	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	pubtab_sweep(dir);
	snprintf(tab_path, sizeof(tab_path), "%s/table.%d", dir, (int)owner);
	fd = open(tab_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		  0444);
	if (fd < 0) {
		err = -errno;
		tab_path[0] = '\0';
		return err;
	}
	/* O_CREAT honours the umask; readers need the read bits. */
	if (fchmod(fd, 0444) < 0 || ftruncate(fd, (off_t)size) < 0) {
		err = -errno;
		close(fd);
		goto fail;
	}
	map = map_and_close(fd);
	if (!map) {
		err = -errno;
		goto fail;
	}
	tab = map;
	tab->version = SHMFS_TABLE_VERSION;
	tab->page_size = (uint32_t)sysconf(_SC_PAGESIZE);
	tab->max_slots = SHMFS_MAX_SLOTS;
	tab->daemon_pid = (int32_t)owner;
	__atomic_store_n(&tab->magic, SHMFS_TABLE_MAGIC, __ATOMIC_RELEASE);
	/* the holder, if it is the owner, holds the word itself */
	if (owner == getpid() && (err = alive_hold_thread(&tab->alive)))
		fprintf(stderr,
			"shmfs: warning: no keeper word in the published "
			"table (%s): clients ask the kernel at each read\n",
			strerror(-err));
	return 0;
fail:
	unlink(tab_path);
	tab_path[0] = '\0';
	return err;
}

int pubtab_adopt(const char *dir, pid_t owner)
{
	struct shmfs_table *map = NULL;
	struct stat st;
	int fd, err = -EPROTO;

	snprintf(tab_path, sizeof(tab_path), "%s/table.%d", dir, (int)owner);
	fd = open(tab_path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		err = -errno;
	} else if (fstat(fd, &st) < 0) {
		err = -errno;
		close(fd);
	} else if ((size_t)st.st_size != sizeof(*map)) {
		err = -EINVAL;
		close(fd);
	} else if (!(map = map_and_close(fd))) {
		err = -errno;
	} else if (map->magic == SHMFS_TABLE_MAGIC &&
		   map->version == SHMFS_TABLE_VERSION &&
		   map->daemon_pid == (int32_t)owner) {
		tab = map;
		return 0;
	} else {
		munmap(map, sizeof(*map));
	}
	tab_path[0] = '\0';
	return err;
}

void pubtab_close(void)
{
	if (tab) {
		__atomic_store_n(&tab->magic, 0, __ATOMIC_RELEASE);
		munmap(tab, sizeof(*tab));
		tab = NULL;
	}
	if (tab_path[0])
		unlink(tab_path);
	tab_path[0] = '\0';
}

const char *pubtab_path(void)
{
	return tab_path[0] ? tab_path : NULL;
}
