/*
 * api-common.c: what the data handlers share: the audit record of a
 * request, store errors as problems, hops between a worker and the main
 * thread (the vault client lives there), and the vault registration of a
 * user the first time tenantd sees them.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "http.h"

#define SEEN_SLOTS	1024	/* per worker thread */

/* An audit record for this request, by the caller; 0 or -1. */
int
api_audit_begin(struct request *req, struct audit_record *rec,
    const char *action)
{
	const struct auth_principal	*p = http_principal(req);
	char				 roles[80] = "";
	unsigned			 i;

	if (audit_record_init(rec, action, p != NULL && p->pseudonym[0] ?
	    p->pseudonym : "anonymous") == -1)
		return -1;
	for (i = 0; p != NULL && i < AUTH_NROLES; i++) {
		if ((p->roles & (1u << i)) == 0)
			continue;
		if (roles[0] != '\0')
			strlcat(roles, ",", sizeof(roles));
		strlcat(roles, auth_role_name(1u << i), sizeof(roles));
	}
	audit_record_roles(rec, roles);
	audit_record_request(rec, http_request_id(req), p != NULL &&
	    p->app_id[0] ? p->app_id : NULL, http_peer(req));
	return 0;
}

/* A failed store operation as a problem: 507 when storage is full. */
void
api_store_problem(struct request *req, int status)
{
	if (status == STORE_FULL)
		http_problem(req, 507, "storage-full", "storage is full; "
		    "nothing was stored");
	else
		http_problem(req, 503, "storage-unavailable", "storage: %s",
		    store_strerror(status));
}

struct hop {
	void	(*fn)(void *);
	void	*arg;
};

static void
hop_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct hop	h = *(struct hop *)arg;

	free(arg);
	h.fn(h.arg);
}

/* Run fn(arg) on base's thread; 0 or -1. */
int
api_run_on(struct event_base *base, void (*fn)(void *), void *arg)
{
	struct hop	*h = xmalloc(sizeof(*h));

	h->fn = fn;
	h->arg = arg;
	if (event_base_once(base, -1, EV_TIMEOUT, hop_cb, h, NULL) == 0)
		return 0;
	free(h);
	return -1;
}

/* --- first sight of a user: the vault learns the identity -------------- */

struct seen_job {
	char	 pseudonym[KEYRING_PSEUDONYM_LEN];
	json_t	*identity;
};

static __thread char	seen[SEEN_SLOTS][KEYRING_PSEUDONYM_LEN];
static __thread unsigned seen_gen;
static unsigned		seen_generation; /* atomic, bumped by erasure */

static size_t
seen_slot(const char *pseudonym)
{
	uint32_t	h = 2166136261u;

	for (; *pseudonym != '\0'; pseudonym++)
		h = (h ^ (unsigned char)*pseudonym) * 16777619u;
	return h % SEEN_SLOTS;
}

static void
user_recorded(int status, void *arg)
{
	if (status != STORE_OK)
		log_warnx("recording a user's first sight: %s",
		    store_strerror(status));
}

/* On the main thread, after the put is durable in the vault queue. */
static void
seen_put_done(int status, json_t *result, const char *error, void *arg)
{
	struct seen_job		*job = arg;
	struct store_batch	*b;
	char			 ts[40], rec[64];

	if (status == 0) {
		format_iso8601(ts, sizeof(ts), wall_usec());
		snprintf(rec, sizeof(rec), "{\"first_seen\":\"%s\"}", ts);
		b = store_batch_new(daemon_store());
		store_batch_put(b, API_USERS_DB, job->pseudonym,
		    strlen(job->pseudonym), rec, strlen(rec));
		store_submit(b, http_main_base(), user_recorded, NULL);
	} else {
		log_warnx("vault: registering a user: %s", error);
		api_user_forget();	/* a later request tries again */
	}
	free(job);
}

static void
seen_put(void *arg)
{
	struct seen_job	*job = arg;
	json_t		*identity = job->identity;

	if (vault_put(job->pseudonym, identity, seen_put_done, job) == -1) {
		log_warnx("vault: a user could not be queued for the vault");
		api_user_forget();
		free(job);
	}
	json_decref(identity);
}

/* Forget every thread's cache (a user was erased). */
void
api_user_forget(void)
{
	__atomic_add_fetch(&seen_generation, 1, __ATOMIC_RELAXED);
}

/*
 * The first request of a user: the vault gets pseudonym -> {oid, upn}
 * (on the main thread) and the store remembers that it has it.
 */
void
api_user_seen(struct request *req)
{
	const struct auth_principal	*p = http_principal(req);
	struct seen_job			*job;
	char				*slot;
	void				*val;
	size_t				 len;
	unsigned			 gen;

	if (p == NULL || p->app_only || p->pseudonym[0] == '\0' ||
	    p->upn[0] == '\0')
		return;
	gen = __atomic_load_n(&seen_generation, __ATOMIC_RELAXED);
	if (gen != seen_gen) {
		memset(seen, 0, sizeof(seen));
		seen_gen = gen;
	}
	slot = seen[seen_slot(p->pseudonym)];
	if (strcmp(slot, p->pseudonym) == 0)
		return;
	if (store_get(daemon_store(), API_USERS_DB, p->pseudonym,
	    strlen(p->pseudonym), &val, &len) == STORE_OK) {
		free(val);
		strlcpy(slot, p->pseudonym, KEYRING_PSEUDONYM_LEN);
		return;
	}
	/* at most one registration per thread, whatever comes back */
	strlcpy(slot, p->pseudonym, KEYRING_PSEUDONYM_LEN);
	job = xcalloc(1, sizeof(*job));
	strlcpy(job->pseudonym, p->pseudonym, sizeof(job->pseudonym));
	job->identity = json_pack("{s:s, s:s}", "oid", p->oid, "upn", p->upn);
	if (api_run_on(http_main_base(), seen_put, job) == -1) {
		json_decref(job->identity);
		free(job);
	}
}
