/*
 * The reaper: a small child of the daemon that ends the FUSE connection if
 * the daemon dies but cannot finish dying.
 *
 * A killed daemon normally closes /dev/fuse as it exits, and the kernel
 * then fails every request in flight (ENOTCONN).  One daemon thread can
 * keep that from happening: the thread that drops .id/<shmid> names
 * (notify_inval_entry) waits, uninterruptibly, for the lock of the .id
 * directory, and a client's lookup there holds that lock while it waits
 * for the daemon.  Killed then, the daemon stays a zombie with that one
 * thread, its /dev/fuse stays open, and the client and the thread wait for
 * each other for ever.  The only way out the kernel gives is fusectl's
 * abort, which the reaper writes when the daemon's main thread has gone
 * and, a moment later, some thread is still there.  The reaper holds no
 * descriptor of the daemon's, so it never keeps the connection alive
 * itself.  It holds the connection's fusectl directory from the start:
 * connections are named by their device number, which a later mount may
 * take once this one is gone, and an abort through the directory held
 * can only ever reach this connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "reaper.h"

#define FUSECTL "/sys/fs/fuse/connections"
#define GRACE_MS 500

int proc_threads(pid_t pid, bool *leader_gone)
{
	char path[64], buf[2048];
	const char *p;
	ssize_t n;
	int fd;

	if (leader_gone)
		*leader_gone = true;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strstr(buf, "\nState:");
	if (leader_gone)
		*leader_gone = p && (strstr(p, "\nState:\tZ") == p ||
				     strstr(p, "\nState:\tX") == p);
	p = strstr(buf, "\nThreads:");
	return p ? atoi(p + strlen("\nThreads:")) : -1;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int fusectl_dir(dev_t dev)
{
	char path[96];
	int fd;

	/* mounted by most systems; EBUSY when it is */
	if (mount("fusectl", FUSECTL, "fusectl", 0, NULL) != 0 &&
	    errno != EBUSY)
		return -errno;
	/* the kernel names a connection by its superblock's dev_t */
	snprintf(path, sizeof(path), FUSECTL "/%u",
		 (unsigned)((major(dev) << 20) | minor(dev)));
	fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int fusectl_abort(int dir)
{
	int fd, err = 0;

	if (dir < 0)
		return dir;
	fd = openat(dir, "abort", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, "1", 1) != 1)
		err = -errno;
	close(fd);
	return err;
}

/* The holder is gone, or there is none. */
static bool holder_gone(int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	return pidfd < 0 || (poll(&p, 1, 0) == 1 && p.revents);
}

static void reaper_main(pid_t daemon, dev_t dev, int holder)
{
	int dir = fusectl_dir(dev), waited, n;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	/* a terminal's ^C or a group's signal is the daemon's to act on */
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_NAME, "shmfs-reaper");
	if (prctl(PR_SET_PDEATHSIG, SIGUSR1) != 0)
		_exit(1);
	if (getppid() == daemon)
		while (sigwaitinfo(&set, NULL) < 0 && errno == EINTR)
			;
	/* the main thread is gone; the others normally follow at once */
	for (waited = 0; waited < GRACE_MS; waited += 10) {
		n = proc_threads(daemon, NULL);
		if (n == 0 || n == 1)
			_exit(0); /* its descriptors are closed or closing */
		sleep_ms(10);
	}
	/* a holder that outlives the daemon serves on with a successor,
	 * which answers the lookup the stuck thread waits behind; one
	 * killed before the daemon leaves it to us */
	if (!holder_gone(holder))
		_exit(0);
	n = fusectl_abort(dir);
	if (n == -ENOENT)
		_exit(0); /* the connection went meanwhile */
	fprintf(stderr,
		"shmfs: the daemon (pid %d) died with a thread stuck in the "
		"kernel; %s its FUSE connection %u:%u%s%s\n",
		(int)daemon, n ? "cannot abort" : "aborted", major(dev),
		minor(dev), n ? ": " : "", n ? strerror(-n) : "");
	_exit(n ? 1 : 0);
}

int reaper_start(dev_t dev, pid_t holder)
{
	pid_t daemon = getpid(), pid;
	int hfd;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		return 0;
	/* nothing of the daemon's: not /dev/fuse, not the table */
	if (close_range(3, ~0U, 0) != 0)
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	hfd = holder > 0 ? (int)syscall(SYS_pidfd_open, holder, 0) : -1;
	/* a holder gone already leaves it to us; one we cannot watch
	 * (no pidfd here) is trusted to outlive the daemon */
	if (holder > 0 && hfd < 0 && errno != ESRCH)
		_exit(0);
	reaper_main(daemon, dev, hfd);
	return 0; /* not reached */
}
