/*
 * notice.c: notices to the customer: their schema, the stored copies
 * (database "notices"), publishing and updating them together with their
 * webhook deliveries, and the notices tenantd publishes on its own.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tenantd.h"

#define NOTICE_PREFIX		"n_"
#define META_PREFIX		"m:"

const char *const notice_kind_names[] = {
	/* In the order of enum notice_kind. */
	"security", "maintenance", "incident", "change", NULL
};
const char *const notice_severity_names[] = {
	"info", "warning", "critical", NULL
};

static struct {
	pthread_mutex_t	 mtx;		/* read-modify-write */
	struct store	*st;
} notices = { .mtx = PTHREAD_MUTEX_INITIALIZER };

static const struct jin_field publish_fields[] = {
	{ "kind", JIN_ENUM, JIN_REQUIRED, .names = notice_kind_names },
	{ "severity", JIN_ENUM, JIN_REQUIRED,
	    .names = notice_severity_names },
	{ "title", JIN_STRING, JIN_REQUIRED, .min = 1,
	    .max = NOTICE_TITLE_MAX },
	{ "body", JIN_STRING, JIN_MULTILINE, .max = NOTICE_BODY_MAX },
	{ "starts_at", JIN_TIME, JIN_NULLABLE, .min = 0 },
	{ "ends_at", JIN_TIME, JIN_NULLABLE, .min = 0 },
};
static const struct jin_schema publish_schema = {
	publish_fields, nitems(publish_fields), 0
};

static const struct jin_field update_fields[] = {
	{ "kind", JIN_ENUM, .flags = 0, .names = notice_kind_names },
	{ "severity", JIN_ENUM, .flags = 0, .names = notice_severity_names },
	{ "title", JIN_STRING, 0, .min = 1, .max = NOTICE_TITLE_MAX },
	{ "body", JIN_STRING, JIN_MULTILINE, .max = NOTICE_BODY_MAX },
	{ "starts_at", JIN_TIME, JIN_NULLABLE, .min = 0 },
	{ "ends_at", JIN_TIME, JIN_NULLABLE, .min = 0 },
};
static const struct jin_schema update_schema = {
	update_fields, nitems(update_fields), 0
};

static void
now_string(char *buf, size_t len)
{
	format_iso8601(buf, len, wall_usec());
}

/* ends_at, when both are set, is not before starts_at. */
static int
window_ok(json_t *notice, json_t *errors)
{
	const char	*from, *until;
	uint64_t	 a, b;

	from = json_string_value(json_object_get(notice, "starts_at"));
	until = json_string_value(json_object_get(notice, "ends_at"));
	if (from == NULL || until == NULL || jin_time_usec(from, &a) == -1 ||
	    jin_time_usec(until, &b) == -1 || b >= a)
		return 1;
	jin_error(errors, "/ends_at", "must not be before starts_at");
	return 0;
}

/* Writes the notice (and its deliveries, and meta) in one transaction. */
static int
notice_store(json_t *notice, const char *event, const char *meta_key,
    const char *meta_val, char *err, size_t errlen)
{
	struct store_batch	*batch;
	const char		*id;
	char			*text;
	int			 rv;

	if (notices.st == NULL) {
		snprintf(err, errlen, "the store is not available");
		return 503;
	}
	id = json_string_value(json_object_get(notice, "id"));
	text = json_dumps(notice, JSON_COMPACT);
	batch = store_batch_new(notices.st);
	store_batch_put(batch, NOTICE_DB, id, strlen(id), text, strlen(text));
	free(text);
	if (meta_key != NULL)
		store_batch_put(batch, NOTICE_DB, meta_key, strlen(meta_key),
		    meta_val, strlen(meta_val));
	webhook_enqueue(batch, notice, event);
	if ((rv = store_write(batch)) == STORE_OK) {
		webhook_kick();
		return 0;
	}
	snprintf(err, errlen, "storing the notice failed: %s",
	    store_strerror(rv));
	return rv == STORE_FULL ? 507 : 503;
}

static json_t *
notice_new(json_t *fields, const char *source)
{
	json_t	*n = json_deep_copy(fields);
	char	 id[64], rnd[17], now[40];

	random_hex(rnd, 8);
	snprintf(id, sizeof(id), NOTICE_PREFIX "%016llx%s",
	    (unsigned long long)wall_usec(), rnd);
	now_string(now, sizeof(now));
	json_object_set_new(n, "id", json_string(id));
	if (json_object_get(n, "body") == NULL)
		json_object_set_new(n, "body", json_string(""));
	if (json_object_get(n, "starts_at") == NULL)
		json_object_set_new(n, "starts_at", json_null());
	if (json_object_get(n, "ends_at") == NULL)
		json_object_set_new(n, "ends_at", json_null());
	json_object_set_new(n, "source", json_string(source));
	json_object_set_new(n, "created_at", json_string(now));
	json_object_set_new(n, "updated_at", json_string(now));
	return n;
}

static int
publish(json_t *fields, const char *source, const char *meta_key,
    json_t **out, json_t *errors, char *err, size_t errlen)
{
	json_t	*n;
	int	 status;

	if (out != NULL)
		*out = NULL;
	if (jin_check(fields, &publish_schema, "", errors) > 0 ||
	    !window_ok(fields, errors))
		return 400;
	n = notice_new(fields, source);
	status = notice_store(n, "notice.published", meta_key,
	    json_string_value(json_object_get(n, "id")), err, errlen);
	if (status == 0)
		log_info("notice %s published (%s, %s): %s",
		    json_string_value(json_object_get(n, "id")),
		    json_string_value(json_object_get(n, "kind")),
		    json_string_value(json_object_get(n, "severity")),
		    json_string_value(json_object_get(n, "title")));
	if (status == 0 && out != NULL)
		*out = n;
	else
		json_decref(n);
	return status;
}

int
notice_publish(json_t *fields, const char *source, json_t **out,
    json_t *errors, char *err, size_t errlen)
{
	return publish(fields, source, NULL, out, errors, err, errlen);
}

static int
id_ok(const char *id)
{
	size_t	n = strlen(NOTICE_PREFIX);

	return strncmp(id, NOTICE_PREFIX, n) == 0 && strlen(id) == n + 32 &&
	    id[n + strspn(id + n, "0123456789abcdef")] == '\0';
}

static json_t *
notice_get(const char *id, int *rv)
{
	json_t	*n;
	void	*val;
	size_t	 len;

	if (notices.st == NULL) {
		*rv = STORE_CLOSED;
		return NULL;
	}
	if ((*rv = store_get(notices.st, NOTICE_DB, id, strlen(id), &val,
	    &len)) != STORE_OK)
		return NULL;
	n = json_loadb(val, len, 0, NULL);
	free(val);
	if (n == NULL)
		*rv = STORE_CORRUPT;
	return n;
}

static int
update_locked(const char *id, json_t *fields, json_t **out, json_t *errors,
    char *err, size_t errlen)
{
	json_t	*n;
	char	 now[40];
	int	 rv, status;

	if ((n = notice_get(id, &rv)) == NULL) {
		snprintf(err, errlen, rv == STORE_NOTFOUND ? "no notice %s" :
		    "reading notice %s failed: %s", id, store_strerror(rv));
		return rv == STORE_NOTFOUND ? 404 : 503;
	}
	json_object_update(n, fields);
	if (!window_ok(n, errors)) {
		json_decref(n);
		return 400;
	}
	now_string(now, sizeof(now));
	json_object_set_new(n, "updated_at", json_string(now));
	if ((status = notice_store(n, "notice.updated", NULL, NULL, err,
	    errlen)) == 0 && out != NULL)
		*out = json_incref(n);
	json_decref(n);
	return status;
}

int
notice_update(const char *id, json_t *fields, json_t **out, json_t *errors,
    char *err, size_t errlen)
{
	int	status;

	if (out != NULL)
		*out = NULL;
	if (jin_check(fields, &update_schema, "", errors) > 0)
		return 400;
	if (json_object_size(fields) == 0) {
		jin_error(errors, "", "name at least one field to change");
		return 400;
	}
	if (!id_ok(id)) {
		snprintf(err, errlen, "no notice %.64s", id);
		return 404;
	}
	pthread_mutex_lock(&notices.mtx);
	status = update_locked(id, fields, out, errors, err, errlen);
	pthread_mutex_unlock(&notices.mtx);
	return status;
}

/* --- listing ----------------------------------------------------------- */

struct list_ctx {
	json_t		*list;
	uint64_t	 since;
};

static int
list_cb(const void *key, size_t keylen, const void *val, size_t vallen,
    void *arg)
{
	struct list_ctx	*ctx = arg;
	json_t		*n;
	uint64_t	 updated;

	if ((n = json_loadb(val, vallen, 0, NULL)) == NULL)
		return 0;
	if (jin_time_usec(json_string_value(json_object_get(n,
	    "updated_at")), &updated) == 0 && updated >= ctx->since)
		json_array_append(ctx->list, n);
	json_decref(n);
	return 0;
}

static int
by_updated(const void *a, const void *b)
{
	const char	*x, *y;

	x = json_string_value(json_object_get(*(json_t *const *)a,
	    "updated_at"));
	y = json_string_value(json_object_get(*(json_t *const *)b,
	    "updated_at"));
	return strcmp(x, y);
}

/* Notices updated at or after since, oldest first, the last 500. */
json_t *
notice_list(uint64_t since, char *err, size_t errlen)
{
	struct list_ctx	 ctx = { json_array(), since };
	json_t		**items, *out;
	size_t		 i, n, first;
	int		 rv;

	if (notices.st == NULL) {
		snprintf(err, errlen, "the store is not available");
		json_decref(ctx.list);
		return NULL;
	}
	rv = store_scan(notices.st, NOTICE_DB, NOTICE_PREFIX,
	    strlen(NOTICE_PREFIX), list_cb, &ctx);
	if (rv != STORE_OK) {
		snprintf(err, errlen, "reading notices failed: %s",
		    store_strerror(rv));
		json_decref(ctx.list);
		return NULL;
	}
	n = json_array_size(ctx.list);
	items = xcalloc(n + 1, sizeof(*items));
	for (i = 0; i < n; i++)
		items[i] = json_array_get(ctx.list, i);
	qsort(items, n, sizeof(*items), by_updated);
	out = json_array();
	first = n > NOTICE_LIST_MAX ? n - NOTICE_LIST_MAX : 0;
	for (i = first; i < n; i++)
		json_array_append(out, items[i]);
	free(items);
	json_decref(ctx.list);
	return out;
}

/* --- tenantd's own notices ---------------------------------------------- */

static int
system_publish(const char *meta_key, const char *kind, const char *severity,
    const char *title, const char *body)
{
	json_t	*fields, *errors = jin_errors();
	char	 err[256], *text;
	int	 status;

	fields = json_pack("{s:s, s:s, s:s, s:s}", "kind", kind, "severity",
	    severity, "title", title, "body", body != NULL ? body : "");
	status = publish(fields, "system", meta_key, NULL, errors, err,
	    sizeof(err));
	if (status != 0) {
		text = json_dumps(errors, JSON_COMPACT);
		log_warnx("publishing the notice \"%s\" failed: %s %s", title,
		    status == 400 ? "invalid:" : err, status == 400 ? text :
		    "");
		free(text);
	}
	json_decref(fields);
	json_decref(errors);
	return status == 0 ? 0 : -1;
}

/* Any thread. kind and severity are names from the tables above. */
int
notice_publish_system(const char *kind, const char *severity,
    const char *title, const char *body)
{
	return system_publish(NULL, kind, severity, title, body);
}

/* Publishes only if no notice was published before under dedup. */
int
notice_publish_system_once(const char *dedup, const char *kind,
    const char *severity, const char *title, const char *body)
{
	char	*key;
	void	*val;
	size_t	 len;
	int	 rv;

	if (notices.st == NULL)
		return -1;
	xasprintf(&key, META_PREFIX "%s", dedup);
	rv = store_get(notices.st, NOTICE_DB, key, strlen(key), &val, &len);
	if (rv == STORE_OK) {
		free(val);
		free(key);
		return 0;
	}
	rv = system_publish(key, kind, severity, title, body);
	free(key);
	return rv;
}

/* A small value kept beside the notices (last certificate seen, ...). */
char *
notice_meta_get(const char *name)
{
	char	*key, *s = NULL;
	void	*val;
	size_t	 len;

	if (notices.st == NULL)
		return NULL;
	xasprintf(&key, META_PREFIX "%s", name);
	if (store_get(notices.st, NOTICE_DB, key, strlen(key), &val, &len) ==
	    STORE_OK) {
		s = xstrndup(val, len);
		free(val);
	}
	free(key);
	return s;
}

int
notice_meta_put(const char *name, const char *value)
{
	struct store_batch	*batch;
	char			*key;

	if (notices.st == NULL)
		return -1;
	xasprintf(&key, META_PREFIX "%s", name);
	batch = store_batch_new(notices.st);
	store_batch_put(batch, NOTICE_DB, key, strlen(key), value,
	    strlen(value));
	free(key);
	return store_write(batch) == STORE_OK ? 0 : -1;
}

void
notice_set_store(struct store *st)
{
	notices.st = st;
}
