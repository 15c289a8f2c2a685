/*
 * shipper-dest.c: what each destination API wants on the wire: gzip, the
 * logs-ingestion URL and headers, the legacy Data Collector's SharedKey
 * signature. Pure functions; the unit tests check them against vectors.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <zlib.h>

#include "tenantd.h"

/* gzip (RFC 1952) of in; *out is malloc'd. 0, or -1. */
int
ship_gzip(const void *in, size_t len, int level, void **out, size_t *outlen)
{
	z_stream	 z;
	size_t		 cap;
	int		 rc;

	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8,
	    Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	cap = deflateBound(&z, len) + 32;
	*out = xmalloc(cap);
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = len;
	z.next_out = *out;
	z.avail_out = cap;
	rc = deflate(&z, Z_FINISH);
	*outlen = cap - z.avail_out;
	deflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

/* "Mon, 02 Jan 2006 15:04:05 GMT", whatever the locale. */
void
ship_rfc1123_date(char *buf, size_t len, time_t t)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed",
	    "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr",
	    "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm	tm;

	gmtime_r(&t, &tm);
	snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d GMT",
	    days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * Authorization for the HTTP Data Collector API: "SharedKey WS:SIG",
 * SIG = Base64(HMAC-SHA256(key, "POST\n" LEN "\napplication/json\n"
 * "x-ms-date:" DATE "\n/api/logs")). key is the decoded shared key.
 */
int
ship_legacy_signature(const char *workspace_id, const void *key,
    size_t keylen, size_t content_length, const char *date, char *out,
    size_t outlen)
{
	unsigned char	 mac[EVP_MAX_MD_SIZE];
	unsigned int	 maclen = 0;
	char		 text[256], b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
	int		 n;

	n = snprintf(text, sizeof(text), "POST\n%zu\napplication/json\n"
	    "x-ms-date:%s\n/api/logs", content_length, date);
	if (n < 0 || (size_t)n >= sizeof(text))
		return -1;
	if (HMAC(EVP_sha256(), key, (int)keylen, (unsigned char *)text,
	    (size_t)n, mac, &maclen) == NULL)
		return -1;
	EVP_EncodeBlock((unsigned char *)b64, mac, (int)maclen);
	n = snprintf(out, outlen, "SharedKey %s:%s", workspace_id, b64);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

void
ship_request_free(struct ship_request *r)
{
	size_t	i;

	free(r->url);
	for (i = 0; i < r->nheaders; i++)
		free(r->headers[i]);
	memset(r, 0, sizeof(*r));
}

static void
ship_header(struct ship_request *r, const char *fmt, ...)
{
	va_list	ap;

	if (r->nheaders + 1 >= nitems(r->headers))
		fatalx("%s: too many headers", __func__);
	va_start(ap, fmt);
	if (vasprintf(&r->headers[r->nheaders], fmt, ap) == -1)
		fatalx("%s: out of memory", __func__);
	va_end(ap);
	r->headers[++r->nheaders] = NULL;
}

/* A random version 4 GUID for x-ms-client-request-id. */
static void
ship_guid(char out[37])
{
	char	hex[33];

	random_hex(hex, 16);
	hex[12] = '4';
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
	    hex + 16, hex + 20);
}

static size_t
ship_trim_slash(const char *url)
{
	size_t	len = strlen(url);

	while (len > 0 && url[len - 1] == '/')
		len--;
	return len;
}

static int
ship_request_ingestion(const struct log_shipping_conf *ls,
    const char *stream, const char *token, int gzipped,
    struct ship_request *r)
{
	char	guid[37];

	xasprintf(&r->url, "%.*s/dataCollectionRules/%s/streams/%s"
	    "?api-version=2023-01-01", (int)ship_trim_slash(ls->endpoint),
	    ls->endpoint, ls->dcr_immutable_id, stream);
	ship_guid(guid);
	ship_header(r, "Authorization: Bearer %s", token);
	ship_header(r, "Content-Type: application/json");
	if (gzipped)
		ship_header(r, "Content-Encoding: gzip");
	ship_header(r, "x-ms-client-request-id: %s", guid);
	ship_header(r, "Expect:");
	return 0;
}

static int
ship_request_legacy(const struct log_shipping_conf *ls, const char *log_type,
    const void *key, size_t keylen, size_t body_len, struct ship_request *r)
{
	char	date[64], auth[256];

	ship_rfc1123_date(date, sizeof(date), time(NULL));
	if (ship_legacy_signature(ls->workspace_id, key, keylen, body_len,
	    date, auth, sizeof(auth)) == -1)
		return -1;
	if (ls->endpoint != NULL)
		xasprintf(&r->url, "%.*s/api/logs?api-version=2016-04-01",
		    (int)ship_trim_slash(ls->endpoint), ls->endpoint);
	else
		xasprintf(&r->url, "https://%s.ods.opinsights.azure.com"
		    "/api/logs?api-version=2016-04-01", ls->workspace_id);
	ship_header(r, "Content-Type: application/json");
	ship_header(r, "Log-Type: %s", log_type);
	ship_header(r, "x-ms-date: %s", date);
	ship_header(r, "time-generated-field: TimeGenerated");
	ship_header(r, "Authorization: %s", auth);
	ship_header(r, "Expect:");
	return 0;
}

/* The URL and headers of one POST of body_len bytes to stream. */
int
ship_request_build(const struct log_shipping_conf *ls, const char *stream,
    const char *token, const void *key, size_t keylen, size_t body_len,
    int gzipped, struct ship_request *r)
{
	memset(r, 0, sizeof(*r));
	if (ls->api == SHIP_API_DATA_COLLECTOR)
		return ship_request_legacy(ls, stream, key, keylen, body_len,
		    r);
	return ship_request_ingestion(ls, stream, token, gzipped, r);
}
