/*
 * ctl-audit.c: the audit trail inside tenantd: opening it with the store,
 * daemon.start/stop and SIGHUP reload records, one record per control
 * command, the checkpoint timer, and the `tenantctl audit ...` commands.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "tenantd.h"

#define AUDIT_TICK_SECS		60
#define AUDIT_STREAM_CHUNK	(64 * 1024)

static struct {
	struct event		*tick;
	struct audit_record	 ctl_extra;	/* details a handler adds */
	int			 ctl_has_extra;
} ad;

static void
audit_tick_cb(evutil_socket_t fd, short ev, void *arg)
{
	audit_tick(arg);
}

static void
daemon_record(const char *action)
{
	struct audit_record	rec;

	audit_record_init(&rec, action, "system");
	audit_record_detail(&rec, "version", "%s", TENANTD_VERSION);
	audit_record_detail_int(&rec, "pid", (long long)getpid());
	if (audit_log_now(&rec) != STORE_OK && strcmp(action,
	    "daemon.start") == 0)
		fatalx("cannot start: the audit trail cannot be written");
}

/* After the store is open; fail-closed: no audit trail, no tenantd. */
void
audit_daemon_start(struct event_base *base, struct store *st,
    struct keyring *kr)
{
	struct timeval	tv = { AUDIT_TICK_SECS, 0 };
	char		err[256];

	if (audit_init(st, kr, NULL, err, sizeof(err)) == -1)
		fatalx("cannot start: %s", err);
	daemon_record("daemon.start");
	ad.tick = event_new(base, -1, EV_PERSIST, audit_tick_cb, base);
	if (ad.tick == NULL || event_add(ad.tick, &tv) == -1)
		fatalx("audit: the checkpoint timer could not be set");
}

/* Before the store closes: the stop record and a last checkpoint. */
void
audit_daemon_stop(void)
{
	if (!audit_enabled())
		return;
	if (ad.tick != NULL)
		event_free(ad.tick);
	ad.tick = NULL;
	daemon_record("daemon.stop");
	audit_checkpoint();
	audit_shutdown();
}

/* SIGHUP: the same action as tenantctl reload, by the system. */
void
audit_signal_reload(int ok)
{
	struct audit_record	rec;

	audit_record_init(&rec, "config.reload", "system");
	audit_record_detail(&rec, "trigger", "SIGHUP");
	audit_record_outcome(&rec, ok ? AUDIT_OK : AUDIT_ERROR, 0);
	audit_log_now(&rec);
}

/* A handler's details for the record of the command being run. */
void
audit_ctl_detail(const char *key, const char *value)
{
	if (!ad.ctl_has_extra)
		memset(&ad.ctl_extra, 0, sizeof(ad.ctl_extra));
	ad.ctl_has_extra = 1;
	audit_record_detail(&ad.ctl_extra, key, "%s", value);
}

static void
ctl_take_details(struct audit_record *rec)
{
	size_t	i;

	for (i = 0; ad.ctl_has_extra && i < ad.ctl_extra.ndetails; i++)
		rec->details[rec->ndetails++] = ad.ctl_extra.details[i];
	ad.ctl_has_extra = 0;
}

/*
 * One record per control command, by operator:UID. error is NULL when the
 * command succeeded. Returns -1 if the record could not be written.
 */
int
audit_ctl(uid_t uid, const char *cmd, const char *error)
{
	const struct audit_action	*a = audit_action_for_ctl(cmd);
	struct audit_record		 rec;
	char				 actor[32];

	snprintf(actor, sizeof(actor), "operator:%u", (unsigned)uid);
	if (!audit_enabled()) {
		log_info("control: %s by %s: %s", cmd, actor,
		    error ? error : "ok");
		ad.ctl_has_extra = 0;
		return 0;
	}
	audit_record_init(&rec, a != NULL ? a->name : "ctl.unknown", actor);
	strlcpy(rec.source, "local", sizeof(rec.source));
	if (a == NULL)
		audit_record_detail(&rec, "command", "%s", cmd);
	ctl_take_details(&rec);
	if (error != NULL) {
		audit_record_outcome(&rec, AUDIT_ERROR, 0);
		audit_record_detail(&rec, "error", "%.200s", error);
	}
	return audit_log_now(&rec) == STORE_OK ? 0 : -1;
}

/* A peer the control socket refused, rate-limited like HTTP denials. */
void
audit_ctl_denied(uid_t uid)
{
	struct audit_record	rec;
	char			actor[32];

	if (!audit_enabled())
		return;
	snprintf(actor, sizeof(actor), "operator:%u", (unsigned)uid);
	audit_record_init(&rec, "ctl.denied", actor);
	strlcpy(rec.source, "local", sizeof(rec.source));
	audit_record_outcome(&rec, AUDIT_DENIED, 0);
	audit_denied(&rec, NULL);
}

/* --- tenantctl audit ... ------------------------------------------------ */

static json_t *
ctl_fail(char **error, const char *msg)
{
	*error = xstrdup(msg);
	return NULL;
}

json_t *
ctl_audit_verify(const struct ctl_peer *peer, json_t *args, char **error)
{
	json_t		*from = json_object_get(args, "from");
	json_int_t	 seq = 0;
	char		 buf[32];

	if (from != NULL && (!json_is_integer(from) ||
	    (seq = json_integer_value(from)) < 1))
		return ctl_fail(error, "from: expected a sequence number >= 1");
	if (seq > 0) {
		snprintf(buf, sizeof(buf), "%lld", (long long)seq);
		audit_ctl_detail("from", buf);
	}
	if (!audit_enabled())
		return ctl_fail(error, "the audit trail is not open");
	return audit_verify((uint64_t)seq);
}

json_t *
ctl_audit_pubkey(const struct ctl_peer *peer, json_t *args, char **error)
{
	char	pub[80], id[24];

	if (!audit_enabled())
		return ctl_fail(error, "the audit trail is not open");
	audit_pubkey(pub, sizeof(pub), id, sizeof(id));
	return json_pack("{s:s,s:s,s:s}", "algorithm", "Ed25519",
	    "pubkey", pub, "key_id", id);
}

json_t *
ctl_audit_actions(const struct ctl_peer *peer, json_t *args, char **error)
{
	return audit_actions_json();
}

json_t *
ctl_audit_prune(const struct ctl_peer *peer, json_t *args, char **error)
{
	json_t	*through = json_object_get(args, "through");
	char	 err[256], buf[32];

	if (!json_is_integer(through) || json_integer_value(through) < 1)
		return ctl_fail(error, "through: expected a sequence number");
	snprintf(buf, sizeof(buf), "%lld",
	    (long long)json_integer_value(through));
	audit_ctl_detail("through", buf);
	if (audit_prune((uint64_t)json_integer_value(through), err,
	    sizeof(err)) != STORE_OK)
		return ctl_fail(error, err);
	return json_pack("{s:O}", "pruned_through_seq", through);
}

static int
export_stream(void *arg, struct evbuffer *out, size_t max, char **error)
{
	int	rv = audit_export_fill(arg, out, max);

	if (rv < 0)
		*error = xstrdup(store_strerror(rv));
	return rv < 0 ? -1 : rv;
}

static void
export_free(void *arg)
{
	audit_export_free(arg);
}

/* The filter as the record's detail: "from=5 action=keys.*" */
static int
export_filter(json_t *args, struct audit_filter *f, char **error)
{
	const char	*key;
	json_t		*v;
	char		 err[256], summary[256] = "";

	memset(f, 0, sizeof(*f));
	f->bom = 1;
	json_object_foreach(args, key, v) {
		if (!json_is_string(v))
			return ctl_fail(error, "export filters are strings"),
			    -1;
		if (audit_filter_set(f, key, json_string_value(v), err,
		    sizeof(err)) == -1)
			return ctl_fail(error, err), -1;
		snprintf(summary + strlen(summary), sizeof(summary) -
		    strlen(summary), "%s%s=%.64s", summary[0] ? " " : "",
		    key, json_string_value(v));
	}
	audit_ctl_detail("filter", summary);
	return 0;
}

/* The answer says what follows; the rows follow as a stream. */
json_t *
ctl_audit_export(const struct ctl_peer *peer, json_t *args, char **error)
{
	struct audit_filter	f;

	if (export_filter(args, &f, error) == -1)
		return NULL;
	if (!audit_enabled())
		return ctl_fail(error, "the audit trail is not open");
	ctl_stream_begin(export_stream, export_free, audit_export_new(&f));
	return json_pack("{s:s,s:b}", "content_type", audit_export_ctype(&f),
	    "stream", 1);
}
