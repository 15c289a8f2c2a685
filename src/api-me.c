/*
 * api-me.c: GET /v1/me, the caller as tenantd sees it: pseudonym, roles,
 * token version and calling app. Never the user principal name or oid.
 */
#include "config.h"

#include "http.h"

void
api_me(struct request *req)
{
	const struct auth_principal	*p = http_principal(req);
	json_t				*roles;
	unsigned			 i;

	if (p == NULL) {
		http_problem(req, 500, "internal", "no principal");
		return;
	}
	roles = json_array();
	for (i = 0; i < AUTH_NROLES; i++)
		if (p->roles & (1u << i))
			json_array_append_new(roles,
			    json_string(auth_role_name(1u << i)));
	http_reply_json(req, 200, json_pack("{s:s?, s:o, s:i, s:s?, s:b}",
	    "pseudonym", p->pseudonym[0] != '\0' ? p->pseudonym : NULL,
	    "roles", roles, "token_version", p->version,
	    "app_id", p->app_id[0] != '\0' ? p->app_id : NULL,
	    "app_only", p->app_only));
}
