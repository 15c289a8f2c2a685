/*
 * vault-proto.c: what tenantd and tenantd-vault share about talking to
 * each other: addresses, length-prefixed JSON frames, field checks, the
 * mutual-TLS contexts, and one blocking call for operator commands.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <event2/buffer.h>

#include "tenantd.h"

#define PSEUDONYM_CHARS	"abcdefghijklmnopqrstuvwxyz234567"

int
vault_address_parse(const char *addr, struct sockaddr_storage *ss,
    socklen_t *sslen, int *tls, char *err, size_t errlen)
{
	struct sockaddr_storage	 tmp;
	struct sockaddr_un	*sun = (struct sockaddr_un *)&tmp;
	socklen_t		 tmplen;
	size_t			 len = strlen(addr);

	*tls = strncmp(addr, VAULT_TLS_PREFIX, strlen(VAULT_TLS_PREFIX)) == 0;
	if (*tls) {
		if (parse_hostport(addr + strlen(VAULT_TLS_PREFIX), &tmp,
		    &tmplen, err, errlen) == -1)
			return -1;
	} else {
		if (len == 0 || len >= sizeof(sun->sun_path) ||
		    strstr(addr, "://") != NULL) {
			snprintf(err, errlen, "'%s' is neither a unix socket "
			    "path (at most %zu bytes) nor tls://ADDRESS:PORT",
			    addr, sizeof(sun->sun_path) - 1);
			return -1;
		}
		memset(&tmp, 0, sizeof(tmp));
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, addr, len);
		tmplen = sizeof(*sun);
	}
	if (ss != NULL) {
		memcpy(ss, &tmp, sizeof(tmp));
		*sslen = tmplen;
	}
	return 0;
}

/* --- frames ------------------------------------------------------------ */

int
vault_frame_add(struct evbuffer *out, json_t *msg)
{
	uint8_t	 hdr[4];
	char	*text;
	size_t	 len;
	int	 rv = -1;

	if ((text = json_dumps(msg, JSON_COMPACT)) == NULL)
		return -1;
	len = strlen(text);
	if (len <= VAULT_FRAME_MAX) {
		hdr[0] = len >> 24;
		hdr[1] = len >> 16;
		hdr[2] = len >> 8;
		hdr[3] = len;
		if (evbuffer_add(out, hdr, 4) == 0 &&
		    evbuffer_add(out, text, len) == 0)
			rv = 0;
	}
	OPENSSL_cleanse(text, len);
	free(text);
	return rv;
}

/* 1: *msg is the next frame; 0: more bytes needed; -1: a bad frame. */
int
vault_frame_take(struct evbuffer *in, json_t **msg, char *err, size_t errlen)
{
	json_error_t	 jerr;
	uint8_t		 hdr[4], *body;
	size_t		 len;

	*msg = NULL;
	if (evbuffer_copyout(in, hdr, 4) != 4)
		return 0;
	len = (size_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
	if (len == 0 || len > VAULT_FRAME_MAX) {
		snprintf(err, errlen, "frame of %zu bytes (1 to %d allowed)",
		    len, VAULT_FRAME_MAX);
		return -1;
	}
	if (evbuffer_get_length(in) < 4 + len)
		return 0;
	evbuffer_drain(in, 4);
	body = evbuffer_pullup(in, len);
	*msg = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES,
	    &jerr);
	OPENSSL_cleanse(body, len);
	evbuffer_drain(in, len);
	if (*msg == NULL || !json_is_object(*msg)) {
		json_decref(*msg);
		*msg = NULL;
		snprintf(err, errlen, "frame is not a JSON object");
		return -1;
	}
	return 1;
}

/* --- fields ------------------------------------------------------------ */

int
vault_pseudonym_ok(const char *p)
{
	return p != NULL && strlen(p) == KEYRING_PSEUDONYM_LEN - 1 &&
	    strncmp(p, "p_", 2) == 0 &&
	    strspn(p + 2, PSEUDONYM_CHARS) == KEYRING_PSEUDONYM_LEN - 3;
}

/* 1 to max bytes of text without control characters (UTF-8 by jansson). */
int
vault_text_ok(const char *s, size_t max)
{
	size_t	i, len;

	if (s == NULL || (len = strlen(s)) == 0 || len > max)
		return 0;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

static const struct {
	const char	*name;
	size_t		 max;
	int		 required;
} identity_fields[] = {
	{ "oid",		VAULT_FIELD_MAX,	1 },
	{ "upn",		VAULT_FIELD_MAX,	1 },
	{ "display_name",	VAULT_NAME_MAX,		0 },
};

int
vault_identity_ok(json_t *id, char *err, size_t errlen)
{
	const char	*key;
	json_t		*v;
	size_t		 i, known = 0;

	if (!json_is_object(id)) {
		snprintf(err, errlen, "identity must be an object");
		return 0;
	}
	for (i = 0; i < nitems(identity_fields); i++) {
		v = json_object_get(id, identity_fields[i].name);
		if (v == NULL && !identity_fields[i].required)
			continue;
		known++;
		if (!vault_text_ok(json_string_value(v),
		    identity_fields[i].max)) {
			snprintf(err, errlen, "identity.%s must be text of 1 "
			    "to %zu bytes", identity_fields[i].name,
			    identity_fields[i].max);
			return 0;
		}
	}
	json_object_foreach(id, key, v)
		if (known-- == 0) {
			snprintf(err, errlen, "identity has unknown fields");
			return 0;
		}
	return 1;
}

/* --- mutual TLS ---------------------------------------------------------- */

static void
tls_err(char *err, size_t errlen, const char *what, const char *path)
{
	unsigned long	e = ERR_get_error();

	snprintf(err, errlen, "vault TLS: %s %s: %s", what, path,
	    e ? ERR_reason_error_string(e) : "failed");
	ERR_clear_error();
}

/* Both ends are ours: TLS 1.3 only, and each must show a certificate. */
SSL_CTX *
vault_tls_ctx(int server, const struct vault_tls_conf *tc, char *err,
    size_t errlen)
{
	SSL_CTX	*ctx;

	ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (ctx == NULL) {
		tls_err(err, errlen, "context", "");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, tc->certificate) != 1)
		tls_err(err, errlen, "certificate", tc->certificate);
	else if (SSL_CTX_use_PrivateKey_file(ctx, tc->key,
	    SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1)
		tls_err(err, errlen, "key", tc->key);
	else if (SSL_CTX_load_verify_locations(ctx, tc->ca, NULL) != 1)
		tls_err(err, errlen, "CA", tc->ca);
	else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (server ?
		    SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
		return ctx;
	}
	SSL_CTX_free(ctx);
	return NULL;
}

/* A client SSL that checks the vault's certificate names its IP. */
SSL *
vault_tls_ssl(SSL_CTX *ctx, const char *address)
{
	char	 host[64];
	SSL	*ssl;
	size_t	 len;

	address += strlen(VAULT_TLS_PREFIX);
	if (*address == '[')
		address++;
	len = strcspn(address, "]");
	if (address[len] == '\0')
		len = strrchr(address, ':') - address;
	snprintf(host, sizeof(host), "%.*s", (int)len, address);
	if ((ssl = SSL_new(ctx)) == NULL)
		return NULL;
	if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

/* --- one blocking call (operator commands) ------------------------------- */

struct vault_sync {
	int	 fd;
	SSL	*ssl;
};

static int
sync_connect(const struct vault_conf *vc, struct vault_sync *vs, char *err,
    size_t errlen)
{
	struct sockaddr_storage	 ss;
	struct timeval		 tv;
	socklen_t		 sslen;
	int			 tls;

	if (vault_address_parse(vc->address, &ss, &sslen, &tls, err,
	    errlen) == -1)
		return -1;
	if ((vs->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC,
	    0)) == -1) {
		snprintf(err, errlen, "vault %s: socket: %s", vc->address,
		    strerror(errno));
		return -1;
	}
	tv.tv_sec = vc->timeout / 1000;
	tv.tv_usec = vc->timeout % 1000 * 1000;
	setsockopt(vs->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(vs->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(vs->fd, (struct sockaddr *)&ss, sslen) == -1) {
		snprintf(err, errlen, "vault %s is unreachable: %s",
		    vc->address, strerror(errno));
		return -1;
	}
	return tls ? 1 : 0;
}

static int
sync_tls(const struct vault_conf *vc, struct vault_sync *vs, SSL_CTX *ctx,
    char *err, size_t errlen)
{
	if ((vs->ssl = vault_tls_ssl(ctx, vc->address)) == NULL ||
	    SSL_set_fd(vs->ssl, vs->fd) != 1 || SSL_connect(vs->ssl) != 1) {
		tls_err(err, errlen, "handshake with", vc->address);
		return -1;
	}
	return 0;
}

static int
sync_io(struct vault_sync *vs, int out, void *buf, size_t len)
{
	size_t	off = 0;
	ssize_t	n;

	while (off < len) {
		if (vs->ssl != NULL)
			n = out ? SSL_write(vs->ssl, (char *)buf + off,
			    (int)(len - off)) : SSL_read(vs->ssl,
			    (char *)buf + off, (int)(len - off));
		else
			n = out ? write(vs->fd, (char *)buf + off, len - off) :
			    read(vs->fd, (char *)buf + off, len - off);
		if (n <= 0)
			return -1;
		off += (size_t)n;
	}
	return 0;
}

/* Send one frame and read the answer frame. */
static int
sync_exchange(struct vault_sync *vs, json_t *req, json_t **answer,
    char *err, size_t errlen)
{
	struct evbuffer	*buf = evbuffer_new();
	uint8_t		 data[4 + VAULT_FRAME_MAX];
	size_t		 len;
	int		 rv = -1;

	if (buf == NULL || vault_frame_add(buf, req) == -1)
		snprintf(err, errlen, "vault request too large");
	else if ((len = evbuffer_remove(buf, data, sizeof(data)),
	    sync_io(vs, 1, data, len)) == -1 || sync_io(vs, 0, data, 4) == -1)
		snprintf(err, errlen, "vault: no answer (%s)",
		    errno ? strerror(errno) : "connection closed");
	else if ((len = (size_t)data[0] << 24 | data[1] << 16 |
	    data[2] << 8 | data[3]) > VAULT_FRAME_MAX ||
	    sync_io(vs, 0, data + 4, len) == -1)
		snprintf(err, errlen, "vault: bad or truncated answer");
	else if (evbuffer_add(buf, data, 4 + len) == 0 &&
	    vault_frame_take(buf, answer, err, errlen) == 1)
		rv = 0;
	OPENSSL_cleanse(data, sizeof(data));
	evbuffer_free(buf);
	return rv;
}

int
vault_call(const struct vault_conf *vc, json_t *req, json_t **answer,
    char *err, size_t errlen)
{
	struct vault_sync	 vs = { -1, NULL };
	SSL_CTX			*ctx = NULL;
	int			 tls, rv = -1;

	*answer = NULL;
	errno = 0;
	if ((tls = sync_connect(vc, &vs, err, errlen)) == -1)
		goto done;
	if (tls && ((ctx = vault_tls_ctx(0, &vc->tls, err, errlen)) == NULL ||
	    sync_tls(vc, &vs, ctx, err, errlen) == -1))
		goto done;
	rv = sync_exchange(&vs, req, answer, err, errlen);
done:
	if (vs.ssl != NULL) {
		SSL_shutdown(vs.ssl);
		SSL_free(vs.ssl);
	}
	SSL_CTX_free(ctx);
	if (vs.fd != -1)
		close(vs.fd);
	return rv;
}
