/*
 * test-jwks.c: base64url, JWK conversion, key set and metadata parsing,
 * and refresh, throttling, waiters and persistence against fake_entra.py.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>

#include <event2/thread.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "tenantd.h"
#include "unit.h"
#include "fake-entra.h"

#define TENANT	"72f988bf-86f1-41af-91ab-2d7cd011db47"

static EVP_PKEY	*key_a, *key_b, *key_weak;

static void
test_base64url(void)
{
	unsigned char	 in[64], out[64];
	char		*enc;
	size_t		 len;
	ssize_t		 n;
	int		 ok = 1;

	enc = base64url_encode((const unsigned char *)"foo", 3);
	CHECK_STR(enc, "Zm9v");
	free(enc);
	enc = base64url_encode((const unsigned char *)"fo", 2);
	CHECK_STR(enc, "Zm8");
	free(enc);
	for (len = 0; len < sizeof(in); len++) {
		RAND_bytes(in, (int)len + 1);
		enc = base64url_encode(in, len);
		n = base64url_decode(enc, strlen(enc), out, len);
		ok &= n == (ssize_t)len && memcmp(in, out, len) == 0 &&
		    strpbrk(enc, "+/=") == NULL;
		free(enc);
	}
	CHECK(ok);
	CHECK(base64url_decode("Zm8=", 4, out, sizeof(out)) == -1);
	CHECK(base64url_decode("Z", 1, out, sizeof(out)) == -1);
	CHECK(base64url_decode("Zh", 2, out, sizeof(out)) == -1); /* bits */
	CHECK(base64url_decode("Zm+v", 4, out, sizeof(out)) == -1);
	CHECK(base64url_decode("Zm9v\n", 5, out, sizeof(out)) == -1);
	CHECK(base64url_decode("Zm9v", 4, out, 2) == -1);	/* too small */
}

static char *
make_jwks(const char *issuer_v2, int nkeys, ...)
{
	json_t	*doc, *keys = json_array();
	va_list	 ap;
	char	*s;
	int	 i;

	va_start(ap, nkeys);
	for (i = 0; i < nkeys; i++) {
		EVP_PKEY *k = va_arg(ap, EVP_PKEY *);
		const char *kid = va_arg(ap, const char *);
		json_array_append_new(keys, jwks_jwk_from_pkey(k, kid));
	}
	va_end(ap);
	doc = json_pack("{s:o}", "keys", keys);
	if (issuer_v2 != NULL)
		json_object_set_new(doc, "issuer_v2", json_string(issuer_v2));
	s = json_dumps(doc, 0);
	json_decref(doc);
	return s;
}

static void
test_keyset_parse(void)
{
	struct jwks_keyset	*set;
	const struct jwks_key	*k;
	json_t			*doc, *keys;
	char			*s, err[160];

	s = make_jwks(NULL, 4, key_a, "a", key_weak, "weak", key_b, "a",
	    key_b, "b");
	doc = json_loads(s, 0, NULL);
	free(s);
	keys = json_object_get(doc, "keys");
	json_array_append_new(keys, json_pack("{s:s,s:s,s:s,s:s}", "kty",
	    "EC", "kid", "ec", "x", "AA", "y", "AA"));
	json_object_set_new(json_array_get(keys, 3), "use",
	    json_string("enc"));
	s = json_dumps(doc, 0);
	json_decref(doc);
	set = jwks_keyset_parse(s, strlen(s), err, sizeof(err));
	free(s);
	CHECK(set != NULL);
	CHECK(jwks_keyset_count(set) == 1);	/* weak, dup, enc, EC out */
	CHECK((k = jwks_keyset_find(set, "a")) != NULL);
	CHECK(k != NULL && EVP_PKEY_eq(k->pkey, key_a) == 1);
	CHECK(k != NULL && strncmp(k->pem, "-----BEGIN PUBLIC KEY-----",
	    26) == 0 && k->pem_len == strlen(k->pem));
	CHECK(jwks_keyset_find(set, "weak") == NULL);
	CHECK(jwks_keyset_find(set, "b") == NULL);
	CHECK(jwks_keyset_issuer(set, 2) == NULL);
	jwks_keyset_put(set);
}

static void
test_keyset_dump_roundtrip(void)
{
	struct jwks_keyset	*set, *set2;
	char			*s, *dump, err[160];
	size_t			 len;

	s = make_jwks("https://issuer/v2", 2, key_a, "a", key_b, "b");
	set = jwks_keyset_parse(s, strlen(s), err, sizeof(err));
	free(s);
	CHECK(set != NULL);
	if (set == NULL)
		return;
	dump = jwks_keyset_dump(set, &len);
	set2 = jwks_keyset_parse(dump, len, err, sizeof(err));
	CHECK(set2 != NULL && jwks_keyset_count(set2) == 2);
	CHECK_STR(jwks_keyset_issuer(set2, 2), "https://issuer/v2");
	CHECK(jwks_keyset_find(set2, "b") != NULL &&
	    EVP_PKEY_eq(jwks_keyset_find(set2, "b")->pkey, key_b) == 1);
	free(dump);
	jwks_keyset_put(set);
	jwks_keyset_put(set2);
}

static void
test_keyset_bad(void)
{
	const char	*bad[] = { "", "[]", "{\"keys\":{}}", "{\"keys\":[]}",
			    "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"x\","
			    "\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
			    "{\"keys\":[],\"keys\":[]}" };
	char		 err[160], *big;
	size_t		 i;
	int		 all = 1;

	for (i = 0; i < nitems(bad); i++)
		all &= jwks_keyset_parse(bad[i], strlen(bad[i]), err,
		    sizeof(err)) == NULL;
	CHECK(all);
	big = calloc(1, 300 * 1024);
	memset(big, ' ', 300 * 1024 - 1);
	CHECK(jwks_keyset_parse(big, strlen(big), err, sizeof(err)) == NULL);
	CHECK(strstr(err, "larger") != NULL);
	free(big);
}

static void
test_metadata_parse(void)
{
	char		*iss = NULL, *uri = NULL, err[256];
	const char	*good = "{\"issuer\":\"https://sts.windows.net/"
			    "72F988BF-86F1-41AF-91AB-2D7CD011DB47/\","
			    "\"jwks_uri\":\"https://login.example/k\"}";
	const char	*other = "{\"issuer\":\"https://sts.windows.net/"
			    "00000000-86f1-41af-91ab-2d7cd011db47/\","
			    "\"jwks_uri\":\"https://login.example/k\"}";
	const char	*plain = "{\"issuer\":\"https://sts.windows.net/"
			    TENANT "/\",\"jwks_uri\":\"http://x/k\"}";

	CHECK(jwks_metadata_parse(good, strlen(good), TENANT, &iss, &uri,
	    err, sizeof(err)) == 0);
	CHECK_STR(uri, "https://login.example/k");
	free(iss);
	free(uri);
	CHECK(jwks_metadata_parse(other, strlen(other), TENANT, &iss, &uri,
	    err, sizeof(err)) == -1);
	CHECK(strstr(err, "not for tenant") != NULL);
	CHECK(jwks_metadata_parse(plain, strlen(plain), TENANT, &iss, &uri,
	    err, sizeof(err)) == -1);
	CHECK(jwks_metadata_parse("{", 1, TENANT, &iss, &uri, err,
	    sizeof(err)) == -1);
}

/* --- against the fake authority ----------------------------------------- */

static struct fake_entra	 fe;
static struct event_base	*base;
static struct httpc		*hc;
static char			*saved;
static size_t			 saved_len;
static int			 saves;

static void
save_hook(const char *json, size_t len, void *arg)
{
	free(saved);
	saved = strndup(json, len);
	saved_len = len;
	saves++;
}

static char *
load_hook(size_t *len, void *arg)
{
	if (saved == NULL)
		return NULL;
	*len = saved_len;
	return strdup(saved);
}

static struct jwks *
live_jwks(void)
{
	struct jwks_params	p;

	memset(&p, 0, sizeof(p));
	p.authority = fake_entra_str(&fe, "authority");
	p.tenant_id = TENANT;
	p.ca_file = fake_entra_str(&fe, "ca_file");
	p.refresh = 3600;
	p.timeout_ms = 5000;
	p.save = save_hook;
	p.load = load_hook;
	return jwks_new(base, hc, &p);
}

static int
has_kid(struct jwks *j, const char *kid)
{
	struct jwks_keyset	*set = jwks_keyset_get(j);
	int			 found = jwks_keyset_find(set, kid) != NULL;

	jwks_keyset_put(set);
	return found;
}

static void
waiter_done(void *arg)
{
	*(int *)arg = 1;
}

/* Dispatch until the pending or running refresh has ended. */
static int
wait_refresh(struct jwks *j)
{
	int	done = 0;

	if (jwks_wait_refresh(j, base, waiter_done, &done) == NULL)
		return 0;
	return run_until(base, &done, 30);
}

static void
test_fetch(void)
{
	struct jwks		*j = live_jwks();
	struct jwks_keyset	*set;

	CHECK(jwks_state(j) == JWKS_NONE);
	jwks_start(j);
	CHECK(wait_refresh(j));
	CHECK(jwks_state(j) == JWKS_FRESH);
	CHECK_STR(jwks_state_name(jwks_state(j)), "fresh");
	CHECK(has_kid(j, fake_entra_str(&fe, "kid")));
	set = jwks_keyset_get(j);
	CHECK_STR(jwks_keyset_issuer(set, 1), fake_entra_str(&fe,
	    "issuer_v1"));
	CHECK_STR(jwks_keyset_issuer(set, 2), fake_entra_str(&fe,
	    "issuer_v2"));
	jwks_keyset_put(set);
	CHECK(saves == 1 && saved != NULL);
	CHECK(fake_entra_count(&fe, "metadata_v1") == 1);
	CHECK(fake_entra_count(&fe, "jwks_v2") == 1);
	jwks_free(j);
}

struct other_thread {
	struct jwks	*j;
	int		 miss;
	int		 woken;
};

/* A kid miss from another thread, waited for on that thread's base. */
static void *
other_thread_main(void *arg)
{
	struct other_thread	*t = arg;
	struct event_base	*b = event_base_new();
	struct jwks_waiter	*w;

	t->miss = jwks_kid_miss(t->j);
	if ((w = jwks_wait_refresh(t->j, b, waiter_done, &t->woken)) != NULL)
		run_until(b, &t->woken, 30);
	else
		t->woken = 2;	/* the refresh ended before we could wait */
	event_base_free(b);
	return NULL;
}

static void
test_kid_miss_throttle(void)
{
	struct jwks		*j = live_jwks();
	struct other_thread	 t = { j, 0, 0 };
	pthread_t		 th;
	json_t			*r;
	char			 kid[64];
	long			 before;
	int			 i;

	jwks_start(j);
	CHECK(wait_refresh(j));
	r = fake_entra_cmd(&fe, "rotate");
	snprintf(kid, sizeof(kid), "%s",
	    json_string_value(json_object_get(r, "kid")));
	json_decref(r);
	CHECK(!has_kid(j, kid));
	pthread_create(&th, NULL, other_thread_main, &t);
	run_until(base, &t.woken, 30);
	pthread_join(th, NULL);
	CHECK(t.miss == 1 && t.woken);
	CHECK(has_kid(j, kid));
	/* A flood within min_refetch starts no fetch. */
	r = fake_entra_cmd(&fe, "rotate");
	json_decref(r);
	before = fake_entra_count(&fe, "jwks_v2");
	for (i = 0; i < 100; i++)
		CHECK(jwks_kid_miss(j) == 0);
	for (i = 0; i < 20; i++) {
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(10000);
	}
	CHECK(fake_entra_count(&fe, "jwks_v2") == before);
	CHECK(jwks_fetch_count(j) == 2);
	jwks_free(j);
}

static void
test_outage_keeps_keys(void)
{
	struct jwks	*j = live_jwks();
	json_t		*r;
	const char	*kid = fake_entra_str(&fe, "kid");
	int		 saves_before;

	jwks_start(j);
	CHECK(wait_refresh(j));
	saves_before = saves;
	r = fake_entra_cmd(&fe, "down");
	json_decref(r);
	jwks_refresh_now(j);
	CHECK(wait_refresh(j));
	CHECK(jwks_state(j) == JWKS_STALE);
	CHECK(has_kid(j, kid));
	CHECK(saves == saves_before);
	jwks_free(j);

	/* A restart during the outage validates with the stored set. */
	j = live_jwks();
	jwks_start(j);
	CHECK(jwks_state(j) == JWKS_STALE && has_kid(j, kid));
	CHECK(wait_refresh(j));
	CHECK(jwks_state(j) == JWKS_STALE && has_kid(j, kid));
	r = fake_entra_cmd(&fe, "up");
	json_decref(r);
	jwks_refresh_now(j);
	CHECK(wait_refresh(j));
	CHECK(jwks_state(j) == JWKS_FRESH);
	jwks_free(j);
}

int
main(void)
{
	log_init("test", LOG_LEVEL_ERROR, 1);
	evthread_use_pthreads();
	key_a = EVP_RSA_gen(2048);
	key_b = EVP_RSA_gen(2048);
	key_weak = EVP_RSA_gen(1024);
	TEST(test_base64url);
	TEST(test_keyset_parse);
	TEST(test_keyset_dump_roundtrip);
	TEST(test_keyset_bad);
	TEST(test_metadata_parse);
	if (fake_entra_start(&fe) == 0) {
		base = event_base_new();
		hc = httpc_new(base);
		TEST(test_fetch);
		TEST(test_kid_miss_throttle);
		TEST(test_outage_keeps_keys);
		httpc_free(hc);
		event_base_free(base);
		fake_entra_stop(&fe);
	} else
		printf("# SKIP live tests: python3 test server unavailable\n");
	free(saved);
	EVP_PKEY_free(key_a);
	EVP_PKEY_free(key_b);
	EVP_PKEY_free(key_weak);
	return unit_done();
}
