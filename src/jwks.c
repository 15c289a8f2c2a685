/*
 * jwks.c: keeps the authority's signing keys current: fetches the OpenID
 * metadata and key sets through httpc, publishes immutable key sets that
 * every thread may read, throttles kid-miss refreshes and wakes waiters.
 */
#include "config.h"

#include <sys/queue.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "tenantd.h"

#define JWKS_RETRY_MIN		10	/* s, first retry after a failure */
#define JWKS_RETRY_MAX		300
#define JWKS_DEFAULT_TIMEOUT_MS	10000

struct jwks_waiter {
	TAILQ_ENTRY(jwks_waiter) entry;
	struct jwks		*j;
	int			 queued;	/* under j->mtx */
	struct event		*ev;
	jwks_wait_fn		 fn;
	void			*arg;
};
TAILQ_HEAD(jwks_waiters, jwks_waiter);

struct jwks_fetch;

struct jwks_slot {
	struct jwks_fetch	*f;
	int			 idx;		/* 0 v1, 1 v2 */
	char			*url;
	struct httpc_xfer	*xfer;
};

struct jwks_fetch {
	struct jwks		*j;
	int			 pending;
	int			 failed;
	char			*issuer[2];
	char			*jwks_uri[2];
	struct jwks_keyset	*set;
	struct jwks_slot	 slot[2];
};

struct jwks {
	struct event_base	*base;
	struct httpc		*httpc;
	char			*authority;
	char			*tenant_id;
	char			*ca_file;
	uint64_t		 refresh;
	uint64_t		 min_refetch;
	uint64_t		 timeout_ms;
	uint64_t		 retry;		/* s, current backoff */
	jwks_save_fn		 save;
	jwks_load_fn		 load;
	void			*hook_arg;
	struct event		*timer;		/* periodic refresh */
	struct event		*kick;		/* refresh request */
	struct jwks_fetch	*fetch;		/* in flight, base thread */

	pthread_mutex_t		 mtx;		/* guards what follows */
	struct jwks_keyset	*current;
	enum jwks_state		 state;
	int			 busy;		/* kicked or in flight */
	uint64_t		 last_miss;	/* now_usec of a kid-miss kick */
	uint64_t		 fetches;
	struct jwks_waiters	 waiters;
};

static void	jwks_fetch_start(struct jwks *);

/* --- state shared with other threads ------------------------------------ */

struct jwks_keyset *
jwks_keyset_get(struct jwks *j)
{
	struct jwks_keyset	*set;

	pthread_mutex_lock(&j->mtx);
	set = jwks_keyset_ref(j->current);
	pthread_mutex_unlock(&j->mtx);
	return set;
}

enum jwks_state
jwks_state(struct jwks *j)
{
	enum jwks_state	state;

	pthread_mutex_lock(&j->mtx);
	state = j->state;
	pthread_mutex_unlock(&j->mtx);
	return state;
}

const char *
jwks_state_name(enum jwks_state state)
{
	static const char *const names[] = {
		[JWKS_NONE] = "none",
		[JWKS_STALE] = "stale",
		[JWKS_FRESH] = "fresh",
	};

	return (size_t)state < nitems(names) ? names[state] : "none";
}

uint64_t
jwks_fetch_count(struct jwks *j)
{
	uint64_t	n;

	pthread_mutex_lock(&j->mtx);
	n = j->fetches;
	pthread_mutex_unlock(&j->mtx);
	return n;
}

static void
jwks_publish(struct jwks *j, struct jwks_keyset *set, enum jwks_state state)
{
	struct jwks_keyset	*old;

	pthread_mutex_lock(&j->mtx);
	old = j->current;
	j->current = set;
	j->state = state;
	pthread_mutex_unlock(&j->mtx);
	jwks_keyset_put(old);
}

/* Install a set from the store or the local provider. */
int
jwks_install(struct jwks *j, const char *json, size_t len, int fresh,
    char *err, size_t errlen)
{
	struct jwks_keyset	*set;

	if ((set = jwks_keyset_parse(json, len, err, errlen)) == NULL)
		return -1;
	jwks_publish(j, set, fresh ? JWKS_FRESH : JWKS_STALE);
	return 0;
}

/* --- refresh requests and waiters --------------------------------------- */

/* Called with j->mtx held. */
static void
jwks_kick_locked(struct jwks *j)
{
	if (j->busy)
		return;
	j->busy = 1;
	event_active(j->kick, EV_TIMEOUT, 1);
}

void
jwks_refresh_now(struct jwks *j)
{
	pthread_mutex_lock(&j->mtx);
	jwks_kick_locked(j);
	pthread_mutex_unlock(&j->mtx);
}

/*
 * A token named a kid we do not know: refresh unless a kid miss already
 * did within min_refetch. Returns 1 when a refresh is pending or in
 * flight (jwks_wait_refresh() can wait for it), 0 when throttled.
 */
int
jwks_kid_miss(struct jwks *j)
{
	uint64_t	now = now_usec();
	int		rv = 1;

	pthread_mutex_lock(&j->mtx);
	if (j->busy)
		rv = 1;
	else if (j->last_miss != 0 &&
	    now - j->last_miss < j->min_refetch * 1000000)
		rv = 0;
	else {
		j->last_miss = now;
		jwks_kick_locked(j);
	}
	pthread_mutex_unlock(&j->mtx);
	return rv;
}

static void
jwks_waiter_run(evutil_socket_t fd, short what, void *arg)
{
	struct jwks_waiter	*w = arg;
	jwks_wait_fn		 fn = w->fn;
	void			*fn_arg = w->arg;

	event_free(w->ev);
	free(w);
	fn(fn_arg);
}

struct jwks_waiter *
jwks_wait_refresh(struct jwks *j, struct event_base *base, jwks_wait_fn fn,
    void *arg)
{
	struct jwks_waiter	*w;

	w = xcalloc(1, sizeof(*w));
	w->fn = fn;
	w->arg = arg;
	w->j = j;
	if ((w->ev = event_new(base, -1, 0, jwks_waiter_run, w)) == NULL) {
		log_warnx("jwks: event_new failed for a waiter");
		free(w);
		return NULL;
	}
	pthread_mutex_lock(&j->mtx);
	if (j->busy) {
		TAILQ_INSERT_TAIL(&j->waiters, w, entry);
		w->queued = 1;
	}
	pthread_mutex_unlock(&j->mtx);
	if (!w->queued) {
		event_free(w->ev);
		free(w);
		return NULL;
	}
	return w;
}

void
jwks_wait_cancel(struct jwks_waiter *w)
{
	struct jwks	*j = w->j;

	pthread_mutex_lock(&j->mtx);
	if (w->queued)
		TAILQ_REMOVE(&j->waiters, w, entry);
	w->queued = 0;
	pthread_mutex_unlock(&j->mtx);
	event_free(w->ev);	/* also drops a pending activation */
	free(w);
}

/* The refresh ended: wake every waiter on its own base. */
static void
jwks_refresh_done(struct jwks *j)
{
	struct jwks_waiter	*w;

	pthread_mutex_lock(&j->mtx);
	j->busy = 0;
	while ((w = TAILQ_FIRST(&j->waiters)) != NULL) {
		TAILQ_REMOVE(&j->waiters, w, entry);
		w->queued = 0;
		event_active(w->ev, EV_TIMEOUT, 1);
	}
	pthread_mutex_unlock(&j->mtx);
}

/* --- fetching (on the jwks base) ---------------------------------------- */

static void
jwks_schedule(struct jwks *j, uint64_t seconds)
{
	struct timeval	tv = { .tv_sec = (time_t)seconds, .tv_usec = 0 };

	evtimer_add(j->timer, &tv);
}

static void
jwks_fetch_free(struct jwks_fetch *f)
{
	int	i;

	for (i = 0; i < 2; i++) {
		httpc_cancel(f->slot[i].xfer);
		free(f->slot[i].url);
		free(f->issuer[i]);
		free(f->jwks_uri[i]);
	}
	jwks_keyset_put(f->set);
	free(f);
}

static void
jwks_fetch_finish(struct jwks_fetch *f)
{
	struct jwks	*j = f->j;
	char		*blob;
	size_t		 len, nkeys = jwks_keyset_count(f->set);

	if (!f->failed && nkeys > 0) {
		if (j->save != NULL) {
			blob = jwks_keyset_dump(f->set, &len);
			j->save(blob, len, j->hook_arg);
			free(blob);
		}
		jwks_publish(j, f->set, JWKS_FRESH);
		f->set = NULL;
		j->retry = 0;
		jwks_schedule(j, j->refresh);
		log_info("jwks: %zu signing keys from %s", nkeys, j->authority);
	} else {
		pthread_mutex_lock(&j->mtx);
		j->state = j->current != NULL ? JWKS_STALE : JWKS_NONE;
		pthread_mutex_unlock(&j->mtx);
		j->retry = j->retry == 0 ? JWKS_RETRY_MIN :
		    MINIMUM(j->retry * 2, JWKS_RETRY_MAX);
		jwks_schedule(j, MINIMUM(j->retry, j->refresh));
		log_warnx("jwks: refresh from %s failed; keeping the last "
		    "good keys, retry in %llus", j->authority,
		    (unsigned long long)MINIMUM(j->retry, j->refresh));
	}
	j->fetch = NULL;
	jwks_fetch_free(f);
	jwks_refresh_done(j);
}

static int
jwks_response_ok(struct jwks_slot *slot, const struct httpc_response *resp)
{
	if (resp->error != HTTPC_OK) {
		log_warnx("jwks: %s: %s", slot->url, resp->errmsg);
		return -1;
	}
	if (resp->status != 200) {
		log_warnx("jwks: %s: HTTP status %ld", slot->url, resp->status);
		return -1;
	}
	return 0;
}

static void
jwks_get(struct jwks_fetch *f, int idx, const char *url, httpc_cb cb)
{
	static const char *const headers[] = { "Accept: application/json",
	    NULL };
	struct jwks			*j = f->j;
	struct jwks_slot		*slot = &f->slot[idx];
	struct httpc_request		 req;

	memset(&req, 0, sizeof(req));
	req.url = url;
	req.headers = headers;
	req.timeout_ms = j->timeout_ms;
	req.max_body = JWKS_MAX_DOC;
	req.ca_file = j->ca_file;
	slot->f = f;
	slot->idx = idx;
	free(slot->url);
	slot->url = xstrdup(url);
	if ((slot->xfer = httpc_start(j->httpc, &req, cb, slot)) == NULL)
		f->failed = 1;
	else
		f->pending++;
}

static void
jwks_on_keys(const struct httpc_response *resp, void *arg)
{
	struct jwks_slot	*slot = arg;
	struct jwks_fetch	*f = slot->f;
	json_t			*doc = NULL, *keys;
	char			 err[160];

	slot->xfer = NULL;
	f->pending--;
	if (jwks_response_ok(slot, resp) == -1)
		f->failed = 1;
	else if ((doc = jwks_json_load(resp->body, resp->body_len, err,
	    sizeof(err))) == NULL ||
	    !json_is_array(keys = json_object_get(doc, "keys"))) {
		log_warnx("jwks: %s: %s", slot->url,
		    doc == NULL ? err : "no \"keys\" array");
		f->failed = 1;
	} else
		jwks_keyset_add(f->set, keys);
	json_decref(doc);
	if (f->pending == 0)
		jwks_fetch_finish(f);
}

static void
jwks_on_metadata(const struct httpc_response *resp, void *arg)
{
	struct jwks_slot	*slot = arg;
	struct jwks_fetch	*f = slot->f;
	int			 i = slot->idx;
	char			 err[256];

	slot->xfer = NULL;
	f->pending--;
	if (jwks_response_ok(slot, resp) == -1)
		f->failed = 1;
	else if (jwks_metadata_parse(resp->body, resp->body_len,
	    f->j->tenant_id, &f->issuer[i], &f->jwks_uri[i], err,
	    sizeof(err)) == -1) {
		log_warnx("jwks: %s: %s", slot->url, err);
		f->failed = 1;
	}
	if (f->pending > 0)
		return;
	if (!f->failed) {
		f->set = jwks_keyset_new(f->issuer[0], f->issuer[1]);
		jwks_get(f, 0, f->jwks_uri[0], jwks_on_keys);
		if (strcmp(f->jwks_uri[0], f->jwks_uri[1]) != 0)
			jwks_get(f, 1, f->jwks_uri[1], jwks_on_keys);
	}
	if (f->pending == 0)
		jwks_fetch_finish(f);
}

/* Both metadata documents first, then the key sets they name. */
static void
jwks_fetch_start(struct jwks *j)
{
	struct jwks_fetch	*f;
	char			*url;
	int			 i;

	f = xcalloc(1, sizeof(*f));
	f->j = j;
	j->fetch = f;
	pthread_mutex_lock(&j->mtx);
	j->fetches++;
	pthread_mutex_unlock(&j->mtx);
	for (i = 0; i < 2; i++) {
		xasprintf(&url, "%s/%s%s/.well-known/openid-configuration",
		    j->authority, j->tenant_id, i == 1 ? "/v2.0" : "");
		jwks_get(f, i, url, jwks_on_metadata);
		free(url);
	}
	if (f->pending == 0)
		jwks_fetch_finish(f);
}

static void
jwks_kick_event(evutil_socket_t fd, short what, void *arg)
{
	struct jwks	*j = arg;

	if (j->authority == NULL)	/* keys only from jwks_install() */
		jwks_refresh_done(j);
	else if (j->fetch == NULL)
		jwks_fetch_start(j);
}

static void
jwks_timer_event(evutil_socket_t fd, short what, void *arg)
{
	struct jwks	*j = arg;
	int		 start;

	pthread_mutex_lock(&j->mtx);
	start = !j->busy;
	j->busy = 1;
	pthread_mutex_unlock(&j->mtx);
	if (start)
		jwks_fetch_start(j);
}

/* --- life cycle --------------------------------------------------------- */

struct jwks *
jwks_new(struct event_base *base, struct httpc *httpc,
    const struct jwks_params *p)
{
	struct jwks	*j;
	size_t		 len;

	j = xcalloc(1, sizeof(*j));
	j->base = base;
	j->httpc = httpc;
	if (p->authority != NULL) {
		j->authority = xstrdup(p->authority);
		len = strlen(j->authority);
		while (len > 0 && j->authority[len - 1] == '/')
			j->authority[--len] = '\0';
	}
	j->tenant_id = xstrdup(p->tenant_id);
	j->ca_file = p->ca_file != NULL ? xstrdup(p->ca_file) : NULL;
	j->refresh = p->refresh ? p->refresh : 3600;
	j->min_refetch = p->min_refetch ? p->min_refetch : JWKS_MIN_REFETCH;
	j->timeout_ms = p->timeout_ms ? p->timeout_ms :
	    JWKS_DEFAULT_TIMEOUT_MS;
	j->save = p->save;
	j->load = p->load;
	j->hook_arg = p->hook_arg;
	TAILQ_INIT(&j->waiters);
	if (pthread_mutex_init(&j->mtx, NULL) != 0)
		fatalx("jwks: pthread_mutex_init failed");
	j->timer = evtimer_new(base, jwks_timer_event, j);
	j->kick = event_new(base, -1, 0, jwks_kick_event, j);
	if (j->timer == NULL || j->kick == NULL)
		fatalx("jwks: event_new failed");
	return j;
}

/* Load the persisted set (stale until a fetch succeeds), then fetch. */
void
jwks_start(struct jwks *j)
{
	char	*blob, err[160];
	size_t	 len;

	if (j->load != NULL && (blob = j->load(&len, j->hook_arg)) != NULL) {
		if (jwks_install(j, blob, len, 0, err, sizeof(err)) == -1)
			log_warnx("jwks: stored key set ignored: %s", err);
		else
			log_info("jwks: %zu stored signing keys loaded",
			    jwks_keyset_count(j->current));
		free(blob);
	}
	jwks_refresh_now(j);
}

void
jwks_free(struct jwks *j)
{
	if (j == NULL)
		return;
	if (j->fetch != NULL)
		jwks_fetch_free(j->fetch);
	jwks_refresh_done(j);
	event_free(j->timer);
	event_free(j->kick);
	jwks_keyset_put(j->current);
	pthread_mutex_destroy(&j->mtx);
	free(j->authority);
	free(j->tenant_id);
	free(j->ca_file);
	free(j);
}
