/*
 * test-shipper.c: log shipping's pure pieces: gzip round trip, the legacy
 * SharedKey signature against a vector computed with Python's hmac, the
 * RFC 1123 date, and the request each API wants.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "tenantd.h"
#include "unit.h"

static void
test_gzip_round_trip(void)
{
	char		 in[4096], out[8192];
	void		*gz = NULL;
	size_t		 gzlen = 0, i;
	z_stream	 z;

	for (i = 0; i < sizeof(in); i++)
		in[i] = "{\"RecordId\":\"abc\"},"[i % 19];
	CHECK(ship_gzip(in, sizeof(in), 6, &gz, &gzlen) == 0);
	CHECK(gzlen > 18 && gzlen < sizeof(in) / 5);
	CHECK(((unsigned char *)gz)[0] == 0x1f &&
	    ((unsigned char *)gz)[1] == 0x8b);
	memset(&z, 0, sizeof(z));
	CHECK(inflateInit2(&z, 15 + 16) == Z_OK);
	z.next_in = gz;
	z.avail_in = gzlen;
	z.next_out = (Bytef *)out;
	z.avail_out = sizeof(out);
	CHECK(inflate(&z, Z_FINISH) == Z_STREAM_END);
	CHECK(z.total_out == sizeof(in) && memcmp(in, out, sizeof(in)) == 0);
	inflateEnd(&z);
	free(gz);
}

/* Vector: python3 hmac/base64 over the documented string-to-sign. */
static void
test_legacy_signature(void)
{
	static const char	key[] = "0123456789abcdef0123456789abcdef";
	char			out[256];

	CHECK(ship_legacy_signature("ws-1", key, 32, 1234,
	    "Mon, 02 Mar 2026 10:00:00 GMT", out, sizeof(out)) == 0);
	CHECK_STR(out, "SharedKey ws-1:"
	    "1UEYewLBZaM44Yb1YRWioWSM6GAAcG0fAhM9vXbxcWY=");
	CHECK(ship_legacy_signature("ws-1", key, 32, 1234, "x", out, 10) ==
	    -1);
}

static void
test_rfc1123(void)
{
	char	buf[64];

	ship_rfc1123_date(buf, sizeof(buf), 1772445600);
	CHECK_STR(buf, "Mon, 02 Mar 2026 10:00:00 GMT");
}

static int
has_header(const struct ship_request *r, const char *h)
{
	size_t	i;

	for (i = 0; i < r->nheaders; i++)
		if (strcmp(r->headers[i], h) == 0)
			return 1;
	return 0;
}

static void
test_ingestion_request(void)
{
	struct log_shipping_conf	ls;
	struct ship_request		r;

	memset(&ls, 0, sizeof(ls));
	ls.api = SHIP_API_LOGS_INGESTION;
	ls.endpoint = xstrdup("https://dce.westeurope-1.ingest.monitor."
	    "azure.com/");
	ls.dcr_immutable_id = xstrdup("dcr-0123");
	CHECK(ship_request_build(&ls, "Custom-TenantdOps_CL", "tok", NULL, 0,
	    10, 1, &r) == 0);
	CHECK_STR(r.url, "https://dce.westeurope-1.ingest.monitor.azure.com"
	    "/dataCollectionRules/dcr-0123/streams/Custom-TenantdOps_CL"
	    "?api-version=2023-01-01");
	CHECK(has_header(&r, "Authorization: Bearer tok"));
	CHECK(has_header(&r, "Content-Type: application/json"));
	CHECK(has_header(&r, "Content-Encoding: gzip"));
	CHECK(r.headers[r.nheaders] == NULL);
	ship_request_free(&r);
	free(ls.endpoint);
	free(ls.dcr_immutable_id);
}

static void
test_legacy_request(void)
{
	struct log_shipping_conf	ls;
	struct ship_request		r;

	memset(&ls, 0, sizeof(ls));
	ls.api = SHIP_API_DATA_COLLECTOR;
	ls.workspace_id = xstrdup("0b8f2e3c-1d4a-4e5f-9a6b-7c8d9e0f1a2b");
	CHECK(ship_request_build(&ls, "TenantdOps", NULL, "k", 1, 10, 0,
	    &r) == 0);
	CHECK_STR(r.url, "https://0b8f2e3c-1d4a-4e5f-9a6b-7c8d9e0f1a2b.ods."
	    "opinsights.azure.com/api/logs?api-version=2016-04-01");
	CHECK(has_header(&r, "Log-Type: TenantdOps"));
	CHECK(has_header(&r, "time-generated-field: TimeGenerated"));
	CHECK(strncmp(r.headers[r.nheaders - 2], "Authorization: SharedKey "
	    "0b8f2e3c", 33) == 0);
	ship_request_free(&r);
	free(ls.workspace_id);
}

int
main(void)
{
	TEST(test_gzip_round_trip);
	TEST(test_legacy_signature);
	TEST(test_rfc1123);
	TEST(test_ingestion_request);
	TEST(test_legacy_request);
	return unit_done();
}
