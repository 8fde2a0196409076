/*
 * Replays fuzz inputs without libFuzzer: runs a target's
 * LLVMFuzzerTestOneInput over every file named on the command line, and
 * every file in every directory named, in name order.  Built with gcc (and
 * its sanitizers when it has them) so that `make check` replays the whole
 * corpus, crashes found earlier included, without clang.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!f) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (;;) {
		if (len == cap) {
			uint8_t *nb = realloc(buf, cap ? cap * 2 : 4096);

			if (!nb) {
				fclose(f);
				free(buf);
				return -1;
			}
			buf = nb;
			cap = cap ? cap * 2 : 4096;
		}
		n = fread(buf + len, 1, cap - len, f);
		if (!n)
			break;
		len += n;
	}
	fclose(f);
	/* libFuzzer hands over a copy of exactly len bytes */
	{
		uint8_t *exact = malloc(len ? len : 1);

		if (!exact) {
			free(buf);
			return -1;
		}
		memcpy(exact, buf, len);
		free(buf);
		LLVMFuzzerTestOneInput(exact, len);
		free(exact);
	}
	return 0;
}

/* 0 when the input fails as it should, -1 when it passes. */
static int replay_known(const char *path)
{
	const char *base = strrchr(path, '/');
	int status, null;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, 2);
		_exit(replay_file(path) != 0);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		fprintf(stderr, "\nreplay: %s passes now: the bug is fixed; "
			"rename it without the known- prefix\n", path);
		return -1;
	}
	printf("(known bug still there: %s) ", base ? base + 1 : path);
	return 0;
}

/* With SHMFS_FUZZ_TOLERATE (as make fuzz sets it), known bugs pass. */
static int is_known(const char *path)
{
	const char *base = strrchr(path, '/');

	return !getenv("SHMFS_FUZZ_TOLERATE") &&
	       !strncmp(base ? base + 1 : path, "known-", 6);
}

static int regular_only(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

int main(int argc, char **argv)
{
	int i, j, n, runs = 0, bad = 0;

	for (i = 1; i < argc; i++) {
		struct stat st;
		struct dirent **list;

		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i],
				strerror(errno));
			return 2;
		}
		if (!S_ISDIR(st.st_mode)) {
			bad |= (is_known(argv[i]) ? replay_known(argv[i]) :
						    replay_file(argv[i])) != 0;
			runs++;
			continue;
		}
		n = scandir(argv[i], &list, regular_only, alphasort);
		if (n < 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i],
				strerror(errno));
			return 2;
		}
		for (j = 0; j < n; j++) {
			char path[4096];

			snprintf(path, sizeof(path), "%s/%s", argv[i],
				 list[j]->d_name);
			bad |= (is_known(path) ? replay_known(path) :
						 replay_file(path)) != 0;
			runs++;
			free(list[j]);
		}
		free(list);
	}
	if (bad) {
		printf("replay: %d inputs, FAILED\n", runs);
		return 1;
	}
	printf("replay: %d inputs, no failure\n", runs);
	return 0;
}
