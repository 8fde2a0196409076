/*
 * shmfs: parse options, build the table, mount, serve, tear down.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <signal.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/xattr.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "holder.h"
#include "killpoint.h"
#include "ops.h"
#include "passthrough.h"
#include "uring.h"
#include "pheap.h"
#include "pubtab.h"
#include "reaper.h"
#include "takeover.h"
#include "seg.h"
#include "sysinfo.h"

#ifndef SHMFS_TABLE_DIR
#endif

struct options {
	char *shmmax;
	char *shmmin;
	char *shmmni;
	char *shmseg;
	char *shmall;
	int verbose;
	int no_passthrough;
	int no_failover;
	int uring;
	/* Non-option arguments: mount.fuse3 passes "SOURCE MOUNTPOINT". */
	char *nonopt[2];
	int n_nonopt;
};

#define SHMFS_OPT(t, p)                           \
	{                                         \
		t, offsetof(struct options, p), 1 \
	}

/* clang-format off */
static const struct fuse_opt option_spec[] = {
	SHMFS_OPT("shmmax=%s", shmmax),
	SHMFS_OPT("shmmin=%s", shmmin),
	SHMFS_OPT("shmmni=%s", shmmni),
	SHMFS_OPT("shmseg=%s", shmseg),
	SHMFS_OPT("shmall=%s", shmall),
	SHMFS_OPT("verbose", verbose),
	SHMFS_OPT("no_passthrough", no_passthrough),
	SHMFS_OPT("no_failover", no_failover),
	SHMFS_OPT("uring", uring),
	FUSE_OPT_END
};
/* clang-format on */

/* Keep up to two non-option arguments; the mount point is the last. */
static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct options *o = data;

	(void)outargs;
	if (key != FUSE_OPT_KEY_NONOPT)
		return 1;
	if (o->n_nonopt == 2) {
		fprintf(stderr, "shmfs: unexpected argument '%s'\n", arg);
		return -1;
	}
	o->nonopt[o->n_nonopt] = strdup(arg);
	if (!o->nonopt[o->n_nonopt])
		return -1;
	o->n_nonopt++;
	return 0;
}

static void usage(const char *prog)
{
	printf("usage: %s [options] [SOURCE] MOUNTPOINT\n\n"
	       "System V shared memory as a file system.\n\n"
	       "shmfs options:\n"
	       "    -o shmmax=BYTES        largest segment (default: host's "
	       "kernel.shmmax, live)\n"
	       "    -o shmmin=BYTES        smallest segment (default: 1)\n"
	       "    -o shmmni=N            most segments, 1..%d (default: "
	       "host's kernel.shmmni, live)\n"
	       "    -o shmseg=N            most attaches per process "
	       "(default: shmmni)\n"
	       "    -o shmall=PAGES        most pages in all segments "
	       "(default: host's kernel.shmall, live)\n"
	       "    -o verbose             log each error a client causes\n"
	       "    -o no_passthrough      keep every segment in the daemon's "
	       "arena,\n"
	       "                           served through the page cache, "
	       "even where\n"
	       "                           the kernel offers FUSE passthrough\n"
	       "    -o no_failover         no holder: the daemon's death ends "
	       "the mount\n"
	       "                           (by default a successor adopts "
	       "the table)\n"
	       "    -o uring               requests through FUSE over io_uring "
	       "(turns on\n"
	       "                           the fuse module's enable_uring, "
	       "for the whole\n"
	       "                           machine; needs -o no_failover)\n"
	       "    --upgrade MOUNTPOINT   replace the server of a live mount "
	       "with\n"
	       "                           this binary (no client notices)\n"
	       "    BYTES take a K, M, G or T suffix (powers of 1024)\n\n",
	       prog, SHMFS_MAX_SLOTS);
}

/* A whole number with an optional binary suffix, or false. */
static bool parse_limit(const char *s, bool suffix, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || !*s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return false;
	if (suffix && *end) {
		const char *units = "KMGT", *u = strchr(units, *end);

		if (!u || end[1])
			return false;
		shift = 10 * (unsigned)(u - units + 1);
		if (v > (~0ULL >> shift))
			return false;
		end++;
	}
	if (*end)
		return false;
	*out = (uint64_t)v << shift;
	return true;
}

static int limit_error(const char *name, const char *val, const char *want)
{
	fprintf(stderr, "shmfs: invalid %s '%s': expected %s\n", name, val,
		want);
	return -1;
}

static int parse_limits(const struct options *o, struct seg_limits *l)
{
	uint64_t v;

	memset(l, 0, sizeof(*l));
	if (o->shmmax) {
		if (!parse_limit(o->shmmax, true, &v) || !v)
			return limit_error("shmmax", o->shmmax,
					   "a size in bytes, at least 1");
		l->shmmax = v;
	}
	if (o->shmmin) {
		if (!parse_limit(o->shmmin, true, &v) || !v)
			return limit_error("shmmin", o->shmmin,
					   "a size in bytes, at least 1");
		l->shmmin = v;
	}
	if (l->shmmin && l->shmmax && l->shmmin > l->shmmax)
		return limit_error("shmmin", o->shmmin,
				   "a size no larger than shmmax");
	if (o->shmmni) {
		if (!parse_limit(o->shmmni, false, &v) || !v ||
		    v > SHMFS_MAX_SLOTS)
			return limit_error("shmmni", o->shmmni,
					   "a count from 1 to 32768");
		l->shmmni = (uint32_t)v;
	}
	if (o->shmseg) {
		if (!parse_limit(o->shmseg, false, &v) || !v || v > INT32_MAX)
			return limit_error("shmseg", o->shmseg,
					   "a count from 1 to 2147483647");
		l->shmseg = (uint32_t)v;
	}
	if (o->shmall) {
		if (!parse_limit(o->shmall, false, &v) || !v)
			return limit_error("shmall", o->shmall,
					   "a number of pages, at least 1");
		l->shmall = v;
	}
	return 0;
}

static bool wants_help_or_version(int argc, char *argv[])
{
	int i;

	for (i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help") ||
		    !strcmp(argv[i], "-V") || !strcmp(argv[i], "--version"))
			return true;
	return false;
}

/* Is path the mount point of a shmfs already?  Read from mountinfo: a
 * stat of a dead FUSE mount would fail, of a live one would ask it. */
static bool shmfs_mounted_at(const char *path)
{
	char line[4096], mp[PATH_MAX];
	bool found = false;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "%*d %*d %*s %*s %4095s", mp) == 1 &&
			sysinfo_mountinfo_path_is(mp, path) &&
			strstr(line, " - fuse.shmfs ");
	fclose(f);
	return found;
}

/*
 * The usual mistakes, each with its own message before libfuse says
 * something vaguer: 0, or the exit status.
 */
static int check_environment(const char *mnt)
{
	char real[PATH_MAX];
	struct stat st;

	if (geteuid() != 0) {
		fprintf(stderr,
			"shmfs: must run as root: it serves every user "
			"and checks SysV permissions itself (uid %u)\n",
			(unsigned)geteuid());
		return 1;
	}
	if (access("/dev/fuse", R_OK | W_OK) != 0) {
		fprintf(stderr,
			"shmfs: /dev/fuse: %s (is the fuse module "
			"loaded? try: modprobe fuse)\n",
			strerror(errno));
		return 1;
	}
	if (realpath(mnt, real) && shmfs_mounted_at(real)) {
		fprintf(stderr,
			"shmfs: %s: a shmfs is already mounted there "
			"(unmount it first: fusermount3 -u %s)\n",
			mnt, mnt);
		return 1;
	}
	if (stat(mnt, &st) != 0) {
		if (errno == ENOTCONN)
			fprintf(stderr,
				"shmfs: %s: %s: a daemon died there "
				"(clean up with: fusermount3 -uz %s)\n",
				mnt, strerror(errno), mnt);
		else
			fprintf(stderr, "shmfs: mount point %s: %s%s\n", mnt,
				strerror(errno),
				errno == ENOENT ? " (create it first: mkdir -p)"
						: "");
		return errno == ENOENT ? 2 : 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "shmfs: mount point %s is not a directory\n",
			mnt);
		return 2;
	}
	return 0;
}

/*
 * Backing memfds the daemon may keep open to measure their memory: what
 * the descriptor limit leaves after a reserve for everything else.
 */
static uint64_t memfd_budget(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 0;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur == RLIM_INFINITY)
		return UINT64_MAX;
	return rl.rlim_cur > 1024 ? rl.rlim_cur - 1024 : 0;
}

static void free_options(struct options *o)
{
	free(o->shmmax);
	free(o->shmmin);
	free(o->shmmni);
	free(o->shmseg);
	free(o->shmall);
}

/*
 * The command line, then the environment's usual mistakes: 0 to go on,
 * -1 when help or the version was asked (and shown), else the exit
 * status.
 */
static int parse_args(int argc, char *argv[], struct fuse_args *args,
		      struct options *o, struct fuse_cmdline_opts *cl,
		      struct seg_limits *given, bool adopting)
{
	int ret;

	if (fuse_opt_parse(args, o, option_spec, opt_proc) == -1)
		return 2;
	/* SOURCE (from fstab through mount.fuse3) names nothing: ignore it */
	if (o->n_nonopt &&
	    fuse_opt_add_arg(args, o->nonopt[o->n_nonopt - 1]) != 0)
		return 2;
	if (o->n_nonopt && !wants_help_or_version(argc, argv)) {
		if (parse_limits(o, given) < 0)
			return 2;
		/* a successor's mount point is its own, mounted */
		ret = adopting ? 0
			       : check_environment(o->nonopt[o->n_nonopt - 1]);
		if (ret)
			return ret;
	}
	if (fuse_parse_cmdline(args, cl) != 0)
		return 2;
	if (cl->show_help) {
		usage(argv[0]);
		fuse_cmdline_help();
		fuse_lowlevel_help();
		return -1;
	}
	if (cl->show_version) {
		printf("shmfs version %s\n", SHMFS_VERSION);
		fflush(stdout);
		fuse_lowlevel_version();
		return -1;
	}
	if (parse_limits(o, given) < 0)
		return 2;
	if (o->uring && !o->no_failover) {
		fprintf(stderr,
			"shmfs: -o uring needs -o no_failover: a request a dead "
			"server took from its ring could be neither answered "
			"nor sent again to a successor\n");
		return 2;
	}
	if (!cl->mountpoint) {
		fprintf(stderr, "shmfs: no mount point given (try %s --help)\n",
			argv[0]);
		return 2;
	}
	return 0;
}

/* SHMFS_STRICT_HEAP=1: every page of the table's heap read-only outside
 * a transaction, so that a store outside one aborts (slower). */
static bool strict_heap(void)
{
	const char *v = getenv("SHMFS_STRICT_HEAP");

	return v && !strcmp(v, "1");
}

/* The table, told what it asks of the host and of the front end; a
 * successor adopts the one its holder kept (heap >= 0). */
static int table_start(const struct options *o, struct seg_config *cfg,
		       int heap)
{
	int err;

	sysinfo_init();
	*cfg = (struct seg_config){
		.given = cfg->given,
		.host_limits = sysinfo_host_limits,
		.parent_of = sysinfo_parent,
		.children_of = sysinfo_children,
		.born = sysinfo_born,
		.next_born = sysinfo_next_born,
		.mm_gone = sysinfo_mm_gone,
		.born_resume = sysinfo_born_resume,
		.freed = ops_shmid_freed,
		.commit_room = sysinfo_commit_room,
		.pub = &pubtab_publisher, /* silent until pubtab_open */
		.hot_pages = strict_heap() ? 0 : PHEAP_HOT_MAX,
	};
	if (!o->no_failover) {
		cfg->keep_fd = holder_keep;
		cfg->drop_fd = holder_drop;
	}
	if (!o->no_passthrough) {
		cfg->backing_open = pt_backing_open;
		cfg->backing_close = pt_backing_close;
		cfg->memfd_budget = memfd_budget();
	}
	if (heap < 0) {
		err = seg_init(cfg);
		if (err)
			fprintf(stderr, "shmfs: cannot create the table: %s\n",
				strerror(-err));
		return err;
	}
	err = seg_adopt(cfg, heap);
	if (err == -EPROTO)
		fprintf(stderr,
			"shmfs: cannot adopt the table: it is of another "
			"format than this binary's (%#llx)\n",
			(unsigned long long)SEG_TABLE_FORMAT);
	else if (err)
		fprintf(stderr, "shmfs: cannot adopt the table: %s\n",
			strerror(-err));
	return err;
}

/* What a mounted daemon has beside the mount; only warnings here. */
static void mount_extras(const struct fuse_cmdline_opts *cl, dev_t *dev)
{
	int err = sysinfo_mount_dev(cl->mountpoint, dev);

	if (!err)
		err = sysinfo_lift_bdi(*dev);
	if (err)
		fprintf(stderr,
			"shmfs: warning: cannot lift the dirty-page "
			"limit of %s: %s\n",
			cl->mountpoint, strerror(-err));
}

/* The binary this process runs, by its path as started (realpath, before
 * any chdir): what the holder starts successors from. */
static char *self_exe;

/*
 * After daemonizing, before any thread (the holder and the reaper are
 * forks of this process): the holder, then the published table, which
 * follows the holder's life when there is one.
 */
static pid_t serving_extras(dev_t dev, int devfd, const struct options *o,
			    char *argv[], bool failover)
{
	int err = 0;

	/* one thread reads from the holder's own descriptor: on a kernel
	 * that cannot resend, what a dead server read would wait for ever */
	if (!o->no_failover && !failover) {
		fprintf(stderr,
			"shmfs: warning: no failover: -s on a kernel "
			"without FUSE_NOTIFY_RESEND (before Linux 6.9)\n");
		err = -ENOTSUP;
	}
	if (!o->no_failover && dev && !err &&
	    (err = holder_start(dev, devfd, argv, self_exe)))
		fprintf(stderr,
			"shmfs: warning: no holder (%s): the daemon's "
			"death will end the mount\n",
			strerror(-err));
	if (dev && (err = reaper_start(dev, holder_pid())))
		fprintf(stderr,
			"shmfs: warning: no reaper (%s): a daemon killed "
			"while it drops a name may need fusectl's abort\n",
			strerror(-err));
	err = pubtab_open(SHMFS_TABLE_DIR,
			  holder_pid() ? holder_pid() : getpid());
	if (err)
		fprintf(stderr,
			"shmfs: warning: no published table in %s (%s): "
			"clients will ask the daemon for every IPC_STAT\n",
			SHMFS_TABLE_DIR, strerror(-err));
	seg_republish();
	return holder_pid();
}

/*
 * Descriptors a dead server kept that its table, as committed, no longer
 * names (it died between a free's commit and telling the holder): let go
 * here and at the holder.  One the table names and the holder does not
 * have is a memfd lost: said, and its segment reads fail.
 */
static void let_go_unused(const struct holder_handoff *h)
{
	int n = seg_fds(NULL, 0), *fds = calloc((size_t)n + 1, sizeof(int));
	int i, j;

	if (!fds)
		return;
	n = seg_fds(fds, n);
	for (i = 0; i < h->nkept; i++) {
		int num = h->kept[i];

		for (j = 0; j < n && fds[j] != num; j++)
			;
		if (j == n && num != h->dev && num != h->heap) {
			holder_drop(num);
			close(num);
		}
	}
	for (j = 0; j < n; j++) {
		int err;

		for (i = 0; i < h->nkept && h->kept[i] != fds[j]; i++)
			;
		if (i < h->nkept)
			continue;
		err = seg_fd_lost(fds[j]);
		if (err)
			fprintf(stderr,
				"shmfs: the holder did not keep descriptor "
				"%d: %s\n",
				fds[j],
				err == -EBADF ? "the arena is lost"
					      : "a segment's memory is lost");
	}
	free(fds);
}

/* Is the mount of device dev still at mountpoint (mountinfo says)? */
static bool still_mounted(const char *mountpoint, dev_t dev)
{
	dev_t now;

	return sysinfo_mount_dev(mountpoint, &now) == 0 && now == dev;
}

static bool handed_over(void)
{
	return ops_handing_over();
}

/* Does this kernel resend what a dead server read (Linux 6.9)?  Asked
 * once the connection is ours: with nothing read yet, nothing moves. */
static bool resend_works;

static void probe_resend(int devfd)
{
	const char *no = getenv("SHMFS_TEST_NO_RESEND"); /* tests: old kernel */

	resend_works =
		!(no && !strcmp(no, "1")) && takeover_notify_resend(devfd) == 0;
}

static int serve(struct fuse_session *se, struct fuse_cmdline_opts *cl)
{
	struct fuse_loop_config *loop;
	int ret;

	if (cl->singlethread)
		return fuse_session_loop(se) ? 1 : 0;
	loop = fuse_loop_cfg_create();
	if (!loop)
		return 1;
	/*
	 * A request read through a cloned descriptor dies with it (its
	 * caller gets ECONNABORTED), and the holder keeps only the session's:
	 * with a holder, workers read through clones only on a kernel that
	 * cannot resend (no request of a dead server may wait for ever).
	 */
	if (holder_pid()) {
		if (cl->clone_fd && resend_works)
			fprintf(stderr,
				"shmfs: warning: -o clone_fd is ignored "
				"with a holder (use -o no_failover to have "
				"it)\n");
		cl->clone_fd = !resend_works;
	}
	fuse_loop_cfg_set_clone_fd(loop, (unsigned)cl->clone_fd);
	/* -o max_threads= when given; libfuse's default otherwise */
	if (cl->max_threads > 0 && cl->max_threads <= 100000)
		fuse_loop_cfg_set_max_threads(loop, cl->max_threads);
	if (cl->max_idle_threads <= 100000)
		fuse_loop_cfg_set_idle_threads(loop, cl->max_idle_threads);
	ret = fuse_session_loop_mt(se, loop);
	fuse_loop_cfg_destroy(loop);
	return ret ? 1 : 0;
}

static void on_handover(int sig)
{
	(void)sig;
	ops_handover();
}

/* SIGUSR2, from the holder: stop at a request boundary for a successor. */
static void handover_signal(void)
{
	struct sigaction sa = { .sa_handler = on_handover };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR2, &sa, NULL);
}

/* Mount, serve until unmounted, and undo the mount: the exit status. */
static int mount_and_serve(struct fuse_args *args, const struct options *o,
			   struct fuse_cmdline_opts *cl, char *argv[])
{
	struct fuse_session *se;
	dev_t dev = 0;
	pid_t holder;
	int ret = 1, err = 0;

	if (fuse_opt_add_arg(args, "-ofsname=shmfs,subtype=shmfs") != 0)
		return 1;
	se = fuse_session_new(args, &shmfs_ops, sizeof(shmfs_ops), NULL);
	if (!se)
		return 2; /* libfuse has said which option it refused */
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (o->uring && (err = uring_enable()))
		fprintf(stderr,
			"shmfs: warning: -o uring: cannot turn on %s: %s; "
			"requests go through /dev/fuse\n",
			"/sys/module/fuse/parameters/enable_uring",
			strerror(-err));
	if (fuse_session_mount(se, cl->mountpoint) != 0)
		goto out_signals;
	if (pt_install(se, fuse_session_fd(se), !o->no_passthrough) != 0)
		goto out_unmount;
	if (o->uring && !err)
		uring_prepare(se, fuse_session_fd(se));
	mount_extras(cl, &dev);
	uring_conn(dev);
	if (fuse_daemonize(cl->foreground) != 0)
		goto out_unmount;
	probe_resend(fuse_session_fd(se));
	holder = serving_extras(dev, fuse_session_fd(se), o, argv,
				resend_works || !cl->singlethread);
	handover_signal();
	if (ops_start(se, o->verbose || cl->debug, pubtab_path(), holder) != 0)
		goto out_unmount;
	ret = serve(se, cl);
	if (handed_over())
		return 0; /* everything is the successor's now */
	/* The kernel aborts the connection as it unmounts, and a worker
	 * reading a request just then gets ECONNABORTED, which libfuse
	 * reports as an error: unmounted is a clean end all the same. */
	if (ret && dev && !still_mounted(cl->mountpoint, dev))
		ret = 0;
	ops_stop();
out_unmount:
	uring_stop();
	pt_uninstall();
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
	return ret;
}

/*
 * A successor's last step of the takeover: once a request of its own,
 * queued after every one the kernel resent, is answered, each resent one
 * has been read; an open the dead server answered whose resend never came
 * was abandoned by its caller (who died meanwhile), and is released.
 */
static void *settle(void *arg)
{
	const char *mountpoint = arg;
	uint64_t *fhs;
	char pid[32];
	size_t n, i;

	if (getxattr(mountpoint, "user.shmfs.pid", pid, sizeof(pid)) < 0)
		return NULL;
	n = table_settle(&fhs);
	for (i = 0; i < n; i++)
		ops_abandoned_open(fhs[i]);
	free(fhs);
	return NULL;
}

/*
 * A successor: the connection, the table and INIT come from the holder.
 * libfuse negotiates INIT again as the first server did (the kernel hears
 * nothing of it), the descriptors the dead server kept and the table no
 * longer names are let go, the kernel resends what the dead server had
 * read and not answered, and the holder hears that this one serves.
 */
static int adopt_and_serve(struct fuse_args *args, const struct options *o,
			   struct fuse_cmdline_opts *cl,
			   const struct holder_handoff *h)
{
	struct fuse_session *se;
	pthread_t settler;
	dev_t dev = 0;
	int ret = 1, err;

	if (fuse_opt_add_arg(args, "-ofsname=shmfs,subtype=shmfs") != 0)
		return 1;
	se = fuse_session_new(args, &shmfs_ops, sizeof(shmfs_ops), NULL);
	if (!se)
		return 2;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (pt_install(se, h->dev, !o->no_passthrough) != 0)
		goto out_signals;
	err = takeover_replay_init(se, h->init, h->init_len);
	if (err) {
		fprintf(stderr, "shmfs: cannot take over %s: INIT: %s\n",
			cl->mountpoint, strerror(-err));
		goto out_signals;
	}
	sysinfo_mount_dev(cl->mountpoint, &dev);
	let_go_unused(h);
	err = pubtab_adopt(SHMFS_TABLE_DIR, h->holder);
	if (err)
		fprintf(stderr,
			"shmfs: warning: the published table is lost (%s): "
			"clients will ask the daemon for every IPC_STAT\n",
			strerror(-err));
	seg_republish();
	handover_signal();
	if (ops_start(se, o->verbose || cl->debug, pubtab_path(), h->holder))
		goto out_signals;
	/* what the dead server read comes again; on a kernel that cannot
	 * resend, it read through clones, and its callers got ECONNABORTED */
	probe_resend(h->dev);
	pt_on_abandoned(ops_abandoned_open);
	holder_ready();
	if (pthread_create(&settler, NULL, settle, cl->mountpoint) == 0)
		pthread_detach(settler);
	ret = serve(se, cl);
	if (handed_over())
		return 0;
	if (ret && dev && !still_mounted(cl->mountpoint, dev))
		ret = 0;
	ops_stop();
	pt_uninstall();
	/* a signal ended us, not an unmount: end the mount as the first
	 * server would have (its libfuse mounted it, ours did not) */
	if (dev && still_mounted(cl->mountpoint, dev))
		umount2(cl->mountpoint, MNT_DETACH);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
	return ret;
}

/* Options, the table, mount (or adopt) and serve, tear down. */
int main(int argc, char *argv[])
{
	struct fuse_args args;
	struct fuse_cmdline_opts cl = { 0 };
	struct seg_config cfg = { 0 };
	struct holder_handoff h = { .heap = -1 };
	struct options o = { 0 };
	bool adopting = argc > 1 && !strncmp(argv[1], HOLDER_ADOPT_OPT,
					     strlen(HOLDER_ADOPT_OPT));
	int ret;

	if (argc == 3 && !strcmp(argv[1], "--upgrade"))
		return holder_upgrade(argv[2]);
	if (strchr(argv[0], '/'))
		self_exe = realpath(argv[0], NULL);
	killpoint_init();
	if (adopting) {
		ret = holder_adopt(argv[1] + strlen(HOLDER_ADOPT_OPT), &h);
		if (ret) {
			fprintf(stderr, "shmfs: cannot take over: %s\n",
				strerror(-ret));
			return 1;
		}
		argv[1] = argv[0];
		argv++;
		argc--;
	}
	args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);
	ret = parse_args(argc, argv, &args, &o, &cl, &cfg.given, adopting);
	if (ret == 0) {
		if (table_start(&o, &cfg, h.heap))
			ret = adopting ? 3 : 1;
		else if (adopting)
			ret = adopt_and_serve(&args, &o, &cl, &h);
		else
			ret = mount_and_serve(&args, &o, &cl, argv);
		if (handed_over()) {
			killpoint("handover"); /* stopped, not yet gone */
			/* the successor's, all of it: nothing is undone */
			fflush(stdout);
			fflush(stderr);
			_exit(0);
		}
		seg_fini();
		pubtab_close();
		sysinfo_fini();
	}
	free(cl.mountpoint);
	free_options(&o);
	free(o.nonopt[0]);
	free(o.nonopt[1]);
	fuse_opt_free_args(&args);
	free(h.init);
	free(h.kept);
	free(self_exe);
	return ret < 0 ? 0 : ret;
}
