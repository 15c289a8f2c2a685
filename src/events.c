/*
 * events.c: usage events in the store: the checks an event must pass, the
 * write batch (events, per-day aggregates, distinct-user markers) and the
 * summary read back from the aggregates. Record keys hold no personal
 * data, only pseudonyms, dates and the [a-z0-9._-] names of apps/events:
 *
 *   events       PSEUDONYM/TS_US(16 hex)SEQ(8 hex) -> the event as JSON
 *   event_days   YYYY-MM-DD/APP/NAME -> {count, metrics: {m: {n, sum,
 *                min, max}}}, read-modify-written in the writer thread
 *   event_users  YYYY-MM-DD/APP/NAME/PSEUDONYM -> "1" (distinct users)
 */
#include "config.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tenantd.h"

#define DAY_LEN			10	/* YYYY-MM-DD */
#define SUMMARY_DAYS_MAX	366
#define AGG_METRICS_MAX		64	/* metrics per aggregate */

static uint32_t	events_seq;	/* atomic: unique key suffix */

/* --- checks -------------------------------------------------------- */

static const struct jin_schema any_object = { NULL, 0, 1 };

#define NAME_FIELD(n) { .name = (n), .type = JIN_STRING, \
	.flags = JIN_REQUIRED, .min = 1, .max = EVENTS_NAME_MAX, \
	.charset = EVENTS_NAME_CHARS, \
	.charset_name = "a-z, 0-9, '.', '_' and '-'" }

static const struct jin_field event_fields[] = {
	NAME_FIELD("name"),
	NAME_FIELD("app"),
	{ .name = "ts", .type = JIN_TIME },
	{ .name = "props", .type = JIN_OBJECT, .sub = &any_object },
	{ .name = "metrics", .type = JIN_OBJECT, .sub = &any_object },
};
static const struct jin_schema event_schema = {
	event_fields, nitems(event_fields), 0
};
static const struct jin_field event_item = {
	.name = "", .type = JIN_OBJECT, .sub = &event_schema
};
static const struct jin_field body_fields[] = {
	{ .name = "events", .type = JIN_ARRAY, .flags = JIN_REQUIRED,
	    .min = 1, .max = EVENTS_BATCH_MAX, .items = &event_item },
};
static const struct jin_schema body_schema = {
	body_fields, nitems(body_fields), 0
};

static int
is_address_char(int c)
{
	return isalnum((unsigned char)c) || strchr("._%+-'", c) != NULL;
}

/*
 * Something shaped like an e-mail address or a user principal name:
 * LOCAL@DOMAIN.TLD anywhere in the text, '@' also written %40 or as the
 * full-width U+FF20.
 */
int
events_looks_like_address(const char *s)
{
	const char	*at, *p;
	size_t		 atlen, dots;

	for (p = s; *p != '\0'; p++) {
		if (*p == '@')
			atlen = 1;
		else if (strncasecmp(p, "%40", 3) == 0)
			atlen = 3;
		else if (strncmp(p, "\xef\xbc\xa0", 3) == 0)
			atlen = 3;
		else
			continue;
		at = p;
		if (at == s || !is_address_char(at[-1]))
			continue;
		for (p = at + atlen, dots = 0; isalnum((unsigned char)*p) ||
		    *p == '-' || (*p == '.' && isalnum((unsigned char)p[1]));
		    p++)
			dots += *p == '.';
		if (dots > 0)
			return 1;
		p = at + atlen - 1;
	}
	return 0;
}

/* base + "/" + name as an RFC 6901 pointer ("~" is "~0", "/" is "~1"). */
static void
ptr_member(char *out, size_t outlen, const char *base, const char *name)
{
	size_t	n;

	n = strlcpy(out, base, outlen);
	if (n + 1 < outlen)
		out[n++] = '/';
	for (; *name != '\0' && n + 3 < outlen; name++) {
		if (*name == '~' || *name == '/') {
			out[n++] = '~';
			out[n++] = *name == '~' ? '0' : '1';
		} else
			out[n++] = *name;
	}
	out[MINIMUM(n, outlen - 1)] = '\0';
}

static int
name_ok(const char *s)
{
	size_t	len = strlen(s);

	return len >= 1 && len <= EVENTS_NAME_MAX &&
	    s[strspn(s, EVENTS_NAME_CHARS)] == '\0';
}

static int
utf8_len(const char *s)
{
	int	n = 0;

	for (; *s != '\0'; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

static int
has_control(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

/* One props value; 0 or 1 problem added. */
static int
check_prop(const char *ptr, json_t *v, json_t *errors)
{
	const char	*s = json_string_value(v);

	if (s == NULL)
		jin_error(errors, ptr, "must be a string");
	else if (utf8_len(s) > EVENTS_PROP_LEN)
		jin_error(errors, ptr, "must be at most %d characters",
		    EVENTS_PROP_LEN);
	else if (has_control(s))
		jin_error(errors, ptr, "must not contain control characters");
	else if (events_looks_like_address(s))
		jin_error(errors, ptr, "looks like an e-mail address or user "
		    "principal name; personal data is not accepted");
	else
		return 0;
	return 1;
}

static int
check_metric(const char *ptr, json_t *v, json_t *errors)
{
	if (json_is_number(v) && isfinite(json_number_value(v)))
		return 0;
	jin_error(errors, ptr, "must be a finite number");
	return 1;
}

/* props or metrics: bounded maps of [a-z0-9._-] names. */
static int
check_map(json_t *event, const char *field, const char *base, size_t max,
    int (*check)(const char *, json_t *, json_t *), json_t *errors)
{
	json_t		*map = json_object_get(event, field), *v;
	const char	*name;
	char		 ptr[JIN_POINTER_MAX], mptr[JIN_POINTER_MAX];
	int		 bad = 0;

	if (map == NULL)
		return 0;
	ptr_member(mptr, sizeof(mptr), base, field);
	if (json_object_size(map) > max) {
		jin_error(errors, mptr, "must have at most %zu entries", max);
		return 1;
	}
	json_object_foreach(map, name, v) {
		ptr_member(ptr, sizeof(ptr), mptr, name);
		if (!name_ok(name)) {
			jin_error(errors, ptr, "names must be 1 to %d of a-z, "
			    "0-9, '.', '_' and '-'", EVENTS_NAME_MAX);
			bad++;
		} else
			bad += check(ptr, v, errors);
	}
	return bad;
}

/* ts within [now - 7 days, now + 5 minutes]; server time when absent. */
static int
check_ts(json_t *event, const char *base, uint64_t now_us, json_t *errors)
{
	const char	*s = json_string_value(json_object_get(event, "ts"));
	char		 ptr[JIN_POINTER_MAX], ts[40];
	uint64_t	 t;

	if (s == NULL) {
		format_iso8601(ts, sizeof(ts), now_us);
		json_object_set_new(event, "ts", json_string(ts));
		return 0;
	}
	if (jin_time_usec(s, &t) == -1)
		return 1;	/* reported by the schema */
	if (t + (uint64_t)EVENTS_PAST_MAX * 1000000 >= now_us &&
	    t <= now_us + (uint64_t)EVENTS_FUTURE_MAX * 1000000)
		return 0;
	ptr_member(ptr, sizeof(ptr), base, "ts");
	jin_error(errors, ptr, "must be at most 7 days old and at most 5 "
	    "minutes ahead of the server's clock");
	return 1;
}

/*
 * A POST /v1/events body: every problem by JSON pointer into errors;
 * absent timestamps are filled in with now. Returns the problem count.
 */
int
events_check(json_t *body, uint64_t now_us, json_t *errors)
{
	json_t	*events, *ev;
	char	 base[32];
	size_t	 i;
	int	 bad;

	bad = jin_check(body, &body_schema, "", errors);
	if (!json_is_array(events = json_object_get(body, "events")) ||
	    json_array_size(events) > EVENTS_BATCH_MAX)
		return bad;
	json_array_foreach(events, i, ev) {
		if (!json_is_object(ev))
			continue;
		snprintf(base, sizeof(base), "/events/%zu", i);
		bad += check_map(ev, "props", base, EVENTS_PROPS_MAX,
		    check_prop, errors);
		bad += check_map(ev, "metrics", base, EVENTS_METRICS_MAX,
		    check_metric, errors);
		bad += check_ts(ev, base, now_us, errors);
	}
	return bad;
}

/* --- aggregates ---------------------------------------------------- */

static void
day_of(uint64_t usec, char *out, size_t outlen)
{
	struct tm	tm;
	time_t		t = (time_t)(usec / 1000000);

	gmtime_r(&t, &tm);
	strftime(out, outlen, "%Y-%m-%d", &tm);
}

static double
num(json_t *o, const char *key)
{
	return json_number_value(json_object_get(o, key));
}

/* Fold metric statistics b into a (both {n, sum, min, max}). */
static void
stat_merge(json_t *a, json_t *b)
{
	json_object_set_new(a, "n", json_integer(
	    json_integer_value(json_object_get(a, "n")) +
	    json_integer_value(json_object_get(b, "n"))));
	json_object_set_new(a, "sum", json_real(num(a, "sum") +
	    num(b, "sum")));
	json_object_set_new(a, "min", json_real(MINIMUM(num(a, "min"),
	    num(b, "min"))));
	json_object_set_new(a, "max", json_real(MAXIMUM(num(a, "max"),
	    num(b, "max"))));
}

/* Fold aggregate delta into agg; at most AGG_METRICS_MAX metric names. */
void
events_agg_merge(json_t *agg, json_t *delta)
{
	json_t		*am, *dm, *s, *v;
	const char	*name;

	json_object_set_new(agg, "count", json_integer(
	    json_integer_value(json_object_get(agg, "count")) +
	    json_integer_value(json_object_get(delta, "count"))));
	if ((am = json_object_get(agg, "metrics")) == NULL) {
		am = json_object();
		json_object_set_new(agg, "metrics", am);
	}
	dm = json_object_get(delta, "metrics");
	json_object_foreach(dm, name, v) {
		if ((s = json_object_get(am, name)) != NULL)
			stat_merge(s, v);
		else if (json_object_size(am) < AGG_METRICS_MAX)
			json_object_set_new(am, name, json_deep_copy(v));
	}
}

/* The delta one event adds to its aggregate. */
static json_t *
event_delta(json_t *ev)
{
	json_t		*metrics = json_object(), *v;
	const char	*name;
	double		 x;

	json_object_foreach(json_object_get(ev, "metrics"), name, v) {
		x = json_number_value(v);
		json_object_set_new(metrics, name, json_pack("{s:i, s:f, s:f, "
		    "s:f}", "n", 1, "sum", x, "min", x, "max", x));
	}
	return json_pack("{s:i, s:o}", "count", 1, "metrics", metrics);
}

/* Runs in the writer, inside the batch's transaction: rerunnable. */
static int
agg_hook(struct store_txn *t, void *arg)
{
	json_t		*deltas = arg, *delta, *agg;
	const char	*key;
	void		*val;
	size_t		 len;
	char		*text;
	int		 rv;

	json_object_foreach(deltas, key, delta) {
		rv = store_txn_get(t, EVENTS_DAYS_DB, key, strlen(key), &val,
		    &len);
		if (rv == STORE_NOTFOUND)
			agg = json_object();
		else if (rv != STORE_OK)
			return rv;
		else {
			agg = json_loadb(val, len, 0, NULL);
			free(val);
			if (agg == NULL)
				return STORE_CORRUPT;
		}
		events_agg_merge(agg, delta);
		text = json_dumps(agg, JSON_COMPACT);
		json_decref(agg);
		rv = store_txn_put(t, EVENTS_DAYS_DB, key, strlen(key), text,
		    strlen(text));
		free(text);
		if (rv != STORE_OK)
			return rv;
	}
	return STORE_OK;
}

static void
deltas_free(void *arg)
{
	json_decref(arg);
}

/* --- the write batch ----------------------------------------------------- */

static int
put_json(struct store_batch *b, const char *db, const char *key, json_t *v)
{
	char	*text = json_dumps(v, JSON_COMPACT);
	int	 rv;

	if (text == NULL)
		return STORE_INVALID;
	rv = store_batch_put(b, db, key, strlen(key), text, strlen(text));
	free(text);
	return rv;
}

static int
add_event(struct store_batch *b, const char *pseudonym, json_t *ev,
    json_t *deltas)
{
	const char	*app = json_string_value(json_object_get(ev, "app"));
	const char	*name;
	json_t		*d, *have;
	uint64_t	 ts;
	char		 key[EVENTS_KEY_MAX], day[DAY_LEN + 1], agg[160];
	int		 rv;

	name = json_string_value(json_object_get(ev, "name"));
	if (jin_time_usec(json_string_value(json_object_get(ev, "ts")),
	    &ts) == -1)
		return STORE_INVALID;
	snprintf(key, sizeof(key), "%s/%016llx%08x", pseudonym,
	    (unsigned long long)ts, __atomic_add_fetch(&events_seq, 1,
	    __ATOMIC_RELAXED));
	if ((rv = put_json(b, EVENTS_DB, key, ev)) != STORE_OK)
		return rv;
	day_of(ts, day, sizeof(day));
	snprintf(agg, sizeof(agg), "%s/%s/%s", day, app, name);
	d = event_delta(ev);
	if ((have = json_object_get(deltas, agg)) != NULL) {
		events_agg_merge(have, d);
		json_decref(d);
		return STORE_OK;
	}
	json_object_set_new(deltas, agg, d);
	snprintf(key, sizeof(key), "%s/%s", agg, pseudonym);
	return store_batch_put(b, EVENTS_USERS_DB, key, strlen(key), "1", 1);
}

/*
 * A batch storing checked events (events_check) of one user with their
 * aggregates; the caller adds its audit record and submits it.
 */
struct store_batch *
events_batch(struct store *st, const char *pseudonym, json_t *events)
{
	struct store_batch	*b = store_batch_new(st);
	json_t			*deltas = json_object(), *ev;
	size_t			 i;
	int			 rv = STORE_OK;

	json_array_foreach(events, i, ev)
		if ((rv = add_event(b, pseudonym, ev, deltas)) != STORE_OK)
			break;
	if (rv != STORE_OK) {
		json_decref(deltas);
		store_batch_free(b);
		return NULL;
	}
	store_batch_hook(b, agg_hook, deltas, deltas_free);
	return b;
}

/* --- the summary --------------------------------------------------------- */

struct summary {
	const struct events_query *q;
	const char	*day;
	json_t		*groups;	/* group -> aggregate */
	json_t		*users;		/* group -> {pseudonym} */
};

/* "DAY/APP/NAME[/P]" -> parts; 0 when the key has that shape. */
static int
split_key(const char *key, size_t len, char parts[][96], size_t nparts)
{
	size_t	i, n, at = 0;

	for (i = 0; i < nparts; i++) {
		for (n = 0; at + n < len && key[at + n] != '/'; n++)
			;
		if (n == 0 || n >= sizeof(parts[i]))
			return -1;
		memcpy(parts[i], key + at, n);
		parts[i][n] = '\0';
		at += n + 1;
	}
	return at == len + 1 ? 0 : -1;
}

static const char *
group_of(struct summary *s, char parts[][96])
{
	const struct events_query *q = s->q;

	if ((q->app[0] != '\0' && strcmp(q->app, parts[1]) != 0) ||
	    (q->name[0] != '\0' && strcmp(q->name, parts[2]) != 0))
		return NULL;
	return q->group_by == EVENTS_BY_DAY ? parts[0] :
	    q->group_by == EVENTS_BY_APP ? parts[1] : parts[2];
}

static int
summary_agg(const void *key, size_t keylen, const void *val, size_t len,
    void *arg)
{
	struct summary	*s = arg;
	char		 parts[3][96];
	const char	*g;
	json_t		*agg, *have;

	if (split_key(key, keylen, parts, 3) == -1 ||
	    (g = group_of(s, parts)) == NULL)
		return 0;
	if ((agg = json_loadb(val, len, 0, NULL)) == NULL)
		return STORE_CORRUPT;
	if ((have = json_object_get(s->groups, g)) != NULL) {
		events_agg_merge(have, agg);
		json_decref(agg);
	} else
		json_object_set_new(s->groups, g, agg);
	return 0;
}

static int
summary_user(const void *key, size_t keylen, const void *val, size_t len,
    void *arg)
{
	struct summary	*s = arg;
	char		 parts[4][96];
	const char	*g;
	json_t		*set;

	if (split_key(key, keylen, parts, 4) == -1 ||
	    (g = group_of(s, parts)) == NULL)
		return 0;
	if ((set = json_object_get(s->users, g)) == NULL) {
		set = json_object();
		json_object_set_new(s->users, g, set);
	}
	json_object_set_new(set, parts[3], json_true());
	return 0;
}

static json_t *
summary_group(const char *key, json_t *agg, json_t *users)
{
	json_t		*metrics = json_object(), *st;
	const char	*name;
	json_int_t	 n;

	json_object_foreach(json_object_get(agg, "metrics"), name, st) {
		n = json_integer_value(json_object_get(st, "n"));
		json_object_set_new(metrics, name, json_pack("{s:f, s:f, s:f, "
		    "s:f}", "sum", num(st, "sum"), "min", num(st, "min"),
		    "max", num(st, "max"), "avg", n > 0 ? num(st, "sum") / n :
		    0.0));
	}
	return json_pack("{s:s, s:O, s:I, s:o}", "key", key, "count",
	    json_object_get(agg, "count"), "users",
	    (json_int_t)json_object_size(json_object_get(users, key)),
	    "metrics", metrics);
}

static int
key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static json_t *
summary_result(struct summary *s)
{
	json_t		*out = json_array(), *agg;
	const char	*key, **keys;
	size_t		 i = 0, n = json_object_size(s->groups);

	keys = xcalloc(n + 1, sizeof(*keys));
	json_object_foreach(s->groups, key, agg)
		keys[i++] = key;
	qsort(keys, n, sizeof(*keys), key_cmp);
	for (i = 0; i < n; i++)
		json_array_append_new(out, summary_group(keys[i],
		    json_object_get(s->groups, keys[i]), s->users));
	free(keys);
	return out;
}

/* Days from..to (YYYY-MM-DD) as Unix days; -1 when not a date/range. */
int
events_days(const char *from, const char *to, int64_t *d0, int64_t *d1)
{
	char		 a[32], b[32];
	int64_t		 t0, t1;

	snprintf(a, sizeof(a), "%sT00:00:00Z", from);
	snprintf(b, sizeof(b), "%sT00:00:00Z", to);
	if (strlen(from) != DAY_LEN || strlen(to) != DAY_LEN ||
	    jin_time_parse(a, &t0) == -1 || jin_time_parse(b, &t1) == -1)
		return -1;
	*d0 = t0 / 86400;
	*d1 = t1 / 86400;
	return *d1 >= *d0 && *d1 - *d0 < SUMMARY_DAYS_MAX ? 0 : -1;
}

/* The summary of q (dates checked by events_days); NULL on a store error. */
json_t *
events_summary(struct store *st, const struct events_query *q, int *status)
{
	struct summary	 s = { q, NULL, json_object(), json_object() };
	json_t		*groups = NULL;
	int64_t		 d, d0, d1;
	char		 prefix[DAY_LEN + 2];
	int		 rv = STORE_OK;

	if (events_days(q->from, q->to, &d0, &d1) == -1) {
		rv = STORE_INVALID;
		goto done;
	}
	for (d = d0; d <= d1 && rv == STORE_OK; d++) {
		day_of((uint64_t)d * 86400 * 1000000, prefix, sizeof(prefix));
		strlcat(prefix, "/", sizeof(prefix));
		rv = store_scan(st, EVENTS_DAYS_DB, prefix, strlen(prefix),
		    summary_agg, &s);
		if (rv == STORE_OK)
			rv = store_scan(st, EVENTS_USERS_DB, prefix,
			    strlen(prefix), summary_user, &s);
	}
	if (rv == STORE_OK)
		groups = summary_result(&s);
done:
	json_decref(s.groups);
	json_decref(s.users);
	*status = rv;
	return groups;
}

/* --- a data subject's events --------------------------------------- */

struct subject_scan {
	const char		*pseudonym;
	json_t			*out;		/* export */
	struct store_batch	*b;		/* erase: the deletes */
	const char		*db;
	size_t			 n;
};

static int
subject_event(const void *key, size_t keylen, const void *val, size_t len,
    void *arg)
{
	struct subject_scan	*ss = arg;
	json_t			*ev;

	if (ss->b != NULL)
		store_batch_del(ss->b, ss->db, key, keylen);
	else if ((ev = json_loadb(val, len, 0, NULL)) != NULL)
		json_array_append_new(ss->out, ev);
	else
		return STORE_CORRUPT;
	ss->n++;
	return 0;
}

/* Markers end in "/PSEUDONYM". */
static int
subject_marker(const void *key, size_t keylen, const void *val, size_t len,
    void *arg)
{
	struct subject_scan	*ss = arg;
	size_t			 plen = strlen(ss->pseudonym);

	if (keylen > plen && ((const char *)key)[keylen - plen - 1] == '/' &&
	    memcmp((const char *)key + keylen - plen, ss->pseudonym, plen) ==
	    0) {
		store_batch_del(ss->b, EVENTS_USERS_DB, key, keylen);
		ss->n++;
	}
	return 0;
}

static void
user_prefix(char *out, size_t outlen, const char *pseudonym)
{
	snprintf(out, outlen, "%s/", pseudonym);
}

/* Every stored event of a pseudonym, oldest first. */
int
events_subject_export(struct store *st, const char *pseudonym, json_t **out)
{
	struct subject_scan	ss = { pseudonym, json_array(), NULL, NULL,
				    0 };
	char			prefix[KEYRING_PSEUDONYM_LEN + 1];
	int			rv;

	user_prefix(prefix, sizeof(prefix), pseudonym);
	rv = store_scan(st, EVENTS_DB, prefix, strlen(prefix), subject_event,
	    &ss);
	if (rv != STORE_OK) {
		json_decref(ss.out);
		return rv;
	}
	*out = ss.out;
	return STORE_OK;
}

/*
 * Add the deletion of a pseudonym's events and distinct-user markers to b.
 * The per-day counts stay: they are not about anyone.
 */
int
events_subject_erase(struct store *st, struct store_batch *b,
    const char *pseudonym, size_t *events, size_t *markers)
{
	struct subject_scan	ss = { pseudonym, NULL, b, EVENTS_DB, 0 };
	char			prefix[KEYRING_PSEUDONYM_LEN + 1];
	int			rv;

	user_prefix(prefix, sizeof(prefix), pseudonym);
	rv = store_scan(st, EVENTS_DB, prefix, strlen(prefix), subject_event,
	    &ss);
	*events = ss.n;
	ss.n = 0;
	if (rv == STORE_OK)
		rv = store_scan(st, EVENTS_USERS_DB, NULL, 0, subject_marker,
		    &ss);
	*markers = ss.n;
	return rv;
}
