/*
 * The holder: what must outlive a server, kept by a process that serves
 * no request.
 *
 * A FUSE mount is its /dev/fuse connection: while any process holds the
 * descriptor, the mount stays and requests queue.  The holder holds it,
 * and holds every other descriptor a successor needs: the persistent
 * heap of the table (table_tx.c), each memfd the table refers to (the
 * server sends each over the socket between them as it keeps it, and
 * says when it lets one go), and the bytes of FUSE_INIT, which the
 * kernel sends once per connection.  When the serving process dies, the
 * holder starts the binary again with all of it, at the very descriptor
 * numbers the table names (so the table needs no translation), and the
 * successor asks the kernel to send again what the dead server had read
 * and not answered (takeover.c).  `shmfs --upgrade MOUNTPOINT` asks the
 * holder to do the same with another binary, after the running server
 * stops at a request boundary.
 *
 * The holder learns of a death from the socket: its other end closes when
 * the last thread of the server has gone.  A server killed while one of
 * its threads waits in the kernel (for a directory lock that a client's
 * lookup holds while it waits for the server: see reaper.c) does not go
 * on: the holder sees its main thread gone and, a moment later, starts
 * the successor anyway, whose answer to the client's resent lookup lets
 * the stuck thread end.  A successor that cannot start, or servers that
 * keep dying, end the connection as a server's death did before the
 * holder: clients get ENOTCONN.  If the holder itself dies, the server
 * goes on serving, and its death then ends the connection.
 *
 * The other ends of its sockets: the server's (holder_client.c) and
 * `shmfs --upgrade` (holder_upgrade.c); the messages: holder_msg.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alive.h"
#include "holder.h"
#include "holder_impl.h"
#include "pubtab.h"
#include "reaper.h"
#include "seg.h"

#define TICK_MS 50
/* A main thread gone this long with threads left: they wait in the
 * kernel and will never run our code again. */
#define STUCK_MS 300
/* Servers that die this soon after they start, this many times in a row,
 * end the connection: a request that kills every server it reaches would
 * otherwise be sent again for ever.  A server that served longer (one an
 * operator or an OOM killer ended) starts the count again. */
#define DEATHS_MAX 5
#define QUICK_DEATH_MS 500
#define READY_TIMEOUT_MS 10000
#define UPGRADE_TIMEOUT_MS 30000

struct kept {
	int num; /* the server's number */
	int fd; /* ours */
	enum keep_role role;
};

/* A socket pair and a fork: the child's pid (0 in the child), or
 * -errno with nothing left open. */
static pid_t fork_paired(int sv[2])
{
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int err = -errno;

		close(sv[0]);
		close(sv[1]);
		return err;
	}
	return pid;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- the holder ---- */

static struct {
	pid_t server;
	bool server_is_child;
	int sock; /* to the server */
	int dev; /* our /dev/fuse */
	int conn_dir; /* fusectl's directory of the connection */
	dev_t conn;
	struct kept *kept;
	int nkept, cap_kept;
	void *init;
	size_t init_len;
	char **argv;
	int exe; /* the binary successors run; -1: ours */
	int listen; /* for --upgrade */
	int upgrader; /* the one asking now, or -1 */
	int new_exe; /* its binary, while it is being tried */
	bool trying; /* new_exe runs and has not said it serves */
	int64_t stop_us; /* when the old server was asked to stop */
	int64_t started_ms; /* the server was started (0: the first) */
	int64_t died_ms; /* its main thread was seen gone (0: not yet) */
	bool ready;
	int quick_deaths; /* in a row */
} H = { .sock = -1,
	.dev = -1,
	.conn_dir = -1,
	.exe = -1,
	.listen = -1,
	.upgrader = -1,
	.new_exe = -1 };

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(STDERR_FILENO, buf, (size_t)n) < 0)
		return;
}

static struct kept *kept_find(int num)
{
	int i;

	for (i = 0; i < H.nkept; i++)
		if (H.kept[i].num == num)
			return &H.kept[i];
	return NULL;
}

static void kept_add(int num, int fd, enum keep_role role)
{
	struct kept *k = kept_find(num);

	if (k) { /* the server closed the old one before reusing num */
		close(k->fd);
		k->fd = fd;
		k->role = role;
		return;
	}
	if (H.nkept == H.cap_kept) {
		int cap = H.cap_kept ? 2 * H.cap_kept : 64;
		struct kept *more =
			realloc(H.kept, (size_t)cap * sizeof(*more));

		if (!more) {
			/* a successor will miss this memfd: say so */
			say("shmfs-holder: out of memory keeping descriptor %d",
			    num);
			close(fd);
			return;
		}
		H.kept = more;
		H.cap_kept = cap;
	}
	H.kept[H.nkept++] = (struct kept){ num, fd, role };
}

static void kept_drop(int num)
{
	struct kept *k = kept_find(num);

	if (!k || k->role != ROLE_FD)
		return;
	close(k->fd);
	*k = H.kept[--H.nkept];
}

static int kept_role_num(enum keep_role role)
{
	int i;

	for (i = 0; i < H.nkept; i++)
		if (H.kept[i].role == role)
			return H.kept[i].num;
	return -1;
}

static void upgrade_done(uint64_t err, pid_t pid);

/* The server's messages; false when it is gone. */
static bool server_messages(void)
{
	static char buf[HMSG_MAX];
	struct hmsg m;
	ssize_t n;
	int fd;

	n = msg_recv(H.sock, &m, buf, sizeof(buf), &fd);
	if (n == -EAGAIN)
		return true;
	if (n <= 0)
		return false;
	switch (m.type) {
	case H_KEEP:
		if (fd >= 0)
			kept_add(m.num, fd, (enum keep_role)m.a);
		return true;
	case H_DROP:
		kept_drop(m.num);
		break;
	case H_INIT:
		H.ready = true; /* the first server: it serves */
		if (!H.init && (size_t)n > sizeof(m)) {
			H.init = malloc((size_t)n - sizeof(m));
			if (H.init) {
				H.init_len = (size_t)n - sizeof(m);
				memcpy(H.init, buf, H.init_len);
			}
		}
		break;
	case H_READY:
		H.ready = true;
		if (H.trying) { /* the upgrade serves: it is the binary now */
			H.trying = false;
			upgrade_done(0, H.server);
			if (H.exe >= 0)
				close(H.exe);
			H.exe = H.new_exe;
			H.new_exe = -1;
		}
		break;
	default:
		break;
	}
	if (fd >= 0)
		close(fd);
	return true;
}

static bool connection_gone(void)
{
	struct pollfd p = { .fd = H.dev, .events = 0 };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP));
}

static void give_up(const char *why)
{
	int err = H.conn_dir < 0 ? -ENOENT : fusectl_abort(H.conn_dir);

	say("shmfs-holder: %s; %s the connection %u:%u: its clients get "
	    "ENOTCONN",
	    why, err ? "cannot end" : "ended", major(H.conn), minor(H.conn));
	_exit(1);
}

/*
 * The child's descriptors: every one kept at the number the table knows,
 * and the socket to us just above them.  Sources first go above every
 * target, so that no dup2 overwrites a source not yet placed.
 */
static void place_fds(int sock, int exe, int *socknum, int *exenum)
{
	int i, top = 2, tmp;

	for (i = 0; i < H.nkept; i++)
		if (H.kept[i].num > top)
			top = H.kept[i].num;
	*socknum = top + 1;
	top += 2;
	for (i = 0; i < H.nkept; i++) {
		tmp = fcntl(H.kept[i].fd, F_DUPFD_CLOEXEC, top);
		if (tmp < 0)
			_exit(126);
		H.kept[i].fd = tmp;
	}
	tmp = fcntl(sock, F_DUPFD_CLOEXEC, top);
	*exenum = exe >= 0 ? fcntl(exe, F_DUPFD_CLOEXEC, top) : -1;
	if (tmp < 0 || (exe >= 0 && *exenum < 0))
		_exit(126);
	for (i = 0; i < H.nkept; i++)
		if (dup2(H.kept[i].fd, H.kept[i].num) < 0)
			_exit(126);
	if (dup2(tmp, *socknum) < 0)
		_exit(126);
}

/* Start a successor running exe (-1: our own binary). */
static int spawn(int exe)
{
	int sv[2], socknum, exenum, nargs, i, *nums;
	char adopt[128];
	struct hmsg m;
	pid_t pid;

	if (!H.init)
		return -ENOMSG; /* no INIT yet: nobody to succeed */
	pid = fork_paired(sv);
	if (pid < 0)
		return pid;
	if (pid == 0) {
		char **argv;
		extern char **environ;

		signal(SIGPIPE, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		place_fds(sv[1], exe, &socknum, &exenum);
		snprintf(adopt, sizeof(adopt), HOLDER_ADOPT_OPT "%d,%d,%d,%d",
			 kept_role_num(ROLE_DEV), kept_role_num(ROLE_HEAP),
			 socknum, (int)getppid());
		for (nargs = 0; H.argv[nargs]; nargs++)
			;
		argv = calloc((size_t)nargs + 2, sizeof(*argv));
		if (!argv)
			_exit(126);
		argv[0] = H.argv[0];
		argv[1] = adopt;
		for (i = 1; i < nargs; i++)
			argv[i + 1] = H.argv[i];
		if (exenum >= 0)
			execveat(exenum, "", argv, environ, AT_EMPTY_PATH);
		else
			execv("/proc/self/exe", argv);
		say("shmfs-holder: cannot start a server: %s", strerror(errno));
		_exit(127);
	}
	close(sv[1]);
	m = (struct hmsg){ .type = H_INIT };
	msg_send(sv[0], &m, H.init, H.init_len, -1);
	/* the numbers kept, in pieces; a = 1 on the last */
	nums = calloc((size_t)H.nkept + 1, sizeof(*nums));
	for (i = 0; nums && i < H.nkept; i++)
		nums[i] = H.kept[i].num;
	for (i = 0;; i += KEPT_PIECE) {
		int n = nums ? H.nkept - i : 0;

		if (n > KEPT_PIECE)
			n = KEPT_PIECE;
		m = (struct hmsg){ .type = H_KEPT,
				   .num = n,
				   .a = i + n >= H.nkept || !nums };
		msg_send(sv[0], &m, nums ? nums + i : NULL,
			 (size_t)n * sizeof(int), -1);
		if (m.a)
			break;
	}
	free(nums);
	if (H.sock >= 0)
		close(H.sock);
	H.sock = sv[0];
	H.server = pid;
	H.server_is_child = true;
	H.started_ms = now_ms();
	H.died_ms = 0;
	H.ready = false;
	return 0;
}

static void reap_children(void)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

/* Whether every thread of pid left is a zombie or waits in the kernel
 * uninterruptibly (D): none of them runs our code again. */
static bool only_stuck_threads(pid_t pid)
{
	char path[320], buf[512];
	struct dirent *de;
	bool stuck = true;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return true;
	while (stuck && (de = readdir(d))) {
		const char *state;
		ssize_t n;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", (int)pid,
			 de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		state = strrchr(buf, ')');
		stuck = !state ||
			(state[2] == 'D' || state[2] == 'Z' || state[2] == 'X');
	}
	closedir(d);
	return stuck;
}

/*
 * Has the server died?  Its socket's end closes with its last thread; a
 * main thread gone with the others waiting in the kernel counts too (at
 * once when they are all in D, else after STUCK_MS).
 */
static bool server_dead(bool hup)
{
	bool leader_gone;
	int n;

	if (hup)
		return true;
	n = proc_threads(H.server, &leader_gone);
	if (n == 0)
		return true;
	if (!leader_gone)
		return false;
	if (!H.died_ms)
		H.died_ms = now_ms();
	return only_stuck_threads(H.server) || now_ms() - H.died_ms >= STUCK_MS;
}

static void count_death(void)
{
	if (H.started_ms && now_ms() - H.started_ms < QUICK_DEATH_MS)
		H.quick_deaths++;
	else
		H.quick_deaths = 0;
	if (H.quick_deaths >= DEATHS_MAX)
		give_up("servers keep dying (5 in a row, each within 0.5 s "
			"of its start)");
}

static void upgrade_done(uint64_t err, pid_t pid)
{
	struct hmsg m = { .type = H_DONE,
			  .a = err,
			  .b = (uint64_t)pid,
			  .c = (uint64_t)(now_us() - H.stop_us) };

	if (H.upgrader >= 0) {
		msg_send(H.upgrader, &m, NULL, 0, -1);
		close(H.upgrader);
	}
	H.upgrader = -1;
}

/* Every message waiting: false once the server's end is closed.  Also
 * whatever a dead server sent before it died: a memfd it kept may still
 * be in the socket. */
static bool drain(void)
{
	struct pollfd p = { .fd = H.sock, .events = POLLIN };

	while (H.sock >= 0 && poll(&p, 1, 0) == 1) {
		if (!(p.revents & POLLIN))
			return !(p.revents & (POLLHUP | POLLERR));
		if (!server_messages())
			return false;
	}
	return true;
}

/* The dead server's last messages, its socket closed; the end if the
 * mount went with it (the server's end was then ours too). */
static void server_gone(void)
{
	drain();
	if (H.sock >= 0)
		close(H.sock);
	H.sock = -1;
	reap_children();
	if (connection_gone())
		_exit(0);
}

/* The server is gone: its successor, or the end. */
static void succeed(void)
{
	bool upgrading = H.new_exe >= 0 && !H.trying;
	int err;

	server_gone();
	if (!upgrading) {
		if (!H.ready && H.started_ms)
			say("shmfs-holder: server %d died before serving",
			    (int)H.server);
		count_death();
	}
	err = spawn(upgrading ? H.new_exe : H.exe);
	H.trying = upgrading && !err;
	if (err && upgrading) {
		upgrade_done((uint64_t)-err, 0);
		close(H.new_exe);
		H.new_exe = -1;
		err = spawn(H.exe);
	}
	if (err)
		give_up(err == -ENOMSG ? "the server died before the mount "
					 "was set up"
				       : "cannot start a new server");
}

/* A successor that was being tried as an upgrade died before serving:
 * the binary that served goes on. */
static void upgrade_failed(void)
{
	say("shmfs-holder: the upgraded server died before serving; the "
	    "previous binary serves again");
	upgrade_done(EPROTO, 0);
	close(H.new_exe);
	H.new_exe = -1;
	H.trying = false;
	server_gone();
	if (spawn(H.exe))
		give_up("cannot start a new server");
}

static void upgrader_message(void)
{
	struct hmsg m;
	ssize_t n;
	int fd;

	n = msg_recv(H.upgrader, &m, NULL, 0, &fd);
	if (n <= 0) { /* it went: an upgrade under way goes on */
		close(H.upgrader);
		H.upgrader = -1;
		return;
	}
	if (H.new_exe >= 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	if (m.type == H_QUERY) {
		struct hmsg r = { .type = H_INFO,
				  .a = SEG_TABLE_FORMAT,
				  .b = (uint64_t)H.server };

		msg_send(H.upgrader, &r, NULL, 0, -1);
	} else if (m.type == H_GO && fd >= 0 && H.ready) {
		H.new_exe = fd;
		H.stop_us = now_us();
		kill(H.server, SIGUSR2); /* stop at a request boundary */
		return;
	} else if (m.type == H_GO) {
		upgrade_done(EAGAIN, 0); /* the server is not serving yet */
	}
	if (fd >= 0)
		close(fd);
}

static void new_upgrader(void)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int fd = accept4(H.listen, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	/* only root replaces the server */
	if (H.upgrader >= 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
	    cred.uid != 0) {
		close(fd);
		return;
	}
	H.upgrader = fd;
}

static void listen_upgrades(void)
{
	struct sockaddr_un a;
	socklen_t len;

	H.listen = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (H.listen < 0)
		return;
	abstract_name(&a, &len, getpid());
	if (bind(H.listen, (struct sockaddr *)&a, len) < 0 ||
	    listen(H.listen, 4) < 0) {
		close(H.listen);
		H.listen = -1;
	}
}

static void holder_main(void)
{
	for (;;) {
		/*
		 * The server's messages (a memfd kept, one let go) are read a
		 * tick late, many at once: waking for each would cost every
		 * shmget and IPC_RMID a switch to this process.  The socket
		 * keeps them, descriptors included, even past the server's
		 * death.  Its word that it serves is awaited at once.
		 *
		 * Nor does it wait on the connection, whose end (unmounted)
		 * it learns at the next tick: the kernel wakes every poller
		 * of /dev/fuse at each request queued, whatever events it
		 * asked for, and that was a switch here per request.
		 */
		bool awaited = H.trying || !H.ready;
		struct pollfd p[3] = {
			{ .fd = H.sock, .events = awaited ? POLLIN : 0 },
			{ .fd = H.listen, .events = POLLIN },
			{ .fd = H.upgrader, .events = POLLIN },
		};
		bool hup;
		int n = poll(p, 3, TICK_MS);

		if (n < 0 && errno != EINTR)
			give_up("poll failed");
		/* the table the server publishes in our name */
		alive_holder_tick(SHMFS_TABLE_DIR);
		reap_children();
		if (connection_gone())
			_exit(0); /* unmounted */
		hup = !drain();
		if (p[1].revents & POLLIN)
			new_upgrader();
		if (p[2].revents)
			upgrader_message();
		if (!server_dead(hup))
			continue;
		if (H.trying)
			upgrade_failed();
		else
			succeed();
	}
}

int holder_start(dev_t dev, int devfd, char *const argv[], const char *exe)
{
	int sv[2];
	pid_t server = getpid(), pid;

	pid = fork_paired(sv);
	if (pid < 0)
		return pid;
	if (pid > 0) {
		close(sv[1]);
		holder_client_start(sv[0], pid, devfd);
		return 0;
	}
	close(sv[0]);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_NAME, "shmfs-holder");
	/* nothing of the server's but what it sends: they are copies */
	{
		unsigned a = (unsigned)(sv[1] < devfd ? sv[1] : devfd);
		unsigned b = (unsigned)(sv[1] < devfd ? devfd : sv[1]);

		if (a > 3)
			close_range(3, a - 1, 0);
		if (b > a + 1)
			close_range(a + 1, b - 1, 0);
		close_range(b + 1, ~0U, 0);
	}
	H.sock = sv[1];
	H.server = server;
	H.conn = dev;
	H.conn_dir = fusectl_dir(dev);
	H.dev = fcntl(devfd, F_DUPFD_CLOEXEC, 3);
	close(devfd);
	H.argv = (char **)argv;
	/* the very file the server runs, even once replaced on disk */
	H.exe = exe ? open(exe, O_RDONLY | O_CLOEXEC) : -1;
	listen_upgrades();
	holder_main();
	_exit(0);
}
