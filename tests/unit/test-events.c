/*
 * test-events.c: events.c and settings.c: the personal-data detector, the
 * event checks, aggregate merging and the summary over a real store,
 * conditional settings writes decided in the writer, scopes and listing.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/thread.h>
#include <openssl/rand.h>

#include "tenantd.h"
#include "unit.h"

static char		 tmpdir[] = "/tmp/test-events.XXXXXX";
static struct keyring	*kr;
static struct store	*st;
static const char *const dbs[] = { EVENTS_DB, EVENTS_DAYS_DB,
    EVENTS_USERS_DB, SETTINGS_DB, NULL };

#define P_ALICE	"p_aaaaaaaaaaaaaaaaaaaaaaaaaa"
#define P_BOB	"p_bbbbbbbbbbbbbbbbbbbbbbbbbb"

static void
test_address_detector(void)
{
	static const char *const yes[] = { "alice@contoso.com",
	    "to: Bob.Smith@fabrikam.onmicrosoft.com today", "a%40b.co",
	    "A@B.CD", "x_y+z@mail.example.org", "u\xef\xbc\xa0" "dom.com" };
	static const char *const no[] = { "", "@", "@contoso.com", "alice@",
	    "a @ b.com", "price@localhost", "2 @ 3", "v1.2.3", "a@b.",
	    "mail@-" };
	size_t	i;

	for (i = 0; i < nitems(yes); i++)
		CHECK(events_looks_like_address(yes[i]));
	for (i = 0; i < nitems(no); i++)
		CHECK(!events_looks_like_address(no[i]));
}

static json_t *
load(const char *s)
{
	json_t	*j = json_loads(s, JSON_DECODE_ANY, NULL);

	if (j == NULL)
		abort();
	return j;
}

static int
check_body(const char *s, const char *pointer, uint64_t now)
{
	json_t	*body = load(s), *errors = jin_errors(), *e;
	size_t	 i;
	int	 n, found = pointer == NULL;

	n = events_check(body, now, errors);
	json_array_foreach(errors, i, e)
		if (pointer != NULL && strcmp(json_string_value(
		    json_object_get(e, "pointer")), pointer) == 0)
			found = 1;
	json_decref(body);
	json_decref(errors);
	return pointer == NULL ? n == 0 : n > 0 && found;
}

static void
test_event_checks(void)
{
	uint64_t	now = 1795000000ULL * 1000000;	/* 2026-11-18 */
	json_t		*body, *errors = jin_errors();

	CHECK(check_body("{\"events\":[{\"name\":\"a.b\",\"app\":\"c-d\"}]}",
	    NULL, now));
	CHECK(check_body("{\"events\":[{\"name\":\"a\",\"app\":\"c\","
	    "\"ts\":\"2026-11-11T21:00:00Z\"}]}", NULL, now));
	CHECK(check_body("{\"events\":[{\"name\":\"a\",\"app\":\"c\","
	    "\"ts\":\"2026-11-10T21:00:00Z\"}]}", "/events/0/ts", now));
	CHECK(check_body("{\"events\":[{\"name\":\"a\",\"app\":\"c\","
	    "\"ts\":\"2026-11-18T20:00:00Z\"}]}", "/events/0/ts", now));
	CHECK(check_body("{\"events\":[]}", "/events", now));
	CHECK(check_body("{\"events\":[{\"name\":\"a\",\"app\":\"c\","
	    "\"props\":{\"k~/\":\"v\"}}]}", "/events/0/props/k~0~1", now));
	CHECK(check_body("{\"events\":[{\"name\":\"a\",\"app\":\"c\","
	    "\"props\":{\"who\":\"a@b.com\"}}]}", "/events/0/props/who", now));
	CHECK(check_body("{\"events\":[{\"name\":\"a\",\"app\":\"c\","
	    "\"metrics\":{\"m\":\"1\"}}]}", "/events/0/metrics/m", now));
	CHECK(check_body("{\"events\":[{\"name\":\"A\",\"app\":\"c\"}],"
	    "\"x\":1}", "/x", now));
	/* An absent ts becomes the server's time. */
	body = load("{\"events\":[{\"name\":\"a\",\"app\":\"c\"}]}");
	CHECK(events_check(body, now, errors) == 0);
	CHECK_STR(json_string_value(json_object_get(json_array_get(
	    json_object_get(body, "events"), 0), "ts")),
	    "2026-11-18T11:06:40.000000Z");
	json_decref(body);
	json_decref(errors);
}

static void
test_agg_merge(void)
{
	json_t	*agg = json_object();
	json_t	*d1 = load("{\"count\":2,\"metrics\":{\"ms\":{\"n\":2,"
		    "\"sum\":10.0,\"min\":4.0,\"max\":6.0}}}");
	json_t	*d2 = load("{\"count\":1,\"metrics\":{\"ms\":{\"n\":1,"
		    "\"sum\":1.0,\"min\":1.0,\"max\":1.0},\"kb\":{\"n\":1,"
		    "\"sum\":7.0,\"min\":7.0,\"max\":7.0}}}");
	json_t	*ms;

	events_agg_merge(agg, d1);
	events_agg_merge(agg, d2);
	CHECK(json_integer_value(json_object_get(agg, "count")) == 3);
	ms = json_object_get(json_object_get(agg, "metrics"), "ms");
	CHECK(json_integer_value(json_object_get(ms, "n")) == 3);
	CHECK(json_real_value(json_object_get(ms, "sum")) == 11.0);
	CHECK(json_real_value(json_object_get(ms, "min")) == 1.0);
	CHECK(json_real_value(json_object_get(ms, "max")) == 6.0);
	CHECK(json_object_size(json_object_get(agg, "metrics")) == 2);
	json_decref(agg);
	json_decref(d1);
	json_decref(d2);
}

static int
ingest(const char *pseudonym, const char *events)
{
	json_t			*body = load(events);
	json_t			*errors = jin_errors();
	struct store_batch	*b;
	int			 rv = -1;

	if (events_check(body, wall_usec(), errors) == 0 &&
	    (b = events_batch(st, pseudonym, json_object_get(body,
	    "events"))) != NULL)
		rv = store_write(b);
	json_decref(body);
	json_decref(errors);
	return rv;
}

static json_t *
group(json_t *groups, const char *key)
{
	json_t	*g;
	size_t	 i;

	json_array_foreach(groups, i, g)
		if (strcmp(json_string_value(json_object_get(g, "key")),
		    key) == 0)
			return g;
	return NULL;
}

static void
test_summary_and_subjects(void)
{
	struct events_query	 q;
	struct store_batch	*b;
	json_t			*groups, *g, *evs;
	char			 ts[40];
	size_t			 ne, nm;
	int			 rv;

	CHECK(ingest(P_ALICE, "{\"events\":[{\"name\":\"open\",\"app\":\"v\","
	    "\"metrics\":{\"ms\":3}},{\"name\":\"open\",\"app\":\"v\","
	    "\"metrics\":{\"ms\":5}},{\"name\":\"close\",\"app\":\"w\"}]}") ==
	    STORE_OK);
	CHECK(ingest(P_BOB, "{\"events\":[{\"name\":\"open\",\"app\":\"v\","
	    "\"metrics\":{\"ms\":1}}]}") == STORE_OK);
	memset(&q, 0, sizeof(q));
	format_iso8601(ts, sizeof(ts), wall_usec());
	strlcpy(q.from, ts, sizeof(q.from));
	strlcpy(q.to, ts, sizeof(q.to));
	groups = events_summary(st, &q, &rv);
	CHECK(rv == STORE_OK && json_array_size(groups) == 2);
	g = group(groups, "open");
	CHECK(g != NULL && json_integer_value(json_object_get(g, "count")) ==
	    3 && json_integer_value(json_object_get(g, "users")) == 2);
	CHECK(g != NULL && json_real_value(json_object_get(json_object_get(
	    json_object_get(g, "metrics"), "ms"), "avg")) == 3.0);
	json_decref(groups);
	q.group_by = EVENTS_BY_APP;
	strlcpy(q.app, "w", sizeof(q.app));
	groups = events_summary(st, &q, &rv);
	CHECK(json_array_size(groups) == 1 && group(groups, "w") != NULL);
	json_decref(groups);

	CHECK(events_subject_export(st, P_ALICE, &evs) == STORE_OK &&
	    json_array_size(evs) == 3);
	json_decref(evs);
	b = store_batch_new(st);
	CHECK(events_subject_erase(st, b, P_ALICE, &ne, &nm) == STORE_OK);
	CHECK(ne == 3 && nm == 2);
	CHECK(store_write(b) == STORE_OK);
	CHECK(events_subject_export(st, P_ALICE, &evs) == STORE_OK &&
	    json_array_size(evs) == 0);
	json_decref(evs);
	CHECK(events_subject_export(st, P_BOB, &evs) == STORE_OK &&
	    json_array_size(evs) == 1);
	json_decref(evs);
	memset(&q, 0, sizeof(q));
	strlcpy(q.from, ts, sizeof(q.from));
	strlcpy(q.to, ts, sizeof(q.to));
	groups = events_summary(st, &q, &rv);
	g = group(groups, "open");
	CHECK(g != NULL && json_integer_value(json_object_get(g, "count")) ==
	    3 && json_integer_value(json_object_get(g, "users")) == 1);
	json_decref(groups);
}

static int
write_setting(const char *key, const char *value, const char *if_match,
    const char *if_none_match, struct settings_write *w)
{
	struct store_batch	*b = store_batch_new(st);
	int			 rv;

	memset(w, 0, sizeof(*w));
	strlcpy(w->key, key, sizeof(w->key));
	w->value = value != NULL ? load(value) : NULL;
	w->if_match = if_match;
	w->if_none_match = if_none_match;
	settings_write_add(b, w);
	rv = store_write(b);
	settings_write_clear(w);
	json_decref(w->value);
	return rv == STORE_OK ? 0 : w->status ? w->status : -1;
}

static void
test_settings_conditional(void)
{
	struct settings_write	 w;
	char			 etag[SETTINGS_ETAG_LEN], list[80];
	json_t			*rec;

	CHECK(write_setting("t/a", "{\"v\":1}", NULL, NULL, &w) == 0);
	CHECK(!w.existed);
	strlcpy(etag, w.etag, sizeof(etag));
	CHECK(write_setting("t/a", "2", NULL, NULL, &w) == 428);
	CHECK(write_setting("t/a", "2", "\"x\"", NULL, &w) == 412);
	CHECK(write_setting("t/a", "2", NULL, "*", &w) == 412);
	snprintf(list, sizeof(list), "\"x\", %s", etag);
	CHECK(write_setting("t/a", "2", list, NULL, &w) == 0 && w.existed);
	CHECK(strcmp(w.etag, etag) != 0);
	CHECK(settings_get(st, "t/a", &rec) == STORE_OK);
	CHECK(json_integer_value(json_object_get(rec, "value")) == 2);
	CHECK_STR(json_string_value(json_object_get(rec, "etag")), w.etag);
	json_decref(rec);
	CHECK(write_setting("t/a", NULL, etag, NULL, &w) == 412);
	CHECK(write_setting("t/a", NULL, "*", NULL, &w) == 0);
	CHECK(settings_get(st, "t/a", &rec) == STORE_NOTFOUND);
	CHECK(write_setting("t/a", NULL, NULL, NULL, &w) == 404);
}

static void
test_settings_scopes_and_list(void)
{
	struct settings_write	 w;
	struct store_batch	*b;
	char			 prefix[SETTINGS_RKEY_MAX], key[64];
	json_t			*items;
	size_t			 n;
	int			 more, i;

	CHECK(settings_scope_prefix("tenant", NULL, prefix, sizeof(prefix)) ==
	    0 && strcmp(prefix, "t/") == 0);
	CHECK(settings_scope_prefix("site:a,b", NULL, prefix,
	    sizeof(prefix)) == 0 && strcmp(prefix, "s/a,b/") == 0);
	CHECK(settings_scope_prefix("user", P_BOB, prefix, sizeof(prefix)) ==
	    0 && strcmp(prefix, "u/" P_BOB "/") == 0);
	CHECK(settings_scope_prefix("user", "", prefix, sizeof(prefix)) == -1);
	CHECK(settings_scope_prefix("site:a/b", NULL, prefix,
	    sizeof(prefix)) == -1);
	CHECK(settings_scope_prefix("site:", NULL, prefix, sizeof(prefix)) ==
	    -1);
	CHECK(settings_scope_prefix("users", NULL, prefix, sizeof(prefix)) ==
	    -1);
	CHECK(settings_key_ok("a.B-c_9") && !settings_key_ok("..") &&
	    !settings_key_ok("a/b") && !settings_key_ok(""));
	for (i = 0; i < 5; i++) {
		snprintf(key, sizeof(key), "u/%s/k%d", P_BOB, i);
		CHECK(write_setting(key, "1", NULL, NULL, &w) == 0);
	}
	CHECK(write_setting("u/" P_ALICE "/k0", "1", NULL, NULL, &w) == 0);
	CHECK(settings_list(st, "u/" P_BOB "/", NULL, 3, 0, &items, &more) ==
	    STORE_OK && json_array_size(items) == 3 && more);
	json_decref(items);
	CHECK(settings_list(st, "u/" P_BOB "/", "k2", 3, 1, &items, &more) ==
	    STORE_OK && json_array_size(items) == 2 && !more);
	CHECK_STR(json_string_value(json_object_get(json_array_get(items, 0),
	    "key")), "k3");
	CHECK(json_object_get(json_array_get(items, 0), "value") != NULL);
	json_decref(items);
	b = store_batch_new(st);
	CHECK(settings_subject_erase(st, b, P_BOB, &n) == STORE_OK && n == 5);
	CHECK(store_write(b) == STORE_OK);
	CHECK(settings_list(st, "u/" P_BOB "/", NULL, 10, 0, &items, &more) ==
	    STORE_OK && json_array_size(items) == 0);
	json_decref(items);
	CHECK(settings_list(st, "u/" P_ALICE "/", NULL, 10, 0, &items,
	    &more) == STORE_OK && json_array_size(items) == 1);
	json_decref(items);
}

static void
setup(void)
{
	struct keyring_params	kp = { 0 };
	struct store_params	sp = { 0 };
	char			path[300], kek[300], spec[320], err[512];
	uint8_t			k[32];
	int			fd;

	if (mkdtemp(tmpdir) == NULL)
		abort();
	snprintf(kek, sizeof(kek), "%s/kek", tmpdir);
	snprintf(spec, sizeof(spec), "file:%s", kek);
	snprintf(path, sizeof(path), "%s/keyring", tmpdir);
	RAND_bytes(k, sizeof(k));
	if ((fd = open(kek, O_WRONLY | O_CREAT, 0600)) == -1 ||
	    write(fd, k, sizeof(k)) != sizeof(k))
		abort();
	close(fd);
	kp.path = path;
	kp.kek = spec;
	kp.create = 1;
	if (keyring_load(&kp, &kr, NULL, NULL, err, sizeof(err)) != 0)
		fatalx("%s", err);
	snprintf(path, sizeof(path), "%s/store", tmpdir);
	sp.dir = path;
	sp.dbs = dbs;
	sp.max_size = 64 << 20;
	sp.keyring = kr;
	if (store_open(&sp, &st, err, sizeof(err)) != 0)
		fatalx("%s", err);
}

int
main(void)
{
	char	cmd[300];

	log_init("test-events", LOG_LEVEL_WARN, 1);
	evthread_use_pthreads();
	setup();
	TEST(test_address_detector);
	TEST(test_event_checks);
	TEST(test_agg_merge);
	TEST(test_summary_and_subjects);
	TEST(test_settings_conditional);
	TEST(test_settings_scopes_and_list);
	store_close(st);
	keyring_free(kr);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	(void)!system(cmd);
	return unit_done();
}
