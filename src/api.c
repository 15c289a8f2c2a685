/*
 * api.c: the route table. Adding an endpoint is one row here and a
 * handler in the api-*.c file of its resource.
 */
#include "config.h"

#include "http.h"

const struct route api_routes[] = {
	/* method  pattern       handler      role         flags */
	{ "GET",   "/livez",     api_livez,   ROLE_PUBLIC, 0,              NULL },
	{ "GET",   "/readyz",    api_readyz,  ROLE_PUBLIC, 0,              NULL },
	{ "GET",   "/metrics",   api_metrics, ROLE_PUBLIC, ROUTE_LOOPBACK, NULL },
	/* license, notices */
	{ "GET",   "/v1/license", api_license_get, ROLE_USER, 0, NULL },
	{ "PUT",   "/v1/admin/license", api_license_put, ROLE_ADMIN, 0, NULL },
	{ "GET",   "/v1/notices", api_notices_list, ROLE_USER, 0, NULL },
	{ "POST",  "/v1/admin/notices", api_notices_publish, ROLE_ADMIN, 0,
	    NULL },
	{ "PATCH", "/v1/admin/notices/{id}", api_notices_update, ROLE_ADMIN, 0,
	    NULL },
	/* usage events, settings, data-subject rights */
	{ "POST",  "/v1/events", api_events_post, ROLE_USER, 0,          NULL },
	{ "GET",   "/v1/events/summary", api_events_summary, ROLE_AUDITOR, 0,
	    NULL },
	{ "GET",   "/v1/settings/{scope}", api_settings_list, ROLE_USER, 0,
	    NULL },
	{ "GET",   "/v1/settings/{scope}/{key}", api_settings_get, ROLE_USER,
	    0, NULL },
	{ "PUT",   "/v1/settings/{scope}/{key}", api_settings_put, ROLE_USER,
	    0, NULL },
	{ "DELETE", "/v1/settings/{scope}/{key}", api_settings_delete,
	    ROLE_USER, 0, NULL },
	{ "GET",   "/v1/admin/subjects/{oid}/export", api_subject_export,
	    ROLE_ADMIN, 0, NULL },
	{ "POST",  "/v1/admin/subjects/{oid}/erase", api_subject_erase,
	    ROLE_ADMIN, 0, NULL },
	{ "POST",  "/v1/admin/reidentify", api_reidentify, ROLE_ADMIN, 0,
	    NULL },
	{ "GET",   "/v1/me",     api_me,      ROLE_USER,   0,              NULL },
	{ "GET",   "/v1/auth/keys", api_auth_keys, ROLE_AUDITOR, 0,        NULL },
	{ "POST",  "/v1/auth/refresh", api_auth_refresh, ROLE_ADMIN, 0,    NULL },
	/* auth.provider: local only (404 otherwise) */
	{ "GET",   "/.well-known/openid-configuration", api_dev_metadata,
	    ROLE_PUBLIC, 0, NULL },
	{ "GET",   "/v1/dev/jwks", api_dev_jwks, ROLE_PUBLIC, 0,         NULL },
};
const size_t api_nroutes = nitems(api_routes);
