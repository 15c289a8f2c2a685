/*
 * shipper-status.c: log shipping as operators see it: Prometheus metrics,
 * the status and dead letters for tenantctl, and the commands that run
 * on the shipper's thread (retry dead letters, queue test records).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "tenantd.h"
#include "shipper.h"

#define SHIP_STATUS_DEAD_MAX	20	/* dead letters listed by status */
#define SHIP_TEST_MAX		2000000
#define SHIP_TEST_PAD_MAX	(SHIP_RECORD_MAX - 1024)

static const struct {
	const char	*name;
	const char	*help;
	size_t		 offset;	/* in struct ship_counters */
	int		 counter;
} ship_families[] = {
	{ "tenantd_shipping_records_shipped_total",
	    "Records Azure Monitor accepted (2xx).",
	    offsetof(struct ship_counters, shipped), 1 },
	{ "tenantd_shipping_records_failed_total",
	    "Records in requests that failed and were retried.",
	    offsetof(struct ship_counters, failed), 1 },
	{ "tenantd_shipping_records_dropped_total",
	    "Records dropped at the queue limit.",
	    offsetof(struct ship_counters, dropped), 1 },
	{ "tenantd_shipping_records_dead_lettered_total",
	    "Records moved to the dead-letter store.",
	    offsetof(struct ship_counters, dead), 1 },
	{ "tenantd_shipping_records_queued_total",
	    "Records committed to the durable queue.",
	    offsetof(struct ship_counters, enqueued), 1 },
	{ "tenantd_shipping_queue_bytes",
	    "Bytes of JSON waiting to be shipped.",
	    offsetof(struct ship_counters, queue_bytes), 0 },
	{ "tenantd_shipping_queue_records",
	    "Records waiting to be shipped.",
	    offsetof(struct ship_counters, queue_records), 0 },
	{ "tenantd_shipping_dead_letter_records",
	    "Records now in the dead-letter store.",
	    offsetof(struct ship_counters, dead_records), 0 },
};

static uint64_t
ship_counter(const struct ship_stream *s, size_t offset)
{
	const uint64_t	*p = (const uint64_t *)(const void *)
			    ((const char *)&s->c + offset);

	return SHIP_READ(*p);
}

static double
ship_lag_seconds(const struct ship_stream *s)
{
	uint64_t	oldest = SHIP_READ(s->c.oldest_us), now = wall_usec();

	return oldest == 0 || oldest > now ? 0 : (now - oldest) / 1e6;
}

static void
ship_render_streams(struct evbuffer *out, struct shipper *sh)
{
	size_t	f, i;

	for (f = 0; f < nitems(ship_families); f++) {
		evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n",
		    ship_families[f].name, ship_families[f].help,
		    ship_families[f].name, ship_families[f].counter ?
		    "counter" : "gauge");
		for (i = 0; i < SHIP_NSTREAMS; i++)
			evbuffer_add_printf(out, "%s{stream=\"%s\"} %llu\n",
			    ship_families[f].name, shipper_stream_name(i),
			    (unsigned long long)ship_counter(&sh->streams[i],
			    ship_families[f].offset));
	}
	evbuffer_add_printf(out, "# HELP tenantd_shipping_lag_seconds Age of "
	    "the oldest record not yet shipped.\n"
	    "# TYPE tenantd_shipping_lag_seconds gauge\n");
	for (i = 0; i < SHIP_NSTREAMS; i++)
		evbuffer_add_printf(out, "tenantd_shipping_lag_seconds"
		    "{stream=\"%s\"} %.3f\n", shipper_stream_name(i),
		    ship_lag_seconds(&sh->streams[i]));
	evbuffer_add_printf(out, "# HELP tenantd_shipping_last_success_"
	    "timestamp_seconds When Azure Monitor last accepted a batch.\n"
	    "# TYPE tenantd_shipping_last_success_timestamp_seconds gauge\n");
	for (i = 0; i < SHIP_NSTREAMS; i++)
		evbuffer_add_printf(out, "tenantd_shipping_last_success_"
		    "timestamp_seconds{stream=\"%s\"} %.3f\n",
		    shipper_stream_name(i),
		    SHIP_READ(sh->streams[i].c.last_success_us) / 1e6);
}

static void
ship_render_durations(struct evbuffer *out, struct shipper *sh)
{
	size_t	i;

	evbuffer_add_printf(out, "# HELP tenantd_shipping_request_duration_"
	    "seconds Time from sending a batch to its answer.\n"
	    "# TYPE tenantd_shipping_request_duration_seconds histogram\n");
	for (i = 0; i < nitems(sh->hist); i++)
		evbuffer_add_printf(out, "tenantd_shipping_request_duration_"
		    "seconds_bucket{le=\"%g\"} %llu\n", ship_hist_le[i],
		    (unsigned long long)SHIP_READ(sh->hist[i]));
	evbuffer_add_printf(out, "tenantd_shipping_request_duration_seconds_"
	    "bucket{le=\"+Inf\"} %llu\n"
	    "tenantd_shipping_request_duration_seconds_sum %.6f\n"
	    "tenantd_shipping_request_duration_seconds_count %llu\n",
	    (unsigned long long)SHIP_READ(sh->hist_count),
	    SHIP_READ(sh->hist_sum_us) / 1e6,
	    (unsigned long long)SHIP_READ(sh->hist_count));
}

/* A row of metrics.c's renderer table; nothing while shipping is off. */
void
shipper_metrics_render(struct evbuffer *out)
{
	struct shipper	*sh = shipper;

	if (sh == NULL)
		return;
	ship_render_streams(out, sh);
	ship_render_durations(out, sh);
}

static json_t *
ship_stream_json(const struct ship_stream *s)
{
	char	ts[40] = "";
	uint64_t last = SHIP_READ(s->c.last_success_us);

	if (last != 0)
		format_iso8601(ts, sizeof(ts), last);
	return json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
	    " s:f, s:s?, s:I}", "name", s->conf->name, "enabled",
	    s->conf->enabled, "queued", (json_int_t)SHIP_READ(s->c.enqueued),
	    "shipped", (json_int_t)SHIP_READ(s->c.shipped),
	    "failed", (json_int_t)SHIP_READ(s->c.failed),
	    "dropped", (json_int_t)SHIP_READ(s->c.dropped),
	    "dead_lettered", (json_int_t)SHIP_READ(s->c.dead),
	    "dead_letter_records", (json_int_t)SHIP_READ(s->c.dead_records),
	    "queue_records", (json_int_t)SHIP_READ(s->c.queue_records),
	    "queue_bytes", (json_int_t)SHIP_READ(s->c.queue_bytes),
	    "lag_seconds", ship_lag_seconds(s), "last_success",
	    last != 0 ? ts : NULL, "cursor",
	    (json_int_t)SHIP_READ(s->c.cursor));
}

static int
ship_dead_list_cb(const void *key, size_t keylen, const void *val,
    size_t len, void *arg)
{
	json_t	*list = arg, *v;

	if (json_array_size(list) >= SHIP_STATUS_DEAD_MAX)
		return 1;
	if ((v = json_loadb(val, len, 0, NULL)) != NULL)
		json_array_append_new(list, v);
	return 0;
}

json_t *
shipper_status(void)
{
	struct shipper	*sh = shipper;
	json_t		*streams, *dead;
	size_t		 i;

	if (sh == NULL)
		return json_pack("{s:b}", "enabled", 0);
	streams = json_object();
	for (i = 0; i < SHIP_NSTREAMS; i++)
		json_object_set_new(streams, shipper_stream_name(i),
		    ship_stream_json(&sh->streams[i]));
	dead = json_array();
	store_scan(sh->st, SHIP_DB_DEAD, NULL, 0, ship_dead_list_cb, dead);
	return json_pack("{s:b, s:s, s:s?, s:o, s:o, s:I}", "enabled", 1,
	    "api", sh->ls->api == SHIP_API_LOGS_INGESTION ? "logs-ingestion" :
	    "data-collector", "endpoint", sh->ls->endpoint, "streams",
	    streams, "dead_letters", dead, "token_fetches",
	    (json_int_t)ship_cred_fetches(sh->cred));
}

static void
ship_retry_cb(evutil_socket_t fd, short ev, void *arg)
{
	ship_dead_retry();
}

int
shipper_retry_dead(char *err, size_t errlen)
{
	if (shipper == NULL) {
		snprintf(err, errlen, "log shipping is not configured");
		return -1;
	}
	if (event_base_once(shipper->base, -1, EV_TIMEOUT, ship_retry_cb,
	    NULL, NULL) == -1) {
		snprintf(err, errlen, "the shipper is not running");
		return -1;
	}
	return 0;
}

struct ship_test {
	unsigned	count;
	size_t		pad;
};

/* Test records for the ops stream, for checking the whole pipeline. */
static void
ship_test_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct ship_test	*t = arg;
	char			*pad = xmalloc(t->pad + 1);
	unsigned		 i;

	memset(pad, 'x', t->pad);
	pad[t->pad] = '\0';
	for (i = 0; i < t->count; i++)
		ship_intake(SHIP_OPS, json_pack("{s:s, s:s, s:s, s:{s:i,"
		    " s:s}}", "Kind", "test", "Level", "info", "Message",
		    "log shipping test record", "Properties", "n", (int)i,
		    "pad", pad), 0);
	ship_intake(SHIP_OPS, NULL, 1);
	free(pad);
	free(t);
}

int
shipper_test_records(unsigned count, size_t pad, char *err, size_t errlen)
{
	struct ship_test	*t;

	if (shipper == NULL) {
		snprintf(err, errlen, "log shipping is not configured");
		return -1;
	}
	if (count == 0 || count > SHIP_TEST_MAX || pad > SHIP_TEST_PAD_MAX) {
		snprintf(err, errlen, "count must be 1..%d and pad at most %d",
		    SHIP_TEST_MAX, SHIP_TEST_PAD_MAX);
		return -1;
	}
	t = xmalloc(sizeof(*t));
	t->count = count;
	t->pad = pad;
	if (event_base_once(shipper->base, -1, EV_TIMEOUT, ship_test_cb, t,
	    NULL) == -1) {
		free(t);
		snprintf(err, errlen, "the shipper is not running");
		return -1;
	}
	return 0;
}
