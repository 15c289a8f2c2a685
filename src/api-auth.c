/*
 * api-auth.c: the signing keys as operators see them: GET /v1/auth/keys
 * (auditor) and POST /v1/auth/refresh (admin, throttled like a kid miss).
 */
#include "config.h"

#include <stdio.h>

#include "http.h"

void
api_auth_keys(struct request *req)
{
	struct jwks	*j = daemon_jwks();

	if (j == NULL) {
		http_problem(req, 503, "auth-not-configured",
		    "authentication is not configured");
		return;
	}
	http_reply_json(req, 200, json_pack("{s:s, s:I}",
	    "state", jwks_state_name(jwks_state(j)),
	    "fetches", (json_int_t)jwks_fetch_count(j)));
}

void
api_auth_refresh(struct request *req)
{
	struct jwks	*j = daemon_jwks();
	char		 retry[16];

	if (j == NULL) {
		http_problem(req, 503, "auth-not-configured",
		    "authentication is not configured");
		return;
	}
	if (!jwks_kid_miss(j)) {
		snprintf(retry, sizeof(retry), "%d", JWKS_MIN_REFETCH);
		http_set_header(req, "Retry-After", retry);
		http_problem(req, 429, "refresh-throttled", "the keys were "
		    "refreshed on demand less than %d s ago",
		    JWKS_MIN_REFETCH);
		return;
	}
	http_reply_json(req, 202, json_pack("{s:s}", "refresh", "started"));
}
