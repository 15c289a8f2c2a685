/*
 * settings.c: configuration values of web parts in the store, with strong
 * entity tags and conditional writes decided inside the write transaction.
 * Record keys (database "settings"): "t/KEY" (tenant), "s/SITE/KEY" (a
 * site), "u/PSEUDONYM/KEY" (a user's own); the value is
 * {"etag", "updated_at", "value"}.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "tenantd.h"

static uint64_t	settings_version;	/* atomic: etags are unique */

static int
chars_ok(const char *s, size_t max, const char *chars)
{
	size_t	len = strlen(s);

	return len >= 1 && len <= max && s[strspn(s, chars)] == '\0';
}

int
settings_key_ok(const char *key)
{
	return chars_ok(key, SETTINGS_KEY_MAX, SETTINGS_KEY_CHARS) &&
	    strcmp(key, ".") != 0 && strcmp(key, "..") != 0;
}

/*
 * The record-key prefix of a scope: "tenant", "site:SITE" or "user" (the
 * caller's, by pseudonym). 0, or -1 when the scope is not one of these.
 */
int
settings_scope_prefix(const char *scope, const char *pseudonym, char *out,
    size_t outlen)
{
	const char	*site;

	if (strcmp(scope, "tenant") == 0)
		return snprintf(out, outlen, "t/") >= (int)outlen ? -1 : 0;
	if (strcmp(scope, "user") == 0 && pseudonym != NULL &&
	    pseudonym[0] != '\0')
		return snprintf(out, outlen, "u/%s/", pseudonym) >=
		    (int)outlen ? -1 : 0;
	if (strncmp(scope, "site:", 5) == 0) {
		site = scope + 5;
		if (!chars_ok(site, SETTINGS_SITE_MAX, SETTINGS_SITE_CHARS))
			return -1;
		return snprintf(out, outlen, "s/%s/", site) >= (int)outlen ?
		    -1 : 0;
	}
	return -1;
}

/* A new strong entity tag: "VERSION-RANDOM" in hex, quoted. */
static void
settings_etag(char *out, size_t outlen)
{
	uint64_t	v, now = wall_usec(), cur;
	uint32_t	r = 0;

	cur = __atomic_load_n(&settings_version, __ATOMIC_RELAXED);
	do
		v = MAXIMUM(cur + 1, now);
	while (!__atomic_compare_exchange_n(&settings_version, &cur, v, 0,
	    __ATOMIC_RELAXED, __ATOMIC_RELAXED));
	RAND_bytes((unsigned char *)&r, sizeof(r));
	snprintf(out, outlen, "\"%016llx%08x\"", (unsigned long long)v, r);
}

/* RFC 9110 13.1.1: If-Match is "*" or a list of strong entity tags. */
static int
etag_listed(const char *list, const char *etag)
{
	const char	*p = list;
	size_t		 n, len = strlen(etag);

	while (*p != '\0') {
		p += strspn(p, " \t,");
		if (*p == '*')
			return 1;
		n = strcspn(p, ",");
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == len && timingsafe_eq(p, etag, len))
			return 1;
		p += strcspn(p, ",");
	}
	return 0;
}

/* The current record's etag; 0 found, 1 absent, or a store_status. */
static int
current_etag(struct store_txn *t, const char *key, char *etag, size_t len)
{
	json_t	*rec;
	void	*val;
	size_t	 vlen;
	int	 rv;

	rv = store_txn_get(t, SETTINGS_DB, key, strlen(key), &val, &vlen);
	if (rv == STORE_NOTFOUND)
		return 1;
	if (rv != STORE_OK)
		return rv;
	rec = json_loadb(val, vlen, 0, NULL);
	free(val);
	if (rec == NULL)
		return STORE_CORRUPT;
	strlcpy(etag, json_string_value(json_object_get(rec, "etag")) ?
	    json_string_value(json_object_get(rec, "etag")) : "", len);
	json_decref(rec);
	return 0;
}

/* The HTTP status the preconditions give, 0 when the write may go on. */
static int
precondition(const struct settings_write *w, int exists, const char *etag)
{
	if (w->if_none_match != NULL)
		return exists ? 412 : 0;
	if (w->if_match != NULL)
		return exists && etag_listed(w->if_match, etag) ? 0 : 412;
	if (exists)
		return 428;
	return w->value == NULL ? 404 : 0;
}

/* In the writer, in the batch's transaction: check, then write. */
static int
settings_hook(struct store_txn *t, void *arg)
{
	struct settings_write	*w = arg;
	char			 etag[SETTINGS_ETAG_LEN];
	int			 rv;

	w->status = 0;
	if ((rv = current_etag(t, w->key, etag, sizeof(etag))) < 0)
		return rv;
	w->existed = rv == 0;
	if ((w->status = precondition(w, w->existed, etag)) != 0)
		return STORE_INVALID;	/* fails the batch: no write */
	if (w->value == NULL)
		return store_txn_del(t, SETTINGS_DB, w->key, strlen(w->key));
	return store_txn_put(t, SETTINGS_DB, w->key, strlen(w->key),
	    w->record, strlen(w->record));
}

/*
 * Add a conditional put (w->value set) or delete to b. After the batch
 * committed, or failed with w->status set, w tells what happened.
 */
void
settings_write_add(struct store_batch *b, struct settings_write *w)
{
	json_t	*rec;
	char	 ts[40];

	if (w->value != NULL) {
		settings_etag(w->etag, sizeof(w->etag));
		format_iso8601(ts, sizeof(ts), wall_usec());
		strlcpy(w->updated_at, ts, sizeof(w->updated_at));
		rec = json_pack("{s:s, s:s, s:O}", "etag", w->etag,
		    "updated_at", ts, "value", w->value);
		w->record = json_dumps(rec, JSON_COMPACT | JSON_ENCODE_ANY);
		json_decref(rec);
	}
	store_batch_hook(b, settings_hook, w, NULL);
}

void
settings_write_clear(struct settings_write *w)
{
	free(w->record);
	w->record = NULL;
}

/* The record {etag, updated_at, value} of key, or a store_status. */
int
settings_get(struct store *st, const char *key, json_t **rec)
{
	void	*val;
	size_t	 len;
	int	 rv;

	if ((rv = store_get(st, SETTINGS_DB, key, strlen(key), &val, &len)) !=
	    STORE_OK)
		return rv;
	*rec = json_loadb(val, len, 0, NULL);
	free(val);
	return *rec != NULL ? STORE_OK : STORE_CORRUPT;
}

struct list_scan {
	const char	*prefix;
	size_t		 prefixlen;
	const char	*after;		/* cursor: the last key sent */
	size_t		 limit;
	json_t		*items;
	int		 more;
	int		 values;	/* export: with the values */
};

static int
list_one(const void *key, size_t keylen, const void *val, size_t len,
    void *arg)
{
	struct list_scan	*ls = arg;
	char			 name[SETTINGS_KEY_MAX + 1];
	json_t			*rec;

	if (keylen < ls->prefixlen || memcmp(key, ls->prefix,
	    ls->prefixlen) != 0)
		return 1;	/* past the scope */
	if (keylen - ls->prefixlen > SETTINGS_KEY_MAX)
		return 0;
	memcpy(name, (const char *)key + ls->prefixlen, keylen -
	    ls->prefixlen);
	name[keylen - ls->prefixlen] = '\0';
	if (ls->after != NULL && strcmp(name, ls->after) <= 0)
		return 0;
	if (json_array_size(ls->items) == ls->limit) {
		ls->more = 1;
		return 1;
	}
	if ((rec = json_loadb(val, len, 0, NULL)) == NULL)
		return STORE_CORRUPT;
	if (!ls->values)
		json_object_del(rec, "value");
	json_object_set_new(rec, "key", json_string(name));
	json_array_append_new(ls->items, rec);
	return 0;
}

/*
 * Up to limit records under prefix whose key sorts after `after` (NULL:
 * from the first); *more says whether others follow.
 */
int
settings_list(struct store *st, const char *prefix, const char *after,
    size_t limit, int values, json_t **items, int *more)
{
	struct list_scan	ls = { prefix, strlen(prefix), after, limit,
				    json_array(), 0, values };
	char			start[SETTINGS_RKEY_MAX];
	int			rv;

	snprintf(start, sizeof(start), "%s%s", prefix, after ? after : "");
	rv = store_scan_from(st, SETTINGS_DB, start, strlen(start), list_one,
	    &ls);
	if (rv == STORE_OK) {
		*items = ls.items;
		*more = ls.more;
		return STORE_OK;
	}
	json_decref(ls.items);
	return rv;
}

struct erase_scan {
	struct store_batch	*b;
	size_t			 n;
};

static int
erase_one(const void *key, size_t keylen, const void *val, size_t len,
    void *arg)
{
	struct erase_scan	*es = arg;

	es->n++;
	return store_batch_del(es->b, SETTINGS_DB, key, keylen) == STORE_OK ?
	    0 : STORE_INVALID;
}

/* Add the deletion of every user-scope setting of a pseudonym to b. */
int
settings_subject_erase(struct store *st, struct store_batch *b,
    const char *pseudonym, size_t *n)
{
	struct erase_scan	es = { b, 0 };
	char			prefix[SETTINGS_RKEY_MAX];
	int			rv;

	if (settings_scope_prefix("user", pseudonym, prefix,
	    sizeof(prefix)) == -1)
		return STORE_INVALID;
	rv = store_scan(st, SETTINGS_DB, prefix, strlen(prefix), erase_one,
	    &es);
	*n = es.n;
	return rv;
}
