/*
 * Host facts, read through /proc and /sys.  The limit files stay open and
 * are re-read with pread, so a change by sysctl takes effect at the next
 * check without reopening anything.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sysinfo.h"

static int fd_shmmax = -1, fd_shmall = -1, fd_shmmni = -1;

int sysinfo_init(void)
{
	fd_shmmax = open("/proc/sys/kernel/shmmax", O_RDONLY | O_CLOEXEC);
	fd_shmall = open("/proc/sys/kernel/shmall", O_RDONLY | O_CLOEXEC);
	fd_shmmni = open("/proc/sys/kernel/shmmni", O_RDONLY | O_CLOEXEC);
	return 0;
}

void sysinfo_fini(void)
{
	if (fd_shmmax >= 0)
		close(fd_shmmax);
	if (fd_shmall >= 0)
		close(fd_shmall);
	if (fd_shmmni >= 0)
		close(fd_shmmni);
	fd_shmmax = fd_shmall = fd_shmmni = -1;
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

void sysinfo_host_limits(struct seg_limits *out, unsigned want)
{
	if (want & SEG_LIMIT_SHMMAX)
		out->shmmax = read_u64(fd_shmmax);
	if (want & SEG_LIMIT_SHMALL)
		out->shmall = read_u64(fd_shmall);
	if (want & SEG_LIMIT_SHMMNI) {
		uint64_t mni = read_u64(fd_shmmni);

		out->shmmni = mni > UINT32_MAX ? UINT32_MAX : (uint32_t)mni;
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
 * pidfd_open refuses a thread that does not lead its group (EINVAL, or
 * ENOENT on newer kernels).  Where pidfd_open itself is missing (ENOSYS:
 * Linux before 5.3, valgrind; EPERM: a seccomp profile) the Tgid line of
 * /proc/<tid>/status says it, as it does for a non-leader.
 */
pid_t sysinfo_tgid(pid_t tid)
{
	static int no_pidfd;
	pid_t tgid;
	int fd;

	if (!__atomic_load_n(&no_pidfd, __ATOMIC_RELAXED)) {
		fd = (int)syscall(SYS_pidfd_open, tid, 0);
		if (fd >= 0) {
			close(fd);
			return tid;
		}
		if (errno == ENOSYS || errno == EPERM)
			__atomic_store_n(&no_pidfd, 1, __ATOMIC_RELAXED);
		else if (errno != EINVAL && errno != ENOENT)
			return tid; /* ESRCH: gone, nothing to ask */
	}
	tgid = status_field(tid, "Tgid:");
	return tgid > 0 ? tgid : tid;
}

pid_t sysinfo_parent(pid_t tgid)
{
	return status_field(tgid, "PPid:");
}

uint64_t sysinfo_start_time(pid_t tgid)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	ssize_t n;
	int fd, field;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)tgid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* the command name may hold anything: count fields after its ')' */
	p = strrchr(buf, ')');
	for (field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (p)
		sscanf(p + 1, "%llu", &start);
	return start;
}

uint64_t sysinfo_ticks_now(void)
{
	struct timespec ts;
	long hz = sysconf(_SC_CLK_TCK);

	if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0 || hz <= 0)
		return 0;
	return (uint64_t)ts.tv_sec * (uint64_t)hz +
	       (uint64_t)ts.tv_nsec / (1000000000u / (uint64_t)hz);
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
 * Find the mount's device in /proc/self/mountinfo (never stat the mount
 * itself: that would be a request to this very daemon) and lift its bdi
 * limits, so that a hot segment is not written back over and over.
 */
int sysinfo_lift_bdi(const char *mountpoint)
{
	char line[4096], dir[128];
	unsigned maj = 0, min = 0;
	bool found = false;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int err;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char mp[PATH_MAX];
		unsigned a, b;

		if (sscanf(line, "%*d %*d %u:%u %*s %4095s", &a, &b, mp) != 3)
			continue;
		if (!strcmp(mp, mountpoint) && strstr(line, " - fuse")) {
			maj = a;
			min = b;
			found = true; /* keep the last: the newest mount */
		}
	}
	fclose(f);
	if (!found)
		return -ENOENT;
	snprintf(dir, sizeof(dir), "/sys/class/bdi/%u:%u", maj, min);
	err = write_sys(dir, "max_ratio", "100");
	if (!err)
		err = write_sys(dir, "strict_limit", "0");
	return err == -ENOENT ? 0 : err;
}
