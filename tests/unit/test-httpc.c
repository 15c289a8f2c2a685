/* test-httpc.c: the HTTP client against a local TLS server with a test CA. */
#include "config.h"

#include <stdlib.h>

#include "tenantd.h"
#include "unit.h"
#include "fake-entra.h"

static struct fake_entra	 fe;
static struct event_base	*base;
static struct httpc		*hc;

struct result {
	int			 done;
	enum httpc_error	 error;
	long			 status;
	char			*body;
	char			*retry_after;
};

static void
on_done(const struct httpc_response *resp, void *arg)
{
	struct result	*r = arg;
	const char	*h;

	r->done = 1;
	r->error = resp->error;
	r->status = resp->status;
	r->body = strdup(resp->body);
	if ((h = httpc_response_header(resp, "Retry-After")) != NULL)
		r->retry_after = strdup(h);
}

static void
result_free(struct result *r)
{
	free(r->body);
	free(r->retry_after);
	memset(r, 0, sizeof(*r));
}

/* Run one request to completion; the URL is relative to the server. */
static int
fetch(const char *path, struct httpc_request *req, struct result *r)
{
	char	url[512];

	snprintf(url, sizeof(url), "%s%s", fake_entra_str(&fe, "authority"),
	    path);
	req->url = url;
	memset(r, 0, sizeof(*r));
	if (httpc_start(hc, req, on_done, r) == NULL)
		return -1;
	return run_until(base, &r->done, 30) ? 0 : -1;
}

static void
request_init(struct httpc_request *req)
{
	memset(req, 0, sizeof(*req));
	req->ca_file = fake_entra_str(&fe, "ca_file");
	req->timeout_ms = 20000;
}

static void
test_get(void)
{
	struct httpc_request	req;
	struct result		r;

	request_init(&req);
	CHECK(fetch("/_test/hello", &req, &r) == 0);
	CHECK(r.error == HTTPC_OK);
	CHECK(r.status == 200);
	CHECK_STR(r.body, "hello");
	result_free(&r);
}

static void
test_post(void)
{
	static const char *const headers[] = {
	    "Content-Type: application/x-test", "X-Tenantd-Test: yes", NULL };
	struct httpc_request	 req;
	struct result		 r;
	json_t			*doc;

	request_init(&req);
	req.method = "POST";
	req.headers = headers;
	req.body = "a=1\0b";
	req.body_len = 5;
	CHECK(fetch("/_test/echo", &req, &r) == 0);
	CHECK(r.error == HTTPC_OK && r.status == 200);
	doc = json_loads(r.body != NULL ? r.body : "", JSON_ALLOW_NUL, NULL);
	CHECK_STR(json_string_value(json_object_get(doc, "method")), "POST");
	CHECK(json_string_length(json_object_get(doc, "body")) == 5);
	CHECK_STR(json_string_value(json_object_get(json_object_get(doc,
	    "headers"), "x-tenantd-test")), "yes");
	json_decref(doc);
	result_free(&r);
}

static void
test_timeout(void)
{
	struct httpc_request	req;
	struct result		r;
	uint64_t		start = now_usec();

	request_init(&req);
	req.timeout_ms = 500;
	CHECK(fetch("/_test/slow?ms=4000", &req, &r) == 0);
	CHECK(r.error == HTTPC_ERR_TIMEOUT);
	CHECK(now_usec() - start < 3500000);
	result_free(&r);
}

static void
test_ca_failure(void)
{
	struct httpc_request	req;
	struct result		r;

	request_init(&req);
	req.ca_file = fake_entra_str(&fe, "other_ca_file");
	CHECK(fetch("/_test/hello", &req, &r) == 0);
	CHECK(r.error == HTTPC_ERR_TLS);
	CHECK(r.status == 0);
	result_free(&r);
	request_init(&req);
	req.ca_file = NULL;		/* the system CAs do not know it */
	CHECK(fetch("/_test/hello", &req, &r) == 0);
	CHECK(r.error == HTTPC_ERR_TLS);
	result_free(&r);
}

static void
test_body_cap(void)
{
	struct httpc_request	req;
	struct result		r;

	request_init(&req);
	req.max_body = 1000;
	CHECK(fetch("/_test/big?bytes=1000", &req, &r) == 0);
	CHECK(r.error == HTTPC_OK && strlen(r.body) == 1000);
	result_free(&r);
	CHECK(fetch("/_test/big?bytes=300000", &req, &r) == 0);
	CHECK(r.error == HTTPC_ERR_TOO_LARGE);
	result_free(&r);
}

static void
test_retry_after(void)
{
	struct httpc_request	req;
	struct result		r;

	request_init(&req);
	CHECK(fetch("/_test/status?code=429&retry_after=7", &req, &r) == 0);
	CHECK(r.error == HTTPC_OK && r.status == 429);
	CHECK_STR(r.retry_after, "7");
	result_free(&r);
}

static void
test_redirects(void)
{
	struct httpc_request	req;
	struct result		r;

	request_init(&req);
	CHECK(fetch("/_test/redirect", &req, &r) == 0);
	CHECK(r.error == HTTPC_OK && r.status == 302);
	result_free(&r);
	req.flags = HTTPC_FOLLOW_REDIRECTS;
	CHECK(fetch("/_test/redirect", &req, &r) == 0);
	CHECK(r.status == 200);
	CHECK_STR(r.body, "hello");
	result_free(&r);
}

static void
test_plain_http_refused(void)
{
	struct httpc_request	req;
	struct result		r;
	char			url[128];

	request_init(&req);
	snprintf(url, sizeof(url), "http://127.0.0.1:%lld/_test/hello",
	    (long long)json_integer_value(json_object_get(fe.info, "port")));
	req.url = url;
	memset(&r, 0, sizeof(r));
	CHECK(httpc_start(hc, &req, on_done, &r) != NULL);
	CHECK(run_until(base, &r.done, 30));
	CHECK(r.error != HTTPC_OK && r.status == 0);
	result_free(&r);
}

static void
test_parallel_and_cancel(void)
{
	struct httpc_request	 req;
	struct result		 r[4], slow;
	struct httpc_xfer	*x;
	char			 url[512];
	int			 i, all = 0;

	request_init(&req);
	snprintf(url, sizeof(url), "%s/_test/slow?ms=300",
	    fake_entra_str(&fe, "authority"));
	req.url = url;
	memset(&slow, 0, sizeof(slow));
	x = httpc_start(hc, &req, on_done, &slow);
	CHECK(x != NULL);
	for (i = 0; i < 4; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		CHECK(httpc_start(hc, &req, on_done, &r[i]) != NULL);
	}
	httpc_cancel(x);
	for (i = 0; i < 4; i++)
		all += run_until(base, &r[i].done, 30) && r[i].status == 200;
	CHECK(all == 4);
	CHECK(!slow.done);
	for (i = 0; i < 4; i++)
		result_free(&r[i]);
}

static void
test_connection_refused(void)
{
	struct httpc_request	 req;
	struct result		 r;
	json_t			*ok;

	ok = fake_entra_cmd(&fe, "down");
	json_decref(ok);
	request_init(&req);
	CHECK(fetch("/_test/hello", &req, &r) == 0);
	CHECK(r.error == HTTPC_ERR_CONNECT);
	if (r.error != HTTPC_ERR_CONNECT)
		printf("# error %s, status %ld\n", httpc_error_name(r.error),
		    r.status);
	result_free(&r);
	ok = fake_entra_cmd(&fe, "up");
	json_decref(ok);
	CHECK(fetch("/_test/hello", &req, &r) == 0);
	CHECK(r.status == 200);
	result_free(&r);
}

int
main(void)
{
	log_init("test", LOG_LEVEL_ERROR, 1);
	if (fake_entra_start(&fe) == -1) {
		printf("1..0 # SKIP python3 test server unavailable\n");
		return 0;
	}
	base = event_base_new();
	hc = httpc_new(base);
	TEST(test_get);
	TEST(test_post);
	TEST(test_timeout);
	TEST(test_ca_failure);
	TEST(test_body_cap);
	TEST(test_retry_after);
	TEST(test_redirects);
	TEST(test_plain_http_refused);
	TEST(test_parallel_and_cancel);
	TEST(test_connection_refused);
	httpc_free(hc);
	event_base_free(base);
	fake_entra_stop(&fe);
	return unit_done();
}
