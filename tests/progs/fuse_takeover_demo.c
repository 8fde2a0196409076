/*
 * fuse_takeover_demo: a new server process takes over a live FUSE mount
 * from a killed one (src/takeover.c), on a tiny filesystem.
 *
 *   fuse_takeover_demo [--manual] [--clone] [--hold-clones] MOUNTPOINT
 *
 * The holder (this process) mounts, keeps the /dev/fuse descriptor,
 * serves nothing and starts servers: this program again with --serve,
 * given the descriptor over a socket.  The first server answers INIT and
 * sends the holder INIT's bytes and its reply.  When a server dies the
 * holder starts the next generation (at once, or with --manual on
 * SIGUSR1), which replays INIT, asks for a resend and serves.  The
 * holder exits when the mount goes (fusermount3 -u).
 *
 *   /file   "takeover demo file\n", served by every generation
 *   /hold   direct_io; generation 1 reads every READ and answers none,
 *           later generations answer after 200 ms
 *   /pt     passthrough to a memfd that generation 1 registers (4096 bytes)
 *   /stuck  generation 1 answers no LOOKUP of it and, from another
 *           thread, invalidates it, which waits for the lookup's lock;
 *           later generations answer ENOENT
 *
 * --clone        servers read through cloned descriptors (libfuse clone_fd)
 * --hold-clones  and hand each cloned descriptor to the holder first
 *
 * Every process writes one line per event on stdout ("holder ..." or
 * "gen=N ..."); tests/test_takeover_mechanics.py reads them.
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "takeover.h"

#define MAX_GEN 8
#define MAX_CLONES 64

/* Protocol bits newer than this system's <linux/fuse.h> (7.38). */
#define X_INIT_EXT (1u << 30)
#define X_PASSTHROUGH_FLAGS2 (1u << (37 - 32))
#define X_FOPEN_PASSTHROUGH (1u << 7)

struct x_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define X_DEV_IOC_BACKING_OPEN _IOW(FUSE_DEV_IOC_MAGIC, 1, struct x_backing_map)

enum { INO_ROOT = 1, INO_FILE, INO_HOLD, INO_PT };

static const char file_text[] = "takeover demo file\n";
static const char pt_text[] = "passthrough bytes of the backing memfd\n";
#define PT_SIZE 4096

/* ---- messages between holder and servers ---- */

enum { MSG_START = 1, MSG_INIT, MSG_BACKING, MSG_CLONE };

struct msg {
	uint32_t kind;
	uint32_t gen;
	uint32_t flags; /* MSG_START: F_* */
	int32_t backing_id;
	uint32_t init_len, reply_len;
	unsigned char data[8192]; /* init, then reply */
};
#define MSG_HEAD offsetof(struct msg, data)
enum { F_CLONE = 1, F_HOLD_CLONES = 2 };

static char who[32] = "holder";

static void say(const char *fmt, ...)
{
	char line[512];
	int n, m, saved = errno;
	va_list ap;

	n = snprintf(line, sizeof(line), "%s pid=%d ", who, (int)getpid());
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n += m < (int)sizeof(line) - n - 1 ? m : (int)sizeof(line) - n - 2;
	line[n++] = '\n';
	/* one write: lines of all processes land whole in the log */
	if (write(STDOUT_FILENO, line, (size_t)n) < 0) {
		/* nowhere to say it */
	}
	errno = saved;
}

static int send_msg(int sock, int fd, const struct msg *m)
{
	return takeover_send(sock, fd, m,
			     MSG_HEAD + m->init_len + m->reply_len);
}

/* ---- the server ---- */

static struct {
	unsigned gen;
	unsigned flags;
	int sock;
	int devfd;
	struct fuse_session *se;
	pthread_mutex_t lock;
	int backing_id;
	bool init_sent;
	int clones[MAX_CLONES];
	int nclones;
} S = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.sock = -1,
	.devfd = -1,
};

static __thread int open_backing; /* set around an open reply */
/* libfuse 3.14 has no fuse_req_unique: each worker thread processes the
 * request it has just read. */
static __thread uint64_t read_unique;

static const char *op_name(uint32_t op)
{
	static const char *const names[] = {
		[FUSE_LOOKUP] = "LOOKUP",	[FUSE_FORGET] = "FORGET",
		[FUSE_GETATTR] = "GETATTR",	[FUSE_OPEN] = "OPEN",
		[FUSE_READ] = "READ",		[FUSE_STATFS] = "STATFS",
		[FUSE_RELEASE] = "RELEASE",	[FUSE_FLUSH] = "FLUSH",
		[FUSE_INIT] = "INIT",		[FUSE_OPENDIR] = "OPENDIR",
		[FUSE_INTERRUPT] = "INTERRUPT",
	};

	return op < sizeof(names) / sizeof(names[0]) && names[op] ? names[op]
								  : "OTHER";
}

static void log_request(int fd, const void *buf, size_t len)
{
	struct fuse_in_header h;
	char extra[64] = "";

	if (len < sizeof(h))
		return;
	memcpy(&h, buf, sizeof(h));
	read_unique = h.unique;
	if (h.opcode == FUSE_INTERRUPT &&
	    len >= sizeof(h) + sizeof(struct fuse_interrupt_in)) {
		struct fuse_interrupt_in in;

		memcpy(&in, (const char *)buf + sizeof(h), sizeof(in));
		snprintf(extra, sizeof(extra), " target=0x%llx",
			 (unsigned long long)in.unique);
	}
	say("read op=%s opcode=%u unique=0x%llx resend=%d nodeid=%llu via=%s%s",
	    op_name(h.opcode), h.opcode, (unsigned long long)h.unique,
	    takeover_is_resend(h.unique), (unsigned long long)h.nodeid,
	    fd == S.devfd ? "main" : "clone", extra);
}

/* A cloned descriptor libfuse is about to read from: the holder keeps a
 * copy, so that what is read through it outlives this process. */
static void offer_clone(int fd)
{
	struct msg m = { .kind = MSG_CLONE, .gen = S.gen };
	bool known = false;

	pthread_mutex_lock(&S.lock);
	for (int i = 0; i < S.nclones; i++)
		known |= S.clones[i] == fd;
	if (!known && S.nclones < MAX_CLONES) {
		S.clones[S.nclones++] = fd;
		if (send_msg(S.sock, fd, &m) == 0)
			say("clone fd=%d given to the holder", fd);
	}
	pthread_mutex_unlock(&S.lock);
}

static ssize_t srv_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n;

	(void)userdata;
	if ((S.flags & F_HOLD_CLONES) && fd != S.devfd)
		offer_clone(fd);
	n = read(fd, buf, len);
	if (n > 0) {
		takeover_note_request(buf, (size_t)n);
		log_request(fd, buf, (size_t)n);
	}
	return n;
}

static bool offered_passthrough(void)
{
	struct fuse_init_in in;
	size_t len;
	const unsigned char *init = takeover_init_bytes(&len);

	if (!init || len < sizeof(struct fuse_in_header) + sizeof(in))
		return false;
	memcpy(&in, init + sizeof(struct fuse_in_header), sizeof(in));
	return (in.flags & X_INIT_EXT) && (in.flags2 & X_PASSTHROUGH_FLAGS2);
}

static uint64_t init_unique(void)
{
	struct fuse_in_header h;
	size_t len;
	const void *init = takeover_init_bytes(&len);

	if (!init)
		return 0;
	memcpy(&h, init, sizeof(h));
	return h.unique;
}

/* The passthrough bits libfuse 3.14 cannot say: in INIT's reply and in
 * an open reply. */
static void patch_reply(struct iovec *iov, int count)
{
	struct fuse_out_header oh;

	if (count != 2 || iov[0].iov_len != sizeof(oh))
		return;
	memcpy(&oh, iov[0].iov_base, sizeof(oh));
	if (oh.error)
		return;
	if (open_backing && iov[1].iov_len == sizeof(struct fuse_open_out)) {
		struct fuse_open_out *o = iov[1].iov_base;

		o->open_flags |= X_FOPEN_PASSTHROUGH;
		o->padding = (uint32_t)open_backing; /* backing_id since 7.40 */
	} else if (iov[1].iov_len == sizeof(struct fuse_init_out) &&
		   oh.unique == init_unique() && offered_passthrough()) {
		struct fuse_init_out *o = iov[1].iov_base;

		o->flags |= X_INIT_EXT;
		o->flags2 |= X_PASSTHROUGH_FLAGS2;
		o->unused[0] = 1; /* max_stack_depth since 7.40 */
	}
}

static void send_init_to_holder(void)
{
	struct msg m = { .kind = MSG_INIT, .gen = S.gen };
	const void *init, *reply;
	size_t ilen, rlen;

	init = takeover_init_bytes(&ilen);
	reply = takeover_init_reply(&rlen);
	if (!init || !reply || ilen + rlen > sizeof(m.data))
		return;
	memcpy(m.data, init, ilen);
	memcpy(m.data + ilen, reply, rlen);
	m.init_len = (uint32_t)ilen;
	m.reply_len = (uint32_t)rlen;
	if (send_msg(S.sock, -1, &m) == 0)
		say("init kept len=%zu reply_len=%zu passthrough=%d", ilen,
		    rlen, offered_passthrough());
	S.init_sent = true;
}

static ssize_t srv_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct fuse_out_header oh;
	ssize_t ret;

	(void)userdata;
	patch_reply(iov, count);
	if (takeover_swallow(iov, count, &ret)) {
		say("init reply swallowed len=%zd", ret);
		return ret;
	}
	ret = writev(fd, iov, count);
	if (ret < 0 && iov[0].iov_len >= sizeof(oh)) {
		int err = errno;

		memcpy(&oh, iov[0].iov_base, sizeof(oh));
		say("write failed unique=0x%llx error=%d errno=%d",
		    (unsigned long long)oh.unique, oh.error, err);
		errno = err;
	}
	if (ret > 0 && !S.init_sent) {
		size_t rlen;

		if (takeover_init_reply(&rlen))
			send_init_to_holder();
	}
	return ret;
}

static void fill_attr(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_nlink = 1;
	switch (ino) {
	case INO_ROOT:
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		break;
	case INO_FILE:
		st->st_mode = S_IFREG | 0444;
		st->st_size = sizeof(file_text) - 1;
		break;
	case INO_HOLD:
		st->st_mode = S_IFREG | 0444;
		st->st_size = 4096;
		break;
	case INO_PT:
		st->st_mode = S_IFREG | 0666;
		st->st_size = PT_SIZE;
		break;
	}
}

static void *invalidate_stuck(void *arg)
{
	int ret;

	(void)arg;
	say("inval stuck start");
	ret = fuse_lowlevel_notify_inval_entry(S.se, INO_ROOT, "stuck", 5);
	say("inval stuck done ret=%d", ret);
	return NULL;
}

static void srv_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e = { 0 };

	if (parent == INO_ROOT && !strcmp(name, "stuck")) {
		pthread_t t;

		if (S.gen > 1) {
			say("answered lookup stuck ENOENT");
			fuse_reply_err(req, ENOENT);
			return;
		}
		/* Left unanswered: the client keeps the directory's lock
		 * that the invalidation waits for. */
		say("held lookup stuck");
		if (pthread_create(&t, NULL, invalidate_stuck, NULL) == 0)
			pthread_detach(t);
		return;
	}
	if (parent != INO_ROOT) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (!strcmp(name, "file"))
		e.ino = INO_FILE;
	else if (!strcmp(name, "hold"))
		e.ino = INO_HOLD;
	else if (!strcmp(name, "pt"))
		e.ino = INO_PT;
	else {
		fuse_reply_err(req, ENOENT);
		return;
	}
	e.generation = 1;
	fill_attr(e.ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void srv_getattr(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	if (ino < INO_ROOT || ino > INO_PT) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(ino, &st);
	fuse_reply_attr(req, &st, 0);
}

/* Generation 1 registers the backing file; the id is the connection's,
 * so later generations reuse it without any descriptor of the file. */
static int backing_id(void)
{
	struct x_backing_map map = { 0 };
	struct msg m = { .kind = MSG_BACKING };
	char page[PT_SIZE] = { 0 };
	int fd, id;

	pthread_mutex_lock(&S.lock);
	id = S.backing_id;
	if (id > 0)
		goto out;
	fd = memfd_create("takeover-pt", MFD_CLOEXEC);
	if (fd < 0)
		goto out;
	memcpy(page, pt_text, sizeof(pt_text) - 1);
	if (pwrite(fd, page, sizeof(page), 0) == (ssize_t)sizeof(page)) {
		map.fd = fd;
		id = ioctl(S.devfd, X_DEV_IOC_BACKING_OPEN, &map);
		if (id < 0)
			say("backing open failed errno=%d", errno);
	}
	close(fd); /* the kernel holds the file from here on */
	if (id > 0) {
		S.backing_id = id;
		m.gen = S.gen;
		m.backing_id = id;
		send_msg(S.sock, -1, &m);
		say("backing registered id=%d", id);
	}
out:
	pthread_mutex_unlock(&S.lock);
	return id;
}

static void srv_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int id;

	switch (ino) {
	case INO_FILE:
		fuse_reply_open(req, fi);
		return;
	case INO_HOLD:
		fi->direct_io = 1;
		fuse_reply_open(req, fi);
		return;
	case INO_PT:
		id = backing_id();
		if (id <= 0) {
			fuse_reply_err(req, EIO);
			return;
		}
		say("open pt backing_id=%d", id);
		open_backing = id;
		fuse_reply_open(req, fi);
		open_backing = 0;
		return;
	}
	fuse_reply_err(req, EISDIR);
}

static void srv_read_op(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	char text[64];
	const char *data = file_text;
	size_t len = sizeof(file_text) - 1;
	uint64_t unique = read_unique;

	(void)fi;
	if (ino == INO_HOLD) {
		if (S.gen == 1) {
			say("held read unique=0x%llx",
			    (unsigned long long)unique);
			return; /* never answered */
		}
		/* Time for a worker to read the INTERRUPT the kernel queues
		 * when it hands out an interrupted request again: an answer
		 * first would withdraw it. */
		nanosleep(&(struct timespec){ 0, 200 * 1000 * 1000 }, NULL);
		len = (size_t)snprintf(text, sizeof(text),
				       "hold answered by generation %u\n",
				       S.gen);
		data = text;
	} else if (ino != INO_FILE) {
		say("read of ino %lu reached the server", (unsigned long)ino);
		fuse_reply_err(req, EIO);
		return;
	}
	if (off < 0 || (size_t)off >= len) {
		len = 0;
	} else {
		data += off;
		len -= (size_t)off;
	}
	if (len > size)
		len = size;
	if (ino == INO_HOLD)
		say("answered read hold unique=0x%llx resend=%d",
		    (unsigned long long)unique, takeover_is_resend(unique));
	fuse_reply_buf(req, data, len);
}

static void srv_release(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops srv_ops = {
	.lookup = srv_lookup,
	.getattr = srv_getattr,
	.open = srv_open,
	.read = srv_read_op,
	.release = srv_release,
};

static bool same_reply(const struct msg *m)
{
	size_t len;
	const void *mine = takeover_init_reply(&len);

	return mine && len == m->reply_len &&
	       !memcmp(mine, m->data + m->init_len, len);
}

static int serve(int sock)
{
	static const struct fuse_custom_io io = {
		.read = srv_read,
		.writev = srv_writev,
	};
	char *argv0[] = { "fuse_takeover_demo", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(1, argv0);
	struct fuse_loop_config *loop;
	struct msg *m = calloc(1, sizeof(*m));
	ssize_t n;
	int ret;

	if (!m)
		return 1;
	S.sock = sock;
	n = takeover_recv(sock, &S.devfd, m, sizeof(*m));
	if (n < (ssize_t)MSG_HEAD || m->kind != MSG_START || S.devfd < 0 ||
	    (size_t)n != MSG_HEAD + m->init_len + m->reply_len) {
		fprintf(stderr, "fuse_takeover_demo: no start message\n");
		return 1;
	}
	S.gen = m->gen;
	S.flags = m->flags;
	S.backing_id = m->backing_id;
	snprintf(who, sizeof(who), "gen=%u", S.gen);
	S.se = fuse_session_new(&args, &srv_ops, sizeof(srv_ops), NULL);
	fuse_opt_free_args(&args);
	if (!S.se)
		return 1;
	if (fuse_session_custom_io(S.se, &io, S.devfd) != 0)
		return 1;
	say("server up devfd=%d clone=%d hold_clones=%d backing_id=%d", S.devfd,
	    !!(S.flags & F_CLONE), !!(S.flags & F_HOLD_CLONES), S.backing_id);
	if (m->init_len) {
		S.init_sent = true; /* the holder has it */
		ret = takeover_replay_init(S.se, m->data, m->init_len);
		say("init replayed ret=%d same_reply=%d", ret, same_reply(m));
		if (ret)
			return 1;
		ret = takeover_notify_resend(S.devfd);
		say("resend notified ret=%d", ret);
		if (ret)
			return 1;
	}
	free(m);
	loop = fuse_loop_cfg_create();
	if (!loop)
		return 1;
	fuse_loop_cfg_set_clone_fd(loop, (S.flags & F_CLONE) ? 1 : 0);
	ret = fuse_session_loop_mt(S.se, loop);
	fuse_loop_cfg_destroy(loop);
	say("loop ended ret=%d", ret);
	fuse_session_destroy(S.se);
	return ret ? 1 : 0;
}

/* ---- the holder ---- */

static struct {
	int devfd;
	unsigned flags;
	unsigned gen;
	pid_t pids[MAX_GEN + 1]; /* by generation */
	pid_t server; /* the running one, 0 when it died */
	int sock;
	int backing_id;
	unsigned char init[4096], reply[4096];
	uint32_t init_len, reply_len;
	int clones[MAX_CLONES];
	int nclones;
} H = {
	.devfd = -1,
	.sock = -1,
};

static volatile sig_atomic_t go_on, stop;

static void on_usr1(int sig)
{
	(void)sig;
	go_on = 1;
}

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static int start_server(bool manual)
{
	struct msg *m;
	int sv[2];
	pid_t pid;

	if (H.gen >= MAX_GEN)
		return -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		char fdstr[16];

		snprintf(fdstr, sizeof(fdstr), "%d", sv[1]);
		if (fcntl(sv[1], F_SETFD, 0) == 0)
			execl("/proc/self/exe", "fuse_takeover_demo", "--serve",
			      fdstr, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	H.gen++;
	H.pids[H.gen] = pid;
	H.server = pid;
	H.sock = sv[0];
	m = calloc(1, sizeof(*m));
	if (!m)
		return -1;
	m->kind = MSG_START;
	m->gen = H.gen;
	m->flags = H.flags;
	m->backing_id = H.backing_id;
	m->init_len = H.init_len;
	m->reply_len = H.reply_len;
	memcpy(m->data, H.init, H.init_len);
	memcpy(m->data + H.init_len, H.reply, H.reply_len);
	say("started gen=%u pid=%d manual=%d", H.gen, (int)pid, manual);
	if (send_msg(H.sock, H.devfd, m) != 0)
		say("start message failed");
	free(m);
	return 0;
}

/* One message from the server: false when there is none to read. */
static bool holder_message(void)
{
	struct msg *m = calloc(1, sizeof(*m));
	ssize_t n;
	int fd = -1;

	if (!m)
		return false;
	n = takeover_recv(H.sock, &fd, m, sizeof(*m));
	if (n == -EAGAIN) {
		free(m);
		return false;
	}
	if (n <= 0) { /* the server's end is closed: it exited */
		close(H.sock);
		H.sock = -1;
		free(m);
		return false;
	}
	if (n < (ssize_t)MSG_HEAD)
		goto out;
	switch (m->kind) {
	case MSG_INIT:
		if (m->init_len > sizeof(H.init) ||
		    m->reply_len > sizeof(H.reply) ||
		    (size_t)n != MSG_HEAD + m->init_len + m->reply_len)
			break;
		memcpy(H.init, m->data, m->init_len);
		memcpy(H.reply, m->data + m->init_len, m->reply_len);
		H.init_len = m->init_len;
		H.reply_len = m->reply_len;
		say("kept init of gen=%u len=%u", m->gen, m->init_len);
		break;
	case MSG_BACKING:
		H.backing_id = m->backing_id;
		say("kept backing id=%d of gen=%u", m->backing_id, m->gen);
		break;
	case MSG_CLONE:
		if (fd >= 0 && H.nclones < MAX_CLONES) {
			H.clones[H.nclones++] = fd;
			say("kept clone fd of gen=%u", m->gen);
			fd = -1;
		}
		break;
	}
out:
	if (fd >= 0)
		close(fd);
	free(m);
	return true;
}

/* Before the socket goes: a descriptor still in flight in it would close
 * with it, and so end the requests read through it. */
static void holder_drain(void)
{
	while (H.sock >= 0 && holder_message()) {
	}
	if (H.sock >= 0) {
		close(H.sock);
		H.sock = -1;
	}
}

/* Dead, or dying with a thread the kill cannot reach: the leader has
 * exited.  waitpid and pidfds only report the end of the last thread. */
static bool leader_gone(pid_t pid)
{
	char path[64], buf[512];
	ssize_t n;
	char *p;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return true;
	buf[n] = 0;
	p = strrchr(buf, ')');
	return !p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X';
}

static unsigned gen_of(pid_t pid)
{
	for (unsigned g = 1; g <= H.gen; g++)
		if (H.pids[g] == pid)
			return g;
	return 0;
}

static void reap(int options)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, options)) > 0) {
		if (WIFSIGNALED(status))
			say("reaped gen=%u pid=%d signal=%d", gen_of(pid),
			    (int)pid, WTERMSIG(status));
		else
			say("reaped gen=%u pid=%d exit=%d", gen_of(pid),
			    (int)pid, WEXITSTATUS(status));
		if (pid == H.server)
			H.server = 0;
	}
}

/* The mount is gone: what a read of the held descriptor says now. */
static void say_device_gone(void)
{
	size_t len = 2u << 20; /* above any max_write's minimum */
	char *buf = malloc(len);
	ssize_t n;

	if (!buf)
		return;
	n = read(H.devfd, buf, len);
	say("device POLLERR; read ret=%zd errno=%d (%s)", n, errno,
	    strerrorname_np(errno) ? strerrorname_np(errno) : "?");
	free(buf);
}

static int hold(const char *mnt, bool manual)
{
	static const struct fuse_lowlevel_ops no_ops = { 0 };
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct sigaction sa = { .sa_handler = on_usr1 };
	struct fuse_session *se;
	bool dead = false;
	int ret = 0;

	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (fuse_opt_add_arg(&args, "fuse_takeover_demo") ||
	    fuse_opt_add_arg(&args, "-ofsname=takeover,subtype=takeover") ||
	    fuse_opt_add_arg(&args, "-oallow_other"))
		return 1;
	se = fuse_session_new(&args, &no_ops, sizeof(no_ops), NULL);
	fuse_opt_free_args(&args);
	if (!se)
		return 1;
	if (fuse_session_mount(se, mnt) != 0) {
		fuse_session_destroy(se);
		return 1;
	}
	H.devfd = fuse_session_fd(se);
	fcntl(H.devfd, F_SETFD, FD_CLOEXEC); /* servers get it by message */
	say("mounted devfd=%d", H.devfd);
	if (start_server(false) != 0)
		ret = 1;
	while (!ret && !stop) {
		struct pollfd p[2] = {
			{ .fd = H.devfd, .events = 0 },
			{ .fd = H.sock, .events = POLLIN },
		};

		if (poll(p, H.sock >= 0 ? 2 : 1, 20) < 0 && errno != EINTR)
			break;
		if (p[0].revents & POLLERR) {
			say_device_gone();
			break;
		}
		if (H.sock >= 0 && (p[1].revents & (POLLIN | POLLHUP)))
			holder_message();
		reap(WNOHANG);
		if (!dead && (!H.server || leader_gone(H.server))) {
			say("server gen=%u pid=%d died", H.gen,
			    (int)H.pids[H.gen]);
			dead = true;
			go_on = 0;
			holder_drain();
		}
		if (dead && (!manual || go_on)) {
			dead = false;
			if (start_server(manual) != 0) {
				say("no more generations");
				ret = 1;
			}
		}
	}
	if (stop)
		say("stopped by a signal");
	/* After an unmount the server's loop ends by itself; give it time. */
	for (int i = 0; i < 500 && H.server && !stop; i++) {
		struct timespec ts = { 0, 20 * 1000 * 1000 };

		reap(WNOHANG);
		if (H.server)
			nanosleep(&ts, NULL);
	}
	if (H.server) {
		say("killing gen=%u pid=%d", H.gen, (int)H.server);
		kill(H.server, SIGKILL);
	}
	for (int i = 0; i < H.nclones; i++)
		close(H.clones[i]);
	fuse_session_unmount(se); /* nothing to do once unmounted */
	fuse_session_destroy(se);
	reap(WNOHANG);
	say("exit ret=%d", ret);
	return ret;
}

static int usage(void)
{
	fprintf(stderr, "usage: fuse_takeover_demo [--manual] [--clone] "
			"[--hold-clones] MOUNTPOINT\n");
	return 2;
}

int main(int argc, char *argv[])
{
	bool manual = false;
	int i;

	if (argc == 3 && !strcmp(argv[1], "--serve"))
		return serve(atoi(argv[2]));
	for (i = 1; i < argc - 1; i++) {
		if (!strcmp(argv[i], "--manual"))
			manual = true;
		else if (!strcmp(argv[i], "--clone"))
			H.flags |= F_CLONE;
		else if (!strcmp(argv[i], "--hold-clones"))
			H.flags |= F_CLONE | F_HOLD_CLONES;
		else
			return usage();
	}
	if (i != argc - 1)
		return usage();
	return hold(argv[i], manual);
}
