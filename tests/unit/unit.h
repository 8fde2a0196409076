/*
 * The assertion and report helper shared by the C unit tests.  A program
 * runs its test functions with UNIT_RUN(); each failed check prints one
 * line (file:line, test, expression, got and expected), and unit_done()
 * prints "N passed, N failed" (tests, not checks) and gives the exit
 * status.  A check that the rest of a test cannot do without is a
 * REQUIRE: on failure it leaves the test function.
 */
#ifndef SHMFS_UNIT_H
#define SHMFS_UNIT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static struct {
	const char *test;	/* the test function running */
	int fails;		/* failed checks in it */
	bool skipped;
	int passed;
	int failed;
	int skips;
} unit;

/*
 * "-22 (-EINVAL)" for a negative errno.  -1 is named only when the other
 * side of the comparison is an -errno too: it is also a plain failure.
 */
static inline const char *unit_num(long long v, long long other, char *buf,
				   size_t size)
{
	const char *name = NULL;

	if (v < 0 && v > -4096 && (v < -1 || (other < 0 && other > -4096)))
		name = strerrorname_np((int)-v);
	if (name)
		snprintf(buf, size, "%lld (-%s)", v, name);
	else
		snprintf(buf, size, "%lld", v);
	return buf;
}

static inline bool unit_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	printf("%s:%d: %s: ", file, line, unit.test ? unit.test : "-");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	unit.fails++;
	return false;
}

static inline bool unit_true(bool ok, const char *file, int line,
			     const char *expr)
{
	return ok ? true : unit_fail(file, line, "%s: false", expr);
}

static inline bool unit_eq(long long got, long long want, const char *file,
			   int line, const char *expr, const char *wexpr)
{
	char g[64], w[64];

	if (got == want)
		return true;
	return unit_fail(file, line, "%s == %s: got %s, expected %s", expr,
			 wexpr, unit_num(got, want, g, sizeof(g)),
			 unit_num(want, got, w, sizeof(w)));
}

static inline bool unit_ueq(unsigned long long got, unsigned long long want,
			    const char *file, int line, const char *expr,
			    const char *wexpr)
{
	if (got == want)
		return true;
	return unit_fail(file, line, "%s == %s: got %llu (%#llx), expected "
			 "%llu (%#llx)", expr, wexpr, got, got, want, want);
}

static inline bool unit_ne(long long got, long long bad, const char *file,
			   int line, const char *expr, const char *bexpr)
{
	if (got != bad)
		return true;
	return unit_fail(file, line, "%s != %s: got %lld", expr, bexpr, got);
}

static inline bool unit_str(const char *got, const char *want,
			    const char *file, int line, const char *expr)
{
	if (got && want && strcmp(got, want) == 0)
		return true;
	return unit_fail(file, line, "%s: got \"%s\", expected \"%s\"", expr,
			 got ? got : "(null)", want ? want : "(null)");
}

/* Signed values and -errno returns. */
#define CHECK_EQ(got, want)                                                  \
	unit_eq((long long)(got), (long long)(want), __FILE__, __LINE__,     \
		#got, #want)
/* Unsigned 64-bit values (sizes, limits, pages). */
#define CHECK_UEQ(got, want)                                                 \
	unit_ueq((unsigned long long)(got), (unsigned long long)(want),      \
		 __FILE__, __LINE__, #got, #want)
#define CHECK_NE(got, bad)                                                   \
	unit_ne((long long)(got), (long long)(bad), __FILE__, __LINE__,      \
		#got, #bad)
#define CHECK(expr) unit_true((expr), __FILE__, __LINE__, #expr)
#define CHECK_STR(got, want) unit_str((got), (want), __FILE__, __LINE__, #got)

/* Leave the test when a check fails that the rest depends on. */
#define REQUIRE(check)                                                       \
	do {                                                                 \
		if (!(check))                                                \
			return;                                              \
	} while (0)

/* Print why a test could not run; it counts as neither pass nor fail. */
static inline void unit_skip(const char *fmt, ...)
{
	va_list ap;

	printf("SKIP %s: ", unit.test);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	unit.skipped = true;
}

static inline void unit_run(const char *name, void (*fn)(void))
{
	unit.test = name;
	unit.fails = 0;
	unit.skipped = false;
	fn();
	if (unit.fails)
		unit.failed++;
	else if (unit.skipped)
		unit.skips++;
	else
		unit.passed++;
	unit.test = NULL;
}

#define UNIT_RUN(fn) unit_run(#fn, fn)

static inline int unit_done(void)
{
	printf("%d passed, %d failed\n", unit.passed, unit.failed);
	fflush(stdout);
	return unit.failed ? 1 : 0;
}

#endif
