/*
 * shipper.c: log shipping's thread and intake: the log sink's bounded
 * hand-off, records with TimeGenerated and RecordId, committing them to
 * the durable queue, timers, start and stop.
 */
#include "config.h"

#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "tenantd.h"
#include "shipper.h"

#define SHIP_SHARED_KEY_MAX	512

struct shipper		*shipper;
static __thread int	 ship_muted;	/* the shipper's own drop notices */

static const char *const ship_stream_names[SHIP_NSTREAMS] = {
	[SHIP_AUDIT] = "audit",
	[SHIP_OPS] = "ops",
	[SHIP_USAGE] = "usage",
};

/* A staged entry from the sink or shipper_enqueue, any thread. */
struct ship_stage {
	int	stream;
	int	is_log;		/* a log line, not yet a record */
	size_t	len;
	char	text[];
};

const char *
shipper_stream_name(enum ship_stream_id id)
{
	return (size_t)id < SHIP_NSTREAMS ? ship_stream_names[id] : "?";
}

/* Log without feeding the ops stream: a drop must not cause a record. */
void
ship_log_muted(enum log_level level, const char *fmt, ...)
{
	char	msg[512];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ship_muted = 1;
	log_fields(level, NULL, 0, "%s", msg);
	ship_muted = 0;
}

/* The one place queue-limit drops are announced (notices: issue 5). */
void
shipper_notice_dropped(enum ship_stream_id id, uint64_t dropped,
    uint64_t total)
{
	char	body[256];

	ship_log_muted(LOG_LEVEL_WARN, "log shipping: the %s queue is full; "
	    "dropped the %llu oldest records (%llu in all)",
	    shipper_stream_name(id), (unsigned long long)dropped,
	    (unsigned long long)total);
	snprintf(body, sizeof(body), "Azure Monitor has not accepted logs "
	    "for a while and the %s queue reached its limit: the %llu oldest "
	    "records were dropped (%llu in all). Audit records are never "
	    "dropped.", shipper_stream_name(id), (unsigned long long)dropped,
	    (unsigned long long)total);
	ship_muted = 1;		/* its log line must not feed the full queue */
	notice_publish_system("incident", "warning",
	    "Log shipping dropped records", body);
	ship_muted = 0;
}

struct ship_rec *
ship_rec_new(uint64_t seq, int origin, const char *json, size_t len)
{
	struct ship_rec	*r = xmalloc(sizeof(*r) + len);

	r->seq = seq;
	r->origin = origin;
	r->wall_us = wall_usec();
	r->len = len;
	memcpy(r->json, json, len);
	return r;
}

void
ship_wake(void)
{
	if (shipper != NULL)
		event_active(shipper->ev_wake, EV_READ, 0);
}

/* Hand a line or record to the shipper thread; bounded, never blocks. */
static void
ship_stage_add(int stream, int is_log, const char *text, size_t len)
{
	struct shipper		*sh = shipper;
	struct ship_stage	*e;
	int			 first;

	if (sh == NULL)
		return;
	pthread_mutex_lock(&sh->mtx);
	if (sh->stage_bytes + len > SHIP_STAGE_MAX) {
		sh->stage_dropped++;
		pthread_mutex_unlock(&sh->mtx);
		return;
	}
	if (sh->nstage == sh->stage_cap) {
		sh->stage_cap = sh->stage_cap ? sh->stage_cap * 2 : 256;
		sh->stage = xreallocarray(sh->stage, sh->stage_cap,
		    sizeof(*sh->stage));
	}
	e = xmalloc(sizeof(*e) + len);
	e->stream = stream;
	e->is_log = is_log;
	e->len = len;
	memcpy(e->text, text, len);
	sh->stage[sh->nstage++] = (char *)e;
	sh->stage_bytes += len;
	first = sh->nstage == 1;
	pthread_mutex_unlock(&sh->mtx);
	if (first)
		event_active(sh->ev_wake, EV_READ, 0);
}

void
shipper_log_sink(enum log_level level, const char *line, size_t len)
{
	if (ship_muted || shipper == NULL || !shipper->streams[SHIP_OPS].conf->enabled)
		return;
	ship_stage_add(SHIP_OPS, 1, line, len);
}

int
shipper_enqueue(enum ship_stream_id id, json_t *record)
{
	char	*text;

	if (shipper == NULL || (size_t)id >= SHIP_NSTREAMS ||
	    !shipper->streams[id].conf->enabled || id == SHIP_AUDIT) {
		json_decref(record);
		return -1;
	}
	text = json_dumps(record, JSON_COMPACT);
	json_decref(record);
	if (text == NULL)
		return -1;
	ship_stage_add(id, 0, text, strlen(text));
	free(text);
	return 0;
}

/* Add TimeGenerated (if missing) and a RecordId; the record's text. */
static struct ship_rec *
ship_finish_record(struct ship_stream *s, json_t *obj)
{
	struct ship_rec	*r;
	char		 id[64], ts[40], *text;
	uint64_t	 seq = s->next_seq++;

	if (json_object_get(obj, "TimeGenerated") == NULL) {
		format_iso8601(ts, sizeof(ts), wall_usec());
		json_object_set_new(obj, "TimeGenerated", json_string(ts));
	}
	snprintf(id, sizeof(id), "%s-%c%llu", shipper->instance,
	    shipper_stream_name(s->id)[0], (unsigned long long)seq);
	json_object_set_new(obj, "RecordId", json_string(id));
	text = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (text == NULL)
		return NULL;
	r = ship_rec_new(seq, SHIP_FROM_QUEUE, text, strlen(text));
	free(text);
	return r;
}

/* A log line {"ts","level","proc","msg",...} as an ops record. */
static json_t *
ship_log_object(const char *line, size_t len)
{
	json_t	*in = json_loadb(line, len, 0, NULL), *out;

	if (!json_is_object(in)) {
		json_decref(in);
		return json_pack("{s:s, s:s, s:s#}", "Kind", "log", "Level",
		    "info", "Message", line, (int)len);
	}
	out = json_pack("{s:s, s:O?, s:O?, s:O?}", "Kind", "log",
	    "TimeGenerated", json_object_get(in, "ts"),
	    "Level", json_object_get(in, "level"),
	    "Message", json_object_get(in, "msg"));
	if (json_object_get(in, "request_id") != NULL)
		json_object_set(out, "RequestId",
		    json_object_get(in, "request_id"));
	json_object_del(in, "ts");
	json_object_del(in, "level");
	json_object_del(in, "msg");
	json_object_del(in, "request_id");
	json_object_set_new(out, "Properties", in);
	return out;
}

/*
 * On the shipper thread: a record into its stream's next commit; the
 * commit goes to the store at SHIP_COMMIT_RECORDS records or on flush.
 */
void
ship_intake(enum ship_stream_id id, json_t *obj, int flush)
{
	static struct ship_recq	 recs[SHIP_NSTREAMS];
	static size_t		 n[SHIP_NSTREAMS];
	static int		 init;
	struct ship_rec		*r;
	size_t			 i;

	if (!init) {
		for (i = 0; i < SHIP_NSTREAMS; i++)
			TAILQ_INIT(&recs[i]);
		init = 1;
	}
	if (obj != NULL && json_is_object(obj) && (r = ship_finish_record(
	    &shipper->streams[id], obj)) != NULL) {
		TAILQ_INSERT_TAIL(&recs[id], r, entry);
		n[id]++;
	} else
		json_decref(obj);
	for (i = 0; i < SHIP_NSTREAMS; i++) {
		if (n[i] == 0 || (!flush && n[i] < SHIP_COMMIT_RECORDS))
			continue;
		ship_queue_commit(&shipper->streams[i], &recs[i], n[i]);
		TAILQ_INIT(&recs[i]);
		n[i] = 0;
	}
}

/* Commit what the sink and shipper_enqueue staged. */
static void
ship_take_stage(struct shipper *sh)
{
	char			**stage;
	struct ship_stage	*e;
	size_t			 i, count;
	uint64_t		 dropped;

	pthread_mutex_lock(&sh->mtx);
	stage = sh->stage;
	count = sh->nstage;
	dropped = sh->stage_dropped;
	sh->stage = NULL;
	sh->nstage = sh->stage_cap = sh->stage_bytes = 0;
	sh->stage_dropped = 0;
	pthread_mutex_unlock(&sh->mtx);
	if (dropped > 0)
		SHIP_BUMP(sh->streams[SHIP_OPS].c.dropped, dropped);
	for (i = 0; i < count; i++) {
		e = (struct ship_stage *)stage[i];
		ship_intake(e->stream, e->is_log ? ship_log_object(e->text,
		    e->len) : json_loadb(e->text, e->len, 0, NULL), 0);
		free(e);
	}
	free(stage);
	ship_intake(SHIP_OPS, NULL, 1);
}

static void
ship_wake_cb(evutil_socket_t fd, short ev, void *arg)
{
	ship_take_stage(arg);
	ship_send_all(0);
}

static void
ship_flush_cb(evutil_socket_t fd, short ev, void *arg)
{
	size_t	i;

	for (i = 0; i < SHIP_NSTREAMS; i++)
		if (shipper->streams[i].source_ok)
			ship_cursor_read(&shipper->streams[i]);
	ship_send_all(1);
}

static void
ship_retry_cb(evutil_socket_t fd, short ev, void *arg)
{
	ship_send_all(1);
}

/* A periodic ops record: readiness and the shipper's own state. */
static void
ship_health_cb(evutil_socket_t fd, short ev, void *arg)
{
	json_t	*rec;
	int	 ready;

	rec = json_pack("{s:s, s:s, s:s, s:o, s:o}", "Kind", "health",
	    "Level", "info", "Message", "health snapshot", "Ready",
	    json_boolean(1), "Properties", json_pack("{s:o, s:o}", "checks",
	    ready_json(&ready), "shipping", shipper_status()));
	json_object_set_new(rec, "Ready", json_boolean(ready));
	ship_intake(SHIP_OPS, rec, 1);
}

static void
ship_stop_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct shipper	*sh = arg;

	sh->stopping = 1;
	ship_take_stage(sh);	/* the sink is off: commit what it gave */
	if (sh->commits == 0)
		event_base_loopbreak(sh->base);
}

static void *
ship_thread(void *arg)
{
	struct shipper	*sh = arg;

	event_base_dispatch(sh->base);
	return NULL;
}

static int
ship_load_shared_key(struct shipper *sh, char *err, size_t errlen)
{
	char	b64[SHIP_SHARED_KEY_MAX + 1];
	ssize_t	n;
	int	len;

	if ((n = secret_read(sh->ls->shared_key, b64, SHIP_SHARED_KEY_MAX, err,
	    errlen)) <= 0)
		return -1;
	while (n > 0 && (b64[n - 1] == '\n' || b64[n - 1] == '\r'))
		n--;
	sh->shared_key = xmalloc(n + 1);
	len = EVP_DecodeBlock(sh->shared_key, (unsigned char *)b64, (int)n);
	if (len <= 0 || n % 4 != 0) {
		OPENSSL_cleanse(b64, sizeof(b64));
		snprintf(err, errlen, "shared_key %s is not base64",
		    sh->ls->shared_key);
		return -1;
	}
	/* EVP_DecodeBlock counts the padding as data bytes. */
	sh->shared_key_len = len - (b64[n - 1] == '=') - (b64[n - 2] == '=');
	OPENSSL_cleanse(b64, sizeof(b64));
	return 0;
}

static void
ship_events_new(struct shipper *sh)
{
	struct timeval	tv;

	sh->ev_wake = event_new(sh->base, -1, 0, ship_wake_cb, sh);
	sh->ev_flush = event_new(sh->base, -1, EV_PERSIST, ship_flush_cb, sh);
	sh->ev_retry = evtimer_new(sh->base, ship_retry_cb, sh);
	sh->ev_stop = event_new(sh->base, -1, 0, ship_stop_cb, sh);
	sh->ev_health = event_new(sh->base, -1, EV_PERSIST, ship_health_cb,
	    sh);
	if (sh->ev_wake == NULL || sh->ev_flush == NULL ||
	    sh->ev_retry == NULL || sh->ev_stop == NULL ||
	    sh->ev_health == NULL)
		fatalx("log shipping: cannot create events");
	tv.tv_sec = sh->ls->flush_interval / 1000;
	tv.tv_usec = (sh->ls->flush_interval % 1000) * 1000;
	event_add(sh->ev_flush, &tv);
	if (sh->ls->health_interval > 0) {
		tv.tv_sec = sh->ls->health_interval;
		tv.tv_usec = 0;
		event_add(sh->ev_health, &tv);
	}
}

static void
ship_streams_init(struct shipper *sh)
{
	const struct ship_stream_conf	*confs[SHIP_NSTREAMS] = {
	    &sh->ls->audit, &sh->ls->ops, &sh->ls->usage };
	struct ship_stream		*s;
	size_t				 i;

	for (i = 0; i < SHIP_NSTREAMS; i++) {
		s = &sh->streams[i];
		s->id = i;
		s->conf = confs[i];
		TAILQ_INIT(&s->pending);
		TAILQ_INIT(&s->retry);
		TAILQ_INIT(&s->sending);
		if (ship_queue_load(s) != 0)
			log_warnx("log shipping: the %s queue could not be "
			    "read completely", shipper_stream_name(i));
	}
	sh->source = ship_audit_source();
	s = &sh->streams[SHIP_AUDIT];
	if (s->conf->enabled && sh->source == NULL)
		log_info("log shipping: the audit stream waits for the audit "
		    "log (not available in this build)");
	s->source_ok = s->conf->enabled && sh->source != NULL;
}

static void
ship_setup(struct shipper *sh, struct store *st)
{
	char	err[512];

	if (sh->ls->api == SHIP_API_DATA_COLLECTOR) {
		log_warnx("log shipping: api data-collector is the legacy HTTP "
		    "Data Collector API; Microsoft ended its support on 14 "
		    "September 2026 and its endpoints may stop answering: "
		    "migrate to api: logs-ingestion");
		if (ship_load_shared_key(sh, err, sizeof(err)) == -1)
			fatalx("log shipping: %s", err);
	}
	if ((sh->st = st) == NULL)
		fatalx("log shipping: the store is not open");
	if ((sh->base = event_base_new()) == NULL)
		fatalx("log shipping: event_base_new failed");
	sh->hc = httpc_new(sh->base);
	if (sh->ls->api == SHIP_API_LOGS_INGESTION &&
	    (sh->cred = ship_cred_new(sh->base, sh->hc, sh->ls,
	    sh->conf->tenant_id, err, sizeof(err))) == NULL)
		fatalx("%s", err);
	random_hex(sh->instance, 8);
	pthread_mutex_init(&sh->mtx, NULL);
}

int
shipper_start(struct event_base *base, const struct config *conf,
    struct store *st)
{
	struct shipper	*sh;

	if (!conf->log_shipping.configured || !conf->log_shipping.enabled)
		return 0;
	sh = xcalloc(1, sizeof(*sh));
	sh->conf = conf_ref((struct config *)(uintptr_t)conf);
	sh->ls = &sh->conf->log_shipping;
	ship_setup(sh, st);
	shipper = sh;
	ship_streams_init(sh);
	ship_events_new(sh);
	ready_set("shipping", READY_OK, "started");
	log_set_sink(shipper_log_sink);
	if (pthread_create(&sh->thread, NULL, ship_thread, sh) != 0)
		fatalx("log shipping: cannot start its thread");
	log_info("log shipping to %s started (%s)", sh->ls->api ==
	    SHIP_API_LOGS_INGESTION ? sh->ls->endpoint : "the HTTP Data "
	    "Collector API", sh->ls->api == SHIP_API_LOGS_INGESTION ?
	    "logs-ingestion" : "data-collector");
	ship_wake();
	return 0;
}

static void
ship_free_events(struct shipper *sh)
{
	event_free(sh->ev_wake);
	event_free(sh->ev_flush);
	event_free(sh->ev_retry);
	event_free(sh->ev_stop);
	event_free(sh->ev_health);
}

void
shipper_stop(void)
{
	struct shipper	*sh = shipper;
	size_t		 i;

	if (sh == NULL)
		return;
	log_set_sink(NULL);
	event_active(sh->ev_stop, EV_READ, 0);
	pthread_join(sh->thread, NULL);
	shipper = NULL;
	for (i = 0; i < SHIP_NSTREAMS; i++)
		ship_stream_drain_free(&sh->streams[i]);
	ship_cred_free(sh->cred);
	httpc_free(sh->hc);
	ship_free_events(sh);
	event_base_free(sh->base);
	if (sh->shared_key != NULL)
		OPENSSL_cleanse(sh->shared_key, sh->shared_key_len);
	free(sh->shared_key);
	pthread_mutex_destroy(&sh->mtx);
	conf_unref(sh->conf);
	free(sh);
}
