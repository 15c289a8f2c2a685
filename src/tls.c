/*
 * tls.c: server TLS contexts (TLS 1.2+, AEAD ciphers only) and the
 * self-signed development certificate made on first start.
 */
#include "config.h"

#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "http.h"

/* TLS 1.2 suites: forward secret and AEAD only. TLS 1.3's are all AEAD. */
#define TLS12_CIPHERS	"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!SHA1:!SHA256:!SHA384"

static void
tls_error(char *err, size_t len, const char *what, const char *path)
{
	unsigned long	e = ERR_get_error();
	char		 reason[160];

	ERR_error_string_n(e, reason, sizeof(reason));
	snprintf(err, len, "%s %s: %s", what, path, e ? reason : "failed");
	ERR_clear_error();
}

struct ssl_ctx_st *
tls_ctx_new(const struct tls_conf *tc, char *err, size_t errlen)
{
	SSL_CTX	*ctx;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		tls_error(err, errlen, "creating", "TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
		tls_error(err, errlen, "setting", "ciphers");
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, tc->certificate) != 1) {
		tls_error(err, errlen, "loading certificate", tc->certificate);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, tc->key, SSL_FILETYPE_PEM) != 1) {
		tls_error(err, errlen, "loading key", tc->key);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tls_error(err, errlen, "key does not match certificate",
		    tc->certificate);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static X509 *
self_signed_cert(EVP_PKEY *key)
{
	X509		*x;
	X509_NAME	*name;
	X509V3_CTX	 v3;
	X509_EXTENSION	*ext;

	if ((x = X509_new()) == NULL)
		return NULL;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(wall_usec() / 1000));
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)"tenantd development", -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name,
	    "DNS:localhost,IP:127.0.0.1,IP:::1");
	if (ext == NULL || !X509_add_ext(x, ext, -1) ||
	    !X509_sign(x, key, EVP_sha256())) {
		X509_EXTENSION_free(ext);
		X509_free(x);
		return NULL;
	}
	X509_EXTENSION_free(ext);
	return x;
}

/* Write PEM output atomically: temp file, fsync, rename. */
static int
write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert)
{
	char	 tmp[4096];
	FILE	*f;
	int	 fd, ok;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode))
	    == -1)
		return -1;
	if ((f = fdopen(fd, "w")) == NULL) {
		close(fd);
		return -1;
	}
	ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) :
	    PEM_write_X509(f, cert);
	if (fflush(f) != 0 || fsync(fd) != 0)
		ok = 0;
	fclose(f);
	if (!ok || rename(tmp, path) == -1) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static int
mkdir_parent(const char *path)
{
	char	*copy = xstrdup(path);
	int	 r;

	r = mkdir(dirname(copy), 0700);
	free(copy);
	return (r == -1 && errno != EEXIST) ? -1 : 0;
}

/* Make the development certificate and key unless both exist. */
int
tls_self_signed_ensure(const struct tls_conf *tc, char *err, size_t errlen)
{
	EVP_PKEY	*key;
	X509		*cert = NULL;
	int		 r = -1;

	if (access(tc->certificate, R_OK) == 0 && access(tc->key, R_OK) == 0)
		return 0;
	if (mkdir_parent(tc->key) == -1 || mkdir_parent(tc->certificate) == -1) {
		snprintf(err, errlen, "creating directory for %s: %s", tc->key,
		    strerror(errno));
		return -1;
	}
	if ((key = EVP_EC_gen("P-256")) == NULL ||
	    (cert = self_signed_cert(key)) == NULL) {
		tls_error(err, errlen, "generating", "self-signed certificate");
		goto done;
	}
	if (write_pem(tc->key, 0600, key, NULL) == -1 ||
	    write_pem(tc->certificate, 0644, NULL, cert) == -1) {
		snprintf(err, errlen, "writing %s: %s", tc->certificate,
		    strerror(errno));
		goto done;
	}
	log_warnx("generated a self-signed development certificate %s; "
	    "browsers will not trust it", tc->certificate);
	r = 0;
done:
	X509_free(cert);
	EVP_PKEY_free(key);
	return r;
}
