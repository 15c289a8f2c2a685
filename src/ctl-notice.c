/*
 * ctl-notice.c: the notice control commands (tenantctl notice publish,
 * update, list, deliveries), answered in the daemon.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "tenantd.h"

/* errors [{pointer, detail}] or err as one message line. */
static char *
ctl_notice_error(int status, json_t *errors, const char *err)
{
	json_t	*e;
	char	*msg = NULL, *line;
	size_t	 i;

	json_array_foreach(errors, i, e) {
		xasprintf(&line, "%s%s%s: %s", msg != NULL ? msg : "",
		    msg != NULL ? "; " : "", json_string_value(json_object_get(
		    e, "pointer")) + 1, json_string_value(json_object_get(e,
		    "detail")));
		free(msg);
		msg = line;
	}
	if (msg == NULL)
		msg = xstrdup(*err != '\0' ? err : "failed");
	return msg;
}

json_t *
ctl_notice_publish(const struct ctl_peer *peer, json_t *args, char **error)
{
	json_t	*errors = jin_errors(), *notice = NULL;
	char	 err[256] = "";
	int	 status;

	status = notice_publish(args, "operator", &notice, errors, err,
	    sizeof(err));
	if (status != 0)
		*error = ctl_notice_error(status, errors, err);
	json_decref(errors);
	return notice;
}

json_t *
ctl_notice_update(const struct ctl_peer *peer, json_t *args, char **error)
{
	json_t		*errors = jin_errors(), *notice = NULL, *fields;
	const char	*id = json_string_value(json_object_get(args, "id"));
	char		 err[256] = "";
	int		 status;

	if (id == NULL) {
		*error = xstrdup("id: is required");
		json_decref(errors);
		return NULL;
	}
	fields = json_deep_copy(args);
	json_object_del(fields, "id");
	status = notice_update(id, fields, &notice, errors, err, sizeof(err));
	if (status != 0)
		*error = ctl_notice_error(status, errors, err);
	json_decref(fields);
	json_decref(errors);
	return notice;
}

json_t *
ctl_notice_list(const struct ctl_peer *peer, json_t *args, char **error)
{
	const char	*since = json_string_value(json_object_get(args,
			    "since"));
	json_t		*list;
	uint64_t	 us = 0;
	char		 err[256];

	if (since != NULL && jin_time_usec(since, &us) == -1) {
		*error = xstrdup("since: must be an RFC 3339 UTC time like "
		    "2026-11-29T10:00:00Z");
		return NULL;
	}
	if ((list = notice_list(us, err, sizeof(err))) == NULL) {
		*error = xstrdup(err);
		return NULL;
	}
	return json_pack("{s:o}", "notices", list);
}

json_t *
ctl_notice_deliveries(const struct ctl_peer *peer, json_t *args,
    char **error)
{
	return webhook_deliveries_json(200);
}
