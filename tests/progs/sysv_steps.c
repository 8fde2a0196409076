/*
 * sysv_steps: SysV calls one line at a time, for tests that look at the
 * counts between them; built with no knowledge of shmfs, for running
 * under LD_PRELOAD=libshmfs-preload.so.  Reads commands on stdin and
 * answers each with one line ("ok", a value, or "FAIL what: error"):
 *
 *   get KEY        shmget(KEY, 4096, IPC_CREAT | 0600): "id N"
 *   at ID          shmat(ID, NULL, 0), remembered on a stack
 *   atro ID        shmat(ID, NULL, SHM_RDONLY), the same
 *   dt             shmdt of the newest attach on the stack
 *   put BYTE       fills the first page of the newest attach with BYTE
 *   peek           its first byte: "byte N"
 *   stat ID        shmctl(ID, IPC_STAT): "nattch N"
 *   full ID        shmctl(ID, IPC_STAT): "nattch N lpid P atime A dtime D"
 *   closeall       closes every descriptor but 0, 1 and 2, as daemons do
 *   rmid ID        shmctl(ID, IPC_RMID)
 *   fork           a child that keeps what it inherited and waits to be
 *                  killed: "child PID", once it runs
 *   forkexit       a child that exits at once, waited for
 *   forkdt         a child that detaches what it inherited and waits to
 *                  be killed: "child PID", once it has
 *   kill PID       SIGKILL, waited for
 *   end PID        SIGTERM (the child exits, detaching), waited for
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

static void *stack[256];
static int depth;

static void fail(const char *what)
{
	printf("FAIL %s: %s\n", what, strerror(errno));
}

static void on_term(int sig)
{
	(void)sig;
	exit(0);
}

/* The child waits for a signal; it tells the parent it runs on pfd.  It
 * dies with its parent: a test that fails before it kills the child
 * leaves nothing behind. */
static void child(int pfd, int detach, pid_t parent)
{
	char c = 'r';

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(1);
	signal(SIGTERM, on_term);
	while (detach && depth > 0)
		if (shmdt(stack[--depth]) < 0)
			c = 'f';
	if (write(pfd, &c, 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

static void do_fork(int detach)
{
	pid_t parent = getpid(), pid;
	int p[2];
	char c;

	if (pipe(p) < 0)
		return fail("pipe");
	pid = fork();
	if (pid < 0)
		return fail("fork");
	if (pid == 0) {
		close(p[0]);
		child(p[1], detach, parent);
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1 || c != 'r')
		printf("FAIL child: %c\n", c);
	else
		printf("child %d\n", (int)pid);
	close(p[0]);
}

static void do_reap(pid_t pid, int sig)
{
	if (kill(pid, sig) < 0)
		return fail("kill");
	if (waitpid(pid, NULL, 0) < 0)
		return fail("waitpid");
	puts("ok");
}

static void step(const char *cmd, long arg)
{
	struct shmid_ds ds;
	pid_t pid;
	void *m;
	int id;

	if (!strcmp(cmd, "get")) {
		id = shmget((key_t)arg, 4096, IPC_CREAT | 0600);
		if (id < 0)
			return fail("shmget");
		printf("id %d\n", id);
	} else if (!strcmp(cmd, "at") || !strcmp(cmd, "atro")) {
		m = shmat((int)arg, NULL, cmd[2] ? SHM_RDONLY : 0);
		if (m == (void *)-1)
			return fail("shmat");
		if (depth == 256)
			return (void)puts("FAIL at: full");
		stack[depth++] = m;
		puts("ok");
	} else if (!strcmp(cmd, "dt")) {
		if (!depth)
			return (void)puts("FAIL dt: nothing attached");
		if (shmdt(stack[--depth]) < 0)
			return fail("shmdt");
		puts("ok");
	} else if (!strcmp(cmd, "put") || !strcmp(cmd, "peek")) {
		if (!depth)
			return (void)puts("FAIL put: nothing attached");
		if (cmd[1] == 'u') {
			memset(stack[depth - 1], (int)arg, 4096);
			puts("ok");
		} else {
			printf("byte %d\n", *(unsigned char *)stack[depth - 1]);
		}
	} else if (!strcmp(cmd, "stat")) {
		if (shmctl((int)arg, IPC_STAT, &ds) < 0)
			return fail("IPC_STAT");
		printf("nattch %lu\n", (unsigned long)ds.shm_nattch);
	} else if (!strcmp(cmd, "full")) {
		if (shmctl((int)arg, IPC_STAT, &ds) < 0)
			return fail("IPC_STAT");
		printf("nattch %lu lpid %d atime %lld dtime %lld\n",
		       (unsigned long)ds.shm_nattch, (int)ds.shm_lpid,
		       (long long)ds.shm_atime, (long long)ds.shm_dtime);
	} else if (!strcmp(cmd, "closeall")) {
		for (id = 3; id < 1024; id++)
			close(id);
		puts("ok");
	} else if (!strcmp(cmd, "rmid")) {
		if (shmctl((int)arg, IPC_RMID, NULL) < 0)
			return fail("IPC_RMID");
		puts("ok");
	} else if (!strcmp(cmd, "fork")) {
		do_fork(0);
	} else if (!strcmp(cmd, "forkdt")) {
		do_fork(1);
	} else if (!strcmp(cmd, "forkexit")) {
		pid = fork();
		if (pid == 0)
			_exit(0);
		if (pid < 0 || waitpid(pid, NULL, 0) < 0)
			return fail("fork");
		puts("ok");
	} else if (!strcmp(cmd, "kill")) {
		do_reap((pid_t)arg, SIGKILL);
	} else if (!strcmp(cmd, "end")) {
		do_reap((pid_t)arg, SIGTERM);
	} else {
		puts("FAIL unknown command");
	}
}

int main(void)
{
	char line[128], cmd[16];
	long arg;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		arg = 0;
		if (sscanf(line, "%15s %li", cmd, &arg) < 1)
			continue;
		step(cmd, arg);
	}
	return 0;
}
