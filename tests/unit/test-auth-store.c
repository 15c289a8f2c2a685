/*
 * test-auth-store.c: the jwks save/load hooks on a temporary store (the
 * last good key set survives a restart) and pseudonyms from the keyring.
 */
#include "config.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/rand.h>

#include "tenantd.h"
#include "unit.h"

#define TENANT	"72f988bf-86f1-41af-91ab-2d7cd011db47"
#define OID	"690222be-ff1a-4d56-abd1-7e4f7d38e474"

static char		 tmpdir[] = "/tmp/test-auth-store.XXXXXX";
static char		 dir[256], kek[256], kr_path[256], kek_spec[300];
static struct keyring	*kr;
static const char *const dbs[] = { AUTH_STORE_DB, NULL };

static struct store *
open_store(void)
{
	struct store_params	 p = { 0 };
	struct store		*st = NULL;
	char			 err[512];

	p.dir = dir;
	p.dbs = dbs;
	p.max_size = 16 << 20;
	p.keyring = kr;
	if (store_open(&p, &st, err, sizeof(err)) != 0)
		printf("# store_open: %s\n", err);
	return st;
}

/* A persisted-form key set with one fresh RSA key under kid. */
static char *
keyset_blob(const char *kid, size_t *len)
{
	EVP_PKEY	*key = EVP_RSA_gen(2048);
	json_t		*doc;
	char		*s;

	doc = json_pack("{s:i, s:s, s:[o]}", "format", 1, "issuer_v2",
	    "https://login.microsoftonline.com/" TENANT "/v2.0", "keys",
	    jwks_jwk_from_pkey(key, kid));
	s = json_dumps(doc, JSON_COMPACT);
	*len = strlen(s);
	json_decref(doc);
	EVP_PKEY_free(key);
	return s;
}

static void
test_nothing_saved(void)
{
	struct store		*st = open_store();
	struct auth_store	 as = { st, NULL };
	size_t			 len = 0;

	CHECK(st != NULL);
	CHECK(auth_store_load_jwks(&len, &as) == NULL);
	CHECK(auth_store_load_jwks(&len, NULL) == NULL);
	store_close(st);
}

static void
test_save_load_across_reopen(void)
{
	struct store		*st = open_store();
	struct auth_store	 as = { st, NULL };
	struct jwks_keyset	*set;
	char			*blob, *back, err[160];
	size_t			 len, backlen = 0;

	blob = keyset_blob("kid-1", &len);
	auth_store_save_jwks(blob, len, &as);
	store_close(st);
	as.store = st = open_store();
	back = auth_store_load_jwks(&backlen, &as);
	CHECK(back != NULL && backlen == len && memcmp(back, blob, len) == 0);
	set = back ? jwks_keyset_parse(back, backlen, err, sizeof(err)) : NULL;
	CHECK(set != NULL && jwks_keyset_find(set, "kid-1") != NULL);
	jwks_keyset_put(set);
	free(back);
	free(blob);
	store_close(st);
}

static void
test_async_save_and_jwks_start(void)
{
	struct event_base	*base = event_base_new();
	struct store		*st = open_store();
	struct auth_store	 as = { st, base };
	struct jwks_params	 p;
	struct jwks		*j;
	struct jwks_keyset	*set;
	char			*blob, *back = NULL;
	size_t			 len, backlen;
	int			 i;

	blob = keyset_blob("kid-2", &len);
	auth_store_save_jwks(blob, len, &as);
	for (i = 0; i < 200 && back == NULL; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		if ((back = auth_store_load_jwks(&backlen, &as)) != NULL &&
		    strstr(back, "kid-2") == NULL) {
			free(back);
			back = NULL;
		}
		if (back == NULL)
			usleep(10000);
	}
	CHECK(back != NULL);
	free(back);
	/* a restart: the stored set is installed, stale until a fetch */
	memset(&p, 0, sizeof(p));
	p.tenant_id = TENANT;
	p.load = auth_store_load_jwks;
	p.save = auth_store_save_jwks;
	p.hook_arg = &as;
	j = jwks_new(base, NULL, &p);
	jwks_start(j);
	CHECK(jwks_state(j) == JWKS_STALE);
	set = jwks_keyset_get(j);
	CHECK(set != NULL && jwks_keyset_find(set, "kid-2") != NULL);
	jwks_keyset_put(set);
	event_base_loop(base, EVLOOP_NONBLOCK);
	jwks_free(j);
	free(blob);
	store_close(st);
	event_base_free(base);
}

static void
test_pseudonym(void)
{
	char	a[128], b[128], c[128], direct[KEYRING_PSEUDONYM_LEN];

	CHECK(auth_store_pseudonym(TENANT, OID, a, sizeof(a), kr) == 0);
	CHECK(keyring_pseudonym(kr, TENANT, OID, direct) == 0);
	CHECK_STR(a, direct);
	CHECK(strncmp(a, "p_", 2) == 0 && strstr(a, "690222be") == NULL);
	/* GUIDs without case: one user, one pseudonym */
	CHECK(auth_store_pseudonym("72F988BF-86F1-41AF-91AB-2D7CD011DB47",
	    "690222BE-FF1A-4D56-ABD1-7E4F7D38E474", b, sizeof(b), kr) == 0);
	CHECK_STR(a, b);
	CHECK(auth_store_pseudonym(TENANT, "another-oid", c, sizeof(c),
	    kr) == 0);
	CHECK(strcmp(a, c) != 0);
	CHECK(auth_store_pseudonym(TENANT, OID, c, 8, kr) == -1);
	CHECK(auth_store_pseudonym(TENANT, OID, c, sizeof(c), NULL) == -1);
}

int
main(void)
{
	struct keyring_params	p = { 0 };
	uint8_t			k[32];
	char			err[512];
	int			fd;

	log_init("test-auth-store", LOG_LEVEL_WARN, 1);
	evthread_use_pthreads();
	if (mkdtemp(tmpdir) == NULL)
		abort();
	snprintf(dir, sizeof(dir), "%s/store", tmpdir);
	snprintf(kek, sizeof(kek), "%s/kek", tmpdir);
	snprintf(kr_path, sizeof(kr_path), "%s/keyring", tmpdir);
	snprintf(kek_spec, sizeof(kek_spec), "file:%s", kek);
	RAND_bytes(k, sizeof(k));
	if ((fd = open(kek, O_WRONLY | O_CREAT, 0600)) == -1 ||
	    write(fd, k, sizeof(k)) != sizeof(k))
		abort();
	close(fd);
	p.path = kr_path;
	p.kek = kek_spec;
	p.create = 1;
	p.scrypt_log2n = 10;
	if (keyring_load(&p, &kr, NULL, NULL, err, sizeof(err)) != 0)
		fatalx("%s", err);
	TEST(test_nothing_saved);
	TEST(test_save_load_across_reopen);
	TEST(test_async_save_and_jwks_start);
	TEST(test_pseudonym);
	keyring_free(kr);
	snprintf(err, sizeof(err), "rm -rf %s", tmpdir);
	(void)!system(err);
	return unit_done();
}
