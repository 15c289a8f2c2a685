/*
 * metrics.c: counters kept per event-loop thread (one writer each, no
 * locks on the request path) and rendered in the Prometheus text format
 * 0.0.4. Each family is one row of the renderer table at the bottom.
 */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "http.h"

#define STATUS_MIN	100
#define STATUS_SLOTS	500

static const double bucket_le[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
	2.5, 5, 10,
};
#define NBUCKETS	nitems(bucket_le)

struct route_stats {
	uint64_t	by_status[STATUS_SLOTS];
	uint64_t	bucket[NBUCKETS];
	uint64_t	count;
	uint64_t	sum_us;
};

struct shard {
	struct route_stats	*routes;	/* api_nroutes + 1 (unmatched) */
	uint64_t		 auth_failures[AUTH_RESULT_COUNT];
};

static struct shard	*shards;
static size_t		 nshards;
static time_t		 start_time;

/* Each shard has a single writer thread: a relaxed load and store is
 * enough and keeps readers on other threads free of data races. */
#define BUMP(field, n) \
	__atomic_store_n(&(field), __atomic_load_n(&(field), \
	    __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define READ(field)	__atomic_load_n(&(field), __ATOMIC_RELAXED)

void
metrics_init(size_t nworkers)
{
	size_t	i;

	nshards = nworkers + 1;		/* the main thread has its own */
	shards = xcalloc(nshards, sizeof(*shards));
	for (i = 0; i < nshards; i++)
		shards[i].routes = xcalloc(api_nroutes + 1,
		    sizeof(struct route_stats));
	start_time = time(NULL);
}

void
metrics_request(size_t worker, int route, int status, uint64_t duration_us)
{
	struct route_stats	*rs;
	double			 secs = duration_us / 1e6;
	size_t			 b;

	if (shards == NULL || worker >= nshards)
		return;
	rs = &shards[worker].routes[route < 0 ? api_nroutes : (size_t)route];
	if (status >= STATUS_MIN && status < STATUS_MIN + STATUS_SLOTS)
		BUMP(rs->by_status[status - STATUS_MIN], 1);
	for (b = 0; b < NBUCKETS; b++)
		if (secs <= bucket_le[b])
			BUMP(rs->bucket[b], 1);
	BUMP(rs->count, 1);
	BUMP(rs->sum_us, duration_us);
}

void
metrics_auth_failure(size_t worker, enum auth_result reason)
{
	if (shards == NULL || worker >= nshards ||
	    (size_t)reason >= AUTH_RESULT_COUNT)
		return;
	BUMP(shards[worker].auth_failures[reason], 1);
}

static const char *
route_label(size_t i)
{
	if (i == api_nroutes)
		return "unmatched";
	return api_routes[i].metric_name ? api_routes[i].metric_name :
	    api_routes[i].pattern;
}

static void
sum_route(size_t i, struct route_stats *out)
{
	size_t	s, k;

	memset(out, 0, sizeof(*out));
	for (s = 0; s < nshards; s++) {
		const struct route_stats *rs = &shards[s].routes[i];

		for (k = 0; k < STATUS_SLOTS; k++)
			out->by_status[k] += READ(rs->by_status[k]);
		for (k = 0; k < NBUCKETS; k++)
			out->bucket[k] += READ(rs->bucket[k]);
		out->count += READ(rs->count);
		out->sum_us += READ(rs->sum_us);
	}
}

static void
render_requests(struct evbuffer *out)
{
	struct route_stats	 rs;
	size_t			 i, k;

	evbuffer_add_printf(out,
	    "# HELP tenantd_http_requests_total HTTP requests answered.\n"
	    "# TYPE tenantd_http_requests_total counter\n");
	for (i = 0; i <= api_nroutes; i++) {
		sum_route(i, &rs);
		for (k = 0; k < STATUS_SLOTS; k++)
			if (rs.by_status[k] != 0)
				evbuffer_add_printf(out,
				    "tenantd_http_requests_total{route=\"%s\","
				    "code=\"%zu\"} %llu\n", route_label(i),
				    k + STATUS_MIN,
				    (unsigned long long)rs.by_status[k]);
	}
}

static void
render_durations(struct evbuffer *out)
{
	struct route_stats	 rs;
	size_t			 i, b;

	evbuffer_add_printf(out,
	    "# HELP tenantd_http_request_duration_seconds Time from request "
	    "received to response queued.\n"
	    "# TYPE tenantd_http_request_duration_seconds histogram\n");
	for (i = 0; i <= api_nroutes; i++) {
		sum_route(i, &rs);
		if (rs.count == 0)
			continue;
		for (b = 0; b < NBUCKETS; b++)
			evbuffer_add_printf(out,
			    "tenantd_http_request_duration_seconds_bucket"
			    "{route=\"%s\",le=\"%g\"} %llu\n", route_label(i),
			    bucket_le[b], (unsigned long long)rs.bucket[b]);
		evbuffer_add_printf(out,
		    "tenantd_http_request_duration_seconds_bucket"
		    "{route=\"%s\",le=\"+Inf\"} %llu\n"
		    "tenantd_http_request_duration_seconds_sum{route=\"%s\"} "
		    "%.6f\n"
		    "tenantd_http_request_duration_seconds_count{route=\"%s\"} "
		    "%llu\n", route_label(i), (unsigned long long)rs.count,
		    route_label(i), rs.sum_us / 1e6, route_label(i),
		    (unsigned long long)rs.count);
	}
}

static void
render_build(struct evbuffer *out)
{
	evbuffer_add_printf(out,
	    "# HELP tenantd_build_info Version of the running tenantd.\n"
	    "# TYPE tenantd_build_info gauge\n"
	    "tenantd_build_info{version=\"%s\"} 1\n"
	    "# HELP tenantd_http_open_connections Open TLS connections.\n"
	    "# TYPE tenantd_http_open_connections gauge\n"
	    "tenantd_http_open_connections %d\n",
	    TENANTD_VERSION, http_open_connections());
}

static size_t
count_fds(void)
{
	DIR		*d;
	struct dirent	*de;
	size_t		 n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n > 0 ? n - 1 : 0;	/* not the directory's own fd */
}

static void
render_process(struct evbuffer *out)
{
	unsigned long	 utime = 0, stime = 0;
	long		 rss_pages = 0;
	FILE		*f;

	if ((f = fopen("/proc/self/stat", "r")) != NULL) {
		if (fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u "
		    "%*u %*u %lu %lu", &utime, &stime) != 2)
			utime = stime = 0;
		fclose(f);
	}
	if ((f = fopen("/proc/self/statm", "r")) != NULL) {
		if (fscanf(f, "%*d %ld", &rss_pages) != 1)
			rss_pages = 0;
		fclose(f);
	}
	evbuffer_add_printf(out,
	    "# TYPE process_cpu_seconds_total counter\n"
	    "process_cpu_seconds_total %.2f\n"
	    "# TYPE process_resident_memory_bytes gauge\n"
	    "process_resident_memory_bytes %ld\n"
	    "# TYPE process_open_fds gauge\n"
	    "process_open_fds %zu\n"
	    "# TYPE process_start_time_seconds gauge\n"
	    "process_start_time_seconds %lld\n",
	    (double)(utime + stime) / sysconf(_SC_CLK_TCK),
	    rss_pages * sysconf(_SC_PAGESIZE), count_fds(),
	    (long long)start_time);
}

static void
render_auth(struct evbuffer *out)
{
	struct auth_stats	 st;
	struct auth		*a = daemon_auth();
	uint64_t		 n;
	size_t			 r, s;

	evbuffer_add_printf(out,
	    "# HELP tenantd_auth_failures_total Requests refused for their "
	    "token, by reason.\n"
	    "# TYPE tenantd_auth_failures_total counter\n");
	for (r = AUTH_OK + 1; r < AUTH_RESULT_COUNT; r++) {
		for (n = 0, s = 0; s < nshards; s++)
			n += READ(shards[s].auth_failures[r]);
		if (n > 0)
			evbuffer_add_printf(out, "tenantd_auth_failures_total"
			    "{reason=\"%s\"} %llu\n", auth_result_label(r),
			    (unsigned long long)n);
	}
	if (a == NULL)
		return;
	auth_get_stats(a, &st);
	evbuffer_add_printf(out,
	    "# HELP tenantd_auth_cache_hits_total Tokens found verified in "
	    "the cache.\n"
	    "# TYPE tenantd_auth_cache_hits_total counter\n"
	    "tenantd_auth_cache_hits_total %llu\n"
	    "# HELP tenantd_auth_cache_misses_total Tokens not in the "
	    "cache.\n"
	    "# TYPE tenantd_auth_cache_misses_total counter\n"
	    "tenantd_auth_cache_misses_total %llu\n"
	    "# HELP tenantd_auth_signature_checks_total RSA signature "
	    "verifications.\n"
	    "# TYPE tenantd_auth_signature_checks_total counter\n"
	    "tenantd_auth_signature_checks_total %llu\n",
	    (unsigned long long)st.cache_hits,
	    (unsigned long long)st.cache_misses,
	    (unsigned long long)st.verifications);
}

/* One row per metric family; later subsystems add theirs here. */
static void (*const renderers[])(struct evbuffer *) = {
	render_build,
	render_requests,
	render_durations,
	render_auth,
	render_process,
	shipper_metrics_render,
	daemon_store_metrics,
};

void
metrics_render(struct evbuffer *out)
{
	size_t	i;

	for (i = 0; i < nitems(renderers); i++)
		renderers[i](out);
}
