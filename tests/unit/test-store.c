/*
 * test-store.c: the encrypted LMDB store: round trips, integrity against
 * moved or altered ciphertexts, confidentiality on disk, map full, group
 * commit, the state lock, rewrap/retire and kill -9 durability.
 * The test reaches LMDB directly only to tamper with stored bytes.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <lmdb.h>
#include <openssl/rand.h>

#include "tenantd.h"
#include "unit.h"

static char		 tmpdir[] = "/tmp/test-store.XXXXXX";
static char		 dir[256], kek[256], kr_path[256], kek_spec[300];
static struct keyring	*kr;
static const char *const dbs[] = { "settings", "events", NULL };

static struct store *
open_store(uint64_t max_size)
{
	struct store_params	 p = { 0 };
	struct store		*st = NULL;
	char			 err[512];

	p.dir = dir;
	p.dbs = dbs;
	p.max_size = max_size;
	p.keyring = kr;
	if (store_open(&p, &st, err, sizeof(err)) != 0)
		printf("# store_open: %s\n", err);
	return st;
}

static int
put1(struct store *st, const char *db, const char *key, const void *val,
    size_t len)
{
	struct store_batch	*b = store_batch_new(st);

	store_batch_put(b, db, key, strlen(key), val, len);
	return store_write(b);
}

static int
get_str(struct store *st, const char *db, const char *key, char **out)
{
	size_t	len;

	return store_get(st, db, key, strlen(key), (void **)out, &len);
}

static void
test_round_trip(void)
{
	struct store		*st = open_store(64 << 20);
	struct store_batch	*b;
	char			*v = NULL, big[(1 << 20) + 1];
	size_t			 len;

	CHECK(put1(st, "settings", "k1", "hello", 5) == STORE_OK);
	CHECK(get_str(st, "settings", "k1", &v) == STORE_OK);
	CHECK_STR(v, "hello");
	free(v);
	CHECK(get_str(st, "events", "k1", &v) == STORE_NOTFOUND);
	CHECK(get_str(st, "nope", "k1", &v) == STORE_INVALID);
	CHECK(put1(st, "nope", "k1", "x", 1) == STORE_INVALID);
	memset(big, 'x', sizeof(big));
	CHECK(put1(st, "settings", "big", big, sizeof(big)) == STORE_INVALID);
	b = store_batch_new(st);
	CHECK(store_batch_del(b, "settings", "k1", 2) == STORE_OK);
	CHECK(store_batch_del(b, "settings", "never", 5) == STORE_OK);
	CHECK(store_batch_put(b, "events", "e1", 2, "", 0) == STORE_OK);
	CHECK(store_write(b) == STORE_OK);
	CHECK(get_str(st, "settings", "k1", &v) == STORE_NOTFOUND);
	CHECK(store_get(st, "events", "e1", 2, (void **)&v, &len) ==
	    STORE_OK && len == 0);
	free(v);
	CHECK(strcmp(store_strerror(STORE_FULL), "storage full") == 0);
	store_close(st);
}

struct scan_ctx {
	int	n;
	char	last[32];
};

static int
scan_cb(const void *key, size_t keylen, const void *val, size_t vallen,
    void *arg)
{
	struct scan_ctx	*c = arg;

	snprintf(c->last, sizeof(c->last), "%.*s=%.*s", (int)keylen,
	    (const char *)key, (int)vallen, (const char *)val);
	return ++c->n == 100 ? 1 : 0;
}

static void
test_scan(void)
{
	struct store		*st = open_store(64 << 20);
	struct store_batch	*b = store_batch_new(st);
	struct scan_ctx		 c = { 0 };
	char			 key[32], val[32];
	int			 i;

	for (i = 0; i < 300; i++) {
		snprintf(key, sizeof(key), "%c/%03d", "abc"[i % 3], i);
		snprintf(val, sizeof(val), "v%d", i);
		store_batch_put(b, "events", key, strlen(key), val,
		    strlen(val));
	}
	CHECK(store_write(b) == STORE_OK);
	CHECK(store_scan(st, "events", "b/", 2, scan_cb, &c) == STORE_OK);
	CHECK(c.n == 100);
	CHECK_STR(c.last, "b/298=v298");
	c.n = 0;
	CHECK(store_scan(st, "events", "", 0, scan_cb, &c) == STORE_OK);
	CHECK(c.n == 100);	/* stopped by the callback */
	CHECK_STR(c.last, "a/297=v297");
	store_close(st);
}

/* Apply fn to the raw environment while the store is closed. */
static void
with_raw_env(void (*fn)(MDB_txn *, MDB_dbi, MDB_dbi))
{
	MDB_env	*env;
	MDB_txn	*txn;
	MDB_dbi	 a, b;

	mdb_env_create(&env);
	mdb_env_set_maxdbs(env, 4);
	mdb_env_set_mapsize(env, 64 << 20);
	CHECK(mdb_env_open(env, dir, 0, 0600) == 0);
	mdb_txn_begin(env, NULL, 0, &txn);
	mdb_dbi_open(txn, "settings", 0, &a);
	mdb_dbi_open(txn, "events", 0, &b);
	fn(txn, a, b);
	CHECK(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
}

static void
raw_swap(MDB_txn *txn, MDB_dbi a, MDB_dbi b)
{
	char	s1[] = "s1", s2[] = "s2";
	MDB_val	k1 = { 2, s1 }, k2 = { 2, s2 }, ke = { 2, s1 };
	MDB_val	v1, v2, ve;
	uint8_t	c1[256], c2[256], ce[256];

	mdb_get(txn, a, &k1, &v1);
	mdb_get(txn, a, &k2, &v2);
	mdb_get(txn, b, &ke, &ve);
	memcpy(c1, v1.mv_data, v1.mv_size);
	memcpy(c2, v2.mv_data, v2.mv_size);
	memcpy(ce, ve.mv_data, ve.mv_size);
	v1.mv_data = c2;
	v2.mv_data = c1;
	ve.mv_data = c1;
	ve.mv_size = v1.mv_size;
	mdb_put(txn, a, &k1, &v1, 0);	/* s1 <- s2's ciphertext */
	mdb_put(txn, a, &k2, &v2, 0);	/* s2 <- s1's */
	mdb_put(txn, b, &ke, &ve, 0);	/* events/s1 <- settings/s1's */
}

static void
test_swap_ciphertexts(void)
{
	struct store	*st = open_store(64 << 20);
	char		*v = NULL;

	CHECK(put1(st, "settings", "s1", "value-one", 9) == STORE_OK);
	CHECK(put1(st, "settings", "s2", "value-two", 9) == STORE_OK);
	CHECK(put1(st, "events", "s1", "value-ev1", 9) == STORE_OK);
	store_close(st);
	with_raw_env(raw_swap);
	st = open_store(64 << 20);
	CHECK(get_str(st, "settings", "s1", &v) == STORE_CORRUPT && !v);
	CHECK(get_str(st, "settings", "s2", &v) == STORE_CORRUPT && !v);
	CHECK(get_str(st, "events", "s1", &v) == STORE_CORRUPT && !v);
	store_close(st);
}

static size_t	flip_pos;
static size_t	flip_len;

static void
raw_flip(MDB_txn *txn, MDB_dbi a, MDB_dbi b)
{
	char	name[] = "flip";
	MDB_val	k = { 4, name }, v;
	uint8_t	buf[256];

	CHECK(mdb_get(txn, a, &k, &v) == 0);
	flip_len = v.mv_size;
	memcpy(buf, v.mv_data, v.mv_size);
	buf[flip_pos % flip_len] ^= 0x01 << (flip_pos % 8);
	v.mv_data = buf;
	mdb_put(txn, a, &k, &v, 0);
}

static void
test_flip_stored_bytes(void)
{
	struct store	*st;
	char		*v;
	int		 ok = 0, rv;

	flip_len = 1;
	for (flip_pos = 0; flip_pos < flip_len; flip_pos++) {
		st = open_store(64 << 20);
		CHECK(put1(st, "settings", "flip", "precious data", 13) ==
		    STORE_OK);
		store_close(st);
		with_raw_env(raw_flip);
		st = open_store(64 << 20);
		v = NULL;
		rv = get_str(st, "settings", "flip", &v);
		if (rv == STORE_OK || v != NULL)
			ok++;
		CHECK(rv == STORE_CORRUPT || rv == STORE_KEY);
		store_close(st);
	}
	CHECK(flip_len == 13 + KEYRING_SEAL_OVERHEAD);
	CHECK(ok == 0);
}

/* Every file under path, each byte, against every marker. */
static size_t
find_markers(const char *path, char markers[][40], size_t n)
{
	DIR		*d = opendir(path);
	struct dirent	*de;
	struct stat	 sb;
	char		 p[512], *buf;
	size_t		 i, found = 0;
	int		 fd;

	while (d != NULL && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
		if (stat(p, &sb) == -1 || !S_ISREG(sb.st_mode))
			continue;
		buf = xmalloc(sb.st_size + 1);
		fd = open(p, O_RDONLY);
		CHECK(read(fd, buf, sb.st_size) == sb.st_size);
		close(fd);
		for (i = 0; i < n; i++)
			found += memmem(buf, sb.st_size, markers[i],
			    strlen(markers[i])) != NULL;
		free(buf);
	}
	if (d != NULL)
		closedir(d);
	return found;
}

static void
test_no_plaintext_on_disk(void)
{
	static char		 markers[1000][40];
	struct store		*st = open_store(64 << 20);
	struct store_batch	*b = store_batch_new(st);
	char			 key[32], *v;
	size_t			 i;

	for (i = 0; i < 1000; i++) {
		snprintf(markers[i], sizeof(markers[i]),
		    "MARKER-%04zu-alice.%zu@contoso.example", i, i);
		snprintf(key, sizeof(key), "id-%04zu", i);
		store_batch_put(b, i % 2 ? "events" : "settings", key,
		    strlen(key), markers[i], strlen(markers[i]));
	}
	CHECK(store_write(b) == STORE_OK);
	CHECK(get_str(st, "events", "id-0999", &v) == STORE_OK);
	CHECK_STR(v, markers[999]);
	free(v);
	CHECK(find_markers(dir, markers, 1000) == 0);
	CHECK(find_markers(tmpdir, markers, 1000) == 0);
	store_close(st);
	CHECK(find_markers(dir, markers, 1000) == 0);
	/* The search works: a plaintext file is found. */
	snprintf(key, sizeof(key), "%s/plain", tmpdir);
	i = open(key, O_WRONLY | O_CREAT, 0600);
	CHECK(write(i, markers[5], 10) == 10);
	close(i);
	CHECK(find_markers(tmpdir, markers, 1000) == 0);
	CHECK(write(i = open(key, O_WRONLY | O_APPEND), markers[5],
	    strlen(markers[5])) > 0);
	close(i);
	CHECK(find_markers(tmpdir, markers, 1000) == 1);
	unlink(key);
}

static int	full_pending;

static void
full_done_count(int status, void *arg)
{
	*(int *)arg = status;
	full_pending--;
}

/* Three batches queued together: the oversized middle one fails alone. */
static void
test_full_fails_alone(struct store *st)
{
	struct event_base	*base = event_base_new();
	struct store_batch	*b[3];
	int			 status[3] = { 99, 99, 99 }, i;
	char			 key[32], val[4000];

	memset(val, 'h', sizeof(val));
	for (i = 0; i < 3; i++)
		b[i] = store_batch_new(st);
	store_batch_put(b[0], "settings", "before", 6, "a", 1);
	for (i = 0; i < 600; i++) {	/* 2.4 MB into a 1 MiB map */
		snprintf(key, sizeof(key), "huge-%03d", i);
		store_batch_put(b[1], "events", key, strlen(key), val,
		    sizeof(val));
	}
	store_batch_put(b[2], "settings", "after", 5, "c", 1);
	full_pending = 3;
	for (i = 0; i < 3; i++)
		CHECK(store_submit(b[i], base, full_done_count, &status[i]) ==
		    STORE_OK);
	while (full_pending > 0)
		event_base_loop(base, EVLOOP_ONCE);
	CHECK(status[0] == STORE_OK && status[1] == STORE_FULL &&
	    status[2] == STORE_OK);
	event_base_free(base);
}

static void
test_store_full(void)
{
	struct store	*st;
	char		 key[32], val[4000], *v = NULL;
	int		 i, rv = STORE_OK, n, bad = 0;

	snprintf(dir, sizeof(dir), "%s/full", tmpdir);
	st = open_store(1 << 20);
	test_full_fails_alone(st);
	CHECK(get_str(st, "events", "huge-000", &v) == STORE_NOTFOUND);
	memset(val, 'v', sizeof(val));
	for (n = 0; n < 10000; n++) {
		snprintf(key, sizeof(key), "r%05d", n);
		if ((rv = put1(st, "events", key, val, sizeof(val))) !=
		    STORE_OK)
			break;
	}
	printf("# full after %d values of 4000 bytes in 1 MiB\n", n);
	CHECK(rv == STORE_FULL && n > 50);
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "r%05d", i);
		v = NULL;
		if (get_str(st, "events", key, &v) != STORE_OK)
			bad++;
		free(v);
	}
	CHECK(bad == 0);
	/* Raising the limit (a reload) makes room without a restart. */
	CHECK(store_set_max_size(st, 4 << 20) == STORE_OK);
	snprintf(key, sizeof(key), "r%05d", n);
	CHECK(put1(st, "events", key, val, sizeof(val)) == STORE_OK);
	store_close(st);
	st = open_store(1 << 20);
	CHECK(get_str(st, "events", key, &v) == STORE_OK);
	free(v);
	store_close(st);
	snprintf(dir, sizeof(dir), "%s/store", tmpdir);
}

static void
test_lock(void)
{
	struct store	*st = open_store(64 << 20), *st2;
	struct store_params p = { 0 };
	char		 err[512];
	pid_t		 pid;
	int		 status;

	p.dir = dir;
	p.dbs = dbs;
	p.max_size = 64 << 20;
	p.keyring = kr;
	fflush(stdout);
	if ((pid = fork()) == 0) {
		if (store_open(&p, &st2, err, sizeof(err)) == 0)
			_exit(1);
		_exit(strstr(err, "in use by another process") ? 0 : 2);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(store_open(&p, &st2, err, sizeof(err)) == -1);
	printf("# %s\n", err);
	store_close(st);
	CHECK(store_open(&p, &st2, err, sizeof(err)) == 0);
	store_close(st2);
}

/* --- group commit with many concurrent submitters --------------------- */

#define SUBMITTERS	16
#define PER_SUBMITTER	250

struct submitter {
	struct store		*st;
	int			 id;
	int			 acked, failed;
	struct event_base	*base;
};

static void
submit_done(int status, void *arg)
{
	struct submitter	*s = arg;

	if (status == STORE_OK)
		s->acked++;
	else
		s->failed++;
	if (s->acked + s->failed == PER_SUBMITTER)
		event_base_loopbreak(s->base);
}

static void *
submitter_main(void *arg)
{
	struct submitter	*s = arg;
	struct store_batch	*b;
	char			 key[32], val[64];
	int			 i;

	for (i = 0; i < PER_SUBMITTER; i++) {
		b = store_batch_new(s->st);
		snprintf(key, sizeof(key), "g-%02d-%04d", s->id, i);
		snprintf(val, sizeof(val), "value %d/%d", s->id, i);
		store_batch_put(b, "events", key, strlen(key), val,
		    strlen(val));
		if (store_submit(b, s->base, submit_done, s) != STORE_OK)
			s->failed++;
	}
	event_base_loop(s->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static void
test_group_commit(void)
{
	struct submitter	 subs[SUBMITTERS];
	pthread_t		 th[SUBMITTERS];
	struct store		*st = open_store(64 << 20);
	char			 key[32], want[64], *v;
	uint64_t		 t0 = now_usec();
	int			 i, j, acked = 0, bad = 0;

	for (i = 0; i < SUBMITTERS; i++) {
		subs[i] = (struct submitter){ st, i, 0, 0, event_base_new() };
		pthread_create(&th[i], NULL, submitter_main, &subs[i]);
	}
	for (i = 0; i < SUBMITTERS; i++) {
		pthread_join(th[i], NULL);
		acked += subs[i].acked;
		event_base_free(subs[i].base);
	}
	printf("# %d acknowledged batches in %llu ms\n", acked,
	    (unsigned long long)(now_usec() - t0) / 1000);
	CHECK(acked == SUBMITTERS * PER_SUBMITTER);
	store_close(st);
	st = open_store(64 << 20);
	for (i = 0; i < SUBMITTERS; i++)
		for (j = 0; j < PER_SUBMITTER; j++) {
			snprintf(key, sizeof(key), "g-%02d-%04d", i, j);
			snprintf(want, sizeof(want), "value %d/%d", i, j);
			v = NULL;
			if (get_str(st, "events", key, &v) != STORE_OK ||
			    strcmp(v, want) != 0)
				bad++;
			free(v);
		}
	CHECK(bad == 0);
	store_close(st);
}

/* --- rotation, rewrap, retire ---------------------------------------- */

static void
test_rewrap_retire(void)
{
	struct store		*st;
	struct store_batch	*b;
	char			 key[32], err[256], *v;
	uint32_t		 old = keyring_active_term(kr), term;
	uint64_t		 count;
	size_t			 n, total = 0;
	int			 i, bad = 0;

	/* A fresh store: the others hold deliberately corrupted values. */
	snprintf(dir, sizeof(dir), "%s/rewrap", tmpdir);
	st = open_store(64 << 20);
	b = store_batch_new(st);
	for (i = 0; i < 50; i++) {
		snprintf(key, sizeof(key), "rw-%02d", i);
		store_batch_put(b, "settings", key, strlen(key), key,
		    strlen(key));
	}
	CHECK(store_write(b) == STORE_OK);
	CHECK(keyring_rotate(kr, &term, err, sizeof(err)) == 0);
	CHECK(store_count_term(st, old, &count) == STORE_OK && count >= 50);
	CHECK(keyring_retire(kr, old, count, err, sizeof(err)) == -1);
	do {
		CHECK(store_rewrap(st, 20, &n) == STORE_OK);
		CHECK(n <= 20);
		total += n;
	} while (n > 0 && total < 100000);
	CHECK(store_count_term(st, old, &count) == STORE_OK && count == 0);
	CHECK(keyring_retire(kr, old, count, err, sizeof(err)) == 0);
	for (i = 0; i < 50; i++) {
		snprintf(key, sizeof(key), "rw-%02d", i);
		v = NULL;
		if (get_str(st, "settings", key, &v) != STORE_OK ||
		    strcmp(v, key) != 0)
			bad++;
		free(v);
	}
	CHECK(bad == 0);
	store_close(st);
	snprintf(dir, sizeof(dir), "%s/store", tmpdir);
}

/* --- kill -9 during sustained writes ---------------------------------- */

#define CRASH_WRITERS	4

struct crash_writer {
	struct store	*st;
	int		 id, fd;
};

static void *
crash_writer_main(void *arg)
{
	struct crash_writer	*w = arg;
	char			 key[32], val[64];
	uint32_t		 rec;
	int			 i;

	for (i = 0;; i++) {
		snprintf(key, sizeof(key), "c-%d-%06d", w->id, i);
		snprintf(val, sizeof(val), "crash value %d %d", w->id, i);
		if (put1(w->st, "events", key, val, strlen(val)) != STORE_OK)
			_exit(3);
		rec = (uint32_t)w->id << 24 | (uint32_t)i;
		if (write(w->fd, &rec, sizeof(rec)) != sizeof(rec))
			_exit(4);
	}
	return NULL;
}

static void
crash_child(int fd)
{
	struct crash_writer	w[CRASH_WRITERS];
	pthread_t		th;
	struct store		*st = open_store(64 << 20);
	int			i;

	if (st == NULL)
		_exit(2);
	for (i = 0; i < CRASH_WRITERS; i++) {
		w[i] = (struct crash_writer){ st, i, fd };
		pthread_create(&th, NULL, crash_writer_main, &w[i]);
	}
	for (;;)
		pause();
}

static void
test_kill9(void)
{
	uint32_t	 acks[200000], rec;
	size_t		 n = 0, i, bad = 0;
	char		 key[32], want[64], *v;
	pid_t		 pid;
	int		 fds[2], status;

	CHECK(pipe(fds) == 0);
	fflush(stdout);
	if ((pid = fork()) == 0) {
		close(fds[0]);
		crash_child(fds[1]);
	}
	close(fds[1]);
	while (n < 3000 && read(fds[0], &rec, sizeof(rec)) == sizeof(rec))
		acks[n++] = rec;
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	while (n < nitems(acks) && read(fds[0], &rec, sizeof(rec)) ==
	    sizeof(rec))
		acks[n++] = rec;
	close(fds[0]);
	printf("# %zu acknowledged writes before kill -9\n", n);
	CHECK(n >= 3000);
	{
		struct store *st = open_store(64 << 20);

		CHECK(st != NULL);
		for (i = 0; st != NULL && i < n; i++) {
			snprintf(key, sizeof(key), "c-%u-%06u", acks[i] >> 24,
			    acks[i] & 0xffffff);
			snprintf(want, sizeof(want), "crash value %u %u",
			    acks[i] >> 24, acks[i] & 0xffffff);
			v = NULL;
			if (get_str(st, "events", key, &v) != STORE_OK ||
			    strcmp(v, want) != 0)
				bad++;
			free(v);
		}
		store_close(st);
	}
	CHECK(bad == 0);
}

int
main(void)
{
	struct keyring_params	p = { 0 };
	uint8_t			k[32];
	char			err[512];
	int			fd;

	log_init("test-store", LOG_LEVEL_WARN, 1);
	evthread_use_pthreads();
	if (mkdtemp(tmpdir) == NULL)
		abort();
	snprintf(dir, sizeof(dir), "%s/store", tmpdir);
	snprintf(kek, sizeof(kek), "%s/kek", tmpdir);
	snprintf(kr_path, sizeof(kr_path), "%s/keyring", tmpdir);
	snprintf(kek_spec, sizeof(kek_spec), "file:%s", kek);
	RAND_bytes(k, sizeof(k));
	fd = open(kek, O_WRONLY | O_CREAT, 0600);
	if (write(fd, k, sizeof(k)) != sizeof(k))
		abort();
	close(fd);
	p.path = kr_path;
	p.kek = kek_spec;
	p.create = 1;
	if (keyring_load(&p, &kr, NULL, NULL, err, sizeof(err)) != 0)
		fatalx("%s", err);
	TEST(test_round_trip);
	TEST(test_scan);
	TEST(test_swap_ciphertexts);
	TEST(test_flip_stored_bytes);
	TEST(test_no_plaintext_on_disk);
	TEST(test_store_full);
	TEST(test_lock);
	TEST(test_group_commit);
	TEST(test_rewrap_retire);
	TEST(test_kill9);
	keyring_free(kr);
	snprintf(err, sizeof(err), "rm -rf %s", tmpdir);
	(void)!system(err);
	return unit_done();
}
