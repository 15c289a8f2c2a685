/*
 * shipper-cred.c: bearer tokens for the Logs Ingestion API from a managed
 * identity (IMDS), a client secret or a client certificate (a signed
 * client assertion). Cached, refreshed at 90 % of their lifetime and once
 * after a 401.
 */
#include "config.h"

#include <sys/queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "tenantd.h"

#define CRED_TIMEOUT_MS		15000
#define CRED_RETRY_MAX_MS	30000
#define CRED_SECRET_MAX		4096
#define CRED_KEY_MAX		(64 * 1024)
#define CRED_ASSERTION_LIFE	600	/* s */
#define CRED_MIN_LIFETIME	10	/* s; shorter answers are refused */

struct cred_waiter {
	TAILQ_ENTRY(cred_waiter) entry;
	ship_token_fn		 fn;
	void			*arg;
};

struct ship_cred {
	struct event_base		*base;
	struct httpc			*hc;
	const struct log_shipping_conf	*ls;
	char				*tenant_id;
	char				*token;
	uint64_t			 refresh_us;	/* mono */
	uint64_t			 expires_us;	/* mono */
	struct httpc_xfer		*xfer;
	struct event			*ev_retry;
	unsigned			 attempt;
	uint64_t			 fetches;
	TAILQ_HEAD(, cred_waiter)	 waiters;
};

/* IMDS answers worth retrying (Microsoft's guidance). */
static const long imds_retry_status[] = { 404, 410, 429, 500, 502, 503,
    504 };

static void	cred_fetch(struct ship_cred *);

static int
cred_retryable(const struct ship_cred *c, const struct httpc_response *r)
{
	size_t	i;

	if (r->error != HTTPC_OK || r->status >= 500 || r->status == 429 ||
	    r->status == 408)
		return 1;
	if (c->ls->credential.type != SHIP_CRED_MANAGED_IDENTITY)
		return 0;
	for (i = 0; i < nitems(imds_retry_status); i++)
		if (r->status == imds_retry_status[i])
			return 1;
	return 0;
}

static void
cred_notify(struct ship_cred *c, const char *error)
{
	struct cred_waiter	*w;

	while ((w = TAILQ_FIRST(&c->waiters)) != NULL) {
		TAILQ_REMOVE(&c->waiters, w, entry);
		w->fn(error == NULL ? c->token : NULL, error, w->arg);
		free(w);
	}
}

static void
cred_retry_cb(evutil_socket_t fd, short ev, void *arg)
{
	cred_fetch(arg);
}

/* Back off and fetch again while someone waits for a token. */
static void
cred_schedule_retry(struct ship_cred *c, const char *why)
{
	uint64_t	ms = 500ULL << MINIMUM(c->attempt, 8);
	struct timeval	tv;

	c->attempt++;
	ms = MINIMUM(ms, CRED_RETRY_MAX_MS);
	ms = ms / 2 + (uint64_t)arc4random_uniform((uint32_t)ms / 2 + 1);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	log_warnx("log shipping: token request failed (%s); retrying in "
	    "%llu ms", why, (unsigned long long)ms);
	evtimer_add(c->ev_retry, &tv);
}

/* expires_in is a number (Entra) or a string (IMDS). */
static int
cred_parse(struct ship_cred *c, const char *body, size_t len)
{
	json_t		*doc = json_loadb(body, len, 0, NULL);
	json_t		*exp;
	const char	*tok;
	long long	 life = -1;
	uint64_t	 now = now_usec();

	tok = json_string_value(json_object_get(doc, "access_token"));
	exp = json_object_get(doc, "expires_in");
	if (json_is_integer(exp))
		life = json_integer_value(exp);
	else if (json_is_string(exp))
		life = strtoll(json_string_value(exp), NULL, 10);
	if (tok == NULL || *tok == '\0' || life < CRED_MIN_LIFETIME ||
	    strlen(tok) > AUTH_TOKEN_MAX) {
		json_decref(doc);
		return -1;
	}
	freezero_str(c->token);
	c->token = xstrdup(tok);
	c->expires_us = now + (uint64_t)life * 1000000;
	c->refresh_us = now + (uint64_t)life * 900000;	/* 90 % */
	json_decref(doc);
	return 0;
}

static void
cred_done(const struct httpc_response *r, void *arg)
{
	struct ship_cred	*c = arg;
	char			 why[160];

	c->xfer = NULL;
	if (r->error == HTTPC_OK && r->status == 200 &&
	    cred_parse(c, r->body, r->body_len) == 0) {
		c->attempt = 0;
		cred_notify(c, NULL);
		return;
	}
	if (r->error != HTTPC_OK)
		snprintf(why, sizeof(why), "%s: %s",
		    httpc_error_name(r->error), r->errmsg);
	else
		snprintf(why, sizeof(why), "HTTP %ld", r->status);
	if (r->status == 200 || !cred_retryable(c, r)) {
		log_warnx("log shipping: token request failed (%s)%s", why,
		    r->status == 200 ? ": no usable access_token" : "");
		cred_notify(c, "no token");
		return;
	}
	if (TAILQ_EMPTY(&c->waiters))
		return;
	cred_schedule_retry(c, why);
}

static char *
url_encode(const char *s)
{
	static const char	 hex[] = "0123456789ABCDEF";
	char			*out = xmalloc(strlen(s) * 3 + 1), *p = out;

	for (; *s != '\0'; s++) {
		unsigned char	ch = (unsigned char)*s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || strchr("-._~", ch) != NULL)
			*p++ = ch;
		else {
			*p++ = '%';
			*p++ = hex[ch >> 4];
			*p++ = hex[ch & 15];
		}
	}
	*p = '\0';
	return out;
}

static char *
cred_imds_url(const struct ship_cred *c)
{
	const struct ship_cred_conf	*cc = &c->ls->credential;
	char				*aud = url_encode(c->ls->audience);
	char				*url;

	xasprintf(&url, "%s/metadata/identity/oauth2/token?api-version="
	    "2018-02-01&resource=%s%s%s", cc->imds_endpoint, aud,
	    cc->client_id ? "&client_id=" : "",
	    cc->client_id ? cc->client_id : "");
	free(aud);
	return url;
}

static char *
cred_token_url(const struct ship_cred *c)
{
	const struct ship_cred_conf	*cc = &c->ls->credential;
	char				*url;
	size_t				 len = strlen(cc->authority);

	while (len > 0 && cc->authority[len - 1] == '/')
		len--;
	xasprintf(&url, "%.*s/%s/oauth2/v2.0/token", (int)len, cc->authority,
	    c->tenant_id);
	return url;
}

/* The client's proof: the secret, or a signed assertion. */
static char *
cred_proof(const struct ship_cred *c, const char *token_url, char *err,
    size_t errlen)
{
	const struct ship_cred_conf	*cc = &c->ls->credential;
	char				 secret[CRED_SECRET_MAX + 1];
	char				*enc, *form;
	ssize_t				 n;

	if (cc->type == SHIP_CRED_CLIENT_CERTIFICATE) {
		if ((enc = ship_client_assertion(cc->client_id, token_url,
		    cc->certificate, cc->key, err, errlen)) == NULL)
			return NULL;
		xasprintf(&form, "client_assertion_type=urn%%3Aietf%%3Aparams"
		    "%%3Aoauth%%3Aclient-assertion-type%%3Ajwt-bearer&"
		    "client_assertion=%s", enc);
		free(enc);
		return form;
	}
	if ((n = secret_read(cc->client_secret, secret, CRED_SECRET_MAX, err,
	    errlen)) <= 0)
		return NULL;
	while (n > 0 && (secret[n - 1] == '\n' || secret[n - 1] == '\r'))
		n--;
	secret[n] = '\0';
	enc = url_encode(secret);
	OPENSSL_cleanse(secret, sizeof(secret));
	xasprintf(&form, "client_secret=%s", enc);
	freezero_str(enc);
	return form;
}

static int
cred_start_entra(struct ship_cred *c, struct httpc_request *req,
    char **body)
{
	static const char *const hdrs[] = {
	    "Content-Type: application/x-www-form-urlencoded", NULL };
	char	*url = cred_token_url(c), *proof, *scope, err[256];

	if ((proof = cred_proof(c, url, err, sizeof(err))) == NULL) {
		log_warnx("log shipping: %s", err);
		free(url);
		return -1;
	}
	scope = url_encode(c->ls->audience);
	xasprintf(body, "grant_type=client_credentials&client_id=%s&"
	    "scope=%s%%2F.default&%s", c->ls->credential.client_id, scope,
	    proof);
	freezero_str(proof);
	free(scope);
	req->method = "POST";
	req->url = url;
	req->headers = hdrs;
	req->body = *body;
	req->body_len = strlen(*body);
	return 0;
}

static void
cred_fetch(struct ship_cred *c)
{
	static const char *const imds_hdrs[] = { "Metadata: true", NULL };
	struct httpc_request	 req;
	char			*body = NULL;

	if (c->xfer != NULL)
		return;
	memset(&req, 0, sizeof(req));
	req.timeout_ms = CRED_TIMEOUT_MS;
	req.ca_file = c->ls->ca_file;
	if (c->ls->credential.type == SHIP_CRED_MANAGED_IDENTITY) {
		req.url = cred_imds_url(c);
		req.headers = imds_hdrs;
		req.flags = HTTPC_ALLOW_HTTP;
	} else if (cred_start_entra(c, &req, &body) == -1) {
		cred_notify(c, "no token");
		return;
	}
	c->fetches++;
	c->xfer = httpc_start(c->hc, &req, cred_done, c);
	free((char *)(uintptr_t)req.url);
	freezero_str(body);
	if (c->xfer == NULL)
		cred_schedule_retry(c, "request not started");
}

struct ship_cred *
ship_cred_new(struct event_base *base, struct httpc *hc,
    const struct log_shipping_conf *ls, const char *tenant_id, char *err,
    size_t errlen)
{
	struct ship_cred	*c = xcalloc(1, sizeof(*c));

	c->base = base;
	c->hc = hc;
	c->ls = ls;
	c->tenant_id = xstrdup(ls->credential.tenant_id ?
	    ls->credential.tenant_id : tenant_id);
	TAILQ_INIT(&c->waiters);
	if ((c->ev_retry = evtimer_new(base, cred_retry_cb, c)) == NULL) {
		snprintf(err, errlen, "log shipping: evtimer_new failed");
		ship_cred_free(c);
		return NULL;
	}
	return c;
}

void
ship_cred_free(struct ship_cred *c)
{
	struct cred_waiter	*w;

	if (c == NULL)
		return;
	while ((w = TAILQ_FIRST(&c->waiters)) != NULL) {
		TAILQ_REMOVE(&c->waiters, w, entry);
		free(w);
	}
	if (c->xfer != NULL)
		httpc_cancel(c->xfer);
	if (c->ev_retry != NULL)
		event_free(c->ev_retry);
	freezero_str(c->token);
	free(c->tenant_id);
	free(c);
}

void
ship_cred_get(struct ship_cred *c, ship_token_fn fn, void *arg)
{
	struct cred_waiter	*w;
	uint64_t		 now = now_usec();

	if (c->token != NULL && now < c->expires_us) {
		if (now >= c->refresh_us && c->xfer == NULL &&
		    !evtimer_pending(c->ev_retry, NULL))
			cred_fetch(c);		/* in the background */
		fn(c->token, NULL, arg);
		return;
	}
	w = xcalloc(1, sizeof(*w));
	w->fn = fn;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&c->waiters, w, entry);
	if (!evtimer_pending(c->ev_retry, NULL))
		cred_fetch(c);
}

void
ship_cred_cancel(struct ship_cred *c, void *arg)
{
	struct cred_waiter	*w, *next;

	for (w = TAILQ_FIRST(&c->waiters); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->arg == arg) {
			TAILQ_REMOVE(&c->waiters, w, entry);
			free(w);
		}
	}
}

/* The API refused token: forget it unless a newer one is cached. */
int
ship_cred_rejected(struct ship_cred *c, const char *token)
{
	if (c->token == NULL || strcmp(c->token, token) != 0)
		return 0;	/* already refreshed since */
	freezero_str(c->token);
	c->token = NULL;
	c->expires_us = c->refresh_us = 0;
	return 1;
}

uint64_t
ship_cred_fetches(struct ship_cred *c)
{
	return c != NULL ? c->fetches : 0;
}

/* base64url(SHA-256(DER)) of the first certificate in a PEM file. */
static char *
cred_x5t_s256(const char *cert_path, char *err, size_t errlen)
{
	unsigned char	 md[32], *der = NULL;
	X509		*x = NULL;
	FILE		*f;
	int		 len;
	char		*out = NULL;

	if ((f = fopen(cert_path, "r")) == NULL) {
		snprintf(err, errlen, "certificate %s: cannot open", cert_path);
		return NULL;
	}
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x == NULL || (len = i2d_X509(x, &der)) <= 0)
		snprintf(err, errlen, "certificate %s: not a PEM certificate",
		    cert_path);
	else if (EVP_Digest(der, (size_t)len, md, NULL, EVP_sha256(), NULL))
		out = base64url_encode(md, sizeof(md));
	OPENSSL_free(der);
	X509_free(x);
	return out;
}

static EVP_PKEY *
cred_load_key(const char *key_path, char *err, size_t errlen)
{
	char		*buf = xmalloc(CRED_KEY_MAX);
	ssize_t		 n;
	BIO		*bio;
	EVP_PKEY	*pkey = NULL;

	if ((n = secret_read(key_path, buf, CRED_KEY_MAX, err, errlen)) > 0 &&
	    (bio = BIO_new_mem_buf(buf, (int)n)) != NULL) {
		pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
		BIO_free(bio);
		if (pkey == NULL || EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
			snprintf(err, errlen, "key %s: not an RSA private key "
			    "in PEM", key_path);
			EVP_PKEY_free(pkey);
			pkey = NULL;
		}
	}
	OPENSSL_cleanse(buf, CRED_KEY_MAX);
	free(buf);
	return pkey;
}

/* PS256: RSASSA-PSS with SHA-256 and a 32-byte salt. */
static char *
cred_sign_ps256(EVP_PKEY *pkey, const char *input)
{
	EVP_MD_CTX	*md = EVP_MD_CTX_new();
	EVP_PKEY_CTX	*pctx = NULL;
	unsigned char	*sig = NULL;
	size_t		 siglen = 0;
	char		*out = NULL;

	if (md != NULL &&
	    EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, pkey) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) ==
	    1 && EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)
	    input, strlen(input)) == 1) {
		sig = xmalloc(siglen);
		if (EVP_DigestSign(md, sig, &siglen, (const unsigned char *)
		    input, strlen(input)) == 1)
			out = base64url_encode(sig, siglen);
	}
	free(sig);
	EVP_MD_CTX_free(md);
	return out;
}

static char *
cred_b64_json(json_t *obj)
{
	char	*text = json_dumps(obj, JSON_COMPACT), *out;

	json_decref(obj);
	if (text == NULL)
		return NULL;
	out = base64url_encode((unsigned char *)text, strlen(text));
	free(text);
	return out;
}

/*
 * A client assertion (RFC 7523) for Entra ID: header alg PS256, typ JWT,
 * x5t#S256; claims aud (the token URL), iss = sub = client id, jti, nbf,
 * iat, exp.
 */
char *
ship_client_assertion(const char *client_id, const char *aud,
    const char *cert_path, const char *key_path, char *err, size_t errlen)
{
	EVP_PKEY	*pkey;
	char		*x5t, *h, *p, *input, *sig, *jwt = NULL, jti[33];
	json_int_t	 now = (json_int_t)time(NULL);

	if ((x5t = cred_x5t_s256(cert_path, err, errlen)) == NULL)
		return NULL;
	if ((pkey = cred_load_key(key_path, err, errlen)) == NULL) {
		free(x5t);
		return NULL;
	}
	random_hex(jti, 16);
	h = cred_b64_json(json_pack("{s:s, s:s, s:s}", "alg", "PS256",
	    "typ", "JWT", "x5t#S256", x5t));
	p = cred_b64_json(json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}",
	    "aud", aud, "iss", client_id, "sub", client_id, "jti", jti,
	    "nbf", now - 60, "iat", now, "exp", now + CRED_ASSERTION_LIFE));
	xasprintf(&input, "%s.%s", h ? h : "", p ? p : "");
	if (h != NULL && p != NULL &&
	    (sig = cred_sign_ps256(pkey, input)) != NULL) {
		xasprintf(&jwt, "%s.%s", input, sig);
		free(sig);
	} else
		snprintf(err, errlen, "signing the client assertion failed");
	free(input);
	free(h);
	free(p);
	free(x5t);
	EVP_PKEY_free(pkey);
	return jwt;
}
