/*
 * vault-client.c: tenantd's connection to tenantd-vault on the main event
 * loop: reconnection with backoff, requests matched to answers by id, and
 * the durable queue of puts (database vault_pending in tenantd's store)
 * that is delivered whenever the vault is reachable.
 */
#include "config.h"

#include <sys/queue.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "tenantd.h"

#define BACKOFF_MIN_MS		100
#define BACKOFF_MAX_MS		30000
#define DELIVER_BATCH		64
#define PENDING_KEY_LEN		16

struct vc_request {
	TAILQ_ENTRY(vc_request)	 entry;
	json_int_t		 id;
	uint64_t		 sent_us;
	vault_done_fn		 cb;		/* NULL: a queued put */
	void			*arg;
	char			 key[PENDING_KEY_LEN + 1];
};
TAILQ_HEAD(vc_requests, vc_request);

static struct {
	struct event_base	*base;
	struct config		*conf;
	SSL_CTX			*ctx;
	struct bufferevent	*bev;
	int			 connected;
	uint64_t		 down_since;	/* monotonic us; 0: up */
	int			 down_noticed;
	int			 was_up;	/* log transitions only */
	struct event		*ev_retry, *ev_tick;
	uint64_t		 backoff_ms;
	struct vc_requests	 inflight;
	json_int_t		 next_id;
	uint64_t		 seq;		/* keys of vault_pending */
	int64_t			 pending;	/* atomic */
	int			 delivering;
	size_t			 outstanding;
	int			 retry_later;
	struct store_batch	*acked;
	size_t			 nacked;
	char			 error[160];
} vc;

static void	vc_connect(void);
static void	deliver_kick(void);

#define VAULT_DOWN_NOTICE_US	(5 * 60 * 1000000ULL)

/* Customers are told when the vault has been unreachable for 5 minutes. */
static void
vc_notice(void)
{
	uint64_t	now = now_usec();

	if (vc.connected) {
		if (vc.down_noticed)
			notice_publish_system("incident", "info",
			    "Pseudonym vault reachable again", "tenantd is "
			    "connected to its pseudonym vault again; queued "
			    "identity mappings are being delivered.");
		vc.down_since = 0;
		vc.down_noticed = 0;
		return;
	}
	if (vc.down_since == 0)
		vc.down_since = now;
	else if (!vc.down_noticed && now - vc.down_since >=
	    VAULT_DOWN_NOTICE_US) {
		vc.down_noticed = 1;
		notice_publish_system("incident", "warning",
		    "Pseudonym vault unreachable", "tenantd has not reached "
		    "its pseudonym vault for 5 minutes. The service keeps "
		    "running; new identity mappings are queued durably and "
		    "delivered when the vault is back.");
	}
}

static void
vc_ready(void)
{
	char	detail[320];

	vc_notice();
	snprintf(detail, sizeof(detail), "%s %s; %lld puts pending",
	    vc.connected ? "connected to" : "unreachable:",
	    vc.connected ? vc.conf->vault.address : vc.error,
	    (long long)__atomic_load_n(&vc.pending, __ATOMIC_RELAXED));
	ready_set("vault", vc.connected ? READY_OK : READY_DEGRADED, detail);
}

/* --- requests ------------------------------------------------------------ */

static int
vc_send(json_t *req, vault_done_fn cb, void *arg, const char *key)
{
	struct vc_request	*r;

	if (!vc.connected) {
		json_decref(req);
		return -1;
	}
	r = xcalloc(1, sizeof(*r));
	r->id = ++vc.next_id;
	r->sent_us = now_usec();
	r->cb = cb;
	r->arg = arg;
	if (key != NULL)
		strlcpy(r->key, key, sizeof(r->key));
	json_object_set_new(req, "id", json_integer(r->id));
	if (vault_frame_add(bufferevent_get_output(vc.bev), req) == -1) {
		free(r);
		json_decref(req);
		return -1;
	}
	json_decref(req);
	TAILQ_INSERT_TAIL(&vc.inflight, r, entry);
	return 0;
}

static void
vc_finish(struct vc_request *r, json_t *answer, const char *error)
{
	const char	*e = error;
	int		 ok = answer != NULL &&
			    json_is_true(json_object_get(answer, "ok"));

	if (answer != NULL && !ok)
		e = json_string_value(json_object_get(answer, "error"));
	if (r->cb != NULL)
		r->cb(ok ? 0 : -1, ok ? answer : NULL, ok ? NULL :
		    e != NULL ? e : "vault error", r->arg);
	free(r);
}

/* --- the queue of puts ------------------------------------------------------ */

static void
acked_committed(int status, void *arg)
{
	size_t	n = (size_t)(uintptr_t)arg;

	if (status != STORE_OK)
		log_warnx("vault: removing delivered puts from the queue: %s",
		    store_strerror(status));
	else
		__atomic_sub_fetch(&vc.pending, (int64_t)n, __ATOMIC_RELAXED);
	vc.delivering = 0;
	vc_ready();
	if (vc.retry_later || status != STORE_OK) {
		vc.retry_later = 0;
		return;		/* the next connection or put tries again */
	}
	deliver_kick();
}

/* Every answer of a delivery batch is in: drop what the vault has. */
static void
deliver_end(void)
{
	struct store_batch	*b = vc.acked;
	size_t			 n = vc.nacked;

	vc.acked = NULL;
	vc.nacked = 0;
	if (n == 0) {
		if (b != NULL)
			store_batch_free(b);
		acked_committed(STORE_OK, 0);
		return;
	}
	if (store_submit(b, vc.base, acked_committed,
	    (void *)(uintptr_t)n) != STORE_OK)
		acked_committed(STORE_IO, 0);
}

static void
delivered(struct vc_request *r, json_t *answer)
{
	const char	*error = NULL;

	if (answer != NULL && !json_is_true(json_object_get(answer, "ok"))) {
		error = json_string_value(json_object_get(answer, "error"));
		if (json_is_true(json_object_get(answer, "retry")))
			answer = NULL;
		else
			log_warnx("vault: refused a queued put (%s); dropped",
			    error ? error : "no reason");
	}
	if (answer != NULL) {
		if (vc.acked == NULL)
			vc.acked = store_batch_new(daemon_store());
		store_batch_del(vc.acked, DAEMON_DB_VAULT_PENDING, r->key,
		    PENDING_KEY_LEN);
		vc.nacked++;
	} else
		vc.retry_later = 1;
	free(r);
	if (--vc.outstanding == 0)
		deliver_end();
}

struct deliver_scan {
	size_t	n;
};

static int
deliver_one(const void *key, size_t keylen, const void *val, size_t len,
    void *arg)
{
	struct deliver_scan	*ds = arg;
	json_t			*rec, *req;
	char			 k[PENDING_KEY_LEN + 1];

	if (keylen != PENDING_KEY_LEN)
		return 0;
	memcpy(k, key, keylen);
	k[keylen] = '\0';
	if ((rec = json_loadb(val, len, 0, NULL)) == NULL)
		return 0;
	req = json_pack("{s:s, s:O, s:O}", "op", "put", "pseudonym",
	    json_object_get(rec, "pseudonym"), "identity",
	    json_object_get(rec, "identity"));
	json_decref(rec);
	if (req == NULL || vc_send(req, NULL, NULL, k) == -1)
		return 1;
	return ++ds->n >= DELIVER_BATCH;
}

static void
deliver_kick(void)
{
	struct deliver_scan	ds = { 0 };
	int			rv;

	if (!vc.connected || vc.delivering ||
	    __atomic_load_n(&vc.pending, __ATOMIC_RELAXED) <= 0)
		return;
	rv = store_scan(daemon_store(), DAEMON_DB_VAULT_PENDING, NULL, 0,
	    deliver_one, &ds);
	if (rv != STORE_OK)
		log_warnx("vault: reading the queue of puts: %s",
		    store_strerror(rv));
	if (ds.n == 0) {
		if (rv == STORE_OK)	/* the count drifted: it is empty */
			__atomic_store_n(&vc.pending, 0, __ATOMIC_RELAXED);
		return;
	}
	vc.delivering = 1;
	vc.outstanding = ds.n;
}

/* --- the connection ---------------------------------------------------------- */

static void
vc_answer(json_t *answer)
{
	struct vc_request	*r;
	json_int_t		 id = json_integer_value(json_object_get(answer,
				    "id"));

	TAILQ_FOREACH(r, &vc.inflight, entry)
		if (r->id == id)
			break;
	if (r == NULL) {
		log_warnx("vault: an answer to no request (id %lld)",
		    (long long)id);
		return;
	}
	TAILQ_REMOVE(&vc.inflight, r, entry);
	if (r->cb == NULL)
		delivered(r, answer);
	else
		vc_finish(r, answer, NULL);
}

static void
vc_down(const char *why)
{
	struct vc_request	*r;
	struct timeval		 tv;

	if (vc.bev != NULL)
		bufferevent_free(vc.bev);
	vc.bev = NULL;
	vc.connected = 0;
	strlcpy(vc.error, why, sizeof(vc.error));
	while ((r = TAILQ_FIRST(&vc.inflight)) != NULL) {
		TAILQ_REMOVE(&vc.inflight, r, entry);
		if (r->cb == NULL)
			delivered(r, NULL);
		else
			vc_finish(r, NULL, why);
	}
	if (vc.was_up)
		log_warnx("vault %s: %s; tenantd keeps serving and queues "
		    "puts", vc.conf->vault.address, why);
	vc.was_up = 0;
	vc_ready();
	vc.backoff_ms = vc.backoff_ms == 0 ? BACKOFF_MIN_MS :
	    MINIMUM(vc.backoff_ms * 2, BACKOFF_MAX_MS);
	tv.tv_sec = vc.backoff_ms / 1000;
	tv.tv_usec = vc.backoff_ms % 1000 * 1000;
	evtimer_add(vc.ev_retry, &tv);
}

static void
vc_read_cb(struct bufferevent *bev, void *arg)
{
	json_t	*answer;
	char	 err[128];
	int	 rv;

	while (vc.bev != NULL && (rv = vault_frame_take(
	    bufferevent_get_input(bev), &answer, err, sizeof(err))) != 0) {
		if (rv == -1) {
			vc_down(err);
			return;
		}
		vc_answer(answer);
		json_decref(answer);
	}
}

static void
vc_event_cb(struct bufferevent *bev, short what, void *arg)
{
	char	why[128];

	if (what & BEV_EVENT_CONNECTED) {
		vc.connected = 1;
		vc.was_up = 1;
		vc.backoff_ms = 0;
		log_info("vault %s connected", vc.conf->vault.address);
		vc_ready();
		deliver_kick();
		return;
	}
	snprintf(why, sizeof(why), "%s", what & BEV_EVENT_EOF ?
	    "connection closed" : vc.ctx != NULL ? "connection or TLS "
	    "handshake failed" : strerror(EVUTIL_SOCKET_ERROR()));
	vc_down(why);
}

static struct bufferevent *
vc_bev(void)
{
	SSL	*ssl;

	if (vc.ctx == NULL)
		return bufferevent_socket_new(vc.base, -1,
		    BEV_OPT_CLOSE_ON_FREE);
	if ((ssl = vault_tls_ssl(vc.ctx, vc.conf->vault.address)) == NULL)
		return NULL;
	return bufferevent_openssl_socket_new(vc.base, -1, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
}

static void
vc_connect(void)
{
	struct sockaddr_storage	ss;
	socklen_t		sslen;
	char			err[128];
	int			tls;

	if (vault_address_parse(vc.conf->vault.address, &ss, &sslen, &tls,
	    err, sizeof(err)) == -1 || (vc.bev = vc_bev()) == NULL) {
		vc_down("cannot make a connection");
		return;
	}
	bufferevent_setcb(vc.bev, vc_read_cb, NULL, vc_event_cb, NULL);
	bufferevent_setwatermark(vc.bev, EV_READ, 0, 2 * (4 +
	    VAULT_FRAME_MAX));
	bufferevent_enable(vc.bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(vc.bev, (struct sockaddr *)&ss,
	    (int)sslen) == -1)
		vc_down(errno ? strerror(errno) : "connect failed");
}

static void
vc_retry_cb(evutil_socket_t fd, short ev, void *arg)
{
	if (vc.bev == NULL)
		vc_connect();
}

/* Once a second: an answer overdue means the vault hangs; reconnect. */
static void
vc_tick_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct vc_request	*r = TAILQ_FIRST(&vc.inflight);

	if (r != NULL && now_usec() - r->sent_us >
	    vc.conf->vault.timeout * 1000)
		vc_down("no answer within vault.timeout");
	else if (vc.connected && !vc.delivering)
		deliver_kick();		/* puts left by a refused answer */
}

/* --- start and stop ------------------------------------------------------- */

static int
last_key(const void *key, size_t keylen, const void *val, size_t len,
    void *arg)
{
	char	k[PENDING_KEY_LEN + 1];

	if (keylen == PENDING_KEY_LEN) {
		memcpy(k, key, keylen);
		k[keylen] = '\0';
		vc.seq = MAXIMUM(vc.seq, strtoull(k, NULL, 16));
		__atomic_add_fetch(&vc.pending, 1, __ATOMIC_RELAXED);
	}
	return 0;
}

int
vault_client_start(struct event_base *base, const struct config *conf,
    char *err, size_t errlen)
{
	struct timeval	tv = { 1, 0 };
	int		tls, rv;

	vc.base = base;
	vc.conf = conf_ref((struct config *)(uintptr_t)conf);
	TAILQ_INIT(&vc.inflight);
	if ((rv = store_scan(daemon_store(), DAEMON_DB_VAULT_PENDING, NULL, 0,
	    last_key, NULL)) != STORE_OK) {
		snprintf(err, errlen, "vault: reading the queue of puts: %s",
		    store_strerror(rv));
		return -1;
	}
	if (vault_address_parse(conf->vault.address, NULL, NULL, &tls, err,
	    errlen) == -1 || (tls && (vc.ctx = vault_tls_ctx(0,
	    &conf->vault.tls, err, errlen)) == NULL))
		return -1;
	if (conf->vault.mode == VAULT_CHILD &&
	    vault_child_start(base, conf, err, errlen) == -1)
		return -1;
	vc.ev_retry = evtimer_new(base, vc_retry_cb, NULL);
	vc.ev_tick = event_new(base, -1, EV_PERSIST, vc_tick_cb, NULL);
	event_add(vc.ev_tick, &tv);
	strlcpy(vc.error, "connecting", sizeof(vc.error));
	vc_ready();
	vc_connect();
	return 0;
}

void
vault_client_stop(void)
{
	if (vc.base == NULL)
		return;
	vc.was_up = 0;
	if (vc.bev != NULL)
		vc_down("tenantd is stopping");
	if (vc.acked != NULL)
		store_batch_free(vc.acked);
	event_free(vc.ev_retry);
	event_free(vc.ev_tick);
	vault_child_stop();
	SSL_CTX_free(vc.ctx);
	conf_unref(vc.conf);
	memset(&vc, 0, sizeof(vc));
}

/* --- the interface ------------------------------------------------------------ */

/* A batch that queues one put; NULL with err set if it cannot. */
static struct store_batch *
put_batch(const char *pseudonym, json_t *identity, char *err, size_t errlen)
{
	struct store_batch	*b;
	json_t			*rec;
	char			 key[PENDING_KEY_LEN + 1], *text;

	if (!vault_pseudonym_ok(pseudonym)) {
		snprintf(err, errlen, "not a pseudonym");
		return NULL;
	}
	if (!vault_identity_ok(identity, err, errlen))
		return NULL;
	if (__atomic_load_n(&vc.pending, __ATOMIC_RELAXED) >=
	    vc.conf->vault.pending_max) {
		snprintf(err, errlen, "%lld puts wait for the vault "
		    "(vault.pending_max)", (long long)vc.pending);
		return NULL;
	}
	vc.seq = MAXIMUM(vc.seq + 1, wall_usec());
	snprintf(key, sizeof(key), "%016llx", (unsigned long long)vc.seq);
	rec = json_pack("{s:s, s:O}", "pseudonym", pseudonym, "identity",
	    identity);
	text = json_dumps(rec, JSON_COMPACT);
	json_decref(rec);
	b = store_batch_new(daemon_store());
	store_batch_put(b, DAEMON_DB_VAULT_PENDING, key, PENDING_KEY_LEN, text,
	    strlen(text));
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	return b;
}

struct put_wait {
	vault_done_fn	 cb;
	void		*arg;
};

static void
put_committed(int status, void *arg)
{
	struct put_wait	*w = arg;

	if (status == STORE_OK) {
		__atomic_add_fetch(&vc.pending, 1, __ATOMIC_RELAXED);
		deliver_kick();
		vc_ready();
	}
	w->cb(status == STORE_OK ? 0 : -1, NULL, status == STORE_OK ? NULL :
	    store_strerror(status), w->arg);
	free(w);
}

int
vault_put(const char *pseudonym, json_t *identity, vault_done_fn cb,
    void *arg)
{
	struct store_batch	*b;
	struct put_wait		*w;
	char			 err[160];

	if ((b = put_batch(pseudonym, identity, err, sizeof(err))) == NULL)
		return -1;
	w = xmalloc(sizeof(*w));
	w->cb = cb;
	w->arg = arg;
	if (store_submit(b, vc.base, put_committed, w) != STORE_OK) {
		free(w);
		return -1;
	}
	return 0;
}

int
vault_put_sync(const char *pseudonym, json_t *identity, char *err,
    size_t errlen)
{
	struct store_batch	*b;
	int			 rv;

	if ((b = put_batch(pseudonym, identity, err, errlen)) == NULL)
		return -1;
	if ((rv = store_write(b)) != STORE_OK) {
		snprintf(err, errlen, "queueing the put: %s",
		    store_strerror(rv));
		return -1;
	}
	__atomic_add_fetch(&vc.pending, 1, __ATOMIC_RELAXED);
	deliver_kick();
	vc_ready();
	return 0;
}

int
vault_resolve(const char *pseudonym, const char *requester,
    const char *reason, vault_done_fn cb, void *arg)
{
	return vc_send(json_pack("{s:s, s:s, s:s, s:s}", "op", "resolve",
	    "pseudonym", pseudonym, "requester", requester, "reason", reason),
	    cb, arg, NULL);
}

int
vault_forget(const char *pseudonym, vault_done_fn cb, void *arg)
{
	char	err[160];

	if (vault_forget_pending(pseudonym, err, sizeof(err)) == -1)
		return -1;
	return vc_send(json_pack("{s:s, s:s}", "op", "forget", "pseudonym",
	    pseudonym), cb, arg, NULL);
}

int
vault_stats(vault_done_fn cb, void *arg)
{
	return vc_send(json_pack("{s:s}", "op", "stats"), cb, arg, NULL);
}

struct forget_scan {
	const char		*pseudonym;
	struct store_batch	*b;
	size_t			 n;
};

static int
forget_one(const void *key, size_t keylen, const void *val, size_t len,
    void *arg)
{
	struct forget_scan	*fs = arg;
	json_t			*rec = json_loadb(val, len, 0, NULL);
	const char		*p;

	p = json_string_value(json_object_get(rec, "pseudonym"));
	if (p != NULL && strcmp(p, fs->pseudonym) == 0) {
		store_batch_del(fs->b, DAEMON_DB_VAULT_PENDING, key, keylen);
		fs->n++;
	}
	json_decref(rec);
	return 0;
}

/* Drop queued puts of a pseudonym (before the vault forgets it). */
int
vault_forget_pending(const char *pseudonym, char *err, size_t errlen)
{
	struct forget_scan	fs = { pseudonym, NULL, 0 };
	int			rv;

	fs.b = store_batch_new(daemon_store());
	rv = store_scan(daemon_store(), DAEMON_DB_VAULT_PENDING, NULL, 0,
	    forget_one, &fs);
	if (rv == STORE_OK && fs.n > 0 && (rv = store_write(fs.b)) ==
	    STORE_OK)
		__atomic_sub_fetch(&vc.pending, (int64_t)fs.n,
		    __ATOMIC_RELAXED);
	else if (rv != STORE_OK || fs.n == 0)
		store_batch_free(fs.b);
	if (rv != STORE_OK) {
		snprintf(err, errlen, "queue of puts: %s",
		    store_strerror(rv));
		return -1;
	}
	return 0;
}

json_t *
vault_client_status(void)
{
	return json_pack("{s:s, s:s, s:b, s:I, s:s}", "mode",
	    vc.conf->vault.mode == VAULT_CHILD ? "child" : "external",
	    "address", vc.conf->vault.address, "connected", vc.connected,
	    "pending", (json_int_t)__atomic_load_n(&vc.pending,
	    __ATOMIC_RELAXED), "error", vc.connected ? "" : vc.error);
}

void
vault_client_metrics(struct evbuffer *out)
{
	evbuffer_add_printf(out,
	    "# HELP tenantd_vault_pending_puts Puts queued for the vault.\n"
	    "# TYPE tenantd_vault_pending_puts gauge\n"
	    "tenantd_vault_pending_puts %lld\n"
	    "# HELP tenantd_vault_connected 1 while connected to the vault.\n"
	    "# TYPE tenantd_vault_connected gauge\n"
	    "tenantd_vault_connected %d\n",
	    (long long)__atomic_load_n(&vc.pending, __ATOMIC_RELAXED),
	    __atomic_load_n(&vc.connected, __ATOMIC_RELAXED));
}
