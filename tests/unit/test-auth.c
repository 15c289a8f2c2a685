/*
 * test-auth.c: token validation. Every token is minted here with OpenSSL
 * and an RSA key generated at start, so nothing is hard-coded.
 */
#include "config.h"

#include <stdlib.h>

#include <event2/event.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include "tenantd.h"
#include "unit.h"

#define TENANT		"72f988bf-86f1-41af-91ab-2d7cd011db47"
#define OTHER_TENANT	"f8cdef31-a31e-4b4a-93e4-5f571e91255a"
#define ISS_V1		"https://sts.windows.net/" TENANT "/"
#define ISS_V2		"https://login.microsoftonline.com/" TENANT "/v2.0"
#define CLIENT_ID	"6e74172b-be56-4843-9ff4-e66a39bb12e3"
#define APP_ID_URI	"api://contoso-api"
#define SPFX		"08e18876-6177-487e-b8b5-cf950c1e598c"
#define TEAMS		"5e3ce6c0-2b1f-4285-8d4b-75ee78787346"
#define NOW		1800000000

static EVP_PKEY			*key, *other_key;
static struct event_base	*base;
static struct httpc		*hc;
static struct jwks		*jwks;
static struct auth_conf		 conf;
static struct auth		*auth;
static int64_t			 now = NOW;
static int			 pseudonym_calls;

static int64_t
test_clock(void)
{
	return now;
}

static int
test_pseudonym(const char *tid, const char *oid, char *out, size_t len,
    void *arg)
{
	pseudonym_calls++;
	snprintf(out, len, "p-%.8s", oid);
	return 0;
}

/* --- minting ------------------------------------------------------------ */

/* Consumes the reference. */
static char *
b64_json(json_t *doc)
{
	char	*s = json_dumps(doc, JSON_COMPACT), *enc;

	enc = base64url_encode((unsigned char *)s, strlen(s));
	free(s);
	json_decref(doc);
	return enc;
}

static char *
b64_str(const char *s)
{
	return base64url_encode((const unsigned char *)s, strlen(s));
}

enum sig_kind { SIG_RS256, SIG_HS256_PEM, SIG_NONE, SIG_GARBAGE };

/* HMAC-SHA256 keyed with the published key's PEM: the classic forgery. */
static size_t
hmac_with_pem(const char *input, unsigned char *sig)
{
	struct jwks_keyset	*set = jwks_keyset_get(jwks);
	const struct jwks_key	*jk = jwks_keyset_find(set, "ka");
	unsigned int		 len = 0;

	HMAC(EVP_sha256(), jk->pem, (int)jk->pem_len,
	    (const unsigned char *)input, strlen(input), sig, &len);
	jwks_keyset_put(set);
	return len;
}

/* header.payload.signature; consumes both references. */
static char *
mint_raw(char *h, char *p, EVP_PKEY *k, enum sig_kind kind)
{
	unsigned char	 sig[1024];
	size_t		 siglen = sizeof(sig);
	char		*input, *tok, *s;
	EVP_MD_CTX	*ctx = EVP_MD_CTX_new();

	xasprintf(&input, "%s.%s", h, p);
	if (kind == SIG_RS256) {
		EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k);
		EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)input,
		    strlen(input));
	} else if (kind == SIG_HS256_PEM) {
		siglen = hmac_with_pem(input, sig);
	} else if (kind == SIG_GARBAGE) {
		memset(sig, 0x5a, 256);
		siglen = 256;
	} else
		siglen = 0;
	EVP_MD_CTX_free(ctx);
	s = base64url_encode(sig, siglen);
	xasprintf(&tok, "%s.%s", input, s);
	free(s);
	free(input);
	free(h);
	free(p);
	return tok;
}

static char *
mint(json_t *header, json_t *claims, EVP_PKEY *k, enum sig_kind kind)
{
	return mint_raw(b64_json(header), b64_json(claims), k, kind);
}

static json_t *
header(const char *kid)
{
	return json_pack("{s:s, s:s, s:s}", "typ", "JWT", "alg", "RS256",
	    "kid", kid);
}

static json_t *
claims(int ver)
{
	json_t	*c;

	c = json_pack("{s:I, s:I, s:I, s:s, s:s, s:s}", "iat", (json_int_t)NOW,
	    "nbf", (json_int_t)NOW, "exp", (json_int_t)NOW + 3600,
	    "oid", "690222be-ff1a-4d56-abd1-7e4f7d38e474", "tid", TENANT,
	    "name", "Abe Lincoln");
	if (ver == 1)
		json_object_update_new(c, json_pack("{s:s, s:s, s:s, s:s, s:s,"
		    " s:s}", "ver", "1.0", "iss", ISS_V1, "aud", APP_ID_URI,
		    "appid", SPFX, "scp", "user_impersonation", "upn",
		    "abeli@contoso.example"));
	else
		json_object_update_new(c, json_pack("{s:s, s:s, s:s, s:s, s:s,"
		    " s:s}", "ver", "2.0", "iss", ISS_V2, "aud", CLIENT_ID,
		    "azp", TEAMS, "scp", "access_as_user",
		    "preferred_username", "abeli@contoso.example"));
	return c;
}

/* Verify a token minted from header and claims with the known key. */
static enum auth_result
check_with(json_t *h, json_t *c, EVP_PKEY *k, enum sig_kind kind,
    struct auth_principal *p)
{
	struct auth_principal	 tmp;
	char			*tok = mint(h, c, k, kind);
	enum auth_result	 rv;

	rv = auth_verify_token(auth, tok, strlen(tok), p ? p : &tmp);
	free(tok);
	return rv;
}

static enum auth_result
check(json_t *h, json_t *c)
{
	return check_with(h, c, key, SIG_RS256, NULL);
}

static json_t *
claims_set(int ver, const char *name, json_t *value)
{
	json_t	*c = claims(ver);

	if (value == NULL)
		json_object_del(c, name);
	else
		json_object_set_new(c, name, value);
	return c;
}

/* --- setup -------------------------------------------------------------- */

static char **
strv(int n, ...)
{
	char	**v = xcalloc(n, sizeof(*v));
	va_list	  ap;
	int	  i;

	va_start(ap, n);
	for (i = 0; i < n; i++)
		v[i] = xstrdup(va_arg(ap, const char *));
	va_end(ap);
	return v;
}

static void
setup(void)
{
	struct jwks_params	 p;
	json_t			*doc;
	char			*s, err[160];

	key = EVP_RSA_gen(2048);
	other_key = EVP_RSA_gen(2048);
	conf.provider = AUTH_PROVIDER_ENTRA;
	conf.authority = xstrdup("https://login.microsoftonline.com");
	conf.audiences = strv(2, CLIENT_ID, APP_ID_URI);
	conf.naudiences = 2;
	conf.required_scopes = strv(2, "access_as_user", "user_impersonation");
	conf.nrequired_scopes = 2;
	conf.roles.values[0] = strv(1, "Tenantd.Admin");
	conf.roles.nvalues[0] = 1;
	conf.roles.values[1] = strv(1, "Tenantd.Auditor");
	conf.roles.nvalues[1] = 1;
	conf.clock_skew = 120;
	conf.jwks_refresh = 3600;
	if (auth_conf_check(&conf, err, sizeof(err)) == -1)
		fatalx("conf: %s", err);

	base = event_base_new();
	hc = httpc_new(base);
	memset(&p, 0, sizeof(p));
	p.authority = conf.authority;
	p.tenant_id = TENANT;
	jwks = jwks_new(base, hc, &p);
	doc = json_pack("{s:s, s:s, s:[o]}", "issuer_v1", ISS_V1, "issuer_v2",
	    ISS_V2, "keys", jwks_jwk_from_pkey(key, "ka"));
	s = json_dumps(doc, 0);
	if (jwks_install(jwks, s, strlen(s), 1, err, sizeof(err)) == -1)
		fatalx("jwks_install: %s", err);
	free(s);
	json_decref(doc);
	auth = auth_new(&conf, TENANT, jwks, 0);	/* no cache */
	auth_set_clock(auth, test_clock);
}

/* --- accepted ----------------------------------------------------------- */

static void
test_accept_v2(void)
{
	struct auth_principal	p;
	json_t			*c = claims(2);

	json_object_set_new(c, "roles", json_pack("[s, s]", "Tenantd.Auditor",
	    "Other.Role"));
	CHECK(check_with(header("ka"), c, key, SIG_RS256, &p) == AUTH_OK);
	CHECK_STR(p.oid, "690222be-ff1a-4d56-abd1-7e4f7d38e474");
	CHECK_STR(p.tid, TENANT);
	CHECK_STR(p.app_id, TEAMS);
	CHECK_STR(p.upn, "abeli@contoso.example");
	CHECK(p.version == 2);
	CHECK(p.roles == AUTH_ROLE_AUDITOR);
	CHECK(!p.app_only);
	CHECK(p.exp == NOW + 3600);
}

static void
test_accept_v1(void)
{
	struct auth_principal	p;
	json_t			*c = claims(1);

	json_object_set_new(c, "roles", json_pack("[s]", "Tenantd.Admin"));
	CHECK(check_with(header("ka"), c, key, SIG_RS256, &p) == AUTH_OK);
	CHECK_STR(p.app_id, SPFX);
	CHECK_STR(p.upn, "abeli@contoso.example");
	CHECK(p.version == 1);
	CHECK(p.roles == AUTH_ROLE_ADMIN);
}

static void
test_bearer(void)
{
	struct auth_principal	 p;
	char			*tok = mint(header("ka"), claims(2), key,
				    SIG_RS256), *hdr;

	xasprintf(&hdr, "Bearer %s", tok);
	CHECK(auth_verify_bearer(auth, hdr, &p) == AUTH_OK);
	hdr[0] = 'b';
	CHECK(auth_verify_bearer(auth, hdr, &p) == AUTH_OK);
	CHECK(auth_verify_bearer(auth, NULL, &p) == AUTH_ERR_MISSING);
	CHECK(auth_verify_bearer(auth, "", &p) == AUTH_ERR_MISSING);
	CHECK(auth_verify_bearer(auth, "Basic dXNlcjpwYXNz", &p) ==
	    AUTH_ERR_SCHEME);
	CHECK(auth_verify_bearer(auth, "Bearer", &p) == AUTH_ERR_SCHEME);
	free(hdr);
	xasprintf(&hdr, "Bearer  %s", tok);	/* two spaces */
	CHECK(auth_verify_bearer(auth, hdr, &p) != AUTH_OK);
	free(hdr);
	free(tok);
}

/* --- rejected: header and signature ------------------------------------- */

static void
test_alg_none(void)
{
	json_t	*h = json_pack("{s:s, s:s}", "alg", "none", "kid", "ka");

	json_incref(h);
	/* "h.p." has an empty third part: not a JWS we accept at all */
	CHECK(check_with(h, claims(2), NULL, SIG_NONE, NULL) ==
	    AUTH_ERR_MALFORMED);
	CHECK(check_with(h, claims(2), NULL, SIG_GARBAGE, NULL) ==
	    AUTH_ERR_ALG);
	CHECK(check_with(json_pack("{s:s}", "alg", "none"), claims(2), key,
	    SIG_RS256, NULL) == AUTH_ERR_ALG);
}

static void
test_hs256_with_public_key(void)
{
	json_t			*h = json_pack("{s:s, s:s}", "alg", "HS256",
				    "kid", "ka");
	struct jwks_keyset	*set = jwks_keyset_get(jwks);
	const struct jwks_key	*jk = jwks_keyset_find(set, "ka");
	jwt_t			*jwt = NULL;
	char			*tok;

	/* The forgery is real: libjwt alone accepts it with the PEM. */
	tok = mint(json_incref(h), claims(2), NULL, SIG_HS256_PEM);
	CHECK(jwt_decode(&jwt, tok, (unsigned char *)jk->pem,
	    (int)jk->pem_len) == 0);
	CHECK(jwt != NULL && jwt_get_alg(jwt) == JWT_ALG_HS256);
	jwt_free(jwt);
	CHECK(auth_verify_token(auth, tok, strlen(tok),
	    &(struct auth_principal){ 0 }) == AUTH_ERR_ALG);
	free(tok);
	json_decref(h);
	jwks_keyset_put(set);
	CHECK(check(json_pack("{s:s, s:s}", "alg", "RS512", "kid", "ka"),
	    claims(2)) == AUTH_ERR_ALG);
	CHECK(check(json_pack("{s:i, s:s}", "alg", 1, "kid", "ka"),
	    claims(2)) == AUTH_ERR_ALG);
}

static void
test_wrong_key_known_kid(void)
{
	CHECK(check_with(header("ka"), claims(2), other_key, SIG_RS256,
	    NULL) == AUTH_ERR_SIGNATURE);
	CHECK(check_with(header("ka"), claims(2), NULL, SIG_GARBAGE, NULL) ==
	    AUTH_ERR_SIGNATURE);
}

static void
test_unknown_and_missing_kid(void)
{
	uint64_t	before = jwks_fetch_count(jwks);

	CHECK(check_with(header("nope"), claims(2), other_key, SIG_RS256,
	    NULL) == AUTH_ERR_UNKNOWN_KID);
	CHECK(jwks_kid_miss(jwks) == 1);	/* a refresh was requested */
	CHECK(jwks_fetch_count(jwks) == before);	/* base not running */
	CHECK(check(json_pack("{s:s}", "alg", "RS256"), claims(2)) ==
	    AUTH_ERR_KID);
	CHECK(check(json_pack("{s:s, s:i}", "alg", "RS256", "kid", 7),
	    claims(2)) == AUTH_ERR_KID);
}

static void
test_forbidden_header_params(void)
{
	const char	*params[] = { "jku", "x5u", "jwk", "crit" };
	json_t		*h;
	size_t		 i;

	for (i = 0; i < nitems(params); i++) {
		h = header("ka");
		json_object_set_new(h, params[i], i == 2 ?
		    jwks_jwk_from_pkey(other_key, "ka") : i == 3 ?
		    json_pack("[s]", "exp") :
		    json_string("https://evil.example/keys"));
		CHECK(check(h, claims(2)) == AUTH_ERR_HEADER_PARAM);
	}
}

/* --- rejected: shape ---------------------------------------------------- */

static void
test_five_parts(void)
{
	char	*tok = mint(header("ka"), claims(2), key, SIG_RS256), *five;

	xasprintf(&five, "%s.AAAA.AAAA", tok);
	CHECK(auth_verify_token(auth, five, strlen(five),
	    &(struct auth_principal){ 0 }) == AUTH_ERR_MALFORMED);
	CHECK(auth_verify_token(auth, "abc.def", 7,
	    &(struct auth_principal){ 0 }) == AUTH_ERR_MALFORMED);
	CHECK(auth_verify_token(auth, "..", 2,
	    &(struct auth_principal){ 0 }) == AUTH_ERR_MALFORMED);
	free(five);
	free(tok);
}

static void
test_oversized(void)
{
	json_t	*c = claims(2), *h = header("ka");
	char	*pad = xcalloc(1, 17000);

	memset(pad, 'a', 16999);
	json_object_set_new(c, "pad", json_string(pad));
	CHECK(check(json_incref(h), c) == AUTH_ERR_TOO_LARGE);
	pad[3500] = '\0';		/* the header alone over 4 KiB */
	json_object_set_new(h, "pad", json_string(pad));
	CHECK(check(h, claims(2)) == AUTH_ERR_TOO_LARGE);
	free(pad);
}

static void
test_bad_base64(void)
{
	char	*tok = mint(header("ka"), claims(2), key, SIG_RS256);
	char	*dot = strchr(tok, '.');
	size_t	 len = strlen(tok);

	dot[1] = '+';			/* payload */
	CHECK(auth_verify_token(auth, tok, len,
	    &(struct auth_principal){ 0 }) == AUTH_ERR_BASE64);
	free(tok);
	tok = mint(header("ka"), claims(2), key, SIG_RS256);
	tok[0] = '=';			/* header */
	CHECK(auth_verify_token(auth, tok, len,
	    &(struct auth_principal){ 0 }) == AUTH_ERR_BASE64);
	free(tok);
	tok = mint(header("ka"), claims(2), key, SIG_RS256);
	tok[len - 1] = '/';		/* signature */
	CHECK(auth_verify_token(auth, tok, len,
	    &(struct auth_principal){ 0 }) == AUTH_ERR_BASE64);
	free(tok);
}

static void
test_header_not_json(void)
{
	char	*tok;

	tok = mint_raw(b64_str("not json"), b64_json(claims(2)), key,
	    SIG_RS256);
	CHECK(auth_verify_token(auth, tok, strlen(tok),
	    &(struct auth_principal){ 0 }) == AUTH_ERR_HEADER_JSON);
	free(tok);
	tok = mint_raw(b64_str("[\"RS256\"]"), b64_json(claims(2)), key,
	    SIG_RS256);
	CHECK(auth_verify_token(auth, tok, strlen(tok),
	    &(struct auth_principal){ 0 }) == AUTH_ERR_HEADER_JSON);
	free(tok);
	/* Duplicate names would let two parsers disagree on alg. */
	tok = mint_raw(b64_str("{\"alg\":\"RS256\",\"kid\":\"ka\","
	    "\"alg\":\"none\"}"), b64_json(claims(2)), key, SIG_RS256);
	CHECK(auth_verify_token(auth, tok, strlen(tok),
	    &(struct auth_principal){ 0 }) == AUTH_ERR_HEADER_JSON);
	free(tok);
	tok = mint_raw(b64_json(header("ka")), b64_str("{\"ver\":"), key,
	    SIG_RS256);
	CHECK(auth_verify_token(auth, tok, strlen(tok),
	    &(struct auth_principal){ 0 }) == AUTH_ERR_PAYLOAD_JSON);
	free(tok);
}

/* --- rejected: claims --------------------------------------------------- */

static void
test_wrong_tenant(void)
{
	CHECK(check(header("ka"), claims_set(2, "tid",
	    json_string(OTHER_TENANT))) == AUTH_ERR_TENANT);
	CHECK(check(header("ka"), claims_set(2, "tid", NULL)) ==
	    AUTH_ERR_TENANT);
}

static void
test_issuer_version_mismatch(void)
{
	CHECK(check(header("ka"), claims_set(2, "iss",
	    json_string(ISS_V1))) == AUTH_ERR_ISSUER);
	CHECK(check(header("ka"), claims_set(1, "iss",
	    json_string(ISS_V2))) == AUTH_ERR_ISSUER);
	CHECK(check(header("ka"), claims_set(2, "ver",
	    json_string("3.0"))) == AUTH_ERR_VERSION);
	CHECK(check(header("ka"), claims_set(2, "ver", NULL)) ==
	    AUTH_ERR_VERSION);
}

static void
test_other_tenant_issuer(void)
{
	CHECK(check(header("ka"), claims_set(2, "iss", json_string(
	    "https://login.microsoftonline.com/" OTHER_TENANT "/v2.0"))) ==
	    AUTH_ERR_ISSUER);
	CHECK(check(header("ka"), claims_set(1, "iss", json_string(
	    "https://sts.windows.net/" OTHER_TENANT "/"))) == AUTH_ERR_ISSUER);
}

static void
test_foreign_audience(void)
{
	CHECK(check(header("ka"), claims_set(2, "aud",
	    json_string("00000003-0000-0000-c000-000000000000"))) ==
	    AUTH_ERR_AUDIENCE);
	CHECK(check(header("ka"), claims_set(2, "aud", NULL)) ==
	    AUTH_ERR_AUDIENCE);
	CHECK(check(header("ka"), claims_set(2, "aud", json_pack("[s, s]",
	    "api://other", CLIENT_ID))) == AUTH_OK);
}

static void
test_lifetime(void)
{
	int64_t	skew = (int64_t)conf.clock_skew;

	CHECK(check(header("ka"), claims_set(2, "exp",
	    json_integer(NOW - skew - 1))) == AUTH_ERR_EXPIRED);
	CHECK(check(header("ka"), claims_set(2, "exp",
	    json_integer(NOW - skew + 1))) == AUTH_OK);
	CHECK(check(header("ka"), claims_set(2, "nbf",
	    json_integer(NOW + skew + 1))) == AUTH_ERR_NOT_YET_VALID);
	CHECK(check(header("ka"), claims_set(2, "nbf",
	    json_integer(NOW + skew - 1))) == AUTH_OK);
	CHECK(check(header("ka"), claims_set(2, "exp", NULL)) ==
	    AUTH_ERR_CLAIMS);
	CHECK(check(header("ka"), claims_set(2, "exp",
	    json_string("soon"))) == AUTH_ERR_CLAIMS);
}

static void
test_no_oid(void)
{
	CHECK(check(header("ka"), claims_set(2, "oid", NULL)) ==
	    AUTH_ERR_OID);
	CHECK(check(header("ka"), claims_set(2, "oid", json_string(""))) ==
	    AUTH_ERR_OID);
}

static void
test_scopes_and_app_tokens(void)
{
	struct auth_principal	p;
	json_t			*c;

	CHECK(check(header("ka"), claims_set(2, "scp", NULL)) ==
	    AUTH_ERR_SCOPE);
	CHECK(check(header("ka"), claims_set(2, "scp",
	    json_string("User.Read access_as_userx"))) == AUTH_ERR_SCOPE);
	CHECK(check(header("ka"), claims_set(2, "scp",
	    json_string("User.Read access_as_user"))) == AUTH_OK);
	c = claims_set(2, "scp", NULL);
	json_object_set_new(c, "roles", json_pack("[s]", "Tenantd.Admin"));
	json_incref(c);
	CHECK(check(header("ka"), c) == AUTH_ERR_APP_TOKEN);
	conf.allow_app_tokens = 1;
	CHECK(check_with(header("ka"), c, key, SIG_RS256, &p) == AUTH_OK);
	CHECK(p.app_only && p.roles == AUTH_ROLE_ADMIN);
	CHECK(check(header("ka"), claims_set(2, "scp", NULL)) ==
	    AUTH_ERR_SCOPE);
	conf.allow_app_tokens = 0;
	CHECK(check(header("ka"), claims_set(2, "roles",
	    json_string("Tenantd.Admin"))) == AUTH_ERR_CLAIMS);
}

static void
test_allowed_clients(void)
{
	conf.allowed_clients = strv(1, TEAMS);
	conf.nallowed_clients = 1;
	CHECK(check(header("ka"), claims(2)) == AUTH_OK);
	CHECK(check(header("ka"), claims(1)) == AUTH_ERR_CLIENT);
	CHECK(check(header("ka"), claims_set(2, "azp", NULL)) ==
	    AUTH_ERR_CLIENT);
	/* v2 tokens name the app in azp, never appid */
	CHECK(check(header("ka"), claims_set(1, "appid",
	    json_string(TEAMS))) == AUTH_OK);
	free(conf.allowed_clients[0]);
	free(conf.allowed_clients);
	conf.allowed_clients = NULL;
	conf.nallowed_clients = 0;
}

static void
test_labels_and_conf(void)
{
	struct auth_conf	c;
	char			err[160];
	unsigned		role;
	int			i, all = 1;

	for (i = 0; i < AUTH_RESULT_COUNT; i++)
		all &= auth_result_label(i) != NULL &&
		    strspn(auth_result_label(i),
		    "abcdefghijklmnopqrstuvwxyz0123456789_") ==
		    strlen(auth_result_label(i));
	CHECK(all);
	CHECK_STR(auth_result_label(AUTH_ERR_UNKNOWN_KID), "unknown_kid");
	CHECK(auth_role_parse("auditor", &role) == 0 &&
	    role == AUTH_ROLE_AUDITOR);
	CHECK(auth_role_parse("root", &role) == -1);
	CHECK_STR(auth_role_name(AUTH_ROLE_ADMIN), "admin");
	c = conf;
	c.clock_skew = 301;
	CHECK(auth_conf_check(&c, err, sizeof(err)) == -1);
	c = conf;
	c.naudiences = 0;
	CHECK(auth_conf_check(&c, err, sizeof(err)) == -1);
	c = conf;
	c.nrequired_scopes = 0;
	CHECK(auth_conf_check(&c, err, sizeof(err)) == -1);
	c.allow_app_tokens = 1;
	CHECK(auth_conf_check(&c, err, sizeof(err)) == 0);
}

/* --- cache -------------------------------------------------------------- */

static void
test_cache_hit_skips_verification(void)
{
	struct auth		*a = auth_new(&conf, TENANT, jwks, 16);
	struct auth_principal	 p;
	struct auth_stats	 st;
	char			*tok = mint(header("ka"), claims(2), key,
				    SIG_RS256);

	auth_set_clock(a, test_clock);
	auth_set_pseudonymizer(a, test_pseudonym, NULL);
	pseudonym_calls = 0;
	CHECK(auth_verify_token(a, tok, strlen(tok), &p) == AUTH_OK);
	CHECK_STR(p.pseudonym, "p-690222be");
	CHECK(auth_verify_token(a, tok, strlen(tok), &p) == AUTH_OK);
	CHECK_STR(p.pseudonym, "p-690222be");
	CHECK_STR(p.oid, "690222be-ff1a-4d56-abd1-7e4f7d38e474");
	auth_get_stats(a, &st);
	CHECK(st.verifications == 1 && st.cache_hits == 1 &&
	    st.cache_misses == 1 && st.cache_entries == 1);
	CHECK(pseudonym_calls == 1);
	/* A different token (one byte) is not a hit. */
	tok[strlen(tok) - 2] ^= 1;
	CHECK(auth_verify_token(a, tok, strlen(tok), &p) != AUTH_OK);
	auth_get_stats(a, &st);
	CHECK(st.cache_hits == 1);
	free(tok);
	auth_free(a);
}

static void
test_cache_expiry(void)
{
	struct auth		*a = auth_new(&conf, TENANT, jwks, 16);
	struct auth_principal	 p;
	struct auth_stats	 st;
	char			*tok = mint(header("ka"), claims_set(2, "exp",
				    json_integer(NOW + 60)), key, SIG_RS256);

	auth_set_clock(a, test_clock);
	CHECK(auth_verify_token(a, tok, strlen(tok), &p) == AUTH_OK);
	now = NOW + 59;
	CHECK(auth_verify_token(a, tok, strlen(tok), &p) == AUTH_OK);
	auth_get_stats(a, &st);
	CHECK(st.cache_hits == 1 && st.verifications == 1);
	now = NOW + 61;		/* past exp: dropped, verified again */
	CHECK(auth_verify_token(a, tok, strlen(tok), &p) == AUTH_OK);
	auth_get_stats(a, &st);
	CHECK(st.cache_hits == 1 && st.verifications == 2);
	CHECK(st.cache_entries == 0);	/* not re-cached after exp */
	now = NOW + 60 + 121;	/* beyond the skew */
	CHECK(auth_verify_token(a, tok, strlen(tok), &p) == AUTH_ERR_EXPIRED);
	now = NOW;
	free(tok);
	auth_free(a);
}

static void
test_cache_lru_bound(void)
{
	struct auth		*a = auth_new(&conf, TENANT, jwks, 2);
	struct auth_principal	 p;
	struct auth_stats	 st;
	char			*t[3];
	int			 i;

	auth_set_clock(a, test_clock);
	for (i = 0; i < 3; i++)
		t[i] = mint(header("ka"), claims_set(2, "iat",
		    json_integer(NOW - i)), key, SIG_RS256);
	CHECK(auth_verify_token(a, t[0], strlen(t[0]), &p) == AUTH_OK);
	CHECK(auth_verify_token(a, t[1], strlen(t[1]), &p) == AUTH_OK);
	CHECK(auth_verify_token(a, t[0], strlen(t[0]), &p) == AUTH_OK);
	CHECK(auth_verify_token(a, t[2], strlen(t[2]), &p) == AUTH_OK);
	auth_get_stats(a, &st);
	CHECK(st.cache_entries == 2 && st.verifications == 3 &&
	    st.cache_hits == 1);
	/* t[1] was least recently used and went; t[0] and t[2] stayed. */
	CHECK(auth_verify_token(a, t[0], strlen(t[0]), &p) == AUTH_OK);
	CHECK(auth_verify_token(a, t[2], strlen(t[2]), &p) == AUTH_OK);
	auth_get_stats(a, &st);
	CHECK(st.cache_hits == 3 && st.verifications == 3);
	CHECK(auth_verify_token(a, t[1], strlen(t[1]), &p) == AUTH_OK);
	auth_get_stats(a, &st);
	CHECK(st.verifications == 4 && st.cache_entries == 2);
	for (i = 0; i < 3; i++)
		free(t[i]);
	auth_free(a);
}

int
main(void)
{
	log_init("test", LOG_LEVEL_ERROR, 1);
	setup();
	TEST(test_accept_v2);
	TEST(test_accept_v1);
	TEST(test_bearer);
	TEST(test_alg_none);
	TEST(test_hs256_with_public_key);
	TEST(test_wrong_key_known_kid);
	TEST(test_unknown_and_missing_kid);
	TEST(test_forbidden_header_params);
	TEST(test_five_parts);
	TEST(test_oversized);
	TEST(test_bad_base64);
	TEST(test_header_not_json);
	TEST(test_wrong_tenant);
	TEST(test_issuer_version_mismatch);
	TEST(test_other_tenant_issuer);
	TEST(test_foreign_audience);
	TEST(test_lifetime);
	TEST(test_no_oid);
	TEST(test_scopes_and_app_tokens);
	TEST(test_allowed_clients);
	TEST(test_labels_and_conf);
	TEST(test_cache_hit_skips_verification);
	TEST(test_cache_expiry);
	TEST(test_cache_lru_bound);
	auth_free(auth);
	jwks_free(jwks);
	httpc_free(hc);
	event_base_free(base);
	auth_conf_free(&conf);
	EVP_PKEY_free(key);
	EVP_PKEY_free(other_key);
	return unit_done();
}
