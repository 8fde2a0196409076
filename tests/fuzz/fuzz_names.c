/*
 * Fuzz target for the name parsers of src/names.c: every key and every
 * shmid has exactly one spelling, so that no two names reach the same
 * segment.  For an arbitrary name (the input up to its first NUL, as a
 * directory entry can hold no NUL):
 *   - names_parse_key accepts it only if printing the key back with
 *     0x%08x gives exactly the same bytes;
 *   - names_parse_shmid accepts it only if the shmid is >= 0 and printing
 *     it back with %d gives exactly the same bytes;
 *   - no name is both a key and a shmid, and neither parser accepts a
 *     fixed node's name.
 * And the other way round, for a number taken from the input: its
 * canonical spelling parses back to the same number (every key and every
 * non-negative int has a name), and a few near misses of that spelling
 * (upper case, 0X, a leading zero, a sign, a wrapped value) are refused.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

#define FAIL(...)                                                            \
	do {                                                                 \
		fprintf(stderr, "fuzz_names: " __VA_ARGS__);                 \
		fputc('\n', stderr);                                         \
		abort();                                                     \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_name(const char *name)
{
	static const char *const fixed[] = { ".ctl", ".id", "status",
					     ".table", ".", ".." };
	char back[32];
	key_t key = 0;
	int id = -1;
	bool is_key = names_parse_key(name, &key);
	bool is_id = names_parse_shmid(name, &id);
	size_t i;

	if (is_key) {
		snprintf(back, sizeof(back), "0x%08x", (unsigned)key);
		if (strcmp(back, name))
			FAIL("key name \"%s\" parses to %#x, which prints as "
			     "\"%s\"", name, (unsigned)key, back);
	}
	if (is_id) {
		if (id < 0)
			FAIL("shmid name \"%s\" parses to negative %d", name,
			     id);
		snprintf(back, sizeof(back), "%d", id);
		if (strcmp(back, name))
			FAIL("shmid name \"%s\" parses to %d, which prints as "
			     "\"%s\"", name, id, back);
	}
	if (is_key && is_id)
		FAIL("\"%s\" is both a key and a shmid", name);
	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if ((is_key || is_id) && !strcmp(name, fixed[i]))
			FAIL("fixed name \"%s\" parses as a key or shmid",
			     name);
}

static void expect_refused(const char *name, bool as_key)
{
	key_t key;
	int id;

	if (as_key ? names_parse_key(name, &key) : names_parse_shmid(name, &id))
		FAIL("non-canonical %s name \"%s\" accepted",
		     as_key ? "key" : "shmid", name);
}

/* Canonical spellings of numbers from the input, and their near misses. */
static void check_number(uint32_t raw)
{
	char name[48], bad[48];
	key_t key = 0;
	int id = -1;
	size_t i;

	snprintf(name, sizeof(name), "0x%08x", raw);
	if (!names_parse_key(name, &key) || (uint32_t)key != raw)
		FAIL("key %#x: its name \"%s\" does not parse back", raw, name);
	/* upper case, 0X, one digit more or less */
	snprintf(bad, sizeof(bad), "0X%08x", raw);
	expect_refused(bad, true);
	snprintf(bad, sizeof(bad), "0x%08X", raw);
	if (strcmp(bad, name))
		expect_refused(bad, true);
	snprintf(bad, sizeof(bad), "0x0%08x", raw);
	expect_refused(bad, true);
	snprintf(bad, sizeof(bad), "0x%x", raw);
	if (strcmp(bad, name))
		expect_refused(bad, true);
	for (i = 0; name[i]; i++) {	/* any one byte changed to a non-digit */
		memcpy(bad, name, sizeof(name));
		bad[i] = i < 2 ? 'X' : 'g';
		if (i != 1)
			expect_refused(bad, true);
	}

	id = (int)(raw & INT_MAX);
	snprintf(name, sizeof(name), "%d", id);
	{
		int back = -1;

		if (!names_parse_shmid(name, &back) || back != id)
			FAIL("shmid %d: its name \"%s\" does not parse back",
			     id, name);
	}
	snprintf(bad, sizeof(bad), "0%d", id);
	expect_refused(bad, false);
	snprintf(bad, sizeof(bad), "+%d", id);
	expect_refused(bad, false);
	snprintf(bad, sizeof(bad), "-%d", id);
	expect_refused(bad, false);
	snprintf(bad, sizeof(bad), "%d ", id);
	expect_refused(bad, false);
	snprintf(bad, sizeof(bad), " %d", id);
	expect_refused(bad, false);
	/* the same low 32 (or 31) bits, as a number that does not fit */
	snprintf(bad, sizeof(bad), "%llu", (unsigned long long)id + (1ULL << 32));
	expect_refused(bad, false);
	snprintf(bad, sizeof(bad), "%llu", (unsigned long long)id + (1ULL << 31));
	expect_refused(bad, false);
	snprintf(bad, sizeof(bad), "%#x", (unsigned)id);
	if (id)
		expect_refused(bad, false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *name = malloc(size + 1);
	uint32_t raw = 0;

	if (!name)
		return 0;
	memcpy(name, data, size);
	name[size] = '\0';
	check_name(name);
	free(name);
	memcpy(&raw, data, size < sizeof(raw) ? size : sizeof(raw));
	check_number(raw);
	return 0;
}
