/*
 * test-auth-local.c: the local development provider: its key file, the
 * key set it publishes, and tokens it mints that the validator accepts.
 */
#include "config.h"

#include <sys/stat.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

#include "tenantd.h"
#include "unit.h"

#define TENANT	"72f988bf-86f1-41af-91ab-2d7cd011db47"

static char		 tmpdir[] = "/tmp/test-auth-local.XXXXXX";
static struct auth_conf	 conf;
static struct event_base *base;

static char **
one(const char *s)
{
	char	**v = xcalloc(1, sizeof(*v));

	v[0] = xstrdup(s);
	return v;
}

static struct jwks *
jwks_of(const struct auth_local *l)
{
	struct jwks_params	 p;
	struct jwks		*j;
	char			*set, err[160];
	size_t			 len;

	memset(&p, 0, sizeof(p));
	p.tenant_id = TENANT;
	j = jwks_new(base, NULL, &p);
	set = auth_local_keyset(l, &len);
	CHECK(set != NULL && jwks_install(j, set, len, 1, err,
	    sizeof(err)) == 0);
	free(set);
	return j;
}

static void
test_key_file(void)
{
	struct auth_local	*l, *again;
	struct stat		 st;
	char			 path[300], err[256];
	json_t			*a, *b;

	l = auth_local_open(tmpdir, TENANT, err, sizeof(err));
	CHECK(l != NULL);
	snprintf(path, sizeof(path), "%s/%s", tmpdir, AUTH_LOCAL_KEY_FILE);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	again = auth_local_open(tmpdir, TENANT, err, sizeof(err));
	CHECK(again != NULL);
	a = auth_local_jwks(l);
	b = auth_local_jwks(again);
	CHECK(json_equal(a, b));	/* the same key, reloaded */
	CHECK(json_object_get(json_array_get(json_object_get(a, "keys"), 0),
	    "d") == NULL);		/* public parts only */
	json_decref(a);
	json_decref(b);
	auth_local_free(again);
	chmod(path, 0644);
	CHECK(auth_local_open(tmpdir, TENANT, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "readable by group or others") != NULL);
	chmod(path, 0600);
	auth_local_free(l);
}

static void
test_mint_and_verify(void)
{
	struct auth_local	*l;
	struct auth_principal	 p, q;
	struct jwks		*j;
	struct auth		*a;
	char			*tok, *tok2, err[256];

	l = auth_local_open(tmpdir, TENANT, err, sizeof(err));
	j = jwks_of(l);
	a = auth_new(&conf, TENANT, j, 16);
	tok = auth_local_mint(l, &conf, "alice", AUTH_ROLE_ADMIN |
	    AUTH_ROLE_AUDITOR, 3600, err, sizeof(err));
	CHECK(tok != NULL);
	CHECK(tok && auth_verify_token(a, tok, strlen(tok), &p) == AUTH_OK);
	CHECK(p.roles == (AUTH_ROLE_ADMIN | AUTH_ROLE_AUDITOR));
	CHECK(p.version == 2 && strcmp(p.app_id, AUTH_LOCAL_CLIENT) == 0);
	CHECK_STR(p.upn, "alice");
	tok2 = auth_local_mint(l, &conf, "alice", 0, 600, err, sizeof(err));
	CHECK(tok2 && auth_verify_token(a, tok2, strlen(tok2), &q) == AUTH_OK);
	CHECK(q.roles == 0 && strcmp(p.oid, q.oid) == 0);	/* stable */
	free(tok2);
	tok2 = auth_local_mint(l, &conf, "bob", 0, 600, err, sizeof(err));
	CHECK(tok2 && auth_verify_token(a, tok2, strlen(tok2), &q) == AUTH_OK);
	CHECK(strcmp(p.oid, q.oid) != 0);
	free(tok2);
	free(tok);
	auth_free(a);
	jwks_free(j);
	auth_local_free(l);
}

static void
test_mint_refusals(void)
{
	struct auth_local	*l;
	struct auth_conf	 c = conf;
	char			 err[256];

	l = auth_local_open(tmpdir, TENANT, err, sizeof(err));
	CHECK(auth_local_mint(l, &conf, "", 0, 3600, err, sizeof(err)) == NULL);
	CHECK(auth_local_mint(l, &conf, "a b", 0, 3600, err,
	    sizeof(err)) == NULL);
	CHECK(auth_local_mint(l, &conf, "alice", 0, 59, err,
	    sizeof(err)) == NULL);
	CHECK(auth_local_mint(l, &conf, "alice", 0, AUTH_LOCAL_TTL_MAX + 1,
	    err, sizeof(err)) == NULL);
	CHECK(strstr(err, "ttl") != NULL);
	c.roles.nvalues[1] = 0;
	CHECK(auth_local_mint(l, &c, "alice", AUTH_ROLE_AUDITOR, 3600, err,
	    sizeof(err)) == NULL);
	CHECK(strstr(err, "auth.roles.auditor") != NULL);
	auth_local_free(l);
}

/* A token of another local key (another state directory) is refused. */
static void
test_other_key_refused(void)
{
	struct auth_local	*l, *other;
	struct auth_principal	 p;
	struct jwks		*j;
	struct auth		*a;
	char			 dir2[300], *tok, err[256];

	snprintf(dir2, sizeof(dir2), "%s/other", tmpdir);
	mkdir(dir2, 0700);
	l = auth_local_open(tmpdir, TENANT, err, sizeof(err));
	other = auth_local_open(dir2, TENANT, err, sizeof(err));
	j = jwks_of(l);
	a = auth_new(&conf, TENANT, j, 0);
	tok = auth_local_mint(other, &conf, "mallory", AUTH_ROLE_ADMIN, 3600,
	    err, sizeof(err));
	CHECK(tok && auth_verify_token(a, tok, strlen(tok), &p) ==
	    AUTH_ERR_UNKNOWN_KID);
	free(tok);
	event_base_loop(base, EVLOOP_NONBLOCK);
	auth_free(a);
	jwks_free(j);
	auth_local_free(other);
	auth_local_free(l);
}

int
main(void)
{
	char	cmd[300];

	log_init("test-auth-local", LOG_LEVEL_ERROR, 1);
	if (mkdtemp(tmpdir) == NULL)
		abort();
	base = event_base_new();
	conf.provider = AUTH_PROVIDER_LOCAL;
	conf.audiences = one(AUTH_LOCAL_AUDIENCE);
	conf.naudiences = 1;
	conf.required_scopes = one(AUTH_LOCAL_SCOPE);
	conf.nrequired_scopes = 1;
	conf.roles.values[0] = one("Tenantd.Admin");
	conf.roles.nvalues[0] = 1;
	conf.roles.values[1] = one("Tenantd.Auditor");
	conf.roles.nvalues[1] = 1;
	conf.clock_skew = 120;
	conf.jwks_refresh = 3600;
	TEST(test_key_file);
	TEST(test_mint_and_verify);
	TEST(test_mint_refusals);
	TEST(test_other_key_refused);
	auth_conf_free(&conf);
	event_base_free(base);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	(void)!system(cmd);
	return unit_done();
}
