/*
 * shmfs_dlget: shmfs_shmget(KEY, 0, 0) through libshmfs loaded with
 * dlopen(3) from the path given.  A setuid or setgid copy of this program
 * thus runs the library as built: the dynamic loader ignores
 * LD_LIBRARY_PATH and LD_PRELOAD for such a program, but not an absolute
 * path handed to dlopen.
 *
 *   shmfs_dlget LIB KEY    prints "shmid N" or "errno NAME"
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

int main(int argc, char **argv)
{
	int (*get)(key_t key, size_t size, int shmflg);
	void *lib;
	int id;

	if (argc != 3) {
		fprintf(stderr, "usage: shmfs_dlget LIB KEY\n");
		return 2;
	}
	lib = dlopen(argv[1], RTLD_NOW);
	if (!lib) {
		fprintf(stderr, "shmfs_dlget: %s\n", dlerror());
		return 2;
	}
	*(void **)&get = dlsym(lib, "shmfs_shmget");
	if (!get) {
		fprintf(stderr, "shmfs_dlget: %s\n", dlerror());
		return 2;
	}
	id = get((key_t)strtol(argv[2], NULL, 0), 0, 0);
	if (id < 0)
		printf("errno %s\n", strerrorname_np(errno));
	else
		printf("shmid %d\n", id);
	return 0;
}
