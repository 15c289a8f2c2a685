/*
 * daemon-store.c: tenantd's keyring and encrypted store: loading them at
 * start-up, readiness, storage.max_size on reload, the rotation timer, the
 * background rewrap, key retirement and their /metrics families.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "tenantd.h"

#define ROTATE_CHECK_SECS	3600	/* how often the age is looked at */
#define REWRAP_BATCH		256	/* values per write transaction */

static const char *const daemon_dbs[] = { DAEMON_DB_VAULT_PENDING,
    AUTH_STORE_DB, AUDIT_DB, LICENSE_DB, NOTICE_DB, NOTICE_OUTBOX_DB,
    EVENTS_DB, EVENTS_DAYS_DB, EVENTS_USERS_DB, SETTINGS_DB, API_USERS_DB,
    SHIP_DB_QUEUE, SHIP_DB_DEAD, SHIP_DB_STATE, NULL };

enum rewrap_state { REWRAP_IDLE, REWRAP_RUNNING, REWRAP_DONE, REWRAP_FAILED };
static const char *const rewrap_names[] = {
	"idle", "running", "done", "failed",
};

static struct {
	struct keyring		*kr;
	struct store		*st;
	struct event		*ev_rotate;
	uint64_t		 rotate_after;
	pthread_t		 rewrap;
	int			 rewrap_joinable;
	int			 rewrap_state;		/* atomic */
	int			 rewrap_stop;		/* atomic */
	uint64_t		 rewrapped;		/* atomic */
	uint64_t		 rewrap_started;	/* wall seconds */
	uint32_t		 rewrap_target;		/* the active term */
} ds;

struct store *
daemon_store(void)
{
	return ds.st;
}

struct keyring *
daemon_keyring(void)
{
	return ds.kr;
}

static void
ready_store(void)
{
	struct store_stats	ss;
	char			detail[128];

	if (store_stats(ds.st, &ss) != STORE_OK) {
		ready_set("store", READY_FAIL, "storage I/O error");
		return;
	}
	snprintf(detail, sizeof(detail), "%llu of %llu bytes used",
	    (unsigned long long)ss.used, (unsigned long long)ss.max_size);
	ready_set("store", ss.used >= ss.max_size / 10 * 9 ?
	    READY_DEGRADED : READY_OK, detail);
}

/* --- rotation ---------------------------------------------------------- */

static void
rotate_cb(evutil_socket_t fd, short ev, void *arg)
{
	uint64_t	created;
	uint32_t	term;
	char		err[256], detail[64];

	keyring_active_age(ds.kr, &created);
	if (ds.rotate_after > 0 &&
	    (uint64_t)time(NULL) >= created + ds.rotate_after) {
		if (keyring_rotate(ds.kr, &term, err, sizeof(err)) == -1)
			log_warnx("automatic key rotation failed: %s", err);
		else
			log_info("automatic key rotation: data key term %u "
			    "(keyring.rotate_after reached)", term);
	}
	snprintf(detail, sizeof(detail), "data key term %u",
	    keyring_active_term(ds.kr));
	ready_set("keys", READY_OK, detail);
	ready_store();
}

static void
rotate_timer_start(struct event_base *base)
{
	struct timeval	tv = { ROTATE_CHECK_SECS, 0 };

	ds.ev_rotate = event_new(base, -1, EV_PERSIST, rotate_cb, NULL);
	if (ds.ev_rotate == NULL || event_add(ds.ev_rotate, &tv) == -1)
		fatalx("key rotation timer could not be set");
}

/* --- start, reload, stop ------------------------------------------------ */

void
daemon_store_start(struct event_base *base, const struct config *conf)
{
	struct store_params	sp;
	char			err[512];

	if (keyring_load_conf(&conf->keyring, conf->state_dir, &ds.kr, err,
	    sizeof(err)) == -1)
		fatalx("cannot start: %s", err);
	ds.rotate_after = conf->keyring.rotate_after;
	memset(&sp, 0, sizeof(sp));
	sp.dir = conf->storage.path;
	sp.dbs = daemon_dbs;
	sp.max_size = conf->storage.max_size;
	sp.keyring = ds.kr;
	if (store_open(&sp, &ds.st, err, sizeof(err)) == -1)
		fatalx("cannot start: %s", err);
	audit_daemon_start(base, ds.st, ds.kr);
	rotate_timer_start(base);
	rotate_cb(-1, 0, NULL);	/* a due rotation, readiness */
}

void
daemon_store_reload(const struct config *conf)
{
	ds.rotate_after = conf->keyring.rotate_after;
	if (store_set_max_size(ds.st, conf->storage.max_size) != STORE_OK)
		log_warnx("reload: storage.max_size %llu refused",
		    (unsigned long long)conf->storage.max_size);
	ready_store();
}

void
daemon_store_stop(void)
{
	__atomic_store_n(&ds.rewrap_stop, 1, __ATOMIC_RELAXED);
	if (ds.rewrap_joinable)
		pthread_join(ds.rewrap, NULL);
	if (ds.ev_rotate != NULL)
		event_free(ds.ev_rotate);
	audit_daemon_stop();
	store_close(ds.st);
	keyring_free(ds.kr);
	memset(&ds, 0, sizeof(ds));
}

/* --- rewrap and retire ---------------------------------------------------- */

static void *
rewrap_main(void *arg)
{
	size_t	n;
	int	rv;

	do {
		rv = store_rewrap(ds.st, REWRAP_BATCH, &n);
		if (rv == STORE_OK)
			__atomic_add_fetch(&ds.rewrapped, n, __ATOMIC_RELAXED);
	} while (rv == STORE_OK && n > 0 &&
	    !__atomic_load_n(&ds.rewrap_stop, __ATOMIC_RELAXED));
	if (rv != STORE_OK)
		log_warnx("rewrap stopped: %s", store_strerror(rv));
	else
		log_info("rewrap %s: %llu values re-sealed under term %u",
		    n > 0 ? "interrupted" : "finished",
		    (unsigned long long)ds.rewrapped, ds.rewrap_target);
	__atomic_store_n(&ds.rewrap_state, rv == STORE_OK ? REWRAP_DONE :
	    REWRAP_FAILED, __ATOMIC_RELEASE);
	return NULL;
}

int
daemon_keys_rewrap_start(char *err, size_t errlen)
{
	int	rc;

	if (__atomic_load_n(&ds.rewrap_state, __ATOMIC_ACQUIRE) ==
	    REWRAP_RUNNING) {
		snprintf(err, errlen, "a rewrap is already running");
		return -1;
	}
	if (ds.rewrap_joinable)
		pthread_join(ds.rewrap, NULL);
	ds.rewrap_joinable = 0;
	ds.rewrapped = 0;
	ds.rewrap_started = (uint64_t)time(NULL);
	ds.rewrap_target = keyring_active_term(ds.kr);
	ds.rewrap_state = REWRAP_RUNNING;
	if ((rc = pthread_create(&ds.rewrap, NULL, rewrap_main, NULL)) != 0) {
		ds.rewrap_state = REWRAP_FAILED;
		snprintf(err, errlen, "rewrap thread: %s", strerror(rc));
		return -1;
	}
	ds.rewrap_joinable = 1;
	log_info("rewrap started: re-sealing values under term %u in "
	    "batches of %d", ds.rewrap_target, REWRAP_BATCH);
	return 0;
}

int
daemon_keys_retire(uint32_t term, char *err, size_t errlen)
{
	uint64_t	in_use;
	int		rv;

	/* Values sealed before now are committed once this returns. */
	if ((rv = store_write(store_batch_new(ds.st))) != STORE_OK ||
	    (rv = store_count_term(ds.st, term, &in_use)) != STORE_OK) {
		snprintf(err, errlen, "counting values under term %u: %s",
		    term, store_strerror(rv));
		return -1;
	}
	return keyring_retire(ds.kr, term, in_use, err, errlen);
}

json_t *
daemon_keys_status(void)
{
	struct store_stats	 ss;
	json_t			*o = keyring_status_json(ds.kr);

	json_object_set_new(o, "rewrap", json_pack("{s:s, s:I, s:I, s:I}",
	    "state", rewrap_names[__atomic_load_n(&ds.rewrap_state,
	    __ATOMIC_ACQUIRE)], "rewrapped", (json_int_t)__atomic_load_n(
	    &ds.rewrapped, __ATOMIC_RELAXED), "target_term",
	    (json_int_t)ds.rewrap_target, "started",
	    (json_int_t)ds.rewrap_started));
	json_object_set_new(o, "rotate_after", json_integer(
	    (json_int_t)ds.rotate_after));
	if (store_stats(ds.st, &ss) == STORE_OK)
		json_object_set_new(o, "store", json_pack("{s:I, s:I, s:I, "
		    "s:I}", "used", (json_int_t)ss.used, "map",
		    (json_int_t)ss.mapsize, "max_size",
		    (json_int_t)ss.max_size, "records",
		    (json_int_t)ss.entries));
	return o;
}

/* --- metrics (called on worker threads) ------------------------------------ */

void
daemon_store_metrics(struct evbuffer *out)
{
	struct store_stats	ss;

	if (ds.st == NULL || store_stats(ds.st, &ss) != STORE_OK)
		return;
	evbuffer_add_printf(out,
	    "# HELP tenantd_store_used_bytes Pages in use in the store.\n"
	    "# TYPE tenantd_store_used_bytes gauge\n"
	    "tenantd_store_used_bytes %llu\n"
	    "# HELP tenantd_store_max_bytes storage.max_size.\n"
	    "# TYPE tenantd_store_max_bytes gauge\n"
	    "tenantd_store_max_bytes %llu\n"
	    "# HELP tenantd_store_map_bytes Current size of the map.\n"
	    "# TYPE tenantd_store_map_bytes gauge\n"
	    "tenantd_store_map_bytes %llu\n"
	    "# HELP tenantd_keyring_active_term The data key term sealing "
	    "new values.\n"
	    "# TYPE tenantd_keyring_active_term gauge\n"
	    "tenantd_keyring_active_term %u\n",
	    (unsigned long long)ss.used, (unsigned long long)ss.max_size,
	    (unsigned long long)ss.mapsize, keyring_active_term(ds.kr));
	vault_client_metrics(out);
}
