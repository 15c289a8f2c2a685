/*
 * jwks-key.c: JWKS documents as OpenSSL keys (n, e -> EVP_PKEY and PEM for
 * libjwt), immutable reference-counted key sets, their persisted form, the
 * OpenID metadata document, and strict base64url. No I/O here.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "tenantd.h"

#define JWKS_MAX_KEYS		64
#define JWKS_MIN_BITS		2048
#define JWKS_MAX_N		1024	/* bytes: 8192-bit modulus */
#define JWKS_MAX_E		8
#define JWKS_BLOB_FORMAT	1

struct jwks_keyset {
	int			 refcnt;	/* atomic */
	char			*issuer[2];	/* [0] v1, [1] v2 */
	struct jwks_key		*keys;
	size_t			 nkeys;
};

/* --- base64url ---------------------------------------------------------- */

static int
base64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Strict unpadded base64url: only the URL alphabet, no '=', no length of
 * 1 mod 4 and no stray bits in the last character. Returns the decoded
 * length or -1.
 */
ssize_t
base64url_decode(const char *in, size_t inlen, unsigned char *out,
    size_t outlen)
{
	uint32_t	acc = 0;
	size_t		i, n = 0, need;
	int		bits = 0, v;

	need = inlen / 4 * 3 + (inlen % 4 == 0 ? 0 : inlen % 4 - 1);
	if (inlen % 4 == 1 || need > outlen)
		return -1;
	for (i = 0; i < inlen; i++) {
		if ((v = base64url_value((unsigned char)in[i])) == -1)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		if ((bits += 6) >= 8) {
			bits -= 8;
			out[n++] = (acc >> bits) & 0xff;
		}
	}
	if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
		return -1;
	return (ssize_t)n;
}

char *
base64url_encode(const unsigned char *in, size_t len)
{
	static const char	 alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "abcdefghijklmnopqrstuvwxyz0123456789-_";
	char			*out, *p;
	uint32_t		 acc = 0;
	size_t			 i;
	int			 bits = 0;

	out = p = xmalloc(len / 3 * 4 + 5);
	for (i = 0; i < len; i++) {
		acc = (acc << 8) | in[i];
		for (bits += 8; bits >= 6; bits -= 6)
			*p++ = alphabet[(acc >> (bits - 6)) & 0x3f];
	}
	if (bits > 0)
		*p++ = alphabet[(acc << (6 - bits)) & 0x3f];
	*p = '\0';
	return out;
}

/* --- keys --------------------------------------------------------------- */

static BIGNUM *
jwks_bn(json_t *jwk, const char *name, size_t max)
{
	unsigned char	 buf[JWKS_MAX_N];
	const char	*s;
	ssize_t		 n;

	if ((s = json_string_value(json_object_get(jwk, name))) == NULL)
		return NULL;
	n = base64url_decode(s, strlen(s), buf, MINIMUM(max, sizeof(buf)));
	if (n <= 0)
		return NULL;
	return BN_bin2bn(buf, (int)n, NULL);
}

static EVP_PKEY *
jwks_rsa_from_bn(const BIGNUM *n, const BIGNUM *e)
{
	OSSL_PARAM_BLD	*bld;
	OSSL_PARAM	*params = NULL;
	EVP_PKEY_CTX	*ctx = NULL;
	EVP_PKEY	*pkey = NULL;

	if ((bld = OSSL_PARAM_BLD_new()) == NULL)
		return NULL;
	if (OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1 ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return pkey;
}

static char *
jwks_pem(EVP_PKEY *pkey, size_t *len)
{
	BIO	*bio;
	char	*data, *pem = NULL;
	long	 n;

	if ((bio = BIO_new(BIO_s_mem())) == NULL)
		return NULL;
	if (PEM_write_bio_PUBKEY(bio, pkey) == 1 &&
	    (n = BIO_get_mem_data(bio, &data)) > 0) {
		pem = xstrndup(data, (size_t)n);
		*len = (size_t)n;
	}
	BIO_free(bio);
	return pem;
}

/* One JWK into *key; 0, or -1 with err set (the key is skipped). */
static int
jwks_key_from_jwk(json_t *jwk, struct jwks_key *key, char *err, size_t len)
{
	const char	*kid, *use;
	BIGNUM		*n, *e;

	memset(key, 0, sizeof(*key));
	kid = json_string_value(json_object_get(jwk, "kid"));
	if (kid == NULL || *kid == '\0' || strlen(kid) >= sizeof(key->kid)) {
		snprintf(err, len, "key without a usable kid");
		return -1;
	}
	use = json_string_value(json_object_get(jwk, "use"));
	if (json_object_get(jwk, "use") != NULL &&
	    (use == NULL || strcmp(use, "sig") != 0)) {
		snprintf(err, len, "key %s: use is not sig", kid);
		return -1;
	}
	if (!json_is_string(json_object_get(jwk, "kty")) ||
	    strcmp(json_string_value(json_object_get(jwk, "kty")), "RSA")) {
		snprintf(err, len, "key %s: kty is not RSA", kid);
		return -1;
	}
	n = jwks_bn(jwk, "n", JWKS_MAX_N);
	e = jwks_bn(jwk, "e", JWKS_MAX_E);
	if (n != NULL && e != NULL && BN_num_bits(n) >= JWKS_MIN_BITS &&
	    BN_is_odd(e) && !BN_is_one(e))
		key->pkey = jwks_rsa_from_bn(n, e);
	BN_free(n);
	BN_free(e);
	if (key->pkey == NULL ||
	    (key->pem = jwks_pem(key->pkey, &key->pem_len)) == NULL) {
		EVP_PKEY_free(key->pkey);
		snprintf(err, len, "key %s: bad or weak RSA n/e", kid);
		return -1;
	}
	snprintf(key->kid, sizeof(key->kid), "%s", kid);
	return 0;
}

json_t *
jwks_jwk_from_pkey(const struct evp_pkey_st *pkey, const char *kid)
{
	BIGNUM		*bn[2] = { NULL, NULL };
	const char	*names[2] = { OSSL_PKEY_PARAM_RSA_N,
			    OSSL_PKEY_PARAM_RSA_E };
	unsigned char	 buf[JWKS_MAX_N];
	char		*enc[2] = { NULL, NULL };
	json_t		*jwk = NULL;
	int		 i, n;

	for (i = 0; i < 2; i++) {
		if (EVP_PKEY_get_bn_param(pkey, names[i], &bn[i]) != 1 ||
		    (n = BN_num_bytes(bn[i])) > (int)sizeof(buf))
			goto done;
		BN_bn2bin(bn[i], buf);
		enc[i] = base64url_encode(buf, (size_t)n);
	}
	jwk = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "use",
	    "sig", "kid", kid, "n", enc[0], "e", enc[1]);
done:
	for (i = 0; i < 2; i++) {
		BN_free(bn[i]);
		free(enc[i]);
	}
	return jwk;
}

/* --- key sets ----------------------------------------------------------- */

struct jwks_keyset *
jwks_keyset_new(const char *issuer_v1, const char *issuer_v2)
{
	struct jwks_keyset	*set;

	set = xcalloc(1, sizeof(*set));
	set->refcnt = 1;
	set->keys = xcalloc(JWKS_MAX_KEYS, sizeof(*set->keys));
	if (issuer_v1 != NULL)
		set->issuer[0] = xstrdup(issuer_v1);
	if (issuer_v2 != NULL)
		set->issuer[1] = xstrdup(issuer_v2);
	return set;
}

struct jwks_keyset *
jwks_keyset_ref(struct jwks_keyset *set)
{
	if (set != NULL)
		__atomic_add_fetch(&set->refcnt, 1, __ATOMIC_ACQ_REL);
	return set;
}

void
jwks_keyset_put(struct jwks_keyset *set)
{
	size_t	i;

	if (set == NULL || __atomic_sub_fetch(&set->refcnt, 1,
	    __ATOMIC_ACQ_REL) != 0)
		return;
	for (i = 0; i < set->nkeys; i++) {
		EVP_PKEY_free(set->keys[i].pkey);
		free(set->keys[i].pem);
	}
	free(set->keys);
	free(set->issuer[0]);
	free(set->issuer[1]);
	free(set);
}

const struct jwks_key *
jwks_keyset_find(const struct jwks_keyset *set, const char *kid)
{
	size_t	i;

	for (i = 0; set != NULL && i < set->nkeys; i++)
		if (strcmp(set->keys[i].kid, kid) == 0)
			return &set->keys[i];
	return NULL;
}

const char *
jwks_keyset_issuer(const struct jwks_keyset *set, int ver)
{
	if (set == NULL || ver < 1 || ver > 2)
		return NULL;
	return set->issuer[ver - 1];
}

size_t
jwks_keyset_count(const struct jwks_keyset *set)
{
	return set != NULL ? set->nkeys : 0;
}

/* Add the usable keys of a JWKS "keys" array; first kid wins. */
void
jwks_keyset_add(struct jwks_keyset *set, json_t *keys)
{
	struct jwks_key	 key;
	json_t		*jwk;
	size_t		 i;
	char		 err[160];

	json_array_foreach(keys, i, jwk) {
		if (set->nkeys == JWKS_MAX_KEYS) {
			log_warnx("jwks: more than %d keys, rest ignored",
			    JWKS_MAX_KEYS);
			return;
		}
		if (jwks_key_from_jwk(jwk, &key, err, sizeof(err)) == -1) {
			log_debug("jwks: skipped: %s", err);
			continue;
		}
		if (jwks_keyset_find(set, key.kid) != NULL) {
			EVP_PKEY_free(key.pkey);
			free(key.pem);
			continue;
		}
		set->keys[set->nkeys++] = key;
	}
}

/* A JSON object of at most JWKS_MAX_DOC bytes, duplicate names refused. */
json_t *
jwks_json_load(const char *json, size_t len, char *err, size_t errlen)
{
	json_error_t	 jerr;
	json_t		*doc;

	if (len > JWKS_MAX_DOC) {
		snprintf(err, errlen, "document larger than %d bytes",
		    JWKS_MAX_DOC);
		return NULL;
	}
	doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (doc == NULL || !json_is_object(doc)) {
		snprintf(err, errlen, "not a JSON object: %s",
		    doc == NULL ? jerr.text : "wrong type");
		json_decref(doc);
		return NULL;
	}
	return doc;
}

/*
 * The persisted form, also accepted from the local provider:
 * {"format":1,"issuer_v1":"...","issuer_v2":"...","keys":[JWK...]}.
 * A plain JWKS document parses too (without issuers).
 */
struct jwks_keyset *
jwks_keyset_parse(const char *json, size_t len, char *err, size_t errlen)
{
	struct jwks_keyset	*set;
	json_t			*doc, *keys;

	if ((doc = jwks_json_load(json, len, err, errlen)) == NULL)
		return NULL;
	if (!json_is_array(keys = json_object_get(doc, "keys"))) {
		snprintf(err, errlen, "no \"keys\" array");
		json_decref(doc);
		return NULL;
	}
	set = jwks_keyset_new(
	    json_string_value(json_object_get(doc, "issuer_v1")),
	    json_string_value(json_object_get(doc, "issuer_v2")));
	jwks_keyset_add(set, keys);
	json_decref(doc);
	if (set->nkeys == 0) {
		snprintf(err, errlen, "no usable RSA signing key");
		jwks_keyset_put(set);
		return NULL;
	}
	return set;
}

char *
jwks_keyset_dump(const struct jwks_keyset *set, size_t *len)
{
	json_t	*doc, *keys;
	char	*out;
	size_t	 i;

	keys = json_array();
	for (i = 0; i < set->nkeys; i++)
		json_array_append_new(keys, jwks_jwk_from_pkey(
		    set->keys[i].pkey, set->keys[i].kid));
	doc = json_pack("{s:i, s:o}", "format", JWKS_BLOB_FORMAT,
	    "keys", keys);
	if (set->issuer[0] != NULL)
		json_object_set_new(doc, "issuer_v1",
		    json_string(set->issuer[0]));
	if (set->issuer[1] != NULL)
		json_object_set_new(doc, "issuer_v2",
		    json_string(set->issuer[1]));
	out = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(doc);
	if (out == NULL)
		fatalx("jwks: json_dumps failed");
	*len = strlen(out);
	return out;
}

/* --- metadata ----------------------------------------------------------- */

static int
jwks_contains_nocase(const char *hay, const char *needle)
{
	size_t	n = strlen(needle);

	for (; *hay != '\0'; hay++)
		if (strncasecmp(hay, needle, n) == 0)
			return 1;
	return 0;
}

/* An OpenID metadata document: its issuer (for this tenant) and jwks_uri. */
int
jwks_metadata_parse(const char *json, size_t len, const char *tenant_id,
    char **issuer, char **jwks_uri, char *err, size_t errlen)
{
	json_t		*doc;
	const char	*iss, *uri;
	int		 rv = -1;

	if ((doc = jwks_json_load(json, len, err, errlen)) == NULL)
		return -1;
	iss = json_string_value(json_object_get(doc, "issuer"));
	uri = json_string_value(json_object_get(doc, "jwks_uri"));
	if (iss == NULL || strncmp(iss, "https://", 8) != 0)
		snprintf(err, errlen, "no https issuer");
	else if (!jwks_contains_nocase(iss, tenant_id))
		snprintf(err, errlen, "issuer %s is not for tenant %s", iss,
		    tenant_id);
	else if (uri == NULL || strncmp(uri, "https://", 8) != 0)
		snprintf(err, errlen, "no https jwks_uri");
	else {
		*issuer = xstrdup(iss);
		*jwks_uri = xstrdup(uri);
		rv = 0;
	}
	json_decref(doc);
	return rv;
}
