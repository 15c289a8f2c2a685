/*
 * api-health.c: liveness, readiness and metrics for probes and Prometheus.
 */
#include "config.h"

#include <event2/buffer.h>

#include "http.h"

void
api_livez(struct request *req)
{
	http_reply(req, 200, "text/plain; charset=utf-8", "ok", 2);
}

void
api_readyz(struct request *req)
{
	json_t	*checks;
	int	 ready;

	checks = ready_json(&ready);
	http_reply_json(req, ready ? 200 : 503,
	    json_pack("{s:s, s:o}", "status", ready ? "ready" : "not ready",
	    "checks", checks));
}

void
api_metrics(struct request *req)
{
	struct evbuffer	*buf;

	if ((buf = evbuffer_new()) == NULL) {
		http_problem(req, 500, "internal", "out of memory");
		return;
	}
	metrics_render(buf);
	http_reply_buffer(req, 200, "text/plain; version=0.0.4; charset=utf-8",
	    buf);
	evbuffer_free(buf);
}
