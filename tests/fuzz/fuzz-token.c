/*
 * fuzz-token.c: libFuzzer target for the token pre-parser, the header and
 * claim checks and the verified-token path. The first input byte picks
 * the mode; the rest is a token, a bearer header value or a claim set.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "tenantd.h"

#define TENANT	"72f988bf-86f1-41af-91ab-2d7cd011db47"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct auth_conf		 conf;
static struct jwks		*jwks;
static struct auth		*auth;

static char **
one(const char *s)
{
	char	**v = xcalloc(1, sizeof(*v));

	v[0] = xstrdup(s);
	return v;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct event_base	*base;
	struct jwks_params	 p;
	EVP_PKEY		*key;
	json_t			*doc;
	char			*s, err[160];

	log_init("fuzz", LOG_LEVEL_ERROR, 1);
	conf.audiences = one("api://contoso-api");
	conf.naudiences = 1;
	conf.required_scopes = one("user_impersonation");
	conf.nrequired_scopes = 1;
	conf.allowed_clients = one("08e18876-6177-487e-b8b5-cf950c1e598c");
	conf.nallowed_clients = 1;
	conf.roles.values[0] = one("Tenantd.Admin");
	conf.roles.nvalues[0] = 1;
	conf.allow_app_tokens = 1;
	conf.clock_skew = 120;
	base = event_base_new();
	memset(&p, 0, sizeof(p));
	p.authority = "https://login.microsoftonline.com";
	p.tenant_id = TENANT;
	jwks = jwks_new(base, httpc_new(base), &p);
	key = EVP_RSA_gen(2048);
	doc = json_pack("{s:s, s:s, s:[o]}",
	    "issuer_v1", "https://sts.windows.net/" TENANT "/",
	    "issuer_v2", "https://login.microsoftonline.com/" TENANT "/v2.0",
	    "keys", jwks_jwk_from_pkey(key, "k"));
	s = json_dumps(doc, 0);
	if (jwks_install(jwks, s, strlen(s), 1, err, sizeof(err)) == -1)
		fatalx("fuzz: %s", err);
	free(s);
	json_decref(doc);
	EVP_PKEY_free(key);
	auth = auth_new(&conf, TENANT, jwks, 8);
	return 0;
}

static void
fuzz_claims(const char *data, size_t size)
{
	struct jwks_keyset	*set = jwks_keyset_get(jwks);
	struct auth_principal	 p;
	json_t			*payload;

	payload = json_loadb(data, size, JSON_REJECT_DUPLICATES, NULL);
	if (json_is_object(payload))
		auth_check_claims(auth, set, payload, &p);
	json_decref(payload);
	jwks_keyset_put(set);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct auth_principal	 p;
	json_t			*header = NULL;
	char			*s;

	if (size == 0)
		return 0;
	s = xstrndup((const char *)data + 1, size - 1);
	switch (data[0] % 4) {
	case 0:
		auth_verify_token(auth, (const char *)data + 1, size - 1, &p);
		break;
	case 1:
		auth_check_shape((const char *)data + 1, size - 1, &header);
		json_decref(header);
		break;
	case 2:
		fuzz_claims((const char *)data + 1, size - 1);
		break;
	default:
		auth_verify_bearer(auth, s, &p);
		break;
	}
	free(s);
	return 0;
}
