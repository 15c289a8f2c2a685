/*
 * api-notices.c: GET /v1/notices (any user), POST /v1/admin/notices and
 * PATCH /v1/admin/notices/{id} (admin).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "http.h"

/* The "since" query parameter, in microseconds; 0 when absent. */
static int
since_param(struct request *req, uint64_t *since)
{
	json_t		*errors;
	const char	*q;

	*since = 0;
	if ((q = http_query(req, "since")) == NULL ||
	    jin_time_usec(q, since) == 0)
		return 0;
	errors = jin_errors();
	jin_error(errors, "", "since must be an RFC 3339 UTC time like "
	    "2026-11-29T10:00:00Z");
	json_object_set_new(json_array_get(errors, 0), "parameter",
	    json_string("since"));
	http_problem_errors(req, 400, "invalid-parameter", errors,
	    "the query parameter since is invalid");
	return -1;
}

void
api_notices_list(struct request *req)
{
	json_t		*list;
	uint64_t	 since;
	char		 err[256];

	if (since_param(req, &since) == -1)
		return;
	if ((list = notice_list(since, err, sizeof(err))) == NULL) {
		http_problem(req, 503, "unavailable", "%s", err);
		return;
	}
	http_reply_json(req, 200, json_pack("{s:o}", "notices", list));
}

void
api_notices_publish(struct request *req)
{
	json_t	*fields, *errors, *notice;
	char	 err[256] = "";
	int	 status;

	if ((fields = api_json_body(req)) == NULL)
		return;
	errors = jin_errors();
	status = notice_publish(fields, "admin", &notice, errors, err,
	    sizeof(err));
	json_decref(fields);
	if (status == 0)
		http_reply_json(req, 201, notice);
	else
		api_fail(req, status, errors, err);
	json_decref(errors);
}

void
api_notices_update(struct request *req)
{
	json_t	*fields, *errors, *notice;
	char	 err[256] = "";
	int	 status;

	if ((fields = api_json_body(req)) == NULL)
		return;
	errors = jin_errors();
	status = notice_update(http_param(req, "id"), fields, &notice, errors,
	    err, sizeof(err));
	json_decref(fields);
	if (status == 0)
		http_reply_json(req, 200, notice);
	else
		api_fail(req, status, errors, err);
	json_decref(errors);
}
