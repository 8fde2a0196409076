/*
 * Parsing of the names a client may look up.  Each key and each shmid has
 * exactly one spelling, so that no two names reach the same segment.
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "names.h"

bool names_parse_key(const char *name, key_t *key)
{
	uint32_t v = 0;
	int i;

	if (strlen(name) != 10 || name[0] != '0' || name[1] != 'x')
		return false;
	for (i = 2; i < 10; i++) {
		char ch = name[i];

		if (ch >= '0' && ch <= '9')
			v = v << 4 | (uint32_t)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			v = v << 4 | (uint32_t)(ch - 'a' + 10);
		else
			return false;
	}
	*key = (key_t)v;
	return true;
}

bool names_parse_shmid(const char *name, int *id)
{
	long v = 0;
	const char *p;

	if (!*name || (name[0] == '0' && name[1]) || strlen(name) > 10)
		return false;
	for (p = name; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
	}
	if (v > INT_MAX)
		return false;
	*id = (int)v;
	return true;
}
