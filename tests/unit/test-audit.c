/*
 * test-audit.c: the audit trail: the canonical form, gap-free numbering in
 * commit order with failing batches in a group, fail-closed writes,
 * tampering found by verify (with the exact seq and reason), checkpoints,
 * pruning, the denied-attempt limit, exports. Built with AUDIT_TESTING.
 * The test reaches LMDB directly only to tamper with stored bytes.
 */
#include "config.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "tenantd.h"
#include "audit.h"
#include "unit.h"

static char		 tmpdir[] = "/tmp/test-audit.XXXXXX";
static char		 dir[256];
static struct keyring	*kr;
static struct store	*st;
static int		 store_n;
static const char *const dbs[] = { "settings", AUDIT_DB, NULL };

/* A fresh store and audit trail for each test. */
static void
setup(uint64_t every)
{
	struct store_params	 p = { 0 };
	struct audit_params	 ap = { 0 };
	char			 err[512];

	snprintf(dir, sizeof(dir), "%s/store%d", tmpdir, store_n++);
	p.dir = dir;
	p.dbs = dbs;
	p.max_size = 256 << 20;
	p.keyring = kr;
	if (store_open(&p, &st, err, sizeof(err)) != 0)
		fatalx("store_open: %s", err);
	ap.checkpoint_every = every;
	if (audit_init(st, kr, &ap, err, sizeof(err)) != 0)
		fatalx("audit_init: %s", err);
}

static void
teardown(void)
{
	audit_shutdown();
	store_close(st);
	st = NULL;
}

static int
log_one(const char *action, const char *target)
{
	struct audit_record	rec;

	audit_record_init(&rec, action, "p_testactor");
	audit_record_target(&rec, "%s", target);
	return audit_log_now(&rec);
}

static void
log_many(int n)
{
	char	target[32];
	int	i;

	for (i = 0; i < n; i++) {
		snprintf(target, sizeof(target), "t-%d", i);
		log_one("settings.put", target);
	}
}

/* The canonical record stored at seq (without the hash). */
static char *
canonical(uint64_t seq, uint8_t *hash)
{
	uint8_t	 key[8];
	void	*val;
	size_t	 len;
	char	*s;

	audit_seq_key(seq, key);
	if (store_get(st, AUDIT_DB, key, 8, &val, &len) != STORE_OK)
		return NULL;
	if (hash != NULL)
		memcpy(hash, val, 32);
	s = xstrndup((char *)val + 32, len - 32);
	free(val);
	return s;
}

/* Store hash||canon at seq through the store (an attacker with keys). */
static void
put_raw_record(uint64_t seq, const uint8_t *hash, const char *canon)
{
	struct store_batch	*b = store_batch_new(st);
	uint8_t			 key[8], *v;
	size_t			 n = strlen(canon);

	v = xmalloc(32 + n);
	memcpy(v, hash, 32);
	memcpy(v + 32, canon, n);
	audit_seq_key(seq, key);
	store_batch_put(b, AUDIT_DB, key, 8, v, 32 + n);
	CHECK(store_write(b) == STORE_OK);
	free(v);
}

static json_t *
verify_expect(uint64_t from, int ok, uint64_t seq, const char *reason)
{
	json_t	*r = audit_verify(from);

	CHECK(r != NULL);
	if (r == NULL)
		return NULL;
	if (json_is_true(json_object_get(r, "ok")) != ok ||
	    (!ok && (json_integer_value(json_object_get(r, "seq")) !=
	    (json_int_t)seq || strcmp(json_string_value(json_object_get(r,
	    "reason")), reason) != 0))) {
		char *s = json_dumps(r, 0);
		printf("# expected ok=%d seq=%llu reason=%s, got %s\n", ok,
		    (unsigned long long)seq, reason, s);
		free(s);
		CHECK(0);
	}
	return r;
}

static void
test_canonical_form(void)
{
	struct audit_record	 rec;
	json_t			*j;
	char			*c, *again;

	setup(1000);
	CHECK(audit_record_init(&rec, "no.such.action", "x") == -1);
	CHECK(audit_record_init(&rec, "settings.put", "p_abc") == 0);
	audit_record_roles(&rec, "admin,auditor");
	audit_record_target(&rec, "tenant/colour \"x\"\\");
	audit_record_outcome(&rec, AUDIT_DENIED, 403);
	audit_record_detail(&rec, "zeta", "bell\a and bad \xff utf-8, é");
	audit_record_detail_int(&rec, "alpha", -42);
	audit_record_detail(&rec, "Bad-Key", "ignored");
	CHECK(audit_log_now(&rec) == STORE_OK);
	c = canonical(1, NULL);
	CHECK(c != NULL);
	/* compact, sorted: what json.dumps(sort_keys=True) writes */
	j = json_loads(c, 0, NULL);
	CHECK(j != NULL);
	again = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	CHECK_STR(again, c);
	CHECK(strstr(c, "\"details\":{\"alpha\":-42,\"zeta\":\"bell\xef\xbf\xbd"
	    " and bad \xef\xbf\xbd utf-8, \xc3\xa9\"}") != NULL);
	CHECK(strstr(c, "\"actor_roles\":[\"admin\",\"auditor\"]") != NULL);
	CHECK(strstr(c, "\"outcome\":\"denied\"") != NULL);
	CHECK(strstr(c, "\"status\":403") != NULL);
	CHECK(strstr(c, "Bad-Key") == NULL);
	free(again);
	json_decref(j);
	free(c);
	teardown();
}

static void
test_source_truncation(void)
{
	struct sockaddr_in	sin = { .sin_family = AF_INET };
	struct sockaddr_in6	sin6 = { .sin6_family = AF_INET6 };
	char			out[AUDIT_SOURCE_LEN];

	inet_pton(AF_INET, "192.0.2.77", &sin.sin_addr);
	audit_source_format((struct sockaddr *)&sin, out, sizeof(out));
	CHECK_STR(out, "192.0.2.0/24");
	inet_pton(AF_INET6, "2001:db8:1234:5678::1", &sin6.sin6_addr);
	audit_source_format((struct sockaddr *)&sin6, out, sizeof(out));
	CHECK_STR(out, "2001:db8:1234::/48");
	inet_pton(AF_INET6, "::ffff:10.1.2.3", &sin6.sin6_addr);
	audit_source_format((struct sockaddr *)&sin6, out, sizeof(out));
	CHECK_STR(out, "10.1.2.0/24");
}

/* Recompute the chain from the export, independently of audit-verify.c. */
static void
test_chain_and_checkpoints(void)
{
	uint8_t	 prev[32] = { 0 }, h[32], stored[32];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int hl;
	json_t	*r;
	char	*c;
	uint64_t seq;
	int	 cps = 0;

	setup(10);
	log_many(35);
	CHECK(audit_checkpoint() == STORE_OK);
	CHECK(audit_checkpoint() == STORE_OK);	/* nothing new: no-op */
	r = verify_expect(0, 1, 0, NULL);
	/* 35 records + checkpoints at 10, 20, 30 + the explicit one */
	CHECK(json_integer_value(json_object_get(r, "last_seq")) == 39);
	CHECK(json_integer_value(json_object_get(r, "checkpoints")) == 4);
	json_decref(r);
	for (seq = 1; seq <= 39; seq++) {
		c = canonical(seq, stored);
		EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
		EVP_DigestUpdate(ctx, "tenantd audit chain v1\n", 23);
		EVP_DigestUpdate(ctx, prev, 32);
		EVP_DigestUpdate(ctx, c, strlen(c));
		EVP_DigestFinal_ex(ctx, h, &hl);
		CHECK(memcmp(h, stored, 32) == 0);
		memcpy(prev, h, 32);
		cps += strncmp(c, "{\"action\":\"audit.checkpoint\"", 28) == 0;
		free(c);
	}
	CHECK(cps == 4);
	EVP_MD_CTX_free(ctx);
	c = canonical(10, NULL);
	CHECK(c != NULL && strstr(c, "\"covers_seq\":9") != NULL);
	free(c);
	verify_expect(20, 1, 0, NULL);
	json_decref(audit_verify(20));
	teardown();
}

/* A batch that always fails inside the writer's transaction. */
static int
failing_hook(struct store_txn *t, void *arg)
{
	return STORE_IO;
}

struct submit {
	int	done, ok, failed;
};

static void
submit_done(int status, void *arg)
{
	struct submit	*s = arg;

	s->done++;
	if (status == STORE_OK)
		s->ok++;
	else
		s->failed++;
}

/*
 * Many batches committed in groups, every seventh failing in the writer:
 * numbers stay gap-free, each successful batch has its record, a failed
 * batch leaves neither its change nor its record.
 */
static void
test_group_commit_failures(void)
{
	struct event_base	*base = event_base_new();
	struct store_batch	*b;
	struct audit_record	 rec;
	struct submit		 s = { 0 };
	char			 key[32], *v;
	size_t			 len;
	int			 i, n = 600, missing = 0, present = 0;
	json_t			*r;

	setup(50);
	for (i = 0; i < n; i++) {
		b = store_batch_new(st);
		snprintf(key, sizeof(key), "k%04d", i);
		store_batch_put(b, "settings", key, strlen(key), "v", 1);
		audit_record_init(&rec, "settings.put", "p_x");
		audit_record_target(&rec, "%s", key);
		CHECK(audit_batch_add(b, &rec) == STORE_OK);
		if (i % 7 == 3)
			store_batch_hook(b, failing_hook, NULL, NULL);
		CHECK(store_submit(b, base, submit_done, &s) == STORE_OK);
	}
	while (s.done < n)
		event_base_loop(base, EVLOOP_ONCE);
	CHECK(s.failed == (n + 3) / 7);
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "k%04d", i);
		if (store_get(st, "settings", key, strlen(key), (void **)&v,
		    &len) == STORE_OK) {
			present += i % 7 != 3;
			free(v);
		} else
			missing += i % 7 == 3;
	}
	CHECK(present == s.ok && missing == s.failed);
	r = verify_expect(0, 1, 0, NULL);
	CHECK(json_integer_value(json_object_get(r, "last_seq")) ==
	    s.ok + json_integer_value(json_object_get(r, "checkpoints")));
	json_decref(r);
	event_base_free(base);
	teardown();
}

/* The audit record cannot be written: the change does not happen. */
static void
test_fail_closed(void)
{
	struct store_batch	*b;
	struct audit_record	 rec;
	void			*v = NULL;
	size_t			 len;
	json_t			*r;

	setup(1000);
	log_many(3);
	b = store_batch_new(st);
	store_batch_put(b, "settings", "colour", 6, "red", 3);
	audit_record_init(&rec, "settings.put", "p_x");
	CHECK(audit_batch_add(b, &rec) == STORE_OK);
	audit_test_fail = 1000;
	CHECK(store_write(b) != STORE_OK);
	audit_test_fail = 0;
	CHECK(store_get(st, "settings", "colour", 6, &v, &len) ==
	    STORE_NOTFOUND);
	r = verify_expect(0, 1, 0, NULL);
	CHECK(json_integer_value(json_object_get(r, "last_seq")) == 3);
	json_decref(r);
	/* a record with no action fails its batch too */
	b = store_batch_new(st);
	store_batch_put(b, "settings", "colour", 6, "red", 3);
	memset(&rec, 0, sizeof(rec));
	CHECK(audit_batch_add(b, &rec) == STORE_INVALID);
	CHECK(store_write(b) != STORE_OK);
	CHECK(store_get(st, "settings", "colour", 6, &v, &len) ==
	    STORE_NOTFOUND);
	teardown();
}

/* --- tampering ------------------------------------------------------------ */

static uint64_t	raw_seq;

static void
with_raw_txn(void (*fn)(MDB_txn *, MDB_dbi))
{
	MDB_env	*env;
	MDB_txn	*txn;
	MDB_dbi	 dbi;

	store_close(st);
	mdb_env_create(&env);
	mdb_env_set_maxdbs(env, 4);
	mdb_env_set_mapsize(env, 256 << 20);
	CHECK(mdb_env_open(env, dir, 0, 0600) == 0);
	mdb_txn_begin(env, NULL, 0, &txn);
	mdb_dbi_open(txn, AUDIT_DB, 0, &dbi);
	fn(txn, dbi);
	CHECK(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
	audit_shutdown();
	{
		struct store_params	 p = { 0 };
		char			 err[256];

		p.dir = dir;
		p.dbs = dbs;
		p.max_size = 256 << 20;
		p.keyring = kr;
		CHECK(store_open(&p, &st, err, sizeof(err)) == 0);
		CHECK(audit_init(st, kr, NULL, err, sizeof(err)) == 0);
	}
}

static void
raw_flip(MDB_txn *txn, MDB_dbi dbi)
{
	uint8_t	key[8], *copy;
	MDB_val	k = { 8, key }, v;

	audit_seq_key(raw_seq, key);
	CHECK(mdb_get(txn, dbi, &k, &v) == 0);
	copy = xmalloc(v.mv_size);
	memcpy(copy, v.mv_data, v.mv_size);
	copy[v.mv_size / 2] ^= 0x01;
	v.mv_data = copy;
	mdb_put(txn, dbi, &k, &v, 0);
	free(copy);
}

static void
raw_swap(MDB_txn *txn, MDB_dbi dbi)
{
	uint8_t	k1[8], k2[8], *c1, *c2;
	MDB_val	a = { 8, k1 }, b = { 8, k2 }, va, vb;

	audit_seq_key(raw_seq, k1);
	audit_seq_key(raw_seq + 1, k2);
	mdb_get(txn, dbi, &a, &va);
	mdb_get(txn, dbi, &b, &vb);
	c1 = xmalloc(va.mv_size);
	c2 = xmalloc(vb.mv_size);
	memcpy(c1, va.mv_data, va.mv_size);
	memcpy(c2, vb.mv_data, vb.mv_size);
	va.mv_data = c2;
	vb.mv_data = c1;
	{
		size_t t = va.mv_size;

		va.mv_size = vb.mv_size;
		vb.mv_size = t;
	}
	mdb_put(txn, dbi, &a, &va, 0);
	mdb_put(txn, dbi, &b, &vb, 0);
	free(c1);
	free(c2);
}

static void
test_tamper_bytes(void)
{
	setup(1000);
	log_many(20);
	raw_seq = 7;
	with_raw_txn(raw_flip);
	json_decref(verify_expect(0, 0, 7, "changed"));
	teardown();
	setup(1000);
	log_many(20);
	raw_seq = 12;
	with_raw_txn(raw_swap);
	json_decref(verify_expect(0, 0, 12, "changed"));
	teardown();
}

/* An attacker who holds the keys: re-sealed plaintext changes. */
static void
test_tamper_with_keys(void)
{
	struct store_batch	*b;
	uint8_t			 h[32], h2[32], key[8];
	char			*c, *c2, *p;

	setup(1000);
	log_many(20);
	c = canonical(5, h);
	p = strstr(c, "t-4");
	p[2] = '9';			/* one byte of the target */
	put_raw_record(5, h, c);
	free(c);
	json_decref(verify_expect(0, 0, 5, "changed"));
	teardown();

	setup(1000);
	log_many(20);
	b = store_batch_new(st);
	audit_seq_key(9, key);
	store_batch_del(b, AUDIT_DB, key, 8);
	CHECK(store_write(b) == STORE_OK);
	json_decref(verify_expect(0, 0, 9, "missing"));
	json_decref(verify_expect(3, 0, 9, "missing"));
	teardown();

	setup(1000);
	log_many(20);
	c = canonical(14, h);
	c2 = canonical(15, h2);
	put_raw_record(14, h2, c2);
	put_raw_record(15, h, c);
	free(c);
	free(c2);
	json_decref(verify_expect(0, 0, 14, "reordered"));
	teardown();
}

/* A signature over the same message by another Ed25519 key. */
static void
forge_sig(const char *msg, size_t len, char *hex)
{
	EVP_PKEY	*pk = NULL;
	EVP_PKEY_CTX	*kc = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
	EVP_MD_CTX	*mc = EVP_MD_CTX_new();
	uint8_t		 sig[64];
	size_t		 siglen = sizeof(sig);

	EVP_PKEY_keygen_init(kc);
	EVP_PKEY_keygen(kc, &pk);
	EVP_DigestSignInit(mc, NULL, NULL, NULL, pk);
	EVP_DigestSign(mc, sig, &siglen, (const uint8_t *)msg, len);
	audit_hex(sig, sizeof(sig), hex);
	EVP_MD_CTX_free(mc);
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(kc);
}

/* Recompute hashes from seq `from` up to (not including) `upto`. */
static void
rechain(uint64_t from, uint64_t upto, const char *first)
{
	uint8_t	 prev[32], h[32];
	uint64_t seq;
	char	*c;

	free(canonical(from - 1, prev));
	for (seq = from; seq < upto; seq++) {
		c = seq == from ? xstrdup(first) : canonical(seq, NULL);
		audit_chain(prev, c, strlen(c), h);
		put_raw_record(seq, h, c);
		memcpy(prev, h, 32);
		free(c);
	}
}

static void
test_forged_checkpoints(void)
{
	uint8_t	 h[32];
	char	*c, *sig, forged[129];
	struct abuf msg = { 0 };

	/* a checkpoint whose signature is by another key */
	setup(10);
	log_many(25);
	c = canonical(20, h);
	sig = strstr(c, "\"sig\":\"") + 7;
	abuf_str(&msg, "tenantd audit checkpoint v1\n");
	forge_sig(msg.p, msg.len, forged);
	memcpy(sig, forged, 128);
	rechain(20, 28, c);
	free(c);
	json_decref(verify_expect(0, 0, 20, "bad_checkpoint_signature"));
	teardown();

	/* records rewritten consistently up to a genuine checkpoint */
	setup(10);
	log_many(25);
	c = canonical(13, NULL);
	*strstr(c, "t-1") = 'T';
	rechain(13, 20, c);
	free(c);
	json_decref(verify_expect(0, 0, 20, "checkpoint_mismatch"));
	abuf_free(&msg);
	teardown();
}

static void
test_prune(void)
{
	json_t	*r;
	char	 err[256];
	uint8_t	 key[8] = { 0 };
	void	*v;
	size_t	 len;
	char	*a;

	setup(10);
	log_many(45);
	CHECK(audit_prune(60, err, sizeof(err)) == STORE_INVALID);
	CHECK(audit_prune(22, err, sizeof(err)) == STORE_OK);
	r = verify_expect(0, 1, 0, NULL);
	CHECK(json_integer_value(json_object_get(r, "pruned_through_seq")) ==
	    22);
	CHECK(json_integer_value(json_object_get(r, "records")) == 50 - 22);
	json_decref(r);
	CHECK(audit_prune(22, err, sizeof(err)) == STORE_INVALID);
	CHECK(audit_prune(30, err, sizeof(err)) == STORE_OK);
	json_decref(verify_expect(0, 1, 0, NULL));
	/* a changed anchor head no longer verifies */
	CHECK(store_get(st, AUDIT_DB, key, 8, &v, &len) == STORE_OK);
	a = v;
	a[strlen("{\"head\":\"") + 3] ^= 1;
	{
		struct store_batch *b = store_batch_new(st);

		store_batch_put(b, AUDIT_DB, key, 8, a, len);
		CHECK(store_write(b) == STORE_OK);
	}
	free(v);
	json_decref(verify_expect(0, 0, 0, "bad_anchor_signature"));
	teardown();
}

static uint64_t
count_action(const char *action)
{
	struct audit_filter	 f = { 0 };
	struct audit_export	*e;
	struct evbuffer		*out = evbuffer_new();
	char			 err[128];
	uint64_t		 n;

	f.format = AUDIT_JSONL;
	CHECK(audit_filter_set(&f, "action", action, err, sizeof(err)) == 0);
	e = audit_export_new(&f);
	while (audit_export_fill(e, out, 1 << 20) == 1)
		;
	n = audit_export_rows(e);
	audit_export_free(e);
	evbuffer_free(out);
	return n;
}

static void
test_denied_limit(void)
{
	struct audit_record	rec;
	struct sockaddr_in	sin = { .sin_family = AF_INET };
	char			*c;
	int			 i;

	setup(1000);
	inet_pton(AF_INET, "198.51.100.9", &sin.sin_addr);
	for (i = 0; i < 30; i++) {
		audit_record_init(&rec, "auth.denied", "anonymous");
		audit_record_request(&rec, "r1", "app",
		    (struct sockaddr *)&sin);
		audit_record_outcome(&rec, AUDIT_DENIED, 401);
		CHECK(audit_denied(&rec, NULL) == STORE_OK);
	}
	inet_pton(AF_INET, "203.0.113.9", &sin.sin_addr);
	audit_record_request(&rec, "r2", "app", (struct sockaddr *)&sin);
	CHECK(audit_denied(&rec, NULL) == STORE_OK);
	CHECK(count_action("auth.denied") == 11);
	audit_deny_flush(NULL, 1);
	CHECK(count_action("audit.suppressed") == 1);
	c = canonical(12, NULL);
	CHECK(c != NULL && strstr(c, "\"count\":20") != NULL &&
	    strstr(c, "198.51.100.0/24") != NULL);
	free(c);
	teardown();
}

static char *
export_all(struct audit_filter *f, uint64_t *rows, size_t chunk)
{
	struct audit_export	*e = audit_export_new(f);
	struct evbuffer		*out = evbuffer_new();
	char			*s;
	size_t			 len;
	int			 rv;

	while ((rv = audit_export_fill(e, out, chunk)) == 1)
		;
	CHECK(rv == 0);
	*rows = audit_export_rows(e);
	len = evbuffer_get_length(out);
	s = xmalloc(len + 1);
	evbuffer_remove(out, s, len);
	s[len] = '\0';
	audit_export_free(e);
	evbuffer_free(out);
	return s;
}

static void
test_export_formats(void)
{
	struct audit_filter	 f = { 0 };
	struct audit_record	 rec;
	char			 err[256], *s;
	uint64_t		 rows;
	json_t			*j;

	setup(1000);
	log_many(5);
	audit_record_init(&rec, "keys.rotate", "operator:0");
	audit_record_target(&rec, "=HYPERLINK(\"x\"),\r\nnext");
	audit_record_outcome(&rec, AUDIT_ERROR, 0);
	CHECK(audit_log_now(&rec) == STORE_OK);
	f.bom = 1;
	s = export_all(&f, &rows, 100);
	CHECK(rows == 6);
	CHECK(strncmp(s, "\xef\xbb\xbfseq,ts,actor,", 15) == 0);
	CHECK(strstr(s, ",\"'=HYPERLINK(\"\"x\"\"),\r\nnext\",") != NULL);
	free(s);
	CHECK(audit_filter_set(&f, "format", "json", err, sizeof(err)) == 0);
	CHECK(audit_filter_set(&f, "action", "keys.*", err, sizeof(err)) == 0);
	s = export_all(&f, &rows, 1);
	CHECK(rows == 1);
	CHECK((j = json_loads(s, 0, NULL)) != NULL && json_array_size(j) == 1);
	json_decref(j);
	free(s);
	CHECK(audit_filter_set(&f, "action", "settings.put", err,
	    sizeof(err)) == 0);
	CHECK(audit_filter_set(&f, "from", "2", err, sizeof(err)) == 0);
	CHECK(audit_filter_set(&f, "to", "4", err, sizeof(err)) == 0);
	s = export_all(&f, &rows, 1 << 20);
	CHECK(rows == 3);
	free(s);
	CHECK(audit_filter_set(&f, "to", "1999-01-01", err, sizeof(err)) == 0);
	CHECK(audit_filter_set(&f, "from", "1998-01-01T00:00:00Z", err,
	    sizeof(err)) == 0);
	s = export_all(&f, &rows, 1 << 20);
	CHECK(rows == 0 && strcmp(s, "[]\n") == 0);
	free(s);
	CHECK(audit_filter_set(&f, "from", "yesterday", err, sizeof(err)) ==
	    -1);
	CHECK(audit_filter_set(&f, "action", "nope", err, sizeof(err)) == -1);
	CHECK(audit_filter_set(&f, "outcome", "maybe", err, sizeof(err)) ==
	    -1);
	CHECK(audit_filter_set(&f, "colour", "x", err, sizeof(err)) == -1);
	teardown();
}

int
main(void)
{
	struct keyring_params	p = { 0 };
	char			kek[300], spec[320], krp[300], err[512];
	uint8_t			k[32];
	int			fd;

	log_init("test-audit", LOG_LEVEL_ERROR, 1);
	evthread_use_pthreads();
	if (mkdtemp(tmpdir) == NULL)
		abort();
	snprintf(kek, sizeof(kek), "%s/kek", tmpdir);
	snprintf(krp, sizeof(krp), "%s/keyring", tmpdir);
	snprintf(spec, sizeof(spec), "file:%s", kek);
	RAND_bytes(k, sizeof(k));
	fd = open(kek, O_WRONLY | O_CREAT, 0600);
	if (write(fd, k, sizeof(k)) != sizeof(k))
		abort();
	close(fd);
	p.path = krp;
	p.kek = spec;
	p.create = 1;
	if (keyring_load(&p, &kr, NULL, NULL, err, sizeof(err)) != 0)
		fatalx("%s", err);
	TEST(test_canonical_form);
	TEST(test_source_truncation);
	TEST(test_chain_and_checkpoints);
	TEST(test_group_commit_failures);
	TEST(test_fail_closed);
	TEST(test_tamper_bytes);
	TEST(test_tamper_with_keys);
	TEST(test_forged_checkpoints);
	TEST(test_prune);
	TEST(test_denied_limit);
	TEST(test_export_formats);
	keyring_free(kr);
	snprintf(err, sizeof(err), "rm -rf %s", tmpdir);
	(void)!system(err);
	return unit_done();
}
