/*
 * auth-local.c: the development token provider. Owns its RSA signing key
 * (STATE_DIR/auth-local-key.pem, 0600), the key set and OpenID metadata
 * it publishes, and the v2-shaped tokens it mints for tenantctl token.
 */
#include "config.h"

#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "tenantd.h"

#define LOCAL_KEY_BITS		2048
#define LOCAL_KEY_PEM_MAX	(16 * 1024)
#define LOCAL_KID_BYTES		16

struct auth_local {
	EVP_PKEY	*pkey;
	char		*pem;		/* private key PEM, for libjwt */
	size_t		 pem_len;
	char		*kid;
	char		*issuer;
	char		*tenant_id;
};

/* kid: base64url of the first bytes of SHA-256(SubjectPublicKeyInfo). */
static char *
local_kid(EVP_PKEY *pkey)
{
	unsigned char	*der = NULL, md[SHA256_DIGEST_LENGTH];
	int		 len;

	if ((len = i2d_PUBKEY(pkey, &der)) <= 0)
		return NULL;
	SHA256(der, (size_t)len, md);
	OPENSSL_free(der);
	return base64url_encode(md, LOCAL_KID_BYTES);
}

static int
local_key_read(struct auth_local *l, const char *path, char *err,
    size_t errlen)
{
	char	buf[LOCAL_KEY_PEM_MAX];
	ssize_t	n;
	BIO	*bio;

	if ((n = secret_read(path, buf, sizeof(buf) - 1, err, errlen)) < 0)
		return -1;
	buf[n] = '\0';
	if ((bio = BIO_new_mem_buf(buf, (int)n)) != NULL)
		l->pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (l->pkey == NULL || EVP_PKEY_get_base_id(l->pkey) != EVP_PKEY_RSA) {
		snprintf(err, errlen, "%s: not an RSA private key in PEM",
		    path);
		OPENSSL_cleanse(buf, sizeof(buf));
		return -1;
	}
	l->pem = xstrndup(buf, (size_t)n);
	l->pem_len = (size_t)n;
	OPENSSL_cleanse(buf, sizeof(buf));
	return 0;
}

/* A new key, written with O_EXCL and mode 0600 before it is used. */
static int
local_key_create(const char *path, char *err, size_t errlen)
{
	EVP_PKEY	*pkey;
	FILE		*f = NULL;
	int		 fd, rv = -1;

	if ((pkey = EVP_RSA_gen(LOCAL_KEY_BITS)) == NULL) {
		snprintf(err, errlen, "generating an RSA key failed");
		return -1;
	}
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0600)) == -1 || (f = fdopen(fd, "w")) == NULL)
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
	else if (PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL,
	    NULL) != 1)
		snprintf(err, errlen, "%s: writing the key failed", path);
	else
		rv = 0;
	if (f != NULL && fclose(f) != 0 && rv == 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		rv = -1;
	} else if (f == NULL && fd != -1)
		close(fd);
	if (rv == -1 && fd != -1)
		unlink(path);
	EVP_PKEY_free(pkey);
	return rv;
}

struct auth_local *
auth_local_open(const char *state_dir, const char *tenant_id, char *err,
    size_t errlen)
{
	struct auth_local	*l;
	char			*path;

	xasprintf(&path, "%s/%s", state_dir, AUTH_LOCAL_KEY_FILE);
	l = xcalloc(1, sizeof(*l));
	if (access(path, F_OK) == -1 && errno == ENOENT) {
		if (local_key_create(path, err, errlen) == -1)
			goto fail;
		log_info("auth: created the local signing key %s", path);
	}
	if (local_key_read(l, path, err, errlen) == -1)
		goto fail;
	if ((l->kid = local_kid(l->pkey)) == NULL) {
		snprintf(err, errlen, "%s: cannot encode the public key", path);
		goto fail;
	}
	l->tenant_id = xstrdup(tenant_id);
	xasprintf(&l->issuer, "https://tenantd.invalid/%s/v2.0", tenant_id);
	free(path);
	return l;
fail:
	free(path);
	auth_local_free(l);
	return NULL;
}

void
auth_local_free(struct auth_local *l)
{
	if (l == NULL)
		return;
	EVP_PKEY_free(l->pkey);
	if (l->pem != NULL)
		OPENSSL_clear_free(l->pem, l->pem_len);
	free(l->kid);
	free(l->issuer);
	free(l->tenant_id);
	free(l);
}

const char *
auth_local_issuer(const struct auth_local *l)
{
	return l->issuer;
}

/* The public JWKS document served at /v1/dev/jwks. */
json_t *
auth_local_jwks(const struct auth_local *l)
{
	json_t	*jwk;

	if ((jwk = jwks_jwk_from_pkey(l->pkey, l->kid)) == NULL)
		return NULL;
	json_object_set_new(jwk, "alg", json_string("RS256"));
	return json_pack("{s:[o]}", "keys", jwk);
}

/* The persisted key-set form that jwks_install() takes (v2 issuer only). */
char *
auth_local_keyset(const struct auth_local *l, size_t *len)
{
	json_t	*doc;
	char	*out;

	if ((doc = auth_local_jwks(l)) == NULL)
		return NULL;
	json_object_set_new(doc, "format", json_integer(1));
	json_object_set_new(doc, "issuer_v2", json_string(l->issuer));
	out = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(doc);
	if (out != NULL)
		*len = strlen(out);
	return out;
}

json_t *
auth_local_metadata(const struct auth_local *l, const char *base_url)
{
	char	*uri;
	json_t	*doc;

	xasprintf(&uri, "%s/v1/dev/jwks", base_url);
	doc = json_pack("{s:s, s:s, s:[s], s:[s], s:[s]}",
	    "issuer", l->issuer, "jwks_uri", uri,
	    "id_token_signing_alg_values_supported", "RS256",
	    "response_types_supported", "token",
	    "subject_types_supported", "pairwise");
	free(uri);
	return doc;
}

/* A stable GUID-shaped oid for a local user name. */
static void
local_oid(const char *tenant_id, const char *user, char *out, size_t len)
{
	unsigned char	 md[SHA256_DIGEST_LENGTH];
	char		*seed;
	int		 n;

	n = xasprintf(&seed, "tenantd-local-oid\n%s\n%s", tenant_id, user);
	SHA256((const unsigned char *)seed, (size_t)n, md);
	free(seed);
	snprintf(out, len, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", md[0], md[1], md[2], md[3], md[4],
	    md[5], md[6], md[7], md[8], md[9], md[10], md[11], md[12], md[13],
	    md[14], md[15]);
}

static int
local_user_ok(const char *user)
{
	size_t	n = strspn(user, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-");

	return n > 0 && n <= AUTH_LOCAL_USER_MAX && user[n] == '\0';
}

/* The configured app-role values for the requested tenantd roles. */
static json_t *
local_roles(const struct auth_conf *conf, unsigned roles, char *err,
    size_t errlen)
{
	json_t	*list = json_array();
	size_t	 i;

	for (i = 0; i < AUTH_NROLES; i++) {
		if ((roles & (1u << i)) == 0)
			continue;
		if (conf->roles.nvalues[i] == 0) {
			snprintf(err, errlen, "auth.roles.%s lists no app-role "
			    "value to put in the token",
			    auth_role_name(1u << i));
			json_decref(list);
			return NULL;
		}
		json_array_append_new(list,
		    json_string(conf->roles.values[i][0]));
	}
	return list;
}

static json_t *
local_claims(const struct auth_local *l, const struct auth_conf *conf,
    const char *user, json_t *roles, uint64_t ttl)
{
	char		 oid[40];
	json_int_t	 now = (json_int_t)(wall_usec() / 1000000);
	json_t		*c;

	local_oid(l->tenant_id, user, oid, sizeof(oid));
	c = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:s, "
	    "s:s, s:s, s:s, s:s}",
	    "aud", conf->audiences[0], "iss", l->issuer, "iat", now,
	    "nbf", now, "exp", now + (json_int_t)ttl,
	    "azp", conf->nallowed_clients > 0 ? conf->allowed_clients[0] :
	    AUTH_LOCAL_CLIENT, "azpacr", "0", "oid", oid, "sub", oid,
	    "tid", l->tenant_id, "scp", conf->required_scopes[0],
	    "preferred_username", user, "name", user, "ver", "2.0");
	if (c != NULL && json_array_size(roles) > 0)
		json_object_set(c, "roles", roles);
	return c;
}

static char *
local_sign(const struct auth_local *l, json_t *claims)
{
	jwt_t	*jwt = NULL;
	char	*payload, *token = NULL;

	if ((payload = json_dumps(claims, JSON_COMPACT)) == NULL)
		return NULL;
	if (jwt_new(&jwt) == 0 && jwt_add_grants_json(jwt, payload) == 0 &&
	    jwt_add_header(jwt, "kid", l->kid) == 0 &&
	    jwt_set_alg(jwt, JWT_ALG_RS256, (const unsigned char *)l->pem,
	    (int)l->pem_len) == 0)
		token = jwt_encode_str(jwt);
	jwt_free(jwt);
	free(payload);
	return token;
}

/* A token for user with roles (AUTH_ROLE_*), valid for ttl seconds. */
char *
auth_local_mint(const struct auth_local *l, const struct auth_conf *conf,
    const char *user, unsigned roles, uint64_t ttl, char *err, size_t errlen)
{
	json_t	*role_list, *claims;
	char	*token;

	if (!local_user_ok(user)) {
		snprintf(err, errlen, "user must be 1 to %d of A-Z a-z 0-9 . _ "
		    "@ -", AUTH_LOCAL_USER_MAX);
		return NULL;
	}
	if (ttl < 60 || ttl > AUTH_LOCAL_TTL_MAX) {
		snprintf(err, errlen, "ttl must be from 60s to %ds",
		    AUTH_LOCAL_TTL_MAX);
		return NULL;
	}
	if (conf->naudiences == 0 || conf->nrequired_scopes == 0) {
		snprintf(err, errlen, "auth needs an audience and a scope");
		return NULL;
	}
	if ((role_list = local_roles(conf, roles, err, errlen)) == NULL)
		return NULL;
	claims = local_claims(l, conf, user, role_list, ttl);
	json_decref(role_list);
	token = claims != NULL ? local_sign(l, claims) : NULL;
	json_decref(claims);
	if (token == NULL)
		snprintf(err, errlen, "signing the token failed");
	return token;
}
