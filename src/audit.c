/*
 * audit.c: the audit trail's front: the one table of actions, building
 * records, adding them to store batches (fail-closed) or logging them on
 * their own, and the rate limit on recorded denials.
 */
#include "config.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "tenantd.h"
#include "audit.h"

#define ROUTE_AUDIT	"GET /v1/admin/audit"

/*
 * Every action the trail knows, with the tenantctl command or the route
 * that performs it. Later issues add their rows here; a tenantctl command
 * or a state-changing route without a row fails the table tests.
 */
const struct audit_action audit_actions[] = {
	/* name		ctl		route		summary */
	{ "daemon.start", NULL, NULL, "tenantd started" },
	{ "daemon.stop", NULL, NULL, "tenantd stopped" },
	{ "daemon.status", "status", NULL, "status read" },
	{ "config.reload", "reload", NULL,
	    "configuration reloaded (SIGHUP or tenantctl reload)" },
	{ "config.check", "check-config", NULL, "configuration checked" },
	{ "ctl.denied", NULL, NULL, "control socket peer refused" },
	{ "ctl.unknown", NULL, NULL, "unknown control command" },
	{ "auth.denied", NULL, NULL, "request refused with 401 or 403" },
	{ "audit.suppressed", NULL, NULL,
	    "denied attempts not recorded one by one (rate limit)" },
	{ "audit.checkpoint", NULL, NULL, "signed checkpoint of the chain" },
	{ "audit.prune", "audit prune", NULL,
	    "records up to a sequence number removed, anchor signed" },
	{ "audit.export", "audit export", ROUTE_AUDIT,
	    "audit records exported" },
	{ "audit.verify", "audit verify", ROUTE_AUDIT "/verify",
	    "audit chain verified" },
	{ "audit.pubkey", "audit pubkey", NULL,
	    "audit public key read" },
	{ "audit.actions", "audit actions", NULL,
	    "list of audit actions read" },
	{ "keys.init", "keys init", NULL, "keyring created" },
	{ "keys.status", "keys status", NULL, "key terms and rewrap state" },
	{ "keys.rotate", "keys rotate", NULL, "new active data key term" },
	{ "keys.rotate_auto", NULL, NULL,
	    "data key rotated by age or seal count" },
	{ "keys.rewrap", "keys rewrap", NULL,
	    "values re-sealed under the active term" },
	{ "keys.retire", "keys retire", NULL, "a key term destroyed" },
	{ "keys.recover", "keys recover", NULL,
	    "keyring master key rewrapped with the recovery key" },
	{ "vault.status", "vault status", NULL, "vault connection read" },
	{ "vault.stats", "vault stats", NULL, "vault counts read" },
	{ "vault.pseudonym", "vault pseudonym", NULL,
	    "pseudonym of an oid computed" },
	{ "vault.put", "vault put", NULL, "identity registered in the vault" },
	{ "vault.resolve", "vault resolve", NULL,
	    "pseudonym re-identified by an operator" },
	{ "vault.forget", "vault forget", NULL,
	    "identity erased from the vault" },
	{ "token.issue", "token", NULL,
	    "development token issued by the local provider" },
	{ "auth.refresh", NULL, "POST /v1/auth/refresh",
	    "signing keys refresh requested" },
	{ "settings.put", NULL, "PUT /v1/settings/{scope}/{key}",
	    "setting written" },
	{ "settings.delete", NULL, "DELETE /v1/settings/{scope}/{key}",
	    "setting deleted" },
	{ "events.ingest", NULL, "POST /v1/events", "usage events stored" },
	{ "events.summary", NULL, "GET /v1/events/summary",
	    "usage summary read" },
	{ "license.install", NULL, "PUT /v1/admin/license",
	    "license installed" },
	{ "notice.publish", "notice publish", "POST /v1/admin/notices",
	    "notice published" },
	{ "notice.update", "notice update", "PATCH /v1/admin/notices/{id}",
	    "notice updated" },
	{ "notice.list", "notice list", NULL, "notices listed" },
	{ "notice.deliveries", "notice deliveries", NULL,
	    "webhook delivery state read" },
	{ "notice.auto", NULL, NULL, "notice published by tenantd" },
	{ "subject.export", NULL, "GET /v1/admin/subjects/{oid}/export",
	    "data-subject export" },
	{ "subject.erase", NULL, "POST /v1/admin/subjects/{oid}/erase",
	    "data-subject erasure" },
	{ "subject.reidentify", NULL, "POST /v1/admin/reidentify",
	    "pseudonym re-identified through the vault" },
	{ "shipping.status", "shipping status", NULL,
	    "log shipping state read" },
	{ "shipping.retry", "shipping retry", NULL,
	    "dead-lettered log batches re-sent" },
	{ "shipping.test", "shipping test", NULL,
	    "log shipping test records queued" },
};
const size_t audit_nactions = nitems(audit_actions);

/* --- buffers ------------------------------------------------------------ */

void
abuf_add(struct abuf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = MAXIMUM(b->cap * 2, b->len + n + 1);
		b->cap = MAXIMUM(b->cap, 256);
		b->p = xreallocarray(b->p, 1, b->cap);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* Room for n bytes at p (the contents are the caller's). */
void
abuf_reserve(struct abuf *b, size_t n)
{
	if (n > b->cap) {
		b->cap = MAXIMUM(n, 256);
		b->p = xreallocarray(b->p, 1, b->cap);
	}
}

void
abuf_str(struct abuf *b, const char *s)
{
	abuf_add(b, s, strlen(s));
}

void
abuf_printf(struct abuf *b, const char *fmt, ...)
{
	va_list	ap;
	char	tmp[512];
	int	n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	abuf_add(b, tmp, (size_t)MINIMUM(MAXIMUM(n, 0),
	    (int)sizeof(tmp) - 1));
}

/*
 * The canonical string form: the input is clean UTF-8 (audit_clean), so
 * only ", \ and the three allowed controls need escaping. This is what
 * Python's json.dumps(ensure_ascii=False) and jq -c write.
 */
void
abuf_json_str(struct abuf *b, const char *s, size_t n)
{
	size_t	i, run = 0;
	char	esc[2] = { '\\', 0 };

	abuf_add(b, "\"", 1);
	for (i = 0; i < n; i++) {
		switch (s[i]) {
		case '"': case '\\': esc[1] = s[i]; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default: continue;
		}
		abuf_add(b, s + run, i - run);
		abuf_add(b, esc, 2);
		run = i + 1;
	}
	abuf_add(b, s + run, n - run);
	abuf_add(b, "\"", 1);
}

void
abuf_free(struct abuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* --- clean, bounded strings --------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	unsigned char	lo = 0x80, hi = 0xbf;
	size_t		len, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		lo = s[0] == 0xe0 ? 0xa0 : lo;	/* overlong */
		hi = s[0] == 0xed ? 0x9f : hi;	/* surrogates */
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		lo = s[0] == 0xf0 ? 0x90 : lo;
		hi = s[0] == 0xf4 ? 0x8f : hi;	/* above U+10FFFF */
	} else
		return 0;
	if (len > n || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/*
 * Copy src into dst (bounded, never cutting a character): invalid UTF-8
 * and control characters other than tab, CR and LF become U+FFFD, so the
 * canonical form has one spelling.
 */
static void
audit_clean(char *dst, size_t dstlen, const char *src)
{
	const unsigned char	*s = (const unsigned char *)src;
	size_t			 n = strlen(src), i = 0, o = 0, l;
	int			 ctl;

	while (i < n) {
		l = utf8_len(s + i, n - i);
		ctl = l == 1 && ((s[i] < 0x20 && s[i] != '\t' &&
		    s[i] != '\n' && s[i] != '\r') || s[i] == 0x7f);
		if (l == 0 || ctl) {
			if (o + 3 >= dstlen)
				break;
			memcpy(dst + o, "\xef\xbf\xbd", 3);
			o += 3;
			i += l == 0 ? 1 : l;
			continue;
		}
		if (o + l >= dstlen)
			break;
		memcpy(dst + o, s + i, l);
		o += l;
		i += l;
	}
	dst[o] = '\0';
}

/* --- the action table --------------------------------------------------- */

const struct audit_action *
audit_action_find(const char *name)
{
	size_t	i;

	for (i = 0; i < audit_nactions; i++)
		if (strcmp(audit_actions[i].name, name) == 0)
			return &audit_actions[i];
	return NULL;
}

const struct audit_action *
audit_action_for_ctl(const char *cmd)
{
	size_t	i;

	for (i = 0; i < audit_nactions; i++)
		if (audit_actions[i].ctl != NULL &&
		    strcmp(audit_actions[i].ctl, cmd) == 0)
			return &audit_actions[i];
	return NULL;
}

json_t *
audit_actions_json(void)
{
	json_t	*a = json_array();
	size_t	 i;

	for (i = 0; i < audit_nactions; i++)
		json_array_append_new(a, json_pack("{s:s,s:s?,s:s?,s:s}",
		    "action", audit_actions[i].name,
		    "ctl", audit_actions[i].ctl,
		    "route", audit_actions[i].route,
		    "summary", audit_actions[i].summary));
	return a;
}

/* --- records ------------------------------------------------------------ */

int
audit_record_init(struct audit_record *rec, const char *action,
    const char *actor)
{
	memset(rec, 0, sizeof(*rec));
	audit_clean(rec->actor, sizeof(rec->actor), actor != NULL ? actor :
	    "system");
	if ((rec->action = audit_action_find(action)) == NULL) {
		log_warnx("audit: unknown action '%s'", action);
		return -1;
	}
	return 0;
}

void
audit_record_roles(struct audit_record *rec, const char *roles)
{
	audit_clean(rec->roles, sizeof(rec->roles), roles);
}

void
audit_record_target(struct audit_record *rec, const char *fmt, ...)
{
	va_list	ap;
	char	buf[sizeof(rec->target)];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	audit_clean(rec->target, sizeof(rec->target), buf);
}

void
audit_record_outcome(struct audit_record *rec, enum audit_outcome outcome,
    int status)
{
	rec->outcome = outcome;
	rec->status = status;
}

/* The network, not the address: a /24 for IPv4, a /48 for IPv6. */
void
audit_source_format(const struct sockaddr *sa, char *out, size_t len)
{
	const struct sockaddr_in6	*sin6 = (const void *)sa;
	struct in_addr			 a4;
	struct in6_addr			 a6;
	char				 buf[INET6_ADDRSTRLEN];

	out[0] = '\0';
	if (sa == NULL)
		return;
	if (sa->sa_family == AF_INET6 &&
	    !IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
		a6 = sin6->sin6_addr;
		memset(a6.s6_addr + 6, 0, 10);
		inet_ntop(AF_INET6, &a6, buf, sizeof(buf));
		snprintf(out, len, "%s/48", buf);
		return;
	}
	if (sa->sa_family == AF_INET6)
		memcpy(&a4, sin6->sin6_addr.s6_addr + 12, 4);
	else if (sa->sa_family == AF_INET)
		a4 = ((const struct sockaddr_in *)sa)->sin_addr;
	else
		return;
	a4.s_addr &= htonl(0xffffff00);
	inet_ntop(AF_INET, &a4, buf, sizeof(buf));
	snprintf(out, len, "%s/24", buf);
}

void
audit_record_request(struct audit_record *rec, const char *request_id,
    const char *client_app, const struct sockaddr *peer)
{
	if (request_id != NULL)
		audit_clean(rec->request_id, sizeof(rec->request_id),
		    request_id);
	if (client_app != NULL)
		audit_clean(rec->client_app, sizeof(rec->client_app),
		    client_app);
	audit_source_format(peer, rec->source, sizeof(rec->source));
}

static struct audit_detail *
audit_detail_slot(struct audit_record *rec, const char *key)
{
	struct audit_detail	*d;
	size_t			 i;

	if (strspn(key, "abcdefghijklmnopqrstuvwxyz0123456789_") !=
	    strlen(key) || *key == '\0' || strlen(key) >= sizeof(d->key)) {
		log_warnx("audit: bad detail key '%.32s'", key);
		return NULL;
	}
	for (i = 0; i < rec->ndetails; i++)
		if (strcmp(rec->details[i].key, key) == 0)
			return &rec->details[i];
	if (rec->ndetails == AUDIT_DETAILS_MAX)
		return NULL;
	d = &rec->details[rec->ndetails++];
	strlcpy(d->key, key, sizeof(d->key));
	return d;
}

void
audit_record_detail(struct audit_record *rec, const char *key,
    const char *fmt, ...)
{
	struct audit_detail	*d;
	va_list			 ap;
	char			 buf[sizeof(d->value)];

	if ((d = audit_detail_slot(rec, key)) == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	audit_clean(d->value, sizeof(d->value), buf);
	d->is_int = 0;
}

void
audit_record_detail_int(struct audit_record *rec, const char *key,
    long long v)
{
	struct audit_detail	*d;

	if ((d = audit_detail_slot(rec, key)) == NULL)
		return;
	d->is_int = 1;
	d->num = v;
}

/* --- rendering (the fields before and after seq; ts comes last) ---------- */

static const char *const audit_outcomes[] = {
	[AUDIT_OK] = "ok", [AUDIT_DENIED] = "denied", [AUDIT_ERROR] = "error",
};

static int
detail_cmp(const void *a, const void *b)
{
	return strcmp(((const struct audit_detail *)a)->key,
	    ((const struct audit_detail *)b)->key);
}

static void
render_roles(struct abuf *b, const char *roles)
{
	size_t	n, first = 1;

	abuf_str(b, "[");
	while (*roles != '\0') {
		if ((n = strcspn(roles, ",")) > 0) {
			if (!first)
				abuf_str(b, ",");
			abuf_json_str(b, roles, n);
			first = 0;
		}
		roles += n + (roles[n] == ',');
	}
	abuf_str(b, "]");
}

static void
render_details(struct abuf *b, const struct audit_record *rec)
{
	struct audit_detail	d[AUDIT_DETAILS_MAX];
	size_t			i;

	memcpy(d, rec->details, rec->ndetails * sizeof(d[0]));
	qsort(d, rec->ndetails, sizeof(d[0]), detail_cmp);
	abuf_str(b, "{");
	for (i = 0; i < rec->ndetails; i++) {
		abuf_printf(b, "%s\"%s\":", i ? "," : "", d[i].key);
		if (d[i].is_int)
			abuf_printf(b, "%lld", d[i].num);
		else
			abuf_json_str(b, d[i].value, strlen(d[i].value));
	}
	abuf_str(b, "}");
}

#define FIELD(b, name, s)	do {					\
	abuf_str(b, "\"" name "\":");					\
	abuf_json_str(b, s, strlen(s));					\
	abuf_str(b, ",");						\
} while (0)

/* Canonical members before "seq" into pre, between seq and ts into mid. */
void
audit_render(const struct audit_record *rec, struct abuf *pre,
    struct abuf *mid)
{
	abuf_str(pre, "{");
	FIELD(pre, "action", rec->action->name);
	FIELD(pre, "actor", rec->actor);
	abuf_str(pre, "\"actor_roles\":");
	render_roles(pre, rec->roles);
	abuf_str(pre, ",");
	FIELD(pre, "client_app", rec->client_app);
	abuf_str(pre, "\"details\":");
	render_details(pre, rec);
	abuf_str(pre, ",");
	FIELD(pre, "outcome", audit_outcomes[rec->outcome]);
	FIELD(pre, "request_id", rec->request_id);
	FIELD(mid, "source", rec->source);
	abuf_printf(mid, "\"status\":%d,", rec->status);
	FIELD(mid, "target", rec->target);
}

/* --- logging ------------------------------------------------------------- */

int
audit_log_now(const struct audit_record *rec)
{
	struct store_batch	*b;
	struct store		*st = audit_store();
	int			 rv;

	if (st == NULL)
		return STORE_CLOSED;
	b = store_batch_new(st);
	if ((rv = audit_batch_add(b, rec)) != STORE_OK) {
		store_batch_free(b);
		return rv;
	}
	if ((rv = store_write(b)) != STORE_OK)
		log_warnx("audit: recording %s failed: %s", rec->action->name,
		    store_strerror(rv));
	return rv;
}

static void
audit_async_done(int status, void *arg)
{
	char	*action = arg;

	if (status != STORE_OK)
		log_warnx("audit: recording %s failed: %s", action,
		    store_strerror(status));
	free(action);
}

/* For the request path: does not wait; a failure is logged. */
int
audit_log_async(const struct audit_record *rec, struct event_base *base)
{
	struct store_batch	*b;
	struct store		*st = audit_store();
	char			*action;
	int			 rv;

	if (st == NULL)
		return STORE_CLOSED;
	b = store_batch_new(st);
	if ((rv = audit_batch_add(b, rec)) != STORE_OK) {
		store_batch_free(b);
		return rv;
	}
	action = xstrdup(rec->action->name);
	if ((rv = store_submit(b, base, audit_async_done, action)) !=
	    STORE_OK) {
		log_warnx("audit: recording %s failed: %s", action,
		    store_strerror(rv));
		free(action);
	}
	return rv;
}

/* --- denied attempts, rate-limited per source ----------------------------- */

#define DENY_SLOTS	256
#define DENY_WINDOW	(60ULL * 1000000)

struct deny_slot {
	char		 source[AUDIT_SOURCE_LEN];
	uint64_t	 window;	/* start, wall microseconds */
	uint64_t	 count, suppressed;
};

static struct {
	pthread_mutex_t		 mtx;
	struct deny_slot	 slots[DENY_SLOTS];
	uint64_t		 window, count, evicted;
	uint64_t		 per_source, total;
} deny = { .mtx = PTHREAD_MUTEX_INITIALIZER };

void
audit_deny_limits(uint64_t per_source, uint64_t total)
{
	pthread_mutex_lock(&deny.mtx);
	memset(deny.slots, 0, sizeof(deny.slots));
	deny.window = deny.count = deny.evicted = 0;
	deny.per_source = per_source ? per_source : 10;
	deny.total = total ? total : 120;
	pthread_mutex_unlock(&deny.mtx);
}

/* The slot of source, or the oldest one (its suppressed count kept). */
static struct deny_slot *
deny_slot(const char *source, uint64_t now)
{
	struct deny_slot	*s, *old = &deny.slots[0];
	size_t			 i;

	for (i = 0; i < DENY_SLOTS; i++) {
		s = &deny.slots[i];
		if (strcmp(s->source, source) == 0 && s->window != 0)
			return s;
		if (s->window < old->window)
			old = s;
	}
	deny.evicted += old->suppressed;
	memset(old, 0, sizeof(*old));
	strlcpy(old->source, source, sizeof(old->source));
	old->window = now;
	return old;
}

/* 1: record it (now with *carried suppressed before), 0: suppressed. */
static int
deny_admit(const char *source, uint64_t now, uint64_t *carried)
{
	struct deny_slot	*s;
	int			 ok;

	pthread_mutex_lock(&deny.mtx);
	if (now - deny.window >= DENY_WINDOW) {
		deny.window = now;
		deny.count = 0;
	}
	s = deny_slot(source, now);
	*carried = 0;
	if (now - s->window >= DENY_WINDOW) {
		*carried = s->suppressed;
		s->window = now;
		s->count = s->suppressed = 0;
	}
	ok = s->count < deny.per_source && deny.count < deny.total;
	if (ok) {
		s->count++;
		deny.count++;
	} else
		s->suppressed += 1 + *carried;
	pthread_mutex_unlock(&deny.mtx);
	return ok;
}

/* A 401/403: recorded unless its source (or everyone) is over the limit. */
int
audit_denied(const struct audit_record *rec, struct event_base *base)
{
	struct audit_record	 r = *rec;
	uint64_t		 carried;

	if (!deny_admit(r.source, wall_usec(), &carried))
		return STORE_OK;
	if (carried > 0)
		audit_record_detail_int(&r, "suppressed_before",
		    (long long)carried);
	return base != NULL ? audit_log_async(&r, base) : audit_log_now(&r);
}

static void
deny_flush_one(const char *source, uint64_t n, struct event_base *base)
{
	struct audit_record	rec;

	audit_record_init(&rec, "audit.suppressed", "system");
	strlcpy(rec.source, source, sizeof(rec.source));
	audit_record_detail_int(&rec, "count", (long long)n);
	audit_record_detail_int(&rec, "window_s", DENY_WINDOW / 1000000);
	if (base != NULL)
		audit_log_async(&rec, base);
	else
		audit_log_now(&rec);
}

/* Record what was suppressed in windows that have ended. */
void
audit_deny_flush(struct event_base *base, int all)
{
	struct deny_slot	 out[DENY_SLOTS];
	uint64_t		 now = wall_usec(), evicted;
	size_t			 i, n = 0;

	pthread_mutex_lock(&deny.mtx);
	for (i = 0; i < DENY_SLOTS; i++) {
		if (deny.slots[i].suppressed == 0 || (!all &&
		    now - deny.slots[i].window < DENY_WINDOW))
			continue;
		out[n++] = deny.slots[i];
		deny.slots[i].suppressed = 0;
	}
	evicted = deny.evicted;
	deny.evicted = 0;
	pthread_mutex_unlock(&deny.mtx);
	for (i = 0; i < n; i++)
		deny_flush_one(out[i].source, out[i].suppressed, base);
	if (evicted > 0)
		deny_flush_one("*", evicted, base);
}
