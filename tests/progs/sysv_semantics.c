/*
 * sysv_semantics: a fixed walk through shmget/shmat/shmdt/shmctl that
 * prints one line per call with everything a program can observe, with
 * ids, pids and times reduced to what is the same on every run.  The test
 * runs it once against the kernel and once under libshmfs-preload.so and
 * wants the two outputs equal.
 *
 *   sysv_semantics KEY     (KEY and KEY+1 must not exist)
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

static long page;

static const char *ename(int e)
{
	const char *n = strerrorname_np(e);

	return n ? n : "E?";
}

/* An int result: "0", "N" or "-1 ENAME". */
static void res(const char *what, int r)
{
	if (r < 0)
		printf("%s: -1 %s\n", what, ename(errno));
	else
		printf("%s: %d\n", what, r);
}

/* An id result, where only success matters, not the number. */
static void res_id(const char *what, int r, int want)
{
	if (r < 0)
		printf("%s: -1 %s\n", what, ename(errno));
	else if (want >= 0)
		printf("%s: %s\n", what, r == want ? "same id" : "OTHER id");
	else
		printf("%s: id\n", what);
}

static void res_at(const char *what, void *p, void *want)
{
	if (p == (void *)-1)
		printf("%s: -1 %s\n", what, ename(errno));
	else if (want)
		printf("%s: %s\n", what,
		       p == want ? "at the address asked" : "ELSEWHERE");
	else
		printf("%s: %s\n", what,
		       ((uintptr_t)p % (uintptr_t)page) ? "UNALIGNED"
							: "page aligned");
}

static void stat_line(const char *what, int id, key_t key)
{
	struct shmid_ds ds;

	memset(&ds, 0xa5, sizeof(ds));
	if (shmctl(id, IPC_STAT, &ds) < 0) {
		printf("%s: -1 %s\n", what, ename(errno));
		return;
	}
	printf("%s: key %s mode %04o segsz %zu nattch %lu cpid %s lpid %s"
	       " atime %s dtime %s ctime %s uid %u gid %u cuid %u cgid %u"
	       " seq-matches-id %s\n",
	       what,
	       ds.shm_perm.__key == key		  ? "KEY"
	       : ds.shm_perm.__key == IPC_PRIVATE ? "PRIVATE"
						  : "OTHER",
	       (unsigned)ds.shm_perm.mode, (size_t)ds.shm_segsz,
	       (unsigned long)ds.shm_nattch,
	       ds.shm_cpid == getpid() ? "self" : "other",
	       ds.shm_lpid == getpid() ? "self"
	       : ds.shm_lpid == 0      ? "0"
				       : "other",
	       ds.shm_atime ? "set" : "0", ds.shm_dtime ? "set" : "0",
	       ds.shm_ctime ? "set" : "0", (unsigned)ds.shm_perm.uid,
	       (unsigned)ds.shm_perm.gid, (unsigned)ds.shm_perm.cuid,
	       (unsigned)ds.shm_perm.cgid,
	       (unsigned)(id >> 15) == ds.shm_perm.__seq ? "yes" : "no");
}

static unsigned long nattch(int id)
{
	struct shmid_ds ds;

	if (shmctl(id, IPC_STAT, &ds) < 0)
		return (unsigned long)-1;
	return (unsigned long)ds.shm_nattch;
}

/* Runs fn in a child and prints how the child ended. */
static void in_child(const char *what, void (*fn)(void *), void *arg)
{
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		fn(arg);
		fflush(stdout);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid) {
		printf("%s: fork/wait failed\n", what);
		return;
	}
	if (WIFSIGNALED(status))
		printf("%s: child killed by %s\n", what,
		       sigabbrev_np(WTERMSIG(status)));
	else
		printf("%s: child exit %d\n", what, WEXITSTATUS(status));
}

static void child_write(void *p)
{
	*(volatile char *)p = 'x';
}

static int child_id;

static void child_nattch(void *p)
{
	(void)p;
	printf("child sees nattch %lu\n", nattch(child_id));
}

static void child_shmdt(void *p)
{
	res("child shmdt", shmdt(p));
	printf("child after shmdt sees nattch %lu\n", nattch(child_id));
}

static void child_exec(void *p)
{
	(void)p;
	execl("/bin/true", "true", (char *)NULL);
	_exit(127);
}

int main(int argc, char **argv)
{
	struct shmid_ds ds;
	struct shminfo si;
	struct shm_info sinfo;
	key_t key;
	int id, id2, r;
	char *p, *q, *hole;

	if (argc < 2) {
		fprintf(stderr, "usage: sysv_semantics KEY\n");
		return 2;
	}
	key = (key_t)strtoul(argv[1], NULL, 0);
	page = sysconf(_SC_PAGESIZE);
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* shmget */
	res_id("shmget size 0", shmget(IPC_PRIVATE, 0, 0600), -1);
	res_id("shmget size huge", shmget(IPC_PRIVATE, (size_t)-1, 0600), -1);
	res_id("shmget missing key", shmget(key, 100, 0600), -1);
	id = shmget(key, 4097, IPC_CREAT | 0640);
	res_id("shmget create", id, -1);
	if (id < 0)
		return 1;
	child_id = id;
	res_id("shmget excl", shmget(key, 4097, IPC_CREAT | IPC_EXCL | 0640),
	       id);
	res_id("shmget bigger", shmget(key, 8192, 0), id);
	res_id("shmget smaller", shmget(key, 100, 0), id);
	res_id("shmget size 0 existing", shmget(key, 0, 0), id);
	res_id("shmget other key", shmget(key + 1, 100, 0), -1);
	stat_line("stat new", id, key);

	/* shmat argument checks */
	res_at("shmat id -1", shmat(-1, NULL, 0), NULL);
	res_at("shmat unaligned", shmat(id, (void *)1, 0), NULL);
	res_at("shmat remap no addr", shmat(id, NULL, SHM_REMAP), NULL);
	res_at("shmat rnd to 0 remap",
	       shmat(id, (void *)100, SHM_RND | SHM_REMAP), NULL);

	p = shmat(id, NULL, 0);
	res_at("shmat", p, NULL);
	if (p == (void *)-1)
		return 1;
	stat_line("stat attached", id, key);
	strcpy(p, "data");
	res_at("shmat over itself", shmat(id, p, 0), NULL);
	q = shmat(id, p + 1, SHM_RND | SHM_REMAP);
	res_at("shmat remap over itself", q, p);
	printf("data after remap: %s\n", p);
	printf("nattch after remap: %lu\n", nattch(id));
	res("shmdt unaligned", shmdt(p + 1));
	res("shmdt middle", shmdt(p + page));
	res("shmdt NULL", shmdt(NULL));
	res("shmdt", shmdt(p));
	res("shmdt again", shmdt(p));
	stat_line("stat detached", id, key);

	/* A fixed address in a hole we made. */
	hole =
	    mmap(NULL, 8 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(hole, 8 * page);
	q = shmat(id, hole + page, 0);
	res_at("shmat fixed", q, hole + page);
	if (q != (void *)-1)
		printf("data at fixed address: %s\n", q);
	res_at("shmat rnd",
	       shmat(id, hole + 3 * page + 5, SHM_RND | SHM_RDONLY),
	       hole + 3 * page);
	printf("nattch two attaches: %lu\n", nattch(id));
	res("shmdt fixed", shmdt(hole + page));
	res("shmdt rnd", shmdt(hole + 3 * page));

	/* Read-only attach: a write faults. */
	p = shmat(id, NULL, SHM_RDONLY);
	res_at("shmat rdonly", p, NULL);
	printf("rdonly reads: %s\n", p);
	in_child("write to rdonly", child_write, p);
	printf("nattch after the child died: %lu\n", nattch(id));

	/* fork, child shmdt, exec */
	in_child("fork", child_nattch, NULL);
	in_child("child detaches", child_shmdt, p);
	printf("parent after the child's shmdt: nattch %lu\n", nattch(id));
	in_child("exec", child_exec, NULL);
	printf("nattch after exec: %lu\n", nattch(id));
	res("shmdt rdonly", shmdt(p));

	/* shmctl */
	res("IPC_STAT NULL", shmctl(id, IPC_STAT, NULL));
	res("IPC_STAT id -1", shmctl(-1, IPC_STAT, &ds));
	/* x86_64 knows only the 64-bit layout: IPC_64 makes an unknown cmd. */
	res("IPC_STAT|IPC_64", shmctl(id, IPC_STAT | 0x100, &ds));
	res("cmd 999", shmctl(id, 999, &ds));
	res("IPC_SET NULL", shmctl(id, IPC_SET, NULL));
	res("IPC_SET NULL id -1", shmctl(-1, IPC_SET, NULL));
	res("IPC_INFO id -1", shmctl(-1, IPC_INFO, &ds) >= 0 ? 0 : -1);
	res("cmd -1", shmctl(id, -1, &ds));
	shmctl(id, IPC_STAT, &ds);
	ds.shm_perm.mode = 01000 | 0600;
	ds.shm_perm.uid = 1234;
	ds.shm_perm.gid = 2345;
	res("IPC_SET", shmctl(id, IPC_SET, &ds));
	stat_line("stat after IPC_SET", id, key);
	ds.shm_perm.uid = 0;
	ds.shm_perm.gid = 0;
	ds.shm_perm.mode = 0640;
	res("IPC_SET back", shmctl(id, IPC_SET, &ds));
	ds.shm_perm.uid = (uid_t)-1;
	res("IPC_SET uid -1", shmctl(id, IPC_SET, &ds));

	r = shmctl(0, IPC_INFO, (struct shmid_ds *)(void *)&si);
	printf("IPC_INFO: %s shmmax %lu shmmin %lu shmmni %lu shmseg %lu"
	       " shmall %lu\n",
	       r >= 0 ? "ok" : ename(errno), (unsigned long)si.shmmax,
	       (unsigned long)si.shmmin, (unsigned long)si.shmmni,
	       (unsigned long)si.shmseg, (unsigned long)si.shmall);
	res("IPC_INFO NULL", shmctl(0, IPC_INFO, NULL) >= 0 ? 0 : -1);
	r = shmctl(0, SHM_INFO, (struct shmid_ds *)(void *)&sinfo);
	printf("SHM_INFO: %s used_ids>=1 %s\n", r >= 0 ? "ok" : ename(errno),
	       sinfo.used_ids >= 1 ? "yes" : "no");
	r = shmctl(id & 0x7fff, SHM_STAT, &ds);
	printf("SHM_STAT: %s\n", r == id ? "returns the id"
				 : r < 0 ? ename(errno)
					 : "OTHER");
	r = shmctl(id & 0x7fff, SHM_STAT_ANY, &ds);
	printf("SHM_STAT_ANY: %s\n", r == id ? "returns the id"
				     : r < 0 ? ename(errno)
					     : "OTHER");
	res("SHM_STAT unused slot", shmctl(32767, SHM_STAT, &ds) >= 0 ? 0 : -1);
	res("SHM_LOCK", shmctl(id, SHM_LOCK, NULL));
	stat_line("stat locked", id, key);
	res("SHM_UNLOCK", shmctl(id, SHM_UNLOCK, NULL));

	/* IPC_RMID while attached */
	p = shmat(id, NULL, 0);
	res_at("shmat before rmid", p, NULL);
	res("IPC_RMID", shmctl(id, IPC_RMID, NULL));
	stat_line("stat removed", id, key);
	res_id("shmget removed key", shmget(key, 0, 0), -1);
	printf("data after rmid: %s\n", p);
	q = shmat(id, NULL, 0);
	res_at("shmat after rmid", q, NULL);
	printf("nattch after second attach: %lu\n", nattch(id));
	in_child("fork after rmid", child_nattch, NULL);
	id2 = shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0600);
	res_id("shmget recreate key", id2, -1);
	printf("new id differs: %s\n", id2 != id ? "yes" : "no");
	res("IPC_RMID recreated", shmctl(id2, IPC_RMID, NULL));
	res("shmdt one", shmdt(p));
	res("shmdt two", shmdt(q));
	stat_line("stat after last detach", id, key);
	res_at("shmat gone id", shmat(id, NULL, 0), NULL);
	res("IPC_RMID gone id", shmctl(id, IPC_RMID, NULL));
	return 0;
}
