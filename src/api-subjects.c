/*
 * api-subjects.c: data-subject rights and re-identification (admin only,
 * each call audited): GET /v1/admin/subjects/{oid}/export, POST
 * /v1/admin/subjects/{oid}/erase, POST /v1/admin/reidentify. The vault
 * is reached from the main thread; the answer comes back to the worker.
 */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "http.h"

#define AUDIT_EXPORT_CHUNK	(256 * 1024)

struct subject_op {
	struct request		*req;
	struct event_base	*base;		/* the worker's */
	char			 oid[40];
	char			 pseudonym[KEYRING_PSEUDONYM_LEN];
	char			 requester[VAULT_FIELD_MAX];
	char			 reason[VAULT_NAME_MAX + 1];
	int			 vault_status;	/* 0, or -1: error */
	char			 error[160];
	json_t			*result;	/* identity or export */
	size_t			 events, markers, settings;
};

static void
subject_op_free(struct subject_op *so)
{
	json_decref(so->result);
	free(so);
}

/* Entra object ids are GUIDs; lowercased as tokens carry them. */
static int
oid_normalize(const char *in, char *out, size_t outlen)
{
	static const char	shape[] =
	    "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	size_t			 i;

	if (in == NULL || strlen(in) != sizeof(shape) - 1 ||
	    outlen < sizeof(shape))
		return -1;
	for (i = 0; shape[i] != '\0'; i++) {
		if (shape[i] == '-' ? in[i] != '-' :
		    !isxdigit((unsigned char)in[i]))
			return -1;
		out[i] = tolower((unsigned char)in[i]);
	}
	out[i] = '\0';
	return 0;
}

/* A subject from the {oid} parameter; NULL after answering. */
static struct subject_op *
subject_begin(struct request *req)
{
	struct subject_op	*so = xcalloc(1, sizeof(*so));
	json_t			*errors;

	so->req = req;
	so->base = http_base(req);
	if (oid_normalize(http_param(req, "oid"), so->oid,
	    sizeof(so->oid)) == -1) {
		errors = jin_errors();
		jin_error(errors, "", "oid: must be an Entra object id (a "
		    "GUID)");
		json_object_set_new(json_array_get(errors, 0), "parameter",
		    json_string("oid"));
		http_problem_errors(req, 400, "invalid-parameter", errors,
		    "the oid is not a GUID");
		free(so);
		return NULL;
	}
	if (keyring_pseudonym(daemon_keyring(), http_conf(req)->tenant_id,
	    so->oid, so->pseudonym) != KEYRING_OK) {
		http_problem(req, 500, "internal", "no pseudonym");
		free(so);
		return NULL;
	}
	return so;
}

static void
subject_audit(struct subject_op *so, struct audit_record *rec,
    const char *action, enum audit_outcome outcome, int status)
{
	if (api_audit_begin(so->req, rec, action) == -1)
		return;
	audit_record_target(rec, "%s", so->pseudonym);
	audit_record_outcome(rec, outcome, status);
}

/* Record the failure (best effort) and answer with a problem. */
static void
subject_fail(struct subject_op *so, const char *action, int status,
    const char *slug, const char *detail)
{
	struct audit_record	rec;

	subject_audit(so, &rec, action, AUDIT_ERROR, status);
	audit_log_async(&rec, so->base);
	http_problem(so->req, status, slug, "%s", detail);
	subject_op_free(so);
}

/* Commit rec (and b's changes), then answer; fail-closed. */
static void
subject_commit(struct subject_op *so, struct store_batch *b,
    const struct audit_record *rec, store_done_fn done)
{
	int	rv;

	audit_batch_add(b, rec);
	if ((rv = store_submit(b, so->base, done, so)) != STORE_OK) {
		api_store_problem(so->req, rv);
		subject_op_free(so);
	}
}

/* --- export ------------------------------------------------------------- */

/* The audit records the subject wrote (as actor), as a JSON array. */
static json_t *
audit_as_actor(const char *pseudonym, int *status)
{
	struct audit_filter	 f;
	struct audit_export	*e;
	struct evbuffer		*buf = evbuffer_new();
	json_t			*records = NULL;
	int			 rv;

	memset(&f, 0, sizeof(f));
	strlcpy(f.actor, pseudonym, sizeof(f.actor));
	f.format = AUDIT_JSON;
	e = audit_export_new(&f);
	while ((rv = audit_export_fill(e, buf, AUDIT_EXPORT_CHUNK)) == 1)
		;
	audit_export_free(e);
	if (rv == 0)
		records = json_loadb((const char *)evbuffer_pullup(buf, -1),
		    evbuffer_get_length(buf), 0, NULL);
	evbuffer_free(buf);
	*status = rv == 0 && records == NULL ? STORE_CORRUPT : rv;
	return records;
}

static void
export_done(int status, void *arg)
{
	struct subject_op	*so = arg;

	if (status == STORE_OK)
		http_reply_json(so->req, 200, json_incref(so->result));
	else
		api_store_problem(so->req, status);
	subject_op_free(so);
}

static int
export_collect(struct subject_op *so, json_t **events, json_t **settings,
    json_t **audit)
{
	char	prefix[SETTINGS_RKEY_MAX];
	int	more, rv;

	*events = *settings = *audit = NULL;
	settings_scope_prefix("user", so->pseudonym, prefix, sizeof(prefix));
	if ((rv = events_subject_export(daemon_store(), so->pseudonym,
	    events)) == STORE_OK &&
	    (rv = settings_list(daemon_store(), prefix, NULL, SIZE_MAX, 1,
	    settings, &more)) == STORE_OK)
		*audit = audit_as_actor(so->pseudonym, &rv);
	return rv;
}

void
api_subject_export(struct request *req)
{
	struct subject_op	*so;
	struct audit_record	 rec;
	json_t			*events, *settings, *audit;
	char			 ts[40];
	int			 rv;

	if ((so = subject_begin(req)) == NULL)
		return;
	if ((rv = export_collect(so, &events, &settings, &audit)) !=
	    STORE_OK) {
		json_decref(events);
		json_decref(settings);
		api_store_problem(req, rv);
		subject_op_free(so);
		return;
	}
	format_iso8601(ts, sizeof(ts), wall_usec());
	so->result = json_pack("{s:{s:s, s:s}, s:s, s:o, s:o, s:o}",
	    "subject", "oid", so->oid, "pseudonym", so->pseudonym,
	    "exported_at", ts, "events", events, "settings", settings,
	    "audit", audit);
	subject_audit(so, &rec, "subject.export", AUDIT_OK, 200);
	audit_record_detail_int(&rec, "events", (long long)
	    json_array_size(events));
	audit_record_detail_int(&rec, "settings", (long long)
	    json_array_size(settings));
	subject_commit(so, store_batch_new(daemon_store()), &rec,
	    export_done);
}

/* --- erase -------------------------------------------------------------- */

static void
erase_done(int status, void *arg)
{
	struct subject_op	*so = arg;
	char			 ts[40];

	if (status != STORE_OK) {
		api_store_problem(so->req, status);
		subject_op_free(so);
		return;
	}
	api_user_forget();
	format_iso8601(ts, sizeof(ts), wall_usec());
	http_reply_json(so->req, 200, json_pack("{s:s, s:s, s:s, s:{s:I, "
	    "s:I, s:I}, s:s}", "oid", so->oid, "pseudonym", so->pseudonym,
	    "erased_at", ts, "deleted", "events", (json_int_t)so->events,
	    "settings", (json_int_t)so->settings, "usage_markers",
	    (json_int_t)so->markers, "vault", "forgotten"));
	subject_op_free(so);
}

/* Back on the worker: the vault has forgotten; now the local data. */
static void
erase_apply(void *arg)
{
	struct subject_op	*so = arg;
	struct store_batch	*b;
	struct audit_record	 rec;
	int			 rv;

	if (so->vault_status != 0) {
		subject_fail(so, "subject.erase", 503, "vault-unavailable",
		    so->error);
		return;
	}
	b = store_batch_new(daemon_store());
	if ((rv = events_subject_erase(daemon_store(), b, so->pseudonym,
	    &so->events, &so->markers)) != STORE_OK ||
	    (rv = settings_subject_erase(daemon_store(), b, so->pseudonym,
	    &so->settings)) != STORE_OK) {
		store_batch_free(b);
		api_store_problem(so->req, rv);
		subject_op_free(so);
		return;
	}
	store_batch_del(b, API_USERS_DB, so->pseudonym, strlen(so->pseudonym));
	subject_audit(so, &rec, "subject.erase", AUDIT_OK, 200);
	audit_record_detail_int(&rec, "events", (long long)so->events);
	audit_record_detail_int(&rec, "settings", (long long)so->settings);
	subject_commit(so, b, &rec, erase_done);
}

static void
vault_answered(int status, json_t *result, const char *error, void *arg)
{
	struct subject_op	*so = arg;

	so->vault_status = status;
	if (status != 0)
		snprintf(so->error, sizeof(so->error), "the vault refused: "
		    "%s", error != NULL ? error : "error");
	else if (result != NULL && json_object_get(result, "identity"))
		so->result = json_deep_copy(json_object_get(result,
		    "identity"));
}

static void
erase_forgotten(int status, json_t *result, const char *error, void *arg)
{
	struct subject_op	*so = arg;

	vault_answered(status, result, error, so);
	if (api_run_on(so->base, erase_apply, so) == -1)
		log_warnx("erase: the worker is gone");
}

/* On the main thread. */
static void
erase_forget(void *arg)
{
	struct subject_op	*so = arg;

	if (vault_forget(so->pseudonym, erase_forgotten, so) == 0)
		return;
	so->vault_status = -1;
	strlcpy(so->error, "the vault is unreachable; nothing was erased",
	    sizeof(so->error));
	if (api_run_on(so->base, erase_apply, so) == -1)
		log_warnx("erase: the worker is gone");
}

static const struct jin_schema empty_schema = { NULL, 0, 0 };

/* An optional body, which must then be an empty object; -1: answered. */
static int
empty_body(struct request *req)
{
	json_t	*body, *errors;
	size_t	 len;

	if (http_body(req, &len) == NULL || len == 0)
		return 0;
	if ((body = api_json_body(req)) == NULL)
		return -1;
	errors = jin_errors();
	if (jin_check(body, &empty_schema, "", errors) == 0) {
		json_decref(errors);
		json_decref(body);
		return 0;
	}
	json_decref(body);
	http_problem_errors(req, 400, "invalid-body", errors,
	    "the body has invalid fields");
	return -1;
}

void
api_subject_erase(struct request *req)
{
	struct subject_op	*so;

	if (empty_body(req) == -1 || (so = subject_begin(req)) == NULL)
		return;
	if (api_run_on(http_main_base(), erase_forget, so) == -1) {
		http_problem(req, 503, "unavailable", "busy");
		subject_op_free(so);
	}
}

/* --- re-identification -------------------------------------------------- */

static int
check_pseudonym(json_t *v, char *detail, size_t len)
{
	if (vault_pseudonym_ok(json_string_value(v)))
		return 0;
	snprintf(detail, len, "must be a pseudonym: p_ and 26 base32 "
	    "characters");
	return -1;
}

static int
check_reason(json_t *v, char *detail, size_t len)
{
	if (strlen(json_string_value(v)) <= VAULT_NAME_MAX)
		return 0;
	snprintf(detail, len, "must be at most %d bytes", VAULT_NAME_MAX);
	return -1;
}

static const struct jin_field reid_fields[] = {
	{ .name = "pseudonym", .type = JIN_STRING, .flags = JIN_REQUIRED,
	    .min = 1, .max = 64, .check = check_pseudonym },
	{ .name = "reason", .type = JIN_STRING, .flags = JIN_REQUIRED,
	    .min = 10, .max = VAULT_NAME_MAX, .check = check_reason },
};
static const struct jin_schema reid_schema = {
	reid_fields, nitems(reid_fields), 0
};

static void
reid_done(int status, void *arg)
{
	struct subject_op	*so = arg;
	char			 ts[40];

	if (status != STORE_OK) {
		api_store_problem(so->req, status);
		subject_op_free(so);
		return;
	}
	format_iso8601(ts, sizeof(ts), wall_usec());
	http_reply_json(so->req, 200, json_pack("{s:s, s:O, s:s}",
	    "pseudonym", so->pseudonym, "identity", so->result,
	    "resolved_at", ts));
	subject_op_free(so);
}

/* Back on the worker with the vault's answer. */
static void
reid_apply(void *arg)
{
	struct subject_op	*so = arg;
	struct audit_record	 rec;

	if (so->vault_status != 0 || so->result == NULL) {
		if (strstr(so->error, "no such pseudonym") != NULL)
			subject_fail(so, "subject.reidentify", 404,
			    "not-found", "the vault knows no such pseudonym");
		else
			subject_fail(so, "subject.reidentify", 503,
			    "vault-unavailable", so->error[0] ? so->error :
			    "the vault gave no identity");
		return;
	}
	subject_audit(so, &rec, "subject.reidentify", AUDIT_OK, 200);
	audit_record_detail(&rec, "reason", "%s", so->reason);
	subject_commit(so, store_batch_new(daemon_store()), &rec, reid_done);
}

static void
reid_resolved(int status, json_t *result, const char *error, void *arg)
{
	struct subject_op	*so = arg;

	vault_answered(status, result, error, so);
	if (api_run_on(so->base, reid_apply, so) == -1)
		log_warnx("reidentify: the worker is gone");
}

/* On the main thread. */
static void
reid_resolve(void *arg)
{
	struct subject_op	*so = arg;

	if (vault_resolve(so->pseudonym, so->requester, so->reason,
	    reid_resolved, so) == 0)
		return;
	so->vault_status = -1;
	strlcpy(so->error, "the vault is unreachable", sizeof(so->error));
	if (api_run_on(so->base, reid_apply, so) == -1)
		log_warnx("reidentify: the worker is gone");
}

void
api_reidentify(struct request *req)
{
	const struct auth_principal	*p = http_principal(req);
	struct subject_op		*so;
	json_t				*body, *errors;

	if ((body = api_json_body(req)) == NULL)
		return;
	errors = jin_errors();
	if (jin_check(body, &reid_schema, "", errors) > 0) {
		http_problem_errors(req, 400, "invalid-body", errors,
		    "the body has invalid fields");
		json_decref(body);
		return;
	}
	json_decref(errors);
	so = xcalloc(1, sizeof(*so));
	so->req = req;
	so->base = http_base(req);
	strlcpy(so->pseudonym, json_string_value(json_object_get(body,
	    "pseudonym")), sizeof(so->pseudonym));
	strlcpy(so->reason, json_string_value(json_object_get(body,
	    "reason")), sizeof(so->reason));
	snprintf(so->requester, sizeof(so->requester), "api:%s",
	    p != NULL && p->pseudonym[0] ? p->pseudonym : "unknown");
	json_decref(body);
	if (api_run_on(http_main_base(), reid_resolve, so) == -1) {
		http_problem(req, 503, "unavailable", "busy");
		subject_op_free(so);
	}
}
