/*
 * auth.c: validates Entra ID access tokens in a fixed order (shape, header,
 * signature, claims), turns them into a principal, and caches verified
 * tokens so a token seen again skips the RSA check.
 */
#include "config.h"

#include <sys/queue.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "tenantd.h"

#define AUTH_SIG_MAX		1366	/* base64url of an 8192-bit signature */
#define AUTH_KID_MAX		128

/* Metric label values of tenantd_auth_failures_total{reason}. */
static const char *const auth_result_labels[AUTH_RESULT_COUNT] = {
	[AUTH_OK] = "ok",
	[AUTH_ERR_MISSING] = "missing",
	[AUTH_ERR_SCHEME] = "scheme",
	[AUTH_ERR_QUERY_TOKEN] = "query_token",
	[AUTH_ERR_TOO_LARGE] = "too_large",
	[AUTH_ERR_MALFORMED] = "malformed",
	[AUTH_ERR_BASE64] = "base64",
	[AUTH_ERR_HEADER_JSON] = "header_json",
	[AUTH_ERR_ALG] = "alg",
	[AUTH_ERR_HEADER_PARAM] = "header_param",
	[AUTH_ERR_KID] = "kid",
	[AUTH_ERR_NO_KEYS] = "no_keys",
	[AUTH_ERR_UNKNOWN_KID] = "unknown_kid",
	[AUTH_ERR_SIGNATURE] = "signature",
	[AUTH_ERR_PAYLOAD_JSON] = "payload_json",
	[AUTH_ERR_VERSION] = "version",
	[AUTH_ERR_ISSUER] = "issuer",
	[AUTH_ERR_TENANT] = "tenant",
	[AUTH_ERR_AUDIENCE] = "audience",
	[AUTH_ERR_EXPIRED] = "expired",
	[AUTH_ERR_NOT_YET_VALID] = "not_yet_valid",
	[AUTH_ERR_OID] = "oid",
	[AUTH_ERR_SCOPE] = "scope",
	[AUTH_ERR_APP_TOKEN] = "app_token",
	[AUTH_ERR_CLIENT] = "client",
	[AUTH_ERR_CLAIMS] = "claims",
	[AUTH_ERR_NOT_CONFIGURED] = "not_configured",
	[AUTH_ERR_INTERNAL] = "internal",
};

/* Index i is the role bit 1 << i and the index into auth.roles. */
static const struct {
	const char	*name;
	unsigned	 role;
} auth_roles[AUTH_NROLES] = {
	{ "admin", AUTH_ROLE_ADMIN },
	{ "auditor", AUTH_ROLE_AUDITOR },
};

/* Header parameters that would let a token choose its own key. */
static const char *const auth_forbidden_params[] = {
	"crit", "jku", "x5u", "jwk",
};

/* The calling-app and user-name claims differ by token version. */
static const struct {
	const char	*ver;
	const char	*app_claim;
	const char	*upn_claim;
} auth_versions[] = {
	{ "1.0", "appid", "upn" },
	{ "2.0", "azp", "preferred_username" },
};

struct auth_parts {
	const char	*seg[3];
	size_t		 len[3];
	unsigned char	*payload;	/* decoded */
	size_t		 payload_len;
};

struct auth {
	const struct auth_conf	*conf;
	char			*tenant_id;
	struct jwks		*jwks;
	struct auth_cache	*cache;
	auth_pseudonym_fn	 pseudonym;
	void			*pseudonym_arg;
	auth_clock_fn		 clock;
	uint64_t		 hits;		/* atomic counters */
	uint64_t		 misses;
	uint64_t		 verifications;
};

const char *
auth_result_label(enum auth_result r)
{
	if ((size_t)r >= AUTH_RESULT_COUNT)
		return "internal";
	return auth_result_labels[r];
}

int
auth_role_parse(const char *s, unsigned *role)
{
	size_t	i;

	for (i = 0; i < nitems(auth_roles); i++) {
		if (strcmp(s, auth_roles[i].name) == 0) {
			*role = auth_roles[i].role;
			return 0;
		}
	}
	return -1;
}

const char *
auth_role_name(unsigned role)
{
	size_t	i;

	for (i = 0; i < nitems(auth_roles); i++)
		if (auth_roles[i].role == role)
			return auth_roles[i].name;
	return NULL;
}

/* Cross-field checks the schema cannot express; 0 or -1 with err set. */
int
auth_conf_check(const struct auth_conf *conf, char *err, size_t len)
{
	if (conf->clock_skew > AUTH_CLOCK_SKEW_MAX)
		snprintf(err, len, "clock_skew must be at most %ds",
		    AUTH_CLOCK_SKEW_MAX);
	else if (conf->jwks_refresh < 60)
		snprintf(err, len, "jwks_refresh must be at least 60s");
	else if (conf->provider == AUTH_PROVIDER_LOCAL)
		return 0;
	else if (conf->authority == NULL ||
	    strncmp(conf->authority, "https://", 8) != 0)
		snprintf(err, len, "authority must be an https:// URL");
	else if (conf->naudiences == 0)
		snprintf(err, len, "audiences must list at least one "
		    "App ID URI or client id");
	else if (conf->nrequired_scopes == 0 && !conf->allow_app_tokens)
		snprintf(err, len, "required_scopes must list at least one "
		    "scope unless allow_app_tokens is true");
	else
		return 0;
	return -1;
}

static void
auth_strv_free(char **v, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void
auth_conf_free(struct auth_conf *conf)
{
	size_t	i;

	free(conf->authority);
	free(conf->ca_file);
	auth_strv_free(conf->audiences, conf->naudiences);
	auth_strv_free(conf->allowed_clients, conf->nallowed_clients);
	auth_strv_free(conf->required_scopes, conf->nrequired_scopes);
	for (i = 0; i < AUTH_NROLES; i++)
		auth_strv_free(conf->roles.values[i], conf->roles.nvalues[i]);
	memset(conf, 0, sizeof(*conf));
}

void
auth_principal_clear(struct auth_principal *p)
{
	OPENSSL_cleanse(p, sizeof(*p));
}

/* --- 1. shape ----------------------------------------------------------- */

static int
auth_split(const char *token, size_t len, struct auth_parts *parts)
{
	const char	*p = token, *end = token + len, *dot;
	int		 i;

	for (i = 0; i < 3; i++) {
		dot = memchr(p, '.', end - p);
		if ((dot == NULL) != (i == 2))
			return -1;
		if (dot == NULL)
			dot = end;
		parts->seg[i] = p;
		parts->len[i] = dot - p;
		if (parts->len[i] == 0)
			return -1;
		p = dot + 1;
	}
	return 0;
}

static json_t *
auth_json_object(const unsigned char *buf, size_t len)
{
	json_t	*doc;

	doc = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, NULL);
	if (doc != NULL && !json_is_object(doc)) {
		json_decref(doc);
		doc = NULL;
	}
	return doc;
}

/*
 * Three non-empty strict base64url parts within the size limits and a
 * header that is a JSON object. The decoded payload is left in parts for
 * the caller to free with auth_parts_free().
 */
static enum auth_result
auth_shape(const char *token, size_t len, struct auth_parts *parts,
    json_t **header)
{
	unsigned char	buf[AUTH_HEADER_MAX];
	unsigned char	sig[AUTH_SIG_MAX];
	ssize_t		n, pn;

	*header = NULL;
	memset(parts, 0, sizeof(*parts));
	if (len > AUTH_TOKEN_MAX)
		return AUTH_ERR_TOO_LARGE;
	if (auth_split(token, len, parts) == -1)
		return AUTH_ERR_MALFORMED;
	if (parts->len[0] > AUTH_HEADER_MAX)
		return AUTH_ERR_TOO_LARGE;
	if (parts->len[2] > AUTH_SIG_MAX)
		return AUTH_ERR_MALFORMED;
	parts->payload = xmalloc(parts->len[1]);
	if ((n = base64url_decode(parts->seg[0], parts->len[0], buf,
	    sizeof(buf))) == -1 ||
	    (pn = base64url_decode(parts->seg[1], parts->len[1],
	    parts->payload, parts->len[1])) == -1 ||
	    base64url_decode(parts->seg[2], parts->len[2], sig,
	    sizeof(sig)) == -1)
		return AUTH_ERR_BASE64;
	parts->payload_len = (size_t)pn;
	if ((*header = auth_json_object(buf, (size_t)n)) == NULL)
		return AUTH_ERR_HEADER_JSON;
	return AUTH_OK;
}

static void
auth_parts_free(struct auth_parts *parts)
{
	if (parts->payload == NULL)
		return;
	OPENSSL_cleanse(parts->payload, parts->len[1]);
	free(parts->payload);
	parts->payload = NULL;
}

enum auth_result
auth_check_shape(const char *token, size_t len, json_t **header)
{
	struct auth_parts	parts;
	enum auth_result	rv;

	rv = auth_shape(token, len, &parts, header);
	auth_parts_free(&parts);
	return rv;
}

/* --- 2. header ---------------------------------------------------------- */

static enum auth_result
auth_check_header(json_t *header, const char **kid)
{
	const char	*alg;
	size_t		 i;

	alg = json_string_value(json_object_get(header, "alg"));
	if (alg == NULL || strcmp(alg, "RS256") != 0)
		return AUTH_ERR_ALG;
	for (i = 0; i < nitems(auth_forbidden_params); i++)
		if (json_object_get(header, auth_forbidden_params[i]) != NULL)
			return AUTH_ERR_HEADER_PARAM;
	*kid = json_string_value(json_object_get(header, "kid"));
	if (*kid == NULL || **kid == '\0' || strlen(*kid) >= AUTH_KID_MAX)
		return AUTH_ERR_KID;
	return AUTH_OK;
}

/* --- 3. signature ------------------------------------------------------- */

static enum auth_result
auth_find_key(struct auth *a, const char *kid, struct jwks_keyset **set,
    const struct jwks_key **key)
{
	if ((*set = jwks_keyset_get(a->jwks)) == NULL) {
		jwks_kid_miss(a->jwks);
		return AUTH_ERR_NO_KEYS;
	}
	if ((*key = jwks_keyset_find(*set, kid)) == NULL) {
		jwks_kid_miss(a->jwks);
		return AUTH_ERR_UNKNOWN_KID;
	}
	return AUTH_OK;
}

/*
 * RS256 with the key set's parsed key: RSASSA-PKCS1-v1_5 over SHA-256 of
 * "header.payload". The algorithm is fixed here and never taken from the
 * token, so an HS256 token keyed with our public key PEM cannot verify
 * (the header check above refuses it first). libjwt 1.10's jwt_decode()
 * would re-parse the key's PEM on every call, which costs about 0.7 ms
 * with OpenSSL 3's decoders, twenty times the RSA verification.
 */
static enum auth_result
auth_check_signature(struct auth *a, const struct auth_parts *parts,
    const struct jwks_key *key)
{
	unsigned char	 sig[AUTH_SIG_MAX];
	EVP_MD_CTX	*ctx;
	ssize_t		 n;
	int		 ok;

	n = base64url_decode(parts->seg[2], parts->len[2], sig, sizeof(sig));
	if (n <= 0)
		return AUTH_ERR_SIGNATURE;
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return AUTH_ERR_INTERNAL;
	__atomic_add_fetch(&a->verifications, 1, __ATOMIC_RELAXED);
	ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL,
	    key->pkey) == 1 && EVP_DigestVerify(ctx, sig, (size_t)n,
	    (const unsigned char *)parts->seg[0],
	    parts->len[0] + 1 + parts->len[1]) == 1;
	EVP_MD_CTX_free(ctx);
	return ok ? AUTH_OK : AUTH_ERR_SIGNATURE;
}

/* --- 4. claims ---------------------------------------------------------- */

static int
auth_in_list(const char *s, char *const *list, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return 1;
	return 0;
}

static int
auth_copy_claim(json_t *payload, const char *name, char *out, size_t len)
{
	const char	*s = json_string_value(json_object_get(payload, name));

	if (s == NULL || *s == '\0' || strlen(s) >= len)
		return -1;
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

static enum auth_result
auth_check_version(json_t *payload, int *ver)
{
	const char	*s = json_string_value(json_object_get(payload, "ver"));
	size_t		 i;

	for (i = 0; s != NULL && i < nitems(auth_versions); i++) {
		if (strcmp(s, auth_versions[i].ver) == 0) {
			*ver = (int)i + 1;
			return AUTH_OK;
		}
	}
	return AUTH_ERR_VERSION;
}

static enum auth_result
auth_check_audience(const struct auth_conf *conf, json_t *aud)
{
	json_t	*v;
	size_t	 i;

	if (json_is_string(aud))
		return auth_in_list(json_string_value(aud), conf->audiences,
		    conf->naudiences) ? AUTH_OK : AUTH_ERR_AUDIENCE;
	if (!json_is_array(aud))
		return AUTH_ERR_AUDIENCE;
	json_array_foreach(aud, i, v)
		if (json_is_string(v) && auth_in_list(json_string_value(v),
		    conf->audiences, conf->naudiences))
			return AUTH_OK;
	return AUTH_ERR_AUDIENCE;
}

static int
auth_number(json_t *payload, const char *name, int64_t *out)
{
	json_t	*v = json_object_get(payload, name);
	double	 d;

	if (json_is_integer(v)) {
		*out = (int64_t)json_integer_value(v);
		return 0;
	}
	if (!json_is_real(v))
		return -1;
	d = json_real_value(v);
	if (!(d > -1e15 && d < 1e15))
		return -1;
	*out = (int64_t)d;
	return 0;
}

static enum auth_result
auth_check_lifetime(struct auth *a, json_t *payload, int64_t *exp)
{
	int64_t	now = a->clock(), skew = (int64_t)a->conf->clock_skew, nbf;

	if (auth_number(payload, "exp", exp) == -1)
		return AUTH_ERR_CLAIMS;
	if (now > *exp + skew)
		return AUTH_ERR_EXPIRED;
	if (json_object_get(payload, "nbf") == NULL)
		return AUTH_OK;
	if (auth_number(payload, "nbf", &nbf) == -1)
		return AUTH_ERR_CLAIMS;
	if (nbf > now + skew)
		return AUTH_ERR_NOT_YET_VALID;
	return AUTH_OK;
}

static int
auth_has_scope(const struct auth_conf *conf, const char *scp)
{
	const char	*p = scp, *end;
	size_t		 i, n;

	while (*p != '\0') {
		if ((end = strchr(p, ' ')) == NULL)
			end = p + strlen(p);
		n = end - p;
		for (i = 0; i < conf->nrequired_scopes; i++)
			if (n > 0 && strlen(conf->required_scopes[i]) == n &&
			    memcmp(p, conf->required_scopes[i], n) == 0)
				return 1;
		p = *end == ' ' ? end + 1 : end;
	}
	return 0;
}

/* Map app roles to tenantd roles; unknown values are ignored. */
static enum auth_result
auth_map_roles(const struct auth_conf *conf, json_t *roles, unsigned *out)
{
	json_t	*v;
	size_t	 i, j;

	*out = 0;
	if (roles == NULL)
		return AUTH_OK;
	if (!json_is_array(roles))
		return AUTH_ERR_CLAIMS;
	json_array_foreach(roles, i, v) {
		if (!json_is_string(v))
			return AUTH_ERR_CLAIMS;
		for (j = 0; j < AUTH_NROLES; j++)
			if (auth_in_list(json_string_value(v),
			    conf->roles.values[j], conf->roles.nvalues[j]))
				*out |= auth_roles[j].role;
	}
	return AUTH_OK;
}

/* scp must hold a required scope; roles alone only for app tokens. */
static enum auth_result
auth_check_access(const struct auth_conf *conf, json_t *payload,
    struct auth_principal *p)
{
	json_t		*scp = json_object_get(payload, "scp");
	json_t		*roles = json_object_get(payload, "roles");
	enum auth_result rv;

	if ((rv = auth_map_roles(conf, roles, &p->roles)) != AUTH_OK)
		return rv;
	if (scp != NULL) {
		if (!json_is_string(scp) ||
		    !auth_has_scope(conf, json_string_value(scp)))
			return AUTH_ERR_SCOPE;
		return AUTH_OK;
	}
	if (roles == NULL || json_array_size(roles) == 0)
		return AUTH_ERR_SCOPE;
	if (!conf->allow_app_tokens)
		return AUTH_ERR_APP_TOKEN;
	p->app_only = 1;
	return AUTH_OK;
}

static enum auth_result
auth_check_client(const struct auth_conf *conf, json_t *payload, int ver,
    struct auth_principal *p)
{
	const char	*claim = auth_versions[ver - 1].app_claim;

	if (json_object_get(payload, claim) != NULL &&
	    auth_copy_claim(payload, claim, p->app_id, sizeof(p->app_id)) == -1)
		return AUTH_ERR_CLAIMS;
	if (conf->nallowed_clients == 0)
		return AUTH_OK;
	if (!auth_in_list(p->app_id, conf->allowed_clients,
	    conf->nallowed_clients))
		return AUTH_ERR_CLIENT;
	return AUTH_OK;
}

/* Claim checks in the documented order; fills p on success. */
enum auth_result
auth_check_claims(struct auth *a, const struct jwks_keyset *set,
    json_t *payload, struct auth_principal *p)
{
	const char	*iss, *want;
	enum auth_result rv;
	int		 ver = 0;

	memset(p, 0, sizeof(*p));
	if ((rv = auth_check_version(payload, &ver)) != AUTH_OK)
		return rv;
	iss = json_string_value(json_object_get(payload, "iss"));
	want = jwks_keyset_issuer(set, ver);
	if (iss == NULL || want == NULL || strcmp(iss, want) != 0)
		return AUTH_ERR_ISSUER;
	if (auth_copy_claim(payload, "tid", p->tid, sizeof(p->tid)) == -1 ||
	    strcasecmp(p->tid, a->tenant_id) != 0)
		return AUTH_ERR_TENANT;
	if ((rv = auth_check_audience(a->conf,
	    json_object_get(payload, "aud"))) != AUTH_OK)
		return rv;
	if ((rv = auth_check_lifetime(a, payload, &p->exp)) != AUTH_OK)
		return rv;
	if (auth_copy_claim(payload, "oid", p->oid, sizeof(p->oid)) == -1)
		return AUTH_ERR_OID;
	if ((rv = auth_check_access(a->conf, payload, p)) != AUTH_OK)
		return rv;
	if ((rv = auth_check_client(a->conf, payload, ver, p)) != AUTH_OK)
		return rv;
	/* A display claim: never used to decide, so a bad one is dropped. */
	if (auth_copy_claim(payload, auth_versions[ver - 1].upn_claim,
	    p->upn, sizeof(p->upn)) == -1)
		p->upn[0] = '\0';
	p->version = ver;
	return AUTH_OK;
}

/* --- verified-token cache ----------------------------------------------- */

/*
 * One cache shared by all event loop threads behind a mutex: the critical
 * section is a hash probe and a copy of the principal (well under a
 * microsecond) against an RSA verification of tens of microseconds, and a
 * shared cache verifies a token once for all threads within one memory
 * bound. Keys are SHA-256 of the token, so the token is never stored.
 */
struct auth_entry {
	unsigned char		 key[SHA256_DIGEST_LENGTH];
	struct auth_principal	 p;
	struct auth_entry	*hnext;		/* hash chain */
	TAILQ_ENTRY(auth_entry)	 lru;		/* most recent first */
};

struct auth_cache {
	pthread_mutex_t		 mtx;
	size_t			 cap;
	size_t			 count;
	size_t			 mask;
	struct auth_entry	**buckets;
	struct auth_entry	*slab;
	TAILQ_HEAD(auth_entry_q, auth_entry) lru;
	TAILQ_HEAD(, auth_entry) unused;
};

static struct auth_cache *
auth_cache_new(size_t cap)
{
	struct auth_cache	*c;
	size_t			 i, nb = 1;

	c = xcalloc(1, sizeof(*c));
	c->cap = cap;
	while (nb < cap)
		nb <<= 1;
	c->mask = nb - 1;
	c->buckets = xcalloc(nb, sizeof(*c->buckets));
	c->slab = xcalloc(cap, sizeof(*c->slab));
	TAILQ_INIT(&c->lru);
	TAILQ_INIT(&c->unused);
	for (i = 0; i < cap; i++)
		TAILQ_INSERT_TAIL(&c->unused, &c->slab[i], lru);
	if (pthread_mutex_init(&c->mtx, NULL) != 0)
		fatalx("auth: pthread_mutex_init failed");
	return c;
}

static void
auth_cache_free(struct auth_cache *c)
{
	if (c == NULL)
		return;
	OPENSSL_cleanse(c->slab, c->cap * sizeof(*c->slab));
	pthread_mutex_destroy(&c->mtx);
	free(c->slab);
	free(c->buckets);
	free(c);
}

static struct auth_entry **
auth_cache_slot(struct auth_cache *c, const unsigned char *key)
{
	struct auth_entry	**pp;
	uint64_t		  h;

	memcpy(&h, key, sizeof(h));
	for (pp = &c->buckets[h & c->mask]; *pp != NULL; pp = &(*pp)->hnext)
		if (memcmp((*pp)->key, key, SHA256_DIGEST_LENGTH) == 0)
			break;
	return pp;
}

static void
auth_cache_drop(struct auth_cache *c, struct auth_entry *e)
{
	struct auth_entry	**pp = auth_cache_slot(c, e->key);

	*pp = e->hnext;
	TAILQ_REMOVE(&c->lru, e, lru);
	OPENSSL_cleanse(e, sizeof(*e));
	TAILQ_INSERT_TAIL(&c->unused, e, lru);
	c->count--;
}

static int
auth_cache_get(struct auth_cache *c, const unsigned char *key, int64_t now,
    struct auth_principal *p)
{
	struct auth_entry	*e;
	int			 hit = 0;

	pthread_mutex_lock(&c->mtx);
	if ((e = *auth_cache_slot(c, key)) != NULL) {
		if (now >= e->p.exp)
			auth_cache_drop(c, e);
		else {
			TAILQ_REMOVE(&c->lru, e, lru);
			TAILQ_INSERT_HEAD(&c->lru, e, lru);
			*p = e->p;
			hit = 1;
		}
	}
	pthread_mutex_unlock(&c->mtx);
	return hit;
}

static void
auth_cache_put(struct auth_cache *c, const unsigned char *key,
    const struct auth_principal *p)
{
	struct auth_entry	**pp, *e;

	pthread_mutex_lock(&c->mtx);
	if (*(pp = auth_cache_slot(c, key)) != NULL)
		auth_cache_drop(c, *pp);
	if (c->count == c->cap)
		auth_cache_drop(c, TAILQ_LAST(&c->lru, auth_entry_q));
	e = TAILQ_FIRST(&c->unused);
	TAILQ_REMOVE(&c->unused, e, lru);
	memcpy(e->key, key, sizeof(e->key));
	e->p = *p;
	pp = auth_cache_slot(c, key);
	e->hnext = NULL;
	*pp = e;
	TAILQ_INSERT_HEAD(&c->lru, e, lru);
	c->count++;
	pthread_mutex_unlock(&c->mtx);
}

/* --- the pipeline ------------------------------------------------------- */

static int64_t
auth_default_clock(void)
{
	return (int64_t)(wall_usec() / 1000000);
}

/* conf must outlive the auth; it lives in the refcounted struct config. */
struct auth *
auth_new(const struct auth_conf *conf, const char *tenant_id,
    struct jwks *jwks, size_t cache_entries)
{
	struct auth	*a;

	a = xcalloc(1, sizeof(*a));
	a->conf = conf;
	a->tenant_id = xstrdup(tenant_id);
	a->jwks = jwks;
	a->clock = auth_default_clock;
	if (cache_entries > 0)
		a->cache = auth_cache_new(cache_entries);
	return a;
}

void
auth_free(struct auth *a)
{
	if (a == NULL)
		return;
	auth_cache_free(a->cache);
	free(a->tenant_id);
	free(a);
}

void
auth_set_pseudonymizer(struct auth *a, auth_pseudonym_fn fn, void *arg)
{
	a->pseudonym = fn;
	a->pseudonym_arg = arg;
}

void
auth_set_clock(struct auth *a, auth_clock_fn fn)
{
	a->clock = fn != NULL ? fn : auth_default_clock;
}

void
auth_get_stats(struct auth *a, struct auth_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->cache_hits = __atomic_load_n(&a->hits, __ATOMIC_RELAXED);
	st->cache_misses = __atomic_load_n(&a->misses, __ATOMIC_RELAXED);
	st->verifications = __atomic_load_n(&a->verifications,
	    __ATOMIC_RELAXED);
	if (a->cache != NULL) {
		pthread_mutex_lock(&a->cache->mtx);
		st->cache_entries = a->cache->count;
		pthread_mutex_unlock(&a->cache->mtx);
	}
}

static enum auth_result
auth_pseudonymize(struct auth *a, struct auth_principal *p)
{
	if (a->pseudonym == NULL)
		return AUTH_OK;
	if (a->pseudonym(p->tid, p->oid, p->pseudonym, sizeof(p->pseudonym),
	    a->pseudonym_arg) == -1) {
		log_warnx("auth: pseudonym hook failed");
		return AUTH_ERR_INTERNAL;
	}
	return AUTH_OK;
}

static enum auth_result
auth_verify_full(struct auth *a, const char *token, size_t len,
    struct auth_principal *p)
{
	struct auth_parts	 parts;
	struct jwks_keyset	*set = NULL;
	const struct jwks_key	*key = NULL;
	json_t			*header, *payload = NULL;
	const char		*kid = NULL;
	enum auth_result	 rv;

	rv = auth_shape(token, len, &parts, &header);
	if (rv == AUTH_OK)
		rv = auth_check_header(header, &kid);
	/* Parsed, not yet trusted: libjwt would reject it as a bad token. */
	if (rv == AUTH_OK && (payload = auth_json_object(parts.payload,
	    parts.payload_len)) == NULL)
		rv = AUTH_ERR_PAYLOAD_JSON;
	if (rv == AUTH_OK)
		rv = auth_find_key(a, kid, &set, &key);
	if (rv == AUTH_OK)
		rv = auth_check_signature(a, &parts, key);
	if (rv == AUTH_OK)
		rv = auth_check_claims(a, set, payload, p);
	if (rv == AUTH_OK)
		rv = auth_pseudonymize(a, p);
	auth_parts_free(&parts);
	json_decref(header);
	json_decref(payload);
	jwks_keyset_put(set);
	return rv;
}

enum auth_result
auth_verify_token(struct auth *a, const char *token, size_t len,
    struct auth_principal *p)
{
	unsigned char		key[SHA256_DIGEST_LENGTH];
	enum auth_result	rv;

	memset(p, 0, sizeof(*p));
	if (len > AUTH_TOKEN_MAX)
		return AUTH_ERR_TOO_LARGE;
	if (a->cache != NULL) {
		SHA256((const unsigned char *)token, len, key);
		if (auth_cache_get(a->cache, key, a->clock(), p)) {
			__atomic_add_fetch(&a->hits, 1, __ATOMIC_RELAXED);
			return AUTH_OK;
		}
		__atomic_add_fetch(&a->misses, 1, __ATOMIC_RELAXED);
	}
	if ((rv = auth_verify_full(a, token, len, p)) != AUTH_OK) {
		auth_principal_clear(p);
		return rv;
	}
	if (a->cache != NULL && p->exp > a->clock())
		auth_cache_put(a->cache, key, p);
	return AUTH_OK;
}

/* The value of an Authorization header: "Bearer <token>". */
enum auth_result
auth_verify_bearer(struct auth *a, const char *authz,
    struct auth_principal *p)
{
	memset(p, 0, sizeof(*p));
	if (authz == NULL || *authz == '\0')
		return AUTH_ERR_MISSING;
	if (strncasecmp(authz, "Bearer ", 7) != 0)
		return AUTH_ERR_SCHEME;
	if (strnlen(authz + 7, AUTH_TOKEN_MAX + 1) > AUTH_TOKEN_MAX)
		return AUTH_ERR_TOO_LARGE;
	return auth_verify_token(a, authz + 7, strlen(authz + 7), p);
}
