/*
 * Host facts, read through /proc and /sys.  The limit files stay open and
 * are re-read with pread, so a change by sysctl takes effect at the next
 * check without reopening anything; the SysV limits come from the kernel
 * in one call where it answers it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "sysinfo.h"

static int fd_shmmax = -1, fd_shmall = -1, fd_shmmni = -1, fd_last_pid = -1;
static int fd_overcommit = -1, fd_meminfo = -1;
static uint64_t pid_max = 1u << 22;
static atomic_bool ipc_info_missing; /* ipc_info() below */

static uint64_t read_u64(int fd);

int sysinfo_init(void)
{
	const char *no = getenv("SHMFS_TEST_NO_IPC_INFO"); /* tests: /proc */
	int fd;

	if (no && !strcmp(no, "1"))
		atomic_store(&ipc_info_missing, true);

	fd_shmmax = open("/proc/sys/kernel/shmmax", O_RDONLY | O_CLOEXEC);
	fd_shmall = open("/proc/sys/kernel/shmall", O_RDONLY | O_CLOEXEC);
	fd_shmmni = open("/proc/sys/kernel/shmmni", O_RDONLY | O_CLOEXEC);
	fd_overcommit =
		open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
	fd_meminfo = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
	fd_last_pid =
		open("/proc/sys/kernel/ns_last_pid", O_RDONLY | O_CLOEXEC);
	fd = open("/proc/sys/kernel/pid_max", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		uint64_t max = read_u64(fd);

		if (max > 1)
			pid_max = max;
		close(fd);
	}
	return 0;
}

void sysinfo_fini(void)
{
	int *fds[] = { &fd_shmmax,     &fd_shmall,  &fd_shmmni,
		       &fd_overcommit, &fd_meminfo, &fd_last_pid };
	size_t i;

	for (i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

static uint64_t read_u64(int fd)
{
	char buf[32];
	ssize_t n;

	if (fd < 0)
		return 0;
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strtoull(buf, NULL, 10);
}

/*
 * The kernel's own shmctl(IPC_INFO), which reads the same values of the
 * same IPC namespace as /proc/sys/kernel/shm{max,all,mni}, in one system
 * call and without formatting them: a third of the three reads.  The raw
 * call, on the 64-bit ABIs whose shmctl always speaks IPC_64, so that no
 * preloaded shmctl (libshmfs's own) can stand in for it.  False where the
 * kernel has no SysV IPC, a seccomp profile refuses it, or elsewhere:
 * then, and from then on, /proc/sys.
 */
static bool ipc_info(struct seg_limits *out, unsigned want)
{
#if defined(SYS_shmctl) && (defined(__x86_64__) || defined(__aarch64__))
	struct shminfo info;

	if (atomic_load_explicit(&ipc_info_missing, memory_order_relaxed))
		return false;
	memset(&info, 0, sizeof(info));
	if (syscall(SYS_shmctl, 0, IPC_INFO, &info) < 0) {
		atomic_store(&ipc_info_missing, true);
		return false;
	}
	if (want & SEG_LIMIT_SHMMAX)
		out->shmmax = info.shmmax;
	if (want & SEG_LIMIT_SHMALL)
		out->shmall = info.shmall;
	if (want & SEG_LIMIT_SHMMNI)
		out->shmmni = info.shmmni > UINT32_MAX ? UINT32_MAX
						       : (uint32_t)info.shmmni;
	return true;
#else
	(void)out;
	(void)want;
	atomic_store(&ipc_info_missing, true);
	return false;
#endif
}

void sysinfo_host_limits(struct seg_limits *out, unsigned want)
{
	if (ipc_info(out, want))
		return;
	if (want & SEG_LIMIT_SHMMAX)
		out->shmmax = read_u64(fd_shmmax);
	if (want & SEG_LIMIT_SHMALL)
		out->shmall = read_u64(fd_shmall);
	if (want & SEG_LIMIT_SHMMNI) {
		uint64_t mni = read_u64(fd_shmmni);

		out->shmmni = mni > UINT32_MAX ? UINT32_MAX : (uint32_t)mni;
	}
}

/* A "Name:  N kB" line of /proc/meminfo, in kB, or -1. */
static int64_t meminfo_kb(const char *buf, const char *name)
{
	const char *p = strstr(buf, name);

	return p ? strtoll(p + strlen(name), NULL, 10) : -1;
}

/*
 * Pages one new segment may reserve under the host's overcommit policy,
 * as the kernel's __vm_enough_memory judges a shmem file: no limit with
 * overcommit_memory 1; RAM plus swap with 0; what is left of the commit
 * limit with 2.
 */
uint64_t sysinfo_commit_room(void)
{
	long page = sysconf(_SC_PAGESIZE);
	struct sysinfo si;
	char buf[4096];
	int64_t limit, committed;
	ssize_t n;

	switch (read_u64(fd_overcommit)) {
	case 1:
		return UINT64_MAX;
	case 2:
		if (fd_meminfo < 0)
			return UINT64_MAX;
		n = pread(fd_meminfo, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			return UINT64_MAX;
		buf[n] = '\0';
		limit = meminfo_kb(buf, "CommitLimit:");
		committed = meminfo_kb(buf, "Committed_AS:");
		if (limit < 0 || committed < 0)
			return UINT64_MAX;
		return limit > committed ? (uint64_t)(limit - committed) *
						   1024 / (uint64_t)page
					 : 0;
	default:
		if (sysinfo(&si) != 0 || page <= 0)
			return UINT64_MAX;
		return ((uint64_t)si.totalram + si.totalswap) * si.mem_unit /
		       (uint64_t)page;
	}
}

/* A field such as "Tgid:" from /proc/<pid>/status, or -1. */
static pid_t status_field(pid_t pid, const char *field)
{
	char path[64], line[256];
	size_t flen = strlen(field);
	pid_t val = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, flen)) {
			val = (pid_t)strtol(line + flen, NULL, 10);
			break;
		}
	fclose(f);
	return val;
}

/*
 * tgkill(tid, tid, 0) succeeds only for a thread that leads its group:
 * one system call that allocates nothing, on every request (pidfd_open,
 * which answers the same question, costs a file and a dentry each time).
 * A thread that does not lead its group, or is gone (ESRCH), or a system
 * call refused by a seccomp profile (EPERM, ENOSYS): the Tgid line of
 * /proc/<tid>/status says it.
 */
pid_t sysinfo_tgid(pid_t tid)
{
	pid_t tgid;

	if (syscall(SYS_tgkill, tid, tid, 0) == 0)
		return tid;
	tgid = status_field(tid, "Tgid:");
	return tgid > 0 ? tgid : tid;
}

/*
 * A thread past exit_mm, closing its files at exit, has no memory map,
 * and neither has the rest of its process (the files close with the
 * last thread): its statm reads all zeros, where any process that runs
 * has a size.  statm, not status: a sixth of the text, half the time.
 * Unsure (no statm): false.
 */
bool sysinfo_mm_gone(pid_t tid)
{
	char path[64], text[128];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/statm", (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n < 2)
		return false;
	text[n] = '\0';
	return text[0] == '0' && text[1] == ' ';
}

/*
 * PIDFD_GET_INFO (Linux 6.13) gives the parent without formatting the
 * whole of /proc/PID/status: a third of its cost, on the close of every
 * child that never claimed its fork.  Neither waits for the process
 * (/proc/PID/stat does, in execve).  Where the kernel lacks it, status.
 */
struct host_pidfd_info {
	uint64_t mask, cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid,
		fsgid, spare0[1];
};
#define HOST_PIDFD_GET_INFO _IOWR(0xFF, 11, struct host_pidfd_info)
#define HOST_PIDFD_INFO_PID 1u

static atomic_bool pidfd_info_missing;

pid_t sysinfo_parent(pid_t tgid)
{
	struct host_pidfd_info info = { .mask = HOST_PIDFD_INFO_PID };
	int fd, r;

	if (!atomic_load_explicit(&pidfd_info_missing, memory_order_relaxed)) {
		fd = (int)syscall(SYS_pidfd_open, tgid, 0);
		if (fd < 0 && errno != ESRCH && errno != EINVAL)
			atomic_store(&pidfd_info_missing, true);
		if (fd >= 0) {
			r = ioctl(fd, HOST_PIDFD_GET_INFO, &info);
			if (r < 0 && errno != ESRCH)
				atomic_store(&pidfd_info_missing, true);
			close(fd);
			if (r == 0 && info.ppid > 0)
				return (pid_t)info.ppid;
		}
	}
	return status_field(tgid, "PPid:");
}

/*
 * The children of every thread of a process, from
 * /proc/PID/task/TID/children, in *out (malloc'd): their number, or -errno.
 */
int sysinfo_children(pid_t tgid, pid_t **out)
{
	char path[96];
	struct dirent *de;
	pid_t *list = NULL;
	size_t n = 0, cap = 0;
	DIR *d;

	*out = NULL;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)tgid);
	d = opendir(path);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		FILE *f;
		int pid;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.20s/children",
			 (int)tgid, de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		while (fscanf(f, "%d", &pid) == 1) {
			if (n == cap) {
				size_t c = cap ? cap * 2 : 64;
				pid_t *l = realloc(list, c * sizeof(*l));

				if (!l) {
					fclose(f);
					closedir(d);
					free(list);
					return -ENOMEM;
				}
				list = l;
				cap = c;
			}
			list[n++] = pid;
		}
		fclose(f);
	}
	closedir(d);
	*out = list;
	return (int)n;
}

/*
 * A process's RLIMIT_MEMLOCK soft limit in bytes (UINT64_MAX: none), as
 * the kernel reads it for SHM_LOCK: prlimit(2), or, where the daemon has
 * no CAP_SYS_RESOURCE to ask that of another user's process, the
 * world-readable /proc/PID/limits.  0 when neither answers.
 */
uint64_t sysinfo_memlock(pid_t pid)
{
	static const char field[] = "Max locked memory";
	char path[64], line[256];
	struct rlimit rl;
	uint64_t limit = 0;
	FILE *f;

	if (prlimit(pid, RLIMIT_MEMLOCK, NULL, &rl) == 0)
		return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX
						    : (uint64_t)rl.rlim_cur;
	snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, sizeof(field) - 1)) {
			const char *v = line + sizeof(field) - 1;

			v += strspn(v, " ");
			limit = !strncmp(v, "unlimited", 9)
					? UINT64_MAX
					: strtoull(v, NULL, 10);
			break;
		}
	fclose(f);
	return limit;
}

/*
 * The order processes are born in, from pid allocation: the kernel hands
 * out pids in increasing order and wraps at pid_max.  ns_last_pid is the
 * last one given; each wrap seen adds pid_max, so that a pid taken after
 * a fork was counted is "born" after it.  (A pid reused after a whole
 * wrap between two looks would be misplaced: pending forks last
 * microseconds.)  Nothing here reads the process itself: /proc/PID/stat,
 * the start time, waits for a process in execve.
 */
static pthread_mutex_t born_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t born_wraps, born_last;

/* The last pid given, and the wraps seen so far. */
static uint64_t last_pid_now(uint64_t *wraps)
{
	uint64_t last = read_u64(fd_last_pid);

	pthread_mutex_lock(&born_lock);
	if (last < born_last)
		born_wraps++;
	born_last = last;
	*wraps = born_wraps;
	pthread_mutex_unlock(&born_lock);
	return last;
}

void sysinfo_born_resume(uint64_t at)
{
	if (!pid_max || !at)
		return;
	pthread_mutex_lock(&born_lock);
	/* at = wraps * pid_max + last + 1: a pid below last now is a wrap
	 * since, which the next look sees */
	born_wraps = (at - 1) / pid_max;
	born_last = (at - 1) % pid_max;
	pthread_mutex_unlock(&born_lock);
}

/* Without ns_last_pid every child is born after every fork. */
uint64_t sysinfo_next_born(void)
{
	uint64_t wraps, last;

	if (fd_last_pid < 0)
		return 0;
	last = last_pid_now(&wraps);
	return wraps * pid_max + last + 1;
}

uint64_t sysinfo_born(pid_t tgid)
{
	uint64_t wraps, last;

	if (fd_last_pid < 0)
		return UINT64_MAX;
	last = last_pid_now(&wraps);
	if (tgid <= 0)
		return 0;
	/* a pid above the last one given was given before the last wrap */
	if ((uint64_t)tgid > last)
		return wraps ? (wraps - 1) * pid_max + (uint64_t)tgid : 0;
	return wraps * pid_max + (uint64_t)tgid;
}

static int write_sys(const char *dir, const char *name, const char *val)
{
	char path[PATH_MAX];
	int fd, err = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		err = -errno;
	close(fd);
	return err;
}

/*
 * Does a mount point field of mountinfo (or /proc/mounts) name path?  The
 * kernel writes space, tab, newline and backslash as \ooo (a mount at
 * "/tmp/a b" reads "/tmp/a\040b"), so compare decoded.
 */
bool sysinfo_mountinfo_path_is(const char *field, const char *path)
{
	const char *f = field;

	for (;; path++) {
		char c = *f;

		if (c == '\\' && f[1] >= '0' && f[1] <= '3' && f[2] >= '0' &&
		    f[2] <= '7' && f[3] >= '0' && f[3] <= '7') {
			c = (char)((f[1] - '0') << 6 | (f[2] - '0') << 3 |
				   (f[3] - '0'));
			f += 4;
		} else {
			f++;
		}
		if (c != *path)
			return false;
		if (!c)
			return true;
	}
}

/*
 * The device of the newest FUSE mount at mountpoint, from
 * /proc/self/mountinfo: never stat the mount itself, that would be a
 * request to this very daemon.
 */
int sysinfo_mount_dev(const char *mountpoint, dev_t *dev)
{
	char line[4096];
	bool found = false;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char mp[PATH_MAX];
		unsigned a, b;

		if (sscanf(line, "%*d %*d %u:%u %*s %4095s", &a, &b, mp) != 3)
			continue;
		if (sysinfo_mountinfo_path_is(mp, mountpoint) &&
		    strstr(line, " - fuse")) {
			*dev = makedev(a, b);
			found = true; /* keep the last: the newest mount */
		}
	}
	fclose(f);
	return found ? 0 : -ENOENT;
}

/* Lift the mount's bdi limits, so that a hot segment (on the page-cache
 * path) is not written back over and over. */
int sysinfo_lift_bdi(dev_t dev)
{
	char dir[128];
	int err;

	snprintf(dir, sizeof(dir), "/sys/class/bdi/%u:%u", major(dev),
		 minor(dev));
	err = write_sys(dir, "max_ratio", "100");
	if (!err)
		err = write_sys(dir, "strict_limit", "0");
	return err == -ENOENT ? 0 : err;
}
