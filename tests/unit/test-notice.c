/*
 * test-notice.c: request-body checks (json-input.c) and the webhook
 * payloads and signatures (notice-webhook.c).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tenantd.h"
#include "unit.h"

static const struct jin_field item_field = {
	"item", JIN_STRING, .min = 1, .max = 3, .charset = "abc"
};
static const struct jin_field test_fields[] = {
	{ "name", JIN_STRING, JIN_REQUIRED, .min = 1, .max = 4 },
	{ "n", JIN_INT, .min = 0, .max = 10 },
	{ "when", JIN_TIME, JIN_NULLABLE, .min = 0 },
	{ "kind", JIN_ENUM, .names = notice_kind_names },
	{ "list", JIN_ARRAY, .min = 0, .max = 2, .items = &item_field },
	{ "a/b~c", JIN_BOOL, .min = 0 },
};
static const struct jin_schema test_schema = {
	test_fields, nitems(test_fields), 0
};

/* The pointers of the errors that checking text produced, joined. */
static char *
pointers(const char *text)
{
	static char	 out[512];
	json_t		*errors = jin_errors(), *v, *e;
	size_t		 i;

	out[0] = '\0';
	if ((v = jin_parse(text, strlen(text), errors)) != NULL)
		jin_check(v, &test_schema, "", errors);
	json_array_foreach(errors, i, e) {
		strlcat(out, "[", sizeof(out));
		strlcat(out, json_string_value(json_object_get(e, "pointer")),
		    sizeof(out));
		strlcat(out, "]", sizeof(out));
	}
	json_decref(v);
	json_decref(errors);
	return out;
}

static void
test_valid(void)
{
	CHECK_STR(pointers("{\"name\":\"ab\",\"n\":3,\"when\":null,"
	    "\"kind\":\"change\",\"list\":[\"ab\",\"c\"],\"a/b~c\":true}"), "");
}

static void
test_fields_by_pointer(void)
{
	CHECK_STR(pointers("{}"), "[/name]");
	CHECK_STR(pointers("{\"name\":\"\"}"), "[/name]");
	CHECK_STR(pointers("{\"name\":\"abcde\"}"), "[/name]");
	CHECK_STR(pointers("{\"name\":\"\\u00e9\\u00e9\\u00e9\\u00e9\"}"), "");
	CHECK_STR(pointers("{\"name\":\"a\\u0001\"}"), "[/name]");
	CHECK_STR(pointers("{\"name\":\"a\",\"n\":11}"), "[/n]");
	CHECK_STR(pointers("{\"name\":\"a\",\"n\":1.5}"), "[/n]");
	CHECK_STR(pointers("{\"name\":\"a\",\"kind\":\"x\"}"), "[/kind]");
	CHECK_STR(pointers("{\"name\":\"a\",\"list\":[\"ab\",\"d\"]}"),
	    "[/list/1]");
	CHECK_STR(pointers("{\"name\":\"a\",\"list\":[\"a\",\"b\",\"c\"]}"),
	    "[/list]");
	CHECK_STR(pointers("{\"name\":\"a\",\"a/b~c\":1}"), "[/a~1b~0c]");
	CHECK_STR(pointers("{\"name\":\"a\",\"zz\":1,\"n\":\"1\"}"),
	    "[/zz][/n]");
}

static void
test_times(void)
{
	uint64_t	us;
	int64_t		s;

	CHECK(jin_time_usec("2026-11-29T10:00:00.25Z", &us) == 0);
	CHECK(us == 1795946400ULL * 1000000 + 250000);
	CHECK(jin_time_parse("2026-11-29T10:00:00Z", &s) == 0 &&
	    s == 1795946400);
	CHECK(jin_time_parse("2026-02-30T10:00:00Z", &s) == -1);
	CHECK(jin_time_parse("2026-11-29 10:00:00Z", &s) == -1);
	CHECK(jin_time_parse("2026-11-29T10:00:00+01:00", &s) == -1);
	CHECK(jin_time_parse("2026-11-29T10:00:00.Z", &s) == -1);
	CHECK_STR(pointers("{\"name\":\"a\",\"when\":\"soon\"}"), "[/when]");
}

static void
test_bodies_refused(void)
{
	char	*deep;
	size_t	 i, n = 10000;

	CHECK_STR(pointers("{\"name\":"), "[]");
	CHECK_STR(pointers("{\"name\":\"a\",\"name\":\"b\"}"), "[]");
	CHECK_STR(pointers("{\"name\":\"a\\u0000b\"}"), "[]");
	CHECK_STR(pointers("{\"name\":\"\xff\"}"), "[]");
	CHECK_STR(pointers("{\"n\":123456789012345678901234567890}"), "[]");
	CHECK_STR(pointers("{\"name\":\"a\"} x"), "[]");
	CHECK_STR(pointers(""), "[]");
	CHECK_STR(pointers("[1]"), "[]");
	deep = xmalloc(2 * n + 1);
	for (i = 0; i < n; i++) {
		deep[i] = '[';
		deep[n + i] = ']';
	}
	deep[2 * n] = '\0';
	CHECK_STR(pointers(deep), "[]");
	free(deep);
	/* brackets inside strings do not count as nesting */
	CHECK_STR(pointers("{\"name\":\"[[[[\",\"list\":[\"a\"]}"), "");
}

static void
test_signature(void)
{
	char	sig[65];

	webhook_signature("0123456789abcdef", 16, 1700000000, "{\"a\":1}", 7,
	    sig, sizeof(sig));
	CHECK_STR(sig, "9eb18f493f8ec135d9eb2dad817c369b"
	    "b4e9cbfa818657897a7437c1cd8c3a23");
}

static void
test_payloads(void)
{
	struct webhook_conf	 wc = { 0 };
	json_t			*n, *msg, *card;
	char			*s;

	n = json_pack("{s:s, s:s, s:s, s:s, s:s, s:n, s:n}", "id", "n_1",
	    "kind", "security", "severity", "warning", "title", "T",
	    "body", "B", "starts_at", "ends_at");
	s = webhook_payload(&wc, n, "notice.published", "d_1", "tid");
	msg = json_loads(s, 0, NULL);
	CHECK_STR(json_string_value(json_object_get(msg, "event")),
	    "notice.published");
	CHECK(json_equal(json_object_get(msg, "notice"), n));
	json_decref(msg);
	free(s);
	wc.format = WEBHOOK_TEAMS;
	s = webhook_payload(&wc, n, "notice.updated", "d_1", "tid");
	msg = json_loads(s, 0, NULL);
	CHECK_STR(json_string_value(json_object_get(msg, "type")), "message");
	card = json_object_get(json_array_get(json_object_get(msg,
	    "attachments"), 0), "content");
	CHECK_STR(json_string_value(json_object_get(card, "type")),
	    "AdaptiveCard");
	CHECK_STR(json_string_value(json_object_get(json_array_get(
	    json_object_get(card, "body"), 0), "text")), "Updated: T");
	json_decref(msg);
	free(s);
	json_decref(n);
}

int
main(void)
{
	log_init("test-notice", LOG_LEVEL_WARN, 1);
	TEST(test_valid);
	TEST(test_fields_by_pointer);
	TEST(test_times);
	TEST(test_bodies_refused);
	TEST(test_signature);
	TEST(test_payloads);
	return unit_done();
}
