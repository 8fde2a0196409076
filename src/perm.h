/* SysV ipcperm: who may read, write, control a segment. */
#ifndef SHMFS_PERM_H
#define SHMFS_PERM_H

#include <stdbool.h>
#include <sys/types.h>

/*
 * The caller of one request.  Supplementary groups are fetched only when
 * a check needs them (most callers are the owner): getgroups fills list
 * with up to size groups and returns how many there are, or -errno.
 * With defer_groups, a check that needs them before they are fetched
 * fails with PERM_NEED_GROUPS instead of fetching them: the front end
 * fetches them (a /proc read) without the table lock and asks again.
 */
struct perm_cred {
	uid_t uid;
	gid_t gid;
	pid_t pid; /* thread group id of the caller */
	int (*getgroups)(void *arg, gid_t *list, int size);
	void *arg;
	bool defer_groups;
	int ngroups; /* -1 until fetched */
	gid_t *groups;
};

/* Not an errno: never leaves the front end. */
#define PERM_NEED_GROUPS (-4095)

/* The permission part of one segment. */
struct perm_obj {
	uid_t uid;
	gid_t gid;
	uid_t cuid;
	gid_t cgid;
	unsigned mode;
};

#define PERM_R 4
#define PERM_W 2
#define PERM_X 1

/*
 * The library compiles perm.c into itself with PERM_API static, so that
 * the daemon and the library apply one rule and the library exports
 * nothing more.
 */
#ifndef PERM_API
#define PERM_API
#endif

PERM_API void perm_cred_init(struct perm_cred *c, uid_t uid, gid_t gid,
			     pid_t pid);
PERM_API void perm_cred_fini(struct perm_cred *c);
/* Fetch the supplementary groups now (idempotent). */
PERM_API void perm_cred_load_groups(struct perm_cred *c);
PERM_API bool perm_is_root(const struct perm_cred *c);
/* Fold a mode such as 0640 or S_IRUGO into the 0007 form ipcperm asks. */
PERM_API int perm_fold(unsigned flag);
/* 0 if every bit of want (PERM_R|PERM_W|PERM_X) is granted, else -EACCES
 * (or PERM_NEED_GROUPS, see defer_groups). */
PERM_API int perm_check(struct perm_cred *c, const struct perm_obj *o,
			int want);
/* IPC_SET, IPC_RMID: owner, creator or root, else -EPERM. */
PERM_API int perm_owner(const struct perm_cred *c, const struct perm_obj *o);

#endif
