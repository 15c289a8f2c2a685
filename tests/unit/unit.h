/*
 * unit.h: a minimal TAP producer for the C unit tests. Each TEST() is one
 * TAP line; CHECK() records a failed assertion with its file and line.
 */
#ifndef UNIT_H
#define UNIT_H

#include <stdio.h>
#include <string.h>

static int	unit_count;
static int	unit_failures;
static int	unit_current_failed;

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		printf("# %s:%d: CHECK failed: %s\n", __FILE__,	\
		    __LINE__, #cond);					\
		unit_current_failed = 1;				\
	}								\
} while (0)

#define CHECK_STR(a, b) do {						\
	const char *a_ = (a), *b_ = (b);				\
	if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {		\
		printf("# %s:%d: '%s' != '%s'\n", __FILE__, __LINE__,	\
		    a_ ? a_ : "(null)", b_ ? b_ : "(null)");		\
		unit_current_failed = 1;				\
	}								\
} while (0)

#define TEST(fn) unit_run(#fn, fn)

static inline void
unit_run(const char *name, void (*fn)(void))
{
	unit_current_failed = 0;
	fflush(stdout);
	fn();
	unit_count++;
	if (unit_current_failed)
		unit_failures++;
	printf("%sok %d - %s\n", unit_current_failed ? "not " : "",
	    unit_count, name);
	fflush(stdout);
}

static inline int
unit_done(void)
{
	printf("1..%d\n", unit_count);
	return 0;	/* the TAP lines carry the verdict */
}

#endif /* UNIT_H */
