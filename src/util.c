/*
 * util.c: small helpers with no owner of their own: clocks, constant-time
 * comparison, address parsing and formatting.
 */
#include "config.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "tenantd.h"

int
timingsafe_eq(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

static uint64_t
clock_usec(clockid_t id)
{
	struct timespec	ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t
now_usec(void)
{
	return clock_usec(CLOCK_MONOTONIC);
}

uint64_t
wall_usec(void)
{
	return clock_usec(CLOCK_REALTIME);
}

/* 2026-11-29T10:00:00.123456Z */
void
format_iso8601(char *buf, size_t len, uint64_t wall_us)
{
	time_t		t = (time_t)(wall_us / 1000000);
	struct tm	tm;

	gmtime_r(&t, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (unsigned)(wall_us % 1000000));
}

int
is_loopback_addr(const struct sockaddr *sa)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;

	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)sa;
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
			return 1;
		return IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) &&
		    sin6->sin6_addr.s6_addr[12] == 127;
	}
	return 0;
}

static int
parse_port(const char *s, in_port_t *port)
{
	char		*end;
	unsigned long	 n;

	if (*s < '0' || *s > '9')
		return -1;
	n = strtoul(s, &end, 10);
	if (*end != '\0' || n > 65535)
		return -1;
	*port = htons((in_port_t)n);
	return 0;
}

/* "127.0.0.1:8443", "[::1]:8443", "*:8443" (all IPv4), "[::]:8443" */
int
parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *sslen,
    char *err, size_t errlen)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	const char		*colon, *host_end;
	char			 host[INET6_ADDRSTRLEN + 1];
	in_port_t		 port;

	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		if ((host_end = strchr(s, ']')) == NULL || host_end[1] != ':') {
			snprintf(err, errlen, "expected '[IPv6]:port'");
			return -1;
		}
		colon = host_end + 1;
		s++;
	} else if ((colon = strrchr(s, ':')) == NULL) {
		snprintf(err, errlen, "expected 'address:port'");
		return -1;
	} else
		host_end = colon;
	if ((size_t)(host_end - s) >= sizeof(host)) {
		snprintf(err, errlen, "address is too long");
		return -1;
	}
	memcpy(host, s, host_end - s);
	host[host_end - s] = '\0';
	if (parse_port(colon + 1, &port) == -1) {
		snprintf(err, errlen, "port must be a number from 0 to 65535");
		return -1;
	}
	if (strcmp(host, "*") == 0)
		strcpy(host, "0.0.0.0");
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = port;
		*sslen = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = port;
		*sslen = sizeof(*sin6);
		return 0;
	}
	snprintf(err, errlen, "'%s' is not an IPv4 or IPv6 address", host);
	return -1;
}

void
format_sockaddr(char *buf, size_t len, const struct sockaddr *sa)
{
	const struct sockaddr_in	*sin = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6	*sin6 = (const struct sockaddr_in6 *)sa;
	char				 host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
	} else
		snprintf(buf, len, "unix");
}

void
random_hex(char *out, size_t nbytes)
{
	static const char	 hex[] = "0123456789abcdef";
	unsigned char		 b[64];
	size_t			 i;

	if (nbytes > sizeof(b))
		nbytes = sizeof(b);
	if (RAND_bytes(b, (int)nbytes) != 1)
		fatalx("RAND_bytes failed");
	for (i = 0; i < nbytes; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 0xf];
	}
	out[2 * nbytes] = '\0';
}

#ifndef HAVE_STRLCPY
size_t
strlcpy(char *dst, const char *src, size_t size)
{
	size_t	len = strlen(src);

	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;

		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}
#endif

#ifndef HAVE_STRLCAT
size_t
strlcat(char *dst, const char *src, size_t size)
{
	size_t	dlen = strnlen(dst, size);

	if (dlen == size)
		return size + strlen(src);
	return dlen + strlcpy(dst + dlen, src, size - dlen);
}
#endif
