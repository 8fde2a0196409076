/*
 * shmfs --upgrade MOUNTPOINT: ask the holder of that mount (its pid from
 * the mount's user.shmfs.holder_pid) to replace its server with the
 * binary this process runs, once it has said that its table is of this
 * binary's format.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "holder.h"
#include "holder_impl.h"
#include "seg.h"

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
