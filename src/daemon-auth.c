/*
 * daemon-auth.c: authentication in the running daemon. Builds the HTTP
 * client, the key set (refreshed on the main event base, or the local
 * provider's own key) and the validator the workers use, and reports the
 * key set's freshness as the "signing_keys" readiness check.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "tenantd.h"

#define AUTH_CACHE_ENTRIES	8192
#define AUTH_READY_POLL_S	1

static struct {
	struct config		*conf;		/* ref; auth reads conf->auth */
	struct httpc		*httpc;
	struct jwks		*jwks;
	struct auth		*auth;
	struct auth_local	*local;
	struct auth_store	 hooks;
	struct event		*ready_timer;
	int			 reported;	/* jwks_state, or -1 */
} da = { .reported = -1 };

static const struct {
	enum ready_state	 state;
	const char		*detail;
} keys_ready[] = {
	[JWKS_NONE] = { READY_FAIL, "no signing keys yet" },
	[JWKS_STALE] = { READY_DEGRADED, "stale: serving with the last "
	    "good signing keys; refreshing from the authority failed" },
	[JWKS_FRESH] = { READY_OK, "fresh" },
};

struct auth *
daemon_auth(void)
{
	return da.auth;
}

struct jwks *
daemon_jwks(void)
{
	return da.jwks;
}

const struct auth_local *
daemon_auth_local(void)
{
	return da.local;
}

static void
keys_ready_cb(evutil_socket_t fd, short ev, void *arg)
{
	enum jwks_state	state = jwks_state(da.jwks);

	if ((int)state == da.reported)
		return;
	da.reported = (int)state;
	ready_set("signing_keys", keys_ready[state].state, keys_ready[state].detail);
	log_fields(LOG_LEVEL_INFO, (struct log_field[]){
	    { "keys", jwks_state_name(state) } }, 1, "auth: signing keys %s",
	    jwks_state_name(state));
}

/* The local provider publishes its own key; nothing is fetched. */
static void
local_start(const struct config *conf)
{
	char	*set, err[256];
	size_t	 len;

	if ((da.local = auth_local_open(conf->state_dir, conf->tenant_id, err,
	    sizeof(err))) == NULL)
		fatalx("auth: local provider: %s", err);
	if ((set = auth_local_keyset(da.local, &len)) == NULL ||
	    jwks_install(da.jwks, set, len, 1, err, sizeof(err)) == -1)
		fatalx("auth: local provider: %s", set ? err : "key set");
	free(set);
	log_warnx("auth: provider local: tokens are minted by tenantctl "
	    "token; never use this provider in production");
}

static struct jwks *
jwks_setup(struct event_base *base, const struct config *conf)
{
	struct jwks_params	p;

	memset(&p, 0, sizeof(p));
	if (conf->auth.provider != AUTH_PROVIDER_LOCAL)
		p.authority = conf->auth.authority;
	p.tenant_id = conf->tenant_id;
	p.ca_file = conf->auth.ca_file;
	p.refresh = conf->auth.jwks_refresh;
	if (da.hooks.store != NULL) {	/* the last good set survives */
		p.save = auth_store_save_jwks;
		p.load = auth_store_load_jwks;
		p.hook_arg = &da.hooks;
	}
	return jwks_new(base, da.httpc, &p);
}

void
daemon_auth_init(struct event_base *base, struct config *conf)
{
	struct timeval	tv = { AUTH_READY_POLL_S, 0 };

	if (!conf->auth.configured) {
		log_warnx("auth: no auth: section in the configuration; every "
		    "API call is refused (docs/AUTH.md)");
		ready_set("signing_keys", READY_FAIL, "auth: is not configured");
		return;
	}
	da.conf = conf_ref(conf);
	da.hooks.store = daemon_store();
	da.hooks.base = base;
	httpc_global_init();
	if ((da.httpc = httpc_new(base)) == NULL)
		fatalx("auth: the HTTP client could not be created");
	da.jwks = jwks_setup(base, conf);
	da.auth = auth_new(&conf->auth, conf->tenant_id, da.jwks,
	    AUTH_CACHE_ENTRIES);
	if (daemon_keyring() == NULL)
		fatalx("auth: the keyring must be loaded first (pseudonyms)");
	auth_set_pseudonymizer(da.auth, auth_store_pseudonym,
	    daemon_keyring());
	if (conf->auth.provider == AUTH_PROVIDER_LOCAL)
		local_start(conf);
	else
		jwks_start(da.jwks);
	da.ready_timer = event_new(base, -1, EV_PERSIST, keys_ready_cb, NULL);
	if (da.ready_timer == NULL || event_add(da.ready_timer, &tv) == -1)
		fatalx("auth: readiness timer");
	keys_ready_cb(-1, 0, NULL);
}

/* After the workers are gone: nothing reads the key set any more. */
void
daemon_auth_free(void)
{
	if (da.ready_timer != NULL)
		event_free(da.ready_timer);
	auth_free(da.auth);
	jwks_free(da.jwks);
	httpc_free(da.httpc);
	auth_local_free(da.local);
	conf_unref(da.conf);
	memset(&da, 0, sizeof(da));
	da.reported = -1;
}

/* tenantctl token: the local provider only. */
char *
daemon_auth_mint(const char *user, unsigned roles, uint64_t ttl,
    char **error)
{
	char	*token, err[256];

	if (da.local == NULL) {
		*error = xstrdup("tokens are minted only with auth.provider: "
		    "local (development)");
		return NULL;
	}
	token = auth_local_mint(da.local, &da.conf->auth, user, roles, ttl,
	    err, sizeof(err));
	if (token == NULL)
		*error = xstrdup(err);
	return token;
}
