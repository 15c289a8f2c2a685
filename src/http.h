/*
 * http.h: the HTTP layer's view for route handlers. Only http.c and
 * http-conn.c touch evhttp and bufferevent internals; handlers see a
 * struct request and the http_* functions.
 */
#ifndef HTTP_H
#define HTTP_H

#include <sys/queue.h>
#include <pthread.h>

#include "tenantd.h"

struct evhttp;
struct evhttp_bound_socket;
struct evhttp_request;
struct bufferevent;
struct event;
struct ssl_ctx_st;

struct request;
struct worker;

enum role {
	ROLE_PUBLIC = 0,	/* no token: probes, metrics, preflight */
	ROLE_USER,		/* any valid token of the tenant */
	ROLE_AUDITOR,
	ROLE_ADMIN,
};

#define ROUTE_LOOPBACK	0x01	/* loopback peers only, unless configured */
#define ROUTE_PARAMS_MAX 4

typedef void (*route_handler)(struct request *);

struct route {
	const char	*method;
	const char	*pattern;	/* "/v1/settings/{scope}/{key}" */
	route_handler	 handler;
	enum role	 role;
	int		 flags;
	const char	*metric_name;	/* label value; the pattern if NULL */
};

struct route_param {
	const char	*name;		/* points into the pattern */
	size_t		 name_len;
	char		*value;		/* decoded, owned by the request */
};

/* api.c: the one table of routes */
extern const struct route	 api_routes[];
extern const size_t		 api_nroutes;

/* route.c */
#define ROUTE_NOT_FOUND		(-1)
#define ROUTE_BAD_METHOD	(-2)
int	 route_match(const char *method, const char *path,
	    struct route_param *, size_t *nparams, char *allow, size_t);
void	 route_params_free(struct route_param *, size_t);

/* api-health.c */
void	 api_livez(struct request *);
void	 api_readyz(struct request *);
void	 api_metrics(struct request *);

/* api-me.c */
void	 api_me(struct request *);

/* api-auth.c */
void	 api_auth_keys(struct request *);
void	 api_auth_refresh(struct request *);

/* api-dev.c: the local provider's discovery documents */
void	 api_dev_metadata(struct request *);
void	 api_dev_jwks(struct request *);

/* http.c: for handlers */
const struct config *http_conf(const struct request *);
const char	*http_header(const struct request *, const char *);
const char	*http_param(const struct request *, const char *);
const char	*http_request_id(const struct request *);
const char	*http_query(struct request *, const char *);
const void	*http_body(struct request *, size_t *len);
struct event_base *http_base(const struct request *);	/* for async work */
struct event_base *http_main_base(void);	/* the vault client's */
const struct sockaddr *http_peer(const struct request *);
int		 http_peer_is_loopback(const struct request *);
const char	*http_scheme(const struct request *);	/* "https", "http" */
/* The caller's principal on routes with a role; NULL on public routes. */
const struct auth_principal *http_principal(const struct request *);
void		 http_set_header(struct request *, const char *, const char *);
void		 http_reply(struct request *, int status, const char *ctype,
		    const void *body, size_t len);
void		 http_reply_buffer(struct request *, int status,
		    const char *ctype, struct evbuffer *);
void		 http_reply_json(struct request *, int status, json_t *);
void		 http_problem(struct request *, int status, const char *slug,
		    const char *fmt, ...) PRINTFLIKE(4, 5);
void		 http_problem_errors(struct request *, int status,
		    const char *slug, json_t *errors, const char *fmt, ...)
		    PRINTFLIKE(5, 6);

/* api-json.c */
json_t	*api_json_body(struct request *);
void	 api_fail(struct request *, int status, json_t *errors,
	    const char *err);

/* api-common.c: shared by the data handlers */
struct audit_record;
int	 api_audit_begin(struct request *, struct audit_record *,
	    const char *action);
void	 api_store_problem(struct request *, int store_status);
int	 api_run_on(struct event_base *, void (*)(void *), void *);
void	 api_user_seen(struct request *);
void	 api_user_forget(void);

/* api-events.c */
void	 api_events_post(struct request *);
void	 api_events_summary(struct request *);

/* api-settings.c */
void	 api_settings_get(struct request *);
void	 api_settings_put(struct request *);
void	 api_settings_delete(struct request *);
void	 api_settings_list(struct request *);

/* api-subjects.c */
void	 api_subject_export(struct request *);
void	 api_subject_erase(struct request *);
void	 api_reidentify(struct request *);

/* api-license.c */
void	 api_license_get(struct request *);
void	 api_license_put(struct request *);

/* api-notices.c */
void	 api_notices_list(struct request *);
void	 api_notices_publish(struct request *);
void	 api_notices_update(struct request *);

/* http.c: for the daemon */
int	 http_start(struct event_base *main_base, struct config *,
	    struct ssl_ctx_st *, char *err, size_t);
void	 http_reconfigure(struct config *, struct ssl_ctx_st *);
void	 http_shutdown(void (*done)(void *), void *arg);
json_t	*http_listeners_json(void);
int	 http_listeners_changed(const struct config *);
int	 http_open_connections(void);

/* tls.c */
struct ssl_ctx_st *tls_ctx_new(const struct tls_conf *, char *err, size_t);
int	 tls_self_signed_ensure(const struct tls_conf *, char *err, size_t);

/*
 * Internal to http.c and http-conn.c: event-loop threads and the TLS
 * connections they track (for limits, request deadlines and draining).
 */
struct conn;
TAILQ_HEAD(conn_list, conn);

struct worker {
	size_t			 index;
	pthread_t		 thread;
	struct event_base	*base;
	struct evhttp		*https;
	struct evhttp		*plain;
	struct {
		struct evhttp_bound_socket *sock;
		int			 tls;
	}			*socks;
	size_t			 nsocks;
	struct config		*conf;
	struct ssl_ctx_st	*ssl_ctx;
	struct conn_list	 conns;
	int			 inflight;	/* requests in a handler */
	int			 stopping;
	int			 done;		/* atomic: drained */
	struct event		*drain_timer;
	char			 id_prefix[17];
	uint64_t		 id_seq;
};

/* http-conn.c */
void	 conn_global_init(void);
struct bufferevent *conn_new_tls(struct event_base *, void *worker);
struct conn *conn_of(struct evhttp_request *);
int	 conn_over_limit(const struct conn *);
void	 conn_request_begin(struct conn *, struct evhttp_request *);
void	 conn_drain_idle(struct worker *);
int	 conn_count(void);

#endif /* HTTP_H */
