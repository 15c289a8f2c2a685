/*
 * http-conn.c: TLS connections as evhttp does not see them: the global
 * connection limit, the deadline for receiving a whole request (a slow
 * client is dropped), one TLS record per response, and draining at
 * shutdown. A connection's state lives in its SSL object's ex_data and is
 * freed with it.
 */
#include "config.h"

#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>

#include "http.h"

/* Larger responses (exports) stream as they come; copying them whole
 * into one chunk would cost more than the extra TLS records. */
#define PULLUP_MAX	(16 * 1024)

struct conn {
	TAILQ_ENTRY(conn)	 entry;
	struct worker		*w;
	struct bufferevent	*bev;
	struct event		*deadline;
	int			 busy;		/* a request is arriving */
	int			 over_limit;
};

static int	conn_ex_index = -1;
static void	conn_input_cb(struct evbuffer *, const struct evbuffer_cb_info *,
		    void *);
static void	conn_output_cb(struct evbuffer *,
		    const struct evbuffer_cb_info *, void *);
static int	conn_open;		/* atomic, all workers */

int
conn_count(void)
{
	return __atomic_load_n(&conn_open, __ATOMIC_RELAXED);
}

static void
conn_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
    long argl, void *argp)
{
	struct conn	*c = ptr;

	if (c == NULL)
		return;
	evbuffer_remove_cb(bufferevent_get_input(c->bev), conn_input_cb, c);
	evbuffer_remove_cb(bufferevent_get_output(c->bev), conn_output_cb, c);
	TAILQ_REMOVE(&c->w->conns, c, entry);
	event_free(c->deadline);
	__atomic_sub_fetch(&conn_open, 1, __ATOMIC_RELAXED);
	free(c);
}

void
conn_global_init(void)
{
	conn_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL,
	    conn_ex_free);
	if (conn_ex_index == -1)
		fatalx("SSL_get_ex_new_index failed");
}

/* Drop the connection: evhttp sees the error and frees it. */
static void
conn_drop(struct conn *c)
{
	int	fd = bufferevent_getfd(c->bev);

	if (fd != -1)
		shutdown(fd, SHUT_RDWR);
}

static void
conn_deadline_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct conn	*c = arg;

	log_info("dropping a connection: request not received within %llums",
	    (unsigned long long)c->w->conf->http.request_timeout);
	conn_drop(c);
}

static void
conn_arm_deadline(struct conn *c)
{
	struct timeval	tv;
	uint64_t	ms = c->w->conf->http.request_timeout;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(c->deadline, &tv);
}

/* Bytes of a new request arrived on an idle connection. */
static void
conn_input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct conn	*c = arg;

	if (info->n_added == 0 || c->busy)
		return;
	c->busy = 1;
	conn_arm_deadline(c);
}

/* Coalesce a response into one chunk so it leaves as one TLS record. */
static void
conn_output_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	size_t	len;

	if (info->n_added == 0)
		return;
	len = evbuffer_get_length(buf);
	if (len <= PULLUP_MAX)
		evbuffer_pullup(buf, -1);
}

struct bufferevent *
conn_new_tls(struct event_base *base, void *arg)
{
	struct worker		*w = arg;
	struct conn		*c;
	struct bufferevent	*bev;
	SSL			*ssl;
	int			 n;

	if ((ssl = SSL_new(w->ssl_ctx)) == NULL)
		return NULL;
	bev = bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->w = w;
	c->bev = bev;
	c->deadline = evtimer_new(base, conn_deadline_cb, c);
	n = __atomic_add_fetch(&conn_open, 1, __ATOMIC_RELAXED);
	c->over_limit = n > w->conf->http.max_connections;
	TAILQ_INSERT_TAIL(&w->conns, c, entry);
	SSL_set_ex_data(ssl, conn_ex_index, c);
	evbuffer_add_cb(bufferevent_get_input(bev), conn_input_cb, c);
	evbuffer_add_cb(bufferevent_get_output(bev), conn_output_cb, c);
	return bev;
}

struct conn *
conn_of(struct evhttp_request *ev)
{
	struct evhttp_connection	*evcon;
	struct bufferevent		*bev;
	SSL				*ssl;

	if ((evcon = evhttp_request_get_connection(ev)) == NULL ||
	    (bev = evhttp_connection_get_bufferevent(evcon)) == NULL ||
	    (ssl = bufferevent_openssl_get_ssl(bev)) == NULL)
		return NULL;		/* a plaintext loopback connection */
	return SSL_get_ex_data(ssl, conn_ex_index);
}

int
conn_over_limit(const struct conn *c)
{
	return c != NULL && c->over_limit;
}

/* The reply went out: idle again, unless a pipelined request waits. */
static void
conn_reply_done(struct evhttp_request *ev, void *arg)
{
	struct conn	*c = arg;

	c->busy = evbuffer_get_length(bufferevent_get_input(c->bev)) > 0;
	if (c->busy)
		conn_arm_deadline(c);
	else if (c->w->stopping)	/* was mid-reply when draining began */
		conn_drop(c);
}

/* A whole request arrived and goes to its handler. */
void
conn_request_begin(struct conn *c, struct evhttp_request *ev)
{
	if (c == NULL)
		return;
	evtimer_del(c->deadline);
	evhttp_request_set_on_complete_cb(ev, conn_reply_done, c);
}

/* At shutdown: close connections with no request under way. */
void
conn_drain_idle(struct worker *w)
{
	struct conn	*c;

	TAILQ_FOREACH(c, &w->conns, entry)
		if (!c->busy)
			conn_drop(c);
}
