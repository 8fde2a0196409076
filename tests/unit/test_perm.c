/*
 * Unit tests of src/perm.c: SysV ipcperm (root, owner by uid or cuid,
 * group by gid, cgid or a supplementary group, other), the bit-by-bit
 * check, perm_fold and the owner rule of IPC_SET/IPC_RMID.
 */
#include <errno.h>
#include <sys/stat.h>

#include "perm.h"
#include "unit.h"

#define OWNER 1000
#define CREATOR 1001
#define GROUP 100
#define CGROUP 101
#define STRANGER 2000
#define SGROUP 300

/* A getgroups callback that serves a fixed list and counts its calls. */
struct fake_groups {
	const gid_t *list;
	int n;
	int err;		/* return -err instead when set */
	int calls;
	int last_size;
};

static int fake_getgroups(void *arg, gid_t *list, int size)
{
	struct fake_groups *g = arg;
	int i;

	g->calls++;
	g->last_size = size;
	if (g->err)
		return -g->err;
	for (i = 0; i < g->n && i < size; i++)
		list[i] = g->list[i];
	return g->n;
}

static struct perm_cred cred(uid_t uid, gid_t gid, struct fake_groups *g)
{
	struct perm_cred c;

	perm_cred_init(&c, uid, gid, 4242);
	if (g) {
		c.getgroups = fake_getgroups;
		c.arg = g;
	}
	return c;
}

/* uid OWNER, gid GROUP, created by CREATOR/CGROUP. */
static struct perm_obj obj(unsigned mode)
{
	struct perm_obj o = {
		.uid = OWNER,
		.gid = GROUP,
		.cuid = CREATOR,
		.cgid = CGROUP,
		.mode = mode,
	};
	return o;
}

static void test_cred_init_fields(void)
{
	struct perm_cred c;

	perm_cred_init(&c, 5, 6, 7);
	CHECK_EQ(c.uid, 5);
	CHECK_EQ(c.gid, 6);
	CHECK_EQ(c.pid, 7);
	CHECK(c.getgroups == NULL);
	CHECK_EQ(c.ngroups, -1);
	CHECK(c.groups == NULL);
	CHECK(!perm_is_root(&c));
	perm_cred_fini(&c);
	perm_cred_init(&c, 0, 6, 7);
	CHECK(perm_is_root(&c));
	perm_cred_fini(&c);
}

static void test_root_bypasses_every_bit(void)
{
	struct fake_groups g = { 0 };
	struct perm_cred c = cred(0, 0, &g);
	struct perm_obj o = obj(0000);

	CHECK_EQ(perm_check(&c, &o, PERM_R), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_W), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_R | PERM_W | PERM_X), 0);
	CHECK_EQ(perm_owner(&c, &o), 0);
	CHECK_EQ(g.calls, 0);
	perm_cred_fini(&c);
}

static void test_owner_by_uid_uses_owner_bits(void)
{
	struct fake_groups g = { 0 };
	struct perm_cred c = cred(OWNER, 999, &g);
	struct perm_obj o = obj(0600);

	CHECK_EQ(perm_check(&c, &o, PERM_R), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_W), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_R | PERM_W), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_X), -EACCES);
	o = obj(0400);
	CHECK_EQ(perm_check(&c, &o, PERM_R), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_W), -EACCES);
	CHECK_EQ(perm_check(&c, &o, PERM_R | PERM_W), -EACCES);
	perm_cred_fini(&c);
}

static void test_owner_by_cuid_uses_owner_bits(void)
{
	struct perm_cred c = cred(CREATOR, 999, NULL);
	struct perm_obj o = obj(0600);

	CHECK_EQ(perm_check(&c, &o, PERM_R | PERM_W), 0);
	/* the owner class is chosen: no fallthrough */
	o = obj(0066);
	CHECK_EQ(perm_check(&c, &o, PERM_R), -EACCES);
	perm_cred_fini(&c);
}

static void test_owner_class_does_not_fall_through(void)
{
	/* The owner gets the owner bits even where group/other get more. */
	struct perm_cred c = cred(OWNER, GROUP, NULL);
	struct perm_obj o = obj(0077);

	CHECK_EQ(perm_check(&c, &o, PERM_R), -EACCES);
	CHECK_EQ(perm_check(&c, &o, PERM_W), -EACCES);
	perm_cred_fini(&c);
}

static void test_owner_never_fetches_groups(void)
{
	gid_t list[] = { GROUP, CGROUP };
	struct fake_groups g = { .list = list, .n = 2 };
	struct perm_cred c = cred(OWNER, 999, &g);
	struct perm_cred cc = cred(CREATOR, 999, &g);
	struct perm_obj o = obj(0640);

	CHECK_EQ(perm_check(&c, &o, PERM_R | PERM_W), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_X), -EACCES);
	CHECK_EQ(perm_check(&cc, &o, PERM_R | PERM_W), 0);
	CHECK_EQ(perm_owner(&c, &o), 0);
	CHECK_EQ(g.calls, 0);
	CHECK_EQ(c.ngroups, -1);
	perm_cred_fini(&c);
	perm_cred_fini(&cc);
}

static void test_group_by_gid(void)
{
	struct fake_groups g = { 0 };
	struct perm_cred c = cred(STRANGER, GROUP, &g);
	struct perm_obj o = obj(0640);

	CHECK_EQ(perm_check(&c, &o, PERM_R), 0);
	/* the primary gid matched: no need to fetch the groups */
	CHECK_EQ(g.calls, 0);
	perm_cred_fini(&c);
}

static void test_group_by_cgid(void)
{
	struct perm_cred c = cred(STRANGER, CGROUP, NULL);
	struct perm_obj o = obj(0640);

	CHECK_EQ(perm_check(&c, &o, PERM_R), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_W), -EACCES);
	perm_cred_fini(&c);
}

static void test_group_by_supplementary_gid(void)
{
	gid_t list[] = { 7, 8, GROUP, 9 };
	struct fake_groups g = { .list = list, .n = 4 };
	struct perm_cred c = cred(STRANGER, 999, &g);
	struct perm_obj o = obj(0640);

	CHECK_EQ(perm_check(&c, &o, PERM_R), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_W), -EACCES);
	CHECK_EQ(g.calls, 1);
	/* fetched once per request, not once per check */
	CHECK_EQ(perm_check(&c, &o, PERM_R), 0);
	CHECK_EQ(g.calls, 1);
	CHECK_EQ(c.ngroups, 4);
	perm_cred_fini(&c);
	CHECK_EQ(c.ngroups, -1);
	CHECK(c.groups == NULL);
}

/*
 * With defer_groups, a check that needs the groups asks for them to be
 * fetched (the front end does it without the table lock) instead of
 * fetching them itself; one that does not need them answers at once.
 */
static void test_deferred_groups_are_asked_for_not_fetched(void)
{
	gid_t list[] = { 7, GROUP };
	struct fake_groups g = { .list = list, .n = 2 };
	struct perm_cred c = cred(STRANGER, 999, &g);
	struct perm_cred own = cred(OWNER, 999, &g);
	struct perm_obj o = obj(0640);

	c.defer_groups = own.defer_groups = true;
	CHECK_EQ(perm_check(&own, &o, PERM_R), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_R), PERM_NEED_GROUPS);
	CHECK_EQ(g.calls, 0);
	perm_cred_load_groups(&c);
	CHECK_EQ(g.calls, 1);
	CHECK_EQ(perm_check(&c, &o, PERM_R), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_W), -EACCES);
	perm_cred_load_groups(&c);
	CHECK_EQ(g.calls, 1);
	perm_cred_fini(&c);
	perm_cred_fini(&own);
}

static void test_group_by_supplementary_cgid(void)
{
	gid_t list[] = { CGROUP };
	struct fake_groups g = { .list = list, .n = 1 };
	struct perm_cred c = cred(STRANGER, 999, &g);
	struct perm_obj o = obj(0604 | 040);

	CHECK_EQ(perm_check(&c, &o, PERM_R), 0);
	o = obj(0604);		/* group class chosen, group bits empty */
	CHECK_EQ(perm_check(&c, &o, PERM_R), -EACCES);
	perm_cred_fini(&c);
}

static void test_many_supplementary_groups_are_all_searched(void)
{
	/* More groups than the first buffer: the helper must ask again. */
	gid_t list[200];
	struct fake_groups g = { .list = list, .n = 200 };
	struct perm_cred c = cred(STRANGER, 999, &g);
	struct perm_obj o = obj(0640);
	int i;

	for (i = 0; i < 200; i++)
		list[i] = 5000 + i;
	list[199] = GROUP;
	CHECK_EQ(perm_check(&c, &o, PERM_R), 0);
	CHECK_EQ(c.ngroups, 200);
	CHECK_EQ(g.last_size, 200);
	perm_cred_fini(&c);
}

static void test_getgroups_error_means_no_groups(void)
{
	gid_t list[] = { GROUP };
	struct fake_groups g = { .list = list, .n = 1, .err = EIO };
	struct perm_cred c = cred(STRANGER, 999, &g);
	struct perm_obj o = obj(0640);

	CHECK_EQ(perm_check(&c, &o, PERM_R), -EACCES);
	CHECK(g.calls >= 1);
	o = obj(0604);		/* other class */
	CHECK_EQ(perm_check(&c, &o, PERM_R), 0);
	perm_cred_fini(&c);
}

static void test_no_getgroups_callback(void)
{
	struct perm_cred c = cred(STRANGER, 999, NULL);
	struct perm_obj o = obj(0604);

	CHECK_EQ(perm_check(&c, &o, PERM_R), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_W), -EACCES);
	perm_cred_fini(&c);
}

static void test_other(void)
{
	gid_t list[] = { 7 };
	struct fake_groups g = { .list = list, .n = 1 };
	struct perm_cred c = cred(STRANGER, 999, &g);
	struct perm_obj o = obj(0660);

	CHECK_EQ(perm_check(&c, &o, PERM_R), -EACCES);
	CHECK_EQ(perm_check(&c, &o, PERM_W), -EACCES);
	o = obj(0606);
	CHECK_EQ(perm_check(&c, &o, PERM_R | PERM_W), 0);
	o = obj(0602);
	CHECK_EQ(perm_check(&c, &o, PERM_W), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_R), -EACCES);
	CHECK_EQ(perm_check(&c, &o, PERM_R | PERM_W), -EACCES);
	o = obj(0001);
	CHECK_EQ(perm_check(&c, &o, PERM_X), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_R), -EACCES);
	perm_cred_fini(&c);
}

static void test_group_bits_one_by_one(void)
{
	struct perm_cred c = cred(STRANGER, GROUP, NULL);
	struct perm_obj o = obj(0640);

	CHECK_EQ(perm_check(&c, &o, PERM_R), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_W), -EACCES);
	CHECK_EQ(perm_check(&c, &o, PERM_R | PERM_W), -EACCES);
	CHECK_EQ(perm_check(&c, &o, PERM_X), -EACCES);
	o = obj(0750);
	CHECK_EQ(perm_check(&c, &o, PERM_X), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_R | PERM_X), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_R | PERM_W | PERM_X), -EACCES);
	o = obj(0620);
	CHECK_EQ(perm_check(&c, &o, PERM_W), 0);
	CHECK_EQ(perm_check(&c, &o, PERM_R), -EACCES);
	perm_cred_fini(&c);
}

static void test_empty_request_always_passes(void)
{
	struct fake_groups g = { 0 };
	struct perm_cred c = cred(STRANGER, 999, &g);
	struct perm_obj o = obj(0000);

	CHECK_EQ(perm_check(&c, &o, 0), 0);
	/* bits outside rwx ask for nothing */
	CHECK_EQ(perm_check(&c, &o, 010), 0);
	CHECK_EQ(g.calls, 0);
	CHECK_EQ(perm_check(&c, &o, PERM_R), -EACCES);
	perm_cred_fini(&c);
}

static void test_mode_bits_beyond_0777_grant_nothing(void)
{
	struct perm_cred c = cred(STRANGER, 999, NULL);
	struct perm_obj o = obj(03000);	/* SHM_DEST|SHM_LOCKED */

	CHECK_EQ(perm_check(&c, &o, PERM_R), -EACCES);
	CHECK_EQ(perm_check(&c, &o, PERM_W), -EACCES);
	CHECK_EQ(perm_check(&c, &o, PERM_X), -EACCES);
	perm_cred_fini(&c);
}

static void test_fold(void)
{
	CHECK_EQ(perm_fold(0640), 6);
	CHECK_EQ(perm_fold(0600), 6);
	CHECK_EQ(perm_fold(0400), 4);
	CHECK_EQ(perm_fold(0040), 4);
	CHECK_EQ(perm_fold(0004), 4);
	CHECK_EQ(perm_fold(0200), 2);
	CHECK_EQ(perm_fold(0020), 2);
	CHECK_EQ(perm_fold(0002), 2);
	CHECK_EQ(perm_fold(0100), 1);
	CHECK_EQ(perm_fold(0000), 0);
	CHECK_EQ(perm_fold(0777), 7);
	CHECK_EQ(perm_fold(0421), 7);
	CHECK_EQ(perm_fold(S_IRUSR | S_IRGRP | S_IROTH), PERM_R);
	CHECK_EQ(perm_fold(S_IWUSR | S_IWGRP | S_IWOTH), PERM_W);
	CHECK_EQ(perm_fold(S_IRUSR | S_IWGRP), PERM_R | PERM_W);
	/* shmget's flag word: only the permission bits count */
	CHECK_EQ(perm_fold(01000 | 0600), 6);
}

static void test_owner_rule(void)
{
	gid_t list[] = { GROUP, CGROUP };
	struct fake_groups g = { .list = list, .n = 2 };
	struct perm_cred owner = cred(OWNER, 999, NULL);
	struct perm_cred creator = cred(CREATOR, 999, NULL);
	struct perm_cred root = cred(0, 999, NULL);
	struct perm_cred member = cred(STRANGER, GROUP, &g);
	struct perm_cred cmember = cred(STRANGER, CGROUP, NULL);
	struct perm_cred stranger = cred(STRANGER, 999, NULL);
	struct perm_obj o = obj(0777);

	CHECK_EQ(perm_owner(&owner, &o), 0);
	CHECK_EQ(perm_owner(&creator, &o), 0);
	CHECK_EQ(perm_owner(&root, &o), 0);
	/* mode and group do not make a caller the owner */
	CHECK_EQ(perm_owner(&member, &o), -EPERM);
	CHECK_EQ(perm_owner(&cmember, &o), -EPERM);
	CHECK_EQ(perm_owner(&stranger, &o), -EPERM);
	o = obj(0000);
	CHECK_EQ(perm_owner(&owner, &o), 0);
	CHECK_EQ(perm_owner(&creator, &o), 0);
	/* a uid equal to the object's gid is no match */
	o.gid = STRANGER;
	CHECK_EQ(perm_owner(&stranger, &o), -EPERM);
	perm_cred_fini(&owner);
	perm_cred_fini(&creator);
	perm_cred_fini(&root);
	perm_cred_fini(&member);
	perm_cred_fini(&cmember);
	perm_cred_fini(&stranger);
}

static void test_uid_equal_to_gid_is_not_owner(void)
{
	/* Numbers of different kinds must not be confused. */
	struct perm_cred c = cred(GROUP, 999, NULL);
	struct perm_obj o = obj(0604);

	CHECK_EQ(perm_check(&c, &o, PERM_R), 0);	/* other, not owner */
	CHECK_EQ(perm_check(&c, &o, PERM_W), -EACCES);
	perm_cred_fini(&c);
}

int main(void)
{
	UNIT_RUN(test_cred_init_fields);
	UNIT_RUN(test_root_bypasses_every_bit);
	UNIT_RUN(test_owner_by_uid_uses_owner_bits);
	UNIT_RUN(test_owner_by_cuid_uses_owner_bits);
	UNIT_RUN(test_owner_class_does_not_fall_through);
	UNIT_RUN(test_owner_never_fetches_groups);
	UNIT_RUN(test_group_by_gid);
	UNIT_RUN(test_group_by_cgid);
	UNIT_RUN(test_group_by_supplementary_gid);
	UNIT_RUN(test_group_by_supplementary_cgid);
	UNIT_RUN(test_deferred_groups_are_asked_for_not_fetched);
	UNIT_RUN(test_many_supplementary_groups_are_all_searched);
	UNIT_RUN(test_getgroups_error_means_no_groups);
	UNIT_RUN(test_no_getgroups_callback);
	UNIT_RUN(test_other);
	UNIT_RUN(test_group_bits_one_by_one);
	UNIT_RUN(test_empty_request_always_passes);
	UNIT_RUN(test_mode_bits_beyond_0777_grant_nothing);
	UNIT_RUN(test_fold);
	UNIT_RUN(test_owner_rule);
	UNIT_RUN(test_uid_equal_to_gid_is_not_owner);
	return unit_done();
}
