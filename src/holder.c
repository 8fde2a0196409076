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
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "holder.h"
#include "reaper.h"
#include "seg.h"
#include "takeover.h"

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

enum hmsg_type {
	H_KEEP = 1, /* server: keep this descriptor (a: role) */
	H_DROP, /* server: descriptor num is let go */
	H_INIT, /* server: FUSE_INIT's bytes follow */
	H_READY, /* successor: serving */
	H_KEPT, /* holder to successor: the numbers kept follow */
	H_QUERY, /* upgrader: may I (a: my table format)? */
	H_INFO, /* holder: a: the table's format, b: server pid */
	H_GO, /* upgrader: start the binary whose descriptor comes */
	H_DONE, /* holder: a: 0 or errno, b: new pid, c: pause in us */
};

enum keep_role { ROLE_FD, ROLE_DEV, ROLE_HEAP };

struct hmsg {
	uint32_t type;
	int32_t num;
	uint64_t a, b, c;
};

/* The largest message: INIT's bytes, or a piece of the numbers kept. */
#define KEPT_PIECE 16384
#define HMSG_MAX (sizeof(struct hmsg) + KEPT_PIECE * sizeof(int))

struct kept {
	int num; /* the server's number */
	int fd; /* ours */
	enum keep_role role;
};

/* ---- both sides: messages (takeover.c carries them) ---- */

/* One message: the header, then len bytes of data; a descriptor with it
 * when fd >= 0. */
static int msg_send(int sock, const struct hmsg *m, const void *data,
		    size_t len, int fd)
{
	char small[sizeof(*m) + 256], *buf = small;
	int err;

	if (len > HMSG_MAX - sizeof(*m))
		return -EMSGSIZE;
	if (len > sizeof(small) - sizeof(*m) && !(buf = malloc(HMSG_MAX)))
		return -ENOMEM;
	memcpy(buf, m, sizeof(*m));
	if (len)
		memcpy(buf + sizeof(*m), data, len);
	err = takeover_send(sock, fd, buf, sizeof(*m) + len);
	if (buf != small)
		free(buf);
	return err;
}

/* One message: its length (0 at the peer's end, -errno), its data past
 * the header in data (up to cap bytes), a descriptor (close-on-exec) in
 * *fd or -1. */
static ssize_t msg_recv(int sock, struct hmsg *m, void *data, size_t cap,
			int *fd)
{
	char *buf = malloc(HMSG_MAX);
	ssize_t n;

	*fd = -1;
	if (!buf)
		return -ENOMEM;
	n = takeover_recv(sock, fd, buf, HMSG_MAX);
	if (n > 0 && ((size_t)n < sizeof(*m) || (size_t)n - sizeof(*m) > cap)) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		n = -EPROTO;
	}
	if (n > 0) {
		memcpy(m, buf, sizeof(*m));
		if ((size_t)n > sizeof(*m))
			memcpy(data, buf + sizeof(*m), (size_t)n - sizeof(*m));
	}
	free(buf);
	return n;
}

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

/* A server's end of its socket to the holder: room for the messages of
 * many requests between two of the holder's ticks (holder_main). */
static void big_sndbuf(int sock)
{
	int buf = 4 << 20;

	if (setsockopt(sock, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)) < 0)
		setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
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

static void abstract_name(struct sockaddr_un *a, socklen_t *len, pid_t pid)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
			   (size_t)snprintf(a->sun_path + 1,
					    sizeof(a->sun_path) - 1,
					    "shmfs-holder.%d", (int)pid));
}

/* ---- the server's side ---- */

static int hsock = -1;
static pid_t hpid;

static void keep_role(int fd, enum keep_role role)
{
	struct hmsg m = { .type = H_KEEP, .num = fd, .a = role };

	if (hsock >= 0 && fd >= 0)
		msg_send(hsock, &m, NULL, 0, fd);
}

void holder_keep(int fd)
{
	keep_role(fd, ROLE_FD);
}

void holder_drop(int fd)
{
	struct hmsg m = { .type = H_DROP, .num = fd };

	if (hsock >= 0 && fd >= 0)
		msg_send(hsock, &m, NULL, 0, -1);
}

void holder_note_init(const void *buf, size_t len)
{
	static bool sent;
	struct hmsg m = { .type = H_INIT };

	if (hsock < 0 || sent || len > 65536)
		return;
	sent = true;
	msg_send(hsock, &m, buf, len, -1);
}

void holder_ready(void)
{
	struct hmsg m = { .type = H_READY, .num = (int32_t)getpid() };

	if (hsock >= 0)
		msg_send(hsock, &m, NULL, 0, -1);
}

pid_t holder_pid(void)
{
	return hpid;
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
		 */
		bool awaited = H.trying || !H.ready;
		struct pollfd p[4] = {
			{ .fd = H.sock, .events = awaited ? POLLIN : 0 },
			{ .fd = H.dev, .events = 0 },
			{ .fd = H.listen, .events = POLLIN },
			{ .fd = H.upgrader, .events = POLLIN },
		};
		bool hup;
		int n = poll(p, 4, TICK_MS);

		if (n < 0 && errno != EINTR)
			give_up("poll failed");
		reap_children();
		if (p[1].revents & (POLLERR | POLLHUP))
			_exit(0); /* unmounted */
		hup = !drain();
		if (p[2].revents & POLLIN)
			new_upgrader();
		if (p[3].revents)
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
	int sv[2], i, n;
	pid_t server = getpid(), pid;

	pid = fork_paired(sv);
	if (pid < 0)
		return pid;
	if (pid > 0) {
		close(sv[1]);
		big_sndbuf(sv[0]);
		hsock = sv[0];
		hpid = pid;
		/* what the table holds already, and the connection */
		keep_role(devfd, ROLE_DEV);
		keep_role(seg_heap_fd(), ROLE_HEAP);
		{
			int fds[4096];

			n = seg_fds(fds, 4096);
			for (i = 0; i < n && i < 4096; i++)
				holder_keep(fds[i]);
		}
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

/* ---- a successor's side ---- */

int holder_adopt(const char *arg, struct holder_handoff *h)
{
	static char buf[HMSG_MAX];
	int dev, heap, sock, holder, got = 0;
	struct hmsg m;
	ssize_t n;
	int fd;

	memset(h, 0, sizeof(*h));
	if (sscanf(arg, "%d,%d,%d,%d", &dev, &heap, &sock, &holder) != 4 ||
	    dev < 0 || heap < 0 || sock < 0 || holder <= 0)
		return -EINVAL;
	/* what we were handed must not reach a program we start */
	fcntl(dev, F_SETFD, FD_CLOEXEC);
	fcntl(heap, F_SETFD, FD_CLOEXEC);
	fcntl(sock, F_SETFD, FD_CLOEXEC);
	h->dev = dev;
	h->heap = heap;
	h->sock = sock;
	h->holder = holder;
	while (got != 3) {
		n = msg_recv(sock, &m, buf, sizeof(buf), &fd);
		if (fd >= 0)
			close(fd);
		if (n <= 0)
			return n ? (int)n : -ECONNRESET;
		n -= (ssize_t)sizeof(m);
		if (m.type == H_INIT && !(got & 1)) {
			h->init = malloc((size_t)n);
			if (!h->init)
				return -ENOMEM;
			memcpy(h->init, buf, (size_t)n);
			h->init_len = (size_t)n;
			got |= 1;
		} else if (m.type == H_KEPT && !(got & 2)) {
			int more = (int)((size_t)n / sizeof(int));
			int *k = realloc(h->kept,
					 ((size_t)h->nkept + (size_t)more + 1) *
						 sizeof(int));

			if (!k)
				return -ENOMEM;
			h->kept = k;
			memcpy(h->kept + h->nkept, buf, (size_t)n);
			h->nkept += more;
			if (m.a)
				got |= 2;
		}
	}
	for (n = 0; n < h->nkept; n++)
		fcntl(h->kept[n], F_SETFD, FD_CLOEXEC);
	big_sndbuf(sock);
	hsock = sock;
	hpid = holder;
	return 0;
}

/* ---- shmfs --upgrade ---- */

int holder_upgrade(const char *mountpoint)
{
	struct sockaddr_un a;
	struct hmsg m = { .type = H_QUERY, .a = SEG_TABLE_FORMAT };
	char val[32];
	socklen_t len;
	ssize_t n;
	pid_t pid;
	int sock, exe, fd;

	n = getxattr(mountpoint, "user.shmfs.holder_pid", val, sizeof(val) - 1);
	if (n <= 0) {
		fprintf(stderr,
			"shmfs: cannot upgrade %s: %s (is it a shmfs mount "
			"with a holder?)\n",
			mountpoint, n < 0 ? strerror(errno) : "no holder");
		return 1;
	}
	val[n] = '\0';
	pid = (pid_t)atoi(val);
	if (pid <= 0) {
		fprintf(stderr,
			"shmfs: cannot upgrade %s: it has no holder "
			"(mounted with -o no_failover?)\n",
			mountpoint);
		return 1;
	}
	sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	abstract_name(&a, &len, pid);
	if (sock < 0 || connect(sock, (struct sockaddr *)&a, len) < 0) {
		fprintf(stderr, "shmfs: cannot upgrade %s: holder %d: %s\n",
			mountpoint, (int)pid, strerror(errno));
		return 1;
	}
	if (msg_send(sock, &m, NULL, 0, -1) ||
	    msg_recv(sock, &m, NULL, 0, &fd) <= 0 || m.type != H_INFO) {
		fprintf(stderr,
			"shmfs: cannot upgrade %s: holder %d does not answer "
			"(only root may upgrade)\n",
			mountpoint, (int)pid);
		return 1;
	}
	if (m.a != SEG_TABLE_FORMAT) {
		fprintf(stderr,
			"shmfs: cannot upgrade %s: its table is of format "
			"%#llx, this binary's is %#llx; the running server "
			"(pid %d) goes on\n",
			mountpoint, (unsigned long long)m.a,
			(unsigned long long)SEG_TABLE_FORMAT, (int)m.b);
		return 1;
	}
	exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	m = (struct hmsg){ .type = H_GO };
	if (exe < 0 || msg_send(sock, &m, NULL, 0, exe)) {
		fprintf(stderr, "shmfs: cannot upgrade %s: %s\n", mountpoint,
			strerror(errno));
		return 1;
	}
	close(exe);
	n = msg_recv(sock, &m, NULL, 0, &fd);
	if (n <= 0 || m.type != H_DONE) {
		fprintf(stderr,
			"shmfs: upgrade of %s: no word from holder %d\n",
			mountpoint, (int)pid);
		return 1;
	}
	if (m.a) {
		fprintf(stderr,
			"shmfs: cannot upgrade %s: %s; the previous binary "
			"serves\n",
			mountpoint,
			m.a == EAGAIN ? "the server is not serving yet"
				      : "the new server did not start");
		return 1;
	}
	printf("shmfs: %s is served by pid %d (paused %.1f ms)\n", mountpoint,
	       (int)m.b, (double)m.c / 1000.0);
	return 0;
}
