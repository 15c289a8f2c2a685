/*
 * test-license.c: the license's canonical form, its states over time, the
 * document checks, and the Ed25519 signature against trusted keys.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "tenantd.h"
#include "unit.h"

#define TENANT	"72f988bf-86f1-41af-91ab-2d7cd011db47"

static EVP_PKEY	*vendor, *other;

static json_t *
license_new(const char *tenant)
{
	return json_pack("{s:s, s:s, s:s, s:[s], s:i, s:s, s:s}",
	    "valid_until", "2099-01-01T00:00:00Z", "tenant_id", tenant,
	    "plan", "pro", "features", "reports", "seats", 10,
	    "license_id", "L1", "valid_from", "2020-01-01T00:00:00Z");
}

/* {"license": ..., "signature": base64(Ed25519(canonical))} */
static json_t *
signed_doc(EVP_PKEY *key, json_t *license)
{
	unsigned char	 sig[64], b64[100];
	size_t		 siglen = sizeof(sig), len;
	EVP_MD_CTX	*md = EVP_MD_CTX_new();
	char		*canon = license_canonical(license, &len);

	EVP_DigestSignInit(md, NULL, NULL, NULL, key);
	EVP_DigestSign(md, sig, &siglen, (unsigned char *)canon, len);
	EVP_MD_CTX_free(md);
	free(canon);
	EVP_EncodeBlock(b64, sig, siglen);
	return json_pack("{s:o, s:s}", "license", license, "signature", b64);
}

static char *
public_pem(EVP_PKEY *key)
{
	BIO	*bio = BIO_new(BIO_s_mem());
	char	*data, *s;
	long	 len;

	PEM_write_bio_PUBKEY(bio, key);
	len = BIO_get_mem_data(bio, &data);
	s = xstrndup(data, len);
	BIO_free(bio);
	return s;
}

static void
test_canonical(void)
{
	json_t	*l = license_new(TENANT);
	char	*s = license_canonical(l, NULL);

	CHECK_STR(s, "{\"features\":[\"reports\"],\"license_id\":\"L1\","
	    "\"plan\":\"pro\",\"seats\":10,\"tenant_id\":\"" TENANT "\","
	    "\"valid_from\":\"2020-01-01T00:00:00Z\","
	    "\"valid_until\":\"2099-01-01T00:00:00Z\"}");
	free(s);
	json_decref(l);
}

static void
test_states(void)
{
	CHECK(license_state_at(50, 100, 200, 30) == LICENSE_UNLICENSED);
	CHECK(license_state_at(100, 100, 200, 30) == LICENSE_VALID);
	CHECK(license_state_at(199, 100, 200, 30) == LICENSE_VALID);
	CHECK(license_state_at(200, 100, 200, 30) == LICENSE_GRACE);
	CHECK(license_state_at(229, 100, 200, 30) == LICENSE_GRACE);
	CHECK(license_state_at(230, 100, 200, 30) == LICENSE_EXPIRED);
	CHECK(license_state_at(200, 100, 200, 0) == LICENSE_EXPIRED);
	CHECK_STR(license_state_name(LICENSE_GRACE), "grace");
}

static int
install(json_t *doc, const char *pointer)
{
	json_t	*errors = jin_errors();
	char	 err[256] = "";
	int	 status;

	status = license_install(doc, TENANT, errors, err, sizeof(err));
	if (pointer != NULL)
		CHECK_STR(json_string_value(json_object_get(json_array_get(
		    errors, 0), "pointer")), pointer);
	json_decref(errors);
	json_decref(doc);
	return status;
}

static void
test_trust(void)
{
	struct config	 conf = { 0 };
	char		*keys[1];

	keys[0] = public_pem(vendor);
	conf.tenant_id = xstrdup(TENANT);
	conf.license.trusted_keys = keys;
	conf.license.ntrusted_keys = 1;
	conf.license.grace = 86400;
	license_start(NULL, &conf);
	CHECK(!license_feature_enabled("reports"));
	/* the checks pass; then there is no store to keep it in */
	CHECK(install(signed_doc(vendor, license_new(TENANT)), NULL) == 503);
	CHECK(install(signed_doc(other, license_new(TENANT)), "/signature") ==
	    422);
	CHECK(install(signed_doc(vendor, license_new(
	    "11111111-2222-3333-4444-555555555555")), "/license/tenant_id") ==
	    422);
	license_stop();
	free(keys[0]);
	free(conf.tenant_id);
}

static void
test_shape(void)
{
	json_t	*doc = signed_doc(vendor, license_new(TENANT));

	json_object_set_new(json_object_get(doc, "license"), "seats",
	    json_integer(-1));
	CHECK(install(doc, "/license/seats") == 400);
	doc = signed_doc(vendor, license_new(TENANT));
	json_object_set_new(json_object_get(doc, "license"), "valid_until",
	    json_string("2019-01-01T00:00:00Z"));
	CHECK(install(doc, "/license/valid_until") == 400);
	doc = signed_doc(vendor, license_new(TENANT));
	json_object_set_new(doc, "note", json_string("x"));
	CHECK(install(doc, "/note") == 400);
}

static void
test_key_load(void)
{
	EVP_PKEY	*k;
	char		 err[256], *pem = public_pem(vendor);

	CHECK((k = license_key_load(pem, err, sizeof(err))) != NULL);
	EVP_PKEY_free(k);
	CHECK(license_key_load("-----BEGIN PUBLIC KEY-----\nAAAA\n", err,
	    sizeof(err)) == NULL);
	CHECK(license_key_load("/nonexistent/key.pem", err, sizeof(err)) ==
	    NULL);
	free(pem);
}

int
main(void)
{
	log_init("test-license", LOG_LEVEL_ERROR, 1);
	vendor = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	other = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	TEST(test_canonical);
	TEST(test_states);
	TEST(test_trust);
	TEST(test_shape);
	TEST(test_key_load);
	EVP_PKEY_free(vendor);
	EVP_PKEY_free(other);
	return unit_done();
}
