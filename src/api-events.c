/*
 * api-events.c: POST /v1/events (any user; stored under the caller's
 * pseudonym, answered after the durable commit) and GET
 * /v1/events/summary (admin, auditor).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "http.h"

struct ingest {
	struct request	*req;
	size_t		 n;
};

static void
ingest_done(int status, void *arg)
{
	struct ingest	*in = arg;

	if (status == STORE_OK)
		http_reply_json(in->req, 202, json_pack("{s:I}", "accepted",
		    (json_int_t)in->n));
	else
		api_store_problem(in->req, status);
	free(in);
}

static void
ingest_submit(struct request *req, json_t *events)
{
	const struct auth_principal	*p = http_principal(req);
	struct audit_record		 rec;
	struct store_batch		*b;
	struct ingest			*in;
	int				 rv;

	if ((b = events_batch(daemon_store(), p->pseudonym, events)) ==
	    NULL) {
		http_problem(req, 500, "internal", "the events could not be "
		    "prepared for storage");
		return;
	}
	in = xcalloc(1, sizeof(*in));
	in->req = req;
	in->n = json_array_size(events);
	if (api_audit_begin(req, &rec, "events.ingest") == 0) {
		audit_record_target(&rec, "events");
		audit_record_detail_int(&rec, "count", (long long)in->n);
		audit_record_outcome(&rec, AUDIT_OK, 202);
	}
	audit_batch_add(b, &rec);	/* fail-closed: no record, no write */
	if ((rv = store_submit(b, http_base(req), ingest_done, in)) !=
	    STORE_OK) {
		free(in);
		api_store_problem(req, rv);
	}
}

void
api_events_post(struct request *req)
{
	const struct auth_principal	*p = http_principal(req);
	json_t				*body, *errors;

	if (p == NULL || p->pseudonym[0] == '\0') {
		http_problem(req, 403, "no-user", "the token names no user");
		return;
	}
	if ((body = api_json_body(req)) == NULL)
		return;
	errors = jin_errors();
	if (events_check(body, wall_usec(), errors) > 0) {
		http_problem_errors(req, 400, "invalid-body", errors,
		    "the body has invalid fields");
		json_decref(body);
		return;
	}
	json_decref(errors);
	api_user_seen(req);
	ingest_submit(req, json_object_get(body, "events"));
	json_decref(body);
}

/* --- the summary --------------------------------------------------- */

static const char *const group_names[] = { "name", "app", "day", NULL };

static void
param_error(json_t *errors, const char *name, const char *detail)
{
	jin_error(errors, "", "%s: %s", name, detail);
	json_object_set_new(json_array_get(errors, json_array_size(errors) -
	    1), "parameter", json_string(name));
}

static void
day_string(char *out, size_t outlen, uint64_t usec)
{
	char	ts[40];

	format_iso8601(ts, sizeof(ts), usec);
	strlcpy(out, ts, MINIMUM(outlen, 11));
}

/* A date parameter: YYYY-MM-DD or an RFC 3339 time (its day). */
static void
date_param(struct request *req, const char *name, char *out, size_t outlen,
    json_t *errors)
{
	const char	*v = http_query(req, name);
	uint64_t	 usec;
	char		 ts[32];

	if (v == NULL)
		return;
	if (strlen(v) == 10)
		snprintf(ts, sizeof(ts), "%sT00:00:00Z", v);
	else
		strlcpy(ts, v, sizeof(ts));
	if (jin_time_usec(ts, &usec) == 0)
		day_string(out, outlen, usec);
	else
		param_error(errors, name, "must be a date YYYY-MM-DD or an "
		    "RFC 3339 UTC time");
}

static void
name_param(struct request *req, const char *name, char *out, size_t outlen,
    json_t *errors)
{
	const char	*v = http_query(req, name);

	if (v == NULL)
		return;
	if (strlen(v) < 1 || strlen(v) > EVENTS_NAME_MAX ||
	    v[strspn(v, EVENTS_NAME_CHARS)] != '\0')
		param_error(errors, name, "must be 1 to 64 of a-z, 0-9, '.', "
		    "'_' and '-'");
	else
		strlcpy(out, v, outlen);
}

static void
group_param(struct request *req, struct events_query *q, json_t *errors)
{
	const char	*v = http_query(req, "group_by");
	int		 i;

	if (v == NULL)
		return;
	for (i = 0; group_names[i] != NULL; i++)
		if (strcmp(v, group_names[i]) == 0) {
			q->group_by = i;
			return;
		}
	param_error(errors, "group_by", "must be one of: name, app, day");
}

/* The query, last 7 days by name unless told; 0, or -1 after a 400. */
static int
summary_query(struct request *req, struct events_query *q)
{
	json_t	*errors = jin_errors();
	int64_t	 d0, d1;
	uint64_t now = wall_usec();

	memset(q, 0, sizeof(*q));
	day_string(q->to, sizeof(q->to), now);
	day_string(q->from, sizeof(q->from), now - 6ULL * 86400 * 1000000);
	date_param(req, "from", q->from, sizeof(q->from), errors);
	date_param(req, "to", q->to, sizeof(q->to), errors);
	group_param(req, q, errors);
	name_param(req, "app", q->app, sizeof(q->app), errors);
	name_param(req, "name", q->name, sizeof(q->name), errors);
	if (json_array_size(errors) == 0 &&
	    events_days(q->from, q->to, &d0, &d1) == -1)
		param_error(errors, "to", "the range must run forward from "
		    "'from' and span at most 366 days");
	if (json_array_size(errors) == 0) {
		json_decref(errors);
		return 0;
	}
	http_problem_errors(req, 400, "invalid-parameter", errors,
	    "the query parameters are invalid");
	return -1;
}

void
api_events_summary(struct request *req)
{
	struct events_query	 q;
	struct audit_record	 rec;
	json_t			*groups;
	int			 rv;

	if (summary_query(req, &q) == -1)
		return;
	if ((groups = events_summary(daemon_store(), &q, &rv)) == NULL) {
		api_store_problem(req, rv);
		return;
	}
	if (api_audit_begin(req, &rec, "events.summary") == 0) {
		audit_record_target(&rec, "events");
		audit_record_outcome(&rec, AUDIT_OK, 200);
		audit_log_async(&rec, http_base(req));
	}
	http_reply_json(req, 200, json_pack("{s:s, s:s, s:s, s:s?, s:s?, "
	    "s:o}", "from", q.from, "to", q.to, "group_by",
	    group_names[q.group_by], "app", q.app[0] ? q.app : NULL, "name",
	    q.name[0] ? q.name : NULL, "groups", groups));
}
