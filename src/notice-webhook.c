/*
 * notice-webhook.c: durable delivery of notices to the configured
 * webhooks: an outbox in the store (written in the notice's own
 * transaction), HMAC-signed JSON or Teams Adaptive Card payloads, retries
 * with exponential backoff until notifications.retry_for, then "failed".
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <event2/event.h>

#include "tenantd.h"

#define SECRET_MAX		1024
#define INFLIGHT_MAX		8
#define BACKOFF_MAX_US		(3600ULL * 1000000)
#define WAKE_MAX_US		(60ULL * 1000000)
#define KEEP_DONE_US		(7ULL * 86400 * 1000000)
#define DELIVERY_TIMEOUT_MS	15000

struct hook {
	const struct webhook_conf *conf;
	unsigned char		 secret[SECRET_MAX];
	size_t			 secretlen;
};

struct flight {
	char			 id[64];
	json_t			*rec;
	struct httpc_xfer	*xfer;
};

static struct {
	pthread_mutex_t		 mtx;		/* conf, hooks */
	struct event_base	*base;
	struct store		*st;
	struct httpc		*httpc;
	struct config		*conf;
	struct hook		*hooks;
	size_t			 nhooks;
	struct event		*kick, *timer;
	struct flight		 flights[INFLIGHT_MAX];
} wh = { .mtx = PTHREAD_MUTEX_INITIALIZER };

static void	deliver_due(void);

/* --- payloads ------------------------------------------------------------ */

/* hex(HMAC-SHA256(secret, "<t>.<body>")) */
void
webhook_signature(const void *secret, size_t secretlen, int64_t t,
    const char *body, size_t len, char *out, size_t outlen)
{
	unsigned char	 md[32];
	unsigned int	 mdlen = 0;
	char		*msg;
	int		 n;
	size_t		 i;

	n = xasprintf(&msg, "%lld.%.*s", (long long)t, (int)len, body);
	if (HMAC(EVP_sha256(), secret, (int)secretlen, (unsigned char *)msg,
	    n, md, &mdlen) == NULL)
		mdlen = 0;
	free(msg);
	out[0] = '\0';
	for (i = 0; i < mdlen && 2 * i + 2 < outlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static json_t *
card_fact(const char *title, json_t *value)
{
	const char	*s = json_string_value(value);

	return json_pack("{s:s, s:s}", "title", title, "value",
	    s != NULL ? s : "-");
}

/* A Teams Workflows message: one Adaptive Card (schema 1.4). */
static json_t *
teams_message(json_t *notice, const char *event)
{
	json_t	*facts, *body, *card;
	char	 heading[NOTICE_TITLE_MAX * 4 + 64];

	snprintf(heading, sizeof(heading), "%s%s",
	    strcmp(event, "notice.updated") == 0 ? "Updated: " : "",
	    json_string_value(json_object_get(notice, "title")));
	facts = json_pack("[o, o, o, o, o]",
	    card_fact("Kind", json_object_get(notice, "kind")),
	    card_fact("Severity", json_object_get(notice, "severity")),
	    card_fact("Starts", json_object_get(notice, "starts_at")),
	    card_fact("Ends", json_object_get(notice, "ends_at")),
	    card_fact("Notice", json_object_get(notice, "id")));
	body = json_pack("[{s:s, s:s, s:s, s:s, s:b}, {s:s, s:O, s:b},"
	    "{s:s, s:o}]",
	    "type", "TextBlock", "text", heading, "size", "Medium",
	    "weight", "Bolder", "wrap", 1,
	    "type", "TextBlock", "text", json_object_get(notice, "body"),
	    "wrap", 1,
	    "type", "FactSet", "facts", facts);
	card = json_pack("{s:s, s:s, s:s, s:o}",
	    "$schema", "http://adaptivecards.io/schemas/adaptive-card.json",
	    "type", "AdaptiveCard", "version", "1.4", "body", body);
	return json_pack("{s:s, s:[{s:s, s:n, s:o}]}", "type", "message",
	    "attachments", "contentType",
	    "application/vnd.microsoft.card.adaptive", "contentUrl",
	    "content", card);
}

char *
webhook_payload(const struct webhook_conf *conf, json_t *notice,
    const char *event, const char *delivery_id, const char *tenant)
{
	json_t	*msg;
	char	*s;

	if (conf->format == WEBHOOK_TEAMS)
		msg = teams_message(notice, event);
	else
		msg = json_pack("{s:s, s:s, s:s, s:O}", "event", event,
		    "delivery_id", delivery_id, "tenant_id", tenant,
		    "notice", notice);
	s = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	return s;
}

/* --- the outbox ---------------------------------------------------------- */

static int
hook_wants(const struct webhook_conf *conf, const char *kind)
{
	size_t	i;

	if (conf->nkinds == 0)
		return 1;
	for (i = 0; i < conf->nkinds; i++)
		if (strcmp(notice_kind_names[conf->kinds[i]], kind) == 0)
			return 1;
	return 0;
}

static int
record_put(struct store_batch *batch, const char *id, json_t *rec)
{
	char	*text = json_dumps(rec, JSON_COMPACT);
	int	 rv;

	rv = store_batch_put(batch, NOTICE_OUTBOX_DB, id, strlen(id), text,
	    strlen(text));
	free(text);
	return rv;
}

/* One pending delivery per matching webhook, in the caller's batch. */
int
webhook_enqueue(struct store_batch *batch, json_t *notice, const char *event)
{
	const char	*kind = json_string_value(json_object_get(notice,
			    "kind"));
	json_t		*rec;
	uint64_t	 now = wall_usec();
	char		 id[64], rnd[9];
	size_t		 i;
	int		 rv = 0;

	pthread_mutex_lock(&wh.mtx);
	for (i = 0; wh.conf != NULL && i < wh.conf->notifications.nwebhooks;
	    i++) {
		if (!hook_wants(&wh.conf->notifications.webhooks[i], kind))
			continue;
		random_hex(rnd, 4);
		snprintf(id, sizeof(id), "d_%016llx%s",
		    (unsigned long long)now, rnd);
		rec = json_pack("{s:s, s:s, s:s, s:O, s:s, s:i, s:I, s:I, s:I}",
		    "id", id, "url", wh.conf->notifications.webhooks[i].url,
		    "event", event, "notice", notice, "state", "pending",
		    "attempts", 0, "created_us", (json_int_t)now,
		    "next_us", (json_int_t)now, "deadline_us",
		    (json_int_t)(now + wh.conf->notifications.retry_for *
		    1000000));
		rv |= record_put(batch, id, rec);
		json_decref(rec);
	}
	pthread_mutex_unlock(&wh.mtx);
	return rv;
}

static void
record_save(const char *id, json_t *rec)
{
	struct store_batch	*batch;
	int			 rv;

	if (wh.st == NULL)
		return;
	batch = store_batch_new(wh.st);
	record_put(batch, id, rec);
	if ((rv = store_write(batch)) != STORE_OK)
		log_warnx("webhook delivery %s: saving its state failed: %s",
		    id, store_strerror(rv));
}

/* --- delivery ------------------------------------------------------------ */

static struct hook *
hook_find(const char *url)
{
	size_t	i;

	for (i = 0; i < wh.nhooks; i++)
		if (strcmp(wh.hooks[i].conf->url, url) == 0)
			return &wh.hooks[i];
	return NULL;
}

static uint64_t
backoff_us(int attempts)
{
	uint64_t	us = wh.conf->notifications.retry_backoff * 1000;

	while (--attempts > 0 && us < BACKOFF_MAX_US)
		us *= 2;
	return MINIMUM(us, BACKOFF_MAX_US);
}

/* Retry-After in seconds (429, 503), within the backoff limits. */
static uint64_t
retry_after_us(const struct httpc_response *resp, uint64_t dflt)
{
	const char	*h = httpc_response_header(resp, "Retry-After");
	long long	 s;
	char		*end;

	if (h == NULL || (s = strtoll(h, &end, 10)) < 0 || *end != '\0')
		return dflt;
	return MINIMUM((uint64_t)s * 1000000, BACKOFF_MAX_US);
}

static void
attempt_failed(json_t *rec, const struct httpc_response *resp,
    const char *why)
{
	uint64_t	now = wall_usec(), next;
	int		attempts = json_integer_value(json_object_get(rec,
			    "attempts"));

	next = backoff_us(attempts);
	if (resp != NULL && (resp->status == 429 || resp->status == 503))
		next = MAXIMUM(next, retry_after_us(resp, next));
	json_object_set_new(rec, "last_error", json_string(why));
	if (now + next > (uint64_t)json_integer_value(json_object_get(rec,
	    "deadline_us"))) {
		json_object_set_new(rec, "state", json_string("failed"));
		log_warnx("webhook delivery %s failed for good after %d "
		    "attempts: %s", json_string_value(json_object_get(rec,
		    "id")), attempts, why);
	} else
		json_object_set_new(rec, "next_us", json_integer(now + next));
}

static void
delivered_cb(const struct httpc_response *resp, void *arg)
{
	struct flight	*fl = arg;
	json_t		*rec = fl->rec;
	char		 why[256];

	json_object_set_new(rec, "attempts", json_integer(
	    json_integer_value(json_object_get(rec, "attempts")) + 1));
	json_object_set_new(rec, "last_attempt_us", json_integer(
	    wall_usec()));
	json_object_set_new(rec, "last_status", json_integer(resp->status));
	if (resp->error == HTTPC_OK && resp->status >= 200 &&
	    resp->status < 300) {
		json_object_set_new(rec, "state", json_string("delivered"));
		json_object_del(rec, "last_error");
	} else {
		if (resp->error != HTTPC_OK)
			snprintf(why, sizeof(why), "%s: %s",
			    httpc_error_name(resp->error), resp->errmsg);
		else
			snprintf(why, sizeof(why), "HTTP %ld", resp->status);
		attempt_failed(rec, resp, why);
	}
	record_save(fl->id, rec);
	json_decref(rec);
	fl->rec = NULL;
	fl->xfer = NULL;
	deliver_due();
}

static int
flight_busy(const char *id)
{
	size_t	i;

	for (i = 0; i < INFLIGHT_MAX; i++)
		if (wh.flights[i].rec != NULL &&
		    strcmp(wh.flights[i].id, id) == 0)
			return 1;
	return 0;
}

static struct flight *
flight_free(void)
{
	size_t	i;

	for (i = 0; i < INFLIGHT_MAX; i++)
		if (wh.flights[i].rec == NULL)
			return &wh.flights[i];
	return NULL;
}

static void
request_headers(const struct hook *h, const char *id, const char *event,
    const char *body, char hdrs[][160], const char **list)
{
	char	sig[65];
	int64_t	t = (int64_t)(wall_usec() / 1000000);
	size_t	n = 0;

	snprintf(hdrs[n], 160, "Content-Type: application/json");
	snprintf(hdrs[++n], 160, "User-Agent: tenantd/%s", TENANTD_VERSION);
	snprintf(hdrs[++n], 160, "Tenantd-Delivery: %s", id);
	snprintf(hdrs[++n], 160, "Tenantd-Event: %s", event);
	if (h->secretlen > 0) {
		webhook_signature(h->secret, h->secretlen, t, body,
		    strlen(body), sig, sizeof(sig));
		snprintf(hdrs[++n], 160, "Tenantd-Signature: t=%lld,v1=%s",
		    (long long)t, sig);
	}
	for (n++; n > 0; n--)
		list[n - 1] = hdrs[n - 1];
}

static void
flight_start(struct flight *fl, json_t *rec, const char *id)
{
	const char		*event, *list[8] = { NULL };
	struct httpc_request	 req = { 0 };
	struct hook		*h;
	char			 hdrs[6][160], *body;

	if ((h = hook_find(json_string_value(json_object_get(rec, "url")))) ==
	    NULL) {
		json_object_set_new(rec, "state", json_string("failed"));
		json_object_set_new(rec, "last_error", json_string(
		    "the webhook is no longer configured"));
		record_save(id, rec);
		return;
	}
	event = json_string_value(json_object_get(rec, "event"));
	body = webhook_payload(h->conf, json_object_get(rec, "notice"), event,
	    id, wh.conf->tenant_id);
	request_headers(h, id, event, body, hdrs, list);
	req.method = "POST";
	req.url = h->conf->url;
	req.headers = list;
	req.body = body;
	req.body_len = strlen(body);
	req.timeout_ms = DELIVERY_TIMEOUT_MS;
	req.max_body = 64 * 1024;
	req.ca_file = h->conf->ca_file;
	strlcpy(fl->id, id, sizeof(fl->id));
	fl->rec = json_incref(rec);
	if ((fl->xfer = httpc_start(wh.httpc, &req, delivered_cb, fl)) ==
	    NULL) {
		json_decref(fl->rec);
		fl->rec = NULL;
		log_warnx("webhook delivery %s could not be started", id);
	}
	free(body);
}

struct due_ctx {
	uint64_t	 now, wake;
	json_t		*expired;	/* keys of old finished ones */
};

static int
due_cb(const void *key, size_t keylen, const void *val, size_t vallen,
    void *arg)
{
	struct due_ctx	*ctx = arg;
	struct flight	*fl;
	json_t		*rec;
	const char	*state;
	char		 id[64];
	uint64_t	 next;

	if (keylen >= sizeof(id) || (rec = json_loadb(val, vallen, 0,
	    NULL)) == NULL)
		return 0;
	memcpy(id, key, keylen);
	id[keylen] = '\0';
	state = json_string_value(json_object_get(rec, "state"));
	next = json_integer_value(json_object_get(rec, "next_us"));
	if (state != NULL && strcmp(state, "pending") != 0) {
		if ((uint64_t)json_integer_value(json_object_get(rec,
		    "created_us")) + KEEP_DONE_US < ctx->now)
			json_array_append_new(ctx->expired, json_string(id));
	} else if (next > ctx->now)
		ctx->wake = MINIMUM(ctx->wake, next);
	else if (!flight_busy(id) && (fl = flight_free()) != NULL)
		flight_start(fl, rec, id);
	json_decref(rec);
	return 0;
}

static void
expired_remove(json_t *keys)
{
	struct store_batch	*batch;
	json_t			*k;
	size_t			 i;

	if (json_array_size(keys) == 0)
		return;
	batch = store_batch_new(wh.st);
	json_array_foreach(keys, i, k)
		store_batch_del(batch, NOTICE_OUTBOX_DB, json_string_value(k),
		    json_string_length(k));
	store_write(batch);
}

/* Main thread: start what is due; sleep until the next is. */
static void
deliver_due(void)
{
	struct due_ctx	ctx;
	struct timeval	tv;
	uint64_t	wait;

	if (wh.st == NULL || wh.conf == NULL)
		return;
	ctx.now = wall_usec();
	ctx.wake = ctx.now + WAKE_MAX_US;
	ctx.expired = json_array();
	store_scan(wh.st, NOTICE_OUTBOX_DB, "d_", 2, due_cb, &ctx);
	expired_remove(ctx.expired);
	json_decref(ctx.expired);
	wait = ctx.wake > ctx.now ? ctx.wake - ctx.now : 0;
	tv.tv_sec = wait / 1000000;
	tv.tv_usec = wait % 1000000;
	evtimer_add(wh.timer, &tv);
}

static void
due_timer_cb(evutil_socket_t fd, short ev, void *arg)
{
	deliver_due();
}

void
webhook_kick(void)
{
	if (wh.kick != NULL)
		event_active(wh.kick, EV_TIMEOUT, 0);
}

/* --- deliveries, for tenantctl ------------------------------------------- */

static void
set_time(json_t *out, const char *name, json_t *us)
{
	char	buf[40];

	if (!json_is_integer(us)) {
		json_object_set_new(out, name, json_null());
		return;
	}
	format_iso8601(buf, sizeof(buf), json_integer_value(us));
	json_object_set_new(out, name, json_string(buf));
}

/* The URL without its query: Teams URLs carry a signature there. */
static json_t *
url_shown(const char *url)
{
	return json_stringn(url, strcspn(url, "?#"));
}

static int
list_cb(const void *key, size_t keylen, const void *val, size_t vallen,
    void *arg)
{
	json_t		*list = arg, *rec, *out;
	const char	*state;

	if ((rec = json_loadb(val, vallen, 0, NULL)) == NULL)
		return 0;
	state = json_string_value(json_object_get(rec, "state"));
	out = json_pack("{s:O, s:O, s:o, s:O, s:O, s:O}", "id",
	    json_object_get(rec, "id"), "notice_id", json_object_get(
	    json_object_get(rec, "notice"), "id"), "url", url_shown(
	    json_string_value(json_object_get(rec, "url"))), "event",
	    json_object_get(rec, "event"), "state", json_object_get(rec,
	    "state"), "attempts", json_object_get(rec, "attempts"));
	set_time(out, "created_at", json_object_get(rec, "created_us"));
	set_time(out, "last_attempt_at", json_object_get(rec,
	    "last_attempt_us"));
	if (state != NULL && strcmp(state, "pending") == 0)
		set_time(out, "next_attempt_at", json_object_get(rec,
		    "next_us"));
	json_object_set(out, "last_status", json_object_get(rec,
	    "last_status"));
	json_object_set(out, "last_error", json_object_get(rec,
	    "last_error"));
	json_array_append_new(list, out);
	json_decref(rec);
	return 0;
}

/* The newest deliveries (at most limit) and counts by state. */
json_t *
webhook_deliveries_json(size_t limit)
{
	json_t		*all = json_array(), *shown = json_array();
	json_t		*counts, *d;
	size_t		 i, n;
	const char	*state;

	if (wh.st != NULL)
		store_scan(wh.st, NOTICE_OUTBOX_DB, "d_", 2, list_cb, all);
	counts = json_pack("{s:i, s:i, s:i}", "pending", 0, "delivered", 0,
	    "failed", 0);
	n = json_array_size(all);
	for (i = n; i > 0; i--) {
		d = json_array_get(all, i - 1);
		state = json_string_value(json_object_get(d, "state"));
		if (state != NULL && json_object_get(counts, state) != NULL)
			json_object_set_new(counts, state, json_integer(
			    json_integer_value(json_object_get(counts,
			    state)) + 1));
		if (n - i < limit)
			json_array_append(shown, d);
	}
	json_decref(all);
	return json_pack("{s:o, s:o}", "counts", counts, "deliveries", shown);
}

/* --- configuration and life ---------------------------------------------- */

static void
hooks_free(void)
{
	size_t	i;

	for (i = 0; i < wh.nhooks; i++)
		OPENSSL_cleanse(wh.hooks[i].secret, sizeof(wh.hooks[i].secret));
	free(wh.hooks);
	wh.hooks = NULL;
	wh.nhooks = 0;
}

static void
hooks_load(struct config *conf)
{
	const struct webhook_conf	*c;
	struct hook			*h;
	char				 err[256];
	ssize_t				 n;
	size_t				 i;

	hooks_free();
	wh.hooks = xcalloc(conf->notifications.nwebhooks + 1,
	    sizeof(*wh.hooks));
	for (i = 0; i < conf->notifications.nwebhooks; i++) {
		c = &conf->notifications.webhooks[i];
		h = &wh.hooks[wh.nhooks];
		h->conf = c;
		if (c->secret_file != NULL) {
			n = secret_read(c->secret_file, h->secret, SECRET_MAX,
			    err, sizeof(err));
			while (n > 0 && (h->secret[n - 1] == '\n' ||
			    h->secret[n - 1] == '\r'))
				n--;
			if (n < 16) {
				log_warnx("notifications.webhooks[%zu]: %s", i,
				    n < 0 ? err : "the secret needs at least "
				    "16 bytes; deliveries to it fail");
				OPENSSL_cleanse(h->secret, sizeof(h->secret));
				continue;
			}
			h->secretlen = n;
		}
		wh.nhooks++;
	}
}

void
webhook_reload(struct config *conf)
{
	struct config	*old;

	pthread_mutex_lock(&wh.mtx);
	old = wh.conf;
	wh.conf = conf_ref(conf);
	hooks_load(wh.conf);
	pthread_mutex_unlock(&wh.mtx);
	conf_unref(old);
	webhook_kick();
}

void
webhook_start(struct event_base *base, struct store *st,
    struct config *conf)
{
	wh.base = base;
	wh.st = st;
	wh.httpc = httpc_new(base);
	wh.kick = event_new(base, -1, 0, due_timer_cb, NULL);
	wh.timer = evtimer_new(base, due_timer_cb, NULL);
	webhook_reload(conf);
}

void
webhook_stop(void)
{
	size_t	i;

	if (wh.httpc != NULL)
		httpc_free(wh.httpc);	/* cancels, no callbacks */
	for (i = 0; i < INFLIGHT_MAX; i++) {
		json_decref(wh.flights[i].rec);
		wh.flights[i].rec = NULL;
	}
	if (wh.kick != NULL)
		event_free(wh.kick);
	if (wh.timer != NULL)
		event_free(wh.timer);
	pthread_mutex_lock(&wh.mtx);
	hooks_free();
	conf_unref(wh.conf);
	wh.conf = NULL;
	pthread_mutex_unlock(&wh.mtx);
	wh.httpc = NULL;
	wh.kick = wh.timer = NULL;
	wh.st = NULL;
}
