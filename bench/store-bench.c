/*
 * store-bench.c: durable writes/s through the store (1, 16, 64 concurrent
 * writers) against one-put-per-commit raw LMDB on the same disk, and the
 * cost of seal+open for a 1 KiB value. Prints a markdown section.
 * Raw LMDB is called here only as the baseline being compared against.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/utsname.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <lmdb.h>
#include <openssl/rand.h>

#include "tenantd.h"

#define VALUE_SIZE	1024
#define LOOP_THREADS	2	/* event loops, like the daemon on 2 CPUs */

static const char	*bench_dir = "bench/out";
static double		 seconds = 3.0;
static uint8_t		 value[VALUE_SIZE];
static struct keyring	*kr;
static uint64_t		 store_seq;

struct loop {
	struct event_base	*base;
	struct store		*st;
	uint64_t		 done, failed, inflight;
	uint64_t		 deadline;	/* now_usec() */
	unsigned		 seq;
	int			 id;
};

struct writer {
	struct loop	*loop;
	int		 id;
};

static MDB_env	*raw_env;
static uint64_t	 raw_seq;

static void
raw_lmdb_open(void)
{
	char	path[512];

	snprintf(path, sizeof(path), "%s/raw", bench_dir);
	if (mkdir(path, 0700) == -1 && errno != EEXIST)
		fatal("%s", path);
	mdb_env_create(&raw_env);
	mdb_env_set_mapsize(raw_env, 4ULL << 30);
	if (mdb_env_open(raw_env, path, 0, 0600) != 0)
		fatalx("mdb_env_open %s", path);
}

/* One put per durable commit, for secs seconds: returns the count. */
static uint64_t
raw_lmdb_writes(double secs)
{
	MDB_txn		*txn;
	MDB_dbi		 dbi;
	MDB_val		 k, v = { VALUE_SIZE, value };
	char		 key[32];
	uint64_t	 start = now_usec(), n = 0;

	while (now_usec() - start < secs * 1e6) {
		k.mv_size = snprintf(key, sizeof(key), "raw-%08llu",
		    (unsigned long long)raw_seq++);
		k.mv_data = key;
		mdb_txn_begin(raw_env, NULL, 0, &txn);
		mdb_dbi_open(txn, NULL, 0, &dbi);
		if (mdb_put(txn, dbi, &k, &v, 0) != 0 ||
		    mdb_txn_commit(txn) != 0)
			fatalx("raw lmdb write failed");
		n++;
	}
	return n;
}

static void writer_next(struct writer *);

static void
writer_done(int status, void *arg)
{
	struct writer	*w = arg;

	w->loop->inflight--;
	if (status == STORE_OK)
		w->loop->done++;
	else
		w->loop->failed++;
	if (now_usec() < w->loop->deadline)
		writer_next(w);
}

static void
writer_next(struct writer *w)
{
	struct store_batch	*b = store_batch_new(w->loop->st);
	char			 key[48];
	int			 len;

	/* Increasing keys, as in the raw baseline: same page pattern. */
	len = snprintf(key, sizeof(key), "w-%012llu", (unsigned long long)
	    __atomic_fetch_add(&store_seq, 1, __ATOMIC_RELAXED));
	store_batch_put(b, "bench", key, (size_t)len, value, VALUE_SIZE);
	if (store_submit(b, w->loop->base, writer_done, w) != STORE_OK)
		w->loop->failed++;
	else
		w->loop->inflight++;
}

/* Stop once the deadline passed and every write was answered. */
static void
loop_tick(evutil_socket_t fd, short ev, void *arg)
{
	struct loop	*l = arg;

	if (now_usec() >= l->deadline && l->inflight == 0)
		event_base_loopbreak(l->base);
}

static void *
loop_main(void *arg)
{
	struct loop	*l = arg;
	struct event	*tick;
	struct timeval	 tv = { 0, 10000 };

	tick = event_new(l->base, -1, EV_PERSIST, loop_tick, l);
	event_add(tick, &tv);
	event_base_dispatch(l->base);
	event_free(tick);
	return NULL;
}

static struct store *
bench_store_open(int nwriters)
{
	static const char *const dbs[] = { "bench", NULL };
	struct store_params	 p = { 0 };
	struct store		*st;
	char			 path[512], err[512];

	snprintf(path, sizeof(path), "%s/store-%d", bench_dir, nwriters);
	p.dir = path;
	p.dbs = dbs;
	p.max_size = 4ULL << 30;
	p.keyring = kr;
	if (store_open(&p, &st, err, sizeof(err)) != 0)
		fatalx("%s", err);
	return st;
}

/* nwriters closed-loop writers on LOOP_THREADS event loops, for secs. */
static uint64_t
store_writes(struct store *st, int nwriters, double secs)
{
	struct loop	 loops[LOOP_THREADS];
	struct writer	*w;
	pthread_t	 th[LOOP_THREADS];
	uint64_t	 start, done = 0;
	int		 i;

	w = xcalloc(nwriters, sizeof(*w));
	start = now_usec();
	for (i = 0; i < LOOP_THREADS; i++)
		loops[i] = (struct loop){ event_base_new(), st, 0, 0, 0,
		    start + (uint64_t)(secs * 1e6), 0, i };
	for (i = 0; i < nwriters; i++) {
		w[i] = (struct writer){ &loops[i % LOOP_THREADS], i };
		writer_next(&w[i]);
	}
	for (i = 0; i < LOOP_THREADS; i++)
		pthread_create(&th[i], NULL, loop_main, &loops[i]);
	for (i = 0; i < LOOP_THREADS; i++) {
		pthread_join(th[i], NULL);
		done += loops[i].done;
		if (loops[i].failed)
			fatalx("%llu writes failed",
			    (unsigned long long)loops[i].failed);
		event_base_free(loops[i].base);
	}
	free(w);
	return done;
}

static double
seal_open_usec(void)
{
	uint8_t		 sealed[VALUE_SIZE + KEYRING_SEAL_OVERHEAD];
	uint8_t		 out[VALUE_SIZE];
	const char	*aad = "tenantd store v1\0bench\0w-0-0-123";
	const int	 n = 200000;
	uint64_t	 start;
	int		 i;

	start = now_usec();
	for (i = 0; i < n; i++) {
		if (keyring_seal(kr, aad, 32, value, VALUE_SIZE, sealed) != 0 ||
		    keyring_open(kr, aad, 32, sealed, sizeof(sealed), out) != 0)
			fatalx("seal/open failed");
	}
	return (double)(now_usec() - start) / n;
}

static void
setup_keyring(void)
{
	struct keyring_params	 p = { 0 };
	char			 kek[512], spec[600], path[512], err[512];
	uint8_t			 k[32];
	int			 fd;

	snprintf(kek, sizeof(kek), "%s/kek", bench_dir);
	snprintf(spec, sizeof(spec), "file:%s", kek);
	snprintf(path, sizeof(path), "%s/keyring", bench_dir);
	RAND_bytes(k, sizeof(k));
	unlink(kek);
	unlink(path);
	if ((fd = open(kek, O_WRONLY | O_CREAT | O_EXCL, 0600)) == -1 ||
	    write(fd, k, sizeof(k)) != sizeof(k))
		fatal("%s", kek);
	close(fd);
	p.path = path;
	p.kek = spec;
	p.create = 1;
	if (keyring_load(&p, &kr, NULL, NULL, err, sizeof(err)) != 0)
		fatalx("%s", err);
}

static void
usage(void)
{
	fprintf(stderr, "usage: store-bench [-d dir] [-s seconds] "
	    "[-o openssl-aes-256-gcm-1024-kB/s]\n");
	exit(1);
}

int
main(int argc, char **argv)
{
	static const int	 writers[] = { 1, 16, 64 };
	struct store		*st[3];
	struct utsname		 u;
	double			 raw, rate[3], seal, ossl = 0, ossl_us = 0;
	double			 slice;
	uint64_t		 raw_n = 0, n[3] = { 0, 0, 0 };
	size_t			 i;
	int			 ch, r, rounds = 5;

	while ((ch = getopt(argc, argv, "d:o:s:")) != -1) {
		switch (ch) {
		case 'd':
			bench_dir = optarg;
			break;
		case 'o':
			ossl = strtod(optarg, NULL);	/* 1000s of bytes/s */
			break;
		case 's':
			seconds = strtod(optarg, NULL);
			break;
		default:
			usage();
		}
	}
	log_init("store-bench", LOG_LEVEL_ERROR, 1);
	evthread_use_pthreads();
	RAND_bytes(value, sizeof(value));
	if (mkdir(bench_dir, 0700) == -1 && errno != EEXIST)
		fatal("%s", bench_dir);
	setup_keyring();
	/*
	 * The disk's sync latency drifts a lot on shared VMs: interleave
	 * short slices of every configuration and sum them.
	 */
	raw_lmdb_open();
	for (i = 0; i < nitems(writers); i++)
		st[i] = bench_store_open(writers[i]);
	slice = seconds / rounds;
	for (r = 0; r < rounds; r++) {
		raw_n += raw_lmdb_writes(slice);
		for (i = 0; i < nitems(writers); i++)
			n[i] += store_writes(st[i], writers[i], slice);
	}
	raw = raw_n / seconds;
	for (i = 0; i < nitems(writers); i++) {
		rate[i] = n[i] / seconds;
		store_close(st[i]);
	}
	mdb_env_close(raw_env);
	seal = seal_open_usec();
	if (ossl > 0)
		ossl_us = 1024.0 / (ossl * 1000.0) * 1e6;
	uname(&u);
	printf("machine: %s %s, %ld CPUs, directory %s; %d interleaved "
	    "rounds of %.1f s per configuration\n\n", u.nodename, u.release,
	    sysconf(_SC_NPROCESSORS_ONLN), bench_dir, rounds, slice);
	printf("| durable writes/s (1 KiB values) | writes/s | vs raw |\n");
	printf("|---|---:|---:|\n");
	printf("| raw LMDB, one put per commit | %.0f | 1.0x |\n", raw);
	for (i = 0; i < nitems(writers); i++)
		printf("| store, %d concurrent writers | %.0f | %.1fx |\n",
		    writers[i], rate[i], rate[i] / raw);
	printf("\n| per 1 KiB value | microseconds |\n|---|---:|\n");
	printf("| keyring_seal + keyring_open | %.2f |\n", seal);
	if (ossl > 0)
		printf("| openssl speed -evp aes-256-gcm, 1 KiB (one "
		    "direction) | %.2f |\n| ratio seal+open / (2 x openssl) "
		    "| %.2f |\n", ossl_us, seal / (2 * ossl_us));
	printf("\ntargets: >= 20x raw at 64 writers: %s (%.1fx); "
	    "seal+open <= 2 us: %s\n", rate[2] >= 20 * raw ? "met" :
	    "NOT met", rate[2] / raw, seal <= 2.0 ? "met" : "NOT met");
	keyring_free(kr);
	return 0;
}
