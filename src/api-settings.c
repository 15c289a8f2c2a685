/*
 * api-settings.c: GET|PUT|DELETE /v1/settings/{scope}/{key} and GET
 * /v1/settings/{scope} (list, cursor pagination). Scopes: tenant and
 * site:{siteId} (any user reads, admins write) and user (the caller's own
 * settings only). Writes are conditional on strong ETags.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "http.h"

#define LIST_DEFAULT	100

struct setting_req {
	struct request		*req;
	struct settings_write	 w;
	char			*if_match, *if_none_match;
	char			 scope[SETTINGS_SITE_MAX + 8];
	char			 key[SETTINGS_KEY_MAX + 1];
};

static void
param_problem(struct request *req, int status, const char *name,
    const char *detail)
{
	json_t	*errors = jin_errors();

	jin_error(errors, "", "%s: %s", name, detail);
	json_object_set_new(json_array_get(errors, 0), "parameter",
	    json_string(name));
	http_problem_errors(req, status, status == 403 ? "forbidden" :
	    "invalid-parameter", errors, "%s", detail);
}

/*
 * The record-key prefix of the {scope} parameter; -1 after answering. A
 * write to tenant or site: needs admin; user is always the caller's.
 */
static int
scope_prefix(struct request *req, int write, char *out, size_t outlen)
{
	const struct auth_principal	*p = http_principal(req);
	const char			*scope = http_param(req, "scope");

	if (scope == NULL || p == NULL) {
		http_problem(req, 500, "internal", "no scope or principal");
		return -1;
	}
	if (strncmp(scope, "user", 4) == 0 && scope[4] != '\0') {
		param_problem(req, 403, "scope", "the user scope reaches only "
		    "the caller's own settings: use 'user'");
		return -1;
	}
	if (settings_scope_prefix(scope, p->pseudonym, out, outlen) == -1) {
		param_problem(req, 400, "scope", "must be tenant, "
		    "site:{siteId} (1 to 128 of A-Z, a-z, 0-9, '.', '_', "
		    "'-', ',') or user");
		return -1;
	}
	if (write && out[0] != 'u' && !(p->roles & AUTH_ROLE_ADMIN)) {
		param_problem(req, 403, "scope", "writing tenant and site "
		    "settings needs the admin role");
		return -1;
	}
	return 0;
}

/* scope prefix + {key} -> the record key; -1 after answering. */
static int
record_key(struct request *req, int write, char *out, size_t outlen)
{
	const char	*key = http_param(req, "key");
	char		 prefix[SETTINGS_RKEY_MAX];

	if (scope_prefix(req, write, prefix, sizeof(prefix)) == -1)
		return -1;
	if (key == NULL || !settings_key_ok(key)) {
		param_problem(req, 400, "key", "must be 1 to 128 of A-Z, a-z, "
		    "0-9, '.', '_' and '-'");
		return -1;
	}
	snprintf(out, outlen, "%s%s", prefix, key);
	return 0;
}

static json_t *
setting_json(struct request *req, json_t *rec, int with_value)
{
	json_t	*out = json_pack("{s:s, s:s, s:O, s:O}", "scope",
		    http_param(req, "scope"), "key", http_param(req, "key"),
		    "etag", json_object_get(rec, "etag"), "updated_at",
		    json_object_get(rec, "updated_at"));

	if (with_value)
		json_object_set(out, "value", json_object_get(rec, "value"));
	return out;
}

void
api_settings_get(struct request *req)
{
	char		 key[SETTINGS_RKEY_MAX];
	const char	*etag, *inm;
	json_t		*rec;
	int		 rv;

	if (record_key(req, 0, key, sizeof(key)) == -1)
		return;
	if ((rv = settings_get(daemon_store(), key, &rec)) == STORE_NOTFOUND) {
		http_problem(req, 404, "not-found", "no such setting");
		return;
	} else if (rv != STORE_OK) {
		api_store_problem(req, rv);
		return;
	}
	etag = json_string_value(json_object_get(rec, "etag"));
	http_set_header(req, "ETag", etag);
	inm = http_header(req, "If-None-Match");
	if (inm != NULL && (strcmp(inm, "*") == 0 || strstr(inm, etag))) {
		json_decref(rec);
		http_reply(req, 304, NULL, NULL, 0);
		return;
	}
	http_reply_json(req, 200, setting_json(req, rec, 1));
	json_decref(rec);
}

/* --- writes ------------------------------------------------------------ */

static void
setting_req_free(struct setting_req *sr)
{
	settings_write_clear(&sr->w);
	json_decref(sr->w.value);
	free(sr->if_match);
	free(sr->if_none_match);
	free(sr);
}

static const char *const precondition_texts[][2] = {
	{ "404", "no such setting" },
	{ "412", "the setting's current ETag does not match the "
	    "precondition" },
	{ "428", "the setting exists: send If-Match with its ETag (or "
	    "If-None-Match: * to create only)" },
};

static void
write_refused(struct request *req, int status)
{
	char	code[8];
	size_t	i;

	snprintf(code, sizeof(code), "%d", status);
	for (i = 0; i < nitems(precondition_texts); i++)
		if (strcmp(precondition_texts[i][0], code) == 0)
			break;
	http_problem(req, status, status == 404 ? "not-found" :
	    status == 412 ? "precondition-failed" : "precondition-required",
	    "%s", i < nitems(precondition_texts) ? precondition_texts[i][1] :
	    "refused");
}

static void
write_done(int status, void *arg)
{
	struct setting_req	*sr = arg;
	struct request		*req = sr->req;
	json_t			*out;

	if (status != STORE_OK && sr->w.status != 0)
		write_refused(req, sr->w.status);
	else if (status != STORE_OK)
		api_store_problem(req, status);
	else if (sr->w.value == NULL)
		http_reply(req, 204, NULL, NULL, 0);
	else {
		http_set_header(req, "ETag", sr->w.etag);
		out = json_pack("{s:s, s:s, s:s, s:s}", "scope", sr->scope,
		    "key", sr->key, "etag", sr->w.etag, "updated_at",
		    sr->w.updated_at);
		http_reply_json(req, sr->w.existed ? 200 : 201, out);
	}
	setting_req_free(sr);
}

/* Preconditions from the headers; -1 after answering. */
static int
write_headers(struct request *req, struct setting_req *sr)
{
	const char	*im = http_header(req, "If-Match");
	const char	*inm = http_header(req, "If-None-Match");

	if (inm != NULL && strcmp(inm, "*") != 0) {
		http_problem(req, 400, "invalid-header", "writes support "
		    "only If-None-Match: *");
		return -1;
	}
	if (im != NULL && inm != NULL) {
		http_problem(req, 400, "invalid-header", "send If-Match or "
		    "If-None-Match, not both");
		return -1;
	}
	sr->if_match = im != NULL ? xstrdup(im) : NULL;
	sr->if_none_match = inm != NULL ? xstrdup(inm) : NULL;
	sr->w.if_match = sr->if_match;
	sr->w.if_none_match = sr->if_none_match;
	return 0;
}

static void
write_submit(struct request *req, struct setting_req *sr, const char *act)
{
	struct audit_record	 rec;
	struct store_batch	*b = store_batch_new(daemon_store());
	int			 rv;

	settings_write_add(b, &sr->w);
	if (api_audit_begin(req, &rec, act) == 0) {
		audit_record_target(&rec, "settings/%s/%s", sr->scope,
		    sr->key);
		audit_record_outcome(&rec, AUDIT_OK, sr->w.value == NULL ?
		    204 : 200);
	}
	audit_batch_add(b, &rec);
	if ((rv = store_submit(b, http_base(req), write_done, sr)) !=
	    STORE_OK) {
		api_store_problem(req, rv);
		setting_req_free(sr);
	}
}

static struct setting_req *
write_begin(struct request *req)
{
	struct setting_req	*sr = xcalloc(1, sizeof(*sr));

	sr->req = req;
	if (record_key(req, 1, sr->w.key, sizeof(sr->w.key)) == -1 ||
	    write_headers(req, sr) == -1) {
		setting_req_free(sr);
		return NULL;
	}
	strlcpy(sr->scope, http_param(req, "scope"), sizeof(sr->scope));
	strlcpy(sr->key, http_param(req, "key"), sizeof(sr->key));
	return sr;
}

static const struct jin_field put_fields[] = {
	{ .name = "value", .type = JIN_ANY,
	    .flags = JIN_REQUIRED | JIN_NULLABLE },
};
static const struct jin_schema put_schema = {
	put_fields, nitems(put_fields), 0
};

/* The body's value, at most SETTINGS_VALUE_MAX; NULL after answering. */
static json_t *
put_value(struct request *req)
{
	json_t	*body, *errors, *value;
	char	*text;
	size_t	 len;

	if ((body = api_json_body(req)) == NULL)
		return NULL;
	errors = jin_errors();
	if (jin_check(body, &put_schema, "", errors) > 0) {
		http_problem_errors(req, 400, "invalid-body", errors,
		    "the body has invalid fields");
		json_decref(body);
		return NULL;
	}
	value = json_incref(json_object_get(body, "value"));
	json_decref(body);
	text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
	len = text != NULL ? strlen(text) : SIZE_MAX;
	free(text);
	if (len <= SETTINGS_VALUE_MAX) {
		json_decref(errors);
		return value;
	}
	json_decref(value);
	jin_error(errors, "/value", "must be at most %d bytes as compact "
	    "JSON", SETTINGS_VALUE_MAX);
	http_problem_errors(req, 413, "value-too-large", errors,
	    "the value is larger than 64 KiB");
	return NULL;
}

void
api_settings_put(struct request *req)
{
	struct setting_req	*sr;
	json_t			*value;

	if ((sr = write_begin(req)) == NULL)
		return;
	if ((value = put_value(req)) == NULL) {
		setting_req_free(sr);
		return;
	}
	sr->w.value = value;
	api_user_seen(req);
	write_submit(req, sr, "settings.put");
}

void
api_settings_delete(struct request *req)
{
	struct setting_req	*sr;
	size_t			 len;

	if ((sr = write_begin(req)) == NULL)
		return;
	if (http_body(req, &len) != NULL && len > 0) {
		setting_req_free(sr);
		http_problem(req, 400, "invalid-body", "DELETE takes no body");
		return;
	}
	write_submit(req, sr, "settings.delete");
}

/* --- the list ------------------------------------------------------------- */

static int
list_params(struct request *req, const char **cursor, size_t *limit)
{
	const char	*c = http_query(req, "cursor");
	const char	*l = http_query(req, "limit");
	char		*end;
	long		 n;

	*cursor = c;
	*limit = LIST_DEFAULT;
	if (c != NULL && !settings_key_ok(c)) {
		param_problem(req, 400, "cursor", "not a cursor from "
		    "next_cursor");
		return -1;
	}
	if (l == NULL)
		return 0;
	n = strtol(l, &end, 10);
	if (*l == '\0' || *end != '\0' || n < 1 || n > SETTINGS_LIST_MAX) {
		param_problem(req, 400, "limit", "must be an integer from 1 "
		    "to 1000");
		return -1;
	}
	*limit = (size_t)n;
	return 0;
}

void
api_settings_list(struct request *req)
{
	char		 prefix[SETTINGS_RKEY_MAX];
	const char	*cursor, *last = NULL;
	json_t		*items;
	size_t		 limit;
	int		 more, rv;

	if (scope_prefix(req, 0, prefix, sizeof(prefix)) == -1 ||
	    list_params(req, &cursor, &limit) == -1)
		return;
	rv = settings_list(daemon_store(), prefix, cursor, limit, 0, &items,
	    &more);
	if (rv != STORE_OK) {
		api_store_problem(req, rv);
		return;
	}
	if (more && json_array_size(items) > 0)
		last = json_string_value(json_object_get(json_array_get(items,
		    json_array_size(items) - 1), "key"));
	http_reply_json(req, 200, json_pack("{s:s, s:o, s:s?}", "scope",
	    http_param(req, "scope"), "items", items, "next_cursor", last));
}
