/* test-util.c: address parsing, loopback detection, time formatting. */
#include "config.h"

#include <netinet/in.h>
#include <stdlib.h>

#include "tenantd.h"
#include "unit.h"

static void
test_parse_hostport_ipv4(void)
{
	struct sockaddr_storage	ss;
	socklen_t		len;
	char			err[128], buf[64];

	CHECK(parse_hostport("127.0.0.1:8443", &ss, &len, err, sizeof(err)) == 0);
	CHECK(ss.ss_family == AF_INET);
	format_sockaddr(buf, sizeof(buf), (struct sockaddr *)&ss);
	CHECK_STR(buf, "127.0.0.1:8443");
	CHECK(is_loopback_addr((struct sockaddr *)&ss));
	CHECK(parse_hostport("*:80", &ss, &len, err, sizeof(err)) == 0);
	CHECK(!is_loopback_addr((struct sockaddr *)&ss));
}

static void
test_parse_hostport_ipv6(void)
{
	struct sockaddr_storage	ss;
	socklen_t		len;
	char			err[128], buf[64];

	CHECK(parse_hostport("[::1]:0", &ss, &len, err, sizeof(err)) == 0);
	CHECK(ss.ss_family == AF_INET6);
	CHECK(is_loopback_addr((struct sockaddr *)&ss));
	format_sockaddr(buf, sizeof(buf), (struct sockaddr *)&ss);
	CHECK_STR(buf, "[::1]:0");
	CHECK(parse_hostport("[::]:443", &ss, &len, err, sizeof(err)) == 0);
	CHECK(!is_loopback_addr((struct sockaddr *)&ss));
}

static void
test_parse_hostport_errors(void)
{
	struct sockaddr_storage	ss;
	socklen_t		len;
	char			err[128];

	CHECK(parse_hostport("localhost", &ss, &len, err, sizeof(err)) == -1);
	CHECK(parse_hostport("127.0.0.1:99999", &ss, &len, err,
	    sizeof(err)) == -1);
	CHECK(parse_hostport("example.org:443", &ss, &len, err,
	    sizeof(err)) == -1);
	CHECK(strstr(err, "not an IPv4 or IPv6") != NULL);
	CHECK(parse_hostport("[::1:443", &ss, &len, err, sizeof(err)) == -1);
	CHECK(parse_hostport("1.2.3.4:-1", &ss, &len, err, sizeof(err)) == -1);
}

static void
test_iso8601(void)
{
	char	buf[40];

	format_iso8601(buf, sizeof(buf), 1795946400123456ULL);
	CHECK_STR(buf, "2026-11-29T10:00:00.123456Z");
}

static void
test_timingsafe_eq(void)
{
	CHECK(timingsafe_eq("abcd", "abcd", 4));
	CHECK(!timingsafe_eq("abcd", "abce", 4));
}

static void
test_random_hex(void)
{
	char	a[33], b[33];

	random_hex(a, 16);
	random_hex(b, 16);
	CHECK(strlen(a) == 32);
	CHECK(strcmp(a, b) != 0);
}

int
main(void)
{
	log_init("test", LOG_LEVEL_WARN, 1);
	TEST(test_parse_hostport_ipv4);
	TEST(test_parse_hostport_ipv6);
	TEST(test_parse_hostport_errors);
	TEST(test_iso8601);
	TEST(test_timingsafe_eq);
	TEST(test_random_hex);
	return unit_done();
}
