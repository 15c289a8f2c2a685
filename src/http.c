/*
 * http.c: the HTTPS server. One event loop thread per CPU, each with its
 * own evhttp bound to the same ports (SO_REUSEPORT); request dispatch
 * through the route table; the headers every response carries (request
 * id, security, CORS); RFC 9457 problem documents.
 */
#include "config.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "http.h"

#define WORKERS_MAX	64
#define LISTEN_BACKLOG	1024
#define DRAIN_POLL_MS	20

struct request {
	struct evhttp_request	*ev;
	struct worker		*w;
	struct conn		*conn;
	int			 route;		/* index or METRIC_ROUTE_* */
	struct evkeyvalq	 query;
	int			 query_parsed;
	struct route_param	 params[ROUTE_PARAMS_MAX];
	size_t			 nparams;
	const char		*origin;	/* allowed Origin, or NULL */
	int			 tls;
	uint64_t		 start_us;
	char			 id[65];
	struct auth_principal	 principal;	/* once authenticated */
	int			 authenticated;
	struct jwks_waiter	*waiter;	/* parked for a key refresh */
};

struct bound {
	char		 configured[64];	/* as written, port may be 0 */
	char		 address[64];
	int		 tls;
	struct sockaddr_storage ss;
	socklen_t	 sslen;
};

static struct {
	struct event_base	*main_base;
	struct worker		*workers;
	size_t			 nworkers;
	struct bound		*bound;
	size_t			 nbound;
	void			(*shutdown_done)(void *);
	void			*shutdown_arg;
	struct event		*shutdown_poll;
	uint64_t		 shutdown_deadline;
} http;

static void	http_dispatch(struct evhttp_request *, void *);

/* --- listeners ----------------------------------------------------- */

static int
listen_socket(struct bound *b, int reuseport, char *err, size_t errlen)
{
	int	fd, on = 1;

	fd = socket(b->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on,
	    sizeof(on)) == -1) ||
	    (b->ss.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &on, sizeof(on)) == -1) ||
	    /* accepted sockets inherit it: no Nagle stall per response */
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) == -1)
		goto fail;
	if (bind(fd, (struct sockaddr *)&b->ss, b->sslen) == -1 ||
	    listen(fd, LISTEN_BACKLOG) == -1)
		goto fail;
	/* with port 0 the kernel chose one: the other workers take it too */
	b->sslen = sizeof(b->ss);
	if (getsockname(fd, (struct sockaddr *)&b->ss, &b->sslen) == -1)
		goto fail;
	format_sockaddr(b->address, sizeof(b->address),
	    (struct sockaddr *)&b->ss);
	return fd;
fail:
	snprintf(err, errlen, "listening on %s: %s", b->address,
	    strerror(errno));
	if (fd != -1)
		close(fd);
	return -1;
}

static int
worker_bind(struct worker *w, struct bound *b, char *err, size_t errlen)
{
	struct evconnlistener		*l;
	struct evhttp_bound_socket	*sock;
	int				 fd;

	if ((fd = listen_socket(b, http.nworkers > 1, err, errlen)) == -1)
		return -1;
	l = evconnlistener_new(w->base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (l == NULL) {
		close(fd);
		snprintf(err, errlen, "listening on %s: libevent failed",
		    b->address);
		return -1;
	}
	sock = evhttp_bind_listener(b->tls ? w->https : w->plain, l);
	if (sock == NULL) {
		evconnlistener_free(l);
		snprintf(err, errlen, "binding %s to evhttp failed", b->address);
		return -1;
	}
	w->socks = xreallocarray(w->socks, w->nsocks + 1, sizeof(*w->socks));
	w->socks[w->nsocks].sock = sock;
	w->socks[w->nsocks++].tls = b->tls;
	return 0;
}

static int
bind_all(const struct config *conf, char *err, size_t errlen)
{
	struct bound	*b;
	size_t		 i, k;
	char		 fields_tls[8];

	http.bound = xcalloc(conf->nlisten, sizeof(*http.bound));
	http.nbound = conf->nlisten;
	for (i = 0; i < conf->nlisten; i++) {
		b = &http.bound[i];
		b->tls = conf->listen[i].tls;
		b->ss = conf->listen[i].ss;
		b->sslen = conf->listen[i].sslen;
		strlcpy(b->address, conf->listen[i].address,
		    sizeof(b->address));
		strlcpy(b->configured, conf->listen[i].address,
		    sizeof(b->configured));
		for (k = 0; k < http.nworkers; k++)
			if (worker_bind(&http.workers[k], b, err, errlen) == -1)
				return -1;
		strlcpy(fields_tls, b->tls ? "https" : "http",
		    sizeof(fields_tls));
		log_fields(LOG_LEVEL_INFO, (struct log_field[]){
		    { "listen", b->address }, { "scheme", fields_tls } }, 2,
		    "listening on %s (%s)", b->address, fields_tls);
	}
	return 0;
}

json_t *
http_listeners_json(void)
{
	json_t	*list = json_array();
	size_t	 i;

	for (i = 0; i < http.nbound; i++)
		json_array_append_new(list, json_pack("{s:s, s:s}",
		    "address", http.bound[i].address,
		    "scheme", http.bound[i].tls ? "https" : "http"));
	return list;
}

/* Listeners are bound once; a reload that changes them needs a restart. */
int
http_listeners_changed(const struct config *conf)
{
	size_t	i;

	if (conf->nlisten != http.nbound)
		return 1;
	for (i = 0; i < conf->nlisten; i++)
		if (conf->listen[i].tls != http.bound[i].tls ||
		    strcmp(conf->listen[i].address, http.bound[i].configured) != 0)
			return 1;
	return 0;
}

int
http_open_connections(void)
{
	return conn_count();
}

/* --- workers ------------------------------------------------------- */

static void
evhttp_apply_limits(struct evhttp *h, const struct config *conf)
{
	struct timeval	tv;

	if (h == NULL)
		return;
	evhttp_set_max_headers_size(h, conf->http.max_header_size);
	evhttp_set_max_body_size(h, conf->http.max_body_size);
	tv.tv_sec = conf->http.idle_timeout / 1000;
	tv.tv_usec = (conf->http.idle_timeout % 1000) * 1000;
	evhttp_set_timeout_tv(h, &tv);
	/* every method reaches the dispatcher, which answers 405 itself */
	evhttp_set_allowed_methods(h, 0xffff);
	evhttp_set_default_content_type(h, "application/json");
}

static struct evhttp *
worker_evhttp(struct worker *w, int tls)
{
	struct evhttp	*h;

	if ((h = evhttp_new(w->base)) == NULL)
		fatalx("evhttp_new failed");
	evhttp_apply_limits(h, w->conf);
	evhttp_set_gencb(h, http_dispatch, w);
	if (tls)
		evhttp_set_bevcb(h, conn_new_tls, w);
	return h;
}

static void
worker_init(struct worker *w, size_t index, struct config *conf,
    SSL_CTX *ctx)
{
	struct event_config	*cfg;

	w->index = index;
	w->conf = conf_ref(conf);
	w->ssl_ctx = ctx;
	if (ctx != NULL)
		SSL_CTX_up_ref(ctx);
	TAILQ_INIT(&w->conns);
	if ((cfg = event_config_new()) == NULL)
		fatalx("event_config_new failed");
	/* halves epoll_ctl calls per request */
	event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	if ((w->base = event_base_new_with_config(cfg)) == NULL)
		fatalx("event_base_new failed");
	event_config_free(cfg);
	w->https = worker_evhttp(w, 1);
	w->plain = worker_evhttp(w, 0);
	random_hex(w->id_prefix, 8);
}

static void *
worker_main(void *arg)
{
	struct worker	*w = arg;

	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

int
http_start(struct event_base *main_base, struct config *conf, SSL_CTX *ctx,
    char *err, size_t errlen)
{
	long	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	size_t	i;

	http.main_base = main_base;
	http.nworkers = conf->http.workers > 0 ? (size_t)conf->http.workers :
	    (size_t)(ncpu > 0 ? ncpu : 1);
	if (http.nworkers > WORKERS_MAX)
		http.nworkers = WORKERS_MAX;
	conn_global_init();
	metrics_init(http.nworkers);
	http.workers = xcalloc(http.nworkers, sizeof(*http.workers));
	for (i = 0; i < http.nworkers; i++)
		worker_init(&http.workers[i], i, conf, ctx);
	if (bind_all(conf, err, errlen) == -1)
		return -1;
	for (i = 0; i < http.nworkers; i++)
		if (pthread_create(&http.workers[i].thread, NULL, worker_main,
		    &http.workers[i]) != 0)
			fatalx("pthread_create failed");
	ready_set("listeners", READY_OK, "");
	return 0;
}

/* --- reload -------------------------------------------------------- */

struct swap {
	struct worker	*w;
	struct config	*conf;
	SSL_CTX		*ctx;
};

static void
worker_swap_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct swap	*s = arg;
	struct worker	*w = s->w;

	conf_unref(w->conf);
	w->conf = s->conf;
	if (s->ctx != NULL) {
		SSL_CTX_free(w->ssl_ctx);
		w->ssl_ctx = s->ctx;
	}
	evhttp_apply_limits(w->https, w->conf);
	evhttp_apply_limits(w->plain, w->conf);
	free(s);
}

/* Hand each worker the new config (and certificate) on its own thread. */
void
http_reconfigure(struct config *conf, SSL_CTX *ctx)
{
	struct swap	*s;
	size_t		 i;

	for (i = 0; i < http.nworkers; i++) {
		s = xcalloc(1, sizeof(*s));
		s->w = &http.workers[i];
		s->conf = conf_ref(conf);
		s->ctx = ctx;
		if (ctx != NULL)
			SSL_CTX_up_ref(ctx);
		if (event_base_once(s->w->base, -1, EV_TIMEOUT, worker_swap_cb,
		    s, NULL) == -1)
			fatalx("%s: event_base_once failed", __func__);
	}
}

/* --- shutdown ------------------------------------------------------ */

static void
worker_drain_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct worker	*w = arg;

	if (!TAILQ_EMPTY(&w->conns) || w->inflight > 0)
		return;
	event_free(w->drain_timer);
	w->drain_timer = NULL;
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	event_base_loopexit(w->base, NULL);
}

/* Stop accepting; close idle connections; let the rest finish. */
static void
worker_stop_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct worker	*w = arg;
	struct timeval	 tv = { 0, DRAIN_POLL_MS * 1000 };

	size_t		 i;

	w->stopping = 1;
	for (i = 0; i < w->nsocks; i++)
		evhttp_del_accept_socket(w->socks[i].tls ? w->https : w->plain,
		    w->socks[i].sock);
	w->nsocks = 0;
	conn_drain_idle(w);
	w->drain_timer = event_new(w->base, -1, EV_PERSIST, worker_drain_cb,
	    w);
	event_add(w->drain_timer, &tv);
}

static void
http_free_workers(void)
{
	struct worker	*w;
	size_t		 i;

	for (i = 0; i < http.nworkers; i++) {
		w = &http.workers[i];
		pthread_join(w->thread, NULL);
		if (w->drain_timer != NULL)
			event_free(w->drain_timer);
		if (w->https != NULL)
			evhttp_free(w->https);
		if (w->plain != NULL)
			evhttp_free(w->plain);
		event_base_free(w->base);
		free(w->socks);
		SSL_CTX_free(w->ssl_ctx);
		conf_unref(w->conf);
	}
	free(http.workers);
	free(http.bound);
	http.workers = NULL;
}

static void
shutdown_poll_cb(evutil_socket_t fd, short ev, void *arg)
{
	size_t	i, done = 0;
	int	late = now_usec() >= http.shutdown_deadline;

	for (i = 0; i < http.nworkers; i++)
		done += __atomic_load_n(&http.workers[i].done,
		    __ATOMIC_ACQUIRE);
	if (done < http.nworkers && !late)
		return;
	if (done < http.nworkers)
		log_warnx("shutdown deadline reached with requests under way; "
		    "closing them");
	for (i = 0; i < http.nworkers; i++)
		event_base_loopbreak(http.workers[i].base);
	event_free(http.shutdown_poll);
	http_free_workers();
	http.shutdown_done(http.shutdown_arg);
}

void
http_shutdown(void (*done)(void *), void *arg)
{
	struct timeval	tv = { 0, DRAIN_POLL_MS * 1000 };
	size_t		i;

	ready_set("listeners", READY_FAIL, "shutting down");
	http.shutdown_done = done;
	http.shutdown_arg = arg;
	http.shutdown_deadline = now_usec() +
	    http.workers[0].conf->http.shutdown_timeout * 1000;
	for (i = 0; i < http.nworkers; i++)
		event_base_once(http.workers[i].base, -1, EV_TIMEOUT,
		    worker_stop_cb, &http.workers[i], NULL);
	http.shutdown_poll = event_new(http.main_base, -1, EV_PERSIST,
	    shutdown_poll_cb, NULL);
	event_add(http.shutdown_poll, &tv);
}

/* --- requests ------------------------------------------------------ */

static const struct {
	enum evhttp_cmd_type	 type;
	const char		*name;
} methods[] = {
	{ EVHTTP_REQ_GET, "GET" },
	{ EVHTTP_REQ_POST, "POST" },
	{ EVHTTP_REQ_HEAD, "HEAD" },
	{ EVHTTP_REQ_PUT, "PUT" },
	{ EVHTTP_REQ_DELETE, "DELETE" },
	{ EVHTTP_REQ_OPTIONS, "OPTIONS" },
	{ EVHTTP_REQ_TRACE, "TRACE" },
	{ EVHTTP_REQ_CONNECT, "CONNECT" },
	{ EVHTTP_REQ_PATCH, "PATCH" },
};

static const char *
method_name(enum evhttp_cmd_type type)
{
	size_t	i;

	for (i = 0; i < nitems(methods); i++)
		if (methods[i].type == type)
			return methods[i].name;
	return "UNKNOWN";
}


static int
request_id_valid(const char *s)
{
	size_t	n = strspn(s, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-");

	return n > 0 && n <= 64 && s[n] == '\0';
}

static void
request_set_id(struct request *req)
{
	const char	*given;

	given = evhttp_find_header(evhttp_request_get_input_headers(req->ev),
	    "X-Request-Id");
	if (given != NULL && request_id_valid(given))
		strlcpy(req->id, given, sizeof(req->id));
	else
		snprintf(req->id, sizeof(req->id), "%s-%llx", req->w->id_prefix,
		    (unsigned long long)++req->w->id_seq);
}

static int
origin_allowed(const struct config *conf, const char *origin)
{
	size_t	i;

	for (i = 0; i < conf->cors.norigins; i++)
		if (strcmp(conf->cors.origins[i], origin) == 0)
			return 1;
	return 0;
}

static struct request *
request_new(struct worker *w, struct evhttp_request *ev)
{
	struct request	*req = xcalloc(1, sizeof(*req));
	const char	*origin;

	req->ev = ev;
	req->w = w;
	req->start_us = now_usec();
	req->route = METRIC_ROUTE_UNMATCHED;
	req->conn = conn_of(ev);
	req->tls = req->conn != NULL;
	request_set_id(req);
	origin = evhttp_find_header(evhttp_request_get_input_headers(ev),
	    "Origin");
	if (origin != NULL && origin_allowed(w->conf, origin))
		req->origin = origin;
	w->inflight++;
	return req;
}

static void
request_free(struct request *req)
{
	route_params_free(req->params, req->nparams);
	auth_principal_clear(&req->principal);
	if (req->query_parsed)
		evhttp_clear_headers(&req->query);
	req->w->inflight--;
	free(req);
}

const struct config *
http_conf(const struct request *req)
{
	return req->w->conf;
}

const char *
http_header(const struct request *req, const char *name)
{
	return evhttp_find_header(evhttp_request_get_input_headers(req->ev),
	    name);
}

const char *
http_param(const struct request *req, const char *name)
{
	size_t	i, len = strlen(name);

	for (i = 0; i < req->nparams; i++)
		if (req->params[i].name_len == len &&
		    memcmp(req->params[i].name, name, len) == 0)
			return req->params[i].value;
	return NULL;
}

const char *
http_request_id(const struct request *req)
{
	return req->id;
}

const char *
http_scheme(const struct request *req)
{
	return req->tls ? "https" : "http";
}

/* A decoded query parameter; parsed on first use. */
const char *
http_query(struct request *req, const char *name)
{
	const struct evhttp_uri	*uri;
	const char		*q;

	if (!req->query_parsed) {
		TAILQ_INIT(&req->query);
		req->query_parsed = 1;
		uri = evhttp_request_get_evhttp_uri(req->ev);
		if (uri != NULL && (q = evhttp_uri_get_query(uri)) != NULL &&
		    evhttp_parse_query_str(q, &req->query) == -1)
			evhttp_clear_headers(&req->query);
	}
	return evhttp_find_header(&req->query, name);
}

/* The request body, contiguous; bounded by http.max_body_size. */
const void *
http_body(struct request *req, size_t *len)
{
	struct evbuffer	*buf = evhttp_request_get_input_buffer(req->ev);

	*len = evbuffer_get_length(buf);
	return *len == 0 ? "" : (const void *)evbuffer_pullup(buf, -1);
}

struct event_base *
http_base(const struct request *req)
{
	return req->w->base;
}

/* The main thread's base: the vault client lives there. */
struct event_base *
http_main_base(void)
{
	return http.main_base;
}

/* The peer's address, or NULL once the client has gone. */
const struct sockaddr *
http_peer(const struct request *req)
{
	struct evhttp_connection	*evcon;

	evcon = evhttp_request_get_connection(req->ev);
	return evcon != NULL ? evhttp_connection_get_addr(evcon) : NULL;
}

int
http_peer_is_loopback(const struct request *req)
{
	struct evhttp_connection	*evcon;
	const struct sockaddr		*sa;

	evcon = evhttp_request_get_connection(req->ev);
	if (evcon == NULL || (sa = evhttp_connection_get_addr(evcon)) == NULL)
		return 0;
	return is_loopback_addr(sa);
}

void
http_set_header(struct request *req, const char *name, const char *value)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(req->ev);

	evhttp_remove_header(h, name);
	evhttp_add_header(h, name, value);
}

/* Headers on every response: id, caching, security, CORS. */
static void
response_headers(struct request *req)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(req->ev);
	const struct config	*conf = req->w->conf;
	char			 hsts[64];

	evhttp_add_header(h, "X-Request-Id", req->id);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "Vary", "Origin");
	if (req->tls && conf->tls.hsts_max_age > 0) {
		snprintf(hsts, sizeof(hsts), "max-age=%llu",
		    (unsigned long long)conf->tls.hsts_max_age);
		evhttp_add_header(h, "Strict-Transport-Security", hsts);
	}
	if (req->origin != NULL) {
		evhttp_add_header(h, "Access-Control-Allow-Origin",
		    req->origin);
		evhttp_add_header(h, "Access-Control-Expose-Headers",
		    "ETag, Location, Retry-After, X-Request-Id");
	}
	if (req->w->stopping || conn_over_limit(conn_of(req->ev)))
		evhttp_add_header(h, "Connection", "close");
}

/* The route's pattern, never the path: paths can carry personal ids. */
static void
access_log(struct request *req, int status, uint64_t elapsed_us)
{
	char	code[8], ms[32];

	snprintf(code, sizeof(code), "%d", status);
	snprintf(ms, sizeof(ms), "%.3f", elapsed_us / 1000.0);
	log_fields(LOG_LEVEL_DEBUG, (struct log_field[]){
	    { "method", method_name(evhttp_request_get_command(req->ev)) },
	    { "route", req->route >= 0 ? api_routes[req->route].pattern :
	    "unmatched" }, { "status", code }, { "duration_ms", ms } }, 4,
	    "request");
}

void
http_reply_buffer(struct request *req, int status, const char *ctype,
    struct evbuffer *body)
{
	uint64_t	elapsed;

	if (ctype != NULL)
		http_set_header(req, "Content-Type", ctype);
	response_headers(req);
	evhttp_send_reply(req->ev, status, NULL, body);
	elapsed = now_usec() - req->start_us;
	metrics_request(req->w->index, req->route, status, elapsed);
	if (log_getlevel() >= LOG_LEVEL_DEBUG)
		access_log(req, status, elapsed);
	request_free(req);
}

void
http_reply(struct request *req, int status, const char *ctype,
    const void *body, size_t len)
{
	struct evbuffer	*buf = evhttp_request_get_output_buffer(req->ev);

	if (len > 0)
		evbuffer_add(buf, body, len);
	http_reply_buffer(req, status, ctype, NULL);
}

static void
http_reply_json_as(struct request *req, int status, const char *ctype,
    json_t *j)
{
	char	*s;

	if (j == NULL || (s = json_dumps(j, JSON_COMPACT)) == NULL) {
		json_decref(j);
		http_reply(req, 500, "text/plain", "internal error", 14);
		return;
	}
	json_decref(j);
	http_reply(req, status, ctype, s, strlen(s));
	free(s);
}

void
http_reply_json(struct request *req, int status, json_t *j)
{
	http_reply_json_as(req, status, "application/json", j);
}

static const struct {
	int		 status;
	const char	*title;
} status_titles[] = {
	{ 400, "Bad Request" },
	{ 401, "Unauthorized" },
	{ 403, "Forbidden" },
	{ 404, "Not Found" },
	{ 405, "Method Not Allowed" },
	{ 409, "Conflict" },
	{ 412, "Precondition Failed" },
	{ 413, "Content Too Large" },
	{ 415, "Unsupported Media Type" },
	{ 422, "Unprocessable Content" },
	{ 428, "Precondition Required" },
	{ 429, "Too Many Requests" },
	{ 500, "Internal Server Error" },
	{ 502, "Bad Gateway" },
	{ 503, "Service Unavailable" },
	{ 504, "Gateway Timeout" },
	{ 507, "Insufficient Storage" },
};

static const char *
status_title(int status)
{
	size_t	i;

	for (i = 0; i < nitems(status_titles); i++)
		if (status_titles[i].status == status)
			return status_titles[i].title;
	return "Error";
}

static json_t	*problem_json(struct request *, int, const char *,
		    const char *);

/* RFC 9457: type, title, status, detail, instance, plus our request id. */
void
http_problem(struct request *req, int status, const char *slug,
    const char *fmt, ...)
{
	char		 detail[512];
	va_list		 ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	http_reply_json_as(req, status, "application/problem+json",
	    problem_json(req, status, slug, detail));
}

/* A problem with an "errors" member: [{pointer, detail}]; takes errors. */
void
http_problem_errors(struct request *req, int status, const char *slug,
    json_t *errors, const char *fmt, ...)
{
	char		 detail[512];
	json_t		*j;
	va_list		 ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	j = problem_json(req, status, slug, detail);
	json_object_set_new(j, "errors", errors);
	http_reply_json_as(req, status, "application/problem+json", j);
}

static json_t *
problem_json(struct request *req, int status, const char *slug,
    const char *detail)
{
	char		 type[96];
	const char	*title;
	json_t		*j;

	snprintf(type, sizeof(type), "urn:tenantd:problem:%s", slug);
	title = status_title(status);
	j = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "type", type,
	    "title", title, "status", status, "detail", detail,
	    "instance", evhttp_request_get_uri(req->ev), "request_id",
	    req->id);
	if (j == NULL)		/* invalid UTF-8 in the URI */
		j = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type,
		    "title", title, "status", status, "detail", detail,
		    "request_id", req->id);
	return j;
}

/* --- dispatch ------------------------------------------------------ */

#define CORS_METHODS	"GET, POST, PUT, PATCH, DELETE, OPTIONS"
#define CORS_HEADERS	"authorization, content-type, if-match, " \
			"if-none-match, x-request-id"

static void
http_preflight(struct request *req, const char *allow)
{
	char	max_age[32];

	if (http_header(req, "Access-Control-Request-Method") == NULL) {
		http_set_header(req, "Allow", allow);
		http_reply(req, 204, NULL, NULL, 0);
		return;
	}
	if (req->origin == NULL) {
		http_problem(req, 403, "cors-origin",
		    "this origin is not allowed to call the API");
		return;
	}
	snprintf(max_age, sizeof(max_age), "%llu",
	    (unsigned long long)req->w->conf->cors.max_age);
	http_set_header(req, "Access-Control-Allow-Methods", CORS_METHODS);
	http_set_header(req, "Access-Control-Allow-Headers", CORS_HEADERS);
	http_set_header(req, "Access-Control-Max-Age", max_age);
	http_reply(req, 204, NULL, NULL, 0);
}

/* --- authentication ------------------------------------------------ */

#define STATUS_CLIENT_GONE	499	/* metrics only: nothing was sent */

const struct auth_principal *
http_principal(const struct request *req)
{
	return req->authenticated ? &req->principal : NULL;
}

/* RFC 6750 2.3: a token in the URL ends up in logs and histories. */
static int
query_has_token(struct request *req)
{
	return http_query(req, "access_token") != NULL;
}

/* Which AUTH_ROLE_* bits satisfy a route's role (0: any principal). */
static const struct {
	unsigned	 any_of;
	const char	*name;
} role_needs[] = {
	[ROLE_PUBLIC] = { 0, "public" },
	[ROLE_USER] = { 0, "user" },
	[ROLE_AUDITOR] = { AUTH_ROLE_AUDITOR | AUTH_ROLE_ADMIN, "auditor" },
	[ROLE_ADMIN] = { AUTH_ROLE_ADMIN, "admin" },
};

/* 401 with a generic answer; the reason goes to the log and metrics. */
static void
auth_refuse(struct request *req, enum auth_result rv)
{
	metrics_auth_failure(req->w->index, rv);
	log_fields(rv == AUTH_ERR_MISSING ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO,
	    (struct log_field[]){ { "reason", auth_result_label(rv) },
	    { "route", api_routes[req->route].pattern } }, 2,
	    "token refused: %s", auth_result_label(rv));
	http_set_header(req, "WWW-Authenticate",
	    "Bearer error=\"invalid_token\"");
	http_problem(req, 401, "unauthorized", "a valid bearer token is "
	    "required");
}

/* The verdict on the token: 401, 403, or the route's handler. */
static void
auth_decide(struct request *req, enum auth_result rv)
{
	const struct route	*r = &api_routes[req->route];
	unsigned		 need = role_needs[r->role].any_of;

	if (rv != AUTH_OK) {
		auth_refuse(req, rv);
		return;
	}
	req->authenticated = 1;
	if (need != 0 && (req->principal.roles & need) == 0) {
		http_problem(req, 403, "forbidden", "this needs the %s role",
		    role_needs[r->role].name);
		return;
	}
	r->handler(req);
}

static enum auth_result
auth_verify(struct request *req)
{
	struct auth	*a = daemon_auth();

	if (a == NULL)
		return AUTH_ERR_NOT_CONFIGURED;
	return auth_verify_bearer(a, http_header(req, "Authorization"),
	    &req->principal);
}

/* The key refresh the token's unknown kid started has ended. */
static void
auth_resume(void *arg)
{
	struct request	*req = arg;

	struct evhttp_connection *evcon;

	req->waiter = NULL;
	if ((evcon = evhttp_request_get_connection(req->ev)) != NULL)
		evhttp_connection_set_closecb(evcon, NULL, NULL);
	log_set_request_id(req->id);
	auth_decide(req, auth_verify(req));
	log_set_request_id(NULL);
}

/*
 * The connection went away while the request waited. When libevent has
 * detached the request (the client closed), it is ours to free; when the
 * whole evhttp is being freed (shutdown), libevent frees it after this.
 */
static void
auth_conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct request	*req = arg;

	jwks_wait_cancel(req->waiter);
	req->waiter = NULL;
	if (evhttp_request_get_connection(req->ev) == NULL)
		evhttp_request_free(req->ev);
	metrics_request(req->w->index, req->route, STATUS_CLIENT_GONE,
	    now_usec() - req->start_us);
	request_free(req);
}

/* Wait for the refresh in flight; 0 if none is (throttled or done). */
static int
auth_park(struct request *req)
{
	struct evhttp_connection *evcon;

	if ((evcon = evhttp_request_get_connection(req->ev)) == NULL ||
	    daemon_jwks() == NULL)
		return 0;
	req->waiter = jwks_wait_refresh(daemon_jwks(), req->w->base,
	    auth_resume, req);
	if (req->waiter == NULL)
		return 0;
	evhttp_connection_set_closecb(evcon, auth_conn_closed, req);
	return 1;
}

/* Bearer token, in the worker; an unknown kid waits for new keys once. */
static void
http_authenticate(struct request *req)
{
	enum auth_result	rv;

	if (query_has_token(req)) {
		auth_decide(req, AUTH_ERR_QUERY_TOKEN);
		return;
	}
	rv = auth_verify(req);
	if (rv == AUTH_ERR_UNKNOWN_KID || rv == AUTH_ERR_NO_KEYS) {
		if (auth_park(req))
			return;
		rv = auth_verify(req);	/* a refresh may have just ended */
	}
	auth_decide(req, rv);
}

/* Route the request; answer 404/405/403 here, else run the handler. */
static void
http_route(struct request *req, const char *method, const char *path)
{
	const struct route	*r;
	char			 allow[128];
	int			 i;

	if (strcmp(method, "HEAD") == 0)
		method = "GET";		/* evhttp leaves the body out */
	i = route_match(strcmp(method, "OPTIONS") == 0 ? "" : method, path,
	    req->params, &req->nparams, allow, sizeof(allow));
	if (strcmp(method, "OPTIONS") == 0 && i == ROUTE_BAD_METHOD) {
		http_preflight(req, allow);
		return;
	}
	if (i == ROUTE_NOT_FOUND) {
		http_problem(req, 404, "not-found", "no such resource");
		return;
	}
	if (i == ROUTE_BAD_METHOD) {
		http_set_header(req, "Allow", allow);
		http_problem(req, 405, "method-not-allowed",
		    "%s is not allowed here; allowed: %s", method, allow);
		return;
	}
	req->route = i;
	r = &api_routes[i];
	if ((r->flags & ROUTE_LOOPBACK) && !http_peer_is_loopback(req) &&
	    !req->w->conf->metrics.allow_remote) {
		http_problem(req, 403, "loopback-only",
		    "this resource is served to local clients only");
		return;
	}
	if (r->role != ROLE_PUBLIC) {
		http_authenticate(req);
		return;
	}
	r->handler(req);
}

static void
http_dispatch(struct evhttp_request *ev, void *arg)
{
	struct worker		*w = arg;
	struct request		*req;
	const struct evhttp_uri	*uri;
	const char		*path;

	req = request_new(w, ev);
	conn_request_begin(req->conn, ev);
	log_set_request_id(req->id);
	uri = evhttp_request_get_evhttp_uri(ev);
	path = uri ? evhttp_uri_get_path(uri) : NULL;
	if (conn_over_limit(req->conn))
		http_problem(req, 503, "too-many-connections",
		    "the server is at its connection limit; retry later");
	else if (path == NULL || path[0] != '/')
		http_problem(req, 400, "bad-request", "the request target "
		    "must be an absolute path");
	else
		http_route(req, method_name(evhttp_request_get_command(ev)),
		    path);
	log_set_request_id(NULL);
}
