/*
 * Unit tests of the segments' memory (src/segmem.c): memfds of their
 * own, backing files, the arena, the host's commit policy, and memory
 * kept while a handle or lookup holds it.
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

static uint64_t data_bytes(int fd, uint64_t off, uint64_t len)
{
	off_t pos = (off_t)off, end = (off_t)(off + len), data, hole;
	uint64_t n = 0;

	while (pos < end) {
		data = lseek(fd, pos, SEEK_DATA);
		if (data < 0 || data >= end)
			break;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || hole > end)
			hole = end;
		n += (uint64_t)(hole - data);
		pos = hole;
	}
	return n;
}

/* An open that makes the segment's memory, and nothing else. */
static void open_release(int id)
{
	struct seg_handle *h;

	if (CHECK_EQ(open_id(id, 700, false, &h), 0))
		seg_release(h);
}

static void test_segments_have_their_own_memory(void)
{
	struct seg_handle *ha, *hb, *ha2, *hc;
	char buf[PAGE], zero[PAGE] = { 0 };
	uint64_t offa;
	int a, b, c, fd;

	setup(&std_limits);
	a = get(KEY, 2 * PAGE, IPC_CREAT | 0600);
	b = get(KEY + 1, PAGE, IPC_CREAT | 0600);
	REQUIRE(CHECK(a > 0 && b > 0));
	REQUIRE(CHECK_EQ(open_id(a, 700, false, &ha), 0));
	REQUIRE(CHECK_EQ(open_id(b, 700, false, &hb), 0));
	REQUIRE(CHECK_EQ(open_id(a, 701, false, &ha2), 0));
	fd = seg_handle_fd(ha);
	offa = seg_handle_offset(ha);
	/* two opens of one segment: the same bytes */
	CHECK_EQ(seg_handle_offset(ha2), offa);
	/* ranges of two segments do not overlap */
	CHECK(seg_handle_offset(hb) >= offa + 2 * PAGE ||
	      seg_handle_offset(hb) + PAGE <= offa);
	memset(buf, 'a', sizeof(buf));
	CHECK_EQ(pwrite(fd, buf, PAGE, (off_t)offa), PAGE);
	CHECK_EQ(pwrite(fd, buf, PAGE, (off_t)offa + PAGE), PAGE);
	CHECK_EQ(pread(seg_handle_fd(hb), buf, PAGE,
		       (off_t)seg_handle_offset(hb)), PAGE);
	CHECK(memcmp(buf, zero, PAGE) == 0);
	CHECK_EQ(pread(seg_handle_fd(ha2), buf, 1, (off_t)offa + 5), 1);
	CHECK_EQ(buf[0], 'a');
	CHECK_UEQ(data_bytes(fd, offa, 2 * PAGE), 2 * PAGE);

	/* removed with a handle open: the bytes stay */
	CHECK_EQ(rmid(a), 0);
	CHECK_EQ(fake.nfreed, 1);
	CHECK_EQ(pread(seg_handle_fd(ha2), buf, 1, (off_t)offa + PAGE), 1);
	CHECK_EQ(buf[0], 'a');
	seg_release(ha);
	CHECK_UEQ(data_bytes(fd, offa, 2 * PAGE), 2 * PAGE);
	/* the last handle gone: the memory is given back */
	seg_release(ha2);
	CHECK_UEQ(data_bytes(fd, offa, 2 * PAGE), 0);
	CHECK_EQ(stats().objects, 1);

	/* a new segment starts zero-filled, never on old bytes */
	c = get(KEY, 2 * PAGE, IPC_CREAT | 0600);
	REQUIRE(CHECK(c > 0));
	REQUIRE(CHECK_EQ(open_id(c, 700, false, &hc), 0));
	CHECK_UEQ(data_bytes(seg_handle_fd(hc), seg_handle_offset(hc),
			     2 * PAGE), 0);
	CHECK_EQ(pread(seg_handle_fd(hc), buf, PAGE,
		       (off_t)seg_handle_offset(hc)), PAGE);
	CHECK(memcmp(buf, zero, PAGE) == 0);
	seg_release(hc);
	/* freed with no handle: given back at once */
	memset(buf, 'b', sizeof(buf));
	CHECK_EQ(pwrite(fd, buf, PAGE, (off_t)seg_handle_offset(hb)), PAGE);
	offa = seg_handle_offset(hb);
	seg_release(hb);
	CHECK_UEQ(data_bytes(fd, offa, PAGE), PAGE);
	CHECK_EQ(rmid(b), 0);
	REQUIRE(CHECK_EQ(open_id(c, 700, false, &hc), 0));
	CHECK_UEQ(data_bytes(seg_handle_fd(hc), offa, PAGE), 0);
	seg_release(hc);
}

/* ---- backing files (passthrough) ---- */

static struct {
	int answer; /* -errno to refuse, 0 to give ids */
	int next_id;
	int open[16]; /* fds handed over, by id; -1 once closed */
	int opens, closes;
} fb;

static int fake_backing_open(int fd)
{
	int id;

	fb.opens++;
	if (fb.answer)
		return fb.answer;
	id = ++fb.next_id;
	if (id < 16)
		fb.open[id] = dup(fd); /* the kernel's own reference */
	return id;
}

static void fake_backing_close(int id)
{
	fb.closes++;
	if (id > 0 && id < 16 && fb.open[id] >= 0) {
		close(fb.open[id]);
		fb.open[id] = -1;
	}
}

static void setup_backing(int answer, uint64_t budget,
			  uint64_t (*commit)(void))
{
	struct seg_config cfg = {
		.given = std_limits,
		.host_limits = fake_host_limits,
		.freed = fake_freed,
		.now = fake_now,
		.page_size = PAGE,
		.backing_open = fake_backing_open,
		.backing_close = fake_backing_close,
		.memfd_budget = budget,
		.commit_room = commit,
	};
	int i;

	seg_fini();
	memset(&fake, 0, sizeof(fake));
	memset(&fb, 0, sizeof(fb));
	for (i = 0; i < 16; i++)
		fb.open[i] = -1;
	fb.answer = answer;
	fake.clock = 1000;
	CHECK_EQ(seg_init(&cfg), 0);
}

static void fb_fini(void)
{
	int i;

	for (i = 0; i < 16; i++)
		if (fb.open[i] >= 0)
			close(fb.open[i]);
}

static void test_backing_memfd_is_sealed_at_segsz(void)
{
	struct seg_handle *h;
	struct stat st;
	char c = 'x';
	int a, fd;

	setup_backing(0, 100, NULL);
	a = get(KEY, PAGE + 5, IPC_CREAT | 0600);
	REQUIRE(CHECK(a > 0));
	CHECK_EQ(fb.opens, 0); /* made at the first open */
	REQUIRE(CHECK_EQ(open_id(a, 700, false, &h), 0));
	CHECK_EQ(fb.opens, 1);
	CHECK_EQ(seg_handle_backing(h), 1);
	fd = fb.open[1];
	REQUIRE(CHECK(fd >= 0));
	CHECK_EQ(fstat(fd, &st), 0);
	CHECK_EQ(st.st_size, PAGE + 5);
	/* neither grows nor shrinks, and the seals stay */
	CHECK_EQ(pwrite(fd, &c, 1, PAGE + 5), -1);
	CHECK_EQ(errno, EPERM);
	CHECK_EQ(ftruncate(fd, 0), -1);
	CHECK_EQ(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), -1);
	CHECK_EQ(pwrite(fd, &c, 1, PAGE + 4), 1);
	CHECK_UEQ(stats().memory, PAGE);
	CHECK_UEQ(stats().passthrough, 1);
	CHECK_UEQ(stats().arena, 0);
	/* freed with a handle open: given back only at its release */
	CHECK_EQ(rmid(a), 0);
	CHECK_EQ(fb.closes, 0);
	seg_release(h);
	CHECK_EQ(fb.closes, 1);
	CHECK_EQ(fb.open[1], -1);
	CHECK_UEQ(stats().passthrough, 0);
	fb_fini();
}

static void test_backing_over_budget_is_unmeasured(void)
{
	int a, b;

	setup_backing(0, 1, NULL);
	a = get(KEY, 3 * PAGE, IPC_CREAT | 0600);
	b = get(KEY + 1, 2 * PAGE, IPC_CREAT | 0600);
	REQUIRE(CHECK(a > 0 && b > 0));
	open_release(a);
	open_release(b);
	CHECK_UEQ(stats().passthrough, 2);
	CHECK_UEQ(stats().unmeasured, 1);
	/* the one not kept counts as all of its pages */
	CHECK_UEQ(stats().memory, 2 * PAGE);
	CHECK_EQ(rmid(a), 0);
	CHECK_EQ(rmid(b), 0);
	CHECK_EQ(fb.closes, 2);
	CHECK_UEQ(stats().memory, 0);
	fb_fini();
}

static void test_backing_refused_falls_back_to_the_arena(void)
{
	struct seg_handle *h;
	int a, b;

	setup_backing(-EPERM, 100, NULL);
	a = get(KEY, PAGE, IPC_CREAT | 0600);
	REQUIRE(CHECK(a > 0));
	b = get(KEY + 1, PAGE, IPC_CREAT | 0600);
	REQUIRE(CHECK(b > 0));
	open_release(a);
	/* asked once, never again */
	REQUIRE(CHECK_EQ(open_id(b, 700, false, &h), 0));
	CHECK_EQ(fb.opens, 1);
	CHECK_EQ(seg_handle_backing(h), 0);
	CHECK_UEQ(stats().arena, 2);
	seg_release(h);
	fb_fini();
}

/*
 * A segment's memory is made at its first open, not at shmget: one that
 * is removed unopened never costs a memfd.  Out of memory (or of
 * descriptors) then, the open fails with ENOMEM and changes nothing; the
 * next open asks again.
 */
static void test_memory_is_made_at_the_first_open(void)
{
	struct seg_handle *h, *h2;
	int a, b;

	setup_backing(-ENOMEM, 100, NULL);
	a = get(KEY, 2 * PAGE, IPC_CREAT | 0600);
	REQUIRE(CHECK(a > 0));
	CHECK_UEQ(stats().tot_pages, 2);
	CHECK_UEQ(stats().passthrough + stats().arena, 0);
	CHECK_UEQ(stats().memory, 0);
	CHECK_EQ(fb.opens, 0);
	CHECK_EQ(open_id(a, 700, false, &h), -ENOMEM);
	CHECK_EQ(fb.opens, 1);
	CHECK_UEQ(stats().handles, 0);
	CHECK_UEQ(stats().passthrough + stats().arena, 0);
	CHECK_EQ(get(KEY, PAGE, 0600), a);
	fb.answer = 0;
	REQUIRE(CHECK_EQ(open_id(a, 700, false, &h), 0));
	REQUIRE(CHECK_EQ(open_id(a, 701, false, &h2), 0));
	CHECK_EQ(fb.opens, 2); /* once */
	CHECK_EQ(seg_handle_backing(h2), seg_handle_backing(h));
	CHECK_UEQ(stats().passthrough, 1);
	seg_release(h);
	seg_release(h2);

	/* removed unopened: its pages count no more, nothing to close */
	b = get(IPC_PRIVATE, 3 * PAGE, 0600);
	REQUIRE(CHECK(b > 0));
	CHECK_UEQ(stats().tot_pages, 5);
	CHECK_EQ(rmid(b), 0);
	CHECK_UEQ(stats().tot_pages, 2);
	CHECK_EQ(fb.opens, 2);
	CHECK_UEQ(stats().objects, 1);
	CHECK_EQ(rmid(a), 0);
	CHECK_EQ(fb.closes, 1);
	CHECK_UEQ(stats().tot_pages, 0);
	CHECK_UEQ(stats().objects, 0);
	fb_fini();
}

/*
 * The arena's ranges serve again once freed, so that no caller can use
 * them up for good; a segment too large for it (SHM_NORESERVE makes it
 * cheap) gets a memfd of its own and leaves the arena to everyone else.
 */
static void test_arena_ranges_are_reused_huge_ones_stand_alone(void)
{
	struct seg_limits l = std_limits;
	struct seg_handle *h;
	uint64_t off_b, off_c;
	int big, big2, b, c, d;

	l.shmmax = 1ULL << 62;
	l.shmall = ~0ULL >> 1;
	setup(&l);
	big = get(IPC_PRIVATE, 1ULL << 62, SHM_NORESERVE | 0600);
	REQUIRE(CHECK(big > 0));
	big2 = get(IPC_PRIVATE, 1ULL << 62, SHM_NORESERVE | 0600);
	REQUIRE(CHECK(big2 > 0));
	REQUIRE(CHECK_EQ(open_id(big, 700, false, &h), 0));
	CHECK_UEQ(seg_handle_offset(h), 0);
	CHECK(seg_handle_fd(h) >= 0);
	seg_release(h);
	CHECK_EQ(rmid(big), 0);
	CHECK_EQ(rmid(big2), 0);
	CHECK_UEQ(stats().objects, 0);

	b = get(IPC_PRIVATE, 3 * PAGE, 0600);
	REQUIRE(CHECK(b > 0));
	REQUIRE(CHECK_EQ(open_id(b, 700, false, &h), 0));
	off_b = seg_handle_offset(h);
	seg_release(h);
	d = get(IPC_PRIVATE, PAGE, 0600);
	REQUIRE(CHECK(d > 0));
	open_release(d);			/* after b */
	CHECK_EQ(rmid(b), 0);
	c = get(IPC_PRIVATE, 2 * PAGE, 0600);	/* in b's place */
	REQUIRE(CHECK(c > 0));
	REQUIRE(CHECK_EQ(open_id(c, 700, false, &h), 0));
	off_c = seg_handle_offset(h);
	seg_release(h);
	CHECK_UEQ(off_c, off_b);
	CHECK_EQ(rmid(c), 0);
	CHECK_EQ(rmid(d), 0);
	/* b, c and d's ranges are one free range again: a 4-page segment
	 * starts where b did */
	b = get(IPC_PRIVATE, 4 * PAGE, 0600);
	REQUIRE(CHECK(b > 0));
	REQUIRE(CHECK_EQ(open_id(b, 700, false, &h), 0));
	CHECK_UEQ(seg_handle_offset(h), off_b);
	seg_release(h);
	CHECK_EQ(rmid(b), 0);
	CHECK_UEQ(stats().objects, 0);
}

static uint64_t ten_pages(void)
{
	return 10;
}

static void test_commit_room_as_the_kernel_overcommit(void)
{
	setup_backing(0, 100, ten_pages);
	CHECK_EQ(get(KEY, 11 * PAGE, IPC_CREAT | 0600), -ENOMEM);
	CHECK_UEQ(stats().used, 0);
	CHECK(get(KEY, 10 * PAGE, IPC_CREAT | 0600) > 0);
	/* SHM_NORESERVE asks for no reservation */
	CHECK(get(KEY + 1, 11 * PAGE, IPC_CREAT | SHM_NORESERVE | 0600) > 0);
	fb_fini();
}

/* A name the kernel still caches keeps the object, not the memory. */
static void test_held_lookup_does_not_keep_memory(void)
{
	struct seg_handle *h, *keep;
	struct seg_view v;
	char buf[PAGE];
	uint64_t off;
	int a, b, fd;

	setup(&std_limits);
	a = get(KEY, PAGE, IPC_CREAT | 0600);
	b = get(KEY + 1, PAGE, IPC_CREAT | 0600);
	REQUIRE(CHECK(a > 0 && b > 0));
	REQUIRE(CHECK_EQ(open_id(b, 700, false, &keep), 0));
	fd = seg_handle_fd(keep);
	memset(buf, 'x', sizeof(buf));

	/* freed without a handle */
	REQUIRE(CHECK_EQ(seg_lookup_id(a, true, &v), 0));
	REQUIRE(CHECK_EQ(open_id(a, 700, false, &h), 0));
	off = seg_handle_offset(h);
	CHECK_EQ(pwrite(fd, buf, PAGE, (off_t)off), PAGE);
	seg_release(h);
	CHECK_EQ(rmid(a), 0);
	CHECK_EQ(seg_lookup_serial(v.serial, &v), 0);
	CHECK_UEQ(data_bytes(fd, off, PAGE), 0);
	seg_forget(v.serial, 1);

	/* freed with a handle, which then goes */
	a = get(KEY, PAGE, IPC_CREAT | 0600);
	REQUIRE(CHECK(a > 0));
	REQUIRE(CHECK_EQ(seg_lookup_id(a, true, &v), 0));
	REQUIRE(CHECK_EQ(open_id(a, 700, false, &h), 0));
	off = seg_handle_offset(h);
	CHECK_EQ(pwrite(fd, buf, PAGE, (off_t)off), PAGE);
	CHECK_EQ(rmid(a), 0);
	CHECK_UEQ(data_bytes(fd, off, PAGE), PAGE);
	seg_release(h);
	CHECK_EQ(seg_lookup_serial(v.serial, &v), 0);
	CHECK_UEQ(data_bytes(fd, off, PAGE), 0);
	seg_forget(v.serial, 1);
	seg_release(keep);
}

static void test_memory_stays_while_a_handle_is_open(void)
{
	struct seg_handle *att, *plain;
	char buf[6] = { 0 };
	int id;

	setup(&std_limits);
	seg_session_open(CTL(501), 501);
	id = get(KEY, 100, IPC_CREAT | 0600);
	REQUIRE(CHECK(id > 0));
	REQUIRE(CHECK_EQ(open_id(id, 501, true, &att), 0));
	REQUIRE(CHECK_EQ(open_id(id, 502, false, &plain), 0));
	CHECK_UEQ(nattch(id), 1);	/* a plain open is no attach */
	CHECK_EQ(pwrite(seg_handle_fd(att), "hello", 5,
			(off_t)seg_handle_offset(att) + 10), 5);
	/* closing the attach descriptor is no detach: the mapping stays */
	seg_release(att);
	CHECK_UEQ(nattch(id), 1);
	CHECK_EQ(rmid(id), 0);
	CHECK_EQ(seg_detach(501, id), 0);
	CHECK_EQ(fake.nfreed, 1);
	/* freed as a shmid, the memory stays for the open handle */
	REQUIRE(CHECK(seg_handle_fd(plain) >= 0));
	CHECK_EQ(pread(seg_handle_fd(plain), buf, 5,
		       (off_t)seg_handle_offset(plain) + 10), 5);
	CHECK_STR(buf, "hello");
	CHECK_EQ(stats().objects, 1);
	seg_release(plain);
	CHECK_EQ(stats().objects, 0);
	CHECK_EQ(stats().handles, 0);
	seg_session_close(CTL(501), 501);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	UNIT_RUN(test_segments_have_their_own_memory);
	UNIT_RUN(test_held_lookup_does_not_keep_memory);
	UNIT_RUN(test_memory_stays_while_a_handle_is_open);
	UNIT_RUN(test_backing_memfd_is_sealed_at_segsz);
	UNIT_RUN(test_backing_over_budget_is_unmeasured);
	UNIT_RUN(test_backing_refused_falls_back_to_the_arena);
	UNIT_RUN(test_memory_is_made_at_the_first_open);
	UNIT_RUN(test_arena_ranges_are_reused_huge_ones_stand_alone);
	UNIT_RUN(test_commit_room_as_the_kernel_overcommit);
	seg_fini();
	return unit_done();
}
