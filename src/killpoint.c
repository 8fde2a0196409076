/* Fault injection for the failover tests (see killpoint.h). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "killpoint.h"

static bool enabled;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char armed[32];
static unsigned long hits_left;

void killpoint_init(void)
{
	const char *v = getenv("SHMFS_TEST_KILLPOINTS");

	enabled = v && !strcmp(v, "1");
}

bool killpoint_enabled(void)
{
	return enabled;
}

int killpoint_arm(const char *value, unsigned long len)
{
	char buf[sizeof(armed)], *colon, *end;
	unsigned long n = 1;

	if (!enabled)
		return -EPERM;
	if (!len || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, value, len);
	buf[len] = '\0';
	colon = strchr(buf, ':');
	if (colon) {
		*colon = '\0';
		n = strtoul(colon + 1, &end, 10);
		if (*end || !n)
			return -EINVAL;
	}
	pthread_mutex_lock(&lock);
	strcpy(armed, buf);
	hits_left = n;
	pthread_mutex_unlock(&lock);
	return 0;
}

void killpoint(const char *name)
{
	bool die;

	if (!enabled || !__atomic_load_n(&hits_left, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&lock);
	die = hits_left && !strcmp(armed, name) && !--hits_left;
	pthread_mutex_unlock(&lock);
	if (die)
		kill(getpid(), SIGKILL);
}
