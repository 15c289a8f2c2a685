/*
 * shipper-queue.c: what log shipping keeps in the store: the durable
 * queue of ops and usage records (ship_queue), the dead-letter store
 * (ship_dead) and the audit cursor (ship_state); the queue limit policy.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "tenantd.h"
#include "shipper.h"

#define SHIP_DEAD_KEY_LEN	17	/* stream, time (8), seq (8) */
#define SHIP_RETRY_MAX		100000	/* dead letters re-sent per call */

/* One store write of the shipper, with what to do when it is durable. */
struct ship_commit {
	struct ship_recq	 recs[SHIP_NSTREAMS];
	size_t			 n[SHIP_NSTREAMS];
	uint64_t		 bytes[SHIP_NSTREAMS];
	int			 cursor;	/* a cursor write */
	struct ship_stream	*s;
};

static void
put_be64(uint8_t *p, uint64_t v)
{
	int	i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = v & 0xff;
}

static uint64_t
get_be64(const uint8_t *p)
{
	uint64_t	v = 0;
	int		i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

void
ship_key(uint8_t *k, enum ship_stream_id id, uint64_t seq)
{
	k[0] = (uint8_t)id;
	put_be64(k + 1, seq);
}

void
ship_pending_add(struct ship_stream *s, struct ship_rec *r)
{
	TAILQ_INSERT_TAIL(&s->pending, r, entry);
	s->pending_bytes += r->len;
}

void
ship_pending_remove(struct ship_stream *s, struct ship_rec *r)
{
	TAILQ_REMOVE(&s->pending, r, entry);
	s->pending_bytes -= r->len;
}

/* The age of the oldest record not yet shipped, for the lag metric. */
void
ship_update_oldest(struct ship_stream *s)
{
	struct ship_batch	*b;
	struct ship_rec		*r;
	uint64_t		 oldest = 0;

	if ((r = TAILQ_FIRST(&s->pending)) != NULL)
		oldest = r->wall_us;
	TAILQ_FOREACH(b, &s->sending, entry)
		if ((r = TAILQ_FIRST(&b->recs)) != NULL &&
		    (oldest == 0 || r->wall_us < oldest))
			oldest = r->wall_us;
	TAILQ_FOREACH(b, &s->retry, entry)
		if ((r = TAILQ_FIRST(&b->recs)) != NULL &&
		    (oldest == 0 || r->wall_us < oldest))
			oldest = r->wall_us;
	SHIP_SET(s->c.oldest_us, oldest);
}

static void
ship_count_queued(struct ship_stream *s, int64_t records, int64_t bytes)
{
	SHIP_SET(s->c.queue_records, s->c.queue_records + records);
	SHIP_SET(s->c.queue_bytes, s->c.queue_bytes + bytes);
}

static int
ship_load_cb(const void *key, size_t keylen, const void *val, size_t len,
    void *arg)
{
	struct ship_stream	*s = arg;
	struct ship_rec		*r;
	uint64_t		 seq;

	if (keylen != SHIP_KEY_LEN)
		return 0;
	seq = get_be64((const uint8_t *)key + 1);
	r = ship_rec_new(seq, SHIP_FROM_QUEUE, val, len);
	/* a backlog: old enough to go without waiting for the flush timer */
	r->wall_us -= shipper->ls->flush_interval * 1000;
	ship_pending_add(s, r);
	ship_count_queued(s, 1, (int64_t)len);
	s->next_seq = seq + 1;
	return 0;
}

static int
ship_dead_count_cb(const void *key, size_t keylen, const void *val,
    size_t len, void *arg)
{
	struct ship_stream	*s = arg;

	s->c.dead_records++;
	return 0;
}

static void
ship_cursor_load(struct ship_stream *s)
{
	char	*val = NULL, key[32];
	size_t	 len;

	snprintf(key, sizeof(key), "cursor/%s", shipper_stream_name(s->id));
	if (store_get(shipper->st, SHIP_DB_STATE, key, strlen(key),
	    (void **)&val, &len) == STORE_OK) {
		val = xreallocarray(val, len + 1, 1);
		val[len] = '\0';
		s->c.cursor = s->cursor_saved = strtoull(val, NULL, 10);
	}
	free(val);
	s->read_seq = s->c.cursor;
}

/* Records left by an earlier run, in order; and what is dead-lettered. */
int
ship_queue_load(struct ship_stream *s)
{
	uint8_t	prefix = (uint8_t)s->id;
	int	rv;

	s->next_seq = 1;
	rv = store_scan(shipper->st, SHIP_DB_QUEUE, &prefix, 1, ship_load_cb,
	    s);
	if (store_scan(shipper->st, SHIP_DB_DEAD, &prefix, 1,
	    ship_dead_count_cb, s) != STORE_OK)
		rv = -1;
	if (s->id == SHIP_AUDIT)
		ship_cursor_load(s);
	if (s->c.queue_records > 0)
		log_info("log shipping: %llu %s records from before the "
		    "restart are queued", (unsigned long long)s->c.queue_records,
		    shipper_stream_name(s->id));
	ship_update_oldest(s);
	return rv == STORE_OK ? 0 : -1;
}

static void
ship_report_drops(struct ship_stream *s, uint64_t n)
{
	uint64_t	now = now_usec();

	SHIP_BUMP(s->c.dropped, n);
	s->drops_unreported += n;
	if (s->last_warn_us != 0 && now - s->last_warn_us < SHIP_LOG_EVERY_US)
		return;
	s->last_warn_us = now;
	shipper_notice_dropped(s->id, s->drops_unreported, s->c.dropped);
	s->drops_unreported = 0;
}

static void
ship_commit_done(int status, void *arg)
{
	struct ship_commit	*cm = arg;
	struct ship_stream	*s;
	struct ship_rec		*r;
	size_t			 i;

	shipper->commits--;
	for (i = 0; i < SHIP_NSTREAMS; i++) {
		s = &shipper->streams[i];
		s->committing_bytes -= cm->bytes[i];
		while ((r = TAILQ_FIRST(&cm->recs[i])) != NULL) {
			TAILQ_REMOVE(&cm->recs[i], r, entry);
			if (status != STORE_OK) {
				free(r);
				continue;
			}
			ship_pending_add(s, r);
			ship_count_queued(s, 1, (int64_t)r->len);
		}
		if (status == STORE_OK)
			SHIP_BUMP(s->c.enqueued, cm->n[i]);
		else if (cm->n[i] > 0) {
			ship_log_muted(LOG_LEVEL_WARN, "log shipping: %zu %s "
			    "records could not be queued: %s", cm->n[i],
			    shipper_stream_name(i), store_strerror(status));
			ship_report_drops(s, cm->n[i]);
		}
	}
	if (cm->cursor) {
		cm->s->cursor_writing = 0;
		if (status == STORE_OK)
			SHIP_SET(cm->s->c.cursor, cm->s->cursor_saved);
	}
	free(cm);
	if (shipper->stopping && shipper->commits == 0)
		event_base_loopbreak(shipper->base);
	else
		ship_send_all(0);
}

static void
ship_commit_submit(struct store_batch *b, struct ship_commit *cm)
{
	int	rv;

	shipper->commits++;
	if ((rv = store_submit(b, shipper->base, ship_commit_done, cm)) !=
	    STORE_OK)
		ship_commit_done(rv, cm);
}

static struct ship_commit *
ship_commit_new(void)
{
	struct ship_commit	*cm = xcalloc(1, sizeof(*cm));
	size_t			 i;

	for (i = 0; i < SHIP_NSTREAMS; i++)
		TAILQ_INIT(&cm->recs[i]);
	return cm;
}

/*
 * The oldest record not in flight, taken out: from the batches waiting to
 * be retried (they hold the oldest during an outage), else pending.
 */
static struct ship_rec *
ship_oldest_idle(struct ship_stream *s)
{
	struct ship_batch	*b;
	struct ship_rec		*r;

	while ((b = TAILQ_FIRST(&s->retry)) != NULL) {
		if ((r = TAILQ_FIRST(&b->recs)) != NULL) {
			TAILQ_REMOVE(&b->recs, r, entry);
			b->bytes -= r->len + (b->nrecs > 1);
			b->nrecs--;
			return r;
		}
		TAILQ_REMOVE(&s->retry, b, entry);
		ship_batch_free(b);
	}
	if ((r = TAILQ_FIRST(&s->pending)) != NULL)
		ship_pending_remove(s, r);
	return r;
}

/* Make room under the limit: drop the oldest idle records, then new. */
static void
ship_enforce_limit(struct ship_stream *s, struct ship_recq *recs,
    size_t *n, uint64_t *bytes, struct store_batch *b)
{
	struct ship_rec	*r;
	uint8_t		 key[SHIP_KEY_LEN];
	uint64_t	 dropped = 0, limit = s->conf->queue_limit;

	while (s->c.queue_bytes + s->committing_bytes + *bytes > limit &&
	    (r = ship_oldest_idle(s)) != NULL) {
		ship_key(key, s->id, r->seq);
		store_batch_del(b, SHIP_DB_QUEUE, key, sizeof(key));
		ship_count_queued(s, -1, -(int64_t)r->len);
		free(r);
		dropped++;
	}
	while (s->c.queue_bytes + s->committing_bytes + *bytes > limit &&
	    (r = TAILQ_FIRST(recs)) != NULL) {
		TAILQ_REMOVE(recs, r, entry);
		*bytes -= r->len;
		(*n)--;
		free(r);
		dropped++;
	}
	if (dropped > 0)
		ship_report_drops(s, dropped);
}

/* Queue n new records durably; they become sendable once committed. */
void
ship_queue_commit(struct ship_stream *s, struct ship_recq *recs, size_t n)
{
	struct ship_commit	*cm = ship_commit_new();
	struct store_batch	*b = store_batch_new(shipper->st);
	struct ship_rec		*r;
	uint8_t			 key[SHIP_KEY_LEN];
	uint64_t		 bytes = 0;

	TAILQ_FOREACH(r, recs, entry)
		bytes += r->len;
	ship_enforce_limit(s, recs, &n, &bytes, b);
	TAILQ_FOREACH(r, recs, entry) {
		ship_key(key, s->id, r->seq);
		store_batch_put(b, SHIP_DB_QUEUE, key, sizeof(key), r->json,
		    r->len);
	}
	TAILQ_CONCAT(&cm->recs[s->id], recs, entry);
	cm->n[s->id] = n;
	cm->bytes[s->id] = bytes;
	s->committing_bytes += bytes;
	ship_commit_submit(b, cm);
}

static void ship_cursor_save(struct ship_stream *);
static void ship_window_ack(struct ship_stream *, uint64_t seq);

/* Records leave the queue: delete their copies, move the cursor. */
static void
ship_release(struct ship_stream *s, struct ship_recq *recs,
    struct store_batch *b)
{
	struct ship_rec	*r;
	uint8_t		 key[SHIP_KEY_LEN];
	int		 cursor = 0;

	while ((r = TAILQ_FIRST(recs)) != NULL) {
		TAILQ_REMOVE(recs, r, entry);
		if (r->origin == SHIP_FROM_QUEUE) {
			ship_key(key, s->id, r->seq);
			store_batch_del(b, SHIP_DB_QUEUE, key, sizeof(key));
			ship_count_queued(s, -1, -(int64_t)r->len);
		} else {
			ship_window_ack(s, r->seq);
			s->win_bytes -= r->len;
			cursor = 1;
		}
		free(r);
	}
	if (cursor)
		ship_cursor_save(s);
}

void
ship_queue_ack(struct ship_stream *s, struct ship_recq *recs)
{
	struct store_batch	*b = store_batch_new(shipper->st);

	ship_release(s, recs, b);
	ship_commit_submit(b, ship_commit_new());
}

static char *
ship_dead_value(struct ship_stream *s, const struct ship_rec *r,
    long status, const char *body, size_t body_len)
{
	char	ts[40], *text;
	json_t	*v, *resp;

	format_iso8601(ts, sizeof(ts), wall_usec());
	resp = json_stringn(body, MINIMUM(body_len,
	    (size_t)SHIP_DEAD_BODY_MAX));
	if (resp == NULL)	/* not UTF-8, or cut inside a character */
		resp = json_string("(response body not shown: not UTF-8)");
	v = json_pack("{s:s, s:i, s:o, s:s, s:s%}", "stream",
	    shipper_stream_name(s->id), "status", (int)status, "response",
	    resp, "time", ts, "record", r->json, r->len);
	text = v != NULL ? json_dumps(v, JSON_COMPACT) : NULL;
	json_decref(v);
	return text;
}

/* Park records Azure refused (or that can never fit), with the answer. */
void
ship_dead_letter(struct ship_stream *s, struct ship_recq *recs, long status,
    const char *body, size_t body_len)
{
	struct store_batch	*b = store_batch_new(shipper->st);
	struct ship_rec		*r;
	uint8_t			 key[SHIP_DEAD_KEY_LEN];
	uint64_t		 now = wall_usec(), n = 0;
	char			*val;

	TAILQ_FOREACH(r, recs, entry) {
		key[0] = (uint8_t)s->id;
		put_be64(key + 1, now);
		put_be64(key + 9, r->seq);
		if ((val = ship_dead_value(s, r, status, body, body_len)) ==
		    NULL)
			continue;
		store_batch_put(b, SHIP_DB_DEAD, key, sizeof(key), val,
		    strlen(val));
		free(val);
		n++;
	}
	SHIP_BUMP(s->c.dead, n);
	SHIP_BUMP(s->c.dead_records, n);
	ship_log_muted(LOG_LEVEL_WARN, "log shipping: %llu %s records moved "
	    "to the dead-letter store (HTTP %ld); see tenantctl shipping "
	    "status", (unsigned long long)n, shipper_stream_name(s->id),
	    status);
	ship_release(s, recs, b);
	ship_commit_submit(b, ship_commit_new());
}

/* Re-send: dead letters go back to their stream's queue. */
struct ship_retry_ctx {
	struct ship_commit	*cm;
	struct store_batch	*b;
	size_t			 count;
};

static int
ship_dead_retry_cb(const void *key, size_t keylen, const void *val,
    size_t len, void *arg)
{
	struct ship_retry_ctx	*rc = arg;
	struct ship_stream	*s;
	struct ship_rec		*r;
	json_t			*v = json_loadb(val, len, 0, NULL);
	const char		*rec = json_string_value(json_object_get(v,
				    "record"));
	uint8_t			 qkey[SHIP_KEY_LEN];
	uint8_t			 id = *(const uint8_t *)key;

	if (rc->count >= SHIP_RETRY_MAX) {
		json_decref(v);
		return 1;
	}
	store_batch_del(rc->b, SHIP_DB_DEAD, key, keylen);
	if (rec != NULL && id < SHIP_NSTREAMS) {
		s = &shipper->streams[id];
		r = ship_rec_new(s->next_seq++, SHIP_FROM_QUEUE, rec,
		    strlen(rec));
		ship_key(qkey, s->id, r->seq);
		store_batch_put(rc->b, SHIP_DB_QUEUE, qkey, sizeof(qkey),
		    r->json, r->len);
		TAILQ_INSERT_TAIL(&rc->cm->recs[id], r, entry);
		rc->cm->n[id]++;
		rc->cm->bytes[id] += r->len;
		s->committing_bytes += r->len;
		SHIP_SET(s->c.dead_records, s->c.dead_records - 1);
	}
	rc->count++;
	json_decref(v);
	return 0;
}

void
ship_dead_retry(void)
{
	struct ship_retry_ctx	rc;

	rc.cm = ship_commit_new();
	rc.b = store_batch_new(shipper->st);
	rc.count = 0;
	if (store_scan(shipper->st, SHIP_DB_DEAD, NULL, 0, ship_dead_retry_cb,
	    &rc) != STORE_OK)
		log_warnx("log shipping: reading the dead-letter store failed");
	log_info("log shipping: %zu dead-lettered records queued again",
	    rc.count);
	ship_commit_submit(rc.b, rc.cm);
}

/* The cursor window: seqs read, in order; the cursor is the acked run. */
static void
ship_window_push(struct ship_window *w, uint64_t seq)
{
	size_t	n = w->tail - w->head;

	if (w->head > 0 && w->tail == w->cap) {
		memmove(w->seq, w->seq + w->head, n * sizeof(*w->seq));
		memmove(w->acked, w->acked + w->head, n);
		w->head = 0;
		w->tail = n;
	}
	if (w->tail == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 1024;
		w->seq = xreallocarray(w->seq, w->cap, sizeof(*w->seq));
		w->acked = xreallocarray(w->acked, w->cap, 1);
	}
	w->seq[w->tail] = seq;
	w->acked[w->tail++] = 0;
}

static void
ship_window_ack(struct ship_stream *s, uint64_t seq)
{
	struct ship_window	*w = &s->win;
	size_t			 lo = w->head, hi = w->tail, mid;

	while (lo < hi) {		/* seqs are increasing */
		mid = lo + (hi - lo) / 2;
		if (w->seq[mid] < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < w->tail && w->seq[lo] == seq)
		w->acked[lo] = 1;
	while (w->head < w->tail && w->acked[w->head])
		s->cursor_saved = w->seq[w->head++];
}

static void
ship_cursor_save(struct ship_stream *s)
{
	struct store_batch	*b;
	struct ship_commit	*cm;
	char			 key[32], val[32];

	if (s->cursor_writing || s->cursor_saved == SHIP_READ(s->c.cursor))
		return;
	snprintf(key, sizeof(key), "cursor/%s", shipper_stream_name(s->id));
	snprintf(val, sizeof(val), "%llu",
	    (unsigned long long)s->cursor_saved);
	b = store_batch_new(shipper->st);
	store_batch_put(b, SHIP_DB_STATE, key, strlen(key), val, strlen(val));
	cm = ship_commit_new();
	cm->cursor = 1;
	cm->s = s;
	s->cursor_writing = 1;
	ship_commit_submit(b, cm);
}

static void
ship_cursor_emit(void *ctx, uint64_t seq, const char *json, size_t len)
{
	struct ship_stream	*s = ctx;
	struct ship_rec		*r;

	if (seq <= s->read_seq)
		return;
	r = ship_rec_new(seq, SHIP_FROM_CURSOR, json, len);
	s->read_seq = seq;
	s->win_bytes += len;
	ship_window_push(&s->win, seq);
	ship_pending_add(s, r);
}

/* Read from the source while the window is under the stream's limit. */
void
ship_cursor_read(struct ship_stream *s)
{
	const struct ship_source	*src = shipper->source;

	if (src == NULL || s->win_bytes >= s->conf->queue_limit / 2)
		return;
	if (src->read(src->arg, s->read_seq, s->conf->queue_limit / 2 -
	    s->win_bytes, ship_cursor_emit, s) == -1)
		ship_log_muted(LOG_LEVEL_WARN, "log shipping: reading the %s "
		    "failed", src->name);
	SHIP_SET(s->c.queue_bytes, s->win_bytes);
}

/*
 * The audit stream's source: the audit log's read API (branch audit).
 * Until it is merged there is no audit log to read, and the stream waits.
 */
const struct ship_source *
ship_audit_source(void)
{
	return NULL;
}
