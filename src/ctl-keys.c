/*
 * ctl-keys.c: the control commands about keys and the vault: key status,
 * rotation, rewrap, retirement; pseudonyms, queued puts, re-identification
 * and erasure by an operator.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tenantd.h"

static json_t *
ctl_fail(char **error, const char *msg)
{
	*error = xstrdup(msg);
	return NULL;
}

/* A string argument that passes vault_text_ok, or NULL. */
static const char *
ctl_text(json_t *args, const char *name, size_t max)
{
	const char	*s = json_string_value(json_object_get(args, name));

	return vault_text_ok(s, max) ? s : NULL;
}

json_t *
ctl_keys_status(const struct ctl_peer *peer, json_t *args, char **error)
{
	return daemon_keys_status();
}

json_t *
ctl_keys_rotate(const struct ctl_peer *peer, json_t *args, char **error)
{
	uint32_t	term;
	char		err[256];

	if (keyring_rotate(daemon_keyring(), &term, err, sizeof(err)) == -1)
		return ctl_fail(error, err);
	daemon_keys_rotated(term, "rotated by an operator");
	return json_pack("{s:I}", "term", (json_int_t)term);
}

json_t *
ctl_keys_rewrap(const struct ctl_peer *peer, json_t *args, char **error)
{
	char	err[256];

	if (daemon_keys_rewrap_start(err, sizeof(err)) == -1)
		return ctl_fail(error, err);
	return json_pack("{s:b, s:I}", "started", 1, "target_term",
	    (json_int_t)keyring_active_term(daemon_keyring()));
}

json_t *
ctl_keys_retire(const struct ctl_peer *peer, json_t *args, char **error)
{
	json_int_t	term = json_integer_value(json_object_get(args, "term"));
	char		err[256];

	if (term < 1 || term > UINT32_MAX)
		return ctl_fail(error, "retire needs a term number");
	if (daemon_keys_retire((uint32_t)term, err, sizeof(err)) == -1)
		return ctl_fail(error, err);
	return json_pack("{s:I, s:s}", "term", term, "state", "destroyed");
}

json_t *
ctl_vault_status(const struct ctl_peer *peer, json_t *args, char **error)
{
	return vault_client_status();
}

static int
ctl_pseudonym_of(json_t *args, char *out, char **error)
{
	const char	*oid = ctl_text(args, "oid", VAULT_FIELD_MAX);

	if (oid == NULL) {
		*error = xstrdup("an oid of 1 to 256 characters is needed");
		return -1;
	}
	if (keyring_pseudonym(daemon_keyring(), daemon_config()->tenant_id,
	    oid, out) == -1) {
		*error = xstrdup("cannot make a pseudonym of this oid");
		return -1;
	}
	return 0;
}

json_t *
ctl_vault_pseudonym(const struct ctl_peer *peer, json_t *args, char **error)
{
	char	pseudonym[KEYRING_PSEUDONYM_LEN];

	if (ctl_pseudonym_of(args, pseudonym, error) == -1)
		return NULL;
	return json_pack("{s:s}", "pseudonym", pseudonym);
}

/* Queue a put; answered once it is durable in tenantd's store. */
json_t *
ctl_vault_put(const struct ctl_peer *peer, json_t *args, char **error)
{
	char	 pseudonym[KEYRING_PSEUDONYM_LEN], err[256];
	json_t	*identity, *dn = json_object_get(args, "display_name");
	int	 rv;

	if (ctl_pseudonym_of(args, pseudonym, error) == -1)
		return NULL;
	identity = json_pack("{s:O, s:O}", "oid", json_object_get(args, "oid"),
	    "upn", json_object_get(args, "upn") ? json_object_get(args, "upn") :
	    json_null());
	if (dn != NULL)
		json_object_set(identity, "display_name", dn);
	rv = vault_put_sync(pseudonym, identity, err, sizeof(err));
	json_decref(identity);
	if (rv == -1)
		return ctl_fail(error, err);
	return json_pack("{s:s, s:b}", "pseudonym", pseudonym, "queued", 1);
}

/* One request to the vault, answered by its result, or NULL and *error. */
static json_t *
ctl_vault_call(json_t *req, char **error)
{
	json_t		*answer;
	char		 err[256];
	const char	*e;

	if (vault_call(&daemon_config()->vault, req, &answer, err,
	    sizeof(err)) == -1) {
		json_decref(req);
		return ctl_fail(error, err);
	}
	json_decref(req);
	if (!json_is_true(json_object_get(answer, "ok"))) {
		e = json_string_value(json_object_get(answer, "error"));
		ctl_fail(error, e != NULL ? e : "the vault said no");
		json_decref(answer);
		return NULL;
	}
	json_object_del(answer, "ok");
	json_object_del(answer, "id");
	return answer;
}

static const char *
ctl_pseudonym_arg(json_t *args, char **error)
{
	const char	*p = json_string_value(json_object_get(args,
			    "pseudonym"));

	if (!vault_pseudonym_ok(p)) {
		*error = xstrdup("not a pseudonym (p_ and 26 base32 "
		    "characters)");
		return NULL;
	}
	return p;
}

/* Re-identification: the vault writes it to its access log first. */
json_t *
ctl_vault_resolve(const struct ctl_peer *peer, json_t *args, char **error)
{
	const char	*p, *reason;
	char		 requester[64];

	if ((p = ctl_pseudonym_arg(args, error)) == NULL)
		return NULL;
	if ((reason = ctl_text(args, "reason", VAULT_NAME_MAX)) == NULL)
		return ctl_fail(error, "a reason of 1 to 512 characters is "
		    "needed");
	snprintf(requester, sizeof(requester), "operator:%u",
	    (unsigned)peer->uid);
	return ctl_vault_call(json_pack("{s:i, s:s, s:s, s:s, s:s}", "id", 1,
	    "op", "resolve", "pseudonym", p, "requester", requester,
	    "reason", reason), error);
}

json_t *
ctl_vault_forget(const struct ctl_peer *peer, json_t *args, char **error)
{
	const char	*p;
	char		 requester[64], err[256];
	json_t		*r;

	if ((p = ctl_pseudonym_arg(args, error)) == NULL)
		return NULL;
	if (vault_forget_pending(p, err, sizeof(err)) == -1)
		return ctl_fail(error, err);
	snprintf(requester, sizeof(requester), "operator:%u",
	    (unsigned)peer->uid);
	r = ctl_vault_call(json_pack("{s:i, s:s, s:s, s:s}", "id", 1, "op",
	    "forget", "pseudonym", p, "requester", requester), error);
	if (r != NULL)
		json_object_set_new(r, "forgotten", json_string(p));
	return r;
}

json_t *
ctl_vault_stats(const struct ctl_peer *peer, json_t *args, char **error)
{
	return ctl_vault_call(json_pack("{s:i, s:s}", "id", 1, "op", "stats"),
	    error);
}
