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
};
const size_t api_nroutes = nitems(api_routes);
