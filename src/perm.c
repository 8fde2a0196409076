/*
 * SysV ipcperm as Linux applies it: root passes; the caller is the owner
 * when it is the uid or the cuid, in the group when its gid or one of its
 * supplementary groups is the gid or the cgid; the bits asked for must all
 * be in the class's triplet.
 */
#include <errno.h>
#include <stdlib.h>

#include "perm.h"

#define PERM_MAX_GROUPS 65536

PERM_API void perm_cred_init(struct perm_cred *c, uid_t uid, gid_t gid,
			     pid_t pid)
{
	*c = (struct perm_cred){
		.uid = uid, .gid = gid, .pid = pid, .ngroups = -1
	};
}

PERM_API void perm_cred_fini(struct perm_cred *c)
{
	free(c->groups);
	c->groups = NULL;
	c->ngroups = -1;
}

PERM_API bool perm_is_root(const struct perm_cred *c)
{
	return c->uid == 0;
}

PERM_API int perm_fold(unsigned flag)
{
	return (int)(((flag >> 6) | (flag >> 3) | flag) & 7);
}

PERM_API void perm_cred_load_groups(struct perm_cred *c)
{
	int size = 32;

	if (c->ngroups >= 0)
		return;
	c->ngroups = 0;
	if (!c->getgroups)
		return;
	for (;;) {
		gid_t *list = malloc(sizeof(*list) * (size_t)size);
		int n;

		if (!list)
			return;
		n = c->getgroups(c->arg, list, size);
		if (n < 0) {
			free(list);
			return;
		}
		if (n <= size || size >= PERM_MAX_GROUPS) {
			c->groups = list;
			c->ngroups = n <= size ? n : size;
			return;
		}
		free(list);
		size = n;
	}
}

/* 1 if the caller is in group g, 0 if not, -1 if that needs its groups
 * and they are to be fetched later. */
static int perm_in_group(struct perm_cred *c, gid_t g)
{
	int i;

	if (c->gid == g)
		return 1;
	if (c->ngroups < 0) {
		if (c->defer_groups && c->getgroups)
			return -1;
		perm_cred_load_groups(c);
	}
	for (i = 0; i < c->ngroups; i++)
		if (c->groups[i] == g)
			return 1;
	return 0;
}

PERM_API int perm_check(struct perm_cred *c, const struct perm_obj *o, int want)
{
	unsigned granted = o->mode;

	want &= 7;
	if (!want || perm_is_root(c))
		return 0;
	if (c->uid == o->uid || c->uid == o->cuid) {
		granted >>= 6;
	} else {
		int in = perm_in_group(c, o->gid);

		if (!in)
			in = perm_in_group(c, o->cgid);
		if (in < 0)
			return PERM_NEED_GROUPS;
		if (in)
			granted >>= 3;
	}
	return (want & ~granted & 7) ? -EACCES : 0;
}

PERM_API int perm_owner(const struct perm_cred *c, const struct perm_obj *o)
{
	if (perm_is_root(c) || c->uid == o->uid || c->uid == o->cuid)
		return 0;
	return -EPERM;
}
