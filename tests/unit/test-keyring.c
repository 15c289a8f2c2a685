/* test-keyring.c: KEK sources, the keyring file, sealing, rotation. */
#include "config.h"

#include <sys/stat.h>
#include <ctype.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "tenantd.h"
#include "unit.h"

static char	 tmpdir[] = "/tmp/test-keyring.XXXXXX";
static char	 kek_a[256], kek_b[256], kr_path[256];

static void
write_file(const char *path, const void *buf, size_t len, mode_t mode)
{
	int	fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd == -1 || write(fd, buf, len) != (ssize_t)len)
		abort();
	fchmod(fd, mode);
	close(fd);
}

static uint8_t *
read_all(const char *path, size_t *len)
{
	static uint8_t	buf[65536];
	int		fd;
	ssize_t		n;

	if ((fd = open(path, O_RDONLY)) == -1)
		return NULL;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	*len = n > 0 ? (size_t)n : 0;
	return buf;
}

static void
make_kek(const char *path)
{
	uint8_t	key[32];

	RAND_bytes(key, sizeof(key));
	write_file(path, key, sizeof(key), 0600);
}

static struct keyring_params
params(const char *kek_path)
{
	struct keyring_params	p = { 0 };
	char			*spec;

	xasprintf(&spec, "file:%s", kek_path);	/* leaked: a test */
	p.path = kr_path;
	p.kek = spec;
	p.create = 1;
	return p;
}

static struct keyring *
fresh(struct keyring_params *p, char *recovery)
{
	struct keyring	*kr = NULL;
	char		 err[512];
	int		 created;

	unlink(kr_path);
	if (keyring_load(p, &kr, &created, recovery, err, sizeof(err)) != 0)
		printf("# %s\n", err);
	CHECK(kr != NULL && created == 1);
	return kr;
}

static int
load_err(const struct keyring_params *p, char *err, size_t errlen)
{
	struct keyring	*kr = NULL;
	int		 rv;

	rv = keyring_load(p, &kr, NULL, NULL, err, errlen);
	keyring_free(kr);
	return rv;
}

static void
test_seal_round_trip(void)
{
	struct keyring_params	 p = params(kek_a);
	struct keyring		*kr = fresh(&p, NULL);
	uint8_t			 sealed[64 + KEYRING_SEAL_OVERHEAD], out[64];
	const char		*msg = "a value of some kind", *aad = "db/key";
	char			 err[256];
	uint32_t		 term;
	size_t			 len = strlen(msg);

	CHECK(keyring_seal(kr, aad, 6, msg, len, sealed) == KEYRING_OK);
	CHECK(memmem(sealed, len + KEYRING_SEAL_OVERHEAD, msg, 8) == NULL);
	CHECK(keyring_open(kr, aad, 6, sealed, len + KEYRING_SEAL_OVERHEAD,
	    out) == KEYRING_OK && memcmp(out, msg, len) == 0);
	CHECK(keyring_sealed_term(sealed, len + KEYRING_SEAL_OVERHEAD,
	    &term) == KEYRING_OK && term == 1);
	CHECK(keyring_open(kr, "db/kez", 6, sealed, len +
	    KEYRING_SEAL_OVERHEAD, out) == KEYRING_EAUTH);
	keyring_free(kr);
	p.create = 0;
	CHECK(keyring_load(&p, &kr, NULL, NULL, err, sizeof(err)) == 0);
	CHECK(keyring_open(kr, aad, 6, sealed, len + KEYRING_SEAL_OVERHEAD,
	    out) == KEYRING_OK && memcmp(out, msg, len) == 0);
	CHECK(keyring_seal(kr, aad, 6, "", 0, sealed) == KEYRING_OK);
	CHECK(keyring_open(kr, aad, 6, sealed, KEYRING_SEAL_OVERHEAD,
	    out) == KEYRING_OK);
	keyring_free(kr);
}

static void
test_flip_every_byte(void)
{
	struct keyring_params	 p = params(kek_a);
	struct keyring		*kr = fresh(&p, NULL);
	uint8_t			 pt[1024], sealed[sizeof(pt) + 40];
	uint8_t			 out[sizeof(pt)];
	size_t			 i, len = sizeof(pt) + KEYRING_SEAL_OVERHEAD;
	int			 bit, ok = 0;

	RAND_bytes(pt, sizeof(pt));
	CHECK(keyring_seal(kr, "x", 1, pt, sizeof(pt), sealed) == KEYRING_OK);
	for (i = 0; i < len; i++) {
		for (bit = 0; bit < 8; bit += 3) {
			sealed[i] ^= 1 << bit;
			if (keyring_open(kr, "x", 1, sealed, len, out) ==
			    KEYRING_OK)
				ok++;
			sealed[i] ^= 1 << bit;
		}
	}
	CHECK(ok == 0);
	CHECK(keyring_open(kr, "x", 1, sealed, len - 1, out) != KEYRING_OK);
	CHECK(keyring_open(kr, "x", 1, sealed, 10, out) == KEYRING_EFORMAT);
	CHECK(keyring_open(kr, "x", 1, sealed, len, out) == KEYRING_OK);
	keyring_free(kr);
}

static int
cmp_nonce(const void *a, const void *b)
{
	return memcmp(a, b, 12);
}

static void
test_nonce_unique(void)
{
	struct keyring_params	 p = params(kek_a);
	struct keyring		*kr = fresh(&p, NULL);
	const size_t		 n = 100000;
	uint8_t			*nonces, sealed[KEYRING_SEAL_OVERHEAD + 4];
	size_t			 i, dups = 0;

	nonces = xcalloc(n, 12);
	for (i = 0; i < n; i++) {
		CHECK(keyring_seal(kr, NULL, 0, "same", 4, sealed) ==
		    KEYRING_OK);
		memcpy(nonces + 12 * i, sealed + 5, 12);
	}
	qsort(nonces, n, 12, cmp_nonce);
	for (i = 1; i < n; i++)
		dups += memcmp(nonces + 12 * (i - 1), nonces + 12 * i, 12) == 0;
	CHECK(dups == 0);
	free(nonces);
	keyring_free(kr);
}

static void
test_wrong_kek(void)
{
	struct keyring_params	 p = params(kek_a), q = params(kek_b);
	struct keyring		*kr = fresh(&p, NULL);
	char			 err[512], path[256];

	keyring_free(kr);
	q.create = 0;
	CHECK(load_err(&q, err, sizeof(err)) == -1);
	CHECK(strstr(err, "not the key this keyring was made with") != NULL);
	snprintf(path, sizeof(path), "%s/kek-loose", tmpdir);
	make_kek(path);
	chmod(path, 0644);
	q = params(path);
	CHECK(load_err(&q, err, sizeof(err)) == -1);
	printf("# loose KEK file: %s\n", err);
	write_file(path, "short", 5, 0600);
	CHECK(load_err(&q, err, sizeof(err)) == -1);
	CHECK(strstr(err, "exactly 32") != NULL);
	q.kek = "env:NOPE";
	CHECK(load_err(&q, err, sizeof(err)) == -1);
	CHECK(strstr(err, "is not file:PATH") != NULL);
	p.create = 0;
	CHECK(load_err(&p, err, sizeof(err)) == 0);
}

static void
test_tampered_keyring(void)
{
	struct keyring_params	 p = params(kek_a);
	struct keyring		*kr = fresh(&p, NULL);
	uint8_t			 orig[65536], *buf;
	char			 err[512];
	size_t			 len = 0, i, accepted = 0, named = 0;

	keyring_rotate(kr, NULL, err, sizeof(err));
	keyring_free(kr);
	p.create = 0;
	buf = read_all(kr_path, &len);
	memcpy(orig, buf, len);
	for (i = 0; i < len; i++) {
		orig[i] ^= 0x20;
		write_file(kr_path, orig, len, 0600);
		if (load_err(&p, err, sizeof(err)) == 0)
			accepted++;
		else if (strstr(err, "keyring") != NULL || strstr(err,
		    "KEK") != NULL)
			named++;
		orig[i] ^= 0x20;
	}
	CHECK(accepted == 0);
	CHECK(named == len);
	for (i = 0; i < len; i++) {
		write_file(kr_path, orig, i, 0600);
		if (load_err(&p, err, sizeof(err)) == 0)
			accepted++;
		else if (strstr(err, "truncated") == NULL)
			printf("# truncated to %zu: %s\n", i, err);
	}
	CHECK(accepted == 0);
	write_file(kr_path, orig, len, 0600);
	write_file(kr_path, orig, len - 1, 0600);
	CHECK(load_err(&p, err, sizeof(err)) == -1);
	CHECK(strstr(err, "truncated") != NULL);
	orig[len - 1] ^= 1;
	write_file(kr_path, orig, len, 0600);
	CHECK(load_err(&p, err, sizeof(err)) == -1);
	CHECK(strstr(err, "modified or corrupted") != NULL);
	orig[len - 1] ^= 1;
	write_file(kr_path, orig, len, 0600);
	CHECK(load_err(&p, err, sizeof(err)) == 0);
	unlink(kr_path);
	CHECK(load_err(&p, err, sizeof(err)) == -1);
	CHECK(strstr(err, "does not exist") != NULL);
}

static void
test_rotate_retire(void)
{
	struct keyring_params	 p = params(kek_a);
	struct keyring		*kr = fresh(&p, NULL);
	uint8_t			 s1[40], s2[40], out[8];
	char			 err[256];
	uint32_t		 term;

	CHECK(keyring_seal(kr, "a", 1, "one", 3, s1) == KEYRING_OK);
	CHECK(keyring_rotate(kr, &term, err, sizeof(err)) == 0 && term == 2);
	CHECK(keyring_active_term(kr) == 2);
	CHECK(keyring_term_state(kr, 1) == KEYRING_TERM_DECRYPT_ONLY);
	CHECK(keyring_seal(kr, "a", 1, "two", 3, s2) == KEYRING_OK);
	CHECK(keyring_sealed_term(s2, 3 + KEYRING_SEAL_OVERHEAD, &term) == 0 &&
	    term == 2);
	CHECK(keyring_open(kr, "a", 1, s1, 3 + KEYRING_SEAL_OVERHEAD,
	    out) == KEYRING_OK && memcmp(out, "one", 3) == 0);
	CHECK(keyring_retire(kr, 2, 0, err, sizeof(err)) == -1);
	CHECK(strstr(err, "active") != NULL);
	CHECK(keyring_retire(kr, 1, 7, err, sizeof(err)) == -1);
	CHECK(strstr(err, "still seals 7") != NULL);
	CHECK(keyring_retire(kr, 9, 0, err, sizeof(err)) == -1);
	CHECK(keyring_retire(kr, 1, 0, err, sizeof(err)) == 0);
	CHECK(keyring_open(kr, "a", 1, s1, 3 + KEYRING_SEAL_OVERHEAD,
	    out) == KEYRING_ETERM);
	keyring_free(kr);
	p.create = 0;
	CHECK(keyring_load(&p, &kr, NULL, NULL, err, sizeof(err)) == 0);
	CHECK(keyring_term_state(kr, 1) == KEYRING_TERM_DESTROYED);
	CHECK(keyring_active_term(kr) == 2);
	CHECK(keyring_open(kr, "a", 1, s2, 3 + KEYRING_SEAL_OVERHEAD,
	    out) == KEYRING_OK && memcmp(out, "two", 3) == 0);
	CHECK(keyring_open(kr, "a", 1, s1, 3 + KEYRING_SEAL_OVERHEAD,
	    out) == KEYRING_ETERM);
	keyring_free(kr);
}

static void
test_auto_rotation(void)
{
	struct keyring_params	 p = params(kek_a);
	struct keyring		*kr;
	uint8_t			 s[40];
	char			 err[256];
	int			 i;

	p.rotate_seals = 5;
	kr = fresh(&p, NULL);
	for (i = 0; i < 12; i++)
		CHECK(keyring_seal(kr, NULL, 0, "v", 1, s) == KEYRING_OK);
	CHECK(keyring_active_term(kr) == 3);
	keyring_free(kr);
	/* Seals are reserved in the file: a restart cannot reuse the count. */
	p.create = 0;
	CHECK(keyring_load(&p, &kr, NULL, NULL, err, sizeof(err)) == 0);
	CHECK(keyring_seal(kr, NULL, 0, "v", 1, s) == KEYRING_OK);
	CHECK(keyring_active_term(kr) == 4);
	keyring_free(kr);
	p.rotate_seals = 0;
	p.rotate_after = 1;
	CHECK(keyring_load(&p, &kr, NULL, NULL, err, sizeof(err)) == 0);
	sleep(2);
	CHECK(keyring_seal(kr, NULL, 0, "v", 1, s) == KEYRING_OK);
	CHECK(keyring_active_term(kr) == 5);
	keyring_free(kr);
}

static void
test_recovery(void)
{
	struct keyring_params	 p = params(kek_a), q;
	struct keyring		*kr;
	char			 rec[KEYRING_RECOVERY_LEN], bad[KEYRING_RECOVERY_LEN];
	char			 other[KEYRING_RECOVERY_LEN], err[512], path[256];
	uint8_t			 s[40], out[8];
	size_t			 i;

	p.recovery = 1;
	kr = fresh(&p, other);		/* a recovery key of another keyring */
	keyring_free(kr);
	kr = fresh(&p, rec);
	printf("# recovery key: %s\n", rec);
	CHECK(strlen(rec) == 47);
	for (i = 0; i < strlen(rec); i++)
		CHECK(rec[i] == '-' ? i % 6 == 5 : isupper((unsigned char)
		    rec[i]) || isdigit((unsigned char)rec[i]));
	CHECK(keyring_seal(kr, "k", 1, "secret", 6, s) == KEYRING_OK);
	keyring_rotate(kr, NULL, err, sizeof(err));
	keyring_free(kr);
	/* The KEK is lost; a new one replaces it through the recovery key. */
	snprintf(path, sizeof(path), "%s/kek-new", tmpdir);
	make_kek(path);
	q = params(path);
	q.create = 0;
	CHECK(load_err(&q, err, sizeof(err)) == -1);
	memcpy(bad, rec, sizeof(bad));
	bad[3] = bad[3] == 'A' ? 'B' : 'A';
	CHECK(keyring_recover(&q, bad, err, sizeof(err)) == -1);
	CHECK(strstr(err, "checksum") != NULL);
	CHECK(keyring_recover(&q, other, err, sizeof(err)) == -1);
	CHECK(strstr(err, "does not belong") != NULL);
	for (i = 0; rec[i] != '\0'; i++)
		bad[i] = tolower((unsigned char)rec[i]);
	bad[i] = '\0';
	CHECK(keyring_recover(&q, bad, err, sizeof(err)) == 0);
	CHECK(keyring_load(&q, &kr, NULL, NULL, err, sizeof(err)) == 0);
	CHECK(keyring_active_term(kr) == 2);
	CHECK(keyring_open(kr, "k", 1, s, 6 + KEYRING_SEAL_OVERHEAD, out) ==
	    KEYRING_OK && memcmp(out, "secret", 6) == 0);
	keyring_free(kr);
	p.create = 0;
	CHECK(load_err(&p, err, sizeof(err)) == -1);	/* old KEK is out */
	p.recovery = 0;
	p.create = 1;
	kr = fresh(&p, rec);
	keyring_free(kr);
	CHECK(keyring_recover(&q, other, err, sizeof(err)) == -1);
	CHECK(strstr(err, "has no recovery key") != NULL);
}

static void
test_passphrase(void)
{
	struct keyring_params	 p = { 0 };
	struct keyring		*kr;
	char			 err[512], spec[400], path[256];
	uint8_t			 s[40], out[8];

	snprintf(path, sizeof(path), "%s/passphrase", tmpdir);
	write_file(path, "correct horse battery staple\n", 29, 0600);
	snprintf(spec, sizeof(spec), "passphrase-file:%s", path);
	p.path = kr_path;
	p.kek = spec;
	p.create = 1;
	p.scrypt_log2n = 12;
	kr = fresh(&p, NULL);
	CHECK(keyring_seal(kr, NULL, 0, "pp", 2, s) == KEYRING_OK);
	keyring_free(kr);
	p.create = 0;
	CHECK(keyring_load(&p, &kr, NULL, NULL, err, sizeof(err)) == 0);
	CHECK(keyring_open(kr, NULL, 0, s, 2 + KEYRING_SEAL_OVERHEAD, out) ==
	    KEYRING_OK);
	keyring_free(kr);
	write_file(path, "correct horse battery stable", 28, 0600);
	CHECK(load_err(&p, err, sizeof(err)) == -1);
	CHECK(strstr(err, "not the key") != NULL);
	write_file(path, "short", 5, 0600);
	CHECK(load_err(&p, err, sizeof(err)) == -1);
	CHECK(strstr(err, "12 to") != NULL);
	p = params(kek_a);
	p.create = 0;
	CHECK(load_err(&p, err, sizeof(err)) == -1);
	CHECK(strstr(err, "passphrase KEK") != NULL);
}

static void
test_credential(void)
{
	struct keyring_params	 p = params(kek_a);
	struct keyring		*kr;
	char			 err[512], path[256];

	snprintf(path, sizeof(path), "%s/tenantd-kek", tmpdir);
	make_kek(path);
	setenv("CREDENTIALS_DIRECTORY", tmpdir, 1);
	p.kek = "credential:tenantd-kek";
	kr = fresh(&p, NULL);
	keyring_free(kr);
	p.create = 0;
	CHECK(load_err(&p, err, sizeof(err)) == 0);
	unsetenv("CREDENTIALS_DIRECTORY");
}

static void
test_pseudonym(void)
{
	struct keyring_params	 p = params(kek_a);
	struct keyring		*kr = fresh(&p, NULL);
	const char		*tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
	char			 a[KEYRING_PSEUDONYM_LEN], b[KEYRING_PSEUDONYM_LEN];
	char			 c[KEYRING_PSEUDONYM_LEN], err[256];
	size_t			 i;

	CHECK(keyring_pseudonym(kr, tid, "oid-1", a) == 0);
	CHECK(strlen(a) == 28 && strncmp(a, "p_", 2) == 0);
	for (i = 2; i < 28; i++)
		CHECK(islower((unsigned char)a[i]) || (a[i] >= '2' &&
		    a[i] <= '7'));
	CHECK(keyring_pseudonym(kr, tid, "oid-2", b) == 0);
	CHECK(strcmp(a, b) != 0);
	CHECK(keyring_pseudonym(kr, "other-tenant", "oid-1", b) == 0);
	CHECK(strcmp(a, b) != 0);
	keyring_free(kr);
	p.create = 0;
	CHECK(keyring_load(&p, &kr, NULL, NULL, err, sizeof(err)) == 0);
	CHECK(keyring_pseudonym(kr, tid, "oid-1", c) == 0);
	CHECK_STR(a, c);
	keyring_free(kr);
	p.create = 1;
	kr = fresh(&p, NULL);
	CHECK(keyring_pseudonym(kr, tid, "oid-1", c) == 0);
	CHECK(strcmp(a, c) != 0);
	keyring_free(kr);
}

static void
test_status_json(void)
{
	struct keyring_params	 p = params(kek_a);
	struct keyring		*kr = fresh(&p, NULL);
	char			 err[256], *s;
	json_t			*o;

	keyring_rotate(kr, NULL, err, sizeof(err));
	o = keyring_status_json(kr);
	s = json_dumps(o, JSON_COMPACT);
	CHECK(strstr(s, "\"active_term\":2") != NULL);
	CHECK(strstr(s, "\"state\":\"decrypt-only\"") != NULL);
	free(s);
	json_decref(o);
	keyring_free(kr);
}

int
main(void)
{
	log_init("test-keyring", LOG_LEVEL_WARN, 1);
	if (mkdtemp(tmpdir) == NULL)
		abort();
	snprintf(kek_a, sizeof(kek_a), "%s/kek-a", tmpdir);
	snprintf(kek_b, sizeof(kek_b), "%s/kek-b", tmpdir);
	snprintf(kr_path, sizeof(kr_path), "%s/keyring", tmpdir);
	make_kek(kek_a);
	make_kek(kek_b);
	TEST(test_seal_round_trip);
	TEST(test_flip_every_byte);
	TEST(test_nonce_unique);
	TEST(test_wrong_kek);
	TEST(test_tampered_keyring);
	TEST(test_rotate_retire);
	TEST(test_auto_rotation);
	TEST(test_recovery);
	TEST(test_passphrase);
	TEST(test_credential);
	TEST(test_pseudonym);
	TEST(test_status_json);
	snprintf(kek_b, sizeof(kek_b), "rm -rf %s", tmpdir);
	(void)!system(kek_b);
	return unit_done();
}
