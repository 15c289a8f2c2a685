/* test-log.c: log lines are valid JSON with escaped fields and a sink. */
#include "config.h"

#include <stdlib.h>
#include <unistd.h>

#include <jansson.h>

#include "tenantd.h"
#include "unit.h"

static char	last_line[8192];
static int	sink_calls;

static void
sink(enum log_level level, const char *line, size_t len)
{
	snprintf(last_line, sizeof(last_line), "%.*s", (int)len, line);
	sink_calls++;
}

static json_t *
last_json(void)
{
	json_error_t	err;

	return json_loads(last_line, 0, &err);
}

static void
test_line_is_json(void)
{
	json_t	*j;

	log_info("hello \"world\"\n\ttab %d", 42);
	CHECK((j = last_json()) != NULL);
	if (j == NULL)
		return;
	CHECK_STR(json_string_value(json_object_get(j, "msg")),
	    "hello \"world\"\n\ttab 42");
	CHECK_STR(json_string_value(json_object_get(j, "level")), "info");
	CHECK(json_object_get(j, "ts") != NULL);
	json_decref(j);
}

static void
test_fields_and_request_id(void)
{
	struct log_field	 f[] = { { "route", "/livez" }, { "x", "\x01" } };
	json_t			*j;

	log_set_request_id("req-1");
	log_fields(LOG_LEVEL_WARN, f, nitems(f), "with fields");
	log_set_request_id(NULL);
	CHECK((j = last_json()) != NULL);
	if (j == NULL)
		return;
	CHECK_STR(json_string_value(json_object_get(j, "request_id")), "req-1");
	CHECK_STR(json_string_value(json_object_get(j, "route")), "/livez");
	CHECK_STR(json_string_value(json_object_get(j, "x")), "\x01");
	json_decref(j);
}

static void
test_level_filter(void)
{
	int	before = sink_calls;

	log_debug("not shown");
	CHECK(sink_calls == before);
	log_setlevel(LOG_LEVEL_DEBUG);
	log_debug("shown on stderr, not sent to the sink");
	CHECK(sink_calls == before);
	log_setlevel(LOG_LEVEL_INFO);
}

static void
test_long_message_truncated(void)
{
	char	*big = xmalloc(20000);
	json_t	*j;

	memset(big, 'a', 19999);
	big[19999] = '\0';
	log_info("%s", big);
	free(big);
	CHECK((j = last_json()) != NULL);
	json_decref(j);
}

static void
test_level_parse(void)
{
	enum log_level	l;

	CHECK(log_level_parse("debug", &l) == 0 && l == LOG_LEVEL_DEBUG);
	CHECK(log_level_parse("loud", &l) == -1);
}

int
main(void)
{
	log_init("test", LOG_LEVEL_INFO, 1);
	log_set_sink(sink);
	/* keep the test's own stderr quiet */
	if (freopen("/dev/null", "w", stderr) == NULL)
		return 1;
	TEST(test_line_is_json);
	TEST(test_fields_and_request_id);
	TEST(test_level_filter);
	TEST(test_long_message_truncated);
	TEST(test_level_parse);
	return unit_done();
}
