/*
 * api-dev.c: the local development provider's discovery documents,
 * /.well-known/openid-configuration and /v1/dev/jwks. Both answer 404
 * unless auth.provider is local.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "http.h"

#define HOST_MAX	255

static const struct auth_local *
dev_provider(struct request *req)
{
	const struct auth_local	*l = daemon_auth_local();

	if (l == NULL)
		http_problem(req, 404, "not-found", "no such resource");
	return l;
}

/* The Host header names where the caller reached us, if it is sane. */
static const char *
dev_host(struct request *req)
{
	const char	*host = http_header(req, "Host");
	size_t		 n;

	if (host == NULL)
		return "localhost";
	n = strspn(host, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]");
	return n > 0 && n <= HOST_MAX && host[n] == '\0' ? host : "localhost";
}

void
api_dev_metadata(struct request *req)
{
	const struct auth_local	*l;
	char			*base;

	if ((l = dev_provider(req)) == NULL)
		return;
	xasprintf(&base, "%s://%s", http_scheme(req), dev_host(req));
	http_reply_json(req, 200, auth_local_metadata(l, base));
	free(base);
}

void
api_dev_jwks(struct request *req)
{
	const struct auth_local	*l;

	if ((l = dev_provider(req)) != NULL)
		http_reply_json(req, 200, auth_local_jwks(l));
}
