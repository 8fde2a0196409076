/*
 * Unit tests of attach accounting (src/attach.c): attach and detach,
 * sessions, shmseg, and the fork protocol.
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

/* ---- attach and detach ---- */

static void test_open_checks_permission_by_accmode(void)
{
	struct perm_cred bob = who(BOB, BGRP, 600);
	struct seg_handle *h = NULL;
	int a, b, c;

	setup(&std_limits);
	seg_session_open(CTL(600), 600);
	a = get(KEY, 100, IPC_CREAT | 0600);
	b = get(KEY + 1, 100, IPC_CREAT | 0604);
	c = get(KEY + 2, 100, IPC_CREAT | 0602);
	REQUIRE(CHECK(a > 0 && b > 0 && c > 0));
	CHECK_EQ(seg_open(serial_of(a), &bob, O_RDONLY, true, &h), -EACCES);
	CHECK_EQ(seg_open(serial_of(a), &bob, O_RDONLY, false, &h), -EACCES);
	CHECK_EQ(seg_open(serial_of(b), &bob, O_RDWR, true, &h), -EACCES);
	CHECK_EQ(seg_open(serial_of(b), &bob, O_WRONLY, false, &h), -EACCES);
	CHECK_EQ(seg_open(serial_of(c), &bob, O_RDONLY, false, &h), -EACCES);
	CHECK_EQ(stats().handles, 0);
	CHECK_UEQ(nattch(a) + nattch(b) + nattch(c), 0);
	REQUIRE(CHECK_EQ(seg_open(serial_of(b), &bob, O_RDONLY, true, &h), 0));
	CHECK_UEQ(nattch(b), 1);
	seg_release(h);
	REQUIRE(CHECK_EQ(seg_open(serial_of(c), &bob, O_WRONLY, false, &h), 0));
	seg_release(h);
	CHECK_EQ(seg_open(12345678, &bob, O_RDONLY, false, &h), -ENOENT);
	seg_session_close(CTL(600), 600);
	CHECK_UEQ(nattch(b), 0);
}

static void test_attach_needs_a_session(void)
{
	struct seg_handle *h;
	struct shmfs_ds ds;
	int id;

	setup(&std_limits);
	id = get(KEY, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK(id > 0));
	fake.clock = 2000;
	CHECK_EQ(open_id(id, 501, true, &h), -EPROTO);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_UEQ(ds.nattch, 0);
	CHECK_EQ(ds.atime, 0);
	CHECK_EQ(ds.lpid, 0);
	CHECK_EQ(stats().handles, 0);
	CHECK_EQ(stats().procs, 0);
	/* a plain open needs none */
	REQUIRE(CHECK_EQ(open_id(id, 501, false, &h), 0));
	seg_release(h);
	/* a session ended is no session */
	seg_session_open(CTL(501), 501);
	seg_session_close(CTL(501), 501);
	CHECK_EQ(open_id(id, 501, true, &h), -EPROTO);
	seg_session_open(CTL(501), 501);
	CHECK_EQ(attach(id, 501), 0);
	CHECK_UEQ(nattch(id), 1);
	seg_session_close(CTL(501), 501);
	CHECK_UEQ(nattch(id), 0);
	CHECK_EQ(stats().procs, 0);
}

static void test_detach_by_a_stranger_changes_nothing(void)
{
	struct shmfs_ds ds;
	int id, other;

	setup(&std_limits);
	seg_session_open(CTL(501), 501);
	seg_session_open(CTL(502), 502);
	id = get(KEY, 100, IPC_CREAT | 0600);
	other = get(KEY + 1, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK(id > 0 && other > 0));
	fake.clock = 2000;
	REQUIRE(CHECK_EQ(attach(id, 501), 0));
	fake.clock = 3000;
	CHECK_EQ(seg_detach(999, id), -EINVAL);	/* no session at all */
	CHECK_EQ(seg_detach(502, id), -EINVAL);	/* a session only */
	CHECK_EQ(seg_detach(501, other), -EINVAL);	/* not that segment */
	CHECK_EQ(seg_detach(501, id + 1), -EINVAL);
	seg_session_close(CTL(999), 999);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_UEQ(ds.nattch, 1);
	CHECK_EQ(ds.lpid, 501);
	CHECK_EQ(ds.dtime, 0);
	CHECK_EQ(ds.atime, 2000);
	CHECK_UEQ(nattch(other), 0);
	CHECK_EQ(seg_detach(501, id), 0);
	CHECK_UEQ(nattch(id), 0);
	/* a second shmdt finds nothing to detach */
	fake.clock = 4000;
	CHECK_EQ(seg_detach(501, id), -EINVAL);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_UEQ(ds.nattch, 0);
	CHECK_EQ(ds.dtime, 3000);
	seg_session_close(CTL(501), 501);
	seg_session_close(CTL(502), 502);
	CHECK_EQ(stats().procs, 0);
}

static void test_session_end_detaches_what_is_left(void)
{
	struct shmfs_ds ds;
	int a, b;

	setup(&std_limits);
	a = get(KEY, 100, IPC_CREAT | 0600);
	b = get(KEY + 1, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK(a > 0 && b > 0));
	seg_session_open(CTL(501), 501);
	seg_session_open(CTL(501), 501);		/* two opens of .ctl */
	REQUIRE(CHECK_EQ(attach(a, 501), 0));
	REQUIRE(CHECK_EQ(attach(a, 501), 0));
	REQUIRE(CHECK_EQ(attach(b, 501), 0));
	seg_session_open(CTL(502), 502);
	REQUIRE(CHECK_EQ(attach(a, 502), 0));
	CHECK_UEQ(nattch(a), 3);
	fake.clock = 5000;
	seg_session_close(CTL(501), 501);		/* one of two: nothing ends */
	CHECK_UEQ(nattch(a), 3);
	CHECK_UEQ(nattch(b), 1);
	seg_session_close(CTL(501), 501);		/* exit: every attach goes */
	REQUIRE(CHECK_EQ(stat_id(a, &ds), 0));
	CHECK_UEQ(ds.nattch, 1);
	CHECK_EQ(ds.dtime, 5000);
	CHECK_EQ(ds.lpid, 501);
	CHECK_UEQ(nattch(b), 0);
	CHECK_EQ(seg_detach(501, a), -EINVAL);

	/* the same on a removed segment frees it */
	CHECK_EQ(rmid(a), 0);
	CHECK_EQ(fake.nfreed, 0);
	seg_session_close(CTL(502), 502);
	CHECK_EQ(fake.nfreed, 1);
	CHECK_EQ(fake.freed[0], a);
	CHECK_EQ(stats().objects, 1);
	CHECK_EQ(stats().procs, 0);
}

static void test_times_and_pids(void)
{
	struct perm_cred alice = who(ALICE, AGRP, 501);
	struct seg_handle *h;
	struct shmfs_ctl io;
	struct shmfs_ds ds;
	struct seg_view v;
	int id;

	setup(&std_limits);
	seg_session_open(CTL(77), 77);
	seg_session_open(CTL(88), 88);
	fake.clock = 1000;
	id = get_as(ALICE, AGRP, 501, KEY, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK(id > 0));
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.cpid, 501);
	CHECK_EQ(ds.lpid, 0);
	CHECK_EQ(ds.ctime, 1000);
	CHECK_EQ(ds.atime, 0);
	CHECK_EQ(ds.dtime, 0);

	fake.clock = 1500;	/* a lookup and a plain open change nothing */
	CHECK_EQ(get_as(BOB, BGRP, 600, KEY, 100, 0), id);
	REQUIRE(CHECK_EQ(open_id(id, 777, false, &h), 0));
	seg_release(h);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.cpid, 501);
	CHECK_EQ(ds.lpid, 0);
	CHECK_EQ(ds.atime, 0);
	CHECK_EQ(ds.dtime, 0);
	CHECK_EQ(ds.ctime, 1000);

	fake.clock = 2000;
	REQUIRE(CHECK_EQ(attach(id, 77), 0));
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.atime, 2000);
	CHECK_EQ(ds.dtime, 0);
	CHECK_EQ(ds.lpid, 77);
	CHECK_EQ(ds.cpid, 501);
	CHECK_EQ(ds.ctime, 1000);

	fake.clock = 3000;
	CHECK_EQ(seg_detach(77, id), 0);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.atime, 2000);
	CHECK_EQ(ds.dtime, 3000);
	CHECK_EQ(ds.lpid, 77);
	CHECK_EQ(ds.ctime, 1000);

	fake.clock = 4000;
	CHECK_EQ(ctl_as(&alice, IPC_STAT, id, &io), 0);
	CHECK_EQ(ctl(SHM_LOCK, id, &io), 0);
	CHECK_EQ(ctl(SHM_UNLOCK, id, &io), 0);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.ctime, 1000);

	fake.clock = 5000;
	CHECK_EQ(ipc_set(&alice, id, ALICE, AGRP, 0640), 0);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.ctime, 5000);
	CHECK_EQ(ds.mode, 0640);

	fake.clock = 6000;
	CHECK_EQ(seg_setattr(serial_of(id), &alice, 0600, -1, -1, &v), 0);
	CHECK_EQ(v.ds.ctime, 6000);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.ctime, 6000);

	fake.clock = 7000;	/* IPC_RMID leaves ctime alone */
	REQUIRE(CHECK_EQ(attach(id, 88), 0));
	CHECK_EQ(rmid(id), 0);
	REQUIRE(CHECK_EQ(stat_id(id, &ds), 0));
	CHECK_EQ(ds.ctime, 6000);
	CHECK_EQ(ds.atime, 7000);
	CHECK_EQ(ds.lpid, 88);
	seg_session_close(CTL(77), 77);
	seg_session_close(CTL(88), 88);
}

/* ---- shmseg ---- */

static void test_shmseg_emfile(void)
{
	struct seg_limits l = std_limits;
	struct seg_handle *h, *plain;
	struct shmfs_ds ds;
	int a, b;

	l.shmseg = 3;
	setup(&l);
	seg_session_open(CTL(501), 501);
	seg_session_open(CTL(502), 502);
	a = get(KEY, 100, IPC_CREAT | 0600);
	b = get(KEY + 1, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK(a > 0 && b > 0));
	REQUIRE(CHECK_EQ(attach(a, 501), 0));
	REQUIRE(CHECK_EQ(attach(a, 501), 0));
	REQUIRE(CHECK_EQ(attach(b, 501), 0));
	fake.clock = 3000;
	CHECK_EQ(open_id(b, 501, true, &h), -EMFILE);
	CHECK_EQ(open_id(a, 501, true, &h), -EMFILE);
	CHECK_UEQ(nattch(a), 2);
	CHECK_UEQ(nattch(b), 1);
	CHECK_EQ(stats().handles, 0);
	/* the failed attach left no trace */
	REQUIRE(CHECK_EQ(stat_id(b, &ds), 0));
	CHECK_EQ(ds.atime, 1000);
	CHECK_EQ(ds.lpid, 501);
	/* another process, and a plain open, are not limited */
	REQUIRE(CHECK_EQ(attach(b, 502), 0));
	REQUIRE(CHECK_EQ(open_id(b, 501, false, &plain), 0));
	seg_release(plain);
	/* a detach makes room again */
	CHECK_EQ(seg_detach(501, a), 0);
	REQUIRE(CHECK_EQ(attach(b, 501), 0));
	CHECK_EQ(open_id(b, 501, true, &h), -EMFILE);
	CHECK_UEQ(nattch(a), 1);
	CHECK_UEQ(nattch(b), 3);
	seg_session_close(CTL(501), 501);
	seg_session_close(CTL(502), 502);
	CHECK_UEQ(nattch(a) + nattch(b), 0);
	CHECK_EQ(stats().procs, 0);
}

/* ---- fork ---- */

static void test_fork_counts_then_child_claims(void)
{
	struct seg_limits l = std_limits;
	struct perm_cred parent = who(ALICE, AGRP, 100);
	struct perm_cred child = who(ALICE, AGRP, 200);
	struct seg_handle *x;
	struct shmfs_ds ds;
	uint64_t token = 0;
	uint32_t count = 0;
	int a, b;

	l.shmseg = 3;
	setup(&l);
	fake_parent(200, 100);
	seg_session_open(CTL(100), 100);
	a = get(KEY, 100, IPC_CREAT | 0600);
	b = get(KEY + 1, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK(a > 0 && b > 0));
	REQUIRE(CHECK_EQ(attach(a, 100), 0));
	REQUIRE(CHECK_EQ(attach(a, 100), 0));
	REQUIRE(CHECK_EQ(attach(b, 100), 0));
	fake.clock = 2000;

	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &token, &count), 0));
	CHECK_NE(token, 0);
	CHECK_EQ(count, 3);
	/* counted before fork returns, before the child claims anything */
	CHECK_UEQ(nattch(a), 4);
	CHECK_UEQ(nattch(b), 2);
	CHECK_EQ(stats().pending_forks, 1);
	REQUIRE(CHECK_EQ(stat_id(a, &ds), 0));
	CHECK_EQ(ds.lpid, 100);
	CHECK_EQ(ds.atime, 2000);
	/* not the child's yet: it cannot detach them */
	CHECK_EQ(seg_detach(200, a), -EINVAL);
	CHECK_UEQ(nattch(a), 4);

	REQUIRE(CHECK_EQ(seg_fork_child(CTL(100), &child, token), 0));
	CHECK_EQ(stats().pending_forks, 0);
	CHECK_UEQ(nattch(a), 4);
	CHECK_UEQ(nattch(b), 2);
	CHECK_EQ(seg_fork_child(CTL(100), &child, token), -ESRCH);
	CHECK_EQ(seg_fork_abort(CTL(100), &parent, token), -ESRCH);
	/* each holds its own three: neither may attach a fourth */
	CHECK_EQ(open_id(b, 100, true, &x), -EMFILE);
	CHECK_EQ(open_id(b, 200, true, &x), -EMFILE);

	fake.clock = 3000;
	CHECK_EQ(seg_detach(200, a), 0);
	CHECK_UEQ(nattch(a), 3);
	REQUIRE(CHECK_EQ(stat_id(a, &ds), 0));
	CHECK_EQ(ds.lpid, 200);
	CHECK_EQ(ds.dtime, 3000);
	CHECK_EQ(seg_detach(100, a), 0);
	CHECK_UEQ(nattch(a), 2);
	CHECK_EQ(seg_detach(200, b), 0);
	CHECK_EQ(seg_detach(200, b), -EINVAL);
	CHECK_UEQ(nattch(b), 1);
	/* the child's session (the .ctl it inherited) ends: its last goes */
	seg_session_close(CTL(100), 200);
	CHECK_UEQ(nattch(a), 1);
	CHECK_UEQ(nattch(b), 1);
	/* the parent's own did not move */
	CHECK_EQ(seg_detach(100, a), 0);
	CHECK_EQ(seg_detach(100, b), 0);
	CHECK_UEQ(nattch(a), 0);
	CHECK_UEQ(nattch(b), 0);
	seg_session_close(CTL(100), 100);
	CHECK_EQ(stats().procs, 0);
}

static void test_fork_child_exit_detaches_its_refs(void)
{
	struct perm_cred parent = who(ALICE, AGRP, 100);
	struct perm_cred child = who(ALICE, AGRP, 200);
	struct perm_cred grandchild = who(ALICE, AGRP, 300);
	uint64_t token, t2;
	uint32_t count;
	int a;

	a = fork_setup();
	REQUIRE(CHECK(a > 0));
	fake_parent(200, 100);
	fake_parent(300, 200);
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &token, &count), 0));
	REQUIRE(CHECK_EQ(seg_fork_child(CTL(100), &child, token), 0));
	CHECK_UEQ(nattch(a), 2);
	/* the child forks in turn */
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &child, &t2, &count), 0));
	CHECK_EQ(count, 1);
	CHECK_NE(t2, token);
	REQUIRE(CHECK_EQ(seg_fork_child(CTL(100), &grandchild, t2), 0));
	CHECK_UEQ(nattch(a), 3);
	/* the removed segment goes when the last of the three exits */
	CHECK_EQ(rmid(a), 0);
	seg_session_close(CTL(100), 200);
	seg_session_close(CTL(100), 100);
	CHECK_UEQ(nattch(a), 1);
	CHECK_EQ(fake.nfreed, 0);
	seg_session_close(CTL(100), 300);
	CHECK_EQ(fake.nfreed, 1);
	CHECK_EQ(fake.freed[0], a);
	CHECK_EQ(stats().objects, 0);
	CHECK_EQ(stats().procs, 0);
}

static void test_fork_abort_undoes(void)
{
	struct perm_cred parent = who(ALICE, AGRP, 100);
	struct perm_cred other = who(ALICE, AGRP, 101);
	struct perm_cred lonely = who(ALICE, AGRP, 102);
	struct shmfs_ds ds;
	uint64_t token;
	uint32_t count;
	int a;

	setup(&std_limits);
	seg_session_open(CTL(100), 100);
	seg_session_open(CTL(102), 102);
	a = get(KEY, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK(a > 0));
	/* nothing attached: nothing to count */
	token = 99;
	count = 99;
	CHECK_EQ(seg_fork(CTL(100), &lonely, &token, &count), 0);
	CHECK_EQ(token, 0);
	CHECK_EQ(count, 0);
	CHECK_EQ(stats().pending_forks, 0);

	REQUIRE(CHECK_EQ(attach(a, 100), 0));
	REQUIRE(CHECK_EQ(attach(a, 100), 0));
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &token, &count), 0));
	CHECK_EQ(count, 2);
	CHECK_UEQ(nattch(a), 4);
	fake.clock = 3000;
	CHECK_EQ(seg_fork_abort(CTL(100), &other, token), -ESRCH);
	CHECK_UEQ(nattch(a), 4);
	CHECK_EQ(seg_fork_abort(CTL(100), &parent, token + 1), -ESRCH);
	CHECK_EQ(seg_fork_abort(CTL(100), &parent, token), 0);
	CHECK_UEQ(nattch(a), 2);
	CHECK_EQ(stats().pending_forks, 0);
	REQUIRE(CHECK_EQ(stat_id(a, &ds), 0));
	CHECK_EQ(ds.dtime, 3000);
	CHECK_EQ(ds.lpid, 100);
	CHECK_EQ(seg_fork_abort(CTL(100), &parent, token), -ESRCH);
	CHECK_EQ(seg_fork_child(CTL(100), &other, token), -ESRCH);

	/* an abort can be the last detach of a removed segment */
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &token, &count), 0));
	CHECK_EQ(rmid(a), 0);
	CHECK_UEQ(nattch(a), 4);
	CHECK_EQ(seg_detach(100, a), 0);
	CHECK_EQ(seg_detach(100, a), 0);
	CHECK_UEQ(nattch(a), 2);
	CHECK_EQ(fake.nfreed, 0);
	CHECK_EQ(seg_fork_abort(CTL(100), &parent, token), 0);
	CHECK_EQ(fake.nfreed, 1);
	CHECK_EQ(stat_id(a, &ds), -EINVAL);
	CHECK_EQ(stats().objects, 0);
	CHECK_EQ(stats().pending_forks, 0);
	seg_session_close(CTL(102), 102);
	seg_session_close(CTL(100), 100);
	CHECK_EQ(stats().procs, 0);
}

static void test_fork_unclaimed_ref_goes_with_the_dead_child(void)
{
	struct perm_cred parent = who(ALICE, AGRP, 100);
	struct shmfs_ds ds;
	uint64_t token;
	uint32_t count;
	int a, b;

	setup(&std_limits);
	fake_parent(300, 100);
	seg_session_open(CTL(100), 100);
	a = get(KEY, 100, IPC_CREAT | 0600);
	b = get(KEY + 1, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK(a > 0 && b > 0));
	REQUIRE(CHECK_EQ(attach(a, 100), 0));
	REQUIRE(CHECK_EQ(attach(a, 100), 0));
	REQUIRE(CHECK_EQ(attach(b, 100), 0));
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &token, &count), 0));
	CHECK_UEQ(nattch(a), 4);
	CHECK_UEQ(nattch(b), 2);
	/* the child dies before it claims: its close of .ctl detaches */
	fake.clock = 4000;
	seg_session_close(CTL(100), 300);
	CHECK_UEQ(nattch(a), 2);
	CHECK_UEQ(nattch(b), 1);
	REQUIRE(CHECK_EQ(stat_id(a, &ds), 0));
	CHECK_EQ(ds.lpid, 300);
	CHECK_EQ(ds.dtime, 4000);
	CHECK_EQ(stats().pending_forks, 0);
	CHECK_EQ(seg_fork_child(CTL(100), &parent, token), -ESRCH);
	/* a second close finds nothing more */
	seg_session_close(CTL(100), 300);
	CHECK_UEQ(nattch(a), 2);
	/* the parent's are its own */
	CHECK_EQ(seg_detach(100, a), 0);
	CHECK_EQ(seg_detach(100, a), 0);
	CHECK_EQ(seg_detach(100, b), 0);
	CHECK_UEQ(nattch(a) + nattch(b), 0);
	seg_session_close(CTL(100), 100);
	CHECK_EQ(stats().procs, 0);
}

/*
 * An older child of the same parent (forked before the pending fork was
 * counted, without the fork protocol) is not that fork's child: its close
 * of .ctl leaves the pending fork alone.
 */
static void test_fork_older_child_is_not_the_pending_one(void)
{
	struct perm_cred parent = who(ALICE, AGRP, 100);
	struct perm_cred child = who(ALICE, AGRP, 600);
	uint64_t token;
	uint32_t count;
	int a;

	a = fork_setup();
	REQUIRE(CHECK(a > 0));
	fake_parent(500, 100);	/* forked at tick 10, long before */
	fake_parent(600, 100);	/* forked at tick 50, the pending fork */
	fake_parent(700, 100);	/* the same, killed before it claimed */
	fake_starts[500] = 10;
	fake_starts[600] = 50;
	fake_starts[700] = 50;
	fake_ticks = 50;
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &token, &count), 0));
	CHECK_UEQ(nattch(a), 2);
	seg_session_close(CTL(100), 500);
	CHECK_UEQ(nattch(a), 2);
	CHECK_EQ(stats().pending_forks, 1);
	CHECK_EQ(seg_fork_child(CTL(100), &child, token), 0);
	CHECK_UEQ(nattch(a), 2);
	/* a child that started with the fork does match */
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &token, &count), 0));
	CHECK_UEQ(nattch(a), 3);
	seg_session_close(CTL(100), 700);
	CHECK_UEQ(nattch(a), 2);
	CHECK_EQ(stats().pending_forks, 0);
	seg_session_close(CTL(100), 600);
	seg_session_close(CTL(100), 100);
	CHECK_UEQ(nattch(a), 0);
}

/*
 * The parent dies between SHMFS_IOC_FORK and fork(2): no child of its was
 * born after the fork, so nothing can claim it, and its end drops it (the
 * removed segment is freed).
 */
static void test_fork_orphan_without_child_is_dropped(void)
{
	struct perm_cred parent = who(ALICE, AGRP, 100);
	uint64_t token;
	uint32_t count;
	int a;

	a = fork_setup();
	REQUIRE(CHECK(a > 0));
	fake_starts[500] = 10;		/* an older child */
	fake_kids[fake_nkids++] = 500;
	fake_ticks = 50;
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &token, &count), 0));
	CHECK_EQ(rmid(a), 0);
	CHECK_UEQ(nattch(a), 2);
	seg_session_close(CTL(100), 100);
	CHECK_EQ(fake.nfreed, 1);
	CHECK_EQ(stats().pending_forks, 0);
	CHECK_EQ(stats().attaches, 0);
	CHECK_EQ(stats().procs, 0);
	CHECK_EQ(seg_fork_child(CTL(100), &parent, token), -ESRCH);
}

/*
 * The parent dies after fork(2), before its child claimed: the child,
 * reparented (its parent is 1 now), may still claim, or close .ctl as it
 * dies; either ends the fork.  An older child's close does not.
 */
static void test_fork_orphan_goes_with_its_child(void)
{
	struct perm_cred parent = who(ALICE, AGRP, 100);
	struct perm_cred child = who(ALICE, AGRP, 600);
	uint64_t token;
	uint32_t count;
	int a;

	a = fork_setup();
	REQUIRE(CHECK(a > 0));
	fake_parent(500, 1);
	fake_parent(600, 1);
	fake_parent(700, 1);
	fake_starts[500] = 10;
	fake_starts[600] = 50;
	fake_starts[700] = 60;
	fake_kids[fake_nkids++] = 500;
	fake_kids[fake_nkids++] = 600;
	fake_ticks = 50;
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &token, &count), 0));
	seg_session_close(CTL(100), 100);		/* the parent's exit */
	CHECK_UEQ(nattch(a), 1);
	CHECK_EQ(stats().pending_forks, 1);
	seg_session_close(CTL(100), 500);		/* older: not the child */
	seg_session_close(CTL(100), 700);		/* not a child of the parent */
	CHECK_UEQ(nattch(a), 1);
	CHECK_EQ(stats().pending_forks, 1);
	seg_session_close(CTL(100), 600);		/* killed before it claimed */
	CHECK_UEQ(nattch(a), 0);
	CHECK_EQ(stats().pending_forks, 0);

	/* the same, and the child claims after its parent is gone */
	seg_session_open(CTL(100), 100);
	REQUIRE(CHECK_EQ(attach(a, 100), 0));
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &token, &count), 0));
	seg_session_close(CTL(100), 100);
	CHECK_EQ(stats().pending_forks, 1);
	CHECK_EQ(seg_fork_child(CTL(100), &child, token), 0);
	CHECK_UEQ(nattch(a), 1);
	CHECK_EQ(stats().pending_forks, 0);
	seg_session_close(CTL(100), 600);
	CHECK_UEQ(nattch(a), 0);
	CHECK_EQ(stats().procs, 0);
}

static void test_fork_stranger_close_changes_nothing(void)
{
	struct perm_cred parent = who(ALICE, AGRP, 100);
	struct perm_cred child = who(ALICE, AGRP, 200);
	struct shmfs_ds ds;
	uint64_t token;
	uint32_t count;
	int a;

	a = fork_setup();
	REQUIRE(CHECK(a > 0));
	fake_parent(400, 1);
	fake_parent(500, 100);	/* a vfork child of the attached parent */
	fake_parent(200, 100);
	fake.clock = 2000;

	/* no fork pending: the vfork child's exec (a close of .ctl) */
	seg_session_close(CTL(100), 500);
	REQUIRE(CHECK_EQ(stat_id(a, &ds), 0));
	CHECK_UEQ(ds.nattch, 1);
	CHECK_EQ(ds.lpid, 100);
	CHECK_EQ(ds.dtime, 0);

	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &token, &count), 0));
	CHECK_UEQ(nattch(a), 2);
	/* a fork pending: an unrelated process, and an unknown one */
	seg_session_close(CTL(100), 400);
	seg_session_close(CTL(100), 401);
	CHECK_EQ(seg_detach(400, a), -EINVAL);
	REQUIRE(CHECK_EQ(stat_id(a, &ds), 0));
	CHECK_UEQ(ds.nattch, 2);
	CHECK_EQ(ds.dtime, 0);
	CHECK_EQ(stats().pending_forks, 1);
	/* the real child still claims its attach */
	REQUIRE(CHECK_EQ(seg_fork_child(CTL(100), &child, token), 0));
	CHECK_EQ(seg_detach(200, a), 0);
	CHECK_UEQ(nattch(a), 1);
	seg_session_close(CTL(100), 200);
	seg_session_close(CTL(100), 100);
	CHECK_UEQ(nattch(a), 0);
	CHECK_EQ(stats().procs, 0);
}

/*
 * Only the forked child claims a fork: not a stranger who has the token,
 * not an older child of the parent, not through another control file.
 * Tokens are random, not a counter one could walk.
 */
static void test_fork_claimed_only_by_its_child(void)
{
	struct perm_cred parent = who(ALICE, AGRP, 100);
	struct perm_cred stranger = who(BOB, BGRP, 400);
	struct perm_cred older = who(ALICE, AGRP, 500);
	struct perm_cred child = who(ALICE, AGRP, 600);
	uint64_t token, t2;
	uint32_t count;
	int a;

	a = fork_setup();
	REQUIRE(CHECK(a > 0));
	fake_parent(400, 1);
	fake_parent(500, 100);
	fake_parent(600, 100);
	fake_starts[500] = 10;
	fake_starts[600] = 50;
	seg_session_open(CTL(400), 400);
	fake_ticks = 50;
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &token, &count), 0));
	REQUIRE(CHECK_EQ(seg_fork_abort(CTL(100), &parent, token), 0));
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &t2, &count), 0));
	CHECK(t2 != token + 1 && t2 != 0);
	CHECK_EQ(seg_fork_child(CTL(400), &stranger, t2), -ESRCH);
	CHECK_EQ(seg_fork_child(CTL(100), &stranger, t2), -ESRCH);
	CHECK_EQ(seg_fork_child(CTL(100), &older, t2), -ESRCH);
	CHECK_EQ(seg_fork_child(CTL(400), &child, t2), -ESRCH);
	CHECK_EQ(seg_fork_abort(CTL(400), &parent, t2), -ESRCH);
	CHECK_UEQ(nattch(a), 2);
	CHECK_EQ(stats().pending_forks, 1);
	CHECK_EQ(stats().procs, 2);
	CHECK_EQ(seg_fork_child(CTL(100), &child, t2), 0);
	CHECK_EQ(seg_fork_child(CTL(100), &child, t2), -ESRCH);
	CHECK_UEQ(nattch(a), 2);
	seg_session_close(CTL(100), 600);
	CHECK_UEQ(nattch(a), 1);
	seg_session_close(CTL(400), 400);
	seg_session_close(CTL(100), 100);
	CHECK_UEQ(nattch(a), 0);
	CHECK_EQ(stats().procs, 0);
	CHECK_EQ(stats().sessions, 0);
}

/*
 * A session belongs to one open file: a process that closes a file it
 * was given (over a socket, say) ends nothing of its own; the file's
 * own end (RELEASE) ends whatever sessions are left on it.
 */
static void test_session_is_one_processes_use_of_one_file(void)
{
	int a;

	a = fork_setup();
	REQUIRE(CHECK(a > 0));
	seg_session_open(CTL(200), 200);
	/* 100 closes 200's file: 100's attach stays */
	seg_session_close(CTL(200), 100);
	CHECK_UEQ(nattch(a), 1);
	CHECK_EQ(rmid(a), 0);
	CHECK_EQ(fake.nfreed, 0);
	/* 200 opened a file of its own: SESSION there is idempotent */
	CHECK_EQ(seg_session_start(CTL(200), 200), 0);
	CHECK_EQ(stats().sessions, 2);
	/* a session made through a file whose close then never came */
	CHECK_EQ(seg_session_start(CTL(300), 100), 0);
	CHECK_EQ(stats().sessions, 3);
	seg_file_released(CTL(300));
	CHECK_EQ(stats().sessions, 2);
	CHECK_UEQ(nattch(a), 1);
	seg_file_released(CTL(100));
	CHECK_EQ(fake.nfreed, 1);	/* the removed segment's last attach */
	seg_session_close(CTL(200), 200);
	CHECK_EQ(stats().sessions, 0);
	CHECK_EQ(stats().procs, 0);
}

/*
 * A fork asked for and never made: at the parent's next request, every
 * pending fork must have a child of its own that can still claim it;
 * those without one go.  Real children that have not claimed yet keep
 * theirs.
 */
static void test_fork_without_a_child_does_not_pile_up(void)
{
	struct perm_cred parent = who(ALICE, AGRP, 100);
	struct perm_cred c1 = who(ALICE, AGRP, 601), c2 = who(ALICE, AGRP, 602);
	uint64_t t[3];
	uint32_t count;
	int a, i;

	a = fork_setup();
	REQUIRE(CHECK(a > 0));
	fake_ticks = 50;
	for (i = 0; i < 1000; i++)
		REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &t[0], &count),
				 0));
	CHECK_EQ(stats().pending_forks, 1);
	CHECK_UEQ(nattch(a), 2);
	REQUIRE(CHECK_EQ(seg_fork_abort(CTL(100), &parent, t[0]), 0));

	/* two real forks whose children have not claimed yet, then one
	 * more request: all three stay */
	fake_parent(601, 100);
	fake_parent(602, 100);
	fake_ticks = 60;
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &t[0], &count), 0));
	fake_starts[601] = 60;
	fake_kids[fake_nkids++] = 601;
	fake_ticks = 70;
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &t[1], &count), 0));
	fake_starts[602] = 70;
	fake_kids[fake_nkids++] = 602;
	fake_ticks = 80;
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &t[2], &count), 0));
	CHECK_EQ(stats().pending_forks, 3);
	CHECK_UEQ(nattch(a), 4);
	CHECK_EQ(seg_fork_child(CTL(100), &c2, t[1]), 0);
	CHECK_EQ(seg_fork_child(CTL(100), &c1, t[0]), 0);
	/* the third was never made: the next request drops it */
	REQUIRE(CHECK_EQ(seg_fork_abort(CTL(100), &parent, t[2]), 0));
	CHECK_UEQ(nattch(a), 3);
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &t[2], &count), 0));
	REQUIRE(CHECK_EQ(seg_fork(CTL(100), &parent, &t[2], &count), 0));
	CHECK_EQ(stats().pending_forks, 1);
	CHECK_UEQ(nattch(a), 4);
	seg_session_close(CTL(100), 601);
	seg_session_close(CTL(100), 602);
	seg_session_close(CTL(100), 100);
	CHECK_UEQ(nattch(a), 0);
	CHECK_EQ(stats().pending_forks, 0);
	CHECK_EQ(stats().procs, 0);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	UNIT_RUN(test_open_checks_permission_by_accmode);
	UNIT_RUN(test_attach_needs_a_session);
	UNIT_RUN(test_detach_by_a_stranger_changes_nothing);
	UNIT_RUN(test_session_end_detaches_what_is_left);
	UNIT_RUN(test_times_and_pids);
	UNIT_RUN(test_shmseg_emfile);
	UNIT_RUN(test_fork_counts_then_child_claims);
	UNIT_RUN(test_fork_child_exit_detaches_its_refs);
	UNIT_RUN(test_fork_abort_undoes);
	UNIT_RUN(test_fork_unclaimed_ref_goes_with_the_dead_child);
	UNIT_RUN(test_fork_orphan_without_child_is_dropped);
	UNIT_RUN(test_fork_orphan_goes_with_its_child);
	UNIT_RUN(test_fork_stranger_close_changes_nothing);
	UNIT_RUN(test_fork_older_child_is_not_the_pending_one);
	UNIT_RUN(test_fork_claimed_only_by_its_child);
	UNIT_RUN(test_session_is_one_processes_use_of_one_file);
	UNIT_RUN(test_fork_without_a_child_does_not_pile_up);
	seg_fini();
	return unit_done();
}
