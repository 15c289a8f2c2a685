/*
 * audit-export.c: filters and the CSV, JSON and JSON Lines exports,
 * produced a bounded chunk at a time (each chunk in its own read
 * transaction) so that any number of records streams in constant memory.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "tenantd.h"
#include "audit.h"

#define HASH_LEN	32
#define CSV_BOM		"\xef\xbb\xbf"
#define CSV_HEADER	"seq,ts,actor,actor_roles,action,target,outcome," \
			"status,request_id,client_app,source,details,hash\r\n"

struct audit_export {
	struct audit_filter	 f;
	uint64_t		 next;		/* the next seq to read */
	uint64_t		 rows;
	uint64_t		 chunks;
	int			 started, done, paused, comma;
	struct evbuffer		*out;
	size_t			 base, max;
	struct abuf		 row, cell;
};

static const char *const formats[] = {
	[AUDIT_CSV] = "csv", [AUDIT_JSON] = "json", [AUDIT_JSONL] = "jsonl",
};

static const char *const ctypes[] = {
	[AUDIT_CSV] = "text/csv; charset=utf-8",
	[AUDIT_JSON] = "application/json",
	[AUDIT_JSONL] = "application/jsonl",
};

const char *
audit_export_ctype(const struct audit_filter *f)
{
	return ctypes[f->format];
}

/* --- filters --------------------------------------------------------------- */

/* Fractional seconds ".5" -> microseconds; s is advanced. */
static int
parse_frac(const char **sp, uint64_t *us)
{
	const char	*s = *sp;
	int		 i;

	for (i = 0, s++; *s >= '0' && *s <= '9'; s++, i++)
		if (i < 6)
			*us = *us * 10 + (uint64_t)(*s - '0');
	if (i == 0)
		return -1;
	for (; i < 6; i++)
		*us *= 10;
	*sp = s;
	return 0;
}

/*
 * 2026-11-29 or 2026-11-29T10:00:00[.ffffff](Z|+00:00) into the canonical
 * ts form. A bare date as an upper bound means the end of that day.
 */
static int
parse_time(const char *s, int upper, char *out, size_t outlen)
{
	struct tm	tm;
	uint64_t	us = 0;
	time_t		t;
	int		n = 0, date_only = 1;

	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	    &n) != 3 || n != 10)
		return -1;
	if (*(s += n) == 'T') {
		date_only = n = 0;
		if (sscanf(s, "T%2d:%2d:%2d%n", &tm.tm_hour, &tm.tm_min,
		    &tm.tm_sec, &n) != 3 || n != 9)
			return -1;
		if (*(s += n) == '.' && parse_frac(&s, &us) == -1)
			return -1;
		if (strcmp(s, "Z") != 0 && strcmp(s, "+00:00") != 0)
			return -1;
		s += strlen(s);
	}
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	if (*s != '\0' || tm.tm_mon < 0 || tm.tm_mon > 11 ||
	    tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
	    tm.tm_min > 59 || tm.tm_sec > 60 || (t = timegm(&tm)) == (time_t)-1)
		return -1;
	us += (uint64_t)t * 1000000;
	if (date_only && upper)
		us += 86400ULL * 1000000 - 1;
	format_iso8601(out, outlen, us);
	return 0;
}

static int
filter_range(struct audit_filter *f, int to, const char *v, char *err,
    size_t errlen)
{
	uint64_t	*seq = to ? &f->to_seq : &f->from_seq;
	char		*ts = to ? f->to_ts : f->from_ts;

	if (*v != '\0' && strspn(v, "0123456789") == strlen(v) &&
	    strlen(v) < 20) {
		*seq = strtoull(v, NULL, 10);
		return 0;
	}
	if (parse_time(v, to, ts, sizeof(f->from_ts)) == 0)
		return 0;
	snprintf(err, errlen, "%s: expected a sequence number or an ISO 8601 "
	    "UTC time (2026-11-29 or 2026-11-29T10:00:00Z)", to ? "to" :
	    "from");
	return -1;
}

static int
filter_choice(const char *key, const char *v, const char *const *names,
    size_t n, int *out, char *err, size_t errlen)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (strcmp(v, names[i]) == 0) {
			*out = (int)i;
			return 0;
		}
	snprintf(err, errlen, "%s: '%.32s' is not one of %s%s%s%s%s", key, v,
	    names[0], n > 1 ? ", " : "", n > 1 ? names[1] : "",
	    n > 2 ? ", " : "", n > 2 ? names[2] : "");
	return -1;
}

static int
filter_action(struct audit_filter *f, const char *v, char *err, size_t len)
{
	size_t		i, n = strlen(v);

	if (n >= 2 && strcmp(v + n - 2, ".*") == 0) {
		for (i = 0; i < audit_nactions; i++)
			if (strncmp(audit_actions[i].name, v, n - 1) == 0)
				break;
	} else
		i = audit_action_find(v) != NULL ? 0 : audit_nactions;
	if (i == audit_nactions || n >= sizeof(f->action)) {
		snprintf(err, len, "action: no action '%.64s' (see tenantctl "
		    "audit actions)", v);
		return -1;
	}
	strlcpy(f->action, v, sizeof(f->action));
	return 0;
}

/* One query parameter or tenantctl option; the same names everywhere. */
int
audit_filter_set(struct audit_filter *f, const char *key, const char *v,
    char *err, size_t errlen)
{
	static const char *const outcomes[] = { "ok", "denied", "error" };
	static const char *const bools[] = { "0", "1" };
	int			 i;

	if (strcmp(key, "from") == 0 || strcmp(key, "to") == 0)
		return filter_range(f, key[0] == 't', v, err, errlen);
	if (strcmp(key, "actor") == 0 && strlen(v) < sizeof(f->actor)) {
		strlcpy(f->actor, v, sizeof(f->actor));
		return 0;
	}
	if (strcmp(key, "action") == 0)
		return filter_action(f, v, err, errlen);
	if (strcmp(key, "outcome") == 0) {
		if (filter_choice(key, v, outcomes, 3, &i, err, errlen) == -1)
			return -1;
		strlcpy(f->outcome, v, sizeof(f->outcome));
		return 0;
	}
	if (strcmp(key, "format") == 0)
		return filter_choice(key, v, formats, nitems(formats),
		    (int *)&f->format, err, errlen);
	if (strcmp(key, "bom") == 0)
		return filter_choice(key, v, bools, 2, &f->bom, err, errlen);
	snprintf(err, errlen, "unknown parameter '%.32s' (from, to, actor, "
	    "action, outcome, format, bom)", key);
	return -1;
}

static int
str_matches(const struct audit_view *v, enum audit_field fld,
    const char *want, struct abuf *tmp)
{
	abuf_reserve(tmp, v->len[fld] + 1);
	audit_unquote(v->tok[fld], v->len[fld], tmp->p);
	return strcmp(tmp->p, want) == 0;
}

static int
filter_match(struct audit_export *e, const struct audit_view *v)
{
	const struct audit_filter	*f = &e->f;
	char				 ts[40];
	size_t				 n = strlen(f->action);

	if (f->actor[0] && !str_matches(v, AF_ACTOR, f->actor, &e->cell))
		return 0;
	if (f->outcome[0] && !audit_is(v, AF_OUTCOME, f->outcome))
		return 0;
	if (n > 2 && strcmp(f->action + n - 2, ".*") == 0) {
		if (v->len[AF_ACTION] < n || memcmp(v->tok[AF_ACTION] + 1,
		    f->action, n - 1) != 0)
			return 0;
	} else if (n > 0 && !audit_is(v, AF_ACTION, f->action))
		return 0;
	if (f->from_ts[0] || f->to_ts[0]) {
		if (v->len[AF_TS] >= sizeof(ts))
			return 0;
		audit_unquote(v->tok[AF_TS], v->len[AF_TS], ts);
		if ((f->from_ts[0] && strcmp(ts, f->from_ts) < 0) ||
		    (f->to_ts[0] && strcmp(ts, f->to_ts) > 0))
			return 0;
	}
	return 1;
}

/* --- formats --------------------------------------------------------------- */

/*
 * RFC 4180: quote a cell holding a comma, quote, CR or LF; double quotes.
 * A cell that a spreadsheet would read as a formula gets a leading '.
 */
static void
csv_cell(struct abuf *row, const char *s, size_t n, int last)
{
	int	guard = n > 0 && strchr("=+-@\t\r\n", s[0]) != NULL;
	int	quote = memchr(s, ',', n) || memchr(s, '"', n) ||
	    memchr(s, '\r', n) || memchr(s, '\n', n);
	size_t	i, run = 0;

	if (quote)
		abuf_add(row, "\"", 1);
	if (guard)
		abuf_add(row, "'", 1);
	for (i = 0; quote && i < n; i++)
		if (s[i] == '"') {
			abuf_add(row, s + run, i + 1 - run);
			abuf_add(row, "\"", 1);
			run = i + 1;
		}
	abuf_add(row, s + run, n - run);
	if (quote)
		abuf_add(row, "\"", 1);
	abuf_add(row, last ? "\r\n" : ",", last ? 2 : 1);
}

static void
csv_string(struct audit_export *e, const struct audit_view *v,
    enum audit_field f)
{
	size_t	n;

	abuf_reserve(&e->cell, v->len[f] + 1);
	n = audit_unquote(v->tok[f], v->len[f], e->cell.p);
	csv_cell(&e->row, e->cell.p, n, 0);
}

/* ["admin","auditor"] -> admin auditor */
static void
csv_roles(struct audit_export *e, const struct audit_view *v)
{
	const char	*p = v->tok[AF_ACTOR_ROLES];
	size_t		 i, o = 0, len = v->len[AF_ACTOR_ROLES];

	abuf_reserve(&e->cell, len + 1);
	for (i = 1; i + 1 < len; i++)
		if (p[i] == ',')
			e->cell.p[o++] = ' ';
		else if (p[i] != '"')
			e->cell.p[o++] = p[i];
	csv_cell(&e->row, e->cell.p, o, 0);
}

static void
format_csv(struct audit_export *e, const struct audit_view *v,
    const char *hash)
{
	csv_cell(&e->row, v->tok[AF_SEQ], v->len[AF_SEQ], 0);
	csv_string(e, v, AF_TS);
	csv_string(e, v, AF_ACTOR);
	csv_roles(e, v);
	csv_string(e, v, AF_ACTION);
	csv_string(e, v, AF_TARGET);
	csv_string(e, v, AF_OUTCOME);
	csv_cell(&e->row, v->tok[AF_STATUS], v->len[AF_STATUS], 0);
	csv_string(e, v, AF_REQUEST_ID);
	csv_string(e, v, AF_CLIENT_APP);
	csv_string(e, v, AF_SOURCE);
	csv_cell(&e->row, v->tok[AF_DETAILS], v->len[AF_DETAILS], 0);
	csv_cell(&e->row, hash, 2 * HASH_LEN, 1);
}

/* The canonical record with its chain value added as "hash". */
static void
format_json(struct audit_export *e, const char *canon, size_t len,
    const char *hash)
{
	if (e->f.format == AUDIT_JSON)
		abuf_str(&e->row, e->comma++ ? ",\n" : "\n");
	abuf_add(&e->row, canon, len - 1);
	abuf_printf(&e->row, ",\"hash\":\"%s\"}", hash);
	if (e->f.format == AUDIT_JSONL)
		abuf_add(&e->row, "\n", 1);
}

static int
export_cb(const void *key, size_t keylen, const void *val, size_t len,
    void *arg)
{
	struct audit_export	*e = arg;
	struct audit_view	 v;
	uint64_t		 seq = audit_key_seq(key);
	char			 hash[2 * HASH_LEN + 1];

	if (keylen != AUDIT_KEY_LEN || seq == 0)
		return 0;		/* the prune anchor */
	if (e->f.to_seq && seq > e->f.to_seq) {
		e->done = 1;
		return 1;
	}
	e->next = seq + 1;
	if (len < HASH_LEN || audit_parse((const char *)val + HASH_LEN,
	    len - HASH_LEN, &v) == -1)
		return STORE_CORRUPT;
	if (!filter_match(e, &v))
		return 0;
	audit_hex(val, HASH_LEN, hash);
	e->row.len = 0;
	if (e->f.format == AUDIT_CSV)
		format_csv(e, &v, hash);
	else
		format_json(e, (const char *)val + HASH_LEN, len - HASH_LEN,
		    hash);
	evbuffer_add(e->out, e->row.p, e->row.len);
	e->rows++;
	if (evbuffer_get_length(e->out) - e->base < e->max)
		return 0;
	e->paused = 1;
	return 1;
}

struct audit_export *
audit_export_new(const struct audit_filter *f)
{
	struct audit_export	*e;

	e = xcalloc(1, sizeof(*e));
	e->f = *f;
	e->next = f->from_seq > 0 ? f->from_seq : 1;
	return e;
}

static void
export_header(struct audit_export *e, struct evbuffer *out)
{
	if (e->f.format == AUDIT_CSV) {
		if (e->f.bom)
			evbuffer_add(out, CSV_BOM, sizeof(CSV_BOM) - 1);
		evbuffer_add(out, CSV_HEADER, sizeof(CSV_HEADER) - 1);
	} else if (e->f.format == AUDIT_JSON)
		evbuffer_add(out, "[", 1);
}

/*
 * Append about max bytes of rows to out. Returns 1 while there is more, 0
 * once the export is complete (trailer written), or a store_status.
 */
int
audit_export_fill(struct audit_export *e, struct evbuffer *out, size_t max)
{
	uint8_t	key[AUDIT_KEY_LEN];
	int	rv;

	if (audit_store() == NULL)
		return STORE_CLOSED;
	if (!e->started) {
		export_header(e, out);
		e->started = 1;
	}
	if (!e->done) {
		e->out = out;
		e->base = evbuffer_get_length(out);
		e->max = max;
		e->paused = 0;
		audit_seq_key(e->next, key);
		rv = store_scan_from(audit_store(), AUDIT_DB, key, sizeof(key),
		    export_cb, e);
		e->out = NULL;
		if (rv < 0)
			return rv;
		/* keep a long export's resident set flat */
		if ((e->chunks++ & 15) == 15)
			store_release_pages(audit_store());
		if (e->paused)
			return 1;
		e->done = 1;
	}
	if (e->f.format == AUDIT_JSON)
		evbuffer_add(out, e->comma ? "\n]\n" : "]\n",
		    e->comma ? 3 : 2);
	return 0;
}

uint64_t
audit_export_rows(const struct audit_export *e)
{
	return e->rows;
}

void
audit_export_free(struct audit_export *e)
{
	if (e == NULL)
		return;
	abuf_free(&e->row);
	abuf_free(&e->cell);
	free(e);
}
