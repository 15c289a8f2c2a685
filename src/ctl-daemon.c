/*
 * ctl-daemon.c: the daemon's control commands. Adding a command is one row
 * in ctl_commands and one handler; control.c does framing and dispatch.
 */
#include "config.h"

#include <string.h>

#include "tenantd.h"

static json_t	*ctl_status(const struct ctl_peer *, json_t *, char **);
static json_t	*ctl_reload(const struct ctl_peer *, json_t *, char **);
static json_t	*ctl_check_config(const struct ctl_peer *, json_t *, char **);
static json_t	*ctl_token(const struct ctl_peer *, json_t *, char **);
static json_t	*ctl_shipping_status(const struct ctl_peer *, json_t *, char **);
static json_t	*ctl_shipping_retry(const struct ctl_peer *, json_t *, char **);
static json_t	*ctl_shipping_test(const struct ctl_peer *, json_t *, char **);

static const struct ctl_command ctl_commands[] = {
	{ "status",		ctl_status,
	    "version, uptime, listeners and readiness" },
	{ "reload",		ctl_reload,
	    "re-read the configuration and apply it only if it is valid" },
	{ "check-config",	ctl_check_config,
	    "parse the configuration file without applying it" },
	{ "token",		ctl_token,
	    "mint a development token (auth.provider: local only)" },
	{ "shipping status",	ctl_shipping_status,
	    "log shipping: queues, failures, dead letters" },
	{ "shipping retry",	ctl_shipping_retry,
	    "log shipping: send the dead-lettered records again" },
	{ "shipping test",	ctl_shipping_test,
	    "log shipping: queue test records on the ops stream" },
	{ "audit verify",	ctl_audit_verify,
	    "walk the audit chain and its checkpoints; the first break" },
	{ "audit export",	ctl_audit_export,
	    "audit records as CSV, JSON or JSON Lines (streamed)" },
	{ "audit pubkey",	ctl_audit_pubkey,
	    "the Ed25519 key that signs audit checkpoints" },
	{ "audit actions",	ctl_audit_actions,
	    "every action the audit trail records" },
	{ "audit prune",	ctl_audit_prune,
	    "remove records up to a seq, leaving a signed anchor" },
	{ "notice publish",	ctl_notice_publish,
	    "publish a notice to the customer" },
	{ "notice update",	ctl_notice_update, "change a notice" },
	{ "notice list",	ctl_notice_list, "list notices" },
	{ "notice deliveries",	ctl_notice_deliveries,
	    "webhook deliveries and their state" },
	{ "keys status",	ctl_keys_status,
	    "key terms, rewrap progress and store use" },
	{ "keys rotate",	ctl_keys_rotate,
	    "make a new active data key term" },
	{ "keys rewrap",	ctl_keys_rewrap,
	    "re-seal every stored value under the active term (background)" },
	{ "keys retire",	ctl_keys_retire,
	    "destroy a decrypt-only term that no value uses" },
	{ "vault status",	ctl_vault_status,
	    "connection to the vault and puts waiting for it" },
	{ "vault pseudonym",	ctl_vault_pseudonym,
	    "the pseudonym of a user's oid" },
	{ "vault put",		ctl_vault_put,
	    "register or correct the identity behind a pseudonym" },
	{ "vault resolve",	ctl_vault_resolve,
	    "re-identify a pseudonym (written to the vault's access log)" },
	{ "vault forget",	ctl_vault_forget,
	    "erase the identity behind a pseudonym" },
	{ "vault stats",	ctl_vault_stats,
	    "counts and storage use in the vault" },
};

const struct ctl_command *
ctl_command_find(const char *name)
{
	size_t	i;

	for (i = 0; i < nitems(ctl_commands); i++)
		if (strcmp(ctl_commands[i].name, name) == 0)
			return &ctl_commands[i];
	return NULL;
}

/* The commands here take no arguments; say so rather than ignore them. */
static int
ctl_no_args(json_t *args, char **error)
{
	if (json_object_size(args) == 0)
		return 0;
	*error = xstrdup("this command takes no arguments");
	return -1;
}

static const char *
ctl_config_path(void)
{
	const struct config	*conf = daemon_config();

	return conf != NULL && conf->path != NULL ? conf->path : "";
}

static json_t *
ctl_status(const struct ctl_peer *peer, json_t *args, char **error)
{
	json_t	*status;

	if (ctl_no_args(args, error) == -1)
		return NULL;
	if ((status = daemon_status()) == NULL)
		*error = xstrdup("status is not available");
	return status;
}

static json_t *
ctl_reload(const struct ctl_peer *peer, json_t *args, char **error)
{
	if (ctl_no_args(args, error) == -1)
		return NULL;
	if (daemon_reload(error) == -1) {
		if (*error == NULL)
			*error = xstrdup("reload failed");
		return NULL;
	}
	return json_pack("{s:s}", "config", ctl_config_path());
}

static json_t *
ctl_check_config(const struct ctl_peer *peer, json_t *args, char **error)
{
	if (ctl_no_args(args, error) == -1)
		return NULL;
	if (daemon_check_config(error) == -1) {
		if (*error == NULL)
			*error = xstrdup("configuration check failed");
		return NULL;
	}
	return json_pack("{s:s}", "config", ctl_config_path());
}

/* roles: an array of tenantd role names; 0 or -1 with *error set. */
static int
ctl_token_roles(json_t *list, unsigned *roles, char **error)
{
	json_t		*v;
	size_t		 i;
	unsigned	 role;

	*roles = 0;
	if (list == NULL)
		return 0;
	if (!json_is_array(list)) {
		*error = xstrdup("roles must be a list of role names");
		return -1;
	}
	json_array_foreach(list, i, v) {
		if (!json_is_string(v) ||
		    auth_role_parse(json_string_value(v), &role) == -1) {
			*error = xstrdup("unknown role; roles are admin and "
			    "auditor");
			return -1;
		}
		*roles |= role;
	}
	return 0;
}

/* {"user": NAME, "roles": [...], "ttl": seconds} -> {"token": ...} */
static json_t *
ctl_token(const struct ctl_peer *peer, json_t *args, char **error)
{
	const char	*user;
	json_t		*ttl, *result;
	unsigned	 roles;
	char		*token;

	user = json_string_value(json_object_get(args, "user"));
	ttl = json_object_get(args, "ttl");
	if (user == NULL) {
		*error = xstrdup("user is required");
		return NULL;
	}
	if (ttl != NULL && (!json_is_integer(ttl) ||
	    json_integer_value(ttl) <= 0)) {
		*error = xstrdup("ttl must be a number of seconds");
		return NULL;
	}
	if (ctl_token_roles(json_object_get(args, "roles"), &roles,
	    error) == -1)
		return NULL;
	token = daemon_auth_mint(user, roles, ttl != NULL ?
	    (uint64_t)json_integer_value(ttl) : 3600, error);
	if (token == NULL)
		return NULL;
	result = json_pack("{s:s}", "token", token);
	freezero_str(token);
	return result;
}

/* Log shipping (shipper*.c). */

static json_t *
ctl_shipping_status(const struct ctl_peer *peer, json_t *args, char **error)
{
	if (ctl_no_args(args, error) == -1)
		return NULL;
	return shipper_status();
}

static json_t *
ctl_shipping_retry(const struct ctl_peer *peer, json_t *args, char **error)
{
	char	err[256];

	if (ctl_no_args(args, error) == -1)
		return NULL;
	if (shipper_retry_dead(err, sizeof(err)) == -1) {
		*error = xstrdup(err);
		return NULL;
	}
	return json_pack("{s:b}", "requeued", 1);
}

static json_t *
ctl_shipping_test(const struct ctl_peer *peer, json_t *args, char **error)
{
	json_int_t	 count = json_integer_value(json_object_get(args,
			    "count"));
	json_int_t	 pad = json_integer_value(json_object_get(args, "pad"));
	char		 err[256];

	if (count <= 0)
		count = 1;
	if (pad < 0 || count > UINT32_MAX ||
	    shipper_test_records((unsigned)count, (size_t)pad, err,
	    sizeof(err)) == -1) {
		*error = xstrdup(pad < 0 ? "pad must not be negative" : err);
		return NULL;
	}
	return json_pack("{s:I}", "queued", count);
}
