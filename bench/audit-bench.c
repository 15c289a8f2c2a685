/*
 * audit-bench.c: the audit trail's costs, each next to a reference from
 * the same run: a durable store commit with and without its audit record,
 * CSV export rows/s against a raw LMDB cursor scan, verify records/s
 * against plain SHA-256 over the same bytes. Prints a markdown section.
 * With -g N it only appends N records through the real audit API to the
 * store of a tenantd state directory (-k keyring -K kek-spec), for the
 * export memory test. Raw LMDB is called only as the baseline.
 */
#include "config.h"

#include <sys/stat.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <lmdb.h>
#include <openssl/evp.h>

#include "tenantd.h"

#define VALUE_SIZE	1024
#define GEN_BATCH	500

static const char *const dbs[] = { "settings", AUDIT_DB, "vault_pending",
    NULL };
static struct keyring	*kr;
static struct store	*st;
static uint8_t		 value[VALUE_SIZE];

static void
open_all(const char *dir, const char *krpath, const char *kek, int create)
{
	struct keyring_params	kp = { 0 };
	struct store_params	sp = { 0 };
	char			err[512];

	kp.path = krpath;
	kp.kek = kek;
	kp.create = create;
	if (keyring_load(&kp, &kr, NULL, NULL, err, sizeof(err)) != 0)
		fatalx("%s", err);
	sp.dir = dir;
	sp.dbs = dbs;
	sp.max_size = 8ULL << 30;
	sp.keyring = kr;
	if (store_open(&sp, &st, err, sizeof(err)) != 0)
		fatalx("%s", err);
	if (audit_init(st, kr, NULL, err, sizeof(err)) != 0)
		fatalx("%s", err);
}

static void
fill_record(struct audit_record *rec, uint64_t i)
{
	audit_record_init(rec, "settings.put", "p_abcdefghijklmnopqrstuvwxyz");
	audit_record_roles(rec, "admin");
	audit_record_target(rec, "site:%llu/colour", (unsigned long long)i);
	audit_record_outcome(rec, AUDIT_OK, 200);
	snprintf(rec->request_id, sizeof(rec->request_id), "req-%016llx",
	    (unsigned long long)i);
	strlcpy(rec->client_app, "ifc-viewer", sizeof(rec->client_app));
	strlcpy(rec->source, "192.0.2.0/24", sizeof(rec->source));
	audit_record_detail(rec, "etag", "\"%llu\"", (unsigned long long)i);
}

/*
 * Records whose text fields hold every CSV hazard: commas, quotes, CR/LF,
 * non-ASCII and each formula trigger first. For test_audit.py.
 */
static void
generate_tricky(void)
{
	static const char *const lead[] = { "=", "+", "-", "@", "\t", "\r",
	    "\n", "", " " };
	struct audit_record	rec;
	char			v[160];
	size_t			i;

	for (i = 0; i < nitems(lead); i++) {
		snprintf(v, sizeof(v), "%sSUM(1,2) \"q\" \xc3\xa9\xe4\xb8\xad,"
		    "\r\nx;%zu", lead[i], i);
		audit_record_init(&rec, "settings.put", v);
		audit_record_roles(&rec, "admin,auditor");
		audit_record_target(&rec, "%s", v);
		audit_record_outcome(&rec, AUDIT_DENIED, 403);
		audit_record_request(&rec, v, v, NULL);
		strlcpy(rec.source, v, sizeof(rec.source));
		audit_record_detail(&rec, "note", "%s", v);
		if (audit_log_now(&rec) != STORE_OK)
			fatalx("generate: write failed");
	}
}

/* Append n records, GEN_BATCH per durable commit. */
static void
generate(uint64_t n)
{
	struct audit_record	 rec;
	struct store_batch	*b;
	uint64_t		 i, j;

	for (i = 0; i < n; i += GEN_BATCH) {
		b = store_batch_new(st);
		for (j = i; j < n && j < i + GEN_BATCH; j++) {
			fill_record(&rec, j);
			audit_batch_add(b, &rec);
		}
		if (store_write(b) != STORE_OK)
			fatalx("generate: write failed at record %llu",
			    (unsigned long long)i);
	}
}

/* One durable commit of a 1 KiB setting, with or without its record. */
static double
commit_us(int with_audit, int rounds)
{
	struct audit_record	 rec;
	struct store_batch	*b;
	uint64_t		 start = now_usec();
	char			 key[32];
	int			 i;

	for (i = 0; i < rounds; i++) {
		b = store_batch_new(st);
		snprintf(key, sizeof(key), "k%d", i);
		store_batch_put(b, "settings", key, strlen(key), value,
		    sizeof(value));
		if (with_audit) {
			fill_record(&rec, (uint64_t)i);
			audit_batch_add(b, &rec);
		}
		if (store_write(b) != STORE_OK)
			fatalx("commit failed");
	}
	return (double)(now_usec() - start) / rounds;
}

static uint64_t
cpu_usec(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static double	export_cpu_rate, verify_cpu_rate;

static double
export_rate(uint64_t *rows)
{
	struct audit_filter	 f = { 0 };
	struct audit_export	*e = audit_export_new(&f);
	struct evbuffer		*out = evbuffer_new();
	uint64_t		 start = now_usec(), cpu = cpu_usec();
	int			 rv;

	while ((rv = audit_export_fill(e, out, 256 * 1024)) == 1)
		evbuffer_drain(out, evbuffer_get_length(out));
	if (rv != 0)
		fatalx("export failed");
	*rows = audit_export_rows(e);
	export_cpu_rate = *rows / ((cpu_usec() - cpu) / 1e6);
	audit_export_free(e);
	evbuffer_free(out);
	return *rows / ((now_usec() - start) / 1e6);
}

/* The reference: a raw cursor over the same (sealed) values. */
static double
raw_scan_rate(const char *dir, uint64_t *bytes)
{
	MDB_env		*env;
	MDB_txn		*txn;
	MDB_dbi		 dbi;
	MDB_cursor	*cur;
	MDB_val		 k, v;
	uint64_t	 n = 0, start;

	mdb_env_create(&env);
	mdb_env_set_maxdbs(env, 8);
	if (mdb_env_open(env, dir, MDB_RDONLY | MDB_NOLOCK, 0600) != 0)
		fatalx("raw open %s", dir);
	start = now_usec();
	mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	mdb_dbi_open(txn, AUDIT_DB, 0, &dbi);
	mdb_cursor_open(txn, dbi, &cur);
	*bytes = 0;
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
		*bytes += v.mv_size;
		n++;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return n / ((now_usec() - start) / 1e6);
}

/* SHA-256 over the same number of records of the same size. */
static double
sha_rate(uint64_t n, size_t size)
{
	uint8_t		*buf = xcalloc(1, size), md[32];
	uint64_t	 i, start = now_usec();

	for (i = 0; i < n; i++) {
		buf[0] = (uint8_t)i;
		EVP_Digest(buf, size, md, NULL, EVP_sha256(), NULL);
	}
	free(buf);
	return n / ((now_usec() - start) / 1e6);
}

static void
bench(const char *dir, uint64_t n, int rounds)
{
	double		 with = 0, without = 0, er, rr, vr, sr, gen_rate;
	uint64_t	 rows, bytes, t, c;
	json_t		*v;
	int		 r;

	for (r = 0; r < 5; r++) {	/* interleaved: the same disk state */
		without += commit_us(0, rounds);
		with += commit_us(1, rounds);
	}
	with /= 5;
	without /= 5;
	t = now_usec();
	generate(n);
	gen_rate = n / ((now_usec() - t) / 1e6);
	er = export_rate(&rows);
	t = now_usec();
	c = cpu_usec();
	v = audit_verify(0);
	vr = json_integer_value(json_object_get(v, "records")) /
	    ((now_usec() - t) / 1e6);
	verify_cpu_rate = json_integer_value(json_object_get(v, "records")) /
	    ((cpu_usec() - c) / 1e6);
	if (!json_is_true(json_object_get(v, "ok")))
		fatalx("verify failed");
	json_decref(v);
	audit_shutdown();
	store_close(st);
	rr = raw_scan_rate(dir, &bytes);
	sr = sha_rate(rows, bytes / rows);
	printf("| measure | audit | reference | ratio |\n|---|---:|---:|---:|\n");
	printf("| durable commit of a 1 KiB value, us (store_write) | %.0f "
	    "with record | %.0f without | +%.1f %% |\n", with, without,
	    (with - without) / without * 100);
	printf("| CSV export, rows/s (%llu rows) | %.0f | raw LMDB cursor "
	    "%.0f | %.2f |\n", (unsigned long long)rows, er, rr, er / rr);
	printf("| CSV export, rows per CPU second | %.0f | | |\n",
	    export_cpu_rate);
	printf("| verify, records/s | %.0f | SHA-256 of %llu-byte records "
	    "%.0f | %.2f |\n", vr, (unsigned long long)(bytes / rows), sr,
	    vr / sr);
	printf("| verify, records per CPU second | %.0f | | |\n",
	    verify_cpu_rate);
	printf("| append, records/s (%d per commit) | %.0f | | |\n",
	    GEN_BATCH, gen_rate);
	printf("\ntargets: audit cost <= 5 %% of the commit: %s; export >= "
	    "300000 rows/s: %s; verify >= 500000 records/s: %s\n",
	    (with - without) / without <= 0.05 ? "met" : "NOT met",
	    er >= 300000 ? "met" : "NOT met", vr >= 500000 ? "met" :
	    "NOT met");
}

int
main(int argc, char *argv[])
{
	const char	*dir = NULL, *krpath = NULL, *kek = NULL;
	char		 path[512], spec[600];
	uint64_t	 n = 200000, gen = 0;
	int		 ch, rounds = 100, tricky = 0;
	FILE		*f;

	log_init("audit-bench", LOG_LEVEL_WARN, 1);
	evthread_use_pthreads();
	while ((ch = getopt(argc, argv, "d:g:k:K:n:r:T")) != -1) {
		switch (ch) {
		case 'd': dir = optarg; break;
		case 'g': gen = strtoull(optarg, NULL, 10); break;
		case 'k': krpath = optarg; break;
		case 'K': kek = optarg; break;
		case 'n': n = strtoull(optarg, NULL, 10); break;
		case 'r': rounds = atoi(optarg); break;
		case 'T': tricky = 1; break;
		default:
			fprintf(stderr, "usage: audit-bench -d DIR [-n N] [-r "
			    "ROUNDS] | -d STORE -k KEYRING -K KEK -g N\n");
			return 2;
		}
	}
	if (dir == NULL)
		fatalx("-d DIR is required");
	if (gen > 0 || tricky) {
		open_all(dir, krpath, kek, 0);
		if (tricky)
			generate_tricky();
		generate(gen);
		audit_shutdown();
		store_close(st);
		keyring_free(kr);
		return 0;
	}
	if (mkdir(dir, 0700) == -1 && errno != EEXIST)
		fatal("%s", dir);
	snprintf(path, sizeof(path), "%s/kek", dir);
	if ((f = fopen(path, "w")) == NULL)
		fatal("%s", path);
	fwrite("0123456789abcdef0123456789abcdef", 1, 32, f);
	fclose(f);
	chmod(path, 0600);
	snprintf(spec, sizeof(spec), "file:%s", path);
	snprintf(path, sizeof(path), "%s/keyring", dir);
	krpath = xstrdup(path);
	snprintf(path, sizeof(path), "%s/store", dir);
	open_all(path, krpath, spec, 1);
	bench(path, n, rounds);
	keyring_free(kr);
	return 0;
}
