/*
 * vault-serve.c: tenantd-vault's listener, its peers (SO_PEERCRED uid
 * allow-list or a client certificate) and the operations: put, resolve
 * (every call sealed into the access log), forget and stats.
 */
#include "config.h"

#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "tenantd.h"

#define DB_IDENTITIES	"identities"
#define DB_ACCESS_LOG	"access_log"
#define CONN_INFLIGHT	256
#define PEER_LEN	96

struct vault_conn {
	TAILQ_ENTRY(vault_conn)	 entry;
	struct vault_server	*srv;
	struct bufferevent	*bev;
	char			 peer[PEER_LEN];
	int			 refs;		/* the socket + pending ops */
	int			 dead;
	int			 inflight;
};
TAILQ_HEAD(vault_conns, vault_conn);

struct vault_server {
	struct event_base	*base;
	struct store		*st;
	struct evconnlistener	*listener;
	SSL_CTX			*ctx;
	uid_t			*uids;
	size_t			 nuids;
	char			*sock_path;
	struct vault_conns	 conns;
	int			 nconns, max_conns;
	uint64_t		 seq;		/* access log keys */
};

/* An operation waiting for its durable commit. */
struct vault_pending {
	struct vault_conn	*c;
	json_int_t		 id;
	json_t			*answer;
};

typedef void (*vault_op_fn)(struct vault_conn *, json_int_t, json_t *);

static void	op_put(struct vault_conn *, json_int_t, json_t *);
static void	op_resolve(struct vault_conn *, json_int_t, json_t *);
static void	op_forget(struct vault_conn *, json_int_t, json_t *);
static void	op_stats(struct vault_conn *, json_int_t, json_t *);

static const struct {
	const char	*name;
	vault_op_fn	 fn;
} vault_ops[] = {
	{ "put",	op_put },
	{ "resolve",	op_resolve },
	{ "forget",	op_forget },
	{ "stats",	op_stats },
};

const char *const vault_dbs[] = { DB_IDENTITIES, DB_ACCESS_LOG, NULL };

/* --- connections --------------------------------------------------------- */

static void
conn_unref(struct vault_conn *c)
{
	if (--c->refs > 0)
		return;
	free(c);
}

static void
conn_close(struct vault_conn *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	TAILQ_REMOVE(&c->srv->conns, c, entry);
	c->srv->nconns--;
	bufferevent_free(c->bev);
	c->bev = NULL;
	conn_unref(c);
}

static void
conn_send(struct vault_conn *c, json_int_t id, json_t *answer)
{
	json_object_set_new(answer, "id", json_integer(id));
	if (!c->dead && vault_frame_add(bufferevent_get_output(c->bev),
	    answer) == -1)
		log_warnx("vault: answer to %s too large; dropped", c->peer);
	json_decref(answer);
}

static void
conn_fail(struct vault_conn *c, json_int_t id, const char *error)
{
	conn_send(c, id, json_pack("{s:b, s:s}", "ok", 0, "error", error));
}

static void
conn_dispatch(struct vault_conn *c, json_t *req)
{
	const char	*op = json_string_value(json_object_get(req, "op"));
	json_t		*idv = json_object_get(req, "id");
	json_int_t	 id = json_integer_value(idv);
	size_t		 i;

	if (!json_is_integer(idv) || op == NULL) {
		conn_fail(c, id, "a request needs an integer id and an op");
		return;
	}
	for (i = 0; i < nitems(vault_ops); i++)
		if (strcmp(vault_ops[i].name, op) == 0) {
			vault_ops[i].fn(c, id, req);
			return;
		}
	conn_fail(c, id, "unknown op");
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct vault_conn	*c = arg;
	json_t			*req;
	char			 err[128];
	int			 rv;

	while (!c->dead && c->inflight < CONN_INFLIGHT &&
	    (rv = vault_frame_take(bufferevent_get_input(bev), &req, err,
	    sizeof(err))) != 0) {
		if (rv == -1) {
			log_warnx("vault: %s: %s; closing", c->peer, err);
			conn_close(c);
			return;
		}
		conn_dispatch(c, req);
		json_decref(req);
	}
	if (!c->dead && c->inflight >= CONN_INFLIGHT)
		bufferevent_disable(bev, EV_READ);
}

static void
conn_peer_cert(struct vault_conn *c)
{
	SSL	*ssl = bufferevent_openssl_get_ssl(c->bev);
	X509	*cert;

	if (ssl == NULL || (cert = SSL_get1_peer_certificate(ssl)) == NULL)
		return;
	snprintf(c->peer, sizeof(c->peer), "cert ");
	X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName,
	    c->peer + 5, sizeof(c->peer) - 5);
	X509_free(cert);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct vault_conn	*c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		conn_peer_cert(c);
		log_debug("vault: client %s connected", c->peer);
		return;
	}
	if (what & BEV_EVENT_ERROR)
		log_warnx("vault: connection from %s failed (%s)", c->peer,
		    c->srv->ctx != NULL ? "TLS handshake or I/O" :
		    strerror(EVUTIL_SOCKET_ERROR()));
	conn_close(c);
}

/* --- peers ------------------------------------------------------------- */

static int
peer_allowed(struct vault_server *srv, int fd, char *peer, size_t len)
{
	struct ucred	cred;
	socklen_t	clen = sizeof(cred);
	size_t		i;

	if (srv->ctx != NULL) {
		snprintf(peer, len, "tls");	/* the certificate decides */
		return 1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == -1) {
		log_warn("vault: SO_PEERCRED");
		return 0;
	}
	snprintf(peer, len, "uid %u", (unsigned)cred.uid);
	for (i = 0; i < srv->nuids; i++)
		if (srv->uids[i] == cred.uid)
			return 1;
	log_warnx("vault: refused a connection from uid %u (pid %ld): not "
	    "in allow_users", (unsigned)cred.uid, (long)cred.pid);
	return 0;
}

static struct bufferevent *
conn_bev(struct vault_server *srv, int fd)
{
	SSL	*ssl;

	if (srv->ctx == NULL)
		return bufferevent_socket_new(srv->base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
	if ((ssl = SSL_new(srv->ctx)) == NULL)
		return NULL;
	return bufferevent_openssl_socket_new(srv->base, fd, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct vault_server	*srv = arg;
	struct vault_conn	*c;
	char			 peer[PEER_LEN];

	if (srv->nconns >= srv->max_conns) {
		log_warnx("vault: %d connections open; refusing another",
		    srv->nconns);
		close(fd);
		return;
	}
	if (!peer_allowed(srv, fd, peer, sizeof(peer))) {
		close(fd);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->srv = srv;
	c->refs = 1;
	strlcpy(c->peer, peer, sizeof(c->peer));
	if ((c->bev = conn_bev(srv, fd)) == NULL) {
		close(fd);
		free(c);
		return;
	}
	bufferevent_setcb(c->bev, conn_read_cb, NULL, conn_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, 2 * (4 + VAULT_FRAME_MAX));
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(&srv->conns, c, entry);
	srv->nconns++;
}

/* --- operations ---------------------------------------------------------- */

static void
op_done(int status, void *arg)
{
	struct vault_pending	*p = arg;
	struct vault_conn	*c = p->c;

	if (status == STORE_OK)
		conn_send(c, p->id, p->answer);
	else {
		/* The client keeps a put that failed here and retries. */
		json_decref(p->answer);
		conn_send(c, p->id, json_pack("{s:b, s:s, s:b}", "ok", 0,
		    "error", store_strerror(status), "retry", 1));
	}
	if (!c->dead && c->inflight-- == CONN_INFLIGHT)
		bufferevent_enable(c->bev, EV_READ);
	conn_unref(c);
	free(p);
}

/* Commit b, then answer (answer is sent once the write is durable). */
static void
op_commit(struct vault_conn *c, json_int_t id, struct store_batch *b,
    json_t *answer)
{
	struct vault_pending	*p = xcalloc(1, sizeof(*p));
	int			 rv;

	p->c = c;
	p->id = id;
	p->answer = answer;
	c->refs++;
	c->inflight++;
	if ((rv = store_submit(b, c->srv->base, op_done, p)) != STORE_OK)
		op_done(rv, p);
}

static int
put_json(struct store_batch *b, const char *db, const char *key, json_t *v)
{
	char	*text;
	int	 rv;

	if ((text = json_dumps(v, JSON_COMPACT)) == NULL)
		return STORE_INVALID;
	rv = store_batch_put(b, db, key, strlen(key), text, strlen(text));
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	return rv;
}

static const char *
req_pseudonym(json_t *req)
{
	const char	*p = json_string_value(json_object_get(req, "pseudonym"));

	return vault_pseudonym_ok(p) ? p : NULL;
}

static void
op_put(struct vault_conn *c, json_int_t id, json_t *req)
{
	struct store_batch	*b;
	const char		*pseudonym = req_pseudonym(req);
	json_t			*identity = json_object_get(req, "identity");
	char			 err[128];

	if (pseudonym == NULL) {
		conn_fail(c, id, "put: pseudonym must be p_ and 26 base32 "
		    "characters");
		return;
	}
	if (!vault_identity_ok(identity, err, sizeof(err))) {
		conn_fail(c, id, err);
		return;
	}
	b = store_batch_new(c->srv->st);
	put_json(b, DB_IDENTITIES, pseudonym, identity);
	op_commit(c, id, b, json_pack("{s:b}", "ok", 1));
	log_debug("vault: put %s from %s", pseudonym, c->peer);
}

/* Append one sealed access log entry (no identity in it) to b. */
static void
access_log_add(struct vault_conn *c, struct store_batch *b, const char *op,
    const char *pseudonym, const char *requester, const char *reason,
    int found)
{
	struct log_field	 f[5];
	char			 key[17], ts[40];
	uint64_t		 now = wall_usec();
	json_t			*entry;

	c->srv->seq = MAXIMUM(c->srv->seq + 1, now);
	snprintf(key, sizeof(key), "%016llx", (unsigned long long)c->srv->seq);
	format_iso8601(ts, sizeof(ts), now);
	entry = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "time", ts,
	    "op", op, "pseudonym", pseudonym, "requester", requester,
	    "reason", reason, "peer", c->peer, "found", found);
	put_json(b, DB_ACCESS_LOG, key, entry);
	json_decref(entry);
	f[0] = (struct log_field){ "pseudonym", pseudonym };
	f[1] = (struct log_field){ "requester", requester };
	f[2] = (struct log_field){ "reason", reason };
	f[3] = (struct log_field){ "peer", c->peer };
	f[4] = (struct log_field){ "found", found ? "true" : "false" };
	log_fields(LOG_LEVEL_INFO, f, nitems(f), "vault: %s", op);
}

static void
op_resolve(struct vault_conn *c, json_int_t id, json_t *req)
{
	const char	*pseudonym = req_pseudonym(req);
	const char	*requester, *reason;
	struct store_batch *b;
	json_t		*answer, *identity = NULL;
	void		*val;
	size_t		 len;
	int		 rv;

	requester = json_string_value(json_object_get(req, "requester"));
	reason = json_string_value(json_object_get(req, "reason"));
	if (pseudonym == NULL || !vault_text_ok(requester, VAULT_FIELD_MAX) ||
	    !vault_text_ok(reason, VAULT_NAME_MAX)) {
		conn_fail(c, id, "resolve needs a pseudonym, a requester and "
		    "a reason");
		return;
	}
	rv = store_get(c->srv->st, DB_IDENTITIES, pseudonym,
	    strlen(pseudonym), &val, &len);
	if (rv == STORE_OK) {
		identity = json_loadb(val, len, 0, NULL);
		OPENSSL_cleanse(val, len);
		free(val);
	}
	if (identity != NULL)
		answer = json_pack("{s:b, s:o}", "ok", 1, "identity", identity);
	else
		answer = json_pack("{s:b, s:s}", "ok", 0, "error",
		    rv == STORE_NOTFOUND ? "no such pseudonym" :
		    store_strerror(rv == STORE_OK ? STORE_CORRUPT : rv));
	/* The access is on record before the identity leaves. */
	b = store_batch_new(c->srv->st);
	access_log_add(c, b, "resolve", pseudonym, requester, reason,
	    identity != NULL);
	op_commit(c, id, b, answer);
}

static void
op_forget(struct vault_conn *c, json_int_t id, json_t *req)
{
	struct store_batch	*b;
	const char		*pseudonym = req_pseudonym(req);
	const char		*requester;

	requester = json_string_value(json_object_get(req, "requester"));
	if (pseudonym == NULL) {
		conn_fail(c, id, "forget needs a pseudonym");
		return;
	}
	if (!vault_text_ok(requester, VAULT_FIELD_MAX))
		requester = "unspecified";
	b = store_batch_new(c->srv->st);
	store_batch_del(b, DB_IDENTITIES, pseudonym, strlen(pseudonym));
	access_log_add(c, b, "forget", pseudonym, requester, "erasure", 1);
	op_commit(c, id, b, json_pack("{s:b}", "ok", 1));
}

static void
op_stats(struct vault_conn *c, json_int_t id, json_t *req)
{
	struct store_stats	ss;
	uint64_t		ids = 0, log = 0;

	if (store_stats(c->srv->st, &ss) != STORE_OK ||
	    store_db_entries(c->srv->st, DB_IDENTITIES, &ids) != STORE_OK ||
	    store_db_entries(c->srv->st, DB_ACCESS_LOG, &log) != STORE_OK) {
		conn_fail(c, id, "stats: storage I/O error");
		return;
	}
	conn_send(c, id, json_pack("{s:b, s:I, s:I, s:I, s:I, s:I}", "ok", 1,
	    "identities", (json_int_t)ids, "access_log", (json_int_t)log,
	    "store_used", (json_int_t)ss.used, "store_map",
	    (json_int_t)ss.mapsize, "store_max", (json_int_t)ss.max_size));
}

/* --- the listener -------------------------------------------------------- */

static int
resolve_uids(struct vault_server *srv, const struct vault_config *vc,
    char *err, size_t errlen)
{
	struct passwd	 pw, *res;
	char		 buf[4096], *end;
	unsigned long	 uid;
	size_t		 i;

	srv->uids = xcalloc(vc->nallow_users + 1, sizeof(uid_t));
	if (vc->nallow_users == 0)
		srv->uids[srv->nuids++] = geteuid();
	for (i = 0; i < vc->nallow_users; i++) {
		errno = 0;
		uid = strtoul(vc->allow_users[i], &end, 10);
		if (*end == '\0' && end != vc->allow_users[i]) {
			srv->uids[srv->nuids++] = (uid_t)uid;
			continue;
		}
		if (getpwnam_r(vc->allow_users[i], &pw, buf, sizeof(buf),
		    &res) != 0 || res == NULL) {
			snprintf(err, errlen, "%s: allow_users: no user '%s'",
			    vc->path, vc->allow_users[i]);
			return -1;
		}
		srv->uids[srv->nuids++] = pw.pw_uid;
	}
	return 0;
}

static int
bind_unix(struct vault_server *srv, const char *path, char *err,
    size_t errlen)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	int			 fd, tls;
	char			*dir, *slash;

	if (vault_address_parse(path, &ss, &sslen, &tls, err, errlen) == -1)
		return -1;
	dir = xstrdup(path);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0750) == -1 && errno != EEXIST)
			log_warn("vault: mkdir %s", dir);
	}
	free(dir);
	unlink(path);	/* stale; the store lock says we are the only one */
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0)) == -1 || bind(fd, (struct sockaddr *)&ss, sslen) == -1 ||
	    chmod(path, 0660) == -1 || listen(fd, 64) == -1) {
		snprintf(err, errlen, "vault socket %s: %s", path,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	srv->sock_path = xstrdup(path);
	return fd;
}

static int
bind_tcp(struct vault_server *srv, const struct vault_config *vc,
    const char *addr, char *err, size_t errlen)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	int			 fd, tls, one = 1;

	if (vault_address_parse(addr, &ss, &sslen, &tls, err, errlen) == -1 ||
	    (srv->ctx = vault_tls_ctx(1, &vc->tls, err, errlen)) == NULL)
		return -1;
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, 0)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ==
	    -1 || bind(fd, (struct sockaddr *)&ss, sslen) == -1 ||
	    listen(fd, 64) == -1) {
		snprintf(err, errlen, "vault listener %s: %s", addr,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	return fd;
}

/* The address actually bound (port 0 gets one from the kernel). */
static void
log_ready(int fd, const char *listen)
{
	struct sockaddr_storage	ss;
	socklen_t		len = sizeof(ss);
	char			addr[128];

	if (strncmp(listen, VAULT_TLS_PREFIX, strlen(VAULT_TLS_PREFIX)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		strlcpy(addr, listen, sizeof(addr));
	else {
		strlcpy(addr, VAULT_TLS_PREFIX, sizeof(addr));
		format_sockaddr(addr + strlen(addr), sizeof(addr) -
		    strlen(addr), (struct sockaddr *)&ss);
	}
	log_fields(LOG_LEVEL_INFO, &(struct log_field){ "listen", addr }, 1,
	    "vault ready on %s", addr);
}

struct vault_server *
vault_serve_start(struct event_base *base, const struct vault_config *vc,
    struct store *st, const char *listen, char *err, size_t errlen)
{
	struct vault_server	*srv = xcalloc(1, sizeof(*srv));
	int			 fd, tls = strncmp(listen, VAULT_TLS_PREFIX,
				    strlen(VAULT_TLS_PREFIX)) == 0;

	srv->base = base;
	srv->st = st;
	srv->max_conns = vc->max_connections;
	TAILQ_INIT(&srv->conns);
	if (resolve_uids(srv, vc, err, errlen) == -1 ||
	    (fd = tls ? bind_tcp(srv, vc, listen, err, errlen) :
	    bind_unix(srv, listen, err, errlen)) == -1) {
		vault_serve_stop(srv);
		return NULL;
	}
	srv->listener = evconnlistener_new(base, accept_cb, srv,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (srv->listener == NULL) {
		snprintf(err, errlen, "vault listener %s failed", listen);
		close(fd);
		vault_serve_stop(srv);
		return NULL;
	}
	log_ready(fd, listen);
	return srv;
}

void
vault_serve_stop(struct vault_server *srv)
{
	if (srv == NULL)
		return;
	if (srv->listener != NULL)
		evconnlistener_free(srv->listener);
	while (!TAILQ_EMPTY(&srv->conns))
		conn_close(TAILQ_FIRST(&srv->conns));
	if (srv->sock_path != NULL)
		unlink(srv->sock_path);
	free(srv->sock_path);
	SSL_CTX_free(srv->ctx);
	free(srv->uids);
	free(srv);
}
