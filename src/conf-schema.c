/*
 * conf-schema.c: the configuration schema, one table per section, and the
 * checks that a type alone cannot express. conf.c walks these tables.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "tenantd.h"

#define OFF(type, field)	offsetof(struct type, field)
#define SECTION(keys, type, finish) \
	{ keys, nitems(keys), sizeof(struct type), finish }

/* Value checks. */

static int
check_guid(struct conf_ctx *ctx, const struct conf_node *node, void *field)
{
	char	*s = *(char **)field;
	size_t	 i;

	for (i = 0; s[i] != '\0'; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				break;
		} else if (!isxdigit((unsigned char)s[i]))
			break;
		s[i] = tolower((unsigned char)s[i]);
	}
	if (i == 36 && s[i] == '\0')
		return 0;
	conf_error(ctx, node, "'%s' is not a GUID like "
	    "72f988bf-86f1-41af-91ab-2d7cd011db47", s);
	return -1;
}

static int
check_address(struct conf_ctx *ctx, const struct conf_node *node,
    void *field)
{
	struct sockaddr_storage	ss;
	socklen_t		sslen;
	char			err[128];

	if (parse_hostport(*(char **)field, &ss, &sslen, err,
	    sizeof(err)) == 0)
		return 0;
	conf_error(ctx, node, "%s (like 0.0.0.0:8443, [::]:8443, *:8443)",
	    err);
	return -1;
}

static int
check_readable(struct conf_ctx *ctx, const struct conf_node *node,
    void *field)
{
	const char	*path = *(char **)field;

	if ((conf_flags(ctx) & CONF_NO_SECRETS) || access(path, R_OK) == 0)
		return 0;
	conf_error(ctx, node, "cannot read %s: %s", path, strerror(errno));
	return -1;
}

static int
check_socket_path(struct conf_ctx *ctx, const struct conf_node *node,
    void *field)
{
	struct sockaddr_un	sun;
	size_t			len = strlen(*(char **)field);

	if (len < sizeof(sun.sun_path))
		return 0;
	conf_error(ctx, node, "path is %zu bytes, a unix socket allows at "
	    "most %zu", len, sizeof(sun.sun_path) - 1);
	return -1;
}

static int
check_group(struct conf_ctx *ctx, const struct conf_node *node, void *field)
{
	struct group	 gr, *res = NULL;
	size_t		 len = 64 * 1024;
	char		*buf = xmalloc(len);
	int		 rc;

	rc = getgrnam_r(*(char **)field, &gr, buf, len, &res);
	free(buf);
	if (rc == 0 && res != NULL)
		return 0;
	conf_error(ctx, node, "group '%s' does not exist", *(char **)field);
	return -1;
}

/* Origins. */

/* Host and optional port of an origin: "host", "[v6]", "host:port". */
static const char *
origin_host_problem(const char *host, int *localhost)
{
	size_t	hlen;
	char	*end;
	long	port;

	if (host[0] == '[')
		hlen = strspn(host + 1, "0123456789abcdef:") + 1;
	else
		hlen = strspn(host, "abcdefghijklmnopqrstuvwxyz0123456789.-");
	if (host[0] == '[' && host[hlen++] != ']')
		return "has an invalid IPv6 host";
	if (hlen == 0 || (host[hlen] != '\0' && host[hlen] != ':'))
		return strpbrk(host, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") ?
		    "must be lowercase" : "has an invalid host";
	*localhost = (hlen == 9 && strncmp(host, "localhost", 9) == 0) ||
	    (hlen == 9 && strncmp(host, "127.0.0.1", 9) == 0) ||
	    (hlen == 5 && strncmp(host, "[::1]", 5) == 0);
	if (host[hlen] == '\0')
		return NULL;
	errno = 0;
	port = strtol(host + hlen + 1, &end, 10);
	if (!isdigit((unsigned char)host[hlen + 1]) || *end != '\0' ||
	    port < 1 || port > 65535)
		return "has an invalid port";
	return NULL;
}

static const char *
origin_problem(const char *origin)
{
	const char	*host, *problem;
	size_t		 hlen;
	int		 localhost = 0, https;

	if (strchr(origin, '*') != NULL)
		return "is a wildcard; list each origin exactly";
	https = strncmp(origin, "https://", 8) == 0;
	if (!https && strncmp(origin, "http://", 7) != 0)
		return "must start with https://";
	host = origin + (https ? 8 : 7);
	hlen = strcspn(host, "/?#");
	if (host[hlen] == '/' && host[hlen + 1] == '\0')
		return "must not end with '/'";
	if (host[hlen] != '\0')
		return "must not have a path, query or fragment";
	if ((problem = origin_host_problem(host, &localhost)) != NULL)
		return problem;
	if (!https && !localhost)
		return "must use https:// (http:// only for localhost)";
	return NULL;
}

static int
check_origin(struct conf_ctx *ctx, const struct conf_node *node, void *field)
{
	const char	*origin = *(char **)field, *problem;

	if ((problem = origin_problem(origin)) == NULL)
		return 0;
	conf_error(ctx, node, "origin '%s' %s", origin, problem);
	return -1;
}

/* Sections. */

static const char *const log_level_names[] = {
	/* In the order of enum log_level. */
	"error", "warn", "info", "debug", NULL
};

static const struct conf_key log_keys[] = {
	{ "level", CONF_ENUM, OFF(config, log_level), .def = "info",
	    .names = log_level_names },
};

static void
listen_finish(struct conf_ctx *ctx, const struct conf_node *map, void *obj)
{
	struct listen_conf	*l = obj;
	const struct conf_node	*tls = conf_node_get(map, "tls");
	char			 err[128];

	if (l->address == NULL ||
	    parse_hostport(l->address, &l->ss, &l->sslen, err,
	    sizeof(err)) == -1)
		return;		/* reported by check_address */
	if (!l->tls && !is_loopback_addr((struct sockaddr *)&l->ss))
		conf_error(ctx, tls != NULL ? tls : map, "tls: false is only "
		    "allowed on a loopback address, not %s", l->address);
}

static const struct conf_key listen_keys[] = {
	{ "address", CONF_STRING, OFF(listen_conf, address),
	    .flags = CONF_REQUIRED, .check = check_address },
	{ "tls", CONF_BOOL, OFF(listen_conf, tls), .def = "true" },
};
static const struct conf_section listen_section =
    SECTION(listen_keys, listen_conf, listen_finish);

static const struct conf_key tls_keys[] = {
	{ "certificate", CONF_STRING, OFF(tls_conf, certificate),
	    .flags = CONF_REQUIRED, .check = check_readable },
	{ "key", CONF_SECRET, OFF(tls_conf, key), .flags = CONF_REQUIRED },
	{ "hsts_max_age", CONF_DURATION_S, OFF(tls_conf, hsts_max_age),
	    .def = "365d", .min = "0", .max = "730d" },
};
static const struct conf_section tls_section =
    SECTION(tls_keys, tls_conf, NULL);

/* tls: a map, or "self-signed" for a certificate the daemon generates. */
static int
tls_parse(struct conf_ctx *ctx, const struct conf_node *node,
    const struct conf_key *key, void *field)
{
	const char	*text = conf_node_scalar(node);

	if (text != NULL && strcmp(text, "self-signed") == 0) {
		((struct tls_conf *)field)->self_signed = 1;
		return 0;
	}
	if (text != NULL) {
		conf_error(ctx, node, "expected a map or 'self-signed', got "
		    "'%s'", text);
		return -1;
	}
	return conf_walk_map(ctx, node, key->sub, field);
}

static const struct conf_key http_keys[] = {
	{ "workers", CONF_INT, OFF(http_conf, workers), .def = "0",
	    .min = "0", .max = "256" },
	{ "max_connections", CONF_INT, OFF(http_conf, max_connections),
	    .def = "1024", .min = "1", .max = "100000" },
	{ "max_header_size", CONF_SIZE, OFF(http_conf, max_header_size),
	    .def = "16KiB", .min = "1KiB", .max = "1MiB" },
	{ "max_body_size", CONF_SIZE, OFF(http_conf, max_body_size),
	    .def = "1MiB", .min = "1KiB", .max = "1GiB" },
	{ "idle_timeout", CONF_DURATION_MS, OFF(http_conf, idle_timeout),
	    .def = "60s", .min = "1s", .max = "1h" },
	{ "request_timeout", CONF_DURATION_MS,
	    OFF(http_conf, request_timeout), .def = "30s", .min = "1s",
	    .max = "10m" },
	{ "shutdown_timeout", CONF_DURATION_MS,
	    OFF(http_conf, shutdown_timeout), .def = "10s", .min = "0",
	    .max = "10m" },
};
static const struct conf_section http_section =
    SECTION(http_keys, http_conf, NULL);

static const struct conf_key cors_keys[] = {
	{ "allowed_origins", CONF_LIST, OFF(cors_conf, origins),
	    .item = CONF_STRING, .count = OFF(cors_conf, norigins),
	    .max = "64", .check = check_origin },
	{ "max_age", CONF_DURATION_S, OFF(cors_conf, max_age), .def = "10m",
	    .min = "0", .max = "1d" },
};
static const struct conf_section cors_section =
    SECTION(cors_keys, cors_conf, NULL);

static const struct conf_key metrics_keys[] = {
	{ "allow_remote", CONF_BOOL, OFF(metrics_conf, allow_remote),
	    .def = "false" },
};
static const struct conf_section metrics_section =
    SECTION(metrics_keys, metrics_conf, NULL);

static const struct conf_key control_keys[] = {
	{ "socket", CONF_STRING, OFF(control_conf, socket),
	    .def = "/run/tenantd/control.sock", .check = check_socket_path },
	{ "group", CONF_STRING, OFF(control_conf, group),
	    .check = check_group },
};
static const struct conf_section control_section =
    SECTION(control_keys, control_conf, NULL);

/* License and notifications (license.c, notice.c, notice-webhook.c). */

static int
check_trusted_key(struct conf_ctx *ctx, const struct conf_node *node,
    void *field)
{
	struct evp_pkey_st	*pkey;
	char			 err[256];

	if ((pkey = license_key_load(*(char **)field, err, sizeof(err))) !=
	    NULL) {
		EVP_PKEY_free(pkey);
		return 0;
	}
	conf_error(ctx, node, "%s", err);
	return -1;
}

static const struct conf_key license_keys[] = {
	{ "trusted_keys", CONF_LIST, OFF(license_conf, trusted_keys),
	    .item = CONF_STRING, .count = OFF(license_conf, ntrusted_keys),
	    .max = "16", .check = check_trusted_key },
	{ "grace", CONF_DURATION_S, OFF(license_conf, grace), .def = "30d",
	    .min = "0", .max = "365d" },
};
static const struct conf_section license_section =
    SECTION(license_keys, license_conf, NULL);

static int
check_webhook_url(struct conf_ctx *ctx, const struct conf_node *node,
    void *field)
{
	const char	*url = *(char **)field;
	size_t		 len = strlen(url);

	if (strncmp(url, "https://", 8) == 0 && len > 8 && len <= 2048 &&
	    strpbrk(url, " \t\r\n\"<>") == NULL)
		return 0;
	conf_error(ctx, node, "a webhook url must be https://HOST/PATH, at "
	    "most 2048 characters without spaces");
	return -1;
}

static const char *const webhook_format_names[] = {
	/* In the order of enum webhook_format. */
	"json", "teams", NULL
};

static void
webhook_finish(struct conf_ctx *ctx, const struct conf_node *map, void *obj)
{
	struct webhook_conf	*wh = obj;

	if (wh->format == WEBHOOK_JSON && wh->secret_file == NULL)
		conf_error(ctx, map, "missing required key 'secret_file' "
		    "(format json signs each delivery)");
}

static const struct conf_key webhook_keys[] = {
	{ "url", CONF_STRING, OFF(webhook_conf, url), .flags = CONF_REQUIRED,
	    .check = check_webhook_url },
	{ "kinds", CONF_LIST, OFF(webhook_conf, kinds), .item = CONF_ENUM,
	    .count = OFF(webhook_conf, nkinds), .max = "4",
	    .names = notice_kind_names },
	{ "format", CONF_ENUM, OFF(webhook_conf, format), .def = "json",
	    .names = webhook_format_names },
	{ "secret_file", CONF_SECRET, OFF(webhook_conf, secret_file),
	    .flags = 0 },
	{ "ca_file", CONF_STRING, OFF(webhook_conf, ca_file),
	    .check = check_readable },
};
static const struct conf_section webhook_section =
    SECTION(webhook_keys, webhook_conf, webhook_finish);

static const struct conf_key notifications_keys[] = {
	{ "webhooks", CONF_LIST, OFF(notifications_conf, webhooks),
	    .item = CONF_MAP, .count = OFF(notifications_conf, nwebhooks),
	    .sub = &webhook_section, .max = "16" },
	{ "retry_for", CONF_DURATION_S, OFF(notifications_conf, retry_for),
	    .def = "24h", .min = "10s", .max = "7d" },
	{ "retry_backoff", CONF_DURATION_MS,
	    OFF(notifications_conf, retry_backoff), .def = "30s",
	    .min = "100ms", .max = "1h" },
};
static const struct conf_section notifications_section =
    SECTION(notifications_keys, notifications_conf, NULL);
/* auth: how tokens are validated (docs/AUTH.md). */

static const char *const auth_provider_names[] = {
	/* In the order of enum auth_provider. */
	"entra", "local", NULL
};

/* Keys in the order of the role bits (auth_role_name). */
static const struct conf_key auth_roles_keys[] = {
	{ "admin", CONF_LIST, OFF(auth_roles_conf, values[0]),
	    .item = CONF_STRING, .count = OFF(auth_roles_conf, nvalues[0]),
	    .max = "16" },
	{ "auditor", CONF_LIST, OFF(auth_roles_conf, values[1]),
	    .item = CONF_STRING, .count = OFF(auth_roles_conf, nvalues[1]),
	    .max = "16" },
};
static const struct conf_section auth_roles_section =
    SECTION(auth_roles_keys, auth_roles_conf, NULL);

static char **
strv_one(const char *s, size_t *n)
{
	char	**v = xcalloc(1, sizeof(*v));

	v[0] = xstrdup(s);
	*n = 1;
	return v;
}

/*
 * Defaults that are lists: the app roles of docs/AUTH.md, and for the
 * local provider the audience and scope that tenantctl token mints.
 */
static void
auth_list_defaults(struct auth_conf *a, const struct conf_node *map)
{
	struct auth_roles_conf	*r = &a->roles;

	if (conf_node_get(map, "roles") == NULL) {
		r->values[0] = strv_one("Tenantd.Admin", &r->nvalues[0]);
		r->values[1] = strv_one("Tenantd.Auditor", &r->nvalues[1]);
	}
	if (a->provider != AUTH_PROVIDER_LOCAL)
		return;
	if (a->naudiences == 0)
		a->audiences = strv_one(AUTH_LOCAL_AUDIENCE, &a->naudiences);
	if (a->nrequired_scopes == 0)
		a->required_scopes = strv_one(AUTH_LOCAL_SCOPE,
		    &a->nrequired_scopes);
}

static void
auth_finish(struct conf_ctx *ctx, const struct conf_node *map, void *obj)
{
	struct auth_conf	*a = obj;
	char			 err[256];

	a->configured = 1;
	auth_list_defaults(a, map);
	if (auth_conf_check(a, err, sizeof(err)) == -1)
		conf_error(ctx, map, "%s", err);
}

static const struct conf_key auth_keys[] = {
	{ "provider", CONF_ENUM, OFF(auth_conf, provider), .def = "entra",
	    .names = auth_provider_names },
	{ "authority", CONF_STRING, OFF(auth_conf, authority),
	    .def = "https://login.microsoftonline.com" },
	{ "ca_file", CONF_STRING, OFF(auth_conf, ca_file),
	    .check = check_readable },
	{ "audiences", CONF_LIST, OFF(auth_conf, audiences),
	    .item = CONF_STRING, .count = OFF(auth_conf, naudiences),
	    .max = "16" },
	{ "allowed_clients", CONF_LIST, OFF(auth_conf, allowed_clients),
	    .item = CONF_STRING, .count = OFF(auth_conf, nallowed_clients),
	    .max = "64" },
	{ "required_scopes", CONF_LIST, OFF(auth_conf, required_scopes),
	    .item = CONF_STRING, .count = OFF(auth_conf, nrequired_scopes),
	    .max = "16" },
	{ "allow_app_tokens", CONF_BOOL, OFF(auth_conf, allow_app_tokens),
	    .def = "false" },
	{ "roles", CONF_MAP, OFF(auth_conf, roles),
	    .sub = &auth_roles_section },
	{ "clock_skew", CONF_DURATION_S, OFF(auth_conf, clock_skew),
	    .def = "120s", .min = "0", .max = "300s" },
	{ "jwks_refresh", CONF_DURATION_S, OFF(auth_conf, jwks_refresh),
	    .def = "1h", .min = "1m", .max = "1d" },
};
static const struct conf_section auth_section =
    SECTION(auth_keys, auth_conf, auth_finish);

/*
 * The local provider mints its own tokens: only a client on this machine
 * may reach it, so every listener must be on loopback.
 */
static void
auth_local_loopback(struct conf_ctx *ctx, const struct conf_node *map,
    const struct config *conf)
{
	const struct conf_node	*at;
	size_t			 i;

	if (conf->auth.provider != AUTH_PROVIDER_LOCAL)
		return;
	at = conf_node_get(conf_node_get(map, "auth"), "provider");
	for (i = 0; at != NULL && i < conf->nlisten; i++) {
		if (conf->listen[i].sslen == 0 || is_loopback_addr(
		    (const struct sockaddr *)&conf->listen[i].ss))
			continue;
		conf_error(ctx, at, "auth.provider: local is for development "
		    "and needs loopback listeners only, but listen[%zu] is "
		    "%s", i, conf->listen[i].address);
	}
}
/* log_shipping: Azure Monitor Logs (shipper*.c). */

static const char *const ship_api_names[] = {
	/* In the order of enum ship_api. */
	"logs-ingestion", "data-collector", NULL
};

static const char *const ship_cred_names[] = {
	/* In the order of enum ship_cred_type. */
	"managed-identity", "client-secret", "client-certificate", NULL
};

/* https:// always; http:// only towards a loopback test double. */
static int
check_ship_url(struct conf_ctx *ctx, const struct conf_node *node,
    void *field)
{
	const char	*url = *(char **)field;

	if (strncmp(url, "https://", 8) == 0 && url[8] != '\0')
		return 0;
	if (strncmp(url, "http://127.0.0.1", 16) == 0 ||
	    strncmp(url, "http://[::1]", 12) == 0 ||
	    strncmp(url, "http://localhost", 16) == 0)
		return 0;
	conf_error(ctx, node, "'%s' must start with https://", url);
	return -1;
}

/* IMDS speaks plain http on a link-local address. */
static int
check_imds_url(struct conf_ctx *ctx, const struct conf_node *node,
    void *field)
{
	const char	*url = *(char **)field;

	if (strncmp(url, "http://", 7) == 0 && url[7] != '\0')
		return 0;
	conf_error(ctx, node, "'%s' must start with http:// (IMDS does not "
	    "use TLS)", url);
	return -1;
}

static const struct conf_key ship_cred_keys[] = {
	{ "type", CONF_ENUM, OFF(ship_cred_conf, type),
	    .def = "managed-identity", .names = ship_cred_names },
	{ "client_id", CONF_STRING, OFF(ship_cred_conf, client_id),
	    .check = check_guid },
	{ "imds_endpoint", CONF_STRING, OFF(ship_cred_conf, imds_endpoint),
	    .def = "http://169.254.169.254", .check = check_imds_url },
	{ "tenant_id", CONF_STRING, OFF(ship_cred_conf, tenant_id),
	    .check = check_guid },
	{ "authority", CONF_STRING, OFF(ship_cred_conf, authority),
	    .def = "https://login.microsoftonline.com",
	    .check = check_ship_url },
	{ "client_secret", CONF_SECRET, OFF(ship_cred_conf, client_secret),
	    .flags = 0 },
	{ "certificate", CONF_STRING, OFF(ship_cred_conf, certificate),
	    .check = check_readable },
	{ "key", CONF_SECRET, OFF(ship_cred_conf, key), .flags = 0 },
};

static void
ship_cred_finish(struct conf_ctx *ctx, const struct conf_node *map,
    void *obj)
{
	struct ship_cred_conf	*c = obj;

	if (c->type != SHIP_CRED_MANAGED_IDENTITY && c->client_id == NULL)
		conf_error(ctx, map, "type %s needs 'client_id'",
		    ship_cred_names[c->type]);
	if (c->type == SHIP_CRED_CLIENT_SECRET && c->client_secret == NULL)
		conf_error(ctx, map, "type client-secret needs "
		    "'client_secret' (a file path or credential:NAME)");
	if (c->type == SHIP_CRED_CLIENT_CERTIFICATE &&
	    (c->certificate == NULL || c->key == NULL))
		conf_error(ctx, map, "type client-certificate needs "
		    "'certificate' and 'key'");
}

static const struct conf_section ship_cred_section =
    SECTION(ship_cred_keys, ship_cred_conf, ship_cred_finish);

static const struct conf_key ship_stream_keys[] = {
	{ "enabled", CONF_BOOL, OFF(ship_stream_conf, enabled),
	    .def = "true" },
	{ "name", CONF_STRING, OFF(ship_stream_conf, name), .flags = 0 },
	{ "queue_limit", CONF_SIZE, OFF(ship_stream_conf, queue_limit),
	    .def = "64MiB", .min = "64KiB", .max = "64GiB" },
};
static const struct conf_section ship_stream_section =
    SECTION(ship_stream_keys, ship_stream_conf, NULL);

static const struct conf_key ship_streams_keys[] = {
	{ "audit", CONF_MAP, OFF(log_shipping_conf, audit),
	    .sub = &ship_stream_section },
	{ "ops", CONF_MAP, OFF(log_shipping_conf, ops),
	    .sub = &ship_stream_section },
	{ "usage", CONF_MAP, OFF(log_shipping_conf, usage),
	    .sub = &ship_stream_section },
};
static const struct conf_section ship_streams_section = {
	ship_streams_keys, nitems(ship_streams_keys),
	sizeof(struct log_shipping_conf), NULL
};

static const char *const ship_default_names[2][SHIP_NSTREAMS] = {
	{ "Custom-TenantdAudit_CL", "Custom-TenantdOps_CL",
	    "Custom-TenantdUsage_CL" },
	{ "TenantdAudit", "TenantdOps", "TenantdUsage" },
};

static void
ship_finish(struct conf_ctx *ctx, const struct conf_node *map, void *obj)
{
	struct log_shipping_conf	*ls = obj;
	struct ship_stream_conf		*st[] = { &ls->audit, &ls->ops,
					    &ls->usage };
	size_t				 i;

	ls->configured = 1;
	for (i = 0; i < nitems(st); i++)
		if (st[i]->name == NULL)
			st[i]->name = xstrdup(ship_default_names[ls->api][i]);
	if (!ls->enabled)
		return;
	if (ls->api == SHIP_API_LOGS_INGESTION && (ls->endpoint == NULL ||
	    ls->dcr_immutable_id == NULL))
		conf_error(ctx, map, "api logs-ingestion needs 'endpoint' and "
		    "'dcr_immutable_id'");
	if (ls->api == SHIP_API_DATA_COLLECTOR && (ls->workspace_id == NULL ||
	    ls->shared_key == NULL))
		conf_error(ctx, map, "api data-collector needs 'workspace_id' "
		    "and 'shared_key'");
}

static const struct conf_key ship_keys[] = {
	{ "enabled", CONF_BOOL, OFF(log_shipping_conf, enabled),
	    .def = "true" },
	{ "api", CONF_ENUM, OFF(log_shipping_conf, api),
	    .def = "logs-ingestion", .names = ship_api_names },
	{ "endpoint", CONF_STRING, OFF(log_shipping_conf, endpoint),
	    .check = check_ship_url },
	{ "dcr_immutable_id", CONF_STRING,
	    OFF(log_shipping_conf, dcr_immutable_id), .flags = 0 },
	{ "workspace_id", CONF_STRING, OFF(log_shipping_conf, workspace_id),
	    .check = check_guid },
	{ "shared_key", CONF_SECRET, OFF(log_shipping_conf, shared_key),
	    .flags = 0 },
	{ "audience", CONF_STRING, OFF(log_shipping_conf, audience),
	    .def = "https://monitor.azure.com", .check = check_ship_url },
	{ "ca_file", CONF_STRING, OFF(log_shipping_conf, ca_file),
	    .check = check_readable },
	{ "credential", CONF_MAP, OFF(log_shipping_conf, credential),
	    .sub = &ship_cred_section },
	/* offset 0: the stream structs live in log_shipping_conf */
	{ "streams", CONF_MAP, 0, .sub = &ship_streams_section },
	{ "flush_interval", CONF_DURATION_MS,
	    OFF(log_shipping_conf, flush_interval), .def = "5s",
	    .min = "100ms", .max = "10m" },
	{ "max_in_flight", CONF_INT, OFF(log_shipping_conf, max_in_flight),
	    .def = "4", .min = "1", .max = "64" },
	{ "max_batch_size", CONF_SIZE,
	    OFF(log_shipping_conf, max_batch_size), .def = "1MiB",
	    .min = "1KiB", .max = "1MiB" },
	{ "request_timeout", CONF_DURATION_MS,
	    OFF(log_shipping_conf, request_timeout), .def = "30s",
	    .min = "1s", .max = "5m" },
	{ "retry_max_delay", CONF_DURATION_MS,
	    OFF(log_shipping_conf, retry_max_delay), .def = "5m",
	    .min = "100ms", .max = "1h" },
	{ "health_interval", CONF_DURATION_S,
	    OFF(log_shipping_conf, health_interval), .def = "5m",
	    .min = "0", .max = "1d" },
};
static const struct conf_section ship_section =
    SECTION(ship_keys, log_shipping_conf, ship_finish);

static const char *const kek_prefixes[] = {
	"file:", "credential:", "passphrase-file:",
};

static int
check_kek(struct conf_ctx *ctx, const struct conf_node *node, void *field)
{
	const char	*kek = *(char **)field;
	size_t		 i, len;

	for (i = 0; i < nitems(kek_prefixes); i++) {
		len = strlen(kek_prefixes[i]);
		if (strncmp(kek, kek_prefixes[i], len) == 0 &&
		    kek[len] != '\0')
			return 0;
	}
	conf_error(ctx, node, "expected file:PATH, credential:NAME or "
	    "passphrase-file:PATH");
	return -1;
}

/* A vault address: a unix socket path, or tls://ADDRESS:PORT. */
static int
check_vault_address(struct conf_ctx *ctx, const struct conf_node *node,
    void *field)
{
	const char	*addr = *(char **)field;
	char		 err[128];
	int		 tls;

	if (vault_address_parse(addr, NULL, NULL, &tls, err,
	    sizeof(err)) == 0)
		return 0;
	conf_error(ctx, node, "%s", err);
	return -1;
}

static const struct conf_key keyring_keys[] = {
	{ "kek", CONF_STRING, OFF(keyring_conf, kek), .check = check_kek },
	{ "path", CONF_STRING, OFF(keyring_conf, path), .flags = 0 },
	{ "rotate_after", CONF_DURATION_S, OFF(keyring_conf, rotate_after),
	    .def = "90d", .min = "0", .max = "3650d" },
	{ "recovery", CONF_BOOL, OFF(keyring_conf, recovery),
	    .def = "false" },
};
static const struct conf_section keyring_section =
    SECTION(keyring_keys, keyring_conf, NULL);

static const struct conf_key storage_keys[] = {
	{ "path", CONF_STRING, OFF(storage_conf, path), .flags = 0 },
	{ "max_size", CONF_SIZE, OFF(storage_conf, max_size),
	    .def = "1GiB", .min = "256KiB", .max = "1099511627776" },
};
static const struct conf_section storage_section =
    SECTION(storage_keys, storage_conf, NULL);

static const struct conf_key vault_tls_keys[] = {
	{ "certificate", CONF_STRING, OFF(vault_tls_conf, certificate),
	    .flags = CONF_REQUIRED, .check = check_readable },
	{ "key", CONF_SECRET, OFF(vault_tls_conf, key),
	    .flags = CONF_REQUIRED },
	{ "ca", CONF_STRING, OFF(vault_tls_conf, ca),
	    .flags = CONF_REQUIRED, .check = check_readable },
};
static const struct conf_section vault_tls_section =
    SECTION(vault_tls_keys, vault_tls_conf, NULL);

static const char *const vault_mode_names[] = {
	/* In the order of enum vault_mode. */
	"child", "external", NULL
};

/* tls:// needs certificates; child mode needs the vault's config file. */
static void
vault_finish(struct conf_ctx *ctx, const struct conf_node *map, void *obj)
{
	struct vault_conf	*v = obj;

	if (v->address != NULL && strncmp(v->address, VAULT_TLS_PREFIX,
	    strlen(VAULT_TLS_PREFIX)) == 0 && v->tls.certificate == NULL)
		conf_error(ctx, map, "address %s needs a 'tls' map "
		    "(certificate, key, ca)", v->address);
	if (v->mode == VAULT_CHILD && v->config == NULL)
		conf_error(ctx, map, "mode: child needs 'config', the "
		    "vault's configuration file");
}

static const struct conf_key vault_keys[] = {
	{ "mode", CONF_ENUM, OFF(vault_conf, mode), .def = "external",
	    .names = vault_mode_names },
	{ "address", CONF_STRING, OFF(vault_conf, address),
	    .def = VAULT_DEFAULT_SOCKET, .check = check_vault_address },
	{ "config", CONF_STRING, OFF(vault_conf, config), .flags = 0 },
	{ "program", CONF_STRING, OFF(vault_conf, program), .flags = 0 },
	{ "tls", CONF_MAP, OFF(vault_conf, tls), .sub = &vault_tls_section },
	{ "timeout", CONF_DURATION_MS, OFF(vault_conf, timeout),
	    .def = "5s", .min = "100ms", .max = "1m" },
	{ "pending_max", CONF_INT, OFF(vault_conf, pending_max),
	    .def = "100000", .min = "1", .max = "10000000" },
};
static const struct conf_section vault_section =
    SECTION(vault_keys, vault_conf, vault_finish);

/* Paths that default to a place under state_dir. */
static void
state_paths(const char *state_dir, struct keyring_conf *kr,
    struct storage_conf *st)
{
	if (state_dir == NULL)
		return;
	if (kr->path == NULL)
		xasprintf(&kr->path, "%s/keyring", state_dir);
	if (st->path == NULL)
		xasprintf(&st->path, "%s/store", state_dir);
}

/* The top level. */

static void
root_finish(struct conf_ctx *ctx, const struct conf_node *map, void *obj)
{
	struct config	*conf = obj;
	struct tls_conf	*tls = &conf->tls;
	size_t		 i;

	for (i = 0; i < conf->nlisten; i++) {
		if (conf->listen[i].tls &&
		    conf_node_get(map, "tls") == NULL) {
			conf_error(ctx, map, "missing required key 'tls' "
			    "(listen[%zu] has tls: true)", i);
			break;
		}
	}
	if (tls->self_signed && conf->state_dir != NULL) {
		free(tls->certificate);
		free(tls->key);
		xasprintf(&tls->certificate, "%s/tls/cert.pem",
		    conf->state_dir);
		xasprintf(&tls->key, "%s/tls/key.pem", conf->state_dir);
	}
	auth_local_loopback(ctx, map, conf);
	state_paths(conf->state_dir, &conf->keyring, &conf->storage);
}

static const struct conf_section log_section =
    SECTION(log_keys, config, NULL);

static const struct conf_key root_keys[] = {
	{ "tenant_id", CONF_STRING, OFF(config, tenant_id),
	    .flags = CONF_REQUIRED, .check = check_guid },
	{ "state_dir", CONF_STRING, OFF(config, state_dir),
	    .def = "/var/lib/tenantd" },
	{ "log", CONF_MAP, 0, .sub = &log_section },
	{ "listen", CONF_LIST, OFF(config, listen), .flags = CONF_REQUIRED,
	    .item = CONF_MAP, .count = OFF(config, nlisten),
	    .sub = &listen_section, .min = "1", .max = "16" },
	{ "tls", CONF_MAP, OFF(config, tls), .sub = &tls_section,
	    .parse = tls_parse },
	{ "http", CONF_MAP, OFF(config, http), .sub = &http_section },
	{ "cors", CONF_MAP, OFF(config, cors), .sub = &cors_section },
	{ "metrics", CONF_MAP, OFF(config, metrics),
	    .sub = &metrics_section },
	{ "control", CONF_MAP, OFF(config, control),
	    .sub = &control_section },
	{ "license", CONF_MAP, OFF(config, license),
	    .sub = &license_section },
	{ "notifications", CONF_MAP, OFF(config, notifications),
	    .sub = &notifications_section },
	{ "auth", CONF_MAP, OFF(config, auth), .sub = &auth_section },
	{ "log_shipping", CONF_MAP, OFF(config, log_shipping),
	    .sub = &ship_section },
	{ "keyring", CONF_MAP, OFF(config, keyring),
	    .sub = &keyring_section },
	{ "storage", CONF_MAP, OFF(config, storage),
	    .sub = &storage_section },
	{ "vault", CONF_MAP, OFF(config, vault), .sub = &vault_section },
};

const struct conf_section conf_root = SECTION(root_keys, config,
    root_finish);

/* tenantd-vault's own file: the same engine, its own root table. */

static void
vault_root_finish(struct conf_ctx *ctx, const struct conf_node *map,
    void *obj)
{
	struct vault_config	*vc = obj;

	if (vc->listen != NULL && strncmp(vc->listen, VAULT_TLS_PREFIX,
	    strlen(VAULT_TLS_PREFIX)) == 0 && vc->tls.certificate == NULL)
		conf_error(ctx, map, "listen %s needs a 'tls' map "
		    "(certificate, key, ca)", vc->listen);
	state_paths(vc->state_dir, &vc->keyring, &vc->storage);
}

static const struct conf_key vault_log_keys[] = {
	{ "level", CONF_ENUM, OFF(vault_config, log_level), .def = "info",
	    .names = log_level_names },
};
static const struct conf_section vault_log_section =
    SECTION(vault_log_keys, vault_config, NULL);

static const struct conf_key vault_root_keys[] = {
	{ "state_dir", CONF_STRING, OFF(vault_config, state_dir),
	    .def = "/var/lib/tenantd-vault" },
	{ "log", CONF_MAP, 0, .sub = &vault_log_section },
	{ "keyring", CONF_MAP, OFF(vault_config, keyring),
	    .sub = &keyring_section },
	{ "storage", CONF_MAP, OFF(vault_config, storage),
	    .sub = &storage_section },
	{ "listen", CONF_STRING, OFF(vault_config, listen),
	    .def = VAULT_DEFAULT_SOCKET, .check = check_vault_address },
	{ "tls", CONF_MAP, OFF(vault_config, tls),
	    .sub = &vault_tls_section },
	{ "allow_users", CONF_LIST, OFF(vault_config, allow_users),
	    .item = CONF_STRING, .count = OFF(vault_config, nallow_users),
	    .max = "16" },
	{ "max_connections", CONF_INT, OFF(vault_config, max_connections),
	    .def = "64", .min = "1", .max = "4096" },
};

const struct conf_section conf_vault_root = SECTION(vault_root_keys,
    vault_config, vault_root_finish);
