/*
 * api-json.c: the JSON request body of an API handler: media type, parse
 * (json-input.c) and the 400/415 problem when it is not usable.
 */
#include "config.h"

#include <string.h>
#include <strings.h>

#include "http.h"

static int
media_type_json(const char *ctype)
{
	size_t	len = strlen("application/json");

	return ctype != NULL && strncasecmp(ctype, "application/json",
	    len) == 0 && (ctype[len] == '\0' || ctype[len] == ';' ||
	    ctype[len] == ' ');
}

/*
 * The body as a JSON object, or NULL after answering 415 (not
 * application/json) or 400 (with errors by JSON pointer).
 */
json_t *
api_json_body(struct request *req)
{
	const void	*body;
	json_t		*errors, *value;
	size_t		 len;

	if (!media_type_json(http_header(req, "Content-Type"))) {
		http_problem(req, 415, "unsupported-media-type",
		    "the body must be application/json");
		return NULL;
	}
	body = http_body(req, &len);
	errors = jin_errors();
	if ((value = jin_parse(body, len, errors)) == NULL) {
		http_problem_errors(req, 400, "invalid-json", errors,
		    "the body is not valid JSON");
		return NULL;
	}
	if (!json_is_object(value)) {
		json_decref(value);
		jin_error(errors, "", "must be a JSON object");
		http_problem_errors(req, 400, "invalid-body", errors,
		    "the body must be a JSON object");
		return NULL;
	}
	json_decref(errors);
	return value;
}

/* Answers a 4xx/5xx status from a module: errors, or err as detail. */
void
api_fail(struct request *req, int status, json_t *errors, const char *err)
{
	if (json_array_size(errors) > 0) {
		http_problem_errors(req, status, status == 422 ?
		    "unprocessable" : "invalid-body", json_incref(errors),
		    "%s", status == 422 ? "the request cannot be applied" :
		    "the body has invalid fields");
		return;
	}
	http_problem(req, status, status == 404 ? "not-found" :
	    status == 507 ? "storage-full" : "unavailable", "%s", err);
}
