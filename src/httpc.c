/*
 * httpc.c: the outbound HTTP client. Owns every curl handle: one curl multi
 * per event base, driven by libevent socket and timer events, so requests
 * never block the loop that started them.
 */
#include "config.h"

#include <sys/queue.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "tenantd.h"

#define HTTPC_DEFAULT_TIMEOUT_MS	30000
#define HTTPC_DEFAULT_MAX_BODY		(1024 * 1024)
#define HTTPC_CONNECT_TIMEOUT_MS	10000
#define HTTPC_MAX_REDIRECTS		3

struct httpc_xfer {
	LIST_ENTRY(httpc_xfer)	 entry;
	struct httpc		*hc;
	CURL			*easy;
	struct curl_slist	*headers;
	char			*body;
	size_t			 body_len;
	size_t			 max_body;
	int			 too_large;
	httpc_cb		 cb;
	void			*arg;
	char			 errbuf[CURL_ERROR_SIZE];
};

struct httpc {
	struct event_base	*base;
	CURLM			*multi;
	struct event		*timer;
	LIST_HEAD(, httpc_xfer)	 xfers;
};

/* One per socket curl watches, attached with curl_multi_assign(). */
struct httpc_sock {
	struct event		*ev;
};

static const char *const httpc_error_names[] = {
	[HTTPC_OK] = "ok",
	[HTTPC_ERR_TIMEOUT] = "timeout",
	[HTTPC_ERR_CONNECT] = "connect",
	[HTTPC_ERR_TLS] = "tls",
	[HTTPC_ERR_TOO_LARGE] = "too_large",
	[HTTPC_ERR_OTHER] = "error",
};

static const struct {
	CURLcode		code;
	enum httpc_error	error;
} httpc_curl_errors[] = {
	{ CURLE_OPERATION_TIMEDOUT, HTTPC_ERR_TIMEOUT },
	{ CURLE_COULDNT_RESOLVE_HOST, HTTPC_ERR_CONNECT },
	{ CURLE_COULDNT_CONNECT, HTTPC_ERR_CONNECT },
	{ CURLE_RECV_ERROR, HTTPC_ERR_CONNECT },
	{ CURLE_SEND_ERROR, HTTPC_ERR_CONNECT },
	{ CURLE_GOT_NOTHING, HTTPC_ERR_CONNECT },
	{ CURLE_SSL_CONNECT_ERROR, HTTPC_ERR_TLS },
	{ CURLE_PEER_FAILED_VERIFICATION, HTTPC_ERR_TLS },
	{ CURLE_SSL_CACERT_BADFILE, HTTPC_ERR_TLS },
	{ CURLE_SSL_CERTPROBLEM, HTTPC_ERR_TLS },
	{ CURLE_FILESIZE_EXCEEDED, HTTPC_ERR_TOO_LARGE },
};

static pthread_once_t	httpc_once = PTHREAD_ONCE_INIT;

static void
httpc_global_init_once(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatalx("curl_global_init failed");
}

/* Call before starting threads; httpc_new() calls it too. */
void
httpc_global_init(void)
{
	pthread_once(&httpc_once, httpc_global_init_once);
}

const char *
httpc_error_name(enum httpc_error error)
{
	if ((size_t)error >= nitems(httpc_error_names))
		return "error";
	return httpc_error_names[error];
}

static enum httpc_error
httpc_map_error(const struct httpc_xfer *x, CURLcode code)
{
	size_t	i;

	if (code == CURLE_OK)
		return HTTPC_OK;
	if (x->too_large)
		return HTTPC_ERR_TOO_LARGE;
	for (i = 0; i < nitems(httpc_curl_errors); i++)
		if (httpc_curl_errors[i].code == code)
			return httpc_curl_errors[i].error;
	return HTTPC_ERR_OTHER;
}

static void
httpc_xfer_free(struct httpc_xfer *x)
{
	LIST_REMOVE(x, entry);
	curl_multi_remove_handle(x->hc->multi, x->easy);
	curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->headers);
	free(x->body);
	free(x);
}

static void
httpc_complete(struct httpc_xfer *x, CURLcode code)
{
	struct httpc_response	resp;

	memset(&resp, 0, sizeof(resp));
	resp.error = httpc_map_error(x, code);
	resp.errmsg = "";
	if (resp.error != HTTPC_OK)
		resp.errmsg = x->errbuf[0] != '\0' ? x->errbuf :
		    curl_easy_strerror(code);
	if (resp.error == HTTPC_ERR_TOO_LARGE)
		resp.errmsg = "response body too large";
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &resp.status);
	resp.body = x->body != NULL ? x->body : "";
	resp.body_len = x->body_len;
	resp.xfer = x;
	x->cb(&resp, x->arg);
	httpc_xfer_free(x);
}

/* Finish every transfer curl reports done. */
static void
httpc_check_done(struct httpc *hc)
{
	CURLMsg			*msg;
	struct httpc_xfer	*x;
	int			 left;

	while ((msg = curl_multi_info_read(hc->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
		    (char **)&x) != CURLE_OK || x == NULL)
			continue;
		httpc_complete(x, msg->data.result);
	}
}

static void
httpc_socket_event(evutil_socket_t fd, short what, void *arg)
{
	struct httpc	*hc = arg;
	int		 flags = 0, running;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(hc->multi, fd, flags, &running);
	httpc_check_done(hc);
}

static void
httpc_timer_event(evutil_socket_t fd, short what, void *arg)
{
	struct httpc	*hc = arg;
	int		 running;

	curl_multi_socket_action(hc->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	httpc_check_done(hc);
}

static int
httpc_timer_cb(CURLM *multi, long timeout_ms, void *arg)
{
	struct httpc	*hc = arg;
	struct timeval	 tv;

	if (timeout_ms < 0) {
		evtimer_del(hc->timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(hc->timer, &tv);
	return 0;
}

static int
httpc_socket_cb(CURL *easy, curl_socket_t fd, int what, void *arg,
    void *sockp)
{
	struct httpc		*hc = arg;
	struct httpc_sock	*s = sockp;
	short			 events = EV_PERSIST;

	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			event_free(s->ev);
			free(s);
			curl_multi_assign(hc->multi, fd, NULL);
		}
		return 0;
	}
	if (what & CURL_POLL_IN)
		events |= EV_READ;
	if (what & CURL_POLL_OUT)
		events |= EV_WRITE;
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		curl_multi_assign(hc->multi, fd, s);
	} else
		event_free(s->ev);
	s->ev = event_new(hc->base, fd, events, httpc_socket_event, hc);
	if (s->ev == NULL || event_add(s->ev, NULL) == -1) {
		log_warnx("httpc: cannot watch socket %d", (int)fd);
		return -1;
	}
	return 0;
}

struct httpc *
httpc_new(struct event_base *base)
{
	struct httpc	*hc;

	httpc_global_init();
	hc = xcalloc(1, sizeof(*hc));
	hc->base = base;
	LIST_INIT(&hc->xfers);
	if ((hc->multi = curl_multi_init()) == NULL)
		fatalx("curl_multi_init failed");
	if ((hc->timer = evtimer_new(base, httpc_timer_event, hc)) == NULL)
		fatalx("httpc: evtimer_new failed");
	curl_multi_setopt(hc->multi, CURLMOPT_SOCKETFUNCTION, httpc_socket_cb);
	curl_multi_setopt(hc->multi, CURLMOPT_SOCKETDATA, hc);
	curl_multi_setopt(hc->multi, CURLMOPT_TIMERFUNCTION, httpc_timer_cb);
	curl_multi_setopt(hc->multi, CURLMOPT_TIMERDATA, hc);
	return hc;
}

void
httpc_free(struct httpc *hc)
{
	if (hc == NULL)
		return;
	while (!LIST_EMPTY(&hc->xfers))
		httpc_xfer_free(LIST_FIRST(&hc->xfers));
	curl_multi_cleanup(hc->multi);
	event_free(hc->timer);
	free(hc);
}

void
httpc_cancel(struct httpc_xfer *x)
{
	if (x != NULL)
		httpc_xfer_free(x);
}

static size_t
httpc_write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct httpc_xfer	*x = arg;
	size_t			 len = size * nmemb;

	if (len > x->max_body - x->body_len) {
		x->too_large = 1;
		return 0;	/* aborts with CURLE_WRITE_ERROR */
	}
	x->body = xreallocarray(x->body, x->body_len + len + 1, 1);
	memcpy(x->body + x->body_len, data, len);
	x->body_len += len;
	x->body[x->body_len] = '\0';
	return len;
}

static void
httpc_set_method(struct httpc_xfer *x, const struct httpc_request *req)
{
	const char	*method = req->method != NULL ? req->method : "GET";
	CURL		*e = x->easy;

	if (req->body != NULL || strcmp(method, "POST") == 0) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)req->body_len);
		curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS,
		    req->body != NULL ? req->body : "");
	}
	if (strcmp(method, "GET") == 0 && req->body == NULL)
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	else if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else if (strcmp(method, "POST") != 0)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
}

static int
httpc_set_headers(struct httpc_xfer *x, const struct httpc_request *req)
{
	struct curl_slist	*l;
	size_t			 i;

	for (i = 0; req->headers != NULL && req->headers[i] != NULL; i++) {
		if ((l = curl_slist_append(x->headers, req->headers[i])) ==
		    NULL)
			return -1;
		x->headers = l;
	}
	if (x->headers != NULL)
		curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
	return 0;
}

static void
httpc_set_policy(struct httpc_xfer *x, const struct httpc_request *req)
{
	CURL		*e = x->easy;
	uint64_t	 timeout = req->timeout_ms ? req->timeout_ms :
			    HTTPC_DEFAULT_TIMEOUT_MS;
	const char	*protocols = (req->flags & HTTPC_ALLOW_HTTP) ?
			    "http,https" : "https";

	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)MINIMUM(timeout, HTTPC_CONNECT_TIMEOUT_MS));
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, protocols);
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION,
	    (req->flags & HTTPC_FOLLOW_REDIRECTS) ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)HTTPC_MAX_REDIRECTS);
	curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	/* CAINFO replaces the bundle; the compiled-in CApath stays. */
	if (req->ca_file != NULL)
		curl_easy_setopt(e, CURLOPT_CAINFO, req->ca_file);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
	    (curl_off_t)x->max_body);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "tenantd/" TENANTD_VERSION);
}

struct httpc_xfer *
httpc_start(struct httpc *hc, const struct httpc_request *req, httpc_cb cb,
    void *arg)
{
	struct httpc_xfer	*x;

	x = xcalloc(1, sizeof(*x));
	x->hc = hc;
	x->cb = cb;
	x->arg = arg;
	x->max_body = req->max_body ? req->max_body : HTTPC_DEFAULT_MAX_BODY;
	LIST_INSERT_HEAD(&hc->xfers, x, entry);
	if ((x->easy = curl_easy_init()) == NULL) {
		log_warnx("httpc: curl_easy_init failed for %s", req->url);
		LIST_REMOVE(x, entry);
		free(x);
		return NULL;
	}
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(x->easy, CURLOPT_URL, req->url);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, httpc_write_cb);
	curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	httpc_set_policy(x, req);
	httpc_set_method(x, req);
	if (httpc_set_headers(x, req) == -1 ||
	    curl_multi_add_handle(hc->multi, x->easy) != CURLM_OK) {
		log_warnx("httpc: cannot start request to %s", req->url);
		httpc_xfer_free(x);
		return NULL;
	}
	return x;
}

const char *
httpc_response_header(const struct httpc_response *resp, const char *name)
{
	struct curl_header	*h;

	if (resp->xfer == NULL || curl_easy_header(resp->xfer->easy, name, 0,
	    CURLH_HEADER, -1, &h) != CURLHE_OK)
		return NULL;
	return h->value;
}
