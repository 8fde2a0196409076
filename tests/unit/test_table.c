/*
 * Unit tests of the table's index and SysV rules (src/seg.c, status.c):
 * creation and lookup and their errno, ids and their sequence, deferred
 * removal, IPC_SET, SHM_LOCK and the other shmctl commands, live limits,
 * the status text, lookups, the published copy and a full table.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include "seg_fixture.h"

/* ---- shmget ---- */

static void test_shmget_creates_then_finds(void)
{
	struct shmfs_ds ds;
	struct seg_view v;
	int id, again;

	setup(&std_limits);
	fake.clock = 1111;
	id = get(KEY, 100, IPC_CREAT | IPC_EXCL | 0640);
	REQUIRE(CHECK(id > 0));
	again = get(KEY, 100, 0);
	CHECK_EQ(again, id);
	CHECK_EQ(get(KEY, 0, 0), id);	/* size 0 finds an existing key */
	CHECK_EQ(get(KEY, 100, IPC_CREAT | 0640), id);
	CHECK_EQ(get_as(BOB, BGRP, 600, KEY, 1, IPC_CREAT), id);

	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.key, KEY);
	CHECK_EQ(ds.shmid, id);
	CHECK_EQ(ds.uid, ALICE);
	CHECK_EQ(ds.cuid, ALICE);
	CHECK_EQ(ds.gid, AGRP);
	CHECK_EQ(ds.cgid, AGRP);
	/* only the permission bits: IPC_CREAT's 01000 is SHM_DEST's bit */
	CHECK_EQ(ds.mode, 0640);
	CHECK_UEQ(ds.segsz, 100);
	CHECK_EQ(ds.cpid, 501);
	CHECK_EQ(ds.lpid, 0);
	CHECK_UEQ(ds.nattch, 0);
	CHECK_EQ(ds.atime, 0);
	CHECK_EQ(ds.dtime, 0);
	CHECK_EQ(ds.ctime, 1111);

	REQUIRE(CHECK_EQ(seg_lookup_key(KEY, &v), 0));
	CHECK_EQ(v.ds.shmid, id);
	CHECK(!v.removed);
	CHECK(!v.freed);
	CHECK_EQ(v.slot, SLOT(id));
	CHECK(seg_key_exists(KEY));
	CHECK(!seg_key_exists(KEY + 1));
	CHECK_EQ(seg_lookup_key(KEY + 1, &v), -ENOENT);
	CHECK_EQ(shm_info().used_ids, 1);
}

static void test_shmget_errno_order_on_existing_key(void)
{
	int id;

	setup(&std_limits);
	id = get(KEY, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK(id > 0));
	/* Bob may not read or write it, the size is too big, and EXCL. */
	CHECK_EQ(get_as(BOB, BGRP, 600, KEY, 200, IPC_CREAT | IPC_EXCL | 0600),
		 -EEXIST);
	CHECK_EQ(get_as(BOB, BGRP, 600, KEY, 50, IPC_CREAT | IPC_EXCL),
		 -EEXIST);
	CHECK_EQ(get_as(BOB, BGRP, 600, KEY, 200, 0600), -EINVAL);
	CHECK_EQ(get_as(BOB, BGRP, 600, KEY, 200, IPC_CREAT | 0600), -EINVAL);
	CHECK_EQ(get_as(BOB, BGRP, 600, KEY, 200, 0), -EINVAL);
	CHECK_EQ(get_as(BOB, BGRP, 600, KEY, 50, 0600), -EACCES);
	CHECK_EQ(get_as(BOB, BGRP, 600, KEY, 50, 0400), -EACCES);
	CHECK_EQ(get_as(BOB, BGRP, 600, KEY, 50, 0004), -EACCES);
	/* asking for no bits passes */
	CHECK_EQ(get_as(BOB, BGRP, 600, KEY, 50, 0), id);
	CHECK_EQ(get_as(BOB, BGRP, 600, KEY, 100, IPC_CREAT), id);
	/* the owner: the size limit is the existing segsz, inclusive */
	CHECK_EQ(get(KEY, 100, 0600), id);
	CHECK_EQ(get(KEY, 101, 0600), -EINVAL);
	/* IPC_EXCL without IPC_CREAT is no EEXIST */
	CHECK_EQ(get(KEY, 100, IPC_EXCL | 0600), id);
	CHECK_EQ(shm_info().used_ids, 1);
}

static void test_shmget_without_creat_gives_enoent(void)
{
	setup(&std_limits);
	CHECK_EQ(get(KEY, 100, 0), -ENOENT);
	CHECK_EQ(get(KEY, 100, 0600), -ENOENT);
	CHECK_EQ(get(KEY, 100, IPC_EXCL | 0600), -ENOENT);
	CHECK_EQ(get_as(BOB, BGRP, 600, KEY, 100, 0), -ENOENT);
	CHECK_EQ(shm_info().used_ids, 0);
	CHECK(!seg_key_exists(KEY));
}

static void test_shmget_size_limits(void)
{
	struct seg_limits l = std_limits;
	int k = KEY;

	l.shmmin = 10;
	l.shmmax = 3 * PAGE + 5;
	setup(&l);
	CHECK_EQ(get(k++, 9, IPC_CREAT | 0600), -EINVAL);
	CHECK_EQ(get(k++, 0, IPC_CREAT | 0600), -EINVAL);
	CHECK_EQ(get(k++, 3 * PAGE + 6, IPC_CREAT | 0600), -EINVAL);
	CHECK_EQ(get(k++, UINT64_MAX, IPC_CREAT | 0600), -EINVAL);
	CHECK_EQ(get(k++, UINT64_MAX - PAGE + 2, IPC_CREAT | 0600), -EINVAL);
	CHECK_EQ(get(IPC_PRIVATE, 9, 0600), -EINVAL);
	CHECK_EQ(get(IPC_PRIVATE, 3 * PAGE + 6, 0600), -EINVAL);
	CHECK_EQ(shm_info().used_ids, 0);
	CHECK(get(k++, 10, IPC_CREAT | 0600) > 0);
	CHECK(get(k++, 3 * PAGE + 5, IPC_CREAT | 0600) > 0);
	CHECK(get(IPC_PRIVATE, 10, 0600) > 0);
	CHECK_EQ(shm_info().used_ids, 3);

	/* shmmin not given: 1 */
	l.shmmin = 0;
	setup(&l);
	CHECK_EQ(get(KEY, 0, IPC_CREAT | 0600), -EINVAL);
	CHECK(get(KEY, 1, IPC_CREAT | 0600) > 0);
}

static void test_shmget_enospc_at_shmmni_and_recovery(void)
{
	struct seg_limits l = std_limits;
	int ids[4], i, id;

	l.shmmni = 4;
	setup(&l);
	for (i = 0; i < 4; i++) {
		ids[i] = get(KEY + i, 100, IPC_CREAT | 0600);
		REQUIRE(CHECK(ids[i] > 0));
		CHECK_EQ(SLOT(ids[i]), i);
	}
	CHECK_EQ(get(KEY + 4, 100, IPC_CREAT | 0600), -ENOSPC);
	CHECK_EQ(get(IPC_PRIVATE, 100, 0600), -ENOSPC);
	/* size is checked before the table is found full */
	CHECK_EQ(get(KEY + 4, l.shmmax + 1, IPC_CREAT | 0600), -EINVAL);
	/* finding an existing key needs no slot */
	CHECK_EQ(get(KEY + 2, 100, IPC_CREAT | 0600), ids[2]);
	CHECK_EQ(shm_info().used_ids, 4);

	CHECK_EQ(rmid(ids[1]), 0);
	id = get(KEY + 4, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK(id > 0));
	CHECK_EQ(SLOT(id), 1);		/* the lowest free slot */
	CHECK_NE(id, ids[1]);
	CHECK_EQ(get(KEY + 5, 100, IPC_CREAT | 0600), -ENOSPC);
}

static void test_shmget_enospc_at_shmall_pages_rounded_up(void)
{
	struct seg_limits l = std_limits;
	int a, b, c, d;

	l.shmall = 3;
	setup(&l);
	a = get(KEY, PAGE + 1, IPC_CREAT | 0600);	/* 2 pages */
	REQUIRE(CHECK(a > 0));
	CHECK_UEQ(shm_info().shm_tot, 2);
	CHECK_EQ(get(KEY + 1, PAGE + 1, IPC_CREAT | 0600), -ENOSPC);
	CHECK_EQ(get(IPC_PRIVATE, 2 * PAGE, 0600), -ENOSPC);
	b = get(KEY + 1, PAGE, IPC_CREAT | 0600);	/* 1 page: 3 */
	REQUIRE(CHECK(b > 0));
	CHECK_UEQ(shm_info().shm_tot, 3);
	CHECK_EQ(get(KEY + 2, 1, IPC_CREAT | 0600), -ENOSPC);

	CHECK_EQ(rmid(a), 0);
	CHECK_UEQ(shm_info().shm_tot, 1);
	c = get(KEY + 2, 2 * PAGE, IPC_CREAT | 0600);
	REQUIRE(CHECK(c > 0));
	CHECK_UEQ(shm_info().shm_tot, 3);

	/* A removed segment's pages count until it is freed. */
	seg_session_open(CTL(700), 700);
	REQUIRE(CHECK_EQ(attach(c, 700), 0));
	CHECK_EQ(rmid(c), 0);
	CHECK_UEQ(shm_info().shm_tot, 3);
	CHECK_EQ(get(KEY + 3, 1, IPC_CREAT | 0600), -ENOSPC);
	CHECK_EQ(seg_detach(700, c), 0);
	CHECK_UEQ(shm_info().shm_tot, 1);
	d = get(KEY + 3, 2 * PAGE, IPC_CREAT | 0600);
	CHECK(d > 0);
	seg_session_close(CTL(700), 700);
}

static void test_segsz_kept_as_asked(void)
{
	struct seg_handle *h;
	struct shmfs_ds ds;
	char buf[2 * PAGE];
	char zero[2 * PAGE] = { 0 };
	int id;

	setup(&std_limits);
	id = get(KEY, PAGE + 1, IPC_CREAT | 0600);
	REQUIRE(CHECK(id > 0));
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_UEQ(ds.segsz, PAGE + 1);
	CHECK_UEQ(shm_info().shm_tot, 2);
	REQUIRE(CHECK_EQ(open_id(id, 700, false, &h), 0));
	CHECK_UEQ(seg_handle_size(h), PAGE + 1);
	/* the memory behind it is whole pages, zero-filled */
	REQUIRE(CHECK(seg_handle_fd(h) >= 0));
	CHECK_EQ(seg_handle_offset(h) % PAGE, 0);
	CHECK_EQ(pread(seg_handle_fd(h), buf, sizeof(buf),
		       (off_t)seg_handle_offset(h)), sizeof(buf));
	CHECK(memcmp(buf, zero, sizeof(buf)) == 0);
	seg_release(h);
}

/* Bytes of data (not holes) in [off, off + len) of fd. */
/* ---- ids ---- */

static void test_shmid_is_seq_and_slot(void)
{
	struct shmfs_ds ds;
	struct shmfs_ctl io;
	int a, b, c, d;

	setup(&std_limits);
	a = get(KEY, 100, IPC_CREAT | 0600);
	b = get(KEY + 1, 100, IPC_CREAT | 0600);
	c = get(IPC_PRIVATE, 100, 0600);
	CHECK_EQ(a, ID(1, 0));
	CHECK_EQ(b, ID(1, 1));
	CHECK_EQ(c, ID(1, 2));
	REQUIRE(CHECK_EQ(stat_id(b, &ds), 0));
	CHECK_EQ(ds.seq, 1);

	CHECK_EQ(rmid(a), 0);		/* not attached: freed at once */
	CHECK_EQ(fake.nfreed, 1);
	CHECK_EQ(fake.freed[0], a);
	CHECK_EQ(stat_id(a, &ds), -EINVAL);
	CHECK_EQ(rmid(a), -EINVAL);
	CHECK_EQ(seg_access(a, PERM_R, &root_cred), -EINVAL);
	CHECK_EQ(ctl(SHM_LOCK, a, &io), -EINVAL);
	CHECK_EQ(ctl(IPC_SET, a, &io), -EINVAL);

	d = get(KEY + 2, 100, IPC_CREAT | 0600);
	CHECK_EQ(SLOT(d), 0);		/* the slot is reused... */
	CHECK_EQ(d, ID(2, 0));		/* ...under another shmid */
	CHECK_NE(d, a);
	CHECK_EQ(stat_id(a, &ds), -EINVAL);
	REQUIRE(CHECK_EQ(stat_id(d, &ds), 0));
	CHECK_EQ(ds.seq, 2);
	CHECK_EQ(ds.key, KEY + 2);
	/* ids that were never handed out */
	CHECK_EQ(stat_id(-1, &ds), -EINVAL);
	CHECK_EQ(stat_id(0, &ds), -EINVAL);
	CHECK_EQ(stat_id(3, &ds), -EINVAL);
	CHECK_EQ(stat_id(ID(1, 3), &ds), -EINVAL);
	CHECK_EQ(stat_id(ID(3, 0), &ds), -EINVAL);
}

static void test_seq_wraps_without_shmid_zero(void)
{
	const int cycles = 0xffff + 10;
	int i, id, prev = 0, first = 0, bad = 0;
	struct shmfs_ds ds;

	setup(&std_limits);
	for (i = 0; i < cycles; i++) {
		int want = ID(i % 0xffff + 1, 0);

		id = get(IPC_PRIVATE, 1, 0600);
		if (!CHECK_EQ(id, want) || !CHECK(id > 0) ||
		    !CHECK_NE(id, prev) || !CHECK_EQ(rmid(id), 0)) {
			bad = 1;
			break;
		}
		if (!first)
			first = id;
		prev = id;
	}
	REQUIRE(CHECK(!bad));
	CHECK_EQ(fake.nfreed, cycles);
	CHECK_EQ(fake.last_freed, prev);
	/* the largest shmid is positive; after it the sequence starts over */
	CHECK_EQ(ID(0xffff, 0), 0x7fff8000);
	CHECK_EQ(first, ID(1, 0));
	CHECK_EQ(stats().objects, 0);
	CHECK_EQ(stats().used, 0);
	id = get(IPC_PRIVATE, 1, 0600);
	CHECK_EQ(id, ID(cycles % 0xffff + 1, 0));
	CHECK_EQ(stat_id(prev, &ds), -EINVAL);
}

static void test_ipc_private_always_creates(void)
{
	int a, b, c, d;
	struct shmfs_ds ds;
	struct seg_view v;

	setup(&std_limits);
	CHECK(!seg_key_exists(IPC_PRIVATE));
	a = get(IPC_PRIVATE, 100, 0600);
	b = get(IPC_PRIVATE, 100, IPC_CREAT | IPC_EXCL | 0600);
	c = get(IPC_PRIVATE, 100, IPC_CREAT | 0600);
	d = get(IPC_PRIVATE, 100, 0);
	CHECK(a > 0 && b > 0 && c > 0 && d > 0);
	CHECK(a != b && a != c && a != d && b != c && b != d && c != d);
	CHECK_EQ(shm_info().used_ids, 4);
	REQUIRE(CHECK_EQ(stat_id(c, &ds), 0));
	CHECK_EQ(ds.key, IPC_PRIVATE);
	CHECK(seg_key_exists(IPC_PRIVATE));
	CHECK_EQ(seg_lookup_key(IPC_PRIVATE, &v), -ENOENT);
	CHECK_EQ(rmid(a), 0);
	CHECK_EQ(rmid(b), 0);
	CHECK_EQ(rmid(c), 0);
	CHECK(seg_key_exists(IPC_PRIVATE));
	CHECK_EQ(rmid(d), 0);
	CHECK(!seg_key_exists(IPC_PRIVATE));
}

static void test_one_segment_per_key(void)
{
	struct seg_limits l = std_limits;
	enum { N = 3000 };
	static int ids[N];
	struct seg_view v;
	int i, bad = 0;

	l.shmmni = 4096;
	setup(&l);
	for (i = 0; i < N && !bad; i++) {
		key_t k = (key_t)(0x9e3779b9u * (unsigned)(i + 1));

		ids[i] = get(k, 100, IPC_CREAT | 0600);
		bad |= !CHECK(ids[i] > 0);
		bad |= !CHECK_EQ(get(k, 100, IPC_CREAT | 0600), ids[i]);
	}
	REQUIRE(CHECK(!bad));
	CHECK_EQ(shm_info().used_ids, N);
	for (i = 0; i < N; i += 3)
		CHECK_EQ(rmid(ids[i]), 0);
	for (i = 0; i < N && !bad; i++) {
		key_t k = (key_t)(0x9e3779b9u * (unsigned)(i + 1));

		if (i % 3 == 0) {
			bad |= !CHECK_EQ(get(k, 100, 0), -ENOENT);
			bad |= !CHECK_EQ(seg_lookup_key(k, &v), -ENOENT);
			bad |= !CHECK(!seg_key_exists(k));
		} else {
			bad |= !CHECK_EQ(get(k, 100, 0), ids[i]);
			bad |= !CHECK_EQ(seg_lookup_key(k, &v), 0);
			bad |= !CHECK_EQ(v.ds.shmid, ids[i]);
			bad |= !CHECK_EQ(v.ds.key, k);
		}
	}
	CHECK_EQ(shm_info().used_ids, N - (N + 2) / 3);
}

/* Many threads create the same keys at once: one segment per key. */
enum { RACE_THREADS = 8, RACE_KEYS = 300 };

static struct {
	pthread_barrier_t start;
	int ids[RACE_THREADS][RACE_KEYS];
	int excl_wins[RACE_KEYS];	/* creations that IPC_EXCL allowed */
	int excl_other[RACE_KEYS];	/* EEXIST, or anything else */
} race;

static void *race_thread(void *arg)
{
	int t = (int)(intptr_t)arg, k;

	pthread_barrier_wait(&race.start);
	for (k = 0; k < RACE_KEYS; k++)
		race.ids[t][k] = get_as(ALICE, AGRP, 1000 + t, 0x700000 + k,
					100, IPC_CREAT | 0600);
	for (k = 0; k < RACE_KEYS; k++) {
		int id = get_as(ALICE, AGRP, 1000 + t, 0x800000 + k, 100,
				IPC_CREAT | IPC_EXCL | 0600);

		if (id > 0)
			__atomic_fetch_add(&race.excl_wins[k], 1,
					   __ATOMIC_RELAXED);
		else if (id != -EEXIST)
			__atomic_fetch_add(&race.excl_other[k], 1,
					   __ATOMIC_RELAXED);
	}
	return NULL;
}

static void test_racing_creators_get_one_segment(void)
{
	struct seg_limits l = std_limits;
	pthread_t th[RACE_THREADS];
	int t, k, bad = 0;

	l.shmmni = 1024;
	setup(&l);
	memset(&race, 0, sizeof(race));
	REQUIRE(CHECK_EQ(pthread_barrier_init(&race.start, NULL,
					      RACE_THREADS), 0));
	for (t = 0; t < RACE_THREADS; t++)
		REQUIRE(CHECK_EQ(pthread_create(&th[t], NULL, race_thread,
						(void *)(intptr_t)t), 0));
	for (t = 0; t < RACE_THREADS; t++)
		pthread_join(th[t], NULL);
	pthread_barrier_destroy(&race.start);
	for (k = 0; k < RACE_KEYS && !bad; k++) {
		bad |= !CHECK(race.ids[0][k] > 0);
		for (t = 1; t < RACE_THREADS && !bad; t++)
			bad |= !CHECK_EQ(race.ids[t][k], race.ids[0][k]);
		bad |= !CHECK_EQ(race.excl_wins[k], 1);
		bad |= !CHECK_EQ(race.excl_other[k], 0);
	}
	CHECK_EQ(shm_info().used_ids, 2 * RACE_KEYS);
}

/* ---- IPC_RMID ---- */

static void test_rmid_while_attached_defers_the_free(void)
{
	struct seg_handle *h;
	struct shmfs_ds ds;
	struct seg_view v;
	uint64_t serial;
	int id, id2;

	setup(&std_limits);
	seg_session_open(CTL(501), 501);
	seg_session_open(CTL(502), 502);
	id = get(KEY, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK(id > 0));
	serial = serial_of(id);
	REQUIRE(CHECK_EQ(attach(id, 501), 0));
	CHECK_UEQ(nattch(id), 1);

	CHECK_EQ(rmid(id), 0);
	CHECK_EQ(fake.nfreed, 0);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.key, IPC_PRIVATE);
	CHECK_EQ(ds.mode, SHMFS_SHM_DEST | 0600);
	CHECK_UEQ(ds.nattch, 1);
	/* a second IPC_RMID is harmless */
	CHECK_EQ(rmid(id), 0);
	CHECK_UEQ(nattch(id), 1);
	CHECK_EQ(fake.nfreed, 0);

	/* the key is free at once */
	CHECK(!seg_key_exists(KEY));
	CHECK_EQ(seg_lookup_key(KEY, &v), -ENOENT);
	CHECK_EQ(get(KEY, 100, 0), -ENOENT);
	CHECK_EQ(seg_lookup_name(KEY, id, false, &v), -ENOENT);
	CHECK_EQ(seg_lookup_name(IPC_PRIVATE, id, false, &v), -ENOENT);
	CHECK(!seg_key_exists(IPC_PRIVATE));
	id2 = get(KEY, 100, IPC_CREAT | IPC_EXCL | 0600);
	REQUIRE(CHECK(id2 > 0));
	CHECK_NE(id2, id);
	CHECK_EQ(get(KEY, 100, 0), id2);

	/* the shmid still works, for a new attach too */
	REQUIRE(CHECK_EQ(seg_lookup_id(id, false, &v), 0));
	CHECK_EQ(v.ds.shmid, id);
	CHECK(v.removed);
	CHECK(!v.freed);
	CHECK_EQ(v.serial, serial);
	CHECK_EQ(seg_access(id, PERM_R | PERM_W, &root_cred), 0);
	REQUIRE(CHECK_EQ(attach(id, 502), 0));
	CHECK_UEQ(nattch(id), 2);
	CHECK_EQ(shm_info().used_ids, 2);

	CHECK_EQ(seg_detach(502, id), 0);
	CHECK_UEQ(nattch(id), 1);
	CHECK_EQ(fake.nfreed, 0);
	CHECK_EQ(seg_detach(501, id), 0);	/* the last detach frees it */
	CHECK_EQ(fake.nfreed, 1);
	CHECK_EQ(fake.freed[0], id);
	CHECK_EQ(stat_id(id, &ds), -EINVAL);
	CHECK_EQ(seg_lookup_id(id, false, &v), -ENOENT);
	CHECK_EQ(seg_lookup_serial(serial, &v), -ENOENT);
	CHECK_EQ(shm_info().used_ids, 1);
	CHECK_EQ(seg_open(serial, &root_cred, O_RDWR, false, &h), -ENOENT);
	CHECK_EQ(seg_detach(501, id), -EINVAL);
	/* id2 untouched */
	CHECK_EQ(get(KEY, 100, 0), id2);
	CHECK_UEQ(nattch(id2), 0);
	CHECK_EQ(stats().objects, 1);
	CHECK_EQ(stats().handles, 0);
	seg_session_close(CTL(501), 501);
	seg_session_close(CTL(502), 502);
	CHECK_EQ(stats().procs, 0);
}

static void test_rmid_unattached_frees_at_once(void)
{
	struct shmfs_ds ds;
	struct seg_view v;
	uint64_t serial;
	int id;

	setup(&std_limits);
	id = get(KEY, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK(id > 0));
	serial = serial_of(id);
	CHECK_EQ(rmid(id), 0);
	CHECK_EQ(fake.nfreed, 1);
	CHECK_EQ(fake.freed[0], id);
	CHECK_EQ(stat_id(id, &ds), -EINVAL);
	CHECK_EQ(seg_lookup_serial(serial, &v), -ENOENT);
	CHECK_EQ(stats().objects, 0);
	CHECK_EQ(shm_info().used_ids, 0);
	CHECK_UEQ(shm_info().shm_tot, 0);
}

static void test_rmid_needs_owner_creator_or_root(void)
{
	struct perm_cred bob = who(BOB, BGRP, 600);
	struct perm_cred carol = who(CAROL, AGRP, 601);
	struct perm_cred alice = who(ALICE, AGRP, 501);
	struct shmfs_ctl io;
	int id;

	setup(&std_limits);
	id = get(KEY, 100, IPC_CREAT | 0666);
	REQUIRE(CHECK(id > 0));
	CHECK_EQ(ctl_as(&bob, IPC_RMID, id, &io), -EPERM);
	CHECK_EQ(ctl_as(&carol, IPC_RMID, id, &io), -EPERM);
	CHECK_EQ(seg_unlink(KEY, id, &bob), -EPERM);
	CHECK_EQ(get(KEY, 100, 0), id);
	CHECK_EQ(fake.nfreed, 0);
	CHECK_EQ(seg_unlink(KEY + 1, id, &alice), -ENOENT);
	CHECK_EQ(seg_unlink(KEY, id + 1, &alice), -ENOENT);
	CHECK_EQ(seg_unlink(KEY, id, &alice), 0);
	CHECK_EQ(fake.nfreed, 1);
	CHECK_EQ(seg_unlink(KEY, id, &alice), -ENOENT);
	CHECK_EQ(get(KEY, 100, 0), -ENOENT);
}

/* ---- IPC_SET, chmod/chown, SHM_LOCK ---- */

static void test_ipc_set_rules(void)
{
	struct perm_cred alice = who(ALICE, AGRP, 501);
	struct perm_cred bob = who(BOB, BGRP, 600);
	struct perm_cred carol = who(CAROL, AGRP, 601);
	struct shmfs_ctl io;
	struct shmfs_ds ds;
	int id;

	setup(&std_limits);
	id = get(KEY, 100, IPC_CREAT | 0666);
	REQUIRE(CHECK(id > 0));
	/* not owner, not creator: even with every mode bit */
	fake.clock = 1500;
	CHECK_EQ(ipc_set(&bob, id, BOB, BGRP, 0777), -EPERM);
	CHECK_EQ(ipc_set(&carol, id, CAROL, AGRP, 0777), -EPERM);
	CHECK_EQ(ipc_set(&carol, id, (uint32_t)-1, AGRP, 0777), -EPERM);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.uid, ALICE);
	CHECK_EQ(ds.mode, 0666);
	CHECK_EQ(ds.ctime, 1000);

	/* the owner gives it to Bob */
	CHECK_EQ(ipc_set(&alice, id, BOB, BGRP, 0604), 0);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.uid, BOB);
	CHECK_EQ(ds.gid, BGRP);
	CHECK_EQ(ds.cuid, ALICE);
	CHECK_EQ(ds.cgid, AGRP);
	CHECK_EQ(ds.mode, 0604);
	CHECK_EQ(ds.ctime, 1500);
	/* the new owner and the creator both may; a group member may not */
	CHECK_EQ(ipc_set(&bob, id, BOB, BGRP, 0600), 0);
	CHECK_EQ(ipc_set(&alice, id, BOB, BGRP, 0640), 0);
	CHECK_EQ(ipc_set(&carol, id, CAROL, AGRP, 0666), -EPERM);
	CHECK_EQ(ipc_set(&root_cred, id, BOB, AGRP, 0660), 0);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.uid, BOB);
	CHECK_EQ(ds.gid, AGRP);
	CHECK_EQ(ds.mode, 0660);

	/* only the 0777 bits are taken; SHM_LOCKED stays */
	CHECK_EQ(ctl(SHM_LOCK, id, &io), 0);
	CHECK_EQ(ipc_set(&bob, id, BOB, AGRP,
			 07777 | SHMFS_SHM_DEST | SHMFS_SHM_LOCKED), 0);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.mode, SHMFS_SHM_LOCKED | 0777);
	CHECK_EQ(ipc_set(&bob, id, BOB, AGRP, 01600), 0);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.mode, SHMFS_SHM_LOCKED | 0600);

	/* uid or gid -1: EINVAL, nothing changed */
	fake.clock = 2500;
	CHECK_EQ(ipc_set(&bob, id, (uint32_t)-1, AGRP, 0644), -EINVAL);
	CHECK_EQ(ipc_set(&bob, id, BOB, (uint32_t)-1, 0644), -EINVAL);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.uid, BOB);
	CHECK_EQ(ds.gid, AGRP);
	CHECK_EQ(ds.mode, SHMFS_SHM_LOCKED | 0600);
	CHECK_EQ(ds.ctime, 1500);
	/* on an id that does not exist */
	CHECK_EQ(ipc_set(&root_cred, id + 1, 0, 0, 0600), -EINVAL);
}

static void test_setattr_rules(void)
{
	struct perm_cred alice = who(ALICE, AGRP, 501);
	struct perm_cred carol = who(CAROL, AGRP, 601);
	struct shmfs_ctl io;
	struct shmfs_ds ds;
	struct seg_view v;
	uint64_t serial;
	int id;

	setup(&std_limits);
	id = get(KEY, 100, IPC_CREAT | 0640);
	REQUIRE(CHECK(id > 0));
	serial = serial_of(id);
	fake.clock = 2000;
	CHECK_EQ(seg_setattr(serial, &alice, 01640, -1, -1, &v), -EINVAL);
	CHECK_EQ(seg_setattr(serial, &alice, 04600, BOB, BGRP, &v), -EINVAL);
	CHECK_EQ(seg_setattr(serial, &alice, SHMFS_SHM_DEST, -1, -1, &v),
		 -EINVAL);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.mode, 0640);
	CHECK_EQ(ds.uid, ALICE);
	CHECK_EQ(ds.gid, AGRP);
	CHECK_EQ(ds.ctime, 1000);

	CHECK_EQ(seg_setattr(serial, &carol, 0666, -1, -1, &v), -EPERM);
	CHECK_EQ(seg_setattr(serial, &carol, -1, CAROL, -1, &v), -EPERM);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.mode, 0640);
	CHECK_EQ(ds.uid, ALICE);

	CHECK_EQ(ctl(SHM_LOCK, id, &io), 0);
	CHECK_EQ(seg_setattr(serial, &alice, 0600, -1, -1, &v), 0);
	CHECK_EQ(v.ds.mode, SHMFS_SHM_LOCKED | 0600);
	CHECK_EQ(v.ds.uid, ALICE);
	CHECK_EQ(v.ds.ctime, 2000);
	fake.clock = 2100;
	CHECK_EQ(seg_setattr(serial, &alice, -1, BOB, -1, &v), 0);
	CHECK_EQ(v.ds.mode, SHMFS_SHM_LOCKED | 0600);
	CHECK_EQ(v.ds.uid, BOB);
	CHECK_EQ(v.ds.gid, AGRP);
	CHECK_EQ(v.ds.cuid, ALICE);
	fake.clock = 2200;
	/* the creator still may; root may */
	CHECK_EQ(seg_setattr(serial, &alice, -1, -1, BGRP, &v), 0);
	CHECK_EQ(v.ds.gid, BGRP);
	CHECK_EQ(seg_setattr(serial, &root_cred, 0644, CAROL, AGRP, &v), 0);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.uid, CAROL);
	CHECK_EQ(ds.gid, AGRP);
	CHECK_EQ(ds.mode, SHMFS_SHM_LOCKED | 0644);
	CHECK_EQ(ds.ctime, 2200);
	/* now Carol owns it */
	CHECK_EQ(seg_setattr(serial, &carol, 0600, -1, -1, &v), 0);

	CHECK_EQ(rmid(id), 0);
	CHECK_EQ(seg_setattr(serial, &alice, 0600, -1, -1, &v), -ENOENT);
}

static int shm_lock_as(struct perm_cred *c, int cmd, int id, uint64_t memlock)
{
	struct shmfs_ctl io;

	memset(&io, 0, sizeof(io));
	io.id = id;
	io.cmd = cmd;
	io.memlock = memlock;
	return seg_ctl(c, &io);
}

static uint32_t mode_of(int id)
{
	struct shmfs_ds ds;

	if (stat_id(id, &ds))
		return 0xdead;
	return ds.mode;
}

static void test_shm_lock_and_unlock(void)
{
	struct perm_cred alice = who(ALICE, AGRP, 501);
	struct perm_cred bob = who(BOB, BGRP, 600);
	const uint64_t lots = UINT64_MAX;
	int id;

	setup(&std_limits);
	seg_session_open(CTL(501), 501);
	id = get(KEY, 100, IPC_CREAT | 0666);
	REQUIRE(CHECK(id > 0));
	CHECK_EQ(shm_lock_as(&bob, SHM_LOCK, id, lots), -EPERM);
	CHECK_EQ(mode_of(id), 0666);
	/* an owner without RLIMIT_MEMLOCK may not lock */
	CHECK_EQ(shm_lock_as(&alice, SHM_LOCK, id, 0), -EPERM);
	CHECK_EQ(mode_of(id), 0666);
	CHECK_EQ(shm_lock_as(&alice, SHM_LOCK, id, lots), 0);
	CHECK_EQ(mode_of(id), SHMFS_SHM_LOCKED | 0666);
	CHECK_EQ(shm_lock_as(&alice, SHM_LOCK, id, lots), 0);	/* again */
	CHECK_EQ(mode_of(id), SHMFS_SHM_LOCKED | 0666);
	CHECK_EQ(shm_lock_as(&bob, SHM_UNLOCK, id, lots), -EPERM);
	CHECK_EQ(mode_of(id), SHMFS_SHM_LOCKED | 0666);
	CHECK_EQ(shm_lock_as(&alice, SHM_UNLOCK, id, 0), 0);
	CHECK_EQ(mode_of(id), 0666);
	CHECK_EQ(shm_lock_as(&alice, SHM_UNLOCK, id, 0), 0);	/* again */
	CHECK_EQ(mode_of(id), 0666);
	/* root needs no limit */
	CHECK_EQ(shm_lock_as(&root_cred, SHM_LOCK, id, 0), 0);
	CHECK_EQ(mode_of(id), SHMFS_SHM_LOCKED | 0666);
	/* locked and removed: both bits show */
	REQUIRE(CHECK_EQ(attach(id, 501), 0));
	CHECK_EQ(rmid(id), 0);
	CHECK_EQ(mode_of(id), SHMFS_SHM_LOCKED | SHMFS_SHM_DEST | 0666);
	seg_session_close(CTL(501), 501);
}

static void test_shm_lock_is_charged_to_the_locker(void)
{
	struct perm_cred alice = who(ALICE, AGRP, 501);
	struct perm_cred bob = who(BOB, BGRP, 600);
	const uint64_t two = 2 * PAGE;
	int a, b, c, d;

	setup(&std_limits);
	a = get(KEY, 100, IPC_CREAT | 0600);		/* 1 page each... */
	b = get(KEY + 1, PAGE, IPC_CREAT | 0600);
	c = get(KEY + 2, 1, IPC_CREAT | 0600);
	d = get(KEY + 3, PAGE + 1, IPC_CREAT | 0600);	/* but this: 2 */
	REQUIRE(CHECK(a > 0 && b > 0 && c > 0 && d > 0));
	CHECK_EQ(shm_lock_as(&alice, SHM_LOCK, d, PAGE), -ENOMEM);
	CHECK_EQ(mode_of(d), 0600);
	CHECK_EQ(shm_lock_as(&alice, SHM_LOCK, d, PAGE + 1), -ENOMEM);
	CHECK_EQ(shm_lock_as(&alice, SHM_LOCK, a, two), 0);
	CHECK_EQ(shm_lock_as(&alice, SHM_LOCK, a, two), 0); /* no 2nd charge */
	CHECK_EQ(shm_lock_as(&alice, SHM_LOCK, b, two), 0);
	CHECK_EQ(shm_lock_as(&alice, SHM_LOCK, c, two), -ENOMEM);
	CHECK_EQ(mode_of(c), 0600);
	/* an unlock gives the pages back */
	CHECK_EQ(shm_lock_as(&alice, SHM_UNLOCK, a, 0), 0);
	CHECK_EQ(shm_lock_as(&alice, SHM_LOCK, c, two), 0);
	CHECK_EQ(shm_lock_as(&alice, SHM_LOCK, a, two), -ENOMEM);
	/* so does the free of a locked segment */
	CHECK_EQ(rmid(b), 0);
	CHECK_EQ(shm_lock_as(&alice, SHM_LOCK, a, two), 0);
	/* the charge is Alice's: Bob, made owner, has his own */
	CHECK_EQ(ipc_set(&alice, d, BOB, BGRP, 0600), 0);
	CHECK_EQ(shm_lock_as(&bob, SHM_LOCK, d, two), 0);
	/* an unlock by another than the locker gives back the locker's */
	CHECK_EQ(shm_lock_as(&root_cred, SHM_UNLOCK, a, 0), 0);
	CHECK_EQ(shm_lock_as(&alice, SHM_UNLOCK, d, 0), 0);	/* creator */
	REQUIRE(CHECK_EQ(ipc_set(&alice, d, ALICE, AGRP, 0600), 0));
	CHECK_EQ(shm_lock_as(&alice, SHM_LOCK, d, two), -ENOMEM); /* c+d=3 */
	CHECK_EQ(shm_lock_as(&alice, SHM_LOCK, d, 3 * PAGE), 0);
}

/* ---- IPC_INFO, SHM_INFO, SHM_STAT ---- */

static void test_ipc_info(void)
{
	struct seg_limits l = {
		.shmmax = 1 << 20,
		.shmmin = 3,
		.shmall = 1000,
		.shmmni = 16,
		.shmseg = 8,
	};
	struct perm_cred bob = who(BOB, BGRP, 600);
	struct shmfs_ctl io;
	int a, b, c, d;

	setup(&l);
	REQUIRE(CHECK_EQ(ctl_as(&bob, IPC_INFO, 0, &io), 0));
	CHECK_UEQ(io.u.info.shmmax, 1 << 20);
	CHECK_UEQ(io.u.info.shmmin, 3);
	CHECK_UEQ(io.u.info.shmall, 1000);
	CHECK_UEQ(io.u.info.shmmni, 16);
	CHECK_UEQ(io.u.info.shmseg, 8);
	CHECK_EQ(io.ret, 0);		/* empty table */
	/* as Linux: a negative id is EINVAL before the command is looked at */
	CHECK_EQ(ctl_as(&bob, IPC_INFO, -1, &io), -EINVAL);
	CHECK_EQ(ctl_as(&bob, SHM_INFO, -1, &io), -EINVAL);

	a = get(KEY, 100, IPC_CREAT | 0600);
	b = get(KEY + 1, 100, IPC_CREAT | 0600);
	c = get(KEY + 2, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK(a > 0 && b > 0 && c > 0));
	CHECK_EQ(ctl_as(&bob, IPC_INFO, 12345, &io), 0);
	CHECK_EQ(io.ret, 2);
	CHECK_EQ(rmid(b), 0);
	CHECK_EQ(ctl(IPC_INFO, 0, &io), 0);
	CHECK_EQ(io.ret, 2);
	CHECK_EQ(rmid(c), 0);
	CHECK_EQ(ctl(IPC_INFO, 0, &io), 0);
	CHECK_EQ(io.ret, 0);
	d = get(KEY + 3, 100, IPC_CREAT | 0600);
	CHECK_EQ(SLOT(d), 1);
	CHECK_EQ(ctl(IPC_INFO, 0, &io), 0);
	CHECK_EQ(io.ret, 1);
	CHECK_EQ(rmid(a), 0);
	CHECK_EQ(ctl(IPC_INFO, 0, &io), 0);
	CHECK_EQ(io.ret, 1);
}

static void test_shm_info(void)
{
	struct seg_handle *h;
	struct shmfs_ctl io;
	int a, b;

	setup(&std_limits);
	seg_session_open(CTL(501), 501);
	REQUIRE(CHECK_EQ(ctl(SHM_INFO, 0, &io), 0));
	CHECK_EQ(io.u.shm_info.used_ids, 0);
	CHECK_UEQ(io.u.shm_info.shm_tot, 0);
	CHECK_UEQ(io.u.shm_info.shm_rss, 0);
	CHECK_EQ(io.ret, 0);
	a = get(KEY, PAGE + 1, IPC_CREAT | 0600);
	b = get(IPC_PRIVATE, 1, 0600);
	REQUIRE(CHECK(a > 0 && b > 0));
	REQUIRE(CHECK_EQ(ctl(SHM_INFO, 0, &io), 0));
	CHECK_EQ(io.u.shm_info.used_ids, 2);
	CHECK_UEQ(io.u.shm_info.shm_tot, 3);
	CHECK_UEQ(io.u.shm_info.shm_rss, 0);
	CHECK_EQ(io.ret, 1);
	/* touched pages are resident */
	REQUIRE(CHECK_EQ(open_id(a, 501, true, &h), 0));
	CHECK_EQ(pwrite(seg_handle_fd(h), "x", 1,
			(off_t)seg_handle_offset(h) + PAGE), 1);
	seg_release(h);
	REQUIRE(CHECK_EQ(ctl(SHM_INFO, 0, &io), 0));
	CHECK(io.u.shm_info.shm_rss >= 1);
	/* removed but attached still counts */
	CHECK_EQ(rmid(a), 0);
	REQUIRE(CHECK_EQ(ctl(SHM_INFO, 0, &io), 0));
	CHECK_EQ(io.u.shm_info.used_ids, 2);
	CHECK_UEQ(io.u.shm_info.shm_tot, 3);
	CHECK_EQ(seg_detach(501, a), 0);
	REQUIRE(CHECK_EQ(ctl(SHM_INFO, 0, &io), 0));
	CHECK_EQ(io.u.shm_info.used_ids, 1);
	CHECK_UEQ(io.u.shm_info.shm_tot, 1);
	CHECK_UEQ(io.u.shm_info.shm_rss, 0);
	CHECK_EQ(io.ret, 1);
	seg_session_close(CTL(501), 501);
}

static void test_shm_stat_and_stat_any(void)
{
	struct perm_cred alice = who(ALICE, AGRP, 501);
	struct perm_cred bob = who(BOB, BGRP, 600);
	struct shmfs_ctl io;
	int a, b, c;

	setup(&std_limits);
	a = get(KEY, 100, IPC_CREAT | 0600);
	b = get(KEY + 1, 200, IPC_CREAT | 0644);
	c = get(KEY + 2, 300, IPC_CREAT | 0200);
	REQUIRE(CHECK(a > 0 && b > 0 && c > 0));
	CHECK_EQ(ctl_as(&alice, SHM_STAT, 0, &io), 0);
	CHECK_EQ(io.ret, a);
	CHECK_EQ(io.u.ds.shmid, a);
	CHECK_UEQ(io.u.ds.segsz, 100);
	CHECK_EQ(ctl_as(&bob, SHM_STAT, 0, &io), -EACCES);
	CHECK_EQ(ctl_as(&bob, SHM_STAT, 1, &io), 0);
	CHECK_EQ(io.ret, b);
	CHECK_UEQ(io.u.ds.segsz, 200);
	CHECK_EQ(ctl_as(&alice, SHM_STAT, 2, &io), -EACCES);	/* 0200 */
	CHECK_EQ(ctl_as(&root_cred, SHM_STAT, 2, &io), 0);
	CHECK_EQ(io.ret, c);
	/* SHM_STAT_ANY: no read check */
	CHECK_EQ(ctl_as(&bob, SHM_STAT_ANY, 0, &io), 0);
	CHECK_EQ(io.ret, a);
	CHECK_EQ(io.u.ds.key, KEY);
	CHECK_EQ(ctl_as(&alice, SHM_STAT_ANY, 2, &io), 0);
	CHECK_EQ(io.ret, c);
	/* indexes with nothing in them */
	CHECK_EQ(ctl_as(&bob, SHM_STAT_ANY, 3, &io), -EINVAL);
	CHECK_EQ(ctl_as(&bob, SHM_STAT_ANY, SHMFS_MAX_SLOTS - 1, &io), -EINVAL);
	CHECK_EQ(ctl_as(&bob, SHM_STAT, -1, &io), -EINVAL);
	CHECK_EQ(ctl_as(&bob, SHM_STAT_ANY, -1, &io), -EINVAL);
	/* as Linux, the index is taken modulo the slot count */
	CHECK_EQ(ctl_as(&bob, SHM_STAT_ANY, SHMFS_MAX_SLOTS + 1, &io), 0);
	CHECK_EQ(io.ret, b);
	CHECK_EQ(ctl_as(&bob, SHM_STAT_ANY, a, &io), 0);	/* an id */
	CHECK_EQ(io.ret, a);
	CHECK_EQ(ctl_as(&bob, SHM_STAT, a, &io), -EACCES);
	/* IPC_STAT and seg_access want read permission too */
	CHECK_EQ(ctl_as(&bob, IPC_STAT, a, &io), -EACCES);
	CHECK_EQ(ctl_as(&bob, IPC_STAT, b, &io), 0);
	CHECK_EQ(io.u.ds.shmid, b);
	CHECK_EQ(io.ret, 0);
	CHECK_EQ(seg_access(a, PERM_R, &bob), -EACCES);
	CHECK_EQ(seg_access(b, PERM_R, &bob), 0);
	CHECK_EQ(seg_access(b, PERM_W, &bob), -EACCES);
	CHECK_EQ(seg_access(a, PERM_R | PERM_W, &alice), 0);
	CHECK_EQ(seg_access(c, PERM_W, &alice), 0);
	CHECK_EQ(seg_access(c, PERM_R, &alice), -EACCES);
	CHECK_EQ(seg_access(a, 0, &bob), 0);
}

static void test_unknown_cmd_is_einval(void)
{
	struct shmfs_ctl io;
	int id;

	setup(&std_limits);
	id = get(KEY, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK(id > 0));
	CHECK_EQ(ctl(99, id, &io), -EINVAL);
	CHECK_EQ(ctl(-1, id, &io), -EINVAL);
	CHECK_EQ(ctl(100000, id, &io), -EINVAL);
	CHECK_EQ(ctl(99, 0, &io), -EINVAL);
	CHECK_EQ(ctl(IPC_STAT, id, &io), 0);
	CHECK_EQ(ctl(IPC_STAT, id ^ 1, &io), -EINVAL);
	CHECK_EQ(ctl(IPC_STAT, -1, &io), -EINVAL);
	CHECK_EQ(ctl(IPC_RMID, -id, &io), -EINVAL);
	CHECK_EQ(get(KEY, 100, 0), id);
}

/* ---- live limits ---- */

static void test_limits_not_given_follow_the_host(void)
{
	struct seg_limits none = { 0 };
	struct shmfs_ctl io;
	int calls, id;

	setup(&none);
	fake.host.shmmax = 8192;
	fake.host.shmall = 100;
	fake.host.shmmni = 2;
	CHECK(get(KEY, 100, IPC_CREAT | 0600) > 0);
	CHECK(fake.host_calls >= 1);
	calls = fake.host_calls;
	id = get(KEY + 1, 100, IPC_CREAT | 0600);
	CHECK(id > 0);
	CHECK(fake.host_calls > calls);	/* consulted at each check */
	CHECK_EQ(get(KEY + 2, 100, IPC_CREAT | 0600), -ENOSPC);
	fake.host.shmmni = 3;
	CHECK(get(KEY + 2, 100, IPC_CREAT | 0600) > 0);
	CHECK_EQ(get(KEY + 3, 100, IPC_CREAT | 0600), -ENOSPC);

	fake.host.shmmni = 10;
	CHECK_EQ(get(KEY + 3, 8193, IPC_CREAT | 0600), -EINVAL);
	fake.host.shmmax = 9000;
	CHECK(get(KEY + 3, 8193, IPC_CREAT | 0600) > 0);
	/* 1+1+1+3 pages used */
	fake.host.shmall = 6;
	CHECK_EQ(get(KEY + 4, 1, IPC_CREAT | 0600), -ENOSPC);
	fake.host.shmall = 7;
	CHECK(get(KEY + 4, 1, IPC_CREAT | 0600) > 0);

	/* IPC_INFO shows the host's values as they are now */
	fake.host.shmmax = 12345;
	fake.host.shmall = 678;
	fake.host.shmmni = 90;
	REQUIRE(CHECK_EQ(ctl(IPC_INFO, 0, &io), 0));
	CHECK_UEQ(io.u.info.shmmax, 12345);
	CHECK_UEQ(io.u.info.shmall, 678);
	CHECK_UEQ(io.u.info.shmmni, 90);
	CHECK_UEQ(io.u.info.shmseg, 90);	/* shmseg follows shmmni */
	CHECK_UEQ(io.u.info.shmmin, 1);
	/* beyond what a shmid can index: clamped */
	fake.host.shmmni = 100000;
	REQUIRE(CHECK_EQ(ctl(IPC_INFO, 0, &io), 0));
	CHECK_UEQ(io.u.info.shmmni, SHMFS_MAX_SLOTS);
	/* unknown (0) on the host: defaults, never 0 */
	fake.host.shmmni = 0;
	fake.host.shmmax = 0;
	fake.host.shmall = 0;
	REQUIRE(CHECK_EQ(ctl(IPC_INFO, 0, &io), 0));
	CHECK(io.u.info.shmmni > 0);
	CHECK(io.u.info.shmmax > 0);
	CHECK(io.u.info.shmall > 0);
	CHECK(get(KEY + 5, 1, IPC_CREAT | 0600) > 0);

	/* shmseg, not given, follows the live shmmni */
	seg_session_open(CTL(501), 501);
	fake.host.shmmni = 2;
	REQUIRE(CHECK_EQ(attach(id, 501), 0));
	REQUIRE(CHECK_EQ(attach(id, 501), 0));
	CHECK_EQ(attach(id, 501), -EMFILE);
	fake.host.shmmni = 3;
	CHECK_EQ(attach(id, 501), 0);
	seg_session_close(CTL(501), 501);
}

static void test_given_limits_ignore_the_host(void)
{
	struct seg_limits l = std_limits;
	struct shmfs_ctl io;
	int id;

	l.shmmni = 5;
	setup(&l);
	seg_session_open(CTL(501), 501);
	fake.host.shmmni = 1;
	fake.host.shmmax = 10;
	fake.host.shmall = 1;
	id = get(KEY, 3 * PAGE, IPC_CREAT | 0600);
	REQUIRE(CHECK(id > 0));
	CHECK(get(KEY + 1, 100, IPC_CREAT | 0600) > 0);
	CHECK_EQ(attach(id, 501), 0);
	CHECK_EQ(attach(id, 501), 0);
	REQUIRE(CHECK_EQ(ctl(IPC_INFO, 0, &io), 0));
	CHECK_UEQ(io.u.info.shmmni, 5);
	CHECK_UEQ(io.u.info.shmmax, std_limits.shmmax);
	CHECK_UEQ(io.u.info.shmall, std_limits.shmall);
	CHECK_UEQ(io.u.info.shmseg, std_limits.shmseg);
	CHECK_EQ(fake.host_calls, 0);
	seg_session_close(CTL(501), 501);
}

/* ---- status text ---- */

/* The end column of each blank-separated word of a line. */
static int word_ends(const char *line, int *ends, int max)
{
	int n = 0, i;

	for (i = 0; line[i] && line[i] != '\n'; i++)
		if (line[i] != ' ' && (line[i + 1] == ' ' ||
				       line[i + 1] == '\n' || !line[i + 1])) {
			if (n < max)
				ends[n] = i;
			n++;
		}
	return n;
}

struct status_line {
	int key, shmid;
	unsigned perms;
	unsigned long long size;
	int cpid, lpid;
	unsigned long long nattch;
	unsigned uid, gid, cuid, cgid;
	long long atime, dtime, ctime;
	unsigned long long rss, swap;
};

static bool parse_status_line(const char *line, struct status_line *s)
{
	return sscanf(line,
		      "%d %d %o %llu %d %d %llu %u %u %u %u %lld %lld %lld "
		      "%llu %llu",
		      &s->key, &s->shmid, &s->perms, &s->size, &s->cpid,
		      &s->lpid, &s->nattch, &s->uid, &s->gid, &s->cuid,
		      &s->cgid, &s->atime, &s->dtime, &s->ctime, &s->rss,
		      &s->swap) == 16;
}

/* The lines of a text, at most max, NUL-terminated in place. */
static int split_lines(char *text, char **lines, int max)
{
	int n = 0;
	char *p = text, *nl;

	while (*p && n < max) {
		lines[n++] = p;
		nl = strchr(p, '\n');
		if (!nl)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	return n;
}

static void test_status_text(void)
{
	char kernel[512] = "", *text = NULL, *lines[8];
	int hend[32], lend[32], nh, nl, i, n, a, b, c;
	struct seg_handle *ha;
	struct status_line s;
	size_t len = 0;
	FILE *f;

	setup(&std_limits);
	fake.clock = 1700000000;
	a = get_as(ALICE, AGRP, 501, (key_t)0xdeadbeef, PAGE + 1,
		   IPC_CREAT | 0640);
	b = get_as(BOB, BGRP, 600, IPC_PRIVATE, 100, 0600);
	c = get_as(BOB, BGRP, 601, KEY, 300, IPC_CREAT | 0666);
	REQUIRE(CHECK(a > 0 && b > 0 && c > 0));
	seg_session_open(CTL(502), 502);
	seg_session_open(CTL(503), 503);
	seg_session_open(CTL(504), 504);
	fake.clock = 1700000100;
	REQUIRE(CHECK_EQ(open_id(a, 502, true, &ha), 0));
	CHECK_EQ(pwrite(seg_handle_fd(ha), "x", 1,
			(off_t)seg_handle_offset(ha)), 1);
	seg_release(ha);
	REQUIRE(CHECK_EQ(attach(c, 503), 0));
	fake.clock = 1700000200;
	CHECK_EQ(seg_detach(503, c), 0);
	REQUIRE(CHECK_EQ(attach(c, 504), 0));
	CHECK_EQ(rmid(c), 0);	/* removed, attached: still listed */
	CHECK_EQ(rmid(b), 0);	/* freed: gone */

	REQUIRE(CHECK_EQ(seg_status(&text, &len), 0));
	REQUIRE(CHECK(text != NULL));
	CHECK_EQ(len, strlen(text));
	CHECK(len > 0 && text[len - 1] == '\n');

	f = fopen("/proc/sysvipc/shm", "r");
	if (f && fgets(kernel, sizeof(kernel), f)) {
		size_t hl = strcspn(text, "\n") + 1;

		CHECK_EQ(hl, strlen(kernel));
		CHECK(strncmp(text, kernel, strlen(kernel)) == 0);
		if (strncmp(text, kernel, strlen(kernel)) != 0)
			printf("  ours:   %.*s  kernel: %s", (int)hl, text,
			       kernel);
	} else {
		printf("note: %s: /proc/sysvipc/shm unreadable; header not "
		       "compared with the kernel's\n", unit.test);
	}
	if (f)
		fclose(f);

	n = split_lines(text, lines, 8);
	REQUIRE(CHECK_EQ(n, 3));
	nh = word_ends(lines[0], hend, 32);
	CHECK_EQ(nh, 16);
	for (i = 1; i < n; i++) {
		/* right-aligned under the header, as the kernel does */
		CHECK_EQ(strlen(lines[i]), strlen(lines[0]));
		nl = word_ends(lines[i], lend, 32);
		REQUIRE(CHECK_EQ(nl, 16));
		for (int w = 0; w < 16 && w < nh; w++)
			if (!CHECK_EQ(lend[w], hend[w]))
				break;
	}

	REQUIRE(CHECK(parse_status_line(lines[1], &s)));
	CHECK_EQ(s.key, (int)0xdeadbeef);
	CHECK_EQ(s.shmid, a);
	CHECK_EQ(s.perms, 0640);
	CHECK_UEQ(s.size, PAGE + 1);
	CHECK_EQ(s.cpid, 501);
	CHECK_EQ(s.lpid, 502);
	CHECK_UEQ(s.nattch, 1);
	CHECK_EQ(s.uid, ALICE);
	CHECK_EQ(s.gid, AGRP);
	CHECK_EQ(s.cuid, ALICE);
	CHECK_EQ(s.cgid, AGRP);
	CHECK_EQ(s.atime, 1700000100);
	CHECK_EQ(s.dtime, 0);
	CHECK_EQ(s.ctime, 1700000000);
	CHECK(s.rss >= PAGE && s.rss % PAGE == 0);	/* bytes, as Linux */
	CHECK_UEQ(s.swap, 0);

	REQUIRE(CHECK(parse_status_line(lines[2], &s)));
	CHECK_EQ(s.key, IPC_PRIVATE);
	CHECK_EQ(s.shmid, c);
	CHECK_EQ(s.perms, SHMFS_SHM_DEST | 0666);
	CHECK_UEQ(s.size, 300);
	CHECK_EQ(s.cpid, 601);
	CHECK_EQ(s.lpid, 504);
	CHECK_UEQ(s.nattch, 1);
	CHECK_EQ(s.uid, BOB);
	CHECK_EQ(s.gid, BGRP);
	CHECK_EQ(s.atime, 1700000200);
	CHECK_EQ(s.dtime, 1700000200);
	CHECK_EQ(s.ctime, 1700000000);
	CHECK_UEQ(s.rss, 0);
	free(text);

	/* an empty table: the header alone */
	seg_session_close(CTL(502), 502);
	seg_session_close(CTL(503), 503);
	seg_session_close(CTL(504), 504);
	CHECK_EQ(rmid(a), 0);
	REQUIRE(CHECK_EQ(seg_status(&text, &len), 0));
	CHECK_EQ(split_lines(text, lines, 8), 1);
	free(text);
}

/* Read a piece at a time, at the cursor or anywhere: the same text. */
static void test_status_in_pieces_is_the_whole_text(void)
{
	struct seg_status *st;
	char *text = NULL, buf[700];
	size_t len = 0, off, n, got, want;
	int i;

	setup(&std_limits);
	for (i = 0; i < 40; i++)
		REQUIRE(CHECK(get((key_t)(0x1000 + i * 3),
				  1 + (uint64_t)i * 1000, IPC_CREAT | 0600) > 0));
	REQUIRE(CHECK_EQ(seg_status(&text, &len), 0));
	REQUIRE(CHECK_EQ(seg_status_open(&st), 0));
	for (off = 0; (n = seg_status_read(st, off, buf, 7)); off += n)
		if (!CHECK(off + n <= len && !memcmp(buf, text + off, n)))
			break;
	CHECK_UEQ(off, len);
	for (i = 0; i < 500; i++) {
		off = (size_t)i * 7919 % (len + 100);
		n = 1 + (size_t)i * 131 % sizeof(buf);
		want = off >= len ? 0 : n < len - off ? n : len - off;
		got = seg_status_read(st, off, buf, n);
		CHECK_UEQ(got, want);
		CHECK(!memcmp(buf, text + off, got < want ? got : want));
	}
	seg_status_close(st);
	free(text);
}

/* ---- lookups ---- */

static void test_lookups_and_forget(void)
{
	struct seg_view v;
	uint64_t serial, serial_b;
	int a, b, d;

	setup(&std_limits);
	a = get(KEY, 100, IPC_CREAT | 0600);
	b = get(IPC_PRIVATE, 200, 0600);
	REQUIRE(CHECK(a > 0 && b > 0));

	REQUIRE(CHECK_EQ(seg_lookup_name(KEY, a, true, &v), 0));
	serial = v.serial;
	CHECK_NE(serial, 0);
	CHECK_EQ(v.ds.shmid, a);
	REQUIRE(CHECK_EQ(seg_lookup_id(a, true, &v), 0));
	CHECK_EQ(v.serial, serial);
	REQUIRE(CHECK_EQ(seg_lookup_key(KEY, &v), 0));
	CHECK_EQ(v.serial, serial);
	REQUIRE(CHECK_EQ(seg_lookup_serial(serial, &v), 0));
	CHECK_EQ(v.ds.shmid, a);
	CHECK_EQ(v.ds.key, KEY);
	CHECK_EQ(seg_lookup_name(KEY + 1, a, false, &v), -ENOENT);
	CHECK_EQ(seg_lookup_name(IPC_PRIVATE, a, false, &v), -ENOENT);
	CHECK_EQ(seg_lookup_name(KEY, b, false, &v), -ENOENT);
	REQUIRE(CHECK_EQ(seg_lookup_name(IPC_PRIVATE, b, false, &v), 0));
	serial_b = v.serial;
	CHECK_NE(serial_b, serial);
	CHECK_UEQ(v.ds.segsz, 200);
	CHECK_EQ(seg_lookup_id(-1, false, &v), -ENOENT);
	CHECK_EQ(seg_lookup_id(a + (1 << SHMFS_ID_SHIFT), false, &v), -ENOENT);
	CHECK_EQ(seg_lookup_serial(serial + 1000, &v), -ENOENT);

	/* freed with two holds: findable by serial until the last forget */
	CHECK_EQ(rmid(a), 0);
	CHECK_EQ(fake.nfreed, 1);
	CHECK_EQ(fake.nnamed, 1); /* the front end drops its names */
	CHECK_EQ(seg_lookup_id(a, false, &v), -ENOENT);
	CHECK_EQ(seg_lookup_key(KEY, &v), -ENOENT);
	REQUIRE(CHECK_EQ(seg_lookup_serial(serial, &v), 0));
	CHECK(v.freed);
	CHECK(v.removed);
	CHECK_EQ(v.slot, -1);
	CHECK_EQ(v.ds.shmid, a);
	CHECK_EQ(stats().objects, 2);
	CHECK_EQ(stats().used, 1);
	seg_forget(serial, 1);
	CHECK_EQ(seg_lookup_serial(serial, &v), 0);
	seg_forget(serial, 1);
	CHECK_EQ(seg_lookup_serial(serial, &v), -ENOENT);
	CHECK_EQ(stats().objects, 1);
	seg_forget(serial, 1);	/* unknown serials are ignored */

	/* a new segment in the same slot has a new serial */
	d = get(KEY, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK_EQ(SLOT(d), SLOT(a)));
	CHECK_NE(serial_of(d), serial);
	CHECK_NE(serial_of(d), serial_b);

	/* forget more than held: clamps to none, the live one stays */
	REQUIRE(CHECK_EQ(seg_lookup_id(d, true, &v), 0));
	seg_forget(v.serial, 5);
	REQUIRE(CHECK_EQ(seg_lookup_serial(v.serial, &v), 0));
	serial = v.serial;
	CHECK_EQ(rmid(d), 0);
	CHECK_EQ(fake.nnamed, 1); /* forgotten: the kernel caches no name */
	CHECK_EQ(seg_lookup_serial(serial, &v), -ENOENT);
	CHECK_EQ(stats().objects, 1);
}

/* ---- the published copy ---- */

/* A publisher that mirrors what it is told, and notes what is odd. */
static struct {
	struct {
		bool live;
		bool keyed;
		key_t key;
		struct shmfs_ds ds;
		uint32_t perm_gen;
	} e[SHMFS_MAX_SLOTS];
	struct {
		uint32_t gen;
		pid_t pid;
	} sess[SHMFS_TABLE_SESSIONS];
	int calls;
	int bad;		/* calls that made no sense */
} pub;

static bool pub_slot_ok(int slot)
{
	if (slot >= 0 && slot < SHMFS_MAX_SLOTS)
		return true;
	pub.bad++;
	return false;
}

static void pub_set(int slot, const struct shmfs_ds *ds, uint32_t perm_gen)
{
	pub.calls++;
	if (!pub_slot_ok(slot))
		return;
	pub.e[slot].live = true;
	pub.e[slot].ds = *ds;
	pub.e[slot].perm_gen = perm_gen;
}

static void pub_session(uint32_t sid, uint32_t gen, pid_t pid)
{
	pub.calls++;
	if (!sid || sid >= SHMFS_TABLE_SESSIONS || !gen != !pid ||
	    !gen == !pub.sess[sid].gen) {
		pub.bad++; /* sid 0, or a start on a live sid, or an end of none */
		return;
	}
	pub.sess[sid].gen = gen;
	pub.sess[sid].pid = pid;
}

static void pub_clear(int slot)
{
	pub.calls++;
	if (!pub_slot_ok(slot))
		return;
	pub.e[slot].live = false;
}

static void pub_key_add(key_t key, int slot)
{
	pub.calls++;
	if (!pub_slot_ok(slot))
		return;
	if (pub.e[slot].keyed || key == IPC_PRIVATE)
		pub.bad++;
	pub.e[slot].keyed = true;
	pub.e[slot].key = key;
}

static void pub_key_del(key_t key, int slot)
{
	pub.calls++;
	if (!pub_slot_ok(slot))
		return;
	if (!pub.e[slot].keyed || pub.e[slot].key != key)
		pub.bad++;
	pub.e[slot].keyed = false;
}

static const struct seg_publisher fake_pub = {
	.set = pub_set,
	.clear = pub_clear,
	.key_add = pub_key_add,
	.key_del = pub_key_del,
	.session = pub_session,
};

/* The mirror equals the table in the first nslots slots. */
static bool check_mirror(int line, int nslots)
{
	struct shmfs_ctl io;
	struct seg_view v;
	int slot, err;
	bool ok = true;

	if (pub.bad)
		ok = unit_fail(__FILE__, line, "%d publisher calls made no "
			       "sense", pub.bad);
	for (slot = 0; slot < nslots; slot++) {
		err = ctl(SHM_STAT_ANY, slot, &io);
		if (err) {
			if (pub.e[slot].live)
				ok = unit_fail(__FILE__, line, "slot %d: "
					       "published live, but empty",
					       slot);
			if (pub.e[slot].keyed)
				ok = unit_fail(__FILE__, line, "slot %d: key "
					       "%#x published for an empty "
					       "slot", slot, pub.e[slot].key);
			continue;
		}
		if (!pub.e[slot].live) {
			ok = unit_fail(__FILE__, line, "slot %d: shmid %d not "
				       "published", slot, io.ret);
			continue;
		}
		if (memcmp(&pub.e[slot].ds, &io.u.ds, sizeof(io.u.ds)) != 0)
			ok = unit_fail(__FILE__, line, "slot %d: published ds "
				       "differs (nattch %llu/%llu, mode %o/%o, "
				       "key %#x/%#x, lpid %d/%d)", slot,
				       (unsigned long long)
				       pub.e[slot].ds.nattch,
				       (unsigned long long)io.u.ds.nattch,
				       pub.e[slot].ds.mode, io.u.ds.mode,
				       pub.e[slot].ds.key, io.u.ds.key,
				       pub.e[slot].ds.lpid, io.u.ds.lpid);
		/* a key is published exactly while it names this segment */
		if (io.u.ds.key != IPC_PRIVATE) {
			if (!pub.e[slot].keyed ||
			    pub.e[slot].key != io.u.ds.key)
				ok = unit_fail(__FILE__, line, "slot %d: key "
					       "%#x not published", slot,
					       io.u.ds.key);
			else if (seg_lookup_key(io.u.ds.key, &v) ||
				 v.slot != slot)
				ok = unit_fail(__FILE__, line, "slot %d: key "
					       "%#x published, not found",
					       slot, io.u.ds.key);
		} else if (pub.e[slot].keyed) {
			ok = unit_fail(__FILE__, line, "slot %d: key %#x still "
				       "published for an IPC_PRIVATE segment",
				       slot, pub.e[slot].key);
		}
	}
	return ok;
}

#define CHECK_MIRROR() check_mirror(__LINE__, 16)

static void test_published_copy_follows_every_change(void)
{
	struct perm_cred alice = who(ALICE, AGRP, 501);
	struct perm_cred parent = who(ALICE, AGRP, 100);
	struct perm_cred child = who(ALICE, AGRP, 200);
	struct seg_handle *plain;
	struct seg_view v;
	uint64_t token;
	uint32_t count;
	int a, b, c, d;

	memset(&pub, 0, sizeof(pub));
	setup_pub(&std_limits, &fake_pub);
	fake_parent(300, 100);
	fake_parent(200, 100);
	seg_session_open(CTL(100), 100);
	a = get(KEY, 100, IPC_CREAT | 0600);
	b = get(IPC_PRIVATE, 200, 0640);
	c = get(KEY + 1, 300, IPC_CREAT | 0666);
	REQUIRE(CHECK(a > 0 && b > 0 && c > 0));
	CHECK(pub.calls > 0);
	REQUIRE(CHECK_MIRROR());

	fake.clock = 2000;
	REQUIRE(CHECK_EQ(attach(a, 100), 0));
	REQUIRE(CHECK_EQ(attach(a, 100), 0));
	REQUIRE(CHECK_EQ(open_id(c, 100, false, &plain), 0));
	CHECK_MIRROR();
	fake.clock = 2100;
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &token, &count), 0));
	CHECK_MIRROR();
	fake.clock = 2200;
	CHECK_EQ(seg_fork_abort(CTL(100), &parent, token), 0);
	CHECK_MIRROR();
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &token, &count), 0));
	seg_session_close(CTL(100), 300);		/* died unclaimed */
	CHECK_MIRROR();
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &token, &count), 0));
	CHECK_EQ(seg_fork_child(CTL(100), &child, token), 0);
	CHECK_MIRROR();
	fake.clock = 2300;
	CHECK_EQ(seg_detach(200, a), 0);
	CHECK_MIRROR();

	fake.clock = 3000;
	CHECK_EQ(ipc_set(&alice, a, BOB, BGRP, 0644), 0);
	CHECK_MIRROR();
	CHECK_EQ(seg_setattr(serial_of(c), &alice, 0600, -1, BGRP, &v), 0);
	CHECK_MIRROR();
	CHECK_EQ(shm_lock_as(&alice, SHM_LOCK, b, UINT64_MAX), 0);
	CHECK_MIRROR();
	CHECK_EQ(shm_lock_as(&alice, SHM_UNLOCK, b, 0), 0);
	CHECK_MIRROR();

	/* removal: attached, unattached, through a name */
	CHECK_EQ(rmid(a), 0);
	CHECK_MIRROR();
	CHECK_EQ(rmid(b), 0);
	CHECK_MIRROR();
	CHECK_EQ(seg_unlink(KEY + 1, c, &alice), 0);
	CHECK_MIRROR();
	d = get(KEY, 100, IPC_CREAT | 0600);	/* the key again */
	REQUIRE(CHECK(d > 0));
	CHECK_MIRROR();
	fake.clock = 4000;
	CHECK_EQ(seg_detach(100, a), 0);
	CHECK_MIRROR();
	seg_session_close(CTL(100), 200);
	CHECK_MIRROR();
	seg_session_close(CTL(100), 100);		/* the parent's last: freed */
	CHECK_EQ(fake.nfreed, 3);
	CHECK_MIRROR();
	seg_release(plain);
	CHECK_MIRROR();
	d = get(IPC_PRIVATE, 1, 0600);
	CHECK_MIRROR();
	seg_fini();
	memset(&pub, 0, sizeof(pub));
}

/*
 * IPC_SET, chmod and chown bump perm_gen, nothing else does; each
 * session is published under the lowest free sid with a generation that
 * grows, and unpublished at its end.
 */
static void test_published_perm_gen_and_sessions(void)
{
	struct perm_cred alice = who(ALICE, AGRP, 100);
	struct seg_view v;
	uint32_t sid, gen, sid2, gen2, g0;
	int a, slot;

	memset(&pub, 0, sizeof(pub));
	setup_pub(&std_limits, &fake_pub);
	seg_session_open(CTL(100), 100);
	seg_session_id(CTL(100), 100, &sid, &gen);
	CHECK_EQ(sid, 1);
	CHECK(gen > 0);
	CHECK_EQ(pub.sess[sid].gen, gen);
	CHECK_EQ(pub.sess[sid].pid, 100);
	seg_session_id(CTL(100), 101, &sid2, &gen2);
	CHECK_EQ(sid2, 0); /* no session of 101 there */
	CHECK_EQ(gen2, 0);

	a = get(KEY, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK(a > 0));
	slot = a & (SHMFS_MAX_SLOTS - 1);
	g0 = pub.e[slot].perm_gen;
	REQUIRE(CHECK_EQ(attach(a, 100), 0));
	CHECK_EQ(seg_detach(100, a), 0);
	CHECK_EQ(pub.e[slot].perm_gen, g0);
	CHECK_EQ(ipc_set(&alice, a, ALICE, AGRP, 0640), 0);
	CHECK_EQ(pub.e[slot].perm_gen, g0 + 1);
	CHECK_EQ(seg_setattr(serial_of(a), &alice, 0600, -1, -1, &v), 0);
	CHECK_EQ(pub.e[slot].perm_gen, g0 + 2);
	CHECK_EQ(seg_setattr(serial_of(a), &alice, -1, ALICE, AGRP, &v), 0);
	CHECK_EQ(pub.e[slot].perm_gen, g0 + 3);
	CHECK_EQ(shm_lock_as(&alice, SHM_LOCK, a, UINT64_MAX), 0);
	CHECK_EQ(pub.e[slot].perm_gen, g0 + 3);

	/* the sid is taken again by the next session, one generation on */
	seg_session_close(CTL(100), 100);
	CHECK_EQ(pub.sess[sid].gen, 0);
	CHECK_EQ(pub.sess[sid].pid, 0);
	seg_session_open(CTL(200), 200);
	seg_session_open(CTL(300), 300);
	seg_session_id(CTL(200), 200, &sid2, &gen2);
	CHECK_EQ(sid2, sid);
	CHECK_EQ(gen2, gen + 1);
	seg_session_id(CTL(300), 300, &sid2, &gen2);
	CHECK_EQ(sid2, sid + 1);
	CHECK_EQ(pub.sess[sid2].pid, 300);
	seg_file_released(CTL(300));
	CHECK_EQ(pub.sess[sid2].gen, 0);

	/* a successor's republish shows the live sessions again */
	memset(&pub, 0, sizeof(pub));
	seg_republish();
	CHECK_EQ(pub.sess[sid].gen, gen + 1);
	CHECK_EQ(pub.sess[sid].pid, 200);
	CHECK_EQ(pub.sess[sid2].gen, 0);
	CHECK_EQ(pub.e[slot].perm_gen, g0 + 3);
	CHECK_EQ(pub.bad, 0);
	seg_fini();
	memset(&pub, 0, sizeof(pub));
}

static int collect_slot(void *arg, const struct seg_view *v)
{
	int *out = arg;

	if (out[0] < 63)
		out[1 + out[0]++] = v->slot;
	return 0;
}

static int stop_after_two(void *arg, const struct seg_view *v)
{
	int *out = arg;

	out[1 + out[0]++] = v->slot;
	return out[0] == 2;
}

/* ---- big tables ---- */

/*
 * Slots past the first summary word (4096 slots): the bitmaps that find
 * the lowest free, the highest used and the next used slot.
 */
static void test_sparse_slots_walk_and_highest(void)
{
	struct seg_limits l = std_limits;
	static const int keep[] = { 0, 63, 64, 130, 4095, 4096, 4097, 4199 };
	const int nkeep = sizeof(keep) / sizeof(keep[0]);
	const int n = 4200;
	int out[64], i, j;
	struct shmfs_ctl io;

	l.shmmni = 8192;
	setup(&l);
	for (i = 0; i < n; i++)
		if (!CHECK_EQ(get(IPC_PRIVATE, 1, 0600), ID(1, i)))
			return;
	REQUIRE(CHECK_EQ(ctl(IPC_INFO, 0, &io), 0));
	CHECK_EQ(io.ret, n - 1);
	for (i = 0, j = 0; i < n; i++) {
		if (j < nkeep && keep[j] == i) {
			j++;
			continue;
		}
		if (!CHECK_EQ(rmid(ID(1, i)), 0))
			return;
	}
	CHECK_EQ(shm_info().used_ids, nkeep);
	memset(out, 0, sizeof(out));
	seg_walk(0, collect_slot, out);
	REQUIRE(CHECK_EQ(out[0], nkeep));
	for (i = 0; i < nkeep; i++)
		CHECK_EQ(out[1 + i], keep[i]);
	/* from every point in between: the next kept slot onwards */
	for (i = 0, j = 0; i <= n; i++) {
		while (j < nkeep && keep[j] < i)
			j++;
		memset(out, 0, sizeof(out));
		seg_walk(i, collect_slot, out);
		if (!CHECK_EQ(out[0], nkeep - j) ||
		    (j < nkeep && !CHECK_EQ(out[1], keep[j]))) {
			printf("  (walk from slot %d)\n", i);
			break;
		}
	}
	memset(out, 0, sizeof(out));
	seg_walk(1, stop_after_two, out);
	CHECK_EQ(out[0], 2);
	CHECK_EQ(out[2], 64);
	/* the highest used slot as the top ones go */
	for (j = nkeep - 1; j > 0; j--) {
		REQUIRE(CHECK_EQ(ctl(IPC_INFO, 0, &io), 0));
		CHECK_EQ(io.ret, keep[j]);
		CHECK_EQ(rmid(ID(1, keep[j])), 0);
	}
	REQUIRE(CHECK_EQ(ctl(IPC_INFO, 0, &io), 0));
	CHECK_EQ(io.ret, 0);
	/* the lowest free slot, and a full first word skipped */
	for (i = 1; i <= 70; i++)
		CHECK_EQ(SLOT(get(IPC_PRIVATE, 1, 0600)), i);
	CHECK_EQ(rmid(ID(1, 0)), 0);
	CHECK_EQ(get(IPC_PRIVATE, 1, 0600), ID(2, 0));
	CHECK_EQ(SLOT(get(IPC_PRIVATE, 1, 0600)), 71);
	seg_fini();
}

static void test_full_table_of_32768(void)
{
	struct seg_limits l = std_limits;
	const int n = SHMFS_MAX_SLOTS;
	static const int keep[] = { 0, 63, 64, 4095, 4096, 4097, 32767 };
	const int nkeep = sizeof(keep) / sizeof(keep[0]);
	int out[64], i, j, id, bad = 0;
	struct shmfs_ctl io;
	struct seg_view v;
	char *text, *p;
	size_t len;

	l.shmmni = n;
	l.shmall = 1ULL << 40;
	setup(&l);
	for (i = 0; i < n && !bad; i++) {
		id = get(0x100000 + i, 1, IPC_CREAT | IPC_EXCL | 0600);
		if (!CHECK_EQ(id, ID(1, i)))
			bad = 1;
	}
	REQUIRE(CHECK(!bad));
	CHECK_EQ(get(0x100000 + n, 1, IPC_CREAT | 0600), -ENOSPC);
	CHECK_EQ(get(IPC_PRIVATE, 1, 0600), -ENOSPC);
	CHECK_EQ(get(0x100000 + 777, 1, IPC_CREAT | 0600), ID(1, 777));
	REQUIRE(CHECK_EQ(seg_lookup_key(0x100000 + 20000, &v), 0));
	CHECK_EQ(v.ds.shmid, ID(1, 20000));
	REQUIRE(CHECK_EQ(ctl(IPC_INFO, 0, &io), 0));
	CHECK_EQ(io.ret, n - 1);
	CHECK_UEQ(io.u.info.shmmni, n);
	REQUIRE(CHECK_EQ(ctl(SHM_INFO, 0, &io), 0));
	CHECK_EQ(io.u.shm_info.used_ids, n);
	CHECK_UEQ(io.u.shm_info.shm_tot, n);
	CHECK_EQ(ctl(SHM_STAT, n - 1, &io), 0);
	CHECK_EQ(io.ret, ID(1, n - 1));

	/* a hole is found and filled */
	CHECK_EQ(rmid(ID(1, 12345)), 0);
	CHECK_EQ(get(0x200000, 1, IPC_CREAT | 0600), ID(2, 12345));
	CHECK_EQ(get(0x200001, 1, IPC_CREAT | 0600), -ENOSPC);

	/* thin it out; the walk, IPC_INFO and the status see the rest */
	for (i = 0, j = 0; i < n; i++) {
		if (j < nkeep && keep[j] == i) {
			j++;
			continue;
		}
		if (!CHECK_EQ(rmid(i == 12345 ? ID(2, i) : ID(1, i)), 0))
			break;
	}
	CHECK_EQ(shm_info().used_ids, nkeep);
	memset(out, 0, sizeof(out));
	seg_walk(0, collect_slot, out);
	REQUIRE(CHECK_EQ(out[0], nkeep));
	for (i = 0; i < nkeep; i++)
		CHECK_EQ(out[1 + i], keep[i]);
	memset(out, 0, sizeof(out));
	seg_walk(65, collect_slot, out);
	REQUIRE(CHECK_EQ(out[0], 4));
	CHECK_EQ(out[1], 4095);
	CHECK_EQ(out[4], 32767);
	memset(out, 0, sizeof(out));
	seg_walk(4097, collect_slot, out);
	REQUIRE(CHECK_EQ(out[0], 2));
	CHECK_EQ(out[1], 4097);
	CHECK_EQ(out[2], 32767);
	memset(out, 0, sizeof(out));
	seg_walk(4098, collect_slot, out);
	REQUIRE(CHECK_EQ(out[0], 1));
	CHECK_EQ(out[1], 32767);
	memset(out, 0, sizeof(out));
	seg_walk(1, stop_after_two, out);
	CHECK_EQ(out[0], 2);
	CHECK_EQ(out[2], 64);

	REQUIRE(CHECK_EQ(seg_status(&text, &len), 0));
	for (i = 0, p = text; (p = strchr(p, '\n')); p++)
		i++;
	CHECK_EQ(i, 1 + nkeep);
	free(text);

	REQUIRE(CHECK_EQ(ctl(IPC_INFO, 0, &io), 0));
	CHECK_EQ(io.ret, 32767);
	CHECK_EQ(rmid(ID(1, 32767)), 0);
	CHECK_EQ(ctl(IPC_INFO, 0, &io), 0);
	CHECK_EQ(io.ret, 4097);
	memset(out, 0, sizeof(out));
	seg_walk(4098, collect_slot, out);
	CHECK_EQ(out[0], 0);
	/* the lowest free slot is 1 */
	CHECK_EQ(SLOT(get(IPC_PRIVATE, 1, 0600)), 1);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	UNIT_RUN(test_shmget_creates_then_finds);
	UNIT_RUN(test_shmget_errno_order_on_existing_key);
	UNIT_RUN(test_shmget_without_creat_gives_enoent);
	UNIT_RUN(test_shmget_size_limits);
	UNIT_RUN(test_shmget_enospc_at_shmmni_and_recovery);
	UNIT_RUN(test_shmget_enospc_at_shmall_pages_rounded_up);
	UNIT_RUN(test_segsz_kept_as_asked);
	UNIT_RUN(test_shmid_is_seq_and_slot);
	UNIT_RUN(test_seq_wraps_without_shmid_zero);
	UNIT_RUN(test_ipc_private_always_creates);
	UNIT_RUN(test_one_segment_per_key);
	UNIT_RUN(test_racing_creators_get_one_segment);
	UNIT_RUN(test_rmid_while_attached_defers_the_free);
	UNIT_RUN(test_rmid_unattached_frees_at_once);
	UNIT_RUN(test_rmid_needs_owner_creator_or_root);
	UNIT_RUN(test_ipc_set_rules);
	UNIT_RUN(test_setattr_rules);
	UNIT_RUN(test_shm_lock_and_unlock);
	UNIT_RUN(test_shm_lock_is_charged_to_the_locker);
	UNIT_RUN(test_ipc_info);
	UNIT_RUN(test_shm_info);
	UNIT_RUN(test_shm_stat_and_stat_any);
	UNIT_RUN(test_unknown_cmd_is_einval);
	UNIT_RUN(test_limits_not_given_follow_the_host);
	UNIT_RUN(test_given_limits_ignore_the_host);
	UNIT_RUN(test_status_text);
	UNIT_RUN(test_status_in_pieces_is_the_whole_text);
	UNIT_RUN(test_lookups_and_forget);
	UNIT_RUN(test_published_copy_follows_every_change);
	UNIT_RUN(test_published_perm_gen_and_sessions);
	UNIT_RUN(test_sparse_slots_walk_and_highest);
	UNIT_RUN(test_full_table_of_32768);
	seg_fini();
	return unit_done();
}
