/*
 * api-audit.c: the audit trail over HTTP: the export (CSV, JSON, JSON
 * Lines, streamed in bounded chunks), verification, and the records of
 * refused requests. Reading the trail is itself recorded, fail-closed.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "http.h"

static const char *const export_params[] = {
	"from", "to", "actor", "action", "outcome", "format", "bom",
};

/* Record the read before answering; nothing is answered unrecorded. */
static int
audit_read_recorded(struct request *req, const char *action,
    const char *detail_key, const char *detail)
{
	struct audit_record	rec;
	int			rv;

	if (api_audit_begin(req, &rec, action) == -1) {
		http_problem(req, 500, "internal", "no audit action %s",
		    action);
		return -1;
	}
	if (detail != NULL && detail[0] != '\0')
		audit_record_detail(&rec, detail_key, "%.200s", detail);
	if ((rv = audit_log_now(&rec)) != STORE_OK) {
		api_store_problem(req, rv);
		return -1;
	}
	return 0;
}

static int
export_fill(void *arg, struct evbuffer *out, size_t max)
{
	int	rv = audit_export_fill(arg, out, max);

	return rv < 0 ? -1 : rv;
}

static void
export_free(void *arg)
{
	audit_export_free(arg);
}

void
api_audit_export(struct request *req)
{
	struct audit_filter	 f;
	struct audit_export	*e;
	const char		*v;
	char			 err[256], given[256] = "";
	size_t			 i;

	memset(&f, 0, sizeof(f));
	f.bom = 1;
	for (i = 0; i < nitems(export_params); i++) {
		if ((v = http_query(req, export_params[i])) == NULL)
			continue;
		if (audit_filter_set(&f, export_params[i], v, err,
		    sizeof(err)) == -1) {
			http_problem(req, 400, "bad-filter", "%s", err);
			return;
		}
		snprintf(given + strlen(given), sizeof(given) - strlen(given),
		    "%s%s=%.64s", given[0] ? "&" : "", export_params[i], v);
	}
	if (audit_read_recorded(req, "audit.export", "filter", given) == -1)
		return;
	if ((e = audit_export_new(&f)) == NULL) {
		http_problem(req, 503, "storage-unavailable", "the audit "
		    "trail is not open");
		return;
	}
	http_reply_stream(req, 200, audit_export_ctype(&f), export_fill,
	    export_free, e);
}

void
api_audit_verify(struct request *req)
{
	const char	*from = http_query(req, "from");
	char		*end;
	unsigned long long n = 0;

	if (from != NULL) {
		n = strtoull(from, &end, 10);
		if (from[0] < '0' || from[0] > '9' || *end != '\0') {
			http_problem(req, 400, "bad-filter", "from must be a "
			    "record number");
			return;
		}
	}
	if (audit_read_recorded(req, "audit.verify", "from",
	    from != NULL ? from : "") == -1)
		return;
	http_reply_json(req, 200, audit_verify(n));
}

/* A request refused with 401 or 403, rate-limited per source. */
void
api_audit_denied(struct request *req, int status, const char *reason)
{
	struct audit_record	rec;

	if (!audit_enabled() ||
	    api_audit_begin(req, &rec, "auth.denied") == -1)
		return;
	audit_record_outcome(&rec, AUDIT_DENIED, status);
	audit_record_target(&rec, "%s", http_route_pattern(req));
	audit_record_detail(&rec, "reason", "%s", reason);
	audit_denied(&rec, http_base(req));
}

/*
 * A state-changing request that failed before its handler wrote anything
 * (a bad body, a failed precondition, storage full) is recorded too, with
 * the route's action and outcome error, before the answer goes out (an
 * auditor reading right after sees it). Best effort: nothing changed.
 */
void
api_audit_failure(struct request *req, int status)
{
	const struct audit_action	*a = NULL;
	struct audit_record		 rec;
	char				 route[160];
	size_t				 i;

	if (!audit_enabled())
		return;
	snprintf(route, sizeof(route), "%s %s", http_method(req),
	    http_route_pattern(req));
	for (i = 0; i < audit_nactions && a == NULL; i++)
		if (audit_actions[i].route != NULL &&
		    strcmp(audit_actions[i].route, route) == 0)
			a = &audit_actions[i];
	if (a == NULL || api_audit_begin(req, &rec, a->name) == -1)
		return;
	audit_record_outcome(&rec, AUDIT_ERROR, status);
	audit_log_now(&rec);
}
