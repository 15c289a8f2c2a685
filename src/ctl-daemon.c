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

static const struct ctl_command ctl_commands[] = {
	{ "status",		ctl_status,
	    "version, uptime, listeners and readiness" },
	{ "reload",		ctl_reload,
	    "re-read the configuration and apply it only if it is valid" },
	{ "check-config",	ctl_check_config,
	    "parse the configuration file without applying it" },
	{ "notice publish",	ctl_notice_publish,
	    "publish a notice to the customer" },
	{ "notice update",	ctl_notice_update, "change a notice" },
	{ "notice list",	ctl_notice_list, "list notices" },
	{ "notice deliveries",	ctl_notice_deliveries,
	    "webhook deliveries and their state" },
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
