/*
 * shipper-send.c: batches (at most max_batch_size of JSON, then gzip),
 * at most max_in_flight requests per stream, and what each answer means:
 * acknowledge, retry with backoff, refresh the token, split, dead-letter.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "tenantd.h"
#include "shipper.h"

#define SHIP_GZIP_LEVEL		6
#define SHIP_RETRY_AFTER_MAX	3600	/* s */
#define SHIP_DEGRADED_AFTER	3	/* failures in a row */

enum ship_action {
	SHIP_ACK,
	SHIP_RETRY,	/* transport, 408, 429, 5xx: back off */
	SHIP_AUTH,	/* 401: refresh the token once */
	SHIP_SPLIT,	/* 413: halves */
	SHIP_DEAD,	/* 400, 403, 404, other 4xx */
};

static const struct {
	long			lo, hi;
	enum ship_action	action;
} ship_answers[] = {
	{ 200, 299, SHIP_ACK },
	{ 401, 401, SHIP_AUTH },
	{ 408, 408, SHIP_RETRY },
	{ 413, 413, SHIP_SPLIT },
	{ 429, 429, SHIP_RETRY },
	{ 400, 499, SHIP_DEAD },
	{ 500, 599, SHIP_RETRY },
};

const double ship_hist_le[12] = {
	0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
};

static int	ship_degraded;

static enum ship_action
ship_classify(const struct httpc_response *resp)
{
	size_t	i;

	if (resp->error != HTTPC_OK)
		return SHIP_RETRY;
	for (i = 0; i < nitems(ship_answers); i++)
		if (resp->status >= ship_answers[i].lo &&
		    resp->status <= ship_answers[i].hi)
			return ship_answers[i].action;
	return SHIP_RETRY;
}

void
ship_batch_free(struct ship_batch *b)
{
	struct ship_rec	*r;

	while ((r = TAILQ_FIRST(&b->recs)) != NULL) {
		TAILQ_REMOVE(&b->recs, r, entry);
		free(r);
	}
	if (b->xfer != NULL)
		httpc_cancel(b->xfer);
	if (b->waiting_token && shipper->cred != NULL)
		ship_cred_cancel(shipper->cred, b);
	freezero_str(b->token);
	free(b);
}

static struct ship_batch *
ship_batch_new(struct ship_stream *s)
{
	struct ship_batch	*b = xcalloc(1, sizeof(*b));

	b->s = s;
	TAILQ_INIT(&b->recs);
	b->bytes = 2;		/* "[" and "]" */
	return b;
}

static void
ship_batch_add(struct ship_batch *b, struct ship_rec *r)
{
	b->bytes += r->len + (b->nrecs > 0);
	b->nrecs++;
	TAILQ_INSERT_TAIL(&b->recs, r, entry);
}

/* A record that can never fit a request goes to the dead letters. */
static void
ship_dead_alone(struct ship_stream *s, struct ship_rec *r)
{
	struct ship_recq	one;
	static const char	msg[] = "record exceeds log_shipping."
				    "max_batch_size";

	TAILQ_INIT(&one);
	TAILQ_INSERT_TAIL(&one, r, entry);
	ship_dead_letter(s, &one, 413, msg, sizeof(msg) - 1);
}

/* Up to max_batch_size bytes of JSON from the oldest pending records. */
static struct ship_batch *
ship_batch_take(struct ship_stream *s)
{
	struct ship_batch	*b = ship_batch_new(s);
	struct ship_rec		*r;
	size_t			 limit = shipper->ls->max_batch_size;

	while ((r = TAILQ_FIRST(&s->pending)) != NULL) {
		if (r->len + 2 > limit) {
			ship_pending_remove(s, r);
			ship_dead_alone(s, r);
			continue;
		}
		if (b->bytes + r->len + (b->nrecs > 0) > limit)
			break;
		ship_pending_remove(s, r);
		ship_batch_add(b, r);
	}
	if (b->nrecs == 0) {
		ship_batch_free(b);
		return NULL;
	}
	return b;
}

static char *
ship_batch_json(const struct ship_batch *b, size_t *len)
{
	struct ship_rec	*r;
	char		*out = xmalloc(b->bytes), *p = out;

	*p++ = '[';
	TAILQ_FOREACH(r, &b->recs, entry) {
		if (p != out + 1)
			*p++ = ',';
		memcpy(p, r->json, r->len);
		p += r->len;
	}
	*p++ = ']';
	*len = p - out;
	return out;
}

static void
ship_observe(uint64_t us)
{
	struct shipper	*sh = shipper;
	double		 secs = us / 1e6;
	size_t		 i;

	for (i = 0; i < nitems(sh->hist); i++)
		if (secs <= ship_hist_le[i])
			SHIP_BUMP(sh->hist[i], 1);
	SHIP_BUMP(sh->hist_count, 1);
	SHIP_BUMP(sh->hist_sum_us, us);
}

static void
ship_set_degraded(int degraded, const char *detail)
{
	if (degraded == ship_degraded)
		return;
	ship_degraded = degraded;
	ready_set("shipping", degraded ? READY_DEGRADED : READY_OK, detail);
}

static uint64_t
ship_backoff_ms(struct ship_stream *s, const struct httpc_response *resp)
{
	const char	*ra = resp != NULL && resp->status > 0 ?
			    httpc_response_header(resp, "Retry-After") : NULL;
	uint64_t	 cap = shipper->ls->retry_max_delay, ms;
	long long	 secs;
	char		*end;

	if (ra != NULL) {
		secs = strtoll(ra, &end, 10);
		if (end != ra && secs >= 0)
			return (uint64_t)MINIMUM(secs, SHIP_RETRY_AFTER_MAX) *
			    1000;
	}
	ms = (uint64_t)SHIP_RETRY_BASE_MS << MINIMUM(s->attempt - 1, 20);
	ms = MINIMUM(ms, cap);
	return ms / 2 + arc4random_uniform((uint32_t)(ms / 2) + 1);
}

/* The batch goes back to the front of the line; the stream waits. */
static void
ship_batch_retry(struct ship_batch *b, const struct httpc_response *resp,
    const char *why)
{
	struct ship_stream	*s = b->s;
	uint64_t		 ms, now = now_usec();

	SHIP_BUMP(s->c.failed, b->nrecs);
	s->attempt++;
	ms = ship_backoff_ms(s, resp);
	s->not_before_us = MAXIMUM(s->not_before_us, now + ms * 1000);
	freezero_str(b->token);
	b->token = NULL;
	TAILQ_INSERT_HEAD(&s->retry, b, entry);
	if (s->attempt >= SHIP_DEGRADED_AFTER)
		ship_set_degraded(1, "Azure Monitor is not accepting logs; "
		    "records stay queued");
	if (now - s->last_warn_us < SHIP_LOG_EVERY_US && s->attempt > 1)
		return;
	s->last_warn_us = now;
	log_warnx("log shipping: sending %zu %s records failed (%s); "
	    "retrying in %llu ms", b->nrecs, shipper_stream_name(s->id), why,
	    (unsigned long long)ms);
}

static void
ship_batch_split(struct ship_batch *b)
{
	struct ship_stream	*s = b->s;
	struct ship_batch	*second = ship_batch_new(s);
	struct ship_rec		*r;
	size_t			 half = b->nrecs / 2, i;

	/* keep the first half in b, in order */
	for (i = 0, r = TAILQ_FIRST(&b->recs); i < half; i++)
		r = TAILQ_NEXT(r, entry);
	while (r != NULL) {
		struct ship_rec	*next = TAILQ_NEXT(r, entry);

		TAILQ_REMOVE(&b->recs, r, entry);
		b->bytes -= r->len + 1;
		b->nrecs--;
		ship_batch_add(second, r);
		r = next;
	}
	freezero_str(b->token);
	b->token = NULL;
	TAILQ_INSERT_HEAD(&s->retry, second, entry);
	TAILQ_INSERT_HEAD(&s->retry, b, entry);
}

static void
ship_answer(struct ship_batch *b, const struct httpc_response *resp,
    enum ship_action action, const char *why)
{
	struct ship_stream	*s = b->s;

	switch (action) {
	case SHIP_ACK:
		SHIP_BUMP(s->c.shipped, b->nrecs);
		SHIP_SET(s->c.last_success_us, wall_usec());
		s->attempt = 0;
		ship_queue_ack(s, &b->recs);
		ship_batch_free(b);
		break;
	case SHIP_AUTH:
		if (!b->auth_retried && shipper->cred != NULL) {
			ship_cred_rejected(shipper->cred, b->token);
			b->auth_retried = 1;
			freezero_str(b->token);
			b->token = NULL;
			TAILQ_INSERT_HEAD(&s->retry, b, entry);
		} else
			ship_batch_retry(b, resp, why);
		break;
	case SHIP_SPLIT:
		if (b->nrecs > 1) {
			ship_batch_split(b);
			break;
		}
		/* FALLTHROUGH */
	case SHIP_DEAD:
		ship_dead_letter(s, &b->recs, resp->status, resp->body,
		    resp->body_len);
		ship_batch_free(b);
		break;
	case SHIP_RETRY:
		ship_batch_retry(b, resp, why);
		break;
	}
}

static void
ship_response_cb(const struct httpc_response *resp, void *arg)
{
	struct ship_batch	*b = arg;
	struct ship_stream	*s = b->s;
	char			 why[160];

	b->xfer = NULL;
	ship_observe(now_usec() - b->started_us);
	TAILQ_REMOVE(&s->sending, b, entry);
	s->inflight--;
	if (resp->error != HTTPC_OK)
		snprintf(why, sizeof(why), "%s: %s",
		    httpc_error_name(resp->error), resp->errmsg);
	else
		snprintf(why, sizeof(why), "HTTP %ld", resp->status);
	ship_answer(b, resp, ship_classify(resp), why);
	ship_update_oldest(s);
	ship_send_all(0);
}

/* A batch that never got an answer (no token, request not started). */
static void
ship_batch_unsent(struct ship_batch *b, const char *why)
{
	struct ship_stream	*s = b->s;

	TAILQ_REMOVE(&s->sending, b, entry);
	s->inflight--;
	ship_batch_retry(b, NULL, why);
}

static void
ship_batch_post(struct ship_batch *b, const char *token)
{
	struct shipper		*sh = shipper;
	struct ship_request	 r;
	struct httpc_request	 req;
	char			*json;
	void			*gz = NULL;
	size_t			 len, gzlen = 0;
	int			 gzip = sh->ls->api == SHIP_API_LOGS_INGESTION;

	json = ship_batch_json(b, &len);
	if (gzip && ship_gzip(json, len, SHIP_GZIP_LEVEL, &gz, &gzlen) == -1)
		gzip = 0;
	if (ship_request_build(sh->ls, b->s->conf->name, token,
	    sh->shared_key, sh->shared_key_len, gzip ? gzlen : len, gzip,
	    &r) == -1) {
		free(json);
		free(gz);
		ship_batch_unsent(b, "cannot build the request");
		return;
	}
	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.url = r.url;
	req.headers = (const char *const *)r.headers;
	req.body = gzip ? gz : json;
	req.body_len = gzip ? gzlen : len;
	req.timeout_ms = sh->ls->request_timeout;
	req.ca_file = sh->ls->ca_file;
	req.max_body = 64 * 1024;
	if (strncmp(r.url, "http://", 7) == 0)
		req.flags = HTTPC_ALLOW_HTTP;	/* loopback, by the schema */
	b->token = token != NULL ? xstrdup(token) : NULL;
	b->started_us = now_usec();
	b->xfer = httpc_start(sh->hc, &req, ship_response_cb, b);
	ship_request_free(&r);
	free(json);
	free(gz);
	if (b->xfer == NULL)
		ship_batch_unsent(b, "request not started");
}

static void
ship_token_cb(const char *token, const char *error, void *arg)
{
	struct ship_batch	*b = arg;

	b->waiting_token = 0;
	if (token == NULL)
		ship_batch_unsent(b, error != NULL ? error : "no token");
	else
		ship_batch_post(b, token);
}

static void
ship_batch_start(struct ship_batch *b)
{
	struct ship_stream	*s = b->s;

	s->inflight++;
	TAILQ_INSERT_TAIL(&s->sending, b, entry);
	if (shipper->cred == NULL) {
		ship_batch_post(b, NULL);
		return;
	}
	b->waiting_token = 1;
	ship_cred_get(shipper->cred, ship_token_cb, b);
}

/* Start what the stream may send now; force: partial batches too. */
static void
ship_send_stream(struct ship_stream *s, int force)
{
	struct ship_batch	*b;
	size_t			 max = (size_t)shipper->ls->max_in_flight;

	struct ship_rec		*first;

	if (!s->conf->enabled || now_usec() < s->not_before_us)
		return;
	/* flush by size, by the timer, or once the oldest has waited */
	if ((first = TAILQ_FIRST(&s->pending)) != NULL && first->wall_us +
	    shipper->ls->flush_interval * 1000 <= wall_usec())
		force = 1;
	while (s->inflight < max) {
		if ((b = TAILQ_FIRST(&s->retry)) != NULL) {
			TAILQ_REMOVE(&s->retry, b, entry);
			if (b->nrecs == 0) {	/* emptied by the limit */
				ship_batch_free(b);
				continue;
			}
		} else if (TAILQ_EMPTY(&s->pending) || (!force &&
		    s->pending_bytes < shipper->ls->max_batch_size))
			break;
		else if ((b = ship_batch_take(s)) == NULL)
			continue;
		ship_batch_start(b);
		if (now_usec() < s->not_before_us)
			break;		/* it failed at once */
	}
}

/* Wake up when the earliest backoff ends. */
static void
ship_schedule_retry(void)
{
	uint64_t	now = now_usec(), next = 0, d;
	struct timeval	tv;
	size_t		i;

	for (i = 0; i < SHIP_NSTREAMS; i++) {
		d = shipper->streams[i].not_before_us;
		if (d > now && (next == 0 || d < next))
			next = d;
	}
	if (next == 0)
		return;
	d = next - now + 1000;
	tv.tv_sec = d / 1000000;
	tv.tv_usec = d % 1000000;
	evtimer_add(shipper->ev_retry, &tv);
}

void
ship_send_all(int force)
{
	size_t	i;
	int	failing = 0;

	if (shipper == NULL || shipper->stopping)
		return;
	for (i = 0; i < SHIP_NSTREAMS; i++) {
		ship_send_stream(&shipper->streams[i], force);
		ship_update_oldest(&shipper->streams[i]);
		if (shipper->streams[i].attempt >= SHIP_DEGRADED_AFTER)
			failing = 1;
	}
	if (!failing)
		ship_set_degraded(0, "shipping");
	ship_schedule_retry();
}

static void
ship_batchq_free(struct ship_batchq *q)
{
	struct ship_batch	*b;

	while ((b = TAILQ_FIRST(q)) != NULL) {
		TAILQ_REMOVE(q, b, entry);
		ship_batch_free(b);
	}
}

/* At stop: the records stay in the store for the next start. */
void
ship_stream_drain_free(struct ship_stream *s)
{
	struct ship_rec	*r;

	ship_batchq_free(&s->sending);
	ship_batchq_free(&s->retry);
	while ((r = TAILQ_FIRST(&s->pending)) != NULL) {
		TAILQ_REMOVE(&s->pending, r, entry);
		free(r);
	}
	free(s->win.seq);
	free(s->win.acked);
}
